"""The engine stores' garbage collection, run by the elected operator on a timer.

Every `store_gc.interval_seconds` the operator computes what the cluster still needs
(qmo.planner.references, from its caches: no API read) and collects
- its default bucket (the chart's engineStore.s3) itself, in a worker thread, with its own
  credentials (the same Secret, in its pod by the chart);
- every claim a model stores on, and every bucket of a model's own (other than the default):
  a claim is namespaced and only a pod there can mount it, and a model's own bucket is reached
  with its namespace's keys or identity, which the operator does not hold. So it writes the
  keep list into a ConfigMap in that namespace and starts a Job there that runs `qmo-store gc`
  on the store (qmo.manifests.store_gc); a bucket several namespaces use is collected from
  the first of them. The Job's termination message is the pass's summary; the operator reads
  it from its caches when the Job ends.
All report in metrics (`qmo_store_*{store}`) and a log line. Deleting is off until the chart
turns it on (engineStore.gc.delete): until then each pass only reports what it would delete.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from qmo import metrics
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.config import OperatorConfig
from qmo.controller.cache import ClusterCache
from qmo.controller.ports import KubeWrites
from qmo.manifests.store_gc import (
    GC_CONTAINER,
    STORE_LABEL,
    gc_job,
    keep_config_map,
)
from qmo.planner.references import referenced_keys
from qmo.planner.store import BucketStore, ClaimStore, resolve_store
from qmo.resources import DEPLOYMENTS, JOBS, PODS, QUALITY_REPORTS, QUANTIZED_MODELS
from qmo.store import gc
from qmo.store.artifacts import S3Artifacts
from qmo.store.location import S3Location
from qmo.store.objects import StoreError, connect
from qmo.vocabulary import COMPONENT, Component
from qmo.wire import Obj

log = logging.getLogger(__name__)
OBSERVE_SECONDS = 30.0  # how often finished GC Jobs are looked for (in the caches)


def default_bucket(config: OperatorConfig) -> S3Location | None:
    s3 = config.s3
    if not s3.bucket:
        return None
    return S3Location(
        bucket=s3.bucket,
        prefix=s3.prefix.strip("/"),
        endpoint=s3.endpoint,
        region=s3.region,
        path_style=s3.path_style,
        ca_bundle=os.environ.get("QMO_STORE_S3_CA_BUNDLE") or None,
    )


def keep_set(cache: ClusterCache) -> set[str]:
    return referenced_keys(
        cache.all_of(QUANTIZED_MODELS.kind),
        cache.all_of(QUALITY_REPORTS.kind),
        [*cache.all_of(DEPLOYMENTS.kind), *cache.all_of(JOBS.kind), *cache.all_of(PODS.kind)],
    )


def collect_once(cache: ClusterCache, config: OperatorConfig, now: datetime) -> gc.GcResult | None:
    """One pass over the default bucket (blocking: run it in a thread)."""
    location = default_bucket(config)
    if location is None:
        return None
    store = S3Artifacts(connect(location, os.environ), log=log.info)
    settings = config.store_gc
    result = gc.collect(
        store,
        keep_set(cache),
        now=now,
        retention=timedelta(hours=settings.retention_hours),
        delete=settings.delete,
    )
    summary = result.summary()
    deleted = len(result.plan.collect) - len(result.errors) if result.deleted else 0
    metrics.observe_store_gc(location.uri(), summary, deleted)
    _log_pass(location.uri(), summary, result.deleted, result.errors)
    return result


def stores_collected_by_jobs(
    models: list[Obj], claims: Callable[[str], frozenset[str]], config: OperatorConfig
) -> dict[tuple[str, str], ClaimStore | BucketStore]:
    """PURE. (namespace, store identity) -> store, for every store a GC Job collects: each claim
    a model stores on that exists, and each bucket of a model's own other than the default
    (from the first namespace, in name order, whose models use it)."""
    default = default_bucket(config)
    found: dict[tuple[str, str], ClaimStore | BucketStore] = {}
    buckets: dict[str, tuple[str, BucketStore]] = {}
    for model in models:
        namespace = model["metadata"]["namespace"]
        try:
            spec = QuantizedModelSpec.model_validate(model.get("spec") or {})
        except ValueError:
            continue  # its reconcile says what is wrong
        store = resolve_store(spec, config)
        if isinstance(store, ClaimStore) and store.claim_name in claims(namespace):
            found[(namespace, store.identity)] = store
        elif isinstance(store, BucketStore) and (
            default is None or store.identity != default.uri()
        ):
            first = buckets.get(store.identity)
            if first is None or namespace < first[0]:
                buckets[store.identity] = (namespace, store)
    for identity, (namespace, bucket) in buckets.items():
        found[(namespace, identity)] = bucket
    return found


def start_job_passes(
    kube: KubeWrites, cache: ClusterCache, config: OperatorConfig, now: datetime
) -> list[str]:
    """The keep list and a GC Job for every store a Job collects; returns the Jobs' names."""
    keep = keep_set(cache)
    pass_id = now.strftime("%Y%m%d%H%M%S")
    started = []
    stores = stores_collected_by_jobs(cache.all_of(QUANTIZED_MODELS.kind), cache.claims, config)
    for (namespace, _), store in sorted(stores.items()):
        kube.apply(keep_config_map(namespace, store, keep))
        job = gc_job(
            namespace, store, image=config.store_image, settings=config.store_gc, pass_id=pass_id
        )
        if config.image_pull_secrets:
            job["spec"]["template"]["spec"]["imagePullSecrets"] = [
                {"name": s} for s in config.image_pull_secrets
            ]
        kube.apply(job)
        started.append(f"{namespace}/{job['metadata']['name']}")
    return started


