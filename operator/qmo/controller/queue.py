"""A work queue of QuantizedModel keys, like client-go's: deduplicated, one worker per key.

Events only add keys; workers take a key, reconcile it, and mark it done. A key added while it
is being processed is processed again afterwards, never concurrently. It reports the
`workqueue_*` series controller-runtime's queues report, with the same meanings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from qmo import metrics

Key = tuple[str, str]  # (namespace, name)


class WorkQueue:
    def __init__(
        self, name: str = metrics.QUEUE_NAME, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._clock = clock
        self._added_at: dict[Key, float] = {}
        self._started_at: dict[Key, float] = {}
        self._adds = metrics.QUEUE_ADDS.labels(name)
        self._retries = metrics.QUEUE_RETRIES.labels(name)
        self._waited = metrics.QUEUE_WAIT.labels(name)
        self._worked = metrics.QUEUE_WORK.labels(name)
        metrics.QUEUE_DEPTH.labels(name).set_function(lambda: len(self._queued))
        metrics.QUEUE_UNFINISHED.labels(name).set_function(self.unfinished_seconds)
        metrics.QUEUE_LONGEST.labels(name).set_function(self.longest_running_seconds)

    def add(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._added_at[key] = self._clock()
            self._adds.inc()
            self._queue.put_nowait(key)

    def retry_after(self, key: Key, delay: float) -> None:
        """Queue `key` again after a failed reconcile (counted in workqueue_retries_total)."""
        self._retries.inc()
        self.add_after(key, delay)

    def add_after(self, key: Key, delay: float) -> None:
        """Add `key` after `delay` seconds (an earlier pending retry is replaced)."""
        previous = self._timers.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        now = self._clock()
        self._waited.observe(now - self._added_at.pop(key, now))
        self._started_at[key] = now
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            self._worked.observe(self._clock() - started)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def unfinished_seconds(self) -> float:
        now = self._clock()
        return sum(now - started for started in list(self._started_at.values()))

    def longest_running_seconds(self) -> float:
        now = self._clock()
        return max((now - started for started in list(self._started_at.values())), default=0.0)

    def __len__(self) -> int:
        return len(self._queued)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
