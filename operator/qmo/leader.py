"""Lease-based leader election: with several `qmo run` replicas, exactly one reconciles.

`qmo run --leader-elect` (see qmo.runner) calls `lead()`. The protocol is client-go's
leaderelection on a coordination.k8s.io/v1 Lease:

- A candidate reads the Lease every `retry_period`. It takes the Lease over when the Lease is
  free (no holder, after a graceful release) or when it has seen the *same* record, unchanged,
  for the record's `leaseDurationSeconds` of its own monotonic clock. Judging expiry by local
  observation, not by the `renewTime` the holder wrote, keeps clock skew between nodes out of
  the decision.
- Every update carries the resourceVersion that was read, so two candidates racing for an
  expired Lease cannot both win: the second gets 409 Conflict (and of two racing creates, the
  second gets 409 AlreadyExists).
- The leader renews every `retry_period`. When no renewal has succeeded for `renew_deadline`
  (or another holder shows up) it stops reconciling and the process exits non-zero, so the
  pod restarts as a standby. `renew_deadline < lease_duration` is what makes this safe: the
  old leader stops before any standby may consider the Lease expired.
- On a graceful stop (SIGTERM) the leader releases the Lease, and a standby takes over at its
  next retry.

Handover after a leader dies without releasing (kill -9, node loss): a standby acquires the
Lease at most `lease_duration + 2 * retry_period` after the leader's last renewal (19 s with
the defaults 15/10/2, typically about 17 s), plus one API round trip.

The decisions (`decide`, `lease_expired`, `next_record`, `released_record`) are pure;
`LeaderElector` is the state machine, with the clock and a `LeaseClient` injected; `lead()` is
the asyncio driver. This module does no Lease I/O itself: the `LeaseClient` that qmo.runner
injects is `qmo.kube.KubeLeaseClient`, which writes records through `record_to_spec` and reads
them through `stored_from_object` (tests inject an in-memory one).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Gauge

from qmo import probes

log = logging.getLogger("qmo.leader")

LOST_LEADERSHIP_EXIT_CODE = 3
"""`qmo run` exits with this code when it loses the Lease (1 is a crash, 2 bad arguments)."""

IS_LEADER = Gauge(
    "qmo_leader",
    "1 while this replica holds the leader Lease and reconciles; 0 on a standby.",
)


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class ElectionConfig:
    """Which Lease to compete for, as whom, and the client-go timing parameters (seconds)."""

    lease_name: str
    lease_namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        problems = []
        if not self.lease_name:
            problems.append("the Lease needs a name")
        if not self.lease_namespace:
            problems.append("the Lease needs a namespace (--lease-namespace or POD_NAMESPACE)")
        if not self.identity:
            problems.append("the candidate needs an identity")
        if not self.retry_period > 0:
            problems.append("retry period must be positive")
        if not self.renew_deadline > self.retry_period:
            problems.append("renew deadline must be longer than the retry period")
        if not self.lease_duration > self.renew_deadline:
            # Otherwise a standby could take over while the old leader still reconciles.
            problems.append("lease duration must be longer than the renew deadline")
        if problems:
            raise ValueError("invalid leader election settings: " + "; ".join(problems))

    @property
    def handover_bound(self) -> float:
        """Worst-case seconds from a dead leader's last renewal to a standby's takeover."""
        return self.lease_duration + 2 * self.retry_period


def default_identity() -> str:
    """The pod name (the chart sets POD_NAME), else host name plus a random suffix.

    The suffix matters outside Kubernetes: two processes on one host must not share an
    identity, or both would believe they hold the Lease.
    """
    pod = os.environ.get("POD_NAME", "")
    return pod or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


# --- the Lease record and the pure decisions -----------------------------------------------


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that leader election reads and writes."""

    holder: str  # "" once released
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int


@dataclass(frozen=True)
class StoredLease:
    record: LeaseRecord
    resource_version: str


class Action(enum.Enum):
    CREATE = "create"  # no Lease exists yet
    RENEW = "renew"  # we hold it
    TAKE_OVER = "take-over"  # free or expired
    WAIT = "wait"  # someone else holds a valid Lease


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def lease_expired(observed_at: float, duration_seconds: int, now: float) -> bool:
    """True once an unchanged record has been observed for its full lease duration."""
    return now - observed_at >= duration_seconds


