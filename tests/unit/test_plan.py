"""The plan: variants per GPU class and precision, their rollout state, notes, the main Service."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qmo.api.quantizedmodel import Precision
from qmo.planner.plan import plan_model
from qmo.planner.types import Action, Phase, Plan
from tests.support.builders import (
    ClusterBuilder,
    ModelBuilder,
    a_class,
    a_cluster,
    a_model,
    key_of,
    serving_plan,
    variant,
)

SPEC = a_model().with_precisions("fp8").ungated().spec()
KEY = key_of(SPEC, a_cluster(a_class("h100")), "h100-fp8")
OLD_KEY = "0" * 64

Observe = Callable[[ClusterBuilder], ClusterBuilder]


@pytest.mark.parametrize(
    ("observe", "action", "phase", "reason", "message"),
    [
        pytest.param(
            lambda c: c,
            Action.BUILD,
            Phase.BUILDING,
            "BuildScheduled",
            "a build Job will be created",
            id="no-build-builds",
        ),
        pytest.param(
            lambda c: c.building(KEY, job="qmo-build-h100-fp8-abc"),
            Action.WAIT,
            Phase.BUILDING,
            "BuildRunning",
            "build Job qmo-build-h100-fp8-abc is running",
            id="a-running-job-waits",
        ),
        pytest.param(
            lambda c: c.failed(KEY, "GpuMismatch", "scheduled on an A100, built for an H100"),
            Action.BLOCKED,
            Phase.BUILD_FAILED,
            "GpuMismatch",
            "scheduled on an A100, built for an H100",
            id="a-failed-build-blocks-with-the-observed-reason",
        ),
        pytest.param(
            lambda c: c.built(KEY),
            Action.DEPLOY,
            Phase.DEPLOYING,
            "RollingOut",
            "0/1 replica(s) ready",
            id="built-without-deployment-deploys",
        ),
        pytest.param(
            lambda c: c.built(KEY).deployed("h100-fp8", KEY, ready=1),
            Action.DEPLOY,
            Phase.SERVING,
            "Serving",
            "1 replica(s) ready",
            id="built-and-ready-at-the-key-serves",
        ),
        pytest.param(
            lambda c: c.built(KEY).deployed("h100-fp8", KEY, ready=0),
            Action.DEPLOY,
            Phase.DEPLOYING,
            "RollingOut",
            "0/1 replica(s) ready",
            id="built-and-deployed-but-not-ready",
        ),
        pytest.param(
            lambda c: c.built(KEY).deployed("h100-fp8", OLD_KEY, ready=1),
            Action.DEPLOY,
            Phase.DEPLOYING,
            "RollingOut",
            "1/1 replica(s) ready",
            id="built-but-deployment-at-an-older-revision",
        ),
        pytest.param(
            lambda c: c.building(KEY).deployed("h100-fp8", OLD_KEY, ready=1),
            Action.WAIT,
            Phase.BUILDING,
            "BuildRunning",
            "build Job qmo-build-job is running",
            id="a-new-revision-building-while-the-old-one-serves",
        ),
    ],
)
def test_a_buildable_variant_moves_from_build_to_serving(
    observe: Observe, action: Action, phase: Phase, reason: str, message: str
) -> None:
    planned = variant(plan_model(SPEC, observe(a_cluster(a_class("h100"))).observed()), "h100-fp8")
    assert (planned.action, planned.phase, planned.reason, planned.message) == (
        action,
        phase,
        reason,
        message,
    )
    assert planned.cache_key == KEY


def test_a_failed_build_without_a_reason_is_build_failed() -> None:
    cluster = a_cluster(a_class("h100"))
    cluster.failed(KEY, "", "")
    planned = variant(plan_model(SPEC, cluster.observed()), "h100-fp8")
    assert (planned.action, planned.phase, planned.reason) == (
        Action.BLOCKED,
        Phase.BUILD_FAILED,
        "BuildFailed",
    )
    assert planned.message == "the build Job failed"


def test_serving_needs_every_replica_ready_and_updated() -> None:
    spec = a_model().with_precisions("fp8").with_replicas(3).ungated().spec()
    key = key_of(spec, a_cluster(a_class("h100")), "h100-fp8")
    partly = a_cluster(a_class("h100")).built(key).deployed("h100-fp8", key, ready=2, replicas=3)
    fully = a_cluster(a_class("h100")).built(key).deployed("h100-fp8", key, ready=3, replicas=3)
    assert variant(plan_model(spec, partly.observed()), "h100-fp8").message == (
        "2/3 replica(s) ready"
    )
    assert variant(plan_model(spec, fully.observed()), "h100-fp8").phase == Phase.SERVING


# --- Claims the build pods mount ------------------------------------------------------------


@pytest.mark.parametrize(
    ("observe", "action", "reason"),
    [
        pytest.param(lambda c: c, Action.BLOCKED, "EngineStoreNotFound", id="would-build"),
        pytest.param(lambda c: c.building(KEY), Action.WAIT, "BuildRunning", id="already-building"),
        pytest.param(lambda c: c.built(KEY), Action.DEPLOY, "RollingOut", id="already-built"),
    ],
)
def test_a_missing_engine_store_claim_blocks_only_variants_that_would_build(
    observe: Observe, action: Action, reason: str
) -> None:
    cluster = observe(a_cluster(a_class("h100")).with_claims("something-else"))
    planned = variant(plan_model(SPEC, cluster.observed()), "h100-fp8")
    assert (planned.action, planned.reason) == (action, reason)


def test_a_blocked_build_says_which_claim_is_missing_and_what_to_do() -> None:
    cluster = a_cluster(a_class("h100")).with_claims()
    planned = variant(plan_model(SPEC, cluster.observed()), "h100-fp8")
    assert (planned.action, planned.phase) == (Action.BLOCKED, Phase.PENDING)
    assert "engine store claim qmo-engines does not exist" in planned.message
    assert "engine.store.create: true" in planned.message


@pytest.mark.parametrize(
    ("spec_builder", "claims", "action", "reason"),
    [
        pytest.param(
            a_model().with_precisions("fp8").with_store("engines", create=True),
            (),
            Action.BUILD,
            "BuildScheduled",
            id="a-store-qmo-creates-need-not-exist",
        ),
        pytest.param(
            a_model().with_precisions("fp8").from_source("pvc://checkpoints/llama"),
            ("qmo-engines",),
            Action.BLOCKED,
            "SourceClaimNotFound",
            id="a-missing-pvc-source",
        ),
        pytest.param(
            a_model().with_precisions("fp8").from_source("pvc://checkpoints/llama"),
            ("qmo-engines", "checkpoints"),
            Action.BUILD,
            "BuildScheduled",
            id="both-claims-present",
        ),
    ],
)
def test_claims_are_checked_before_a_build_is_scheduled(
    spec_builder: ModelBuilder, claims: tuple[str, ...], action: Action, reason: str
) -> None:
    spec = spec_builder.spec()
    cluster = a_cluster(a_class("h100")).with_claims(*claims)
    planned = variant(plan_model(spec, cluster.observed()), "h100-fp8")
    assert (planned.action, planned.reason) == (action, reason)


def test_claims_that_were_not_looked_up_are_assumed_present() -> None:
    planned = variant(plan_model(SPEC, a_cluster(a_class("h100")).observed()), "h100-fp8")
    assert planned.action == Action.BUILD


# --- Classes and notes ----------------------------------------------------------------------


def test_auto_plans_one_variant_per_class_with_its_own_precision() -> None:
    spec = a_model().spec()
    cluster = a_cluster(a_class("a100"), a_class("h100"), a_class("l40s"), a_class("b200"))
    plan = plan_model(spec, cluster.observed())
    assert [v.name for v in plan.variants] == [
        "a100-80gb-int8",
        "h100-fp8",
        "l40s-fp8",
        "b200-fp8",
    ]
    assert plan.notes == ()


def test_explicit_precisions_give_every_class_every_precision() -> None:
    spec = a_model().with_precisions("fp8", "bf16").spec()
    plan = plan_model(spec, a_cluster(a_class("a100"), a_class("h100")).observed())
    by_name = {v.name: v.action for v in plan.variants}
    assert by_name == {
        "a100-80gb-fp8": Action.BLOCKED,
        "a100-80gb-bf16": Action.BUILD,
        "h100-fp8": Action.BUILD,
        "h100-bf16": Action.BUILD,
    }


def _notes(plan: Plan) -> dict[str, str]:
    return {n.reason: n.message for n in plan.notes}


def test_a_named_class_that_is_absent_is_a_note_and_the_present_one_is_planned() -> None:
    spec = a_model().with_precisions("fp8").on_classes("h100", "h200").spec()
    plan = plan_model(spec, a_cluster(a_class("h100"), a_class("l40s")).observed())
    assert [v.name for v in plan.variants] == ["h100-fp8"]
    assert _notes(plan) == {
        "GpuClassNotFound": "GPU class h200 is not among schedulable nodes (present: h100, l40s)"
    }


def test_auto_classes_with_no_gpu_nodes_plan_nothing_and_say_so() -> None:
    plan = plan_model(a_model().spec(), a_cluster().observed())
    assert plan.variants == ()
    assert set(_notes(plan)) == {"NoGpuClasses"}


def test_a_node_with_an_unknown_gpu_is_a_note() -> None:
    cluster = a_cluster(a_class("h100")).with_unknown(
        "gpu-7", "NVIDIA-Mystery-9000", "no compute capability labels"
    )
    plan = plan_model(SPEC, cluster.observed())
    assert _notes(plan) == {
        "UnknownGpu": "nodes with GPU NVIDIA-Mystery-9000: no compute capability labels; "
        "qmo places no variant on them"
    }
    assert [v.name for v in plan.variants] == ["h100-fp8"]


@pytest.mark.parametrize(
    ("revision", "noted"),
    [pytest.param(None, True, id="unpinned"), pytest.param("0e9e39f", False, id="pinned")],
)
def test_an_unpinned_revision_is_a_note(revision: str | None, noted: bool) -> None:
    spec = a_model().with_revision(revision).spec()
    plan = plan_model(spec, a_cluster(a_class("h100")).observed())
    assert ("UnpinnedRevision" in _notes(plan)) is noted
    assert variant(plan, "h100-fp8").action == Action.BUILD  # a note, not a block


# --- The main Service -----------------------------------------------------------------------


def test_auto_precisions_put_every_runnable_variant_behind_the_main_service() -> None:
    plan = plan_model(a_model().spec(), a_cluster(a_class("a100"), a_class("h100")).observed())
    assert plan.main_precision is None
    assert plan.main_variants == ("a100-80gb-int8", "h100-fp8")


def test_auto_precisions_leave_a_blocked_class_out_of_the_main_service() -> None:
    plan = plan_model(a_model().spec(), a_cluster(a_class("t4"), a_class("h100")).observed())
    assert plan.main_precision is None
    assert plan.main_variants == ("h100-fp8",)


@pytest.mark.parametrize(
    ("precisions", "default", "expected", "members"),
    [
        pytest.param(
            ("fp8", "int8"), "int8", Precision.INT8, ("a100-80gb-int8", "h100-int8"), id="int8"
        ),
        pytest.param(
            ("fp8", "bf16"), "bf16", Precision.BF16, ("a100-80gb-bf16", "h100-bf16"), id="bf16"
        ),
        pytest.param(("fp8", "bf16"), "fp8", Precision.FP8, ("h100-fp8",), id="fp8-skips-a100"),
        pytest.param(("auto",), "fp8", Precision.FP8, ("h100-fp8",), id="auto-with-default-fp8"),
    ],
)
def test_an_explicit_serving_default_is_honoured(
    precisions: tuple[str, ...], default: str, expected: Precision, members: tuple[str, ...]
) -> None:
    spec = a_model().with_precisions(*precisions).serving_default(default).spec()
    plan = plan_model(spec, a_cluster(a_class("a100"), a_class("h100")).observed())
    assert (plan.main_precision, plan.main_variants) == (expected, members)


def test_with_default_auto_a_serving_fp8_is_preferred_over_int8_int4_and_bf16() -> None:
    spec = a_model().with_precisions("int4-awq", "bf16", "int8", "fp8").ungated().spec()
    plan = serving_plan(spec, a_class("h100"))
    assert all(v.phase == Phase.SERVING for v in plan.variants)
    assert (plan.main_precision, plan.main_variants) == (Precision.FP8, ("h100-fp8",))


def test_with_default_auto_what_serves_wins_over_what_is_still_building() -> None:
    spec = a_model().with_precisions("fp8", "int8").ungated().spec()
    h100 = a_cluster(a_class("h100"))
    int8 = key_of(spec, h100, "h100-int8")
    cluster = h100.built(int8).deployed("h100-int8", int8)
    plan = plan_model(spec, cluster.observed())
    assert variant(plan, "h100-fp8").phase == Phase.BUILDING
    assert (plan.main_precision, plan.main_variants) == (Precision.INT8, ("h100-int8",))


@pytest.mark.parametrize(
    ("precisions", "kind", "expected"),
    [
        pytest.param(("int8", "fp8"), "h100", Precision.FP8, id="fp8-first-on-hopper"),
        pytest.param(("fp8", "int8"), "a100", Precision.INT8, id="int8-when-fp8-cannot-run"),
        pytest.param(("bf16", "int4-awq"), "h100", Precision.INT4_AWQ, id="int4-before-bf16"),
        pytest.param(("bf16", "int4-gptq"), "a100", Precision.INT4_GPTQ, id="gptq-before-bf16"),
    ],
)
def test_with_default_auto_and_nothing_serving_the_preference_among_runnable_precisions(
    precisions: tuple[str, ...], kind: str, expected: Precision
) -> None:
    spec = a_model().with_precisions(*precisions).spec()
    plan = plan_model(spec, a_cluster(a_class(kind)).observed())
    assert not any(v.phase == Phase.SERVING for v in plan.variants)
    assert plan.main_precision == expected
    assert [variant(plan, name).precision for name in plan.main_variants] == [expected]


def test_with_nothing_runnable_the_main_service_selects_no_variant() -> None:
    spec = a_model().with_precisions("fp8").spec()
    plan = plan_model(spec, a_cluster(a_class("a100")).observed())
    assert (plan.main_precision, plan.main_variants) == (None, ())
