"""What a reconcile writes, as data (controller/changes.py), in the situations mutation testing
found untested: a withdrawn variant's objects deleted, a retry that deletes only what failed,
GPUs lent to a build and taken back, an artifact recorded, the tracks a Deployment and its
Service carry, an unsupported variant listed first, a name another model holds, and who each
change is for (a refused write marks that variant, and only it) and why qmo deletes (its log).

Each situation is set up on the fake cluster with whole reconciles; `World.changes` then says
what the next reconcile would write.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from qmo.api.evalcontract import EvalResult
from qmo.controller.changes import AddOwner, Apply, Change, Delete, RecordReport, Refuse
from qmo.controller.reconcile import Retry
from qmo.evaluator.report import result
from qmo.manifests.quality_report import report_name
from qmo.vocabulary import COMPONENT, MODEL, PRECISION, TRACK, VARIANT, Reason
from qmo.wire import Obj
from tests.support.builders import a_model
from tests.support.reconciles import (
    CONFIG,
    PASSING,
    REGRESSED,
    SIZE,
    World,
    a_world,
    gated,
    ungated,
)

RETRY = "a retry was requested (qmo.dev/retry)"


@pytest.fixture
def world() -> World:
    return a_world()


def of_kind(changes: list[Change], change: type, kind: str) -> list[Change]:
    def target(c: Change) -> Obj:
        return c.obj if isinstance(c, Apply | RecordReport) else c.target

    return [c for c in changes if isinstance(c, change) and target(c)["kind"] == kind]


def deletions(changes: list[Change], kind: str) -> list[tuple[str, str | None, str]]:
    """(name, variant, why) of each deletion of `kind`: why is what qmo logs."""
    return [
        (c.target["metadata"]["name"], c.variant, c.why)
        for c in changes
        if isinstance(c, Delete) and c.target["kind"] == kind
    ]


def jobs(world: World, component: str) -> list[Obj]:
    return [
        j
        for j in world.cluster.objects("Job")
        if (j["metadata"].get("labels") or {}).get(COMPONENT) == component
    ]


def build_of(world: World, variant: str) -> str:
    found = [j for j in jobs(world, "build") if j["metadata"]["labels"][VARIANT] == variant]
    assert len(found) == 1, [j["metadata"]["name"] for j in jobs(world, "build")]
    return str(found[0]["metadata"]["name"])


def scores(candidate: float) -> str:
    """What `qmo-eval run --termination-log` leaves against a baseline of 0.80."""
    rows = [result("arithmetic", 0.80, candidate, higher_is_better=True, samples=4)]
    return EvalResult.of(rows, None).to_message()


# --- withdrawn, retried ---------------------------------------------------------------------


def test_a_withdrawn_variant_loses_its_deployment_and_service(world: World) -> None:
    world.cluster.create_model(gated("fp8"))
    world.settle()
    key = world.variants()["h100-fp8"]["cacheKey"]
    world.cluster.add_report("llama", "h100-fp8", key, REGRESSED)  # no good revision before

    plan, changes = world.changes()

    assert [v.decision.reason for v in plan.variants if v.name == "h100-fp8"] == ["Withdrawn"]
    deleted = {(c.target["kind"], c.target["metadata"]["name"], c.variant, c.why)
               for c in changes if isinstance(c, Delete)}  # fmt: skip
    stale = "variant h100-bf16 is no longer planned"  # nothing left to judge against it
    assert deleted == {
        ("Deployment", "llama-h100-fp8", "h100-fp8", "withdrawn after a regression"),
        ("Service", "llama-h100-fp8", "h100-fp8", "withdrawn after a regression"),
        ("Deployment", "llama-h100-bf16", None, stale),
        ("Service", "llama-h100-bf16", None, stale),
    }


def test_a_retry_deletes_only_the_failed_build_job(world: World) -> None:
    world.cluster.create_model(ungated("fp8", "int8"))
    world.reconcile()
    world.cluster.finish_build(build_of(world, "h100-fp8"), succeeded=False)
    world.cluster.finish_build(build_of(world, "h100-int8"))
    failed = build_of(world, "h100-fp8")

    # This reconcile writes (int8 rolls out), so it plans again after its writes: without a
    # retry asked for, neither round deletes the failed Job.
    world.reconcile()
    assert ("delete", "Job", failed) not in world.writes()

    _, changes = world.changes(retry=True)
    assert deletions(changes, "Job") == [(failed, "h100-fp8", RETRY)]


def test_a_retry_deletes_a_failed_eval_job_and_keeps_the_rest(world: World) -> None:
    world.cluster.create_model(gated("fp8", "int8"))
    world.settle()
    evals = {
        j["metadata"]["labels"][VARIANT]: j["metadata"]["name"] for j in jobs(world, "evaluation")
    }
    world.cluster.finish_eval(evals["h100-fp8"], "lm-eval: out of memory", exit_code=1)
    world.reconcile()

    _, changes = world.changes(retry=True)

    assert deletions(changes, "Job") == [(evals["h100-fp8"], "h100-fp8", RETRY)]


# --- GPUs lent to a build -------------------------------------------------------------------


def two_replicas_at_v2(world: World) -> tuple[str, str]:
    """fp8 serving two replicas at v1, then v2's build waiting for GPUs only fp8 holds.
    Returns (v1's key, v2's build Job)."""
    spec = a_model().sized_like(SIZE).with_precisions("fp8").ungated().with_replicas(2)
    world.cluster.create_model(spec.wire())
    world.settle()
    v1 = world.revision("llama-h100-fp8")
    world.cluster.update_model(spec=spec.with_revision("v2").wire())
    world.reconcile()
    job = next(j["metadata"]["name"] for j in jobs(world, "build") if not j.get("status"))
    world.cluster.leave_build_unschedulable(job)
    return v1, job


def deployments(changes: list[Change]) -> list[tuple[str | None, str, int]]:
    return [
        (c.variant, c.obj["metadata"]["annotations"]["qmo.dev/revision"], c.obj["spec"]["replicas"])
        for c in of_kind(changes, Apply, "Deployment")
    ]  # fmt: skip


def test_the_serving_revision_lends_one_replica_to_its_own_waiting_build(world: World) -> None:
    v1, _ = two_replicas_at_v2(world)
    _, changes = world.changes()
    assert deployments(changes) == [("h100-fp8", v1, 1)]


def test_gpus_lent_to_a_running_build_stay_lent(world: World) -> None:
    _, job = two_replicas_at_v2(world)
    world.reconcile()  # one replica lent
    world.cluster.roll_out("llama-h100-fp8")
    world.cluster.start_build(job)  # the build got the GPUs
    _, changes = world.changes()
    assert deployments(changes) == []


def test_gpus_lent_to_a_build_that_failed_come_back(world: World) -> None:
    v1, job = two_replicas_at_v2(world)
    world.reconcile()
    world.cluster.roll_out("llama-h100-fp8")
    world.cluster.finish_build(job, succeeded=False)
    _, changes = world.changes()
    assert deployments(changes) == [("h100-fp8", v1, 2)]


# --- artifacts, owners, tracks --------------------------------------------------------------


def test_a_finished_build_is_recorded_with_what_it_built_and_where(world: World) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.reconcile()
    job = build_of(world, "h100-fp8")
    world.cluster.finish_build(job)

    plan, changes = world.changes()

    [record] = of_kind(changes, Apply, "ConfigMap")
    assert isinstance(record, Apply)
    assert (record.variant, record.owner_manager) == ("h100-fp8", True)
    meta = record.obj["metadata"]
    assert meta["namespace"] == "models"
    assert {k: meta["labels"][k] for k in (VARIANT, PRECISION, "qmo.dev/gpu-class")} == {
        VARIANT: "h100-fp8", PRECISION: "fp8", "qmo.dev/gpu-class": "h100",
    }  # fmt: skip
    saved = json.loads(next(iter(record.obj["data"].values())))
    key = plan.variants[0].cache_key
    assert saved["cacheKey"] == key
    assert saved["artifactPath"] == f"/store/artifacts/{key}"
    assert (saved["reason"], saved["message"]) == (Reason.BUILD_SUCCEEDED, f"built by Job {job}")


def test_a_second_model_adds_its_owner_to_a_shared_build_and_its_record(world: World) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.reconcile()
    world.cluster.create_model(ungated("fp8"), name="twin")
    twin = World(world.cluster, world.clock, "twin")

    _, waiting = twin.changes()  # the build runs: the twin waits for it
    assert [(c.target["kind"], c.variant) for c in waiting if isinstance(c, AddOwner)] == [
        ("Job", "h100-fp8")
    ]

    world.cluster.finish_build(build_of(world, "h100-fp8"))
    world.settle()
    _, built = twin.changes()
    assert [(c.target["kind"], c.variant) for c in built if isinstance(c, AddOwner)] == [
        ("ConfigMap", "h100-fp8"),
        ("Job", "h100-fp8"),
    ]


def test_each_deployment_and_service_carries_its_track(world: World) -> None:
    spec = gated("fp8")
    spec["quality"]["gate"] = "before-traffic"
    world.cluster.create_model(spec)
    world.settle()

    def tracks(kind: str) -> dict[str, str]:
        return {
            o["metadata"]["name"]: o["metadata"]["labels"][TRACK]
            for o in world.cluster.objects(kind)
            if TRACK in (o["metadata"].get("labels") or {})
        }

    # The temporary BF16 reference and fp8's first revision, a candidate until it passes.
    expected = {"llama-h100-bf16": "reference", "llama-h100-fp8-candidate": "candidate"}
    assert tracks("Deployment") == expected
    assert tracks("Service") == expected
    for service in world.cluster.objects("Service"):
        if TRACK in (service["metadata"].get("labels") or {}):
            assert service["spec"]["selector"][TRACK] == service["metadata"]["labels"][TRACK]

    key = world.variants()["h100-fp8"]["cacheKey"]
    world.cluster.add_report("llama", "h100-fp8", key, PASSING)
    _, changes = world.changes()
    applied = of_kind(changes, Apply, "Deployment") + of_kind(changes, Apply, "Service")
    stable = {
        c.obj["metadata"]["name"]: c.obj["metadata"]["labels"][TRACK]
        for c in applied
        if isinstance(c, Apply) and c.obj["metadata"]["labels"].get(VARIANT) == "h100-fp8"
    }
    assert stable == {"llama-h100-fp8": "stable"}
    assert {(c.target["metadata"]["name"], c.why) for c in changes if isinstance(c, Delete)} == {
        ("llama-h100-fp8-candidate", "no candidate to run"),
        ("llama-h100-bf16", "variant h100-bf16 is no longer planned"),
    }


# --- what stops, what goes on ---------------------------------------------------------------


def test_an_unsupported_variant_listed_first_does_not_stop_the_rest(world: World) -> None:
    world.cluster.add_node("a100", name="a100-0")
    spec = ungated("fp8", "int8", classes=("a100-80gb",))  # Ampere has no FP8
    world.cluster.create_model(spec)

    plan, changes = world.changes()

    assert [(v.name, v.cache_key is None) for v in plan.variants] == [
        ("a100-80gb-fp8", True),
        ("a100-80gb-int8", False),
    ]
    assert [(c.obj["kind"], c.variant) for c in changes if isinstance(c, Apply)] == [
        ("Job", "a100-80gb-int8"),
        ("Service", None),
    ]


def test_the_engine_store_claim_is_created_in_the_models_namespace(world: World) -> None:
    spec = (
        a_model()
        .sized_like(SIZE)
        .with_precisions("fp8")
        .ungated()
        .with_store("engines", create=True)
    )
    world.cluster.create_model(spec.wire())
    _, changes = world.changes()
    [claim] = of_kind(changes, Apply, "PersistentVolumeClaim")
    assert isinstance(claim, Apply)
    assert (claim.obj["metadata"]["name"], claim.obj["metadata"]["namespace"]) == (
        "engines",
        "models",
    )


# --- names another model holds --------------------------------------------------------------

TWIN = "llama-h100-fp8"  # its main Service has the name of llama's fp8 variant Service


def with_twin_first(world: World, spec: Obj) -> World:
    """The model `llama` created after a model whose main Service is llama's fp8 Service."""
    world.cluster.create_model(ungated("bf16"), name=TWIN)
    World(world.cluster, world.clock, TWIN).settle()
    world.cluster.create_model(spec)
    return world


