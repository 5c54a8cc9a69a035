"""No object is shared between two models (qmo.controller.ownership), on the real control
plane: a model whose derived name another model already holds is refused, never handed it."""

from __future__ import annotations

import pytest

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
