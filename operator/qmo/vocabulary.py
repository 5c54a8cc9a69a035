"""qmo's words, in one place: condition types, reasons, phases, actions, build states, Event
types, refusals, and the labels, annotations and selectors on everything qmo creates.

The planner, the controller, the metrics and the docs use these names; a reason is spelled
once, here. Imports nothing of qmo: every layer may depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ConditionType(StrEnum):
    """The QuantizedModel's conditions, in the order status lists them."""

    READY = "Ready"
    BUILDING = "Building"
    QUALITY_GATE = "QualityGate"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    ROUTED = "Routed"  # only with spec.routing


class Phase(StrEnum):
    """Where one variant stands (status.variants[].phase; the qmo_variants metric)."""

    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    SERVING = "Serving"
    UNSUPPORTED = "Unsupported"
    BUILD_FAILED = "BuildFailed"
    EVALUATING = "Evaluating"  # before-traffic: the candidate waits for a passing report
    ROLLED_BACK = "RolledBack"  # the new revision regressed; the last good one serves
    REGRESSED = "Regressed"  # regressed with no good revision: withdrawn


class Action(StrEnum):
    """What the operator does for a variant in this reconcile."""

    BUILD = "Build"  # no artifact yet and no build running: create the build Job
    WAIT = "Wait"  # the build is running
    DEPLOY = "Deploy"  # the artifact is ready: apply the Deployment and Service
    BLOCKED = "Blocked"  # nothing can run: unsupported, or the build failed
    WITHDRAW = "Withdraw"  # it regressed with nothing good to return to: stop serving it


class BuildState(StrEnum):
    """A build as the cluster shows it; a builder's own result is Succeeded or Failed."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    # In a variant's status only: finished before this model needed it, or cannot start.
    REUSED = "Reused"
    BLOCKED = "Blocked"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(StrEnum):
    """Every CamelCase reason qmo writes into a condition, a variant's status or an Event."""

    # What a GPU class can run (planner.capabilities)
    GPU_UNSUPPORTED = "GpuUnsupported"
    PRECISION_UNSUPPORTED = "PrecisionUnsupported"
    BACKEND_UNSUPPORTED = "BackendUnsupported"
    KV_CACHE_UNSUPPORTED = "KvCacheUnsupported"
    # Sizing (planner.sizing)
    NOT_ENOUGH_GPUS = "NotEnoughGpus"
    DOES_NOT_FIT = "DoesNotFit"
    ENGINE_STORE_NOT_FOUND = "EngineStoreNotFound"
    ENGINE_STORE_INVALID = "EngineStoreInvalid"
    ARTIFACT_FETCH_FAILED = "ArtifactFetchFailed"
    IMAGE_NOT_ALLOWED = "ImageNotAllowed"
    SOURCE_CLAIM_NOT_FOUND = "SourceClaimNotFound"
    # The fleet and the spec (planner.plan)
    NO_GPU_CLASSES = "NoGpuClasses"
    GPU_CLASS_NOT_FOUND = "GpuClassNotFound"
    UNKNOWN_GPU = "UnknownGpu"
    UNPINNED_REVISION = "UnpinnedRevision"
    INVALID_SPEC = "InvalidSpec"
    # Builds and rollouts (planner.rollout, controller.gather)
    VARIANT_PLANNED = "VariantPlanned"
    BUILD_SCHEDULED = "BuildScheduled"
    BUILD_RUNNING = "BuildRunning"
    BUILD_WAITING_FOR_GPU = "BuildWaitingForGpu"
    BUILD_SUCCEEDED = "BuildSucceeded"
    BUILD_FAILED = "BuildFailed"
    BUILD_REUSED = "BuildReused"
    ARTIFACT_RECORDED = "ArtifactRecorded"
    UNSCHEDULABLE = "Unschedulable"  # every pod of a build Job waits for room (GPUs)
    LENDING_GPU_TO_BUILD = "LendingGpuToBuild"
    ROLLING_OUT = "RollingOut"
    ROLLING_WITHOUT_SURGE = "RollingWithoutSurge"
    SERVING = "Serving"
    MAIN_SERVICE_SELECTED = "MainServiceSelected"
    CHILD_REJECTED = "ChildRejected"  # the API server refused a write for the variant
    NAME_TAKEN = "NameTaken"  # another model holds a name it derives (controller.ownership)
    API_UNAVAILABLE = "ApiUnavailable"  # a write timed out or the API server failed (retried)
    # The quality gate (planner.gate)
    AWAITING_REPORT = "AwaitingReport"
    ROLLED_BACK = "RolledBack"
    FELL_BACK = "FellBack"
    WITHDRAWN = "Withdrawn"
    REGRESSED_WHILE_GOOD = "RegressedWhileGood"  # the last good revision, judged again
    KEPT_UNTIL_REPLACED = "KeptUntilReplaced"  # no longer asked for; serves until replaced
    QUALITY_PASSED = "QualityPassed"
    REFERENCE = "Reference"
    REFERENCE_STARTED = "ReferenceStarted"
    # Conditions' own reasons (planner.status)
    ALL_VARIANTS_SERVING = "AllVariantsServing"
    VARIANTS_NOT_READY = "VariantsNotReady"
    NO_SERVABLE_VARIANT = "NoServableVariant"
    BUILDS_RUNNING = "BuildsRunning"
    NO_BUILDS_RUNNING = "NoBuildsRunning"
    AS_EXPECTED = "AsExpected"
    GATE_DISABLED = "GateDisabled"
    NO_BASELINE = "NoBaseline"
    REGRESSED = "Regressed"
    AWAITING_REPORTS = "AwaitingReports"
    EVALUATION_FAILED = "EvaluationFailed"
    RETRY_REQUESTED = "RetryRequested"
    ALL_PASSED = "AllPassed"
    NO_REGRESSION = "NoRegression"
    # A QualityReport's verdict (quality.verdict)
    WITHIN_THRESHOLD = "WithinThreshold"
    INCONCLUSIVE = "Inconclusive"
    MISSING_BENCHMARKS = "MissingBenchmarks"
    NON_FINITE_SCORE = "NonFiniteScore"
    NON_POSITIVE_BASELINE = "NonPositiveBaseline"
    NON_FINITE_DELTA = "NonFiniteDelta"
    DELTA_OUT_OF_RANGE = "DeltaOutOfRange"
    SPEEDUP_OUT_OF_RANGE = "SpeedupOutOfRange"
    SPEEDUP_BELOW_MINIMUM = "SpeedupBelowMinimum"
    MISSING_SPEED = "MissingSpeed"
    # Routing through the Gateway API (planner.routing)
    ROUTE_ACCEPTED = "RouteAccepted"
    ROUTE_PENDING = "RoutePending"
    ROUTE_NOT_ACCEPTED = "RouteNotAccepted"
    NO_READY_BACKEND = "NoReadyBackend"
    MODEL_NAME_TAKEN = "ModelNameTaken"
    GATEWAY_API_MISSING = "GatewayApiMissing"
    # Autoscaling (planner.scaling)
    AUTOSCALING_UNAVAILABLE = "AutoscalingUnavailable"
    CAPACITY_EXHAUSTED = "CapacityExhausted"


