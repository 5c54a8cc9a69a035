"""Memory fit: weights + KV cache per GPU, and the smallest tensor-parallel size that fits.

The 70B numbers are Llama-3.1-70B's: 70.6B parameters, 80 layers, 8 KV heads, head_dim 128.
One token of its KV cache is 2 x 80 x 8 x 128 = 163,840 values; an H100 reports 81,559 MiB,
of which the planner uses 90% (71.7 GiB).
"""

from __future__ import annotations

import pytest

from qmo.api.quantizedmodel import ModelSize, Precision
from qmo.planner import memory
from qmo.planner.plan import plan_model
from qmo.planner.types import Action, Phase
from tests.support.builders import LLAMA_70B, a_class, a_cluster, a_model, variant

SIZE_70B = ModelSize.model_validate(LLAMA_70B)


@pytest.mark.parametrize(
    ("precision", "kv", "weights_gib", "kv_gib"),
    [
        # 16 x 8192 tokens x 163,840 values = 20 GiB at one byte a value.
        pytest.param(Precision.BF16, "bf16", 131.5, 40.0, id="bf16-weights-bf16-kv"),
        pytest.param(Precision.FP8, "fp8", 65.75, 20.0, id="fp8-weights-fp8-kv"),
        pytest.param(Precision.INT8, "int8", 65.75, 20.0, id="int8-weights-int8-kv"),
        pytest.param(Precision.INT4_AWQ, "fp8", 33.9, 20.0, id="int4-weights-with-group-scales"),
        pytest.param(Precision.FP8, "nvfp4", 65.75, 11.25, id="nvfp4-kv-with-block-scales"),
    ],
)
def test_the_estimate_is_parameters_times_bytes_plus_the_kv_cache(
    precision: Precision, kv: str, weights_gib: float, kv_gib: float
) -> None:
    estimate = memory.estimate(SIZE_70B, precision, kv, max_seq_len=8192, max_batch_size=16)
    assert estimate.weights_gib == pytest.approx(weights_gib, abs=0.05)
    assert estimate.kv_cache_gib == pytest.approx(kv_gib, abs=0.01)
    assert estimate.per_gpu_gib(4) == pytest.approx((weights_gib + kv_gib) / 4, abs=0.02)


@pytest.mark.parametrize(
    ("weights_gib", "gpus_per_node", "expected"),
    [
        pytest.param(70.0, 8, 1, id="just-under-90-percent-fits-one-gpu"),
        pytest.param(72.0, 8, 2, id="just-over-90-percent-needs-two"),
        pytest.param(250.0, 8, 4, id="needs-four"),
        pytest.param(500.0, 8, 8, id="needs-eight"),
        pytest.param(600.0, 8, None, id="too-big-even-for-eight"),
        pytest.param(100.0, 1, None, id="the-node-has-one-gpu"),
        pytest.param(200.0, 3, None, id="three-gpus-cannot-take-tp-four"),
    ],
)
def test_the_smallest_fitting_tp_leaves_ten_percent_headroom_within_one_node(
    weights_gib: float, gpus_per_node: int, expected: int | None
) -> None:
    need = memory.MemoryEstimate(weights_gib=weights_gib, kv_cache_gib=0.0)
    assert memory.smallest_fitting_tp(need, 81559, gpus_per_node) == expected


def test_a_70b_model_in_bf16_does_not_fit_one_80gb_gpu() -> None:
    spec = a_model().sized_like(LLAMA_70B).with_precisions("bf16").spec()
    one_gpu_nodes = a_class("h100", gpus_per_node=1)
    planned = variant(plan_model(spec, a_cluster(one_gpu_nodes).observed()), "h100-bf16")
    assert (planned.action, planned.phase, planned.reason) == (
        Action.BLOCKED,
        Phase.UNSUPPORTED,
        "DoesNotFit",
    )
    assert "even at tensorParallel 1" in planned.message
    assert planned.memory_per_gpu_gib is None  # a blocked variant reports no fit
    # Weights alone are 131.5 GiB, over the 71.7 GiB usable on one H100.
    assert memory.estimate(SIZE_70B, Precision.BF16, "bf16", 8192, 1).weights_gib > 80


def test_a_70b_model_in_fp8_fits_two_h100s() -> None:
    # maxBatchSize 16 x maxSeqLen 8192: weights 65.75 GiB + fp8 KV 20 GiB = 85.75 GiB, over one
    # H100's usable 71.7 GiB but 42.9 GiB each on two. (At the defaults, 64 x 8192, the KV
    # cache alone is 80 GiB and TP 4 is needed.)
    spec = (
        a_model()
        .sized_like(LLAMA_70B)
        .with_precisions("fp8")
        .with_limits(max_batch_size=16, max_seq_len=8192)
        .spec()
    )
    planned = variant(plan_model(spec, a_cluster(a_class("h100")).observed()), "h100-fp8")
    assert planned.action == Action.BUILD
    assert (planned.kv_cache_dtype, planned.tensor_parallel) == ("fp8", 2)
    assert planned.memory_per_gpu_gib == pytest.approx(42.9, abs=0.05)
    assert planned.build_gpus == 2


