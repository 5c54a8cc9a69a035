"""hypothesis strategies for QuantizedModel specs and QualityReports, valid and not.

A spec starts from a valid one and gets up to four mutations, each replacing one field with a
value from a catalogue of valid and invalid values of that field (wrong patterns, out of
range, wrong types, unknown enums, unknown fields, cross-field conflicts). Near-valid specs
reach every validation rule, which random JSON would not.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

Obj = dict[str, Any]
DELETE = object()  # a mutation that removes the field

BASE: Obj = {
    "model": {"source": "hf://org/model", "revision": "v1"},
    "precisions": ["fp8"],
}

CATALOGUE: dict[tuple[str, ...], list[Any]] = {
    ("model", "source"): ["hf://org/model", "s3://bucket/path/model", "pvc://checkpoints/llama",
                          "http://example.com/x", "", "hf://", "pvc://Bad_Claim/x", 42],
    ("model", "revision"): ["v1", DELETE, "", "x" * 300, "0e9e39f249a16976918f6564b8830bc8"],
    ("model", "credentialsSecretRef"): [{"name": "hf-token"}, {"name": "hf-token", "key": "TOKEN"},
                                        {"name": "Bad Name"}, {"name": "t", "key": "bad key"},
                                        {"key": "only-a-key"}],
    ("model", "format"): ["hf", "modelopt-prequantized", "onnx"],
    ("model", "dtype"): ["bfloat16", "float16", "int3"],
    ("model", "size"): [
        {"parametersBillions": 8.03, "numLayers": 32, "numKeyValueHeads": 8, "headDim": 128},
        {"parametersBillions": -1, "numLayers": 32, "numKeyValueHeads": 8, "headDim": 128},
        {"parametersBillions": 8.03},
    ],
    ("precisions",): [["auto"], ["fp8", "bf16"], ["fp8", "fp8"], ["auto", "fp8"], ["int4"], [],
                      ["int8"], ["int4-awq", "int4-gptq", "bf16"], "fp8"],
    ("kvCacheDtype",): ["auto", "fp8", "int8", "int4", "nvfp4", "bogus"],
    ("gpu", "classes"): [["auto"], ["h100"], ["h100", "h100"], ["auto", "h100"], ["H100"],
                         ["a" * 70], ["a100-80gb", "l40s"]],
    ("gpu", "tensorParallel"): ["auto", 1, 2, 3, "2", 16],
    ("quantization", "calibration", "samples"): [512, 0, -1, 10**9, "512"],
    ("quantization", "awqBlockSize"): [64, 128, 96],
    ("quantization", "smoothquantAlpha"): [0.5, 2.0, -0.1],
    ("engine", "backend"): ["tensorrt", "pytorch", "onnx"],
    ("engine", "image"): ["nvcr.io/nvidia/tensorrt-llm/release:1.2.0", "has space", ""],
    ("engine", "builderImage"): ["ghcr.io/qmo-dev/qmo-builder:0.1.0", "bad image", None],
    ("engine", "maxBatchSize"): [64, 0, 5000, 1.5],
    ("engine", "maxSeqLen"): [8192, 100, 2000000],
    ("engine", "store", "claimName"): ["qmo-engines", "Bad_Name", "a.b-c", "x" * 260],
    ("engine", "store", "size"): ["500Gi", "lots", "1e3", "1.5Ti", ".5Gi", "5GB", "10", "-1Gi"],
    ("engine", "store", "storageClassName"): ["fast-rwx", "Not Valid"],
    ("engine", "store", "create"): [True, False, "yes"],
    ("engine", "build", "gpus"): ["auto", 1, 3],
    ("engine", "build", "resources", "requests"): [
        {"cpu": "2"}, {"cpu": "lots"}, {"gpuish": "1"}, {"example.com/x": "1"},
        {"hugepages-2Mi": "1Gi"}, {"memory": "64Gi", "ephemeral-storage": "100Gi"},
    ],
    ("engine", "build", "scratch"): [
        {"size": "500Gi"}, {"size": "1Ti", "storageClassName": "local-nvme"}, {"size": "0"},
        {"size": "lots"}, {"storageClassName": "local-nvme"},
    ],
    ("model", "s3"): [
        {"endpoint": "http://minio.lab:9000", "pathStyle": True},
        {"credentialsSecretName": "lab-keys", "caBundle": {"name": "lab-ca", "key": "ca.crt"}},
        {"endpoint": "minio.lab:9000"},
    ],
    ("serving", "replicas"): [1, -1, 2000, 0, "2"],
    ("serving", "autoscaling"): [
        {"maxReplicas": 4}, {"minReplicas": 0, "maxReplicas": 4},
        {"minReplicas": 5, "maxReplicas": 4}, {"maxReplicas": 4, "metric": "kvCacheUtilization"},
        {"maxReplicas": 4, "metric": "kvCacheUtilization", "target": 0.8},
        {"maxReplicas": 2, "target": 0}, {"maxReplicas": 2, "engine": "keda",
                                         "prometheusAddress": "http://prom:9090"},
        {"maxReplicas": 2, "prometheusAddress": "prom:9090"}, {"minReplicas": 2},
    ],
    ("serving", "default"): ["auto", "fp8", "bf16", "bogus"],
    ("serving", "port"): [8000, 0, 70000],
    ("serving", "resources", "limits"): [{"memory": "96Gi"}, {"memory": "lots"}, {"": "1"}],
    ("serving", "tolerations"): [
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        [{"key": "bad key!", "operator": "Exists"}],
        [{"operator": "Bogus"}],
        [{"key": "pool", "operator": "Equal", "value": "has space"}],
    ],
    ("serving", "nodeSelector"): [{"pool": "gpu"}, {"pool": "has space"}, {"bad key!": "x"},
                                  {"a/b/c": "x"}, {"example.com/pool": "a.b_c-d"}],
    ("serving", "startupTimeoutSeconds"): [1800, 10],
    ("quality", "gate"): ["after-rollout", "before-traffic", "off", "bogus"],
    ("quality", "maxRegressionPercent"): [1.5, -1, 101, 0],
    ("quality", "onRegression"): ["rollback", "fallback", "ignore", "bogus"],
    ("quality", "benchmarks"): [
        [{"name": "gsm8k"}],
        [{"name": "Bad Name"}],
        [{"name": "a"}, {"name": "a"}],
        [{"name": "x", "dataset": {"configMap": {"name": "c", "key": "k"}, "path": "p"}}],
        [{"name": "x", "dataset": {"path": "benchmarks/x.jsonl"}, "samples": 100}],
    ],
    ("quality", "evaluatorImage"): ["ghcr.io/qmo-dev/qmo-builder:0.1.0", "evil image"],
    ("bogusField",): [1],
    ("engine", "bogusField"): ["x"],
}  # fmt: skip
PATHS = sorted(CATALOGUE)


def _set(spec: Obj, path: tuple[str, ...], value: Any) -> None:
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = copy.deepcopy(value)


@st.composite
def quantized_model_specs(draw: st.DrawFn) -> Obj:
    spec = copy.deepcopy(BASE)
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=4, unique=True)):
        _set(spec, path, draw(st.sampled_from(CATALOGUE[path])))
    return spec


def quantized_model(name: str, namespace: str, spec: Obj) -> Obj:
    return {
        "apiVersion": "qmo.dev/v1alpha1",
        "kind": "QuantizedModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


SCORES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1.7e308, -1.7e308, 0.5, 0.8, 10.0, 100.0]),
)


TOKENS_PER_SECOND = st.one_of(
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 5e-324, 1e-10, 400.0, 1e300, 1.7e308]),
)


def speed_samples(draw: st.DrawFn) -> list[Obj]:
    return [
        {
            "concurrency": concurrency,
            "requests": 32,
            "ttftP50Seconds": 0.05,
            "ttftP95Seconds": 0.09,
            "itlP50Seconds": 0.01,
            "itlP95Seconds": 0.02,
            "outputTokensPerSecond": draw(TOKENS_PER_SECOND),
        }
        for concurrency in draw(st.lists(st.sampled_from([1, 8]), min_size=1, unique=True))
    ]


@st.composite
def quality_report_specs(draw: st.DrawFn) -> Obj:
    names = draw(st.lists(st.sampled_from(["gsm8k", "mmlu", "wiki"]), min_size=1, unique=True))
    speed = (
        {"candidate": speed_samples(draw), "baseline": speed_samples(draw)}
        if draw(st.booleans())
        else None
    )
    return {
        "modelRef": {"name": "m"},
        "variant": "h100-fp8",
        "cacheKey": "k" * 64,
        "results": [
            {
                "benchmark": name,
                "baselineScore": draw(SCORES),
                "candidateScore": draw(SCORES),
                "higherIsBetter": draw(st.booleans()),
            }
            for name in names
        ],
        **({"speed": speed} if speed else {}),
    }
