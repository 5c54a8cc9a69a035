"""An in-memory Kubernetes for whole reconciles: `FakeCluster`, used by tests/unit/test_reconcile.

One object plays every part `qmo.controller.reconcile.reconcile` talks to:
- the Kube port: `apply`, `add_owner`, `apply_status`, `apply_report_status`, `delete`,
  `post_event`;
- the watch-fed cache: the ClusterReader lookups answered by `qmo.controller.view.StaticReader`
  over the live objects (so through the real projections and indexes, and only with what the
  informers' label selectors let in), `routes_available`, `observe_write`, `observe_delete`;
- the EventSink: `record`.
Tests move the world on as the kubelet and kube-controller-manager would (`add_node`,
`start_build`, `finish_build`, `finish_eval`, `roll_out`), act as people (`create_model`,
`update_model`, `edit`, `add_report`), restart the operator (`restart_operator`), inject API
failures (`refuse`, `time_out`, `clear`) and assert on the live objects (`object`,
`objects`), the Events (`events`, `reasons`), the requests by verb and kind (`requests`,
`count`, `writes`) and `unobserved_writes` (writes the cache was not told of).

Server-side apply is modelled as each field manager's last applied intent, merged in the
order of the applies (the last one wins a conflict, as `force=true` does; ownerReferences
merge by uid); status is a subresource only status writes change. Numbers are checked as the
API server decodes them: a non-finite float fails the write (500) and an integer beyond int64
is refused (422), so a status qmo could never write fails here too. Not modelled: cascading
deletion (call `collect_garbage`), admission, schema validation, defaulting, and watch
delays (the cache sees every write at once).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from qmo.api.base import API_VERSION
from qmo.api.buildcontract import ARTIFACTS_DIR, BuildResult
from qmo.builder.artifact import termination_message
from qmo.controller.cache import WATCHED
from qmo.controller.drift import DriftLedger
from qmo.controller.projections import DRIFTED
from qmo.controller.view import JOB_NAME_LABEL, StaticReader
from qmo.gpu import GpuInventory
from qmo.kube import FIELD_MANAGER, owner_field_manager
from qmo.manifests.build import BUILD_CONTAINER
from qmo.manifests.evaluation import EVAL_CONTAINER
from qmo.manifests.labels import Owner
from qmo.resources import (
    CLAIMS,
    DEPLOYMENTS,
    HTTP_ROUTES,
    JOBS,
    NODES,
    PODS,
    QUALITY_REPORTS,
    QUANTIZED_MODELS,
    SCALED_OBJECTS,
    resource_for,
)
from qmo.vocabulary import REVISION_ANNOTATION, BuildState
from qmo.wire import Obj
from tests.support.builders import gpu_node

Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" for Nodes
INT64 = range(-(2**63), 2**63)

NAMESPACE = "models"
USER = "kubectl"  # the field manager of what a person creates or edits
CONTROLLERS = "kube-controller-manager"
KUBELET = "kubelet"
# Kinds whose spec changes bump metadata.generation (their API strategies do).
GENERATION_KINDS = frozenset(
    {DEPLOYMENTS.kind, JOBS.kind, QUANTIZED_MODELS.kind, QUALITY_REPORTS.kind, HTTP_ROUTES.kind}
)
# Verbs as the fake counts them.
APPLY, STATUS, DELETE, EVENT, READ = "apply", "status", "delete", "event", "read"
WRITES = (APPLY, STATUS, DELETE)
REASON_PHRASES = {
    403: ("Forbidden", "Forbidden"),
    404: ("Not Found", "NotFound"),
    409: ("Conflict", "Conflict"),
    422: ("Unprocessable Entity", "Invalid"),
    429: ("Too Many Requests", "TooManyRequests"),
    500: ("Internal Server Error", "InternalError"),
}


class Clock:
    """reconcile's clock: a fixed time that tests (and the fake) move on explicitly."""

    def __init__(self, start: datetime = datetime(2025, 1, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def stamp(self) -> str:
        return self.now.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Request:
    """One request the operator made, and how it ended (ok, refused, timeout)."""

    verb: str
    kind: str
    name: str
    outcome: str = "ok"


@dataclass(frozen=True)
class PostedEvent:
    model: str
    type: str
    reason: str
    message: str
    time: datetime


@dataclass
class _Fault:
    kind: str
    name: str | None
    verbs: frozenset[str]
    make: Callable[[str, str, str], BaseException]  # (verb, kind, name) -> the error

    def matches(self, verb: str, kind: str, name: str) -> bool:
        return verb in self.verbs and kind == self.kind and (self.name is None or name == self.name)


@dataclass
class _Stored:
    """One object: each field manager's intent, the status subresource, the system fields."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    created: str
    resource_version: int
    generation: int | None
    intents: dict[str, Obj] = field(default_factory=dict)  # manager -> applied, in apply order
    status: dict[str, Obj] = field(default_factory=dict)  # manager -> status written
    # manager -> when it last wrote the status (managedFields' time of the status subresource)
    status_times: dict[str, str] = field(default_factory=dict)

    def live(self) -> Obj:
        merged: Obj = {}
        for intent in self.intents.values():
            _merge(merged, intent)
        meta = merged.setdefault("metadata", {})
        meta.update(
            name=self.name,
            uid=self.uid,
            creationTimestamp=self.created,
            resourceVersion=str(self.resource_version),
        )
        if self.namespace:
            meta["namespace"] = self.namespace
        if self.generation is not None:
            meta["generation"] = self.generation
        if self.status_times:
            meta["managedFields"] = [
                {"manager": m, "operation": "Apply", "subresource": "status", "time": t}
                for m, t in self.status_times.items()
            ]
        merged["apiVersion"], merged["kind"] = self.api_version, self.kind
        status: Obj = {}
        for written in self.status.values():
            _merge(status, written)
        if status:
            merged["status"] = status
        return merged


def _merge(into: Obj, patch: Obj) -> None:
    """Server-side apply's merge, as far as qmo needs it: maps merge, ownerReferences merge
    by uid, every other list and scalar is replaced."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif key == "ownerReferences" and isinstance(into.get(key), list):
            by_uid = {ref.get("uid"): ref for ref in into[key]}
            by_uid.update({ref.get("uid"): copy.deepcopy(ref) for ref in value})
            into[key] = list(by_uid.values())
        else:
            into[key] = copy.deepcopy(value)


def _selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Label selectors as the informers use them: `a=b` and `c in (d,e)` terms, by commas."""
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector or ""):
        key, is_set, values = term.partition(" in ")
        if is_set:
            if labels.get(key.strip()) not in values.strip(" ()").split(","):
                return False
        elif term.strip():
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def api_error(status: int, message: str, *, kind: str = "", name: str = "") -> ApiException:
    """An ApiException as the official client raises it, with the API server's Status body."""
    phrase, reason = REASON_PHRASES.get(status, ("Error", "Unknown"))
    err = ApiException(status=status, reason=phrase)
    err.body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": {"name": name, "kind": kind.lower() + "s"} if kind else {},
            "code": status,
        }
    )
    err.headers = {"Content-Type": "application/json"}
    return err