def observe_job_passes(cache: ClusterCache, seen: set[str]) -> None:
    """Metrics from GC Jobs that ended since the last look (each counted once)."""
    for job in cache.all_of(JOBS.kind):
        meta = job["metadata"]
        if (meta.get("labels") or {}).get(COMPONENT) != Component.STORE_GC.value:
            continue
        name = f"{meta['namespace']}/{meta['name']}"
        finished = {
            c.get("type")
            for c in (job.get("status") or {}).get("conditions") or []
            if c.get("status") == "True"
        }
        if name in seen or not finished & {"Complete", "Failed"}:
            continue
        seen.add(name)
        store = (meta.get("annotations") or {}).get(STORE_LABEL, name)
        summary = _summary(cache.job_pods(meta["namespace"], meta["name"]))
        if "Complete" not in finished or summary is None:
            metrics.STORE_GC_RUNS.labels(store, "failed").inc()
            log.warning("Store GC of %s failed: see Job %s", store, name)
            continue
        metrics.observe_store_gc(store, summary, int(str(summary.get("collected", 0))))
        errors = summary.get("errors")
        _log_pass(
            store, summary, not summary.get("dryRun"), errors if isinstance(errors, list) else []
        )


def _summary(pods: list[Obj]) -> dict[str, object] | None:
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if status.get("name") != GC_CONTAINER or terminated.get("exitCode") != 0:
                continue
            try:
                said = json.loads(terminated.get("message") or "")
            except ValueError:
                return None
            return said if isinstance(said, dict) else None
    return None


def _log_pass(store: str, summary: dict[str, object], deleted: bool, errors: list[str]) -> None:
    collectable = summary.get("collectable") or []
    log.info(
        "Store GC of %s: %s referenced, %s waiting, %d %s (%s bytes)%s",
        store,
        summary.get("kept"),
        summary.get("waiting"),
        len(collectable) if isinstance(collectable, list) else 0,
        "deleted" if deleted else "collectable (dry run: nothing deleted)",
        summary.get("collectableBytes"),
        f"; errors: {errors[:3]}" if errors else "",
    )


async def run(kube: KubeWrites, cache: ClusterCache, config: OperatorConfig) -> None:
    """The timer: a first pass a tenth to a fifth of an interval after start, then every
    interval (jittered); finished GC Jobs are looked for in between (in the caches)."""
    settings = config.store_gc
    if settings.interval_seconds <= 0:
        return
    # Not at start: a restart (or a rollout of the operator) should not bring a pass forward.
    due = time.monotonic() + settings.interval_seconds * random.uniform(0.1, 0.2)
    seen: set[str] = set()
    while True:
        if time.monotonic() >= due:
            now = datetime.now(UTC)
            bucket = default_bucket(config)
            try:
                await asyncio.to_thread(collect_once, cache, config, now)
            except StoreError as err:
                metrics.STORE_GC_RUNS.labels(bucket.uri() if bucket else "", "failed").inc()
                log.warning("Store GC failed: %s: %s", err.reason, err)
            try:
                started = await asyncio.to_thread(start_job_passes, kube, cache, config, now)
                if started:
                    log.info("Store GC Jobs started: %s", ", ".join(started))
            except Exception as err:  # the next pass tries again
                log.warning("Store GC Jobs not started: %s", err)
            due = time.monotonic() + settings.interval_seconds * random.uniform(0.9, 1.1)
        observe_job_passes(cache, seen)
        await asyncio.sleep(min(OBSERVE_SECONDS, settings.interval_seconds))
