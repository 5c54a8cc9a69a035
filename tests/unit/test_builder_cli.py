"""qmo-builder exits with the contract's codes and always leaves a termination message."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from qmo.api.buildcontract import BUILD_SPEC_ENV, ExitCode
from qmo.builder import cli, pipeline
from qmo.builder.errors import EngineBuildFailed
from qmo.builder.gpucheck import SeenGpu
from tests.support.build_requests import A100, H100, a_request


def _args(tmp_path: Path, *, dry_run: bool = False) -> argparse.Namespace:
    return cli.build_parser().parse_args(
        ["build", "--termination-log", str(tmp_path / "term"), *(["--dry-run"] if dry_run else [])]
    )


class Recorder:
    def __init__(self, outcome: Any = None, error: Exception | None = None) -> None:
        self.outcome, self.error, self.calls = outcome, error, 0

    def __call__(self, request: Any, recipe: Any, **kwargs: Any) -> pipeline.Outcome:
        self.calls += 1
        if self.error is not None:
            raise self.error
        assert kwargs["gpus"] == [H100]
        return pipeline.Outcome(Path(request.output_dir), {}, reused=self.outcome == "reused")


def _run(
    tmp_path: Path,
    env: dict[str, str],
    *,
    gpus: list[SeenGpu] | None = None,
    builder: Recorder | None = None,
    dry_run: bool = False,
) -> tuple[int, dict[str, Any] | None, list[str]]:
    lines: list[str] = []
    code = cli.run(
        _args(tmp_path, dry_run=dry_run),
        env,
        probe=lambda: [H100] if gpus is None else gpus,
        builder=builder or Recorder(),
        out=lines.append,
    )
    term = tmp_path / "term"
    return code, json.loads(term.read_text()) if term.exists() else None, lines


def test_a_successful_build_exits_0_and_reports_the_artifact(tmp_path: Path) -> None:
    env = {BUILD_SPEC_ENV: a_request().json()}
    code, term, _ = _run(tmp_path, env)
    assert code == ExitCode.OK
    assert term == {
        "cacheKey": "0123456789abcdef",
        "state": "Succeeded",
        "artifactPath": "/store/artifacts/0123456789abcdef",
        "reason": "Built",
    }


def test_an_existing_artifact_is_reported_as_already_built(tmp_path: Path) -> None:
    code, term, _ = _run(tmp_path, {BUILD_SPEC_ENV: a_request().json()}, builder=Recorder("reused"))
    assert code == ExitCode.OK
    assert term is not None
    assert term["reason"] == "AlreadyBuilt"


def test_an_fp8_build_on_an_a100_is_refused_before_any_work(tmp_path: Path) -> None:
    builder = Recorder()
    code, term, lines = _run(
        tmp_path, {BUILD_SPEC_ENV: a_request().json()}, gpus=[A100], builder=builder
    )
    assert code == ExitCode.GPU_MISMATCH
    assert builder.calls == 0
    assert term is not None
    assert term["reason"] == "GpuMismatch"
    assert term["state"] == "Failed"
    assert "fp8 needs compute capability >= 8.9" in term["message"]
    assert any("refused" in line for line in lines)


def test_an_invalid_spec_exits_2_and_still_writes_a_termination_message(tmp_path: Path) -> None:
    bad = a_request().json().replace('"maxBatchSize": 64', '"maxBatchSize": 0')
    code, term, _ = _run(tmp_path, {BUILD_SPEC_ENV: bad})
    assert code == ExitCode.INVALID_SPEC
    assert term is not None
    assert (term["cacheKey"], term["reason"]) == ("0123456789abcdef", "InvalidSpec")
    assert "limits.maxBatchSize" in term["message"] or "limits.max_batch_size" in term["message"]


def test_a_spec_the_recipes_refuse_exits_2(tmp_path: Path) -> None:
    env = {BUILD_SPEC_ENV: a_request().precision("int8", "bf16").json()}  # pytorch backend
    code, term, _ = _run(tmp_path, env)
    assert code == ExitCode.INVALID_SPEC
    assert term is not None
    assert "TensorRT engine backend" in term["message"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(
            EngineBuildFailed("trtllm-build exited with 1"), "EngineBuildFailed", id="known"
        ),
        pytest.param(RuntimeError("CUDA out of memory"), "BuildFailed", id="unexpected"),
    ],
)
def test_a_failing_build_exits_1_with_its_reason(
    tmp_path: Path, error: Exception, reason: str
) -> None:
    code, term, _ = _run(
        tmp_path, {BUILD_SPEC_ENV: a_request().json()}, builder=Recorder(error=error)
    )
    assert code == ExitCode.FAILED
    assert term is not None
    assert term["reason"] == reason
    assert str(error) in term["message"]


def test_a_very_long_error_is_cut_to_fit_the_termination_message(tmp_path: Path) -> None:
    builder = Recorder(error=RuntimeError("x" * 10_000))
    code, term, _ = _run(tmp_path, {BUILD_SPEC_ENV: a_request().json()}, builder=builder)
    assert code == ExitCode.FAILED
    assert term is not None
    assert len(term["message"]) <= 2048
    assert (tmp_path / "term").stat().st_size <= 4096


def test_a_dry_run_prints_the_plan_and_builds_nothing(tmp_path: Path) -> None:
    builder = Recorder()
    env = {BUILD_SPEC_ENV: a_request().precision("int8", "int8").backend("tensorrt").json()}
    code, term, lines = _run(tmp_path, env, builder=builder, dry_run=True)
    text = "\n".join(lines)
    assert code == ExitCode.OK
    assert builder.calls == 0
    assert term is None
    assert "ModelOpt INT8_SMOOTHQUANT_CFG + INT8_KV, keeping lm_head in high precision" in text
    assert (
        "trtllm-build --checkpoint_dir /store/artifacts/0123456789abcdef/.trtllm-checkpoint" in text
    )
    assert "cnn_dailymail (hub), 512 samples x 512 tokens" in text
    assert "gpus seen    NVIDIA H100 80GB HBM3 (9.0); would build" in text


def test_a_dry_run_on_the_wrong_gpu_says_it_would_refuse(tmp_path: Path) -> None:
    code, _, lines = _run(tmp_path, {BUILD_SPEC_ENV: a_request().json()}, gpus=[A100], dry_run=True)
    assert code == ExitCode.OK
    assert "would refuse: GpuMismatch" in lines[-1]


def test_a_dry_run_of_an_invalid_spec_exits_2(tmp_path: Path) -> None:
    code, term, _ = _run(tmp_path, {}, dry_run=True)
    assert code == ExitCode.INVALID_SPEC
    assert term is None


def test_main_without_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main([])
    assert raised.value.code == 2
    assert "usage: qmo-builder" in capsys.readouterr().err
