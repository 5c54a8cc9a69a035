"""The Routed condition: whether the model's HTTPRoute exists and its Gateways accepted it.
Pure: from whether the cluster serves the Gateway API and the route as the cache holds it.

A Gateway controller writes one entry per parent Gateway into the route's status.parents,
with an Accepted condition (Gateway API conventions). qmo reads it; it never writes it.

Two routes on one Gateway listener that match the same header value for the same hostnames
tie; the Gateway API gives the request to the older route (then the first by namespace/name).
Gateways accept both routes and say nothing, so `names_taken` finds the names another
model's route already holds: the newer model's Routed condition says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qmo.api.base import ConditionStatus
from qmo.vocabulary import Reason
from qmo.wire import Obj


@dataclass(frozen=True)
class RoutedCondition:
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Claim:
    """What one HTTPRoute claims: header values on Gateway listeners, for hostnames."""

    route: str  # namespace/name
    created: str  # creationTimestamp (RFC 3339: ordered as strings)
    listeners: frozenset[tuple[str, str, str | None]]  # (namespace, Gateway, sectionName)
    hostnames: frozenset[str]
    values: frozenset[tuple[str, str]]  # (header name in lower case, value)


def claim_of(route: Obj) -> Claim:
    """The claim of a route as the cache projects it (controller.projections.project_route)."""
    meta = route["metadata"]
    namespace = meta.get("namespace") or ""
    spec = route.get("spec") or {}
    refs = spec.get("parentRefs") or []
    headers = [
        header
        for rule in spec.get("rules") or []
        for match in rule.get("matches") or []
        for header in match.get("headers") or []
        if header.get("type", "Exact") == "Exact"
    ]
    return Claim(
        route=f"{namespace}/{meta['name']}",
        created=str(meta.get("creationTimestamp") or ""),
        listeners=frozenset(
            (r.get("namespace") or namespace, r["name"], r.get("sectionName")) for r in refs
        ),
        hostnames=frozenset(spec.get("hostnames") or []),
        values=frozenset((str(h["name"]).lower(), str(h["value"])) for h in headers),
    )


def _share_a_listener(a: Claim, b: Claim) -> bool:
    return any(
        (ns, gw) == (ns2, gw2) and (section is None or section2 is None or section == section2)
        for ns, gw, section in a.listeners
        for ns2, gw2, section2 in b.listeners
    )


def names_taken(own: Claim, others: Iterable[Claim]) -> list[tuple[str, str]]:
    """(value, the older route holding it) for each of `own`'s header values that an older
    route on a shared listener matches for the same hostnames (no hostnames: any)."""
    taken: list[tuple[str, str]] = []
    for other in sorted(others, key=lambda c: (c.created, c.route)):
        if (other.created, other.route) >= (own.created, own.route):
            continue
        if not _share_a_listener(own, other):
            continue
        if own.hostnames and other.hostnames and not own.hostnames & other.hostnames:
            continue
        for _, value in sorted(own.values & other.values):
            if value not in {v for v, _ in taken}:
                taken.append((value, other.route))
    return taken


def _gateway(parent: Obj) -> str:
    ref = parent.get("parentRef") or {}
    where = f"{ref['namespace']}/" if ref.get("namespace") else ""
    listener = f" ({ref['sectionName']})" if ref.get("sectionName") else ""
    return f"Gateway {where}{ref.get('name', '?')}{listener}"


def routed_condition(
    available: bool,
    route: Obj | None,
    names: list[str],
    unready: list[str] | None = None,
    taken: list[tuple[str, str]] | None = None,
) -> RoutedCondition:
    """`available`: the API server serves HTTPRoute v1; `route`: the live route, if any;
    `names`: the model names it publishes; `unready`: those with no ready replica behind
    them (the gateway answers 503 for them); `taken`: (name, older route) of names another
    model's route holds on the same Gateway (see `names_taken`)."""
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
    if taken:
        held = "; ".join(f"{value} by HTTPRoute {route_}" for value, route_ in taken)
        return RoutedCondition(
            ConditionStatus.FALSE,
            Reason.MODEL_NAME_TAKEN,
            (
                f"an older route on the same Gateway already routes {held}: the Gateway sends "
                "those requests there (the oldest route wins a tie), not to this model; "
                "choose another routing.modelName"
            )[:900],
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
