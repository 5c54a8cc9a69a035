"""Fluent fixture builders for the pure tests: specs, GPU nodes and classes, observations.

`a_model().with_precisions("fp8").with_size(...).spec()` builds a validated
QuantizedModelSpec; `gpu_node("h100")` builds a Node dict labelled as GPU Feature Discovery
labels it; `a_class("a100")` builds a GpuClass directly; `a_cluster(a_class("h100"))` builds
the planner's `Observed`; `a_build_job()`, `a_build_pod()` and `a_deployment()` build the
API objects that `qmo.controller.gather` turns into observations.

The GPU facts below are written out here on purpose rather than read from qmo.gpu, so the
tests check the product table against an independent copy.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from typing import Any

from qmo.api.buildcontract import BuildResult
from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.config import OperatorConfig
from qmo.gpu import ComputeCapability, GpuClass, GpuInventory, UnknownGpu
from qmo.manifests.labels import Owner
from qmo.planner.plan import plan_model
from qmo.planner.types import (
    BuildObservation,
    BuildState,
    DeploymentObservation,
    Observed,
    Plan,
    PlannedVariant,
    ReportObservation,
)

Obj = dict[str, Any]


@dataclass(frozen=True)
class GpuFacts:
    product: str  # nvidia.com/gpu.product as GPU Feature Discovery writes it
    family: str
    compute_capability: str
    memory_mib: int  # what the GPU really reports, not a round number


GPUS: dict[str, GpuFacts] = {
    "h100": GpuFacts("NVIDIA-H100-80GB-HBM3", "hopper", "9.0", 81559),
    "h100-pcie": GpuFacts("NVIDIA-H100-PCIe", "hopper", "9.0", 81559),
    "h200": GpuFacts("NVIDIA-H200", "hopper", "9.0", 143771),
    "b200": GpuFacts("NVIDIA-B200", "blackwell", "10.0", 183359),
    "gb200": GpuFacts("NVIDIA-GB200", "blackwell", "10.0", 189471),
    "b300": GpuFacts("NVIDIA-B300-SXM6-AC", "blackwell", "10.3", 275040),
    "rtx-pro-6000": GpuFacts(
        "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", "blackwell", "12.0", 97887
    ),
    "a100-80gb": GpuFacts("NVIDIA-A100-SXM4-80GB", "ampere", "8.0", 81920),
    "a100-40gb": GpuFacts("NVIDIA-A100-SXM4-40GB", "ampere", "8.0", 40960),
    "a10g": GpuFacts("NVIDIA-A10G", "ampere", "8.6", 23028),
    "l40s": GpuFacts("NVIDIA-L40S", "ada-lovelace", "8.9", 46068),
    "l4": GpuFacts("NVIDIA-L4", "ada-lovelace", "8.9", 23034),
    "t4": GpuFacts("Tesla-T4", "turing", "7.5", 15360),
}
# Short names tests may use; the class keeps qmo's name (a100 -> a100-80gb).
ALIASES = {"a100": "a100-80gb"}

LLAMA_70B = {"parametersBillions": 70.6, "numLayers": 80, "numKeyValueHeads": 8, "headDim": 128}


def _facts(kind: str) -> tuple[str, GpuFacts]:
    name = ALIASES.get(kind, kind)
    return name, GPUS[name]


# --- GPU nodes and classes ------------------------------------------------------------------


def gpu_node(
    kind: str,
    name: str | None = None,
    *,
    gpus: int = 8,
    product: str | None = None,
    gfd_labels: bool = True,
    memory_mib: int | None = None,
    compute_capability: str | None = None,
    ready: bool = True,
    schedulable: bool = True,
) -> Obj:
    """A Node with `gpus` allocatable GPUs of `kind` (a key of GPUS, or any name with `product`).

    `gfd_labels=False` leaves only the product label, as on a node without GPU Feature
    Discovery's compute-capability and memory labels.
    """
    facts = GPUS.get(ALIASES.get(kind, kind))
    product = product or (facts.product if facts else kind)
    labels = {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(gpus)}
    if gfd_labels:
        cc = compute_capability or (facts.compute_capability if facts else None)
        if cc is not None:
            major, minor = cc.split(".")
            labels["nvidia.com/gpu.compute.major"] = major
            labels["nvidia.com/gpu.compute.minor"] = minor
        memory = memory_mib or (facts.memory_mib if facts else None)
        if memory is not None:
            labels["nvidia.com/gpu.memory"] = str(memory)
        if facts is not None:
            labels["nvidia.com/gpu.family"] = facts.family
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name or f"{kind}-node", "labels": labels},
        "spec": {"unschedulable": True} if not schedulable else {},
        "status": {
            "allocatable": {"cpu": "64", "nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def a_class(
    kind: str,
    *,
    nodes: int = 1,
    gpus_per_node: int = 8,
    memory_mib: int | None = None,
    compute_capability: str | None = None,
) -> GpuClass:
    """A GpuClass as qmo.gpu would report it for `nodes` identical nodes of `kind`."""
    name, facts = _facts(kind)
    return GpuClass(
        name=name,
        product=facts.product,
        family=facts.family,
        compute_capability=ComputeCapability.parse(compute_capability or facts.compute_capability),
        memory_mib=memory_mib or facts.memory_mib,
        nodes=tuple(f"{name}-{i}" for i in range(nodes)),
        gpus_per_node=gpus_per_node,
        total_gpus=nodes * gpus_per_node,
    )


# --- QuantizedModel specs -------------------------------------------------------------------


class ModelBuilder:
    """A QuantizedModel spec, written as the user would write it (camelCase wire form)."""

    def __init__(self, source: str, revision: str | None) -> None:
        self.data: Obj = {"model": {"source": source}}
        if revision is not None:
            self.data["model"]["revision"] = revision

    def _section(self, *path: str) -> Obj:
        node = self.data
        for part in path:
            node = node.setdefault(part, {})
        return node

    def from_source(self, source: str) -> ModelBuilder:
        self.data["model"]["source"] = source
        return self

    def with_source_s3(self, **connection: Any) -> ModelBuilder:
        """model.s3: how build pods reach an s3:// source (wire names: pathStyle...)."""
        self.data["model"]["s3"] = connection
        return self

    def with_revision(self, revision: str | None) -> ModelBuilder:
        if revision is None:
            self.data["model"].pop("revision", None)
        else:
            self.data["model"]["revision"] = revision
        return self

    def unpinned(self) -> ModelBuilder:
        return self.with_revision(None)

    def with_token(self, secret: str, key: str = "HF_TOKEN") -> ModelBuilder:
        self.data["model"]["credentialsSecretRef"] = {"name": secret, "key": key}
        return self

    def with_size(
        self,
        parameters_billions: float,
        num_layers: int,
        num_key_value_heads: int,
        head_dim: int,
    ) -> ModelBuilder:
        self.data["model"]["size"] = {
            "parametersBillions": parameters_billions,
            "numLayers": num_layers,
            "numKeyValueHeads": num_key_value_heads,
            "headDim": head_dim,
        }
        return self

    def sized_like(self, size: dict[str, Any]) -> ModelBuilder:
        self.data["model"]["size"] = dict(size)
        return self

    def with_precisions(self, *precisions: str) -> ModelBuilder:
        self.data["precisions"] = list(precisions)
        return self

    def with_kv_cache(self, dtype: str) -> ModelBuilder:
        self.data["kvCacheDtype"] = dtype
        return self

    def on_classes(self, *classes: str) -> ModelBuilder:
        self._section("gpu")["classes"] = list(classes)
        return self

    def with_tensor_parallel(self, size: int | str) -> ModelBuilder:
        self._section("gpu")["tensorParallel"] = size
        return self

    def with_backend(self, backend: str) -> ModelBuilder:
        self._section("engine")["backend"] = backend
        return self

    def with_image(self, image: str) -> ModelBuilder:
        self._section("engine")["image"] = image
        return self

    def with_builder_image(self, image: str) -> ModelBuilder:
        self._section("engine")["builderImage"] = image
        return self

    def with_limits(
        self, *, max_batch_size: int, max_seq_len: int, max_num_tokens: int | None = None
    ) -> ModelBuilder:
        engine = self._section("engine")
        engine["maxBatchSize"], engine["maxSeqLen"] = max_batch_size, max_seq_len
        if max_num_tokens is not None:
            engine["maxNumTokens"] = max_num_tokens
        return self

    def with_store(self, claim: str, *, create: bool = False, **extra: Any) -> ModelBuilder:
        self._section("engine", "store").update({"claimName": claim, "create": create, **extra})
        return self

    def with_build(self, **build: Any) -> ModelBuilder:
        self._section("engine", "build").update(build)
        return self

    def with_calibration(self, **calibration: Any) -> ModelBuilder:
        self._section("quantization", "calibration").update(calibration)
        return self

    def with_replicas(self, replicas: int) -> ModelBuilder:
        self._section("serving")["replicas"] = replicas
        return self

    def serving_default(self, precision: str) -> ModelBuilder:
        self._section("serving")["default"] = precision
        return self

    def with_serving(self, **serving: Any) -> ModelBuilder:
        self._section("serving").update(serving)
        return self

    def with_quality(self, **quality: Any) -> ModelBuilder:
        self._section("quality").update(quality)
        return self

    def ungated(self) -> ModelBuilder:
        return self.with_quality(gate="off")

    def wire(self) -> Obj:
        return copy.deepcopy(self.data)

    def spec(self) -> QuantizedModelSpec:
        return QuantizedModelSpec.model_validate(self.wire())


