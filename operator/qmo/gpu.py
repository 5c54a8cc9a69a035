"""GPU classes from node labels: which GPUs the cluster has, and what each can run.

Pure: takes Node objects (dicts as the API returns them), returns `GpuInventory`. The planner
decides per class; the reconciler only gathers nodes. Compute capability comes from the GPU
Feature Discovery labels first and from the product table second; a GPU known by neither is
reported, never guessed.

Numbers in labels and allocatable counts are bounded: any digit string up to 63 characters is
a valid label value, and a node whose labels claim more memory, GPUs or a higher compute
capability than any GPU has is reported as unknown, not planned on. Clamping would plan on a
GPU that does not exist (a model "fits" 1 TiB it does not have), the product table's numbers
would hide a broken labeller, and an unbounded number would reach every model's status
(status.gpuClasses[].memoryMiB is an int64: 60 nines fail every status write).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PRODUCT_LABEL = "nvidia.com/gpu.product"
FAMILY_LABEL = "nvidia.com/gpu.family"
CC_MAJOR_LABEL = "nvidia.com/gpu.compute.major"
CC_MINOR_LABEL = "nvidia.com/gpu.compute.minor"
MEMORY_LABEL = "nvidia.com/gpu.memory"
COUNT_LABEL = "nvidia.com/gpu.count"
GPU_RESOURCE = "nvidia.com/gpu"

# Beyond these a node's labels are wrong, not its GPU unusual (the largest GPU today, B300,
# has 288 GB; time-slicing multiplies a node's allocatable GPUs by its replicas).
MAX_MEMORY_MIB = 1024 * 1024  # 1 TiB per GPU
MAX_GPUS_PER_NODE = 1024
MAX_CAPABILITY = 99  # for the major and the minor version alike


@dataclass(frozen=True, order=True)
class ComputeCapability:
    """SM version, compared as numbers: 10.0 > 9.0 (a string compare gets Blackwell wrong)."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> ComputeCapability:
        return parse_capability(text)


