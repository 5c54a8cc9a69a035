"""Opens the checkpoint a build starts from and checks that it is complete.

Sources: `hf://ORG/NAME` (Hugging Face hub, token from the env var the request names; the
token is passed to the hub client and never logged), `s3://BUCKET/PATH` (through qmo's
object-store client, on the server and with the keys of the `QMO_SOURCE_S3_*` variables the
operator sets: qmo.store.location), or a local path (a mounted PVC; `pvc://` sources arrive
as paths, the operator mounts the claim). From a hub or a bucket only what a build needs is
fetched (weights, configs, tokenizer: no pickles). Called by qmo.builder.pipeline.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmo.api.buildcontract import SourceRef
from qmo.builder.errors import IncompleteCheckpoint, InvalidRequest, SourceUnavailable
from qmo.store.location import source_credentials, source_location
from qmo.store.objects import StoreError, connect

# What a build needs from a hub repository: weights, configs, tokenizer. No pickles.
HUB_ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "generation_config.json",
)
SAFETENSORS_INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class SourceLocation:
    kind: str  # hf | s3 | local
    name: str  # repo id, bucket, or path
    path: str = ""  # prefix inside the bucket


def parse_source(uri: str) -> SourceLocation:
    if uri.startswith("hf://"):
        repo = uri.removeprefix("hf://").strip("/")
        if not repo:
            raise InvalidRequest(f"source {uri!r} names no repository")
        return SourceLocation("hf", repo)
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise InvalidRequest(f"source {uri!r} names no bucket")
        return SourceLocation("s3", bucket, prefix.strip("/"))
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    if uri.startswith("/"):
        return SourceLocation("local", uri)
    raise InvalidRequest(
        f"source {uri!r}: expected hf://ORG/NAME, s3://BUCKET/PATH or an absolute path"
    )


def open_source(
    source: SourceRef,
    *,
    env: Mapping[str, str],
    download_dir: Path,
    s3_store: Any = None,
) -> Path:
    """A local directory holding the complete checkpoint."""
    location = parse_source(source.uri)
    if location.kind == "local":
        path = Path(location.name)
        if not path.is_dir():
            raise SourceUnavailable(f"source path {path} does not exist or is not a directory")
    elif location.kind == "hf":
        path = _download_hub(location.name, source.revision, _token(source, env), download_dir)
    else:
        target = download_dir / location.name / location.path
        path = _download_s3(location, target, s3_store or _connect_s3(location, env))
    problems = completeness_problems(path)
    if problems:
        raise IncompleteCheckpoint(
            f"checkpoint at {source.uri} is incomplete: " + "; ".join(problems)
        )
    return path


def completeness_problems(path: Path) -> list[str]:
    """What is missing from a checkpoint directory (empty: complete)."""
    problems = []
    if not (path / "config.json").is_file():
        problems.append("config.json is missing")
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError):
            return [*problems, f"{SAFETENSORS_INDEX} is unreadable"]
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (path / s).is_file() or (path / s).stat().st_size == 0]
        if missing:
            problems.append(
                f"{len(missing)} of {len(shards)} weight shards are missing: "
                + ", ".join(missing[:5])
            )
    elif not any(path.glob("*.safetensors")):
        problems.append("no *.safetensors weights (pickled .bin checkpoints are not loaded)")
    return problems


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def copy_tokenizer(source_dir: Path, target_dir: Path) -> list[str]:
    """Copy the tokenizer files a server needs; returns the names copied."""
    target_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (source_dir / name).is_file() and not (target_dir / name).exists():
            shutil.copy2(source_dir / name, target_dir / name)
            copied.append(name)
    return copied


def copy_checkpoint(source_dir: Path, target_dir: Path) -> None:
    """Copy a whole (prequantized) checkpoint: top-level files only, as hub repos are laid out."""
    target_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(source_dir.iterdir()):
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, target_dir / item.name)


def _token(source: SourceRef, env: Mapping[str, str]) -> str | None:
    if source.token_env is None:
        return None
    token = env.get(source.token_env)
    if not token:
        raise InvalidRequest(f"the source needs a token in ${source.token_env}, which is empty")
    return token


def _download_hub(repo: str, revision: str | None, token: str | None, download_dir: Path) -> Path:
    try:
        hub: Any = importlib.import_module("huggingface_hub")
    except ImportError as err:
        raise SourceUnavailable("hf:// sources need huggingface_hub in the builder image") from err
    try:
        return Path(
            hub.snapshot_download(
                repo_id=repo,
                revision=revision,
                token=token,
                cache_dir=str(download_dir),
                allow_patterns=list(HUB_ALLOW_PATTERNS),
            )
        )
    except Exception as err:
        raise _hub_error(repo, revision, err) from err


def _hub_error(repo: str, revision: str | None, err: Exception) -> Exception:
    """Permanent for a wrong name, revision or missing access; retriable otherwise."""
    kind = type(err).__name__
    where = f"hf://{repo}@{revision or 'main'}"
    if kind in ("RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError"):
        return InvalidRequest(f"{where}: {kind} (check the name, revision and token)")
    # str(err) of hub errors holds URLs, never the token; keep it short anyway.
    return SourceUnavailable(f"{where} could not be downloaded: {kind}: {str(err)[:300]}")


def _connect_s3(location: SourceLocation, env: Mapping[str, str]) -> Any:
    try:
        return connect(source_location(location.name, env), source_credentials(env))
    except StoreError as err:
        raise SourceUnavailable(f"s3://{location.name}: {err.reason}: {err}") from err


def _download_s3(location: SourceLocation, target: Path, store: Any) -> Path:
    """Every object under the source's prefix that a build needs, into `target`."""
    prefix = f"{location.path}/" if location.path else ""
    where = f"s3://{location.name}/{prefix}"
    try:
        objects = [o for o in store.list(prefix) if o.key != prefix]
        if not objects:
            raise SourceUnavailable(f"{where} holds no objects")
        wanted = [o for o in objects if _wanted(o.key)]
        if not wanted:
            raise SourceUnavailable(f"{where} holds no checkpoint files ({len(objects)} others)")
        for info in wanted:
            store.download_file(info.key, target / info.key[len(prefix) :], size=info.size)
    except StoreError as err:
        # Keys are refused or the server is down: the reason says which, never a key.
        raise SourceUnavailable(f"{where} could not be downloaded: {err.reason}: {err}") from err
    return target


def _wanted(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, pattern) for pattern in HUB_ALLOW_PATTERNS)
