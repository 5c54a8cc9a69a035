"""Carry out a reconcile's changes, one by one, and say which the API server refused.

A refused write (422 invalid, 403 forbidden, 409 conflict...) belongs to the variant it was
for: it becomes that variant's condition and Warning Event, and the other changes still run.
A `Refuse` (a name another model holds, see `ownership`) is reported the same way, unwritten.
A transient failure (5xx, timeout, lost connection) is remembered, the rest still runs, and
the reconcile is retried with backoff afterwards.

What a reconcile reports (`reporting`: reports' verdicts, the model's status, Events) runs
through here too, after the children: a refused report or status write is remembered like a
transient one (retried, and logged with the server's words); an Event is handed to the
recorder, which posts it off the reconcile path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from qmo import failpoints, metrics
from qmo.controller.changes import (
    AddOwner,
    Apply,
    Change,
    Delete,
    HandOverReplicas,
    RecordReport,
    Refuse,
)
from qmo.controller.events import EventSink
from qmo.controller.ports import CacheView, KubeWrites
from qmo.controller.reporting import ApplyReportStatus, ApplyStatus, PostEvent, Report
from qmo.kube import (
    TRANSIENT_ERRORS,
    ApiException,
    is_refusal,
    namespace_terminating,
    owner_field_manager,
    server_message,
)
from qmo.manifests.labels import Owner
from qmo.planner.events import ROLLBACK_REASONS
from qmo.vocabulary import GPU_CLASS, HANDOVER_FIELD_MANAGER, PRECISION, Reason, Refusal

log = logging.getLogger("qmo.execute")
BUILD_KIND = ("batch/v1", "Job")


@dataclass
class Executed:
    """What happened to a reconcile's changes."""

    written: int = 0
    status_written: bool = False
    # Refusals by variant name (None: the model's own objects, such as its main Service).
    refused: dict[str | None, Refusal] = field(default_factory=dict)
    transient: list[str] = field(default_factory=list)
    # The namespace is being deleted: the model goes with it, there is nothing to report.
    namespace_terminating: bool = False

    def absorb(self, later: Executed) -> None:
        """Add what a later round of the same reconcile did."""
        self.written += later.written
        self.status_written |= later.status_written
        for variant, refusal in later.refused.items():
            self.refused.setdefault(variant, refusal)
        self.transient += later.transient
        self.namespace_terminating |= later.namespace_terminating


def _describe(change: Change) -> str:
    target = change.obj if isinstance(change, Apply | RecordReport) else change.target
    return f"{target['kind']} {target['metadata']['name']}"


def report(
    kube: KubeWrites,
    cache: CacheView | None,
    owner: Owner,
    changes: list[Report],
    sink: EventSink,
    now: datetime,
    done: Executed,
) -> None:
    """Write the reports' verdicts and the status, then hand the Events to the recorder."""
    for change in changes:
        if isinstance(change, PostEvent):
            _post(owner, change, sink, now)
            continue
        what = (
            f"QualityReport {change.report.name}"
            if isinstance(change, ApplyReportStatus)
            else f"the status of QuantizedModel {owner.name}"
        )
        try:
            _report(kube, cache, owner, change)
        except ApiException as err:
            log.warning(
                "Writing %s in %s was refused: %s", what, owner.namespace, server_message(err)
            )
            done.transient.append(f"{what}: {server_message(err)}")
        except TRANSIENT_ERRORS as err:
            done.transient.append(f"{what}: {type(err).__name__}: {err}")
        else:
            done.written += 1
            done.status_written |= isinstance(change, ApplyStatus)


def _report(
    kube: KubeWrites, cache: CacheView | None, owner: Owner, change: ApplyReportStatus | ApplyStatus
) -> None:
    if isinstance(change, ApplyStatus):
        failpoints.reached("reconcile.before-status")
        stored = kube.apply_status(owner.namespace, owner.name, change.status)
        failpoints.reached("reconcile.after-status")
    else:
        judged = change.report
        failpoints.reached("reconcile.before-report-status")
        stored = kube.apply_report_status(judged.namespace, judged.name, change.status)
        failpoints.reached("reconcile.after-report-status")
        if change.verdict_changed:
            spec = judged.report.spec
            verdict = judged.judgement.verdict.value
            metrics.count_verdict(judged.namespace, spec.model_ref.name, spec.variant, verdict)
    if cache is not None:
        cache.observe_write(stored)


