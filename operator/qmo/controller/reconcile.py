"""One reconcile of one QuantizedModel: gather -> plan -> changes -> execute -> status.

Level-based and idempotent: it is called for creation, every change, every child event and on
a timer, and each call converges the cluster on the same plan. It reads only the watch-fed
cache, writes only what differs from it, and writes the status (and posts Events) for what
changed, also when the API server refused some of its writes. Runs in a worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from qmo import failpoints, metrics
from qmo.api.base import ConditionStatus
from qmo.api.qualityreport import ReportState
from qmo.api.quantizedmodel import QualitySpec, QuantizedModelSpec, QuantizedModelStatus
from qmo.conditions import get_condition, set_condition
from qmo.config import OperatorConfig
from qmo.controller import telemetry
from qmo.controller.cache import ClusterCache
from qmo.controller.changes import Delete, desired_changes, mark_refused
from qmo.controller.events import EventSink
from qmo.controller.execute import Executed, execute
from qmo.controller.gather import Gathered, gather
from qmo.kube import TRANSIENT_ERRORS, ApiException, Kube, is_refusal
from qmo.manifests import names
from qmo.manifests.labels import Owner
from qmo.manifests.routes import published_names
from qmo.manifests.serving import rollout_strategy
from qmo.planner.decisions import Decision, decisions
from qmo.planner.plan import plan_model
from qmo.planner.routing import routed_condition
from qmo.planner.status import Names, build_status
from qmo.planner.types import Plan
from qmo.quality.reports import JudgedReport, judge_all, report_state, report_status
from qmo.vocabulary import RETRY_ANNOTATION, Action, ConditionType, EventType, Reason
from qmo.wire import Obj

log = logging.getLogger("qmo.reconcile")
# Events that mean a regression was acted on, and the metric label of each.
ROLLBACK_REASONS: dict[str, str] = {
    Reason.ROLLED_BACK: "rollback",
    Reason.FELL_BACK: "fallback",
    Reason.WITHDRAWN: "withdraw",
}
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Retry(Exception):
    """The reconcile wrote what it could and reported the rest; retry it with backoff."""

    def __init__(self, message: str, reason_label: str) -> None:
        super().__init__(message)
        self.reason_label = reason_label  # qmo_reconcile_errors_total{reason}


@dataclass(frozen=True)
class Outcome:
    """What a reconcile decided, for logs, metrics and tests."""

    plan: Plan | None
    events: tuple[Decision, ...]
    status_written: bool
    writes: int = 0
    # Reconcile again this soon: what it deleted is to be created anew (a retry).
    requeue_after: float | None = None


def reconcile(
    kube: Kube,
    cache: ClusterCache,
    events: EventSink,
    config: OperatorConfig,
    namespace: str,
    name: str,
    clock: Clock = utc_now,
) -> Outcome:
    """Converge the children of `namespace/name` on its plan, then report."""
    started = time.monotonic()
    body = cache.model(namespace, name)
    if body is None:
        _orphan_reports(kube, cache, namespace, name)
        return Outcome(None, (), False)  # owner references take the children with it
    if body["metadata"].get("deletionTimestamp"):
        return Outcome(None, (), False)
    try:
        outcome = _reconcile_model(kube, cache, events, config, body, clock)
    except Exception:
        metrics.RECONCILES.labels(result="error").inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    metrics.RECONCILES.labels(result="ok").inc()
    return outcome


def _previous_status(body: Obj) -> QuantizedModelStatus | None:
    raw = body.get("status")
    if not raw:
        return None
    try:
        return QuantizedModelStatus.model_validate(raw)
    except ValidationError:
        return None


def _reconcile_model(
    kube: Kube,
    cache: ClusterCache,
    sink: EventSink,
    config: OperatorConfig,
    body: Obj,
    clock: Clock,
) -> Outcome:
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
    previous = _previous_status(body)
    try:
        spec = QuantizedModelSpec.from_wire(body.get("spec") or {})
    except ValidationError as err:
        return _report_invalid_spec(kube, cache, sink, body, previous, err, clock)

    last_good = {
        v.name: v.last_good_revision
        for v in (previous.variants if previous else [])
        if v.last_good_revision
    }
    found = gather(cache, namespace, name, spec.quality, last_good)
    plan = plan_model(spec, found.observed, config)
    retry = _retry_requested(body, previous)
    routes_available = spec.routing is not None and cache.routes_available()
    changes = desired_changes(
        spec, plan, found, owner, config, retry=retry is not None, routes_available=routes_available
    )
    done = execute(kube, cache, owner, changes)
    if done.namespace_terminating:
        log.info("Namespace %s is being deleted; QuantizedModel %s goes with it", namespace, name)
        return Outcome(plan, (), False, done.written)
    plan = mark_refused(plan, done.refused)
    done.written += _judge_reports(kube, cache, found, plan, done)

    variant_names = {
        v.name: Names(
            deployment=names.variant_deployment(name, v.name),
            service=names.variant_service(name, v.name),
            build_job=names.build_job(v.name, v.cache_key) if v.cache_key else None,
        )
        for v in plan.variants
    }
    status = build_status(
        spec,
        plan,
        found.observed.inventory,
        variant_names,
        previous,
        generation=generation,
        main_service=names.main_service(name),
        now=clock(),
        retried=retry,
        routed=routed_condition(routes_available, found.route, published_names(spec, plan, name))
        if spec.routing is not None
        else None,
    )
    spec_changed = previous is None or previous.observed_generation != generation
    events = decisions(plan, previous, spec_changed=spec_changed)
    events += _rollout_notes(spec, plan, previous)
    events += _model_refusal_events(done, previous)
    events += _routing_events(status, previous)
    if retry is not None:
        restarted = sum(1 for c in changes if isinstance(c, Delete))
        events.append(
            Decision(
                EventType.NORMAL,
                Reason.RETRY_REQUESTED,
                f"{RETRY_ANNOTATION}={retry}: {restarted} failed build or eval Job(s) are "
                "started again",
            )
        )
    written = _write_status(kube, cache, namespace, name, previous, status)
    for event in events:
        sink.record(body, event.type, event.reason, event.message, clock())
        if event.reason in ROLLBACK_REASONS:
            metrics.count_rollback(
                namespace, name, event.variant or "", ROLLBACK_REASONS[event.reason]
            )
    metrics.observe_variants(namespace, name, [v.phase.value for v in plan.variants])
    _observe(body, spec, previous, status, found, clock())
    if done.written or written or events:
        log.info(
            "Reconciled QuantizedModel %s/%s: writes=%d variants=%s",
            namespace,
            name,
            done.written,
            ",".join(f"{v.name}:{v.phase.value}" for v in plan.variants) or "none",
        )
    if done.refused or done.transient:
        problems = [r.message for r in done.refused.values()] + done.transient
        reason = Reason.CHILD_REJECTED if done.refused else "ApiUnavailable"
        raise Retry("; ".join(problems)[:500], reason)
    requeue = 1.0 if retry is not None and any(isinstance(c, Delete) for c in changes) else None
    return Outcome(plan, tuple(events), written, done.written, requeue)


def _ready_for_generation(status: QuantizedModelStatus | None, generation: int | None) -> bool:
    if status is None or status.observed_generation != generation:
        return False
    ready = get_condition(status.conditions, ConditionType.READY)
    return ready is not None and ready.status == ConditionStatus.TRUE


def _observe(
    body: Obj,
    spec: QuantizedModelSpec,
    previous: QuantizedModelStatus | None,
    status: QuantizedModelStatus,
    found: Gathered,
    now: datetime,
) -> None:
    """The model's series: its variants, its quality and, once per generation, time to Ready."""
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    seconds = telemetry.READY_TIMER.observe(
        meta,
        _ready_for_generation(previous, generation),
        _ready_for_generation(status, generation),
        now,
    )
    if seconds is not None:
        metrics.TIME_TO_READY.observe(seconds)
    metrics.observe_variant_info(namespace, name, telemetry.variant_info(status), now.timestamp())
    metrics.observe_quality(
        namespace,
        name,
        spec.quality.max_regression_percent,
        telemetry.regressions(status, found.reports),
    )


