"""Crash safety on the real local control plane: the operator killed with SIGKILL at every
write of a rollout, a rollback and a fallback (see qmo.failpoints), and a leader killed in the
middle of a rollback (kube-apiserver and etcd restarts: test_control_plane_restarts). Each time the
cluster converges: no duplicate Job, no lost artifact record, no Event twice, the right
status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.operator_process import OperatorProcess
from tests.support.gate_scenario import gated, key_of, report, v2_after_a_good_v1
from tests.support.kube import ClusterHandle, condition, is_ready, variants, wait_for
from tests.support.scenario import a_model, build_jobs, create, deployment, events

pytestmark = pytest.mark.usefixtures("engine_store")
SIGKILLED = -9


@dataclass
class Operators:
    """One operator at a time in the test's namespace: armed with a failpoint, or plain."""

    cluster: ClusterHandle
    namespace: str
    logs: Path
    current: OperatorProcess | None = None

    def _process(self, name: str, **env: str) -> OperatorProcess:
        return OperatorProcess(
            self.cluster.kubeconfig,
            self.logs / f"{name}.log",
            "--namespace",
            self.namespace,
            resync_seconds=3,
            env=env or None,
        )

    def crash_at(self, point: str) -> None:
        """Run an operator that kills itself at `point`; return once it is dead."""
        self.stop()
        armed = self._process(point.replace(":", "-"), QMO_FAILPOINT=point)
        armed.start()
        assert armed.wait_dead(timeout=120) == SIGKILLED, f"{point} was never reached"

    def run(self) -> OperatorProcess:
        self.stop()
        self.current = self._process("plain")
        self.current.start()
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture
def operators(
    cluster: ClusterHandle, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[Operators]:
    operator.stop()  # the session's operator watches every namespace: pause it
    found = Operators(cluster, namespace, tmp_path)
    try:
        yield found
    finally:
        found.stop()
        operator.start()


def event_reasons(cluster: ClusterHandle, namespace: str, model: str) -> Counter[str]:
    return Counter(e.reason for e in events(cluster, namespace, model))


def no_event_twice(
    cluster: ClusterHandle, namespace: str, model: str, before: Counter[str] | None = None
) -> Counter[str]:
    """The Events posted since `before`: none of them twice."""
    reasons = event_reasons(cluster, namespace, model) - (before or Counter())
    assert max(reasons.values(), default=0) <= 1, f"an Event posted twice: {reasons}"
    return reasons


def records(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    return {
        c.metadata.name: c
        for c in cluster.core()
        .list_namespaced_config_map(
            namespace, label_selector="app.kubernetes.io/component=artifact"
        )
        .items
    }


# --- a rollout: build, record, deploy, serve -----------------------------------------------

ROLLOUT_POINTS = [
    *(f"execute.{when}:{kind}" for kind in ("Job", "ConfigMap", "Deployment")
      for when in ("before", "after")),
    "execute.before:Service", "execute.after:Service", "execute.before:Service@2",
    "execute.after:Service@2",
    # Two status writes at least (the first, and Ready); a third (Deploying) only when the
    # rollout takes longer than the pacing of progress (controller/reporting.py).
    "reconcile.before-status", "reconcile.after-status", "reconcile.before-status@2",
    "reconcile.after-status@2",
]  # fmt: skip


@pytest.mark.parametrize("point", ROLLOUT_POINTS)
def test_a_crash_at_any_write_of_a_rollout_converges(
    cluster: ClusterHandle, namespace: str, operators: Operators, point: str
) -> None:
    create(cluster, namespace, a_model("crashy", precisions=["fp8"], gpu={"classes": ["h100"]}))
    operators.crash_at(point)
    operators.run()
    model = cluster.wait_for_model(namespace, "crashy", is_ready, describe="the model to serve")
    variant = variants(model)["h100-fp8"]
    assert variant["phase"] == "Serving"
    (job,) = build_jobs(cluster, namespace)  # one build Job, not two
    assert job.metadata.annotations["qmo.dev/revision"] == variant["cacheKey"]
    assert len(records(cluster, namespace)) == 1, "the artifact record is there, once"
    assert (
        deployment(cluster, namespace, "crashy-h100-fp8").metadata.annotations["qmo.dev/revision"]
        == variant["cacheKey"]
    )
    reasons = no_event_twice(cluster, namespace, "crashy")
    assert reasons["Serving"] <= 1


# --- a rollback: a regression of v2 returns to v1 ------------------------------------------

ROLLBACK_POINTS = [
    "reconcile.before-report-status", "reconcile.after-report-status",
    "execute.before:Deployment", "execute.after:Deployment",
    "reconcile.before-status", "reconcile.after-status",
]  # fmt: skip


def serving_v2_after_a_good_v1(
    cluster: ClusterHandle, namespace: str, operators: Operators, model: str, on_regression: str
) -> tuple[str, str]:
    operators.run()
    return v2_after_a_good_v1(cluster, namespace, model, on_regression)


@pytest.mark.parametrize("point", ROLLBACK_POINTS)
def test_a_crash_at_any_write_of_a_rollback_rolls_back_once(
    cluster: ClusterHandle, namespace: str, operators: Operators, point: str
) -> None:
    v1_key, v2_key = serving_v2_after_a_good_v1(cluster, namespace, operators, "back", "rollback")
    operators.stop()
    before = event_reasons(cluster, namespace, "back")
    report(cluster, namespace, "back", "h100-fp8", v2_key, arithmetic=0.70)
    operators.crash_at(point)
    operators.run()
    rolled = cluster.wait_for_model(
        namespace, "back", lambda m: variants(m)["h100-fp8"]["phase"] == "RolledBack"
    )
    assert condition(rolled, "RolledBack")["status"] == "True"
    assert (
        deployment(cluster, namespace, "back-h100-fp8").metadata.annotations["qmo.dev/revision"]
        == v1_key
    )
    assert no_event_twice(cluster, namespace, "back", before)["RolledBack"] <= 1


# --- a fallback: int4 regresses on its first rollout and falls back to int8 ----------------

FALLBACK_POINTS = [
    "reconcile.after-report-status", "execute.before:Job", "execute.after:Job",
    "reconcile.before-status", "reconcile.after-status",
]  # fmt: skip


@pytest.mark.parametrize("point", FALLBACK_POINTS)
def test_a_crash_at_any_write_of_a_fallback_falls_back_once(
    cluster: ClusterHandle, namespace: str, operators: Operators, point: str
) -> None:
    operators.run()
    create(
        cluster,
        namespace,
        gated("down", "after-rollout", "fallback", precisions=["int4-awq"],
              gpu={"classes": ["h100"]}),
    )  # fmt: skip
    first = cluster.wait_for_model(
        namespace, "down", lambda m: variants(m).get("h100-int4-awq", {}).get("phase") == "Serving"
    )
    operators.stop()
    before = event_reasons(cluster, namespace, "down")
    report(cluster, namespace, "down", "h100-int4-awq", key_of(first, "h100-int4-awq"),
           wikitext=10.5)  # fmt: skip
    operators.crash_at(point)
    operators.run()
    fallen = cluster.wait_for_model(
        namespace,
        "down",
        lambda m: variants(m).get("h100-int8", {}).get("phase") == "Serving",
        describe="the int8 fallback to serve",
    )
    assert "h100-int4-awq" not in variants(fallen)
    assert condition(fallen, "RolledBack")["reason"] == "FellBack"
    int8_jobs = [j for j in build_jobs(cluster, namespace)
                 if j.metadata.labels["qmo.dev/precision"] == "int8"]  # fmt: skip
    assert len(int8_jobs) == 1
    assert no_event_twice(cluster, namespace, "down", before)["FellBack"] <= 1


# --- a leader dying in the middle of a rollback ---------------------------------------------


def test_the_standby_finishes_a_rollback_the_leader_died_in(
    cluster: ClusterHandle, namespace: str, operators: Operators
) -> None:
    v1_key, v2_key = serving_v2_after_a_good_v1(cluster, namespace, operators, "led", "rollback")
    operators.stop()
    election = ("--leader-elect", "--lease-name", "qmo-crash-test", "--lease-namespace",
                namespace, "--lease-duration", "4", "--renew-deadline", "3",
                "--retry-period", "1")  # fmt: skip
    leader = OperatorProcess(
        cluster.kubeconfig, operators.logs / "leader.log", "--namespace", namespace, *election,
        env={"QMO_FAILPOINT": "execute.after:Deployment"},
    )  # fmt: skip
    before = event_reasons(cluster, namespace, "led")
    standby = OperatorProcess(
        cluster.kubeconfig, operators.logs / "standby.log", "--namespace", namespace, *election
    )
    leader.start()
    wait_for(
        client.CoordinationV1Api(cluster.api).list_namespaced_lease,
        lambda lease: lease.metadata.name == "qmo-crash-test" and lease.spec.holder_identity,
        namespace=namespace,
        describe="the first replica to lead",
    )
    try:
        standby_started = _start_in_background(standby)
        report(cluster, namespace, "led", "h100-fp8", v2_key, arithmetic=0.70)
        assert leader.wait_dead(timeout=120) == SIGKILLED, "the leader died mid-rollback"
        standby_started()
        rolled = cluster.wait_for_model(
            namespace,
            "led",
            lambda m: variants(m)["h100-fp8"]["phase"] == "RolledBack",
            timeout=120,
            describe="the standby to finish the rollback",
        )
        assert variants(rolled)["h100-fp8"]["revision"] == v1_key
        assert no_event_twice(cluster, namespace, "led", before)["RolledBack"] <= 1
    finally:
        standby.stop()
        leader.stop()


def _start_in_background(process: OperatorProcess) -> Any:
    """A standby does not start its handlers until it leads: start it without waiting."""
    import threading

    errors: list[BaseException] = []

    def start() -> None:
        try:
            process.start()
        except BaseException as err:  # surfaced by the returned function
            errors.append(err)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()

    def join() -> None:
        thread.join(timeout=120)
        if errors:
            raise errors[0]

    return join
