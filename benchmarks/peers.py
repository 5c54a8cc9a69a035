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
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import IO

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


@contextmanager
def running_nim(
    binary: Path, tree: Path, kubeconfig: str, port: int, log: IO[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """The NIM Operator against `kubeconfig`, ready when its /readyz answers."""
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