def settle_refused(world: World) -> None:
    """Reconcile, build and roll out a model refused a name: kopf retries it (Retry)."""
    for _ in range(4):
        with contextlib.suppress(Retry):  # once fp8 has a Service to apply
            world.reconcile()
        world.finish_builds()
        world.cluster.roll_out_all()


def test_a_route_never_sends_traffic_to_a_service_another_model_holds(world: World) -> None:
    world.cluster.gateway_api = True
    spec = ungated("fp8", "int8")
    spec["routing"] = {"parentRefs": [{"name": "inference"}]}
    with_twin_first(world, spec)
    settle_refused(world)

    _, changes = world.changes()
    refused = [(c.target["kind"], c.variant) for c in changes if isinstance(c, Refuse)]
    assert ("Service", "h100-fp8") in refused
    route = world.cluster.object("HTTPRoute", "llama")
    assert route is not None
    backends = {b["name"] for rule in route["spec"]["rules"] for b in rule["backendRefs"]}
    assert TWIN not in backends
    assert "llama-h100-int8" in backends


def test_a_route_goes_with_a_reason_when_routing_is_removed(world: World) -> None:
    world.cluster.gateway_api = True
    spec = ungated("fp8")
    spec["routing"] = {"parentRefs": [{"name": "inference"}]}
    world.cluster.create_model(spec)
    world.settle()
    del spec["routing"]
    world.cluster.update_model(spec=spec)
    _, changes = world.changes()
    assert deletions(changes, "HTTPRoute") == [("llama", None, "spec.routing was removed")]


