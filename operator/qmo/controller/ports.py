"""The two ports a reconcile talks through, as interfaces: `KubeWrites` (what it writes, and
its one live read: `qmo.kube.Kube` in the operator) and `CacheView` (what it reads, and how it
tells the cache of its own writes: `cache.ClusterCache` in the operator). Unit tests put one
in-memory fake behind both (tests/support/fake_kube.py) and run whole reconciles without a
cluster.
"""

from __future__ import annotations

from typing import Protocol

from qmo.controller.view import ClusterReader
from qmo.manifests.labels import Owner
from qmo.wire import Obj


class KubeWrites(Protocol):
    def apply(self, obj: Obj, field_manager: str = ...) -> Obj:
        """Server-side apply; the object as stored."""
        ...

    def add_owner(self, obj: Obj, owner: Owner) -> Obj | None: ...

    def apply_status(self, namespace: str, name: str, status: Obj, kind: str = ...) -> Obj: ...

    def apply_report_status(self, namespace: str, name: str, status: Obj) -> Obj: ...

    def delete(self, obj: Obj) -> None: ...

    def read_live(self, obj: Obj) -> Obj | None:
        """The live object of `obj`'s kind, namespace and name, read from the API server
        (not the cache), or None: whether something qmo did not make holds the name."""
        ...


class CacheView(ClusterReader, Protocol):
    def routes_available(self) -> bool:
        """Whether HTTPRoutes are served and watched."""
        ...

    def keda_installed(self) -> bool:
        """Whether KEDA's ScaledObjects are served and watched."""
        ...

    def observe_write(self, stored: Obj) -> None:
        """Learn a write at once, before its watch event arrives."""
        ...

    def observe_delete(self, obj: Obj) -> None: ...
