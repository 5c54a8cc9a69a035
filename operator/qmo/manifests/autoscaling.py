"""What scales a variant's serving Deployment under load: a KEDA ScaledObject (Prometheus
trigger) or an autoscaling/v2 HorizontalPodAutoscaler on a Pods metric that a metrics adapter
serves. Pure: the planner decides the range (with its GPU bound), this renders it.

The Deployment itself carries no replica count while it is autoscaled (`manifests.serving`):
the scaler owns `spec.replicas`, and qmo's server-side apply never resets it.
"""

from __future__ import annotations

from typing import Any

from qmo.api.quantizedmodel import AutoscalingSpec, QuantizedModelSpec, ScalingMetric
from qmo.manifests import labels, names
from qmo.manifests.labels import Owner
from qmo.planner.types import PlannedVariant
from qmo.resources import DEPLOYMENTS, HORIZONTAL_POD_AUTOSCALERS, SCALED_OBJECTS, Resource
from qmo.vocabulary import Component

# What trtllm-serve exports on /prometheus/metrics (TensorRT-LLM 1.3 and later, with
# return_perf_metrics on; docs/autoscaling.md says which release has which). An HPA reads the
# same name per pod from a metrics adapter (docs/autoscaling.md has the prometheus-adapter rule).
METRIC = {
    ScalingMetric.REQUESTS_WAITING: "trtllm_num_requests_waiting",
    ScalingMetric.REQUESTS_RUNNING: "trtllm_num_requests_running",
    ScalingMetric.KV_CACHE_UTILIZATION: "trtllm_kv_cache_utilization",
}


def quantity(value: float) -> str:
    """A Kubernetes quantity for a per-replica target: whole numbers as they are, fractions
    in thousandths (0.8 -> 800m)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def _behavior(scaling: AutoscalingSpec) -> dict[str, Any]:
    return {
        "scaleUp": {"stabilizationWindowSeconds": scaling.scale_up_stabilization_seconds},
        "scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds},
    }


def _metadata(owner: Owner, variant: PlannedVariant, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {
            **labels.common(owner.name, Component.AUTOSCALER),
            labels.VARIANT: variant.name,
        },
        "ownerReferences": [owner.reference()],
    }


def pod_query(metric: ScalingMetric, namespace: str, deployment: str) -> str:
    """PromQL: the metric summed over the Deployment's pods (by the namespace and pod labels a
    Kubernetes pod scrape sets); KEDA divides it by the replicas (AverageValue)."""
    pods = f"{deployment}-[a-z0-9]+-[a-z0-9]+"
    return f'sum({METRIC[metric]}{{namespace="{namespace}",pod=~"{pods}"}})'


def _scaler(
    resource: Resource, owner: Owner, variant: PlannedVariant, spec: dict[str, Any]
) -> dict[str, Any]:
    """A scaler of `resource`'s kind on the variant's stable Deployment, with `spec` beside
    its target."""
    deployment = names.variant_deployment(owner.name, variant.name)
    target = {"apiVersion": DEPLOYMENTS.api_version, "kind": DEPLOYMENTS.kind, "name": deployment}
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": _metadata(owner, variant, deployment),
        "spec": {"scaleTargetRef": target, **spec},
    }


def scaled_object(
    spec: QuantizedModelSpec,
    variant: PlannedVariant,
    owner: Owner,
    *,
    max_replicas: int,
    prometheus: str,
) -> dict[str, Any]:
    """A KEDA ScaledObject on the variant's stable Deployment (Prometheus trigger)."""
    scaling = spec.serving.autoscaling
    assert scaling is not None
    deployment = names.variant_deployment(owner.name, variant.name)
    trigger = {
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": prometheus,
            "query": pod_query(scaling.metric, owner.namespace, deployment),
            "threshold": f"{scaling.per_replica_target:g}",  # KEDA reads a decimal
        },
    }
    return _scaler(
        SCALED_OBJECTS,
        owner,
        variant,
        {
            "minReplicaCount": min(scaling.min_replicas, max_replicas),
            "maxReplicaCount": max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(scaling)}},
            "triggers": [trigger],
        },
    )


def horizontal_pod_autoscaler(
    spec: QuantizedModelSpec, variant: PlannedVariant, owner: Owner, *, max_replicas: int
) -> dict[str, Any]:
    """An autoscaling/v2 HPA on the variant's stable Deployment, on a Pods metric."""
    scaling = spec.serving.autoscaling
    assert scaling is not None
    metric = {
        "type": "Pods",
        "pods": {
            "metric": {"name": METRIC[scaling.metric]},
            "target": {
                "type": "AverageValue",
                "averageValue": quantity(scaling.per_replica_target),
            },
        },
    }
    return _scaler(
        HORIZONTAL_POD_AUTOSCALERS,
        owner,
        variant,
        {
            "minReplicas": min(scaling.min_replicas, max_replicas),
            "maxReplicas": max_replicas,
            "metrics": [metric],
            "behavior": _behavior(scaling),
        },
    )
