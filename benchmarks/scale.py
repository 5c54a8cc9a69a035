"""qmo beside NVIDIA's NIM Operator at 100 to 1,000 models, on one local control plane.

One run, one control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) with a
fleet of 200 fake GPU nodes (A100, H100, L40S). For each N it applies N single-variant
QuantizedModels (one precision, one GPU class: a build Job, an artifact record, a Deployment
and two Services each) and times them to Ready; then the same N NIMServices through the NIM
Operator (`nim`); then its full pipeline (`nim-pipeline`): N NIMCaches, each caching its model
into a PVC of its own through a caching Job (qmo's build Job's counterpart), and N NIMServices
serving from them, timed until every NIMService is Ready; finally N models of 3 variants each
(auto on the mixed fleet). Each phase runs in a fresh namespace with only its operator running,
and reads kube-apiserver's
`apiserver_request_total` before and after: requests by verb on the phase's resources while
converging, and, where asked, in an idle window that spans at least two of qmo's resyncs.

    .venv/bin/python -m benchmarks.scale --nim-source /path/to/k8s-nim-operator.git \\
        --models 100 300 1000 --multi 1000 --idle-seconds 300

Never part of CI (it takes most of an hour on 2 cores). `--no-nim` runs qmo alone; `--phases`
picks among qmo, nim and nim-pipeline at each N.

Nothing binds PersistentVolumeClaims on this control plane (no provisioner), so before the
pipeline's phase, and its floor, each NIMCache's claim-to-be gets a PersistentVolume bound to it
in advance, which kube-controller-manager binds once the operator creates the claim (qmo's
shared engine store is given the same way, once per namespace). Each NIMCache also gets its
model-manifest ConfigMap in advance: see benchmarks/peers.py's nim_cache_manifests for why.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from benchmarks import floor, peers
from e2e.cluster.local import REPO, LocalCluster
from e2e.operator_process import free_port, running_operator

Obj = dict[str, Any]
FLEET = {
    "nodes": [
        {"name": "a100", "count": 67, "product": "NVIDIA-A100-SXM4-80GB", "family": "ampere",
         "computeCapability": "8.0", "memoryMiB": 81920, "gpus": 32},
        {"name": "h100", "count": 67, "product": "NVIDIA-H100-80GB-HBM3", "family": "hopper",
         "computeCapability": "9.0", "memoryMiB": 81559, "gpus": 32},
        {"name": "l40s", "count": 66, "product": "NVIDIA-L40S", "family": "ada-lovelace",
         "computeCapability": "8.9", "memoryMiB": 46068, "gpus": 32},
    ]
}  # fmt: skip
QMO_RESOURCES = {
    "quantizedmodels", "qualityreports", "jobs", "configmaps", "deployments", "services",
    "persistentvolumeclaims", "events", "serviceaccounts", "rolebindings", "pods",
}  # fmt: skip
NIM_RESOURCES = {
    "nimservices", "deployments", "services", "serviceaccounts", "roles", "rolebindings",
    "events", "configmaps", "persistentvolumeclaims",
}  # fmt: skip
NIM_PIPELINE_RESOURCES = NIM_RESOURCES | {"nimcaches", "jobs", "pods", "persistentvolumes"}
PHASES = ("qmo", "nim", "nim-pipeline")
# Phase.operator of each phase, and the resources its requests are counted on.
OPERATOR = {"qmo": "qmo", "nim": "nim-operator", "nim-pipeline": "nim-pipeline"}
RESOURCES = {"qmo": QMO_RESOURCES, "nim": NIM_RESOURCES, "nim-pipeline": NIM_PIPELINE_RESOURCES}
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def store_objects(namespace: str) -> str:
    return f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: engines-{namespace}}}
spec:
  capacity: {{storage: 500Gi}}
  accessModes: [ReadWriteMany]
  hostPath: {{path: /tmp/qmo-scale-engines}}
  claimRef: {{namespace: {namespace}, name: qmo-engines}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: qmo-engines
  namespace: {namespace}
  labels: {{"{floor.PROVIDED}": "true"}}
spec:
  accessModes: [ReadWriteMany]
  resources: {{requests: {{storage: 500Gi}}}}
  storageClassName: ""
  volumeName: engines-{namespace}
"""


