"""The build pipeline publishes complete artifacts, reuses finished ones and cleans up failures.

Only paths that need no GPU stack run here (bf16 copy, prequantized pass-through, refusals);
the quantizing paths run in e2e/gpu/builder_h100.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qmo.api.buildcontract import ARTIFACT_MANIFEST
from qmo.builder import artifact, pipeline
from qmo.builder.errors import CalibrationUnavailable, IncompleteCheckpoint, InvalidRequest
from qmo.builder.recipes import recipe_for
from tests.support.build_requests import H100, a_checkpoint, a_request


def _build(request: Any, tmp_path: Path) -> pipeline.Outcome:
    lines: list[str] = []
    options = pipeline.BuildOptions(
        download_dir=tmp_path / "dl", store_root=tmp_path, log=lines.append
    )
    return pipeline.build(request, recipe_for(request), gpus=[H100], env={}, options=options)


def test_a_bf16_build_publishes_the_checkpoint_with_a_manifest(tmp_path: Path) -> None:
    src = a_checkpoint(tmp_path / "src", shards=2)
    request = a_request().precision("bf16").source(str(src)).output(tmp_path / "a" / "k").build()
    outcome = _build(request, tmp_path)
    assert Path(outcome.artifact) == tmp_path / "a" / "k"
    assert not outcome.reused
    manifest = json.loads((Path(outcome.artifact) / ARTIFACT_MANIFEST).read_text())
    assert manifest["layout"] == {"checkpoint": "checkpoint"}
    paths = {f["path"] for f in manifest["files"]}
    assert "checkpoint/model-00002-of-00002.safetensors" in paths
    assert "checkpoint/config.json" in paths
    assert manifest["gpu"]["seen"][0]["product"] == H100.product
    assert manifest["timingsSeconds"]["total"] >= 0
    assert artifact.stale_staging(Path(outcome.artifact)) == []


def test_building_a_finished_artifact_again_is_a_no_op(tmp_path: Path) -> None:
    src = a_checkpoint(tmp_path / "src")
    request = a_request().precision("bf16").source(str(src)).output(tmp_path / "a" / "k").build()
    first = _build(request, tmp_path)
    (src / "model.safetensors").unlink()  # a rebuild would now fail: it must not happen
    second = _build(request, tmp_path)
    assert second.reused
    assert second.manifest == first.manifest


def test_a_prequantized_source_passes_through_when_it_matches(tmp_path: Path) -> None:
    hf_quant = {"quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}}
    src = a_checkpoint(tmp_path / "src", hf_quant_config=hf_quant)
    request = (
        a_request()
        .precision("fp8", "fp8")
        .source(str(src), "modelopt-prequantized")
        .output(tmp_path / "a" / "k")
        .build()
    )
    outcome = _build(request, tmp_path)
    assert (Path(outcome.artifact) / "checkpoint" / "hf_quant_config.json").is_file()
    assert outcome.manifest["hfQuantConfig"] == hf_quant
    assert outcome.manifest["recipe"]["mode"] == "passthrough"


def test_a_prequantized_source_of_another_precision_is_refused_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    src = a_checkpoint(
        tmp_path / "src", hf_quant_config={"quantization": {"quant_algo": "W4A16_AWQ"}}
    )
    output = tmp_path / "a" / "k"
    request = (
        a_request()
        .precision("fp8", "bf16")
        .source(str(src), "modelopt-prequantized")
        .output(output)
        .build()
    )
    with pytest.raises(InvalidRequest, match="quantized as W4A16_AWQ") as raised:
        _build(request, tmp_path)
    assert raised.value.reason == "SourceMismatch"
    assert not output.exists()
    assert artifact.stale_staging(output) == []


def test_an_incomplete_source_fails_before_anything_is_staged(tmp_path: Path) -> None:
    src = a_checkpoint(tmp_path / "src", shards=3, missing_shard=True)
    output = tmp_path / "a" / "k"
    request = a_request().precision("bf16").source(str(src)).output(output).build()
    with pytest.raises(IncompleteCheckpoint):
        _build(request, tmp_path)
    assert not output.parent.exists() or artifact.stale_staging(output) == []


def test_missing_calibration_data_fails_before_the_model_is_loaded(tmp_path: Path) -> None:
    src = a_checkpoint(tmp_path / "src")
    output = tmp_path / "a" / "k"
    request = (
        a_request()
        .precision("fp8", "fp8")
        .source(str(src))
        .calibration(str(tmp_path / "absent.jsonl"))
        .output(output)
        .build()
    )
    with pytest.raises(CalibrationUnavailable, match="does not exist"):
        _build(request, tmp_path)
    assert not output.exists()


def test_leftovers_of_a_killed_build_are_removed_by_the_next_build(tmp_path: Path) -> None:
    src = a_checkpoint(tmp_path / "src")
    output = tmp_path / "a" / "k"
    leftover = artifact.new_staging(output)
    (leftover / "half.safetensors").write_bytes(b"x")
    request = a_request().precision("bf16").source(str(src)).output(output).build()
    _build(request, tmp_path)
    assert not leftover.exists()
    assert (output / ARTIFACT_MANIFEST).is_file()
