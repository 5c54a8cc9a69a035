"""The model's HTTPRoute (Gateway API): requests reach a precision by the model name they ask
for. Pure.

Body-based routing (the Gateway API Inference Extension, or any gateway that does the same)
copies the OpenAI request's `model` into a header; the route matches that header:

- `NAME` goes to the model's main Service (the default precision, as serving.default or
  auto chose it); for an autoscaled model whose default precision serves on several GPU
  classes, to each of those variants' Services instead, weighted by capacity
  (planner.capacity), so that a class at its bound spills to the others;
- `NAME@PRECISION` goes to that precision's variant Services on every GPU class, equally
  weighted, when `precisionNames` is on.

A variant is a member of the route while its Service exists and it should serve: its
decision names a revision for the stable Deployment (rolling out, serving, rolled back, kept),
or that Deployment still runs while a new revision builds or a build failed. A Withdrawn
variant, a reference baseline, a variant that never ran and a before-traffic candidate are
not. Membership does not follow readiness: while a member has no ready replica (its only pod
replaced, a Deployment whose status lags its generation) its rule stays, and the gateway
answers 503 (a Service without ready endpoints), which clients retry, rather than 404; the
route keeps its age, which decides ties between routes. A precision without members has no
rule (404); a model without members has no route at all, which happens only before its first
rollout or once every variant is withdrawn or refused. `unready_names` says which published
names have no ready replica behind them, for the Routed condition.
A Service whose name another model holds (`taken`, see qmo.controller.ownership) is that
model's, so no rule sends requests to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from qmo.api.quantizedmodel import QuantizedModelSpec, RoutingSpec
from qmo.manifests import labels, names
from qmo.manifests.labels import Owner
from qmo.planner.routing import RoutedCondition, claim_of, names_taken, routed_condition
from qmo.planner.types import Plan, PlannedVariant
from qmo.resources import HTTP_ROUTES
from qmo.vocabulary import Action, Component
from qmo.wire import Obj

MAX_BACKENDS = 16  # the Gateway API's limit of backendRefs per rule


def public_name(routing: RoutingSpec, model: str) -> str:
    return routing.model_name or model


def member(variant: PlannedVariant) -> bool:
    """Whether the variant's Service belongs in the route: it exists and should serve."""
    if variant.reference or variant.action == Action.WITHDRAW:
        return False
    return variant.serve_key is not None or variant.deployment is not None


def ready(variant: PlannedVariant) -> bool:
    """A member with a ready replica: requests for it are answered, not 503."""
    serving = variant.deployment
    return member(variant) and serving is not None and serving.ready_replicas > 0


def routed_precisions(
    plan: Plan, include: Callable[[PlannedVariant], bool] = member
) -> dict[str, list[PlannedVariant]]:
    """Precision -> its variants in the route (`include`), in the plan's order."""
    found: dict[str, list[PlannedVariant]] = {}
    for variant in plan.variants:
        if include(variant):
            found.setdefault(variant.precision.value, []).append(variant)
    return found


def _rule(
    header: str, value: str, backends: list[str], port: int, weights: dict[str, int] | None = None
) -> Obj:
    return {
        "matches": [{"headers": [{"type": "Exact", "name": header, "value": value}]}],
        "backendRefs": [
            {
                "group": "",
                "kind": "Service",
                "name": name,
                "port": port,
                "weight": (weights or {}).get(name, 1),
            }
            for name in backends[:MAX_BACKENDS]
        ],
    }


def weighted_default(plan: Plan, model: str) -> dict[str, int]:
    """The default rule's backends by capacity, {variant Service: weight}, where an
    autoscaled model's default precision serves on several GPU classes (planner.capacity);
    empty: the main Service."""
    return {
        names.variant_service(model, v.name): v.scaling.route_weight
        for v in plan.variants
        if member(v) and v.scaling is not None and v.scaling.route_weight is not None
    }


def routing_table(
    routing: RoutingSpec,
    plan: Plan,
    model: str,
    taken: frozenset[str] = frozenset(),
    include: Callable[[PlannedVariant], bool] = member,
) -> list[tuple[str, list[str]]]:
    """(model name clients send, the Services it goes to), one per rule of the route; none
    goes to a Service in `taken`. `include`: which variants count (`ready`: only those a
    request would reach now)."""
    name = public_name(routing, model)
    table = []
    precisions = routed_precisions(plan, include)
    weighted = weighted_default(plan, model)
    if weighted:
        table.append((name, list(weighted)))
    elif any(v.name in plan.main_variants for vs in precisions.values() for v in vs):
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

    None while the model has no member (see the module): the Gateway API refuses a route
    without rules. Members without ready replicas keep their rules (503, not 404).
    """
    routing = spec.routing
    assert routing is not None
    default = public_name(routing, owner.name)
    weights = weighted_default(plan, owner.name)
    rules = [
        _rule(
            routing.header,
            value,
            services,
            spec.serving.port,
            weights if value == default else None,
        )
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


def unready_names(
    spec: QuantizedModelSpec, plan: Plan, model: str, taken: frozenset[str] = frozenset()
) -> list[str]:
    """The published names with no ready replica behind them: the gateway answers 503."""
    if spec.routing is None:
        return []
    answered = {value for value, _ in routing_table(spec.routing, plan, model, taken, ready)}
    return [name for name in published_names(spec, plan, model, taken) if name not in answered]


def gateways(spec: QuantizedModelSpec, namespace: str) -> list[tuple[str, str]]:
    """The Gateways spec.routing attaches to, as (namespace, name)."""
    refs = spec.routing.parent_refs if spec.routing is not None else []
    return [(ref.namespace or namespace, ref.name) for ref in refs]


def routed(
    spec: QuantizedModelSpec,
    plan: Plan,
    model: str,
    available: bool,
    route: Obj | None,
    rivals: Iterable[Obj] = (),
    taken: frozenset[str] = frozenset(),
) -> RoutedCondition | None:
    """The Routed condition (None without spec.routing): `route` is the live one, `rivals`
    other models' routes on its Gateways."""
    if spec.routing is None:
        return None
    held = names_taken(claim_of(route), map(claim_of, rivals)) if route is not None else []
    return routed_condition(
        available,
        route,
        published_names(spec, plan, model, taken),
        unready_names(spec, plan, model, taken),
        held,
    )
