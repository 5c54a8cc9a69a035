"""The TensorRT engine backend (TensorRT-LLM up to 1.2): command lines and running them.

The flow is ModelOpt quantization in process, `export_tensorrt_llm_checkpoint` into a scratch
directory (qmo.builder.quantize), then `trtllm-build` with the planner's limits on the GPU the
Job runs on (engines are specific to the GPU model, TensorRT version and TP size). An
already-GPTQ'd Hugging Face source is converted with TensorRT-LLM's own convert_checkpoint.py
instead. The command lines are pure functions; `run` executes one and keeps the tail of its
output for the error message. Called by qmo.builder.pipeline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from qmo.api.buildcontract import BuildLimits
from qmo.builder.errors import EngineBuildFailed
from qmo.builder.recipes import Recipe

TRTLLM_BUILD = "trtllm-build"
# Where the TensorRT-LLM release images keep the examples (convert_checkpoint.py).
DEFAULT_EXAMPLES_DIR = "/app/tensorrt_llm/examples"
EXAMPLES_DIR_ENV = "QMO_TRTLLM_EXAMPLES"
# model_type in config.json -> TensorRT-LLM example directory (1.x layout).
CONVERT_SCRIPT_DIRS = {
    "llama": "models/core/llama",
    "mistral": "models/core/llama",
    "qwen2": "models/core/qwen",
    "qwen3": "models/core/qwen",
}
OUTPUT_TAIL_LINES = 40


def trtllm_build_command(
    checkpoint_dir: Path,
    engine_dir: Path,
    limits: BuildLimits,
    recipe: Recipe,
    tensor_parallel: int,
) -> list[str]:
    """PURE: the trtllm-build command line for one engine."""
    argv = [
        TRTLLM_BUILD,
        "--checkpoint_dir",
        str(checkpoint_dir),
        "--output_dir",
        str(engine_dir),
        "--max_batch_size",
        str(limits.max_batch_size),
        "--max_seq_len",
        str(limits.max_seq_len),
        # trtllm-build's default max_input_len (1024) would cap prompts far below maxSeqLen.
        "--max_input_len",
        str(limits.max_seq_len),
    ]
    if limits.max_num_tokens is not None:
        argv += ["--max_num_tokens", str(limits.max_num_tokens)]
    # NVIDIA's FP8 tuning guide: leave the GEMM plugin off for FP8 (TensorRT picks FP8 GEMMs).
    if recipe.quant_algo not in ("FP8", "W4A8_AWQ"):
        argv += ["--gemm_plugin", "auto"]
    if tensor_parallel > 1:
        argv += ["--workers", str(tensor_parallel)]
    return argv


def gptq_convert_command(
    examples_dir: Path,
    model_type: str,
    source_dir: Path,
    checkpoint_dir: Path,
    *,
    dtype: str,
    group_size: int,
    tensor_parallel: int,
) -> list[str]:
    """PURE: convert an AutoGPTQ Hugging Face checkpoint to a TensorRT-LLM checkpoint."""
    subdir = CONVERT_SCRIPT_DIRS.get(model_type)
    if subdir is None:
        raise EngineBuildFailed(
            f"no TensorRT-LLM GPTQ conversion is known for model_type {model_type!r} "
            f"(known: {', '.join(sorted(CONVERT_SCRIPT_DIRS))})",
            reason="UnsupportedModel",
        )
    return [
        "python3",
        str(examples_dir / subdir / "convert_checkpoint.py"),
        "--model_dir",
        str(source_dir),
        "--output_dir",
        str(checkpoint_dir),
        "--dtype",
        {"bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype),
        "--use_weight_only",
        "--weight_only_precision",
        "int4_gptq",
        "--per_group",
        "--group_size",
        str(group_size),
        "--tp_size",
        str(tensor_parallel),
    ]


def examples_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get(EXAMPLES_DIR_ENV, DEFAULT_EXAMPLES_DIR))


def require_trtllm_build() -> None:
    if shutil.which(TRTLLM_BUILD) is None:
        raise EngineBuildFailed(
            f"{TRTLLM_BUILD} is not on PATH: the tensorrt backend runs in a TensorRT-LLM "
            "release image up to 1.2 (later releases removed the engine backend)",
            reason="EngineToolMissing",
        )


def run(argv: Sequence[str], log: Callable[[str], None], *, cwd: Path | None = None) -> None:
    """Run one command, streaming its output to log; EngineBuildFailed on a non-zero exit."""
    log(f"running {' '.join(argv[:2])} ...")
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ.copy(),
        )
    except OSError as err:
        raise EngineBuildFailed(f"cannot start {argv[0]}: {err.strerror}") from err
    assert process.stdout is not None
    for line in process.stdout:
        tail.append(line.rstrip())
        log(line.rstrip())
    code = process.wait()
    if code != 0:
        last = " | ".join(list(tail)[-5:])
        raise EngineBuildFailed(f"{Path(argv[0]).name} exited with {code}: {last}")