def test_a_route_goes_with_a_reason_once_nothing_serves(world: World) -> None:
    world.cluster.gateway_api = True
    spec = gated("fp8")
    spec["routing"] = {"parentRefs": [{"name": "inference"}]}
    world.cluster.create_model(spec)
    world.settle()
    assert world.cluster.object("HTTPRoute", "llama") is not None
    key = world.variants()["h100-fp8"]["cacheKey"]
    world.cluster.add_report("llama", "h100-fp8", key, REGRESSED)  # withdrawn: nothing serves
    _, changes = world.changes()
    why = "no variant serves or will serve (withdrawn or refused)"
    assert deletions(changes, "HTTPRoute") == [("llama", None, why)]


def test_an_evaluation_waits_while_its_variant_is_refused_and_the_next_one_runs(
    world: World,
) -> None:
    with_twin_first(world, gated("fp8", "int8"))
    settle_refused(world)

    _, changes = world.changes()
    evals = [
        c
        for c in of_kind(changes, Apply, "Job")
        if c.obj["metadata"]["labels"][COMPONENT] == "evaluation"
    ]
    live = {j["metadata"]["labels"][VARIANT] for j in jobs(world, "evaluation")}
    assert live | {c.variant for c in evals} == {"h100-int8"}  # fp8 would call the twin


