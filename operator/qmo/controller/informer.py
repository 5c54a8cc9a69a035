"""An informer: a list-then-watch of one resource into an in-memory store, like client-go's.

Why not kopf's indexes: kopf re-lists after a broken watch ("410 Gone") without forgetting
what vanished meanwhile, so a child deleted during the gap would stay in the cache and never
be recreated; and its indexes are read-only to the operator, so a reconcile could not see its
own writes before their watch events arrive (it would post the same Events twice). This
module does the two things kopf does not: a re-list *replaces* the store (objects missing from
it are reported deleted), and `observe_write` records what the operator just wrote, newer
resourceVersions winning. kopf still runs the operator process around it.

Each informer runs in its own thread (the official client's HTTP stack is synchronous), keeps
projections (see `projections`) keyed by (namespace, name), maintains secondary indexes, and
calls `on_change(old, new)` for every change of a projection (new is None on deletion).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from qmo.controller.drift import DriftLedger
from qmo.controller.projections import DRIFTED, project, resource_version
from qmo.kube import TRANSIENT_ERRORS, ApiException, Kube
from qmo.resources import Resource
from qmo.wire import Obj

log = logging.getLogger("qmo.informer")
ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Indexer = Callable[[Obj], Iterable[Hashable]]
ChangeHandler = Callable[[Obj | None, Obj | None], None]
# Watches end after 5-10 minutes (jittered, as client-go does) and resume where they ended.
WATCH_SECONDS = (300, 600)
MAX_BACKOFF = 30.0


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def object_key(obj: Obj) -> ObjectKey:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def _rv_number(rv: str) -> int | None:
    return int(rv) if rv.isdigit() else None


def is_newer(candidate: str, stored: str) -> bool:
    """Whether resourceVersion `candidate` is at least as new as `stored`.

    resourceVersions are opaque by contract; with etcd they are increasing integers, which is
    what makes "the newer write wins" decidable. Non-numeric ones are taken as newer.
    """
    a, b = _rv_number(candidate), _rv_number(stored)
    return a is None or b is None or a >= b


@dataclass
class Informer:
    kube: Kube
    resource: Resource
    namespace: str | None = None  # None: every namespace
    label_selector: str | None = None
    indexers: dict[str, Indexer] = field(default_factory=dict)
    on_change: ChangeHandler | None = None
    # Track spec changes by others (generation past what qmo applied, other than a scale):
    # Deployments.
    track_drift: bool = False

    def __post_init__(self) -> None:
        self.synced = threading.Event()
        self._lock = threading.RLock()  # handlers may read the store they are told about
        self._store: dict[ObjectKey, Obj] = {}
        self._versions: dict[ObjectKey, str] = {}
        self._indexes: dict[str, dict[Hashable, dict[ObjectKey, Obj]]] = {
            name: {} for name in self.indexers
        }
        self._index_keys: dict[ObjectKey, dict[str, tuple[Hashable, ...]]] = {}
        self._drift = DriftLedger()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        where = self.namespace or "all namespaces"
        return f"{self.resource.plural} in {where}"

    # --- reads ---------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._store.get((namespace, name))

    def by_index(self, index: str, key: Hashable) -> list[Obj]:
        with self._lock:
            return list(self._indexes[index].get(key, {}).values())

    def index_keys(self, index: str) -> list[Hashable]:
        with self._lock:
            return list(self._indexes[index])

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    # --- the operator's own writes -------------------------------------------------------

    def observe_write(self, stored: Obj) -> None:
        """Record an object as the API server returned it after qmo wrote it."""
        obj = project(stored)
        key = object_key(obj)
        with self._lock:
            if self.track_drift:
                self._drift.applied(key, stored)
            self._upsert(key, obj, resource_version(stored), notify=False)

    def observe_delete(self, namespace: str, name: str) -> None:
        with self._lock:
            self._remove((namespace, name), None, notify=False)

    # --- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"informer {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """List, then watch from the list's resourceVersion; list again when told it is gone."""
        backoff = 1.0
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self.relist()
                    self.synced.set()
                version = self._watch(version)
                backoff = 1.0
            except Gone:
                log.info("Watch of %s expired; listing again", self.name)
                version = None
            except (ApiException, *TRANSIENT_ERRORS, ValueError) as err:
                if self._stop.is_set():
                    return
                self.last_error = f"{type(err).__name__}: {err}"[:300]
                log.warning(
                    "Watch of %s failed, retrying in %.0fs: %s", self.name, backoff, self.last_error
                )
                if isinstance(err, ApiException) and err.status == 410:
                    version = None
                self._stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(MAX_BACKOFF, backoff * 2)

    def relist(self) -> str:
        """One consistent (paged) list; the store becomes exactly what it holds.

        Objects missing from the list are reported deleted: after a watch gap that is how a
        deletion nobody saw becomes known. Returns the list's resourceVersion.
        """
        listed: dict[ObjectKey, tuple[Obj, str, str | None]] = {}
        token: str | None = None
        version = ""
        while True:
            page = self.kube.list_page(
                self.resource, self.namespace, self.label_selector, continue_token=token
            )
            for item in page.get("items") or []:
                full = {"apiVersion": self.resource.api_version, "kind": self.resource.kind, **item}
                obj = project(full)
                key = object_key(obj)
                listed[key] = (obj, resource_version(full), self._digest_if_moved(key, full))
            meta = page.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            token = meta.get("continue")
            if not token:
                break
        with self._lock:
            for key in [k for k in self._store if k not in listed]:
                self._remove(key, None, notify=True)
            for key, (obj, rv, digest) in listed.items():
                self._upsert(key, obj, rv, notify=True, digest=digest)
        log.debug("Listed %d %s", len(listed), self.name)
        return version

    def _watch(self, version: str) -> str:
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": str(random.randint(*WATCH_SECONDS)),
        }
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        path = self.resource.path(self.namespace)
        read_timeout = float(query["timeoutSeconds"]) + 60
        for line in self.kube.stream_lines(self.resource, path, query, read_timeout):
            if self._stop.is_set():
                break
            event = _parse(line)
            kind, raw = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if raw.get("code") == 410:
                    raise Gone()
                raise ValueError(f"watch error: {raw.get('message')}")
            version = resource_version(raw) or version
            if kind == "BOOKMARK":
                continue
            full = {"apiVersion": self.resource.api_version, "kind": self.resource.kind, **raw}
            obj = project(full)
            key = object_key(obj)
            with self._lock:
                if kind == "DELETED":
                    self._remove(key, resource_version(full), notify=True)
                else:
                    digest = self._digest_if_moved(key, full)
                    self._upsert(key, obj, resource_version(full), notify=True, digest=digest)
        return version

    # --- the store (called with the lock held) -------------------------------------------

    def _digest_if_moved(self, key: ObjectKey, full: Obj) -> str | None:
        return self._drift.digest_if_moved(key, full) if self.track_drift else None

    def _upsert(
        self, key: ObjectKey, obj: Obj, rv: str, *, notify: bool, digest: str | None = None
    ) -> None:
        old = self._store.get(key)
        if old is not None and not is_newer(rv, self._versions.get(key, "")):
            return  # an event older than what qmo itself wrote and recorded
        if self.track_drift and self._drift.drifted(key, obj["metadata"].get("generation"), digest):
            obj["metadata"][DRIFTED] = True
        self._store[key] = obj
        self._versions[key] = rv
        self._reindex(key, obj)
        if notify and old != obj and self.on_change is not None:
            self._notify(old, obj)

    def _remove(self, key: ObjectKey, rv: str | None, *, notify: bool) -> None:
        old = self._store.get(key)
        if old is None:
            return
        if rv is not None and not is_newer(rv, self._versions.get(key, "")):
            return  # deleted before a newer write of qmo's: a recreated object
        del self._store[key]
        self._versions.pop(key, None)
        self._drift.forget(key)
        self._reindex(key, None)
        if notify and self.on_change is not None:
            self._notify(old, None)

    def _reindex(self, key: ObjectKey, obj: Obj | None) -> None:
        previous = self._index_keys.pop(key, {})
        for name, keys in previous.items():
            for index_key in keys:
                bucket = self._indexes[name].get(index_key)
                if bucket is not None:
                    bucket.pop(key, None)
                    if not bucket:
                        del self._indexes[name][index_key]
        if obj is None:
            return
        current: dict[str, tuple[Hashable, ...]] = {}
        for name, indexer in self.indexers.items():
            keys = tuple(indexer(obj))
            for index_key in keys:
                self._indexes[name].setdefault(index_key, {})[key] = obj
            current[name] = keys
        self._index_keys[key] = current

    def _notify(self, old: Obj | None, new: Obj | None) -> None:
        assert self.on_change is not None
        try:
            self.on_change(old, new)
        except Exception:  # a handler bug must not stop the watch
            log.exception("Change handler for %s failed", self.name)


def _parse(line: bytes) -> Obj:
    parsed = json.loads(line)
    if not isinstance(parsed, dict):
        raise ValueError("a watch event is not an object")
    return parsed