def a_model(
    source: str = "hf://meta-llama/Llama-3.1-8B-Instruct", revision: str | None = "0e9e39f"
) -> ModelBuilder:
    return ModelBuilder(source, revision)


def an_owner(name: str = "llama", namespace: str = "models", uid: str = "uid-1") -> Owner:
    return Owner(name=name, namespace=namespace, uid=uid)


# --- What the cluster holds (the planner's Observed) -----------------------------------------


@dataclass
class ClusterBuilder:
    classes: list[GpuClass]
    unknown: list[UnknownGpu] = field(default_factory=list)
    builds: dict[str, BuildObservation] = field(default_factory=dict)
    deployments: dict[str, DeploymentObservation] = field(default_factory=dict)
    claims: frozenset[str] | None = None
    reports: dict[tuple[str, str], ReportObservation] = field(default_factory=dict)
    last_good: dict[str, str] = field(default_factory=dict)

    def with_unknown(self, node: str, product: str, reason: str) -> ClusterBuilder:
        self.unknown.append(UnknownGpu(node, product, reason))
        return self

    def building(self, key: str, job: str = "qmo-build-job") -> ClusterBuilder:
        self.builds[key] = BuildObservation(key, BuildState.RUNNING, job=job)
        return self

    def built(self, key: str, *, job: str | None = "qmo-build-job") -> ClusterBuilder:
        self.builds[key] = BuildObservation(
            key,
            BuildState.SUCCEEDED,
            job=job,
            reason="BuildSucceeded",
            message="the build finished",
            artifact_path=f"/store/artifacts/{key}",
        )
        return self

    def failed(self, key: str, reason: str, message: str) -> ClusterBuilder:
        self.builds[key] = BuildObservation(
            key, BuildState.FAILED, job="qmo-build-job", reason=reason, message=message
        )
        return self

    def deployed(
        self, variant: str, key: str, *, ready: int = 1, replicas: int = 1
    ) -> ClusterBuilder:
        self.deployments[variant] = DeploymentObservation(
            name=f"llama-{variant}",
            replicas=replicas,
            ready_replicas=ready,
            updated_replicas=ready,
            revision=key,
        )
        return self

    def reported(
        self, variant: str, key: str, verdict: Verdict, message: str = "within 1.5%"
    ) -> ClusterBuilder:
        """A judged QualityReport about revision `key` of `variant`."""
        self.reports[(variant, key)] = ReportObservation(
            name=f"{variant}-{key[:8]}",
            variant=variant,
            cache_key=key,
            verdict=verdict,
            message=message,
            worst_benchmark="gsm8k",
            worst_delta_percent=0.4 if verdict == Verdict.PASS else 2.1,
        )
        return self

    def good_revision(self, variant: str, key: str) -> ClusterBuilder:
        self.last_good[variant] = key
        return self

    def with_claims(self, *claims: str) -> ClusterBuilder:
        self.claims = frozenset(claims)
        return self

    def observed(self) -> Observed:
        return Observed(
            inventory=GpuInventory(tuple(self.classes), tuple(self.unknown)),
            builds=dict(self.builds),
            deployments=dict(self.deployments),
            claims=self.claims,
            reports=dict(self.reports),
            last_good=dict(self.last_good),
        )


