"""Each named rule of the planner, alone: capability checks, rollout rules, gate rules and the
last-good-revision rule, table-driven, one sentence per case."""

from __future__ import annotations

from typing import Any

import pytest

from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import Precision
from qmo.planner import gate, revisions, rollout
from qmo.planner.decision import HoldAsCandidate, RolledBack, Withdrawn
from qmo.planner.plan import Candidate, first_refusal, plan_variant, resolve_precision
from qmo.planner.sizing import build_request
from qmo.planner.types import BuildObservation, DeploymentObservation, ReportObservation
from qmo.vocabulary import Action, BuildState, Phase, Reason
from tests.support.builders import a_class, a_cluster, a_model

H100, A100, L40S, T4 = a_class("h100"), a_class("a100"), a_class("l40s"), a_class("t4")


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [(A100, Precision.INT8), (H100, Precision.FP8), (L40S, Precision.FP8), (T4, Precision.BF16)],
    ids=[
        "an A100 with precision auto gets int8",
        "an H100 with precision auto gets fp8",
        "an L40S (Ada) with precision auto gets fp8",
        "a T4 with precision auto stays unquantized",
    ],
)
def test_resolve_precision(gpu: Any, expected: Precision) -> None:
    assert resolve_precision(Precision.AUTO, gpu, a_model().spec()) == expected


@pytest.mark.parametrize(
    ("gpu", "precision", "kv_refusal", "reason"),
    [
        (T4, Precision.BF16, None, Reason.GPU_UNSUPPORTED),
        (A100, Precision.FP8, None, Reason.PRECISION_UNSUPPORTED),
        (T4, Precision.FP8, None, Reason.GPU_UNSUPPORTED),
        (H100, Precision.FP8, "KvCacheUnsupported", Reason.KV_CACHE_UNSUPPORTED),
        (H100, Precision.FP8, None, None),
    ],
    ids=[
        "a T4 is refused before any precision is looked at",
        "fp8 on an A100 is refused: it needs compute capability 8.9",
        "the runtime check comes first when both would refuse",
        "the KV cache check comes last",
        "fp8 on an H100 passes every check",
    ],
)
def test_capability_checks_run_in_order(
    gpu: Any, precision: Precision, kv_refusal: str | None, reason: str | None
) -> None:
    from qmo.vocabulary import Refusal

    kv = Refusal(kv_refusal, "no such KV cache here") if kv_refusal else None
    found = first_refusal(Candidate(a_model().spec(), gpu, precision, "fp8", kv))
    assert (found.reason if found else None) == reason


SPEC = a_model().with_precisions("fp8").spec()
REQUEST = build_request(SPEC, H100, Precision.FP8, "fp8", 1)
KEY = REQUEST.cache_key


def deployment(revision: str = KEY, ready: int = 1) -> DeploymentObservation:
    return DeploymentObservation("llama-h100-fp8", 1, ready, ready, revision)


@pytest.mark.parametrize(
    ("build", "deployed", "expected"),
    [
        (None, None, (Action.BUILD, Phase.BUILDING, Reason.BUILD_SCHEDULED)),
        (
            BuildObservation(KEY, BuildState.PENDING, job="j", reason=Reason.UNSCHEDULABLE),
            None,
            (Action.WAIT, Phase.BUILDING, Reason.BUILD_WAITING_FOR_GPU),
        ),
        (
            BuildObservation(KEY, BuildState.RUNNING, job="j"),
            None,
            (Action.WAIT, Phase.BUILDING, Reason.BUILD_RUNNING),
        ),
        (
            BuildObservation(KEY, BuildState.FAILED, job="j", reason="OutOfMemory"),
            None,
            (Action.BLOCKED, Phase.BUILD_FAILED, "OutOfMemory"),
        ),
        (
            BuildObservation(KEY, BuildState.SUCCEEDED),
            deployment(),
            (Action.DEPLOY, Phase.SERVING, Reason.SERVING),
        ),
        (
            BuildObservation(KEY, BuildState.SUCCEEDED),
            deployment(ready=0),
            (Action.DEPLOY, Phase.DEPLOYING, Reason.ROLLING_OUT),
        ),
        (
            BuildObservation(KEY, BuildState.SUCCEEDED),
            deployment(revision="older"),
            (Action.DEPLOY, Phase.DEPLOYING, Reason.ROLLING_OUT),
        ),
    ],
    ids=[
        "not_built_yet: no build seen schedules one",
        "waiting_for_gpus: a build whose pods cannot schedule waits for GPUs",
        "building: a running build is waited for",
        "build_failed: a failed build blocks the variant with the builder's reason",
        "serving: the current revision with every replica ready serves",
        "rolling_out: a built revision with replicas not ready rolls out",
        "rolling_out: a Deployment on an older revision rolls out the new one",
    ],
)
def test_rollout_rules(
    build: BuildObservation | None,
    deployed: DeploymentObservation | None,
    expected: tuple[str, str, str],
) -> None:
    state = rollout.rollout_state(SPEC, REQUEST, build, deployed)
    assert (state.action, state.phase, state.reason) == expected


