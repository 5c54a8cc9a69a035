"""Prometheus metrics of the operator (served on --metrics-port at /metrics)."""

from __future__ import annotations

import contextlib
from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram

from qmo.vocabulary import Phase

RECONCILES = Counter("qmo_reconcile_total", "Reconciles of QuantizedModels, by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "qmo_reconcile_duration_seconds",
    "Time one reconcile takes.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BUILDS_CREATED = Counter(
    "qmo_builds_created_total", "Build Jobs created, by precision.", ["precision"]
)
VARIANTS = Gauge(
    "qmo_variants", "Variants of a QuantizedModel, by phase.", ["namespace", "model", "phase"]
)
ROLLBACKS = Counter(
    "qmo_rollbacks_total",
    "Variants rolled back or moved down the precision ladder after a quality regression.",
    ["namespace", "model", "variant", "action"],
)
QUALITY_VERDICTS = Counter(
    "qmo_quality_verdicts_total", "QualityReports judged, by verdict.", ["verdict"]
)
RESYNCS = Counter(
    "qmo_resyncs_total", "Times the resync timer queued every model again (a safety net)."
)
API_REQUESTS = Counter(
    "qmo_api_requests_total",
    "Requests the operator made to the Kubernetes API, by verb, resource and HTTP code.",
    ["verb", "resource", "code"],
)

PHASES = tuple(phase.value for phase in Phase)  # every phase, so none goes missing


def observe_variants(namespace: str, model: str, phases: list[str]) -> None:
    """Set the per-phase variant counts of one model (every phase, so stale ones drop to 0)."""
    counts = Tally(phases)
    for phase in PHASES:
        VARIANTS.labels(namespace=namespace, model=model, phase=phase).set(counts.get(phase, 0))


# The rollback series of each model, so they go with it.
_ROLLBACK_SERIES: dict[tuple[str, str], set[tuple[str, str, str, str]]] = {}


def count_rollback(namespace: str, model: str, variant: str, action: str) -> None:
    ROLLBACKS.labels(namespace=namespace, model=model, variant=variant, action=action).inc()
    _ROLLBACK_SERIES.setdefault((namespace, model), set()).add((namespace, model, variant, action))


def forget_model(namespace: str, model: str) -> None:
    """Remove every series of a deleted model."""
    for phase in PHASES:
        with contextlib.suppress(KeyError):
            VARIANTS.remove(namespace, model, phase)
    for series in _ROLLBACK_SERIES.pop((namespace, model), set()):
        with contextlib.suppress(KeyError):
            ROLLBACKS.remove(*series)
