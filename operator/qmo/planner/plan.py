"""The plan: from a QuantizedModel spec and what the cluster holds, the variants to run.

Pure. The reconciler gathers `Observed` (GPU inventory, builds, Deployments) and calls
`plan_model`; every decision here is a named predicate whose reason ends up in status and in
an Event, so `kubectl describe qm` answers "why?".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from qmo.api.buildcontract import (
    ARTIFACTS_DIR,
    BuildLimits,
    BuildRequest,
    ExpectedGpu,
    SourceRef,
)
from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import GateTiming, Precision, QuantizedModelSpec
from qmo.gpu import GpuClass, GpuInventory
from qmo.planner import memory
from qmo.planner.cachekey import cache_key
from qmo.planner.capabilities import (
    Refusal,
    auto_precision,
    precision_supported,
    resolve_kv_cache,
    runtime_supports,
)

# Where a pvc:// source is mounted in build pods, read-only.
SOURCE_MOUNT_PATH = "/model"
TOKEN_ENV = "HF_TOKEN"
# Which precision the main Service prefers when several serve: fastest first on Hopper.
SERVING_PREFERENCE = (
    Precision.FP8,
    Precision.INT8,
    Precision.INT4_AWQ,
    Precision.INT4_GPTQ,
    Precision.BF16,
)


class Action(StrEnum):
    BUILD = "Build"  # no artifact yet and no build running: create the build Job
    WAIT = "Wait"  # the build is running
    DEPLOY = "Deploy"  # the artifact is ready: apply the Deployment and Service
    BLOCKED = "Blocked"  # nothing can run: unsupported, or the build failed
    WITHDRAW = "Withdraw"  # it regressed with nothing good to return to: stop serving it


class Phase(StrEnum):
    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    SERVING = "Serving"
    UNSUPPORTED = "Unsupported"
    BUILD_FAILED = "BuildFailed"
    EVALUATING = "Evaluating"  # before-traffic: the candidate waits for a passing report
    ROLLED_BACK = "RolledBack"  # the new revision regressed; the last good one serves
    REGRESSED = "Regressed"  # regressed with no good revision: withdrawn


class BuildState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class BuildObservation:
    """What the cluster says about the build of one cache key."""

    cache_key: str
    state: BuildState
    job: str | None = None
    reason: str | None = None
    message: str | None = None
    artifact_path: str | None = None
    # True when the artifact record already existed, i.e. this model did not trigger the build.
    recorded: bool = False


@dataclass(frozen=True)
class DeploymentObservation:
    name: str
    replicas: int
    ready_replicas: int
    updated_replicas: int
    revision: str | None  # the cache key its pod template serves


@dataclass(frozen=True)
class ReportObservation:
    """The newest QualityReport about one (variant, cache key), as judged."""

    name: str
    variant: str
    cache_key: str
    verdict: Verdict
    message: str
    worst_benchmark: str | None = None
    worst_delta_percent: float | None = None


class BuildLookup(Protocol):
    """Builds by cache key: a dict in tests, a lookup into the watch-fed cache in the operator."""

    def get(self, cache_key: str, /) -> BuildObservation | None: ...


@dataclass(frozen=True)
class Observed:
    inventory: GpuInventory
    builds: BuildLookup = field(default_factory=lambda: dict[str, BuildObservation]())
    deployments: dict[str, DeploymentObservation] = field(default_factory=dict)
    # PersistentVolumeClaims of this namespace (None: not looked up, assume present).
    claims: frozenset[str] | None = None
    reports: dict[tuple[str, str], ReportObservation] = field(default_factory=dict)
    # The last revision (cache key) of each variant that passed its gate.
    last_good: dict[str, str] = field(default_factory=dict)
    # Candidate Deployments (before-traffic gate), by variant.
    candidates: dict[str, DeploymentObservation] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """An eval Job to run: candidate revision of `variant` against the BF16 `baseline`."""

    variant: str
    cache_key: str
    on_candidate_track: bool
    baseline: str


def source_claim(spec: QuantizedModelSpec) -> str | None:
    source = spec.model.source
    return source.removeprefix("pvc://").split("/", 1)[0] if source.startswith("pvc://") else None


def missing_claim(spec: QuantizedModelSpec, observed: Observed) -> Refusal | None:
    """Build pods mount the engine store (and a pvc:// source): without them they never start."""
    if observed.claims is None:
        return None
    store = spec.engine.store
    if not store.create and store.claim_name not in observed.claims:
        return Refusal(
            "EngineStoreNotFound",
            f"engine store claim {store.claim_name} does not exist; create it or set "
            "engine.store.create: true",
        )
    claim = source_claim(spec)
    if claim is not None and claim not in observed.claims:
        return Refusal("SourceClaimNotFound", f"model source claim {claim} does not exist")
    return None


@dataclass(frozen=True)
class PlannedVariant:
    name: str
    gpu_class: GpuClass
    requested_precision: Precision
    precision: Precision
    kv_cache_dtype: str
    action: Action
    phase: Phase
    reason: str
    message: str
    tensor_parallel: int | None = None
    memory_per_gpu_gib: float | None = None
    build: BuildRequest | None = None
    build_gpus: int | None = None
    observed_build: BuildObservation | None = None
    deployment: DeploymentObservation | None = None
    # The revision the variant's stable Deployment runs; differs from cache_key after a
    # rollback, and is None while a first before-traffic candidate is evaluated.
    serve_key: str | None = None
    candidate: bool = False  # run cache_key as a candidate, outside the Services
    report: ReportObservation | None = None
    fell_back_from: str | None = None  # the variant whose regression led here
    fell_back_because: str | None = None
    # (variant, cache key) of rungs left behind on the way down the precision ladder.
    superseded: tuple[tuple[str, str], ...] = ()
    reference: bool = False  # a temporary BF16 baseline for evaluations, not served
    # Replicas the stable Deployment runs while it lends GPUs to its own new build.
    lending_replicas: int | None = None

    @property
    def cache_key(self) -> str | None:
        return self.build.cache_key if self.build else None


@dataclass(frozen=True)
class Plan:
    variants: tuple[PlannedVariant, ...]
    # Labels (beyond the model's) that the main Service selects, and what that means.
    main_precision: Precision | None
    main_variants: tuple[str, ...]
    notes: tuple[Refusal, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()


def variant_name(gpu: GpuClass, precision: Precision) -> str:
    return f"{gpu.name}-{precision.value}"


def source_ref(spec: QuantizedModelSpec) -> SourceRef:
    """The checkpoint location as the build pod sees it."""
    source = spec.model.source
    if source.startswith("pvc://"):
        _, _, path = source.removeprefix("pvc://").partition("/")
        uri = f"{SOURCE_MOUNT_PATH}/{path}".rstrip("/")
    else:
        uri = source
    return SourceRef(
        uri=uri,
        revision=spec.model.revision,
        format=spec.model.format,
        dtype=spec.model.dtype,
        token_env=TOKEN_ENV if spec.model.credentials_secret_ref else None,
    )


def build_request(
    spec: QuantizedModelSpec,
    gpu: GpuClass,
    precision: Precision,
    kv_dtype: str,
    tensor_parallel: int,
) -> BuildRequest:
    """The build of one variant; its cache key hashes everything that shapes the artifact."""
    engine = spec.engine
    limits = BuildLimits(
        max_batch_size=engine.max_batch_size,
        max_seq_len=engine.max_seq_len,
        max_num_tokens=engine.max_num_tokens,
    )
    expected = ExpectedGpu(product=gpu.product, compute_capability=str(gpu.compute_capability))
    content = {
        "source": spec.model.source,
        "revision": spec.model.revision,
        "format": spec.model.format.value,
        "dtype": spec.model.dtype.value,
        "precision": precision.value,
        "kvCacheDtype": kv_dtype,
        "quantization": spec.quantization.to_wire() if precision != Precision.BF16 else None,
        "backend": engine.backend.value,
        "image": engine.image,
        "gpu": expected.to_wire(),
        "tensorParallel": tensor_parallel,
        "limits": limits.to_wire(),
        # The artifact lives on this claim: a model on another store cannot use it.
        "store": engine.store.claim_name,
    }
    key = cache_key(content)
    return BuildRequest(
        cache_key=key,
        source=source_ref(spec),
        precision=precision.value,
        kv_cache_dtype=kv_dtype,
        quantization=spec.quantization,
        backend=engine.backend,
        tensor_parallel=tensor_parallel,
        limits=limits,
        gpu=expected,
        output_dir=f"{ARTIFACTS_DIR}/{key}",
    )


def _choose_tensor_parallel(
    spec: QuantizedModelSpec, gpu: GpuClass, precision: Precision, kv_dtype: str
) -> tuple[int | None, float | None, Refusal | None]:
    """(TP, estimated GiB per GPU, refusal). Explicit TP is checked; auto is estimated."""
    size = spec.model.size
    estimate = None
    if size is not None:
        estimate = memory.estimate(
            size, precision, kv_dtype, spec.engine.max_seq_len, spec.engine.max_batch_size
        )
    requested = spec.gpu.tensor_parallel
    if requested != "auto":
        tp = int(requested)
        if tp > gpu.gpus_per_node:
            return (
                None,
                None,
                Refusal(
                    "NotEnoughGpus",
                    f"tensorParallel {tp} needs {tp} GPUs on one node; "
                    f"{gpu.name} nodes have {gpu.gpus_per_node}",
                ),
            )
        if estimate is not None and not memory.fits(estimate, gpu.memory_mib, tp):
            return (
                None,
                round(estimate.per_gpu_gib(tp), 1),
                Refusal(
                    "DoesNotFit",
                    f"{precision.value} needs about {estimate.per_gpu_gib(tp):.1f} GiB per GPU "
                    f"at tensorParallel {tp}; {gpu.name} has {gpu.memory_mib} MiB per GPU "
                    "(raise tensorParallel, or lower engine.maxBatchSize or maxSeqLen)",
                ),
            )
        return tp, round(estimate.per_gpu_gib(tp), 1) if estimate else None, None
    if estimate is None:
        return 1, None, None
    tp_fit = memory.smallest_fitting_tp(estimate, gpu.memory_mib, gpu.gpus_per_node)
    if tp_fit is None:
        # The largest TP size there is on these nodes (6 GPUs per node run TP 4, not 6).
        most = max((tp for tp in memory.TP_SIZES if tp <= gpu.gpus_per_node), default=1)
        return (
            None,
            round(estimate.per_gpu_gib(most), 1),
            Refusal(
                "DoesNotFit",
                f"{precision.value} needs about {estimate.per_gpu_gib(most):.1f} GiB per GPU "
                f"even at tensorParallel {most}; {gpu.name} has {gpu.memory_mib} MiB per GPU "
                f"(lower engine.maxBatchSize or maxSeqLen, or pick a smaller precision)",
            ),
        )
    return tp_fit, round(estimate.per_gpu_gib(tp_fit), 1), None


def _build_gpus(spec: QuantizedModelSpec, gpu: GpuClass, tp: int) -> tuple[int, Refusal | None]:
    wanted = spec.engine.build.gpus
    gpus = tp if wanted == "auto" else int(wanted)
    if gpus > gpu.gpus_per_node:
        return gpus, Refusal(
            "NotEnoughGpus",
            f"the build asks for {gpus} GPUs on one node; {gpu.name} nodes have "
            f"{gpu.gpus_per_node}",
        )
    return gpus, None


def _blocked(
    name: str, gpu: GpuClass, requested: Precision, precision: Precision, kv: str, why: Refusal
) -> PlannedVariant:
    return PlannedVariant(
        name=name,
        gpu_class=gpu,
        requested_precision=requested,
        precision=precision,
        kv_cache_dtype=kv,
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
) -> PlannedVariant:
    """Decide one (GPU class x precision) variant, from capability checks to rollout state.

    `precision` overrides what `requested` resolves to (the fallback ladder uses it); a
    `reference` variant is a temporary BF16 baseline for evaluations and is never gated.
    """
    backend = spec.engine.backend
    if precision is None:
        precision = auto_precision(gpu, backend) if requested == Precision.AUTO else requested
    name = variant_name(gpu, precision)
    kv_dtype, kv_refusal = resolve_kv_cache(spec.kv_cache_dtype, precision, gpu, backend)
    refusal = runtime_supports(gpu) or precision_supported(precision, gpu, backend) or kv_refusal
    if refusal is not None:
        return _blocked(name, gpu, requested, precision, kv_dtype, refusal)
    tp, per_gpu, tp_refusal = _choose_tensor_parallel(spec, gpu, precision, kv_dtype)
    if tp_refusal is not None or tp is None:
        assert tp_refusal is not None
        return _blocked(name, gpu, requested, precision, kv_dtype, tp_refusal)
    build_gpus, gpus_refusal = _build_gpus(spec, gpu, tp)
    if gpus_refusal is not None:
        return _blocked(name, gpu, requested, precision, kv_dtype, gpus_refusal)

    request = build_request(spec, gpu, precision, kv_dtype, tp)
    seen = observed.builds.get(request.cache_key)
    deployment = observed.deployments.get(name)
    action, phase, reason, message = _rollout_state(spec, request, seen, deployment)
    claim_refusal = missing_claim(spec, observed)
    if action == Action.BUILD and claim_refusal is not None:
        action, phase = Action.BLOCKED, Phase.PENDING
        reason, message = claim_refusal.reason, claim_refusal.message
    lending = _lending_replicas(spec, seen, deployment, tp, build_gpus)
    if lending is not None:
        reason = "LendingGpuToBuild"
        message = (
            f"no free GPU on {gpu.name} for build Job {seen.job if seen else ''}: the serving "
            f"Deployment runs {lending} of {spec.serving.replicas} replica(s) until it is built"
        )
    planned = PlannedVariant(
        name=name,
        gpu_class=gpu,
        requested_precision=requested,
        precision=precision,
        kv_cache_dtype=kv_dtype,
        action=action,
        phase=phase,
        reason=reason,
        message=message,
        tensor_parallel=tp,
        memory_per_gpu_gib=per_gpu,
        build=request,
        build_gpus=build_gpus,
        observed_build=seen,
        deployment=deployment,
        serve_key=request.cache_key,
        reference=reference,
        lending_replicas=lending,
    )
    if reference:
        return planned
    from qmo.planner.gate import apply_gate  # gate.py builds on this module's types

    return apply_gate(
        spec,
        planned,
        observed,
        replan=lambda lower: plan_variant(spec, gpu, requested, observed, precision=lower),
    )


def _lending_replicas(
    spec: QuantizedModelSpec,
    seen: BuildObservation | None,
    deployment: DeploymentObservation | None,
    tp: int,
    build_gpus: int,
) -> int | None:
    """Replicas to keep while a new build waits for GPUs that only this variant holds.

    The same availability budget as a rollout without surge: one replica's GPUs (or as few
    as the build needs) go to the build; never the last replica, so something keeps serving.
    """
    if seen is None or seen.reason != "Unschedulable" or deployment is None:
        return None
    lend = -(-build_gpus // tp)  # replicas whose GPUs cover the build
    keep = spec.serving.replicas - lend
    return keep if keep >= 1 else None


def _rollout_state(
    spec: QuantizedModelSpec,
    request: BuildRequest,
    seen: BuildObservation | None,
    deployment: DeploymentObservation | None,
) -> tuple[Action, Phase, str, str]:
    """Where a buildable variant stands: build, wait, deploy, serving, or failed."""
    if seen is None:
        return Action.BUILD, Phase.BUILDING, "BuildScheduled", "a build Job will be created"
    if seen.reason == "Unschedulable":
        return (
            Action.WAIT,
            Phase.BUILDING,
            "BuildWaitingForGpu",
            f"build Job {seen.job} waits for GPUs: {seen.message}",
        )
    if seen.state in (BuildState.PENDING, BuildState.RUNNING):
        return Action.WAIT, Phase.BUILDING, "BuildRunning", f"build Job {seen.job} is running"
    if seen.state == BuildState.FAILED:
        detail = seen.message or "the build Job failed"
        return Action.BLOCKED, Phase.BUILD_FAILED, seen.reason or "BuildFailed", detail
    wanted = spec.serving.replicas
    if (
        deployment is not None
        and deployment.revision == request.cache_key
        and deployment.updated_replicas >= wanted
        and deployment.ready_replicas >= wanted
    ):
        return Action.DEPLOY, Phase.SERVING, "Serving", f"{wanted} replica(s) ready"
    ready = deployment.ready_replicas if deployment else 0
    return Action.DEPLOY, Phase.DEPLOYING, "RollingOut", f"{ready}/{wanted} replica(s) ready"


def _selected_classes(
    spec: QuantizedModelSpec, inventory: GpuInventory
) -> tuple[list[GpuClass], list[Refusal]]:
    present = inventory.by_name()
    if spec.gpu.classes == ["auto"]:
        if not present:
            return [], [Refusal("NoGpuClasses", "no schedulable GPU nodes were found")]
        return list(present.values()), []
    chosen, notes = [], []
    for name in spec.gpu.classes:
        if name in present:
            chosen.append(present[name])
        else:
            available = ", ".join(sorted(present)) or "none"
            notes.append(
                Refusal(
                    "GpuClassNotFound",
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


def plan_model(spec: QuantizedModelSpec, observed: Observed) -> Plan:
    """Every variant of the model, and which ones the main Service serves."""
    classes, notes = _selected_classes(spec, observed.inventory)
    for unknown in observed.inventory.unknown:
        notes.append(
            Refusal("UnknownGpu", f"node {unknown.node} ({unknown.product}): {unknown.reason}")
        )
    if spec.model.revision is None:
        notes.append(
            Refusal(
                "UnpinnedRevision",
                "model.revision is not set: builds use the source's latest and cannot be "
                "reproduced; pin a commit or tag",
            )
        )
    variants: list[PlannedVariant] = []
    for gpu in classes:
        for requested in spec.precisions:
            variant = plan_variant(spec, gpu, requested, observed)
            # A fallback can land on a precision that is also requested: keep one variant.
            if all(v.name != variant.name for v in variants):
                variants.append(variant)
    variants += _references(spec, classes, variants, observed)
    main_precision, members = _main_precision(spec, [v for v in variants if not v.reference])
    evaluations = _evaluations(spec, variants, observed)
    return Plan(tuple(variants), main_precision, members, tuple(notes), evaluations)


def _awaits_report(spec: QuantizedModelSpec, variant: PlannedVariant) -> bool:
    """Built, deployed somewhere, gated with benchmarks, and not yet judged."""
    return (
        spec.quality.gate != GateTiming.OFF
        and bool(spec.quality.benchmarks)
        and not variant.reference
        and variant.precision != Precision.BF16
        and variant.action == Action.DEPLOY
        and variant.report is None
        and variant.phase != Phase.ROLLED_BACK
    )


def _references(
    spec: QuantizedModelSpec,
    classes: list[GpuClass],
    variants: list[PlannedVariant],
    observed: Observed,
) -> list[PlannedVariant]:
    """Temporary BF16 baselines for classes whose quantized variants await a report."""
    references = []
    for gpu in classes:
        on_class = [v for v in variants if v.gpu_class.name == gpu.name]
        has_bf16 = any(
            v.precision == Precision.BF16 and v.action != Action.BLOCKED for v in on_class
        )
        if has_bf16 or not any(_awaits_report(spec, v) for v in on_class):
            continue
        reference = plan_variant(spec, gpu, Precision.BF16, observed, reference=True)
        if reference.action != Action.BLOCKED:
            references.append(reference)
    return references


def _evaluations(
    spec: QuantizedModelSpec, variants: list[PlannedVariant], observed: Observed
) -> tuple[Evaluation, ...]:
    """Eval Jobs whose candidate and baseline both serve now."""
    evaluations = []
    for variant in variants:
        if not _awaits_report(spec, variant) or variant.cache_key is None:
            continue
        baseline = next(
            (
                v
                for v in variants
                if v.gpu_class.name == variant.gpu_class.name
                and v.precision == Precision.BF16
                and v.phase == Phase.SERVING
            ),
            None,
        )
        running = (
            observed.candidates.get(variant.name)
            if variant.candidate
            else observed.deployments.get(variant.name)
        )
        ready = (
            running is not None
            and running.revision == variant.cache_key
            and running.ready_replicas >= 1
        )
        if baseline is not None and ready:
            evaluations.append(
                Evaluation(variant.name, variant.cache_key, variant.candidate, baseline.name)
            )
    return tuple(evaluations)
