"""The model's HTTPRoute: NAME to the main Service, NAME@PRECISION to that precision's
variants, following the plan; and the Routed condition from what the Gateways said."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from qmo.api.base import ConditionStatus
from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.controller.changes import Apply, Delete, desired_changes
from qmo.controller.gather import gather
from qmo.controller.view import StaticReader
from qmo.manifests.routes import build_http_route, published_names, unready_names
from qmo.planner.decision import Withdrawn
from qmo.planner.routing import Claim, claim_of, names_taken, routed_condition
from qmo.planner.types import ReportObservation
from tests.support.builders import a_model, an_owner, gpu_node
from tests.support.simulated import (
    CONFIG,
    apply_changes,
    complete_jobs,
    ready_deployments,
    reconcile_changes,
)

OWNER = an_owner("llama", "models", "uid-llama")
STORE = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "qmo-engines", "namespace": "models"},
}
CLUSTER = [gpu_node("h100", "h100-0"), gpu_node("a100", "a100-0"), STORE]
GATEWAY = {"parentRefs": [{"name": "inference", "namespace": "gateways"}]}
Obj = dict[str, Any]


def routed(**routing: Any) -> QuantizedModelSpec:
    spec: QuantizedModelSpec = a_model().with_precisions("bf16", "int8").ungated().spec()
    wire = spec.to_wire()
    wire["routing"] = {**GATEWAY, **routing}
    wire["serving"] = {"default": "int8"}
    return QuantizedModelSpec.from_wire(wire)


def converge(spec: QuantizedModelSpec, objects: list[Obj], *, routes: bool = True) -> list[Obj]:
    for _ in range(8):
        _, changes = reconcile_changes(spec, objects, OWNER, routes_available=routes)
        if not changes:
            return objects
        objects = ready_deployments(complete_jobs(apply_changes(objects, changes, OWNER)))
    raise AssertionError("the reconcile did not converge")


def route_of(objects: list[Obj]) -> Obj:
    (route,) = [o for o in objects if o["kind"] == "HTTPRoute"]
    return route


def table(route: Obj) -> dict[str, list[str]]:
    """Header value -> backend Service names."""
    return {
        rule["matches"][0]["headers"][0]["value"]: [b["name"] for b in rule["backendRefs"]]
        for rule in route["spec"]["rules"]
    }


def test_names_route_to_the_main_service_and_to_each_precision_on_every_class() -> None:
    route = route_of(converge(routed(), CLUSTER))
    assert table(route) == {
        "llama": ["llama"],
        "llama@bf16": ["llama-a100-80gb-bf16", "llama-h100-bf16"],
        "llama@int8": ["llama-a100-80gb-int8", "llama-h100-int8"],
    }
    rule = route["spec"]["rules"][0]
    assert rule["matches"][0]["headers"][0] == {
        "type": "Exact", "name": "X-Gateway-Model-Name", "value": "llama",
    }  # fmt: skip
    assert rule["backendRefs"][0]["port"] == 8000
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference",
         "namespace": "gateways"}
    ]  # fmt: skip
    assert route["metadata"]["ownerReferences"][0]["uid"] == "uid-llama"


def test_a_public_name_and_no_precision_names() -> None:
    spec = routed(modelName="meta-llama/Llama-3.1-8B", precisionNames=False, header="X-Model")
    route = route_of(converge(spec, CLUSTER))
    assert table(route) == {"meta-llama/Llama-3.1-8B": ["llama"]}
    assert route["spec"]["rules"][0]["matches"][0]["headers"][0]["name"] == "X-Model"


def test_nothing_is_routed_before_it_serves() -> None:
    # The Gateway API refuses an HTTPRoute without rules: none is written, not an empty one.
    plan, changes = reconcile_changes(routed(), CLUSTER, OWNER, routes_available=True)
    assert [c for c in changes if isinstance(c, Apply) and c.obj["kind"] == "HTTPRoute"] == []
    assert published_names(routed(), plan, "llama") == []
    condition = routed_condition(True, None, [])
    assert (condition.status, condition.reason) == (ConditionStatus.UNKNOWN, "RoutePending")
    assert "no HTTPRoute" in condition.message


def test_a_route_whose_variants_have_no_ready_replica_stays_as_it_is() -> None:
    # A Service without ready endpoints makes the gateway answer 503, which clients retry;
    # without the route they would get 404, and the route would lose its age.
    objects = converge(routed(), CLUSTER)
    for obj in objects:
        if obj["kind"] == "Deployment":
            obj["status"] = {**obj["status"], "readyReplicas": 0}
    plan, changes = reconcile_changes(routed(), objects, OWNER, routes_available=True)
    assert [
        c for c in changes if "HTTPRoute" in (c.obj if isinstance(c, Apply) else c.target)["kind"]
    ] == []
    assert unready_names(routed(), plan, "llama") == ["llama", "llama@bf16", "llama@int8"]


def test_the_route_goes_once_every_variant_is_withdrawn() -> None:
    spec = routed()
    objects = converge(spec, CLUSTER)
    plan, _ = reconcile_changes(spec, objects, OWNER, routes_available=True)
    withdrawn = dataclasses.replace(plan, variants=tuple(_withdrawn(v) for v in plan.variants))
    assert build_http_route(spec, withdrawn, OWNER) is None
    found = gather(StaticReader(objects), "models", "llama", spec.quality)
    changes = desired_changes(
        spec, withdrawn, found, OWNER, CONFIG, retry=False, routes_available=True
    )
    routes = [c for c in changes if isinstance(c, Delete) and c.target["kind"] == "HTTPRoute"]
    assert [c.target["metadata"]["name"] for c in routes] == ["llama"]


def test_a_converged_route_is_not_written_again() -> None:
    objects = converge(routed(), CLUSTER)
    _, changes = reconcile_changes(routed(), objects, OWNER, routes_available=True)
    assert changes == []


def test_without_the_gateway_api_no_route_is_written_and_the_rest_converges() -> None:
    objects = converge(routed(), CLUSTER, routes=False)
    assert [o for o in objects if o["kind"] == "HTTPRoute"] == []
    assert any(o["kind"] == "Deployment" for o in objects)


def test_removing_spec_routing_deletes_the_route() -> None:
    objects = converge(routed(), CLUSTER)
    plain = routed()
    wire = plain.to_wire()
    del wire["routing"]
    _, changes = reconcile_changes(
        QuantizedModelSpec.from_wire(wire), objects, OWNER, routes_available=True
    )
    assert [c.target["kind"] for c in changes if isinstance(c, Delete)] == ["HTTPRoute"]


def test_a_withdrawn_variant_leaves_the_route() -> None:
    spec = routed()
    plan, _ = reconcile_changes(spec, converge(spec, CLUSTER), OWNER, routes_available=True)
    withdrawn = [v if v.name != "h100-int8" else _withdrawn(v) for v in plan.variants]

    route = build_http_route(spec, dataclasses.replace(plan, variants=tuple(withdrawn)), OWNER)
    assert table(route)["llama@int8"] == ["llama-a100-80gb-int8"]


def _withdrawn(variant: Any) -> Any:
    report = ReportObservation("r", variant.name, variant.cache_key, Verdict.REGRESSED, "2% worse")
    return dataclasses.replace(variant, decision=Withdrawn(variant.cache_key, report))


# --- the Routed condition -------------------------------------------------------------------


def parent(status: str, message: str = "", reason: str = "Accepted") -> Obj:
    return {
        "parentRef": {"name": "inference", "namespace": "gateways"},
        "conditions": [
            {"type": "Accepted", "status": status, "reason": reason, "message": message}
        ],
    }


def with_parents(*parents: Obj) -> Obj:
    return {"metadata": {"name": "llama"}, "status": {"parents": list(parents)}}


def test_no_gateway_api_is_false_with_a_reason_that_says_so() -> None:
    condition = routed_condition(False, None, [])
    assert (condition.status, condition.reason) == (ConditionStatus.FALSE, "GatewayApiMissing")
    assert "Gateway API" in condition.message


def test_a_route_no_controller_answered_is_pending() -> None:
    condition = routed_condition(True, with_parents(), ["llama"])
    assert (condition.status, condition.reason) == (ConditionStatus.UNKNOWN, "RoutePending")


def test_an_accepted_route_is_true_and_names_what_it_publishes() -> None:
    condition = routed_condition(True, with_parents(parent("True")), ["llama", "llama@int8"])
    assert (condition.status, condition.reason) == (ConditionStatus.TRUE, "RouteAccepted")
    assert "Gateway gateways/inference" in condition.message
    assert "llama@int8" in condition.message


def test_one_refusing_gateway_makes_it_false_with_the_gateways_words() -> None:
    condition = routed_condition(
        True,
        with_parents(parent("True"), parent("False", "namespace not allowed", "NotAllowed")),
        ["llama"],
    )
    assert (condition.status, condition.reason) == (ConditionStatus.FALSE, "RouteNotAccepted")
    assert "namespace not allowed" in condition.message


def test_an_accepted_route_with_nothing_ready_is_false_and_says_503() -> None:
    condition = routed_condition(True, with_parents(parent("True")), ["llama"], ["llama"])
    assert (condition.status, condition.reason) == (ConditionStatus.FALSE, "NoReadyBackend")
    assert "503" in condition.message


def test_an_accepted_route_with_one_name_unready_is_true_and_names_it() -> None:
    names = ["llama", "llama@int8"]
    condition = routed_condition(True, with_parents(parent("True")), names, ["llama@int8"])
    assert (condition.status, condition.reason) == (ConditionStatus.TRUE, "RouteAccepted")
    assert "no ready replica behind llama@int8" in condition.message


def claim(route: str, created: str, *names: str, **routing: Any) -> Claim:
    namespace, name = route.split("/")
    spec = {
        "parentRefs": routing.get("parents", [{"name": "inference", "namespace": "gateways"}]),
        "hostnames": routing.get("hostnames", []),
        "rules": [
            {"matches": [{"headers": [{"name": routing.get("header", "X-Gateway-Model-Name"),
                                       "value": value, "type": "Exact"}]}]}
            for value in names
        ],
    }  # fmt: skip
    meta = {"name": name, "namespace": namespace, "creationTimestamp": created}
    return claim_of({"metadata": meta, "spec": spec})


OLDER = claim("team-a/chat", "2025-01-01T00:00:00Z", "chat", "chat@fp8")


@pytest.mark.parametrize(
    ("newer", "taken"),
    [
        pytest.param(claim("team-b/chat", "2025-01-02T00:00:00Z", "chat", "chat@int8"),
                     [("chat", "team-a/chat")], id="a newer route loses the name it shares"),
        pytest.param(claim("team-b/chat", "2024-12-31T00:00:00Z", "chat"), [],
                     id="an older route keeps its names"),
        pytest.param(claim("team-a/aaa", "2025-01-01T00:00:00Z", "chat"), [],
                     id="a tie goes to the first by namespace and name"),
        pytest.param(claim("team-b/chat", "2025-01-02T00:00:00Z", "chat",
                           header="x-gateway-model-name"),
                     [("chat", "team-a/chat")], id="header names compare case-insensitively"),
        pytest.param(claim("team-b/chat", "2025-01-02T00:00:00Z", "chat", header="X-Model"), [],
                     id="another header is another name"),
        pytest.param(claim("team-b/chat", "2025-01-02T00:00:00Z", "chat",
                           parents=[{"name": "inference", "namespace": "other"}]), [],
                     id="another Gateway"),
        pytest.param(claim("gateways/chat", "2025-01-02T00:00:00Z", "chat",
                           parents=[{"name": "inference"}]),
                     [("chat", "team-a/chat")], id="a parentRef without namespace is the route's"),
        pytest.param(claim("team-b/chat", "2025-01-02T00:00:00Z", "chat",
                           hostnames=["b.example.com"]), [("chat", "team-a/chat")],
                     id="hostnames against none still collide"),
    ],
)  # fmt: skip
def test_which_public_names_an_older_route_on_the_same_gateway_holds(
    newer: Claim, taken: list[tuple[str, str]]
) -> None:
    assert names_taken(newer, [OLDER]) == taken


def test_disjoint_hostnames_or_listeners_do_not_collide() -> None:
    a = claim("a/chat", "2025-01-01T00:00:00Z", "chat", hostnames=["a.example.com"],
              parents=[{"name": "gw", "namespace": "g", "sectionName": "http"}])  # fmt: skip
    b = claim("b/chat", "2025-01-02T00:00:00Z", "chat", hostnames=["b.example.com"],
              parents=[{"name": "gw", "namespace": "g", "sectionName": "http"}])  # fmt: skip
    c = claim("c/chat", "2025-01-02T00:00:00Z", "chat",
              parents=[{"name": "gw", "namespace": "g", "sectionName": "https"}])  # fmt: skip
    assert names_taken(b, [a]) == []
    assert names_taken(c, [a]) == []