def a_cluster(*classes: GpuClass) -> ClusterBuilder:
    return ClusterBuilder(list(classes))


def variant(plan: Plan, name: str) -> PlannedVariant:
    """The planned variant called `name` (fails the test with the names there are)."""
    found = {v.name: v for v in plan.variants}
    assert name in found, f"no variant {name}; planned: {sorted(found)}"
    return found[name]


def key_of(spec: QuantizedModelSpec, cluster: ClusterBuilder, name: str) -> str:
    """The cache key the planner gives variant `name` in an empty cluster of those classes
    (any image allowed: keys, not the allowlist, are asked about)."""
    any_image = OperatorConfig(allowed_images=("*",))
    planned = variant(plan_model(spec, replace(cluster, builds={}).observed(), any_image), name)
    assert planned.cache_key is not None, f"{name} has no build: {planned.message}"
    return planned.cache_key


def serving_plan(spec: QuantizedModelSpec, *classes: GpuClass) -> Plan:
    """The plan once every buildable variant is built and all its replicas are ready."""
    cluster = a_cluster(*classes)
    first = plan_model(spec, cluster.observed())
    for v in first.variants:
        if v.cache_key is not None:
            cluster.built(v.cache_key).deployed(
                v.name,
                v.cache_key,
                ready=spec.serving.wanted_replicas,
                replicas=spec.serving.wanted_replicas,
            )
    return plan_model(spec, cluster.observed())