def _undecodable(value: Any, path: str = "") -> tuple[int, str] | None:
    """Why the API server cannot take a number in `value`, as (status code, its words), or
    None: JSON has no NaN or infinity, and an integer beyond int64 decodes as a float, which
    an integer field refuses."""
    if isinstance(value, dict):
        found = (_undecodable(v, f"{path}.{k}".lstrip(".")) for k, v in value.items())
    elif isinstance(value, list):
        found = (_undecodable(v, f"{path}[{i}]") for i, v in enumerate(value))
    elif isinstance(value, float) and not math.isfinite(value):
        return 500, f"{path}: json: unsupported value: {value}"
    elif isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        return 422, f'{path}: Invalid value: "number": {path} in body must be of type integer'
    else:
        return None
    return next((why for why in found if why is not None), None)


def score(
    benchmark: str, baseline: float, candidate: float, *, higher_is_better: bool = True
) -> Obj:
    """One benchmark result of a QualityReport, in wire form."""
    result: Obj = {"benchmark": benchmark, "baselineScore": baseline, "candidateScore": candidate}
    if not higher_is_better:
        result["higherIsBetter"] = False
    return result


def speed_sample(tokens_per_second: float, concurrency: int = 8) -> Obj:
    """One speed measurement of a QualityReport's spec.speed, in wire form."""
    return {
        "concurrency": concurrency, "requests": 32, "ttftP50Seconds": 0.05,
        "ttftP95Seconds": 0.09, "itlP50Seconds": 0.01, "itlP95Seconds": 0.02,
        "outputTokensPerSecond": tokens_per_second,
    }  # fmt: skip


