"""Autoscaling under load, end to end with real peers (opt-in: `make autoscaling-e2e`, as root).

KEDA (operator and metrics adapter) and Prometheus, built from source by
e2e/build-autoscaling-peers.sh, run beside the local control plane with a two-class fleet
(e2e/fleets/autoscaling.yaml: one H100 node with 2 GPUs, one A100 node with 4). One model
serves INT8 on both classes, autoscaled on requests waiting, routed through an HTTPRoute.
Every serving pod's IP answers with an engine stand-in that queues what its batch cannot take
and exports trtllm-serve's gauges (tests/support/engine_standin.py); Prometheus scrapes them;
KEDA's ScaledObjects (written by qmo) ask Prometheus; the HPA controller in
kube-controller-manager scales the Deployments. The load is the speed probe's streaming client
(qmo.evaluator.speed.stream_once), each request sent where a gateway would send it by the
route's weights.

Shown: replicas rise within each class's free GPUs; the H100 variant stops at its class's
bound (2: never a third pod that cannot be placed) with `atBound` and a CapacityExhausted
Event; the default route's weight moves toward the A100 variant as it grows; everything falls
back to one replica each when the load stops, and the weights with it. Timings go to
`$QMO_AUTOSCALING_E2E_OUT` (JSON) and the log, for docs/autoscaling.md.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch
from urllib3.exceptions import ProtocolError

from e2e.cluster.binaries import ensure_binaries, pinned_versions
from e2e.operator_process import OperatorProcess
from qmo.evaluator.speed import ProbeError, ProbeSettings, stream_once
from qmo.planner.capacity import BANDWIDTH_GBPS
from tests.support.autoscaling_peers import Credentials, Keda, Prometheus
from tests.support.engine_standin import RouteBalancer, engine_handler
from tests.support.gate_scenario import wait_event
from tests.support.gateway import PodStandIns, give_nodes_pod_cidrs, pod_network_on_loopback
from tests.support.kube import (
    ClusterHandle,
    apply_crds,
    apply_gateway_api_crds,
    is_ready,
    open_test_cluster,
    variants,
    wait_for,
)
from tests.support.metrics_standin import host_address
from tests.support.scenario import a_model, create

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("QMO_AUTOSCALING_E2E") != "1",
        reason="opt-in: `make autoscaling-e2e` builds KEDA and Prometheus and runs this as root",
    ),
    pytest.mark.usefixtures("engine_store"),
]

SERVING_PORT = 8000
GATEWAY = {"parentRefs": [{"name": "inference", "namespace": "gateways", "sectionName": "http"}]}
H100, A100 = "h100-int8", "a100-80gb-int8"
# The engine stand-in: 4 requests in a batch, 16 tokens a request. A replica on H100 streams a
# token every 0.1 s, one on A100 as much slower as qmo's own estimate of the two classes says
# (memory bandwidth, planner/capacity.py), so the route's capacity weights match the truth.
SLOTS, TOKENS = 4, 16
SECONDS_PER_TOKEN = {
    H100: 0.1,
    A100: 0.1 * BANDWIDTH_GBPS["h100"] / BANDWIDTH_GBPS["a100-80gb"],
}
PROBE = ProbeSettings(max_tokens=TOKENS, prompt_words=16, timeout=120)
# Requests arrive at a steady 10 a second, whatever the answers' latency (an open loop, as
# traffic does). A replica takes SLOTS / (TOKENS x seconds per token) a second: 2.5 on H100,
# about 1.5 on A100; the fleet's most (2 H100 + 4 A100 replicas) is about 11.1: only with
# the A100 variant at its maximum does the queue stop growing.
ARRIVALS_PER_SECOND = 10.0
SCALING = {
    "minReplicas": 1,
    "maxReplicas": 4,
    "metric": "requestsWaiting",
    "target": 2,
    "scaleUpStabilizationSeconds": 0,
    "scaleDownStabilizationSeconds": 30,
    "engine": "keda",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterHandle]:
    with pod_network_on_loopback():
        for handle in open_test_cluster(f"qmo-autoscaling-{os.getpid()}", "autoscaling.yaml"):
            give_nodes_pod_cidrs(handle)
            apply_crds(handle)
            apply_gateway_api_crds(handle)
            yield handle


@pytest.fixture(scope="module")
def keda(cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keda]:
    binaries = ensure_binaries()
    crds = binaries.directory / f"keda-crds-v{pinned_versions()['KEDA_VERSION']}"
    if not (binaries.directory / "keda-operator").is_file() or not crds.is_dir():
        pytest.fail("no KEDA in the binaries' cache: run e2e/build-autoscaling-peers.sh")
    address = host_address()
    if address is None:
        pytest.skip("needs a non-loopback address for the API server to reach KEDA's adapter")
    found = Keda(binaries.directory, cluster, address, tmp_path_factory.mktemp("keda"))
    try:
        found.start(crds)
        yield found
    finally:
        found.stop()


@pytest.fixture
def prometheus(cluster: ClusterHandle, namespace: str, tmp_path: Path) -> Iterator[Prometheus]:
    binary = ensure_binaries().directory / "prometheus"
    if not binary.is_file():
        pytest.fail("no Prometheus in the binaries' cache: run e2e/build-autoscaling-peers.sh")
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    found = Prometheus(binary, Credentials.of(cluster.kubeconfig), namespace, SERVING_PORT, workdir)
    try:
        found.wait_ready()
        yield found
    finally:
        found.process.stop()


@pytest.fixture
def stand_ins(cluster: ClusterHandle, namespace: str) -> Iterator[PodStandIns]:
    found = PodStandIns(
        cluster.api,
        namespace,
        SERVING_PORT,
        engine_handler(SLOTS, lambda pod: SECONDS_PER_TOKEN[pod["variant"]]),
    )
    found.start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def operator(
    cluster: ClusterHandle, namespace: str, prometheus: Prometheus, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "qmo.log",
        "--namespace", namespace,
        "--prometheus-address", prometheus.address,
    )  # fmt: skip
    process.start()
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Replicas:
    """Every change of the namespace's Deployments' replicas, as a watch sees them."""

    seen: list[tuple[float, str, int, int]] = field(default_factory=list)  # t, name, want, ready

    def most(self, deployment: str) -> int:
        return max((want for _, name, want, _ in self.seen if name == deployment), default=0)

    def first(self, deployment: str, ready_at_least: int, since: float) -> float | None:
        for at, name, _, ready in self.seen:
            if name == deployment and at >= since and ready >= ready_at_least:
                return at - since
        return None


@pytest.fixture
def replicas(cluster: ClusterHandle, namespace: str) -> Iterator[Replicas]:
    found = Replicas()
    stream = watch.Watch()
    stopped = threading.Event()

    def follow() -> None:
        while not stopped.is_set():
            try:
                for event in stream.stream(
                    cluster.apps().list_namespaced_deployment, namespace, timeout_seconds=60
                ):
                    d = event["object"]
                    found.seen.append(
                        (
                            time.monotonic(),
                            d.metadata.name,
                            d.spec.replicas or 0,
                            d.status.ready_replicas or 0,
                        )
                    )
            except ProtocolError:
                continue

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    yield found
    stopped.set()
    stream.stop()


class Load:
    """Speed-probe requests arriving at `per_second`, each sent to the pod `balancer` picks."""

    def __init__(self, balancer: RouteBalancer, per_second: float) -> None:
        self.balancer = balancer
        self.interval = 1 / per_second
        self.answered = 0
        self.refused = 0
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=512, thread_name_prefix="load")
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True)

    def start(self) -> float:
        self._dispatcher.start()
        return time.monotonic()

    def stop(self) -> float:
        """Stop sending; returns when the last request sent has been answered."""
        self._stopped.set()
        self._dispatcher.join()
        self._pool.shutdown(wait=True)
        return time.monotonic()

    def _dispatch(self) -> None:
        due = time.monotonic()
        while not self._stopped.is_set():
            try:
                self._pool.submit(self._request)
            except RuntimeError:  # the interpreter is going down (a failed test's teardown)
                return
            due += self.interval
            self._stopped.wait(max(0.0, due - time.monotonic()))  # the arrival clock

    def _request(self) -> None:
        url = self.balancer.pick()
        if url is None:
            self.refused += 1  # a gateway's 503: nothing ready to take it
            return
        try:
            stream_once(url, "chat", PROBE)
            self.answered += 1
        except ProbeError:
            self.refused += 1


def weights(balancer: RouteBalancer) -> dict[str, int]:
    return {b.service: b.weight for b in balancer.backends()}


def a100_share(found: dict[str, int]) -> float:
    total = sum(found.values())
    return found.get(f"chat-{A100}", 0) / total if total else 0.0


def scaling_of(model: dict[str, Any], variant: str) -> dict[str, Any]:
    return variants(model).get(variant, {}).get("autoscaling") or {}


def wait_until(what: str, check: Any, timeout: float = 120) -> Any:
    """Poll `check` (Prometheus and a data plane's view have no watch) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout} s")
        time.sleep(1)


def test_each_class_scales_within_its_gpus_and_default_traffic_spills_to_the_other(
    cluster: ClusterHandle,
    namespace: str,
    keda: Keda,
    prometheus: Prometheus,
    stand_ins: PodStandIns,
    operator: OperatorProcess,
    replicas: Replicas,
) -> None:
    # No gate (a_model's default): a temporary BF16 reference would hold one of the two H100s
    # for the whole run (the gate's part in the weights is the unit tests' subject).
    model = a_model("chat", precisions=["int8"], gpu={"classes": ["h100", "a100-80gb"]})
    model["spec"]["routing"] = GATEWAY
    model["spec"]["serving"] = {"autoscaling": SCALING}
    create(cluster, namespace, model)
    cluster.wait_for_model(
        namespace,
        "chat",
        lambda m: (
            is_ready(m)
            and all(scaling_of(m, v).get("engine") == "keda" for v in (H100, A100))
            and all(variants(m)[v].get("readyReplicas") == 1 for v in (H100, A100))
        ),
        timeout=300,
        describe="chat to serve one replica on each class, each scaled by KEDA",
    )
    for variant in (H100, A100):  # the HPA KEDA makes of each ScaledObject qmo wrote
        wait_for(
            cluster.autoscaling().list_namespaced_horizontal_pod_autoscaler,
            lambda h, v=variant: h.spec.scale_target_ref.name == f"chat-{v}",
            namespace=namespace,
            timeout=180,
            describe=f"KEDA's HPA for {variant}",
        )
    # Prometheus found both pods through the API server and scrapes trtllm-serve's gauge.
    wait_until(
        "both serving pods scraped",
        lambda: (
            len(prometheus.query(f'trtllm_num_requests_waiting{{namespace="{namespace}"}}')) == 2
        ),
    )
    balancer = RouteBalancer(cluster.api, namespace, "chat", "chat", stand_ins)
    before = wait_until("the default rule weighted across both classes", lambda: weights(balancer))
    assert set(before) == {f"chat-{H100}", f"chat-{A100}"}

    load = Load(balancer, ARRIVALS_PER_SECOND)
    started = load.start()
    at_bound = cluster.wait_for_model(
        namespace,
        "chat",
        lambda m: (
            scaling_of(m, H100).get("atBound") is True
            and variants(m)[H100].get("readyReplicas") == 2
            and variants(m)[A100].get("readyReplicas") == 4
        ),
        timeout=420,
        describe="the H100 variant at its class's bound (2) and the A100 variant at 4",
    )
    peak = time.monotonic() - started
    assert "CapacityExhausted" in scaling_of(at_bound, H100)["message"]
    wait_event(cluster, namespace, "chat", "CapacityExhausted")
    assert scaling_of(at_bound, H100)["maxReplicas"] == 2  # what the H100 class holds
    assert scaling_of(at_bound, A100)["maxReplicas"] == 4
    # The default route's weight followed the A100 variant's growth.
    spilled = wait_until(
        "the A100 variant's share of the default route to grow",
        lambda: (w := weights(balancer)) and a100_share(w) > a100_share(before) and w,
    )
    # Never a third H100 replica that could not be placed.
    assert replicas.most(f"chat-{H100}") == 2
    pending = [
        p.metadata.name
        for p in cluster.core()
        .list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=server")
        .items
        if p.status.phase == "Pending"
    ]
    assert pending == [], pending

    stopped = load.stop()
    assert load.answered > 0
    cluster.wait_for_model(
        namespace,
        "chat",
        lambda m: (
            all(
                variants(m)[v].get("readyReplicas") == 1 and scaling_of(m, v).get("replicas") == 1
                for v in (H100, A100)
            )
            and scaling_of(m, H100).get("atBound") is False
        ),
        timeout=420,
        describe="both variants back to one replica after the load",
    )
    fell_back = time.monotonic() - stopped
    after = wait_until(
        "the weights back to where they started", lambda: weights(balancer) == before and True
    )
    assert after

    timings = {
        "arrivals_per_second": ARRIVALS_PER_SECOND,
        "requests_answered": load.answered,
        "requests_refused": load.refused,
        "first_new_replica_ready_s": min(
            t
            for t in (
                replicas.first(f"chat-{H100}", 2, started),
                replicas.first(f"chat-{A100}", 2, started),
            )
            if t is not None
        ),
        "h100_at_bound_2_ready_s": replicas.first(f"chat-{H100}", 2, started),
        "a100_at_4_ready_s": replicas.first(f"chat-{A100}", 4, started),
        "both_at_peak_in_status_s": round(peak, 1),
        "route_weights_before": before,
        "route_weights_at_peak": spilled,
        "back_to_one_each_after_load_stop_s": round(fell_back, 1),
    }
    print("autoscaling e2e timings:", json.dumps(timings, indent=2))
    out = os.environ.get("QMO_AUTOSCALING_E2E_OUT")
    if out:
        Path(out).write_text(json.dumps(timings, indent=2) + "\n")
