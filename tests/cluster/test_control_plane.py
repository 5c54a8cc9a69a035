"""The local control plane is real: scheduling, controllers, kwok nodes and CRD validation."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client

from e2e.cluster import FLEETS_DIR, LocalCluster
from qmo.api.base import API_VERSION
from tests.invalid_specs import INVALID_CASES, InvalidCase, invalid_spec, valid_spec
from tests.support.kube import REPO, ClusterHandle, unique_name, wait_for

HOPPER = {"nvidia.com/gpu.family": "hopper"}
AMPERE_PRODUCT = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}


def gpu_container(gpus: int) -> client.V1Container:
    return client.V1Container(
        name="main",
        image="registry.invalid/qmo-test:1",
        resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
    )


def test_a_hopper_deployment_gets_a_pod_running_on_an_h100_node(
    cluster: ClusterHandle, namespace: str
) -> None:
    labels = {"app": "hopper-only"}
    cluster.apps().create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="serve"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(node_selector=HOPPER, containers=[gpu_container(1)]),
                ),
            ),
        ),
    )
    pod = wait_for(
        cluster.core().list_namespaced_pod,
        lambda p: p.status.phase == "Running",
        namespace=namespace,
        describe="the Deployment's pod to run",
    )
    assert pod.spec.node_name.startswith("h100-")
    owners = pod.metadata.owner_references
    assert owners
    assert owners[0].kind == "ReplicaSet"
    node = cluster.core().read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def test_a_job_pinned_to_an_a100_completes(cluster: ClusterHandle, namespace: str) -> None:
    cluster.batch().create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name="build"),
            spec=client.V1JobSpec(
                backoff_limit=0,
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(
                        restart_policy="Never",
                        node_selector=AMPERE_PRODUCT,
                        containers=[gpu_container(2)],
                    )
                ),
            ),
        ),
    )
    job = wait_for(
        cluster.batch().list_namespaced_job,
        lambda j: any(
            c.type == "Complete" and c.status == "True" for c in j.status.conditions or []
        ),
        namespace=namespace,
        describe="the Job to complete",
    )
    assert job.status.succeeded == 1
    pods = cluster.core().list_namespaced_pod(namespace, label_selector="job-name=build").items
    assert [p.spec.node_name.startswith("a100-") for p in pods] == [True]


def test_a_pod_asking_for_more_gpus_than_any_node_has_stays_pending(
    cluster: ClusterHandle, namespace: str
) -> None:
    cluster.core().create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="greedy"),
            spec=client.V1PodSpec(containers=[gpu_container(9)]),
        ),
    )
    event = wait_for(
        cluster.core().list_namespaced_event,
        lambda e: e.reason == "FailedScheduling" and e.involved_object.name == "greedy",
        namespace=namespace,
        describe="a FailedScheduling event",
    )
    assert "Insufficient nvidia.com/gpu" in event.message
    pod = cluster.core().read_namespaced_pod("greedy", namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def quantized_model(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "QuantizedModel",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.usefixtures("crds")
def test_a_valid_quantized_model_is_accepted_and_defaulted(
    cluster: ClusterHandle, namespace: str
) -> None:
    created = cluster.custom().create_namespaced_custom_object(
        "qmo.dev", "v1alpha1", namespace, "quantizedmodels", quantized_model("ok", valid_spec())
    )
    spec = created["spec"]
    assert spec["quality"]["maxRegressionPercent"] == 1.5
    assert spec["kvCacheDtype"] == "auto"
    assert spec["engine"]["backend"] == "tensorrt"
    assert spec["quantization"]["excludeModules"] == ["lm_head"]


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_the_api_server_rejects_an_invalid_quantized_model_with_the_same_message(
    cluster: ClusterHandle, namespace: str, case: InvalidCase
) -> None:
    body = quantized_model(unique_name("bad"), invalid_spec(case))
    with pytest.raises(client.ApiException) as raised:
        cluster.custom().create_namespaced_custom_object(
            "qmo.dev", "v1alpha1", namespace, "quantizedmodels", body
        )
    assert raised.value.status == 422
    assert case.server in json.loads(raised.value.body)["message"]


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_accepted_by_the_api_server(
    cluster: ClusterHandle, namespace: str, path: Any
) -> None:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "-n", namespace, "-f", str(path)
    )
    assert "serverside-applied (server dry run)" in result.stdout


def test_printer_columns_and_short_name_are_served(cluster: ClusterHandle, crds: None) -> None:
    result = cluster.kubectl("api-resources", "--api-group=qmo.dev", "-o", "wide")
    assert "qm" in result.stdout.split()
    assert "qmo" in result.stdout


def listeners(port: int) -> list[str]:
    """Command lines of the processes listening on `port` (other sessions may reuse it)."""
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    pids = {int(p) for p in re.findall(r"pid=(\d+)", out)}
    return [Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") for pid in pids]


def test_stopping_a_cluster_leaves_no_process_or_port_behind() -> None:
    lifecycle = LocalCluster.start(unique_name("qmo-lifecycle"), FLEETS_DIR / "hopper.yaml")
    kubeconfig = yaml.safe_load(Path(lifecycle.kubeconfig).read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    port = urlparse(server).port
    assert port is not None
    assert lifecycle.status()["nodes"] == 3
    assert lifecycle.status()["processes"] >= 5  # etcd, apiserver, kcm, scheduler, kwok

    lifecycle.stop()

    assert lifecycle._leftover_pids() == []
    assert lifecycle.workdir not in " ".join(listeners(port)), f"port {port} still held"
    assert LocalCluster.load(lifecycle.name) is None


@pytest.mark.usefixtures("crds")
def test_the_api_server_rejects_a_model_name_too_long_for_labels(
    cluster: ClusterHandle, namespace: str
) -> None:
    with pytest.raises(client.ApiException) as raised:
        cluster.custom().create_namespaced_custom_object(
            "qmo.dev",
            "v1alpha1",
            namespace,
            "quantizedmodels",
            quantized_model("m" * 64, valid_spec()),
        )
    assert "at most 63 characters" in json.loads(raised.value.body)["message"]
