"""The node-local artifact cache that serving pods start from.

Layout under the cache root (a hostPath directory shared by the node's qmo pods, or a pod's
own emptyDir):

    <key>/                  a finished, verified artifact (its manifest included)
    <key>.tmp-<random>/     a fetch in progress (never read by a server)
    .locks/<key>            one fetch of a key at a time on the node
    .locks/evict            one eviction pass at a time

A fetch takes the key's lock, reuses `<key>/` when its manifest is finished and every file has
the manifest's size (the bytes were checked against the SHA-256s when they were fetched, and
only this step writes here: servers mount the cache read-only), otherwise evicts the least
recently used entries until the artifact fits under `max_bytes`, downloads into a temporary
directory, checking every file as it arrives, and renames it into place.

A server holds a shared lock on its artifact's manifest for as long as it runs
(`serve_with_lock`); eviction takes an exclusive lock without waiting and skips an entry it
cannot lock, so an artifact in use is never deleted. Called by `qmo-store fetch`.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmo.store.artifacts import S3Artifacts, is_finished, read_manifest
from qmo.store.location import MANIFEST
from qmo.store.objects import StoreError

LOCKS = ".locks"
TMP_INFIX = ".tmp-"
LAST_USED = ".qmo-last-used"


@dataclass(frozen=True)
class CacheEntry:
    cache_key: str
    bytes: int
    last_used: float


@dataclass(frozen=True)
class FetchOutcome:
    path: Path
    hit: bool
    bytes: int
    seconds: float
    evicted: tuple[str, ...] = ()


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[bool]:
    """Hold an flock on `path` (created if missing); yields False if LOCK_NB could not get it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def cached(root: Path, cache_key: str) -> dict[str, Any] | None:
    """The manifest of a usable cached copy: finished, and every file of the right size."""
    entry = root / cache_key
    manifest = read_manifest(entry)
    if not is_finished(manifest, cache_key):
        return None
    assert manifest is not None
    for item in manifest["files"]:
        path = entry / str(item["path"])
        try:
            if path.stat().st_size != int(item["bytes"]):
                return None
        except OSError:
            return None
    return manifest


def entries(root: Path) -> list[CacheEntry]:
    """Cached artifacts and fetches in progress, with their sizes and last use."""
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        stamp = path / LAST_USED
        used = stamp.stat().st_mtime if stamp.exists() else path.stat().st_mtime
        out.append(CacheEntry(path.name, size, used))
    return out


def eviction_order(found: list[CacheEntry], keep: str) -> list[CacheEntry]:
    """PURE: the finished entries to try evicting, least recently used first."""
    return sorted(
        (e for e in found if e.cache_key != keep and TMP_INFIX not in e.cache_key),
        key=lambda e: (e.last_used, e.cache_key),
    )


def _make_room(root: Path, need: int, max_bytes: int, keep: str) -> list[str]:
    """Evict least recently used entries no server holds until `need` more bytes fit."""
    evicted: list[str] = []
    with _flock(root / LOCKS / "evict", fcntl.LOCK_EX):
        found = entries(root)
        used = sum(e.bytes for e in found)
        for entry in eviction_order(found, keep):
            if used + need <= max_bytes:
                break
            path = root / entry.cache_key
            with _flock(path / MANIFEST, fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
                if not free:
                    continue  # a running server holds it
                # Manifest first: a half-deleted entry is never taken for a finished one.
                (path / MANIFEST).unlink(missing_ok=True)
                shutil.rmtree(path, ignore_errors=True)
            used -= entry.bytes
            evicted.append(entry.cache_key)
        if used + need > max_bytes:
            raise StoreError(
                "CacheFull",
                f"the node cache holds {used} bytes in use and {need} more do not fit under "
                f"its limit of {max_bytes}",
            )
    return evicted


def fetch(
    artifacts: S3Artifacts,
    cache_key: str,
    root: Path,
    *,
    max_bytes: int,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = print,
) -> FetchOutcome:
    """Make `root/<cache_key>` a verified copy of the artifact; reuse one already there."""
    started = clock()
    root.mkdir(parents=True, exist_ok=True)
    with _flock(root / LOCKS / cache_key, fcntl.LOCK_EX):
        manifest = cached(root, cache_key)
        if manifest is not None:
            _touch(root / cache_key)
            return FetchOutcome(root / cache_key, True, int(manifest["totalBytes"]), 0.0)
        for leftover in root.glob(f"{cache_key}{TMP_INFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)  # of a fetch killed half-way
        stale = root / cache_key
        if stale.exists():  # unfinished or damaged: fetched again
            shutil.rmtree(stale, ignore_errors=True)
        remote = artifacts.finished_manifest(cache_key)
        if remote is None:
            raise StoreError(
                "ArtifactIncomplete",
                f"{artifacts.describe()}/{cache_key} has no finished manifest",
            )
        # The files, and the manifest written beside them.
        need = int(remote["totalBytes"]) + len(json.dumps(remote, indent=2)) + 1
        evicted = _make_room(root, need, max_bytes, cache_key)
        for key in evicted:
            log(f"cache: evicted {key} (least recently used) to make room for {cache_key}")
        staging = root / f"{cache_key}{TMP_INFIX}{secrets.token_hex(4)}"
        try:
            manifest = artifacts.fetch(cache_key, staging)
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
            os.rename(staging, root / cache_key)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _touch(root / cache_key)
        return FetchOutcome(root / cache_key, False, need, clock() - started, tuple(evicted))


def _touch(entry: Path) -> None:
    stamp = entry / LAST_USED
    stamp.touch()
    os.utime(stamp)


# The server side: hold a shared lock on the artifact for the server's lifetime.
SERVE_WITH_LOCK = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "fcntl.flock(fd, fcntl.LOCK_SH)\n"
    "os.set_inheritable(fd, True)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
