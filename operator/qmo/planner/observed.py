"""What the planner observes of the cluster: builds by cache key, Deployments by variant,
judged reports by (variant, cache key), the last good revisions. Pure data; the controller's
gather fills it from the watch-fed cache, tests from fixture builders. `Observed.of` looks up
what one variant's name and cache key point at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from qmo.api.qualityreport import Verdict
from qmo.gpu import GpuInventory
from qmo.vocabulary import BuildState


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
    # The scheduler's message while a pod of it waits for room (Pending, Unschedulable).
    unschedulable: str | None = None
    # What a pod's fetch step (qmo-store fetch) said when it last failed, while not all ready.
    fetch_failure: str | None = None
    autoscaled: bool = False  # applied without a count: its scaler owns spec.replicas


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
    tokens_per_second: float | None = None  # measured, per replica, at its highest concurrency
    # An Inconclusive report's action (quality.verdict.Judgement.acts_as): Pass, Regressed, or
    # None while the re-evaluation on `more_samples` ((benchmark, items) each) is awaited.
    inconclusive_acts_as: Verdict | None = None
    more_samples: tuple[tuple[str, int], ...] = ()

    @property
    def acts_as(self) -> Verdict | None:
        if self.verdict == Verdict.INCONCLUSIVE:
            return self.inconclusive_acts_as
        return self.verdict

    @property
    def passed(self) -> bool:
        """The revision counts as passed: a Pass, or an Inconclusive counted as one."""
        return self.acts_as == Verdict.PASS

    @property
    def regressed(self) -> bool:
        """The revision counts as regressed: a Regressed, or an Inconclusive counted as one."""
        return self.acts_as == Verdict.REGRESSED

    @property
    def awaits_more_samples(self) -> bool:
        return self.verdict == Verdict.INCONCLUSIVE and self.acts_as is None


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
    # Variants the model's status lists with a last good revision: (GPU class, precision).
    served: dict[str, tuple[str, str]] = field(default_factory=dict)
    # GPUs every qmo Deployment and build Job holds, by GPU class (looked up only for
    # autoscaled models), and whether KEDA's ScaledObject CRD is installed.
    gpus_held: dict[str, int] = field(default_factory=dict)
    keda_installed: bool = False
    prometheus: str | None = None  # what KEDA queries: the model's, else the operator's

    def of(self, name: str, cache_key: str | None) -> Seen:
        """What `name` at `cache_key` has in the cluster."""
        return Seen(
            build=self.builds.get(cache_key) if cache_key else None,
            deployment=self.deployments.get(name),
            candidate=self.candidates.get(name),
            report=self.reports.get((name, cache_key)) if cache_key else None,
        )


@dataclass(frozen=True)
class Seen:
    """What the cluster shows of one variant, looked up by its name and cache key."""

    build: BuildObservation | None = None
    deployment: DeploymentObservation | None = None  # the stable track
    candidate: DeploymentObservation | None = None
    report: ReportObservation | None = None  # the newest judged report on the cache key
