"""One reconcile of one QuantizedModel: gather -> plan -> apply -> status and Events.

Level-based and idempotent: it is called for creation, every change, every child event and on
a timer, and each call converges the cluster on the same plan. Runs in a worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from qmo import metrics
from qmo.api.base import ConditionStatus
from qmo.api.buildcontract import BuildResult
from qmo.api.buildcontract import BuildState as ResultState
from qmo.api.qualityreport import ReportState
from qmo.api.quantizedmodel import QualitySpec, QuantizedModelSpec, QuantizedModelStatus
from qmo.conditions import DEGRADED, READY, set_condition
from qmo.config import OperatorConfig
from qmo.controller.gather import Gathered, gather, list_reports
from qmo.kube import Kube
from qmo.manifests import labels, names
from qmo.manifests.build import artifact_record, build_job
from qmo.manifests.evaluation import benchmarks_config_map, eval_job, evaluator_identity
from qmo.manifests.labels import Owner
from qmo.manifests.serving import (
    build_deployment,
    build_main_service,
    build_store_claim,
    build_variant_service,
    rollout_strategy,
)
from qmo.planner.plan import Action, BuildState, Plan, PlannedVariant, plan_model
from qmo.planner.status import Decision, Names, build_status, decisions
from qmo.quality.reports import JudgedReport, judge_all, report_state, report_status

log = logging.getLogger("qmo.reconcile")
# Events that mean a regression was acted on, and the metric label of each.
ROLLBACK_REASONS = {"RolledBack": "rollback", "FellBack": "fallback", "Withdrawn": "withdraw"}
Obj = dict[str, Any]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Outcome:
    """What a reconcile decided, for logs, metrics and tests."""

    plan: Plan | None
    events: tuple[Decision, ...]
    status_written: bool


def reconcile(
    kube: Kube, config: OperatorConfig, namespace: str, name: str, clock: Clock = utc_now
) -> Outcome:
    """Converge the children of `namespace/name` on its plan, then report."""
    started = time.monotonic()
    body = kube.get_model(namespace, name)
    if body is None:
        _orphan_reports(kube, namespace, name)
        return Outcome(None, (), False)  # owner references take the children with it
    if body["metadata"].get("deletionTimestamp"):
        return Outcome(None, (), False)
    try:
        outcome = _reconcile_model(kube, config, body, clock)
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


def _reconcile_model(kube: Kube, config: OperatorConfig, body: Obj, clock: Clock) -> Outcome:
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
    previous = _previous_status(body)
    try:
        spec = QuantizedModelSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        return _report_invalid_spec(kube, body, previous, err, clock)

    last_good = {
        v.name: v.last_good_revision
        for v in (previous.variants if previous else [])
        if v.last_good_revision
    }
    found = gather(kube, namespace, name, spec.quality, last_good)
    plan = plan_model(spec, found.observed)
    _apply_children(kube, config, spec, plan, found, owner)
    _judge_reports(kube, found, plan)
    _run_evaluations(kube, config, spec, plan, found, owner)

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
    )
    spec_changed = previous is None or previous.observed_generation != generation
    events = decisions(plan, previous, spec_changed=spec_changed)
    events += _rollout_notes(spec, plan, previous)
    written = _write_status(kube, namespace, name, previous, status)
    for event in events:
        kube.post_event(body, event.type, event.reason, event.message, clock())
        if event.reason in ROLLBACK_REASONS:
            metrics.ROLLBACKS.labels(
                namespace=namespace,
                model=name,
                variant=event.variant or "",
                action=ROLLBACK_REASONS[event.reason],
            ).inc()
    metrics.observe_variants(namespace, name, [v.phase.value for v in plan.variants])
    log.info(
        "Reconciled QuantizedModel %s/%s: variants=%s",
        namespace,
        name,
        ",".join(f"{v.name}:{v.phase.value}" for v in plan.variants) or "none",
    )
    return Outcome(plan, tuple(events), written)


def _apply_children(
    kube: Kube,
    config: OperatorConfig,
    spec: QuantizedModelSpec,
    plan: Plan,
    found: Gathered,
    owner: Owner,
) -> None:
    store = spec.engine.store
    # Create the claim once; never update it (claims are mostly immutable and may be shared).
    if (
        store.create
        and kube.get("v1", "PersistentVolumeClaim", store.claim_name, owner.namespace) is None
    ):
        kube.apply(build_store_claim(spec, owner.namespace))
    for variant in plan.variants:
        if variant.cache_key is None:
            continue
        if variant.action == Action.BUILD:
            job = kube.apply(
                build_job(
                    spec, variant, namespace=owner.namespace, builder_image=config.builder_image
                )
            )
            kube.add_owner(job, owner)
            metrics.BUILDS_CREATED.labels(precision=variant.precision.value).inc()
        elif variant.action in (Action.WAIT, Action.BLOCKED):
            running = found.jobs.get(variant.cache_key)
            if running is not None:
                kube.add_owner(running, owner)
            serving = variant.deployment
            if variant.lending_replicas is not None and serving and serving.revision:
                kube.apply(
                    build_deployment(
                        spec,
                        variant,
                        owner,
                        key=serving.revision,
                        replicas=variant.lending_replicas,
                    )
                )
        elif variant.action == Action.DEPLOY:
            _record_artifact(kube, variant, found, owner)
            _apply_serving(kube, spec, variant, found, owner)
        elif variant.action == Action.WITHDRAW:
            _delete_variant(kube, found, owner, variant.name, tracks=None)
    kube.apply(build_main_service(spec, plan.main_precision, owner))
    _delete_stale(kube, plan, found, owner)


def _apply_serving(
    kube: Kube, spec: QuantizedModelSpec, variant: PlannedVariant, found: Gathered, owner: Owner
) -> None:
    """The stable (or reference) Deployment at serve_key, and the candidate when gated."""
    track = labels.REFERENCE if variant.reference else labels.STABLE
    if variant.serve_key is not None:
        kube.apply(build_deployment(spec, variant, owner, key=variant.serve_key, track=track))
        kube.apply(build_variant_service(spec, variant, owner, track))
    if variant.candidate and variant.cache_key is not None:
        kube.apply(
            build_deployment(spec, variant, owner, key=variant.cache_key, track=labels.CANDIDATE)
        )
        kube.apply(build_variant_service(spec, variant, owner, labels.CANDIDATE))
    else:
        _delete_variant(kube, found, owner, variant.name, tracks={labels.CANDIDATE})


def _delete_variant(
    kube: Kube, found: Gathered, owner: Owner, variant: str, tracks: set[str] | None
) -> None:
    """Delete a variant's Deployments and Services on `tracks` (None: every track)."""
    for obj in [*found.deployments, *found.services]:
        obj_labels = obj["metadata"].get("labels") or {}
        track = obj_labels.get(labels.TRACK, labels.STABLE)
        if obj_labels.get(labels.VARIANT) == variant and (tracks is None or track in tracks):
            log.info(
                "Deleting %s %s/%s of variant %s",
                obj["kind"], owner.namespace, obj["metadata"]["name"], variant,
            )  # fmt: skip
            kube.delete(obj)