def quantized_models(namespace: str, count: int, multi: bool) -> list[Obj]:
    pinned = {"precisions": ["fp8"], "gpu": {"classes": ["h100"]}}
    spread = {"precisions": ["auto"]}
    return [
        {
            "apiVersion": "qmo.dev/v1alpha1",
            "kind": "QuantizedModel",
            "metadata": {"name": f"m-{i:04d}", "namespace": namespace},
            "spec": {
                "model": {"source": f"hf://org/model-{i}", "revision": "v1"},
                **(spread if multi else pinned),
                "quality": {"gate": "off"},
            },
        }
        for i in range(count)
    ]


# --- measuring ------------------------------------------------------------------------------


def request_counts(cluster: LocalCluster) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (resource, verb)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    counts: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        resource = found.get("resource", "")
        if found.get("subresource"):
            resource = f"{resource}/{found['subresource']}"
        counts[(resource, found.get("verb", ""))] += int(float(match["value"]))
    return counts


def by_verb(
    before: Counter[tuple[str, str]], after: Counter[tuple[str, str]], resources: set[str]
) -> dict[str, int]:
    verbs: Counter[str] = Counter()
    for (resource, verb), value in after.items():
        if resource.split("/")[0] in resources:
            delta = value - before.get((resource, verb), 0)
            if delta:
                verbs[verb] += delta
    return dict(sorted(verbs.items()))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control_plane_cpu(cluster: LocalCluster) -> dict[str, float]:
    """CPU seconds used so far by each control-plane process, by binary name."""
    used: dict[str, float] = {}
    for pid in cluster._leftover_pids():
        name = Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
        try:
            used[name] = used.get(name, 0.0) + cpu_seconds(pid)
        except OSError:
            continue
    return used


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 1) for k, v in sorted(after.items())}


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def histogram_quantile(text: str, metric: str, q: float) -> float | None:
    """Prometheus' histogram_quantile over one histogram's cumulative buckets."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{metric}_bucket{{"):
            le = re.search(r'le="([^"]+)"', line)
            assert le is not None
            buckets.append((float(le[1]), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / width if width else 1
            )
        lower_bound, lower_count = bound, count
    return None


def wait_all(
    api: client.ApiClient,
    group: str,
    version: str,
    plural: str,
    namespace: str,
    count: int,
    ready: Callable[[Obj], bool],
    timeout: float,
) -> float:
    """Block until `count` objects are ready (watched, never polled); returns the monotonic time."""
    custom = client.CustomObjectsApi(api)
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    listing = custom.list_namespaced_custom_object(group, version, namespace, plural)
    for item in listing["items"]:
        if ready(item):
            done.add(item["metadata"]["name"])
    version_seen = listing["metadata"]["resourceVersion"]
    while len(done) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(done)}/{count} {plural} ready after {timeout:.0f}s")
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object, group, version, namespace, plural,
            resource_version=version_seen, timeout_seconds=60,
        )  # fmt: skip
        for event in stream:
            obj = event["object"]
            version_seen = obj["metadata"]["resourceVersion"]
            name = obj["metadata"]["name"]
            if event["type"] != "DELETED" and ready(obj):
                done.add(name)
            if len(done) >= count:
                break
    return time.monotonic()


def qmo_ready(obj: Obj) -> bool:
    status = obj.get("status") or {}
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    ) and status.get("observedGeneration") == obj["metadata"].get("generation")


def nim_ready(obj: Obj) -> bool:
    return (obj.get("status") or {}).get("state") == "Ready"


def objects_per_cr(cluster: LocalCluster, namespace: str, count: int) -> dict[str, float]:
    """Objects of the operators' kinds in `namespace` per model: per QuantizedModel, per
    NIMService, or per NIMCache and NIMService pair. The benchmark's own inputs are left out."""
    kinds = (
        "jobs,configmaps,deployments,services,serviceaccounts,roles,rolebindings,"
        "persistentvolumeclaims"
    )
    listed = json.loads(cluster.kubectl("get", kinds, "-n", namespace, "-o", "json").stdout)
    tally: Counter[str] = Counter()
    for item in listed["items"]:
        if not floor.built_in(item) and not floor.provided(item):
            tally[item["kind"]] += 1
    return {kind: round(n / count, 2) for kind, n in sorted(tally.items())}


