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

The fetch step of a serving pod runs as a sidecar for the pod's whole life (`hold`): it takes a
shared lock on its artifact's manifest before it lets go of the key's lock, and keeps it until
the pod ends, so the artifact outlives any restart of the server container. The server holds
one too while it runs (`SERVE_WITH_LOCK`). Eviction skips an entry whose key lock is taken (a
fetch of it is under way) or whose manifest it cannot lock exclusively without waiting, so an
artifact in use is never deleted. Called by `qmo-store fetch`.
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
    held: int | None = None  # the descriptor holding the shared lock (`hold`), if asked


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
            with (
                _flock(root / LOCKS / entry.cache_key, fcntl.LOCK_EX | fcntl.LOCK_NB) as idle,
                _flock(path / MANIFEST, fcntl.LOCK_EX | fcntl.LOCK_NB) as free,
            ):
                if not (idle and free):
                    continue  # being fetched, or held by a pod or a server
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
    hold: bool = False,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = print,
) -> FetchOutcome:
    """Make `root/<cache_key>` a verified copy of the artifact; reuse one already there.

    `hold`: also take a shared lock on it before the key's lock is released (so no eviction
    comes in between), returned as `held` for the caller to keep open."""
    started = clock()
    root.mkdir(parents=True, exist_ok=True)
    with _flock(root / LOCKS / cache_key, fcntl.LOCK_EX):
        manifest = cached(root, cache_key)
        if manifest is not None:
            _touch(root / cache_key)
            held = _shared_lock(root / cache_key) if hold else None
            return FetchOutcome(root / cache_key, True, int(manifest["totalBytes"]), 0.0, (), held)
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
        held = _shared_lock(root / cache_key) if hold else None
        return FetchOutcome(root / cache_key, False, need, clock() - started, tuple(evicted), held)


def _shared_lock(entry: Path) -> int:
    fd = os.open(entry / MANIFEST, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _touch(entry: Path) -> None:
    stamp = entry / LAST_USED
    stamp.touch()
    os.utime(stamp)


# The server side: hold a shared lock on the artifact for the server's lifetime. A server
# restarted while its artifact is away (fetched again by the sidecar) waits for it, rather
# than failing into the kubelet's back-off.
SERVE_WITH_LOCK = (
    "import fcntl, os, sys, time\n"
    "if not os.path.exists(sys.argv[1]):\n"
    "    print(f'waiting for {sys.argv[1]} in the node cache', file=sys.stderr, flush=True)\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(2)\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "fcntl.flock(fd, fcntl.LOCK_SH)\n"
    "os.set_inheritable(fd, True)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
