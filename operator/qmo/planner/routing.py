"""The Routed condition: whether the model's HTTPRoute exists and its Gateways accepted it.
Pure: from whether the cluster serves the Gateway API and the route as the cache holds it.

A Gateway controller writes one entry per parent Gateway into the route's status.parents,
with an Accepted condition (Gateway API conventions). qmo reads it; it never writes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmo.api.base import ConditionStatus
from qmo.vocabulary import Reason
from qmo.wire import Obj


@dataclass(frozen=True)
class RoutedCondition:
    status: ConditionStatus
    reason: str
    message: str


def _gateway(parent: Obj) -> str:
    ref = parent.get("parentRef") or {}
    where = f"{ref['namespace']}/" if ref.get("namespace") else ""
    listener = f" ({ref['sectionName']})" if ref.get("sectionName") else ""
    return f"Gateway {where}{ref.get('name', '?')}{listener}"


def routed_condition(
    available: bool, route: Obj | None, names: list[str], unready: list[str] | None = None
) -> RoutedCondition:
    """`available`: the API server serves HTTPRoute v1; `route`: the live route, if any;
    `names`: the model names it publishes; `unready`: those with no ready replica behind
    them (the gateway answers 503 for them)."""
    if not available:
        return RoutedCondition(
            ConditionStatus.FALSE,
            Reason.GATEWAY_API_MISSING,
            "spec.routing is set, but this cluster has no Gateway API (HTTPRoute "
            "gateway.networking.k8s.io/v1): install its CRDs and a Gateway controller; the "
            "model's Services serve meanwhile",
        )
    if not names:
        return RoutedCondition(
            ConditionStatus.UNKNOWN,
            Reason.ROUTE_PENDING,
            "no variant has a Service to route to (none has rolled out yet, or each was "
            "withdrawn or refused), so there is no HTTPRoute: a route needs at least one rule; "
            "it is written once a variant rolls out",
        )
    published = ", ".join(names)
    parents = ((route or {}).get("status") or {}).get("parents") or []
    refused = []
    accepted = []
    for parent in parents:
        condition = next(
            (c for c in parent.get("conditions") or [] if c.get("type") == "Accepted"), None
        )
        if condition is None:
            continue
        if condition.get("status") == "True":
            accepted.append(_gateway(parent))
        else:
            why = condition.get("message") or condition.get("reason") or "not accepted"
            refused.append(f"{_gateway(parent)}: {why}")
    if refused:
        return RoutedCondition(
            ConditionStatus.FALSE, Reason.ROUTE_NOT_ACCEPTED, "; ".join(refused)[:900]
        )
    if route is None or not accepted:
        return RoutedCondition(
            ConditionStatus.UNKNOWN,
            Reason.ROUTE_PENDING,
            f"HTTPRoute written for {published}; waiting for a Gateway controller to accept it",
        )
    said = f"{', '.join(accepted)} accepted the route for {published}"
    unready = [name for name in names if name in (unready or [])]
    if len(unready) == len(names):
        return RoutedCondition(
            ConditionStatus.FALSE,
            Reason.NO_READY_BACKEND,
            f"{said}, but no variant behind it has a ready replica: the gateway answers 503 "
            "(clients retry) until one is ready",
        )
    if unready:
        said += f"; no ready replica behind {', '.join(unready)} yet: the gateway answers 503"
    return RoutedCondition(ConditionStatus.TRUE, Reason.ROUTE_ACCEPTED, said[:900])
