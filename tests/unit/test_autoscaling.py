"""Autoscaling (serving.autoscaling): the API's rules, each variant's range bounded by what its
GPU class can hold, the scalers qmo writes (KEDA's ScaledObject or an HPA), and whole
reconciles on the fake cluster in which qmo never fights the scaler over spec.replicas; and the
scheduler's reason in the status of a variant whose pods cannot be placed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from qmo.api.quantizedmodel import QuantizedModelSpec, ScalingEngine
from qmo.controller.changes import Apply, HandOverReplicas
from qmo.manifests.autoscaling import METRIC, pod_query, quantity
from qmo.planner.scaling import scaling_engine, scaling_range
from qmo.vocabulary import Reason, Refusal
from qmo.wire import Obj
from tests.support.builders import a_model
from tests.support.fake_kube import score, speed_sample
from tests.support.reconciles import BENCHMARKS, PASSING, SIZE, World, a_world

PROMETHEUS = "http://prometheus.monitoring:9090"


def autoscaled(**scaling: Any) -> Obj:
    """fp8 on H100, ungated, autoscaled between 1 and 4 replicas unless told otherwise."""
    spec: Obj = (
        a_model()
        .sized_like(SIZE)
        .with_precisions("fp8")
        .on_classes("h100")
        .ungated()
        .with_serving(autoscaling={"maxReplicas": 4, **scaling})
        .wire()
    )
    return spec


def parsed(spec: Obj) -> QuantizedModelSpec:
    return QuantizedModelSpec.from_wire(spec)


# --- the API --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serving", "says"),
    [
        ({"replicas": 2, "autoscaling": {"maxReplicas": 4}}, "exclude each other"),
        ({"autoscaling": {"minReplicas": 0, "maxReplicas": 4}}, "scale to zero"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 4}}, "may not exceed maxReplicas"),
        (
            {"autoscaling": {"maxReplicas": 4, "metric": "kvCacheUtilization", "target": 80}},
            "fraction of the KV cache",
        ),
        ({"autoscaling": {"maxReplicas": 4, "prometheusAddress": "prometheus:9090"}}, "pattern"),
    ],
)
def test_autoscaling_that_cannot_work_is_refused_with_a_reason(serving: Obj, says: str) -> None:
    spec = a_model().with_precisions("fp8").with_serving(**serving).wire()
    with pytest.raises(ValidationError, match=says):
        QuantizedModelSpec.from_wire(spec)


def test_without_replicas_or_autoscaling_a_variant_wants_one_replica() -> None:
    assert parsed(a_model().with_precisions("fp8").wire()).serving.wanted_replicas == 1
    assert parsed(autoscaled(minReplicas=2)).serving.wanted_replicas == 2


# --- the range a class can hold -------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "held", "running", "per_replica", "expected_max", "bounded"),
    [
        (8, 1, 1, 1, 4, False),  # room for 7 more: the spec's 4
        (8, 6, 1, 1, 3, True),  # 2 free: 1 running + 2
        (8, 8, 1, 1, 1, True),  # full: what runs
        (8, 6, 1, 2, 2, True),  # 2 free, TP 2: one more
        (8, 7, 1, 2, 1, True),  # 1 free, TP 2: none more
        (8, 8, 0, 1, 1, True),  # full and nothing runs: a scaler still needs a maximum of 1
        (8, 10, 2, 1, 2, True),  # others hold more than the class has (non-qmo GPUs counted)
    ],
)
def test_the_maximum_is_what_the_class_can_hold(
    total: int, held: int, running: int, per_replica: int, expected_max: int, bounded: bool
) -> None:
    found = scaling_range(
        parsed(autoscaled()),
        ScalingEngine.HPA,
        gpus_per_replica=per_replica,
        total_gpus=total,
        gpus_held=held,
        running=running,
    )
    assert (found.max_replicas, found.bounded) == (expected_max, bounded)
    assert found.min_replicas <= found.max_replicas
    if bounded:
        assert "free GPU(s)" in found.why


def test_the_minimum_never_exceeds_the_bound() -> None:
    found = scaling_range(
        parsed(autoscaled(minReplicas=3)),
        ScalingEngine.HPA,
        gpus_per_replica=1,
        total_gpus=8,
        gpus_held=8,
        running=2,
    )
    assert (found.min_replicas, found.max_replicas) == (2, 2)


@pytest.mark.parametrize(
    ("engine", "keda", "prometheus", "expected"),
    [
        ("auto", True, PROMETHEUS, ScalingEngine.KEDA),
        ("auto", True, None, ScalingEngine.HPA),  # KEDA would have nothing to query
        ("auto", False, PROMETHEUS, ScalingEngine.HPA),
        ("hpa", True, PROMETHEUS, ScalingEngine.HPA),
        ("keda", True, PROMETHEUS, ScalingEngine.KEDA),
        ("keda", False, PROMETHEUS, Reason.AUTOSCALING_UNAVAILABLE),
        ("keda", True, None, Reason.AUTOSCALING_UNAVAILABLE),
    ],
)
def test_the_engine(engine: str, keda: bool, prometheus: str | None, expected: object) -> None:
    chosen = scaling_engine(parsed(autoscaled(engine=engine)), keda, prometheus)
    assert (chosen.reason if isinstance(chosen, Refusal) else chosen) == expected


# --- what qmo writes ------------------------------------------------------------------------


def test_targets_are_quantities_and_queries_sum_the_deployments_pods() -> None:
    assert [quantity(v) for v in (4.0, 0.8, 12.5)] == ["4", "800m", "12500m"]
    query = pod_query(parsed(autoscaled()).serving.autoscaling.metric, "models", "llama-h100-fp8")  # type: ignore[union-attr]
    assert query == (
        'sum(trtllm_num_requests_waiting{namespace="models",'
        'pod=~"llama-h100-fp8-[a-z0-9]+-[a-z0-9]+"})'
    )
    assert set(METRIC.values()) == {
        "trtllm_num_requests_waiting",
        "trtllm_num_requests_running",
        "trtllm_kv_cache_utilization",
    }


def serving(world: World) -> Obj:
    deployment = world.cluster.object("Deployment", "llama-h100-fp8")
    assert deployment is not None
    return deployment


def test_an_autoscaled_variant_gets_an_hpa_and_a_deployment_without_a_count() -> None:
    world = a_world()
    world.cluster.create_model(autoscaled(minReplicas=2, scaleDownStabilizationSeconds=600))
    world.settle()

    deployment = serving(world)
    assert "replicas" not in deployment["spec"]
    assert deployment["metadata"]["annotations"]["qmo.dev/replicas"] == "autoscaled"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert container["args"][-2:] == ["--extra_llm_api_options", "/tmp/qmo-llm-api-options.yaml"]
    hpa = world.cluster.object("HorizontalPodAutoscaler", "llama-h100-fp8")
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "llama-h100-fp8",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    [metric] = hpa["spec"]["metrics"]
    assert metric["pods"] == {
        "metric": {"name": "trtllm_num_requests_waiting"},
        "target": {"type": "AverageValue", "averageValue": "4"},
    }
    assert hpa["spec"]["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 600}
    scaling = world.variants()["h100-fp8"]["autoscaling"]
    assert (scaling["engine"], scaling["minReplicas"], scaling["maxReplicas"]) == ("hpa", 2, 4)
    assert world.cluster.objects("ScaledObject") == []


def test_where_keda_is_installed_an_autoscaled_variant_gets_a_scaled_object() -> None:
    world = a_world()
    world.cluster.keda = True
    world.cluster.create_model(autoscaled(prometheusAddress=PROMETHEUS, target=0.5))
    world.settle()

    scaled = world.cluster.object("ScaledObject", "llama-h100-fp8")
    assert scaled is not None
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 4)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["serverAddress"] == PROMETHEUS
    assert trigger["metadata"]["threshold"] == "0.5"
    assert world.cluster.objects("HorizontalPodAutoscaler") == []


def test_qmo_never_fights_the_scaler_over_replicas() -> None:
    world = a_world()
    world.cluster.create_model(autoscaled())
    world.settle()
    # The HPA controller scales the Deployment to 3 (an Update of spec.replicas).
    world.cluster.edit("Deployment", "llama-h100-fp8", {"spec": {"replicas": 3}}, "hpa-controller")
    world.cluster.roll_out("llama-h100-fp8")

    world.settle()
    world.clock.advance(60)  # the count in status is progress: written at most every 30 s
    world.settle()

    assert serving(world)["spec"]["replicas"] == 3
    assert world.variants()["h100-fp8"]["autoscaling"]["replicas"] == 3
    world.reconcile()
    assert world.writes() == []


def test_a_scale_by_the_scaler_costs_no_apply_of_the_deployment() -> None:
    world = a_world()
    world.cluster.create_model(autoscaled())
    world.settle()
    world.cluster.edit("Deployment", "llama-h100-fp8", {"spec": {"replicas": 4}}, "hpa-controller")

    world.reconcile()  # the scale's watch event: the generation moved, the template did not

    assert ("apply", "Deployment", "llama-h100-fp8") not in world.writes()
    assert serving(world)["spec"]["replicas"] == 4


def test_an_edit_of_the_template_is_still_drift_and_applied_again() -> None:
    world = a_world()
    world.cluster.create_model(autoscaled())
    world.settle()
    edit = {"spec": {"replicas": 4, "template": {"metadata": {"labels": {"mine": "yes"}}}}}
    world.cluster.edit("Deployment", "llama-h100-fp8", edit, "someone")

    world.reconcile()

    assert ("apply", "Deployment", "llama-h100-fp8") in world.writes()


def test_a_fixed_count_someone_scaled_away_from_is_set_again() -> None:
    world = a_world()
    world.cluster.create_model({**autoscaled(), "serving": {"replicas": 2}})
    world.settle()
    world.cluster.edit("Deployment", "llama-h100-fp8", {"spec": {"replicas": 5}}, "kubectl-scale")

    world.settle()

    assert serving(world)["spec"]["replicas"] == 2


def test_turning_autoscaling_on_hands_the_running_count_to_the_scaler() -> None:
    world = a_world()
    spec = autoscaled()
    fixed = {**spec, "serving": {"replicas": 3}}
    world.cluster.create_model(fixed)
    world.settle()
    assert serving(world)["spec"]["replicas"] == 3

    world.cluster.update_model(spec=spec)
    _, changes = world.changes()
    handovers = [c for c in changes if isinstance(c, HandOverReplicas)]
    deployments = [c for c in changes if isinstance(c, Apply) and c.obj["kind"] == "Deployment"]
    assert [(h.variant, h.replicas) for h in handovers] == [("h100-fp8", 3)]
    assert changes.index(handovers[0]) < changes.index(deployments[0])
    world.settle()

    assert serving(world)["spec"]["replicas"] == 3, "the apply without a count reset it"
    world.reconcile()
    assert world.writes() == []


def test_turning_autoscaling_off_deletes_the_scaler_and_sets_the_count_again() -> None:
    world = a_world()
    world.cluster.create_model(autoscaled())
    world.settle()
    assert world.cluster.object("HorizontalPodAutoscaler", "llama-h100-fp8") is not None

    spec = autoscaled()
    spec["serving"] = {"replicas": 2}
    world.cluster.update_model(spec=spec)
    world.settle()

    assert world.cluster.object("HorizontalPodAutoscaler", "llama-h100-fp8") is None
    assert serving(world)["spec"]["replicas"] == 2
    assert "autoscaling" not in world.variants()["h100-fp8"]


def test_a_variant_at_the_bound_of_its_class_says_so_once() -> None:
    world = a_world()  # one H100 node: 8 GPUs
    world.cluster.create_model(autoscaled(maxReplicas=20))
    world.settle()
    hpa = world.cluster.object("HorizontalPodAutoscaler", "llama-h100-fp8")
    assert hpa is not None
    assert hpa["spec"]["maxReplicas"] == 8  # 1 running + 7 free GPUs, TP 1

    # The scaler takes all it was given.
    world.cluster.edit("Deployment", "llama-h100-fp8", {"spec": {"replicas": 8}}, "hpa-controller")
    world.cluster.roll_out("llama-h100-fp8")
    world.settle()

    scaling = world.variants()["h100-fp8"]["autoscaling"]
    assert scaling["atBound"] is True
    assert "CapacityExhausted" in scaling["message"]
    assert world.cluster.reasons("Warning").count("CapacityExhausted") == 1
    world.reconcile()
    assert world.writes() == []


def test_another_models_gpus_lower_the_bound() -> None:
    world = a_world()
    other = a_model().sized_like(SIZE).with_precisions("int8").on_classes("h100").ungated()
    world.cluster.create_model(other.with_replicas(5).wire(), name="other")
    World(world.cluster, world.clock, "other").settle()
    world.cluster.create_model(autoscaled(maxReplicas=20))
    world.settle()

    hpa = world.cluster.object("HorizontalPodAutoscaler", "llama-h100-fp8")
    assert hpa is not None
    assert hpa["spec"]["maxReplicas"] == 3  # 8 GPUs: 5 the other model's, 1 running, 2 free
    assert "2 free GPU(s)" in world.variants()["h100-fp8"]["autoscaling"]["message"]


@pytest.mark.parametrize(
    ("metric", "average"),
    [("requestsWaiting", "4"), ("requestsRunning", "16"), ("kvCacheUtilization", "800m")],
)
def test_each_metric_has_a_default_target(metric: str, average: str) -> None:
    world = a_world()
    world.cluster.create_model(autoscaled(metric=metric))
    world.settle()
    hpa = world.cluster.object("HorizontalPodAutoscaler", "llama-h100-fp8")
    assert hpa is not None
    [source] = hpa["spec"]["metrics"]
    assert source["pods"]["target"]["averageValue"] == average


# --- the default route's weights across GPU classes ----------------------------------------


def two_classes(world: World, *, gated: bool = False) -> None:
    """int8 on H100 and on A100, autoscaled, routed (`gated`: judged after rollout)."""
    world.cluster.add_node("a100", name="a100-0")
    world.cluster.gateway_api = True
    model = (
        a_model()
        .sized_like(SIZE)
        .with_precisions("int8")
        .on_classes("h100", "a100-80gb")
        .with_serving(autoscaling={"maxReplicas": 4})
    )
    if gated:
        model = model.with_quality(gate="after-rollout", benchmarks=BENCHMARKS)
    else:
        model = model.ungated()
    spec = model.wire()
    spec["routing"] = {"parentRefs": [{"name": "inference"}]}
    world.cluster.create_model(spec)
    world.settle()


def default_rule(world: World) -> dict[str, int]:
    route = world.cluster.object("HTTPRoute", "llama")
    assert route is not None
    [rule] = [
        r for r in route["spec"]["rules"] if r["matches"][0]["headers"][0]["value"] == "llama"
    ]
    return {b["name"]: b["weight"] for b in rule["backendRefs"]}


def test_the_default_route_weighs_each_class_by_its_capacity_and_spills_as_one_grows() -> None:
    world = a_world()
    two_classes(world)

    # One replica each: the estimate follows the classes' memory bandwidth (3,350 and 2,039 GB/s).
    assert default_rule(world) == {"llama-h100-int8": 1000, "llama-a100-80gb-int8": 609}
    scaling = world.variants()["a100-80gb-int8"]["autoscaling"]
    assert (scaling["routeWeight"], scaling["capacity"]) == (609, "estimated")

    # H100's scaler adds two replicas: its share grows, A100's falls.
    world.cluster.edit("Deployment", "llama-h100-int8", {"spec": {"replicas": 3}}, "hpa")
    world.settle()
    assert default_rule(world) == {"llama-h100-int8": 1000, "llama-a100-80gb-int8": 203}


def test_measured_speed_replaces_the_estimate_once_every_class_has_one() -> None:
    world = a_world()
    two_classes(world, gated=True)  # the speed probe runs with the gate's evaluations
    variants = world.variants()
    for name, tokens in (("h100-int8", 2000.0), ("a100-80gb-int8", 1500.0)):
        speed = {"candidate": [speed_sample(tokens / 2, 4), speed_sample(tokens, 8)]}
        world.cluster.add_report("llama", name, variants[name]["cacheKey"], PASSING, speed=speed)
    world.settle()

    assert default_rule(world) == {"llama-h100-int8": 1000, "llama-a100-80gb-int8": 750}
    scaling = world.variants()["h100-int8"]["autoscaling"]
    assert (scaling["tokensPerSecond"], scaling["capacity"]) == (2000.0, "measured")


def test_one_class_keeps_the_main_service_and_precision_names_are_not_weighted() -> None:
    world = a_world()
    world.cluster.gateway_api = True
    spec = autoscaled()
    spec["routing"] = {"parentRefs": [{"name": "inference"}], "precisionNames": True}
    world.cluster.create_model(spec)
    world.settle()
    route = world.cluster.object("HTTPRoute", "llama")
    assert route is not None
    backends = {
        r["matches"][0]["headers"][0]["value"]: [(b["name"], b["weight"]) for b in r["backendRefs"]]
        for r in route["spec"]["rules"]
    }
    assert backends == {"llama": [("llama", 1)], "llama@fp8": [("llama-h100-fp8", 1)]}
    assert world.variants()["h100-fp8"]["autoscaling"].get("routeWeight") is None


def test_a_variant_judged_regressed_gets_no_share_while_another_class_serves() -> None:
    world = a_world()
    two_classes(world, gated=True)
    variants = world.variants()
    near_the_line = [score("arithmetic", 0.80, 0.79)]  # -1.25%: passes at 1.5%, not at 1.0%
    world.cluster.add_report("llama", "h100-int8", variants["h100-int8"]["cacheKey"], PASSING)
    key = variants["a100-80gb-int8"]["cacheKey"]
    world.cluster.add_report("llama", "a100-80gb-int8", key, near_the_line)
    world.settle()
    assert default_rule(world) == {"llama-h100-int8": 1000, "llama-a100-80gb-int8": 609}

    spec = world.model()["spec"]
    spec["quality"]["maxRegressionPercent"] = 1.0
    world.cluster.update_model(spec=spec)
    world.settle()

    assert world.variants()["a100-80gb-int8"]["reason"] == "RegressedWhileGood"  # still serves
    assert default_rule(world) == {"llama-h100-int8": 1000, "llama-a100-80gb-int8": 0}


def test_a_variant_whose_pods_cannot_be_placed_says_what_the_scheduler_says() -> None:
    world = a_world()
    spec = autoscaled()
    spec["serving"] = {"replicas": 2}
    world.cluster.create_model(spec)
    world.reconcile()
    world.finish_builds()
    world.reconcile()  # the Deployment is applied; one replica comes up, the other cannot
    world.cluster.roll_out("llama-h100-fp8", ready=1)
    full = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    world.cluster.pod_waits_for_room("llama-h100-fp8", full)
    world.clock.advance(60)  # past the pacing of progress-only status writes

    world.reconcile()

    fp8 = world.variants()["h100-fp8"]
    assert (fp8["phase"], fp8["reason"]) == ("Deploying", "RollingOut")
    assert fp8["message"] == f"1/2 replica(s) ready; pods wait for room: {full}"


def test_kubectl_get_wide_shows_replicas_and_the_autoscaled_range() -> None:
    world = a_world()
    world.cluster.create_model(autoscaled(minReplicas=1, maxReplicas=6))
    world.settle()
    summary = world.model()["status"]["summary"]
    assert summary["replicas"] == "h100-fp8=1(1-6)"
