"""Reads a ModelOpt unified Hugging Face checkpoint back from disk, in plain PyTorch.

TensorRT-LLM cannot be installed on the GPU test machine, so this reader plays its part: it
dequantizes the stored weights (FP8 per-tensor, INT8 per-channel, packed INT4 per-group) into
a plain transformers Llama and re-applies, with forward hooks, what the serving kernels do
to activations: the AWQ/SmoothQuant `pre_quant_scale`, FP8 or INT8 quantization of linear
inputs with the stored `input_scale`, and FP8 quantization of keys and values with the stored
`k_scale`/`v_scale` (applied at the k/v projection outputs, before RoPE for keys: a close
approximation of quantizing the cache). The formats follow ModelOpt 0.47's exporter
(`modelopt/torch/export/quant_utils.py`); the benchmark checks the reader against the
in-memory ModelOpt model, so a misread format shows up as disagreement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FP8_MAX = 448.0


def load(checkpoint: Path, device: str) -> Any:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config_data = json.loads((checkpoint / "config.json").read_text())
    config_data.pop("quantization_config", None)
    model_type = config_data.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_data)
    quant = {}
    if (checkpoint / "hf_quant_config.json").is_file():
        quant = json.loads((checkpoint / "hf_quant_config.json").read_text())["quantization"]
    algo = quant.get("quant_algo")
    group = int(quant.get("group_size") or 128)

    tensors: dict[str, Any] = {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        tensors.update(load_file(str(shard), device=device))

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.eval()
    plain: dict[str, Any] = {}
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for name, module in linears.items():
        weight = tensors.pop(f"{name}.weight")
        scale = tensors.pop(f"{name}.weight_scale", None)
        tensors.pop(f"{name}.weight_scale_2", None)
        module.weight.data = _dequantize(weight, scale, group).to(torch.bfloat16)
        _install_input_hook(
            module,
            pre_quant_scale=tensors.pop(f"{name}.pre_quant_scale", None),
            input_scale=tensors.pop(f"{name}.input_scale", None),
            algo=algo,
        )
        for cache in ("k_scale", "v_scale"):
            kv_scale = tensors.pop(f"{name}.{cache}", None)
            if kv_scale is not None:
                module.register_forward_hook(_fp8_output_hook(kv_scale))
    plain.update(tensors)
    missing, unexpected = model.load_state_dict(plain, strict=False)
    missing = [m for m in missing if not any(m == f"{n}.weight" for n in linears)]
    if missing or unexpected:
        raise ValueError(f"checkpoint mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _dequantize(weight: Any, scale: Any, group: int) -> Any:
    import torch

    if weight.dtype == torch.float8_e4m3fn:
        return weight.float() * scale.float()
    if weight.dtype == torch.int8:
        return weight.float() * scale.float()[:, None]
    if weight.dtype == torch.uint8:  # two signed INT4 per byte, packed along the output dim
        values = _unpack_int4(weight).float()
        columns = torch.arange(values.shape[1], device=values.device) // group
        return values * scale.float()[:, columns]
    return weight


def _unpack_int4(packed: Any) -> Any:
    import torch

    low = (packed & 0x0F).to(torch.int8)
    high = (packed >> 4).to(torch.int8)
    low = torch.where(low >= 8, low - 16, low)
    high = torch.where(high >= 8, high - 16, high)
    # packed[o, i] holds rows 2o (low nibble) and 2o+1 (high nibble) of column i
    out_half, in_dim = packed.shape
    return torch.stack((low, high), dim=1).reshape(out_half * 2, in_dim)


def _fp8_qdq(x: Any, scale: Any) -> Any:
    import torch

    scaled = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX)
    return (scaled.to(torch.float8_e4m3fn).float() * scale).to(x.dtype)


def _int8_qdq(x: Any, scale: Any) -> Any:
    return ((x.float() / scale).round().clamp(-128, 127) * scale).to(x.dtype)


def _install_input_hook(
    module: Any, *, pre_quant_scale: Any, input_scale: Any, algo: str | None
) -> None:
    if pre_quant_scale is None and input_scale is None:
        return
    quantize = None
    if input_scale is not None:
        quantize = _int8_qdq if algo and algo.startswith("W8A8") else _fp8_qdq
    scale = input_scale.float() if input_scale is not None else None

    def hook(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        if pre_quant_scale is not None:
            x = x * pre_quant_scale.to(x.dtype)
        if quantize is not None:
            x = quantize(x, scale)
        return (x, *args[1:])

    module.register_forward_pre_hook(hook)


def _fp8_output_hook(scale: Any) -> Any:
    def hook(_module: Any, _args: Any, output: Any) -> Any:
        return _fp8_qdq(output, scale.float())

    return hook
