"""GPU classes from node labels: the product table, labels before the table, usable nodes only."""

from __future__ import annotations

from typing import Any

import pytest

from qmo.gpu import (
    MAX_GPUS_PER_NODE,
    MAX_MEMORY_MIB,
    ComputeCapability,
    GpuInventory,
    class_name_for,
    inventory_from_nodes,
    lookup_product,
)
from tests.support.builders import gpu_node

CC = ComputeCapability.parse


@pytest.mark.parametrize(
    ("product", "class_name", "family", "sm"),
    [
        pytest.param("NVIDIA-H100-80GB-HBM3", "h100", "hopper", "9.0", id="h100-sxm"),
        pytest.param("NVIDIA-H100-SXM5-80GB-HBM3", "h100", "hopper", "9.0", id="h100-sxm5"),
        pytest.param("NVIDIA-H100-PCIe", "h100-pcie", "hopper", "9.0", id="h100-pcie"),
        pytest.param("NVIDIA-H100-NVL", "h100-nvl", "hopper", "9.0", id="h100-nvl"),
        pytest.param("NVIDIA-H200", "h200", "hopper", "9.0", id="h200"),
        pytest.param("NVIDIA-H200-NVL", "h200", "hopper", "9.0", id="h200-nvl"),
        pytest.param("NVIDIA-GH200-480GB", "gh200", "hopper", "9.0", id="gh200"),
        pytest.param("NVIDIA-B200", "b200", "blackwell", "10.0", id="b200"),
        pytest.param("NVIDIA-A100-SXM4-40GB", "a100-40gb", "ampere", "8.0", id="a100-sxm4-40gb"),
        pytest.param("NVIDIA-A100-PCIE-40GB", "a100-40gb", "ampere", "8.0", id="a100-pcie-40gb"),
        pytest.param("NVIDIA-A100-SXM4-80GB", "a100-80gb", "ampere", "8.0", id="a100-sxm4-80gb"),
        pytest.param("NVIDIA-A100-80GB-PCIe", "a100-80gb", "ampere", "8.0", id="a100-80gb-pcie"),
        pytest.param("NVIDIA-A10", "a10", "ampere", "8.6", id="a10"),
        pytest.param("NVIDIA-A10G", "a10g", "ampere", "8.6", id="a10g"),
        pytest.param("NVIDIA-A30", "a30", "ampere", "8.0", id="a30"),
        pytest.param("NVIDIA-L4", "l4", "ada-lovelace", "8.9", id="l4"),
        pytest.param("NVIDIA-L40", "l40", "ada-lovelace", "8.9", id="l40"),
        pytest.param("NVIDIA-L40S", "l40s", "ada-lovelace", "8.9", id="l40s"),
        pytest.param("Tesla-T4", "t4", "turing", "7.5", id="t4"),
        pytest.param(
            "NVIDIA-RTX-6000-Ada-Generation",
            "rtx6000-ada",
            "ada-lovelace",
            "8.9",
            id="rtx-6000-ada",
        ),
        pytest.param(
            "NVIDIA-H100-80GB-HBM3-SHARED", "h100-shared", "hopper", "9.0", id="h100-shared"
        ),
        pytest.param("NVIDIA-L4-SHARED", "l4-shared", "ada-lovelace", "8.9", id="l4-shared"),
    ],
)
def test_the_product_table_knows_the_datacenter_gpus(
    product: str, class_name: str, family: str, sm: str
) -> None:
    known = lookup_product(product)
    assert known is not None, f"{product} is not in the table"
    assert (known.class_name, known.family, known.compute_capability) == (
        class_name.removesuffix("-shared"),
        family,
        CC(sm),
    )
    assert class_name_for(product) == class_name


@pytest.mark.parametrize(
    "product",
    [
        pytest.param("NVIDIA-GeForce-RTX-4090", id="consumer-card"),
        pytest.param("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", id="mig-slice"),
        pytest.param("NVIDIA-H100", id="h100-without-form-factor"),
        pytest.param("", id="empty"),
    ],
)
def test_a_product_outside_the_table_is_not_guessed(product: str) -> None:
    assert lookup_product(product) is None


def test_an_unknown_product_is_named_by_a_slug_of_its_label() -> None:
    assert class_name_for("NVIDIA-GeForce-RTX-4090-SHARED") == "geforce-rtx-4090-shared"


@pytest.mark.parametrize(
    ("low", "high"),
    [
        pytest.param("9.0", "10.0", id="blackwell-above-hopper"),
        pytest.param("8.9", "10.0", id="blackwell-above-ada"),
        pytest.param("8.0", "8.6", id="a10-above-a100"),
        pytest.param("8.6", "8.9", id="ada-above-a10"),
        pytest.param("7.5", "8.0", id="ampere-above-turing"),
    ],
)
def test_compute_capability_is_compared_as_numbers(low: str, high: str) -> None:
    assert CC(low) < CC(high)
    assert CC(high) >= CC(low)
    assert str(CC(high)) == high


def test_a_b200_at_10_0_qualifies_for_an_8_9_minimum_where_a_string_compare_would_not() -> None:
    assert "10.0" < "8.9"  # the trap
    assert CC("10.0") >= CC("8.9")


