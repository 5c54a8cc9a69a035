"""Leader election decisions, with an in-memory Lease store and a hand-driven clock."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from qmo.leader import (
    Action,
    ElectionConfig,
    LeaderElector,
    LeaseClient,
    LeaseConflict,
    LeaseRecord,
    StoredLease,
    decide,
    lease_expired,
    next_record,
    record_to_spec,
    released_record,
    stored_from_object,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def held_by(holder: str, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, 15, T0, T0, transitions)


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds - 1000.0)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@dataclass
class FakeLeases:
    """One Lease with the API server's optimistic concurrency (resourceVersion, 409)."""

    stored: StoredLease | None = None
    version: int = 0
    fail_reads: bool = False

    def get(self) -> StoredLease | None:
        if self.fail_reads:
            raise ConnectionError("apiserver unreachable")
        return self.stored

    def create(self, record: LeaseRecord) -> StoredLease:
        if self.stored is not None:
            raise LeaseConflict("already exists")
        return self._write(record)

    def update(self, record: LeaseRecord, resource_version: str) -> StoredLease:
        if self.stored is None or self.stored.resource_version != resource_version:
            raise LeaseConflict("the object has been modified")
        return self._write(record)

    def _write(self, record: LeaseRecord) -> StoredLease:
        self.version += 1
        self.stored = StoredLease(record, str(self.version))
        return self.stored


def candidate(name: str, leases: LeaseClient, clock: FakeClock) -> LeaderElector:
    config = ElectionConfig(lease_name="qmo", lease_namespace="qmo-system", identity=name)
    return LeaderElector(config, leases, clock)


@pytest.mark.parametrize(
    ("current", "expired", "action"),
    [
        (None, False, Action.CREATE),
        (held_by("me"), False, Action.RENEW),
        (held_by("me"), True, Action.RENEW),
        (held_by(""), False, Action.TAKE_OVER),
        (held_by("other"), True, Action.TAKE_OVER),
        (held_by("other"), False, Action.WAIT),
    ],
    ids=[
        "a missing Lease is created",
        "the holder renews",
        "the holder renews even when a standby would call it expired",
        "a released Lease is taken at once",
        "an expired Lease of another holder is taken over",
        "a valid Lease of another holder is left alone",
    ],
)
def test_a_candidate_decides_from_the_lease_it_read(
    current: LeaseRecord | None, expired: bool, action: Action
) -> None:
    assert decide(current, "me", expired=expired).action is action


@pytest.mark.parametrize(
    ("observed_for", "expired"),
    [(0.0, False), (14.9, False), (15.0, True), (40.0, True)],
    ids=["just seen", "just before the duration", "at the duration", "long after"],
)
def test_a_lease_expires_after_its_duration_of_unchanged_observation(
    observed_for: float, expired: bool
) -> None:
    assert lease_expired(100.0, 15, 100.0 + observed_for) is expired


def test_renewing_keeps_the_acquire_time_and_the_transition_count() -> None:
    later = T0 + timedelta(seconds=30)
    renewed = next_record(held_by("me", transitions=4), "me", later, 15)
    assert (renewed.acquire_time, renewed.renew_time, renewed.transitions) == (T0, later, 4)


def test_taking_over_counts_a_transition_and_restarts_the_acquire_time() -> None:
    later = T0 + timedelta(seconds=30)
    taken = next_record(held_by("old", transitions=4), "new", later, 15)
    assert (taken.holder, taken.acquire_time, taken.transitions) == ("new", later, 5)


def test_a_released_lease_has_no_holder_and_a_one_second_duration() -> None:
    released = released_record(held_by("me", transitions=2), T0)
    assert (released.holder, released.lease_duration_seconds, released.transitions) == ("", 1, 2)


@pytest.mark.parametrize(
    ("durations", "problem"),
    [
        ((15, 10, 0), "retry period must be positive"),
        ((15, 2, 2), "renew deadline must be longer than the retry period"),
        ((10, 10, 2), "lease duration must be longer than the renew deadline"),
    ],
    ids=["zero retry period", "deadline not above retry", "duration not above deadline"],
)
def test_unsafe_timings_are_refused_with_the_reason(
    durations: tuple[float, float, float], problem: str
) -> None:
    duration, deadline, retry = durations
    with pytest.raises(ValueError, match=problem):
        ElectionConfig("qmo", "ns", "me", duration, deadline, retry)


