"""The plan: from a QuantizedModel spec and what the cluster holds, the variants to run.

Pure. For each (GPU class x requested precision) `plan_variant` resolves the precision, asks
an ordered chain of named checks whether the class can run it (the first refusal blocks the
variant with its reason), sizes it, finds where its rollout stands, and lets the quality gate
decide (see `gate`); every reason ends up in status and in an Event, so `kubectl describe
qm` answers "why?".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from qmo.api.quantizedmodel import GateTiming, Precision, QuantizedModelSpec, ScalingEngine
from qmo.config import OperatorConfig
from qmo.gpu import GpuClass, GpuInventory
from qmo.planner import (
    capacity,
    evaluations,
    gate,
    images,
    migration,
    placement,
    retention,
    rollout,
    sizing,
)
from qmo.planner.cachekey import short_key
from qmo.planner.capabilities import (
    auto_precision,
    precision_supported,
    resolve_kv_cache,
    runtime_supports,
    why_auto,
)
from qmo.planner.decision import (
    AwaitBuild,
    AwaitingStore,
    Build,
    Refused,
    VariantDecision,
)
from qmo.planner.revisions import takes_traffic
from qmo.planner.scaling import scaling_engine, scaling_range
from qmo.planner.store import EngineStore, claim_store, resolve_store
from qmo.planner.types import (
    FellBack,
    Observed,
    Plan,
    PlannedVariant,
    Seen,
    VariantTarget,
    variant_name,
)
from qmo.vocabulary import Action, Reason, Refusal

DEFAULT_CONFIG = OperatorConfig()
# Which precision the main Service prefers when several serve: fastest first on Hopper.
SERVING_PREFERENCE = (
    Precision.FP8,
    Precision.INT8,
    Precision.INT4_AWQ,
    Precision.INT4_GPTQ,
    Precision.BF16,
)


@dataclass(frozen=True)
class Candidate:
    """A (GPU class, precision) the capability checks look at."""

    spec: QuantizedModelSpec
    gpu: GpuClass
    precision: Precision
    kv_cache_dtype: str
    kv_refusal: Refusal | None


Check = Callable[[Candidate], Refusal | None]


def runtime_runs_on_the_class(c: Candidate) -> Refusal | None:
    return runtime_supports(c.gpu)


def class_runs_the_precision(c: Candidate) -> Refusal | None:
    return precision_supported(c.precision, c.gpu, c.spec.engine.backend)


def class_has_the_kv_cache(c: Candidate) -> Refusal | None:
    return c.kv_refusal


CAPABILITY_CHECKS: tuple[Check, ...] = (
    runtime_runs_on_the_class,
    class_runs_the_precision,
    class_has_the_kv_cache,
)


def first_refusal(candidate: Candidate) -> Refusal | None:
    for check in CAPABILITY_CHECKS:
        refusal = check(candidate)
        if refusal is not None:
            return refusal
    return None


def catches_losses(spec: QuantizedModelSpec) -> bool:
    """The gate judges every revision on benchmarks the model declares: a loss would be seen
    (and an nvfp4 that `auto` chose would fall back). Without benchmarks, reports come only if
    an external system writes them, so nothing is sure to catch a loss."""
    return spec.quality.gate != GateTiming.OFF and bool(spec.quality.benchmarks)


def resolve_precision(requested: Precision, gpu: GpuClass, spec: QuantizedModelSpec) -> Precision:
    """`auto` picks by compute capability (see capabilities.auto_precision)."""
    if requested != Precision.AUTO:
        return requested
    return auto_precision(gpu, spec.engine.backend, gated=catches_losses(spec))


def _target(
    candidate: Candidate, requested: Precision, *, reference: bool = False
) -> VariantTarget:
    spec = candidate.spec
    return VariantTarget(
        name=variant_name(candidate.gpu, candidate.precision),
        gpu_class=candidate.gpu,
        requested_precision=requested,
        precision=candidate.precision,
        kv_cache_dtype=candidate.kv_cache_dtype,
        reference=reference,
        auto_reason=why_auto(candidate.gpu, spec.engine.backend, gated=catches_losses(spec))
        if requested == Precision.AUTO
        else None,
    )


def plan_variant(
    spec: QuantizedModelSpec,
    gpu: GpuClass,
    requested: Precision,
    observed: Observed,
    precision: Precision | None = None,
    *,
    reference: bool = False,
    config: OperatorConfig = DEFAULT_CONFIG,
) -> PlannedVariant:
    """Decide one (GPU class x precision) variant, from capability checks to rollout state.

    `precision` overrides what `requested` resolves to (the fallback ladder uses it); a
    `reference` variant is a temporary BF16 baseline for evaluations and is never gated.
    """
    precision = precision or resolve_precision(requested, gpu, spec)
    kv_dtype, kv_refusal = resolve_kv_cache(
        spec.kv_cache_dtype, precision, gpu, spec.engine.backend
    )
    candidate = Candidate(spec, gpu, precision, kv_dtype, kv_refusal)
    bare = _target(candidate, requested, reference=reference)
    refusal = (
        first_refusal(candidate)
        or images.builder_allowed(spec, config)
        or images.serving_allowed(spec, config)
    )
    if refusal is not None:
        return PlannedVariant(bare, Refused(refusal))
    sized = sizing.size(spec, gpu, precision, kv_dtype)
    if isinstance(sized, Refusal):
        return PlannedVariant(bare, Refused(sized))

    image = images.builder_image(spec, config)
    store, store_refusal = _store(spec, config)
    request = sizing.build_request(
        spec, gpu, precision, kv_dtype, sized.tensor_parallel, image, store=store
    )
    home = placement.BuildPlace(request, sized.build_gpus)
    where = placement.place(
        spec, gpu, precision, kv_dtype, sized.tensor_parallel, image, home, observed, store
    )
    where = migration.copy_instead(spec, where, store, observed, gpu, kv_dtype, image)
    target = dataclasses.replace(
        bare,
        tensor_parallel=sized.tensor_parallel,
        memory_per_gpu_gib=sized.memory_per_gpu_gib,
        build=where.request,
        build_gpus=where.build_gpus,
        build_class=where.away,
    )
    seen = observed.of(target.name, request.cache_key)
    decision = _rollout_decision(spec, target, seen, observed, store, store_refusal)
    planned = PlannedVariant(target, decision, seen)
    if reference or not gate.gated(spec, target):
        return dataclasses.replace(planned, seen=dataclasses.replace(seen, report=None))
    return apply_gate(spec, planned, gate.decide(spec, planned, observed), observed, config)


def _store(spec: QuantizedModelSpec, config: OperatorConfig) -> tuple[EngineStore, Refusal | None]:
    """The model's store; one it cannot use is refused, and its variants keep the claim's keys,
    so what already serves goes on serving while no new build starts."""
    resolved = resolve_store(spec, config)
    if isinstance(resolved, Refusal):
        return claim_store(spec), resolved
    return resolved, None


def _rollout_decision(
    spec: QuantizedModelSpec,
    target: VariantTarget,
    seen: Seen,
    observed: Observed,
    store: EngineStore,
    store_refusal: Refusal | None = None,
) -> VariantDecision:
    """Where its rollout stands, with the store and claims it needs and the GPUs it may lend."""
    assert target.build is not None
    assert target.tensor_parallel is not None
    decided = rollout.rollout_state(spec, target.build, seen.build, seen.deployment)
    claim_refusal = store_refusal or sizing.claims_present(spec, observed, store)
    if isinstance(decided, Build) and claim_refusal is not None:
        return AwaitingStore(claim_refusal)
    lending = rollout.lending_replicas(
        spec, seen.build, seen.deployment, target.tensor_parallel, target.build_gpus or 0
    )
    if lending is None or not isinstance(decided, AwaitBuild):
        return decided
    return dataclasses.replace(
        decided,
        lending=lending,
        lending_message=f"no free GPU on {target.gpu_class.name} for build Job "
        f"{decided.job or ''}: the serving Deployment runs {lending} of "
        f"{spec.serving.wanted_replicas} replica(s) until it is built",
    )


def apply_gate(
    spec: QuantizedModelSpec,
    variant: PlannedVariant,
    decision: gate.GateDecision,
    observed: Observed,
    config: OperatorConfig = DEFAULT_CONFIG,
) -> PlannedVariant:
    """The variant as the gate's decision leaves it; a fallback is planned anew, lower down."""
    if isinstance(decision, gate.Keep):
        return variant
    if not isinstance(decision, gate.FallBack):
        return dataclasses.replace(variant, decision=decision)
    fallen = plan_variant(
        spec, variant.gpu_class, variant.requested_precision, observed, decision.precision,
        config=config,
    )  # fmt: skip
    assert variant.cache_key is not None
    below = fallen.fell_back
    return dataclasses.replace(
        fallen,
        fell_back=FellBack(
            origin=below.origin if below else variant.name,
            because=below.because
            if below
            else f"{variant.name} (revision {short_key(variant.cache_key)}) "
            f"{decision.report.message}",
            superseded=((variant.name, variant.cache_key), *fallen.superseded),
        ),
    )


