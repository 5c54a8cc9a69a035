"""Fixtures for tests on the real local control plane (see e2e/cluster)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.support.kube import REPO, ClusterHandle, delete_namespace, open_test_cluster, unique_name


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    """One control plane for the whole session, stopped at the end even on failure or ^C."""
    yield from open_test_cluster(f"qmo-test-{os.getpid()}")


@pytest.fixture(scope="session")
def crds(cluster: ClusterHandle) -> None:
    """The CRDs from crds/, applied the way users apply them, and Established."""
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/quantizedmodels.qmo.dev", "crd/qualityreports.qmo.dev",
    )  # fmt: skip


@pytest.fixture
def namespace(cluster: ClusterHandle) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = unique_name("t")
    core = cluster.core()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    delete_namespace(core, name)
