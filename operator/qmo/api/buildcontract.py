"""The contract between the operator and the build Jobs it creates.

The operator (planner + manifests) writes a `BuildRequest` as JSON into the build container's
environment variable `QMO_BUILD_SPEC`; `qmo-builder build` (module `qmo.builder`, run inside the
TensorRT-LLM image) reads it, produces the artifact under `outputDir` on the engine store, writes
`qmo-artifact.json` next to it and a short `BuildResult` JSON as the container's termination
message, which the operator reads from the Job's pod. Neither side imports the other's code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from qmo.api.base import StatusModel
from qmo.api.quantizedmodel import EngineBackend, ModelDtype, ModelFormat, QuantizationSpec
from qmo.vocabulary import BuildState

BUILD_SPEC_ENV = "QMO_BUILD_SPEC"
STORE_MOUNT_PATH = "/store"
ARTIFACT_MANIFEST = "qmo-artifact.json"
# Inside an artifact directory: the (quantized) Hugging Face checkpoint the PyTorch backend
# serves and that holds the tokenizer, and for the tensorrt backend the engine built from it.
CHECKPOINT_SUBDIR = "checkpoint"
ENGINE_SUBDIR = "engine"
ARTIFACTS_DIR = f"{STORE_MOUNT_PATH}/artifacts"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096

BuiltPrecision = Literal["bf16", "fp8", "int8", "int4-awq", "int4-gptq", "nvfp4"]
BuiltKvCacheDtype = Literal["bf16", "fp8", "int8", "nvfp4"]


class ExitCode:
    """Exit codes of `qmo-builder build`; the operator maps them to build states."""

    OK = 0
    FAILED = 1  # retriable: the Job's backoffLimit applies
    INVALID_SPEC = 2  # permanent: the request itself is wrong
    GPU_MISMATCH = 3  # permanent: scheduled on a GPU the build is not for


class BuildModel(StatusModel):
    """Tolerant base: either side may be a newer version with extra fields."""


class ExpectedGpu(BuildModel):
    """The GPU class the build is for; the builder refuses to run on anything else."""

    product: str = Field(
        description="nvidia.com/gpu.product of the class, e.g. NVIDIA-H100-80GB-HBM3."
    )
    compute_capability: str = Field(description="Compute capability, e.g. '9.0'.")


class BuildLimits(BuildModel):
    """Engine build limits (the TensorRT backend bakes them into the engine)."""

    max_batch_size: int = Field(ge=1)
    max_seq_len: int = Field(ge=1)
    max_num_tokens: int | None = Field(default=None, ge=1)


class SourceRef(BuildModel):
    """Where the checkpoint is, as the builder sees it inside the pod."""

    uri: str = Field(description="hf://ORG/NAME, s3://BUCKET/PATH, or a local path (pvc mounted).")
    revision: str | None = None
    format: ModelFormat = ModelFormat.HF
    dtype: ModelDtype = ModelDtype.BF16
    token_env: str | None = Field(
        default=None, description="Name of the env var holding the hub token (value never logged)."
    )


class BuildRequest(BuildModel):
    """Everything one build needs; its content (minus outputDir) is what the cache key hashes."""

    cache_key: str = Field(min_length=8)
    source: SourceRef
    precision: BuiltPrecision
    kv_cache_dtype: BuiltKvCacheDtype
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)
    backend: EngineBackend = EngineBackend.TENSORRT
    tensor_parallel: int = Field(default=1, ge=1)
    limits: BuildLimits
    gpu: ExpectedGpu
    # The class the artifact serves on, where it is not the one it is built on: a checkpoint
    # for the PyTorch backend is not tied to an architecture (an engine is). Part of the
    # request, so of the cache key: what was built where is on record.
    serve_on: ExpectedGpu | None = None
    output_dir: str = Field(
        description="Final artifact directory, e.g. /store/artifacts/<key>, or its s3:// URI."
    )
    # Not part of the cache key: where a finished artifact of the same content is (on the
    # model's claim, mounted at /store), copied instead of built when the store moves to a
    # bucket (qmo.planner.migration).
    copy_from: str | None = None


# A builder's own result is one of these; the other build states are the cluster's to tell.
FINISHED = (BuildState.SUCCEEDED, BuildState.FAILED)


class BuildResult(BuildModel):
    """The termination message of a build container (kept under 4096 bytes)."""

    @field_validator("state")
    @classmethod
    def _finished(cls, state: BuildState) -> BuildState:
        if state not in FINISHED:
            raise ValueError(f"a build result is {' or '.join(FINISHED)}, not {state}")
        return state

    cache_key: str
    state: BuildState
    artifact_path: str | None = None
    reason: str | None = Field(default=None, description="CamelCase, e.g. GpuMismatch.")
    message: str | None = Field(default=None, max_length=2048)
