"""The real peers of the opt-in autoscaling run (tests/cluster/test_autoscaling_under_load.py),
built from source by e2e/build-autoscaling-peers.sh and run beside the local control plane:

- **Prometheus** discovers the serving pods through the API server (Kubernetes service
  discovery, role pod) and scrapes each one's `/prometheus/metrics` on the serving port, with
  the `namespace` and `pod` labels the query of qmo's ScaledObject selects by.
- **KEDA**: its operator (which turns ScaledObjects into HPAs and asks Prometheus) and its
  metrics adapter (which serves `external.metrics.k8s.io` to the HPA controller through the
  aggregation layer, and asks the operator over mutual TLS gRPC).

They run as this machine's processes with the cluster's admin credentials, as a platform's own
installation would run them with theirs; only their placement differs from a cluster install.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from e2e.operator_process import free_port
from tests.support.engine_standin import METRICS_PATH
from tests.support.kube import ClusterHandle, wait_for

KEDA_NAMESPACE = "keda"
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"
ADAPTER_SERVICE = "keda-metrics-apiserver"


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and the admin's files to reach it, from the kubeconfig."""

    kubeconfig: str
    server: str
    ca: str
    cert: str
    key: str

    @classmethod
    def of(cls, kubeconfig: str) -> Credentials:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        return cls(
            kubeconfig,
            cluster["server"],
            cluster["certificate-authority"],
            user["client-certificate"],
            user["client-key"],
        )