def _selected_classes(
    spec: QuantizedModelSpec, inventory: GpuInventory
) -> tuple[list[GpuClass], list[Refusal]]:
    present = inventory.by_name()
    if spec.gpu.classes == ["auto"]:
        if not present:
            return [], [Refusal(Reason.NO_GPU_CLASSES, "no schedulable GPU nodes were found")]
        return list(present.values()), []
    chosen, notes = [], []
    for name in spec.gpu.classes:
        if name in present:
            chosen.append(present[name])
        else:
            available = ", ".join(sorted(present)) or "none"
            notes.append(
                Refusal(
                    Reason.GPU_CLASS_NOT_FOUND,
                    f"GPU class {name} is not among schedulable nodes (present: {available})",
                )
            )
    return chosen, notes


def _main_precision(
    spec: QuantizedModelSpec, variants: list[PlannedVariant]
) -> tuple[Precision | None, tuple[str, ...]]:
    """Which precision the model's main Service selects (None: every variant, for auto)."""
    if spec.precisions == [Precision.AUTO] and spec.serving.default == Precision.AUTO:
        return None, tuple(v.name for v in variants if v.action != Action.BLOCKED)
    if spec.serving.default != Precision.AUTO:
        chosen: Precision | None = spec.serving.default
    else:
        # What serves now, whatever the gate holds back or a build replaces: a rolled-back
        # variant serves its last good revision, a before-traffic one its last good while a
        # candidate waits, a rebuilding one its last revision.
        ready = {v.precision for v in variants if takes_traffic(v)}
        runnable = {v.precision for v in variants if v.action != Action.BLOCKED}
        chosen = next((p for p in SERVING_PREFERENCE if p in ready), None) or next(
            (p for p in SERVING_PREFERENCE if p in runnable), None
        )
    members = tuple(
        v.name for v in variants if v.precision == chosen and v.action != Action.BLOCKED
    )
    return chosen, members


