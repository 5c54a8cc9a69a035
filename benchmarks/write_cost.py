"""What one write of each kind costs the control plane (kube-apiserver + etcd + controllers).

On a small local control plane with no operator running, it makes `--count` writes of each
kind qmo makes per model and prints the CPU the control plane spent per write. It explains
benchmarks/scale.py: the API server's CPU, not qmo's, bounds how fast models converge.

    .venv/bin/python -m benchmarks.write_cost --count 200
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import time
from collections.abc import Callable
from typing import Any

from benchmarks.scale import control_plane_cpu
from e2e.cluster.local import FLEETS_DIR, REPO, LocalCluster
from qmo.kube import Kube, connect
from qmo.resources import QUANTIZED_MODELS

Obj = dict[str, Any]
NS = "cost"


def quantized_model(i: int) -> Obj:
    return {
        "apiVersion": "qmo.dev/v1alpha1",
        "kind": "QuantizedModel",
        "metadata": {"name": f"m-{i:04d}", "namespace": NS},
        "spec": {
            "model": {"source": f"hf://org/model-{i}", "revision": "v1"},
            "precisions": ["fp8"],
            "quality": {"gate": "off"},
        },
    }


STATUS = {
    "observedGeneration": 1,
    "conditions": [
        {"type": t, "status": "True", "reason": "Test", "message": "a sentence of status",
         "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}
        for t in ("Ready", "Building", "QualityGate", "Degraded", "RolledBack")
    ],
    "variants": [
        {"name": "h100-fp8", "gpuClass": "h100", "computeCapability": "9.0", "precision": "fp8",
         "requestedPrecision": "fp8", "kvCacheDtype": "fp8", "tensorParallel": 1,
         "cacheKey": "k" * 64, "phase": "Serving", "reason": "Serving",
         "message": "1 replica(s) ready", "build": {"state": "Succeeded"},
         "readyReplicas": 1, "quality": {"verdict": "NotGated"}}
    ],
    "summary": {"precisions": "h100=fp8", "quality": "NotGated", "serving": "fp8"},
}  # fmt: skip


def config_map(i: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"cm-{i:04d}", "namespace": NS},
        "data": {"artifact.json": '{"cacheKey": "' + "k" * 64 + '"}'},
    }


def service(i: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i:04d}", "namespace": NS},
        "spec": {"selector": {"app": f"a-{i}"}, "ports": [{"name": "http", "port": 8000}]},
    }


def measure(cluster: LocalCluster, what: str, count: int, write: Callable[[int], Any]) -> None:
    before = control_plane_cpu(cluster)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(count)))
    elapsed = time.monotonic() - started
    # Controllers react a little later (endpoint slices, garbage collector): let them finish.
    time.sleep(3)
    after = control_plane_cpu(cluster)
    spent = {k: (after[k] - before.get(k, 0.0)) * 1000 / count for k in after}
    parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(spent.items()) if v >= 0.05)
    print(f"| {what} | {sum(spent.values()):.1f} | {parts} | {count / elapsed:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    cluster = LocalCluster.start("qmo-cost", FLEETS_DIR / "mixed.yaml")
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all")
        cluster.kubectl("create", "namespace", NS)
        kube: Kube = connect(pool_size=8, kubeconfig=cluster.kubeconfig)
        n = args.count
        print("| write | control-plane CPU ms per write | by process | writes/s (4 threads) |")
        print("|---|---|---|---|")

        def create_model(i: int) -> None:
            kube.request(
                "CREATE", QUANTIZED_MODELS, QUANTIZED_MODELS.path(NS), None, quantized_model(i),
                "application/json",
            )  # fmt: skip

        measure(cluster, "create a QuantizedModel (kubectl create)", n, create_model)
        measure(
            cluster, "apply a QuantizedModel status (server-side apply)", n,
            lambda i: kube.apply_status(NS, f"m-{i:04d}", STATUS),
        )  # fmt: skip
        changed = copy.deepcopy(STATUS)
        changed["variants"][0]["message"] = "changed"
        measure(
            cluster, "apply it again, one field changed", n,
            lambda i: kube.apply_status(NS, f"m-{i:04d}", changed),
        )  # fmt: skip
        measure(
            cluster, "apply it again, unchanged (what qmo no longer does)", n,
            lambda i: kube.apply_status(NS, f"m-{i:04d}", changed),
        )  # fmt: skip
        patched = copy.deepcopy(changed)
        patched["variants"][0]["message"] = "merge-patched"
        measure(
            cluster, "merge-patch the status instead, one field changed", n,
            lambda i: kube.patch_status(NS, f"m-{i:04d}", patched),
        )  # fmt: skip
        measure(
            cluster, "apply a ConfigMap (artifact record)", n, lambda i: kube.apply(config_map(i))
        )
        measure(cluster, "apply a Service", n, lambda i: kube.apply(service(i)))
        body = {"metadata": {"name": "m-0000", "namespace": NS, "uid": "u"}}
        measure(
            cluster, "post an Event", n,
            lambda i: kube.post_event(body, "Normal", "Measured", f"event {i}"),
        )  # fmt: skip
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
