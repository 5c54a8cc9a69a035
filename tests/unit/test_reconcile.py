"""Whole reconciles without a cluster: `reconcile(...)` against `tests.support.fake_kube`.

Each test drives the public `reconcile` call and moves the world on as the kubelet and the
controllers would (a build finishes, a Deployment rolls out, a QualityReport arrives), then
asserts on what the fake API server holds, the Events posted and the requests made. They
mirror tests/cluster/test_reconciler.py and test_quality_gate.py, in milliseconds.
"""

from __future__ import annotations

import pytest

from qmo.api.buildcontract import BuildResult
from qmo.controller.reconcile import Retry
from qmo.controller.reporting import PROGRESS_DELAY
from qmo.vocabulary import BuildState
from tests.support.fake_kube import (
    APPLY,
    DELETE,
    STATUS,
    speed_sample,
)
from tests.support.reconciles import (
    NS,
    PASSING,
    REGRESSED,
    World,
    a_world,
    at_revision_v2,
    gated,
    ungated,
)


@pytest.fixture
def world() -> World:
    return a_world()


def test_one_reconcile_of_a_new_model_creates_its_build_job_and_says_it_is_building(
    world: World,
) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.reconcile()

    (job,) = world.cluster.objects("Job")
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "build"
    assert job["metadata"]["ownerReferences"][0]["uid"] == world.model()["metadata"]["uid"]
    assert world.cluster.objects("Deployment") == []
    assert world.variants()["h100-fp8"]["phase"] == "Building"
    assert world.condition("Building")["status"] == "True"
    assert world.condition("Ready")["status"] == "False"
    planned = [e for e in world.cluster.events if e.reason in ("VariantPlanned", "BuildScheduled")]
    assert "VariantPlanned" in [e.reason for e in planned]
    assert any(f"build Job {job['metadata']['name']} is running" in e.message for e in planned)
    assert {e.type for e in world.cluster.events} == {"Normal"}
    assert world.cluster.count(STATUS, "QuantizedModel") == 1


def test_a_second_reconcile_with_nothing_changed_writes_nothing_and_posts_no_event(
    world: World,
) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.reconcile()
    world.reconcile()

    assert world.cluster.requests == []


def test_two_reconciles_of_a_new_model_reach_a_fixed_point_where_the_third_writes_nothing(
    world: World,
) -> None:
    world.cluster.create_model(ungated("fp8"))
    for _ in range(2):
        world.reconcile()
    version = world.model()["metadata"]["resourceVersion"]
    events = len(world.cluster.events)

    world.reconcile()

    assert world.cluster.requests == []
    assert world.model()["metadata"]["resourceVersion"] == version
    assert len(world.cluster.events) == events


def test_a_finished_build_is_deployed_recorded_and_then_ready(world: World) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.reconcile()
    key = world.variants()["h100-fp8"]["cacheKey"]
    world.cluster.finish_build(key)

    outcome = world.reconcile()

    applied = {(kind, name) for verb, kind, name in world.writes() if verb == APPLY}
    assert ("Deployment", "llama-h100-fp8") in applied
    assert ("Service", "llama-h100-fp8") in applied
    assert world.revision("llama-h100-fp8") == key
    assert set(world.cluster.names("Service")) == {"llama", "llama-h100-fp8"}
    (record,) = world.cluster.objects("ConfigMap")
    assert world.cluster.artifact_record(NS, key) is not None, record
    # Only progress, a moment after the previous status write: the write waits for the
    # requeue (or the Deployment's next change), so a step soon superseded is not written.
    assert world.variants()["h100-fp8"]["phase"] == "Building"
    assert outcome.requeue_after is not None
    world.clock.advance(outcome.requeue_after)  # the requeue comes when the wait is over
    world.reconcile()
    assert world.variants()["h100-fp8"]["phase"] == "Deploying"
    assert world.condition("Ready")["status"] == "False"

    world.cluster.roll_out("llama-h100-fp8")
    world.reconcile()

    assert world.variants()["h100-fp8"]["phase"] == "Serving"
    assert world.condition("Ready")["status"] == "True"
    assert world.condition("Ready")["reason"] == "AllVariantsServing"
    assert world.condition("Building")["status"] == "False"
    assert "Serving" in world.cluster.reasons()


