"""NVIDIA's NIM Operator as a peer for benchmarks: built from its source once, run as a process.

The source is a pinned commit of github.com/NVIDIA/k8s-nim-operator (it is not served by the
Go module proxy). Give its git directory or a checkout; it vendors every dependency, so the
build needs no network. Nothing of it is copied into this repository: the tree is extracted
into ~/.cache/qmo/peers/, built there, and the binary cached by commit like the Kubernetes
binaries. Never part of CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import IO, Any

from e2e.cluster.local import SERVICE_CIDR

NIM_COMMIT = "f63f74d7ad22eaea7943cc640e545f4ccdbb8077"
CACHE = Path(os.environ.get("QMO_PEERS_DIR", Path.home() / ".cache" / "qmo" / "peers"))
# NIM Operator reads its manifest templates from this fixed path.
MANIFESTS_PATH = Path("/manifests")


def nim_tree(source: Path, commit: str = NIM_COMMIT) -> Path:
    """The NIM Operator source tree at `commit`, extracted once from a git directory."""
    tree = CACHE / f"nim-{commit[:8]}" / "src"
    if (tree / "go.mod").exists():
        return tree
    if (source / "go.mod").exists():
        return source  # a checkout: used in place
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", f"--git-dir={source}", "archive", commit], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def nim_binary(source: Path, commit: str = NIM_COMMIT) -> tuple[Path, Path]:
    """(binary, source tree); builds on first use (about 10 minutes cold on 2 cores)."""
    tree = nim_tree(source, commit)
    binary = tree.parent / "nim-operator"
    if not binary.exists():
        print(f"building NIM Operator {commit[:8]} from {tree} ...", file=sys.stderr)
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=vendor"}
        subprocess.run(
            ["go", "build", "-ldflags", "-s -w", "-o", str(binary), "./cmd/"],
            cwd=tree,
            env=env,
            check=True,
        )
    return binary, tree


def crd_directory(tree: Path) -> Path:
    return tree / "config" / "crd" / "bases"


def contain_service_range(cidr: str = SERVICE_CIDR, port: int = 8000) -> None:
    """Answer the local control plane's Service range on this machine, never beyond it.

    Once a NIMService's Deployment is ready, the NIM Operator calls its Service's ClusterIP
    (`/v1/models`, then `/v1/metadata`) and counts the NIMService Ready only once that call
    is answered. Nothing here serves ClusterIPs, so without this those requests would leave
    the machine for a private range that is not ours. The range is routed to loopback and a
    listener on `port` answers 404 to everything, which the NIM Operator takes as "no model
    name" (the answer it got from the stub NIM images it expects anyway).
    """
    routes = subprocess.run(
        ["ip", "route", "show", "table", "local", cidr], capture_output=True, text=True
    )
    if cidr.split("/")[0] not in routes.stdout:
        subprocess.run(["ip", "route", "del", cidr], capture_output=True)  # an older guard
        added = subprocess.run(
            ["ip", "route", "add", "local", cidr, "dev", "lo"], capture_output=True, text=True
        )
        if added.returncode != 0:
            raise RuntimeError(
                f"run the NIM phases as root: the Service range {cidr} must be routed to this "
                f"machine first (ip route add local {cidr} dev lo), or the NIM Operator's "
                f"requests to ClusterIPs leave it: {added.stderr.strip()}"
            )
    _answer_404(port)


_ANSWERING: set[int] = set()


def _answer_404(port: int) -> None:
    if port in _ANSWERING:
        return

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _ANSWERING.add(port)


@contextmanager
def running_nim(
    binary: Path, tree: Path, kubeconfig: str, port: int, log: IO[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """The NIM Operator against `kubeconfig`, ready when its /readyz answers."""
    contain_service_range()
    if not MANIFESTS_PATH.exists():
        MANIFESTS_PATH.symlink_to(tree / "manifests")
    process = subprocess.Popen(
        [
            str(binary),
            "--kubeconfig", kubeconfig,
            f"--health-probe-bind-address=127.0.0.1:{port}",
            "--metrics-bind-address=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("NIM Operator did not become ready") from None
                time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def nim_services(namespace: str, count: int) -> list[dict[str, object]]:
    """Minimal NIMServices: one GPU each, a Deployment, a Service and an identity per CR."""
    return [
        {
            "apiVersion": "apps.nvidia.com/v1alpha1",
            "kind": "NIMService",
            "metadata": {"name": f"b-{i:04d}", "namespace": namespace},
            "spec": {
                "image": {"repository": "nim-bench", "tag": "1.0"},
                "storage": {"emptyDir": {}},
                "replicas": 1,
                "resources": {"limits": {"nvidia.com/gpu": 1}},
                "expose": {"service": {"type": "ClusterIP", "port": 8000}},
            },
        }
        for i in range(count)
    ]


def nim_pipeline(namespace: str, count: int) -> list[dict[str, Any]]:
    """The NIM Operator's full pipeline per model, NIMCaches first: a NIMCache that caches
    `hf://org/model-i` (the source qmo's models name) into a PVC the operator creates, through
    its caching Job, and a NIMService of the same name serving from that cache (one GPU, a
    Deployment and a Service). The HF source needs no registry lookup (only an NGC source
    inspects its image first); the Job's pod never runs on kwok, so nothing is downloaded. The
    Job's pods go to GPU nodes by GPU Feature Discovery's label: the default selector is Node
    Feature Discovery's, which the fake nodes lack. The operator gives each caching Job a
    ttlSecondsAfterFinished of 600 s: in a phase longer than that, the first Jobs are gone by
    the time objects are counted and snapshotted for the floor."""
    caches: list[dict[str, Any]] = [
        {
            "apiVersion": "apps.nvidia.com/v1alpha1",
            "kind": "NIMCache",
            "metadata": {"name": f"p-{i:04d}", "namespace": namespace},
            "spec": {
                "source": {
                    "hf": {
                        "endpoint": "https://huggingface.co",
                        "namespace": "org",
                        "modelName": f"model-{i}",
                        "revision": "v1",
                        "authSecret": "hf-token",
                        "modelPuller": "nim-bench:1.0",
                        "pullSecret": "nim-pull",
                    }
                },
                "storage": {
                    "pvc": {"create": True, "size": "50Gi", "volumeAccessMode": "ReadWriteMany"}
                },
                "resources": {"cpu": "1", "memory": "4Gi"},
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
            },
        }
        for i in range(count)
    ]
    services: list[dict[str, Any]] = [
        {
            "apiVersion": "apps.nvidia.com/v1alpha1",
            "kind": "NIMService",
            "metadata": {"name": f"p-{i:04d}", "namespace": namespace},
            "spec": {
                "image": {"repository": "nim-bench", "tag": "1.0"},
                "storage": {"nimCache": {"name": f"p-{i:04d}"}},
                "replicas": 1,
                "resources": {"limits": {"nvidia.com/gpu": 1}},
                "expose": {"service": {"type": "ClusterIP", "port": 8000}},
            },
        }
        for i in range(count)
    ]
    return caches + services


def nim_cache_claims(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The PVC each NIMCache among `objects` will create (its name, size and access mode),
    to give it a PersistentVolume before it exists."""
    claims = []
    for cache in objects:
        if cache["kind"] != "NIMCache":
            continue
        pvc = cache["spec"]["storage"]["pvc"]
        claims.append(
            {
                "metadata": {
                    "name": pvc.get("name") or f"{cache['metadata']['name']}-pvc",
                    "namespace": cache["metadata"]["namespace"],
                },
                "spec": {
                    "accessModes": [pvc["volumeAccessMode"]],
                    "resources": {"requests": {"storage": pvc["size"]}},
                    **({"storageClassName": pvc["storageClass"]} if "storageClass" in pvc else {}),
                },
            }
        )
    return claims


def nim_cache_manifests(objects: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """For each NIMCache among `objects`, the model-manifest ConfigMap its probe would write.

    Before its caching Job, a NIMCache runs a probe pod of the model puller image and reads the
    pod's log for the image's model manifest, through an in-cluster client: outside a cluster
    (as here) that read fails and the NIMCache never gets further. With the ConfigMap there,
    the controller skips the probe, as it does once a probe has run; an HF source never reads
    its content. So the measured pipeline has one pod and one ConfigMap per model fewer than a
    real cluster's. Labelled as provided (benchmarks/floor.py): not counted, not replayed."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{cache['metadata']['name']}-manifest",
                "namespace": cache["metadata"]["namespace"],
                "labels": {label: "true"},
            },
            "data": {"model_manifest.yaml": ""},
        }
        for cache in objects
        if cache["kind"] == "NIMCache"
    ]
