"""The one place that talks to the Kubernetes API.

Requests go straight to the REST paths of `qmo.resources` with JSON in and out: no discovery,
no generated model classes (parsing into them cost more than the rest of a reconcile). The
official client still provides what is hard to get right: kubeconfig and in-cluster loading,
TLS, token refresh.

Writes are server-side apply with the field manager "qmo" and forced ownership: the operator
is the only writer of what it creates. Objects shared by several QuantizedModels (build Jobs,
artifact records) get each model's owner reference through a field manager of that model's
own, so server-side apply merges the references instead of one model's apply removing
another's. Every request has a timeout, so a hung connection cannot block a worker forever.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from qmo import metrics
from qmo.api.base import API_VERSION
from qmo.leader import LeaseConflict, LeaseRecord, StoredLease, record_to_spec, stored_from_object
from qmo.manifests.labels import Owner
from qmo.resources import (
    EVENTS,
    LEASES,
    NODES,
    QUANTIZED_MODELS,
    SUBJECT_ACCESS_REVIEWS,
    TOKEN_REVIEWS,
    Resource,
    resource_for,
)
from qmo.vocabulary import FIELD_MANAGER, MANAGED_SELECTOR
from qmo.wire import Obj

# What qmo applies is built from the same models that generate the CRDs and checked against
# them and the built-in schemas by the tests, so the API server need not decode it a second
# time looking for unknown or duplicate fields (its default, Warn, does that on every apply).
FIELD_VALIDATION = "Ignore"
# (connect, read) seconds for ordinary requests; watches set their own read timeout.
REQUEST_TIMEOUT = (5.0, 30.0)
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
HTTP_METHODS = {
    "GET": "GET",
    "LIST": "GET",
    "WATCH": "GET",
    "CREATE": "POST",
    "APPLY": "PATCH",
    "PATCH": "PATCH",
    "UPDATE": "PUT",
    "DELETE": "DELETE",
}
log = logging.getLogger("qmo.kube")

# Failures of the connection rather than answers of the API server: worth a retry.
TRANSIENT_ERRORS = (urllib3.exceptions.HTTPError, OSError)
__all__ = [
    "TRANSIENT_ERRORS",
    "ApiException",
    "Kube",
    "KubeLeaseClient",
    "connect",
    "owner_field_manager",
]


def connect(pool_size: int = 8, kubeconfig: str | None = None) -> Kube:
    """A client from the in-cluster service account, else from KUBECONFIG / ~/.kube/config."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            raise config.ConfigException("a kubeconfig was given")
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    # Watches hold a connection each for minutes; workers need theirs too.
    configuration.connection_pool_maxsize = pool_size
    return Kube(client.ApiClient(configuration))


def owner_field_manager(owner: Owner) -> str:
    return f"qmo-owner-{owner.uid}"


def is_refusal(err: ApiException) -> bool:
    """The API server refused the request itself (invalid, forbidden, conflicting...).

    Retrying the same request cannot help until something changes; 5xx, 429 and timeouts
    are transient instead.
    """
    return 400 <= (err.status or 0) < 500 and err.status not in (408, 429)


def namespace_terminating(err: ApiException) -> bool:
    """The namespace is being deleted: nothing new may be created in it, nor needs to be."""
    return err.status == 403 and "NamespaceTerminating" in str(err.body or "")


def server_message(err: ApiException) -> str:
    """The API server's own words for a failed request (its Status message)."""
    try:
        body = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or err.reason or f"HTTP {err.status}")


