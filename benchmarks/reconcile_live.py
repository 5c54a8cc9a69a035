"""Time from `kubectl apply` of N QuantizedModels to all Ready, on the local control plane.

Starts its own control plane (mixed fleet, scaled up so GPUs are not the limit) and the
operator, applies N models of 3 variants each, and prints the time until every model is
Ready, reconciles per second, and the operator's peak memory. Builds "finish" at once under
kwok, so this measures the operator and the API server, not GPUs.

    .venv/bin/python -m benchmarks.reconcile_live --models 10 25 50
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from e2e.cluster.local import REPO, LocalCluster
from e2e.operator_process import running_operator

FLEET = {
    "nodes": [
        {"name": "a100", "count": 20, "product": "NVIDIA-A100-SXM4-80GB", "family": "ampere",
         "computeCapability": "8.0", "memoryMiB": 81920, "gpus": 8},
        {"name": "h100", "count": 20, "product": "NVIDIA-H100-80GB-HBM3", "family": "hopper",
         "computeCapability": "9.0", "memoryMiB": 81559, "gpus": 8},
        {"name": "l40s", "count": 20, "product": "NVIDIA-L40S", "family": "ada-lovelace",
         "computeCapability": "8.9", "memoryMiB": 46068, "gpus": 8},
    ]
}  # fmt: skip

STORE = """
apiVersion: v1
kind: PersistentVolume
metadata: {name: bench-engines}
spec:
  capacity: {storage: 500Gi}
  accessModes: [ReadWriteMany]
  hostPath: {path: /tmp/qmo-bench-engines}
  claimRef: {namespace: bench, name: qmo-engines}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: qmo-engines, namespace: bench}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 500Gi}}
  storageClassName: ""
  volumeName: bench-engines
"""


def models(count: int, offset: int) -> str:
    docs = [
        {
            "apiVersion": "qmo.dev/v1alpha1",
            "kind": "QuantizedModel",
            "metadata": {"name": f"m{offset + i}", "namespace": "bench"},
            "spec": {
                "model": {"source": f"hf://org/model-{offset + i}", "revision": "v1"},
                "precisions": ["auto"],
                "quality": {"gate": "off"},
            },
        }
        for i in range(count)
    ]
    return yaml.safe_dump_all(docs)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, nargs="+", default=[10, 25])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        fleet_file = Path(scratch) / "fleet.yaml"
        fleet_file.write_text(yaml.safe_dump(FLEET))
        cluster = LocalCluster.start("qmo-bench", fleet_file)
        try:
            cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            cluster.kubectl("wait", "--for=condition=Established", "crd", "--all")
            cluster.kubectl("create", "namespace", "bench")
            cluster.kubectl("apply", "-f", "-", input=STORE)
            log = Path(scratch) / "operator.log"
            with running_operator(cluster.kubeconfig, log, resync_seconds=60) as operator:
                print(
                    f"{'models':>6} {'variants':>8} {'seconds to Ready':>16} {'reconciles/s':>12}"
                )
                offset = 0
                for count in args.models:
                    before = operator.metric("qmo_reconcile_total")
                    started = time.monotonic()
                    cluster.kubectl("apply", "-f", "-", input=models(count, offset))
                    names = [f"qm/m{offset + i}" for i in range(count)]
                    cluster.kubectl(
                        "wait", "-n", "bench", "--for=condition=Ready", "--timeout=600s", *names
                    )
                    elapsed = time.monotonic() - started
                    done = operator.metric("qmo_reconcile_total") - before
                    status = json.loads(
                        cluster.kubectl("get", names[0], "-n", "bench", "-o", "json").stdout
                    )["status"]
                    print(
                        f"{count:>6} {count * len(status['variants']):>8} {elapsed:>16.1f} "
                        f"{done / elapsed:>12.1f}"
                    )
                    offset += count
                assert operator.process is not None
                print(f"operator peak RSS {peak_rss_mib(operator.process.pid):.0f} MiB")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
