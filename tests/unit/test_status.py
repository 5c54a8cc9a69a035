"""Status and Events: conditions for typical plans, stable transition times, no repeated Events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from qmo import conditions
from qmo.api.base import Condition, ConditionStatus
from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import QuantizedModelSpec, QuantizedModelStatus
from qmo.gpu import GpuInventory
from qmo.manifests import names
from qmo.planner.events import Event, decisions
from qmo.planner.plan import plan_model
from qmo.planner.status import Names, build_status
from qmo.planner.types import Observed, Plan
from qmo.vocabulary import ConditionType
from tests.support.builders import (
    ClusterBuilder,
    a_class,
    a_cluster,
    a_model,
    key_of,
    serving_plan,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


# --- set_condition ----------------------------------------------------------------------------


def _set(
    current: list[Condition], status: ConditionStatus, reason: str, now: datetime, gen: int = 1
) -> list[Condition]:
    return conditions.set_condition(
        current, ConditionType.READY, status, reason, f"{reason}.", generation=gen, now=now
    )


def test_a_new_condition_starts_its_clock_now_and_records_the_generation() -> None:
    (ready,) = _set([], FALSE, "VariantsNotReady", T0, gen=3)
    assert (ready.type, ready.status, ready.reason, ready.message) == (
        "Ready",
        FALSE,
        "VariantsNotReady",
        "VariantsNotReady.",
    )
    assert (ready.last_transition_time, ready.observed_generation) == (T0, 3)


def test_an_unchanged_status_keeps_its_transition_time_but_takes_the_new_reason() -> None:
    before = _set([], FALSE, "VariantsNotReady", T0, gen=1)
    (after,) = _set(before, FALSE, "NoServableVariant", T1, gen=2)
    assert after.last_transition_time == T0
    assert (after.reason, after.observed_generation) == ("NoServableVariant", 2)


def test_a_changed_status_moves_the_transition_time() -> None:
    before = _set([], FALSE, "VariantsNotReady", T0)
    (after,) = _set(before, TRUE, "AllVariantsServing", T1)
    assert after.last_transition_time == T1


def test_setting_a_condition_leaves_the_others_alone_and_keeps_the_documented_order() -> None:
    custom = Condition(type="Custom", status=TRUE, reason="X", last_transition_time=T0)
    degraded = Condition(
        type="Degraded", status=FALSE, reason="AsExpected", last_transition_time=T0
    )
    result = _set([custom, degraded], TRUE, "AllVariantsServing", T1)
    assert [c.type for c in result] == ["Ready", "Degraded", "Custom"]
    assert conditions.get_condition(result, "Degraded") == degraded
    assert conditions.get_condition(result, "Building") is None


# --- Conditions of a whole status --------------------------------------------------------------


def _names(plan: Plan, model: str = "llama") -> dict[str, Names]:
    return {
        v.name: Names(
            deployment=names.variant_deployment(model, v.name),
            service=names.variant_service(model, v.name),
            build_job=names.build_job(v.name, v.cache_key) if v.cache_key else None,
        )
        for v in plan.variants
    }


def _status(
    spec: QuantizedModelSpec,
    plan: Plan,
    previous: QuantizedModelStatus | None = None,
    *,
    now: datetime = T0,
    inventory: GpuInventory | None = None,
) -> QuantizedModelStatus:
    return build_status(
        spec,
        plan,
        inventory or GpuInventory(),
        _names(plan),
        previous,
        generation=1,
        main_service="llama",
        now=now,
    )


def _conditions(status: QuantizedModelStatus) -> dict[str, tuple[ConditionStatus, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def _message(status: QuantizedModelStatus, type_: str) -> str:
    condition = conditions.get_condition(status.conditions, type_)
    assert condition is not None
    return condition.message


UNGATED_FP8 = a_model().with_precisions("fp8").ungated().spec()


def test_every_variant_serving_is_ready_and_not_degraded() -> None:
    spec = a_model().ungated().spec()
    plan = serving_plan(spec, a_class("a100"), a_class("h100"))
    status = _status(spec, plan)
    assert _conditions(status) == {
        "Ready": (TRUE, "AllVariantsServing"),
        "Building": (FALSE, "NoBuildsRunning"),
        "QualityGate": (TRUE, "GateDisabled"),
        "Degraded": (FALSE, "AsExpected"),
        "RolledBack": (FALSE, "NoRegression"),
    }
    assert _message(status, "Ready") == "2 variant(s) serving"


def test_a_first_build_is_building_and_not_yet_ready() -> None:
    plan = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).observed())
    status = _status(UNGATED_FP8, plan)
    conds = _conditions(status)
    assert conds["Ready"] == (FALSE, "VariantsNotReady")
    assert conds["Building"] == (TRUE, "BuildsRunning")
    assert conds["Degraded"] == (FALSE, "AsExpected")
    assert _message(status, "Ready") == "h100-fp8: a build Job will be created"
    assert _message(status, "Building") == "building h100-fp8"


def test_one_unsupported_class_degrades_the_model_while_the_other_serves() -> None:
    plan = serving_plan(UNGATED_FP8, a_class("a100"), a_class("h100"))
    status = _status(UNGATED_FP8, plan)
    conds = _conditions(status)
    assert conds["Ready"] == (TRUE, "AllVariantsServing")
    assert conds["Degraded"] == (TRUE, "PrecisionUnsupported")
    assert _message(status, "Degraded").startswith("a100-80gb-fp8: fp8 needs compute capability")


def test_with_nothing_runnable_ready_carries_the_first_blocked_reason() -> None:
    plan = plan_model(UNGATED_FP8, a_cluster(a_class("a100")).observed())
    status = _status(UNGATED_FP8, plan)
    assert _conditions(status)["Ready"] == (FALSE, "PrecisionUnsupported")
    assert _message(status, "Ready").startswith("a100-80gb-fp8: fp8 needs")


def test_without_gpu_classes_ready_and_degraded_say_so() -> None:
    plan = plan_model(UNGATED_FP8, a_cluster().observed())
    conds = _conditions(_status(UNGATED_FP8, plan))
    assert conds["Ready"] == (FALSE, "NoGpuClasses")
    assert conds["Degraded"] == (TRUE, "NoGpuClasses")


def test_a_failed_build_degrades_with_the_builders_reason() -> None:
    h100 = a_cluster(a_class("h100"))
    key = key_of(UNGATED_FP8, h100, "h100-fp8")
    plan = plan_model(UNGATED_FP8, h100.failed(key, "GpuMismatch", "wrong GPU").observed())
    status = _status(UNGATED_FP8, plan)
    assert _conditions(status)["Degraded"] == (TRUE, "GpuMismatch")
    assert _message(status, "Degraded") == "h100-fp8: wrong GPU"
    assert status.variants[0].build.state == "Failed"


def test_an_unpinned_revision_is_advisory_and_does_not_degrade() -> None:
    spec = a_model().unpinned().with_precisions("fp8").ungated().spec()
    plan = serving_plan(spec, a_class("h100"))
    assert [n.reason for n in plan.notes] == ["UnpinnedRevision"]
    assert _conditions(_status(spec, plan))["Degraded"] == (FALSE, "AsExpected")


def test_a_gated_model_awaits_reports_for_its_quantized_variants_only() -> None:
    spec = a_model().with_precisions("fp8", "bf16").spec()  # after-rollout, the default
    plan = serving_plan(spec, a_class("h100"))
    status = _status(spec, plan)
    assert _conditions(status)["QualityGate"] == (UNKNOWN, "AwaitingReports")
    assert _message(status, "QualityGate") == "awaiting a passing report: h100-fp8"
    verdicts = {v.name: v.quality.verdict for v in status.variants}
    assert verdicts == {"h100-fp8": "Pending", "h100-bf16": "Baseline"}
    assert status.summary.quality == "Pending"


def test_the_status_describes_each_variant_and_the_printer_columns() -> None:
    spec = a_model().ungated().spec()
    inventory = a_cluster(a_class("a100"), a_class("h100", nodes=2)).observed().inventory
    plan = serving_plan(spec, *inventory.classes)
    status = _status(spec, plan, inventory=inventory)
    h100 = next(v for v in status.variants if v.name == "h100-fp8")
    assert (h100.gpu_class, h100.compute_capability, h100.precision) == ("h100", "9.0", "fp8")
    assert (h100.requested_precision, h100.kv_cache_dtype, h100.tensor_parallel) == (
        "auto",
        "fp8",
        1,
    )
    assert (h100.phase, h100.deployment, h100.service) == (
        "Serving",
        "llama-h100-fp8",
        "llama-h100-fp8",
    )
    assert h100.revision == h100.cache_key
    assert h100.last_good_revision == h100.cache_key  # ungated: serving at the key is good
    assert h100.quality.verdict == "NotGated"
    assert status.summary.precisions == "a100-80gb=int8,h100=fp8"
    assert status.summary.serving == "all"
    assert [(c.name, c.compute_capability) for c in status.gpu_classes] == [
        ("a100-80gb", "8.0"),
        ("h100", "9.0"),
    ]
    assert (status.service, status.observed_generation) == ("llama", 1)


def test_a_node_joining_or_leaving_a_class_leaves_every_status_as_it_was() -> None:
    # A count in the status would make qmo rewrite every model's status each time the
    # autoscaler adds or removes a node: the fleet's counts are metrics instead.
    spec = a_model().ungated().spec()
    statuses = []
    for nodes in (2, 3, 1):
        inventory = a_cluster(a_class("a100"), a_class("h100", nodes=nodes)).observed().inventory
        statuses.append(_status(spec, serving_plan(spec, *inventory.classes), inventory=inventory))
    assert statuses[0].to_wire() == statuses[1].to_wire() == statuses[2].to_wire()


def test_a_building_variant_names_its_build_job_and_has_no_deployment_yet() -> None:
    plan = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).observed())
    (fp8,) = _status(UNGATED_FP8, plan).variants
    assert fp8.cache_key is not None
    assert fp8.build.job == names.build_job("h100-fp8", fp8.cache_key)
    assert fp8.build.state == "Pending"
    assert (fp8.deployment, fp8.service, fp8.revision) == (None, None, None)


def test_a_build_this_model_saw_through_is_succeeded_one_it_found_finished_is_reused() -> None:
    h100 = a_cluster(a_class("h100"))
    key = key_of(UNGATED_FP8, h100, "h100-fp8")
    running = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).building(key).observed())
    built = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).built(key).observed())
    seen_through = _status(UNGATED_FP8, built, _status(UNGATED_FP8, running))
    found_finished = _status(UNGATED_FP8, built)
    assert seen_through.variants[0].build.state == "Succeeded"
    assert seen_through.variants[0].build.artifact_path == f"/store/artifacts/{key}"
    assert found_finished.variants[0].build.state == "Reused"


def test_unknown_gpus_are_listed_in_status() -> None:
    observed = (
        a_cluster(a_class("h100"))
        .with_unknown("gpu-7", "NVIDIA-Mystery-9000", "not in the table")
        .observed()
    )
    plan = plan_model(UNGATED_FP8, observed)
    status = _status(UNGATED_FP8, plan, inventory=observed.inventory)
    assert status.unknown_gpus == ["NVIDIA-Mystery-9000"]


def test_another_node_of_an_unknown_gpu_leaves_the_status_as_it_was() -> None:
    # A node name in the status would rewrite every model's status on each such node.
    def status_with(*nodes: str) -> QuantizedModelStatus:
        cluster = a_cluster(a_class("h100"))
        for node in nodes:
            cluster.with_unknown(node, "NVIDIA-Mystery-9000", "not in the table")
        observed = cluster.observed()
        return _status(UNGATED_FP8, plan_model(UNGATED_FP8, observed), inventory=observed.inventory)

    one, three = status_with("gpu-7"), status_with("gpu-7", "gpu-8", "gpu-9")
    assert three.to_wire() == one.to_wire()
    degraded = next(c for c in one.conditions if c.type == "Degraded")
    assert degraded.reason == "UnknownGpu"
    assert "NVIDIA-Mystery-9000" in degraded.message


# --- Transition times across reconciles ----------------------------------------------------------


def test_a_steady_state_keeps_every_transition_time_and_a_change_moves_only_its_own() -> None:
    building = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).observed())
    first = _status(UNGATED_FP8, building, now=T0)
    again = _status(UNGATED_FP8, building, first, now=T1)
    assert again == first  # nothing changed, not even a timestamp

    serving = serving_plan(UNGATED_FP8, a_class("h100"))
    later = _status(UNGATED_FP8, serving, again, now=T2)
    times = {c.type: c.last_transition_time for c in later.conditions}
    assert times == {
        "Ready": T2,  # False -> True
        "Building": T2,  # True -> False
        "QualityGate": T0,
        "Degraded": T0,
        "RolledBack": T0,
    }


# --- Events ------------------------------------------------------------------------------------


def _events(decided: list[Event]) -> list[tuple[str, str, str | None]]:
    return [(d.type, d.reason, d.variant) for d in decided]


def test_a_new_variant_is_explained_once_with_what_happens_next() -> None:
    plan = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).observed())
    decided = decisions(plan, None, spec_changed=True)
    # One Event: the build is part of the explanation, and a model of one precision has no
    # main Service to choose.
    assert _events(decided) == [("Normal", "VariantPlanned", "h100-fp8")]
    planned = decided[0].message
    assert planned.startswith("h100-fp8: fp8 on NVIDIA-H100-80GB-HBM3, KV cache fp8")
    assert "tensorParallel 1 (no model.size: memory not estimated)" in planned
    assert planned.endswith("; a build Job will be created")


def test_the_main_service_is_announced_when_several_precisions_could_serve() -> None:
    spec = a_model().with_precisions("fp8", "int8").ungated().spec()
    plan = plan_model(spec, a_cluster(a_class("h100")).observed())
    selected = [e for e in decisions(plan, None, spec_changed=True) if e.variant is None]
    assert [e.message for e in selected] == ["the main Service serves fp8 (h100-fp8)"]


def test_an_auto_variant_says_why_its_precision_was_chosen() -> None:
    spec = a_model().ungated().spec()
    plan = plan_model(spec, a_cluster(a_class("a100")).observed())
    (planned, *_) = decisions(plan, None, spec_changed=True)
    assert planned.message.startswith(
        "a100-80gb-int8: int8 (auto on compute capability 8.0) on NVIDIA-A100-SXM4-80GB"
    )


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(UNGATED_FP8, id="one-precision"),
        pytest.param(a_model().ungated().spec(), id="auto"),
        pytest.param(a_model().with_precisions("fp8", "int8").spec(), id="gated-two-precisions"),
        pytest.param(a_model().unpinned().spec(), id="with-a-note"),
    ],
)
def test_no_events_repeat_when_called_again_with_the_status_they_produced(
    spec: QuantizedModelSpec,
) -> None:
    observed = a_cluster(a_class("a100"), a_class("h100")).observed()
    plan = plan_model(spec, observed)
    assert decisions(plan, None, spec_changed=True)  # the first reconcile says something
    status = _status(spec, plan)
    assert decisions(plan_model(spec, observed), status, spec_changed=False) == []


def test_notes_are_warned_about_when_the_spec_changes_only() -> None:
    spec = a_model().unpinned().with_precisions("fp8").on_classes("h200").ungated().spec()
    plan = plan_model(spec, a_cluster(a_class("h100")).observed())
    status = _status(spec, plan)
    assert _events(decisions(plan, status, spec_changed=True)) == [
        ("Warning", "GpuClassNotFound", None),
        ("Warning", "UnpinnedRevision", None),
    ]
    assert decisions(plan, status, spec_changed=False) == []


def test_a_variant_that_first_appears_already_built_is_reused_not_rebuilt() -> None:
    h100 = a_cluster(a_class("h100"))
    key = key_of(UNGATED_FP8, h100, "h100-fp8")
    plan = plan_model(UNGATED_FP8, h100.built(key).observed())
    decided = decisions(plan, None, spec_changed=True)
    assert _events(decided) == [
        ("Normal", "VariantPlanned", "h100-fp8"),
        ("Normal", "BuildReused", "h100-fp8"),
    ]
    assert decided[0].message.endswith("; 0/1 replica(s) ready")
    assert decided[1].message == (
        f"h100-fp8: artifact {key[:16]} is already built; it is reused, not rebuilt"
    )


def test_a_build_this_model_waited_for_is_not_reported_as_reused() -> None:
    h100 = a_cluster(a_class("h100"))
    key = key_of(UNGATED_FP8, h100, "h100-fp8")
    running = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).building(key).observed())
    built = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).built(key).observed())
    decided = decisions(built, _status(UNGATED_FP8, running), spec_changed=False)
    assert _events(decided) == []  # rolling out is progress: status shows it


H100_FP8_KEY = key_of(UNGATED_FP8, a_cluster(a_class("h100")), "h100-fp8")


@pytest.mark.parametrize(
    ("kind", "observe", "name", "reason"),
    [
        pytest.param(
            "a100", lambda c: c, "a100-80gb-fp8", "PrecisionUnsupported", id="precision-unsupported"
        ),
        pytest.param("t4", lambda c: c, "t4-fp8", "GpuUnsupported", id="gpu-unsupported"),
        pytest.param(
            "h100",
            lambda c: c.failed(H100_FP8_KEY, "BuildFailed", "out of memory"),
            "h100-fp8",
            "BuildFailed",
            id="build-failed",
        ),
        pytest.param(
            "h100",
            lambda c: c.with_claims(),
            "h100-fp8",
            "EngineStoreNotFound",
            id="engine-store-missing",
        ),
    ],
)
def test_a_variant_that_cannot_run_is_a_warning(
    kind: str, observe: Callable[[ClusterBuilder], ClusterBuilder], name: str, reason: str
) -> None:
    plan = plan_model(UNGATED_FP8, observe(a_cluster(a_class(kind))).observed())
    decided = [d for d in decisions(plan, None, spec_changed=True) if d.reason == reason]
    assert [(d.type, d.variant) for d in decided] == [("Warning", name)]


def test_a_variant_reaching_serving_says_so_once() -> None:
    building = plan_model(UNGATED_FP8, a_cluster(a_class("h100")).observed())
    serving = serving_plan(UNGATED_FP8, a_class("h100"))
    decided = decisions(serving, _status(UNGATED_FP8, building), spec_changed=False)
    assert _events(decided) == [("Normal", "Serving", "h100-fp8")]
    assert decided[0].message == "h100-fp8: 1 replica(s) ready"
    assert decisions(serving, _status(UNGATED_FP8, serving), spec_changed=False) == []


def test_the_main_service_event_follows_a_change_of_precision() -> None:
    spec = a_model().with_precisions("fp8", "int8").ungated().spec()
    h100 = a_cluster(a_class("h100"))
    int8 = key_of(spec, h100, "h100-int8")
    int8_first = plan_model(spec, h100.built(int8).deployed("h100-int8", int8).observed())
    both = serving_plan(spec, a_class("h100"))
    decided = decisions(both, _status(spec, int8_first), spec_changed=False)
    selected = [d.message for d in decided if d.reason == "MainServiceSelected"]
    assert selected == ["the main Service serves fp8 (h100-fp8)"]


def test_without_a_spec_change_an_empty_plan_posts_nothing() -> None:
    plan = plan_model(UNGATED_FP8, Observed(GpuInventory()))
    assert [n.reason for n in plan.notes] == ["NoGpuClasses"]
    assert _events(decisions(plan, None, spec_changed=False)) == []


# --- The quality gate in status ----------------------------------------------------------------

GATED = a_model().with_precisions("fp8", "bf16").spec()  # after-rollout, reports from outside


def _gated_cluster() -> tuple[ClusterBuilder, str]:
    """fp8 and bf16 built and serving on one H100 class; returns the fp8 key."""
    cluster = a_cluster(a_class("h100"))
    for name in ("h100-fp8", "h100-bf16"):
        key = key_of(GATED, cluster, name)
        cluster.built(key).deployed(name, key)
    return cluster, key_of(GATED, cluster, "h100-fp8")


def test_a_passing_report_passes_the_gate_and_is_announced_once() -> None:
    cluster, fp8 = _gated_cluster()
    before = _status(GATED, plan_model(GATED, cluster.observed()))
    passed = plan_model(GATED, cluster.reported("h100-fp8", fp8, Verdict.PASS).observed())
    status = _status(GATED, passed, before, now=T1)
    assert _conditions(status)["QualityGate"] == (TRUE, "AllPassed")
    fp8_status = next(v for v in status.variants if v.name == "h100-fp8")
    assert (fp8_status.quality.verdict, fp8_status.quality.worst_delta_percent) == ("Pass", 0.4)
    assert fp8_status.last_good_revision == fp8
    assert before.variants[0].last_good_revision is None  # not good before it passed
    decided = decisions(passed, before, spec_changed=False)
    assert _events(decided) == [("Normal", "QualityPassed", "h100-fp8")]
    assert decisions(passed, status, spec_changed=False) == []


def test_a_regression_with_a_good_revision_rolls_back_and_says_so() -> None:
    cluster, fp8 = _gated_cluster()
    good = "6" * 64
    cluster.built(good).good_revision("h100-fp8", good).deployed("h100-fp8", good)
    cluster.reported("h100-fp8", fp8, Verdict.REGRESSED, "gsm8k dropped 2.1%")
    before = _status(GATED, plan_model(GATED, a_cluster(a_class("h100")).observed()))
    plan = plan_model(GATED, cluster.observed())
    status = _status(GATED, plan, before, now=T1)
    conds = _conditions(status)
    assert conds["QualityGate"] == (FALSE, "Regressed")
    assert conds["RolledBack"] == (TRUE, "RolledBack")
    assert conds["Ready"] == (TRUE, "AllVariantsServing")  # the good revision serves
    assert status.summary.quality == "Regressed"
    rolled = next(v for v in status.variants if v.name == "h100-fp8")
    assert (rolled.phase, rolled.revision) == ("RolledBack", good)
    warnings = [d for d in decisions(plan, before, spec_changed=False) if d.type == "Warning"]
    assert [(d.reason, d.variant) for d in warnings] == [("RolledBack", "h100-fp8")]
    assert "gsm8k dropped 2.1%" in warnings[0].message


def test_a_revision_with_some_replicas_not_ready_is_not_yet_the_last_good_one() -> None:
    spec = a_model().with_precisions("fp8").ungated().with_replicas(2).spec()
    h100 = a_cluster(a_class("h100"))
    key = key_of(spec, h100, "h100-fp8")
    half = plan_model(
        spec, h100.built(key).deployed("h100-fp8", key, ready=1, replicas=2).observed()
    )
    (fp8,) = _status(spec, half).variants
    assert fp8.last_good_revision is None  # 1 of 2 replicas ready
    (fp8,) = _status(spec, serving_plan(spec, a_class("h100"))).variants
    assert fp8.last_good_revision == key
