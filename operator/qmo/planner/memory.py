"""Memory fit: the smallest tensor-parallel size whose weights and KV cache fit a GPU."""

from __future__ import annotations

from dataclasses import dataclass

from qmo.api.quantizedmodel import ModelSize, Precision

TP_SIZES = (1, 2, 4, 8)
# Room for activations, the CUDA context and fragmentation: plan for 90% of the memory.
USABLE_FRACTION = 0.9
GIB = 1024**3
MIB = 1024**2

WEIGHT_BYTES = {
    Precision.BF16: 2.0,
    Precision.FP8: 1.0,
    Precision.INT8: 1.0,
    # 4-bit weights plus one 16-bit scale per group of 128
    Precision.INT4_AWQ: 0.5 + 2 / 128,
    Precision.INT4_GPTQ: 0.5 + 2 / 128,
    # 4-bit values plus one FP8 scale per block of 16
    Precision.NVFP4: 0.5 + 1 / 16,
}
KV_BYTES = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "nvfp4": 0.5 + 1 / 16}


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gib: float
    kv_cache_gib: float

    def per_gpu_gib(self, tensor_parallel: int) -> float:
        return (self.weights_gib + self.kv_cache_gib) / tensor_parallel


def estimate(
    size: ModelSize, precision: Precision, kv_dtype: str, max_seq_len: int, max_batch_size: int
) -> MemoryEstimate:
    """Weights = params x bytes/param; KV = 2 x layers x kv_heads x head_dim x tokens x bytes."""
    weights = size.parameters_billions * 1e9 * WEIGHT_BYTES[precision]
    kv = (
        2
        * size.num_layers
        * size.num_key_value_heads
        * size.head_dim
        * max_seq_len
        * max_batch_size
        * KV_BYTES.get(kv_dtype, 2.0)
    )
    return MemoryEstimate(weights / GIB, kv / GIB)


def fits(need: MemoryEstimate, gpu_memory_mib: int, tensor_parallel: int) -> bool:
    return need.per_gpu_gib(tensor_parallel) <= gpu_memory_mib * MIB * USABLE_FRACTION / GIB


def smallest_fitting_tp(
    need: MemoryEstimate, gpu_memory_mib: int, gpus_per_node: int
) -> int | None:
    """Smallest TP within one node whose per-GPU share fits; None when none does."""
    for tp in TP_SIZES:
        if tp > gpus_per_node:
            return None
        if fits(need, gpu_memory_mib, tp):
            return tp
    return None