def _post(owner: Owner, change: PostEvent, sink: EventSink, now: datetime) -> None:
    event = change.event
    model = {"metadata": {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid}}
    sink.record(model, event.type, event.reason, event.message, now)
    if event.reason in ROLLBACK_REASONS:
        metrics.count_rollback(
            owner.namespace, owner.name, event.variant or "", ROLLBACK_REASONS[event.reason]
        )


def execute(
    kube: KubeWrites, cache: CacheView | None, owner: Owner, changes: list[Change]
) -> Executed:
    done = Executed()
    for change in changes:
        if isinstance(change, Refuse):
            done.refused.setdefault(change.variant, change.refusal)
            continue
        try:
            _run(kube, cache, owner, change)
            done.written += 1
        except ApiException as err:
            if namespace_terminating(err):
                done.namespace_terminating = True
                return done
            if not is_refusal(err):
                done.transient.append(f"{_describe(change)}: {server_message(err)}")
                continue
            message = f"{_describe(change)} was refused by the API server: {server_message(err)}"
            log.warning(
                "QuantizedModel %s/%s: %s (variant %s)",
                owner.namespace, owner.name, message, change.variant or "-",
            )  # fmt: skip
            done.refused.setdefault(change.variant, Refusal(Reason.CHILD_REJECTED, message[:900]))
        except TRANSIENT_ERRORS as err:
            done.transient.append(f"{_describe(change)}: {type(err).__name__}: {err}")
    return done


def _run(kube: KubeWrites, cache: CacheView | None, owner: Owner, change: Change) -> None:
    # Failpoint names: the kind applied (Job, Deployment...), or AddOwner:Job, Delete:Service.
    if isinstance(change, Apply | RecordReport):
        point = change.obj["kind"]
    else:
        point = f"{type(change).__name__}:{change.target['kind']}"
    failpoints.reached(f"execute.before:{point}")
    _write(kube, cache, owner, change)
    failpoints.reached(f"execute.after:{point}")


def _write(kube: KubeWrites, cache: CacheView | None, owner: Owner, change: Change) -> None:
    if isinstance(change, Apply):
        manager = owner_field_manager(owner) if change.owner_manager else None
        stored = kube.apply(change.obj, manager) if manager else kube.apply(change.obj)
        if (change.obj["apiVersion"], change.obj["kind"]) == BUILD_KIND and change.owner_manager:
            labels = change.obj["metadata"]["labels"]
            metrics.build_started(labels.get(PRECISION, ""), labels.get(GPU_CLASS, ""))
        if cache is not None:
            cache.observe_write(stored)
    elif isinstance(change, RecordReport):
        stored = kube.apply(change.obj)
        log.info(
            "Created QualityReport %s/%s from the scores eval Job %s left (variant %s)",
            owner.namespace, change.obj["metadata"]["name"], change.job, change.variant,
        )  # fmt: skip
        if cache is not None:
            cache.observe_write(stored)
    elif isinstance(change, HandOverReplicas):
        meta = change.target["metadata"]
        handed = {
            "apiVersion": change.target["apiVersion"],
            "kind": change.target["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": change.replicas},
        }
        log.info(
            "Handing spec.replicas (%d) of Deployment %s/%s over to its scaler",
            change.replicas, meta["namespace"], meta["name"],
        )  # fmt: skip
        stored = kube.apply(handed, HANDOVER_FIELD_MANAGER)
        if cache is not None:
            cache.observe_write(stored)
    elif isinstance(change, AddOwner):
        stored_or_none = kube.add_owner(change.target, owner)
        if stored_or_none is not None and cache is not None:
            cache.observe_write(stored_or_none)
    elif isinstance(change, Delete):
        meta = change.target["metadata"]
        log.info(
            "Deleting %s %s/%s: %s",
            change.target["kind"], meta.get("namespace"), meta["name"], change.why,
        )  # fmt: skip
        kube.delete(change.target)
        if cache is not None:
            cache.observe_delete(change.target)
