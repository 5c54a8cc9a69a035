"""The capability matrix: which precision and KV cache each GPU class can run, and the ladder."""

from __future__ import annotations

import pytest

from qmo.api.quantizedmodel import EngineBackend, KvCacheDtype, Precision
from qmo.planner.capabilities import (
    auto_precision,
    fallback_precision,
    precision_supported,
    resolve_kv_cache,
    runtime_supports,
)
from qmo.planner.plan import plan_model
from qmo.planner.types import Action, Phase
from tests.support.builders import a_class, a_cluster, a_model, variant

TRT, PT = EngineBackend.TENSORRT, EngineBackend.PYTORCH
P = Precision


@pytest.mark.parametrize(
    ("kind", "backend", "expected"),
    [
        pytest.param("h100", TRT, P.FP8, id="fp8-on-h100"),
        pytest.param("h100", PT, P.FP8, id="fp8-on-h100-pytorch"),
        pytest.param("l40s", TRT, P.FP8, id="fp8-on-l40s"),
        pytest.param("l4", TRT, P.FP8, id="fp8-on-l4"),
        pytest.param("b200", TRT, P.FP8, id="fp8-on-b200"),
        pytest.param("b200", PT, P.FP8, id="fp8-on-b200-pytorch"),
        pytest.param("a100", TRT, P.INT8, id="int8-on-a100-tensorrt"),
        pytest.param("a10g", TRT, P.INT8, id="int8-on-a10g-tensorrt"),
        pytest.param("a100", PT, P.BF16, id="bf16-on-a100-pytorch"),
        pytest.param("a10g", PT, P.BF16, id="bf16-on-a10g-pytorch"),
    ],
)
def test_auto_precision_follows_the_compute_capability_and_backend(
    kind: str, backend: EngineBackend, expected: Precision
) -> None:
    assert auto_precision(a_class(kind), backend) == expected


def test_int8_is_chosen_on_an_a100_when_precision_is_auto() -> None:
    spec = a_model().with_precisions("auto").spec()
    plan = plan_model(spec, a_cluster(a_class("a100")).observed())
    planned = variant(plan, "a100-80gb-int8")
    assert (planned.requested_precision, planned.precision) == (P.AUTO, P.INT8)
    assert planned.action == Action.BUILD


@pytest.mark.parametrize(
    ("kind", "precision", "backend"),
    [
        pytest.param("h100", P.FP8, TRT, id="fp8-on-h100"),
        pytest.param("l40s", P.FP8, PT, id="fp8-on-l40s-pytorch"),
        pytest.param("b200", P.FP8, TRT, id="fp8-on-b200"),
        pytest.param("a100", P.INT8, TRT, id="int8-on-a100-tensorrt"),
        pytest.param("h100", P.INT8, TRT, id="int8-on-h100-tensorrt"),
        pytest.param("a100", P.INT4_AWQ, PT, id="int4-awq-on-a100"),
        pytest.param("a10g", P.INT4_GPTQ, TRT, id="int4-gptq-on-a10g"),
        pytest.param("a100", P.BF16, PT, id="bf16-on-a100"),
    ],
)
def test_supported_combinations_are_not_refused(
    kind: str, precision: Precision, backend: EngineBackend
) -> None:
    assert precision_supported(precision, a_class(kind), backend) is None


@pytest.mark.parametrize(
    ("kind", "precision", "backend", "reason", "message_parts"),
    [
        pytest.param(
            "a100",
            P.FP8,
            TRT,
            "PrecisionUnsupported",
            ("fp8", "8.9", "NVIDIA-A100-SXM4-80GB", "8.0"),
            id="fp8-on-an-a100-names-the-product-and-both-capabilities",
        ),
        pytest.param(
            "a10g",
            P.FP8,
            PT,
            "PrecisionUnsupported",
            ("fp8", "8.9", "NVIDIA-A10G", "8.6"),
            id="fp8-on-an-a10g",
        ),
        pytest.param(
            "h100",
            P.INT8,
            PT,
            "BackendUnsupported",
            ("int8", "tensorrt"),
            id="int8-on-the-pytorch-backend",
        ),
        pytest.param(
            "t4",
            P.BF16,
            TRT,
            "PrecisionUnsupported",
            ("bf16", "8.0", "Tesla-T4", "7.5"),
            id="bf16-on-a-t4",
        ),
        pytest.param(
            "a100", P.AUTO, TRT, "PrecisionUnsupported", ("auto",), id="auto-is-never-built-as-is"
        ),
    ],
)
def test_impossible_combinations_are_refused_with_a_reason(
    kind: str,
    precision: Precision,
    backend: EngineBackend,
    reason: str,
    message_parts: tuple[str, ...],
) -> None:
    refusal = precision_supported(precision, a_class(kind), backend)
    assert refusal is not None
    assert refusal.reason == reason
    for part in message_parts:
        assert part in refusal.message


