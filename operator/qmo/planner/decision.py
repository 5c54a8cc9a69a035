"""What qmo decides for one variant, as typed values, and how each decision renders.

A decision is made once, by the planner (rollout rules, then the quality gate); status,
Events, evaluations, routes and the desired changes read it through the properties below,
never by comparing phase strings. Adding an outcome is one class here: its phase, whether it
is worth a Warning, and what it serves. The one module that names `Phase` values. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qmo.planner.cachekey import short_key
from qmo.planner.observed import ReportObservation
from qmo.vocabulary import Action, Phase, Reason, Refusal


@dataclass(frozen=True)
class Decision:
    """The common rendering: a phase, an action for the writes, a reason and a sentence."""

    phase: ClassVar[Phase]
    action: ClassVar[Action]
    warning: ClassVar[bool] = False
    serving: ClassVar[bool] = False  # its current revision serves with every replica ready
    regressed: ClassVar[bool] = False  # the gate acted on a regression of the current revision
    building: ClassVar[bool] = False
    supported: ClassVar[bool] = True  # the class can run it at all
    build_failed: ClassVar[bool] = False
    fixed_reason: ClassVar[str] = ""  # the reason, where one class has one

    @property
    def reason(self) -> str:
        return self.fixed_reason

    @property
    def message(self) -> str:
        raise NotImplementedError

    @property
    def serve_key(self) -> str | None:
        """The revision the variant's stable Deployment runs (None: none should run)."""
        return None

    @property
    def candidate_key(self) -> str | None:
        """The revision run on the candidate track, outside the Services."""
        return None

    @property
    def runnable(self) -> bool:
        """It runs or will run: neither refused, failed nor withdrawn."""
        return self.action not in (Action.BLOCKED, Action.WITHDRAW)

    @property
    def lending_replicas(self) -> int | None:
        return None


@dataclass(frozen=True)
class Serves(Decision):
    """A decision whose stable Deployment runs revision `key`."""

    key: str

    @property
    def serve_key(self) -> str | None:
        return self.key


# --- before anything runs ----------------------------------------------------------------


@dataclass(frozen=True)
class Blocked(Decision):
    """Nothing can run, for the reason a `Refusal` gives."""

    refusal: Refusal
    action: ClassVar[Action] = Action.BLOCKED
    warning: ClassVar[bool] = True

    @property
    def reason(self) -> str:
        return self.refusal.reason

    @property
    def message(self) -> str:
        return self.refusal.message


@dataclass(frozen=True)
class Refused(Blocked):
    """The class cannot run it (capability, size, image): nothing is built or served."""

    phase: ClassVar[Phase] = Phase.UNSUPPORTED
    supported: ClassVar[bool] = False


@dataclass(frozen=True)
class AwaitingStore(Blocked):
    """A build is due but a claim it needs is missing."""

    phase: ClassVar[Phase] = Phase.PENDING


# --- builds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Build(Decision):
    """No artifact and no build: create the build Job."""

    phase: ClassVar[Phase] = Phase.BUILDING
    building: ClassVar[bool] = True
    action: ClassVar[Action] = Action.BUILD
    fixed_reason: ClassVar[str] = Reason.BUILD_SCHEDULED

    @property
    def message(self) -> str:
        return "a build Job will be created"


@dataclass(frozen=True)
class AwaitBuild(Decision):
    """The build runs, or waits for GPUs (`waiting`: the scheduler's words); `lending`: the
    stable Deployment runs this many replicas while the build borrows the rest's GPUs."""

    job: str | None
    waiting: str | None = None
    lending: int | None = None
    lending_message: str = ""
    phase: ClassVar[Phase] = Phase.BUILDING
    building: ClassVar[bool] = True
    action: ClassVar[Action] = Action.WAIT

    @property
    def reason(self) -> str:
        if self.lending is not None:
            return Reason.LENDING_GPU_TO_BUILD
        return Reason.BUILD_WAITING_FOR_GPU if self.waiting is not None else Reason.BUILD_RUNNING

    @property
    def message(self) -> str:
        if self.lending is not None:
            return self.lending_message
        if self.waiting is not None:
            return f"build Job {self.job} waits for GPUs: {self.waiting}"
        return f"build Job {self.job} is running"

    @property
    def lending_replicas(self) -> int | None:
        return self.lending


@dataclass(frozen=True)
class BuildFailed(Decision):
    """The build failed: what serves keeps serving, nothing new rolls out."""

    why: str
    detail: str
    phase: ClassVar[Phase] = Phase.BUILD_FAILED
    build_failed: ClassVar[bool] = True
    action: ClassVar[Action] = Action.BLOCKED
    warning: ClassVar[bool] = True

    @property
    def reason(self) -> str:
        return self.why

    @property
    def message(self) -> str:
        return self.detail