def parse_capability(text: str) -> ComputeCapability:
    """'9.0' -> 9.0; '10.0' -> 10.0; anything else is a ValueError."""
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text)
    if not match:
        raise ValueError(f"not a compute capability: {text!r}")
    return ComputeCapability(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class KnownGpu:
    """One row of the product table."""

    pattern: str  # regex on the product label, case-insensitive, anchored
    class_name: str
    family: str
    compute_capability: ComputeCapability
    memory_mib: int
    canonical: str = ""  # the label that names the class where several labels match


def _cc(text: str) -> ComputeCapability:
    return ComputeCapability.parse(text)


# Order matters: the first match wins, so specific names precede general ones.
PRODUCT_TABLE: tuple[KnownGpu, ...] = (
    KnownGpu(r"tesla-t4", "t4", "turing", _cc("7.5"), 15360),
    KnownGpu(r"nvidia-a10g", "a10g", "ampere", _cc("8.6"), 23028),
    KnownGpu(r"nvidia-a10", "a10", "ampere", _cc("8.6"), 23028),
    KnownGpu(r"nvidia-a30", "a30", "ampere", _cc("8.0"), 24576),
    KnownGpu(
        r"nvidia-a100-(sxm4-|pcie-)?40gb",
        "a100-40gb",
        "ampere",
        _cc("8.0"),
        40960,
        "NVIDIA-A100-SXM4-40GB",
    ),
    KnownGpu(
        r"nvidia-a100-(sxm4-80gb|80gb-pcie)",
        "a100-80gb",
        "ampere",
        _cc("8.0"),
        81920,
        "NVIDIA-A100-SXM4-80GB",
    ),
    KnownGpu(r"nvidia-l40s", "l40s", "ada-lovelace", _cc("8.9"), 46068),
    KnownGpu(r"nvidia-l40", "l40", "ada-lovelace", _cc("8.9"), 46068),
    KnownGpu(r"nvidia-l4", "l4", "ada-lovelace", _cc("8.9"), 23034),
    KnownGpu(r"nvidia-rtx-6000-ada.*", "rtx6000-ada", "ada-lovelace", _cc("8.9"), 49140),
    KnownGpu(r"nvidia-h100-pcie", "h100-pcie", "hopper", _cc("9.0"), 81559),
    KnownGpu(r"nvidia-h100-nvl", "h100-nvl", "hopper", _cc("9.0"), 95830),
    KnownGpu(
        r"nvidia-h100(-sxm5)?-80gb-hbm3",
        "h100",
        "hopper",
        _cc("9.0"),
        81559,
        "NVIDIA-H100-80GB-HBM3",
    ),
    KnownGpu(r"nvidia-gh200.*", "gh200", "hopper", _cc("9.0"), 97871, "NVIDIA-GH200-480GB"),
    KnownGpu(r"nvidia-h200.*", "h200", "hopper", _cc("9.0"), 143771, "NVIDIA-H200"),
    # Blackwell. Memory is the nominal capacity; the node's nvidia.com/gpu.memory label wins.
    KnownGpu(r"nvidia-b200", "b200", "blackwell", _cc("10.0"), 183359),
    KnownGpu(r"nvidia-gb200.*", "gb200", "blackwell", _cc("10.0"), 189471, "NVIDIA-GB200"),
    KnownGpu(r"nvidia-b300.*", "b300", "blackwell", _cc("10.3"), 275040, "NVIDIA-B300-SXM6-AC"),
    KnownGpu(r"nvidia-gb300.*", "gb300", "blackwell", _cc("10.3"), 284208, "NVIDIA-GB300"),
    KnownGpu(
        r"nvidia-rtx-pro-6000-blackwell.*",
        "rtx-pro-6000",
        "blackwell",
        _cc("12.0"),
        97887,
        "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition",
    ),
)

# GPU Feature Discovery appends these for time-sliced sharing; the GPU is the same.
_SHARING_SUFFIX = re.compile(r"-SHARED$", re.IGNORECASE)
_MIG_MARKER = re.compile(r"-MIG-", re.IGNORECASE)


def lookup_product(product: str) -> KnownGpu | None:
    plain = _SHARING_SUFFIX.sub("", product)
    for row in PRODUCT_TABLE:
        if re.fullmatch(row.pattern, plain, flags=re.IGNORECASE):
            return row
    return None


def class_name_for(product: str) -> str:
    """The class name of a product: the table's name, else a slug of the label.

    Time-sliced GPUs ("-SHARED") form a class of their own ("h100-shared"): their product
    label differs, so one nodeSelector cannot pin pods to both, and a shared GPU is not a
    whole one.
    """
    shared = "-shared" if _SHARING_SUFFIX.search(product) else ""
    known = lookup_product(product)
    if known is not None:
        return f"{known.class_name}{shared}"
    slug = re.sub(r"[^a-z0-9]+", "-", _SHARING_SUFFIX.sub("", product).lower()).strip("-")
    # Variant names add "-<precision>" and must stay label values: short, no trailing '-'.
    return f"{slug.removeprefix('nvidia-')[:40].strip('-') or 'unknown'}{shared}"


@dataclass(frozen=True)
class GpuClass:
    """All schedulable nodes whose GPU product maps to one class name.

    Several product labels can name the same GPU (an A100 80GB as SXM4 or PCIe, an H100 as
    "80GB-HBM3" or "SXM5-80GB-HBM3" by driver version): they form one class, and `product`
    is the table's canonical product, so a build's identity (its cache key) does not change
    when nodes with another label of the same GPU join.
    """

    name: str
    product: str
    family: str
    compute_capability: ComputeCapability
    memory_mib: int
    nodes: tuple[str, ...]
    gpus_per_node: int  # the largest allocatable count among its nodes
    total_gpus: int
    products: tuple[str, ...] = ()  # the product labels of its nodes (default: product)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.products or (self.product,)

    @property
    def node_selector(self) -> dict[str, str]:
        """Pins pods to this class when its nodes carry one product label (stable across
        driver versions); a class of several labels pins with `node_affinity` instead."""
        return {PRODUCT_LABEL: self.labels[0]} if len(self.labels) == 1 else {}

    @property
    def node_affinity(self) -> dict[str, Any] | None:
        if len(self.labels) == 1:
            return None
        term = {"key": PRODUCT_LABEL, "operator": "In", "values": list(self.labels)}
        return {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [term]}]
                }
            }
        }


@dataclass(frozen=True)
class UnknownGpu:
    node: str
    product: str
    reason: str


@dataclass(frozen=True)
class GpuInventory:
    classes: tuple[GpuClass, ...] = ()
    unknown: tuple[UnknownGpu, ...] = ()
    ignored_nodes: tuple[str, ...] = ()  # GPU nodes that are unschedulable or NotReady

    def by_name(self) -> dict[str, GpuClass]:
        return {c.name: c for c in self.classes}


@dataclass
class _Group:
    name: str
    canonical: str
    family: str
    cc: ComputeCapability
    memory_mib: int
    products: set[str] = field(default_factory=set)
    nodes: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


