"""A real gateway for the opt-in request test (tests/cluster/test_through_a_gateway.py).

Traefik's Gateway API provider runs on loopback against the local API server. kwok gives each
node's pods IPs from the node's spec.podCIDR; those CIDRs sit inside POD_NETWORK, which is bound
on `lo` while the test runs, so the pod IPs that Traefik reads from EndpointSlices are local
addresses. On each pod IP an OpenAI-compatible stand-in answers for the pod it stands for.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from e2e.operator_process import free_port
from tests.support.kube import ClusterHandle

POD_NETWORK = "198.18.0.0/16"  # RFC 2544's benchmarking range: nothing real lives there
CONTROLLER_NAME = "traefik.io/gateway-controller"
SERVERS_SELECTOR = "app.kubernetes.io/component=server"
TRAEFIK_NAMESPACE = "gateways"

# What Traefik's Gateway API provider reads and the route statuses it writes (its docs list
# the same); nothing else.
TRAEFIK_RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: qmo-test-traefik}}
rules:
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [services, secrets, configmaps]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses, gateways, httproutes, grpcroutes, tcproutes, tlsroutes,
              referencegrants, backendtlspolicies]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses/status, gateways/status, httproutes/status, grpcroutes/status,
              tcproutes/status, tlsroutes/status, referencegrants/status,
              backendtlspolicies/status]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: qmo-test-traefik}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: qmo-test-traefik}}
subjects:
- {{kind: ServiceAccount, name: traefik, namespace: {TRAEFIK_NAMESPACE}}}
"""


@contextmanager
def pod_network_on_loopback() -> Iterator[None]:
    """Bind POD_NETWORK on `lo` (root only), and remove it afterwards if it was not there."""
    added = subprocess.run(
        ["ip", "addr", "add", POD_NETWORK, "dev", "lo"], capture_output=True, text=True
    )
    if added.returncode != 0 and not any(
        known in added.stderr for known in ("File exists", "already assigned")
    ):
        raise PermissionError(f"cannot bind {POD_NETWORK} on lo: {added.stderr.strip()}")
    try:
        yield
    finally:
        if added.returncode == 0:
            subprocess.run(["ip", "addr", "del", POD_NETWORK, "dev", "lo"], check=False)


def give_nodes_pod_cidrs(cluster: ClusterHandle) -> None:
    """A /24 of POD_NETWORK per node, before any pod exists: kwok allocates pod IPs from it,
    so no two pods share an IP (without one, every node hands out the same default range)."""
    for index, node in enumerate(cluster.core().list_node().items, start=1):
        cidr = f"198.18.{index}.0/24"
        cluster.core().patch_node(
            node.metadata.name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        )


class Traefik:
    """Traefik with only its Gateway API provider, outside the cluster, authenticated as a
    ServiceAccount with TRAEFIK_RBAC. Its one entry point listens on 127.0.0.1:`port`; a
    Gateway listener with that port is served by it."""

    def __init__(self, binary: Path, cluster: ClusterHandle, workdir: Path) -> None:
        self.binary = binary
        self.cluster = cluster
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "traefik.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        kubectl = self.cluster.kubectl
        kubectl("create", "namespace", TRAEFIK_NAMESPACE)
        kubectl("create", "serviceaccount", "traefik", "--namespace", TRAEFIK_NAMESPACE)
        self.cluster.apply_yaml(TRAEFIK_RBAC)
        token = kubectl(
            "create", "token", "traefik", "--namespace", TRAEFIK_NAMESPACE, "--duration=2h"
        ).stdout.strip()
        kubeconfig = yaml.safe_load(Path(self.cluster.kubeconfig).read_text())
        server = kubeconfig["clusters"][0]["cluster"]
        config = {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "entryPoints": {"web": {"address": f"127.0.0.1:{self.port}"}},
            "providers": {
                "providersThrottleDuration": "200ms",
                "kubernetesGateway": {
                    "endpoint": server["server"],
                    "token": token,
                    "certAuthFilePath": server["certificate-authority"],
                },
            },
            "log": {"level": "INFO", "noColor": True},
        }
        config_path = self.workdir / "traefik.yaml"
        config_path.write_text(yaml.safe_dump(config))
        config_path.chmod(0o600)  # it holds a token
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), f"--configFile={config_path}"], stdout=log, stderr=log
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def gateway(self, name: str, listener: str) -> None:
        """Apply a GatewayClass for Traefik and a Gateway whose listener is its entry point."""
        manifest = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: traefik}}