def decide(current: LeaseRecord | None, identity: str, *, expired: bool) -> Decision:
    """What a candidate does with the Lease it just read."""
    if current is None:
        return Decision(Action.CREATE, "no Lease exists yet")
    if current.holder == identity:
        return Decision(Action.RENEW, "this candidate holds the Lease")
    if not current.holder:
        return Decision(Action.TAKE_OVER, "the Lease was released")
    if expired:
        return Decision(Action.TAKE_OVER, f"{current.holder} stopped renewing the Lease")
    return Decision(Action.WAIT, f"{current.holder} holds the Lease")


def next_record(
    current: LeaseRecord | None, identity: str, now: datetime, duration_seconds: int
) -> LeaseRecord:
    """The record to write when acquiring or renewing."""
    if current is not None and current.holder == identity:
        return replace(current, renew_time=now, lease_duration_seconds=duration_seconds)
    transitions = 0 if current is None else current.transitions + 1
    return LeaseRecord(identity, duration_seconds, now, now, transitions)


def released_record(current: LeaseRecord, now: datetime) -> LeaseRecord:
    """What a leader writes when it stops gracefully: no holder, so no one has to wait."""
    return LeaseRecord("", 1, now, now, current.transitions)


# --- I/O seams -------------------------------------------------------------------------------


class LeaseConflict(Exception):
    """Another candidate wrote the Lease first (409): re-read and decide again."""


class LeaseClient(Protocol):
    """Get, create and update of the one Lease (`qmo.kube.KubeLeaseClient` in `qmo run`); a
    write that loses a race raises LeaseConflict."""

    def get(self) -> StoredLease | None: ...

    def create(self, record: LeaseRecord) -> StoredLease: ...

    def update(self, record: LeaseRecord, resource_version: str) -> StoredLease: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


# --- the state machine -------------------------------------------------------------------


class LeaderElector:
    """One candidate. Remembers the last record it saw and since when, like client-go."""

    def __init__(
        self, config: ElectionConfig, client: LeaseClient, clock: Clock | None = None
    ) -> None:
        self.config = config
        self._client = client
        self._clock = clock or SystemClock()
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._last_renewal: float | None = None
        self.is_leader = False
        self.holder: str | None = None  # who holds the Lease, as last seen

    def try_acquire_or_renew(self) -> bool:
        """Read the Lease once and create, renew or take it over if allowed. True: we lead."""
        stored = self._client.get()
        current = stored.record if stored else None
        now = self._clock.monotonic()
        if current != self._observed:
            self._observed, self._observed_at = current, now
        self.holder = current.holder if current else None
        duration = current.lease_duration_seconds if current else 0
        decision = decide(
            current,
            self.config.identity,
            expired=lease_expired(self._observed_at, duration, now),
        )
        if decision.action is Action.WAIT:
            self.is_leader = False
            return False
        desired = next_record(
            current, self.config.identity, self._clock.now(), int(self.config.lease_duration)
        )
        try:
            if stored is None:
                written = self._client.create(desired)
            else:
                written = self._client.update(desired, stored.resource_version)
        except LeaseConflict:
            log.debug("Lease %s: lost a write race; re-reading", self.config.lease_name)
            return False
        if not self.is_leader:
            log.info(
                "Lease %s/%s acquired by %s: %s",
                self.config.lease_namespace,
                self.config.lease_name,
                self.config.identity,
                decision.reason,
            )
        self._observed, self._observed_at = written.record, self._clock.monotonic()
        self._last_renewal = self._observed_at
        self.is_leader = True
        self.holder = self.config.identity
        return True

    def leadership_lost(self) -> bool:
        """Whether a leader must stop: someone else holds the Lease, or renewals are overdue."""
        if self.holder not in (None, self.config.identity):
            return True
        if self._last_renewal is None:
            return True
        return self._clock.monotonic() - self._last_renewal > self.config.renew_deadline

    def release(self) -> bool:
        """Give the Lease up if we hold it, so a standby need not wait for it to expire."""
        stored = self._client.get()
        if stored is None or stored.record.holder != self.config.identity:
            return False
        try:
            self._client.update(
                released_record(stored.record, self._clock.now()), stored.resource_version
            )
        except LeaseConflict:
            return False
        self.is_leader = False
        log.info("Lease %s released by %s", self.config.lease_name, self.config.identity)
        return True


