"""The serving-safety audit's reproductions (issue 21, items 1 and 2) on the real control
plane: a routine change never takes down what serves. The same sequences run as whole
reconciles on the fake API in tests/unit/test_serving_safety.py."""

from __future__ import annotations

import pytest

from tests.support.gate_scenario import gated, key_of, report, wait_event
from tests.support.kube import ClusterHandle, condition, is_ready, variants
from tests.support.scenario import create, deployment, events, patch_spec

pytestmark = pytest.mark.usefixtures("operator", "engine_store")


def main_precision(cluster: ClusterHandle, namespace: str, model: str) -> str | None:
    service = cluster.core().read_namespaced_service(model, namespace)
    return (service.spec.selector or {}).get("qmo.dev/precision")


def test_a_new_revision_after_a_fallback_keeps_the_fallback_serving(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        gated("kept", "after-rollout", "fallback", precisions=["int4-awq"],
              gpu={"classes": ["h100"]}),
    )  # fmt: skip
    first = cluster.wait_for_model(
        namespace, "kept", lambda m: variants(m).get("h100-int4-awq", {}).get("phase") == "Serving"
    )
    report(cluster, namespace, "kept", "h100-int4-awq", key_of(first, "h100-int4-awq"),
           wikitext=10.5)  # fmt: skip
    fallen = cluster.wait_for_model(
        namespace,
        "kept",
        lambda m: variants(m).get("h100-int8", {}).get("phase") == "Serving",
        describe="int8 to serve after the fallback",
    )
    int8_v1 = key_of(fallen, "h100-int8")
    report(cluster, namespace, "kept", "h100-int8", int8_v1)
    cluster.wait_for_model(
        namespace, "kept", lambda m: variants(m)["h100-int8"].get("lastGoodRevision") == int8_v1
    )

    patch_spec(cluster, namespace, "kept", {"model": {"revision": "v2"}})
    v2 = cluster.wait_for_model(
        namespace,
        "kept",
        lambda m: (
            m["status"]["observedGeneration"] == m["metadata"]["generation"]
            and variants(m).get("h100-int4-awq", {}).get("phase") == "Serving"
        ),
        describe="int4-awq at v2 to serve beside the kept int8",
    )
    int8 = variants(v2)["h100-int8"]
    assert int8["reason"] == "KeptUntilReplaced"
    assert (
        deployment(cluster, namespace, "kept-h100-int8").metadata.annotations["qmo.dev/revision"]
        == int8_v1
    )
    assert main_precision(cluster, namespace, "kept") == "int8"
    assert is_ready(v2)

    report(cluster, namespace, "kept", "h100-int4-awq", key_of(v2, "h100-int4-awq"))
    cluster.wait_for_model(
        namespace, "kept", lambda m: "h100-int8" not in variants(m), describe="int8 to go"
    )
    assert main_precision(cluster, namespace, "kept") == "int4-awq"


def test_a_tighter_threshold_keeps_the_last_good_revision_serving(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        gated("strict", "after-rollout", "rollback", precisions=["bf16", "fp8"],
              gpu={"classes": ["h100"]}),
    )  # fmt: skip
    ready = cluster.wait_for_model(namespace, "strict", is_ready)
    key = key_of(ready, "h100-fp8")
    report(cluster, namespace, "strict", "h100-fp8", key, arithmetic=0.79)  # -1.25%: passes
    cluster.wait_for_model(
        namespace, "strict", lambda m: variants(m)["h100-fp8"].get("lastGoodRevision") == key
    )

    patch_spec(cluster, namespace, "strict", {"quality": {"maxRegressionPercent": 1.0}})
    judged = cluster.wait_for_model(
        namespace,
        "strict",
        lambda m: variants(m)["h100-fp8"]["reason"] == "RegressedWhileGood",
        describe="fp8 judged again under the tighter threshold",
    )
    fp8 = variants(judged)["h100-fp8"]
    assert fp8["phase"] == "Serving"
    assert (
        deployment(cluster, namespace, "strict-h100-fp8").metadata.annotations["qmo.dev/revision"]
        == key
    )
    assert condition(judged, "QualityGate")["reason"] == "Regressed"
    assert wait_event(cluster, namespace, "strict", "RegressedWhileGood").type == "Warning"
    assert "Withdrawn" not in [e.reason for e in events(cluster, namespace, "strict")]
