"""Fixtures for tests on the real local control plane (see e2e/cluster)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubernetes import client

from e2e.operator_process import OperatorProcess, running_operator
from tests.support.kube import (
    ClusterHandle,
    apply_crds,
    delete_namespace,
    open_test_cluster,
    unique_name,
)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    """One control plane for the whole session, stopped at the end even on failure or ^C."""
    yield from open_test_cluster(f"qmo-test-{os.getpid()}")


@pytest.fixture(scope="session")
def crds(cluster: ClusterHandle) -> None:
    """The CRDs from crds/, applied the way users apply them, and Established."""
    apply_crds(cluster)


@pytest.fixture
def namespace(cluster: ClusterHandle) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = unique_name("t")
    core = cluster.core()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    delete_namespace(core, name)


@pytest.fixture(scope="session")
def operator(
    cluster: ClusterHandle, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """qmo itself, watching every namespace (a test may kill and restart it)."""
    log = tmp_path_factory.mktemp("operator") / "qmo.log"
    with running_operator(cluster.kubeconfig, log) as process:
        yield process


@pytest.fixture
def engine_store(cluster: ClusterHandle, namespace: str) -> Iterator[str]:
    """A bound ReadWriteMany claim `qmo-engines` (static PV: kwok has no provisioner)."""
    volume = f"engines-{namespace}"
    cluster.apply_yaml(
        f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {volume}}}
spec:
  capacity: {{storage: 500Gi}}
  accessModes: [ReadWriteMany]
  hostPath: {{path: /tmp/{volume}}}
  claimRef: {{namespace: {namespace}, name: qmo-engines}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: qmo-engines, namespace: {namespace}}}
spec:
  accessModes: [ReadWriteMany]
  resources: {{requests: {{storage: 500Gi}}}}
  storageClassName: ""
  volumeName: {volume}
"""
    )
    yield "qmo-engines"
    cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)