spec: {{controllerName: {CONTROLLER_NAME}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {TRAEFIK_NAMESPACE}}}
spec:
  gatewayClassName: traefik
  listeners:
  - name: {listener}
    protocol: HTTP
    port: {self.port}
    allowedRoutes: {{namespaces: {{from: All}}}}
"""
        self.cluster.apply_yaml(manifest)


def _handler(identity: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class StandIn(BaseHTTPRequestHandler):
        """POST /v1/chat/completions, answered as trtllm-serve would, by the pod it names."""

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = json.dumps(
                {
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": identity["pod"]},
                            "finish_reason": "stop",
                        }
                    ],
                    "served_by": identity,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return StandIn


Handler = Callable[[dict[str, str]], type[BaseHTTPRequestHandler]]


@dataclass(frozen=True)
class ServingPod:
    """A pod a stand-in answers for: where, and the labels Services select it by."""

    ip: str
    labels: dict[str, str]
    server: ThreadingHTTPServer


class PodStandIns:
    """An OpenAI-compatible server on the IP and port of every Running serving pod in
    `namespace`, answering with that pod's name, variant and revision; started and stopped as a
    watch of the pods says, so a deleted pod's IP stops answering. `handler` makes each pod's
    request handler from its identity (the chat answer above, or an engine stand-in)."""

    def __init__(
        self, api: client.ApiClient, namespace: str, port: int, handler: Handler = _handler
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.port = port
        self.handler = handler
        self._servers: dict[str, ServingPod] = {}
        self._lock = threading.Lock()
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="pod-stand-ins", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()
        self._thread.join(timeout=30)
        for pod in list(self._servers):
            self._close(pod)

    def _follow(self) -> None:
        while not self._stopped.is_set():
            try:
                listing = self.core.list_namespaced_pod(
                    self.namespace, label_selector=SERVERS_SELECTOR
                )
                for pod in listing.items:
                    self._sync(pod, deleted=False)
                for event in self._watch.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=SERVERS_SELECTOR,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=60,
                ):
                    self._sync(event["object"], deleted=event["type"] == "DELETED")
            except (client.ApiException, ProtocolError):
                continue  # a broken or expired watch: list again (or end, once stopped)

    def serving(self) -> dict[str, ServingPod]:
        """The pods answered for now, by name."""
        with self._lock:
            return dict(self._servers)

    def _sync(self, pod: client.V1Pod, *, deleted: bool) -> None:
        name = pod.metadata.name
        ip = pod.status.pod_ip if pod.status else None
        serving = not deleted and pod.status.phase == "Running" and ip is not None
        current = self._servers.get(name)
        if current is not None and (not serving or current.ip != ip):
            self._close(name)
        if serving and name not in self._servers:
            identity = {
                "pod": name,
                "variant": pod.metadata.labels.get("qmo.dev/variant", ""),
                "revision": (pod.metadata.annotations or {}).get("qmo.dev/revision", ""),
            }
            try:
                server = ThreadingHTTPServer((ip, self.port), self.handler(identity))
            except OSError:  # the IP's previous pod not yet seen deleted: its next event retries
                return
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            with self._lock:
                self._servers[name] = ServingPod(ip, dict(pod.metadata.labels or {}), server)

    def _close(self, pod: str) -> None:
        with self._lock:
            server = self._servers.pop(pod).server
        server.shutdown()
        server.server_close()
