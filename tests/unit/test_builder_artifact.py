"""Artifacts are published atomically with a manifest; the termination message stays small."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qmo.api.buildcontract import (
    ARTIFACT_MANIFEST,
    TERMINATION_MESSAGE_LIMIT,
    BuildResult,
    BuildState,
)
from qmo.builder import artifact
from qmo.builder.recipes import recipe_for
from tests.support.build_requests import H100, a_request

KEY = "0123456789abcdef"


def _manifest(key: str = KEY) -> dict[str, object]:
    return {"cacheKey": key, "complete": True}


def _staged(output: Path, files: dict[str, bytes]) -> Path:
    staging = artifact.new_staging(output)
    for name, content in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(content)
    return staging


def test_staging_lives_beside_the_output_so_the_rename_stays_on_one_filesystem(
    tmp_path: Path,
) -> None:
    output = tmp_path / "artifacts" / KEY
    staging = artifact.new_staging(output)
    assert staging.parent == output.parent
    assert staging.name.startswith(f"{KEY}.tmp-")
    assert staging.is_dir()
    assert not output.exists()


def test_publishing_renames_staging_into_place_with_the_manifest(tmp_path: Path) -> None:
    output = tmp_path / KEY
    staging = _staged(output, {"checkpoint/model.safetensors": b"w"})
    artifact.publish(staging, output, _manifest())
    assert not staging.exists()
    assert (output / "checkpoint" / "model.safetensors").read_bytes() == b"w"
    assert artifact.finished_manifest(output, KEY) == _manifest()


def test_a_killed_build_leaves_nothing_that_looks_finished(tmp_path: Path) -> None:
    output = tmp_path / KEY
    _staged(output, {"checkpoint/model.safetensors": b"half"})  # killed before publish
    assert not output.exists()
    assert artifact.finished_manifest(output, KEY) is None
    removed = artifact.remove_stale_staging(output)
    assert len(removed) == 1
    assert not removed[0].exists()


@pytest.mark.parametrize(
    ("manifest", "finished"),
    [
        pytest.param({"cacheKey": KEY, "complete": True}, True, id="same key, complete"),
        pytest.param({"cacheKey": "another-key-00", "complete": True}, False, id="another key"),
        pytest.param({"cacheKey": KEY}, False, id="not marked complete"),
        pytest.param(None, False, id="no manifest"),
    ],
)
def test_a_finished_artifact_is_recognised_by_its_manifest(
    tmp_path: Path, manifest: dict[str, object] | None, finished: bool
) -> None:
    output = tmp_path / KEY
    output.mkdir()
    if manifest is not None:
        (output / ARTIFACT_MANIFEST).write_text(json.dumps(manifest))
    assert (artifact.finished_manifest(output, KEY) is not None) is finished


def test_publishing_over_a_finished_equal_artifact_keeps_it_and_drops_the_new_copy(
    tmp_path: Path,
) -> None:
    output = tmp_path / KEY
    artifact.publish(_staged(output, {"a": b"first"}), output, _manifest())
    second = _staged(output, {"a": b"second"})
    artifact.publish(second, output, _manifest())
    assert (output / "a").read_bytes() == b"first"
    assert not second.exists()


def test_a_foreign_directory_at_the_output_is_replaced(tmp_path: Path) -> None:
    output = tmp_path / KEY
    output.mkdir()
    (output / "junk").write_text("not an artifact")
    artifact.publish(_staged(output, {"a": b"new"}), output, _manifest())
    assert (output / "a").read_bytes() == b"new"
    assert not (output / "junk").exists()
    assert artifact.stale_staging(output) == []


def test_file_entries_have_sizes_and_sha256_and_leave_out_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "b.json").write_bytes(b"{}")
    (tmp_path / "a.safetensors").write_bytes(b"abc")
    (tmp_path / ARTIFACT_MANIFEST).write_text("{}")
    entries = artifact.file_entries(tmp_path)
    assert [e.path for e in entries] == ["a.safetensors", "checkpoint/b.json"]
    assert entries[0].size == 3
    assert entries[0].sha256 == hashlib.sha256(b"abc").hexdigest()


def test_the_manifest_records_what_was_built_where_and_with_what() -> None:
    request = a_request().precision("int4-awq", "fp8").build()
    facts = artifact.BuildFacts(
        gpus=[H100],
        libraries={"torch": "2.11.0", "nvidia-modelopt": "0.47.0"},
        timings={"quantize": 12.3456, "total": 20.0},
        peak_gpu_memory_bytes=123,
        hf_quant_config={"quantization": {"quant_algo": "W4A16_AWQ"}},
        layout={"checkpoint": "checkpoint"},
        calibration_samples=512,
        cuda="13.0",
        created_at=datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
    )
    files = [artifact.FileEntry("checkpoint/model.safetensors", 10, "ab" * 32)]
    manifest = artifact.build_manifest(request, recipe_for(request), facts, files)
    assert manifest["cacheKey"] == request.cache_key
    assert (manifest["precision"], manifest["kvCacheDtype"]) == ("int4-awq", "fp8")
    assert manifest["recipe"]["modeloptConfig"] == "INT4_AWQ_CFG"
    assert manifest["recipe"]["kvConfig"] == "FP8_KV_CFG"
    assert manifest["gpu"]["seen"][0] == {
        "product": "NVIDIA H100 80GB HBM3",
        "computeCapability": "9.0",
        "memoryMiB": 81559,
        "driver": "580.159.04",
    }
    assert manifest["gpu"]["expected"]["computeCapability"] == "9.0"
    assert manifest["libraries"]["nvidia-modelopt"] == "0.47.0"
    assert manifest["timingsSeconds"] == {"quantize": 12.346, "total": 20.0}
    assert manifest["peakGpuMemoryBytes"] == 123
    assert manifest["totalBytes"] == 10
    assert manifest["files"][0]["sha256"] == "ab" * 32
    assert manifest["createdAt"] == "2026-11-22T08:00:00Z"
    assert manifest["complete"] is True
    assert "token" not in json.dumps(manifest).lower()


def test_library_versions_leave_out_what_is_not_installed() -> None:
    versions = artifact.library_versions(["pydantic", "surely-not-installed-qmo"])
    assert "pydantic" in versions
    assert "qmo" in versions
    assert "surely-not-installed-qmo" not in versions


@pytest.mark.parametrize("length", [10, 2000], ids=["short", "longest allowed"])
def test_the_termination_message_is_compact_json_under_the_limit(length: int) -> None:
    result = BuildResult(
        cache_key="k" * 1500,
        state=BuildState.FAILED,
        reason="BuildFailed",
        message="m" * length,
        artifact_path="/store/artifacts/" + "p" * 1500,
    )
    text = artifact.termination_message(result)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = json.loads(text)
    assert parsed["cacheKey"] == "k" * 1500
    assert parsed["state"] == "Failed"
    assert parsed["message"].startswith("mmm")


def test_a_success_message_reads_back_as_a_build_result(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    result = BuildResult(
        cache_key=KEY, state=BuildState.SUCCEEDED, artifact_path=f"/store/artifacts/{KEY}"
    )
    assert artifact.write_termination(path, result)
    assert BuildResult.model_validate_json(path.read_text()) == result


def test_an_unwritable_termination_log_is_not_an_error(tmp_path: Path) -> None:
    result = BuildResult(cache_key=KEY, state=BuildState.FAILED)
    assert artifact.write_termination(tmp_path / "absent" / "log", result) is False