def test_a_passing_report_passes_the_gate_and_records_the_last_good_revision(
    world: World,
) -> None:
    world.cluster.create_model(gated("fp8"))
    world.settle()
    assert world.condition("QualityGate")["reason"] == "AwaitingReports"
    key = world.variants()["h100-fp8"]["cacheKey"]

    report = world.cluster.add_report("llama", "h100-fp8", key, PASSING)
    world.reconcile()

    fp8 = world.variants()["h100-fp8"]
    assert fp8["lastGoodRevision"] == key
    assert fp8["quality"]["verdict"] == "Pass"
    gate = world.condition("QualityGate")
    assert (gate["status"], gate["reason"]) == ("True", "AllPassed")
    judged = world.cluster.object("QualityReport", report)
    assert judged is not None
    assert judged["status"]["verdict"] == "Pass"
    assert judged["status"]["state"] == "Current"
    assert world.cluster.reasons().count("QualityPassed") == 1
    assert world.cluster.count(STATUS, "QualityReport") == 1
    assert world.cluster.count(STATUS, "QuantizedModel") == 1
    assert world.cluster.count(APPLY) == 0


def test_a_regression_rolls_back_to_the_last_good_revision_once(world: World) -> None:
    world.cluster.create_model(gated("fp8"))
    world.settle()
    v1 = world.variants()["h100-fp8"]["cacheKey"]
    world.cluster.add_report("llama", "h100-fp8", v1, PASSING)
    world.settle()
    assert world.variants()["h100-fp8"]["lastGoodRevision"] == v1

    world.cluster.update_model(spec=at_revision_v2(world))
    world.settle()
    v2 = world.variants()["h100-fp8"]["cacheKey"]
    assert v2 != v1
    assert world.revision("llama-h100-fp8") == v2

    report = world.cluster.add_report("llama", "h100-fp8", v2, REGRESSED)
    world.reconcile()

    assert world.revision("llama-h100-fp8") == v1
    judged = world.cluster.object("QualityReport", report)
    assert judged is not None
    assert judged["status"]["verdict"] == "Regressed"
    fp8 = world.variants()["h100-fp8"]
    assert fp8["phase"] == "RolledBack"
    rolled_back = world.condition("RolledBack")
    assert rolled_back["status"] == "True"
    assert "arithmetic +2.10%" in rolled_back["message"]
    warnings = [e for e in world.cluster.events if e.reason == "RolledBack"]
    assert [e.type for e in warnings] == ["Warning"]

    world.settle()
    assert world.revision("llama-h100-fp8") == v1
    assert world.variants()["h100-fp8"]["cacheKey"] == v2
    assert world.cluster.reasons().count("RolledBack") == 1


