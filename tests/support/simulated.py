"""A pure stand-in for the cluster's objects, for tests of the reconcile's decisions.

`reconcile_changes` runs gather -> plan -> desired_changes over a list of API objects;
`apply_changes` applies the resulting changes to that list as the API server would (names,
uids, owner references, generations), so a test can reconcile again and check convergence.
This is no API server: it knows nothing of validation or controllers; tests that need those
run on the local control plane.
"""

from __future__ import annotations

import copy
from typing import Any

from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.config import OperatorConfig
from qmo.controller.changes import (
    AddOwner,
    Apply,
    Change,
    Delete,
    RecordReport,
    Refuse,
    desired_changes,
)
from qmo.controller.gather import gather
from qmo.controller.view import StaticReader
from qmo.manifests.labels import Owner
from qmo.planner.plan import plan_model
from qmo.planner.types import Plan

Obj = dict[str, Any]
CONFIG = OperatorConfig(builder_image="qmo-builder:test", evaluator_image="qmo-eval:test")


def reconcile_changes(
    spec: QuantizedModelSpec,
    objects: list[Obj],
    owner: Owner,
    config: OperatorConfig = CONFIG,
    *,
    retry: bool = False,
    routes_available: bool = False,
) -> tuple[Plan, list[Change]]:
    found = gather(StaticReader(objects), owner.namespace, owner.name, spec.quality)
    plan = plan_model(spec, found.observed, config)
    changes = desired_changes(
        spec, plan, found, owner, config, retry=retry, routes_available=routes_available
    )
    return plan, changes


def _same(a: Obj, b: Obj) -> bool:
    return (a["kind"], a["metadata"]["name"]) == (b["kind"], b["metadata"]["name"])


def apply_changes(objects: list[Obj], changes: list[Change], owner: Owner) -> list[Obj]:
    """The object list after `changes`, as a (validation-free) API server would store it."""
    result = copy.deepcopy(objects)
    for change in changes:
        if isinstance(change, Apply | RecordReport):
            desired = copy.deepcopy(change.obj)
            live = next((o for o in result if _same(o, desired)), None)
            if live is None:
                desired["metadata"].setdefault("uid", f"uid-{desired['metadata']['name']}")
                desired["metadata"]["generation"] = 1
                result.append(desired)
            else:
                generation = live["metadata"].get("generation", 1)
                live.update({k: v for k, v in desired.items() if k != "metadata"})
                refs = live["metadata"].get("ownerReferences")
                live["metadata"] = {**desired["metadata"], "generation": generation + 1}
                if refs and "ownerReferences" not in desired["metadata"]:
                    live["metadata"]["ownerReferences"] = refs
        elif isinstance(change, AddOwner):
            live = next(o for o in result if _same(o, change.target))
            live["metadata"].setdefault("ownerReferences", []).append(owner.shared_reference())
        elif isinstance(change, Delete):
            result = [o for o in result if not _same(o, change.target)]
    return result


def complete_jobs(objects: list[Obj]) -> list[Obj]:
    """Every Job finished, as the Job controller would mark it."""
    result = copy.deepcopy(objects)
    for obj in result:
        if obj["kind"] == "Job":
            obj["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    return result


def ready_deployments(objects: list[Obj]) -> list[Obj]:
    """Every Deployment rolled out with all replicas ready."""
    result = copy.deepcopy(objects)
    for obj in result:
        if obj["kind"] == "Deployment":
            replicas = obj["spec"].get("replicas", 1)
            obj["status"] = {
                "observedGeneration": obj["metadata"].get("generation", 1),
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
            }
    return result


def kinds(changes: list[Change]) -> list[tuple[str, str]]:
    """(operation, kind) of each change, in order: what a table test compares."""
    out = []
    for change in changes:
        if isinstance(change, Apply):
            out.append(("apply", change.obj["kind"]))
        elif isinstance(change, AddOwner):
            out.append(("add-owner", change.target["kind"]))
        elif isinstance(change, Refuse):
            out.append(("refuse", change.target["kind"]))
        elif isinstance(change, RecordReport):
            out.append(("record-report", change.obj["kind"]))
        else:
            out.append(("delete", change.target["kind"]))
    return out
