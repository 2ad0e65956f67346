"""What every store offers beyond the races: reading, listing, argument checks, the record's mapping — on the
in-memory store and on DynamoDB (moto in this process)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from lockcore import machine as m
from lockcore.dynamodb import DynamoDBLockStore
from lockcore.memory import MemoryLockStore
from lockcore.outcomes import Acquired, ForceReleased, MarkedExpired, Noted, NotHolder, Refusal, Released
from lockcore.record import LockRecord, Status, epoch, iso
from tests.lockcore.stores import SimClock, StoreUnderTest, client_for, dynamodb_store, memory_store

KEY = "build-router-plt"
T = TypeVar("T")


@pytest.fixture(params=["memory", "dynamodb"])
def world(request: pytest.FixtureRequest) -> Iterator[tuple[StoreUnderTest, SimClock]]:
    clock = SimClock()
    if request.param == "memory":
        under_test = memory_store(clock)
    else:
        request.getfixturevalue("in_process_aws")
        under_test = dynamodb_store("moto", client_for(None), clock)
    yield under_test, clock
    under_test.close()


def acquire(under_test: StoreUnderTest, key: str, owner: str, lease: int = 600) -> int:
    outcome = under_test.store.acquire(m.AcquireRequest(key, owner, lease, f"U-{owner}", owner, "router", "plt"))
    assert isinstance(outcome, Acquired)
    return outcome.token


def test_get_state_and_list(world: tuple[StoreUnderTest, SimClock]) -> None:
    under_test, clock = world
    store = under_test.store
    assert store.get(KEY) is None
    assert store.state(KEY) == (m.LockState.FREE, None)
    acquire(under_test, KEY, "req-a")
    acquire(under_test, "deploy-api-prod", "req-b", lease=30)
    acquire(under_test, "build-api-plt", "req-c")
    store.release("build-api-plt", "req-c", 1, Status.FAILED)
    record = store.get(KEY)
    assert record is not None and (record.owner, record.token, record.status) == ("req-a", 1, Status.IN_PROGRESS)
    state, same = store.state(KEY)
    assert state is m.LockState.HELD and same == record
    assert [r.lock_key for r in store.list()] == ["build-router-plt", "deploy-api-prod"]
    clock.advance(30)
    assert [r.lock_key for r in store.list()] == ["build-router-plt"]
    assert store.state("deploy-api-prod")[0] is m.LockState.LAPSED
    everything = store.list(include_free=True)
    assert [(r.lock_key, r.status) for r in everything] == [
        ("build-api-plt", Status.FAILED),
        ("build-router-plt", Status.IN_PROGRESS),
        ("deploy-api-prod", Status.IN_PROGRESS),
    ]


def test_a_refusal_carries_the_record_as_it_is(world: tuple[StoreUnderTest, SimClock]) -> None:
    under_test, clock = world
    store = under_test.store
    acquire(under_test, KEY, "req-a", lease=60)
    clock.advance(60)
    acquire(under_test, KEY, "req-b")
    current = store.get(KEY)
    for refused in (
        store.release(KEY, "req-a", 1, Status.COMPLETED),
        store.extend(KEY, "req-a", 1, 60),
        store.note(KEY, "req-a", 1, runId="7"),
        store.force_release(KEY, 1, "U-admin", "stale"),
        store.expire(KEY, 1),
    ):
        assert isinstance(refused, NotHolder)
        assert refused.reason is Refusal.STALE_TOKEN and refused.current == current
    missing = store.release("build-nothing-plt", "req-a", 1, Status.COMPLETED)
    assert missing == NotHolder(Refusal.NO_LOCK, None)


def test_force_release_repeated_by_the_same_admin_answers_the_same(world: tuple[StoreUnderTest, SimClock]) -> None:
    under_test, _ = world
    store = under_test.store
    acquire(under_test, KEY, "req-a")
    first = store.force_release(KEY, 1, "U-admin", "runner died")
    again = store.force_release(KEY, 1, "U-admin", "runner died")
    other = store.force_release(KEY, 1, "U-other", "me too")
    assert isinstance(first, ForceReleased) and not first.repeated
    assert (first.record.released_by, first.record.release_reason) == ("U-admin", "runner died")
    assert isinstance(again, ForceReleased) and again.repeated and again.record == first.record
    assert other == NotHolder(Refusal.NOT_HELD, first.record)


def test_the_reaper_records_expiry_only_after_the_lease(world: tuple[StoreUnderTest, SimClock]) -> None:
    under_test, clock = world
    store = under_test.store
    acquire(under_test, KEY, "req-a", lease=60)
    early = store.expire(KEY, 1)
    assert isinstance(early, NotHolder) and early.reason is Refusal.LEASE_RUNS
    clock.advance(60)
    marked = store.expire(KEY, 1)
    assert isinstance(marked, MarkedExpired) and marked.record.status is Status.EXPIRED
    assert marked.record.released_at == iso(int(clock.now))
    again = store.expire(KEY, 1)  # a second reaper: the same answer, nothing written
    assert isinstance(again, MarkedExpired) and again.repeated and again.record == marked.record
    late = store.extend(KEY, "req-a", 1, 60)
    assert isinstance(late, NotHolder) and late.reason is Refusal.LEASE_ENDED
    recorded = store.release(KEY, "req-a", 1, Status.FAILED)  # its outcome, late: nobody replaced it
    assert isinstance(recorded, Released) and recorded.record.status is Status.FAILED


def test_notes_are_kept_and_refused_after_the_lease(world: tuple[StoreUnderTest, SimClock]) -> None:
    under_test, clock = world
    store = under_test.store
    acquire(under_test, KEY, "req-a", lease=60)
    noted = store.note(KEY, "req-a", 1, runId="42", runUrl="https://github.example/run/42")
    assert isinstance(noted, Noted) and noted.record.notes == {
        "runId": "42",
        "runUrl": "https://github.example/run/42",
    }
    wrong_owner = store.note(KEY, "req-b", 1, runId="1")
    assert isinstance(wrong_owner, NotHolder) and wrong_owner.reason is Refusal.NOT_OWNER
    clock.advance(60)
    late = store.note(KEY, "req-a", 1, runId="43")
    assert isinstance(late, NotHolder) and late.reason is Refusal.LEASE_ENDED
    assert late.current is not None and late.current.notes["runId"] == "42"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.acquire(m.AcquireRequest(KEY, "req-a", 0)), "at least one second"),
        (lambda s: s.extend(KEY, "req-a", 1, 0), "at least one second"),
        (lambda s: s.release(KEY, "req-a", 1, Status.EXPIRED), "COMPLETED or FAILED, not EXPIRED"),
        (lambda s: s.force_release(KEY, 1, "", "why"), "who did it and why"),
        (lambda s: s.force_release(KEY, 1, "U-admin", ""), "who did it and why"),
        (lambda s: s.note(KEY, "req-a", 1, secret="x"), "not ['secret']"),
        (lambda s: s.note(KEY, "req-a", 1), "a holder notes some of command, ref"),
    ],
)
def test_a_request_that_cannot_be_right_is_refused_before_any_write(call: object, message: str) -> None:
    store = MemoryLockStore(SimClock())
    with pytest.raises(ValueError, match=re.escape(message)):
        call(store)  # type: ignore[operator]
    assert store.list(include_free=True) == []


def test_the_default_clock_is_the_wall_clock() -> None:
    store = MemoryLockStore()
    assert abs(store.now() - time.time()) < 5


def test_the_record_maps_to_the_item_and_back() -> None:
    record = LockRecord(
        lock_key=KEY, token=3, owner="req-a", status=Status.FORCE_RELEASED, locked_by="U1", locked_by_name="alice",
        locked_at="2026-11-27T10:00:00Z", lease_expires_at=1_800_000_600, component="router", environment="plt",
        correlation_id="cid-1", released_at="2026-11-27T10:01:00Z", released_by="U-admin", release_reason="stuck",
        notes={"runId": "42"},
    )  # fmt: skip
    assert LockRecord.from_item(record.to_item()) == record
    body = record.as_json()
    assert body["leaseExpiresAt"] == 1_800_000_600 and body["leaseExpiresAtIso"] == iso(1_800_000_600)
    assert body["releasedBy"] == "U-admin" and body["runId"] == "42" and "ttl" not in body


@pytest.mark.usefixtures("in_process_aws")
def test_create_table_is_idempotent_and_turns_ttl_on() -> None:
    client = client_for(None)
    store = DynamoDBLockStore("created-by-store", client=client)
    assert store.create_table() is True
    assert store.create_table() is False
    ttl = client.describe_time_to_live(TableName="created-by-store")["TimeToLiveDescription"]
    assert (ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")) == ("ENABLED", "ttl")
    described = client.describe_table(TableName="created-by-store")["Table"]
    assert described.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST"
    assert described.get("KeySchema") == [{"AttributeName": "lockKey", "KeyType": "HASH"}]
    client.delete_table(TableName="created-by-store")


def test_times_are_iso_8601_utc_and_read_back() -> None:
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1_800_000_061) == "2027-01-15T08:01:01Z"
    assert epoch(iso(1_800_000_061)) == 1_800_000_061


def test_freeing_writes_decided_from_the_callers_read_are_one_dynamodb_request(in_process_aws: None) -> None:
    """Counted on the wire (botocore's before-send, one per HTTP attempt): with a queue or watchers, release,
    force-release and expire decided from the record the caller read each send one UpdateItem; blind, two."""
    clock = SimClock()
    under_test = dynamodb_store("moto", client_for(None), clock)
    store = under_test.store
    assert isinstance(store, DynamoDBLockStore)
    sent: list[str] = []
    store.client.meta.events.register("before-send.dynamodb.*", lambda event_name, **_: sent.append(event_name))

    def requests(operation: Callable[[], T]) -> tuple[int, T]:
        sent.clear()
        outcome = operation()
        return len(sent), outcome

    def join(owner: str) -> None:
        store.acquire(m.AcquireRequest(KEY, owner, 60, queue=True))

    acquire(under_test, KEY, "req-a")
    for owner in ("req-b", "req-c", "req-d"):
        join(owner)
    blind = requests(lambda: store.release(KEY, "req-a", 1, Status.COMPLETED))
    assert blind[0] == 2 and blind[1].handed_to is not None  # type: ignore[union-attr]  # refused, then handed
    read = store.get(KEY)
    released = requests(lambda: store.release(KEY, "req-b", 2, Status.COMPLETED, seen=read))
    assert released[0] == 1 and released[1].handed_to is not None  # type: ignore[union-attr]
    read = store.get(KEY)
    forced = requests(lambda: store.force_release(KEY, 3, "U-admin", "stuck", seen=read))
    assert forced[0] == 1 and forced[1].handed_to is not None  # type: ignore[union-attr]
    store.watch(KEY, "U-watcher")
    clock.advance(61)
    read = store.get(KEY)
    assert read is not None and (read.owner, read.token) == ("req-d", 4)
    expired = requests(lambda: store.expire(KEY, 4, seen=read))
    assert expired[0] == 1 and expired[1] == MarkedExpired(expired[1].record, notify=("U-watcher",))  # type: ignore[union-attr]
    under_test.close()
