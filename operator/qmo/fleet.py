"""Fake GPU fleets: a small YAML description -> Node objects labelled like real GPU nodes.

Used by the local control plane (e2e/), the demo, and `qmo plan --nodes FLEET.yaml`. The labels
are the ones NVIDIA GPU Feature Discovery sets, so the operator cannot tell these nodes from
real ones. Pure: builds dicts, does no I/O beyond reading the file it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

KWOK_ANNOTATION = "kwok.x-k8s.io/node"


class NodeGroup(BaseModel):
    """`count` identical GPU nodes named `<name>-0`, `<name>-1`, ..."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    count: int = Field(default=1, ge=0, le=1000)
    product: str
    family: str
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    memory_mib: int = Field(ge=1, alias="memoryMiB")
    gpus: int = Field(ge=0, le=64)
    cpu: str = "64"
    memory: str = "1Ti"
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[dict[str, str]] = Field(default_factory=list)
    unschedulable: bool = False


class Fleet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[NodeGroup]


def load_fleet(path: Path) -> Fleet:
    return Fleet.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def gpu_labels(group: NodeGroup) -> dict[str, str]:
    """The labels GPU Feature Discovery puts on a node with these GPUs."""
    major, minor = group.compute_capability.split(".")
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": group.product,
        "nvidia.com/gpu.family": group.family,
        "nvidia.com/gpu.compute.major": major,
        "nvidia.com/gpu.compute.minor": minor,
        "nvidia.com/gpu.memory": str(group.memory_mib),
        "nvidia.com/gpu.count": str(group.gpus),
    }


def build_node(group: NodeGroup, index: int) -> dict[str, Any]:
    name = f"{group.name}-{index}"
    resources = {
        "cpu": group.cpu,
        "memory": group.memory,
        "pods": "110",
        "nvidia.com/gpu": str(group.gpus),
    }
    spec: dict[str, Any] = {}
    if group.taints:
        spec["taints"] = group.taints
    if group.unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **gpu_labels(group),
                **group.labels,
            },
        },
        "spec": spec,
        "status": {"allocatable": resources, "capacity": resources},
    }


def build_nodes(fleet: Fleet) -> list[dict[str, Any]]:
    return [build_node(group, i) for group in fleet.nodes for i in range(group.count)]
