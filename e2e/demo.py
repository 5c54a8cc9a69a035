"""`make demo`: qmo on the embedded local control plane with a mixed GPU fleet.

Builds the control-plane binaries on first use (saying so), starts Kubernetes with 2x A100,
2x H100 and 1x L40S fake nodes, installs the CRDs, runs the operator, applies the examples and
shows `kubectl get qm` reaching Ready: INT8 on the A100s, FP8 on the H100s and the L40S. Then
the quality gate closes its loop on a before-traffic model (e2e/demo_gate.py): a passing report
promotes fp8, a regressing one moves int4-awq down the ladder to int8, which passes in turn.
Everything is stopped at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from kubernetes.client import ApiException

from e2e.cluster.binaries import default_bin_dir, ensure_binaries
from e2e.cluster.local import FLEETS_DIR, REPO, LocalCluster
from e2e.demo_gate import OPERATOR_LOG, header, run_gate_story, say
from e2e.operator_process import running_operator

NAMESPACE = "demo"
CLUSTER = "qmo-demo"
EXAMPLES = ("auto-mixed-cluster.yaml", "single-precision.yaml")

STORAGE = f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: qmo-demo-engines}}
spec:
  capacity: {{storage: 500Gi}}
  accessModes: [ReadWriteMany]
  hostPath: {{path: /tmp/qmo-demo/engines}}
  claimRef: {{namespace: {NAMESPACE}, name: qmo-engines}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: qmo-demo-models}}
spec:
  capacity: {{storage: 100Gi}}
  accessModes: [ReadOnlyMany]
  hostPath: {{path: /tmp/qmo-demo/models}}
  claimRef: {{namespace: {NAMESPACE}, name: models}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: qmo-engines, namespace: {NAMESPACE}}}
spec:
  accessModes: [ReadWriteMany]
  resources: {{requests: {{storage: 500Gi}}}}
  storageClassName: ""
  volumeName: qmo-demo-engines
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: models, namespace: {NAMESPACE}}}
spec:
  accessModes: [ReadOnlyMany]
  resources: {{requests: {{storage: 100Gi}}}}
  storageClassName: ""
  volumeName: qmo-demo-models
"""


def show(cluster: LocalCluster, *args: str) -> None:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    print(cluster.kubectl(*args).stdout, flush=True)


def run(cluster: LocalCluster) -> None:
    """Everything once the control plane runs; raises when something does not happen in time."""
    show(cluster, "get", "nodes", "-L", "nvidia.com/gpu.product,nvidia.com/gpu.count")
    say("Installing the CRDs (kubectl apply --server-side -f crds/)")
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("apply", "-f", "-", input=STORAGE)
    log = REPO / OPERATOR_LOG
    say(f"Running the operator (qmo run; log: {OPERATOR_LOG})")
    with running_operator(cluster.kubeconfig, log):
        header("2. A precision per GPU class: INT8 on the A100s, FP8 on the H100s and the L40S")
        for example in EXAMPLES:
            say(f"kubectl apply -f examples/{example}")
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / example))
        say("Waiting for every QuantizedModel to be Ready (builds run as Jobs, then serve)")
        cluster.kubectl(
            "wait", "-n", NAMESPACE, "--for=condition=Ready", "qm", "--all", "--timeout=180s"
        )
        show(cluster, "get", "qm", "-n", NAMESPACE, "-o", "wide")
        show(cluster, "get", "deployments,services", "-n", NAMESPACE, "-l",
             "app.kubernetes.io/managed-by=qmo")  # fmt: skip
        show(cluster, "get", "pods", "-n", NAMESPACE, "-o", "wide", "-l",
             "app.kubernetes.io/component=server")  # fmt: skip
        show(cluster, "get", "events", "-n", NAMESPACE, "--field-selector",
             "involvedObject.kind=QuantizedModel",
             "--sort-by=.metadata.resourceVersion")  # fmt: skip
        say("qwen-7b is gated after rollout (the default) and stays Pending: no report came.")
        run_gate_story(cluster, NAMESPACE, first_section=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args(argv)
    started = time.monotonic()

    if not all((default_bin_dir() / name).exists() for name in ("kube-apiserver", "kwok")):
        say(
            "First run: building Kubernetes, etcd, kwok and helm from the Go module proxy into "
            f"{default_bin_dir()} (about 8 minutes on 2 cores; later runs reuse them)."
        )
    binaries = ensure_binaries()
    header("1. Kubernetes on 127.0.0.1 with fake GPU nodes (kwok), the CRDs and the operator")
    say(f"Starting Kubernetes {binaries.kubernetes_version} with the mixed GPU fleet")
    cluster = LocalCluster.start(CLUSTER, FLEETS_DIR / "mixed.yaml", binaries=binaries)
    finished = False
    try:
        run(cluster)
        finished = True
    except (subprocess.CalledProcessError, RuntimeError, AssertionError, ApiException) as err:
        print(f"demo failed: {err}", file=sys.stderr)
    finally:
        if not (finished and args.keep):
            cluster.stop()
    if not finished:
        return 1
    say(f"Demo finished in {time.monotonic() - started:.0f}s.")
    if args.keep:
        say(f"The cluster stays up, the operator does not: export KUBECONFIG={cluster.kubeconfig}")
        say(f"Stop it with: python -m e2e.cluster down --name {CLUSTER}")
    else:
        say("Stopped the cluster; nothing is left running.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