@pytest.mark.parametrize(
    ("gpu", "backend", "fallback"),
    [
        pytest.param("h100", "tensorrt", "int8", id="int4 falls back to int8 on an H100"),
        pytest.param("a100-80gb", "tensorrt", "int8", id="int4 falls back to int8 on an A100"),
        # int8 needs the tensorrt backend
        pytest.param("h100", "pytorch", "fp8", id="int4 falls back to fp8 on an H100 with pytorch"),
        # ... and fp8 needs compute capability 8.9: bf16 is the variant the reference runs as
        pytest.param(
            "a100-80gb",
            "pytorch",
            "bf16",
            id="int4 falls back to bf16 on an A100 with pytorch",
        ),
    ],
)
def test_a_regression_on_the_first_rollout_falls_back_to_the_next_precision(
    world: World, gpu: str, backend: str, fallback: str
) -> None:
    world.cluster.add_node(gpu, name=f"{gpu}-0")
    world.cluster.create_model(
        gated("int4-awq", on_regression="fallback", gpu=gpu, backend=backend)
    )
    world.settle()
    first, then = f"{gpu}-int4-awq", f"{gpu}-{fallback}"
    key = world.variants()[first]["cacheKey"]

    world.cluster.add_report("llama", first, key, REGRESSED)
    world.reconcile()

    variants = world.variants()
    assert first not in variants
    assert variants[then]["requestedPrecision"] == "int4-awq"
    assert world.condition("RolledBack")["reason"] == "FellBack"
    builds = [
        j
        for j in world.cluster.objects("Job")
        if j["metadata"]["labels"].get("qmo.dev/precision") == fallback
        and j["metadata"]["labels"].get("app.kubernetes.io/component") == "build"
    ]
    assert len(builds) == 1
    (fell_back,) = [e for e in world.cluster.events if e.reason == "FellBack"]
    assert fell_back.type == "Warning"
    assert "arithmetic +2.10%" in fell_back.message
    assert f"falls back to {fallback} ({then})" in fell_back.message

    world.settle()
    assert world.variants()[then]["phase"] == "Serving"
    assert world.condition("Ready")["status"] == "True"
    assert world.cluster.reasons().count("FellBack") == 1


def test_a_regression_with_no_good_revision_withdraws_the_variant(world: World) -> None:
    world.cluster.create_model(gated("fp8", on_regression="rollback"))
    world.settle()
    key = world.variants()["h100-fp8"]["cacheKey"]

    world.cluster.add_report("llama", "h100-fp8", key, REGRESSED)
    world.reconcile()

    deleted = {(kind, name) for verb, kind, name in world.writes() if verb == DELETE}
    assert {("Deployment", "llama-h100-fp8"), ("Service", "llama-h100-fp8")} <= deleted
    assert world.cluster.object("Deployment", "llama-h100-fp8") is None
    assert world.variants()["h100-fp8"]["phase"] == "Regressed"
    assert world.condition("Ready")["status"] == "False"
    (withdrawn,) = [e for e in world.cluster.events if e.reason == "Withdrawn"]
    assert withdrawn.type == "Warning"

    world.settle()
    assert world.cluster.object("Deployment", "llama-h100-fp8") is None
    assert world.cluster.reasons().count("Withdrawn") == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (422, 'Deployment.apps "llama-h100-fp8" is invalid: spec.template: Invalid value'),
        (403, 'deployments.apps "llama-h100-fp8" is forbidden: exceeded quota: gpus'),
    ],
    ids=["invalid", "over quota"],
)
def test_a_refused_child_is_its_variants_condition_and_the_other_variants_go_on(
    world: World, status: int, message: str
) -> None:
    world.cluster.add_node("a100")
    world.cluster.create_model(ungated("auto", classes=("h100", "a100-80gb")))
    world.reconcile()
    world.finish_builds()
    world.cluster.refuse("Deployment", "llama-h100-fp8", status=status, message=message)

    with pytest.raises(Retry) as raised:
        world.reconcile()

    assert raised.value.reason_label == "ChildRejected"
    assert world.cluster.object("Deployment", "llama-a100-80gb-int8") is not None
    assert world.cluster.object("Deployment", "llama-h100-fp8") is None
    h100 = world.variants()["h100-fp8"]
    assert h100["reason"] == "ChildRejected"
    assert message in h100["message"]
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ChildRejected")
    warnings = [e for e in world.cluster.events if e.reason == "ChildRejected"]
    assert len(warnings) == 1
    assert warnings[0].type == "Warning"
    assert message in warnings[0].message

    with pytest.raises(Retry):
        world.reconcile()
    assert len([e for e in world.cluster.events if e.reason == "ChildRejected"]) == 1

    world.cluster.clear()
    world.settle()
    assert world.condition("Ready")["status"] == "True"
    assert world.condition("Degraded")["status"] == "False"