def test_an_eval_job_someone_changed_is_not_applied_again(world: World) -> None:
    world.cluster.create_model(gated("fp8"))
    world.settle()
    [job] = jobs(world, "evaluation")
    # Its hash annotation no longer matches: any other object would be applied again, but a
    # Job's pod template is immutable.
    world.cluster.edit(
        "Job", job["metadata"]["name"], {"metadata": {"annotations": {"qmo.dev/applied-hash": "x"}}}
    )
    _, changes = world.changes()
    assert of_kind(changes, Apply, "Job") == []


def test_an_eval_jobs_scores_are_recorded_for_its_variant(world: World) -> None:
    world.cluster.create_model(gated("fp8"))
    world.settle()
    [job] = jobs(world, "evaluation")
    world.cluster.finish_eval(job["metadata"]["name"], scores(0.80))
    _, changes = world.changes()
    [recorded] = [c for c in changes if isinstance(c, RecordReport)]
    assert (recorded.variant, recorded.job) == ("h100-fp8", job["metadata"]["name"])


def test_a_report_name_another_model_holds_is_refused_for_that_variant(world: World) -> None:
    world.cluster.create_model(gated("fp8"))
    world.settle()
    key = world.variants()["h100-fp8"]["cacheKey"]
    [job] = jobs(world, "evaluation")
    world.cluster.finish_eval(job["metadata"]["name"], scores(0.80))
    name = report_name("llama", "h100-fp8", key)
    # A report of that name, written for another model (that exists) first.
    world.cluster.create_model(ungated("bf16"), name="other")
    world.cluster.add_report("other", "h100-fp8", key, PASSING, name=name)
    world.cluster.edit("QualityReport", name, {"metadata": {"labels": {MODEL: "other"}}})

    _, changes = world.changes()

    assert [c for c in changes if isinstance(c, RecordReport)] == []
    [refused] = [c for c in changes if isinstance(c, Refuse)]
    assert (refused.target["kind"], refused.target["metadata"]["name"], refused.variant) == (
        "QualityReport", name, "h100-fp8",
    )  # fmt: skip
    assert refused.refusal.reason == Reason.NAME_TAKEN


# --- situations the gate's mutants showed untested ------------------------------------------


def test_gate_off_keeps_a_variant_serving_whatever_a_report_says(world: World) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.settle()
    key = world.variants()["h100-fp8"]["cacheKey"]
    world.cluster.add_report("llama", "h100-fp8", key, REGRESSED)

    plan, changes = world.changes()

    [fp8] = plan.variants
    assert (fp8.decision.phase.value, fp8.decision.reason) == ("Serving", "Serving")
    assert [c for c in changes if isinstance(c, Delete)] == []
    world.settle()
    assert world.revision("llama-h100-fp8") == key
    assert "RolledBack" not in world.cluster.reasons()
    assert "Withdrawn" not in world.cluster.reasons()


