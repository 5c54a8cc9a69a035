"""Which objects someone else edited after qmo's last apply: the drift rule, in one place.

The informer (and the test fake of the Kube port, which mirrors what the informer shows) keeps
one `DriftLedger` for Deployments. qmo records each object as its own apply returned it; an
event whose generation moved past that is drift, unless only the replica count moved (a
scaler, or `kubectl scale`): the spec without replicas (`projections.spec_digest`) still
matches, and the ledger takes the new generation as qmo's.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from qmo.controller.projections import spec_digest
from qmo.wire import Obj


@dataclass
class DriftLedger:
    _generation: dict[Hashable, int] = field(default_factory=dict)
    _digest: dict[Hashable, str] = field(default_factory=dict)

    def applied(self, key: Hashable, stored: Obj) -> None:
        """qmo wrote `stored` (as the API server returned it)."""
        generation = (stored.get("metadata") or {}).get("generation")
        if isinstance(generation, int):
            self._generation[key] = generation
            self._digest[key] = spec_digest(stored)

    def forget(self, key: Hashable) -> None:
        self._generation.pop(key, None)
        self._digest.pop(key, None)

    def digest_if_moved(self, key: Hashable, full: Obj) -> str | None:
        """`full`'s spec digest when its generation passed qmo's apply: only then is a digest
        needed, so steady status events cost no hashing. Read from the full object, before a
        projection drops its spec."""
        generation = (full.get("metadata") or {}).get("generation")
        known = self._generation.get(key)
        if not isinstance(generation, int) or known is None or generation <= known:
            return None
        return spec_digest(full)

    def drifted(self, key: Hashable, generation: object, digest: str | None) -> bool:
        """Whether an object at `generation` (with `digest` from `digest_if_moved`) was edited
        by someone else. The first generation seen of an object qmo has not written is taken
        as its own: what it has not applied yet is the reconcile's to compare, not drift."""
        if not isinstance(generation, int):
            return False
        known = self._generation.setdefault(key, generation)
        if generation <= known:
            return False
        if digest is not None and digest == self._digest.get(key):
            # Only the replica count moved: not an edit of what qmo applied.
            # `applied.differs` compares a fixed count by itself.
            self._generation[key] = generation
            return False
        return True
