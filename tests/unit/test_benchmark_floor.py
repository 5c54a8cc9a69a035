"""The scale benchmark's floor replays an operator's final objects as that operator wrote them:
what the API server and the controllers filled in is left out, so kubectl can create them
again in another namespace."""

from __future__ import annotations

from typing import Any

import pytest
from benchmarks.floor import PROVIDED, replay, replay_first, replayable, static_volumes
from benchmarks.peers import nim_cache_claims, nim_cache_manifests, nim_pipeline

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


def a_bound_claim() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "p-0001-pvc",
            "namespace": "nim-pipeline-20",
            "labels": {"app.kubernetes.io/part-of": "nim-cache"},
            "annotations": {
                "pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes",
            },
            "finalizers": ["kubernetes.io/pvc-protection"],
            "ownerReferences": [{"kind": "NIMCache", "name": "p-0001", "uid": "c1"}],
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "50Gi"}},
            "volumeMode": "Filesystem",
            "volumeName": "nim-pipeline-20-p-0001-pvc",
        },
        "status": {"phase": "Bound"},
    }


def test_a_claim_is_bound_again_by_the_volume_controller_not_by_its_old_volume() -> None:
    claim = replayable(a_bound_claim(), "floor-nim-pipeline-20")

    assert claim is not None
    assert claim["metadata"] == {
        "name": "p-0001-pvc",
        "namespace": "floor-nim-pipeline-20",
        "labels": {"app.kubernetes.io/part-of": "nim-cache"},
    }
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "50Gi"}},
        "volumeMode": "Filesystem",
    }


@pytest.mark.parametrize(
    ("labels", "replayed"),
    [
        ({PROVIDED: "true"}, False),
        ({PROVIDED: "false"}, True),
        ({"app": "k8s-nim-operator"}, True),
        (None, True),
    ],
)
def test_what_the_benchmark_provided_is_not_replayed(
    labels: dict[str, str] | None, replayed: bool
) -> None:
    meta: Obj = {"name": "p-0001-manifest", **({"labels": labels} if labels else {})}
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}}

    assert (replayable(obj, "floor") is not None) is replayed


def test_namespace_wide_identities_come_first_and_owned_ones_stay_with_their_owner() -> None:
    def obj(kind: str, name: str, owner: str | None) -> Obj:
        meta: Obj = {"name": name}
        if owner is not None:
            meta["ownerReferences"] = [{"name": owner, "uid": f"u-{owner}"}]
        return {"apiVersion": "v1", "kind": kind, "metadata": meta}

    items = [
        obj("NIMService", "p-0001", None),
        obj("ServiceAccount", "nim-cache-sa", None),
        obj("Role", "nim-cache-role", None),
        obj("RoleBinding", "nim-cache-rolebinding", None),
        obj("ServiceAccount", "p-0001", "p-0001"),
        obj("Job", "p-0001-job", "p-0001"),
        obj("ServiceAccount", "default", None),
    ]

    first = replay_first(items, "floor")
    shards = replay(items, "floor", 4)

    assert [(o["kind"], o["metadata"]["name"]) for o in first] == [
        ("ServiceAccount", "nim-cache-sa"),
        ("Role", "nim-cache-role"),
        ("RoleBinding", "nim-cache-rolebinding"),
    ]
    assert [[(o["kind"], o["metadata"]["name"]) for o in shard] for shard in shards] == [
        [("NIMService", "p-0001"), ("ServiceAccount", "p-0001"), ("Job", "p-0001-job")]
    ]


@pytest.mark.parametrize(
    ("claim_spec", "class_name"),
    [
        ({"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "50Gi"}}}, ""),
        (
            {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "8Gi"}},
                "storageClassName": "fast",
            },
            "fast",
        ),
    ],
)
def test_each_claim_gets_a_volume_bound_to_it_in_advance(claim_spec: Obj, class_name: str) -> None:
    claim = {"metadata": {"name": "p-0001-pvc", "namespace": "nim-pipeline-20"}, "spec": claim_spec}

    (volume,) = static_volumes([claim], "nim-pipeline-20")

    assert volume["kind"] == "PersistentVolume"
    assert volume["metadata"]["name"] == "nim-pipeline-20-p-0001-pvc"
    assert volume["metadata"]["labels"] == {
        PROVIDED: "true",
        "benchmarks.qmo.dev/for": "nim-pipeline-20",
    }
    spec = volume["spec"]
    assert spec["claimRef"] == {"namespace": "nim-pipeline-20", "name": "p-0001-pvc"}
    assert spec["capacity"] == {"storage": claim_spec["resources"]["requests"]["storage"]}
    assert spec["accessModes"] == claim_spec["accessModes"]
    assert spec["storageClassName"] == class_name


def test_the_nim_pipeline_pairs_each_cache_with_a_service_that_uses_it() -> None:
    objects = nim_pipeline("nim-pipeline-3", 3)

    caches = [o for o in objects if o["kind"] == "NIMCache"]
    services = [o for o in objects if o["kind"] == "NIMService"]
    assert [o["kind"] for o in objects] == ["NIMCache"] * 3 + ["NIMService"] * 3
    assert [s["spec"]["storage"]["nimCache"]["name"] for s in services] == [
        c["metadata"]["name"] for c in caches
    ]
    for cache in caches:
        # An HF source: no registry is asked about the puller image, unlike an NGC source.
        assert set(cache["spec"]["source"]) == {"hf"}
        assert cache["spec"]["storage"]["pvc"]["create"] is True
        # Fake nodes carry GPU Feature Discovery's labels, not Node Feature Discovery's.
        assert cache["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


@pytest.mark.parametrize(
    ("pvc", "claim_name"),
    [
        ({"create": True, "size": "50Gi", "volumeAccessMode": "ReadWriteMany"}, "p-0007-pvc"),
        (
            {"create": True, "name": "shared", "size": "9Gi", "volumeAccessMode": "ReadWriteOnce"},
            "shared",
        ),
    ],
)
def test_a_nim_cache_claim_is_named_and_sized_as_the_operator_will_make_it(
    pvc: Obj, claim_name: str
) -> None:
    cache = {"kind": "NIMCache", "metadata": {"name": "p-0007", "namespace": "ns"},
             "spec": {"storage": {"pvc": pvc}}}  # fmt: skip
    service = {"kind": "NIMService", "metadata": {"name": "p-0007", "namespace": "ns"}}

    claims = nim_cache_claims([cache, service])

    assert claims == [
        {
            "metadata": {"name": claim_name, "namespace": "ns"},
            "spec": {
                "accessModes": [pvc["volumeAccessMode"]],
                "resources": {"requests": {"storage": pvc["size"]}},
            },
        }
    ]


def test_each_nim_cache_gets_its_manifest_config_map_marked_as_provided() -> None:
    objects = nim_pipeline("ns", 2)

    manifests = nim_cache_manifests(objects, PROVIDED)

    assert [(m["metadata"]["name"], m["metadata"]["namespace"]) for m in manifests] == [
        ("p-0000-manifest", "ns"),
        ("p-0001-manifest", "ns"),
    ]
    assert all(replayable(m, "floor") is None for m in manifests)
