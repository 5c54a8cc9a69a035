"""Events are posted off the reconcile path, as client-go's event broadcaster does.

A reconcile hands its Events to the recorder and goes on; a few threads post them, each
model's Events always through the same thread, so `kubectl describe` lists them in order. A
full queue drops an Event (logged) rather than blocking a reconcile: Events explain
decisions, the status carries them.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from datetime import datetime
from typing import Protocol

from qmo.kube import Kube
from qmo.wire import Obj

log = logging.getLogger("qmo.events")
_STOP = None


class EventSink(Protocol):
    def record(
        self, model: Obj, event_type: str, reason: str, message: str, now: datetime
    ) -> None: ...


class EventRecorder:
    def __init__(self, kube: Kube, threads: int = 2, capacity: int = 10000) -> None:
        self.kube = kube
        self._queues: list[queue.Queue[tuple[Obj, str, str, str, datetime] | None]] = [
            queue.Queue(capacity) for _ in range(threads)
        ]
        self._threads = [
            threading.Thread(target=self._post, args=(q,), name=f"events-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for q in self._queues:
            q.put(_STOP)

    def record(self, model: Obj, event_type: str, reason: str, message: str, now: datetime) -> None:
        meta = model["metadata"]
        # Only what an Event needs: the recorder must not keep whole models alive.
        involved = {"metadata": {k: meta[k] for k in ("name", "namespace", "uid")}}
        shard = zlib.crc32(f"{meta['namespace']}/{meta['name']}".encode()) % len(self._queues)
        try:
            self._queues[shard].put_nowait((involved, event_type, reason, message, now))
        except queue.Full:
            log.warning(
                "Dropped event %s on %s/%s: the event queue is full",
                reason, meta["namespace"], meta["name"],
            )  # fmt: skip

    def _post(self, pending: queue.Queue[tuple[Obj, str, str, str, datetime] | None]) -> None:
        while (item := pending.get()) is not None:
            model, event_type, reason, message, now = item
            self.kube.post_event(model, event_type, reason, message, now)


class DirectEvents:
    """Posts each Event at once, in the caller's thread (tests, one-off tools)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def record(self, model: Obj, event_type: str, reason: str, message: str, now: datetime) -> None:
        self.kube.post_event(model, event_type, reason, message, now)
