"""The gate's decisions for a variant, from the judged reports and the last good revision."""

from __future__ import annotations

from typing import Any

from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.gpu import inventory_from_nodes
from qmo.planner.plan import plan_model
from qmo.planner.types import (
    Action,
    BuildObservation,
    BuildState,
    DeploymentObservation,
    Observed,
    Phase,
    ReportObservation,
)

H100_NODE = {
    "metadata": {
        "name": "h100-0",
        "labels": {
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "nvidia.com/gpu.compute.major": "9",
            "nvidia.com/gpu.compute.minor": "0",
            "nvidia.com/gpu.memory": "81559",
        },
    },
    "spec": {},
    "status": {
        "allocatable": {"nvidia.com/gpu": "8"},
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def a_spec(
    gate: str = "after-rollout", on_regression: str = "rollback", **extra: Any
) -> QuantizedModelSpec:
    return QuantizedModelSpec.model_validate(
        {
            "model": {"source": "hf://org/model", "revision": "v2"},
            "precisions": extra.pop("precisions", ["fp8"]),
            "gpu": {"classes": ["h100"]},
            "quality": {"gate": gate, "onRegression": on_regression,
                        "benchmarks": [{"name": "mmlu"}]},
            **extra,
        }
    )  # fmt: skip


def observe(
    spec: QuantizedModelSpec,
    *,
    verdict: Verdict | None = None,
    last_good: str | None = None,
    built: bool = True,
) -> tuple[Observed, str]:
    """The current key of h100-fp8 built and deployed, with an optional verdict on it."""
    inventory = inventory_from_nodes([H100_NODE])
    bare = plan_model(spec, Observed(inventory))
    key = next(v.cache_key for v in bare.variants if v.name == "h100-fp8")
    assert key is not None
    builds = {key: BuildObservation(key, BuildState.SUCCEEDED)} if built else {}
    if last_good:
        builds[last_good] = BuildObservation(last_good, BuildState.SUCCEEDED)
    reports = {}
    if verdict is not None:
        reports[("h100-fp8", key)] = ReportObservation(
            "r", "h100-fp8", key, verdict, "regressed on mmlu +2.10%", "mmlu", 2.1
        )
    deployments = {"h100-fp8": DeploymentObservation("d", 1, 1, 1, key)}
    observed = Observed(
        inventory,
        builds=builds,
        deployments=deployments,
        reports=reports,
        last_good={"h100-fp8": last_good} if last_good else {},
    )
    return observed, key


def fp8(spec: QuantizedModelSpec, observed: Observed) -> Any:
    return next(v for v in plan_model(spec, observed).variants if v.name.startswith("h100-"))


def test_a_regression_with_a_good_revision_rolls_back_to_it() -> None:
    spec = a_spec()
    observed, key = observe(spec, verdict=Verdict.REGRESSED, last_good="g" * 64)
    variant = fp8(spec, observed)
    assert variant.phase == Phase.ROLLED_BACK
    assert variant.action == Action.DEPLOY
    assert variant.serve_key == "g" * 64
    assert variant.cache_key == key
    assert "mmlu +2.10%" in variant.message


def test_a_regression_without_a_good_revision_withdraws_under_rollback() -> None:
    spec = a_spec()
    observed, _ = observe(spec, verdict=Verdict.REGRESSED)
    variant = fp8(spec, observed)
    assert variant.action == Action.WITHDRAW
    assert variant.phase == Phase.REGRESSED
    assert variant.serve_key is None


def test_a_first_rollout_regression_falls_back_to_the_next_rung_under_fallback() -> None:
    spec = a_spec(on_regression="fallback")
    observed, key = observe(spec, verdict=Verdict.REGRESSED)
    variant = fp8(spec, observed)
    assert variant.name == "h100-bf16"
    assert variant.fell_back is not None
    assert variant.fell_back.origin == "h100-fp8"
    assert variant.superseded == (("h100-fp8", key),)
    assert variant.action == Action.BUILD


def test_ignore_keeps_serving_a_regressed_revision() -> None:
    spec = a_spec(on_regression="ignore")
    observed, key = observe(spec, verdict=Verdict.REGRESSED, last_good="g" * 64)
    variant = fp8(spec, observed)
    assert variant.serve_key == key
    assert variant.phase == Phase.SERVING


def test_before_traffic_keeps_an_unjudged_revision_on_the_candidate_track() -> None:
    spec = a_spec(gate="before-traffic")
    observed, _key = observe(spec, last_good="g" * 64)
    variant = fp8(spec, observed)
    assert variant.candidate
    assert variant.serve_key == "g" * 64
    assert variant.phase == Phase.EVALUATING


def test_before_traffic_promotes_a_passing_revision() -> None:
    spec = a_spec(gate="before-traffic")
    observed, key = observe(spec, verdict=Verdict.PASS, last_good="g" * 64)
    variant = fp8(spec, observed)
    assert not variant.candidate
    assert variant.serve_key == key


def test_an_invalid_report_decides_nothing() -> None:
    spec = a_spec(gate="before-traffic")
    observed, _ = observe(spec, verdict=Verdict.INVALID, last_good="g" * 64)
    variant = fp8(spec, observed)
    assert variant.candidate
    assert variant.phase == Phase.EVALUATING


def test_a_quantized_variant_awaiting_a_report_gets_a_temporary_bf16_reference() -> None:
    spec = a_spec()
    observed, _key = observe(spec)
    plan = plan_model(spec, observed)
    references = [v for v in plan.variants if v.reference]
    assert [v.name for v in references] == ["h100-bf16"]
    assert plan.main_variants == ("h100-fp8",)


def test_no_reference_is_planned_when_a_bf16_variant_is_requested() -> None:
    spec = a_spec(precisions=["bf16", "fp8"])
    observed, _ = observe(spec)
    assert not [v for v in plan_model(spec, observed).variants if v.reference]
