"""Which models a watched change wakes: the right owners at once, and nothing for noise."""

from __future__ import annotations

from typing import Any

import pytest

from qmo.controller.routing import models_to_reconcile

Obj = dict[str, Any]
NS = "models"


def ref(model: str) -> Obj:
    return {"apiVersion": "qmo.dev/v1alpha1", "kind": "QuantizedModel", "name": model, "uid": model}


def obj(kind: str, name: str = "x", **metadata: Any) -> Obj:
    return {"kind": kind, "metadata": {"name": name, "namespace": NS, **metadata}}


class Lookups:
    def __init__(self, *objects: Obj, models: tuple[str, ...] = ()) -> None:
        self.objects = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        self.models = models

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.objects.get((kind, name))

    def models_in(self, namespace: str) -> list[tuple[str, str]]:
        return [(namespace, m) for m in self.models]

    def routes_on(self, gateway: tuple[str, str]) -> list[Obj]:
        return [o for o in self.objects.values() if o["kind"] == "HTTPRoute"]


def model(generation: int, status: Obj | None = None, **extra: Any) -> Obj:
    found = obj("QuantizedModel", "llama", generation=generation, **extra)
    found["status"] = status or {}
    return found


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, model(1), [(NS, "llama")]),
        (model(1), model(2), [(NS, "llama")]),
        (model(1), model(1, {"phase": "Serving"}), []),
        (model(1), model(1, deletionTimestamp="2026-01-01T00:00:00Z"), [(NS, "llama")]),
        (model(1), model(1, annotations={"qmo.dev/retry": "1"}), [(NS, "llama")]),
        (model(1), None, [(NS, "llama")]),
    ],
    ids=[
        "a new model is reconciled",
        "a spec change is reconciled",
        "the operator's own status write wakes nothing",
        "a deletion starting is reconciled",
        "a request in qmo's annotations is reconciled",
        "a deleted model is reconciled (its reports become orphaned)",
    ],
)
def test_model_changes(old: Obj | None, new: Obj | None, expected: list[tuple[str, str]]) -> None:
    assert models_to_reconcile(old, new, Lookups()) == expected


def test_a_shared_build_job_wakes_every_model_that_owns_it() -> None:
    job = obj("Job", "qmo-build-1", ownerReferences=[ref("a"), ref("b")])
    assert models_to_reconcile(job, job, Lookups()) == [(NS, "a"), (NS, "b")]


def test_an_owner_reference_removed_still_wakes_the_model_it_named() -> None:
    before = obj("Deployment", "d", ownerReferences=[ref("a")])
    after = obj("Deployment", "d", ownerReferences=[])
    assert models_to_reconcile(before, after, Lookups()) == [(NS, "a")]


def test_a_build_pod_wakes_the_owners_of_its_job() -> None:
    job = obj("Job", "qmo-build-1", ownerReferences=[ref("a")])
    pod = obj("Pod", "qmo-build-1-xyz", labels={"job-name": "qmo-build-1"})
    assert models_to_reconcile(None, pod, Lookups(job)) == [(NS, "a")]
    assert models_to_reconcile(None, pod, Lookups()) == [], "its Job is gone: nothing to wake"


def test_a_report_wakes_its_model_when_its_scores_change_not_its_status() -> None:
    report = obj("QualityReport", "r", generation=1)
    report["spec"] = {"modelRef": {"name": "llama"}}
    judged = {**report, "status": {"verdict": "Pass"}}
    rescored = {**report, "metadata": {**report["metadata"], "generation": 2}}
    assert models_to_reconcile(None, report, Lookups()) == [(NS, "llama")]
    assert models_to_reconcile(report, judged, Lookups()) == []
    assert models_to_reconcile(judged, rescored, Lookups()) == [(NS, "llama")]


def test_a_claim_wakes_every_model_of_the_namespace() -> None:
    lookups = Lookups(models=("a", "b"))
    claim = obj("PersistentVolumeClaim")
    assert models_to_reconcile(None, claim, lookups) == [(NS, "a"), (NS, "b")]


def test_objects_owned_by_something_else_wake_nothing() -> None:
    foreign = obj(
        "Service", "s", ownerReferences=[{"apiVersion": "v1", "kind": "Pod", "name": "p"}]
    )
    assert models_to_reconcile(None, foreign, Lookups()) == []


def route(model: str, *names: str) -> Obj:
    found = obj("HTTPRoute", model, ownerReferences=[ref(model)])
    found["spec"] = {
        "parentRefs": [{"name": "inference"}],
        "rules": [
            {
                "matches": [
                    {"headers": [{"name": "X-Gateway-Model-Name", "value": n}]} for n in names
                ]
            }
        ],
    }
    return found  # fmt: skip


def test_a_route_claiming_other_names_wakes_the_models_of_the_other_routes_on_its_gateway() -> None:
    lookups = Lookups(route("older", "chat"), route("newer", "chat"))
    assert models_to_reconcile(route("older", "chat"), route("older", "talk"), lookups) == [
        (NS, "newer"), (NS, "older"),
    ]  # fmt: skip
    assert models_to_reconcile(route("older", "chat"), None, lookups) == [
        (NS, "newer"), (NS, "older"),
    ]  # fmt: skip


def test_a_route_status_written_by_its_gateway_wakes_only_its_own_model() -> None:
    lookups = Lookups(route("older", "chat"), route("newer", "chat"))
    accepted = {**route("older", "chat"), "status": {"parents": []}}
    assert models_to_reconcile(route("older", "chat"), accepted, lookups) == [(NS, "older")]


def serving_pod(phase: str, unschedulable: str | None = None) -> Obj:
    pod = obj(
        "Pod",
        "llama-h100-fp8-5d8f7c9b4-abcde",
        labels={"app.kubernetes.io/component": "server", "qmo.dev/model": "llama"},
    )
    conditions = []
    if unschedulable is not None:
        conditions.append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": unschedulable}
        )  # fmt: skip
    pod["status"] = {"phase": phase, "conditions": conditions}
    return pod


def test_a_serving_pod_wakes_its_model_only_when_whether_it_waits_for_room_changes() -> None:
    full = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    waiting = serving_pod("Pending", full)
    assert models_to_reconcile(None, waiting, Lookups()) == [(NS, "llama")]
    assert models_to_reconcile(waiting, serving_pod("Pending"), Lookups()) == [(NS, "llama")]
    # A pod that is placed, starts, runs or goes: its Deployment's status tells.
    assert models_to_reconcile(None, serving_pod("Pending"), Lookups()) == []
    assert models_to_reconcile(serving_pod("Pending"), serving_pod("Running"), Lookups()) == []
    assert models_to_reconcile(serving_pod("Running"), None, Lookups()) == []