def node_is_usable(node: dict[str, Any]) -> bool:
    """Schedulable and Ready: other nodes do not count towards a GPU class."""
    if node.get("spec", {}).get("unschedulable"):
        return False
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def allocatable_gpus(node: dict[str, Any]) -> int:
    value = (node.get("status", {}).get("allocatable") or {}).get(GPU_RESOURCE, "0")
    try:
        return int(str(value))
    except ValueError:
        return 0


def _number(labels: dict[str, str], key: str) -> int | None:
    value = labels.get(key, "")
    return int(value) if value.isascii() and value.isdigit() else None


def _node_gpu(node: dict[str, Any]) -> tuple[str, str, ComputeCapability, int] | UnknownGpu:
    """(product, family, compute capability, memory MiB) of a node, or why it is unknown."""
    name = node["metadata"]["name"]
    labels = node["metadata"].get("labels") or {}
    product = labels.get(PRODUCT_LABEL, "")
    if not product:
        # Pods are pinned on this label: without it no class can place them on the node.
        return UnknownGpu(name, "<no product label>", f"the node has no {PRODUCT_LABEL} label")
    if _MIG_MARKER.search(product):
        return UnknownGpu(name, product, "MIG slices are not supported; use whole GPUs")
    if allocatable_gpus(node) > MAX_GPUS_PER_NODE:
        return UnknownGpu(
            name,
            product,
            f"its allocatable {GPU_RESOURCE} is more than any node has (at most "
            f"{MAX_GPUS_PER_NODE}): its device plugin's count is wrong",
        )
    known = lookup_product(product)
    major, minor = _number(labels, CC_MAJOR_LABEL), _number(labels, CC_MINOR_LABEL)
    if major is not None and minor is not None:
        if max(major, minor) > MAX_CAPABILITY:
            return UnknownGpu(
                name,
                product,
                f"its {CC_MAJOR_LABEL} and {CC_MINOR_LABEL} labels are no GPU's compute "
                f"capability (each at most {MAX_CAPABILITY})",
            )
        cc = ComputeCapability(major, minor)
    elif known is not None:
        cc = known.compute_capability
    else:
        return UnknownGpu(
            name, product, "no compute capability labels and the product is not in qmo's table"
        )
    memory = _number(labels, MEMORY_LABEL)
    if memory is not None and memory > MAX_MEMORY_MIB:
        return UnknownGpu(
            name,
            product,
            f"its {MEMORY_LABEL} label says more memory than any GPU has (at most "
            f"{MAX_MEMORY_MIB} MiB)",
        )
    if memory is None:
        memory = known.memory_mib if known else 0
    if memory <= 0:
        return UnknownGpu(name, product, "GPU memory is unknown (no nvidia.com/gpu.memory label)")
    family = labels.get(FAMILY_LABEL) or (known.family if known else "unknown")
    return product, family, cc, memory


def canonical_product(product: str) -> str:
    """The product label a class is known by: the table's for a known GPU, else the label."""
    known = lookup_product(product)
    if known is None or not known.canonical:
        return product
    return known.canonical + ("-SHARED" if _SHARING_SUFFIX.search(product) else "")


def inventory_from_nodes(nodes: list[dict[str, Any]]) -> GpuInventory:
    """Group usable GPU nodes into classes by class name (one GPU, maybe several labels)."""
    groups: dict[str, _Group] = {}
    unknown: list[UnknownGpu] = []
    ignored: list[str] = []
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        gpus = allocatable_gpus(node)
        if gpus <= 0:
            continue
        if not node_is_usable(node):
            ignored.append(node["metadata"]["name"])
            continue
        described = _node_gpu(node)
        if isinstance(described, UnknownGpu):
            unknown.append(described)
            continue
        product, family, cc, memory = described
        name = class_name_for(product)
        group = groups.setdefault(
            name, _Group(name, canonical_product(product), family, cc, memory)
        )
        if group.cc != cc:
            unknown.append(
                UnknownGpu(
                    node["metadata"]["name"],
                    product,
                    f"its compute capability {cc} differs from class {name}'s {group.cc}",
                )
            )
            continue
        group.products.add(product)
        group.nodes.append(node["metadata"]["name"])
        group.counts.append(gpus)
        # Nodes of one product may report slightly different memory; plan for the least.
        group.memory_mib = min(group.memory_mib, memory)
    classes = tuple(
        GpuClass(
            name=g.name,
            product=g.canonical,
            family=g.family,
            compute_capability=g.cc,
            memory_mib=g.memory_mib,
            nodes=tuple(g.nodes),
            gpus_per_node=max(g.counts),
            total_gpus=sum(g.counts),
            products=tuple(sorted(g.products)),
        )
        for g in sorted(groups.values(), key=lambda g: g.name)
    )
    return GpuInventory(classes, tuple(unknown), tuple(ignored))