# --- inventory_from_nodes -------------------------------------------------------------------


def test_nodes_of_one_product_form_one_class_with_summed_gpus() -> None:
    inventory = inventory_from_nodes(
        [
            gpu_node("h100", "h100-0", gpus=8),
            gpu_node("h100", "h100-1", gpus=4),
            gpu_node("a100", "a100-0", gpus=8),
        ]
    )
    by_name = inventory.by_name()
    assert sorted(by_name) == ["a100-80gb", "h100"]
    h100 = by_name["h100"]
    assert h100.nodes == ("h100-0", "h100-1")
    assert (h100.gpus_per_node, h100.total_gpus) == (8, 12)
    assert h100.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert (h100.compute_capability, h100.family) == (CC("9.0"), "hopper")


def test_the_memory_of_a_class_is_the_least_among_its_nodes() -> None:
    inventory = inventory_from_nodes(
        [
            gpu_node("h100", "h100-0", memory_mib=81559),
            gpu_node("h100", "h100-1", memory_mib=80000),
            gpu_node("h100", "h100-2", memory_mib=81920),
        ]
    )
    assert inventory.by_name()["h100"].memory_mib == 80000


@pytest.mark.parametrize(
    ("labels", "expected_sm", "expected_memory"),
    [
        pytest.param(
            {"compute_capability": "9.0", "memory_mib": 81559}, "9.0", 81559, id="labels-agree"
        ),
        pytest.param(
            {"compute_capability": "8.7", "memory_mib": 70000},
            "8.7",
            70000,
            id="labels-differ-and-win",
        ),
    ],
)
def test_labels_win_over_the_product_table(
    labels: dict[str, object], expected_sm: str, expected_memory: int
) -> None:
    node = gpu_node(
        "h100",
        compute_capability=str(labels["compute_capability"]),
        memory_mib=int(str(labels["memory_mib"])),
    )
    gpu = inventory_from_nodes([node]).classes[0]
    assert (gpu.compute_capability, gpu.memory_mib) == (CC(expected_sm), expected_memory)


def test_the_product_table_fills_in_when_the_compute_and_memory_labels_are_missing() -> None:
    inventory = inventory_from_nodes([gpu_node("h100", gfd_labels=False)])
    (gpu,) = inventory.classes
    assert (gpu.name, gpu.compute_capability, gpu.memory_mib) == ("h100", CC("9.0"), 81559)
    assert gpu.family == "hopper"
    assert inventory.unknown == ()


def test_a_shared_product_is_a_class_of_its_own_pinned_on_its_real_label() -> None:
    node = gpu_node("h100", product="NVIDIA-H100-80GB-HBM3-SHARED", gfd_labels=False)
    (gpu,) = inventory_from_nodes([node]).classes
    assert gpu.name == "h100-shared"
    assert gpu.compute_capability == CC("9.0")
    assert gpu.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-SHARED"}


def test_shared_and_whole_gpus_of_one_model_are_two_classes_with_distinct_names() -> None:
    whole = gpu_node("h100", name="whole-0")
    shared = gpu_node("h100", name="shared-0", product="NVIDIA-H100-80GB-HBM3-SHARED")
    names = sorted(c.name for c in inventory_from_nodes([whole, shared]).classes)
    assert names == ["h100", "h100-shared"]


def test_an_unknown_product_with_gfd_labels_is_a_class_named_by_its_slug() -> None:
    node = gpu_node(
        "rtx4090", product="NVIDIA-GeForce-RTX-4090", compute_capability="8.9", memory_mib=24564
    )
    (gpu,) = inventory_from_nodes([node]).classes
    assert (gpu.name, gpu.compute_capability, gpu.memory_mib) == (
        "geforce-rtx-4090",
        CC("8.9"),
        24564,
    )


def _without_product(node: dict[str, Any]) -> dict[str, Any]:
    del node["metadata"]["labels"]["nvidia.com/gpu.product"]
    return node