def _retry_requested(body: Obj, previous: QuantizedModelStatus | None) -> str | None:
    """The qmo.dev/retry value when it is new (not yet acted on), else None."""
    value = (body["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION)
    if not value or (previous is not None and previous.retried == value):
        return None
    return str(value)


def _routing_events(
    status: QuantizedModelStatus, previous: QuantizedModelStatus | None
) -> list[Decision]:
    """A Warning when routing stops working (or cannot start), once per reason."""
    routed = get_condition(status.conditions, ConditionType.ROUTED)
    if routed is None or routed.status != ConditionStatus.FALSE:
        return []
    before = get_condition(previous.conditions, ConditionType.ROUTED) if previous else None
    if before is not None and before.reason == routed.reason and before.status == routed.status:
        return []
    return [Decision(EventType.WARNING, routed.reason, routed.message)]


def _model_refusal_events(done: Executed, previous: QuantizedModelStatus | None) -> list[Decision]:
    """A Warning for a refusal of the model's own objects, once per distinct message."""
    refusal = done.refused.get(None)
    if refusal is None:
        return []
    degraded = get_condition(previous.conditions, ConditionType.DEGRADED) if previous else None
    if degraded is not None and refusal.message in degraded.message:
        return []
    return [Decision(EventType.WARNING, refusal.reason, refusal.message)]


def _judge_reports(
    kube: Kube, cache: ClusterCache, found: Gathered, plan: Plan, done: Executed
) -> int:
    """Write each report's verdict and whether it counts (Current), where it changed."""
    written = 0
    for report in found.reports:
        try:
            if _write_report_status(kube, cache, report, report_state(report, plan)):
                written += 1
        except ApiException as err:
            if not is_refusal(err):
                done.transient.append(f"QualityReport {report.name}: {err.reason}")
        except TRANSIENT_ERRORS as err:
            done.transient.append(f"QualityReport {report.name}: {err}")
    return written


def _write_report_status(
    kube: Kube, cache: ClusterCache | None, report: JudgedReport, state: ReportState
) -> bool:
    """Write the judgement when it differs from what the report's status says already."""
    status = report_status(report, state).to_wire()
    status.pop("conditions", None)  # never written by qmo; not part of the comparison
    current = {k: v for k, v in (report.raw_status or {}).items() if k != "conditions"}
    if current == status:
        return False
    failpoints.reached("reconcile.before-report-status")
    stored = kube.apply_report_status(report.namespace, report.name, status)
    failpoints.reached("reconcile.after-report-status")
    if cache is not None:
        cache.observe_write(stored)
    previous_verdict = (report.raw_status or {}).get("verdict")
    if previous_verdict != status.get("verdict") and state != ReportState.ORPHANED:
        spec = report.report.spec
        metrics.count_verdict(
            report.namespace, spec.model_ref.name, spec.variant, report.judgement.verdict.value
        )
    return True


def _orphan_reports(kube: Kube, cache: ClusterCache, namespace: str, model: str) -> None:
    """Reports about a model that does not exist are judged, marked Orphaned, and ignored."""
    for report in judge_all(cache.reports(namespace, model), QualitySpec()):
        _write_report_status(kube, cache, report, ReportState.ORPHANED)


def _rollout_notes(
    spec: QuantizedModelSpec, plan: Plan, previous: QuantizedModelStatus | None
) -> list[Decision]:
    """Say, once per rollout, when a variant must roll without a surge pod (no spare GPU)."""
    before = {v.name: v for v in previous.variants} if previous else {}
    notes = []
    for variant in plan.variants:
        if variant.action != Action.DEPLOY:
            continue
        prev = before.get(variant.name)
        starts_rollout = (
            prev is None
            or prev.deployment is None
            or (prev.revision != variant.cache_key and prev.phase != "Deploying")
        )
        if starts_rollout and not rollout_strategy(variant, spec.serving.replicas).surge:
            notes.append(
                Decision(
                    EventType.NORMAL,
                    Reason.ROLLING_WITHOUT_SURGE,
                    f"{variant.name}: {variant.gpu_class.name} has no spare GPUs for a surge "
                    "pod, so updates replace one pod at a time (maxSurge 0)",
                )
            )
    return notes


def _write_status(
    kube: Kube,
    cache: ClusterCache | None,
    namespace: str,
    name: str,
    previous: QuantizedModelStatus | None,
    status: QuantizedModelStatus,
) -> bool:
    """Write the status when it changed; the cache learns the written object at once."""
    if previous is not None and previous.to_wire() == status.to_wire():
        return False
    failpoints.reached("reconcile.before-status")
    stored = kube.apply_status(namespace, name, status.to_wire())
    failpoints.reached("reconcile.after-status")
    if cache is not None:
        cache.observe_write(stored)
    return True


def _report_invalid_spec(
    kube: Kube,
    cache: ClusterCache | None,
    sink: EventSink,
    body: Obj,
    previous: QuantizedModelStatus | None,
    err: ValidationError,
    clock: Clock,
) -> Outcome:
    """A spec the CRD accepted but qmo cannot use: say so, touch nothing that runs."""
    meta = body["metadata"]
    message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())[:900]
    status = previous or QuantizedModelStatus()
    conds = set_condition(
        status.conditions,
        ConditionType.DEGRADED,
        ConditionStatus.TRUE,
        Reason.INVALID_SPEC,
        message,
        generation=meta.get("generation"),
        now=clock(),
    )
    conds = set_condition(
        conds,
        ConditionType.READY,
        ConditionStatus.FALSE,
        Reason.INVALID_SPEC,
        "the spec is invalid; running variants are left as they are",
        generation=meta.get("generation"),
        now=clock(),
    )
    updated = status.model_copy(
        update={"conditions": conds, "observed_generation": meta.get("generation")}
    )
    written = _write_status(kube, cache, meta["namespace"], meta["name"], previous, updated)
    if written:
        sink.record(body, EventType.WARNING, Reason.INVALID_SPEC, message, clock())
    return Outcome(None, (Decision(EventType.WARNING, Reason.INVALID_SPEC, message),), written)