def test_explicit_fp8_on_an_a100_is_blocked_in_the_plan_not_built() -> None:
    spec = a_model().with_precisions("fp8").spec()
    planned = variant(plan_model(spec, a_cluster(a_class("a100")).observed()), "a100-80gb-fp8")
    assert (planned.action, planned.phase) == (Action.BLOCKED, Phase.UNSUPPORTED)
    assert planned.reason == "PrecisionUnsupported"
    assert planned.message == "fp8 needs compute capability 8.9; NVIDIA-A100-SXM4-80GB has 8.0"
    assert planned.build is None


def test_a_t4_is_refused_as_gpu_unsupported_whatever_the_precision() -> None:
    t4 = a_class("t4")
    refusal = runtime_supports(t4)
    assert refusal is not None
    assert refusal.reason == "GpuUnsupported"
    assert "Tesla-T4 has 7.5" in refusal.message
    spec = a_model().spec()
    planned = variant(plan_model(spec, a_cluster(t4).observed()), "t4-bf16")
    assert (planned.action, planned.reason) == (Action.BLOCKED, "GpuUnsupported")


@pytest.mark.parametrize("kind", ["a100", "a10g", "l4", "h100", "b200"])
def test_tensorrt_llm_runs_on_ampere_and_newer(kind: str) -> None:
    assert runtime_supports(a_class(kind)) is None


# --- KV cache ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "precision", "kind", "backend", "expected"),
    [
        pytest.param("auto", P.BF16, "h100", TRT, "bf16", id="auto-keeps-bf16-for-bf16-on-h100"),
        pytest.param("auto", P.BF16, "a100", TRT, "bf16", id="auto-keeps-bf16-for-bf16-on-a100"),
        pytest.param("auto", P.FP8, "h100", TRT, "fp8", id="auto-fp8-on-hopper"),
        pytest.param("auto", P.INT4_AWQ, "l40s", PT, "fp8", id="auto-fp8-on-ada-pytorch"),
        pytest.param("auto", P.INT8, "a100", TRT, "int8", id="auto-int8-on-ampere-tensorrt"),
        pytest.param("auto", P.INT4_AWQ, "a100", PT, "bf16", id="auto-bf16-on-ampere-pytorch"),
        pytest.param("fp8", P.FP8, "h100", TRT, "fp8", id="fp8-on-hopper"),
        pytest.param("fp8", P.BF16, "l4", PT, "fp8", id="fp8-kv-under-bf16-weights-on-ada"),
        pytest.param("int8", P.INT8, "a100", TRT, "int8", id="int8-on-ampere"),
        pytest.param("bf16", P.FP8, "h100", TRT, "bf16", id="bf16-when-asked"),
        pytest.param("nvfp4", P.FP8, "b200", TRT, "nvfp4", id="nvfp4-on-blackwell"),
    ],
)
def test_kv_cache_dtype_is_resolved_per_class(
    requested: str, precision: Precision, kind: str, backend: EngineBackend, expected: str
) -> None:
    kv, refusal = resolve_kv_cache(KvCacheDtype(requested), precision, a_class(kind), backend)
    assert (kv, refusal) == (expected, None)


