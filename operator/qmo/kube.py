"""The one place that talks to the Kubernetes API.

Writes are server-side apply with the field manager "qmo" and forced ownership: the operator
is the only writer of what it creates, and re-applying the same object is a no-op. Objects
shared by several QuantizedModels (build Jobs, artifact records) get each model's owner
reference through a field manager of that model's own, so server-side apply merges the
references instead of one model's apply removing another's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from kubernetes.dynamic.resource import Resource

from qmo.api.base import API_VERSION
from qmo.manifests.labels import MANAGED_BY, Owner

FIELD_MANAGER = "qmo"
NODE_CACHE_SECONDS = 30.0
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
log = logging.getLogger("qmo.kube")

Obj = dict[str, Any]


def connect() -> Kube:
    """A client from the in-cluster service account, else from KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return Kube(client.ApiClient())


def owner_field_manager(owner: Owner) -> str:
    return f"qmo-owner-{owner.uid}"


class Kube:
    """Typed-enough access to the few resources qmo reads and writes."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.dynamic = DynamicClient(api_client)
        self._resources: dict[tuple[str, str], Resource] = {}
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()
        self._nodes: list[Obj] | None = None
        self._nodes_at = 0.0
        self._nodes_epoch = 0
        self._nodes_lock = threading.Lock()

    def resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._resources:
            self._resources[key] = self.dynamic.resources.get(api_version=api_version, kind=kind)
        return self._resources[key]

    # --- reads ---------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        try:
            found = self.resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        return dict(found.to_dict())

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Obj]:
        listing = self.resource(api_version, kind).get(
            namespace=namespace, label_selector=label_selector
        )
        return [dict(item) for item in listing.to_dict()["items"]]

    def get_model(self, namespace: str, name: str) -> Obj | None:
        return self.get(API_VERSION, "QuantizedModel", name, namespace)

    def list_nodes(self) -> list[Obj]:
        """Nodes, cached between reconciles until a GPU-relevant node change invalidates them.

        Every worker plans against the whole fleet; listing it per reconcile would cost the
        API server one full Node list per model and event. The controller calls
        `invalidate_nodes()` before it queues reconciles for a node change, and the cache
        expires anyway after NODE_CACHE_SECONDS.
        """
        with self._nodes_lock:
            fresh = time.monotonic() - self._nodes_at < NODE_CACHE_SECONDS
            if self._nodes is not None and fresh:
                return self._nodes
            epoch = self._nodes_epoch
        nodes = self.list_objects("v1", "Node")
        with self._nodes_lock:
            # A list that started before an invalidation may predate the change: not cached.
            if epoch == self._nodes_epoch:
                self._nodes, self._nodes_at = nodes, time.monotonic()
        return nodes

    def invalidate_nodes(self) -> None:
        with self._nodes_lock:
            self._nodes = None
            self._nodes_epoch += 1

    def list_managed(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Obj]:
        return self.list_objects(api_version, kind, namespace, f"{MANAGED_SELECTOR},{selector}")

    # --- writes --------------------------------------------------------------------------

    def apply(self, obj: Obj, field_manager: str = FIELD_MANAGER) -> Obj:
        resource = self.resource(obj["apiVersion"], obj["kind"])
        applied = self.dynamic.server_side_apply(
            resource,
            body=obj,
            namespace=obj["metadata"].get("namespace"),
            field_manager=field_manager,
            force_conflicts=True,
        )
        return dict(applied.to_dict())

    def add_owner(self, obj: Obj, owner: Owner) -> None:
        """Add `owner` to a shared object's ownerReferences, keeping every other owner's."""
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        if any(ref.get("uid") == owner.uid for ref in refs):
            return
        self.apply(
            {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "metadata": {
                    "name": obj["metadata"]["name"],
                    "namespace": obj["metadata"]["namespace"],
                    "ownerReferences": [owner.shared_reference()],
                },
            },
            field_manager=owner_field_manager(owner),
        )

    def apply_report_status(self, namespace: str, name: str, status: Obj) -> None:
        self.apply_status(namespace, name, status, kind="QualityReport")

    def apply_status(
        self, namespace: str, name: str, status: Obj, kind: str = "QuantizedModel"
    ) -> None:
        resource = self.resource(API_VERSION, kind)
        self.dynamic.server_side_apply(
            resource.subresources["status"],
            body={
                "apiVersion": API_VERSION,
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace},
                "status": status,
            },
            name=name,
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    def delete(self, obj: Obj) -> None:
        with contextlib.suppress(NotFoundError):
            self.resource(obj["apiVersion"], obj["kind"]).delete(
                name=obj["metadata"]["name"],
                namespace=obj["metadata"].get("namespace"),
                body={"propagationPolicy": "Background"},
            )

    def post_event(
        self, model: Obj, event_type: str, reason: str, message: str, now: datetime | None = None
    ) -> None:
        """A core/v1 Event on the QuantizedModel (what `kubectl describe qm` shows)."""
        meta = model["metadata"]
        stamp = (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "QuantizedModel",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "qmo"},
            "reportingComponent": "qmo.dev/operator",
            "reportingInstance": self.instance[:128],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.resource("v1", "Event").create(body=event, namespace=meta["namespace"])
        except ApiException as err:  # an Event is never worth failing a reconcile for
            log.warning(
                "Posting event %s on %s/%s failed: %s",
                reason,
                meta["namespace"],
                meta["name"],
                err.reason,
            )
