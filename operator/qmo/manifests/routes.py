"""The model's HTTPRoute (Gateway API): requests reach a precision by the model name they ask
for. Pure.

Body-based routing (the Gateway API Inference Extension, or any gateway that does the same)
copies the OpenAI request's `model` into a header; the route matches that header:

- `NAME` goes to the model's main Service (the default precision, as serving.default or
  auto chose it);
- `NAME@PRECISION` goes to that precision's variant Services on every GPU class, equally
  weighted, when `precisionNames` is on.

A variant is routed while its stable Deployment has ready replicas and it is not withdrawn: a
RolledBack variant stays routed, because its Service already serves the last good revision; a
Regressed (withdrawn) one, a reference baseline and a variant with nothing ready are left out.
A precision with nothing routable has no rule, so the gateway answers 404 rather than sending
requests to a Service without endpoints; a model with nothing routable has no route at all.
A Service whose name another model holds (`taken`, see qmo.controller.ownership) is that
model's, so no rule sends requests to it.
"""

from __future__ import annotations

from qmo.api.quantizedmodel import QuantizedModelSpec, RoutingSpec
from qmo.manifests import labels, names
from qmo.manifests.labels import Owner
from qmo.planner.types import Plan, PlannedVariant
from qmo.resources import HTTP_ROUTES
from qmo.vocabulary import Component
from qmo.wire import Obj

MAX_BACKENDS = 16  # the Gateway API's limit of backendRefs per rule


def public_name(routing: RoutingSpec, model: str) -> str:
    return routing.model_name or model


def routable(variant: PlannedVariant) -> bool:
    """Whether requests for the variant's precision may go to its Service."""
    serving = variant.deployment
    return (
        not variant.reference
        and variant.serve_key is not None  # none once withdrawn
        and serving is not None
        and serving.ready_replicas > 0
    )


def routed_precisions(plan: Plan) -> dict[str, list[PlannedVariant]]:
    """Precision -> its routable variants, in the plan's order."""
    found: dict[str, list[PlannedVariant]] = {}
    for variant in plan.variants:
        if routable(variant):
            found.setdefault(variant.precision.value, []).append(variant)
    return found


def _rule(header: str, value: str, backends: list[str], port: int) -> Obj:
    return {
        "matches": [{"headers": [{"type": "Exact", "name": header, "value": value}]}],
        "backendRefs": [
            {"group": "", "kind": "Service", "name": name, "port": port, "weight": 1}
            for name in backends[:MAX_BACKENDS]
        ],
    }


def routing_table(
    routing: RoutingSpec, plan: Plan, model: str, taken: frozenset[str] = frozenset()
) -> list[tuple[str, list[str]]]:
    """(model name clients send, the Services it goes to), one per rule of the route; none
    goes to a Service in `taken`."""
    name = public_name(routing, model)
    table = []
    precisions = routed_precisions(plan)
    if any(v.name in plan.main_variants for vs in precisions.values() for v in vs):
        table.append((name, [names.main_service(model)]))
    if routing.precision_names:
        for precision, variants in precisions.items():
            services = [names.variant_service(model, v.name) for v in variants]
            table.append((f"{name}@{precision}", services))
    table = [(value, [s for s in services if s not in taken]) for value, services in table]
    return [(value, services) for value, services in table if services]


def build_http_route(
    spec: QuantizedModelSpec, plan: Plan, owner: Owner, taken: frozenset[str] = frozenset()
) -> Obj | None:
    """The HTTPRoute for `owner`'s model; `spec.routing` must be set.

    None while nothing is routable: the Gateway API refuses a route without rules, and with
    no route the gateway answers 404 for the model's names, as it does for a precision
    without a rule.
    """
    routing = spec.routing
    assert routing is not None
    rules = [
        _rule(routing.header, value, services, spec.serving.port)
        for value, services in routing_table(routing, plan, owner.name, taken)
    ]
    if not rules:
        return None
    parents = []
    for ref in routing.parent_refs:
        parent: Obj = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": ref.name}
        if ref.namespace:
            parent["namespace"] = ref.namespace
        if ref.section_name:
            parent["sectionName"] = ref.section_name
        if ref.port:
            parent["port"] = ref.port
        parents.append(parent)
    route_spec: Obj = {"parentRefs": parents, "rules": rules}
    if routing.hostnames:
        route_spec["hostnames"] = list(routing.hostnames)
    return {
        "apiVersion": HTTP_ROUTES.api_version,
        "kind": HTTP_ROUTES.kind,
        "metadata": {
            "name": names.http_route(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, Component.ROUTE),
            "ownerReferences": [owner.reference()],
        },
        "spec": route_spec,
    }


def published_names(
    spec: QuantizedModelSpec, plan: Plan, model: str, taken: frozenset[str] = frozenset()
) -> list[str]:
    """The model names the route answers, for status and docs."""
    if spec.routing is None:
        return []
    return [value for value, _ in routing_table(spec.routing, plan, model, taken)]