@dataclass
class Phase:
    operator: str
    models: int
    variants_per_model: int
    seconds_to_ready: float = 0.0
    create_seconds: float = 0.0
    workers: int = 1
    peak_rss_mib: float = 0.0
    reconcile_p50_ms: float | None = None
    reconcile_p99_ms: float | None = None
    converging_requests: dict[str, int] = field(default_factory=dict)
    operator_requests: dict[str, int] = field(default_factory=dict)
    idle_seconds: int = 0
    idle_requests: dict[str, int] = field(default_factory=dict)
    idle_operator_requests: dict[str, int] = field(default_factory=dict)
    objects_per_cr: dict[str, float] = field(default_factory=dict)
    # CPU seconds used while converging: the operator, and each control-plane process.
    operator_cpu_seconds: float = 0.0
    control_plane_cpu_seconds: dict[str, float] = field(default_factory=dict)


def _metric_by_verb(text: str, metric: str) -> dict[str, int]:
    verbs: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(f"{metric}{{"):
            verb = re.search(r'verb="([^"]+)"', line)
            if verb is not None:
                verbs[verb[1]] += int(float(line.rsplit(" ", 1)[1]))
    return dict(verbs)


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def _create(cluster: LocalCluster, objects: list[Obj]) -> float:
    started = time.monotonic()
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump_all(objects))
    return time.monotonic() - started


