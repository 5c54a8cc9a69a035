"""kopf handlers: thin. kopf runs the process (startup, cleanup, the liveness endpoint); the
watch-fed cache turns every relevant change into work-queue keys; workers reconcile.

No resource handlers and no kopf state on QuantizedModels (no finalizers, no annotations), so
the operator writes nothing but status, and uninstalling it never blocks a deletion. Why the
cache is qmo's own and not kopf's indexes: see `qmo.controller.informer`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from qmo import metrics, readiness
from qmo.config import OperatorConfig
from qmo.controller import store_gc, telemetry
from qmo.controller.cache import WATCHED, ClusterCache
from qmo.controller.events import EventRecorder
from qmo.controller.queue import Key, WorkQueue
from qmo.controller.reconcile import Retry, reconcile
from qmo.kube import Kube, connect

log = logging.getLogger("qmo.controller")
MAX_BACKOFF_SECONDS = 300.0
SYNC_LOG_SECONDS = 30.0
EVENT_THREADS = 2


class Controller:
    """State shared by the handlers of one operator process (kept in kopf's memo)."""

    def __init__(self, kube: Kube, config: OperatorConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.kube = kube
        self.config = config
        self.loop = loop
        self.queue = WorkQueue()
        self.cache = ClusterCache(kube, config.namespaces, on_keys=self.enqueue_threadsafe)
        self.events = EventRecorder(kube, threads=EVENT_THREADS)
        self.executor = ThreadPoolExecutor(config.workers, thread_name_prefix="reconcile")
        self.failures: dict[Key, int] = {}
        self.known: set[Key] = set()
        self.tasks: list[asyncio.Task[None]] = []

    def enqueue_threadsafe(self, keys: Iterable[Key]) -> None:
        """Called from informer threads: hand the keys to the event loop's queue."""
        batch = list(keys)
        if batch:
            self.loop.call_soon_threadsafe(self._enqueue, batch)

    def _enqueue(self, keys: list[Key]) -> None:
        for key in keys:
            self.queue.add(key)

    async def worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                outcome = await self.loop.run_in_executor(
                    self.executor, reconcile, self.kube, self.cache, self.events, self.config, *key
                )
                self.failures.pop(key, None)
                if outcome.requeue_after is not None:
                    self.queue.add_after(key, outcome.requeue_after)
                self._track(key)
            except Exception as err:  # retried with backoff, like any other transient failure
                count = self.failures.get(key, 0) + 1
                self.failures[key] = count
                delay = min(MAX_BACKOFF_SECONDS, 2.0**count)
                log.log(
                    logging.INFO if isinstance(err, Retry) else logging.WARNING,
                    "Reconcile of QuantizedModel %s/%s incomplete (attempt %d), retry in %.0fs: %s",
                    *key,
                    count,
                    delay,
                    err,
                )
                metrics.RECONCILE_ERRORS.labels(reason=telemetry.error_reason(err)).inc()
                self.queue.retry_after(key, delay)
            finally:
                self.queue.done(key)

    def _track(self, key: Key) -> None:
        """Forget a deleted model's metric series once its last reconcile has run."""
        if self.cache.model(*key) is not None:
            self.known.add(key)
        elif key in self.known:
            self.known.discard(key)
            self.failures.pop(key, None)
            metrics.forget_model(*key)
            telemetry.READY_TIMER.forget(*key)

    async def resync(self) -> None:
        """A safety net: re-check every model now and then (jittered). It reads the cache and
        writes nothing unless something drifted without an event saying so."""
        while True:
            await asyncio.sleep(self.config.resync_seconds * random.uniform(0.9, 1.1))
            for key in self.cache.model_keys():
                self.queue.add(key)
            metrics.RESYNCS.inc()

    async def wait_synced(self) -> None:
        while not await self.loop.run_in_executor(None, self.cache.wait_synced, SYNC_LOG_SECONDS):
            log.info("Waiting for the first list of: %s", ", ".join(self.cache.unsynced()))


def _controller(memo: kopf.Memo) -> Controller:
    controller: Controller = memo["controller"]
    return controller


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    # kopf watches no resource of its own here (the informers do): no CRD or namespace scans,
    # so the operator needs no rights on them.
    settings.scanning.disabled = True
    operator_config: OperatorConfig = memo.get("config") or OperatorConfig()
    # One kept-alive connection per thread that talks to the API server: each informer's
    # watch, each worker, each event poster (a smaller pool would reconnect, TLS and all).
    watches = len(WATCHED) * max(1, len(operator_config.namespaces)) + 1
    kube = connect(pool_size=watches + operator_config.workers + EVENT_THREADS + 2)
    controller = Controller(kube, operator_config, asyncio.get_running_loop())
    memo["controller"] = controller
    readiness.register(controller.cache.unsynced)  # /readyz: ready once every informer listed
    controller.events.start()
    controller.cache.start()
    await controller.wait_synced()
    controller.cache.inventory()  # the fleet's metrics, before any model asks
    log.info(
        "Caches synced: %d models; %d reconcile workers",
        len(controller.cache.model_keys()),
        operator_config.workers,
    )
    controller.tasks = [
        asyncio.create_task(controller.worker()) for _ in range(operator_config.workers)
    ]
    controller.tasks.append(asyncio.create_task(controller.resync()))
    controller.tasks.append(
        asyncio.create_task(store_gc.run(controller.kube, controller.cache, operator_config))
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get("controller")
    if controller is None:
        return
    readiness.register(None)
    controller.cache.stop()
    controller.events.stop()
    controller.queue.close()
    for task in controller.tasks:
        task.cancel()
    await asyncio.gather(*controller.tasks, return_exceptions=True)
    controller.executor.shutdown(wait=False, cancel_futures=True)


@kopf.on.probe(id="caches")
def caches(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """For /healthz: which informers have listed, and the work queue's depth."""
    controller = memo.get("controller")
    if controller is None:
        return {"synced": False}
    return {"unsynced": controller.cache.unsynced(), "queued": len(controller.queue)}
