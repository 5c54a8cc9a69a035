"""What a GPU class can run: precision and KV-cache support as small named predicates.

Each predicate returns `None` when the combination works, or a `Refusal` whose reason becomes
the variant's reason (and Event reason) and whose message says why in one sentence.
"""

from __future__ import annotations

from qmo.api.quantizedmodel import EngineBackend, KvCacheDtype, Precision
from qmo.gpu import ComputeCapability, GpuClass
from qmo.vocabulary import Reason, Refusal

AMPERE = ComputeCapability(8, 0)
ADA = ComputeCapability(8, 9)
BLACKWELL = ComputeCapability(10, 0)

# The lowest compute capability per weight precision and per KV-cache dtype (absent: any
# GPU TensorRT-LLM runs on). One table for the planner and for qmo-builder's own check.
MIN_CAPABILITY_PRECISION: dict[str, ComputeCapability] = {"fp8": ADA, "w4a8-awq": ADA}
MIN_CAPABILITY_KV: dict[str, ComputeCapability] = {"fp8": ADA, "nvfp4": BLACKWELL}


def _needs(gpu: GpuClass, minimum: ComputeCapability, what: str) -> Refusal | None:
    if gpu.compute_capability >= minimum:
        return None
    return Refusal(
        Reason.PRECISION_UNSUPPORTED,
        f"{what} needs compute capability {minimum}; {gpu.product} has {gpu.compute_capability}",
    )


def runtime_supports(gpu: GpuClass) -> Refusal | None:
    """TensorRT-LLM runs on Ampere and newer."""
    if gpu.compute_capability >= AMPERE:
        return None
    return Refusal(
        Reason.GPU_UNSUPPORTED,
        f"TensorRT-LLM needs compute capability {AMPERE} or newer; "
        f"{gpu.product} has {gpu.compute_capability}",
    )


def precision_supported(
    precision: Precision, gpu: GpuClass, backend: EngineBackend
) -> Refusal | None:
    """Can `gpu` serve `precision` on `backend`? (The capability matrix of DESIGN.md.)"""
    if precision.value in MIN_CAPABILITY_PRECISION:
        return _needs(gpu, MIN_CAPABILITY_PRECISION[precision.value], precision.value)
    if precision == Precision.INT8:
        if backend != EngineBackend.TENSORRT:
            return Refusal(
                Reason.BACKEND_UNSUPPORTED,
                "int8 (W8A8 SmoothQuant) needs the tensorrt engine backend",
            )
        return _needs(gpu, AMPERE, "int8")
    if precision in (Precision.INT4_AWQ, Precision.INT4_GPTQ, Precision.BF16):
        return _needs(gpu, AMPERE, precision.value)
    return Refusal(Reason.PRECISION_UNSUPPORTED, f"{precision.value} cannot be built")


def auto_precision(gpu: GpuClass, backend: EngineBackend) -> Precision:
    """fp8 on SM >= 8.9, int8 SmoothQuant on Ampere (tensorrt backend), else unquantized.

    `bf16` stands for "unquantized": a model whose native dtype is fp16 is served in fp16.
    """
    if gpu.compute_capability >= ADA:
        return Precision.FP8
    if gpu.compute_capability >= AMPERE and backend == EngineBackend.TENSORRT:
        return Precision.INT8
    return Precision.BF16


def resolve_kv_cache(
    requested: KvCacheDtype, precision: Precision, gpu: GpuClass, backend: EngineBackend
) -> tuple[str, Refusal | None]:
    """The KV-cache dtype to build with, or why the requested one cannot be used.

    auto keeps the BF16 reference unquantized (it is what quality is judged against) and
    otherwise takes fp8 where the GPU has it, int8 on the tensorrt backend, bf16 elsewhere.
    """
    if requested == KvCacheDtype.AUTO:
        if precision == Precision.BF16:
            return "bf16", None
        if gpu.compute_capability >= ADA:
            return "fp8", None
        return ("int8", None) if backend == EngineBackend.TENSORRT else ("bf16", None)
    if requested.value in MIN_CAPABILITY_KV:
        minimum = MIN_CAPABILITY_KV[requested.value]
        return requested.value, _needs(gpu, minimum, f"an {requested.value} KV cache")
    if requested == KvCacheDtype.INT4:
        return "int4", Refusal(
            Reason.KV_CACHE_UNSUPPORTED,
            "TensorRT-LLM has no INT4 KV cache; the 4-bit KV cache is nvfp4 (Blackwell only)",
        )
    return requested.value, None


# Toward quality: a regressed variant falls back one rung at a time.
PRECISION_LADDER = (
    Precision.INT4_AWQ,
    Precision.INT4_GPTQ,
    Precision.INT8,
    Precision.FP8,
    Precision.BF16,
)


def fallback_precision(
    precision: Precision, gpu: GpuClass, backend: EngineBackend
) -> Precision | None:
    """The next precision up the ladder that `gpu` can run; None at the top (bf16).

    int4-awq and int4-gptq are one rung: falling from either goes to int8.
    """
    start = PRECISION_LADDER.index(precision)
    if precision == Precision.INT4_AWQ:
        start += 1  # skip its int4 sibling
    for candidate in PRECISION_LADDER[start + 1 :]:
        if precision_supported(candidate, gpu, backend) is None:
            return candidate
    return None
