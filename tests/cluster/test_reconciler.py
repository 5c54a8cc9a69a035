"""The reconciler end to end: real API server, scheduler, controllers and kwok GPU nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from e2e.operator_process import OperatorProcess
from qmo.fleet import NodeGroup, build_node
from tests.support.gate_scenario import wait_event
from tests.support.kube import (
    GROUP,
    PLURAL,
    VERSION,
    ClusterHandle,
    condition,
    is_ready,
    variants,
    wait_for,
    wait_until_none,
)
from tests.support.scenario import (
    a_model,
    build_jobs,
    create,
    deployment,
    events,
    finish_job_pod,
    patch_spec,
    wait_ready,
)
from tests.support.waits import wait_until

pytestmark = pytest.mark.usefixtures("operator", "engine_store")


@pytest.fixture
def extra_nodes(cluster: ClusterHandle) -> Iterator[list[str]]:
    """Nodes a test adds to the shared fleet; removed again afterwards."""
    added: list[str] = []
    yield added
    for name in added:
        cluster.kubectl("delete", "node", name, "--wait=false", check=False)


def add_nodes(cluster: ClusterHandle, added: list[str], group: NodeGroup, count: int) -> None:
    nodes = [build_node(group, i) for i in range(count)]
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump_all(nodes))
    for node in nodes:
        added.append(node["metadata"]["name"])
        cluster.kubectl("wait", "--for=condition=Ready", f"node/{node['metadata']['name']}")


def wait_node_counted(
    operator: OperatorProcess,
    gauge: tuple[str, dict[str, str]],
    expected: float,
    reconciles_before: float,
) -> None:
    """The fleet gauge shows the node, and every model was reconciled for it and is done."""
    name, labels = gauge
    wait_until(
        lambda: (
            operator.metric(name, **labels) == expected
            and operator.metric("qmo_reconcile_total") > reconciles_before
            and operator.metric("workqueue_depth") == 0
            and operator.metric("workqueue_unfinished_work_seconds") == 0
        ),
        timeout=120,
        what=f"qmo to count the node in {name}{labels} and reconcile for it",
    )


def test_auto_on_the_mixed_fleet_serves_int8_on_a100_and_fp8_on_h100_and_l40s(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("auto"))
    model = wait_ready(cluster, namespace, "auto")

    served = {name: v["precision"] for name, v in variants(model).items()}
    assert served == {"a100-80gb-int8": "int8", "h100-fp8": "fp8", "l40s-fp8": "fp8"}
    assert model["status"]["summary"]["precisions"] == "a100-80gb=int8,h100=fp8,l40s=fp8"
    for variant, node_prefix in [
        ("a100-80gb-int8", "a100-"),
        ("h100-fp8", "h100-"),
        ("l40s-fp8", "l40s-"),
    ]:
        pods = cluster.core().list_namespaced_pod(
            namespace,
            label_selector=f"qmo.dev/variant={variant},app.kubernetes.io/component=server",
        )
        assert pods.items, f"no serving pod for {variant}"
        assert all(p.spec.node_name.startswith(node_prefix) for p in pods.items)
        assert all(p.status.phase == "Running" for p in pods.items)
    main = cluster.core().read_namespaced_service("auto", namespace)
    assert main.spec.selector == {
        "qmo.dev/model": "auto",
        "app.kubernetes.io/component": "server",
        "qmo.dev/track": "stable",
    }


def test_a_new_gpu_node_joins_its_class_or_adds_a_variant(
    cluster: ClusterHandle, namespace: str, extra_nodes: list[str], operator: OperatorProcess
) -> None:
    create(cluster, namespace, a_model("grows"))
    before = wait_ready(cluster, namespace, "grows")
    jobs_before = {j.metadata.name for j in build_jobs(cluster, namespace)}
    h100_nodes = operator.metric("qmo_gpu_class_nodes", gpu_class="h100")
    reconciles = operator.metric("qmo_reconcile_total")

    h100 = NodeGroup.model_validate(
        {"name": "h100-extra", "product": "NVIDIA-H100-80GB-HBM3", "family": "hopper",
         "computeCapability": "9.0", "memoryMiB": 81559, "gpus": 8}
    )  # fmt: skip
    add_nodes(cluster, extra_nodes, h100, 1)
    wait_node_counted(
        operator, ("qmo_gpu_class_nodes", {"gpu_class": "h100"}), h100_nodes + 1, reconciles
    )
    joined = cluster.model(namespace, "grows")
    # One more node of a class it serves on changes nothing a user reads: not even the status.
    assert joined["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert {j.metadata.name for j in build_jobs(cluster, namespace)} == jobs_before

    h200 = NodeGroup.model_validate(
        {"name": "h200-extra", "product": "NVIDIA-H200", "family": "hopper",
         "computeCapability": "9.0", "memoryMiB": 143771, "gpus": 8}
    )  # fmt: skip
    add_nodes(cluster, extra_nodes, h200, 1)
    grown = cluster.wait_for_model(
        namespace,
        "grows",
        lambda m: "h200-fp8" in variants(m) and is_ready(m),
        describe="an h200-fp8 variant to serve",
    )
    assert variants(grown)["h200-fp8"]["gpuClass"] == "h200"


def test_mig_nodes_are_reported_by_product_and_one_more_leaves_the_status_alone(
    cluster: ClusterHandle, namespace: str, extra_nodes: list[str], operator: OperatorProcess
) -> None:
    create(cluster, namespace, a_model("beside-mig", gpu={"classes": ["h100"]}))
    wait_ready(cluster, namespace, "beside-mig")
    product = "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
    mig = NodeGroup.model_validate(
        {"name": "h100-mig", "product": product, "family": "hopper",
         "computeCapability": "9.0", "memoryMiB": 9856, "gpus": 7}
    )  # fmt: skip
    add_nodes(cluster, extra_nodes, mig, 1)
    reported = cluster.wait_for_model(
        namespace,
        "beside-mig",
        lambda m: m["status"].get("unknownGpus") == [product],
        describe="the MIG product in status.unknownGpus",
    )
    degraded = condition(reported, "Degraded")
    assert degraded["reason"] == "UnknownGpu"
    assert "MIG slices are not supported" in degraded["message"]
    assert "h100-mig-0" not in degraded["message"]
    assert is_ready(reported)

    reconciles = operator.metric("qmo_reconcile_total")
    second = mig.model_copy(update={"name": "h100-mig-b"})
    add_nodes(cluster, extra_nodes, second, 1)
    wait_node_counted(operator, ("qmo_unknown_gpu_nodes", {"product": product}), 2, reconciles)
    after = cluster.model(namespace, "beside-mig")
    assert after["metadata"]["resourceVersion"] == reported["metadata"]["resourceVersion"]


def test_an_unsupported_precision_explains_itself_and_the_rest_serves(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        a_model("fp8-everywhere", precisions=["fp8"], gpu={"classes": ["a100-80gb", "h100"]}),
    )
    model = cluster.wait_for_model(
        namespace,
        "fp8-everywhere",
        lambda m: variants(m).get("h100-fp8", {}).get("phase") == "Serving",
        describe="h100-fp8 to serve",
    )
    refused = variants(model)["a100-80gb-fp8"]
    assert refused["phase"] == "Unsupported"
    assert refused["reason"] == "PrecisionUnsupported"
    degraded = condition(model, "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "PrecisionUnsupported"
    assert "NVIDIA-A100-SXM4-80GB has 8.0" in degraded["message"]
    warnings = [e for e in events(cluster, namespace, "fp8-everywhere") if e.type == "Warning"]
    assert any(
        e.reason == "PrecisionUnsupported" and "a100-80gb-fp8" in e.message for e in warnings
    )


def test_a_second_model_with_the_same_build_inputs_shares_the_build(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("first", gpu={"classes": ["h100"]}))
    wait_ready(cluster, namespace, "first")
    create(cluster, namespace, a_model("second", gpu={"classes": ["h100"]}))
    second = wait_ready(cluster, namespace, "second")

    jobs = build_jobs(cluster, namespace)
    assert len(jobs) == 1
    owners = {ref.name for ref in jobs[0].metadata.owner_references}
    assert owners == {"first", "second"}
    assert variants(second)["h100-fp8"]["build"]["state"] == "Reused"
    wait_event(cluster, namespace, "second", "BuildReused")  # it follows the status


def test_changing_replicas_creates_no_build(cluster: ClusterHandle, namespace: str) -> None:
    create(cluster, namespace, a_model("scaled", gpu={"classes": ["h100"]}))
    wait_ready(cluster, namespace, "scaled")
    jobs_before = {j.metadata.name for j in build_jobs(cluster, namespace)}

    patch_spec(cluster, namespace, "scaled", {"serving": {"replicas": 3}})
    scaled = wait_ready(cluster, namespace, "scaled")

    assert variants(scaled)["h100-fp8"]["readyReplicas"] == 3
    assert {j.metadata.name for j in build_jobs(cluster, namespace)} == jobs_before


def test_a_new_revision_rolls_out_only_after_its_build_succeeded(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("upgrade", gpu={"classes": ["h100"]}))
    v1 = wait_ready(cluster, namespace, "upgrade")
    old_key = variants(v1)["h100-fp8"]["revision"]

    patch_spec(cluster, namespace, "upgrade", {"model": {"revision": "e2e-hold-v2"}})
    building = cluster.wait_for_model(
        namespace,
        "upgrade",
        lambda m: (
            variants(m)["h100-fp8"]["phase"] == "Building"
            and m["status"]["observedGeneration"] == m["metadata"]["generation"]
        ),
        describe="the new revision to build",
    )
    new_key = variants(building)["h100-fp8"]["cacheKey"]
    assert new_key != old_key
    serving = deployment(cluster, namespace, "upgrade-h100-fp8")
    assert serving.spec.template.metadata.annotations["qmo.dev/revision"] == old_key
    assert serving.status.ready_replicas == 1

    job = next(j for j in build_jobs(cluster, namespace) if new_key[:16] in j.metadata.name)
    finish_job_pod(cluster, namespace, job.metadata.name)
    v2 = cluster.wait_for_model(
        namespace,
        "upgrade",
        lambda m: variants(m)["h100-fp8"]["revision"] == new_key and is_ready(m),
        describe="the new revision to serve",
    )
    assert variants(v2)["h100-fp8"]["build"]["state"] == "Succeeded"
    rolled = deployment(cluster, namespace, "upgrade-h100-fp8")
    assert rolled.spec.template.metadata.annotations["qmo.dev/revision"] == new_key


def test_a_failed_build_keeps_the_previous_revision_serving_and_degrades(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("fragile", gpu={"classes": ["h100"]}))
    v1 = wait_ready(cluster, namespace, "fragile")
    old_key = variants(v1)["h100-fp8"]["revision"]

    patch_spec(cluster, namespace, "fragile", {"model": {"revision": "e2e-fail-v2"}})
    failed = cluster.wait_for_model(
        namespace,
        "fragile",
        lambda m: variants(m)["h100-fp8"]["phase"] == "BuildFailed",
        describe="the build to fail",
    )
    degraded = condition(failed, "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "CalibrationFailed"  # the builder's own reason, from the Job
    assert "out of GPU memory" in degraded["message"]
    serving = deployment(cluster, namespace, "fragile-h100-fp8")
    assert serving.spec.template.metadata.annotations["qmo.dev/revision"] == old_key
    assert serving.status.ready_replicas == 1
    assert variants(failed)["h100-fp8"]["revision"] == old_key


def test_a_class_with_every_gpu_taken_still_rolls_out_new_pods_and_new_revisions(
    cluster: ClusterHandle, namespace: str, extra_nodes: list[str]
) -> None:
    l4 = NodeGroup.model_validate(
        {"name": "l4-full", "product": "NVIDIA-L4", "family": "ada-lovelace",
         "computeCapability": "8.9", "memoryMiB": 23034, "gpus": 2}
    )  # fmt: skip
    add_nodes(cluster, extra_nodes, l4, 1)
    create(
        cluster,
        namespace,
        a_model(
            "packed",
            gpu={"classes": ["l4"]},
            serving={"replicas": 2},
            engine={"maxBatchSize": 8, "maxSeqLen": 4096},
        ),
    )
    wait_ready(cluster, namespace, "packed")
    strategy = deployment(cluster, namespace, "packed-l4-fp8").spec.strategy
    assert strategy.rolling_update.max_surge == 0
    wait_event(cluster, namespace, "packed", "RollingWithoutSurge")  # it follows the status

    # A new pod template (here: new CPU requests) needs a rollout while every GPU is taken.
    before = deployment(cluster, namespace, "packed-l4-fp8").metadata.generation
    patch_spec(cluster, namespace, "packed", {"serving": {"resources": {"requests": {"cpu": "2"}}}})
    wait_for(
        cluster.apps().list_namespaced_deployment,
        lambda d: (
            d.metadata.name == "packed-l4-fp8"
            and d.metadata.generation > before
            and d.status.observed_generation == d.metadata.generation
            and d.status.updated_replicas == 2
            and d.status.ready_replicas == 2
            and d.status.replicas == 2
        ),
        namespace=namespace,
        describe="the rollout to finish",
    )
    final = deployment(cluster, namespace, "packed-l4-fp8")
    assert final.spec.template.spec.containers[0].resources.requests["cpu"] == "2"

    # A new revision must be built on this class first: one replica lends its GPU to the
    # build, then the new revision rolls out without a surge pod.
    patch_spec(cluster, namespace, "packed", {"model": {"revision": "v2"}})
    rolled = cluster.wait_for_model(
        namespace,
        "packed",
        lambda m: (
            is_ready(m)
            and variants(m)["l4-fp8"]["revision"] == variants(m)["l4-fp8"]["cacheKey"]
            and variants(m)["l4-fp8"]["build"]["state"] == "Succeeded"
        ),
        timeout=120,
        describe="revision v2 to be built and served",
    )
    new_key = variants(rolled)["l4-fp8"]["cacheKey"]
    assert deployment(cluster, namespace, "packed-l4-fp8").status.ready_replicas == 2
    reasons = [e.reason for e in events(cluster, namespace, "packed")]
    assert "LendingGpuToBuild" in reasons
    assert (
        deployment(cluster, namespace, "packed-l4-fp8").metadata.annotations["qmo.dev/revision"]
        == new_key
    )
    pending = [
        p
        for p in cluster.core().list_namespaced_pod(namespace).items
        if p.status.phase == "Pending" and p.metadata.deletion_timestamp is None
    ]
    assert pending == []


def test_deleting_the_model_removes_its_children(cluster: ClusterHandle, namespace: str) -> None:
    create(cluster, namespace, a_model("doomed", gpu={"classes": ["h100"]}))
    wait_ready(cluster, namespace, "doomed")
    assert cluster.apps().list_namespaced_deployment(namespace).items

    cluster.custom().delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "doomed")

    managed = "app.kubernetes.io/managed-by=qmo"
    for list_fn in (
        cluster.apps().list_namespaced_deployment,
        cluster.core().list_namespaced_service,
        cluster.batch().list_namespaced_job,
        cluster.core().list_namespaced_config_map,
    ):
        wait_until_none(
            list_fn, namespace=namespace, label_selector=managed, describe=list_fn.__name__
        )


def test_a_hand_edit_of_a_deployment_qmo_owns_is_reverted(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("kept", gpu={"classes": ["h100"]}))
    wait_ready(cluster, namespace, "kept")
    name = "kept-h100-fp8"
    cluster.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=3")
    reverted = wait_for(
        cluster.apps().list_namespaced_deployment,
        lambda d: d.metadata.name == name and d.spec.replicas == 1,
        namespace=namespace,
        describe="qmo to set its replicas back",
    )
    assert reverted.spec.replicas == 1


def test_a_deleted_service_is_recreated_from_its_watch_event(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("lost", gpu={"classes": ["h100"]}))
    wait_ready(cluster, namespace, "lost")
    before = cluster.core().read_namespaced_service("lost-h100-fp8", namespace)
    cluster.core().delete_namespaced_service("lost-h100-fp8", namespace)
    again = wait_for(
        cluster.core().list_namespaced_service,
        lambda s: s.metadata.name == "lost-h100-fp8" and s.metadata.uid != before.metadata.uid,
        namespace=namespace,
        describe="the variant Service to be recreated",
    )
    assert again.spec.selector == before.spec.selector


def test_a_child_the_api_server_refuses_is_reported_and_the_rest_proceeds(
    cluster: ClusterHandle, namespace: str
) -> None:
    # A quota that leaves room for the model's main Service only: the variant's is refused.
    cluster.apply_yaml(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: one-service}\n"
        "spec: {hard: {services: '1'}}\n",
        namespace,
    )
    create(cluster, namespace, a_model("quota", gpu={"classes": ["h100"]}))
    refused = cluster.wait_for_model(
        namespace,
        "quota",
        lambda m: variants(m).get("h100-fp8", {}).get("reason") == "ChildRejected",
        describe="the variant to report its refused Service",
    )
    variant = variants(refused)["h100-fp8"]
    assert "Service quota-h100-fp8 was refused by the API server" in variant["message"]
    assert "exceeded quota" in variant["message"], "the API server's own words"
    assert condition(refused, "Degraded")["status"] == "True"
    assert condition(refused, "Degraded")["reason"] == "ChildRejected"
    assert condition(refused, "Ready")["status"] == "False"
    # The rest of the rollout went on: the Deployment exists and serves.
    wait_for(
        cluster.apps().list_namespaced_deployment,
        lambda d: d.metadata.name == "quota-h100-fp8" and d.status.ready_replicas == 1,
        namespace=namespace,
        describe="the variant's Deployment to serve",
    )
    warnings = [
        e
        for e in events(cluster, namespace, "quota")
        if e.type == "Warning" and e.reason == "ChildRejected"
    ]
    assert len(warnings) == 1, "one Warning for the refusal, not one per retry"

    cluster.kubectl("delete", "resourcequota", "one-service", "-n", namespace)
    # Nothing announces a deleted quota; the retry with backoff picks it up.
    healed = cluster.wait_for_model(
        namespace, "quota", is_ready, timeout=90, describe="the retry to create the Service"
    )
    assert variants(healed)["h100-fp8"]["reason"] == "Serving"


def test_a_model_named_like_a_release_serves_under_valid_service_names(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("qwen2.5-7b", gpu={"classes": ["h100"]}))
    model = wait_ready(cluster, namespace, "qwen2.5-7b")
    service = model["status"]["service"]
    assert service.startswith("qwen2-5-7b-")
    assert "." not in service
    assert cluster.core().read_namespaced_service(service, namespace).spec.selector
    assert variants(model)["h100-fp8"]["service"].startswith(f"{service}-h100-fp8")


def test_a_failed_build_is_started_again_when_a_retry_is_requested(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        a_model("again", model={"revision": "e2e-fail-r1"}, gpu={"classes": ["h100"]}),
    )
    cluster.wait_for_model(
        namespace,
        "again",
        lambda m: variants(m).get("h100-fp8", {}).get("phase") == "BuildFailed",
        describe="the build to fail",
    )
    (first,) = build_jobs(cluster, namespace)
    cluster.kubectl("annotate", "qm", "again", "-n", namespace, "qmo.dev/retry=1")
    again = wait_for(
        cluster.batch().list_namespaced_job,
        lambda j: j.metadata.name == first.metadata.name and j.metadata.uid != first.metadata.uid,
        namespace=namespace,
        describe="the build Job to be created again",
    )
    assert again.metadata.name == first.metadata.name, "the same build, not another one"
    model = cluster.wait_for_model(
        namespace, "again", lambda m: m["status"].get("retried") == "1", describe="the retry"
    )
    assert model["status"]["retried"] == "1"
    # The Event follows the status write: wait for it rather than race it.
    wait_event(cluster, namespace, "again", "RetryRequested")
    retried = [e for e in events(cluster, namespace, "again") if e.reason == "RetryRequested"]
    assert len(retried) == 1