class QualityState(StrEnum):
    """A variant's quality in status when no report's verdict (Pass, Regressed) applies."""

    PENDING = "Pending"  # gated, no report yet
    NOT_GATED = "NotGated"
    BASELINE = "Baseline"  # the BF16 variant others are judged against
    REFERENCE = "Reference"  # a temporary BF16 baseline, not served


@dataclass(frozen=True)
class Refusal:
    """Why something cannot be done: a reason (above) and one sentence for humans.

    `exit_code` is set where the refusal ends a process (qmo-builder's checks).
    """

    reason: str
    message: str
    exit_code: int | None = None


# --- labels, annotations and selectors on everything qmo creates -------------------------

MANAGED_BY = "qmo"
FIELD_MANAGER = "qmo"  # the server-side apply field manager of everything qmo writes
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
NAME_LABEL = "app.kubernetes.io/name"
VERSION_LABEL = "app.kubernetes.io/version"
COMPONENT = "app.kubernetes.io/component"
MODEL = "qmo.dev/model"
VARIANT = "qmo.dev/variant"
PRECISION = "qmo.dev/precision"
GPU_CLASS = "qmo.dev/gpu-class"
CACHE_KEY = "qmo.dev/cache-key"
TRACK = "qmo.dev/track"
REVISION_ANNOTATION = "qmo.dev/revision"  # the full cache key a Deployment or Job serves
HASH_ANNOTATION = "qmo.dev/applied-hash"  # the hash of the desired state qmo applied
# On a QuantizedModel: a new value retries its failed builds and evaluations now.
RETRY_ANNOTATION = "qmo.dev/retry"
# On an autoscaled Deployment: its scaler owns spec.replicas (qmo applies none).
REPLICAS_ANNOTATION = "qmo.dev/replicas"
AUTOSCALED = "autoscaled"
# The field manager that holds spec.replicas while it passes from qmo to a scaler, so that
# qmo's next apply (which no longer names the field) does not reset it.
HANDOVER_FIELD_MANAGER = "qmo-replicas-handover"


class Component(StrEnum):
    """app.kubernetes.io/component of each kind of object qmo creates."""

    BUILD = "build"
    ARTIFACT = "artifact"
    SERVER = "server"
    ENDPOINT = "endpoint"
    EVALUATION = "evaluation"
    ENGINE_STORE = "engine-store"
    STORE_GC = "store-gc"  # the garbage collection of a claim (qmo.controller.store_gc)
    ROUTE = "route"
    AUTOSCALER = "autoscaler"


class Track(StrEnum):
    """qmo.dev/track of serving pods."""

    STABLE = "stable"  # serves
    CANDIDATE = "candidate"  # awaits its quality gate, outside the Services
    REFERENCE = "reference"  # a temporary BF16 baseline for evaluations


MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# The pods qmo reads: those of its build and eval Jobs (their termination messages), and its
# serving pods (why they wait).
_READ_PODS = (Component.BUILD, Component.SERVER, Component.EVALUATION, Component.STORE_GC)
PODS_SELECTOR = f"{MANAGED_SELECTOR},{COMPONENT} in ({','.join(_READ_PODS)})"
