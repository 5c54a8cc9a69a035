"""A file's SHA-256, whole and by parts, as manifests record it (qmo.store.checksums)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from qmo.store.checksums import sha256_with_parts


@pytest.mark.parametrize(
    ("size", "parts"),
    [(0, 0), (5, 0), (10, 0), (11, 2), (20, 2), (21, 3)],
    ids=["empty", "under a part", "one whole part", "just over", "two whole parts", "three"],
)
def test_parts_cover_the_file_and_the_whole_hash_is_the_files(
    tmp_path: Path, size: int, parts: int
) -> None:
    data = bytes(range(256))[:size] if size <= 256 else b""
    path = tmp_path / "f"
    path.write_bytes(data)
    whole, found = sha256_with_parts(path, part_bytes=10)
    assert whole == hashlib.sha256(data).hexdigest()
    assert len(found) == parts
    expected = [hashlib.sha256(data[i : i + 10]).hexdigest() for i in range(0, size, 10)]
    assert list(found) == (expected if parts else [])
