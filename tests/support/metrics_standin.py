"""A stand-in for a custom metrics adapter (what prometheus-adapter serves), for the test of the
HorizontalPodAutoscaler controller scaling a variant: it serves `custom.metrics.k8s.io/v1beta2`
over HTTPS, behind an APIService, and answers every serving pod's metric with a value the test
sets. kube-apiserver reaches it through the aggregation layer (the local cluster enables
aggregator routing, so it dials the Endpoints' address, this machine's own).

What is real around it: the APIService, kube-apiserver's proxying, the HPA controller in
kube-controller-manager, its scale-up, and qmo. What stands in: only where the number comes
from (docs/autoscaling.md).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client

GROUP, VERSION = "custom.metrics.k8s.io", "v1beta2"


def host_address() -> str | None:
    """This machine's own non-loopback IPv4 address (an Endpoints address may not be loopback)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: it only picks a route
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


class MetricsStandIn:
    """Serves `metric` for the pods a label selector names: `total` (requests waiting, say)
    spread evenly over them, as a load balancer spreads a queue."""

    def __init__(self, core: client.CoreV1Api, metric: str) -> None:
        self.core = core
        self.metric = metric
        self.total = 0.0
        self.requests = 0

    def discovery(self) -> dict[str, Any]:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{GROUP}/{VERSION}",
            "resources": [
                {
                    "name": f"pods/{self.metric}",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "MetricValueList",
                    "verbs": ["get"],
                }
            ],
        }

    def values(self, namespace: str, metric: str, selector: str) -> dict[str, Any]:
        self.requests += 1
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        each = self.total / max(1, len(pods))
        items = [
            {
                "describedObject": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod.metadata.name,
                    "apiVersion": "/v1",
                },
                "metric": {"name": metric},
                "timestamp": now,
                "windowSeconds": 60,
                "value": f"{round(each * 1000)}m",
            }
            for pod in pods
            if metric == self.metric
        ]
        return {
            "kind": "MetricValueList",
            "apiVersion": f"{GROUP}/{VERSION}",
            "metadata": {},
            "items": items,
        }


def _handler(standin: MetricsStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            body: dict[str, Any] | None = None
            if url.path.rstrip("/") == f"/apis/{GROUP}/{VERSION}":
                body = standin.discovery()
            elif parts[:3] == ["apis", GROUP, VERSION] and len(parts) == 8 and parts[5] == "pods":
                # /apis/custom.metrics.k8s.io/v1beta2/namespaces/NS/pods/*/METRIC
                selector = parse_qs(url.query).get("labelSelector", [""])[0]
                body = standin.values(parts[4], parts[7], selector)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def serving(standin: MetricsStandIn, address: str, cert: Path, key: str | Path) -> Iterator[int]:
    """Serve `standin` over HTTPS on `address` (any free port); yields the port."""
    server = ThreadingHTTPServer((address, 0), _handler(standin))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