@pytest.mark.parametrize(
    "fault",
    ["time_out", "500"],
    ids=["a read timeout", "an internal error"],
)
def test_an_api_failure_on_one_write_retries_and_the_rest_is_written(
    world: World, fault: str
) -> None:
    world.cluster.add_node("a100")
    world.cluster.create_model(ungated("auto", classes=("h100", "a100-80gb")))
    world.reconcile()
    world.finish_builds()
    if fault == "time_out":
        world.cluster.time_out("Deployment", "llama-h100-fp8")
    else:
        world.cluster.refuse(
            "Deployment", "llama-h100-fp8", status=500, message="etcdserver: leader changed"
        )

    with pytest.raises(Retry) as raised:
        world.reconcile()

    assert raised.value.reason_label == "ApiUnavailable"
    assert "Deployment llama-h100-fp8" in str(raised.value)
    assert world.cluster.object("Deployment", "llama-a100-80gb-int8") is not None
    assert world.cluster.object("Service", "llama-h100-fp8") is not None
    assert world.cluster.object("Deployment", "llama-h100-fp8") is None
    assert "ChildRejected" not in world.cluster.reasons()

    world.cluster.clear()
    world.reconcile()
    assert world.cluster.object("Deployment", "llama-h100-fp8") is not None
    world.settle()
    assert world.condition("Ready")["status"] == "True"
    posted = [(e.reason, e.message) for e in world.cluster.events]
    assert sorted(p for p in posted if posted.count(p) > 1) == []


def test_a_failed_build_keeps_the_previous_revision_serving_and_degrades(world: World) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.settle()
    v1 = world.revision("llama-h100-fp8")
    world.cluster.update_model(spec=at_revision_v2(world))
    world.reconcile()
    v2 = world.variants()["h100-fp8"]["cacheKey"]
    assert v2 != v1

    calibration = BuildResult(
        cache_key=v2,
        state=BuildState.FAILED,
        reason="CalibrationFailed",
        message="calibration ran out of GPU memory at batch 4",
    )
    world.cluster.finish_build(v2, succeeded=False, result=calibration)
    world.reconcile()

    assert world.variants()["h100-fp8"]["phase"] == "BuildFailed"
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "CalibrationFailed")
    assert "out of GPU memory" in degraded["message"]
    assert world.revision("llama-h100-fp8") == v1
    assert world.variants()["h100-fp8"]["revision"] == v1
    assert world.cluster.count(APPLY, "Deployment") == 0


def test_a_second_model_with_the_same_build_inputs_shares_the_build(world: World) -> None:
    world.cluster.create_model(ungated("fp8"), name="first")
    world.cluster.create_model(ungated("fp8"), name="second")
    first, second = (World(world.cluster, world.clock, name) for name in ("first", "second"))
    first.settle()

    second.settle()

    (job,) = world.cluster.objects("Job")
    owners = {ref["name"] for ref in job["metadata"]["ownerReferences"]}
    assert owners == {"first", "second"}
    (record,) = world.cluster.objects("ConfigMap")
    assert {ref["name"] for ref in record["metadata"]["ownerReferences"]} == {"first", "second"}
    assert second.variants()["h100-fp8"]["build"]["state"] == "Reused"
    assert "BuildReused" in [e.reason for e in world.cluster.events if e.model == "second"]

    world.cluster.delete_model("first")
    removed = world.cluster.collect_garbage()
    assert "Deployment/first-h100-fp8" in removed
    assert world.cluster.names("Job") == [job["metadata"]["name"]], "second still owns it"


