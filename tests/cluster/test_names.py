"""No object is shared between two models (qmo.controller.ownership), on the real control
plane: a model whose derived name another model already holds is refused, never handed it."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.support.gate_scenario import wait_event
from tests.support.kube import ClusterHandle, condition, is_ready, variants
from tests.support.scenario import a_model, create, events, patch_spec, wait_ready

pytestmark = pytest.mark.usefixtures("operator", "engine_store")


def test_a_model_named_like_another_models_variant_service_is_refused_and_takes_nothing(
    cluster: ClusterHandle, namespace: str
) -> None:
    # llama's fp8 variant on h100 serves through the Service llama-h100-fp8: the very name a
    # model called llama-h100-fp8 gives its main Service.
    create(cluster, namespace, a_model("llama", precisions=["fp8"], gpu={"classes": ["h100"]}))
    llama = wait_ready(cluster, namespace, "llama")
    held = cluster.core().read_namespaced_service("llama-h100-fp8", namespace)

    create(
        cluster,
        namespace,
        a_model("llama-h100-fp8", precisions=["bf16"], gpu={"classes": ["h100"]}),
    )
    refused = cluster.wait_for_model(
        namespace,
        "llama-h100-fp8",
        lambda m: (
            condition(m, "Ready").get("reason") == "NameTaken"
            and variants(m).get("h100-bf16", {}).get("phase") == "Serving"
        ),
        timeout=90,
        describe="the second model to serve its variant and refuse the taken name",
    )
    # And llama reconciles after it: a new replica count is one more apply of its children.
    patch_spec(cluster, namespace, "llama", {"serving": {"replicas": 2}})
    cluster.wait_for_model(
        namespace,
        "llama",
        lambda m: (
            is_ready(m)
            and m["status"]["observedGeneration"] == m["metadata"]["generation"]
            and variants(m)["h100-fp8"]["readyReplicas"] == 2
        ),
        describe="llama to reconcile its new replica count",
    )

    service = cluster.core().read_namespaced_service("llama-h100-fp8", namespace)
    assert service.spec.selector == held.spec.selector
    assert service.spec.selector["qmo.dev/model"] == "llama"
    assert service.spec.selector["qmo.dev/variant"] == "h100-fp8"
    assert [(r.name, r.uid) for r in service.metadata.owner_references] == [
        ("llama", llama["metadata"]["uid"])
    ]
    assert service.metadata.resource_version == held.metadata.resource_version, "untouched"

    degraded = condition(refused, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "NameTaken")
    assert "Service llama-h100-fp8 belongs to QuantizedModel llama" in degraded["message"]
    assert refused["status"].get("service") is None
    assert variants(refused)["h100-bf16"]["service"] == "llama-h100-fp8-h100-bf16"
    wait_event(cluster, namespace, "llama-h100-fp8", "NameTaken")  # it follows the status
    warnings = [e for e in events(cluster, namespace, "llama-h100-fp8") if e.reason == "NameTaken"]
    assert [(e.type, e.count or 1) for e in warnings] == [("Warning", 1)]
    assert not [e for e in events(cluster, namespace, "llama") if e.type == "Warning"]


def test_a_service_made_by_hand_under_the_models_name_is_left_alone_until_it_is_gone(
    cluster: ClusterHandle, namespace: str
) -> None:
    theirs = cluster.core().create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="chat", labels={"app": "by-hand"}),
            spec=client.V1ServiceSpec(
                selector={"app": "by-hand"}, ports=[client.V1ServicePort(port=8080)]
            ),
        ),
    )
    create(cluster, namespace, a_model("chat", precisions=["fp8"], gpu={"classes": ["h100"]}))
    refused = cluster.wait_for_model(
        namespace,
        "chat",
        lambda m: (
            condition(m, "Degraded").get("reason") == "NameTaken"
            and variants(m).get("h100-fp8", {}).get("phase") == "Serving"
        ),
        describe="the model to serve its variant and refuse the hand-made Service's name",
    )
    assert (
        "Service chat exists and was not made by qmo" in condition(refused, "Degraded")["message"]
    )
    assert refused["status"].get("service") is None
    wait_event(cluster, namespace, "chat", "NameTaken")
    service = cluster.core().read_namespaced_service("chat", namespace)
    assert service.metadata.resource_version == theirs.metadata.resource_version, "untouched"
    assert service.spec.selector == {"app": "by-hand"}

    # Its owner deletes it and asks for a retry now (else the backoff's next one, within
    # 5 minutes, would): the model's own Service is created.
    cluster.core().delete_namespaced_service("chat", namespace)
    annotate = {"metadata": {"annotations": {"qmo.dev/retry": "hand-made-service-gone"}}}
    cluster.custom().patch_namespaced_custom_object(
        "qmo.dev", "v1alpha1", namespace, "quantizedmodels", "chat", annotate
    )
    ready = wait_ready(cluster, namespace, "chat")
    assert ready["status"]["service"] == "chat"
    service = cluster.core().read_namespaced_service("chat", namespace)
    assert service.spec.selector["qmo.dev/model"] == "chat"