class FakeCluster:
    """The Kube port, the cluster cache and the EventSink of one reconcile, in memory."""

    def __init__(self, clock: Clock | None = None, namespace: str = NAMESPACE) -> None:
        self.clock = clock or Clock()
        self.namespace = namespace
        self.gateway_api = False  # whether HTTPRoutes are served (routes_available)
        self.keda = False  # whether KEDA's ScaledObjects are served (keda_installed)
        self._scaled_objects_watched = False
        # Whether the operator's HTTPRoute informer runs: started by the first
        # routes_available() that finds the API, as ClusterCache does; gone on a restart.
        self._routes_watched = False
        self.requests: list[Request] = []
        self.events: list[PostedEvent] = []
        # The operator's writes its cache has not been told of (observe_write/observe_delete).
        self._unobserved: dict[Key, str] = {}
        self._objects: dict[Key, _Stored] = {}
        self._faults: list[_Fault] = []
        self._version = 1000
        self._uids = 0
        self._reader: StaticReader | None = None
        self._drift = DriftLedger()  # Deployments, as the informer tracks them

    # --- the store -----------------------------------------------------------------------

    def _key(self, kind: str, namespace: str | None, name: str) -> Key:
        return (kind, namespace or "", name)

    def _bump(self, stored: _Stored) -> None:
        self._version += 1
        stored.resource_version = self._version
        self._reader = None

    def _write(
        self,
        obj: Obj,
        manager: str,
        *,
        status: Obj | None = None,
        replace: bool = True,
        must_exist: bool = False,
    ) -> Obj:
        """Apply `obj` as `manager` (its intent replaces that manager's previous one, or
        merges into it with replace=False); `status` writes the status subresource instead."""
        meta = obj["metadata"]
        key = self._key(obj["kind"], meta.get("namespace"), meta["name"])
        stored = self._objects.get(key)
        if stored is None:
            if must_exist:
                raise api_error(
                    404,
                    f'{obj["kind"].lower()}s "{meta["name"]}" not found',
                    kind=obj["kind"],
                    name=meta["name"],
                )
            self._uids += 1
            stored = _Stored(
                api_version=obj["apiVersion"],
                kind=obj["kind"],
                namespace=meta.get("namespace") or "",
                name=meta["name"],
                uid=f"uid-{self._uids:04d}",
                created=self.clock.stamp(),
                resource_version=0,
                generation=1 if obj["kind"] in GENERATION_KINDS else None,
            )
            self._objects[key] = stored
        before = stored.live()
        if status is not None:
            intents, intent = stored.status, copy.deepcopy(status)
        else:
            intents, intent = stored.intents, copy.deepcopy(obj)
            intent.pop("status", None)  # a subresource: ignored by writes of the object
            for system in ("uid", "resourceVersion", "generation", "creationTimestamp"):
                intent["metadata"].pop(system, None)
        previous = intents.pop(manager, None)
        if previous is not None and not replace:
            _merge(previous, intent)
            intent = previous
        intents[manager] = intent  # the last writer goes last: it wins conflicts
        if status is not None and intent != previous:
            stored.status_times[manager] = self.clock.stamp()
        after = stored.live()
        if stored.resource_version == 0 or _without_version(after) != _without_version(before):
            if (
                stored.generation is not None
                and stored.resource_version != 0
                and after.get("spec") != before.get("spec")
            ):
                stored.generation += 1
            self._bump(stored)
        return stored.live()

    def _remove(self, kind: str, namespace: str | None, name: str) -> bool:
        key = self._key(kind, namespace, name)
        if self._objects.pop(key, None) is None:
            return False
        self._drift.forget(key)
        self._reader = None
        return True

    def object(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The whole live object (not the cache's projection), or None."""
        ns = "" if kind == NODES.kind else (namespace or self.namespace)
        stored = self._objects.get(self._key(kind, ns, name))
        return stored.live() if stored is not None else None

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Every live object of `kind`, sorted by name."""
        found = [
            s.live()
            for (k, ns, _), s in self._objects.items()
            if k == kind and (namespace is None or ns == namespace)
        ]
        return sorted(found, key=lambda o: str(o["metadata"]["name"]))

    def names(self, kind: str) -> list[str]:
        return [o["metadata"]["name"] for o in self.objects(kind)]

    # --- requests and faults -------------------------------------------------------------

    def _request(self, verb: str, kind: str, name: str) -> None:
        for fault in self._faults:
            if fault.matches(verb, kind, name):
                err = fault.make(verb, kind, name)
                outcome = "timeout" if not isinstance(err, ApiException) else "refused"
                self.requests.append(Request(verb, kind, name, outcome))
                raise err
        self.requests.append(Request(verb, kind, name))

    def count(self, verb: str | None = None, kind: str | None = None) -> int:
        """Requests made (refused and timed out ones too), by verb and kind."""
        return sum(
            1
            for r in self.requests
            if (verb is None or r.verb == verb) and (kind is None or r.kind == kind)
        )

    def writes(self) -> list[Request]:
        """The write requests: applies, status writes and deletes (not Events)."""
        return [r for r in self.requests if r.verb in WRITES]

    def forget_requests(self) -> None:
        self.requests.clear()

    def refuse(
        self,
        kind: str,
        name: str | None = None,
        status: int = 422,
        message: str | None = None,
        verbs: Collection[str] = WRITES,
    ) -> None:
        """Matching writes fail with an API server refusal (a Status body) until `clear`."""

        def make(verb: str, kind_: str, name_: str) -> BaseException:
            group = self._api_version(kind_).rpartition("/")[0]
            qualified = f"{kind_}.{group}" if group else kind_
            text = message or f'{qualified} "{name_}" is invalid: refused by the fake API server'
            return api_error(status, text, kind=kind_, name=name_)

        self._faults.append(_Fault(kind, name, frozenset(verbs), make))

    def time_out(self, kind: str, name: str | None = None, verbs: Collection[str] = WRITES) -> None:
        """Matching writes time out (a transient error, no answer) until `clear`."""

        def make(verb: str, kind_: str, name_: str) -> BaseException:
            path = resource_for(self._api_version(kind_), kind_).path(self.namespace, name_)
            return urllib3.exceptions.ReadTimeoutError(
                None,  # type: ignore[arg-type]
                path,
                "Read timed out. (read timeout=30.0)",
            )

        self._faults.append(_Fault(kind, name, frozenset(verbs), make))

    def clear(self, kind: str | None = None) -> None:
        self._faults = [f for f in self._faults if kind is not None and f.kind != kind]

    def _api_version(self, kind: str) -> str:
        for resource, _ in WATCHED:
            if resource.kind == kind:
                return resource.api_version
        optional = {r.kind: r.api_version for r in (HTTP_ROUTES, SCALED_OBJECTS)}
        return optional.get(kind, "v1")

    # --- the Kube port -------------------------------------------------------------------

    def _decodable(self, obj: Obj, kind: str, name: str) -> None:
        """Refuse the request just counted if the API server could not decode `obj`."""
        why = _undecodable(obj)
        if why is not None:
            status, detail = why
            self.requests[-1] = Request(self.requests[-1].verb, kind, name, "refused")
            group = self._api_version(kind).rpartition("/")[0]
            qualified = f"{kind}.{group}" if group else kind
            text = f'{qualified} "{name}" is invalid: {detail}'
            raise api_error(status, text, kind=kind, name=name)

    def apply(self, obj: Obj, field_manager: str = FIELD_MANAGER) -> Obj:
        resource_for(obj["apiVersion"], obj["kind"])  # a kind qmo may not write fails here
        self._request(APPLY, obj["kind"], obj["metadata"]["name"])
        self._decodable(obj, obj["kind"], obj["metadata"]["name"])
        return self._written(self._write(obj, field_manager))

    def read_live(self, obj: Obj) -> Obj | None:
        meta = obj["metadata"]
        self._request(READ, obj["kind"], meta["name"])
        return self.object(obj["kind"], meta["name"], meta.get("namespace"))

    def add_owner(self, obj: Obj, owner: Owner) -> Obj | None:
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        if any(ref.get("uid") == owner.uid for ref in refs):
            return None  # as Kube.add_owner: judged on the object the caller has
        partial = {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "metadata": {
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"]["namespace"],
                "ownerReferences": [owner.shared_reference()],
            },
        }
        return self.apply(partial, owner_field_manager(owner))

    def apply_status(
        self, namespace: str, name: str, status: Obj, kind: str = QUANTIZED_MODELS.kind
    ) -> Obj:
        self._request(STATUS, kind, name)
        self._decodable({"status": status}, kind, name)
        target = {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
        }
        return self._written(self._write(target, FIELD_MANAGER, status=status, must_exist=True))

    def apply_report_status(self, namespace: str, name: str, status: Obj) -> Obj:
        return self.apply_status(namespace, name, status, kind=QUALITY_REPORTS.kind)

    def delete(self, obj: Obj) -> None:
        meta = obj["metadata"]
        self._request(DELETE, obj["kind"], meta["name"])
        self._remove(obj["kind"], meta.get("namespace"), meta["name"])  # a 404 is no error
        self._unobserved[self._key(obj["kind"], meta.get("namespace"), meta["name"])] = "deleted"

    def _written(self, stored: Obj) -> Obj:
        key = self._key(
            stored["kind"], stored["metadata"].get("namespace"), stored["metadata"]["name"]
        )
        self._unobserved[key] = stored["metadata"]["resourceVersion"]
        return stored

    def unobserved_writes(self) -> list[str]:
        """'Kind/name' of every write of the operator that it did not record in its cache
        (observe_write with the stored object, observe_delete), so the next reconcile would
        not see it until the watch event came."""
        return sorted(f"{kind}/{name}" for kind, _, name in self._unobserved)

    def post_event(
        self, model: Obj, event_type: str, reason: str, message: str, now: datetime | None = None
    ) -> None:
        self.requests.append(Request(EVENT, "Event", model["metadata"]["name"]))
        self.events.append(
            PostedEvent(
                model["metadata"]["name"], event_type, reason, message[:1024], now or self.clock()
            )
        )

    def serves(self, resource: Any) -> bool:
        if resource.kind == SCALED_OBJECTS.kind:
            return self.keda
        return resource.kind != HTTP_ROUTES.kind or self.gateway_api

    # --- the EventSink -------------------------------------------------------------------

    def record(self, model: Obj, event_type: str, reason: str, message: str, now: datetime) -> None:
        self.post_event(model, event_type, reason, message, now)

    def reasons(self, event_type: str | None = None) -> list[str]:
        """The reasons of the Events posted so far, in order."""
        return [e.reason for e in self.events if event_type is None or e.type == event_type]

    def forget_events(self) -> None:
        self.events.clear()

    # --- the cache (ClusterReader and the operator's own writes) -------------------------

    def _visible(self) -> Iterator[Obj]:
        """What the informers hold: the watched kinds, through their label selectors."""
        selectors = {resource.kind: selector for resource, selector in WATCHED}
        selectors[NODES.kind] = None
        if self.gateway_api and self._routes_watched:
            selectors[HTTP_ROUTES.kind] = selectors[DEPLOYMENTS.kind]
        if self.keda and self._scaled_objects_watched:
            selectors[SCALED_OBJECTS.kind] = selectors[DEPLOYMENTS.kind]
        for key, stored in self._objects.items():
            kind = key[0]
            if kind not in selectors:
                continue
            obj = stored.live()
            if not _selector_matches(selectors[kind], obj["metadata"].get("labels") or {}):
                continue
            # The informer marks a spec someone else changed after qmo's last apply.
            if kind == DEPLOYMENTS.kind and self._drift.drifted(
                key, obj["metadata"].get("generation"), self._drift.digest_if_moved(key, obj)
            ):
                obj["metadata"][DRIFTED] = True
            yield obj

    def _view(self) -> StaticReader:
        if self._reader is None:
            self._reader = StaticReader(list(self._visible()))
        return self._reader

    def model(self, namespace: str, name: str) -> Obj | None:
        return self._view().model(namespace, name)

    def inventory(self) -> GpuInventory:
        return self._view().inventory()

    def build_job(self, namespace: str, cache_key: str) -> Obj | None:
        return self._view().build_job(namespace, cache_key)

    def job_pods(self, namespace: str, job_name: str) -> list[Obj]:
        return self._view().job_pods(namespace, job_name)

    def artifact_record(self, namespace: str, cache_key: str) -> Obj | None:
        return self._view().artifact_record(namespace, cache_key)

    def children(self, kind: str, namespace: str, model: str) -> list[Obj]:
        return self._view().children(kind, namespace, model)

    def reports(self, namespace: str, model: str) -> list[Obj]:
        return self._view().reports(namespace, model)

    def claims(self, namespace: str) -> frozenset[str]:
        return self._view().claims(namespace)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._view().get(kind, namespace, name)

    def routes_on(self, gateway: tuple[str, str]) -> list[Obj]:
        return self._view().routes_on(gateway)

    def routes_available(self) -> bool:
        if self.gateway_api and not self._routes_watched:
            self._routes_watched = True  # the informer starts; here it lists at once
            self._reader = None
        return self.gateway_api

    def keda_installed(self) -> bool:
        if self.keda and not self._scaled_objects_watched:
            self._scaled_objects_watched = True
            self._reader = None
        return self.keda

    def gpus_held(self, gpu_class: str) -> int:
        return self._view().gpus_held(gpu_class)

    def serving_pods(self, namespace: str, model: str, variant: str, track: str) -> list[Obj]:
        return self._view().serving_pods(namespace, model, variant, track)

    def restart_operator(self) -> None:
        """A new operator process: its HTTPRoute informer starts only when a reconcile asks
        routes_available (every other informer starts with it)."""
        self._routes_watched = False
        self._scaled_objects_watched = False
        self._reader = None

    def observe_write(self, stored: Obj) -> None:
        meta = stored.get("metadata") or {}
        key = self._key(stored.get("kind", ""), meta.get("namespace"), meta.get("name", ""))
        if self._unobserved.get(key) == str(meta.get("resourceVersion")):
            del self._unobserved[key]
        if key[0] == DEPLOYMENTS.kind:
            self._drift.applied(key, stored)
            self._reader = None

    def observe_delete(self, obj: Obj) -> None:
        meta = obj["metadata"]
        key = self._key(obj["kind"], meta.get("namespace"), meta["name"])
        if self._unobserved.get(key) == "deleted":
            del self._unobserved[key]

    # --- people: models, reports, edits --------------------------------------------------

    def create_model(
        self,
        spec: Obj,
        name: str = "llama",
        namespace: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Obj:
        meta: Obj = {"name": name, "namespace": namespace or self.namespace}
        if annotations:
            meta["annotations"] = dict(annotations)
        body = {"apiVersion": API_VERSION, "kind": QUANTIZED_MODELS.kind, "metadata": meta}
        return self._write({**body, "spec": copy.deepcopy(spec)}, USER)

    def update_model(
        self,
        name: str = "llama",
        spec: Obj | None = None,
        annotations: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> Obj:
        """Replace the model's spec and/or add annotations, as `kubectl apply` would."""
        stored = self._objects.get(
            self._key(QUANTIZED_MODELS.kind, namespace or self.namespace, name)
        )
        assert stored is not None, f"no QuantizedModel {name}"
        intent = copy.deepcopy(stored.intents[USER])
        if spec is not None:
            intent["spec"] = copy.deepcopy(spec)
        if annotations:
            intent["metadata"].setdefault("annotations", {}).update(annotations)
        return self._write(intent, USER)

    def delete_model(self, name: str = "llama", namespace: str | None = None) -> None:
        """Delete the model only; its children stay until `collect_garbage`."""
        self._remove(QUANTIZED_MODELS.kind, namespace or self.namespace, name)

    def collect_garbage(self) -> list[str]:
        """What the garbage collector does: remove every object all of whose owners are gone.
        Returns 'Kind/name' of what it removed."""
        uids = {s.uid for s in self._objects.values()}
        removed = []
        for key, stored in list(self._objects.items()):
            refs = stored.live()["metadata"].get("ownerReferences") or []
            if refs and not any(ref.get("uid") in uids for ref in refs):
                self._remove(*key)
                removed.append(f"{key[0]}/{key[2]}")
        return removed

    def put(self, obj: Obj, manager: str = USER) -> Obj:
        """Someone else creates (or replaces) an object: kubectl, another controller."""
        return self._write(copy.deepcopy(obj), manager)

    def edit(self, kind: str, name: str, patch: Obj, manager: str = USER) -> Obj:
        """Someone else changes an object (kubectl edit, another controller): `patch` merges
        into what `manager` set before."""
        current = self.object(kind, name)
        assert current is not None, f"no {kind} {name}"
        body = {
            "apiVersion": current["apiVersion"],
            "kind": kind,
            "metadata": {"name": name, "namespace": current["metadata"].get("namespace", "")},
        }
        _merge(body, copy.deepcopy(patch))
        return self._write(body, manager, replace=False)

    def add_report(
        self,
        model: str,
        variant: str,
        cache_key: str,
        results: list[Obj],
        *,
        name: str | None = None,
        namespace: str | None = None,
        speed: Obj | None = None,
    ) -> str:
        """A QualityReport, as an evaluation system writes it (`speed`: its spec.speed);
        returns its name."""
        name = name or f"{model}-{variant}-{cache_key[:8]}"
        spec: Obj = {
            "modelRef": {"name": model},
            "variant": variant,
            "cacheKey": cache_key,
            "source": "tests",
            "results": copy.deepcopy(results),
        }
        if speed is not None:
            spec["speed"] = copy.deepcopy(speed)
        self._write(
            {
                "apiVersion": API_VERSION,
                "kind": QUALITY_REPORTS.kind,
                "metadata": {"name": name, "namespace": namespace or self.namespace},
                "spec": spec,
            },
            USER,
        )
        return name

    def add_claim(self, name: str = "qmo-engines", namespace: str | None = None) -> Obj:
        return self._write(
            {
                "apiVersion": CLAIMS.api_version,
                "kind": CLAIMS.kind,
                "metadata": {"name": name, "namespace": namespace or self.namespace},
                "spec": {"accessModes": ["ReadWriteMany"]},
            },
            USER,
        )

    # --- the kubelet and the controllers -------------------------------------------------

    def add_node(self, kind: str = "h100", name: str | None = None, **options: Any) -> Obj:
        """A GPU node as GPU Feature Discovery labels it (see builders.gpu_node)."""
        node = gpu_node(kind, name, **options)
        status = node.pop("status")
        self._write(node, KUBELET)
        return self._write(node, KUBELET, status=status)

    def remove_node(self, name: str) -> None:
        self._remove(NODES.kind, "", name)

    def _job(self, job_name_or_key: str) -> Obj:
        for job in self.objects(JOBS.kind):
            annotations = job["metadata"].get("annotations") or {}
            if job_name_or_key in (job["metadata"]["name"], annotations.get(REVISION_ANNOTATION)):
                return job
        raise AssertionError(
            f"no Job named or building {job_name_or_key}; Jobs: {self.names(JOBS.kind)}"
        )

    def start_build(self, job_name_or_key: str) -> Obj:
        """The Job controller starts the build's pod; the kubelet runs it."""
        job = self._job(job_name_or_key)
        self._write(job, CONTROLLERS, status={"active": 1, "startTime": self.clock.stamp()})
        running = {"running": {"startedAt": self.clock.stamp()}}
        self._pod(
            job,
            {
                "phase": "Running",
                "containerStatuses": [{"name": BUILD_CONTAINER, "state": running}],
            },
        )
        return job

    def leave_build_unschedulable(self, job_name_or_key: str) -> Obj:
        """The scheduler finds no room (GPUs) for the build's pod: it stays Pending."""
        job = self._job(job_name_or_key)
        unschedulable = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        }
        return self._pod(job, {"phase": "Pending", "conditions": [unschedulable]})

    def finish_build(
        self,
        job_name_or_key: str,
        succeeded: bool = True,
        result: BuildResult | None = None,
    ) -> Obj:
        """The build pod ends with the builder's termination message (a BuildResult), and the
        Job controller marks the Job Complete or Failed. Returns the Job."""
        job = self._job(job_name_or_key)
        key = job["metadata"]["annotations"][REVISION_ANNOTATION]
        now = self.clock.stamp()
        if result is None:
            result = (
                BuildResult(
                    cache_key=key,
                    state=BuildState.SUCCEEDED,
                    artifact_path=f"{ARTIFACTS_DIR}/{key}",
                    reason="Built",
                )
                if succeeded
                else BuildResult(
                    cache_key=key,
                    state=BuildState.FAILED,
                    reason="BuildFailed",
                    message="the builder failed",
                )
            )
        terminated = {
            "exitCode": 0 if succeeded else 1,
            "reason": "Completed" if succeeded else "Error",
            "message": termination_message(result),
            "startedAt": now,
            "finishedAt": now,
        }
        self._pod(
            job,
            {
                "phase": "Succeeded" if succeeded else "Failed",
                "containerStatuses": [
                    {"name": BUILD_CONTAINER, "state": {"terminated": terminated}}
                ],
            },
        )
        if succeeded:
            conditions = [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "lastTransitionTime": now},
            ]
            counts = {"succeeded": 1}
        else:
            failed = {
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": now,
            }
            conditions = [
                {"type": "FailureTarget", "status": "True", **failed},
                {"type": "Failed", "status": "True", **failed},
            ]
            counts = {"failed": 1}
        status = {"conditions": conditions, "startTime": now, "completionTime": now, **counts}
        return self._write(job, CONTROLLERS, status=status)

    def finish_job(self, job_name: str, succeeded: bool = True) -> Obj:
        """Any Job (an eval Job) completes or fails, without a termination message."""
        job = self._job(job_name)
        now = self.clock.stamp()
        condition = {
            "type": "Complete" if succeeded else "Failed",
            "status": "True",
            "lastTransitionTime": now,
        }
        if not succeeded:
            condition.update(reason="BackoffLimitExceeded", message="Job has reached the limit")
        return self._write(job, CONTROLLERS, status={"conditions": [condition]})

    def finish_eval(self, job_name: str, message: str, exit_code: int = 0) -> Obj:
        """The eval pod's evaluator ends with `message` as its termination message (qmo-eval's
        scores, or with FallbackToLogsOnError a failed run's log tail), and the Job controller
        marks the Job Complete (exit code 0) or, its retries spent, Failed. Returns the Job."""
        job = self._job(job_name)
        now = self.clock.stamp()
        terminated = {"exitCode": exit_code, "message": message, "finishedAt": now}
        self._pod(
            job,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {"name": EVAL_CONTAINER, "state": {"terminated": terminated}}
                ],
            },
        )
        return self.finish_job(job_name, succeeded=exit_code == 0)

    def _pod(self, job: Obj, status: Obj) -> Obj:
        template_labels = job.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
        name = f"{job['metadata']['name']}-pod"
        pod = {
            "apiVersion": PODS.api_version,
            "kind": PODS.kind,
            "metadata": {
                "name": name,
                "namespace": job["metadata"]["namespace"],
                "labels": {
                    **(template_labels or {}),
                    JOB_NAME_LABEL: job["metadata"]["name"],
                    "batch.kubernetes.io/job-name": job["metadata"]["name"],
                },
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job["metadata"]["name"],
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": copy.deepcopy(job.get("spec", {}).get("template", {}).get("spec") or {}),
        }
        self._write(pod, CONTROLLERS)
        return self._write(pod, KUBELET, status=status)

    def roll_out(self, name: str, ready: int | None = None) -> Obj:
        """The Deployment controller (and the kubelet) finish the Deployment's rollout:
        `ready` of its replicas (all by default) are up to date and ready."""
        deployment = self.object(DEPLOYMENTS.kind, name)
        assert deployment is not None, (
            f"no Deployment {name}; there are {self.names(DEPLOYMENTS.kind)}"
        )
        replicas = deployment.get("spec", {}).get("replicas", 1)
        ready = replicas if ready is None else ready
        status = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if ready else "False",
                    "reason": "MinimumReplicasAvailable",
                },
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        if ready < replicas:
            status["unavailableReplicas"] = replicas - ready
        return self._write(deployment, CONTROLLERS, status=status)

    def accept_route(self, name: str, gateway: str = "inference") -> Obj:
        """A Gateway controller accepts the HTTPRoute `name` (its status.parents)."""
        route = self.object(HTTP_ROUTES.kind, name)
        assert route is not None, f"no HTTPRoute {name}"
        parent = {
            "parentRef": {"name": gateway},
            "controllerName": "example.com/gateway",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
        }
        return self._write(route, "gateway-controller", status={"parents": [parent]})

    def pod_waits_for_room(self, deployment: str, message: str) -> Obj:
        """A pod of the Deployment the scheduler cannot place: Pending, Unschedulable."""
        found = self.object(DEPLOYMENTS.kind, deployment)
        assert found is not None, f"no Deployment {deployment}"
        template = found["spec"]["template"]
        pod = {
            "apiVersion": PODS.api_version,
            "kind": PODS.kind,
            "metadata": {
                "name": f"{deployment}-5d8f7c9b4-abcde",
                "namespace": found["metadata"]["namespace"],
                "labels": dict(template["metadata"].get("labels") or {}),
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        self._write(pod, CONTROLLERS)
        unschedulable = {
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message,
        }  # fmt: skip
        return self._write(pod, KUBELET, status={"phase": "Pending", "conditions": [unschedulable]})

    def roll_out_all(self) -> list[str]:
        """Roll out every Deployment whose status lags its spec; returns their names."""
        rolled = []
        for deployment in self.objects(DEPLOYMENTS.kind):
            status = deployment.get("status") or {}
            if status.get("observedGeneration") != deployment["metadata"]["generation"]:
                self.roll_out(deployment["metadata"]["name"])
                rolled.append(deployment["metadata"]["name"])
        return rolled


def _without_version(obj: Obj) -> Obj:
    bare = copy.deepcopy(obj)
    bare["metadata"].pop("resourceVersion", None)
    return bare