@pytest.mark.parametrize(
    ("kind", "precision", "max_batch_size", "expected_tp"),
    [
        pytest.param("h100", "bf16", 16, 4, id="bf16-on-h100-needs-four"),
        pytest.param("h100", "fp8", 64, 4, id="fp8-at-default-batch-needs-four"),
        pytest.param("h200", "fp8", 16, 1, id="fp8-fits-one-h200"),
        pytest.param("b200", "bf16", 16, 2, id="bf16-on-b200-needs-two"),
        pytest.param("a100", "int4-awq", 16, 1, id="int4-fits-one-a100"),
    ],
)
def test_auto_tensor_parallel_is_the_smallest_that_fits(
    kind: str, precision: str, max_batch_size: int, expected_tp: int
) -> None:
    spec = (
        a_model()
        .sized_like(LLAMA_70B)
        .with_precisions(precision)
        .with_limits(max_batch_size=max_batch_size, max_seq_len=8192)
        .spec()
    )
    plan = plan_model(spec, a_cluster(a_class(kind)).observed())
    (planned,) = plan.variants
    assert planned.tensor_parallel == expected_tp, planned.message
    assert planned.memory_per_gpu_gib is not None
    assert planned.memory_per_gpu_gib * 1024 <= a_class(kind).memory_mib * 0.9


def test_does_not_fit_when_even_tp_eight_is_not_enough() -> None:
    # bf16 70B with a bf16 KV cache: 171.5 GiB / 8 = 21.4 GiB, over an L4's usable 20.2 GiB.
    spec = (
        a_model()
        .sized_like(LLAMA_70B)
        .with_precisions("bf16")
        .with_limits(max_batch_size=16, max_seq_len=8192)
        .spec()
    )
    planned = variant(plan_model(spec, a_cluster(a_class("l4")).observed()), "l4-bf16")
    assert (planned.action, planned.reason) == (Action.BLOCKED, "DoesNotFit")
    assert "needs about 21.4 GiB per GPU even at tensorParallel 8" in planned.message
    assert "l4 has 23034 MiB per GPU" in planned.message


def test_does_not_fit_names_the_largest_tp_size_the_node_can_actually_run() -> None:
    # Six GPUs per node: TP 4 is the largest size there is (TP sizes are 1, 2, 4, 8).
    spec = (
        a_model()
        .sized_like(LLAMA_70B)
        .with_precisions("bf16")
        .with_limits(max_batch_size=16, max_seq_len=8192)
        .spec()
    )
    six = a_class("l4", gpus_per_node=6)
    planned = variant(plan_model(spec, a_cluster(six).observed()), "l4-bf16")
    assert planned.reason == "DoesNotFit"
    assert "even at tensorParallel 4;" in planned.message
    assert "42.9 GiB" in planned.message


def test_an_explicit_tensor_parallel_larger_than_the_nodes_gpus_is_refused() -> None:
    spec = a_model().with_precisions("fp8").with_tensor_parallel(8).spec()
    four = a_class("l40s", gpus_per_node=4)
    planned = variant(plan_model(spec, a_cluster(four).observed()), "l40s-fp8")
    assert (planned.action, planned.reason) == (Action.BLOCKED, "NotEnoughGpus")
    assert planned.message == "tensorParallel 8 needs 8 GPUs on one node; l40s nodes have 4"


def test_an_explicit_tensor_parallel_is_honoured_and_its_share_reported() -> None:
    spec = (
        a_model()
        .sized_like(LLAMA_70B)
        .with_precisions("fp8")
        .with_limits(max_batch_size=16, max_seq_len=8192)
        .with_tensor_parallel(4)
        .spec()
    )
    planned = variant(plan_model(spec, a_cluster(a_class("h100")).observed()), "h100-fp8")
    assert planned.tensor_parallel == 4
    assert planned.memory_per_gpu_gib == pytest.approx(85.75 / 4, abs=0.05)


def test_without_model_size_tp_is_one_and_nothing_is_estimated() -> None:
    spec = a_model().with_precisions("fp8").spec()
    planned = variant(plan_model(spec, a_cluster(a_class("h100")).observed()), "h100-fp8")
    assert planned.action == Action.BUILD
    assert (planned.tensor_parallel, planned.memory_per_gpu_gib) == (1, None)


def test_build_gpus_can_be_larger_than_serving_tp_but_not_than_the_node() -> None:
    spec = a_model().with_precisions("fp8").with_build(gpus=4).spec()
    fits = variant(plan_model(spec, a_cluster(a_class("h100")).observed()), "h100-fp8")
    assert (fits.tensor_parallel, fits.build_gpus) == (1, 4)
    small = a_class("l4", gpus_per_node=2)
    refused = variant(plan_model(spec, a_cluster(small).observed()), "l4-fp8")
    assert (refused.action, refused.reason) == (Action.BLOCKED, "NotEnoughGpus")
    assert "the build asks for 4 GPUs" in refused.message


def test_an_explicit_tensor_parallel_too_small_for_the_model_is_refused() -> None:
    spec = (
        a_model()
        .sized_like(LLAMA_70B)
        .with_precisions("bf16")
        .with_limits(max_batch_size=16, max_seq_len=8192)
        .with_tensor_parallel(1)
        .spec()
    )
    planned = variant(plan_model(spec, a_cluster(a_class("h100")).observed()), "h100-bf16")
    assert (planned.action, planned.reason) == (Action.BLOCKED, "DoesNotFit")
    assert "at tensorParallel 1" in planned.message
