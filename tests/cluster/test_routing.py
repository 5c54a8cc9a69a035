"""spec.routing on the real API server: without the Gateway API a clear condition and nothing
else disturbed; with the Gateway API's own CRDs (pinned, from its Go module) installed while
the operator runs, an HTTPRoute that the CRDs' schema and CEL accept, that follows a
fallback, and whose Routed condition follows what a Gateway controller writes.

No Gateway controller runs here (see docs/routing.md): the test writes the route's status as
one would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch

from e2e.operator_process import OperatorProcess
from qmo.api.quantizedmodel import QuantizedModelSpec
from tests.support.gate_scenario import gated, key_of, report, wait_event
from tests.support.kube import (
    ClusterHandle,
    apply_gateway_api_crds,
    condition,
    is_ready,
    variants,
    wait_for,
)
from tests.support.scenario import a_model, create, events, patch_spec
from tests.unit.test_routes import CLUSTER, converge, route_of

pytestmark = pytest.mark.usefixtures("operator", "engine_store")

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
GATEWAY = {"parentRefs": [{"name": "inference", "namespace": "gateways", "sectionName": "http"}]}


def gateway_api_installed(cluster: ClusterHandle) -> bool:
    found = cluster.kubectl("api-resources", f"--api-group={GROUP}", "-o", "name")
    return "httproutes.gateway.networking.k8s.io" in found.stdout


@pytest.fixture(scope="module")
def gateway_api(cluster: ClusterHandle) -> Path:
    """The Gateway API's standard CRDs, applied as its docs say, and Established."""
    return apply_gateway_api_crds(cluster)


def routed_model(name: str, **spec: Any) -> dict[str, Any]:
    model = a_model(name, **spec)
    model["spec"]["routing"] = GATEWAY
    return model


def route(cluster: ClusterHandle, namespace: str, name: str) -> Any:
    return wait_for(
        cluster.custom().list_namespaced_custom_object,
        lambda r: r["metadata"]["name"] == name,
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural="httproutes",
        describe=f"HTTPRoute {name}",
    )


def names_of(found: dict[str, Any]) -> dict[str, list[str]]:
    return {
        rule["matches"][0]["headers"][0]["value"]: [b["name"] for b in rule["backendRefs"]]
        for rule in found["spec"].get("rules") or []
    }


