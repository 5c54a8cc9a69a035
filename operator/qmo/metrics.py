"""Prometheus metrics of the operator (served on --metrics-port at /metrics).

Named by Prometheus conventions: base units (seconds, ratios), `_total` counters, and bounded
label sets (namespace, model, variant, precision, gpu_class, product, benchmark, reason,
verb): never a cache key or free text. The work queue's series have controller-runtime's
names and labels (`workqueue_*{name}`), so dashboards written for Go operators read them as
they are.
docs/observability.md lists every series; a test keeps the two equal.

Series that name a model are removed with it (`forget_model`).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

from qmo import __version__
from qmo.vocabulary import Phase

# No `_created` series next to every counter: noise for dashboards and alerts, and Go
# operators' clients do not export them either.
disable_created_metrics()  # type: ignore[no-untyped-call]

QUEUE_NAME = "quantizedmodel"  # the workqueue_* `name` label, as controller-runtime sets it

# --- reconciles ---------------------------------------------------------------------------

RECONCILES = Counter("qmo_reconcile_total", "Reconciles of QuantizedModels, by result.", ["result"])
RECONCILE_ERRORS = Counter(
    "qmo_reconcile_errors_total",
    "Reconciles that ended in an error and were retried with backoff, by reason.",
    ["reason"],
)
RECONCILE_SECONDS = Histogram(
    "qmo_reconcile_duration_seconds",
    "Time one reconcile takes.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TIME_TO_READY = Histogram(
    "qmo_time_to_ready_seconds",
    "From a QuantizedModel's creation or spec change (a new generation) to Ready for it.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
RESYNCS = Counter(
    "qmo_resyncs_total", "Times the resync timer queued every model again (a safety net)."
)

# --- the engine store's garbage collection (qmo.controller.store_gc) ----------------------

STORE_ARTIFACTS = Gauge(
    "qmo_store_artifacts",
    "Artifacts on an engine store at its last GC pass, by store (s3://bucket/prefix or "
    "pvc:namespace/claim) and state: referenced, waiting (unreferenced, within the retention "
    "period) or collectable.",
    ["store", "state"],
)
STORE_BYTES = Gauge(
    "qmo_store_bytes", "Bytes of those artifacts at the last GC pass, by state.", ["store", "state"]
)
STORE_GC_DELETED = Counter(
    "qmo_store_gc_deleted_total",
    "Artifacts the store's GC deleted (never in a dry run).",
    ["store"],
)
STORE_GC_RUNS = Counter(
    "qmo_store_gc_runs_total",
    "GC passes over an engine store, by result (ok, failed).",
    ["store", "result"],
)
STORE_GC_DRY_RUN = Gauge(
    "qmo_store_gc_dry_run", "1 while a store's GC only reports what it would delete.", ["store"]
)


def observe_store_gc(store: str, summary: Mapping[str, object], deleted: int) -> None:
    """One GC pass's counts (qmo.store.gc.GcResult.summary) for `store`."""
    collectable = summary.get("collectable") or []
    counts = {
        "referenced": summary.get("kept", 0),
        "waiting": summary.get("waiting", 0),
        "collectable": len(collectable) if isinstance(collectable, list) else 0,
    }
    sizes = {
        "referenced": summary.get("keptBytes", 0),
        "waiting": summary.get("waitingBytes", 0),
        "collectable": summary.get("collectableBytes", 0),
    }
    for state, count in counts.items():
        STORE_ARTIFACTS.labels(store, state).set(float(str(count)))
        STORE_BYTES.labels(store, state).set(float(str(sizes[state])))
    STORE_GC_DRY_RUN.labels(store).set(1 if summary.get("dryRun") else 0)
    STORE_GC_DELETED.labels(store).inc(deleted)
    STORE_GC_RUNS.labels(store, "ok").inc()


# --- the work queue (controller-runtime's workqueue_* series) -----------------------------

QUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of the work queue.", ["name"])
QUEUE_ADDS = Counter("workqueue_adds_total", "Keys added to the work queue.", ["name"])
QUEUE_RETRIES = Counter(
    "workqueue_retries_total", "Keys queued again after a failed reconcile.", ["name"]
)
_QUEUE_BUCKETS = (0.0001, 0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
QUEUE_WAIT = Histogram(
    "workqueue_queue_duration_seconds",
    "How long a key waits in the work queue before a worker takes it.",
    ["name"],
    buckets=_QUEUE_BUCKETS,
)
QUEUE_WORK = Histogram(
    "workqueue_work_duration_seconds",
    "How long processing one key takes.",
    ["name"],
    buckets=_QUEUE_BUCKETS,
)
QUEUE_UNFINISHED = Gauge(
    "workqueue_unfinished_work_seconds",
    "Seconds of work in progress that has not finished (grows when a worker is stuck).",
    ["name"],
)
QUEUE_LONGEST = Gauge(
    "workqueue_longest_running_processor_seconds",
    "Seconds the longest-running worker has been processing its key.",
    ["name"],
)

# --- builds -------------------------------------------------------------------------------

BUILDS_CREATED = Counter(
    "qmo_builds_created_total", "Build Jobs created, by precision.", ["precision"]
)
BUILDS_FINISHED = Counter(
    "qmo_builds_finished_total",
    "Build Jobs that finished, by precision, GPU class and outcome (succeeded or failed).",
    ["precision", "gpu_class", "outcome"],
)
BUILD_SECONDS = Histogram(
    "qmo_build_duration_seconds",
    "From a build Job's start to its success or failure, by precision, GPU class and outcome.",
    ["precision", "gpu_class", "outcome"],
    buckets=(30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 14400),
)

# --- the GPU fleet --------------------------------------------------------------------------

GPU_CLASS_NODES = Gauge(
    "qmo_gpu_class_nodes", "Schedulable, Ready nodes of each GPU class qmo sees.", ["gpu_class"]
)
GPU_CLASS_GPUS = Gauge(
    "qmo_gpu_class_gpus", "Allocatable GPUs on those nodes, by GPU class.", ["gpu_class"]
)
UNKNOWN_GPU_NODES = Gauge(
    "qmo_unknown_gpu_nodes",
    "Schedulable, Ready GPU nodes qmo places no variant on, by GPU product label.",
    ["product"],
)

# --- variants and their quality (per model: removed with the model) -----------------------

VARIANTS = Gauge(
    "qmo_variants", "Variants of a QuantizedModel, by phase.", ["namespace", "model", "phase"]
)
VARIANT_INFO = Gauge(
    "qmo_variant_info",
    "1 for each variant: what it serves (precision, KV-cache dtype, GPU class, the first 12 "
    "characters of the revision) and its phase. One series per variant at a time.",
    ["namespace", "model", "variant", "precision", "kv_cache_dtype", "gpu_class", "revision",
     "phase"],
)  # fmt: skip
VARIANT_PHASE_SINCE = Gauge(
    "qmo_variant_phase_since_timestamp_seconds",
    "Unix time the variant entered its current phase, as this operator process saw it.",
    ["namespace", "model", "variant"],
)
ROLLBACKS = Counter(
    "qmo_rollbacks_total",
    "Variants rolled back or moved down the precision ladder after a quality regression.",
    ["namespace", "model", "variant", "action"],
)
QUALITY_VERDICTS = Counter(
    "qmo_quality_verdicts_total",
    "QualityReports judged (counted when a report's verdict changes), by verdict.",
    ["namespace", "model", "variant", "verdict"],
)
QUALITY_REGRESSION = Gauge(
    "qmo_quality_regression_ratio",
    "Regression of the variant's current revision against the BF16 reference, per benchmark, "
    "as a fraction of the reference score (0.015 = 1.5%; negative: better than the reference).",
    ["namespace", "model", "variant", "benchmark"],
)
QUALITY_THRESHOLD = Gauge(
    "qmo_quality_max_regression_ratio",
    "The model's quality gate threshold (spec.quality.maxRegressionPercent / 100).",
    ["namespace", "model"],
)

AUTOSCALING_MAX_REPLICAS = Gauge(
    "qmo_variant_autoscaling_max_replicas",
    "The maximum qmo gives an autoscaled variant's scaler: the spec's, or less where its GPU "
    "class holds less.",
    ["namespace", "model", "variant"],
)
AUTOSCALING_REPLICAS = Gauge(
    "qmo_variant_autoscaling_replicas",
    "Replicas an autoscaled variant's Deployment runs, as qmo last saw them.",
    ["namespace", "model", "variant"],
)
CAPACITY_EXHAUSTED = Gauge(
    "qmo_variant_capacity_exhausted",
    "1 while an autoscaled variant runs all its GPU class can hold and the spec would allow "
    "more (CapacityExhausted), else 0.",
    ["namespace", "model", "variant"],
)
ROUTE_WEIGHT = Gauge(
    "qmo_variant_route_weight",
    "The weight of the variant's Service in the model's default route, where it is weighted "
    "by capacity across GPU classes.",
    ["namespace", "model", "variant"],
)

# --- the API client and the process -------------------------------------------------------

API_REQUESTS = Counter(
    "qmo_api_requests_total",
    "Requests the operator made to the Kubernetes API, by verb, resource and HTTP code.",
    ["verb", "resource", "code"],
)
API_SECONDS = Histogram(
    "qmo_api_request_duration_seconds",
    "Latency of the operator's requests to the Kubernetes API, by verb.",
    ["verb"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BUILD_INFO = Info("qmo_build", "The operator's version.")
BUILD_INFO.info({"version": __version__})

PHASES = tuple(phase.value for phase in Phase)  # every phase, so none goes missing

# --- per-model series bookkeeping ---------------------------------------------------------

_lock = threading.Lock()
# Every labelled series that names a model, per (namespace, model), so it goes with the model.
_MODEL_SERIES: dict[tuple[str, str], set[tuple[Gauge | Counter, tuple[str, ...]]]] = {}
# The GPU classes and the unknown GPU products that have fleet series now.
_GPU_CLASSES: set[str] = set()
_UNKNOWN_PRODUCTS: set[str] = set()
# The label values of each variant's info series, and when it entered its phase.
_VARIANT_INFO: dict[tuple[str, str, str], tuple[str, ...]] = {}


def _track(metric: Gauge | Counter, labels: tuple[str, ...]) -> None:
    _MODEL_SERIES.setdefault((labels[0], labels[1]), set()).add((metric, labels))


def _drop(metric: Gauge | Counter, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
    _MODEL_SERIES.get((labels[0], labels[1]), set()).discard((metric, labels))


def observe_gpu_classes(fleet: dict[str, tuple[int, int]]) -> None:
    """The fleet as the planner sees it, (nodes, GPUs) by class; a class whose last node
    left loses its series."""
    _follow_fleet((GPU_CLASS_NODES, GPU_CLASS_GPUS), _GPU_CLASSES, fleet)


def observe_unknown_gpus(nodes_by_product: dict[str, int]) -> None:
    """GPU nodes qmo cannot place variants on, by product; a product whose last node left
    loses its series."""
    _follow_fleet(
        (UNKNOWN_GPU_NODES,), _UNKNOWN_PRODUCTS, {p: (n,) for p, n in nodes_by_product.items()}
    )


def _follow_fleet(
    gauges: tuple[Gauge, ...], exported: set[str], values: Mapping[str, tuple[int, ...]]
) -> None:
    """Set each label's values on `gauges` (one value per gauge) and remove the series of
    labels gone since the last call. Removing only what left, rather than clearing and
    refilling, means a scrape never sees the fleet vanish for a moment."""
    with _lock:
        for gone in exported - values.keys():
            for gauge in gauges:
                gauge.remove(gone)
        for label, numbers in values.items():
            for gauge, number in zip(gauges, numbers, strict=True):
                gauge.labels(label).set(number)
        exported.clear()
        exported.update(values)


def observe_variants(namespace: str, model: str, phases: list[str]) -> None:
    """Set the per-phase variant counts of one model (every phase, so stale ones drop to 0)."""
    counts = Tally(phases)
    with _lock:
        for phase in PHASES:
            labels = (namespace, model, phase)
            VARIANTS.labels(*labels).set(counts.get(phase, 0))
            _track(VARIANTS, labels)


def observe_variant_info(
    namespace: str, model: str, variants: Iterable[tuple[str, ...]], now: float
) -> None:
    """Set the info series of a model's variants: (variant, precision, kv_cache_dtype,
    gpu_class, revision, phase) each. A variant whose labels changed loses its old series; a
    variant that is gone loses its own."""
    with _lock:
        current = {v[0]: v for v in variants}
        for key, old in list(_VARIANT_INFO.items()):
            if key[:2] != (namespace, model):
                continue
            new = current.get(key[2])
            if new is None or new != old[2:]:
                _drop(VARIANT_INFO, old)
            if new is None:
                _drop(VARIANT_PHASE_SINCE, key)
                del _VARIANT_INFO[key]
        for name, values in current.items():
            key = (namespace, model, name)
            labels = (namespace, model, *values)
            before = _VARIANT_INFO.get(key)
            if before is None or before[-1] != labels[-1]:  # a new variant, or a new phase
                VARIANT_PHASE_SINCE.labels(*key).set(now)
                _track(VARIANT_PHASE_SINCE, key)
            VARIANT_INFO.labels(*labels).set(1)
            _track(VARIANT_INFO, labels)
            _VARIANT_INFO[key] = labels


def observe_quality(
    namespace: str,
    model: str,
    threshold_percent: float,
    regressions: dict[str, dict[str, float]],
) -> None:
    """The gate threshold and, per variant, the regression of each benchmark (in percent) of
    the report that judged its current revision. Benchmarks no longer reported go."""
    with _lock:
        QUALITY_THRESHOLD.labels(namespace, model).set(threshold_percent / 100)
        _track(QUALITY_THRESHOLD, (namespace, model))
        wanted = {
            (namespace, model, variant, benchmark): percent / 100
            for variant, deltas in regressions.items()
            for benchmark, percent in deltas.items()
        }
        for metric, labels in list(_MODEL_SERIES.get((namespace, model), ())):
            if metric is QUALITY_REGRESSION and labels not in wanted:
                _drop(metric, labels)
        for labels, ratio in wanted.items():
            QUALITY_REGRESSION.labels(*labels).set(ratio)
            _track(QUALITY_REGRESSION, labels)


# A variant's autoscaling figures: (max replicas, replicas, at bound, route weight or None).
Scaling = tuple[int, int, bool, int | None]


def observe_autoscaling(namespace: str, model: str, scaling: dict[str, Scaling]) -> None:
    """The autoscaled variants' bounds, replicas, CapacityExhausted and route weights; a
    variant no longer autoscaled (or weighted) loses its series."""
    gauges = (AUTOSCALING_MAX_REPLICAS, AUTOSCALING_REPLICAS, CAPACITY_EXHAUSTED, ROUTE_WEIGHT)
    with _lock:
        wanted: dict[tuple[Gauge, tuple[str, ...]], float] = {}
        for variant, (most, running, at_bound, weight) in scaling.items():
            series: tuple[str, ...] = (namespace, model, variant)
            wanted[(AUTOSCALING_MAX_REPLICAS, series)] = most
            wanted[(AUTOSCALING_REPLICAS, series)] = running
            wanted[(CAPACITY_EXHAUSTED, series)] = 1 if at_bound else 0
            if weight is not None:
                wanted[(ROUTE_WEIGHT, series)] = weight
        for metric, tracked in list(_MODEL_SERIES.get((namespace, model), ())):
            if metric in gauges and (metric, tracked) not in wanted:
                _drop(metric, tracked)
        for (gauge, series), value in wanted.items():
            gauge.labels(*series).set(value)
            _track(gauge, series)


def count_verdict(namespace: str, model: str, variant: str, verdict: str) -> None:
    labels = (namespace, model, variant, verdict)
    with _lock:
        QUALITY_VERDICTS.labels(*labels).inc()
        _track(QUALITY_VERDICTS, labels)


def count_rollback(namespace: str, model: str, variant: str, action: str) -> None:
    labels = (namespace, model, variant, action)
    with _lock:
        ROLLBACKS.labels(*labels).inc()
        _track(ROLLBACKS, labels)


def build_started(precision: str, gpu_class: str) -> None:
    """A build Job was created. Its outcome series start at 0 now, so that the first failure
    is an increase Prometheus sees (a series born at 1 has no increase to show)."""
    BUILDS_CREATED.labels(precision).inc()
    for outcome in ("succeeded", "failed"):
        BUILDS_FINISHED.labels(precision, gpu_class, outcome)


def observe_build(precision: str, gpu_class: str, outcome: str, seconds: float | None) -> None:
    """A build Job finished (seen once, when the watch shows it finishing)."""
    BUILDS_FINISHED.labels(precision, gpu_class, outcome).inc()
    if seconds is not None and seconds >= 0:
        BUILD_SECONDS.labels(precision, gpu_class, outcome).observe(seconds)


def forget_model(namespace: str, model: str) -> None:
    """Remove every series of a deleted model."""
    with _lock:
        for metric, labels in _MODEL_SERIES.pop((namespace, model), set()):
            with contextlib.suppress(KeyError):
                metric.remove(*labels)
        for key in [k for k in _VARIANT_INFO if k[:2] == (namespace, model)]:
            del _VARIANT_INFO[key]


def model_series(namespace: str, model: str) -> int:
    """How many series name this model (for tests)."""
    with _lock:
        return len(_MODEL_SERIES.get((namespace, model), ()))