def _judge_reports(kube: Kube, found: Gathered, plan: Plan) -> None:
    """Write each report's verdict and whether it counts (Current) into its status."""
    for report in found.reports:
        if _write_report_status(kube, report, report_state(report, plan)):
            metrics.QUALITY_VERDICTS.labels(verdict=report.judgement.verdict.value).inc()


def _write_report_status(kube: Kube, report: JudgedReport, state: ReportState) -> bool:
    """Write the judgement when it differs from what the report's status says already."""
    status = report_status(report, state).to_wire()
    current = {k: v for k, v in (report.raw_status or {}).items() if k != "conditions"}
    if current == status:
        return False
    kube.apply_report_status(report.namespace, report.name, status)
    return True


def _orphan_reports(kube: Kube, namespace: str, model: str) -> None:
    """Reports about a model that does not exist are judged, marked Orphaned, and ignored."""
    for report in judge_all(list_reports(kube, namespace, model), QualitySpec()):
        _write_report_status(kube, report, ReportState.ORPHANED)


def _run_evaluations(
    kube: Kube,
    config: OperatorConfig,
    spec: QuantizedModelSpec,
    plan: Plan,
    found: Gathered,
    owner: Owner,
) -> None:
    """Eval Jobs for revisions awaiting a report, once candidate and baseline both serve."""
    if not plan.evaluations:
        return
    kube.apply(benchmarks_config_map(spec, owner))
    for obj in evaluator_identity(owner.namespace, config.evaluator_cluster_role):
        kube.apply(obj)
    existing = {j["metadata"]["name"] for j in found.eval_jobs}
    for evaluation in plan.evaluations:
        job = eval_job(spec, evaluation, owner, image=config.evaluator_image)
        if job["metadata"]["name"] not in existing:
            kube.apply(job)


