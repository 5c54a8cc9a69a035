"""The HTTPRoute over a model's life, on the fake cluster: it stays while what it routes to
only lacks ready replicas for a moment (the gateway answers 503, which clients retry, not
404, and the route keeps its age), and it goes when routing is no longer asked for."""

from __future__ import annotations

from qmo.wire import Obj
from tests.support.reconciles import World, a_world, ungated

GATEWAY = {"parentRefs": [{"name": "inference"}]}


def routed_world(*precisions: str) -> World:
    world = a_world()
    world.cluster.gateway_api = True
    spec = ungated(*precisions)
    spec["routing"] = GATEWAY
    world.cluster.create_model(spec)
    world.settle()
    return world


def the_route(world: World) -> Obj:
    route = world.cluster.object("HTTPRoute", "llama")
    assert route is not None, "no HTTPRoute llama"
    return route


def table(route: Obj) -> dict[str, list[str]]:
    return {
        rule["matches"][0]["headers"][0]["value"]: [b["name"] for b in rule["backendRefs"]]
        for rule in route["spec"]["rules"]
    }


def test_the_route_stays_while_its_only_pod_is_replaced_so_clients_get_503_not_404() -> None:
    world = routed_world("fp8")
    before = the_route(world)
    world.cluster.accept_route("llama")
    world.reconcile()
    assert world.condition("Routed")["reason"] == "RouteAccepted"

    world.cluster.roll_out("llama-h100-fp8", ready=0)  # the only pod was deleted
    world.reconcile()

    after = the_route(world)
    assert ("delete", "HTTPRoute", "llama") not in world.writes()
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]
    assert table(after) == {"llama": ["llama"], "llama@fp8": ["llama-h100-fp8"]}
    routed = world.condition("Routed")
    assert (routed["status"], routed["reason"]) == ("False", "NoReadyBackend")
    assert "503" in routed["message"]
    assert "NoReadyBackend" not in world.cluster.reasons()  # the variant's phase tells why

    world.cluster.roll_out("llama-h100-fp8")  # its replacement is ready
    world.reconcile()
    assert ("apply", "HTTPRoute", "llama") not in world.writes()
    assert the_route(world)["metadata"]["uid"] == before["metadata"]["uid"]


def test_a_deployment_whose_status_lags_its_generation_keeps_its_rule() -> None:
    world = routed_world("fp8", "int8")
    world.cluster.edit("Deployment", "llama-h100-int8", {"spec": {"minReadySeconds": 5}})
    world.reconcile()  # status.observedGeneration lags: nothing counts as ready
    assert table(the_route(world))["llama@int8"] == ["llama-h100-int8"]


def test_a_route_is_deleted_when_routing_was_removed_while_the_operator_was_down() -> None:
    world = routed_world("fp8")
    the_route(world)
    world.cluster.restart_operator()  # no HTTPRoute informer until a reconcile asks for one
    spec = world.model()["spec"]
    del spec["routing"]
    world.cluster.update_model(spec=spec)
    world.settle()
    assert world.cluster.object("HTTPRoute", "llama") is None
    assert "Routed" not in {c["type"] for c in world.model()["status"]["conditions"]}


def test_a_newer_model_claiming_a_public_name_on_the_same_gateway_is_told_it_is_taken() -> None:
    world = routed_world("fp8")
    spec = ungated("fp8")
    spec["routing"] = {**GATEWAY, "modelName": "llama"}
    world.cluster.create_model(spec, name="other")
    other = World(world.cluster, world.clock, "other")
    other.settle()
    routed = other.condition("Routed")
    assert (routed["status"], routed["reason"]) == ("False", "ModelNameTaken")
    assert "llama by HTTPRoute models/llama" in routed["message"]
    assert "ModelNameTaken" in world.cluster.reasons("Warning")
    world.reconcile()  # the older route keeps its names
    assert world.condition("Routed")["reason"] == "RoutePending"