# --- serving -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollOut(Serves):
    """The artifact is built: its Deployment rolls out (`ready` of `wanted` replicas)."""

    ready: int
    wanted: int
    unschedulable: str | None = None  # the scheduler's message while its pods cannot run
    # Why its pods' fetch step fails (an object store), as the step said it.
    fetch_failure: str | None = None
    phase: ClassVar[Phase] = Phase.DEPLOYING
    action: ClassVar[Action] = Action.DEPLOY
    fixed_reason: ClassVar[str] = Reason.ROLLING_OUT

    @property
    def reason(self) -> str:
        return Reason.ARTIFACT_FETCH_FAILED if self.fetch_failure else self.fixed_reason

    @property
    def message(self) -> str:
        ready = f"{self.ready}/{self.wanted} replica(s) ready"
        if self.fetch_failure is not None:
            return f"{ready}; the artifact's fetch into the node cache fails: {self.fetch_failure}"
        if self.unschedulable is None:
            return ready
        return f"{ready}; pods wait for room: {self.unschedulable}"


@dataclass(frozen=True)
class Serve(Serves):
    """The current revision serves with every replica ready."""

    wanted: int
    phase: ClassVar[Phase] = Phase.SERVING
    serving: ClassVar[bool] = True
    action: ClassVar[Action] = Action.DEPLOY
    fixed_reason: ClassVar[str] = Reason.SERVING

    @property
    def message(self) -> str:
        return f"{self.wanted} replica(s) ready"


# --- the quality gate ----------------------------------------------------------------------


@dataclass(frozen=True)
class RolledBack(Decision):
    """Revision `regressed` regressed: the last good `revision` serves instead."""

    regressed_key: str
    revision: str
    report: ReportObservation
    phase: ClassVar[Phase] = Phase.ROLLED_BACK
    regressed: ClassVar[bool] = True
    action: ClassVar[Action] = Action.DEPLOY
    warning: ClassVar[bool] = True
    fixed_reason: ClassVar[str] = Reason.ROLLED_BACK

    @property
    def message(self) -> str:
        return (
            f"revision {short_key(self.regressed_key)} {self.report.message}; serving the "
            f"last good revision {short_key(self.revision)}"
        )

    @property
    def serve_key(self) -> str | None:
        return self.revision


@dataclass(frozen=True)
class KeptUntilReplaced(Serves):
    """A variant the spec no longer asks for (a new revision after a fallback, a precision
    edited away) keeps serving its last good revision until what replaces it on its GPU
    class serves and, if gated, passed. Its objects are left as they are."""

    replaced_by: tuple[str, ...]
    phase: ClassVar[Phase] = Phase.SERVING
    serving: ClassVar[bool] = True
    action: ClassVar[Action] = Action.DEPLOY
    fixed_reason: ClassVar[str] = Reason.KEPT_UNTIL_REPLACED

    @property
    def message(self) -> str:
        waits = ", ".join(self.replaced_by) or "its replacement"
        return (
            f"revision {short_key(self.key)} keeps serving until {waits} serves and passes its gate"
        )


@dataclass(frozen=True)
class KeptDespiteReport(Serves):
    """A revision that was good (it passed, or served ungated) is judged regressed again,
    after a spec edit (a tighter threshold) or a new report: it keeps serving, as the last
    good revision, until a new revision passes; the gate says so."""

    report: ReportObservation
    phase: ClassVar[Phase] = Phase.SERVING
    regressed: ClassVar[bool] = True
    action: ClassVar[Action] = Action.DEPLOY
    warning: ClassVar[bool] = True
    fixed_reason: ClassVar[str] = Reason.REGRESSED_WHILE_GOOD

    @property
    def message(self) -> str:
        return (
            f"revision {short_key(self.key)} {self.report.message}; it was the last good "
            "revision and keeps serving until a new revision passes"
        )


@dataclass(frozen=True)
class Withdrawn(Decision):
    """It regressed with no good revision to return to: it stops serving."""

    regressed_key: str
    report: ReportObservation
    phase: ClassVar[Phase] = Phase.REGRESSED
    regressed: ClassVar[bool] = True
    action: ClassVar[Action] = Action.WITHDRAW
    warning: ClassVar[bool] = True
    fixed_reason: ClassVar[str] = Reason.WITHDRAWN

    @property
    def message(self) -> str:
        return (
            f"revision {short_key(self.regressed_key)} {self.report.message}; there is no good "
            "revision to return to, so the variant stops serving"
        )


@dataclass(frozen=True)
class HoldAsCandidate(Decision):
    """before-traffic: `key` runs outside the Services until a report passes; `keeps`, the
    last good revision, serves meanwhile (None: nothing does yet)."""

    key: str
    keeps: str | None
    phase: ClassVar[Phase] = Phase.EVALUATING
    action: ClassVar[Action] = Action.DEPLOY
    fixed_reason: ClassVar[str] = Reason.AWAITING_REPORT

    @property
    def message(self) -> str:
        keeps = f"; revision {short_key(self.keeps)} keeps serving" if self.keeps else ""
        return (
            f"revision {short_key(self.key)} runs as a candidate, outside the Services, until a "
            f"QualityReport passes{keeps}"
        )

    @property
    def serve_key(self) -> str | None:
        return self.keeps

    @property
    def candidate_key(self) -> str | None:
        return self.key


VariantDecision = (
    Refused
    | AwaitingStore
    | Build
    | AwaitBuild
    | BuildFailed
    | RollOut
    | Serve
    | RolledBack
    | KeptDespiteReport
    | KeptUntilReplaced
    | Withdrawn
    | HoldAsCandidate
)


def was_rolling_out(phase_in_status: str | None) -> bool:
    """A variant's status phase says a rollout was under way (see `RollOut`)."""
    return phase_in_status == RollOut.phase