@pytest.mark.parametrize(
    ("requested", "kind", "reason", "message_parts"),
    [
        pytest.param(
            "fp8",
            "a100",
            "PrecisionUnsupported",
            ("fp8 KV cache", "8.9", "NVIDIA-A100-SXM4-80GB", "8.0"),
            id="fp8-kv-on-ampere",
        ),
        pytest.param(
            "nvfp4", "h100", "PrecisionUnsupported", ("nvfp4", "10.0", "9.0"), id="nvfp4-on-hopper"
        ),
        pytest.param("nvfp4", "l40s", "PrecisionUnsupported", ("nvfp4", "10.0"), id="nvfp4-on-ada"),
        pytest.param(
            "int4", "b200", "KvCacheUnsupported", ("INT4", "nvfp4"), id="int4-kv-even-on-blackwell"
        ),
        pytest.param("int4", "h100", "KvCacheUnsupported", ("nvfp4",), id="int4-kv-on-hopper"),
    ],
)
def test_impossible_kv_caches_are_refused(
    requested: str, kind: str, reason: str, message_parts: tuple[str, ...]
) -> None:
    _, refusal = resolve_kv_cache(KvCacheDtype(requested), P.FP8, a_class(kind), TRT)
    assert refusal is not None
    assert refusal.reason == reason
    for part in message_parts:
        assert part in refusal.message


def test_an_fp8_kv_cache_blocks_the_ampere_variant_but_not_the_hopper_one() -> None:
    spec = a_model().with_precisions("int4-awq").with_kv_cache("fp8").spec()
    plan = plan_model(spec, a_cluster(a_class("a100"), a_class("h100")).observed())
    ampere, hopper = variant(plan, "a100-80gb-int4-awq"), variant(plan, "h100-int4-awq")
    assert (ampere.action, ampere.reason) == (Action.BLOCKED, "PrecisionUnsupported")
    assert "fp8 KV cache" in ampere.message
    assert (hopper.action, hopper.kv_cache_dtype) == (Action.BUILD, "fp8")


# --- The fallback ladder ----------------------------------------------------------------------


def _ladder(start: Precision, kind: str, backend: EngineBackend) -> list[Precision | None]:
    rungs: list[Precision | None] = [start]
    current: Precision | None = start
    while current is not None:
        current = fallback_precision(current, a_class(kind), backend)
        rungs.append(current)
    return rungs


@pytest.mark.parametrize(
    ("start", "kind", "backend", "expected"),
    [
        pytest.param(
            P.INT4_AWQ,
            "h100",
            TRT,
            [P.INT4_AWQ, P.INT8, P.FP8, P.BF16, None],
            id="h100-tensorrt-int4-awq-int8-fp8-bf16",
        ),
        pytest.param(
            P.INT4_AWQ,
            "a100",
            TRT,
            [P.INT4_AWQ, P.INT8, P.BF16, None],
            id="a100-tensorrt-skips-fp8",
        ),
        pytest.param(
            P.INT4_AWQ,
            "h100",
            PT,
            [P.INT4_AWQ, P.FP8, P.BF16, None],
            id="h100-pytorch-skips-int8",
        ),
        pytest.param(
            P.INT4_AWQ,
            "a100",
            PT,
            [P.INT4_AWQ, P.BF16, None],
            id="a100-pytorch-skips-int8-and-fp8",
        ),
        pytest.param(
            P.INT4_GPTQ,
            "h100",
            TRT,
            [P.INT4_GPTQ, P.INT8, P.FP8, P.BF16, None],
            id="int4-gptq-goes-to-int8",
        ),
        pytest.param(P.FP8, "l40s", TRT, [P.FP8, P.BF16, None], id="fp8-goes-to-bf16"),
        pytest.param(P.BF16, "h100", TRT, [P.BF16, None], id="bf16-is-the-top"),
    ],
)
def test_the_fallback_ladder_goes_toward_quality_skipping_what_the_class_cannot_run(
    start: Precision, kind: str, backend: EngineBackend, expected: list[Precision | None]
) -> None:
    assert _ladder(start, kind, backend) == expected


def test_int4_awq_never_falls_back_to_its_int4_gptq_sibling() -> None:
    for kind in ("h100", "a100", "l4", "b200"):
        for backend in (TRT, PT):
            assert fallback_precision(P.INT4_AWQ, a_class(kind), backend) != P.INT4_GPTQ
