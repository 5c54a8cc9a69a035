"""ModelOpt quantization and export: the only module here that touches torch and ModelOpt.

Every torch / transformers / modelopt import is inside a function, so importing this module
costs nothing where those are absent (the operator, CI). Called by qmo.builder.pipeline and
by the GPU benchmark e2e/gpu/builder_h100.py.

transformers 5 note: `PreTrainedModel.save_pretrained` writes `config.dtype` back as a string
("bfloat16") on the live config object, and ModelOpt 0.47's export takes `config.dtype` as
the export dtype when none is given, then calls `tensor.to("bfloat16")`, which torch reads as
a device: "Invalid device string: 'bfloat16'". It bites any export after a save of a model
sharing that config. `export_hf` therefore passes the dtype explicitly and restores a torch
dtype on the config first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qmo.api.quantizedmodel import QuantizationSpec
from qmo.builder.recipes import (
    INT8_KV_INLINE,
    Recipe,
    compose_config,
    config_is_list_form,
    int8_kv_config,
    kv_only_base,
)

HF_QUANT_CONFIG = "hf_quant_config.json"
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "bfloat16": "bfloat16", "float16": "float16"}


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, DTYPES.get(name, name))


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def reset_peak_memory() -> None:
    import torch

    # Before CUDA is initialised nothing is allocated, and resetting raises "Invalid device
    # argument" (seen in a fresh qmo-builder process on an H100).
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(index)


def peak_memory_bytes() -> int | None:
    """Peak GPU memory allocated by this process since the last reset, over all GPUs."""
    import torch

    if not torch.cuda.is_available():
        return None
    return sum(int(torch.cuda.max_memory_allocated(i)) for i in range(torch.cuda.device_count()))


def precompile_extensions() -> None:
    """Build ModelOpt's CUDA extensions now (about a minute each) instead of in the first build.

    A builder image runs this once at image build time on a GPU machine.
    """
    from modelopt.torch.quantization import extensions

    extensions.get_cuda_ext(raise_if_failed=True)
    extensions.get_cuda_ext_fp8(raise_if_failed=True)


def release_gpu_memory() -> None:
    """Return cached GPU memory to the driver, for a process that runs next (trtllm-build)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cuda_version() -> str | None:
    import torch

    version = torch.version.cuda
    return str(version) if version else None


def load_model(path: Path, dtype: str) -> Any:
    """The checkpoint as a causal LM on the visible GPUs (spread over several if needed)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=torch_dtype(dtype),
        device_map="auto" if torch.cuda.is_available() else None,
        low_cpu_mem_usage=True,
    )
    model.eval()
    if not getattr(model.config, "architectures", None):
        # ModelOpt's export reads the architecture from the config.
        model.config.architectures = [type(model).__name__]
    return model


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def modelopt_config(recipe: Recipe, quantization: QuantizationSpec) -> dict[str, Any]:
    """The ModelOpt config for a recipe, in the shape the installed ModelOpt expects."""
    import modelopt.torch.quantization as mtq

    list_form = config_is_list_form(mtq.FP8_DEFAULT_CFG)
    base = getattr(mtq, recipe.modelopt_config) if recipe.modelopt_config else None
    if base is None:
        base = kv_only_base(list_form)
    kv: dict[str, Any] | None = None
    if recipe.kv_config == INT8_KV_INLINE:
        kv = int8_kv_config(list_form)
    elif recipe.kv_config is not None:
        kv = getattr(mtq, recipe.kv_config)
    return compose_config(base, kv, quantization)


def calibration_batches(
    tokenizer: Any, texts: Sequence[str], *, max_length: int, batch_size: int
) -> list[dict[str, Any]]:
    """Tokenized, padded batches (kept on the CPU until the forward loop moves them)."""
    batches = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(
            list(texts[start : start + batch_size]),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        batches.append(
            {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        )
    return batches


def forward_loop(batches: Sequence[dict[str, Any]]) -> Callable[[Any], None]:
    def run(model: Any) -> None:
        import torch

        device = _input_device(model)
        with torch.no_grad():
            for batch in batches:
                model(**{k: v.to(device) for k, v in batch.items()})

    return run


def quantize(model: Any, config: dict[str, Any], batches: Sequence[dict[str, Any]]) -> Any:
    import modelopt.torch.quantization as mtq

    return mtq.quantize(model, config, forward_loop(batches))


def export_hf(model: Any, out_dir: Path, dtype: str) -> dict[str, Any] | None:
    """Export a unified Hugging Face checkpoint; returns its hf_quant_config.json, if any."""
    from modelopt.torch.export import export_hf_checkpoint

    target = torch_dtype(dtype)
    _restore_config_dtype(model, target)
    export_hf_checkpoint(model, dtype=target, export_dir=str(out_dir))
    path = out_dir / HF_QUANT_CONFIG
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def export_trtllm(model: Any, out_dir: Path, dtype: str, tensor_parallel: int) -> None:
    """Export the legacy TensorRT-LLM checkpoint that trtllm-build reads."""
    from modelopt.torch.export import export_tensorrt_llm_checkpoint
    from modelopt.torch.export.model_utils import get_model_type

    target = torch_dtype(dtype)
    _restore_config_dtype(model, target)
    decoder_type = get_model_type(model)
    if decoder_type is None:
        raise ValueError(f"ModelOpt cannot export {type(model).__name__} for TensorRT-LLM")
    export_tensorrt_llm_checkpoint(
        model,
        decoder_type=decoder_type,
        dtype=target,
        export_dir=str(out_dir),
        inference_tensor_parallel=tensor_parallel,
    )


def _restore_config_dtype(model: Any, target: Any) -> None:
    config = getattr(model, "config", None)
    if config is not None and isinstance(getattr(config, "dtype", None), str):
        config.dtype = target


def _input_device(model: Any) -> Any:
    device = getattr(model, "device", None)
    if device is not None:
        return device
    return next(model.parameters()).device