def gateway_says(
    cluster: ClusterHandle, namespace: str, name: str, accepted: bool, message: str
) -> None:
    """Write the route's status as a Gateway controller does (status.parents)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "status": {
            "parents": [
                {
                    "parentRef": {"group": GROUP, "kind": "Gateway", **GATEWAY["parentRefs"][0]},
                    "controllerName": "example.com/test-gateway",
                    "conditions": [
                        {
                            "type": "Accepted",
                            "status": "True" if accepted else "False",
                            "reason": "Accepted" if accepted else "NotAllowedByListeners",
                            "message": message,
                            "lastTransitionTime": now,
                            "observedGeneration": 1,
                        }
                    ],
                }
            ]
        }
    }
    cluster.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "httproutes", name, body
    )


# Runs first in this module: the Gateway API is installed by the fixture of the next tests.
def test_without_the_gateway_api_routing_says_so_and_the_model_still_serves(
    cluster: ClusterHandle, namespace: str
) -> None:
    if gateway_api_installed(cluster):
        pytest.skip("this cluster has the Gateway API already")
    create(cluster, namespace, routed_model("lonely", gpu={"classes": ["h100"]}))
    served = cluster.wait_for_model(
        namespace,
        "lonely",
        lambda m: is_ready(m) and condition(m, "Routed").get("reason") == "GatewayApiMissing",
        describe="the model to serve and say routing is unavailable",
    )
    routed = condition(served, "Routed")
    assert routed["status"] == "False"
    assert "install its CRDs" in routed["message"]
    assert variants(served)["h100-fp8"]["phase"] == "Serving"
    wait_event(cluster, namespace, "lonely", "GatewayApiMissing")


def test_the_route_is_accepted_by_the_crds_and_follows_a_fallback(
    cluster: ClusterHandle, namespace: str, gateway_api: Path, operator: OperatorProcess
) -> None:
    model = gated("down", "after-rollout", "fallback", precisions=["int4-awq"],
                  gpu={"classes": ["h100"]})  # fmt: skip
    model["spec"]["routing"] = GATEWAY
    create(cluster, namespace, model)
    first = cluster.wait_for_model(
        namespace,
        "down",
        lambda m: variants(m).get("h100-int4-awq", {}).get("phase") == "Serving",
        timeout=90,
        describe="int4 to serve",
    )
    written = wait_for(
        cluster.custom().list_namespaced_custom_object,
        lambda r: r["metadata"]["name"] == "down" and "down@int4-awq" in names_of(r),
        group=GROUP, version=VERSION, namespace=namespace, plural="httproutes",
        describe="the route to name int4",
    )  # fmt: skip
    assert names_of(written) == {"down": ["down"], "down@int4-awq": ["down-h100-int4-awq"]}
    # Before int4 served there was nothing to route: no route then, not one the CRD refuses.
    assert "ChildRejected" not in {e.reason for e in events(cluster, namespace, "down")}
    pending = cluster.wait_for_model(
        namespace, "down", lambda m: condition(m, "Routed").get("reason") == "RoutePending"
    )
    assert condition(pending, "Routed")["status"] == "Unknown"

    gateway_says(cluster, namespace, "down", accepted=True, message="Route is accepted")
    accepted = cluster.wait_for_model(
        namespace, "down", lambda m: condition(m, "Routed").get("status") == "True"
    )
    assert "Gateway gateways/inference (http) accepted" in condition(accepted, "Routed")["message"]

    report(cluster, namespace, "down", "h100-int4-awq", key_of(first, "h100-int4-awq"),
           wikitext=10.5)  # fmt: skip
    fell = wait_for(
        cluster.custom().list_namespaced_custom_object,
        lambda r: r["metadata"]["name"] == "down" and "down@int8" in names_of(r),
        group=GROUP, version=VERSION, namespace=namespace, plural="httproutes",
        timeout=90, describe="the route to follow the fallback to int8",
    )  # fmt: skip
    assert names_of(fell) == {"down": ["down"], "down@int8": ["down-h100-int8"]}


def test_a_gateway_that_refuses_the_route_is_reported(
    cluster: ClusterHandle, namespace: str, gateway_api: Path
) -> None:
    create(cluster, namespace, routed_model("refused", gpu={"classes": ["h100"]}))
    cluster.wait_for_model(namespace, "refused", is_ready)
    route(cluster, namespace, "refused")
    gateway_says(cluster, namespace, "refused", accepted=False,
                 message="namespace not allowed by listener http")  # fmt: skip
    refused = cluster.wait_for_model(
        namespace, "refused", lambda m: condition(m, "Routed").get("status") == "False"
    )
    routed = condition(refused, "Routed")
    assert routed["reason"] == "RouteNotAccepted"
    assert "namespace not allowed by listener http" in routed["message"]
    wait_event(cluster, namespace, "refused", "RouteNotAccepted")


def wait_route_gone(cluster: ClusterHandle, namespace: str, name: str, timeout: int = 60) -> None:
    """Return once the HTTPRoute `name` is deleted (a list, then a watch from it)."""
    custom = cluster.custom()
    where = {"group": GROUP, "version": VERSION, "namespace": namespace, "plural": "httproutes",
             "field_selector": f"metadata.name={name}"}  # fmt: skip
    listing = custom.list_namespaced_custom_object(**where)
    if not listing["items"]:
        return
    stream = watch.Watch()
    try:
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=timeout,
            **where,
        ):
            if event["type"] == "DELETED":
                return
    finally:
        stream.stop()
    raise AssertionError(f"HTTPRoute {namespace}/{name} still there after {timeout}s")


def test_a_route_is_deleted_when_routing_was_removed_while_the_operator_was_down(
    cluster: ClusterHandle, namespace: str, gateway_api: Path, operator: OperatorProcess
) -> None:
    create(cluster, namespace, routed_model("left", gpu={"classes": ["h100"]}))
    cluster.wait_for_model(namespace, "left", is_ready)
    route(cluster, namespace, "left")
    operator.kill()
    patch_spec(cluster, namespace, "left", {"routing": None})  # a merge patch: removed
    operator.start()  # its HTTPRoute informer starts when a reconcile asks for it
    wait_route_gone(cluster, namespace, "left")
    served = cluster.wait_for_model(namespace, "left", lambda m: not condition(m, "Routed"))
    assert is_ready(served)


def test_a_second_model_publishing_the_same_name_on_the_gateway_is_told_until_it_is_free(
    cluster: ClusterHandle, namespace: str, gateway_api: Path
) -> None:
    shared = {**GATEWAY, "modelName": "shared"}
    first = a_model("first", gpu={"classes": ["h100"]})
    first["spec"]["routing"] = shared
    create(cluster, namespace, first)
    cluster.wait_for_model(namespace, "first", is_ready)
    route(cluster, namespace, "first")
    second = a_model("second", gpu={"classes": ["h100"]})
    second["spec"]["routing"] = shared
    create(cluster, namespace, second)
    told = cluster.wait_for_model(
        namespace, "second", lambda m: condition(m, "Routed").get("reason") == "ModelNameTaken"
    )
    assert f"shared by HTTPRoute {namespace}/first" in condition(told, "Routed")["message"]
    wait_event(cluster, namespace, "second", "ModelNameTaken")
    # The first model takes another name: its route changes, and that wakes the second.
    patch_spec(cluster, namespace, "first", {"routing": {"modelName": "elsewhere"}})
    cluster.wait_for_model(
        namespace, "second", lambda m: condition(m, "Routed").get("reason") == "RoutePending"
    )


@pytest.mark.parametrize(
    "routing",
    [
        {"parentRefs": [{"name": "gw"}]},
        {
            "parentRefs": [
                {"name": "gw", "namespace": "gateways", "sectionName": "https", "port": 443}
            ],
            "modelName": "meta-llama/Llama-3.1-8B-Instruct",
            "hostnames": ["*.models.example.com"],
            "header": "X-Model",
        },
        {"parentRefs": [{"name": f"gw-{i}"} for i in range(32)], "precisionNames": False},
    ],
)
def test_every_route_shape_qmo_writes_passes_the_crds_schema_and_cel(
    cluster: ClusterHandle, namespace: str, gateway_api: Path, routing: dict[str, Any]
) -> None:
    wire = QuantizedModelSpec.from_wire(
        {"model": {"source": "hf://org/model"}, "precisions": ["bf16", "fp8", "int8", "int4-awq"]}
    ).to_wire()
    wire["routing"] = routing
    spec = QuantizedModelSpec.from_wire(wire)
    obj = route_of(converge(spec, CLUSTER))
    obj["metadata"]["namespace"] = namespace
    obj["metadata"].pop("ownerReferences")
    obj["metadata"]["annotations"] = {}
    assert obj["spec"]["rules"], "the fleet serves, so the route has rules"
    cluster.custom().create_namespaced_custom_object(
        GROUP, VERSION, namespace, "httproutes", obj, dry_run="All"
    )
