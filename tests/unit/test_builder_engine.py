"""The TensorRT engine backend's command lines carry the planner's limits, and failures show."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qmo.api.buildcontract import BuildLimits
from qmo.api.quantizedmodel import EngineBackend, ModelFormat
from qmo.builder import engine
from qmo.builder.errors import EngineBuildFailed
from qmo.builder.recipes import Recipe, make_recipe

CKPT, OUT = Path("/store/a.tmp-1/.trtllm-checkpoint"), Path("/store/a.tmp-1/engine")


def _recipe(precision: str) -> Recipe:
    return make_recipe(
        precision=precision,
        kv_cache_dtype="bf16",
        backend=EngineBackend.TENSORRT,
        source_format=ModelFormat.HF,
    )


@pytest.mark.parametrize(
    ("precision", "limits", "tp", "present", "absent"),
    [
        pytest.param(
            "fp8",
            BuildLimits(max_batch_size=64, max_seq_len=8192),
            1,
            ["--max_batch_size 64", "--max_seq_len 8192", "--max_input_len 8192"],
            ["--gemm_plugin", "--workers", "--max_num_tokens"],
            id="fp8 leaves the GEMM plugin off",
        ),
        pytest.param(
            "int8",
            BuildLimits(max_batch_size=8, max_seq_len=4096, max_num_tokens=2048),
            1,
            ["--gemm_plugin auto", "--max_num_tokens 2048", "--max_seq_len 4096"],
            ["--workers"],
            id="int8 SmoothQuant uses the GEMM plugin",
        ),
        pytest.param(
            "int4-awq",
            BuildLimits(max_batch_size=1, max_seq_len=1024),
            4,
            ["--gemm_plugin auto", "--workers 4"],
            [],
            id="tensor parallel builds ranks in parallel",
        ),
        pytest.param(
            "bf16",
            BuildLimits(max_batch_size=16, max_seq_len=2048),
            1,
            ["--gemm_plugin auto", "--max_batch_size 16"],
            [],
            id="bf16",
        ),
    ],
)
def test_trtllm_build_gets_the_planner_limits(
    precision: str, limits: BuildLimits, tp: int, present: list[str], absent: list[str]
) -> None:
    argv = engine.trtllm_build_command(CKPT, OUT, limits, _recipe(precision), tp)
    line = " ".join(argv)
    assert argv[:5] == ["trtllm-build", "--checkpoint_dir", str(CKPT), "--output_dir", str(OUT)]
    for flag in present:
        assert flag in line
    for flag in absent:
        assert flag not in line


def test_a_gptq_source_is_converted_with_tensorrt_llms_own_script() -> None:
    argv = engine.gptq_convert_command(
        Path("/app/tensorrt_llm/examples"),
        "qwen2",
        Path("/models/q"),
        CKPT,
        dtype="fp16",
        group_size=64,
        tensor_parallel=2,
    )
    assert argv[1] == "/app/tensorrt_llm/examples/models/core/qwen/convert_checkpoint.py"
    line = " ".join(argv)
    for flag in (
        "--weight_only_precision int4_gptq",
        "--per_group",
        "--group_size 64",
        "--dtype float16",
        "--tp_size 2",
        "--model_dir /models/q",
    ):
        assert flag in line


def test_a_model_without_a_known_gptq_conversion_fails_clearly() -> None:
    with pytest.raises(EngineBuildFailed, match="model_type 'gpt_oss'"):
        engine.gptq_convert_command(
            Path("/x"), "gpt_oss", Path("/m"), CKPT, dtype="bf16", group_size=128, tensor_parallel=1
        )


def test_the_examples_directory_can_be_moved_by_env() -> None:
    assert engine.examples_dir({}) == Path(engine.DEFAULT_EXAMPLES_DIR)
    assert engine.examples_dir({engine.EXAMPLES_DIR_ENV: "/opt/ex"}) == Path("/opt/ex")


def test_a_failing_command_reports_its_exit_code_and_last_lines() -> None:
    lines: list[str] = []
    script = "import sys; print('building layer 1'); print('OOM in layer 2'); sys.exit(7)"
    with pytest.raises(EngineBuildFailed) as raised:
        engine.run([sys.executable, "-c", script], lines.append)
    assert "exited with 7" in raised.value.message
    assert "OOM in layer 2" in raised.value.message
    assert "building layer 1" in lines


def test_a_succeeding_command_streams_its_output() -> None:
    lines: list[str] = []
    engine.run([sys.executable, "-c", "print('engine saved')"], lines.append)
    assert "engine saved" in lines


def test_a_missing_program_is_an_engine_build_failure() -> None:
    with pytest.raises(EngineBuildFailed, match="cannot start"):
        engine.run(["/nonexistent/trtllm-build"], lambda _line: None)


def test_trtllm_build_missing_from_path_names_the_image_to_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineBuildFailed, match=r"TensorRT-LLM release image up to 1\.2") as raised:
        engine.require_trtllm_build()
    assert raised.value.reason == "EngineToolMissing"