def _delete_namespace(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("delete", "namespace", namespace, "--timeout=900s")


def run_qmo(
    cluster: LocalCluster, api: client.ApiClient, args: argparse.Namespace, count: int, multi: bool,
    idle: int, scratch: Path, snapshot: list[Obj] | None = None,
) -> Phase:  # fmt: skip
    namespace = f"qmo-{count}-{'multi' if multi else 'single'}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("apply", "-f", "-", input=store_objects(namespace))
    phase = Phase("qmo", count, 3 if multi else 1, workers=args.workers)
    log = scratch / f"{namespace}.log"
    extra = ("--workers", str(args.workers))
    with running_operator(
        cluster.kubeconfig, log, *extra, resync_seconds=args.resync_seconds
    ) as operator:
        assert operator.process is not None
        own_before = _metric_by_verb(operator.metrics_text(), "qmo_api_requests_total")
        before = request_counts(cluster)
        cpu_before, plane_before = cpu_seconds(operator.process.pid), control_plane_cpu(cluster)
        started = time.monotonic()
        phase.create_seconds = _create(cluster, quantized_models(namespace, count, multi))
        ready_at = wait_all(
            api, "qmo.dev", "v1alpha1", "quantizedmodels", namespace, count, qmo_ready,
            timeout=args.timeout,
        )  # fmt: skip
        phase.seconds_to_ready = round(ready_at - started, 1)
        phase.operator_cpu_seconds = round(cpu_seconds(operator.process.pid) - cpu_before, 1)
        phase.control_plane_cpu_seconds = cpu_delta(plane_before, control_plane_cpu(cluster))
        converged = request_counts(cluster)
        phase.converging_requests = by_verb(before, converged, QMO_RESOURCES)
        text = operator.metrics_text()
        own_converged = _metric_by_verb(text, "qmo_api_requests_total")
        phase.operator_requests = _minus(own_converged, own_before)
        phase.objects_per_cr = objects_per_cr(cluster, namespace, count)
        if snapshot is not None:
            snapshot += final_objects(cluster, namespace, floor.QMO_KINDS)
        if idle:
            # Writes still in flight right after Ready (the last status) settle first.
            time.sleep(5)
            idle_before, idle_own = (
                request_counts(cluster),
                _metric_by_verb(operator.metrics_text(), "qmo_api_requests_total"),
            )
            time.sleep(idle)
            phase.idle_seconds = idle
            phase.idle_requests = by_verb(idle_before, request_counts(cluster), QMO_RESOURCES)
            phase.idle_operator_requests = _minus(
                _metric_by_verb(operator.metrics_text(), "qmo_api_requests_total"), idle_own
            )
        text = operator.metrics_text()
        for q, name in ((0.5, "reconcile_p50_ms"), (0.99, "reconcile_p99_ms")):
            value = histogram_quantile(text, "qmo_reconcile_duration_seconds", q)
            setattr(phase, name, round(value * 1000, 1) if value is not None else None)
        phase.peak_rss_mib = round(peak_rss_mib(operator.process.pid), 1)
        _delete_namespace(cluster, namespace)
    cluster.kubectl("delete", "pv", f"engines-{namespace}", "--wait=false", check=False)
    return phase


def run_nim(
    cluster: LocalCluster, api: client.ApiClient, args: argparse.Namespace, count: int,
    binary: Path, tree: Path, scratch: Path, snapshot: list[Obj] | None = None,
    pipeline: bool = False,
) -> Phase:  # fmt: skip
    """N NIMServices, or with `pipeline` N NIMCaches and N NIMServices using them, through the
    NIM Operator; timed until every NIMService is Ready (a NIMService waits for its cache)."""
    of = "nim-pipeline" if pipeline else "nim"
    namespace = f"{of}-{count}"
    cluster.kubectl("create", "namespace", namespace)
    if pipeline:
        objects = peers.nim_pipeline(namespace, count)
        # The operator's inputs, given before the clock starts, like qmo's engine store.
        volumes = floor.static_volumes(peers.nim_cache_claims(objects), namespace)
        _create(cluster, volumes + peers.nim_cache_manifests(objects, floor.PROVIDED))
    else:
        objects = peers.nim_services(namespace, count)
    phase = Phase(OPERATOR[of], count, 1, workers=1)
    with (
        (scratch / f"{namespace}.log").open("w") as log,
        peers.running_nim(binary, tree, cluster.kubeconfig, free_port(), log) as process,
    ):
        before = request_counts(cluster)
        cpu_before, plane_before = cpu_seconds(process.pid), control_plane_cpu(cluster)
        started = time.monotonic()
        phase.create_seconds = _create(cluster, objects)
        ready_at = wait_all(
            api, "apps.nvidia.com", "v1alpha1", "nimservices", namespace, count, nim_ready,
            timeout=args.timeout,
        )  # fmt: skip
        phase.seconds_to_ready = round(ready_at - started, 1)
        phase.operator_cpu_seconds = round(cpu_seconds(process.pid) - cpu_before, 1)
        phase.control_plane_cpu_seconds = cpu_delta(plane_before, control_plane_cpu(cluster))
        phase.converging_requests = by_verb(before, request_counts(cluster), RESOURCES[of])
        phase.objects_per_cr = objects_per_cr(cluster, namespace, count)
        if snapshot is not None:
            kinds = floor.NIM_PIPELINE_KINDS if pipeline else floor.NIM_KINDS
            snapshot += final_objects(cluster, namespace, kinds)
        phase.peak_rss_mib = round(peak_rss_mib(process.pid), 1)
        _delete_namespace(cluster, namespace)  # its finalizers need the operator running
    _delete_volumes(cluster, namespace)
    return phase


def _delete_volumes(cluster: LocalCluster, label: str) -> None:
    """The PersistentVolumes floor.static_volumes made under `label`."""
    selector = f"benchmarks.qmo.dev/for={label}"
    cluster.kubectl("delete", "pv", "-l", selector, "--wait=false", check=False)


def final_objects(cluster: LocalCluster, namespace: str, kinds: tuple[str, ...]) -> list[Obj]:
    listed = cluster.kubectl("get", ",".join(kinds), "-n", namespace, "-o", "json").stdout
    items: list[Obj] = json.loads(listed)["items"]
    return items


def run_floor(
    cluster: LocalCluster, api: client.ApiClient, args: argparse.Namespace, of: str, count: int,
    snapshot: list[Obj],
) -> Phase:  # fmt: skip
    """`of`'s final objects created again with no operator running (see benchmarks/floor.py):
    timed to every Job complete and every Deployment available."""
    namespace = f"floor-{of}-{count}"
    cluster.kubectl("create", "namespace", namespace)
    if of == "qmo":
        cluster.kubectl("apply", "-f", "-", input=store_objects(namespace))
    first, shards = (
        floor.replay_first(snapshot, namespace),
        floor.replay(snapshot, namespace, args.workers),
    )
    objects = first + [obj for shard in shards for obj in shard]
    claims = [obj for obj in objects if obj["kind"] == "PersistentVolumeClaim"]
    if claims:  # bound in advance, as in the operator's phase
        _create(cluster, floor.static_volumes(claims, namespace))
    jobs = sum(1 for obj in objects if obj["kind"] == "Job")
    deployments = sum(1 for obj in objects if obj["kind"] == "Deployment")
    phase = Phase(f"floor-{of}", count, 1, workers=len(shards))
    before, plane_before = request_counts(cluster), control_plane_cpu(cluster)
    started = time.monotonic()
    if first:
        _create(cluster, first)
    with concurrent.futures.ThreadPoolExecutor(len(shards)) as pool:
        list(pool.map(lambda shard: _create(cluster, shard), shards))
    phase.create_seconds = round(time.monotonic() - started, 1)
    ready_at = max(
        wait_all(api, "batch", "v1", "jobs", namespace, jobs, job_complete, args.timeout),
        wait_all(
            api, "apps", "v1", "deployments", namespace, deployments, deployment_available,
            args.timeout,
        ),
    )  # fmt: skip
    phase.seconds_to_ready = round(ready_at - started, 1)
    phase.control_plane_cpu_seconds = cpu_delta(plane_before, control_plane_cpu(cluster))
    phase.converging_requests = by_verb(before, request_counts(cluster), RESOURCES[of])
    phase.objects_per_cr = objects_per_cr(cluster, namespace, count)
    _delete_namespace(cluster, namespace)
    if of == "qmo":
        cluster.kubectl("delete", "pv", f"engines-{namespace}", "--wait=false", check=False)
    _delete_volumes(cluster, namespace)
    return phase


def job_complete(obj: Obj) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def deployment_available(obj: Obj) -> bool:
    wanted = (obj.get("spec") or {}).get("replicas", 1)
    return bool((obj.get("status") or {}).get("availableReplicas", 0) >= wanted)


# --- report ---------------------------------------------------------------------------------


def report(phases: list[Phase], command: str) -> str:
    lines = [
        f"    {command}",
        "",
        "| operator | models | variants/model | s to all Ready | create s | workers | peak RSS MiB "
        "| reconcile p50/p99 ms | operator CPU s | control plane CPU s | objects per CR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        latency = (
            f"{p.reconcile_p50_ms}/{p.reconcile_p99_ms}" if p.reconcile_p50_ms is not None else "-"
        )
        objects = ", ".join(f"{k} {v:g}" for k, v in p.objects_per_cr.items())
        lines.append(
            f"| {p.operator} | {p.models} | {p.variants_per_model} | {p.seconds_to_ready} | "
            f"{p.create_seconds:.1f} | {p.workers} | {p.peak_rss_mib} | {latency} | "
            f"{p.operator_cpu_seconds} | {sum(p.control_plane_cpu_seconds.values()):.1f} | "
            f"{objects} |"
        )
    if any(p.operator.endswith("nim-pipeline") for p in phases):
        lines += [
            "",
            "Objects per CR: nim-pipeline's are per model, one NIMCache and one NIMService; "
            "the benchmark's inputs (volumes, NIMCache manifests) are left out.",
        ]
    qmo = {p.models: p for p in phases if p.operator == "qmo" and p.variants_per_model == 1}
    for peer, what in (("nim-operator", "NIMServices alone"),
                       ("nim-pipeline", "NIMCache + NIMService per model")):  # fmt: skip
        nim = {p.models: p for p in phases if p.operator == peer}
        if set(nim) & set(qmo):
            lines += ["", f"Ratios (qmo / NIM Operator, {what}; same N, same run):", ""]
        for n in sorted(set(nim) & set(qmo)):
            ratio = qmo[n].seconds_to_ready / nim[n].seconds_to_ready
            lines.append(f"- N = {n}: {ratio:.2f}")
    if len(qmo) >= 2:
        low, high = min(qmo), max(qmo)
        growth = qmo[high].seconds_to_ready / qmo[low].seconds_to_ready
        lines.append(
            f"- qmo growth time({high}) / time({low}): {growth:.2f} (N grew {high / low:g}x)"
        )
    floors = {(p.operator.removeprefix("floor-"), p.models): p for p in phases
              if p.operator.startswith("floor-")}  # fmt: skip
    if floors:
        lines += ["", "Against the floor (the same final objects, no operator running):", ""]
    for (of, models), base in sorted(floors.items()):
        name = OPERATOR[of]
        ran = next(p for p in phases if p.operator == name and p.models == models
                   and p.variants_per_model == 1)  # fmt: skip
        plane, plane_floor = (sum(x.control_plane_cpu_seconds.values()) for x in (ran, base))
        lines.append(
            f"- {name} N = {models}: {ran.seconds_to_ready} s against a floor of "
            f"{base.seconds_to_ready} s ({ran.seconds_to_ready / base.seconds_to_ready:.2f}x); "
            f"control-plane CPU {plane:.1f} s against {plane_floor:.1f} s, operator CPU "
            f"{ran.operator_cpu_seconds} s"
        )
    lines += ["", "API requests by verb on each phase's resources (kube-apiserver's count; "
              "includes controller-manager and kwok on the same kinds):", ""]  # fmt: skip
    for p in phases:
        lines.append(f"- {p.operator} N={p.models}x{p.variants_per_model} converging: "
                     f"{p.converging_requests}")  # fmt: skip
        if p.operator_requests:
            lines.append(f"  - made by qmo itself (qmo_api_requests_total): {p.operator_requests}")
        if p.idle_seconds:
            lines.append(f"  - idle {p.idle_seconds}s: apiserver {p.idle_requests or '{}'}; "
                         f"qmo itself {p.idle_operator_requests or '{}'}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--multi", type=int, default=1000, help="N for 3 variants/model (0: skip)")
    parser.add_argument("--idle-seconds", type=int, default=300)
    parser.add_argument("--resync-seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--nim-source", type=Path, help="NIM Operator git directory or checkout")
    parser.add_argument("--no-nim", action="store_true", help="qmo alone (no nim phases)")
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=PHASES,
        default=list(PHASES),
        help="phases to run at each N, in this order (default: all); --multi is apart",
    )
    parser.add_argument(
        "--floors",
        action="store_true",
        help="at each N, also create each operator's final objects again with no operator "
        "running (benchmarks/floor.py)",
    )
    parser.add_argument("--json", type=Path, help="also write the phases as JSON here")
    args = parser.parse_args()
    if args.no_nim:
        args.phases = [p for p in args.phases if p == "qmo"]
    nim_phases = [p for p in args.phases if p != "qmo"]
    if nim_phases and args.nim_source is None:
        parser.error(f"--nim-source is required for {', '.join(nim_phases)} (or --no-nim)")
    binary = tree = None
    if nim_phases:
        binary, tree = peers.nim_binary(args.nim_source)
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        fleet = scratch / "fleet.yaml"
        fleet.write_text(yaml.safe_dump(FLEET))
        cluster = LocalCluster.start("qmo-scale", fleet)
        try:
            cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            if tree is not None:
                cluster.kubectl("apply", "--server-side", "-f", str(peers.crd_directory(tree)))
            cluster.kubectl("wait", "--for=condition=Established", "crd", "--all")
            api = config.new_client_from_config(cluster.kubeconfig)
            largest = max(args.models)

            def record(phase: Phase) -> None:
                phases.append(phase)
                print(json.dumps(asdict(phase)), flush=True)

            for count in args.models:
                idle = args.idle_seconds if count == largest else 0
                for of in args.phases:
                    snapshot: list[Obj] | None = [] if args.floors else None
                    if of == "qmo":
                        record(run_qmo(cluster, api, args, count, False, idle, scratch, snapshot))
                    else:
                        assert binary is not None
                        assert tree is not None
                        record(run_nim(
                            cluster, api, args, count, binary, tree, scratch, snapshot,
                            pipeline=of == "nim-pipeline",
                        ))  # fmt: skip
                    if snapshot is not None:
                        record(run_floor(cluster, api, args, of, count, snapshot))
            if args.multi:
                record(run_qmo(cluster, api, args, args.multi, True, args.idle_seconds, scratch))
        finally:
            cluster.stop()
    if args.json:
        args.json.write_text(json.dumps([asdict(p) for p in phases], indent=2))
    command = "python -m benchmarks.scale " + " ".join(sys.argv[1:])
    print(report(phases, command))


if __name__ == "__main__":
    main()
