"""Blackwell: NVFP4 as a weight precision, `auto` picking it only under a quality gate, its
place in the ladder and in memory planning, and where its checkpoint may be built."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qmo.api.buildcontract import BuildLimits, BuildRequest, ExpectedGpu, SourceRef
from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import EngineBackend, ModelFormat, ModelSize, Precision
from qmo.builder import gpucheck
from qmo.builder.recipes import make_recipe
from qmo.gpu import class_name_for, lookup_product
from qmo.planner import memory
from qmo.planner.capabilities import (
    auto_precision,
    fallback_precision,
    nvfp4_capable,
    precision_supported,
)
from qmo.planner.events import describe_choice
from qmo.planner.plan import plan_model
from qmo.planner.types import Action
from tests.support.builders import a_class, a_cluster, a_model

TRT, PT = EngineBackend.TENSORRT, EngineBackend.PYTORCH
FLEETS = Path(__file__).parents[2] / "e2e" / "fleets"
BLACKWELL = ("b200", "gb200", "b300", "rtx-pro-6000")


@pytest.mark.parametrize("kind", BLACKWELL)
def test_nvfp4_runs_on_every_blackwell_part(kind: str) -> None:
    gpu = a_class(kind)
    assert nvfp4_capable(gpu)
    assert precision_supported(Precision.NVFP4, gpu, TRT) is None
    assert precision_supported(Precision.NVFP4, gpu, PT) is None


@pytest.mark.parametrize(("kind", "cc"), [("h200", None), ("h100", None), ("l40s", None),
                                          ("a100", None), ("b200", "11.0")])  # fmt: skip
def test_nvfp4_is_refused_elsewhere_with_the_reason(kind: str, cc: str | None) -> None:
    gpu = a_class(kind, compute_capability=cc)
    refusal = precision_supported(Precision.NVFP4, gpu, PT)
    assert refusal is not None
    assert refusal.reason == "PrecisionUnsupported"
    assert "compute capability 10.x or 12.x" in refusal.message


def fleet_classes() -> list[str]:
    """Every GPU class of e2e/fleets, by its product label, and the Blackwell parts."""
    products = {
        node["product"]
        for path in FLEETS.glob("*.yaml")
        for node in yaml.safe_load(path.read_text())["nodes"]
    }
    return sorted({lookup_product(p).class_name for p in products if lookup_product(p)}
                  | set(BLACKWELL))  # fmt: skip


@pytest.mark.parametrize("kind", fleet_classes())
def test_auto_picks_nvfp4_on_blackwell_only_under_a_gate(kind: str) -> None:
    gpu = a_class(kind)
    gated = auto_precision(gpu, TRT, gated=True)
    ungated = auto_precision(gpu, TRT, gated=False)
    if gpu.family == "blackwell":
        assert (gated, ungated) == (Precision.NVFP4, Precision.FP8)
    else:
        assert gated == ungated  # Hopper, Ada and Ampere keep what they got
        assert gated == (Precision.FP8 if gpu.compute_capability.major >= 9 or
                         str(gpu.compute_capability) == "8.9" else Precision.INT8)  # fmt: skip


def test_the_ladder_from_nvfp4_goes_to_fp8_then_bf16() -> None:
    b200 = a_class("b200")
    assert fallback_precision(Precision.NVFP4, b200, PT) == Precision.FP8
    assert fallback_precision(Precision.FP8, b200, PT) == Precision.BF16


def test_nvfp4_weights_take_a_little_over_half_a_byte_per_parameter() -> None:
    size = ModelSize(parameters_billions=70.6, num_layers=80, num_key_value_heads=8, head_dim=128)
    nvfp4 = memory.estimate(size, Precision.NVFP4, "fp8", 8192, 16)
    fp8 = memory.estimate(size, Precision.FP8, "fp8", 8192, 16)
    assert nvfp4.weights_gib == pytest.approx(fp8.weights_gib * 0.5625)


def plan_on_b200(gate: str, precisions: tuple[str, ...] = ("auto",)) -> object:
    spec = (
        a_model()
        .with_precisions(*precisions)
        .on_classes("b200")
        .with_quality(gate=gate, benchmarks=[{"name": "mmlu"}])
        .spec()
    )
    return spec


def test_a_gated_model_gets_nvfp4_on_b200_and_says_why() -> None:
    spec = plan_on_b200("after-rollout")
    [variant] = [v for v in plan_model(spec, a_cluster(a_class("b200")).observed()).variants
                 if not v.reference]  # fmt: skip
    assert (variant.name, variant.kv_cache_dtype) == ("b200-nvfp4", "fp8")
    assert "nvfp4 on Blackwell, since the quality gate falls back to fp8" in describe_choice(
        variant
    )


def test_an_ungated_model_gets_fp8_on_b200_and_says_why() -> None:
    spec = plan_on_b200("off")
    [variant] = plan_model(spec, a_cluster(a_class("b200")).observed()).variants
    assert variant.name == "b200-fp8"
    assert "fp8, not nvfp4, since no quality gate with benchmarks" in describe_choice(variant)


def test_an_auto_nvfp4_that_regresses_falls_back_to_fp8_even_under_rollback() -> None:
    spec = plan_on_b200("after-rollout")
    b200 = a_class("b200")
    first = plan_model(spec, a_cluster(b200).observed())
    key = next(v.cache_key for v in first.variants if v.name == "b200-nvfp4")
    assert key is not None
    observed = (
        a_cluster(b200)
        .built(key)
        .deployed("b200-nvfp4", key)
        .reported("b200-nvfp4", key, Verdict.REGRESSED)
        .observed()
    )
    plan = plan_model(spec, observed)
    names = {v.name: v for v in plan.variants}
    assert "b200-fp8" in names, list(names)
    assert names["b200-fp8"].fell_back is not None
    # An nvfp4 the user asked for by name follows onRegression (rollback: withdrawn).
    explicit = plan_on_b200("after-rollout", ("nvfp4",))
    key = next(v.cache_key for v in plan_model(explicit, a_cluster(b200).observed()).variants
               if v.name == "b200-nvfp4")  # fmt: skip
    assert key is not None
    observed = (
        a_cluster(b200).built(key).deployed("b200-nvfp4", key)
        .reported("b200-nvfp4", key, Verdict.REGRESSED).observed()
    )  # fmt: skip
    [withdrawn] = [v for v in plan_model(explicit, observed).variants if v.name == "b200-nvfp4"]
    assert withdrawn.action == Action.WITHDRAW


def request(
    precision: str,
    backend: EngineBackend,
    product: str,
    cc: str,
    serve_on: ExpectedGpu | None = None,
) -> BuildRequest:
    return BuildRequest(
        cache_key="k" * 64,
        source=SourceRef(uri="/models/llama"),
        precision=precision,  # type: ignore[arg-type]
        kv_cache_dtype="fp8",
        backend=backend,
        limits=BuildLimits(max_batch_size=8, max_seq_len=2048),
        gpu=ExpectedGpu(product=product, compute_capability=cc),
        serve_on=serve_on,
        output_dir="/store/artifacts/k",
    )


B200 = ExpectedGpu(product="NVIDIA-B200", compute_capability="10.0")


def test_an_nvfp4_checkpoint_may_be_quantized_off_blackwell_but_an_engine_may_not() -> None:
    h200 = [gpucheck.SeenGpu("NVIDIA H200", "9.0")]
    # PyTorch backend: the checkpoint is not tied to an architecture (docs/builder.md).
    assert gpucheck.refusal(request("nvfp4", PT, "NVIDIA-H200", "9.0", B200), h200) is None
    engine = gpucheck.refusal(request("nvfp4", TRT, "NVIDIA-H200", "9.0", B200), h200)
    assert engine is not None
    assert "runs only on the architecture it is built on" in engine.message
    # For Hopper itself, nvfp4 is no precision at all.
    hopper = gpucheck.refusal(request("nvfp4", PT, "NVIDIA-H200", "9.0"), h200)
    assert hopper is not None
    assert "nvfp4 serves on Blackwell" in hopper.message
    b200 = [gpucheck.SeenGpu("NVIDIA B200", "10.0")]
    assert gpucheck.refusal(request("nvfp4", TRT, "NVIDIA-B200", "10.0"), b200) is None


def test_the_nvfp4_recipe_is_modelopts_preset() -> None:
    recipe = make_recipe(
        precision="nvfp4", kv_cache_dtype="fp8", backend=PT, source_format=ModelFormat.HF
    )
    assert (recipe.modelopt_config, recipe.quant_algo) == ("NVFP4_DEFAULT_CFG", "NVFP4")


def test_blackwell_products_are_known_classes() -> None:
    for product, name in (
        ("NVIDIA-GB200", "gb200"),
        ("NVIDIA-B300-SXM6-AC", "b300"),
        ("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", "rtx-pro-6000"),
    ):
        assert class_name_for(product) == name  # fmt: skip


def test_a_gate_without_benchmarks_catches_nothing_so_auto_stays_on_fp8() -> None:
    spec = (
        a_model()
        .with_precisions("auto")
        .on_classes("b200")
        .with_quality(gate="after-rollout")
        .spec()
    )
    [variant] = plan_model(spec, a_cluster(a_class("b200")).observed()).variants
    assert variant.name == "b200-fp8"


# --- pre-quantized checkpoints, from their files -------------------------------------------

PREQUANTIZED = Path(__file__).parents[1] / "data" / "prequantized"


def files_of(name: str) -> tuple[dict[str, object], dict[str, object] | None]:
    from qmo.builder import source

    directory = PREQUANTIZED / name
    return source.read_json(directory / "config.json") or {}, source.read_json(
        directory / "hf_quant_config.json"
    )


@pytest.mark.parametrize(
    ("name", "precision"),
    [
        ("fp8-block", "fp8"),
        ("compressed-tensors-fp8", "fp8"),
        ("compressed-tensors-nvfp4", "nvfp4"),
        ("modelopt-nvfp4", "nvfp4"),
        ("awq", "int4-awq"),
        ("gpt-oss-mxfp4", None),
        ("bf16", "none"),
    ],
)
def test_a_sources_quantization_is_read_from_its_files(name: str, precision: str | None) -> None:
    from qmo.builder.recipes import source_quantization

    found = source_quantization(*files_of(name))
    if precision == "none":
        assert found is None
    else:
        assert found is not None
        assert found.precision == precision


@pytest.mark.parametrize(
    ("name", "precision", "kv", "backend", "problem"),
    [
        ("modelopt-nvfp4", "nvfp4", "fp8", PT, None),
        ("fp8-block", "fp8", "bf16", PT, None),
        ("compressed-tensors-nvfp4", "nvfp4", "bf16", PT, None),
        ("fp8-block", "nvfp4", "bf16", PT, "quantized as fp8 (FP8 weights) (fp8), not nvfp4"),
        ("fp8-block", "fp8", "fp8", PT, "no calibrated KV-cache scales"),
        ("gpt-oss-mxfp4", "int4-awq", "bf16", PT, "MXFP4 (as gpt-oss ships), which qmo cannot"),
        ("bf16", "fp8", "bf16", PT, "not a ModelOpt-quantized checkpoint"),
    ],
)
def test_a_prequantized_source_is_served_as_it_is_or_refused_with_what_it_holds(
    name: str, precision: str, kv: str, backend: EngineBackend, problem: str | None
) -> None:
    from qmo.builder.recipes import check_prequantized

    recipe = make_recipe(
        precision=precision,
        kv_cache_dtype=kv,
        backend=backend,
        source_format=ModelFormat.MODELOPT_PREQUANTIZED,
    )
    found = check_prequantized(recipe, *files_of(name))
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def prequantized(**model: object) -> object:
    from qmo.api.quantizedmodel import QuantizedModelSpec

    return QuantizedModelSpec.model_validate(
        {
            "model": {"source": "hf://nvidia/Llama-3.3-70B-Instruct-FP4", "revision": "r1",
                      "format": "modelopt-prequantized", **model},
            "precisions": ["nvfp4"],
            "gpu": {"classes": ["b200"]},
            "quality": {"gate": "after-rollout", "benchmarks": [{"name": "mmlu"}]},
        }
    )  # fmt: skip


def test_a_prequantized_model_is_judged_against_the_reference_it_names() -> None:
    spec = prequantized(reference={"source": "hf://meta-llama/Llama-3.3-70B-Instruct",
                                   "revision": "main"})  # fmt: skip
    b200 = a_class("b200")
    first = plan_model(spec, a_cluster(b200).observed())  # type: ignore[arg-type]
    key = first.variants[0].cache_key
    assert key is not None
    serving = a_cluster(b200).built(key).deployed("b200-nvfp4", key).observed()
    plan = plan_model(spec, serving)  # type: ignore[arg-type]  # it awaits its report now
    by_name = {v.name: v for v in plan.variants}
    served, reference = by_name["b200-nvfp4"], by_name["b200-bf16"]
    assert reference.reference
    assert served.target.build is not None
    assert reference.target.build is not None
    assert served.target.build.source.uri == "hf://nvidia/Llama-3.3-70B-Instruct-FP4"
    assert reference.target.build.source.uri == "hf://meta-llama/Llama-3.3-70B-Instruct"
    assert reference.target.build.source.format == ModelFormat.HF
    assert served.cache_key != reference.cache_key


def test_without_a_reference_the_gate_says_there_is_nothing_to_compare_against() -> None:
    from qmo.planner import gate
    from qmo.planner.model_conditions import Facts, gate_condition

    spec = prequantized()
    b200 = a_class("b200")
    key = plan_model(spec, a_cluster(b200).observed()).variants[0].cache_key  # type: ignore[arg-type]
    assert key is not None
    serving = a_cluster(b200).built(key).deployed("b200-nvfp4", key).observed()
    plan = plan_model(spec, serving)  # type: ignore[arg-type]
    assert [v.name for v in plan.variants] == ["b200-nvfp4"]  # no BF16 reference to build
    assert not gate.gated(spec, plan.variants[0].target)  # type: ignore[arg-type]
    status, reason, message = gate_condition(Facts(spec, plan))  # type: ignore[arg-type]
    assert (status, reason) == ("True", "NoBaseline")
    assert "nothing to compare against" in message


def test_a_reference_is_only_for_an_already_quantized_source() -> None:
    from qmo.api.quantizedmodel import QuantizedModelSpec

    with pytest.raises(ValueError, match="only with format modelopt-prequantized"):
        QuantizedModelSpec.model_validate(
            {"model": {"source": "hf://m/m", "reference": {"source": "hf://m/full"}}}
        )
    with pytest.raises(ValueError, match="must be hf://ORG/NAME or s3://BUCKET/PATH"):
        prequantized(reference={"source": "pvc://models/llama"})


# --- where a portable checkpoint is built ---------------------------------------------------


def nvfp4_on_b200(backend: str = "pytorch") -> object:
    return a_model().with_precisions("nvfp4").on_classes("b200").with_backend(backend).spec()


def observed_with(held: dict[str, int], *builds: str) -> object:
    import dataclasses

    cluster = a_cluster(a_class("b200", gpus_per_node=8), a_class("h200", gpus_per_node=8))
    for key in builds:
        cluster = cluster.building(key)
    return dataclasses.replace(cluster.observed(), gpus_held=held)


def the_variant(spec: object, observed: object) -> object:
    [found] = [v for v in plan_model(spec, observed).variants if v.name == "b200-nvfp4"]  # type: ignore[arg-type]
    return found


def test_a_portable_checkpoint_is_built_on_another_class_when_its_own_is_full() -> None:
    from qmo.manifests.build import build_job

    spec = nvfp4_on_b200()
    home = the_variant(spec, observed_with({}))
    assert home.target.build_class is None  # room at home: built there, key as before
    assert home.target.build.serve_on is None

    away = the_variant(spec, observed_with({"b200": 8}))
    assert away.target.build_class.name == "h200"
    request = away.target.build
    assert (request.gpu.product, request.serve_on.product) == ("NVIDIA-H200", "NVIDIA-B200")
    assert away.cache_key != home.cache_key  # what was built where is in the key
    job = build_job(spec, away, namespace="team-a", image="qmo-builder:x")
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H200"
    assert job["metadata"]["labels"]["qmo.dev/gpu-class"] == "h200"  # where its GPUs are held
    assert "built on h200" in describe_choice(away)

    # Once started there, it stays there, even when the B200s free up.
    stays = the_variant(spec, observed_with({}, away.cache_key))
    assert stays.cache_key == away.cache_key


def test_an_engine_is_always_built_on_the_class_it_serves_on() -> None:
    spec = nvfp4_on_b200("tensorrt")
    waits = the_variant(spec, observed_with({"b200": 8}))
    assert waits.target.build_class is None
    assert waits.target.build.serve_on is None


def test_with_no_room_anywhere_the_build_waits_at_home() -> None:
    spec = nvfp4_on_b200()
    waits = the_variant(spec, observed_with({"b200": 8, "h200": 8}))
    assert waits.target.build_class is None


def test_nvfp4_may_calibrate_with_awq_lite_and_other_keys_stay_as_they_were() -> None:
    from qmo.api.quantizedmodel import QuantizationSpec
    from qmo.builder.recipes import recipe_for

    plain = request("nvfp4", PT, "NVIDIA-B200", "10.0")
    awq = plain.model_copy(update={"quantization": QuantizationSpec(nvfp4_algorithm="awq-lite")})
    assert recipe_for(plain).modelopt_config == "NVFP4_DEFAULT_CFG"
    assert (recipe_for(awq).modelopt_config, recipe_for(awq).quant_algo) == (
        "NVFP4_AWQ_LITE_CFG",
        "NVFP4_AWQ",
    )
    assert "nvfp4Algorithm" not in QuantizationSpec().to_wire()  # unset: keys unchanged
