"""The planner's data: what it observes of the cluster, and what it decides per variant.

Pure data, no decisions: every planner module and the controller depend on these types, and
these types depend on nothing but the API models, the GPU inventory and the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from qmo.api.buildcontract import BuildRequest
from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import Precision
from qmo.dnsnames import bounded
from qmo.gpu import GpuClass, GpuInventory
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
]


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
    speedup: float | None = None


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
    # Eval Jobs that failed, by (variant, cache key): what their Job said.
    failed_evaluations: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """An eval Job to run: candidate revision of `variant` against the BF16 `baseline`."""

    variant: str
    cache_key: str
    on_candidate_track: bool
    baseline: str


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
    # (variant, message) of gated revisions whose eval Job failed.
    failed_evaluations: tuple[tuple[str, str], ...] = ()


def variant_name(gpu: GpuClass, precision: Precision) -> str:
    """h100-fp8; bounded, as it is a label value on every child of the variant."""
    return bounded(gpu.name, precision.value)
