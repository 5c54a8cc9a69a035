"""The artifact on the engine store: atomic publication, the manifest, the termination message.

A build writes into `<outputDir>.tmp-<random>` beside the final directory, writes
`qmo-artifact.json` there last, and renames the directory into place. A rename within one
filesystem is atomic, so a build killed at any point leaves either nothing at `outputDir` or
a finished artifact, never a half one that looks done. A finished artifact is recognised by
its manifest (`complete: true` and the same cache key); building it again is a no-op.

The manifest and the termination message are built by pure functions; called by
qmo.builder.pipeline and qmo.builder.cli.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from qmo import __version__
from qmo.api.base import API_VERSION
from qmo.api.buildcontract import (
    ARTIFACT_MANIFEST,
    TERMINATION_MESSAGE_LIMIT,
    BuildRequest,
    BuildResult,
)
from qmo.builder.gpucheck import SeenGpu
from qmo.builder.recipes import Recipe
from qmo.store.checksums import PART_BYTES, sha256_with_parts

MANIFEST_KIND = "QmoArtifact"
MANIFEST_SCHEMA = 1
STAGING_INFIX = ".tmp-"
STALE_INFIX = ".stale-"
LIBRARIES = (
    "torch",
    "transformers",
    "nvidia-modelopt",
    "tensorrt_llm",
    "tensorrt",
    "safetensors",
    "accelerate",
    "huggingface_hub",
    "datasets",
)


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the artifact directory, '/'-separated
    size: int
    sha256: str
    part_sha256: tuple[str, ...] = ()  # of each PART_BYTES part (qmo.store.checksums)


@dataclass
class BuildFacts:
    """What was observed while building, for the manifest."""

    gpus: Sequence[SeenGpu] = ()
    libraries: Mapping[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_gpu_memory_bytes: int | None = None
    hf_quant_config: dict[str, Any] | None = None
    layout: dict[str, str] = field(default_factory=dict)
    calibration_samples: int | None = None
    cuda: str | None = None
    created_at: datetime | None = None


# Staging and publication.


def staging_path(output_dir: Path, token: str) -> Path:
    return output_dir.with_name(f"{output_dir.name}{STAGING_INFIX}{token}")


def new_staging(output_dir: Path) -> Path:
    """A fresh, empty staging directory beside output_dir (same filesystem, so rename works)."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    path = staging_path(output_dir, secrets.token_hex(6))
    path.mkdir()
    return path


def stale_staging(output_dir: Path) -> list[Path]:
    """Staging and set-aside directories left by killed builds of this output_dir."""
    if not output_dir.parent.is_dir():
        return []
    prefixes = (f"{output_dir.name}{STAGING_INFIX}", f"{output_dir.name}{STALE_INFIX}")
    return sorted(p for p in output_dir.parent.iterdir() if p.name.startswith(prefixes))


