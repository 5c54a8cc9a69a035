"""One reconcile of one QuantizedModel: gather -> plan -> changes -> execute -> report.

Level-based and idempotent: it is called for creation, every change, every child event and on
a timer, and each call converges the cluster on the same plan. It reads only the watch-fed
cache; every step but the two that write (`execute`, `report`) is pure. It writes only what
differs from the cache, then the reports' verdicts, the status and the Events for what changed
(`reporting`), also when the API server refused some of its writes. Runs in a worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from qmo import metrics
from qmo.api.base import ConditionStatus
from qmo.api.quantizedmodel import QualitySpec, QuantizedModelSpec, QuantizedModelStatus
from qmo.conditions import get_condition
from qmo.config import OperatorConfig
from qmo.controller import telemetry
from qmo.controller.changes import Change, Delete, desired_changes, mark_refused, taken_names
from qmo.controller.events import EventSink
from qmo.controller.execute import Executed, execute, report
from qmo.controller.gather import Gathered, gather
from qmo.controller.live_names import LiveNames
from qmo.controller.ports import CacheView, KubeWrites
from qmo.controller.projections import STATUS_WRITTEN
from qmo.controller.reporting import (
    ApplyStatus,
    PostEvent,
    Report,
    report_changes,
    status_change,
)
from qmo.manifests import names
from qmo.manifests.labels import Owner
from qmo.manifests.routes import gateways, routed
from qmo.planner import revisions
from qmo.planner.events import Context, Event, model_events
from qmo.planner.plan import plan_model
from qmo.planner.status import Names, build_status, invalid_spec_status
from qmo.planner.types import Plan
from qmo.quality.reports import judge_all
from qmo.resources import DEPLOYMENTS, SERVICES
from qmo.vocabulary import RETRY_ANNOTATION, ConditionType, EventType, Reason
from qmo.wire import Obj

log = logging.getLogger("qmo.reconcile")
# Plans after a reconcile's first writes: the last only describes, the others may write more.
FOLLOW_UP_ROUNDS = 3
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
    events: tuple[Event, ...]
    status_written: bool
    writes: int = 0
    # Reconcile again this soon: what it deleted is to be created anew (a retry).
    requeue_after: float | None = None


def reconcile(
    kube: KubeWrites,
    cache: CacheView,
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
        _orphan_reports(kube, cache, events, namespace, name, clock)
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
    kube: KubeWrites,
    cache: CacheView,
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
        return _report_invalid_spec(kube, cache, sink, owner, generation, previous, err, clock)

    # Every model asks, not only those with spec.routing: the route of one whose spec.routing
    # was removed while the operator was down is seen (and deleted) only once HTTPRoutes are
    # watched. Rate-limited while the API is missing (ClusterCache.routes_available).
    routes_available = cache.routes_available()
    remembered = revisions.remembered(previous), revisions.served_before(previous)
    scaling = spec.serving.autoscaling
    # Asked by every model, like routes: a ScaledObject left behind when autoscaling was removed
    # while the operator was down is seen (and deleted) only once ScaledObjects are watched.
    keda = cache.keda_installed()
    prometheus = (scaling.prometheus_address if scaling else None) or config.prometheus_address

    live_names = LiveNames(kube)

    def look() -> tuple[Gathered, Plan]:
        """What the cache shows now, and the plan for it."""
        seen = gather(
            cache, namespace, name, spec.quality, *remembered, gateways(spec, namespace),
            autoscaled=scaling is not None, keda_installed=keda, prometheus=prometheus,
        )  # fmt: skip
        return seen, plan_model(spec, seen.observed, config)

    def changes_for(found: Gathered, plan: Plan, *, retry: bool) -> list[Change]:
        """The changes `plan` needs, leaving every name held by an object qmo did not make
        to that object (see `live_names`)."""
        return live_names.changes(
            found,
            lambda seen: desired_changes(
                spec, plan, seen, owner, config, retry=retry, routes_available=routes_available
            ),
        )

    found, plan = look()
    retry = _retry_requested(body, previous)
    changes = changes_for(found, plan, retry=retry is not None)
    done = execute(kube, cache, owner, changes)
    if done.namespace_terminating:
        log.info("Namespace %s is being deleted; QuantizedModel %s goes with it", namespace, name)
        return Outcome(plan, (), False, done.written)
    # Status tells what this reconcile left behind (the Job it created is running, the
    # Deployment it applied rolls out), so the next reconcile, seeing the same, writes nothing:
    # plan again from the cache, which has every write. The cache also follows the cluster
    # meanwhile (a build that finished since): what that plan asks for is written too, so the
    # status never says more than the writes did.
    for round_ in range(FOLLOW_UP_ROUNDS):
        if not done.written or done.transient or done.namespace_terminating:
            break
        found, plan = look()
        # The retry deleted what failed in the first round; a later round must not again.
        more = changes_for(found, plan, retry=False)
        more = [c for c in more if c.variant not in done.refused]
        if not more or round_ == FOLLOW_UP_ROUNDS - 1:
            break
        later = execute(kube, cache, owner, more)
        done.absorb(later)
        changes += more
        if not later.written:
            break
    if done.namespace_terminating:
        return Outcome(plan, (), False, done.written)
    plan = mark_refused(plan, done.refused)
    # Names another model holds are not this model's: status names none of them.
    taken = taken_names(changes, SERVICES.kind)
    main_service = names.main_service(name)
    status = build_status(
        spec,
        plan,
        found.observed.inventory,
        _child_names(name, plan, taken, taken_names(changes, DEPLOYMENTS.kind)),
        previous,
        generation=generation,
        main_service=None if main_service in taken else main_service,
        now=clock(),
        retried=retry,
        routed=routed(spec, plan, name, routes_available, found.route, found.rival_routes, taken),
    )
    restarted = sum(1 for c in changes if isinstance(c, Delete))
    events = model_events(
        plan,
        previous,
        status,
        Context(
            spec_changed=previous is None or previous.observed_generation != generation,
            replicas=spec.serving.wanted_replicas,
            model_refusal=done.refused.get(None),
            retry=retry,
            restarted=restarted,
        ),
    )
    status_write, wait = status_change(
        previous, status, written_at=_status_written_at(body), now=clock(), events=events
    )
    reports: list[Report] = [*report_changes(found.reports, plan)]
    reports += [status_write] if status_write else []
    reports += [PostEvent(e) for e in events]
    report(kube, cache, owner, reports, sink, clock(), done)
    metrics.observe_variants(namespace, name, [v.phase.value for v in plan.variants])
    _observe(body, spec, previous, status, found, clock())
    if done.written or events:
        log.info(
            "Reconciled QuantizedModel %s/%s: writes=%d variants=%s",
            namespace,
            name,
            done.written,
            ",".join(f"{v.name}:{v.phase.value}" for v in plan.variants) or "none",
        )
    if done.refused or done.transient:
        problems = [r.message for r in done.refused.values()] + done.transient
        first = next(iter(done.refused.values()), None)  # ChildRejected or NameTaken
        reason = first.reason if first is not None else Reason.API_UNAVAILABLE
        raise Retry("; ".join(problems)[:500], reason)
    requeue = None
    if retry is not None and restarted:
        requeue = 1.0  # what the retry deleted is created anew
    elif wait is not None:
        requeue = wait
    return Outcome(plan, tuple(events), done.status_written, done.written, requeue)


def _child_names(
    model: str, plan: Plan, services_taken: frozenset[str], deployments_taken: frozenset[str]
) -> dict[str, Names]:
    """The names of each variant's children, but for those another model holds."""

    def own(name: str, taken: frozenset[str]) -> str | None:
        return None if name in taken else name

    return {
        v.name: Names(
            deployment=own(names.variant_deployment(model, v.name), deployments_taken),
            service=own(names.variant_service(model, v.name), services_taken),
            build_job=names.build_job(v.name, v.cache_key) if v.cache_key else None,
        )
        for v in plan.variants
    }


