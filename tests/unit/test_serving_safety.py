"""What serves keeps serving through routine changes (docs/reliability.md): the audit's
reproductions of issue 21 as whole reconciles on the fake cluster. Each fails on the code
before its fix."""

from __future__ import annotations

from qmo.wire import Obj
from tests.support.fake_kube import DELETE, score
from tests.support.reconciles import PASSING, REGRESSED, World, a_world, at_revision_v2, gated

# A pass at -1.25%: within the default 1.5%, over a tightened 1.0%.
NEAR_THE_LINE = [score("arithmetic", 0.80, 0.79)]


def passed_at(world: World, results: list[Obj], spec: Obj) -> str:
    """The model serving its first revision after a report with `results` passed it."""
    world.cluster.create_model(spec)
    world.settle()
    key = str(world.variants()["h100-fp8"]["cacheKey"])
    world.cluster.add_report("llama", "h100-fp8", key, results)
    world.settle()
    assert world.variants()["h100-fp8"]["lastGoodRevision"] == key
    return key


def test_a_tighter_threshold_keeps_the_last_good_revision_serving_and_says_why() -> None:
    world = a_world()
    key = passed_at(world, NEAR_THE_LINE, gated("fp8"))
    spec = world.model()["spec"]
    spec["quality"]["maxRegressionPercent"] = 1.0
    world.cluster.update_model(spec=spec)
    world.settle()

    fp8 = world.variants()["h100-fp8"]
    assert world.revision("llama-h100-fp8") == key  # still there, still that revision
    assert (fp8["phase"], fp8["reason"]) == ("Serving", "RegressedWhileGood")
    assert fp8["lastGoodRevision"] == key
    gate = world.condition("QualityGate")
    assert (gate["status"], gate["reason"]) == ("False", "Regressed")
    assert world.condition("Ready")["status"] == "True"
    assert "Withdrawn" not in world.cluster.reasons()
    assert world.cluster.reasons().count("RegressedWhileGood") == 1
    world.reconcile()
    assert world.writes() == []  # and it says so once


def test_asking_for_speed_reevaluates_a_serving_before_traffic_revision_in_place() -> None:
    world = a_world()
    spec = gated("fp8")
    spec["quality"]["gate"] = "before-traffic"
    key = passed_at(world, PASSING, spec)
    (first_eval,) = [j for j in world.cluster.names("Job") if j.startswith("qmo-eval")]

    spec = world.model()["spec"]
    spec["quality"]["minSpeedup"] = 1.2  # the old report has no speed: it cannot be judged
    world.cluster.update_model(spec=spec)
    world.settle()

    assert world.revision("llama-h100-fp8") == key
    assert world.condition("Ready")["status"] == "True"
    tracks = [
        d["metadata"]["labels"].get("qmo.dev/track") for d in world.cluster.objects("Deployment")
    ]
    assert "candidate" not in tracks  # it serves: it is evaluated where it is
    evals = sorted(j for j in world.cluster.names("Job") if j.startswith("qmo-eval"))
    assert len(evals) == 2, evals  # a new eval Job for the new spec, not blocked by the old
    assert first_eval in evals
    assert world.cluster.count(DELETE) == 0


def test_a_before_traffic_candidate_does_not_move_the_main_service_off_its_good_revision() -> None:
    world = a_world()
    spec = gated("fp8", "bf16")
    spec["quality"]["gate"] = "before-traffic"
    world.cluster.create_model(spec)
    world.settle()
    v1 = str(world.variants()["h100-fp8"]["cacheKey"])
    world.cluster.add_report("llama", "h100-fp8", v1, PASSING)
    world.settle()
    main = world.cluster.object("Service", "llama")
    assert main is not None
    assert main["spec"]["selector"]["qmo.dev/precision"] == "fp8"

    world.cluster.update_model(spec=at_revision_v2(world))
    world.settle()  # bf16 r2 serves; fp8 r2 waits for its report as a candidate

    assert world.variants()["h100-fp8"]["phase"] == "Evaluating"
    main = world.cluster.object("Service", "llama")
    assert main is not None
    assert main["spec"]["selector"]["qmo.dev/precision"] == "fp8"  # r1 still takes traffic
    assert world.revision("llama-h100-fp8") == v1


