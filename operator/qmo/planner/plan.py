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

from qmo.api.quantizedmodel import Precision, QuantizedModelSpec
from qmo.config import OperatorConfig
from qmo.gpu import GpuClass, GpuInventory
from qmo.planner import evaluations, gate, images, rollout, sizing
from qmo.planner.cachekey import short_key
from qmo.planner.capabilities import (
    auto_precision,
    precision_supported,
    resolve_kv_cache,
    runtime_supports,
)
from qmo.planner.types import (
    Observed,
    Plan,
    PlannedVariant,
    variant_name,
)
from qmo.vocabulary import Action, Phase, Reason, Refusal

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


def resolve_precision(requested: Precision, gpu: GpuClass, spec: QuantizedModelSpec) -> Precision:
    """`auto` picks by compute capability (see capabilities.auto_precision)."""
    return auto_precision(gpu, spec.engine.backend) if requested == Precision.AUTO else requested


def _blocked(candidate: Candidate, requested: Precision, why: Refusal) -> PlannedVariant:
    return PlannedVariant(
        name=variant_name(candidate.gpu, candidate.precision),
        gpu_class=candidate.gpu,
        requested_precision=requested,
        precision=candidate.precision,
        kv_cache_dtype=candidate.kv_cache_dtype,
        action=Action.BLOCKED,
        phase=Phase.UNSUPPORTED,
        reason=why.reason,
        message=why.message,
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
    refusal = first_refusal(candidate) or images.builder_allowed(spec, config)
    if refusal is not None:
        return _blocked(candidate, requested, refusal)
    sized = sizing.size(spec, gpu, precision, kv_dtype)
    if isinstance(sized, Refusal):
        return _blocked(candidate, requested, sized)

    request = sizing.build_request(
        spec, gpu, precision, kv_dtype, sized.tensor_parallel, images.builder_image(spec, config)
    )
    seen = observed.builds.get(request.cache_key)
    deployment = observed.deployments.get(variant_name(gpu, precision))
    state = rollout.rollout_state(spec, request, seen, deployment)
    action, phase, reason, message = state.action, state.phase, state.reason, state.message
    claim_refusal = sizing.claims_present(spec, observed)
    if action == Action.BUILD and claim_refusal is not None:
        action, phase = Action.BLOCKED, Phase.PENDING
        reason, message = claim_refusal.reason, claim_refusal.message
    lending = rollout.lending_replicas(
        spec, seen, deployment, sized.tensor_parallel, sized.build_gpus
    )
    if lending is not None:
        reason = Reason.LENDING_GPU_TO_BUILD
        message = (
            f"no free GPU on {gpu.name} for build Job {seen.job if seen else ''}: the serving "
            f"Deployment runs {lending} of {spec.serving.replicas} replica(s) until it is built"
        )
    planned = PlannedVariant(
        name=variant_name(gpu, precision),
        gpu_class=gpu,
        requested_precision=requested,
        precision=precision,
        kv_cache_dtype=kv_dtype,
        action=action,
        phase=phase,
        reason=reason,
        message=message,
        tensor_parallel=sized.tensor_parallel,
        memory_per_gpu_gib=sized.memory_per_gpu_gib,
        build=request,
        build_gpus=sized.build_gpus,
        observed_build=seen,
        deployment=deployment,
        serve_key=request.cache_key,
        reference=reference,
        lending_replicas=lending,
    )
    if reference:
        return planned
    decision = gate.decide(spec, planned, observed)
    return apply_gate(spec, planned, decision, observed, config)


def apply_gate(
    spec: QuantizedModelSpec,
    variant: PlannedVariant,
    decision: gate.GateDecision,
    observed: Observed,
    config: OperatorConfig = DEFAULT_CONFIG,
) -> PlannedVariant:
    """The variant as the gate's decision leaves it; a fallback is planned anew, lower down."""
    if isinstance(decision, gate.Keep):
        return dataclasses.replace(variant, report=decision.report) if decision.report else variant
    key = short_key(variant.cache_key or "")
    if isinstance(decision, gate.RollBack):
        return dataclasses.replace(
            variant,
            report=decision.report,
            action=Action.DEPLOY,
            serve_key=decision.revision,
            candidate=False,
            phase=Phase.ROLLED_BACK,
            reason=Reason.ROLLED_BACK,
            message=f"revision {key} {decision.report.message}; serving the last good "
            f"revision {short_key(decision.revision)}",
        )
    if isinstance(decision, gate.FallBack):
        fallen = plan_variant(
            spec,
            variant.gpu_class,
            variant.requested_precision,
            observed,
            decision.precision,
            config=config,
        )
        assert variant.cache_key is not None
        return dataclasses.replace(
            fallen,
            superseded=((variant.name, variant.cache_key), *fallen.superseded),
            fell_back_from=fallen.fell_back_from or variant.name,
            fell_back_because=fallen.fell_back_because
            or f"{variant.name} (revision {key}) {decision.report.message}",
        )
    if isinstance(decision, gate.Withdraw):
        return dataclasses.replace(
            variant,
            report=decision.report,
            action=Action.WITHDRAW,
            serve_key=None,
            phase=Phase.REGRESSED,
            reason=Reason.WITHDRAWN,
            message=f"revision {key} {decision.report.message}; there is no good revision to "
            "return to, so the variant stops serving",
        )
    keeps = f"; revision {short_key(decision.keeps)} keeps serving" if decision.keeps else ""
    return dataclasses.replace(
        variant,
        report=decision.report,
        candidate=True,
        serve_key=decision.keeps,
        phase=Phase.EVALUATING,
        reason=Reason.AWAITING_REPORT,
        message=f"revision {key} runs as a candidate, outside the Services, until "
        f"a QualityReport passes{keeps}",
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
        ready = {v.precision for v in variants if v.phase == Phase.SERVING}
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


def plan_model(
    spec: QuantizedModelSpec, observed: Observed, config: OperatorConfig = DEFAULT_CONFIG
) -> Plan:
    """Every variant of the model, and which ones the main Service serves."""
    classes, notes = _selected_classes(spec, observed.inventory)
    notes += _notes(spec, observed.inventory)
    variants: list[PlannedVariant] = []
    for gpu in classes:
        for requested in spec.precisions:
            variant = plan_variant(spec, gpu, requested, observed, config=config)
            # A fallback can land on a precision that is also requested: keep one variant.
            if all(v.name != variant.name for v in variants):
                variants.append(variant)
    variants += evaluations.references(
        spec,
        classes,
        variants,
        lambda gpu: plan_variant(
            spec, gpu, Precision.BF16, observed, reference=True, config=config
        ),
    )
    main_precision, members = _main_precision(spec, [v for v in variants if not v.reference])
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
