"""Fluent builders of BuildRequests and fake checkpoints for the qmo-builder tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qmo.api.buildcontract import BuildRequest
from qmo.builder.gpucheck import SeenGpu

H100 = SeenGpu("NVIDIA H100 80GB HBM3", "9.0", 81559, "580.159.04")
A100 = SeenGpu("NVIDIA A100-SXM4-80GB", "8.0", 81920, "580.159.04")
B200 = SeenGpu("NVIDIA B200", "10.0", 183359, "580.159.04")


class RequestBuilder:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {
            "cacheKey": "0123456789abcdef",
            "source": {"uri": "hf://org/model", "revision": "abc123"},
            "precision": "fp8",
            "kvCacheDtype": "fp8",
            "backend": "pytorch",
            "tensorParallel": 1,
            "limits": {"maxBatchSize": 64, "maxSeqLen": 8192},
            "gpu": {"product": "NVIDIA-H100-80GB-HBM3", "computeCapability": "9.0"},
            "outputDir": "/store/artifacts/0123456789abcdef",
        }

    def precision(self, precision: str, kv: str = "bf16") -> RequestBuilder:
        self.data["precision"], self.data["kvCacheDtype"] = precision, kv
        return self

    def backend(self, backend: str) -> RequestBuilder:
        self.data["backend"] = backend
        return self

    def on(self, product: str, capability: str) -> RequestBuilder:
        self.data["gpu"] = {"product": product, "computeCapability": capability}
        return self

    def tensor_parallel(self, size: int) -> RequestBuilder:
        self.data["tensorParallel"] = size
        return self

    def source(self, uri: str, fmt: str = "hf") -> RequestBuilder:
        self.data["source"] = {"uri": uri, "format": fmt}
        return self

    def calibration(self, dataset: str, samples: int = 4) -> RequestBuilder:
        self.data.setdefault("quantization", {})["calibration"] = {
            "dataset": dataset,
            "samples": samples,
            "maxSeqLength": 64,
        }
        return self

    def output(self, path: Path | str) -> RequestBuilder:
        self.data["outputDir"] = str(path)
        return self

    def json(self) -> str:
        return json.dumps(self.data)

    def build(self) -> BuildRequest:
        return BuildRequest.model_validate(self.data)


def a_request() -> RequestBuilder:
    return RequestBuilder()


def a_checkpoint(
    path: Path,
    *,
    shards: int = 1,
    missing_shard: bool = False,
    hf_quant_config: dict[str, Any] | None = None,
    config_extra: dict[str, Any] | None = None,
) -> Path:
    """A checkpoint directory with the files a build looks at (weights are dummy bytes)."""
    path.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], **(config_extra or {})}
    (path / "config.json").write_text(json.dumps(config))
    (path / "tokenizer.json").write_text("{}")
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    if shards == 1:
        names = ["model.safetensors"]
    else:
        weight_map = {f"layer.{i}.weight": name for i, name in enumerate(names)}
        (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    for index, name in enumerate(names):
        if missing_shard and index == len(names) - 1:
            continue
        (path / name).write_bytes(b"weights-" + name.encode())
    if hf_quant_config is not None:
        (path / "hf_quant_config.json").write_text(json.dumps(hf_quant_config))
    return path
