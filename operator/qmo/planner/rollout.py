"""Where a buildable variant stands: build, wait, deploy, serving, or failed; and whether its
serving replicas lend GPUs to its own new build. Pure.

`rollout_state` asks an ordered chain of named rules; the first that applies decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qmo.api.buildcontract import BuildRequest
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.planner.decision import AwaitBuild, Build, BuildFailed, RollOut, Serve
from qmo.planner.observed import BuildObservation, DeploymentObservation
from qmo.planner.types import VariantTarget
from qmo.vocabulary import BuildState, Reason

RolloutState = Build | AwaitBuild | BuildFailed | RollOut | Serve


@dataclass(frozen=True)
class Situation:
    """What the rollout rules look at."""

    spec: QuantizedModelSpec
    request: BuildRequest
    build: BuildObservation | None
    deployment: DeploymentObservation | None


Rule = Callable[[Situation], RolloutState | None]


def not_built_yet(s: Situation) -> RolloutState | None:
    if s.build is not None:
        return None
    return Build()


def waiting_for_gpus(s: Situation) -> RolloutState | None:
    if s.build is None or s.build.reason != Reason.UNSCHEDULABLE:
        return None
    return AwaitBuild(s.build.job, waiting=s.build.message or "")


def building(s: Situation) -> RolloutState | None:
    if s.build is None or s.build.state not in (BuildState.PENDING, BuildState.RUNNING):
        return None
    return AwaitBuild(s.build.job)


def build_failed(s: Situation) -> RolloutState | None:
    if s.build is None or s.build.state != BuildState.FAILED:
        return None
    detail = s.build.message or "the build Job failed"
    return BuildFailed(s.build.reason or Reason.BUILD_FAILED, detail)


def serving(s: Situation) -> RolloutState | None:
    wanted = s.spec.serving.wanted_replicas
    deployment = s.deployment
    if (
        deployment is None
        or deployment.revision != s.request.cache_key
        or deployment.updated_replicas < wanted
        or deployment.ready_replicas < wanted
    ):
        return None
    return Serve(s.request.cache_key, wanted)


def rolling_out(s: Situation) -> RolloutState:
    ready = s.deployment.ready_replicas if s.deployment else 0
    wanted = s.spec.serving.wanted_replicas
    waiting = s.deployment.unschedulable if s.deployment else None
    failing = s.deployment.fetch_failure if s.deployment else None
    return RollOut(s.request.cache_key, ready, wanted, waiting, failing)


RULES: tuple[Rule, ...] = (not_built_yet, waiting_for_gpus, building, build_failed, serving)


def rollout_state(
    spec: QuantizedModelSpec,
    request: BuildRequest,
    build: BuildObservation | None,
    deployment: DeploymentObservation | None,
) -> RolloutState:
    """The first rule that applies; a built variant that does not serve yet rolls out."""
    situation = Situation(spec, request, build, deployment)
    for rule in RULES:
        decided = rule(situation)
        if decided is not None:
            return decided
    return rolling_out(situation)


def lending_replicas(
    spec: QuantizedModelSpec,
    build: BuildObservation | None,
    deployment: DeploymentObservation | None,
    tp: int,
    build_gpus: int,
) -> int | None:
    """Replicas to keep while a new build waits for GPUs that only this variant holds.

    The same availability budget as a rollout without surge: one replica's GPUs (or as few
    as the build needs) go to the build; never the last replica, so something keeps serving.
    """
    if build is None or build.reason != Reason.UNSCHEDULABLE or deployment is None:
        return None
    if spec.serving.autoscaling is not None:
        return None  # the scaler owns the count; its bound leaves builds their GPUs
    lend = -(-build_gpus // tp)  # replicas whose GPUs cover the build
    keep = spec.serving.wanted_replicas - lend
    return keep if keep >= 1 else None


def can_surge(target: VariantTarget, replicas: int) -> bool:
    """Whether the class has GPUs for one surge pod beyond `replicas`; without them a surge
    pod would stay Pending forever and the rollout would hang, so updates replace in place."""
    tp = target.tensor_parallel or 1
    return target.gpu_class.total_gpus - replicas * tp >= tp