def _record_artifact(kube: Kube, variant: PlannedVariant, found: Gathered, owner: Owner) -> None:
    """Remember a finished artifact in a ConfigMap, so it is never rebuilt once the Job is gone."""
    assert variant.cache_key is not None
    record: Obj | None = found.records.get(variant.cache_key)
    if record is None:
        seen = variant.observed_build
        assert seen is not None
        assert seen.state == BuildState.SUCCEEDED
        result = BuildResult(
            cache_key=variant.cache_key,
            state=ResultState.SUCCEEDED,
            artifact_path=seen.artifact_path,
            reason="BuildSucceeded",
            message=f"built by Job {seen.job}",
        )
        record = kube.apply(
            artifact_record(
                owner.namespace,
                variant.name,
                result,
                variant.precision.value,
                variant.gpu_class.name,
            )
        )
    kube.add_owner(record, owner)
    job = found.jobs.get(variant.cache_key)
    if job is not None:
        kube.add_owner(job, owner)


def _delete_stale(kube: Kube, plan: Plan, found: Gathered, owner: Owner) -> None:
    """Remove Deployments and Services of variants the plan no longer has.

    A variant that is still planned keeps its Deployment even while blocked or rebuilding:
    what serves keeps serving until its replacement is ready.
    """
    planned = {v.name for v in plan.variants}
    for obj in [*found.deployments, *found.services]:
        variant = (obj["metadata"].get("labels") or {}).get(labels.VARIANT)
        owned = any(
            ref.get("uid") == owner.uid for ref in obj["metadata"].get("ownerReferences") or []
        )
        if variant is not None and owned and variant not in planned:
            log.info(
                "Deleting %s %s/%s: variant %s is no longer planned",
                obj["kind"],
                owner.namespace,
                obj["metadata"]["name"],
                variant,
            )
            kube.delete(obj)


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
                    "Normal",
                    "RollingWithoutSurge",
                    f"{variant.name}: {variant.gpu_class.name} has no spare GPUs for a surge "
                    "pod, so updates replace one pod at a time (maxSurge 0)",
                )
            )
    return notes


def _write_status(
    kube: Kube,
    namespace: str,
    name: str,
    previous: QuantizedModelStatus | None,
    status: QuantizedModelStatus,
) -> bool:
    """Write the status when it changed (the API server would record a no-op anyway)."""
    if previous is not None and previous.to_wire() == status.to_wire():
        return False
    kube.apply_status(namespace, name, status.to_wire())
    return True


def _report_invalid_spec(
    kube: Kube, body: Obj, previous: QuantizedModelStatus | None, err: ValidationError, clock: Clock
) -> Outcome:
    """A spec the CRD accepted but qmo cannot use: say so, touch nothing that runs."""
    meta = body["metadata"]
    message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())[:900]
    status = previous or QuantizedModelStatus()
    conds = set_condition(
        status.conditions,
        DEGRADED,
        ConditionStatus.TRUE,
        "InvalidSpec",
        message,
        generation=meta.get("generation"),
        now=clock(),
    )
    conds = set_condition(
        conds,
        READY,
        ConditionStatus.FALSE,
        "InvalidSpec",
        "the spec is invalid; running variants are left as they are",
        generation=meta.get("generation"),
        now=clock(),
    )
    updated = status.model_copy(
        update={"conditions": conds, "observed_generation": meta.get("generation")}
    )
    written = _write_status(kube, meta["namespace"], meta["name"], previous, updated)
    if written:
        kube.post_event(body, "Warning", "InvalidSpec", message, clock())
    return Outcome(None, (Decision("Warning", "InvalidSpec", message),), written)