class Process:
    """A peer process with its log in `workdir`."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=log, env={**os.environ, **env}, cwd=workdir
            )

    def alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Prometheus:
    """Prometheus scraping `namespace`'s serving pods every `interval`."""

    def __init__(
        self,
        binary: Path,
        credentials: Credentials,
        namespace: str,
        serving_port: int,
        workdir: Path,
        interval: str = "2s",
    ) -> None:
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        tls = {
            "ca_file": credentials.ca,
            "cert_file": credentials.cert,
            "key_file": credentials.key,
        }
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": "serving-pods",
                    "metrics_path": METRICS_PATH,
                    "kubernetes_sd_configs": [
                        {
                            "role": "pod",
                            "api_server": credentials.server,
                            "namespaces": {"names": [namespace]},
                            "tls_config": tls,
                        }
                    ],
                    "relabel_configs": [
                        {
                            "source_labels": [
                                "__meta_kubernetes_pod_label_app_kubernetes_io_component"
                            ],
                            "regex": "server",
                            "action": "keep",
                        },
                        {
                            "source_labels": ["__meta_kubernetes_pod_ip"],
                            "regex": "(.+)",
                            "target_label": "__address__",
                            "replacement": f"${{1}}:{serving_port}",
                        },
                        {
                            "source_labels": ["__meta_kubernetes_namespace"],
                            "target_label": "namespace",
                        },
                        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    ],
                }
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.process = Process(
            "prometheus",
            [
                str(binary),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            workdir,
            {},
        )

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        url = f"{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        return list(body["data"]["result"])

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.process.alive()
            try:
                with urllib.request.urlopen(f"{self.address}/-/ready", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus not ready after {timeout} s")
            time.sleep(0.5)  # a process starting: there is nothing to watch


def make_certificates(directory: Path, names: list[str], ips: list[str]) -> None:
    """A CA and one certificate it signs for both ends of KEDA's mutual TLS (serverAuth and
    clientAuth), in the files KEDA reads: ca.crt, tls.crt, tls.key."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=KEDA",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=keda", "-keyout", "tls.key",
            "-out", "tls.csr")  # fmt: skip
    alt = ",".join([f"DNS:{n}" for n in names] + [f"IP:{ip}" for ip in ips])
    (directory / "ext.cnf").write_text(
        f"subjectAltName={alt}\nextendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
    )
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "tls.crt")  # fmt: skip


class Keda:
    """KEDA's operator and metrics adapter against the local control plane; the adapter behind
    the `external.metrics.k8s.io` APIService (a Service without selector whose Endpoints are
    this machine's `address`: the local API server routes to Endpoints, it has no kube-proxy)."""

    def __init__(self, binaries: Path, cluster: ClusterHandle, address: str, workdir: Path) -> None:
        self.binaries = binaries
        self.cluster = cluster
        self.address = address
        self.workdir = workdir
        self.processes: list[Process] = []

    def start(self, crds: Path) -> None:
        cluster = self.cluster
        cluster.kubectl("apply", "--server-side", "-f", str(crds))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        cluster.kubectl("create", "namespace", KEDA_NAMESPACE)
        certs = self.workdir / "certs"
        service_name = f"{ADAPTER_SERVICE}.{KEDA_NAMESPACE}.svc"
        make_certificates(certs, ["localhost", service_name], ["127.0.0.1", self.address])
        credentials = Credentials.of(cluster.kubeconfig)
        grpc_port, adapter_port = free_port(), free_port()
        env = {
            "KUBECONFIG": credentials.kubeconfig,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "WATCH_NAMESPACE": "",
        }
        self.processes.append(
            Process(
                "keda-operator",
                [
                    str(self.binaries / "keda-operator"),
                    "--leader-elect=false",
                    "--metrics-bind-address=0",
                    "--health-probe-bind-address=0",
                    f"--metrics-service-bind-address=127.0.0.1:{grpc_port}",
                    f"--cert-dir={certs}",
                    f"--ca-dir={certs}",
                    "--enable-cert-rotation=false",
                    "--zap-log-level=info",
                ],
                self.workdir,
                env,
            )
        )
        kubeconfig = credentials.kubeconfig
        self.processes.append(
            Process(
                "keda-adapter",
                [
                    str(self.binaries / "keda-adapter"),
                    f"--secure-port={adapter_port}",
                    f"--bind-address={self.address}",
                    f"--tls-cert-file={certs / 'tls.crt'}",
                    f"--tls-private-key-file={certs / 'tls.key'}",
                    f"--cert-dir={certs}",
                    f"--metrics-service-address=127.0.0.1:{grpc_port}",
                    f"--port={free_port()}",
                    f"--lister-kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--zap-log-level=info",
                ],
                self.workdir,
                env,
            )
        )
        self._register(adapter_port, (certs / "ca.crt").read_bytes())

    def _register(self, port: int, ca: bytes) -> None:
        core = self.cluster.core()
        core.create_namespaced_service(
            KEDA_NAMESPACE,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=ADAPTER_SERVICE),
                spec=client.V1ServiceSpec(
                    ports=[client.V1ServicePort(name="https", port=443, target_port=port)]
                ),
            ),
        )
        core.create_namespaced_endpoints(
            KEDA_NAMESPACE,
            client.V1Endpoints(
                metadata=client.V1ObjectMeta(name=ADAPTER_SERVICE),
                subsets=[
                    client.V1EndpointSubset(
                        addresses=[client.V1EndpointAddress(ip=self.address)],
                        ports=[client.CoreV1EndpointPort(name="https", port=port)],
                    )
                ],
            ),
        )
        registration = client.ApiregistrationV1Api(self.cluster.api)
        registration.create_api_service(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": EXTERNAL_METRICS},
                "spec": {
                    "group": "external.metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {"namespace": KEDA_NAMESPACE, "name": ADAPTER_SERVICE, "port": 443},
                    "caBundle": base64.b64encode(ca).decode(),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            }
        )
        wait_for(
            registration.list_api_service,
            lambda s: (
                self._alive()
                and s.metadata.name == EXTERNAL_METRICS
                and any(
                    c.type == "Available" and c.status == "True" for c in s.status.conditions or []
                )
            ),
            timeout=180,
            describe="KEDA's metrics adapter to be Available behind its APIService",
        )

    def _alive(self) -> bool:
        for process in self.processes:
            process.alive()
        return True

    def stop(self) -> None:
        with contextlib.suppress(client.ApiException):
            client.ApiregistrationV1Api(self.cluster.api).delete_api_service(EXTERNAL_METRICS)
        for process in self.processes:
            process.stop()
