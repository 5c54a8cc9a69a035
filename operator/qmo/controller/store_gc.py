"""The object store's garbage collection, run by the operator on a timer.

Every `store_gc.interval_seconds` the elected operator computes what the cluster still needs
(qmo.planner.references, from its caches: no API call), lists its default bucket (the chart's
engineStore.s3) and hands both to qmo.store.gc, in a worker thread. Deleting is off until the
chart turns it on (storeGc.delete): until then each pass only reports, in metrics
(qmo_store_*) and one log line, what it would delete. The operator reads the bucket with its
own credentials (the same Secret, mounted into its pod by the chart). A model's own bucket
(engine.store.s3.bucket other than the default) is not collected here, nor is a claim: a
claim is collected by `qmo-store gc --root` in a Job that mounts it (docs/install.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from datetime import UTC, datetime, timedelta

from qmo import metrics
from qmo.config import OperatorConfig
from qmo.controller.cache import ClusterCache
from qmo.planner.references import referenced_keys
from qmo.resources import DEPLOYMENTS, JOBS, PODS, QUALITY_REPORTS, QUANTIZED_MODELS
from qmo.store import gc
from qmo.store.artifacts import S3Artifacts
from qmo.store.location import S3Location
from qmo.store.objects import StoreError, connect

log = logging.getLogger(__name__)


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


def collect_once(cache: ClusterCache, config: OperatorConfig, now: datetime) -> gc.GcResult | None:
    """One pass (blocking: run it in a thread)."""
    location = default_bucket(config)
    if location is None:
        return None
    keep = referenced_keys(
        cache.all_of(QUANTIZED_MODELS.kind),
        cache.all_of(QUALITY_REPORTS.kind),
        [*cache.all_of(DEPLOYMENTS.kind), *cache.all_of(JOBS.kind), *cache.all_of(PODS.kind)],
    )
    store = S3Artifacts(connect(location, os.environ), log=log.info)
    settings = config.store_gc
    result = gc.collect(
        store,
        keep,
        now=now,
        retention=timedelta(hours=settings.retention_hours),
        delete=settings.delete,
    )
    summary = result.summary()
    deleted = len(result.plan.collect) - len(result.errors) if result.deleted else 0
    metrics.observe_store_gc(summary, deleted)
    log.info(
        "Store GC of %s: %d referenced, %d waiting, %d %s (%d bytes)%s",
        store.describe(),
        summary["kept"],
        summary["waiting"],
        len(result.plan.collect),
        "deleted" if result.deleted else "collectable (dry run: nothing deleted)",
        summary["collectableBytes"],
        f"; errors: {result.errors[:3]}" if result.errors else "",
    )
    return result


async def run(cache: ClusterCache, config: OperatorConfig) -> None:
    """The timer: a first pass a few minutes after start, then every interval (jittered)."""
    settings = config.store_gc
    if settings.interval_seconds <= 0 or default_bucket(config) is None:
        return
    await asyncio.sleep(min(300.0, settings.interval_seconds) * random.uniform(0.5, 1.0))
    while True:
        try:
            await asyncio.to_thread(collect_once, cache, config, datetime.now(UTC))
        except StoreError as err:
            metrics.STORE_GC_RUNS.labels("failed").inc()
            log.warning("Store GC failed: %s: %s", err.reason, err)
        await asyncio.sleep(settings.interval_seconds * random.uniform(0.9, 1.1))
