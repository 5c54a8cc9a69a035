"""kopf handlers: thin. They turn watch events into work-queue keys; workers reconcile.

Only `@kopf.on.event` handlers: kopf then keeps no state on QuantizedModels (no finalizers,
no annotations), so the operator writes nothing but status, and uninstalling it never blocks
a deletion.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from qmo import metrics
from qmo.config import OperatorConfig
from qmo.controller.queue import Key, WorkQueue
from qmo.controller.reconcile import reconcile
from qmo.gpu import allocatable_gpus, node_is_usable
from qmo.kube import Kube, connect

log = logging.getLogger("qmo.controller")
MANAGED = {"app.kubernetes.io/managed-by": "qmo"}
MAX_BACKOFF_SECONDS = 300.0


class Controller:
    """State shared by the handlers of one operator process (kept in kopf's memo)."""

    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self.queue = WorkQueue()
        self.models: set[Key] = set()
        self.node_fingerprints: dict[str, tuple[Any, ...]] = {}
        self.failures: dict[Key, int] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self.queue.get()
            try:
                await loop.run_in_executor(None, reconcile, self.kube, self.config, *key)
                self.failures.pop(key, None)
            except Exception as err:  # retried with backoff, like any other transient failure
                count = self.failures.get(key, 0) + 1
                self.failures[key] = count
                delay = min(MAX_BACKOFF_SECONDS, 2.0**count)
                log.warning(
                    "Reconcile of QuantizedModel %s/%s failed (attempt %d), retrying in %.0fs: %s",
                    *key,
                    count,
                    delay,
                    err,
                )
                self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    async def resync(self) -> None:
        """Re-check every model on a timer: catches drift no event reported."""
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            for key in list(self.models):
                self.queue.add(key)


def _controller(memo: kopf.Memo) -> Controller:
    controller: Controller = memo["controller"]
    return controller


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    operator_config: OperatorConfig = memo.get("config") or OperatorConfig()
    controller = Controller(connect(), operator_config)
    memo["controller"] = controller
    controller.tasks = [
        asyncio.create_task(controller.worker()) for _ in range(operator_config.workers)
    ]
    controller.tasks.append(asyncio.create_task(controller.resync()))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get("controller")
    if controller is None:
        return
    controller.queue.close()
    for task in controller.tasks:
        task.cancel()
    await asyncio.gather(*controller.tasks, return_exceptions=True)


@kopf.on.event("qmo.dev", "v1alpha1", "quantizedmodels")
def model_event(
    type: str, body: kopf.Body, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    controller = _controller(memo)
    key = (namespace or "", name)
    if type == "DELETED":
        controller.models.discard(key)
        controller.failures.pop(key, None)
        metrics.forget_model(*key)
        return
    controller.models.add(key)
    observed = (body.get("status") or {}).get("observedGeneration")
    if type == "MODIFIED" and observed == body.get("metadata", {}).get("generation"):
        return  # our own status write; the spec did not change
    controller.queue.add(key)


def _enqueue_owners(controller: Controller, body: kopf.Body, namespace: str | None) -> None:
    if namespace is None:
        return
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "QuantizedModel" and ref.get("apiVersion", "").startswith("qmo.dev/"):
            controller.queue.add((namespace, ref["name"]))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def job_event(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _enqueue_owners(_controller(memo), body, namespace)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def deployment_event(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _enqueue_owners(_controller(memo), body, namespace)


@kopf.on.event("qmo.dev", "v1alpha1", "qualityreports")
def report_event(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A report (new, changed or deleted) may change a gate decision: reconcile its model."""
    model = (body.get("spec") or {}).get("modelRef", {}).get("name")
    if namespace and model:
        _controller(memo).queue.add((namespace, model))


def node_fingerprint(body: kopf.Body) -> tuple[Any, ...]:
    """The parts of a Node that GPU planning reads; heartbeats do not change it."""
    labels = body.get("metadata", {}).get("labels") or {}
    gpu_labels = tuple(sorted((k, v) for k, v in labels.items() if k.startswith("nvidia.com/")))
    node = dict(body)
    return (gpu_labels, node_is_usable(node), allocatable_gpus(node))


@kopf.on.event("", "v1", "nodes")
def node_event(type: str, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    controller = _controller(memo)
    if type == "DELETED":
        changed = controller.node_fingerprints.pop(name, None) is not None
    else:
        fingerprint = node_fingerprint(body)
        changed = controller.node_fingerprints.get(name) != fingerprint
        controller.node_fingerprints[name] = fingerprint
    if changed:
        controller.kube.invalidate_nodes()  # before the reconciles it triggers read the fleet
        for key in list(controller.models):
            controller.queue.add(key)