def _notes(spec: QuantizedModelSpec, inventory: GpuInventory) -> list[Refusal]:
    # One note per product and reason, never per node: a node name here would reach every
    # model's Degraded condition and rewrite each status whenever such a node joins or leaves.
    # The qmo_unknown_gpu_nodes metric counts the nodes; `qmo plan` names them.
    notes = [
        Refusal(
            Reason.UNKNOWN_GPU,
            f"nodes with GPU {product}: {reason}; qmo places no variant on them",
        )
        for product, reason in sorted({(u.product, u.reason) for u in inventory.unknown})
    ]
    if spec.model.revision is None:
        notes.append(
            Refusal(
                Reason.UNPINNED_REVISION,
                "model.revision is not set: builds use the source's latest and cannot be "
                "reproduced; pin a commit or tag",
            )
        )
    return notes


def _with_scaling(
    spec: QuantizedModelSpec, variant: PlannedVariant, observed: Observed, engine: ScalingEngine
) -> PlannedVariant:
    """An autoscaled variant that serves gets its replica range, bounded by its class."""
    if variant.reference or variant.serve_key is None:
        return variant
    deployment = variant.deployment
    scaling = scaling_range(
        spec,
        engine,
        gpus_per_replica=variant.tensor_parallel or 1,
        total_gpus=variant.gpu_class.total_gpus,
        gpus_held=observed.gpus_held.get(variant.gpu_class.name, 0),
        running=deployment.replicas if deployment is not None else 0,
        prometheus=observed.prometheus,
    )
    return dataclasses.replace(variant, scaling=scaling)


def _weighted(variants: list[PlannedVariant], members: tuple[str, ...]) -> list[PlannedVariant]:
    """Autoscaled variants behind the default route on several GPU classes get their share of
    it, by capacity (planner.capacity)."""
    behind = [v for v in variants if v.name in members and v.scaling is not None]
    if len({v.gpu_class.name for v in behind}) < 2:
        return variants
    capacities = capacity.per_replica(behind)
    weights = capacity.route_weights(behind, capacities)
    weighted = {
        v.name: dataclasses.replace(
            v,
            scaling=dataclasses.replace(
                v.scaling,
                route_weight=weights[v.name],
                tokens_per_second=round(capacities[v.name].tokens_per_second, 1),
                measured=capacities[v.name].measured,
            ),
        )
        for v in behind
        if v.scaling is not None
    }
    return [weighted.get(v.name, v) for v in variants]


def plan_model(
    spec: QuantizedModelSpec, observed: Observed, config: OperatorConfig = DEFAULT_CONFIG
) -> Plan:
    """Every variant of the model, and which ones the main Service serves."""
    classes, notes = _selected_classes(spec, observed.inventory)
    notes += _notes(spec, observed.inventory)
    store = resolve_store(spec, config)
    if isinstance(store, Refusal):
        notes.append(store)
    variants: list[PlannedVariant] = []
    for gpu in classes:
        for requested in spec.precisions:
            variant = plan_variant(spec, gpu, requested, observed, config=config)
            # A fallback can land on a precision that is also requested: keep one variant.
            if all(v.name != variant.name for v in variants):
                variants.append(variant)
    variants += retention.kept_until_replaced(spec, classes, variants, observed)
    variants += evaluations.references(
        spec,
        classes,
        variants,
        lambda gpu: plan_variant(
            spec, gpu, Precision.BF16, observed, reference=True, config=config
        ),
    )
    if spec.serving.autoscaling is not None:
        engine = scaling_engine(spec, observed.keda_installed, observed.prometheus)
        if isinstance(engine, Refusal):
            notes.append(engine)
        else:
            variants = [_with_scaling(spec, v, observed, engine) for v in variants]
    main_precision, members = _main_precision(spec, [v for v in variants if not v.reference])
    variants = _weighted(variants, members)
    planned_evaluations = evaluations.evaluations(spec, variants, observed)
    evaluator_refusal = images.evaluator_allowed(spec, config)
    if planned_evaluations and evaluator_refusal is not None:
        notes.append(evaluator_refusal)
        planned_evaluations = ()
    return Plan(
        tuple(variants),
        main_precision,
        members,
        tuple(notes),
        planned_evaluations,
        evaluations.failed(spec, variants, observed),
    )
