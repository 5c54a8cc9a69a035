"""Artifacts on either store kind: find a finished one, publish, fetch and verify, list, delete.

An artifact is the directory `artifacts/<cache key>/` with `qmo-artifact.json` (the
manifest: every file's path, size and SHA-256). On the PVC store a build renames a finished
directory into place (qmo.builder.artifact). On an object store there is no rename, so the
manifest is the commit: the builder uploads every file first and the manifest last, and an
artifact without a complete manifest does not exist for anyone (fetch, reuse, or GC's count of
what is live). A killed upload leaves either an unfinished multipart upload (never an object)
or files without a manifest, which the next build of the key overwrites and GC removes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from qmo.store.location import ARTIFACTS, MANIFEST
from qmo.store.objects import PART_SIZE, ChecksumMismatch, ObjectStore, StoreError

SMALL_FILE_WORKERS = 4


@dataclass(frozen=True)
class StoredArtifact:
    """What GC sees of one artifact directory or prefix."""

    cache_key: str
    complete: bool
    total_bytes: int
    last_modified: datetime  # of the newest object: a build still uploading looks recent


class ArtifactStore(Protocol):
    """What GC needs of a store; `unreferenced_since` marks live beside the artifacts
    (gc/<key>), so the retention clock survives the GC's own restarts."""

    def finished_manifest(self, cache_key: str) -> dict[str, Any] | None: ...
    def inventory(self) -> list[StoredArtifact]: ...
    def delete(self, cache_key: str) -> None: ...
    def describe(self) -> str: ...
    def unreferenced_since(self) -> dict[str, datetime]: ...
    def mark_unreferenced(self, cache_key: str, since: datetime) -> None: ...
    def unmark(self, cache_key: str) -> None: ...


GC_MARKS = "gc"


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest in an artifact directory (the claim's, or a node cache's), or None."""
    try:
        data = json.loads((directory / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_finished(manifest: Mapping[str, Any] | None, cache_key: str) -> bool:
    return bool(
        manifest and manifest.get("complete") is True and manifest.get("cacheKey") == cache_key
    )


class S3Artifacts:
    def __init__(self, objects: ObjectStore, log: Callable[[str], None] = print) -> None:
        self.objects = objects
        self.location = objects.location
        self.log = log

    def describe(self) -> str:
        return self.location.uri(ARTIFACTS)

    def finished_manifest(self, cache_key: str) -> dict[str, Any] | None:
        manifest = self.objects.read_json(self.location.artifact_key(cache_key, MANIFEST))
        return manifest if manifest is not None and is_finished(manifest, cache_key) else None

    def publish(self, staging: Path, cache_key: str, manifest: Mapping[str, Any]) -> str:
        """Upload every file the manifest lists, then the manifest: the commit point."""
        files = list(manifest["files"])
        large = [f for f in files if int(f["bytes"]) > PART_SIZE]
        small = [f for f in files if int(f["bytes"]) <= PART_SIZE]
        for entry in large:  # each in parallel parts already
            self._upload(staging, cache_key, entry)
        with ThreadPoolExecutor(SMALL_FILE_WORKERS) as pool:
            list(pool.map(lambda e: self._upload(staging, cache_key, e), small))
        self.objects.write_json(self.location.artifact_key(cache_key, MANIFEST), manifest)
        return self.location.uri(ARTIFACTS, cache_key)

    def _upload(self, staging: Path, cache_key: str, entry: Mapping[str, Any]) -> None:
        path = staging / str(entry["path"])
        self.objects.upload_file(path, self.location.artifact_key(cache_key, str(entry["path"])))

    def fetch(self, cache_key: str, target: Path) -> dict[str, Any]:
        """Download a finished artifact into `target` (which must not exist), every file checked
        against the manifest's size and SHA-256 as it arrives. Raises StoreError."""
        manifest = self.finished_manifest(cache_key)
        if manifest is None:
            raise StoreError(
                "ArtifactIncomplete",
                f"{self.location.uri(ARTIFACTS, cache_key)} has no finished manifest",
            )
        part_bytes = int(manifest.get("partBytes") or 0)
        for entry in manifest["files"]:
            relative = _safe_relative(str(entry["path"]))
            key = self.location.artifact_key(cache_key, relative)
            parts = list(entry.get("partSha256") or []) if part_bytes else []
            digest = self.objects.download_file(
                key,
                target / relative,
                size=int(entry["bytes"]),
                part_size=part_bytes if parts else PART_SIZE,
                part_sha256=parts,
            )
            if digest is not None and digest != entry["sha256"]:
                raise ChecksumMismatch(
                    f"{self.location.uri(ARTIFACTS, cache_key, relative)}: SHA-256 {digest[:12]}"
                    f" does not match the manifest's {str(entry['sha256'])[:12]}"
                )
        return manifest

    def inventory(self) -> list[StoredArtifact]:
        root = self.location.key(ARTIFACTS) + "/"
        found: dict[str, list[Any]] = {}
        for info in self.objects.list(root):
            cache_key, _, rest = info.key[len(root) :].partition("/")
            entry = found.setdefault(cache_key, [False, 0, info.last_modified])
            entry[0] = entry[0] or rest == MANIFEST
            entry[1] += info.size
            entry[2] = max(entry[2], info.last_modified)
        out = []
        for cache_key, (has_manifest, size, newest) in sorted(found.items()):
            complete = has_manifest and self.finished_manifest(cache_key) is not None
            out.append(StoredArtifact(cache_key, complete, size, newest))
        return out

    def unreferenced_since(self) -> dict[str, datetime]:
        root = self.location.key(GC_MARKS) + "/"
        marks = {}
        for info in self.objects.list(root):
            data = self.objects.read_bytes(info.key) or b""
            try:
                marks[info.key[len(root) :]] = datetime.fromisoformat(data.decode().strip())
            except ValueError:
                marks[info.key[len(root) :]] = info.last_modified
        return marks

    def mark_unreferenced(self, cache_key: str, since: datetime) -> None:
        self.objects.write_bytes(self.location.key(GC_MARKS, cache_key), since.isoformat().encode())

    def unmark(self, cache_key: str) -> None:
        self.objects.delete([self.location.key(GC_MARKS, cache_key)])

    def delete(self, cache_key: str) -> None:
        """The manifest first: from then on the artifact is gone for readers, whatever remains."""
        prefix = self.location.artifact_key(cache_key) + "/"
        self.objects.delete([self.location.artifact_key(cache_key, MANIFEST)])
        keys = [info.key for info in self.objects.list(prefix)]
        for start in range(0, len(keys), 1000):
            self.objects.delete(keys[start : start + 1000])