# --- API objects that gather observes -------------------------------------------------------


class JobBuilder:
    def __init__(self, name: str, key: str) -> None:
        self.obj: Obj = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "annotations": {"qmo.dev/revision": key}},
            "status": {},
        }

    def _condition(self, type_: str, reason: str, message: str) -> JobBuilder:
        self.obj["status"].setdefault("conditions", []).append(
            {"type": type_, "status": "True", "reason": reason, "message": message}
        )
        return self

    def complete(self) -> JobBuilder:
        return self._condition("Complete", "Completed", "Job completed")

    def failed(self, reason: str = "BackoffLimitExceeded", message: str = "") -> JobBuilder:
        return self._condition("Failed", reason, message or "Job has reached the backoff limit")

    def active(self, pods: int = 1) -> JobBuilder:
        self.obj["status"]["active"] = pods
        return self

    def job(self) -> Obj:
        return copy.deepcopy(self.obj)


def a_build_job(
    name: str = "qmo-build-h100-fp8-0123456789abcdef", key: str = "k" * 64
) -> JobBuilder:
    return JobBuilder(name, key)


def a_build_pod(
    message: BuildResult | str | None,
    *,
    finished_at: str = "2025-01-01T00:00:00Z",
    container: str = "builder",
) -> Obj:
    """A build pod whose container terminated with `message` (a BuildResult is serialised)."""
    text = json.dumps(message.to_wire()) if isinstance(message, BuildResult) else message
    terminated: Obj = {"exitCode": 0, "finishedAt": finished_at}
    if text is not None:
        terminated["message"] = text
    return {
        "metadata": {"name": f"pod-{finished_at}"},
        "status": {"containerStatuses": [{"name": container, "state": {"terminated": terminated}}]},
    }


def a_deployment(
    variant: str | None = "h100-fp8",
    *,
    key: str = "k" * 64,
    generation: int = 1,
    observed_generation: int | None = 1,
    ready: int = 1,
    updated: int = 1,
    replicas: int = 1,
) -> Obj:
    labels = {"qmo.dev/model": "llama"}
    if variant is not None:
        labels["qmo.dev/variant"] = variant
    status: Obj = {"readyReplicas": ready, "updatedReplicas": updated}
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    return {
        "metadata": {
            "name": f"llama-{variant}",
            "generation": generation,
            "labels": labels,
            "annotations": {"qmo.dev/revision": key},
        },
        "spec": {"replicas": replicas},
        "status": status,
    }