def report(verdict: Verdict, key: str = KEY) -> ReportObservation:
    return ReportObservation("r", "h100-fp8", key, verdict, "2.1% below the baseline")


GOOD = "g" * 64


@pytest.mark.parametrize(
    ("quality", "cluster", "expected"),
    [
        (
            {"onRegression": "ignore"},
            a_cluster(H100).built(KEY).reported("h100-fp8", KEY, Verdict.REGRESSED),
            gate.Keep,
        ),
        (
            {},
            a_cluster(H100)
            .built(KEY)
            .built(GOOD)
            .good_revision("h100-fp8", GOOD)
            .reported("h100-fp8", KEY, Verdict.REGRESSED),
            RolledBack,
        ),
        (
            {"onRegression": "fallback"},
            a_cluster(H100).built(KEY).reported("h100-fp8", KEY, Verdict.REGRESSED),
            gate.FallBack,
        ),
        (
            {},
            a_cluster(H100).built(KEY).reported("h100-fp8", KEY, Verdict.REGRESSED),
            Withdrawn,
        ),
        (
            {},
            a_cluster(H100)
            .built(KEY)
            .good_revision("h100-fp8", GOOD)
            .reported("h100-fp8", KEY, Verdict.REGRESSED),
            Withdrawn,
        ),
        ({"gate": "before-traffic"}, a_cluster(H100).built(KEY), HoldAsCandidate),
        (
            {"gate": "before-traffic"},
            a_cluster(H100).built(KEY).reported("h100-fp8", KEY, Verdict.PASS),
            gate.Keep,
        ),
    ],
    ids=[
        "regression_ignored: onRegression ignore keeps a regressed revision",
        "roll_back_to_last_good: a regression with a good revision built rolls back to it",
        "fall_back_down_the_ladder: a first rollout that regresses falls back a rung",
        "withdraw: a regression with nowhere to go stops serving",
        "a good revision whose artifact is gone cannot be rolled back to: withdraw",
        "hold_as_candidate: before-traffic runs an unjudged revision outside the Services",
        "a passing report lets a before-traffic revision serve",
    ],
)
def test_gate_rules(quality: dict[str, Any], cluster: Any, expected: type) -> None:
    spec = a_model().with_precisions("fp8").with_quality(**quality).spec()
    planned = plan_variant(spec, H100, Precision.FP8, cluster.observed(), reference=True)
    decision = gate.decide(spec, planned, cluster.observed())
    assert isinstance(decision, expected)
    if isinstance(decision, RolledBack):
        assert decision.revision == GOOD
    if isinstance(decision, gate.FallBack):
        assert decision.precision == Precision.BF16, "fp8 falls back to bf16 on an H100"


@pytest.mark.parametrize(
    ("timing", "precision", "judged"),
    [
        ("off", Precision.FP8, False),
        ("after-rollout", Precision.BF16, False),  # the baseline
        ("before-traffic", Precision.BF16, False),
        ("after-rollout", Precision.FP8, True),
        ("before-traffic", Precision.INT4_AWQ, True),
    ],
)
def test_the_gate_judges_quantized_variants_only_and_nothing_when_off(
    timing: str, precision: Precision, judged: bool
) -> None:
    spec = a_model().with_precisions(precision.value).with_quality(gate=timing).spec()
    planned = plan_variant(spec, H100, precision, a_cluster(H100).observed(), reference=True)
    assert gate.gated(spec, planned.target) is judged


def test_status_remembers_the_last_good_revision_over_the_newest_passing_report() -> None:
    assert revisions.known_good({"h100-fp8": "a"}, {"h100-fp8": "b", "l40s-fp8": "c"}) == {
        "h100-fp8": "a",
        "l40s-fp8": "c",
    }


@pytest.mark.parametrize(
    ("good_quality", "gated", "ready", "expected"),
    [
        (True, True, 1, KEY),
        (False, True, 1, "before"),
        (False, False, 1, KEY),
        (True, True, 0, "before"),
    ],
    ids=[
        "a serving revision that passed becomes the last good one",
        "a serving revision awaiting its report does not",
        "without a gate, serving is good enough",
        "a revision not ready on every replica does not",
    ],
)
def test_last_good_after(good_quality: bool, gated: bool, ready: int, expected: str) -> None:
    from qmo.api.quantizedmodel import VariantStatus

    spec = a_model().with_precisions("fp8").spec()
    observed = a_cluster(H100).built(KEY).deployed("h100-fp8", KEY, ready=ready).observed()
    planned = plan_variant(spec, H100, Precision.FP8, observed, reference=True)
    previous = VariantStatus.model_validate(
        {"name": "h100-fp8", "gpuClass": "h100", "computeCapability": "9.0", "precision": "fp8",
         "requestedPrecision": "fp8", "kvCacheDtype": "fp8", "phase": "Serving",
         "reason": "Serving", "message": "", "build": {"state": "Succeeded"},
         "lastGoodRevision": "before", "quality": {"verdict": "Pending"}}
    )  # fmt: skip
    found = revisions.last_good_after(planned, previous, good_quality, gated=gated, replicas=1)
    assert found == expected
