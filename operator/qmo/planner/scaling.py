"""Each autoscaled variant's replica range, bounded by what its GPU class can hold. Pure.

The spec's `maxReplicas` is what the user allows; the class decides what fits. A variant may
grow by the class's free GPUs (allocatable GPUs of the class, less what every qmo Deployment
and build Job on it holds) divided by the GPUs a replica needs, on top of what it runs now.
A scaler asked for more would only add pods that stay Pending; held at its bound, the variant
says so (`CapacityExhausted`) instead.

Builds and scale-out share a class first come, first served: a build Job in flight holds its
GPUs (the bound counts them), and a build waiting for GPUs is not lent serving GPUs while the
variant is autoscaled (the scaler owns the replica count; lending would fight it).
"""

from __future__ import annotations

from dataclasses import dataclass

from qmo.api.quantizedmodel import QuantizedModelSpec, ScalingEngine
from qmo.vocabulary import Reason, Refusal


@dataclass(frozen=True)
class ScalingRange:
    """What the scaler of one variant is given."""

    engine: ScalingEngine  # KEDA or HPA, never AUTO
    min_replicas: int
    max_replicas: int  # at most the spec's, at most what the class can hold
    requested_max: int
    free_gpus: int
    gpus_per_replica: int
    running: int  # replicas its Deployment runs now
    prometheus: str | None = None  # what KEDA queries
    # Where the default route is weighted across classes (planner.capacity): this variant's
    # weight, its tokens/s per replica, and whether a report measured it.
    route_weight: int | None = None
    tokens_per_second: float | None = None
    measured: bool = False

    @property
    def bounded(self) -> bool:
        """The class, not the spec, sets the maximum."""
        return self.max_replicas < self.requested_max

    @property
    def at_bound(self) -> bool:
        """It runs all the class can hold, and the spec would allow more (CapacityExhausted)."""
        return self.bounded and self.running >= self.max_replicas

    @property
    def why(self) -> str:
        if not self.bounded:
            return f"{self.min_replicas}-{self.max_replicas} replicas"
        return (
            f"{self.min_replicas}-{self.max_replicas} replicas: the GPU class has "
            f"{self.free_gpus} free GPU(s) and a replica needs {self.gpus_per_replica}; the "
            f"spec allows {self.requested_max}"
        )


def scaling_engine(
    spec: QuantizedModelSpec, keda_installed: bool, prometheus: str | None
) -> ScalingEngine | Refusal:
    """auto: KEDA where its CRDs are installed and a Prometheus is known, else an HPA."""
    scaling = spec.serving.autoscaling
    assert scaling is not None
    keda_usable = keda_installed and prometheus is not None
    if scaling.engine == ScalingEngine.AUTO:
        return ScalingEngine.KEDA if keda_usable else ScalingEngine.HPA
    if scaling.engine == ScalingEngine.KEDA and not keda_usable:
        missing = (
            "KEDA's ScaledObject CRD is not installed"
            if not keda_installed
            else "no Prometheus address is known (serving.autoscaling.prometheusAddress, or "
            "the operator's --prometheus-address)"
        )
        return Refusal(
            Reason.AUTOSCALING_UNAVAILABLE,
            f"serving.autoscaling.engine is keda but {missing}: no variant is autoscaled; "
            "engine auto would use a HorizontalPodAutoscaler",
        )
    return scaling.engine


def scaling_range(
    spec: QuantizedModelSpec,
    engine: ScalingEngine,
    *,
    gpus_per_replica: int,
    total_gpus: int,
    gpus_held: int,
    running: int,
    prometheus: str | None = None,
) -> ScalingRange:
    """The range of a variant running `running` replicas on a class with `total_gpus`, of which
    qmo's Deployments and build Jobs (this variant's included) hold `gpus_held`."""
    scaling = spec.serving.autoscaling
    assert scaling is not None
    per_replica = max(1, gpus_per_replica)
    free = max(0, total_gpus - gpus_held)
    fits = running + free // per_replica
    # Never below one (a scaler needs a maximum of at least one).
    maximum = max(1, min(scaling.max_replicas, fits))
    return ScalingRange(
        engine=engine,
        min_replicas=min(scaling.min_replicas, maximum),
        max_replicas=maximum,
        requested_max=scaling.max_replicas,
        free_gpus=free,
        gpus_per_replica=per_replica,
        running=running,
        prometheus=prometheus if engine == ScalingEngine.KEDA else None,
    )