class FilesystemArtifacts:
    """The PVC store, as the GC and migration Jobs see it (mounted at `root`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.artifacts = root / ARTIFACTS

    def describe(self) -> str:
        return str(self.artifacts)

    def finished_manifest(self, cache_key: str) -> dict[str, Any] | None:
        manifest = read_manifest(self.artifacts / cache_key)
        return manifest if is_finished(manifest, cache_key) else None

    def inventory(self) -> list[StoredArtifact]:
        if not self.artifacts.is_dir():
            return []
        out = []
        for path in sorted(p for p in self.artifacts.iterdir() if p.is_dir()):
            # Staging and set-aside directories of builds are named <key>.tmp-* / <key>.stale-*.
            files = [f for f in path.rglob("*") if f.is_file()]
            newest = max((f.stat().st_mtime for f in files), default=path.stat().st_mtime)
            out.append(
                StoredArtifact(
                    path.name,
                    self.finished_manifest(path.name) is not None,
                    sum(f.stat().st_size for f in files),
                    datetime.fromtimestamp(newest, UTC),
                )
            )
        return out

    def unreferenced_since(self) -> dict[str, datetime]:
        marks = self.root / GC_MARKS
        if not marks.is_dir():
            return {}
        found = {}
        for mark in marks.iterdir():
            try:
                found[mark.name] = datetime.fromisoformat(mark.read_text("utf-8").strip())
            except (OSError, ValueError):
                found[mark.name] = datetime.fromtimestamp(mark.stat().st_mtime, UTC)
        return found

    def mark_unreferenced(self, cache_key: str, since: datetime) -> None:
        (self.root / GC_MARKS).mkdir(parents=True, exist_ok=True)
        (self.root / GC_MARKS / _safe_relative(cache_key)).write_text(since.isoformat(), "utf-8")

    def unmark(self, cache_key: str) -> None:
        (self.root / GC_MARKS / _safe_relative(cache_key)).unlink(missing_ok=True)

    def delete(self, cache_key: str) -> None:
        path = self.artifacts / _safe_relative(cache_key)
        (path / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)


def _safe_relative(path: str) -> str:
    """A manifest's path, refused if it would leave the artifact directory."""
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts:
        raise StoreError("ArtifactCorrupt", f"manifest names an unsafe path {path!r}")
    return path
