"""The serving guarantees of docs/reliability.md, checked over random sequences of events:
hypothesis' rule-based state machine drives whole reconciles on the fake cluster through what a
platform team and its cluster do to a gated model (spec edits, new revisions, reports that pass,
regress or cannot be judged, builds and eval Jobs that fail, pods lost, GPU nodes that come,
go or carry absurd labels, routing switched on and off, operator restarts, a second model whose
name extends the first's), lets the kubelet and the controllers settle the world, and checks
the invariants after every reconcile.

- What serves keeps serving: once the model served a revision that passed, its main Service
  selects a ready Deployment of its own after every step (while pods are lost, a Deployment of
  its own that will be ready again), and never an unjudged BF16 while a judged variant serves.
- Nothing is shared: every object labelled for a model is owned by that model, and a Service
  selects only its own model's pods.
- A route keeps its age: while routing stays on, the HTTPRoute is never deleted and recreated
  (a gateway answers 503 while nothing is ready, not 404).
- Never frozen: every settle ends with the status written (the fake refuses what the API
  server refuses), and a world that did not move makes no write.
- One Event per decision: a reconcile of a settled world posts nothing.

The same machine, run against the code before issue 21's fixes, finds each defect of its
audit that the fake cluster can show (docs/reliability.md lists which invariant catches which).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from qmo.controller.reconcile import Retry
from qmo.vocabulary import MODEL, Reason
from qmo.wire import Obj
from tests.support.fake_kube import score, speed_sample
from tests.support.reconciles import World, a_world, gated, ungated

LLAMA = "llama"
TWIN = "llama-h100-fp8"  # its main Service has the name of llama's fp8 variant Service
GATEWAY = {"parentRefs": [{"name": "inference"}]}
VERDICTS = {
    "pass": [score("arithmetic", 0.80, 0.80)],
    "near-the-line": [score("arithmetic", 0.80, 0.79)],  # -1.25%
    "regress": [score("arithmetic", 0.80, 0.70)],
    "zero-baseline": [score("arithmetic", 0.0, 0.5)],  # cannot be judged: Invalid
    "overflowing-speed": [score("arithmetic", 0.80, 0.80)],  # with the speed below
}
# Both floats the API server accepts; their quotient is not a float at all.
OVERFLOW = {"candidate": [speed_sample(1e300)], "baseline": [speed_sample(1e-10)]}
PRECISION_SETS = [["fp8"], ["int4-awq"], ["int8"], ["fp8", "int8"], ["bf16", "fp8"]]


def selected(world: World, service: str) -> list[Obj]:
    """The Deployments whose pods the Service selects."""
    found = world.cluster.object("Service", service)
    if found is None:
        return []
    selector = found["spec"].get("selector") or {}
    chosen = []
    for deployment in world.cluster.objects("Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
        if selector and all(pod_labels.get(k) == v for k, v in selector.items()):
            chosen.append(deployment)
    return chosen


def is_ready(deployment: Obj) -> bool:
    return bool((deployment.get("status") or {}).get("readyReplicas", 0) > 0)


def reconcile(model: World) -> None:
    """One reconcile; a model refused a name another model holds (whichever came second)
    says so in its status and is retried later (Retry), as kopf would."""
    try:
        model.reconcile()
    except Retry as retried:
        if retried.reason_label != Reason.NAME_TAKEN:  # a refused write is a failure here
            raise


def owner(obj: Obj) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r["name"] for r in refs if r.get("controller")), None)


class ServingModel(RuleBasedStateMachine):
    """One gated model on an H100 fleet, through whatever a platform team does to it."""

    VERDICTS = sorted(VERDICTS)

    world: World
    served_good: bool
    lost: set[str]
    fail_builds: bool
    fail_evals: bool
    route_uid: str | None

    @initialize(
        precisions=st.sampled_from(PRECISION_SETS),
        on_regression=st.sampled_from(["rollback", "fallback"]),
        timing=st.sampled_from(["after-rollout", "before-traffic"]),
    )
    def create(
        self, precisions: list[str], on_regression: str, timing: str, routed: bool = False
    ) -> None:
        self.world = a_world()
        self.world.cluster.gateway_api = True
        spec = gated(*precisions, on_regression=on_regression)
        spec["quality"]["gate"] = timing
        if routed:
            spec["routing"] = GATEWAY
        self.world.cluster.create_model(spec)
        self.served_good, self.lost, self.route_uid = False, set(), None
        self.fail_builds = self.fail_evals = False
        self.settle()

    # --- how the world moves --------------------------------------------------------------

    def models(self) -> list[World]:
        names = [m["metadata"]["name"] for m in self.world.cluster.objects("QuantizedModel")]
        return [World(self.world.cluster, self.world.clock, name) for name in sorted(names)]

    def settle(self, rounds: int = 12) -> None:
        """Reconcile every model; the Job controller and the kubelet finish (or fail) builds
        and eval Jobs and roll out what changed (pods lost stay lost), until nothing moves."""
        for _ in range(rounds):
            wrote = False
            for model in self.models():
                reconcile(model)
                wrote = wrote or bool(self.world.cluster.requests)
            # The guarantees hold after every reconcile, not only once builds have finished
            # (a build takes minutes, an outage while it runs is an outage).
            self.what_served_keeps_serving()
            self.no_unjudged_bf16_takes_the_traffic_of_a_judged_variant()
            self.nothing_is_shared_between_models()
            self.a_route_keeps_its_age()
            moved = self.finish_jobs() + [
                name for name in self.world.cluster.roll_out_all() if name not in self.lost
            ]
            for name in self.lost:
                if self.world.cluster.object("Deployment", name) is not None:
                    self.world.cluster.roll_out(name, ready=0)
            if not wrote and not moved:
                return
        raise AssertionError(f"no fixed point after {rounds} rounds: {self.world.cluster.requests}")

    def finish_jobs(self) -> list[str]:
        finished = []
        for job in self.world.cluster.objects("Job"):
            labels = job["metadata"].get("labels") or {}
            component = labels.get("app.kubernetes.io/component")
            if job.get("status"):
                continue
            name = job["metadata"]["name"]
            if component == "build":
                self.world.cluster.finish_build(name, succeeded=not self.fail_builds)
                finished.append(name)
            elif component == "evaluation" and self.fail_evals:
                self.world.cluster.finish_eval(name, "lm-eval: out of memory", exit_code=1)
                finished.append(name)
        return finished

    def _spec(self) -> Obj:
        spec: Obj = self.world.model()["spec"]
        return spec

    def _edit(self, spec: Obj) -> None:
        self.world.cluster.update_model(spec=spec)
        self.settle()

    # --- what a platform team does --------------------------------------------------------

    @rule(revision=st.sampled_from(["v1", "v2", "v3"]))
    def new_revision(self, revision: str) -> None:
        spec = self._spec()
        spec["model"]["revision"] = revision
        self._edit(spec)

    @rule(precisions=st.sampled_from(PRECISION_SETS))
    def set_precisions(self, precisions: list[str]) -> None:
        spec = self._spec()
        spec["precisions"] = precisions
        self._edit(spec)

    @rule(threshold=st.sampled_from([1.0, 1.5, 3.0]))
    def set_threshold(self, threshold: float) -> None:
        spec = self._spec()
        spec["quality"]["maxRegressionPercent"] = threshold
        self._edit(spec)

    @rule(on=st.booleans())
    def ask_for_speed(self, on: bool) -> None:
        spec = self._spec()
        if on:
            spec["quality"]["minSpeedup"] = 1.2
        else:
            spec["quality"].pop("minSpeedup", None)
        self._edit(spec)

    @rule(timing=st.sampled_from(["after-rollout", "before-traffic"]))
    def set_gate_timing(self, timing: str) -> None:
        spec = self._spec()
        spec["quality"]["gate"] = timing
        self._edit(spec)

    @rule(on=st.booleans())
    def route(self, on: bool) -> None:
        spec = self._spec()
        if on:
            spec["routing"] = GATEWAY
        else:
            spec.pop("routing", None)
            self.route_uid = None
        self._edit(spec)

    @rule(maximum=st.sampled_from([None, 2, 20]))
    def autoscale(self, maximum: int | None) -> None:
        """Autoscaling on (up to `maximum` replicas, 20 being more than the class holds) or off
        (a fixed count again)."""
        spec = self._spec()
        serving = spec.setdefault("serving", {})
        serving.pop("replicas", None)
        serving.pop("autoscaling", None)
        if maximum is None:
            serving["replicas"] = 1
        else:
            serving["autoscaling"] = {"maxReplicas": maximum}
        self._edit(spec)

    @rule(data=st.data())
    def scaler_scales(self, data: Any) -> None:
        """The HPA controller moves an autoscaled Deployment within its HPA's range."""
        scalers = self.world.cluster.objects("HorizontalPodAutoscaler")
        if not scalers:
            return
        hpa = data.draw(st.sampled_from(sorted(scalers, key=lambda h: h["metadata"]["name"])))
        low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
        replicas = data.draw(st.integers(low, high))
        target = hpa["spec"]["scaleTargetRef"]["name"]
        self.world.cluster.edit("Deployment", target, {"spec": {"replicas": replicas}}, "hpa")
        self.settle()

    @rule(data=st.data())
    def report(self, data: Any) -> None:
        verdict = data.draw(st.sampled_from(self.VERDICTS))
        variants = [
            v
            for v in self.world.variants().values()
            if v.get("cacheKey") and v["precision"] != "bf16"
        ]
        if not variants:
            return
        chosen = data.draw(st.sampled_from(sorted(v["name"] for v in variants)))
        key = next(v["cacheKey"] for v in variants if v["name"] == chosen)
        speed = OVERFLOW if verdict == "overflowing-speed" else None
        self.world.cluster.add_report(LLAMA, chosen, key, VERDICTS[verdict], speed=speed)
        self.settle()

    @rule(fail=st.booleans())
    def builds_fail(self, fail: bool) -> None:
        self.fail_builds = fail

    @rule(fail=st.booleans())
    def evaluations_fail(self, fail: bool) -> None:
        self.fail_evals = fail
        self.settle()

    # --- what the cluster does ------------------------------------------------------------

    @rule(data=st.data())
    def pods_lost(self, data: Any) -> None:
        names = sorted(self.world.cluster.names("Deployment"))
        if not names:
            return
        name = data.draw(st.sampled_from(names))
        self.lost.add(name)
        self.world.cluster.roll_out(name, ready=0)
        self.settle()

    @precondition(lambda self: bool(self.lost))
    @rule()
    def pods_back(self) -> None:
        for name in self.lost:
            if self.world.cluster.object("Deployment", name) is not None:
                self.world.cluster.roll_out(name)
        self.lost = set()
        self.settle()

    @rule(kind=st.sampled_from(["h100", "a100", "l40s"]))
    def node_joins(self, kind: str) -> None:
        self.world.cluster.add_node(kind, name=f"{kind}-extra")
        self.settle()

    @rule()
    def node_with_absurd_labels_joins(self) -> None:
        # 60 nines: a valid label value, and no int64.
        self.world.cluster.add_node("h200", name="h200-odd", memory_mib=int("9" * 60))
        self.settle()

    @rule(name=st.sampled_from(["h100-extra", "a100-extra", "l40s-extra", "h200-odd"]))
    def node_leaves(self, name: str) -> None:
        if self.world.cluster.object("Node", name) is not None:
            self.world.cluster.remove_node(name)
            self.settle()

    @rule()
    def operator_restarts(self) -> None:
        self.world.cluster.restart_operator()
        self.settle()

    @rule(present=st.booleans())
    def second_model(self, present: bool) -> None:
        """A second model whose name extends the first's: its main Service's name is the name
        of llama's fp8 variant Service."""
        exists = self.world.cluster.object("QuantizedModel", TWIN) is not None
        if present and not exists:
            self.world.cluster.create_model(ungated("bf16"), name=TWIN)
        elif not present and exists:
            self.world.cluster.delete_model(TWIN)
            self.world.cluster.collect_garbage()
        self.settle()

    # --- the guarantees -------------------------------------------------------------------

    @invariant()
    def what_served_keeps_serving(self) -> None:
        if not hasattr(self, "world"):
            return
        variants = self.world.variants().values()
        passed = any(
            v.get("lastGoodRevision") and v["quality"]["verdict"] == "Pass" for v in variants
        )
        behind = [d for d in selected(self.world, LLAMA) if owner(d) == LLAMA]
        ready = [d for d in behind if is_ready(d)]
        if not self.lost:
            self.served_good = self.served_good or (passed and bool(ready))
        if not self.served_good:
            return
        if self.lost:
            assert behind, f"the main Service selects nothing of its own: {self.world.variants()}"
        else:
            assert ready, f"the main Service lost its last ready backend: {self.world.variants()}"

    @invariant()
    def no_unjudged_bf16_takes_the_traffic_of_a_judged_variant(self) -> None:
        if not hasattr(self, "world") or self.lost:
            return
        good = {
            v["name"]: v["lastGoodRevision"]
            for v in self.world.variants().values()
            if v["precision"] != "bf16" and v.get("lastGoodRevision")
        }
        serving_good = [
            d
            for d in self.world.cluster.objects("Deployment")
            if owner(d) == LLAMA
            and is_ready(d)
            and d["metadata"]["annotations"].get("qmo.dev/revision") in good.values()
        ]
        if not serving_good or self.world.model()["spec"]["quality"].get("gate") == "off":
            return
        main = [d for d in selected(self.world, LLAMA) if is_ready(d)]
        assert any(d["metadata"]["labels"].get("qmo.dev/precision") != "bf16" for d in main), (
            f"the main Service moved to BF16 while a judged variant serves: {good}"
        )

    @invariant()
    def nothing_is_shared_between_models(self) -> None:
        if not hasattr(self, "world"):
            return
        for kind in ("Service", "Deployment", "HTTPRoute"):
            for obj in self.world.cluster.objects(kind):
                labelled = (obj["metadata"].get("labels") or {}).get(MODEL)
                if labelled is not None:
                    assert owner(obj) == labelled, f"{kind} {obj['metadata']['name']}: {obj}"
        for service in self.world.cluster.objects("Service"):
            model = (service["metadata"].get("labels") or {}).get(MODEL)
            for deployment in selected(self.world, service["metadata"]["name"]):
                assert owner(deployment) == model, (
                    f"Service {service['metadata']['name']} of {model} selects the pods of "
                    f"{deployment['metadata']['name']} of {owner(deployment)}"
                )

    @invariant()
    def a_route_keeps_its_age(self) -> None:
        if not hasattr(self, "world"):
            return
        route = self.world.cluster.object("HTTPRoute", LLAMA)
        if "routing" not in self.world.model()["spec"]:
            return
        if route is not None and self.route_uid is None:
            self.route_uid = route["metadata"]["uid"]
        if self.route_uid is not None:
            assert route is not None, "the HTTPRoute was deleted: clients get 404, not 503"
            assert route["metadata"]["uid"] == self.route_uid, "it was recreated: it lost its age"

    @invariant()
    def a_settled_world_makes_no_write_and_no_event(self) -> None:
        if not hasattr(self, "world"):
            return
        events = len(self.world.cluster.events)
        for model in self.models():
            reconcile(model)
            assert model.writes() == [], model.writes()
        assert len(self.world.cluster.events) == events, self.world.cluster.events[events:]