def fell_back_to_int8(world: World) -> str:
    """int4-awq regressed on its first rollout and int8, its fallback, passed and serves."""
    world.cluster.create_model(gated("int4-awq", on_regression="fallback"))
    world.settle()
    int4 = str(world.variants()["h100-int4-awq"]["cacheKey"])
    world.cluster.add_report("llama", "h100-int4-awq", int4, REGRESSED)
    world.settle()
    int8 = str(world.variants()["h100-int8"]["cacheKey"])
    world.cluster.add_report("llama", "h100-int8", int8, PASSING)
    world.settle()
    assert world.variants()["h100-int8"]["lastGoodRevision"] == int8
    return int8


def main_precision(world: World) -> str:
    main = world.cluster.object("Service", "llama")
    assert main is not None
    return str(main["spec"]["selector"].get("qmo.dev/precision"))


def test_a_new_revision_after_a_fallback_keeps_the_fallback_serving_until_int4_passes() -> None:
    world = a_world()
    int8_v1 = fell_back_to_int8(world)
    world.cluster.update_model(spec=at_revision_v2(world))
    world.settle()

    int4_v2 = str(world.variants()["h100-int4-awq"]["cacheKey"])
    assert world.revision("llama-h100-int8") == int8_v1  # the fallback still serves
    assert world.variants()["h100-int8"]["reason"] == "KeptUntilReplaced"
    assert main_precision(world) == "int8"
    assert world.condition("Ready")["status"] == "True"

    world.cluster.add_report("llama", "h100-int4-awq", int4_v2, PASSING)
    world.settle()
    assert main_precision(world) == "int4-awq"
    assert world.cluster.object("Deployment", "llama-h100-int8") is None  # replaced, now gone


def test_a_new_revision_that_regresses_again_falls_back_without_an_outage() -> None:
    world = a_world()
    fell_back_to_int8(world)
    world.cluster.update_model(spec=at_revision_v2(world))
    world.settle()
    int4_v2 = str(world.variants()["h100-int4-awq"]["cacheKey"])

    deleted: list[tuple[str, str]] = []
    world.cluster.add_report("llama", "h100-int4-awq", int4_v2, REGRESSED)
    for _ in range(6):  # every step of the second fallback, as settle() takes them
        world.reconcile()
        deleted += [(kind, name) for verb, kind, name in world.writes() if verb == DELETE]
        assert main_precision(world) == "int8"
        assert world.cluster.object("Deployment", "llama-h100-int8") is not None
        world.finish_builds()
        world.cluster.roll_out_all()
    int8_v2 = str(world.variants()["h100-int8"]["cacheKey"])
    assert world.revision("llama-h100-int8") == int8_v2
    assert ("Deployment", "llama-h100-int8") not in deleted
    assert ("Service", "llama-h100-int8") not in deleted


def test_a_build_that_finishes_during_a_reconcile_is_acted_on_before_the_status_says_so() -> None:
    # The cache follows the cluster while a reconcile writes: a plan made after the writes may
    # ask for more (here fp8's candidate, its build done meanwhile); the status must not say
    # Evaluating before that candidate exists.
    world = a_world()
    spec = gated("fp8", "bf16")
    spec["quality"]["gate"] = "before-traffic"
    world.cluster.create_model(spec)
    world.reconcile()  # both build Jobs
    jobs = {j["metadata"]["labels"]["qmo.dev/precision"]: j for j in world.cluster.objects("Job")}
    world.cluster.finish_build(jobs["bf16"]["metadata"]["name"])
    apply = world.cluster.apply

    def apply_then_finish_fp8(obj: Obj, *args: object) -> Obj:
        stored = apply(obj, *args)  # type: ignore[arg-type]
        if obj["kind"] == "Deployment":  # the world moves on while the reconcile writes
            world.cluster.finish_build(jobs["fp8"]["metadata"]["name"])
        return stored

    world.cluster.apply = apply_then_finish_fp8  # type: ignore[method-assign]
    world.reconcile()
    candidates = [
        d for d in world.cluster.objects("Deployment")
        if d["metadata"]["labels"].get("qmo.dev/track") == "candidate"
    ]  # fmt: skip
    assert world.variants()["h100-fp8"]["phase"] == "Evaluating"
    assert candidates, "the status says Evaluating, but no candidate Deployment exists"