def test_a_report_about_the_bf16_baseline_judges_nothing(world: World) -> None:
    world.cluster.create_model(gated("fp8"))
    world.settle()
    key = world.variants()["h100-bf16"]["cacheKey"]
    world.cluster.add_report("llama", "h100-bf16", key, REGRESSED)

    plan, changes = world.changes()

    bf16 = next(v for v in plan.variants if v.name == "h100-bf16")
    assert (bf16.decision.phase.value, bf16.decision.reason) == ("Serving", "Serving")
    assert [c for c in changes if isinstance(c, Delete)] == []


def test_a_requested_bf16_under_before_traffic_serves_without_a_candidate(world: World) -> None:
    spec = gated("bf16", "fp8")
    spec["quality"]["gate"] = "before-traffic"
    world.cluster.create_model(spec)
    world.settle()

    bf16 = world.variants()["h100-bf16"]
    assert (bf16["phase"], bf16["quality"]["verdict"]) == ("Serving", "Baseline")
    deployment = world.cluster.object("Deployment", "llama-h100-bf16")
    assert deployment is not None
    assert deployment["metadata"]["labels"][TRACK] == "stable"  # BF16 is judged by nothing
    assert world.cluster.object("Deployment", "llama-h100-bf16-candidate") is None
    assert world.cluster.object("Deployment", "llama-h100-fp8-candidate") is not None


def test_a_retry_reaches_a_failed_build_listed_after_others(world: World) -> None:
    world.cluster.create_model(ungated("fp8", "int8"))
    world.reconcile()
    world.cluster.finish_build(build_of(world, "h100-fp8"))
    world.cluster.finish_build(build_of(world, "h100-int8"), succeeded=False)
    world.reconcile()
    failed = build_of(world, "h100-int8")
    # A variant added since has no build yet: the retry passes it by.
    world.cluster.update_model(spec=ungated("fp8", "int8", "int4-awq"))

    _, changes = world.changes(retry=True)

    assert deletions(changes, "Job") == [(failed, "h100-int8", RETRY)]


def test_the_build_job_runs_the_operators_builder_image(world: World) -> None:
    world.cluster.create_model(ungated("fp8"))
    _, changes = world.changes()
    [job] = of_kind(changes, Apply, "Job")
    assert isinstance(job, Apply)
    containers = job.obj["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == [CONFIG.builder_image]


def held_by_another_model(world: World, kind: str, name: str) -> None:
    """An object named as one of llama's, labelled for the model `other` (which exists)."""
    world.cluster.create_model(ungated("bf16"), name="other")
    api = {"Deployment": "apps/v1", "Service": "v1", "Job": "batch/v1"}[kind]
    labels = {MODEL: "other", "app.kubernetes.io/managed-by": "qmo"}  # as qmo labels its own
    meta = {"name": name, "namespace": "models", "labels": labels}
    world.cluster.put({"apiVersion": api, "kind": kind, "metadata": meta})


@pytest.mark.parametrize(
    ("kind", "name", "gate"),
    [
        ("Deployment", "llama-h100-fp8", "after-rollout"),
        ("Service", "llama-h100-fp8-candidate", "before-traffic"),
        ("Deployment", "llama-h100-fp8-candidate", "before-traffic"),
    ],
)
def test_a_name_another_model_holds_is_refused_for_its_variant(
    world: World, kind: str, name: str, gate: str
) -> None:
    spec = gated("fp8")
    spec["quality"]["gate"] = gate
    held_by_another_model(world, kind, name)
    world.cluster.create_model(spec)
    world.reconcile()
    world.finish_builds()

    _, changes = world.changes()

    refused = [(c.target["kind"], c.target["metadata"]["name"], c.variant)
               for c in changes if isinstance(c, Refuse)]  # fmt: skip
    assert refused == [(kind, name, "h100-fp8")]


def test_an_eval_job_name_another_model_holds_is_refused_for_its_variant() -> None:
    first = a_world()
    first.cluster.create_model(gated("fp8"))
    first.settle()
    [job] = jobs(first, "evaluation")

    world = a_world()
    held_by_another_model(world, "Job", job["metadata"]["name"])
    world.cluster.create_model(gated("fp8"))
    with contextlib.suppress(Retry):
        world.settle()

    _, changes = world.changes()
    refused = [(c.target["kind"], c.variant) for c in changes if isinstance(c, Refuse)]
    assert refused == [("Job", "h100-fp8")]
