"""What qmo applied, as a hash of its desired state: only what differs is written. Pure.

Every object qmo applies carries the hash of its desired state in an annotation
(`qmo.dev/applied-hash`); an object whose live hash matches (and whose spec no one else
changed since, see `projections.DRIFTED`) is left alone. `changes` asks `differs` before
every apply.

A Deployment's replica count is the one field compared by itself: the informer does not count
a scale as drift (under autoscaling the scaler owns it), so a fixed count that someone scaled
away from is caught here.
"""

from __future__ import annotations

import copy
import hashlib
import json

from qmo.controller.projections import DRIFTED
from qmo.resources import DEPLOYMENTS
from qmo.vocabulary import HASH_ANNOTATION
from qmo.wire import Obj

__all__ = ["HASH_ANNOTATION", "desired_hash", "differs", "stamped"]


def desired_hash(obj: Obj) -> str:
    """sha256 of the object as qmo would apply it (without the hash annotation itself)."""
    bare = copy.deepcopy(obj)
    meta = bare.get("metadata", {})
    annotations = meta.get("annotations")
    if annotations is not None:
        annotations.pop(HASH_ANNOTATION, None)
        if not annotations:
            del meta["annotations"]
    canonical = json.dumps(bare, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def stamped(obj: Obj) -> Obj:
    """A copy of `obj` carrying its desired-state hash."""
    digest = desired_hash(obj)
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return out


def differs(desired: Obj, live: Obj | None) -> bool:
    """Whether applying `desired` (stamped) would change what is live."""
    if live is None:
        return True
    meta = live.get("metadata") or {}
    if meta.get(DRIFTED):
        return True
    live_hash = (meta.get("annotations") or {}).get(HASH_ANNOTATION)
    if live_hash != desired["metadata"]["annotations"][HASH_ANNOTATION]:
        return True
    if desired.get("kind") != DEPLOYMENTS.kind:
        return False
    replicas = (desired.get("spec") or {}).get("replicas")
    return replicas is not None and (live.get("spec") or {}).get("replicas") != replicas