def _status_written_at(body: Obj) -> datetime | None:
    stamp = body["metadata"].get(STATUS_WRITTEN)
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


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
    metrics.observe_autoscaling(namespace, name, telemetry.autoscaling(status))


def _retry_requested(body: Obj, previous: QuantizedModelStatus | None) -> str | None:
    """The qmo.dev/retry value when it is new (not yet acted on), else None."""
    value = (body["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION)
    if not value or (previous is not None and previous.retried == value):
        return None
    return str(value)


def _orphan_reports(
    kube: KubeWrites, cache: CacheView, sink: EventSink, namespace: str, model: str, clock: Clock
) -> None:
    """Reports about a model that does not exist are judged, marked Orphaned, and ignored."""
    judged = judge_all(cache.reports(namespace, model), QualitySpec())
    nobody = Owner(name=model, namespace=namespace, uid="")
    report(kube, cache, nobody, [*report_changes(judged, None)], sink, clock(), Executed())


def _report_invalid_spec(
    kube: KubeWrites,
    cache: CacheView,
    sink: EventSink,
    owner: Owner,
    generation: int | None,
    previous: QuantizedModelStatus | None,
    err: ValidationError,
    clock: Clock,
) -> Outcome:
    """A spec the CRD accepted but qmo cannot use: say so, touch nothing that runs."""
    message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())[:900]
    status = invalid_spec_status(previous, message, generation=generation, now=clock())
    event = Event(EventType.WARNING, Reason.INVALID_SPEC, message)
    if previous is not None and previous.to_wire() == status.to_wire():
        return Outcome(None, (event,), False)
    done = Executed()
    report(
        kube, cache, owner, [ApplyStatus(status.to_wire()), PostEvent(event)], sink, clock(), done
    )
    if done.transient:
        raise Retry("; ".join(done.transient)[:500], Reason.API_UNAVAILABLE)
    return Outcome(None, (event,), done.status_written, done.written)
