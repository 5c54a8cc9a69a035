"""Which QuantizedModels a change of a watched object concerns. Pure.

A child event wakes its owners at once (a Job finishing, a Deployment becoming available), so
progress never waits for the resync. Changes that cannot alter a plan wake nothing: the
model's own status writes, a report's status (written by qmo). A new, changed or deleted
HTTPRoute claim also wakes the models of the other routes on its Gateways: whether a public
model name is theirs depends on it (planner.routing.names_taken).
"""

from __future__ import annotations

from typing import Any, Protocol

from qmo.api.base import GROUP
from qmo.controller.view import JOB_NAME_LABEL, gateways_of, namespace_of, waits_for_room
from qmo.manifests import labels
from qmo.resources import CLAIMS, HTTP_ROUTES, JOBS, PODS, QUALITY_REPORTS, QUANTIZED_MODELS
from qmo.vocabulary import Component
from qmo.wire import Obj

Key = tuple[str, str]
# Kinds that any model of the namespace may depend on (claims, by name).
NAMESPACE_WIDE = {CLAIMS.kind}


class Lookups(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def models_in(self, namespace: str) -> list[Key]: ...

    def routes_on(self, gateway: tuple[str, str]) -> list[Obj]: ...


def owners(obj: Obj) -> list[Key]:
    """The QuantizedModels named in an object's ownerReferences."""
    namespace = namespace_of(obj)
    return [
        (namespace, ref["name"])
        for ref in obj["metadata"].get("ownerReferences") or []
        if ref.get("kind") == QUANTIZED_MODELS.kind
        and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
    ]


def _meta(obj: Obj | None, field: str) -> Any:
    return (obj or {}).get("metadata", {}).get(field)


def _model_changed(old: Obj | None, new: Obj | None) -> bool:
    """A new spec, a deletion starting, or a request in qmo's annotations; not a status."""
    if old is None or new is None:
        return True
    watched = ("generation", "deletionTimestamp", "annotations")
    return any(_meta(old, f) != _meta(new, f) for f in watched)


def models_to_reconcile(old: Obj | None, new: Obj | None, lookups: Lookups) -> list[Key]:
    obj = new if new is not None else old
    assert obj is not None
    kind = obj["kind"]
    namespace = namespace_of(obj)
    if kind == QUANTIZED_MODELS.kind:
        return [(namespace, obj["metadata"]["name"])] if _model_changed(old, new) else []
    if kind == QUALITY_REPORTS.kind:
        spec_changed = (
            old is None or new is None or _meta(old, "generation") != _meta(new, "generation")
        )
        model = ((obj.get("spec") or {}).get("modelRef") or {}).get("name")
        return [(namespace, model)] if spec_changed and model else []
    if kind in NAMESPACE_WIDE:
        return lookups.models_in(namespace)
    if kind == PODS.kind:
        pod_labels = obj["metadata"].get("labels") or {}
        if pod_labels.get(labels.COMPONENT) == Component.SERVER:
            # Only whether it waits for room shows in the status: a pod that starts, runs or
            # goes reconciles nothing (its Deployment's status does that).
            model = pod_labels.get(labels.MODEL)
            if model and waits_for_room(old) != waits_for_room(new):
                return [(namespace, model)]
            return []
        job_name = (obj["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)
        job = lookups.get(JOBS.kind, namespace, job_name) if job_name else None
        return owners(job) if job is not None else []
    keys = {*owners(obj), *(owners(old) if old is not None else [])}
    if kind == HTTP_ROUTES.kind and (old or {}).get("spec") != (new or {}).get("spec"):
        gateways = {g for o in (old, new) if o is not None for g in gateways_of(o)}
        keys.update(k for g in gateways for r in lookups.routes_on(g) for k in owners(r))
    return sorted(keys)
