"""Where a build's artifact goes: the PVC store (a directory renamed into place) or an object
store (files uploaded, manifest last). qmo.builder.pipeline stages the artifact in a local
directory either way and hands it to one of these; qmo.builder.cli picks which from the
pod's environment (qmo.store.location)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from qmo.builder import artifact
from qmo.builder.errors import BuildError
from qmo.store.artifacts import S3Artifacts
from qmo.store.objects import StoreError


class StoreUnavailable(BuildError):
    """The object store refused or could not be reached: retriable, with the store's reason."""


class Publisher(Protocol):
    def finished(self, cache_key: str) -> dict[str, Any] | None: ...
    def stage(self) -> tuple[Path, list[Path]]: ...
    def publish(self, staging: Path, manifest: Mapping[str, Any]) -> str: ...
    def publish_copy(self, source: Path, manifest: Mapping[str, Any]) -> str: ...


class DirectoryPublisher:
    """The PVC store: staging beside `output_dir`, one rename to publish."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def finished(self, cache_key: str) -> dict[str, Any] | None:
        return artifact.finished_manifest(self.output_dir, cache_key)

    def stage(self) -> tuple[Path, list[Path]]:
        removed = artifact.remove_stale_staging(self.output_dir)
        return artifact.new_staging(self.output_dir), removed

    def publish(self, staging: Path, manifest: Mapping[str, Any]) -> str:
        return str(artifact.publish(staging, self.output_dir, manifest))

    def publish_copy(self, source: Path, manifest: Mapping[str, Any]) -> str:
        raise BuildError("a copy goes from the claim to an object store, not to a claim")


class ObjectStorePublisher:
    """An object store: staged on the pod's scratch disk, then uploaded, manifest last."""

    def __init__(
        self, store: S3Artifacts, cache_key: str, scratch: Path, log: Callable[[str], None]
    ) -> None:
        self.store = store
        self.cache_key = cache_key
        self.scratch = scratch
        self.log = log

    def finished(self, cache_key: str) -> dict[str, Any] | None:
        try:
            return self.store.finished_manifest(cache_key)
        except StoreError as err:
            raise StoreUnavailable(str(err), reason=err.reason) from err

    def stage(self) -> tuple[Path, list[Path]]:
        output = self.scratch / self.cache_key
        removed = artifact.remove_stale_staging(output)
        return artifact.new_staging(output), removed

    def publish(self, staging: Path, manifest: Mapping[str, Any]) -> str:
        try:
            uri = self.store.publish(staging, self.cache_key, manifest)
        except StoreError as err:
            raise StoreUnavailable(str(err), reason=err.reason) from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.log(f"build {self.cache_key}: uploaded {manifest['totalBytes']} bytes to {uri}")
        return uri

    def publish_copy(self, source: Path, manifest: Mapping[str, Any]) -> str:
        """Upload a finished artifact from the claim (read-only: nothing there is removed)."""
        try:
            return self.store.publish(source, self.cache_key, manifest)
        except StoreError as err:
            raise StoreUnavailable(str(err), reason=err.reason) from err