def remove_stale_staging(output_dir: Path) -> list[Path]:
    """Remove leftovers of killed builds. One Job builds one cache key at a time."""
    removed = stale_staging(output_dir)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def read_manifest(artifact_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((artifact_dir / ARTIFACT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def finished_manifest(output_dir: Path, cache_key: str) -> dict[str, Any] | None:
    """The manifest of a finished artifact for this cache key, or None."""
    manifest = read_manifest(output_dir)
    if manifest and manifest.get("complete") is True and manifest.get("cacheKey") == cache_key:
        return manifest
    return None


def publish(staging: Path, output_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest into staging, then move staging to output_dir in one rename."""
    _write_atomically(staging / ARTIFACT_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    _fsync_dir(staging)
    if output_dir.exists():
        if finished_manifest(output_dir, str(manifest["cacheKey"])) is not None:
            shutil.rmtree(staging, ignore_errors=True)  # an equal build finished first
            return output_dir
        # Not a finished artifact (foreign or from before the manifest existed): set aside.
        aside = output_dir.with_name(f"{output_dir.name}{STALE_INFIX}{secrets.token_hex(6)}")
        os.rename(output_dir, aside)
        shutil.rmtree(aside, ignore_errors=True)
    os.rename(staging, output_dir)
    _fsync_dir(output_dir.parent)
    return output_dir


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (NFS, overlay) refuse fsync on directories
    finally:
        os.close(fd)


# Files and checksums.


def file_entries(root: Path) -> list[FileEntry]:
    """Every file under root except the manifest, sorted by path, with size and sha256."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative == ARTIFACT_MANIFEST:
            continue
        whole, parts = sha256_with_parts(path)
        entries.append(FileEntry(relative, path.stat().st_size, whole, parts))
    return entries


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries that shape an artifact (absent ones left out)."""
    versions = {"qmo": __version__}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# The manifest.


def build_manifest(
    request: BuildRequest, recipe: Recipe, facts: BuildFacts, files: Sequence[FileEntry]
) -> dict[str, Any]:
    """PURE: the content of qmo-artifact.json."""
    created = facts.created_at or datetime.now(UTC)
    quantization = request.quantization
    return {
        "apiVersion": API_VERSION,
        "kind": MANIFEST_KIND,
        "schemaVersion": MANIFEST_SCHEMA,
        "complete": True,
        "cacheKey": request.cache_key,
        "precision": request.precision,
        "kvCacheDtype": request.kv_cache_dtype,
        "backend": request.backend.value,
        "tensorParallel": request.tensor_parallel,
        "source": {
            "uri": request.source.uri,
            "revision": request.source.revision,
            "format": request.source.format.value,
            "dtype": request.source.dtype.value,
        },
        "recipe": {
            "mode": recipe.mode.value,
            "export": recipe.export.value,
            "modeloptConfig": recipe.modelopt_config,
            "kvConfig": recipe.kv_config,
            "quantAlgo": recipe.quant_algo,
            "kvCacheQuantAlgo": recipe.kv_cache_quant_algo,
            "trtllmQformat": recipe.trtllm_qformat,
        },
        "quantization": {
            "calibration": quantization.calibration.model_dump(by_alias=True, mode="json"),
            "calibrationSamplesUsed": facts.calibration_samples,
            "excludeModules": list(quantization.exclude_modules),
            "awqBlockSize": quantization.awq_block_size,
            "smoothquantAlpha": quantization.smoothquant_alpha,
        },
        "hfQuantConfig": facts.hf_quant_config,
        "limits": request.limits.model_dump(by_alias=True, exclude_none=True, mode="json"),
        "layout": dict(facts.layout),
        "gpu": {
            "expected": request.gpu.model_dump(by_alias=True, mode="json"),
            "seen": [
                {
                    "product": gpu.product,
                    "computeCapability": gpu.compute_capability,
                    "memoryMiB": gpu.memory_mib,
                    "driver": gpu.driver,
                }
                for gpu in facts.gpus
            ],
            "cuda": facts.cuda,
        },
        "libraries": dict(facts.libraries),
        "timingsSeconds": {k: round(v, 3) for k, v in facts.timings.items()},
        "peakGpuMemoryBytes": facts.peak_gpu_memory_bytes,
        "totalBytes": sum(f.size for f in files),
        "files": [_file_record(f) for f in files],
        "partBytes": PART_BYTES,
        "createdAt": created.isoformat().replace("+00:00", "Z"),
        "builder": f"qmo-builder {__version__}",
    }


def _file_record(entry: FileEntry) -> dict[str, Any]:
    record: dict[str, Any] = {"path": entry.path, "bytes": entry.size, "sha256": entry.sha256}
    if entry.part_sha256:
        record["partSha256"] = list(entry.part_sha256)
    return record


# The termination message.


def termination_message(result: BuildResult, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """PURE: the BuildResult as compact JSON within Kubernetes' limit (the message is cut)."""
    message = result.message
    while True:
        candidate = result.model_copy(update={"message": message})
        text = candidate.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode("utf-8")) <= limit or not message:
            return text
        over = len(text.encode("utf-8")) - limit
        message = message[: max(0, len(message) - over - 3)] + "..." if len(message) > 3 else None


def write_termination(path: Path, result: BuildResult) -> bool:
    """Write the termination message; False (never an exception) if the path is not writable."""
    try:
        path.write_text(termination_message(result), encoding="utf-8")
    except OSError:
        return False
    return True
