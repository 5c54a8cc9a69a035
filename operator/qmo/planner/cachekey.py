"""Content keys of builds: equal keys share one artifact, across revisions and models."""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_VERSION = 1  # bump when the artifact format changes, so old artifacts are not reused


def cache_key(content: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that makes a build unique."""
    canonical = json.dumps(
        {"v": KEY_VERSION, **content}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def short_key(key: str) -> str:
    """The first 16 hex digits (64 bits): enough to name objects and fit label values."""
    return key[:16]
