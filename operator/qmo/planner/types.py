"""The planner's data: per variant a target, a decision and what was seen (see `decision` and
`observed`), and the plan of a whole model.

Pure data, no decisions: every planner module and the controller depend on these types.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from qmo.api.buildcontract import BuildRequest
from qmo.api.quantizedmodel import Precision
from qmo.dnsnames import bounded
from qmo.gpu import GpuClass
from qmo.planner.decision import VariantDecision
from qmo.planner.observed import (
    BuildLookup,
    BuildObservation,
    DeploymentObservation,
    Observed,
    ReportObservation,
    Seen,
)
from qmo.planner.scaling import ScalingRange
from qmo.vocabulary import Action, BuildState, Phase, Refusal

__all__ = [
    "Action",
    "BuildLookup",
    "BuildObservation",
    "BuildState",
    "DeploymentObservation",
    "Evaluation",
    "Observed",
    "Phase",
    "Plan",
    "PlannedVariant",
    "Refusal",
    "ReportObservation",
    "Seen",
    "VariantTarget",
]


@dataclass(frozen=True)
class Evaluation:
    """An eval Job to run: candidate revision of `variant` against the BF16 `baseline`."""

    variant: str
    cache_key: str
    on_candidate_track: bool
    baseline: str
    quality_key: str = ""  # what is evaluated (see evaluations.quality_key)
    # A re-evaluation of an Inconclusive report: (benchmark, items) to score, over the spec.
    samples: tuple[tuple[str, int], ...] = ()

    @property
    def attempt(self) -> str:
        """'' for the first evaluation of a revision; a name for each re-evaluation."""
        return attempt_of(self.samples)


def attempt_of(samples: tuple[tuple[str, int], ...]) -> str:
    """A re-evaluation's name part: 'n', the most items it asks of one benchmark, and 4 hex
    digits of the whole ask (n2000-1f3a)."""
    if not samples:
        return ""
    most = max(items for _, items in samples)
    asked = ";".join(sorted(f"{b}={n}" for b, n in samples))
    return f"n{most}-{hashlib.sha256(asked.encode()).hexdigest()[:4]}"


@dataclass(frozen=True)
class FellBack:
    """Why a variant runs a lower precision than it asked for: the rungs above regressed."""

    origin: str  # the first variant whose regression led here
    because: str  # its revision and what its report said
    # (variant, cache key) of rungs left behind on the way down the precision ladder.
    superseded: tuple[tuple[str, str], ...]

    @property
    def message(self) -> str:
        return f"{self.because}; on its first rollout there is no good revision, so it falls back"


@dataclass(frozen=True)
class VariantTarget:
    """What to build and serve: one precision on one GPU class, sized, with its build."""

    name: str
    gpu_class: GpuClass
    requested_precision: Precision
    precision: Precision
    kv_cache_dtype: str
    tensor_parallel: int | None = None
    memory_per_gpu_gib: float | None = None
    build: BuildRequest | None = None  # None: refused before a build could be described
    build_gpus: int | None = None
    reference: bool = False  # a temporary BF16 baseline for evaluations, not served
    auto_reason: str | None = None  # why `auto` chose this precision here (capabilities.why_auto)
    # The class its (portable) checkpoint is built on, where that is not its own (placement).
    build_class: GpuClass | None = None

    @property
    def cache_key(self) -> str | None:
        return self.build.cache_key if self.build else None


@dataclass(frozen=True)
class PlannedVariant:
    """A variant as three values: its target, the planner's decision, and what the cluster
    showed (looked up by its name and cache key). `fell_back` says why it runs a lower
    precision than requested; `rejected`, set after execute, that the API server refused a
    write for it (it keeps its decision; status and Events show the refusal)."""

    target: VariantTarget
    decision: VariantDecision
    seen: Seen = field(default_factory=Seen)
    fell_back: FellBack | None = None
    rejected: Refusal | None = None
    scaling: ScalingRange | None = None  # autoscaled: the range its scaler is given

    # --- the target ---
    @property
    def name(self) -> str:
        return self.target.name

    @property
    def gpu_class(self) -> GpuClass:
        return self.target.gpu_class

    @property
    def requested_precision(self) -> Precision:
        return self.target.requested_precision

    @property
    def precision(self) -> Precision:
        return self.target.precision

    @property
    def kv_cache_dtype(self) -> str:
        return self.target.kv_cache_dtype

    @property
    def tensor_parallel(self) -> int | None:
        return self.target.tensor_parallel

    @property
    def memory_per_gpu_gib(self) -> float | None:
        return self.target.memory_per_gpu_gib

    @property
    def build(self) -> BuildRequest | None:
        return self.target.build

    @property
    def build_gpus(self) -> int | None:
        return self.target.build_gpus

    @property
    def reference(self) -> bool:
        return self.target.reference

    @property
    def cache_key(self) -> str | None:
        return self.target.cache_key

    # --- the decision, rendered ---
    @property
    def phase(self) -> Phase:
        return self.decision.phase

    @property
    def action(self) -> Action:
        return self.decision.action

    @property
    def reason(self) -> str:
        return self.rejected.reason if self.rejected else self.decision.reason

    @property
    def message(self) -> str:
        return self.rejected.message if self.rejected else self.decision.message

    @property
    def serve_key(self) -> str | None:
        return self.decision.serve_key

    @property
    def candidate(self) -> bool:
        return self.decision.candidate_key is not None

    @property
    def lending_replicas(self) -> int | None:
        return self.decision.lending_replicas

    @property
    def superseded(self) -> tuple[tuple[str, str], ...]:
        return self.fell_back.superseded if self.fell_back else ()

    # --- what the cluster showed ---
    @property
    def observed_build(self) -> BuildObservation | None:
        return self.seen.build

    @property
    def deployment(self) -> DeploymentObservation | None:
        return self.seen.deployment

    @property
    def report(self) -> ReportObservation | None:
        """The judged report the gate weighed (None where the gate does not apply)."""
        return self.seen.report


@dataclass(frozen=True)
class Plan:
    variants: tuple[PlannedVariant, ...]
    # Labels (beyond the model's) that the main Service selects, and what that means.
    main_precision: Precision | None
    main_variants: tuple[str, ...]
    notes: tuple[Refusal, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()
    # (variant, message) of gated revisions whose eval Job failed.
    failed_evaluations: tuple[tuple[str, str], ...] = ()


def variant_name(gpu: GpuClass, precision: Precision) -> str:
    """h100-fp8; bounded, as it is a label value on every child of the variant."""
    return bounded(gpu.name, precision.value)
