"""Sources are opened from the hub, an object store or a mounted path, and checked complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qmo.api.buildcontract import SourceRef
from qmo.builder import source
from qmo.builder.errors import IncompleteCheckpoint, InvalidRequest, SourceUnavailable
from tests.support.build_requests import a_checkpoint


@pytest.mark.parametrize(
    ("uri", "kind", "name", "path"),
    [
        ("hf://meta-llama/Llama-3.1-8B-Instruct", "hf", "meta-llama/Llama-3.1-8B-Instruct", ""),
        ("s3://models/llama/8b/", "s3", "models", "llama/8b"),
        ("s3://models", "s3", "models", ""),
        ("/models/llama", "local", "/models/llama", ""),
        ("file:///models/llama", "local", "/models/llama", ""),
    ],
)
def test_source_uris_are_parsed(uri: str, kind: str, name: str, path: str) -> None:
    assert source.parse_source(uri) == source.SourceLocation(kind, name, path)


@pytest.mark.parametrize("uri", ["hf://", "s3:///x", "models/llama", "gs://b/x"])
def test_unusable_source_uris_are_invalid_requests(uri: str) -> None:
    with pytest.raises(InvalidRequest):
        source.parse_source(uri)


@pytest.mark.parametrize(
    ("shards", "missing", "problem"),
    [
        pytest.param(1, False, None, id="single file"),
        pytest.param(3, False, None, id="all shards"),
        pytest.param(3, True, "1 of 3 weight shards are missing", id="a missing shard"),
    ],
)
def test_a_checkpoint_is_complete_when_every_indexed_shard_exists(
    tmp_path: Path, shards: int, missing: bool, problem: str | None
) -> None:
    problems = source.completeness_problems(
        a_checkpoint(tmp_path, shards=shards, missing_shard=missing)
    )
    assert problems == [] if problem is None else problem in problems[0]


def test_a_checkpoint_without_config_or_weights_names_both(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    problems = source.completeness_problems(tmp_path)
    assert problems == [
        "config.json is missing",
        "no *.safetensors weights (pickled .bin checkpoints are not loaded)",
    ]


def test_a_local_source_opens_in_place(tmp_path: Path) -> None:
    checkpoint = a_checkpoint(tmp_path / "m")
    opened = source.open_source(SourceRef(uri=str(checkpoint)), env={}, download_dir=tmp_path)
    assert opened == checkpoint


def test_an_incomplete_local_source_is_refused(tmp_path: Path) -> None:
    checkpoint = a_checkpoint(tmp_path / "m", shards=2, missing_shard=True)
    with pytest.raises(IncompleteCheckpoint, match="incomplete"):
        source.open_source(SourceRef(uri=str(checkpoint)), env={}, download_dir=tmp_path)


def test_a_missing_local_source_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        source.open_source(SourceRef(uri=str(tmp_path / "x")), env={}, download_dir=tmp_path)


def test_a_hub_source_whose_token_variable_is_empty_is_an_invalid_request(tmp_path: Path) -> None:
    ref = SourceRef(uri="hf://org/gated", token_env="HF_TOKEN")
    with pytest.raises(InvalidRequest, match=r"\$HF_TOKEN, which is empty"):
        source.open_source(ref, env={"HF_TOKEN": ""}, download_dir=tmp_path)


class FakeHub:
    """Stands in for huggingface_hub; records the call, never prints the token."""

    def __init__(self, root: Path, error: Exception | None = None) -> None:
        self.root, self.error, self.calls = root, error, []

    def snapshot_download(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return str(a_checkpoint(self.root / "snapshot"))


def _with_hub(monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> None:
    real = source.importlib.import_module
    monkeypatch.setattr(
        source.importlib,
        "import_module",
        lambda name: hub if name == "huggingface_hub" else real(name),
    )


def test_a_hub_source_is_downloaded_with_the_token_and_only_safe_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub(tmp_path)
    _with_hub(monkeypatch, hub)
    ref = SourceRef(uri="hf://org/model", revision="abc123", token_env="HF_TOKEN")
    opened = source.open_source(ref, env={"HF_TOKEN": "hf_secret"}, download_dir=tmp_path / "dl")
    assert opened == tmp_path / "snapshot"
    call = hub.calls[0]
    assert (call["repo_id"], call["revision"], call["token"]) == (
        "org/model",
        "abc123",
        "hf_secret",
    )
    assert "*.safetensors" in call["allow_patterns"]
    assert not any(p.endswith((".bin", ".pt", ".pth")) for p in call["allow_patterns"])


class RepositoryNotFoundError(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        pytest.param(
            RepositoryNotFoundError("404"), InvalidRequest, id="unknown repo is permanent"
        ),
        pytest.param(ConnectionError("no route"), SourceUnavailable, id="network is retriable"),
    ],
)
def test_hub_failures_are_sorted_into_permanent_and_retriable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, raised: type[Exception]
) -> None:
    _with_hub(monkeypatch, FakeHub(tmp_path, error))
    ref = SourceRef(uri="hf://org/model", token_env="HF_TOKEN")
    with pytest.raises(raised) as caught:
        source.open_source(ref, env={"HF_TOKEN": "hf_secret"}, download_dir=tmp_path)
    assert "hf_secret" not in str(caught.value)


def test_the_tokenizer_files_are_copied_for_serving(tmp_path: Path) -> None:
    checkpoint = a_checkpoint(tmp_path / "m")
    (checkpoint / "tokenizer_config.json").write_text("{}")
    copied = source.copy_tokenizer(checkpoint, tmp_path / "out")
    assert copied == ["tokenizer.json", "tokenizer_config.json"]
