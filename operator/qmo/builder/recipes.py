"""PURE: which quantization recipe a build request asks for, and the configs it needs.

A `Recipe` says how one precision + KV-cache dtype + backend is produced: the NVIDIA ModelOpt
config names (`mtq.FP8_DEFAULT_CFG`, ...), the algorithm names TensorRT-LLM's checkpoint and
ModelOpt's `hf_quant_config.json` use for it, and whether the build quantizes, skips
quantization (bf16) or passes an already quantized source through.

`compose_config` merges a ModelOpt model config with a KV-cache config, the excluded modules
and the request's AWQ block size / SmoothQuant alpha. ModelOpt changed the shape of
`quant_cfg` from a dict of wildcard -> attributes (up to ~0.37, the TensorRT-LLM 1.2 image) to
an ordered list of entries (0.47); both are handled, on plain dicts, so this is unit-tested
without ModelOpt installed.

Called by qmo.builder.cli (refusals before any work), qmo.builder.pipeline and the tests.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from qmo.api.buildcontract import BuildRequest
from qmo.api.quantizedmodel import EngineBackend, ModelFormat, QuantizationSpec
from qmo.builder.errors import InvalidRequest


class Mode(StrEnum):
    NONE = "none"  # bf16: the source weights as they are
    QUANTIZE = "quantize"  # ModelOpt post-training quantization on calibration data
    PASSTHROUGH = "passthrough"  # an already quantized source, validated and copied


class Export(StrEnum):
    HF = "hf"  # unified Hugging Face checkpoint, served by the PyTorch backend
    ENGINE = "engine"  # TensorRT-LLM checkpoint + trtllm-build (TensorRT-LLM <= 1.2)


@dataclass(frozen=True)
class Recipe:
    precision: str
    kv_cache_dtype: str
    mode: Mode
    export: Export
    modelopt_config: str | None  # attribute of modelopt.torch.quantization; None: KV only
    kv_config: str | None  # attribute of modelopt.torch.quantization, or INT8_KV_INLINE
    quant_algo: str | None  # hf_quant_config.json / TensorRT-LLM QuantAlgo of the weights
    kv_cache_quant_algo: str | None
    trtllm_qformat: str  # TensorRT-LLM quantize.py --qformat, for the record

    @property
    def needs_calibration(self) -> bool:
        return self.mode is Mode.QUANTIZE


# INT8 KV has no named ModelOpt config: it is built inline (see kv_entries).
INT8_KV_INLINE = "INT8_KV"

# precision -> (ModelOpt config, quant_algo, TensorRT-LLM --qformat)
_WEIGHT_RECIPES: dict[str, tuple[str | None, str | None, str]] = {
    "bf16": (None, None, "full_prec"),
    "fp8": ("FP8_DEFAULT_CFG", "FP8", "fp8"),
    "int8": ("INT8_SMOOTHQUANT_CFG", "W8A8_SQ_PER_CHANNEL", "int8_sq"),
    "int4-awq": ("INT4_AWQ_CFG", "W4A16_AWQ", "int4_awq"),
    # ModelOpt's NVFP4 preset (max calibration of FP8 block scales); its AWQ-lite form,
    # NVFP4_AWQ_LITE_CFG, exports as NVFP4_AWQ and is what the GPU run compares it with.
    "nvfp4": ("NVFP4_DEFAULT_CFG", "NVFP4", "nvfp4"),
    # W4A8 is not a precision of the API yet; the recipe exists for when it is.
    "w4a8-awq": ("W4A8_AWQ_BETA_CFG", "W4A8_AWQ", "w4a8_awq"),
    # ModelOpt has no GPTQ preset config (its `gptq` algorithm exports the W4A16_AWQ format),
    # so int4-gptq means: a source already quantized with GPTQ, validated and passed through.
    "int4-gptq": (None, "W4A16_GPTQ", "int4_gptq"),
}

# kv dtype -> (ModelOpt KV config, kv_cache_quant_algo)
_KV_RECIPES: dict[str, tuple[str | None, str | None]] = {
    "bf16": (None, None),
    "fp8": ("FP8_KV_CFG", "FP8"),
    "int8": (INT8_KV_INLINE, "INT8"),
    "nvfp4": ("NVFP4_KV_CFG", "NVFP4"),
}

# The names a prequantized source may carry in hf_quant_config.json for each precision.
PREQUANTIZED_ALGOS: dict[str, frozenset[str]] = {
    "fp8": frozenset({"FP8"}),
    "int8": frozenset({"W8A8_SQ_PER_CHANNEL", "W8A8_SQ_PER_TENSOR_PLUGIN"}),
    "int4-awq": frozenset({"W4A16_AWQ"}),
    "nvfp4": frozenset({"NVFP4", "NVFP4_AWQ"}),
    "w4a8-awq": frozenset({"W4A8_AWQ"}),
    "int4-gptq": frozenset({"W4A16_GPTQ"}),
}


def recipe_for(request: BuildRequest) -> Recipe:
    """The recipe of a request, or InvalidRequest saying why it cannot be built."""
    recipe = make_recipe(
        precision=request.precision,
        kv_cache_dtype=request.kv_cache_dtype,
        backend=request.backend,
        source_format=request.source.format,
    )
    if recipe.precision == "nvfp4" and request.quantization.nvfp4_algorithm == "awq-lite":
        if recipe.mode is not Mode.QUANTIZE:
            return recipe  # a prequantized source: nothing is calibrated here
        return dataclasses.replace(
            recipe, modelopt_config="NVFP4_AWQ_LITE_CFG", quant_algo="NVFP4_AWQ"
        )
    return recipe


def make_recipe(
    *, precision: str, kv_cache_dtype: str, backend: EngineBackend, source_format: ModelFormat
) -> Recipe:
    if precision not in _WEIGHT_RECIPES:
        raise InvalidRequest(f"precision {precision!r} has no build recipe")
    if kv_cache_dtype not in _KV_RECIPES:
        raise InvalidRequest(f"KV cache dtype {kv_cache_dtype!r} has no build recipe")
    model_cfg, quant_algo, qformat = _WEIGHT_RECIPES[precision]
    kv_cfg, kv_algo = _KV_RECIPES[kv_cache_dtype]
    _check_backend(precision, kv_cache_dtype, backend)

    prequantized = source_format is ModelFormat.MODELOPT_PREQUANTIZED
    if precision == "bf16":
        if prequantized:
            raise InvalidRequest("a prequantized source cannot be built as bf16")
        # bf16 weights with a quantized KV cache still calibrate, for the KV scales alone.
        mode = Mode.NONE if kv_cfg is None else Mode.QUANTIZE
    elif prequantized or precision == "int4-gptq":
        mode = Mode.PASSTHROUGH
    else:
        mode = Mode.QUANTIZE

    export = Export.ENGINE if backend is EngineBackend.TENSORRT else Export.HF
    if mode is Mode.PASSTHROUGH and export is Export.ENGINE and precision != "int4-gptq":
        raise InvalidRequest(
            "a prequantized ModelOpt checkpoint is served as it is by the PyTorch backend; "
            "set engine.backend: pytorch (trtllm-build needs a full-precision source)"
        )
    return Recipe(
        precision=precision,
        kv_cache_dtype=kv_cache_dtype,
        mode=mode,
        export=export,
        modelopt_config=model_cfg if mode is Mode.QUANTIZE else None,
        kv_config=kv_cfg if mode is Mode.QUANTIZE else None,
        quant_algo=quant_algo,
        kv_cache_quant_algo=kv_algo,
        trtllm_qformat=qformat,
    )


def _check_backend(precision: str, kv_cache_dtype: str, backend: EngineBackend) -> None:
    if backend is not EngineBackend.PYTORCH:
        return
    if precision == "int8":
        raise InvalidRequest(
            "int8 (W8A8 SmoothQuant) is served only by the TensorRT engine backend "
            "(TensorRT-LLM <= 1.2); set engine.backend: tensorrt or choose fp8 / int4-awq"
        )
    if kv_cache_dtype == "int8":
        raise InvalidRequest(
            "an int8 KV cache is served only by the TensorRT engine backend; use fp8"
        )


def compose_config(
    model_config: dict[str, Any],
    kv_config: dict[str, Any] | None,
    quantization: QuantizationSpec,
) -> dict[str, Any]:
    """A copy of a ModelOpt config with the KV-cache config, exclusions and settings merged.

    Exclusions come last so they win over the wildcards before them (in list form ModelOpt
    applies entries in order; in dict form they are keys of their own).
    """
    config = copy.deepcopy(model_config)
    quant_cfg = config.get("quant_cfg")
    if isinstance(quant_cfg, list):
        merged: list[Any] = list(quant_cfg)
        if kv_config is not None:
            merged.extend(copy.deepcopy(_as_list(kv_config["quant_cfg"])))
        merged.extend(
            {"quantizer_name": _pattern(name), "enable": False}
            for name in quantization.exclude_modules
        )
        config["quant_cfg"] = merged
    elif isinstance(quant_cfg, dict):
        merged_dict = dict(quant_cfg)
        if kv_config is not None:
            kv_entries = _as_dict(kv_config["quant_cfg"])
            merged_dict.update({k: v for k, v in kv_entries.items() if k != "default"})
        for name in quantization.exclude_modules:
            merged_dict[_pattern(name)] = {"enable": False}
        config["quant_cfg"] = merged_dict
    else:
        raise ValueError(f"unexpected ModelOpt quant_cfg type {type(quant_cfg).__name__}")
    _set_block_size(config, quantization.awq_block_size)
    config["algorithm"] = _with_alpha(config.get("algorithm"), quantization.smoothquant_alpha)
    return config


def int8_kv_config(list_form: bool) -> dict[str, Any]:
    """INT8 per-tensor KV-cache quantizers, in the quant_cfg shape of the installed ModelOpt."""
    attributes = {"num_bits": 8, "axis": None}
    if list_form:
        return {"quant_cfg": [{"quantizer_name": "*[kv]_bmm_quantizer", "cfg": attributes}]}
    return {"quant_cfg": {"*[kv]_bmm_quantizer": {**attributes, "enable": True}}}


def kv_only_base(list_form: bool) -> dict[str, Any]:
    """A ModelOpt config that quantizes nothing, for bf16 weights with a quantized KV cache."""
    if list_form:
        return {"quant_cfg": [{"quantizer_name": "*", "enable": False}], "algorithm": "max"}
    return {"quant_cfg": {"default": {"enable": False}}, "algorithm": "max"}


def config_is_list_form(model_config: dict[str, Any]) -> bool:
    return isinstance(model_config.get("quant_cfg"), list)


def _pattern(module_name: str) -> str:
    return module_name if "*" in module_name else f"*{module_name}*"


def _as_list(quant_cfg: Any) -> list[Any]:
    if isinstance(quant_cfg, list):
        return quant_cfg
    if isinstance(quant_cfg, dict):
        return [
            {"quantizer_name": name, "cfg": {k: v for k, v in attrs.items() if k != "enable"}}
            if attrs.get("enable", True)
            else {"quantizer_name": name, "enable": False}
            for name, attrs in quant_cfg.items()
            if name != "default"
        ]
    raise ValueError(f"unexpected KV quant_cfg type {type(quant_cfg).__name__}")


def _as_dict(quant_cfg: Any) -> dict[str, Any]:
    if isinstance(quant_cfg, dict):
        return quant_cfg
    if isinstance(quant_cfg, list):
        out: dict[str, Any] = {}
        for entry in quant_cfg:
            attrs = dict(entry.get("cfg") or {})
            if "enable" in entry:
                attrs["enable"] = entry["enable"]
            out[entry["quantizer_name"]] = attrs
        return out
    raise ValueError(f"unexpected KV quant_cfg type {type(quant_cfg).__name__}")


def _set_block_size(config: dict[str, Any], block_size: int) -> None:
    """Set the INT4 group size wherever a weight quantizer has per-block sizes."""
    quant_cfg = config["quant_cfg"]
    if isinstance(quant_cfg, list):
        attribute_sets = [entry.get("cfg") for entry in quant_cfg if isinstance(entry, dict)]
    else:
        attribute_sets = list(quant_cfg.values())
    for attrs in attribute_sets:
        for one in attrs if isinstance(attrs, list) else [attrs]:
            if not isinstance(one, dict) or one.get("num_bits") != 4:
                continue
            sizes = one.get("block_sizes")
            if isinstance(sizes, dict):
                key = -1 if -1 in sizes else "-1" if "-1" in sizes else None
                if key is not None:
                    sizes[key] = block_size


def _with_alpha(algorithm: Any, alpha: float) -> Any:
    if algorithm == "smoothquant":
        return {"method": "smoothquant", "alpha": alpha}
    if isinstance(algorithm, dict) and algorithm.get("method") == "smoothquant":
        return {**algorithm, "alpha": alpha}
    return algorithm


@dataclass(frozen=True)
class SourceQuantization:
    """What an already quantized checkpoint's files say it is: qmo's precision for it (None:
    a format qmo cannot serve, such as gpt-oss's MXFP4) and how to name it in a message."""

    precision: str | None
    label: str


_MODELOPT_ALGOS = {algo: precision for precision, algos in PREQUANTIZED_ALGOS.items()
                   for algo in algos}  # fmt: skip


def source_quantization(
    config: dict[str, Any], hf_quant_config: dict[str, Any] | None
) -> SourceQuantization | None:
    """The quantization a source's files declare, or None for a full-precision source:
    ModelOpt's hf_quant_config.json, else `quantization_config` in config.json (ModelOpt's own
    there too, the fp8 / fbgemm_fp8 of DeepSeek, Qwen and Llama FP8 releases,
    compressed-tensors, AWQ, GPTQ, MXFP4)."""
    if hf_quant_config is not None:
        algo = str(hf_quant_config.get("quantization", hf_quant_config).get("quant_algo"))
        return SourceQuantization(_MODELOPT_ALGOS.get(algo), f"ModelOpt {algo}")
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method", "")).lower()
    bits = quant.get("bits")
    if method == "modelopt":
        algo = str(quant.get("quant_algo"))
        return SourceQuantization(_MODELOPT_ALGOS.get(algo), f"ModelOpt {algo}")
    if method in ("fp8", "fbgemm_fp8"):
        return SourceQuantization("fp8", f"{method} (FP8 weights)")
    if method == "awq" and bits == 4:
        return SourceQuantization("int4-awq", "AWQ, 4 bits")
    if method == "gptq" and bits == 4:
        return SourceQuantization("int4-gptq", "GPTQ, 4 bits")
    if method == "mxfp4":
        return SourceQuantization(None, "MXFP4 (as gpt-oss ships)")
    if method == "compressed-tensors":
        return _compressed_tensors(quant)
    return SourceQuantization(None, f"{method or 'unknown'} with {bits} bits")


def _compressed_tensors(quant: dict[str, Any]) -> SourceQuantization:
    weights = [
        group.get("weights") or {}
        for group in (quant.get("config_groups") or {}).values()
        if isinstance(group, dict)
    ]
    kinds = {(w.get("num_bits"), w.get("type")) for w in weights}
    if kinds == {(8, "float")}:
        return SourceQuantization("fp8", "compressed-tensors FP8")
    if kinds == {(4, "float")}:
        return SourceQuantization("nvfp4", "compressed-tensors NVFP4")
    return SourceQuantization(None, f"compressed-tensors {sorted(map(str, kinds))}")


def check_prequantized(
    recipe: Recipe, config: dict[str, Any], hf_quant_config: dict[str, Any] | None
) -> str | None:
    """Why an already quantized source does not match the request, or None if it does.

    ModelOpt checkpoints carry hf_quant_config.json; GPTQ checkpoints from other tools carry
    `quantization_config` with quant_method gptq in config.json.
    """
    wanted = PREQUANTIZED_ALGOS.get(recipe.precision, frozenset())
    if hf_quant_config is not None:
        section = hf_quant_config.get("quantization", hf_quant_config)
        algo = section.get("quant_algo")
        if algo not in wanted:
            return f"the source is quantized as {algo}, not {recipe.precision} ({sorted(wanted)})"
        kv = section.get("kv_cache_quant_algo")
        if kv != recipe.kv_cache_quant_algo:
            return (
                f"the source's KV cache is {kv or 'unquantized'}, the request asks for "
                f"{recipe.kv_cache_dtype}"
            )
        return None
    hf_quant = config.get("quantization_config")
    if recipe.precision == "int4-gptq" and isinstance(hf_quant, dict):
        if hf_quant.get("quant_method") != "gptq" or hf_quant.get("bits") != 4:
            return (
                f"int4-gptq needs a 4-bit GPTQ checkpoint; the source's quantization_config "
                f"is {hf_quant.get('quant_method')} with {hf_quant.get('bits')} bits"
            )
        if recipe.kv_cache_quant_algo is not None:
            return "a GPTQ source has no calibrated KV-cache scales: use kvCacheDtype bf16"
        return None
    if recipe.precision == "int4-gptq":
        return (
            "int4-gptq needs a source already quantized with GPTQ (quantization_config "
            "quant_method gptq): ModelOpt has no GPTQ export; choose int4-awq to quantize here"
        )
    found = source_quantization(config, None)
    if found is None:
        return "the source has no hf_quant_config.json: it is not a ModelOpt-quantized checkpoint"
    if found.precision is None:
        return f"the source is quantized as {found.label}, which qmo cannot serve yet"
    if found.precision != recipe.precision:
        return (
            f"the source is quantized as {found.label} ({found.precision}), not {recipe.precision}"
        )
    if recipe.kv_cache_quant_algo is not None:
        return (
            f"the source ({found.label}) has no calibrated KV-cache scales: use kvCacheDtype bf16"
        )
    return None
