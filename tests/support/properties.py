"""How many examples the property tests try: their defaults in CI, `pytest --count N` for
thousands on demand (set in tests/conftest.py before the test modules are imported)."""

from __future__ import annotations

COUNT: int | None = None


def examples(default: int) -> int:
    return COUNT or default
