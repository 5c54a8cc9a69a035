"""Invalid QuantizedModel specs and the message each must be rejected with.

Shared by the unit tests (pydantic models) and the cluster tests (the real API server), so
both layers are held to the same table. `local` is a substring of the pydantic error and
`server` of the API server's; for CEL rules they are the same text by construction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from qmo.api.quantizedmodel import QuantizedModelSpec


def valid_spec() -> dict[str, Any]:
    return {
        "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct", "revision": "abc123"},
        "precisions": ["fp8"],
    }


@dataclass(frozen=True)
class InvalidCase:
    id: str
    patch: dict[str, Any]
    local: str
    server: str


def _rule_message(fragment: str) -> str:
    """The full message of the Rule containing `fragment` (so a reworded rule fails loudly)."""
    for model in _models_with_rules():
        for rule in model.rules:
            if fragment in rule.message:
                return rule.message
    raise AssertionError(f"no rule message contains {fragment!r}")


def _models_with_rules() -> list[Any]:
    from qmo.api.schema import _api_models

    return [m for m in _api_models(QuantizedModelSpec) if m.rules]


INVALID_CASES = [
    InvalidCase(
        "unknown precision",
        {"precisions": ["fp4"]},
        local="'int4-gptq'",
        server='Unsupported value: "fp4"',
    ),
    InvalidCase(
        "duplicate precisions",
        {"precisions": ["fp8", "int8", "fp8"]},
        local=_rule_message("same precision twice"),
        server=_rule_message("same precision twice"),
    ),
    InvalidCase(
        "negative regression threshold",
        {"quality": {"maxRegressionPercent": -1}},
        local="greater than or equal to 0",
        server="should be greater than or equal to 0",
    ),
    InvalidCase(
        "source URI with an unknown scheme",
        {"model": {"source": "http://example.com/model"}},
        local=_rule_message("model.source must be"),
        server=_rule_message("model.source must be"),
    ),
    InvalidCase(
        "auto mixed with fp8",
        {"precisions": ["auto", "fp8"]},
        local=_rule_message("auto cannot be combined with explicit"),
        server=_rule_message("auto cannot be combined with explicit"),
    ),
    InvalidCase(
        "int4 KV cache",
        {"kvCacheDtype": "int4"},
        local=_rule_message("no INT4 KV cache"),
        server=_rule_message("no INT4 KV cache"),
    ),
    InvalidCase(
        "int8 on the pytorch backend",
        {"precisions": ["int8"], "engine": {"backend": "pytorch"}},
        local=_rule_message("SmoothQuant kernels"),
        server=_rule_message("SmoothQuant kernels"),
    ),
    InvalidCase(
        "tensor parallel 3",
        {"gpu": {"tensorParallel": 3}},
        local="'auto', 1, 2, 4 or 8",
        server="Unsupported value: 3",
    ),
    InvalidCase(
        "auto GPU class mixed with a named class",
        {"gpu": {"classes": ["auto", "h100"]}},
        local=_rule_message("gpu.classes: auto"),
        server=_rule_message("gpu.classes: auto"),
    ),
    InvalidCase(
        "serving default not among the precisions",
        {"precisions": ["fp8"], "serving": {"default": "int4-awq"}},
        local=_rule_message("serving.default must be"),
        server=_rule_message("serving.default must be"),
    ),
    InvalidCase(
        "a negative engine store size",
        {"engine": {"store": {"create": True, "size": "-1Gi"}}},
        local=_rule_message("store.size must be above zero"),
        server=_rule_message("store.size must be above zero"),
    ),
    InvalidCase(
        "a bucket on a store of type pvc",
        {"engine": {"store": {"type": "pvc", "s3": {"bucket": "models"}}}},
        local=_rule_message("engine.store.s3 is set but engine.store.type is pvc"),
        server=_rule_message("engine.store.s3 is set but engine.store.type is pvc"),
    ),
    InvalidCase(
        "a build scratch volume of no size",
        {"engine": {"build": {"scratch": {"size": "0"}}}},
        local=_rule_message("engine.build.scratch.size must be above zero"),
        server=_rule_message("engine.build.scratch.size must be above zero"),
    ),
    InvalidCase(
        "S3 access for a source that is not on S3",
        {"model": {"source": "hf://org/model", "s3": {"endpoint": "http://minio.lab:9000"}}},
        local=_rule_message("model.s3 says how to reach an s3:// source"),
        server=_rule_message("model.s3 says how to reach an s3:// source"),
    ),
    InvalidCase(
        "a bucket name S3 would refuse",
        {"engine": {"store": {"type": "s3", "s3": {"bucket": "Models_Bucket"}}}},
        local="String should match pattern",
        server="should match",
    ),
    InvalidCase(
        "an engine store of zero bytes",
        {"engine": {"store": {"create": True, "size": "0"}}},
        local=_rule_message("store.size must be above zero"),
        server=_rule_message("store.size must be above zero"),
    ),
    InvalidCase(
        "a negative memory request",
        {"serving": {"resources": {"requests": {"memory": "-1Gi"}}}},
        local=_rule_message("request may not be negative"),
        server=_rule_message("request may not be negative"),
    ),
    InvalidCase(
        "a negative cpu limit of the build",
        {"engine": {"build": {"resources": {"limits": {"cpu": "-500m"}}}}},
        local=_rule_message("limit may not be negative"),
        server=_rule_message("limit may not be negative"),
    ),
    InvalidCase(
        "the Host header as the routing header",
        {"routing": {"parentRefs": [{"name": "inference"}], "header": "Host"}},
        local=_rule_message("routing.header must be"),
        server=_rule_message("routing.header must be"),
    ),
    InvalidCase(
        "X-Forwarded-Host as the routing header",
        {"routing": {"parentRefs": [{"name": "inference"}], "header": "X-Forwarded-Host"}},
        local=_rule_message("routing.header must be"),
        server=_rule_message("routing.header must be"),
    ),
    InvalidCase(
        "x-forwarded-for in lower case as the routing header",
        {"routing": {"parentRefs": [{"name": "inference"}], "header": "x-forwarded-for"}},
        local=_rule_message("routing.header must be"),
        server=_rule_message("routing.header must be"),
    ),
    InvalidCase(
        "an Envoy header as the routing header",
        {"routing": {"parentRefs": [{"name": "inference"}], "header": "X-Envoy-Original-Path"}},
        local=_rule_message("routing.header must be"),
        server=_rule_message("routing.header must be"),
    ),
    InvalidCase(
        "a hop-by-hop header as the routing header",
        {"routing": {"parentRefs": [{"name": "inference"}], "header": "Connection"}},
        local=_rule_message("routing.header must be"),
        server=_rule_message("routing.header must be"),
    ),
    InvalidCase(
        "a bare X- as the routing header",
        {"routing": {"parentRefs": [{"name": "inference"}], "header": "X-"}},
        local=_rule_message("routing.header must be"),
        server=_rule_message("routing.header must be"),
    ),
    InvalidCase(
        "a judged benchmark without a judge",
        {"quality": {"benchmarks": [{"name": "mt-bench", "metric": "judged"}]}},
        local=_rule_message("judged benchmark needs a judge"),
        server=_rule_message("judged benchmark needs a judge"),
    ),
    InvalidCase(
        "a judge on a benchmark that is not judged",
        {"quality": {"benchmarks": [{"name": "gsm8k", "judge": {"url": "http://judge"}}]}},
        local=_rule_message("judged benchmark needs a judge"),
        server=_rule_message("judged benchmark needs a judge"),
    ),
    InvalidCase(
        "a confidence of 1",
        {"quality": {"confidence": 1}},
        local="less than or equal to 0.999",
        # kube-apiserver 1.36 prints this fractional maximum as 0 in its message.
        server="spec.quality.confidence in body should be less than or equal to",
    ),
    InvalidCase(
        "a pseudo-header as the routing header",
        {"routing": {"parentRefs": [{"name": "inference"}], "header": ":authority"}},
        local="String should match pattern",
        server="should match",
    ),
]


def invalid_spec(case: InvalidCase) -> dict[str, Any]:
    spec = valid_spec()
    for key, value in case.patch.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **copy.deepcopy(value)}
        else:
            spec[key] = copy.deepcopy(value)
    return spec
