"""Requests through a real gateway (opt-in: `make gateway-e2e`; it needs root and Traefik).

Traefik's Gateway API provider, built from its Go module (e2e/build-traefik.sh), serves a
Gateway on loopback. qmo writes the model's HTTPRoute; Traefik accepts it (qmo's Routed
condition reads that) and sends each request to the pod IPs of the Service its model name
matches, where OpenAI-compatible stand-ins answer with the pod they stand for. The client sets
the `X-Gateway-Model-Name` header as body-based routing would from the body's `model`.

Shown: `chat@fp8` and `chat@int8` reach different variants, `chat` the default one, an unknown
precision gets 404, and a rollback moves `chat@fp8` back to the last good revision's pods.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster.binaries import ensure_binaries
from e2e.operator_process import OperatorProcess
from tests.support.gate_scenario import gated, key_of, report, roll_out_v2
from tests.support.gateway import (
    PodStandIns,
    Traefik,
    give_nodes_pod_cidrs,
    pod_network_on_loopback,
)
from tests.support.kube import (
    ClusterHandle,
    apply_crds,
    apply_gateway_api_crds,
    condition,
    is_ready,
    open_test_cluster,
    variants,
    wait_for,
)
from tests.support.scenario import create

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("QMO_GATEWAY_E2E") != "1",
        reason="opt-in: `make gateway-e2e` builds Traefik and runs this as root",
    ),
    pytest.mark.usefixtures("engine_store"),
]

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
HEADER = "X-Gateway-Model-Name"
SERVING_PORT = 8000
GATEWAY = {"parentRefs": [{"name": "inference", "namespace": "gateways", "sectionName": "http"}]}


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterHandle]:
    with pod_network_on_loopback():
        for handle in open_test_cluster(f"qmo-gateway-{os.getpid()}"):
            give_nodes_pod_cidrs(handle)
            yield handle


@pytest.fixture(scope="module")
def traefik(cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traefik]:
    binary = ensure_binaries().directory / "traefik"
    if not binary.is_file():
        pytest.fail("no Traefik in the binaries' cache: run e2e/build-traefik.sh")
    apply_crds(cluster)
    apply_gateway_api_crds(cluster)
    gateway = Traefik(binary, cluster, tmp_path_factory.mktemp("traefik"))
    gateway.start()
    try:
        gateway.gateway("inference", "http")
        wait_for(
            cluster.custom().list_namespaced_custom_object,
            lambda g: any(
                c["type"] == "Programmed" and c["status"] == "True"
                for c in (g.get("status") or {}).get("conditions") or []
            ),
            group=GROUP, version=VERSION, namespace="gateways", plural="gateways",
            describe="Traefik to program the Gateway",
        )  # fmt: skip
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def stand_ins(cluster: ClusterHandle, namespace: str) -> Iterator[PodStandIns]:
    found = PodStandIns(cluster.api, namespace, SERVING_PORT)
    found.start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def operator(cluster: ClusterHandle, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster.kubeconfig, tmp_path / "qmo.log", "--namespace", namespace)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def ask(gateway: Traefik, model: str) -> tuple[int, dict[str, Any]]:
    """One chat completion through the gateway: (HTTP status, the pod that answered)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{gateway.port}/v1/chat/completions",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "Hi"}]}).encode(),
        headers={"Content-Type": "application/json", HEADER: model},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)["served_by"]
    except urllib.error.HTTPError as error:
        return error.code, {}


def ask_until(
    gateway: Traefik, model: str, wanted: Callable[[int, dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Ask until the answer is `wanted`. The gateway's data plane has no watch to wait on: it
    follows the route and the EndpointSlices a moment after the API server has them."""
    deadline = time.monotonic() + 60
    while True:
        status, served_by = ask(gateway, model)
        if wanted(status, served_by):
            return served_by
        if time.monotonic() > deadline:
            raise AssertionError(f"{model}: still {status} {served_by} after 60 s, not {what}")
        time.sleep(0.5)


def test_each_name_reaches_its_precision_and_a_rollback_moves_it_back(
    cluster: ClusterHandle,
    namespace: str,
    traefik: Traefik,
    operator: OperatorProcess,
    stand_ins: PodStandIns,
) -> None:
    model = gated("chat", "after-rollout", "rollback", precisions=["bf16", "fp8", "int8"],
                  gpu={"classes": ["h100"]})  # fmt: skip
    model["spec"]["routing"] = GATEWAY
    create(cluster, namespace, model)
    v1 = cluster.wait_for_model(
        namespace,
        "chat",
        lambda m: is_ready(m) and condition(m, "Routed").get("status") == "True",
        timeout=120,
        describe="chat to serve and Traefik to accept its route",
    )
    assert "Gateway gateways/inference (http) accepted" in condition(v1, "Routed")["message"]
    v1_key = key_of(v1, "h100-fp8")

    fp8 = ask_until(traefik, "chat@fp8", lambda s, _: s == 200, "answered")
    int8 = ask_until(traefik, "chat@int8", lambda s, _: s == 200, "answered")
    assert (fp8["variant"], fp8["revision"]) == ("h100-fp8", v1_key)
    assert int8["variant"] == "h100-int8"
    assert fp8["pod"] != int8["pod"]
    default = ask_until(traefik, "chat", lambda s, _: s == 200, "answered")
    assert default["variant"] == f"h100-{v1['status']['summary']['serving']}"
    assert ask(traefik, "chat@int4-awq")[0] == 404

    # v1 passes its gate; v2 rolls out and takes chat@fp8; v2 regresses and is rolled back.
    report(cluster, namespace, "chat", "h100-fp8", v1_key)
    cluster.wait_for_model(
        namespace, "chat", lambda m: variants(m)["h100-fp8"].get("lastGoodRevision") == v1_key
    )
    v2 = roll_out_v2(cluster, namespace, "chat")
    v2_key = key_of(v2, "h100-fp8")
    assert v2_key != v1_key
    ask_until(traefik, "chat@fp8", lambda s, b: b.get("revision") == v2_key, "v2's pod")

    report(cluster, namespace, "chat", "h100-fp8", v2_key, arithmetic=0.70)
    cluster.wait_for_model(
        namespace,
        "chat",
        lambda m: variants(m)["h100-fp8"]["phase"] == "RolledBack",
        describe="the rollback",
    )
    back = ask_until(traefik, "chat@fp8", lambda s, b: b.get("revision") == v1_key, "v1's pod")
    assert back["variant"] == "h100-fp8"
    assert ask(traefik, "chat@int8")[1]["variant"] == "h100-int8"