# --- the Lease object (qmo.kube.KubeLeaseClient reads and writes it with these) ----------


def _format_time(value: datetime | None) -> str | None:
    # MicroTime wants RFC 3339 with exactly six fractional digits.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def record_to_spec(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.lease_duration_seconds,
        "acquireTime": _format_time(record.acquire_time),
        "renewTime": _format_time(record.renew_time),
        "leaseTransitions": record.transitions,
    }


def stored_from_object(lease: dict[str, Any]) -> StoredLease:
    spec = lease.get("spec") or {}
    record = LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=_parse_time(spec.get("acquireTime")),
        renew_time=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )
    return StoredLease(record, lease["metadata"]["resourceVersion"])


# --- the asyncio driver ------------------------------------------------------------------

Work = Callable[[asyncio.Event], Awaitable[None]]
"""What the leader runs: returns when the event is set (or on its own, e.g. on SIGTERM)."""


async def _attempt(elector: LeaderElector) -> bool:
    """One try_acquire_or_renew off the event loop; an API error counts as a failed try."""
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(elector.try_acquire_or_renew),
            timeout=elector.config.renew_deadline,
        )
    except Exception as err:  # any failure to talk to the API is a failed try
        log.warning("Lease %s: could not read or write it: %s", elector.config.lease_name, err)
        return False


async def _serve_standby_health(port: int | None) -> asyncio.Server | None:
    """/healthz for a standby (kopf's own endpoint only starts with kopf, on the leader)."""
    return await probes.serve(port, {b"/healthz": lambda: (200, {"leader": False})})


async def _renew_until_lost(elector: LeaderElector, stop: asyncio.Event) -> bool:
    """Renew every retry period; True (after setting `stop`) once leadership is lost."""
    while True:
        await asyncio.sleep(elector.config.retry_period)
        if await _attempt(elector):
            continue
        if elector.leadership_lost():
            log.error(
                "Lease %s lost by %s (holder now %s): stopping reconciliation",
                elector.config.lease_name,
                elector.config.identity,
                elector.holder or "unknown",
            )
            IS_LEADER.set(0)
            stop.set()
            return True


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set `stop` until kopf installs its own handlers (it does, when it starts).

    Without this, a signal that lands between acquiring the Lease and kopf's start would kill
    the process without releasing the Lease, and the next replica would wait it out.
    """
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signum, stop.set)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


async def lead(elector: LeaderElector, work: Work, *, health_port: int | None = None) -> int:
    """Wait to become leader, run `work` while leading; the process exit code.

    0 after a signal or after `work` returned on its own (a held Lease is released first);
    LOST_LEADERSHIP_EXIT_CODE when the Lease was lost and `work` was stopped through its event.
    """
    config = elector.config
    stop = asyncio.Event()
    _stop_on_signals(stop)
    IS_LEADER.set(0)
    health = await _serve_standby_health(health_port)
    log.info(
        "Waiting to lead: Lease %s/%s, identity %s",
        config.lease_namespace,
        config.lease_name,
        config.identity,
    )
    try:
        while not stop.is_set() and not await _attempt(elector):
            await _wait(stop, config.retry_period)
        if not stop.is_set():
            IS_LEADER.set(1)  # at once, not after the standby's health server has closed
    finally:
        if health is not None:
            health.close()
            await health.wait_closed()
    if stop.is_set():  # signalled while standing by (or just after acquiring)
        if elector.is_leader:
            await asyncio.to_thread(elector.release)
        return 0

    # Started before `work`: kopf cancels every task created after it starts, not this one.
    renewing = asyncio.create_task(_renew_until_lost(elector, stop), name="qmo lease renewal")
    try:
        await work(stop)
    finally:
        lost = (
            renewing.done()
            and not renewing.cancelled()
            and renewing.exception() is None
            and renewing.result()
        )
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        if not lost:
            IS_LEADER.set(0)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(elector.release)
    return LOST_LEADERSHIP_EXIT_CODE if lost else 0
