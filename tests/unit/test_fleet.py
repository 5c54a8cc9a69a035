"""Fleet files become Node objects labelled the way GPU Feature Discovery labels them."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmo.fleet import KWOK_ANNOTATION, build_nodes, load_fleet

FLEETS = Path(__file__).parents[2] / "e2e" / "fleets"


def test_the_mixed_fleet_has_two_a100_two_h100_and_one_l40s() -> None:
    nodes = build_nodes(load_fleet(FLEETS / "mixed.yaml"))
    products = sorted(n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in nodes)
    assert products == [
        "NVIDIA-A100-SXM4-80GB",
        "NVIDIA-A100-SXM4-80GB",
        "NVIDIA-H100-80GB-HBM3",
        "NVIDIA-H100-80GB-HBM3",
        "NVIDIA-L40S",
    ]


@pytest.mark.parametrize("fleet", ["mixed", "ampere", "hopper"])
def test_every_node_carries_gpu_labels_allocatable_gpus_and_the_kwok_annotation(
    fleet: str,
) -> None:
    for node in build_nodes(load_fleet(FLEETS / f"{fleet}.yaml")):
        labels = node["metadata"]["labels"]
        assert node["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"
        assert int(labels["nvidia.com/gpu.compute.major"]) >= 8
        assert labels["nvidia.com/gpu.count"] == node["status"]["allocatable"]["nvidia.com/gpu"]
        assert labels["nvidia.com/gpu.memory"].isdigit()


def test_an_h100_reports_its_real_memory_not_a_round_number() -> None:
    nodes = build_nodes(load_fleet(FLEETS / "hopper.yaml"))
    assert {n["metadata"]["labels"]["nvidia.com/gpu.memory"] for n in nodes} == {"81559"}
