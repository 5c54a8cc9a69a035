"""The serving guarantees of docs/reliability.md, checked over random sequences of events:
hypothesis' rule-based state machine drives whole reconciles on the fake cluster (spec edits,
new revisions, reports that pass, regress or cannot be judged), lets the kubelet and the
controllers settle the world, and checks the invariants after every step.

- What serves keeps serving: once the model served a revision that passed, its main Service
  selects a ready Deployment after every step.
- Never frozen: every settle ends with the status written (the fake refuses what the API
  server refuses), and a world that did not move makes no write.
- One Event per decision: a reconcile of a settled world posts nothing.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from qmo.wire import Obj
from tests.support.fake_kube import score
from tests.support.reconciles import World, a_world, gated

VERDICTS = {
    "pass": [score("arithmetic", 0.80, 0.80)],
    "near-the-line": [score("arithmetic", 0.80, 0.79)],  # -1.25%
    "regress": [score("arithmetic", 0.80, 0.70)],
    "zero-baseline": [score("arithmetic", 0.0, 0.5)],  # cannot be judged: Invalid
}


def ready_behind(world: World, service: str) -> list[str]:
    """Deployments with a ready replica whose pods the Service selects."""
    found = world.cluster.object("Service", service)
    if found is None:
        return []
    selector = found["spec"].get("selector") or {}
    ready = []
    for deployment in world.cluster.objects("Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
        matches = all(pod_labels.get(k) == v for k, v in selector.items())
        if matches and (deployment.get("status") or {}).get("readyReplicas", 0) > 0:
            ready.append(deployment["metadata"]["name"])
    return ready


class ServingModel(RuleBasedStateMachine):
    """One gated model on an H100 fleet, through whatever a platform team does to it."""

    world: World
    served_good: bool

    @initialize(
        precision=st.sampled_from(["fp8", "int4-awq"]),
        on_regression=st.sampled_from(["rollback", "fallback"]),
        timing=st.sampled_from(["after-rollout", "before-traffic"]),
    )
    def create(self, precision: str, on_regression: str, timing: str) -> None:
        self.world = a_world()
        spec = gated(precision, on_regression=on_regression)
        spec["quality"]["gate"] = timing
        self.world.cluster.create_model(spec)
        self.served_good = False
        self.world.settle()

    def _spec(self) -> Obj:
        spec: Obj = self.world.model()["spec"]
        return spec

    def _edit(self, spec: Obj) -> None:
        self.world.cluster.update_model(spec=spec)
        self.world.settle()

    @rule(revision=st.sampled_from(["v1", "v2", "v3"]))
    def new_revision(self, revision: str) -> None:
        spec = self._spec()
        spec["model"]["revision"] = revision
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

    @rule(data=st.data(), verdict=st.sampled_from(sorted(VERDICTS)))
    def report(self, data: Any, verdict: str) -> None:
        variants = [
            v
            for v in self.world.variants().values()
            if v.get("cacheKey") and v["precision"] != "bf16"
        ]
        if not variants:
            return
        chosen = data.draw(st.sampled_from(sorted(v["name"] for v in variants)))
        key = next(v["cacheKey"] for v in variants if v["name"] == chosen)
        self.world.cluster.add_report("llama", chosen, key, VERDICTS[verdict])
        self.world.settle()

    @invariant()
    def what_served_keeps_serving(self) -> None:
        if not hasattr(self, "world"):
            return
        passed = any(
            v.get("lastGoodRevision") and v["quality"]["verdict"] == "Pass"
            for v in self.world.variants().values()
        )
        self.served_good = self.served_good or (passed and bool(ready_behind(self.world, "llama")))
        if self.served_good:
            assert ready_behind(self.world, "llama"), (
                f"the main Service lost its last ready backend: {self.world.variants()}"
            )

    @invariant()
    def a_settled_world_makes_no_write_and_no_event(self) -> None:
        if not hasattr(self, "world"):
            return
        events = len(self.world.cluster.events)
        self.world.reconcile()
        assert self.world.writes() == [], self.world.writes()
        assert len(self.world.cluster.events) == events


ServingModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_serving_invariants = ServingModel.TestCase
