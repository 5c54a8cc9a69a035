"""Autoscaling on the real control plane: the HorizontalPodAutoscaler qmo writes is accepted by
the API server and targets the variant's Deployment; turning autoscaling on keeps the running
replica count (server-side apply would otherwise reset a field qmo stops naming); qmo's later
applies leave the count the scaler set; KEDA's own CRD accepts the ScaledObject qmo writes.

The HPA controller in kube-controller-manager scales a variant from a metric served through
the aggregation layer by a stand-in adapter (tests/support/metrics_standin.py), and qmo leaves
the count it set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.kube import ClusterHandle, apply_keda_crds, variants, wait_for
from tests.support.metrics_standin import GROUP, VERSION, MetricsStandIn, host_address, serving
from tests.support.scenario import a_model, create, deployment, patch_spec, wait_ready

pytestmark = pytest.mark.usefixtures("operator", "engine_store")

FP8_ON_H100 = {"precisions": ["fp8"], "gpu": {"classes": ["h100"]}}
PROMETHEUS = "http://prometheus.monitoring.svc:9090"


def hpa(cluster: ClusterHandle, namespace: str, name: str) -> Any:
    return wait_for(
        cluster.autoscaling().list_namespaced_horizontal_pod_autoscaler,
        lambda h: h.metadata.name == name,
        namespace=namespace,
        timeout=120,
        describe=f"the HorizontalPodAutoscaler {name}",
    )


def managers_of_replicas(cluster: ClusterHandle, namespace: str, name: str) -> set[str]:
    """The field managers that own the Deployment's spec.replicas."""
    owners = set()
    for entry in deployment(cluster, namespace, name).metadata.managed_fields or []:
        spec = (entry.fields_v1 or {}).get("f:spec") or {}
        if "f:replicas" in spec:
            owners.add(entry.manager)
    return owners


def settled(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    """The model once it has reconciled its latest spec and is Ready."""
    return cluster.wait_for_model(
        namespace,
        name,
        lambda m: (
            m.get("status", {}).get("observedGeneration") == m["metadata"]["generation"]
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in m.get("status", {}).get("conditions", [])
            )
        ),
        timeout=180,
        describe=f"{name} to reconcile its spec",
    )


def test_autoscaling_turned_on_keeps_the_running_count_and_leaves_it_to_the_scaler(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("scaled", **FP8_ON_H100, serving={"replicas": 2}))
    wait_ready(cluster, namespace, "scaled")
    assert deployment(cluster, namespace, "scaled-h100-fp8").spec.replicas == 2
    assert "qmo" in managers_of_replicas(cluster, namespace, "scaled-h100-fp8")

    patch_spec(
        cluster, namespace, "scaled",
        {"serving": {"replicas": None, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}},
    )  # fmt: skip
    found = hpa(cluster, namespace, "scaled-h100-fp8")
    assert found.spec.scale_target_ref.name == "scaled-h100-fp8"
    assert found.spec.metrics[0].pods.metric.name == "trtllm_num_requests_waiting"
    settled(cluster, namespace, "scaled")

    live = deployment(cluster, namespace, "scaled-h100-fp8")
    assert live.spec.replicas == 2, "the apply that no longer names replicas reset them"
    assert live.metadata.annotations["qmo.dev/replicas"] == "autoscaled"
    owners = managers_of_replicas(cluster, namespace, "scaled-h100-fp8")
    assert "qmo" not in owners
    assert "qmo-replicas-handover" in owners

    # The scaler sets 3 (as the HPA controller does, through the scale subresource); then a
    # spec edit makes qmo apply the Deployment again (a new startup timeout changes its probes).
    cluster.kubectl("scale", "deployment/scaled-h100-fp8", "--replicas=3", "-n", namespace)
    patch_spec(cluster, namespace, "scaled", {"serving": {"startupTimeoutSeconds": 900}})
    model = settled(cluster, namespace, "scaled")
    live = deployment(cluster, namespace, "scaled-h100-fp8")
    probe = live.spec.template.spec.containers[0].startup_probe
    assert probe.failure_threshold * probe.period_seconds >= 900  # qmo applied it again
    assert live.spec.replicas == 3, "qmo's apply fought the scaler"
    scaling = variants(model)["h100-fp8"]["autoscaling"]
    assert (scaling["engine"], scaling["minReplicas"]) == ("hpa", 1)
    assert 1 <= scaling["maxReplicas"] <= 4

    # Off again: the HPA goes and qmo owns a fixed count once more.
    patch_spec(cluster, namespace, "scaled", {"serving": {"autoscaling": None, "replicas": 2}})
    settled(cluster, namespace, "scaled")
    wait_for(
        cluster.apps().list_namespaced_deployment,
        lambda d: d.metadata.name == "scaled-h100-fp8" and d.spec.replicas == 2,
        namespace=namespace,
        timeout=120,
        describe="the fixed count applied again",
    )
    remaining = cluster.autoscaling().list_namespaced_horizontal_pod_autoscaler(namespace).items
    assert [h.metadata.name for h in remaining] == []


