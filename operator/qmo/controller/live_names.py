"""Names held by objects qmo did not make: the one live read of a reconcile.

qmo's watch cache holds only qmo's own objects, so a Service or Deployment made by hand, by
Helm or by another operator under a name qmo derives is invisible to it, and a server-side
apply with forced ownership would silently take it over. So before qmo first applies a name
its cache holds nothing of (`Apply.unknown`), it reads that name live; what follows from a
name held elsewhere is `ownership`'s rule. Names are read once per reconcile, and only until
qmo's own object holds them (then the cache has it), so a converged model reads nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from qmo.controller.changes import Apply, Change
from qmo.controller.gather import Gathered
from qmo.controller.ownership import made_elsewhere
from qmo.controller.ports import KubeWrites

Name = tuple[str, str]  # (kind, name) in the model's namespace


class LiveNames:
    """What one reconcile learned by reading names live."""

    def __init__(self, kube: KubeWrites) -> None:
        self._kube = kube
        self.elsewhere: frozenset[Name] = frozenset()
        self._free: set[Name] = set()

    def changes(self, found: Gathered, plan: Callable[[Gathered], list[Change]]) -> list[Change]:
        """`plan`'s changes for what the cache shows, planned again while the names they
        would apply first turn out to be held elsewhere (each round leaves those out)."""
        while True:
            names = found.names.with_elsewhere(self.elsewhere)
            changes = plan(dataclasses.replace(found, names=names))
            if not self.learn(changes):
                return changes

    def learn(self, changes: list[Change]) -> bool:
        """Read every name `changes` would apply first; whether one is held elsewhere that
        was not known to be (then the changes must be planned again)."""
        found = set()
        for change in changes:
            if not (isinstance(change, Apply) and change.unknown):
                continue
            name = (change.obj["kind"], change.obj["metadata"]["name"])
            if name in self._free or name in self.elsewhere:
                continue
            live = self._kube.read_live(change.obj)
            if live is not None and made_elsewhere(live):
                found.add(name)
            else:
                self._free.add(name)
        self.elsewhere |= found
        return bool(found)
