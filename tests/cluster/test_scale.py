"""An idle fleet costs the API server nothing: resyncs read the cache and write nothing.

The small, asserting version of benchmarks/scale.py; the timings live in the benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.operator_process import OperatorProcess, running_operator
from tests.support.kube import ClusterHandle
from tests.support.scenario import a_model, create, wait_ready
from tests.support.waits import wait_until

MODELS = 8
RESYNC_SECONDS = 2.0


@pytest.fixture
def own_operator(
    cluster: ClusterHandle, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator of this namespace alone, with a short resync; the shared one pauses."""
    operator.stop()
    try:
        with running_operator(
            cluster.kubeconfig,
            tmp_path / "qmo.log",
            "--namespace",
            namespace,
            resync_seconds=RESYNC_SECONDS,
        ) as own:
            yield own
    finally:
        operator.start()


@pytest.mark.usefixtures("engine_store")
def test_an_idle_fleet_is_resynced_without_a_single_request(
    cluster: ClusterHandle, namespace: str, own_operator: OperatorProcess
) -> None:
    for i in range(MODELS):
        create(
            cluster, namespace, a_model(f"idle-{i}", precisions=["fp8"], gpu={"classes": ["h100"]})
        )
    for i in range(MODELS):
        wait_ready(cluster, namespace, f"idle-{i}")
    # The last status writes of the rollout may still be on their way: let the queue drain.
    wait_until(
        lambda: (
            own_operator.metric("qmo_reconcile_total") > 0
            and own_operator.metric("qmo_resyncs_total") >= 1
        ),
        timeout=120,  # generous: a loaded CI machine
        what="a first resync",
    )
    requests = own_operator.metric("qmo_api_requests_total")
    reconciles = own_operator.metric("qmo_reconcile_total")
    resyncs = own_operator.metric("qmo_resyncs_total")
    wait_until(
        lambda: (
            own_operator.metric("qmo_resyncs_total") >= resyncs + 2
            and own_operator.metric("qmo_reconcile_total") >= reconciles + 2 * MODELS
        ),
        timeout=120,  # generous: a loaded CI machine
        what="two more resyncs of every model",
    )
    assert own_operator.metric("qmo_api_requests_total") == requests, (
        "a resync of converged models made API requests"
    )