def test_keda_accepts_the_scaled_object_qmo_writes(cluster: ClusterHandle, namespace: str) -> None:
    apply_keda_crds(cluster)
    scaling = {"maxReplicas": 3, "engine": "keda", "prometheusAddress": PROMETHEUS}
    create(cluster, namespace, a_model("keda", **FP8_ON_H100, serving={"autoscaling": scaling}))

    scaled = wait_for(
        cluster.custom().list_namespaced_custom_object,
        lambda s: s["metadata"]["name"] == "keda-h100-fp8",
        group="keda.sh",
        version="v1alpha1",
        plural="scaledobjects",
        namespace=namespace,
        timeout=180,
        describe="the ScaledObject, accepted by KEDA's CRD",
    )
    assert scaled["spec"]["scaleTargetRef"]["name"] == "keda-h100-fp8"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["serverAddress"] == PROMETHEUS
    # The status follows the writes of the reconcile that made it (and KEDA's CRD is found at
    # most 10 s after it was installed): wait for it, do not race it.
    cluster.wait_for_model(
        namespace,
        "keda",
        lambda m: (
            (variants(m).get("h100-fp8", {}).get("autoscaling") or {}).get("engine") == "keda"
        ),
        timeout=120,
        describe="the status to name KEDA as the variant's scaler",
    )
    # Created without a count: the API server's default, for the scaler to move.
    assert deployment(cluster, namespace, "keda-h100-fp8").spec.replicas == 1


def test_a_variant_whose_pods_cannot_be_placed_says_what_the_scheduler_says(
    cluster: ClusterHandle, namespace: str
) -> None:
    # The fleet's one L40S node has 4 GPUs: the fifth and sixth replica cannot be placed.
    spec = {"precisions": ["fp8"], "gpu": {"classes": ["l40s"]}, "serving": {"replicas": 6}}
    create(cluster, namespace, a_model("crowded", **spec))
    waiting = cluster.wait_for_model(
        namespace,
        "crowded",
        lambda m: "pods wait for room" in variants(m).get("l40s-fp8", {}).get("message", ""),
        timeout=180,
        describe="the variant to carry the scheduler's reason",
    )
    message = variants(waiting)["l40s-fp8"]["message"]
    assert "Insufficient nvidia.com/gpu" in message, message
    # Give the class back to the tests that follow.
    patch_spec(cluster, namespace, "crowded", {"serving": {"replicas": 1}})
    settled(cluster, namespace, "crowded")


def test_the_hpa_controller_scales_a_variant_from_its_metric_and_qmo_leaves_the_count(
    cluster: ClusterHandle, namespace: str
) -> None:
    address = host_address()
    if cluster.local is None or address is None:
        pytest.skip("needs the local control plane and a non-loopback address to serve on")
    pki = Path(cluster.local.workdir) / "clusters" / cluster.local.name / "pki"
    standin = MetricsStandIn(cluster.core(), "trtllm_num_requests_waiting")
    with (
        serving(standin, address, pki / "admin.crt", pki / "admin.key") as port,
        registered(cluster, namespace, address, port),
    ):
        scaling = {"minReplicas": 1, "maxReplicas": 4, "target": 4}
        create(cluster, namespace, a_model("busy", **FP8_ON_H100, serving={"autoscaling": scaling}))
        settled(cluster, namespace, "busy")
        hpa(cluster, namespace, "busy-h100-fp8")
        # 10 requests wait at the one replica, 4 a replica is the target: the HPA wants 3 (and
        # at 3, 3.3 each, it holds).
        standin.total = 10.0
        wait_for(
            cluster.apps().list_namespaced_deployment,
            lambda d: d.metadata.name == "busy-h100-fp8" and (d.spec.replicas or 0) >= 3,
            namespace=namespace,
            timeout=180,
            describe="the HPA controller to scale the variant out",
        )
        assert standin.requests > 0
        model = cluster.wait_for_model(
            namespace,
            "busy",
            lambda m: (
                (variants(m)["h100-fp8"].get("autoscaling") or {}).get("replicas") == 3
                and variants(m)["h100-fp8"]["readyReplicas"] == 3
            ),
            timeout=180,
            describe="the status to show the scaler's count, all of it ready",
        )
        assert variants(model)["h100-fp8"]["autoscaling"]["engine"] == "hpa"
        assert deployment(cluster, namespace, "busy-h100-fp8").spec.replicas == 3
        assert "qmo" not in managers_of_replicas(cluster, namespace, "busy-h100-fp8")


@contextmanager
def registered(cluster: ClusterHandle, namespace: str, address: str, port: int) -> Iterator[None]:
    """The stand-in behind an APIService (a Service without selector, its Endpoints this
    machine's address), Available; removed afterwards, so discovery stays whole."""
    name = f"v1beta2.{GROUP}"
    core = cluster.core()
    service_port = client.V1ServicePort(name="https", port=443, target_port=port)
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="metrics-standin"),
            spec=client.V1ServiceSpec(ports=[service_port]),
        ),
    )
    core.create_namespaced_endpoints(
        namespace,
        client.V1Endpoints(
            metadata=client.V1ObjectMeta(name="metrics-standin"),
            subsets=[
                client.V1EndpointSubset(
                    addresses=[client.V1EndpointAddress(ip=address)],
                    ports=[client.CoreV1EndpointPort(name="https", port=port)],
                )
            ],
        ),
    )
    registration = client.ApiregistrationV1Api(cluster.api)
    body = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": name},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"namespace": namespace, "name": "metrics-standin", "port": 443},
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    registration.create_api_service(body)
    try:
        wait_for(
            registration.list_api_service,
            lambda s: (
                s.metadata.name == name
                and any(
                    c.type == "Available" and c.status == "True" for c in s.status.conditions or []
                )
            ),
            timeout=120,
            describe="the stand-in's APIService to be Available",
        )
        yield
    finally:
        registration.delete_api_service(name)
