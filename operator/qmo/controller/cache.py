"""The operator's watch-fed view of the cluster: one informer per kind (per watched namespace),
filtered server-side to what qmo manages, answering every `ClusterReader` lookup from memory.

A change of any watched object is turned into the QuantizedModel keys it concerns (see
`routing`) and handed to `on_keys`; the controller queues them. Writes of the operator itself
are recorded with `observe_write`, so the next reconcile sees them before their watch events
arrive.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable

from qmo import metrics
from qmo.controller import routing, telemetry
from qmo.controller.informer import Informer
from qmo.controller.view import gpus_held, indexes_of
from qmo.gpu import GpuInventory, inventory_from_nodes
from qmo.kube import Kube
from qmo.resources import (
    CLAIMS,
    CONFIG_MAPS,
    DEPLOYMENTS,
    HORIZONTAL_POD_AUTOSCALERS,
    HTTP_ROUTES,
    JOBS,
    NETWORK_POLICIES,
    NODES,
    PODS,
    QUALITY_REPORTS,
    QUANTIZED_MODELS,
    SCALED_OBJECTS,
    SERVICES,
    Resource,
)
from qmo.vocabulary import MANAGED_SELECTOR, PODS_SELECTOR
from qmo.wire import Obj

Key = tuple[str, str]
KeysHandler = Callable[[Iterable[Key]], None]
ROUTES_RECHECK_SECONDS = 10.0  # one small discovery GET at most, while the API is missing

# What is watched, and with which server-side filter: only what qmo manages, except the
# kinds users create (models, reports, claims) and Nodes (GPU Feature Discovery labels them).
WATCHED: tuple[tuple[Resource, str | None], ...] = (
    (QUANTIZED_MODELS, None),
    (QUALITY_REPORTS, None),
    (JOBS, MANAGED_SELECTOR),
    (PODS, PODS_SELECTOR),
    (CONFIG_MAPS, MANAGED_SELECTOR),
    (DEPLOYMENTS, MANAGED_SELECTOR),
    (SERVICES, MANAGED_SELECTOR),
    (HORIZONTAL_POD_AUTOSCALERS, MANAGED_SELECTOR),
    (NETWORK_POLICIES, MANAGED_SELECTOR),
    (CLAIMS, None),
)


class ClusterCache:
    """Informers for every kind a reconcile reads; implements `ClusterReader`."""

    def __init__(
        self, kube: Kube, namespaces: tuple[str, ...] = (), on_keys: KeysHandler | None = None
    ) -> None:
        self.kube = kube
        self.on_keys = on_keys
        self._scopes: tuple[str | None, ...] = namespaces or (None,)
        self._informers: dict[tuple[str, str | None], Informer] = {}
        for resource, selector in WATCHED:
            for scope in self._scopes:
                self._informers[(resource.kind, scope)] = Informer(
                    kube,
                    resource,
                    namespace=scope,
                    label_selector=selector,
                    indexers=indexes_of(resource.kind),
                    on_change=self._changed,
                    track_drift=resource is DEPLOYMENTS,
                )
        self._nodes = Informer(kube, NODES, on_change=self._node_changed)
        # HTTPRoutes exist only where the Gateway API is installed: watched once it is seen.
        self._routes_lock = threading.Lock()
        self._checked_at: dict[str, float] = {}  # optional kinds found missing, by kind
        self._inventory: GpuInventory | None = None
        self._inventory_lock = threading.Lock()

    @property
    def informers(self) -> list[Informer]:
        with self._routes_lock:  # routes_available may add informers from a worker thread
            return [*self._informers.values(), self._nodes]

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    def wait_synced(self, timeout: float) -> bool:
        """True once every informer has listed its objects (before that, nothing reconciles)."""
        deadline = time.monotonic() + timeout
        for informer in self.informers:
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def unsynced(self) -> list[str]:
        return [i.name for i in self.informers if not i.synced.is_set()]

    def routes_available(self) -> bool:
        """Whether the cluster serves HTTPRoutes; their informers start the first time it
        does. Asked by every reconcile, with spec.routing or without (a route left behind
        when spec.routing was removed while the operator was down must be seen to be
        deleted); a missing API is looked for again at most every ROUTES_RECHECK_SECONDS
        (installing the CRDs later needs no restart)."""
        return self._served(HTTP_ROUTES)

    def keda_installed(self) -> bool:
        """Whether KEDA's ScaledObject CRD is installed (asked by autoscaled models only);
        watched from then on, rechecked like HTTPRoutes while missing."""
        return self._served(SCALED_OBJECTS)

    def _served(self, resource: Resource) -> bool:
        """Whether the cluster serves an optional kind; its informers start when it does."""
        with self._routes_lock:
            if (resource.kind, self._scopes[0]) in self._informers:
                return True
            now = time.monotonic()
            checked = self._checked_at.get(resource.kind)
            if checked is not None and now - checked < ROUTES_RECHECK_SECONDS:
                return False
            self._checked_at[resource.kind] = now
            if not self.kube.serves(resource):
                return False
            for scope in self._scopes:
                informer = Informer(
                    self.kube,
                    resource,
                    namespace=scope,
                    label_selector=MANAGED_SELECTOR,
                    indexers=indexes_of(resource.kind),
                    on_change=self._changed,
                )
                self._informers[(resource.kind, scope)] = informer
                informer.start()
            return True

    def serving_pods(self, namespace: str, model: str, variant: str, track: str) -> list[Obj]:
        return self._by_index(PODS.kind, namespace, "serving", (namespace, model, variant, track))

    def gpus_held(self, gpu_class: str) -> int:
        with self._routes_lock:
            informers = list(self._informers.items())
        found = {
            kind: [
                obj
                for (k, _), i in informers
                if k == kind
                for obj in i.by_index("gpu-class", gpu_class)
            ]
            for kind in (DEPLOYMENTS.kind, JOBS.kind)
        }
        return gpus_held(found[DEPLOYMENTS.kind], found[JOBS.kind])

    # --- routing changes to models -------------------------------------------------------

    def _changed(self, old: Obj | None, new: Obj | None) -> None:
        build = telemetry.finished_build(old, new)
        if build is not None:
            metrics.observe_build(build.precision, build.gpu_class, build.outcome, build.seconds)
        if self.on_keys is None:
            return
        keys = routing.models_to_reconcile(old, new, self)
        if keys:
            self.on_keys(keys)

    def _node_changed(self, old: Obj | None, new: Obj | None) -> None:
        # Projections hold only what GPU planning reads: any change is relevant.
        with self._inventory_lock:
            self._inventory = None
        if not self._nodes.synced.is_set():
            return  # the first list: inventory() counts once the caches are synced
        self.inventory()  # the fleet's metrics follow at once, also with no model to plan
        if self.on_keys is not None:
            self.on_keys(self.model_keys())

    # --- ClusterReader -------------------------------------------------------------------

    def _informer(self, kind: str, namespace: str) -> Informer | None:
        informer = self._informers.get((kind, None))
        if informer is None:
            informer = self._informers.get((kind, namespace))
        return informer

    def _by_index(self, kind: str, namespace: str, index: str, key: Hashable) -> list[Obj]:
        informer = self._informer(kind, namespace)
        return informer.by_index(index, key) if informer else []

    def model(self, namespace: str, name: str) -> Obj | None:
        return self.get(QUANTIZED_MODELS.kind, namespace, name)

    def model_keys(self) -> list[Key]:
        keys = []
        for scope in self._scopes:
            for obj in self._informers[(QUANTIZED_MODELS.kind, scope)].items():
                keys.append((obj["metadata"]["namespace"], obj["metadata"]["name"]))
        return keys

    def all_of(self, kind: str) -> list[Obj]:
        """Every cached object of `kind`, in every watched namespace."""
        with self._routes_lock:
            informers = [i for (k, _), i in self._informers.items() if k == kind]
        return [obj for informer in informers for obj in informer.items()]

    def models_in(self, namespace: str) -> list[Key]:
        return [
            (namespace, m["metadata"]["name"])
            for m in self._by_index(QUANTIZED_MODELS.kind, namespace, "namespace", namespace)
        ]

    def inventory(self) -> GpuInventory:
        with self._inventory_lock:
            if self._inventory is None:
                self._inventory = inventory_from_nodes(self._nodes.items())
                metrics.observe_gpu_classes(
                    {c.name: (len(c.nodes), c.total_gpus) for c in self._inventory.classes}
                )
                metrics.observe_unknown_gpus(Counter(u.product for u in self._inventory.unknown))
            return self._inventory

    def build_job(self, namespace: str, cache_key: str) -> Obj | None:
        found = self._by_index(JOBS.kind, namespace, "build", (namespace, cache_key))
        return found[0] if found else None

    def job_pods(self, namespace: str, job_name: str) -> list[Obj]:
        return self._by_index(PODS.kind, namespace, "job", (namespace, job_name))

    def artifact_record(self, namespace: str, cache_key: str) -> Obj | None:
        found = self._by_index(CONFIG_MAPS.kind, namespace, "record", (namespace, cache_key))
        return found[0] if found else None

    def children(self, kind: str, namespace: str, model: str) -> list[Obj]:
        return self._by_index(kind, namespace, "model", (namespace, model))

    def reports(self, namespace: str, model: str) -> list[Obj]:
        return self._by_index(QUALITY_REPORTS.kind, namespace, "model", (namespace, model))

    def claims(self, namespace: str) -> frozenset[str]:
        found = self._by_index(CLAIMS.kind, namespace, "namespace", namespace)
        return frozenset(c["metadata"]["name"] for c in found)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        informer = self._informer(kind, namespace)
        return informer.get(namespace, name) if informer else None

    def routes_on(self, gateway: tuple[str, str]) -> list[Obj]:
        with self._routes_lock:
            informers = [i for (k, _), i in self._informers.items() if k == HTTP_ROUTES.kind]
        return [route for i in informers for route in i.by_index("gateway", gateway)]

    # --- the operator's own writes -------------------------------------------------------

    def observe_write(self, stored: Obj) -> None:
        meta = stored.get("metadata") or {}
        informer = self._informer(stored.get("kind", ""), meta.get("namespace") or "")
        if informer is not None:
            informer.observe_write(stored)

    def observe_delete(self, obj: Obj) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or ""
        informer = self._informer(obj["kind"], namespace)
        if informer is not None:
            informer.observe_delete(namespace, meta["name"])
