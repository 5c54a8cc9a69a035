"""Blackwell on the real control plane: a B200 node joins the mixed fleet; a gated model asking
for `auto` builds and serves nvfp4 there and, when a report regresses, falls back to fp8 on its
own; an ungated one gets fp8, and its Event says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.gate_scenario import gated, key_of, report, wait_event
from tests.support.kube import ClusterHandle, variants
from tests.support.scenario import a_model, create, events

pytestmark = pytest.mark.usefixtures("operator", "engine_store")

B200_FLEET = {
    "nodes": [
        {
            "name": "b200",
            "count": 1,
            "product": "NVIDIA-B200",
            "family": "blackwell",
            "computeCapability": "10.0",
            "memoryMiB": 183359,
            "gpus": 8,
        }
    ]
}


@pytest.fixture
def blackwell(cluster: ClusterHandle, tmp_path: Path) -> Iterator[None]:
    """A B200 node for the test, gone afterwards (the other tests see the mixed fleet)."""
    if cluster.local is None:
        pytest.skip("adds a node: needs the local control plane")
    fleet = tmp_path / "b200.yaml"
    fleet.write_text(yaml.safe_dump(B200_FLEET))
    names = cluster.local.add_fleet(fleet)
    try:
        yield
    finally:
        for name in names:
            cluster.kubectl("delete", "node", name, "--wait=false")


@pytest.mark.usefixtures("blackwell")
def test_a_gated_model_serves_nvfp4_on_b200_and_falls_back_to_fp8_on_a_regression(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        gated("nv", "after-rollout", "rollback", precisions=["auto"], gpu={"classes": ["b200"]}),
    )
    serving = cluster.wait_for_model(
        namespace,
        "nv",
        lambda m: variants(m).get("b200-nvfp4", {}).get("phase") == "Serving",
        timeout=240,
        describe="auto to serve nvfp4 on the B200",
    )
    nvfp4 = variants(serving)["b200-nvfp4"]
    assert (nvfp4["precision"], nvfp4["requestedPrecision"]) == ("nvfp4", "auto")
    # onRegression is rollback, and nvfp4 had no good revision: an auto nvfp4 falls back.
    report(cluster, namespace, "nv", "b200-nvfp4", key_of(serving, "b200-nvfp4"), arithmetic=0.70)
    fell_back = cluster.wait_for_model(
        namespace,
        "nv",
        lambda m: (
            variants(m).get("b200-fp8", {}).get("phase") in ("Serving", "Evaluating")
            and "b200-nvfp4" not in variants(m)
        ),
        timeout=240,
        describe="the fall back to fp8 on the B200",
    )
    assert variants(fell_back)["b200-fp8"]["precision"] == "fp8"
    event = wait_event(cluster, namespace, "nv", "FellBack")
    assert "fp8" in event.message


@pytest.mark.usefixtures("blackwell")
def test_an_ungated_model_gets_fp8_on_b200_and_the_event_says_why(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(cluster, namespace, a_model("plain", precisions=["auto"], gpu={"classes": ["b200"]}))
    ready = cluster.wait_for_model(
        namespace,
        "plain",
        lambda m: variants(m).get("b200-fp8", {}).get("phase") == "Serving",
        timeout=240,
        describe="auto to serve fp8 on the B200",
    )
    assert list(variants(ready)) == ["b200-fp8"]
    said = " ".join(e.message for e in events(cluster, namespace, "plain"))
    assert "fp8, not nvfp4, since no quality gate with benchmarks would catch a loss" in said
