"""When a reconcile writes the model's status: at once for a decision, paced for progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qmo.api.quantizedmodel import QuantizedModelStatus
from qmo.controller.projections import STATUS_WRITTEN, project, status_written_at
from qmo.controller.reporting import PROGRESS_DELAY, status_change
from qmo.planner.events import Event
from qmo.vocabulary import EventType

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def a_status(
    phase: str = "Building", ready: str = "False", replicas: int = 0
) -> QuantizedModelStatus:
    return QuantizedModelStatus.model_validate(
        {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": ready, "reason": "R", "message": "m",
                 "lastTransitionTime": "2026-12-01T12:00:00Z"},
                {"type": "Building", "status": "True" if phase == "Building" else "False",
                 "reason": "B", "message": phase, "lastTransitionTime": "2026-12-01T12:00:00Z"},
            ],
            "variants": [
                {"name": "h100-fp8", "gpuClass": "h100", "precision": "fp8", "phase": phase,
                 "readyReplicas": replicas, "quality": {"verdict": "NotGated"}},
            ],
        }
    )  # fmt: skip


EVENT = Event(EventType.NORMAL, "Serving", "h100-fp8: 1 replica(s) ready")


@pytest.mark.parametrize(
    ("previous", "status", "after", "events", "writes", "waits"),
    [
        (None, a_status(), 0, [], True, False),
        (a_status(), a_status(), 1, [], False, False),
        (a_status(), a_status("Deploying"), 1, [], False, True),
        (a_status(), a_status("Deploying"), PROGRESS_DELAY + 1, [], True, False),
        (a_status(), a_status("Serving", "True", 1), 1, [], True, False),
        (a_status(), a_status("Deploying"), 1, [EVENT], True, False),
    ],
    ids=[
        "a first status is written at once",
        "an unchanged status is not written",
        "progress a second after the last write waits",
        "progress after the delay is written",
        "a decision (Ready) is written at once",
        "a reconcile that posts an Event writes its status with it",
    ],
)
def test_status_writes_are_paced_for_progress_only(
    previous: QuantizedModelStatus | None,
    status: QuantizedModelStatus,
    after: float,
    events: list[Event],
    writes: bool,
    waits: bool,
) -> None:
    write, wait = status_change(
        previous, status, written_at=T0, now=T0 + timedelta(seconds=after), events=events
    )
    assert (write is not None, wait is not None) == (writes, waits)
    if wait is not None:
        assert 0 < wait <= PROGRESS_DELAY


def test_the_time_of_qmos_last_status_write_survives_the_projection() -> None:
    model = {
        "apiVersion": "qmo.dev/v1alpha1",
        "kind": "QuantizedModel",
        "metadata": {
            "name": "llama",
            "namespace": "team-a",
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "time": "2026-12-01T11:00:00Z"},
                {"manager": "qmo", "operation": "Apply", "subresource": "status",
                 "time": "2026-12-01T12:00:00Z"},
            ],
        },
    }  # fmt: skip
    assert status_written_at(model) == "2026-12-01T12:00:00Z"
    projected = project(model)
    assert projected["metadata"][STATUS_WRITTEN] == "2026-12-01T12:00:00Z"
    assert "managedFields" not in projected["metadata"]
