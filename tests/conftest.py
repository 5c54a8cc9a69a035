"""Test tiers: tests under tests/cluster need the local control plane and carry the
`cluster` marker, so `pytest -m 'not cluster'` runs the pure tier alone."""

from __future__ import annotations

from pathlib import Path

import pytest

CLUSTER_DIR = Path(__file__).parent / "cluster"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--count",
        type=int,
        default=None,
        help="examples per property test (default: a few hundred in CI)",
    )


def pytest_configure(config: pytest.Config) -> None:
    from tests.support import properties

    properties.COUNT = config.getoption("count")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)
