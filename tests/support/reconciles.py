"""Whole reconciles on the in-memory fake cluster (tests/support/fake_kube.py): the model specs
they use and `World`, which runs `reconcile(...)` and moves the world on as the kubelet and the
controllers would. Used by tests/unit/test_reconcile.py and the serving-safety tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmo.api.quantizedmodel import QuantizedModelSpec, QuantizedModelStatus
from qmo.config import OperatorConfig
from qmo.controller.changes import Change, desired_changes
from qmo.controller.gather import gather
from qmo.controller.reconcile import Outcome, reconcile
from qmo.manifests.labels import Owner
from qmo.manifests.routes import gateways
from qmo.planner import revisions
from qmo.planner.plan import plan_model
from qmo.planner.types import Plan
from qmo.wire import Obj
from tests.support.builders import a_model
from tests.support.fake_kube import Clock, FakeCluster, score

NS = "models"
SIZE = {"parametersBillions": 8.03, "numLayers": 32, "numKeyValueHeads": 8, "headDim": 128}
BENCHMARKS = [
    {"name": "arithmetic", "metric": "exact-match", "dataset": {"path": "benchmarks/a.jsonl"}},
]
CONFIG = OperatorConfig()
PASSING = [score("arithmetic", 0.80, 0.80)]
REGRESSED = [score("arithmetic", 0.80, 0.7832)]  # -2.1%, over the 1.5% threshold


def ungated(*precisions: str, classes: tuple[str, ...] = ("h100",)) -> Obj:
    return (
        a_model()
        .sized_like(SIZE)
        .with_precisions(*precisions)
        .on_classes(*classes)
        .ungated()
        .wire()
    )


def gated(
    *precisions: str, on_regression: str = "rollback", gpu: str = "h100", backend: str = "tensorrt"
) -> Obj:
    """Gated after rollout: each new revision is judged by a QualityReport once it serves."""
    return (
        a_model()
        .sized_like(SIZE)
        .with_precisions(*precisions)
        .on_classes(gpu)
        .with_backend(backend)
        .with_quality(gate="after-rollout", onRegression=on_regression, benchmarks=BENCHMARKS)
        .wire()
    )


def at_revision_v2(world: World) -> Obj:
    """The model's spec at the next model revision (a new cache key for every variant)."""
    spec: Obj = world.model()["spec"]
    spec["model"]["revision"] = "v2"
    return spec


@dataclass
class World:
    """One namespace of a fake cluster, its clock, and the QuantizedModel "llama"."""

    cluster: FakeCluster
    clock: Clock
    name: str = "llama"
    config: OperatorConfig = CONFIG

    def reconcile(self) -> Outcome:
        """One reconcile, a second after the last; `cluster.requests` then holds its requests."""
        self.clock.advance(1)
        self.cluster.forget_requests()
        try:
            # The fake stands behind both ports (controller.ports) and is the Event sink.
            return reconcile(
                self.cluster, self.cluster, self.cluster, self.config, NS, self.name, self.clock
            )
        finally:
            # What qmo wrote, its cache knows at once: or the next reconcile acts on old news.
            assert self.cluster.unobserved_writes() == []

    def changes(self, *, retry: bool = False) -> tuple[Plan, list[Change]]:
        """What a reconcile would write now (its first round), without writing it."""
        body = self.model()
        spec = QuantizedModelSpec.from_wire(body["spec"])
        raw = body.get("status")
        previous = QuantizedModelStatus.model_validate(raw) if raw else None
        owner = Owner(name=self.name, namespace=NS, uid=body["metadata"]["uid"])
        remembered = revisions.remembered(previous), revisions.served_before(previous)
        found = gather(self.cluster, NS, self.name, spec.quality, *remembered, gateways(spec, NS))
        plan = plan_model(spec, found.observed, self.config)
        routes = self.cluster.routes_available()
        changes = desired_changes(
            spec, plan, found, owner, self.config, retry=retry, routes_available=routes
        )
        return plan, changes

    def settle(self, rounds: int = 10) -> Obj:
        """Reconcile, finish every build and roll out every Deployment, until a reconcile
        writes nothing; returns the model."""
        for _ in range(rounds):
            self.reconcile()
            moved = self.finish_builds() + self.cluster.roll_out_all()
            if not self.cluster.requests and not moved:
                return self.model()
        raise AssertionError(f"no fixed point after {rounds} reconciles: {self.cluster.requests}")

    def finish_builds(self) -> list[str]:
        finished = []
        for job in self.cluster.objects("Job"):
            labels = job["metadata"].get("labels") or {}
            if labels.get("app.kubernetes.io/component") == "build" and not job.get("status"):
                self.cluster.finish_build(job["metadata"]["name"])
                finished.append(job["metadata"]["name"])
        return finished

    def model(self) -> Obj:
        found = self.cluster.object("QuantizedModel", self.name)
        assert found is not None
        return found

    def variants(self) -> dict[str, Obj]:
        return {v["name"]: v for v in self.model().get("status", {}).get("variants", [])}

    def condition(self, type_: str) -> Obj:
        conditions = self.model().get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), {})

    def revision(self, deployment: str) -> str:
        found = self.cluster.object("Deployment", deployment)
        assert found is not None, f"no Deployment {deployment}: {self.cluster.names('Deployment')}"
        return str(found["metadata"]["annotations"]["qmo.dev/revision"])

    def writes(self) -> list[tuple[str, str, str]]:
        """The last reconcile's write requests: (verb, kind, name)."""
        return [(r.verb, r.kind, r.name) for r in self.cluster.writes()]


def a_world() -> World:
    """A fake cluster with one H100 node and the engine-store claim."""
    clock = Clock()
    cluster = FakeCluster(clock, namespace=NS)
    cluster.add_node("h100")
    cluster.add_claim("qmo-engines")
    return World(cluster, clock)
