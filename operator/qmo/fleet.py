"""Fake GPU fleets: a small YAML description -> Node objects labelled like real GPU nodes.

Used by the local control plane (e2e/), the demo, and `qmo plan --nodes FLEET.yaml`. The labels
are the ones NVIDIA GPU Feature Discovery sets, so the operator cannot tell these nodes from
real ones. Pure: builds dicts, does no I/O beyond reading the file it is given.

`load_nodes` reads what `qmo plan --nodes` is given, a fleet or `kubectl get nodes -o yaml`,
and refuses a node that the API server would not return (a label value that is a number), so
qmo.gpu only ever sees nodes shaped as the cluster gives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from qmo.api.base import one_line
from qmo.wire import json_type

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


class FleetError(ValueError):
    """A nodes file that holds no nodes qmo can read; the message says why, in one line."""


class _NodeMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: str
    labels: dict[str, str] = Field(default_factory=dict)


class _NodeStatus(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    allocatable: dict[str, str | int] = Field(default_factory=dict)
    conditions: list[dict[str, Any]] = Field(default_factory=list)


class NodeShape(BaseModel):
    """What qmo reads of a Node, typed as the API server returns it (label values are
    strings: `nvidia.com/gpu.memory: 81559` unquoted in YAML is a number, no label)."""

    model_config = ConfigDict(extra="allow", strict=True)

    metadata: _NodeMetadata
    spec: dict[str, Any] = Field(default_factory=dict)
    status: _NodeStatus = Field(default_factory=_NodeStatus)


def load_nodes(path: Path) -> list[dict[str, Any]]:
    """Nodes from a fleet file (e2e/fleets/*.yaml) or from `kubectl get nodes -o yaml`.

    An unreadable file raises OSError; one that is not YAML, not a fleet, or holds a node
    shaped unlike the API server's, FleetError."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except yaml.YAMLError as err:
        raise FleetError(f"not valid YAML: {' '.join(str(err).split())}") from err
    for number, document in enumerate(documents, 1):
        if not isinstance(document, dict):
            raise FleetError(f"document {number} is {json_type(document)}, not a fleet or a Node")
    if len(documents) == 1 and "nodes" in documents[0]:
        try:
            fleet = build_nodes(Fleet.model_validate(documents[0]))
        except ValidationError as err:
            raise FleetError(f"not a fleet: {one_line(err)}") from err
        # A fleet describes nodes as they are once up: schedulable and Ready.
        for node in fleet:
            node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        return fleet
    objects: list[Any] = []
    for document in documents:
        items = document.get("items", [document])
        if not isinstance(items, list):
            raise FleetError(f"items is {json_type(items)}, not a list of Nodes")
        objects += items
    nodes = []
    for number, node in enumerate(objects, 1):
        if not isinstance(node, dict):
            raise FleetError(f"item {number} is {json_type(node)}, not a Node")
        if node.get("kind", "Node") != "Node":
            continue
        try:
            NodeShape.model_validate(node)
        except ValidationError as err:
            metadata = node.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            raise FleetError(f"node {name or number}: {one_line(err)}") from err
        nodes.append(node)
    return nodes


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
        # Every real node reports its disk: pods that request ephemeral-storage (the
        # operator's own chart does) must find some.
        "ephemeral-storage": "500Gi",
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
