"""Garbage collection of the engine store: artifacts no model needs any more go, after a
retention period.

What is kept is decided by the operator, which knows every reference (qmo.planner.references,
used by qmo.controller.store_gc): each model's serving, candidate and last good revisions,
the revisions QualityReports judge, and the revision of every qmo workload. The
retention clock starts when GC first finds an artifact unreferenced (a mark beside the
artifacts, gc/<key>, removed if it is referenced again), not at the artifact's creation: an
artifact a model let go of an hour ago is kept for the whole period, however old it is.
Directories without a finished manifest (a killed build's leftovers) are collected the same
way, so an upload in progress is never deleted under a running build.

`plan` is PURE; `collect` runs it against a store (qmo.store.artifacts), deleting only with
`delete=True` (the default is a dry run that reports).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from qmo.store.artifacts import ArtifactStore, StoredArtifact
from qmo.store.cache import TMP_INFIX


@dataclass(frozen=True)
class GcPlan:
    keep: tuple[StoredArtifact, ...] = ()
    collect: tuple[StoredArtifact, ...] = ()
    waiting: tuple[StoredArtifact, ...] = ()  # unreferenced, within the retention period
    mark: tuple[str, ...] = ()  # newly unreferenced: their clocks start now
    unmark: tuple[str, ...] = ()  # referenced again


@dataclass
class GcResult:
    plan: GcPlan
    deleted: bool
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "dryRun": not self.deleted,
            "kept": len(self.plan.keep),
            "keptBytes": sum(a.total_bytes for a in self.plan.keep),
            "waiting": len(self.plan.waiting),
            "waitingBytes": sum(a.total_bytes for a in self.plan.waiting),
            "collectable": [a.cache_key for a in self.plan.collect],
            "collectableBytes": sum(a.total_bytes for a in self.plan.collect),
            "errors": self.errors,
        }


def plan(
    inventory: Collection[StoredArtifact],
    keep: Collection[str],
    marks: Mapping[str, datetime],
    *,
    now: datetime,
    retention: timedelta,
) -> GcPlan:
    """PURE: what to keep, delete, and (un)mark."""
    kept, collect, waiting, mark = [], [], [], []
    for artifact in inventory:
        base = artifact.cache_key.split(TMP_INFIX)[0].split(".stale-")[0]
        if artifact.cache_key in keep or base in keep:
            kept.append(artifact)
            continue
        since = marks.get(artifact.cache_key)
        if since is None:
            mark.append(artifact.cache_key)
            waiting.append(artifact)
        elif now - since >= retention and now - artifact.last_modified >= retention:
            collect.append(artifact)
        else:
            waiting.append(artifact)
    present = {a.cache_key for a in inventory}
    unmark = sorted(k for k in marks if k in keep or k not in present)
    return GcPlan(tuple(kept), tuple(collect), tuple(waiting), tuple(mark), tuple(unmark))


def collect(
    store: ArtifactStore,
    keep: Collection[str],
    *,
    now: datetime,
    retention: timedelta,
    delete: bool,
) -> GcResult:
    """One GC pass; without `delete` nothing changes on the store (marks neither)."""
    decided = plan(
        store.inventory(), keep, store.unreferenced_since(), now=now, retention=retention
    )
    result = GcResult(decided, deleted=delete)
    if not delete:
        return result
    for key in decided.mark:
        store.mark_unreferenced(key, now)
    for artifact in decided.collect:
        try:
            store.delete(artifact.cache_key)
            store.unmark(artifact.cache_key)
        except Exception as err:  # one failed delete does not stop the others
            result.errors.append(f"{artifact.cache_key}: {err}")
    for key in decided.unmark:
        store.unmark(key)
    return result