@pytest.mark.parametrize(
    ("node", "reason_says"),
    [
        pytest.param(
            gpu_node("a100", product="NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),
            "MIG",
            id="mig-slice",
        ),
        pytest.param(
            gpu_node("mystery", product="NVIDIA-Mystery-9000", gfd_labels=False),
            "not in qmo's table",
            id="neither-labels-nor-table",
        ),
        pytest.param(
            gpu_node("mystery", product="NVIDIA-Mystery-9000", compute_capability="9.0"),
            "memory is unknown",
            id="labels-without-memory",
        ),
        pytest.param(
            _without_product(gpu_node("h100")),
            "no nvidia.com/gpu.product label",
            id="compute-labels-but-no-product-to-pin-on",
        ),
        # Valid label values (63 characters at most), but no GPU's numbers.
        pytest.param(
            gpu_node("h100", memory_mib=int("9" * 60)),
            "more memory than any GPU has",
            id="a-memory-label-of-60-nines",
        ),
        pytest.param(
            gpu_node("h100", memory_mib=MAX_MEMORY_MIB + 1),
            "more memory than any GPU has",
            id="a-memory-label-just-over-1-tib",
        ),
        pytest.param(
            gpu_node("h100", compute_capability=f"{'9' * 60}.0"),
            "no GPU's compute capability",
            id="a-compute-major-label-of-60-nines",
        ),
        pytest.param(
            gpu_node("h100", compute_capability="9.100"),
            "no GPU's compute capability",
            id="a-compute-minor-label-of-100",
        ),
        pytest.param(
            gpu_node("h100", gpus=10**60),
            "more than any node has",
            id="an-allocatable-count-of-10-to-the-60",
        ),
    ],
)
def test_a_gpu_qmo_cannot_describe_is_reported_as_unknown_with_a_reason(
    node: dict[str, object], reason_says: str
) -> None:
    inventory = inventory_from_nodes([node])
    assert inventory.classes == ()
    (unknown,) = inventory.unknown
    assert unknown.node == node["metadata"]["name"]  # type: ignore[index]
    assert reason_says in unknown.reason


def test_the_largest_numbers_a_gpu_may_have_are_still_a_gpu() -> None:
    node = gpu_node(
        "h100", memory_mib=MAX_MEMORY_MIB, compute_capability="99.99", gpus=MAX_GPUS_PER_NODE
    )
    (gpu,) = inventory_from_nodes([node]).classes
    assert (gpu.memory_mib, str(gpu.compute_capability), gpu.gpus_per_node) == (
        MAX_MEMORY_MIB,
        "99.99",
        MAX_GPUS_PER_NODE,
    )


@pytest.mark.parametrize(
    "node",
    [
        pytest.param(gpu_node("h100", "cordoned", schedulable=False), id="unschedulable"),
        pytest.param(gpu_node("h100", "sick", ready=False), id="not-ready"),
    ],
)
def test_unusable_gpu_nodes_do_not_count_and_are_listed_as_ignored(
    node: dict[str, object],
) -> None:
    inventory = inventory_from_nodes([node, gpu_node("h100", "healthy", gpus=4)])
    (gpu,) = inventory.classes
    assert gpu.nodes == ("healthy",)
    assert gpu.total_gpus == 4
    assert inventory.ignored_nodes == (node["metadata"]["name"],)  # type: ignore[index]


def test_a_node_without_ready_condition_does_not_count() -> None:
    node = gpu_node("h100")
    node["status"]["conditions"] = []
    assert inventory_from_nodes([node]) == GpuInventory(ignored_nodes=("h100-node",))


def test_nodes_without_allocatable_gpus_are_neither_classes_nor_ignored() -> None:
    cpu_node = gpu_node("h100", "cpu-only", gpus=0)
    garbled = gpu_node("h100", "garbled")
    garbled["status"]["allocatable"]["nvidia.com/gpu"] = "lots"
    assert inventory_from_nodes([cpu_node, garbled]) == GpuInventory()


def test_classes_are_sorted_by_name_whatever_the_node_order() -> None:
    nodes = [gpu_node("l40s", "z"), gpu_node("a100", "y"), gpu_node("h100", "x")]
    forward = inventory_from_nodes(nodes)
    backward = inventory_from_nodes(list(reversed(nodes)))
    assert [c.name for c in forward.classes] == ["a100-80gb", "h100", "l40s"]
    assert forward == backward


def test_two_labels_of_one_gpu_form_one_class_listed_once() -> None:
    sxm = gpu_node("a100", "a100-sxm-0")
    pcie = gpu_node("a100", "a100-pcie-0", product="NVIDIA-A100-80GB-PCIe")
    inventory = inventory_from_nodes([sxm, pcie])
    assert [c.name for c in inventory.classes] == ["a100-80gb"]
    a100 = inventory.classes[0]
    assert a100.nodes == ("a100-pcie-0", "a100-sxm-0")
    assert a100.products == ("NVIDIA-A100-80GB-PCIe", "NVIDIA-A100-SXM4-80GB")
    assert a100.node_selector == {}, "one nodeSelector cannot name two labels"
    terms = a100.node_affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]  # type: ignore[index]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == list(a100.products)


def test_a_class_is_known_by_its_canonical_label_whichever_labels_its_nodes_carry() -> None:
    pcie_only = inventory_from_nodes(
        [gpu_node("a100", "p", product="NVIDIA-A100-80GB-PCIe")]
    ).classes[0]
    both = inventory_from_nodes(
        [gpu_node("a100", "s"), gpu_node("a100", "p", product="NVIDIA-A100-80GB-PCIe")]
    ).classes[0]
    assert pcie_only.product == both.product == "NVIDIA-A100-SXM4-80GB"
    assert pcie_only.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-80GB-PCIe"}


def test_a_node_whose_capability_disagrees_with_its_class_is_reported_not_merged() -> None:
    odd = gpu_node("h100", "odd", compute_capability="9.1")
    inventory = inventory_from_nodes([gpu_node("h100", "h100-0"), odd])
    assert inventory.by_name()["h100"].nodes == ("h100-0",)
    assert [u.node for u in inventory.unknown] == ["odd"]
    assert "differs from class h100" in inventory.unknown[0].reason