class Kube:
    """JSON over HTTP to the few resources qmo reads and writes."""

    def __init__(
        self, api_client: client.ApiClient, timeout: tuple[float, float] = REQUEST_TIMEOUT
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout  # (connect, read) seconds of every request but watches
        self.host = api_client.configuration.host.rstrip("/")
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()

    # --- transport -----------------------------------------------------------------------

    def _send(
        self,
        verb: str,
        method: str,
        resource: Resource,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> Any:
        """One request; returns the urllib3 response, raises ApiException on non-2xx."""
        headers = dict(self.api_client.default_headers)
        headers["Accept"] = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        self.api_client.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        url = self.host + path + (f"?{urlencode(query)}" if query else "")
        started = time.monotonic()
        try:
            response = self.api_client.call_api(
                method, url, header_params=headers, body=body, _request_timeout=timeout
            )
        except Exception:
            metrics.API_REQUESTS.labels(verb=verb, resource=resource.plural, code="error").inc()
            raise
        finally:  # until the response headers: a watch counts until it is established
            metrics.API_SECONDS.labels(verb=verb).observe(time.monotonic() - started)
        metrics.API_REQUESTS.labels(
            verb=verb, resource=resource.plural, code=str(response.status)
        ).inc()
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

    def request(
        self,
        verb: str,
        resource: Resource,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> Obj:
        """One request; `verb` is the API server's word for it (GET, LIST, APPLY, ...)."""
        method = HTTP_METHODS[verb]
        response = self._send(
            verb, method, resource, path, query, body, content_type, timeout or self.timeout
        )
        data = response.read()
        return dict(json.loads(data)) if data else {}

    def stream_lines(
        self, resource: Resource, path: str, query: dict[str, str], read_timeout: float
    ) -> Iterator[bytes]:
        """The lines of a streaming GET (a watch), until the server ends it."""
        response = self._send(
            "WATCH", "GET", resource, path, query, timeout=(5.0, read_timeout)
        ).response
        pending = b""
        try:
            for chunk in response.stream(amt=None, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                yield from (line for line in lines if line.strip())
            if pending.strip():
                yield pending
        finally:
            response.release_conn()

    # --- reads ---------------------------------------------------------------------------

    def serves(self, resource: Resource) -> bool:
        """Whether the API server serves `resource` (API discovery; any authenticated user may
        read it). False when its group/version is not installed."""
        path = f"/apis/{resource.api_version}"
        try:
            listing = self.request("GET", resource, path)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return any(r.get("name") == resource.plural for r in listing.get("resources") or [])

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        resource = resource_for(api_version, kind)
        try:
            return self.request("GET", resource, resource.path(namespace, name))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def read_live(self, obj: Obj) -> Obj | None:
        """The live object named as `obj`, by a list of that one name: qmo holds `list` on
        every kind it writes and needs no `get` (which would show nothing a list does not).
        The API server reads a list whose field selector is one `metadata.name` as that one
        key (the generic registry's `MatchesSingle`), so it costs what a GET does."""
        resource = resource_for(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        query = {"fieldSelector": f"metadata.name={meta['name']}"}
        page = self.request("LIST", resource, resource.path(meta.get("namespace")), query)
        items = page.get("items") or []
        return items[0] if items else None

    def list_page(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None = None,
        limit: int = 500,
        continue_token: str | None = None,
    ) -> Obj:
        query = {"limit": str(limit)}
        if label_selector:
            query["labelSelector"] = label_selector
        if continue_token:
            query["continue"] = continue_token
        return self.request("LIST", resource, resource.path(namespace), query)

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Obj]:
        """Every object of a kind (paged), each with its apiVersion and kind set."""
        resource = resource_for(api_version, kind)
        items: list[Obj] = []
        token: str | None = None
        while True:
            page = self.list_page(resource, namespace, label_selector, continue_token=token)
            for item in page.get("items") or []:
                items.append({"apiVersion": api_version, "kind": kind, **item})
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def get_model(self, namespace: str, name: str) -> Obj | None:
        return self.get(API_VERSION, "QuantizedModel", name, namespace)

    def list_nodes(self) -> list[Obj]:
        return self.list_objects(NODES.api_version, NODES.kind)

    def list_managed(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Obj]:
        return self.list_objects(api_version, kind, namespace, f"{MANAGED_SELECTOR},{selector}")

    # --- writes --------------------------------------------------------------------------

    def apply(self, obj: Obj, field_manager: str = FIELD_MANAGER) -> Obj:
        """Server-side apply `obj`; returns the object as stored."""
        resource = resource_for(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return self.request(
            "APPLY",
            resource,
            resource.path(meta.get("namespace"), meta["name"]),
            {"fieldManager": field_manager, "force": "true", "fieldValidation": FIELD_VALIDATION},
            obj,
            APPLY_PATCH,
        )

    def add_owner(self, obj: Obj, owner: Owner) -> Obj | None:
        """Add `owner` to a shared object's ownerReferences, keeping every other owner's.

        Returns the stored object, or None when the reference was there already.
        """
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        if any(ref.get("uid") == owner.uid for ref in refs):
            return None
        return self.apply(
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

    def apply_report_status(self, namespace: str, name: str, status: Obj) -> Obj:
        return self.apply_status(namespace, name, status, kind="QualityReport")

    def apply_status(
        self, namespace: str, name: str, status: Obj, kind: str = "QuantizedModel"
    ) -> Obj:
        """Server-side apply of the status subresource; returns the whole stored object."""
        resource = resource_for(API_VERSION, kind)
        return self.request(
            "APPLY",
            resource,
            resource.path(namespace, name, "status"),
            {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": FIELD_VALIDATION},
            {
                "apiVersion": API_VERSION,
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace},
                "status": status,
            },
            APPLY_PATCH,
        )

    def patch_status(
        self, namespace: str, name: str, status: Obj, kind: str = "QuantizedModel"
    ) -> Obj:
        """JSON merge patch of the status subresource (fields absent from `status` stay)."""
        resource = resource_for(API_VERSION, kind)
        return self.request(
            "PATCH",
            resource,
            resource.path(namespace, name, "status"),
            {"fieldManager": FIELD_MANAGER},
            {"status": status},
            MERGE_PATCH,
        )

    def delete(self, obj: Obj) -> None:
        resource = resource_for(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        try:
            self.request(
                "DELETE",
                resource,
                resource.path(meta.get("namespace"), meta["name"]),
                body={"propagationPolicy": "Background"},
                content_type="application/json",
            )
        except ApiException as err:
            if err.status != 404:
                raise

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
                "kind": QUANTIZED_MODELS.kind,
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
            self.request(
                "CREATE", EVENTS, EVENTS.path(meta["namespace"]), body=event,
                content_type="application/json",
            )  # fmt: skip
        except (
            ApiException,
            *TRANSIENT_ERRORS,
        ) as err:  # an Event is never worth failing a reconcile
            log.warning(
                "Posting event %s on %s/%s failed: %s",
                reason,
                meta["namespace"],
                meta["name"],
                getattr(err, "reason", err),
            )


class KubeLeaseClient:
    """The leader election's Lease through this client: get, create and update of one Lease
    (the RBAC it needs). A write that loses a race raises `leader.LeaseConflict`."""

    def __init__(self, kube: Kube, namespace: str, name: str, timeout: float) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.timeout = (min(5.0, timeout), timeout)

    def get(self) -> StoredLease | None:
        try:
            found = self.kube.request(
                "GET", LEASES, LEASES.path(self.namespace, self.name), timeout=self.timeout
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return stored_from_object(found)

    def create(self, record: LeaseRecord) -> StoredLease:
        return self._write("CREATE", LEASES.path(self.namespace), record, None)

    def update(self, record: LeaseRecord, resource_version: str) -> StoredLease:
        path = LEASES.path(self.namespace, self.name)
        return self._write("UPDATE", path, record, resource_version)

    def _write(
        self, verb: str, path: str, record: LeaseRecord, resource_version: str | None
    ) -> StoredLease:
        metadata: Obj = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        body = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": metadata,
            "spec": record_to_spec(record),
        }
        try:
            stored = self.kube.request(
                verb, LEASES, path, body=body, content_type="application/json",
                timeout=self.timeout,
            )  # fmt: skip
        except ApiException as err:
            if err.status == 409:
                raise LeaseConflict(str(err.reason)) from err
            raise
        return stored_from_object(stored)


class KubeReviews:
    """The API server's judgement of a bearer token and of what its holder may do: a
    TokenReview, then a SubjectAccessReview (what kube-rbac-proxy and controller-runtime's
    secure metrics ask). Each needs only `create` on its review kind."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def user_of(self, token: str) -> Obj | None:
        """The authenticated user (username, uid, groups, extra), or None."""
        review = {
            "apiVersion": TOKEN_REVIEWS.api_version,
            "kind": TOKEN_REVIEWS.kind,
            "spec": {"token": token},
        }
        found = self.kube.request(
            "CREATE", TOKEN_REVIEWS, TOKEN_REVIEWS.path(), body=review,
            content_type="application/json",
        )  # fmt: skip
        status = found.get("status") or {}
        user = status.get("user")
        return dict(user) if status.get("authenticated") and isinstance(user, dict) else None

    def may(self, user: Obj, verb: str, path: str) -> bool:
        """Whether `user` may `verb` the non-resource URL `path`."""
        review = {
            "apiVersion": SUBJECT_ACCESS_REVIEWS.api_version,
            "kind": SUBJECT_ACCESS_REVIEWS.kind,
            "spec": {
                "user": user.get("username", ""),
                "uid": user.get("uid", ""),
                "groups": user.get("groups") or [],
                "extra": user.get("extra") or {},
                "nonResourceAttributes": {"path": path, "verb": verb},
            },
        }
        found = self.kube.request(
            "CREATE", SUBJECT_ACCESS_REVIEWS, SUBJECT_ACCESS_REVIEWS.path(), body=review,
            content_type="application/json",
        )  # fmt: skip
        return bool((found.get("status") or {}).get("allowed"))
