"""A new build on a class whose GPUs the variant itself holds borrows one replica's GPUs."""

from __future__ import annotations

import pytest

from qmo.controller.gather import observe_job, unschedulable_message
from qmo.planner.rollout import lending_replicas
from qmo.planner.types import BuildObservation, BuildState, DeploymentObservation
from tests.support.builders import a_model

WAITING = BuildObservation(
    "k" * 64,
    BuildState.PENDING,
    job="b",
    reason="Unschedulable",
    message="0/5 nodes are available: 2 Insufficient nvidia.com/gpu",
)
SERVING = DeploymentObservation("d", 2, 2, 2, "old")


def pending_pod(reason: str = "Unschedulable") -> dict[str, object]:
    return {
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": reason,
                 "message": "0/5 nodes are available: Insufficient nvidia.com/gpu"}
            ],
        }
    }  # fmt: skip


@pytest.mark.parametrize(
    ("replicas", "tp", "build_gpus", "seen", "deployment", "expected"),
    [
        pytest.param(2, 1, 1, WAITING, SERVING, 1, id="two replicas lend one"),
        pytest.param(4, 1, 2, WAITING, SERVING, 2, id="a two-GPU build takes two TP-1 replicas"),
        pytest.param(3, 2, 2, WAITING, SERVING, 2, id="one TP-2 replica covers a two-GPU build"),
        pytest.param(1, 1, 1, WAITING, SERVING, None, id="the last replica is never lent"),
        pytest.param(2, 1, 1, WAITING, None, None, id="nothing serves: nothing to lend"),
        pytest.param(2, 1, 1, BuildObservation("k", BuildState.RUNNING, job="b"), SERVING, None,
                     id="a running build needs nothing"),
    ],
)  # fmt: skip
def test_lending_keeps_at_least_one_replica_serving(
    replicas: int,
    tp: int,
    build_gpus: int,
    seen: BuildObservation,
    deployment: DeploymentObservation | None,
    expected: int | None,
) -> None:
    spec = a_model().spec()
    spec = spec.model_copy(
        update={"serving": spec.serving.model_copy(update={"replicas": replicas})}
    )
    assert lending_replicas(spec, seen, deployment, tp, build_gpus) == expected


def test_a_job_whose_pods_all_wait_for_room_is_unschedulable() -> None:
    job = {"metadata": {"name": "b", "annotations": {"qmo.dev/revision": "k" * 64}},
           "status": {"active": 1}}  # fmt: skip
    seen = observe_job(job, [pending_pod()])
    assert seen.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in (seen.message or "")


def test_a_pod_that_is_merely_pending_is_not_unschedulable() -> None:
    assert unschedulable_message([pending_pod(reason="ContainerCreating")]) is None
    assert unschedulable_message([]) is None