# Mutation testing runs these once per mutant: QMO_STATE_MACHINE_SCALE=0.25 runs a quarter of
# the examples (docs/reliability.md).
SCALE = float(os.environ.get("QMO_STATE_MACHINE_SCALE", "1"))
ServingModel.TestCase.settings = settings(
    max_examples=max(1, int(60 * SCALE)),
    stateful_step_count=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_serving_invariants = ServingModel.TestCase


# --- focused machines ---------------------------------------------------------------------
# With every rule, the first defect a run finds hides the others. Each machine below keeps the
# rules of one kind of routine change, so that each of them alone finds its defect (on the code
# before issue 21's fixes each one did, at these settings: docs/reliability.md).

RULES = [
    "new_revision", "set_precisions", "set_threshold", "ask_for_speed", "set_gate_timing",
    "route", "autoscale", "scaler_scales", "report", "builds_fail", "evaluations_fail",
    "pods_lost", "pods_back", "node_joins", "node_with_absurd_labels_joins", "node_leaves",
    "operator_restarts", "second_model",
]  # fmt: skip


def focused(
    name: str, rules: set[str], precisions: list[str], on_regression: str, timing: str,
    verdicts: list[str] | None = None, routed: bool = False,
) -> type[ServingModel]:  # fmt: skip
    """The machine with only `rules`, started from one model spec."""
    unknown = rules - set(RULES)
    assert not unknown, unknown

    @initialize()
    def create(self: ServingModel) -> None:
        ServingModel.create.__wrapped__(self, precisions, on_regression, timing, routed)  # type: ignore[attr-defined]

    body: dict[str, Any] = {rule_name: None for rule_name in RULES if rule_name not in rules}
    body.update(create=create, VERDICTS=verdicts or sorted(VERDICTS))
    machine = type(name, (ServingModel,), body)
    machine.TestCase.settings = settings(
        ServingModel.TestCase.settings, max_examples=max(1, int(40 * SCALE)), stateful_step_count=8
    )
    return machine


FallbackThenNewRevision = focused(
    "FallbackThenNewRevision", {"report", "new_revision"},
    ["int4-awq"], "fallback", "after-rollout", ["pass", "regress"],
)  # fmt: skip
TighterThreshold = focused(
    "TighterThreshold", {"report", "set_threshold"},
    ["fp8"], "rollback", "after-rollout", ["near-the-line"],
)  # fmt: skip
SpeedAskedBeforeTraffic = focused(
    "SpeedAskedBeforeTraffic", {"report", "ask_for_speed", "route"},
    ["fp8"], "rollback", "before-traffic", ["pass"], routed=True,
)  # fmt: skip
NewRevisionBeforeTraffic = focused(
    "NewRevisionBeforeTraffic", {"report", "new_revision"},
    ["bf16", "fp8"], "rollback", "before-traffic", ["pass"],
)  # fmt: skip
RouteWhilePodsAreLost = focused(
    "RouteWhilePodsAreLost", {"route", "pods_lost", "pods_back"},
    ["fp8"], "rollback", "after-rollout",
)  # fmt: skip
TwoModels = focused(
    "TwoModels", {"second_model", "report", "new_revision"},
    ["fp8"], "rollback", "after-rollout", ["pass"],
)  # fmt: skip
AbsurdNodeLabels = focused(
    "AbsurdNodeLabels", {"report", "node_with_absurd_labels_joins", "node_leaves"},
    ["fp8"], "rollback", "after-rollout", ["pass"],
)  # fmt: skip
OverflowingSpeed = focused(
    "OverflowingSpeed", {"report", "ask_for_speed"},
    ["fp8"], "rollback", "after-rollout", ["pass", "overflowing-speed"],
)  # fmt: skip
Autoscaled = focused(
    "Autoscaled", {"autoscale", "scaler_scales", "new_revision", "report", "set_threshold"},
    ["fp8"], "rollback", "after-rollout", ["pass", "regress"],
)  # fmt: skip
FailedEvaluations = focused(
    "FailedEvaluations", {"evaluations_fail", "report"},
    ["fp8", "int8"], "rollback", "after-rollout", ["regress"],
)  # fmt: skip

test_a_fallback_then_a_new_revision = FallbackThenNewRevision.TestCase
test_a_tighter_threshold = TighterThreshold.TestCase
test_speed_asked_of_a_before_traffic_model = SpeedAskedBeforeTraffic.TestCase
test_a_new_revision_before_traffic = NewRevisionBeforeTraffic.TestCase
test_a_route_while_pods_are_lost = RouteWhilePodsAreLost.TestCase
test_two_models_whose_names_meet = TwoModels.TestCase
test_a_node_label_no_gpu_has = AbsurdNodeLabels.TestCase
test_a_speed_up_that_overflows = OverflowingSpeed.TestCase
test_failed_evaluations = FailedEvaluations.TestCase
test_autoscaled_through_revisions_and_reports = Autoscaled.TestCase