def test_the_documented_handover_bound_with_the_defaults_is_19_seconds() -> None:
    assert ElectionConfig("qmo", "ns", "me").handover_bound == 19.0


def test_the_first_candidate_creates_the_lease_and_leads() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a = candidate("a", leases, clock)
    assert a.try_acquire_or_renew()
    assert leases.stored is not None
    assert leases.stored.record.holder == "a"


def test_a_second_candidate_waits_while_the_leader_renews() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a, b = candidate("a", leases, clock), candidate("b", leases, clock)
    assert a.try_acquire_or_renew()
    for _ in range(20):  # 40 s of renewals every 2 s: b never sees the same record for 15 s
        clock.advance(2)
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert b.holder == "a"


def test_a_standby_takes_over_only_after_a_full_lease_duration_without_renewal() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a, b = candidate("a", leases, clock), candidate("b", leases, clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b first sees a's record now
    clock.advance(14)
    assert not b.try_acquire_or_renew()
    clock.advance(1)
    assert b.try_acquire_or_renew()
    assert leases.stored is not None
    assert (leases.stored.record.holder, leases.stored.record.transitions) == ("b", 1)


def test_a_standby_that_starts_late_still_waits_a_full_duration() -> None:
    """Expiry is judged by local observation, so a skewed renewTime cannot shorten it."""
    leases, clock = FakeLeases(), FakeClock()
    a = candidate("a", leases, clock)
    assert a.try_acquire_or_renew()
    clock.advance(600)  # a died long ago, but b has only just started watching
    b = candidate("b", leases, clock)
    assert not b.try_acquire_or_renew()
    clock.advance(15)
    assert b.try_acquire_or_renew()


@dataclass
class StaleRead:
    """c's view: every read returns the record both candidates saw before b wrote."""

    snapshot: StoredLease | None
    server: FakeLeases

    def get(self) -> StoredLease | None:
        return self.snapshot

    def create(self, record: LeaseRecord) -> StoredLease:
        return self.server.create(record)

    def update(self, record: LeaseRecord, resource_version: str) -> StoredLease:
        return self.server.update(record, resource_version)


def test_only_one_of_two_racing_candidates_wins_an_expired_lease() -> None:
    leases, clock = FakeLeases(), FakeClock()
    assert candidate("a", leases, clock).try_acquire_or_renew()
    b = candidate("b", leases, clock)
    c = candidate("c", StaleRead(leases.get(), leases), clock)
    assert not b.try_acquire_or_renew()
    assert not c.try_acquire_or_renew()
    clock.advance(15)
    assert b.try_acquire_or_renew()
    assert not c.try_acquire_or_renew()  # its write carries the old resourceVersion: 409
    assert leases.stored is not None
    assert leases.stored.record.holder == "b"


def test_a_released_lease_is_taken_without_waiting() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a, b = candidate("a", leases, clock), candidate("b", leases, clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.release()
    assert b.try_acquire_or_renew()


def test_a_candidate_that_does_not_hold_the_lease_does_not_release_it() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a, b = candidate("a", leases, clock), candidate("b", leases, clock)
    assert a.try_acquire_or_renew()
    assert not b.release()
    assert leases.stored is not None
    assert leases.stored.record.holder == "a"


def test_a_leader_that_cannot_renew_gives_up_after_the_renew_deadline() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a = candidate("a", leases, clock)
    assert a.try_acquire_or_renew()
    leases.fail_reads = True
    clock.advance(10)
    assert not a.leadership_lost()
    clock.advance(0.5)
    assert a.leadership_lost()


def test_a_leader_that_sees_another_holder_gives_up_at_once() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a = candidate("a", leases, clock)
    assert a.try_acquire_or_renew()
    assert leases.stored is not None
    leases.stored = replace(leases.stored, record=held_by("b"))
    assert not a.try_acquire_or_renew()
    assert a.leadership_lost()


def test_lease_times_round_trip_through_the_api_format_with_microseconds() -> None:
    record = LeaseRecord("a", 15, T0, T0 + timedelta(microseconds=5), 3)
    spec = record_to_spec(record)
    assert spec["acquireTime"] == "2026-01-01T12:00:00.000000Z"
    lease = {"metadata": {"resourceVersion": "7"}, "spec": spec}
    assert stored_from_object(lease) == StoredLease(record, "7")
