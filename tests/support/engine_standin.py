"""Serving pods under load, for the opt-in autoscaling run
(tests/cluster/test_autoscaling_under_load.py).

Each Running serving pod gets a stand-in of trtllm-serve on its IP (through
tests/support/gateway.py's PodStandIns): it streams `/v1/completions` as the speed probe reads
them, runs at most `slots` requests at once (the engine's batch) and queues the rest, and
exports on `/prometheus/metrics` the gauges TensorRT-LLM's MetricsCollector exports under the
names and labels its source gives (`trtllm_num_requests_waiting`, `trtllm_num_requests_running`,
`trtllm_kv_cache_utilization`, labelled `model_name` and `engine_type`). Prometheus scrapes
them as it would the real server.

`RouteBalancer` sends each request where a gateway would send a request for the model's
default name: to a backend Service of the HTTPRoute's rule for that name, chosen by the rule's
weights, then to one of that Service's pods in turn. It stands in for a gateway's data plane
(the request path through a real one is `make gateway-e2e`'s subject); the weights it follows
are the ones qmo wrote.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from kubernetes import client

from tests.support.gateway import Handler, PodStandIns

METRICS_PATH = "/prometheus/metrics"
ROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")


class Engine:
    """One pod's engine: `slots` requests run at once, the others wait their turn."""

    def __init__(self, slots: int, token_seconds: float, model: str) -> None:
        self.token_seconds = token_seconds
        self.model = model
        self.slots = slots
        self._turns = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.completed = 0

    @contextmanager
    def admitted(self) -> Iterator[None]:
        with self._lock:
            self.waiting += 1
        self._turns.acquire()
        with self._lock:
            self.waiting -= 1
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
                self.completed += 1
            self._turns.release()

    def exposition(self) -> str:
        """The Prometheus text format, as prometheus_client writes TensorRT-LLM's gauges."""
        labels = f'model_name="{self.model}",engine_type="trtllm"'
        with self._lock:
            gauges = {
                "trtllm_num_requests_waiting": ("Number of queued requests", self.waiting),
                "trtllm_num_requests_running": ("Number of active requests", self.running),
                "trtllm_kv_cache_utilization": ("KV cache utilization", self.running / self.slots),
            }
        lines = []
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines.append(f"{name}{{{labels}}} {float(value)}")
        return "\n".join(lines) + "\n"


def engine_handler(slots: int, token_seconds: Callable[[dict[str, str]], float]) -> Handler:
    """A PodStandIns handler: one Engine per pod, as fast as `token_seconds` says for it."""

    def make(identity: dict[str, str]) -> type[BaseHTTPRequestHandler]:
        engine = Engine(slots, token_seconds(identity), identity.get("variant", ""))

        class EngineStandIn(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != METRICS_PATH:
                    self.send_error(404)
                    return
                body = engine.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                tokens = int(request.get("max_tokens") or 16)
                with engine.admitted():
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for index in range(tokens):
                        time.sleep(engine.token_seconds)
                        chunk = {"choices": [{"index": 0, "text": f" t{index}"}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, format: str, *args: Any) -> None:
                return

        return EngineStandIn

    return make


@dataclass(frozen=True)
class Backend:
    service: str
    weight: int
    selector: dict[str, str]


class RouteBalancer:
    """Picks the pod a gateway would send the next request for `public_name` to (see the
    module). It reads the route and the Services at most every `refresh_seconds`, as a data
    plane follows its control plane a moment behind."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        route: str,
        public_name: str,
        stand_ins: PodStandIns,
        refresh_seconds: float = 0.5,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.route = route
        self.public_name = public_name
        self.stand_ins = stand_ins
        self.refresh_seconds = refresh_seconds
        self._backends: list[Backend] = []
        self._read_at = 0.0
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._random = random.Random(7)

    def backends(self) -> list[Backend]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.refresh_seconds:
                self._backends = self._read()
                self._read_at = time.monotonic()
            return self._backends

    def _read(self) -> list[Backend]:
        group, version, plural = ROUTES
        try:
            route = self.custom.get_namespaced_custom_object(
                group, version, self.namespace, plural, self.route
            )
        except client.ApiException:
            return []
        for rule in route["spec"].get("rules", []):
            values = {h["value"] for m in rule.get("matches", []) for h in m.get("headers", [])}
            if self.public_name in values:
                found = []
                for ref in rule.get("backendRefs", []):
                    service = self.core.read_namespaced_service(ref["name"], self.namespace)
                    selector = dict(service.spec.selector or {})
                    found.append(Backend(ref["name"], int(ref.get("weight", 1)), selector))
                return found
        return []

    def pick(self) -> str | None:
        """The URL of the pod the next request goes to; None when nothing answers (a gateway
        would answer 503)."""
        backends = [b for b in self.backends() if b.weight > 0]
        if not backends:
            return None
        with self._lock:
            backend = self._random.choices(backends, weights=[b.weight for b in backends])[0]
        pods = sorted(
            (pod.ip, name)
            for name, pod in self.stand_ins.serving().items()
            if all(pod.labels.get(k) == v for k, v in backend.selector.items())
        )
        if not pods:
            return None
        ip, _ = pods[next(self._turn) % len(pods)]
        return f"http://{ip}:{self.stand_ins.port}"
