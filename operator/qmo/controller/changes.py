"""The writes a reconcile needs, as data: which objects to apply, which owner references to
add, which objects to delete, and which not to write because another model holds their name.
Pure and unit-tested table-style; `execute` carries them out.

Only what differs from the live objects is written (see `applied`). Build Jobs, eval Jobs and
the engine-store claim are created once and never updated (their specs are immutable or
shared). No object of one model is written over another model's (see `ownership`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from qmo.api.buildcontract import BuildResult
from qmo.api.quantizedmodel import QuantizedModelSpec, ScalingEngine
from qmo.config import OperatorConfig
from qmo.controller.applied import differs, stamped
from qmo.controller.eval_results import awaited
from qmo.controller.gather import Gathered
from qmo.controller.ownership import owned_by
from qmo.manifests import labels
from qmo.manifests.autoscaling import horizontal_pod_autoscaler, scaled_object
from qmo.manifests.build import artifact_record, build_job
from qmo.manifests.evaluation import benchmarks_config_map, eval_job, eval_network_policy
from qmo.manifests.labels import Owner
from qmo.manifests.pod import with_pull_secrets
from qmo.manifests.quality_report import quality_report
from qmo.manifests.routes import build_http_route
from qmo.manifests.serving import (
    build_deployment,
    build_main_service,
    build_store_claim,
    build_variant_service,
)
from qmo.manifests.store import StoreSetup
from qmo.planner import images
from qmo.planner.store import ClaimStore
from qmo.planner.types import Action, BuildState, Plan, PlannedVariant
from qmo.resources import DEPLOYMENTS, SERVICES
from qmo.vocabulary import Reason, Refusal
from qmo.wire import Obj


@dataclass(frozen=True)
class Apply:
    """Server-side apply `obj`. `owner_manager`: apply as that model's own field manager,
    for objects several models share (their owner references then merge). `unknown`: a
    model's own object whose name the cache holds nothing of, which an object qmo did not
    make may hold (the reconcile reads it first, see `ownership`)."""

    obj: Obj
    variant: str | None
    owner_manager: bool = False
    unknown: bool = False


@dataclass(frozen=True)
class AddOwner:
    target: Obj
    variant: str | None


@dataclass(frozen=True)
class Delete:
    target: Obj
    variant: str | None
    why: str


@dataclass(frozen=True)
class Refuse:
    """Leave `target` unwritten: another model holds its name. `refusal` becomes the variant's
    (None: the model's) reason, as a refused write would."""

    target: Obj
    variant: str | None
    refusal: Refusal


@dataclass(frozen=True)
class RecordReport:
    """Create the QualityReport of a completed eval Job, from the scores its pod left in its
    termination message (the pod holds no rights to write it); never updated."""

    obj: Obj
    variant: str | None
    job: str


@dataclass(frozen=True)
class HandOverReplicas:
    """Before a Deployment is first applied without a replica count (autoscaling turned on),
    a field manager of its own takes `replicas` at its live value: the apply that drops the
    field then leaves it, and the scaler takes it over with its first change."""

    target: Obj
    variant: str | None
    replicas: int


Change = Apply | AddOwner | Delete | Refuse | RecordReport | HandOverReplicas


def taken_names(changes: list[Change], kind: str) -> frozenset[str]:
    """Names of `kind` that another model holds: not this model's to route to or to name."""
    return frozenset(
        c.target["metadata"]["name"]
        for c in changes
        if isinstance(c, Refuse) and c.target["kind"] == kind
    )


class _Planner:
    """Collects the changes of one reconcile, in the order they should run."""

    def __init__(
        self,
        found: Gathered,
        owner: Owner,
        store: StoreSetup,
        pull_secrets: tuple[str, ...] = (),
    ) -> None:
        self.found = found
        self.owner = owner
        self.store = store  # where the model's artifacts are, for every pod that reads them
        self.pull_secrets = pull_secrets
        self.changes: list[Change] = []

    def pods(self, obj: Obj) -> Obj:
        """A Job or Deployment as qmo creates it: with the operator's image pull secrets."""
        return with_pull_secrets(obj, self.pull_secrets)

    def apply_if_changed(self, obj: Obj, variant: str | None, *, once: bool = False) -> None:
        """Apply `obj` unless it is live as desired (`once`: live at all) or its name is
        another model's."""
        if obj.get("kind") in ("Job", "Deployment"):
            obj = self.pods(obj)
        desired = stamped(obj)
        live = self.found.names.live(obj)
        refusal = self.found.names.taken(obj, live, self.owner)
        if refusal is not None:
            self.changes.append(Refuse(desired, variant, refusal))
        elif live is None:
            self.changes.append(Apply(desired, variant, unknown=True))
        elif not once and differs(desired, live):
            self.changes.append(Apply(desired, variant))

    def ensure_owner(self, obj: Obj | None, variant: str | None) -> None:
        if obj is not None and not owned_by(obj, self.owner):
            self.changes.append(AddOwner(obj, variant))

    def delete(self, obj: Obj, variant: str | None, why: str) -> None:
        self.changes.append(Delete(obj, variant, why))


def desired_changes(
    spec: QuantizedModelSpec,
    plan: Plan,
    found: Gathered,
    owner: Owner,
    config: OperatorConfig,
    *,
    retry: bool,
    routes_available: bool,
) -> list[Change]:
    """Every write that brings the cluster to `plan`, and nothing that is already so.

    `retry` (a new qmo.dev/retry value) deletes the model's failed build and eval Jobs, so
    the next reconcile starts them again instead of waiting for their TTL.
    `routes_available`: the cluster serves HTTPRoutes (spec.routing needs them).
    """
    out = _Planner(found, owner, StoreSetup.of(spec, config), config.image_pull_secrets)
    if retry:
        _retry_failed(out, plan)
    store = out.store.store
    # Create the claim once; never update it (claims are mostly immutable and may be shared).
    if (
        isinstance(store, ClaimStore)
        and store.create
        and store.claim_name not in (found.observed.claims or frozenset())
    ):
        out.changes.append(Apply(build_store_claim(spec, owner.namespace), None))
    for variant in plan.variants:
        if variant.cache_key is None:
            continue
        if variant.action == Action.BUILD:
            _build(out, spec, variant, config)
        elif variant.action in (Action.WAIT, Action.BLOCKED):
            out.ensure_owner(found.builds.job(variant.cache_key), variant.name)
            _serve_while_building(out, spec, variant)
        elif variant.action == Action.DEPLOY:
            _record_artifact(out, variant)
            _serve(out, spec, variant)
        elif variant.action == Action.WITHDRAW:
            _delete_variant(out, variant.name, tracks=None, why="withdrawn after a regression")
    out.apply_if_changed(build_main_service(spec, plan.main_precision, owner), None)
    _scalers(out, spec, plan)
    _route(out, spec, plan, routes_available)
    _delete_stale(out, plan)
    _evaluations(out, spec, plan, config)
    _record_reports(out, spec, plan)
    return out.changes


def _serve_while_building(out: _Planner, spec: QuantizedModelSpec, variant: PlannedVariant) -> None:
    """The serving revision keeps serving: with fewer replicas while it lends GPUs to its own
    new build, and with all of them again as soon as that build failed."""
    serving = variant.deployment
    if serving is None or not serving.revision:
        return
    if variant.lending_replicas is not None:
        replicas = variant.lending_replicas
    elif variant.decision.build_failed and serving.replicas < spec.serving.wanted_replicas:
        replicas = spec.serving.wanted_replicas
    else:
        return
    out.apply_if_changed(
        build_deployment(
            spec, variant, out.owner, key=serving.revision, replicas=replicas, store=out.store
        ),
        variant.name,
    )


def _retry_failed(out: _Planner, plan: Plan) -> None:
    for variant in plan.variants:
        seen = variant.observed_build
        if variant.cache_key is None or seen is None or seen.state != BuildState.FAILED:
            continue
        job = out.found.builds.job(variant.cache_key)
        if job is not None:
            out.delete(job, variant.name, "a retry was requested (qmo.dev/retry)")
    for job in out.found.eval_jobs:  # failed, or completed without scores qmo can read
        meta = job["metadata"]
        name = (meta.get("labels") or {}).get(labels.VARIANT)
        key = (meta.get("annotations") or {}).get(labels.REVISION_ANNOTATION)
        if (name, key) in out.found.observed.failed_evaluations:
            out.delete(job, name, "a retry was requested (qmo.dev/retry)")


def _build(
    out: _Planner, spec: QuantizedModelSpec, variant: PlannedVariant, config: OperatorConfig
) -> None:
    """A new build Job, owned by this model (others add their reference when they need it)."""
    job = build_job(
        spec,
        variant,
        namespace=out.owner.namespace,
        image=images.builder_image(spec, config),
        store=out.store,
    )
    job["metadata"]["ownerReferences"] = [out.owner.shared_reference()]
    out.changes.append(Apply(out.pods(job), variant.name, owner_manager=True))


def _record_artifact(out: _Planner, variant: PlannedVariant) -> None:
    """Remember a finished artifact in a ConfigMap, so it is never rebuilt once the Job is gone."""
    assert variant.cache_key is not None
    builds = out.found.builds
    record = builds.record(variant.cache_key)
    if record is None:
        seen = variant.observed_build
        assert seen is not None
        assert seen.state == BuildState.SUCCEEDED
        result = BuildResult(
            cache_key=variant.cache_key,
            state=BuildState.SUCCEEDED,
            artifact_path=seen.artifact_path,
            reason=Reason.BUILD_SUCCEEDED,
            message=f"built by Job {seen.job}",
        )
        created = artifact_record(
            out.owner.namespace,
            variant.name,
            result,
            variant.precision.value,
            variant.gpu_class.name,
        )
        created["metadata"]["ownerReferences"] = [out.owner.shared_reference()]
        out.changes.append(Apply(created, variant.name, owner_manager=True))
    else:
        out.ensure_owner(record, variant.name)
    out.ensure_owner(builds.job(variant.cache_key), variant.name)


def _serve(out: _Planner, spec: QuantizedModelSpec, variant: PlannedVariant) -> None:
    """The stable (or reference) Deployment at serve_key, and the candidate when gated."""
    owner = out.owner
    track = labels.REFERENCE if variant.reference else labels.STABLE
    if variant.serve_key is not None:
        _hand_over_replicas(out, spec, variant)
        out.apply_if_changed(
            build_deployment(
                spec, variant, owner, key=variant.serve_key, track=track, store=out.store
            ),
            variant.name,
        )
        out.apply_if_changed(build_variant_service(spec, variant, owner, track), variant.name)
    if variant.candidate and variant.cache_key is not None:
        out.apply_if_changed(
            build_deployment(
                spec,
                variant,
                owner,
                key=variant.cache_key,
                track=labels.CANDIDATE,
                store=out.store,
            ),
            variant.name,
        )
        out.apply_if_changed(
            build_variant_service(spec, variant, owner, labels.CANDIDATE), variant.name
        )
    else:
        _delete_variant(out, variant.name, tracks={labels.CANDIDATE}, why="no candidate to run")


def _hand_over_replicas(out: _Planner, spec: QuantizedModelSpec, variant: PlannedVariant) -> None:
    """An autoscaled variant's live Deployment that qmo applied with a count: hand it over."""
    live = variant.deployment
    if spec.serving.autoscaling is None or variant.reference or live is None or live.autoscaled:
        return
    target = {
        "apiVersion": DEPLOYMENTS.api_version,
        "kind": DEPLOYMENTS.kind,
        "metadata": {"name": live.name, "namespace": out.owner.namespace},
    }
    out.changes.append(HandOverReplicas(target, variant.name, live.replicas))


def _delete_variant(out: _Planner, variant: str, tracks: set[str] | None, why: str) -> None:
    """Delete a variant's Deployments and Services on `tracks` (None: every track)."""
    for obj in [*out.found.deployments, *out.found.services]:
        obj_labels = obj["metadata"].get("labels") or {}
        track = obj_labels.get(labels.TRACK)
        if obj_labels.get(labels.VARIANT) == variant and (tracks is None or track in tracks):
            out.delete(obj, variant, why)


def _scalers(out: _Planner, spec: QuantizedModelSpec, plan: Plan) -> None:
    """The ScaledObject or HPA of each autoscaled variant that serves, at its bounded range;
    any other of the model's (autoscaling off, another engine, a variant gone) is deleted."""
    wanted: set[tuple[str, str]] = set()
    # A Deployment name held by another model or by an object qmo did not make: no scaler of
    # qmo's may scale it.
    refused = taken_names(out.changes, DEPLOYMENTS.kind)
    for variant in plan.variants:
        scaling = variant.scaling
        if scaling is None:
            continue
        if scaling.engine == ScalingEngine.KEDA:
            assert scaling.prometheus is not None
            scaler = scaled_object(
                spec, variant, out.owner, max_replicas=scaling.max_replicas,
                prometheus=scaling.prometheus,
            )  # fmt: skip
        else:
            scaler = horizontal_pod_autoscaler(
                spec, variant, out.owner, max_replicas=scaling.max_replicas
            )
        if scaler["spec"]["scaleTargetRef"]["name"] in refused:
            continue
        wanted.add((scaler["kind"], scaler["metadata"]["name"]))
        out.apply_if_changed(scaler, variant.name)
    for live in out.found.scalers:
        key = (live["kind"], live["metadata"]["name"])
        if key not in wanted and owned_by(live, out.owner):
            variant_name = (live["metadata"].get("labels") or {}).get(labels.VARIANT)
            out.delete(live, variant_name, "the variant is not autoscaled by it any more")


def _route(out: _Planner, spec: QuantizedModelSpec, plan: Plan, available: bool) -> None:
    """The HTTPRoute while spec.routing asks for one (and the cluster has the Gateway API);
    gone once it no longer does, or once the model has nothing to serve. It follows the
    plan: a fallback or a withdrawn variant changes it in the same reconcile; a variant
    without ready replicas keeps its rule (see manifests.routes)."""
    live = out.found.route
    if spec.routing is not None and available:
        route = build_http_route(spec, plan, out.owner, taken_names(out.changes, SERVICES.kind))
        if route is not None:
            out.apply_if_changed(route, None)
        elif live is not None and owned_by(live, out.owner):
            out.delete(live, None, "no variant serves or will serve (withdrawn or refused)")
    elif spec.routing is None and live is not None and owned_by(live, out.owner):
        out.delete(live, None, "spec.routing was removed")


def _delete_stale(out: _Planner, plan: Plan) -> None:
    """Remove Deployments and Services of variants the plan no longer has.

    A variant that is still planned keeps its Deployment even while blocked or rebuilding:
    what serves keeps serving until its replacement is ready.
    """
    planned = {v.name for v in plan.variants}
    for obj in [*out.found.deployments, *out.found.services]:
        variant = (obj["metadata"].get("labels") or {}).get(labels.VARIANT)
        if variant is not None and owned_by(obj, out.owner) and variant not in planned:
            out.delete(obj, None, f"variant {variant} is no longer planned")


def _evaluations(
    out: _Planner, spec: QuantizedModelSpec, plan: Plan, config: OperatorConfig
) -> None:
    """Eval Jobs for revisions awaiting a report, once candidate and baseline both serve."""
    if not plan.evaluations:
        return
    owner = out.owner
    out.apply_if_changed(benchmarks_config_map(spec, owner), None)
    out.apply_if_changed(eval_network_policy(spec, owner, out.store), None)
    # A variant with a refused object may call another model's Service: it waits.
    refused = {c.variant for c in out.changes if isinstance(c, Refuse)}
    for evaluation in plan.evaluations:
        if refused & {evaluation.variant, evaluation.baseline}:
            continue
        job = eval_job(
            spec,
            evaluation,
            owner,
            image=images.evaluator_image(spec, config),
            node_selector=config.eval_node_selector,
            store=out.store,
        )
        out.apply_if_changed(job, evaluation.variant, once=True)


def _record_reports(out: _Planner, spec: QuantizedModelSpec, plan: Plan) -> None:
    """The reports of completed eval Jobs whose revisions still await one, created once."""
    for found in awaited(spec, plan, out.found.eval_reports):
        report = quality_report(out.owner, found.spec, found.attempt)
        live = out.found.names.live(report)
        refusal = out.found.names.taken(report, live, out.owner)
        if refusal is not None:
            out.changes.append(Refuse(report, found.variant, refusal))
        elif live is None:
            out.changes.append(RecordReport(report, found.variant, found.job))


def mark_refused(plan: Plan, refused: dict[str | None, Refusal]) -> Plan:
    """The plan as status reports it after the API server refused some of its writes.

    A refused variant keeps its phase but takes the refusal as its reason and message (a
    Warning Event and the Degraded condition follow); a refusal of the model's own objects
    becomes a note.
    """
    if not refused:
        return plan
    variants = tuple(
        dataclasses.replace(v, rejected=refused[v.name]) if v.name in refused else v
        for v in plan.variants
    )
    notes = plan.notes + ((refused[None],) if None in refused else ())
    return dataclasses.replace(plan, variants=variants, notes=notes)
