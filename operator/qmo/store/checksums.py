"""SHA-256 of artifact files, whole and in parts.

An artifact's manifest records each file's SHA-256, and for a file of more than one part the
SHA-256 of each `PART_BYTES` part too: a fetch from an object store streams parts in parallel
and checks each part in the thread that receives it, so verification runs on as many cores as
the download does (one core hashes about 1.1 GB/s here: the ceiling of a whole-file check).
Used by qmo.builder.artifact (writing manifests) and qmo.store.objects (checking fetches).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PART_BYTES = 32 * 1024 * 1024
_READ = 8 * 1024 * 1024


def sha256_file(path: Path) -> str:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def sha256_with_parts(path: Path, part_bytes: int = PART_BYTES) -> tuple[str, tuple[str, ...]]:
    """The file's SHA-256 and each part's, in one read; no part hashes for a one-part file."""
    whole = hashlib.sha256()
    parts = []
    with path.open("rb") as data:
        while True:
            part = hashlib.sha256()
            left = part_bytes
            while left and (chunk := data.read(min(_READ, left))):
                whole.update(chunk)
                part.update(chunk)
                left -= len(chunk)
            if left == part_bytes:
                break
            parts.append(part.hexdigest())
            if left:
                break
    return whole.hexdigest(), tuple(parts) if len(parts) > 1 else ()
