"""The Kubernetes resources qmo reads and writes, and their REST paths.

A static table instead of API discovery: qmo talks to a dozen stable kinds, and discovery would
cost a round of GETs at every start. Pure; `qmo.kube` builds its requests from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from qmo.api.base import API_VERSION


@dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The REST path: all namespaces when a namespaced kind gets no namespace."""
        base = f"/apis/{self.api_version}" if "/" in self.api_version else "/api/v1"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


QUANTIZED_MODELS = Resource(API_VERSION, "QuantizedModel", "quantizedmodels")
QUALITY_REPORTS = Resource(API_VERSION, "QualityReport", "qualityreports")
JOBS = Resource("batch/v1", "Job", "jobs")
DEPLOYMENTS = Resource("apps/v1", "Deployment", "deployments")
SERVICES = Resource("v1", "Service", "services")
CONFIG_MAPS = Resource("v1", "ConfigMap", "configmaps")
CLAIMS = Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims")
PODS = Resource("v1", "Pod", "pods")
EVENTS = Resource("v1", "Event", "events")
NODES = Resource("v1", "Node", "nodes", namespaced=False)
LEASES = Resource("coordination.k8s.io/v1", "Lease", "leases")
# Only where the Gateway API's CRDs are installed (qmo looks, see ClusterCache.routes_available).
HTTP_ROUTES = Resource("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes")
HORIZONTAL_POD_AUTOSCALERS = Resource(
    "autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"
)
SCALED_OBJECTS = Resource("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")
NETWORK_POLICIES = Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
# Only with `qmo run --metrics-auth`: who scrapes /metrics, and may they (qmo.metrics_auth).
TOKEN_REVIEWS = Resource("authentication.k8s.io/v1", "TokenReview", "tokenreviews", False)
SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io/v1", "SubjectAccessReview", "subjectaccessreviews", False
)

ALL = (
    QUANTIZED_MODELS,
    QUALITY_REPORTS,
    JOBS,
    DEPLOYMENTS,
    SERVICES,
    CONFIG_MAPS,
    CLAIMS,
    PODS,
    EVENTS,
    NODES,
    LEASES,
    HTTP_ROUTES,
    HORIZONTAL_POD_AUTOSCALERS,
    SCALED_OBJECTS,
    NETWORK_POLICIES,
)
_BY_KIND = {(r.api_version, r.kind): r for r in ALL}


class UnknownResource(KeyError):
    """An object of a kind qmo does not talk to (a programming error, not a cluster state)."""


def resource_for(api_version: str, kind: str) -> Resource:
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise UnknownResource(f"{api_version} {kind}") from None
