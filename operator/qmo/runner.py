"""Runs the operator process: metrics, health endpoints, kopf and the reconcile workers.

`qmo run` calls `run()`. kopf only feeds events into the work queue (see qmo.controller);
this module wires the process together and owns its lifetime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf
from prometheus_client import start_http_server

from qmo import metrics_auth, readiness
from qmo.config import OperatorConfig
from qmo.leader import IS_LEADER, ElectionConfig, LeaderElector, lead

log = logging.getLogger("qmo")
T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    """Process-level options of `qmo run`."""

    metrics_port: int = 8080
    health_port: int = 8081
    ready_port: int | None = None  # /readyz (qmo.readiness); None: not served
    metrics_auth: bool = False  # /metrics behind TokenReview and SubjectAccessReview
    metrics_tls: tuple[str, str] | None = None  # (certificate, key) files for /metrics
    verbose: bool = False
    leader_election: ElectionConfig | None = None  # None: this process always reconciles


async def run_operator(
    config: OperatorConfig, options: RunOptions, stop_flag: asyncio.Event | None = None
) -> None:
    """Run kopf with qmo's handlers until `stop_flag` is set or the process is signalled."""
    import qmo.controller  # noqa: F401  (registers the kopf handlers)

    # kopf runs the process and watches nothing itself: the informers watch, each in the
    # namespaces the config names, so kopf needs no rights of its own (no CRDs, no namespaces).
    await kopf.operator(
        standalone=True,
        clusterwide=True,
        liveness_endpoint=f"http://0.0.0.0:{options.health_port}/healthz",
        memo=kopf.Memo(config=config),
        stop_flag=stop_flag,
    )


def run(config: OperatorConfig, options: RunOptions) -> int:
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Metrics come up first, so a standby is scraped too (qmo_leader 0).
    if options.metrics_auth:
        from qmo.kube import KubeReviews, connect

        authorizer = metrics_auth.Authorizer(KubeReviews(connect()))
        metrics_auth.serve(options.metrics_port, authorizer, options.metrics_tls)
    else:
        start_http_server(options.metrics_port)
    election = options.leader_election
    if election is None:
        IS_LEADER.set(1)
        asyncio.run(_with_readiness(options, run_operator(config, options)))
        return 0
    return asyncio.run(_with_readiness(options, _run_elected(config, options, election)))


async def _with_readiness(options: RunOptions, work: Coroutine[Any, Any, T]) -> T:
    """`work`, with /readyz served beside it for the life of the process."""
    server = await readiness.serve(options.ready_port)
    try:
        return await work
    finally:
        if server is not None:
            server.close()


async def _run_elected(
    config: OperatorConfig, options: RunOptions, election: ElectionConfig
) -> int:
    """Acquire the Lease, then run kopf until it stops or the Lease is lost (exit non-zero)."""
    from qmo.kube import KubeLeaseClient, connect

    kube = await asyncio.to_thread(connect)
    client = KubeLeaseClient(
        kube, election.lease_namespace, election.lease_name, timeout=election.renew_deadline / 2
    )
    elector = LeaderElector(election, client)

    async def reconcile(stop: asyncio.Event) -> None:
        await run_operator(config, options, stop_flag=stop)

    return await lead(elector, reconcile, health_port=options.health_port)
