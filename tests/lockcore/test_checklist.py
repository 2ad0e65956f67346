"""The reference design's testing checklist, the lines about the lock, each automated with simulated time —
on the in-memory store and on DynamoDB (the serialised moto server, since the concurrent line uses real threads
and in-process moto is not atomic under them)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lockcore import machine as m
from lockcore.outcomes import Acquired, AcquireOutcome, HeldBySomeone, Released
from lockcore.record import Status
from lockcore.store import LockStore
from tests.lockcore.stores import SimClock, StoreUnderTest, client_for, dynamodb_store, memory_store

KEY = "build-router-plt"
BUILD_LEASE = 10 * 60


@pytest.fixture(params=["memory", "dynamodb"])
def world(request: pytest.FixtureRequest) -> Iterator[tuple[StoreUnderTest, SimClock]]:
    clock = SimClock()
    if request.param == "memory":
        under_test = memory_store(clock)
    else:
        under_test = dynamodb_store("moto-server", client_for(request.getfixturevalue("moto_server")), clock)
    yield under_test, clock
    under_test.close()


def build(store: LockStore, user: str) -> AcquireOutcome:
    return store.acquire(
        m.AcquireRequest(KEY, f"req-{user}", BUILD_LEASE, f"U-{user}", user, "router", "plt", f"cid-{user}")
    )


def test_single_user_builds_successfully(world: tuple[StoreUnderTest, SimClock]) -> None:
    store = world[0].store
    outcome = build(store, "alice")
    assert isinstance(outcome, Acquired) and outcome.token == 1
    assert (outcome.record.component, outcome.record.environment, outcome.record.correlation_id) == (
        "router", "plt", "cid-alice",
    )  # fmt: skip
    assert isinstance(store.release(KEY, "req-alice", 1, Status.COMPLETED), Released)


def test_concurrent_users_trigger_lock_notification(world: tuple[StoreUnderTest, SimClock]) -> None:
    store = world[0].store
    users = ["alice", "bob", "carol", "dan", "erin"]
    with ThreadPoolExecutor(len(users)) as pool:
        outcomes = list(pool.map(lambda user: build(store, user), users))
    winners = [o for o in outcomes if isinstance(o, Acquired)]
    notified = [o for o in outcomes if isinstance(o, HeldBySomeone)]
    assert len(winners) == 1 and len(notified) == 4
    holder = winners[0].record
    for told in notified:  # each is told who holds it, since when, and when it frees
        assert told.holder.locked_by_name == holder.locked_by_name
        assert told.holder.locked_at == holder.locked_at
        assert told.holder.lease_expires_at == holder.lease_expires_at


def test_lock_expires_after_ttl(world: tuple[StoreUnderTest, SimClock]) -> None:
    store, clock = world[0].store, world[1]
    assert isinstance(build(store, "alice"), Acquired)
    clock.advance(BUILD_LEASE - 1)
    assert isinstance(build(store, "bob"), HeldBySomeone)
    clock.advance(1)  # ten minutes: the lease has ended, whatever DynamoDB's TTL process has done
    taken = build(store, "bob")
    assert isinstance(taken, Acquired) and taken.token == 2


def test_ttl_cleanup_never_deletes_a_lock_or_its_token(world: tuple[StoreUnderTest, SimClock]) -> None:
    under_test, clock = world
    assert isinstance(build(under_test.store, "alice"), Acquired)
    clock.advance(3 * 24 * 3600)  # days later, when TTL deletion typically happens
    assert under_test.ttl_sweep(int(clock.now)) == []
    taken = build(under_test.store, "bob")
    assert isinstance(taken, Acquired) and taken.token == 2


@pytest.mark.parametrize("outcome", [Status.FAILED, Status.COMPLETED])
def test_a_finished_build_releases_the_lock_with_its_status(
    world: tuple[StoreUnderTest, SimClock], outcome: Status
) -> None:
    store = world[0].store
    assert isinstance(build(store, "alice"), Acquired)
    released = store.release(KEY, "req-alice", 1, outcome)
    assert isinstance(released, Released) and released.record.status is outcome
    state, record = store.state(KEY)
    assert state.value == outcome.value and record is not None and record.released_at is not None
    assert isinstance(build(store, "bob"), Acquired)
