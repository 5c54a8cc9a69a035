"""Precision + KV dtype + backend map to the right ModelOpt configs, or to a clear refusal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qmo.api.quantizedmodel import EngineBackend, ModelFormat, QuantizationSpec
from qmo.builder.errors import InvalidRequest
from qmo.builder.recipes import (
    INT8_KV_INLINE,
    Export,
    Mode,
    check_prequantized,
    compose_config,
    int8_kv_config,
    kv_only_base,
    make_recipe,
)

PT, TRT = EngineBackend.PYTORCH, EngineBackend.TENSORRT
HF, PREQ = ModelFormat.HF, ModelFormat.MODELOPT_PREQUANTIZED


@pytest.mark.parametrize(
    ("precision", "kv", "backend", "fmt", "mode", "config", "kv_config", "algo", "kv_algo"),
    [
        pytest.param("bf16", "bf16", PT, HF, Mode.NONE, None, None, None, None, id="bf16"),
        pytest.param(
            "bf16",
            "fp8",
            PT,
            HF,
            Mode.QUANTIZE,
            None,
            "FP8_KV_CFG",
            None,
            "FP8",
            id="bf16-weights-calibrate-only-the-fp8-kv-cache",
        ),
        pytest.param(
            "fp8",
            "fp8",
            PT,
            HF,
            Mode.QUANTIZE,
            "FP8_DEFAULT_CFG",
            "FP8_KV_CFG",
            "FP8",
            "FP8",
            id="fp8-with-fp8-kv",
        ),
        pytest.param(
            "int8",
            "int8",
            TRT,
            HF,
            Mode.QUANTIZE,
            "INT8_SMOOTHQUANT_CFG",
            INT8_KV_INLINE,
            "W8A8_SQ_PER_CHANNEL",
            "INT8",
            id="int8-smoothquant-with-int8-kv-on-tensorrt",
        ),
        pytest.param(
            "int4-awq",
            "fp8",
            PT,
            HF,
            Mode.QUANTIZE,
            "INT4_AWQ_CFG",
            "FP8_KV_CFG",
            "W4A16_AWQ",
            "FP8",
            id="int4-awq-with-fp8-kv",
        ),
        pytest.param(
            "w4a8-awq",
            "bf16",
            TRT,
            HF,
            Mode.QUANTIZE,
            "W4A8_AWQ_BETA_CFG",
            None,
            "W4A8_AWQ",
            None,
            id="w4a8-awq",
        ),
        pytest.param(
            "int4-awq",
            "nvfp4",
            PT,
            HF,
            Mode.QUANTIZE,
            "INT4_AWQ_CFG",
            "NVFP4_KV_CFG",
            "W4A16_AWQ",
            "NVFP4",
            id="nvfp4-kv",
        ),
        pytest.param(
            "int4-gptq",
            "bf16",
            PT,
            HF,
            Mode.PASSTHROUGH,
            None,
            None,
            "W4A16_GPTQ",
            None,
            id="int4-gptq-is-a-passthrough-of-a-gptq-source",
        ),
        pytest.param(
            "fp8",
            "fp8",
            PT,
            PREQ,
            Mode.PASSTHROUGH,
            None,
            None,
            "FP8",
            "FP8",
            id="prequantized-fp8-passes-through",
        ),
    ],
)
def test_each_precision_maps_to_its_modelopt_recipe(
    precision: str,
    kv: str,
    backend: EngineBackend,
    fmt: ModelFormat,
    mode: Mode,
    config: str | None,
    kv_config: str | None,
    algo: str | None,
    kv_algo: str | None,
) -> None:
    recipe = make_recipe(precision=precision, kv_cache_dtype=kv, backend=backend, source_format=fmt)
    assert (recipe.mode, recipe.modelopt_config, recipe.kv_config) == (mode, config, kv_config)
    assert (recipe.quant_algo, recipe.kv_cache_quant_algo) == (algo, kv_algo)
    assert recipe.export is (Export.ENGINE if backend is TRT else Export.HF)
    assert recipe.needs_calibration is (mode is Mode.QUANTIZE)


@pytest.mark.parametrize(
    ("precision", "kv", "backend", "fmt", "message"),
    [
        pytest.param(
            "int8", "bf16", PT, HF, "served only by the TensorRT engine", id="int8-on-pytorch"
        ),
        pytest.param(
            "fp8", "int8", PT, HF, "int8 KV cache is served only", id="int8-kv-on-pytorch"
        ),
        pytest.param(
            "bf16", "bf16", PT, PREQ, "cannot be built as bf16", id="prequantized-as-bf16"
        ),
        pytest.param(
            "fp8", "fp8", TRT, PREQ, "set engine.backend: pytorch", id="prequantized-engine"
        ),
        pytest.param("int2", "bf16", PT, HF, "has no build recipe", id="unknown-precision"),
        pytest.param("fp8", "int4", PT, HF, "KV cache dtype 'int4' has no", id="int4-kv"),
    ],
)
def test_impossible_combinations_are_refused_with_the_reason(
    precision: str, kv: str, backend: EngineBackend, fmt: ModelFormat, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        make_recipe(precision=precision, kv_cache_dtype=kv, backend=backend, source_format=fmt)


# Shapes of ModelOpt configs: 0.47 (list of entries) and up to ~0.37 (dict of wildcards).
INT4_AWQ_LIST: dict[str, Any] = {
    "quant_cfg": [
        {"quantizer_name": "*", "enable": False},
        {
            "quantizer_name": "*weight_quantizer",
            "cfg": {"num_bits": 4, "block_sizes": {-1: 128, "type": "static"}},
        },
        {"quantizer_name": "*input_quantizer", "enable": False},
        {"quantizer_name": "*lm_head*", "enable": False},
    ],
    "algorithm": {"method": "awq_lite", "alpha_step": 0.1},
}
FP8_KV_LIST: dict[str, Any] = {
    "quant_cfg": [
        {"quantizer_name": "*[kv]_bmm_quantizer", "cfg": {"num_bits": (4, 3), "axis": None}}
    ]
}
SQ_DICT: dict[str, Any] = {
    "quant_cfg": {
        "*weight_quantizer": {"num_bits": 8, "axis": 0},
        "*input_quantizer": {"num_bits": 8, "axis": None},
        "default": {"enable": False},
    },
    "algorithm": "smoothquant",
}
FP8_KV_DICT: dict[str, Any] = {
    "quant_cfg": {
        "*[kv]_bmm_quantizer": {"num_bits": (4, 3), "axis": None, "enable": True},
        "default": {"enable": False},
    },
    "algorithm": "max",
}


def test_list_form_configs_get_the_kv_entries_and_exclusions_appended_last() -> None:
    spec = QuantizationSpec(exclude_modules=["lm_head", "model.layers.0.mlp"], awq_block_size=64)
    original = copy.deepcopy(INT4_AWQ_LIST)
    config = compose_config(INT4_AWQ_LIST, FP8_KV_LIST, spec)
    names = [entry["quantizer_name"] for entry in config["quant_cfg"]]
    assert names[-3:] == ["*[kv]_bmm_quantizer", "*lm_head*", "*model.layers.0.mlp*"]
    assert config["quant_cfg"][-1] == {"quantizer_name": "*model.layers.0.mlp*", "enable": False}
    assert config["quant_cfg"][1]["cfg"]["block_sizes"][-1] == 64
    assert original == INT4_AWQ_LIST, "the ModelOpt preset itself must not be modified"


def test_dict_form_configs_merge_the_kv_wildcard_but_keep_their_own_default() -> None:
    spec = QuantizationSpec(smoothquant_alpha=0.8)
    config = compose_config(SQ_DICT, FP8_KV_DICT, spec)
    assert config["quant_cfg"]["*[kv]_bmm_quantizer"]["num_bits"] == (4, 3)
    assert config["quant_cfg"]["default"] == {"enable": False}
    assert config["quant_cfg"]["*lm_head*"] == {"enable": False}
    assert config["algorithm"] == {"method": "smoothquant", "alpha": 0.8}


def test_a_dict_form_kv_config_merges_into_a_list_form_model_config() -> None:
    config = compose_config(INT4_AWQ_LIST, FP8_KV_DICT, QuantizationSpec())
    kv = [e for e in config["quant_cfg"] if e["quantizer_name"] == "*[kv]_bmm_quantizer"]
    assert kv == [
        {"quantizer_name": "*[kv]_bmm_quantizer", "cfg": {"num_bits": (4, 3), "axis": None}}
    ]


def test_w4a8_weight_quantizers_with_two_formats_get_the_block_size() -> None:
    w4a8 = {
        "quant_cfg": [
            {
                "quantizer_name": "*weight_quantizer",
                "cfg": [
                    {"num_bits": 4, "block_sizes": {-1: 128}},
                    {"num_bits": (4, 3), "axis": None},
                ],
            },
        ],
        "algorithm": "awq_lite",
    }
    config = compose_config(w4a8, None, QuantizationSpec(awq_block_size=64))
    assert config["quant_cfg"][0]["cfg"][0]["block_sizes"] == {-1: 64}
    assert config["algorithm"] == "awq_lite"


@pytest.mark.parametrize("list_form", [True, False], ids=["modelopt-0.47", "modelopt-0.37"])
def test_int8_kv_and_kv_only_configs_come_in_the_installed_shape(list_form: bool) -> None:
    kv = int8_kv_config(list_form)
    base = kv_only_base(list_form)
    config = compose_config(base, kv, QuantizationSpec(exclude_modules=[]))
    quant_cfg = config["quant_cfg"]
    assert isinstance(quant_cfg, list) is list_form
    if list_form:
        assert quant_cfg[0] == {"quantizer_name": "*", "enable": False}
        assert quant_cfg[1]["cfg"] == {"num_bits": 8, "axis": None}
    else:
        assert quant_cfg["*[kv]_bmm_quantizer"] == {"num_bits": 8, "axis": None, "enable": True}
        assert quant_cfg["default"] == {"enable": False}


def _recipe(precision: str, kv: str = "bf16") -> Any:
    return make_recipe(precision=precision, kv_cache_dtype=kv, backend=PT, source_format=PREQ)


@pytest.mark.parametrize(
    ("precision", "kv", "config", "hf_quant", "problem"),
    [
        pytest.param(
            "fp8",
            "fp8",
            {},
            {"quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}},
            None,
            id="fp8-matches",
        ),
        pytest.param(
            "fp8",
            "bf16",
            {},
            {"quantization": {"quant_algo": "W4A16_AWQ"}},
            "quantized as W4A16_AWQ",
            id="wrong-algo",
        ),
        pytest.param(
            "fp8",
            "fp8",
            {},
            {"quantization": {"quant_algo": "FP8"}},
            "KV cache is unquantized",
            id="kv-mismatch",
        ),
        pytest.param(
            "int4-gptq",
            "bf16",
            {"quantization_config": {"quant_method": "gptq", "bits": 4}},
            None,
            None,
            id="gptq-source",
        ),
        pytest.param(
            "int4-gptq",
            "bf16",
            {"quantization_config": {"quant_method": "awq", "bits": 4}},
            None,
            "is awq with 4 bits",
            id="awq-is-not-gptq",
        ),
        pytest.param(
            "int4-gptq", "bf16", {}, None, "ModelOpt has no GPTQ export", id="full-precision-source"
        ),
        pytest.param(
            "fp8", "fp8", {}, None, "not a ModelOpt-quantized checkpoint", id="no-hf-quant-config"
        ),
    ],
)
def test_a_prequantized_source_is_checked_against_the_request(
    precision: str,
    kv: str,
    config: dict[str, Any],
    hf_quant: dict[str, Any] | None,
    problem: str | None,
) -> None:
    found = check_prequantized(_recipe(precision, kv), config, hf_quant)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
