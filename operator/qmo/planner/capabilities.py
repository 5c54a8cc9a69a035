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
# NVFP4 weights and activations need Blackwell's FP4 tensor cores, and TensorRT-LLM's FP4
# kernels are built for its datacenter parts (SM 10.0 B200/GB200, 10.3 B300/GB300) and its
# workstation and desktop parts (SM 12.0 RTX PRO 6000 Blackwell, RTX 50; 12.1 GB10). 11.x is
# Jetson Thor, which qmo does not target. A set of majors, not a minimum: 11.x is excluded.
NVFP4_MAJORS = frozenset({10, 12})


def nvfp4_capable(gpu: GpuClass) -> bool:
    return gpu.compute_capability.major in NVFP4_MAJORS


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
    if precision == Precision.NVFP4:
        if nvfp4_capable(gpu):
            return None
        return Refusal(
            Reason.PRECISION_UNSUPPORTED,
            f"nvfp4 needs a Blackwell GPU (compute capability 10.x or 12.x); {gpu.product} has "
            f"{gpu.compute_capability}",
        )
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


def auto_precision(gpu: GpuClass, backend: EngineBackend, *, gated: bool = False) -> Precision:
    """nvfp4 on Blackwell when the model is gated (a regression falls back to fp8), fp8 on
    SM >= 8.9, int8 SmoothQuant on Ampere (tensorrt backend), else unquantized.

    NVFP4 loses the most of the formats Blackwell runs (several points of MMLU for plain
    rounding of an 8B model): it is chosen only where a quality gate would catch that.
    `bf16` stands for "unquantized": a model whose native dtype is fp16 is served in fp16.
    """
    if gated and nvfp4_capable(gpu):
        return Precision.NVFP4
    if gpu.compute_capability >= ADA:
        return Precision.FP8
    if gpu.compute_capability >= AMPERE and backend == EngineBackend.TENSORRT:
        return Precision.INT8
    return Precision.BF16


def why_auto(gpu: GpuClass, backend: EngineBackend, *, gated: bool) -> str:
    """The reason for auto's choice on `gpu`, in words (Events and `qmo plan`)."""
    chosen = auto_precision(gpu, backend, gated=gated)
    where = f"auto on compute capability {gpu.compute_capability}"
    if chosen == Precision.NVFP4:
        return f"{where}: nvfp4 on Blackwell, since the quality gate falls back to fp8 on a loss"
    if nvfp4_capable(gpu):
        return f"{where}: fp8, not nvfp4, since no quality gate with benchmarks would catch a loss"
    return where


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


# Toward quality: a regressed variant falls back one rung at a time. NVFP4 falls to FP8 (the
# other formats Blackwell runs are not better than FP8 and not all are served there).
PRECISION_LADDER = (
    Precision.NVFP4,
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
    if precision == Precision.NVFP4:
        start = PRECISION_LADDER.index(Precision.FP8) - 1  # straight to fp8
    for candidate in PRECISION_LADDER[start + 1 :]:
        if precision_supported(candidate, gpu, backend) is None:
            return candidate
    return None