def test_a_deployment_someone_else_changed_is_put_back(world: World) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.settle()
    world.cluster.edit("Deployment", "llama-h100-fp8", {"spec": {"replicas": 3}})

    world.reconcile()

    applied = [w for w in world.writes() if w[0] == APPLY]
    assert applied == [(APPLY, "Deployment", "llama-h100-fp8")]
    deployment = world.cluster.object("Deployment", "llama-h100-fp8")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    world.cluster.roll_out("llama-h100-fp8")
    assert world.settle()["status"]["variants"][0]["phase"] == "Serving"


def test_a_spec_qmo_cannot_use_is_a_condition_and_one_event_and_creates_nothing(
    world: World,
) -> None:
    spec = ungated("fp8")
    spec["precisions"] = ["fp9"]
    world.cluster.create_model(spec)

    world.reconcile()
    world.reconcile()

    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "precisions" in degraded["message"]
    assert world.cluster.reasons() == ["InvalidSpec"]
    assert world.cluster.objects("Job") == []
    assert world.cluster.objects("Service") == []


def test_a_single_variant_model_reaches_serving_with_two_status_writes_and_two_events(
    world: World,
) -> None:
    # The happy path's cost to the control plane: a new model, its build, its rollout.
    world.cluster.create_model(ungated("fp8"))
    status_writes, applies = 0, []
    for step in (world.finish_builds, world.cluster.roll_out_all, lambda: None):
        outcome = world.reconcile()
        status_writes += world.cluster.count(STATUS, "QuantizedModel")
        applies += [kind for verb, kind, _ in world.writes() if verb == APPLY]
        step()
        if outcome.requeue_after is not None:
            assert outcome.requeue_after <= PROGRESS_DELAY  # a held-back status comes back
    assert world.condition("Ready")["status"] == "True"
    assert status_writes == 2
    assert world.cluster.reasons() == ["VariantPlanned", "Serving"]
    assert sorted(applies) == ["ConfigMap", "Deployment", "Job", "Service", "Service"]
    world.reconcile()  # and a requeued reconcile then has nothing to do
    assert world.writes() == []


# --- wedges: no input the API server accepts may stop the status from being written ---------


def test_a_report_whose_speed_up_overflows_is_invalid_and_every_status_is_still_written(
    world: World,
) -> None:
    world.cluster.create_model(gated("fp8"))
    world.settle()
    key = world.variants()["h100-fp8"]["cacheKey"]
    # Both are floats the API server accepts; their quotient is not a float at all.
    speed = {"candidate": [speed_sample(1e300)], "baseline": [speed_sample(1e-10)]}

    report = world.cluster.add_report("llama", "h100-fp8", key, PASSING, speed=speed)
    world.reconcile()

    judged = world.cluster.object("QualityReport", report)
    assert judged is not None
    assert (judged["status"]["verdict"], judged["status"]["reason"]) == (
        "Invalid",
        "SpeedupOutOfRange",
    )
    assert "speedup" not in judged["status"]
    assert "speedup" not in world.variants()["h100-fp8"]["quality"]
    assert world.condition("QualityGate")["reason"] == "AwaitingReports"
    assert [r.outcome for r in world.cluster.writes()] == ["ok"] * len(world.cluster.writes())
    world.settle()


def test_a_node_whose_memory_label_no_gpu_has_is_an_unknown_gpu_and_the_status_is_written(
    world: World,
) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.settle()
    # 60 nines: a valid label value, and no int64.
    world.cluster.add_node("h200", name="h200-0", memory_mib=int("9" * 60))

    world.reconcile()

    status = world.model()["status"]
    assert [c["name"] for c in status["gpuClasses"]] == ["h100"]
    assert status["unknownGpus"] == ["NVIDIA-H200"]
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "UnknownGpu")
    assert "more memory than any GPU has" in degraded["message"]
    assert world.condition("Ready")["status"] == "True", "the h100 variant serves on"
    assert [r.outcome for r in world.cluster.writes()] == ["ok"] * len(world.cluster.writes())
