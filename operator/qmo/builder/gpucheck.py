"""PURE: may this build run on the GPUs this pod sees? The refusal comes before any work.

Checks, in order, each a named predicate returning a `Refusal` (reason + message) or None:
1. the request itself: the class it serves on (serveOn, else the class it is built on) can run
   the precision and KV dtype (FP8 and W4A8 need compute capability >= 8.9, NVFP4 10.x or
   12.x), and only a PyTorch-backend checkpoint is built on another architecture than it
   serves on (a TensorRT engine is not portable) -> INVALID_SPEC;
2. a GPU is visible, and at least tensorParallel of them -> GPU_MISMATCH;
3. every visible GPU has the expected compute capability and product -> GPU_MISMATCH.
Compute capabilities are compared as (major, minor) numbers: "10.0" > "9.0".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qmo.api.buildcontract import BuildRequest, ExitCode
from qmo.api.quantizedmodel import EngineBackend
from qmo.gpu import ComputeCapability, lookup_product, parse_capability
from qmo.planner.capabilities import MIN_CAPABILITY_KV, MIN_CAPABILITY_PRECISION, NVFP4_MAJORS
from qmo.vocabulary import Refusal

__all__ = ["Refusal", "SeenGpu", "normalize_product", "parse_capability", "refusal"]


@dataclass(frozen=True)
class SeenGpu:
    """One GPU as the builder sees it at run time."""

    product: str
    compute_capability: str
    memory_mib: int | None = None
    driver: str | None = None


def normalize_product(product: str) -> str:
    """GPU Feature Discovery writes 'NVIDIA-H100-80GB-HBM3' for NVML's 'NVIDIA H100 80GB HBM3'."""
    name = re.sub(r"[\s_]+", "-", product.strip()).upper()
    return name.removesuffix("-SHARED")  # GFD's suffix for time-sliced GPUs


def same_gpu(seen: str, expected: str) -> bool:
    """The same product, or another label of the same GPU (an A100 80GB as SXM4 or PCIe):
    the planner's class names them alike and builds for the class's canonical label."""
    if normalize_product(seen) == normalize_product(expected):
        return True
    known = lookup_product(normalize_product(seen))
    return known is not None and known is lookup_product(normalize_product(expected))


def refusal(request: BuildRequest, seen: Sequence[SeenGpu]) -> Refusal | None:
    """The first reason not to run this build here, or None."""
    for check in (_request_fits_its_class, _enough_gpus, _gpus_match):
        found = check(request, seen)
        if found is not None:
            return found
    return None


def _request_fits_its_class(request: BuildRequest, seen: Sequence[SeenGpu]) -> Refusal | None:
    """The precision and KV dtype suit the class the artifact serves on (`serveOn`, else the
    class it is built on), and only a PyTorch-backend checkpoint is built on another class."""
    serving = request.serve_on or request.gpu
    try:
        target = parse_capability(serving.compute_capability)
        built_on = parse_capability(request.gpu.compute_capability)
    except ValueError as err:
        return Refusal("InvalidSpec", str(err), ExitCode.INVALID_SPEC)
    portable = request.backend != EngineBackend.TENSORRT
    if request.serve_on is not None and not portable and target != built_on:
        return Refusal(
            "InvalidSpec",
            f"a TensorRT engine runs only on the architecture it is built on: built on "
            f"{request.gpu.product} ({built_on}), to serve on {serving.product} ({target})",
            ExitCode.INVALID_SPEC,
        )
    if request.precision == "nvfp4" and target.major not in NVFP4_MAJORS:
        return Refusal(
            "PrecisionUnsupported",
            f"nvfp4 serves on Blackwell (compute capability 10.x or 12.x); the build is for "
            f"{serving.product} ({target})",
            ExitCode.INVALID_SPEC,
        )
    needs = _capability_needed(request.precision, request.kv_cache_dtype)
    if needs is not None and target < needs[0]:
        return Refusal(
            "PrecisionUnsupported",
            f"{needs[1]} needs compute capability >= {needs[0]}; the build is for "
            f"{serving.product} ({target})",
            ExitCode.INVALID_SPEC,
        )
    return None


def _enough_gpus(request: BuildRequest, seen: Sequence[SeenGpu]) -> Refusal | None:
    if not seen:
        return Refusal(
            "NoGpuVisible",
            f"no NVIDIA GPU is visible in this pod; the build is for {request.gpu.product}",
            ExitCode.GPU_MISMATCH,
        )
    if len(seen) < request.tensor_parallel:
        return Refusal(
            "TooFewGpus",
            f"tensorParallel {request.tensor_parallel} needs {request.tensor_parallel} GPUs; "
            f"{len(seen)} visible",
            ExitCode.GPU_MISMATCH,
        )
    return None


def _gpus_match(request: BuildRequest, seen: Sequence[SeenGpu]) -> Refusal | None:
    expected = parse_capability(request.gpu.compute_capability)
    needs = _capability_needed(request.precision, request.kv_cache_dtype)
    for gpu in seen:
        try:
            actual = parse_capability(gpu.compute_capability)
        except ValueError:
            return Refusal(
                "GpuUnknown",
                f"cannot read the compute capability of {gpu.product} ({gpu.compute_capability!r})",
                ExitCode.GPU_MISMATCH,
            )
        if actual == expected and same_gpu(gpu.product, request.gpu.product):
            continue
        why = ""
        if needs is not None and actual < needs[0]:
            why = f": {needs[1]} needs compute capability >= {needs[0]}"
        return Refusal(
            "GpuMismatch",
            f"build for {request.gpu.product} (compute capability {expected}) "
            f"scheduled on {gpu.product} ({actual}){why}",
            ExitCode.GPU_MISMATCH,
        )
    return None


def _capability_needed(precision: str, kv_cache_dtype: str) -> tuple[ComputeCapability, str] | None:
    """The highest capability the precision and KV dtype need, with what needs it."""
    wants = []
    if precision in MIN_CAPABILITY_PRECISION:
        wants.append((MIN_CAPABILITY_PRECISION[precision], precision))
    if kv_cache_dtype in MIN_CAPABILITY_KV:
        wants.append((MIN_CAPABILITY_KV[kv_cache_dtype], f"a {kv_cache_dtype} KV cache"))
    return max(wants) if wants else None
