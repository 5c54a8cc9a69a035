"""The scale benchmark's floor replays an operator's final objects as that operator wrote them:
what the API server and the controllers filled in is left out, so kubectl can create them
again in another namespace."""

from __future__ import annotations

from typing import Any

from benchmarks.floor import replay, replayable

Obj = dict[str, Any]
OWNER = [{"apiVersion": "qmo.dev/v1alpha1", "kind": "QuantizedModel", "name": "m-0001",
          "uid": "0f8e", "controller": True}]  # fmt: skip


def a_finished_job() -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "qmo-build-h100-fp8-1234",
            "namespace": "qmo-1000-single",
            "uid": "77aa",
            "resourceVersion": "4242",
            "labels": {"app.kubernetes.io/managed-by": "qmo"},
            "annotations": {"qmo.dev/desired-hash": "abc"},
            "ownerReferences": OWNER,
            "managedFields": [{"manager": "qmo", "operation": "Apply"}],
        },
        "spec": {
            "backoffLimit": 1,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "77aa"}},
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/component": "build",
                        "batch.kubernetes.io/controller-uid": "77aa",
                        "batch.kubernetes.io/job-name": "qmo-build-h100-fp8-1234",
                        "controller-uid": "77aa",
                        "job-name": "qmo-build-h100-fp8-1234",
                    }
                },
                "spec": {"restartPolicy": "Never", "containers": [{"name": "build"}]},
            },
        },
        "status": {"succeeded": 1},
    }


def test_a_job_loses_what_its_controller_wrote_and_keeps_what_the_operator_wrote() -> None:
    job = replayable(a_finished_job(), "floor-qmo-1000")

    assert job is not None
    assert job["metadata"] == {
        "name": "qmo-build-h100-fp8-1234",
        "namespace": "floor-qmo-1000",
        "labels": {"app.kubernetes.io/managed-by": "qmo"},
        "annotations": {"qmo.dev/desired-hash": "abc"},
    }
    assert "status" not in job
    assert "selector" not in job["spec"]
    assert job["spec"]["template"]["metadata"]["labels"] == {"app.kubernetes.io/component": "build"}
    assert job["spec"]["backoffLimit"] == 1


def test_the_snapshot_is_not_changed() -> None:
    original = a_finished_job()

    replayable(original, "floor-qmo-1000")

    assert original == a_finished_job()


def test_a_service_gets_a_new_cluster_ip_and_a_deployment_loses_its_revision() -> None:
    service = replayable(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m-0001"},
         "spec": {"clusterIP": "10.0.3.4", "clusterIPs": ["10.0.3.4"], "ports": [{"port": 80}]}},
        "floor",
    )  # fmt: skip
    deployment = replayable(
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "m-0001-h100-fp8",
                      "annotations": {"deployment.kubernetes.io/revision": "1"}},
         "spec": {"replicas": 1}},
        "floor",
    )  # fmt: skip

    assert service is not None
    assert service["spec"] == {"ports": [{"port": 80}]}
    assert deployment is not None
    assert "annotations" not in deployment["metadata"]


def test_objects_every_namespace_has_are_not_replayed() -> None:
    for kind, name in (("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")):
        assert (
            replayable({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}, "x") is None
        )


def test_a_custom_resource_and_its_children_land_in_one_shard_in_snapshot_order() -> None:
    models = [
        {"apiVersion": "qmo.dev/v1alpha1", "kind": "QuantizedModel",
         "metadata": {"name": f"m-{i:04d}", "uid": f"u{i}"}, "spec": {}}
        for i in range(40)
    ]  # fmt: skip
    children = [
        {"apiVersion": "v1", "kind": kind, "metadata": {"name": f"m-{i:04d}-{kind.lower()}",
         "ownerReferences": [{"name": f"m-{i:04d}", "uid": f"u{i}"}]}}
        for kind in ("ServiceAccount", "Service") for i in range(40)
    ]  # fmt: skip

    shards = replay(models + children, "floor", 4)

    assert sum(len(shard) for shard in shards) == 120
    assert len(shards) > 1
    for shard in shards:
        names = [obj["metadata"]["name"] for obj in shard]
        for obj in shard:
            if obj["kind"] != "QuantizedModel":
                model = obj["metadata"]["name"].rsplit("-", 1)[0]
                assert model in names
                assert names.index(model) < names.index(obj["metadata"]["name"])
        kinds = [obj["kind"] for obj in shard]
        assert kinds == sorted(kinds, key=["QuantizedModel", "ServiceAccount", "Service"].index)
