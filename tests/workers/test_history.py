"""The history writer: the pure derivation under Hypothesis (against lockcore's own writes, in memory), and the
Lambda end to end on moto — the lock table's real DynamoDB Stream read with ``GetRecords``, handed to the handler
as Lambda would, the events read back from the history table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import hypothesis
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from lockcore import AcquireRequest, MemoryLockStore, Status
from lockcore.dynamodb import DynamoDBLockStore
from lockcore.expressions import Item
from lockcore.record import LockRecord, epoch, iso
from tests.system.twins import HistoryTwin
from tests.workers import sqs_events as sqs
from tests.workers.worker_world import create_idempotency_table, create_queues
from workers.adapters import runtime
from workers.adapters.history_table import HISTORY_TABLE_ENV, forget, history_table
from workers.flows.history import HISTORY_LAG_SECONDS, resumed_write_took_effect
from workers.handlers import history as history_lambda
from workers.local.motoserver import LOCAL_CREDENTIALS
from workers.protocol.config import Queue
from workers.protocol.history import BEGINNINGS, ENDINGS, ROLLBACK_NOTED, EventKind, HistoryEvent, events_of

KEY = "build-router-plt"
LOCK_TABLE = "chatops-locks-history-test"
HISTORY_TABLE = "chatops-history-test"


class Clock:
    def __init__(self, now: float = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


OWNERS = ("alice-req", "bob-req", "carol-req")
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["acquire", "queue", "complete", "fail", "extend", "force", "cancel", "expire", "note", "note-commit"]
        ),
        st.sampled_from(OWNERS),
        st.integers(min_value=0, max_value=900),
    ),
    max_size=25,
)


def _item(store: MemoryLockStore, key: str = KEY) -> Item | None:
    """The item as the stream shows it: every attribute (a record leaves out the queue's ``previous…``)."""
    item = store._read(key)
    return dict(item) if item is not None else None


def _apply(store: MemoryLockStore, operation: str, owner: str) -> None:
    current = store.get(KEY)
    token = current.token if current is not None else 1
    holder = current.owner if current is not None else owner
    match operation:
        case "acquire" | "queue":
            user = f"U{owner[:3].upper()}"
            store.acquire(AcquireRequest(KEY, owner, 600, user, owner, queue=operation == "queue"))
        case "complete" | "fail":
            store.release(KEY, holder, token, Status.COMPLETED if operation == "complete" else Status.FAILED)
        case "extend":
            store.extend(KEY, holder, token, 900)
        case "force":
            store.force_release(KEY, token, by="U0ADMIN", reason="force unlock from Slack by admin")
        case "cancel":
            store.force_release(KEY, token, by="U0ALICE", reason="cancelled from Slack by alice")
        case "expire":
            store.expire(KEY, token)
        case "note":
            store.note(KEY, holder, token, runId="42")
        case "note-commit":  # what the build worker notes before a dispatch (a rollback's too, on odd tokens)
            rolled = {"rollback": ROLLBACK_NOTED} if token % 2 else {}
            store.note(KEY, holder, token, ref=f"v{token}", commitSha=noted_sha(token), **rolled)


def noted_sha(token: int) -> str:
    return f"{token:040x}"


@given(operations)
def test_every_change_yields_the_events_it_means(steps: list[tuple[str, str, int]]) -> None:
    clock = Clock()
    store = MemoryLockStore(clock)
    noted: set[int] = set()
    for operation, owner, wait in steps:
        clock.now += wait
        old = _item(store)
        _apply(store, operation, owner)
        new = _item(store)
        if new is not None and "commitSha" in new:
            noted.add(int(new["token"]))
        events = events_of(old, new, int(clock.now))
        for ending in (e for e in events if e.kind in ENDINGS):  # each ending names what its holding ran, if noted
            sha = noted_sha(ending.token) if ending.token in noted else ""
            assert (ending.commit_sha, ending.ref) == (sha, f"v{ending.token}" if sha else "")
            assert ending.rollback is bool(sha and ending.token % 2)
        beginnings = [e for e in events if e.kind in BEGINNINGS]
        if new is None or old == new:
            assert events == []
            continue
        token_changed = old is None or old.get("token") != new.get("token")
        assert len(beginnings) == (1 if token_changed else 0)
        if token_changed:
            assert beginnings[0].token == new["token"]
            assert beginnings[0].who_name == new["lockedByName"]
        old_status = old.get("status") if old is not None else None
        if not token_changed and old_status == Status.IN_PROGRESS and new["status"] != Status.IN_PROGRESS:
            (ending,) = events
            assert ending.kind in ENDINGS
            assert ending.outcome == new["status"]
            assert ending.duration == epoch(str(new["releasedAt"])) - epoch(str(new["lockedAt"]))
            expected = {
                "COMPLETED": EventKind.RELEASE,
                "FAILED": EventKind.RELEASE,
                "EXPIRED": EventKind.EXPIRE,
                "FORCE_RELEASED": EventKind.CANCEL
                if str(new.get("releaseReason", "")).startswith("cancelled")
                else EventKind.FORCE_RELEASE,
            }
            assert ending.kind is expected[str(new["status"])]
        handed = old is not None and token_changed and new.get("previousToken") == old.get("token")
        if handed:  # the freeing write handed the lock to the head of the queue
            hypothesis.event("a hand-off")
            assert old is not None
            assert beginnings[0].kind is EventKind.HAND_OFF
            (ending,) = [e for e in events if e.kind in ENDINGS]
            assert (ending.token, ending.outcome) == (old["token"], new["previousStatus"])
            assert ending.duration == epoch(str(new["lockedAt"])) - epoch(str(old["lockedAt"]))
        elif token_changed and old_status == Status.IN_PROGRESS:  # taken over a lapsed lease: the old one expired
            lapsed = [e for e in events if e.kind is EventKind.EXPIRE]
            assert [e.token for e in lapsed] == [old["token"]] if old is not None else []
        sort_keys = [e.sort_key for e in events]
        assert len(set(sort_keys)) == len(sort_keys)
        for event in events:
            assert HistoryEvent.from_item(event.to_item()) == event


def test_an_event_stored_before_the_history_kept_commits_still_reads() -> None:
    event = HistoryEvent(KEY, EventKind.RELEASE, 3, iso(1_800_000_000), who="U0ALICE", outcome="COMPLETED")
    item = event.to_item()
    assert not {"commitSha", "ref", "rollback"} & set(item)  # nothing written for what is not known
    assert HistoryEvent.from_item(item) == event
    assert (HistoryEvent.from_item(item).commit_sha, HistoryEvent.from_item(item).rollback) == ("", False)


def test_a_freeze_key_has_freeze_and_unfreeze() -> None:
    clock = Clock()
    store = MemoryLockStore(clock)
    store.acquire(AcquireRequest("freeze-prod", "req-1", 30 * 86_400, locked_by="U0ADMIN", locked_by_name="admin"))
    frozen = _item(store, "freeze-prod")
    clock.now += 3600
    store.force_release("freeze-prod", 1, by="U0ADMIN", reason="unfrozen from Slack by admin")
    (freeze,) = events_of(None, frozen, int(clock.now))
    (unfreeze,) = events_of(frozen, _item(store, "freeze-prod"), int(clock.now))
    assert (freeze.kind, unfreeze.kind, unfreeze.duration) == (EventKind.FREEZE, EventKind.UNFREEZE, 3600)


# ------------------------------------------------------------------------------------------------ on moto
@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv(HISTORY_TABLE_ENV, HISTORY_TABLE)
    with mock_aws():
        forget()
        yield
        forget()


def streamed_lock_table() -> str:
    """The lock table as the Pulumi program makes it: with a NEW_AND_OLD_IMAGES stream; its stream ARN."""
    DynamoDBLockStore(LOCK_TABLE).create_table()
    client = boto3.client("dynamodb")
    client.update_table(
        TableName=LOCK_TABLE, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    return str(client.describe_table(TableName=LOCK_TABLE)["Table"]["LatestStreamArn"])


def stream_event(stream_arn: str) -> dict[str, Any]:
    """Everything on the stream so far, as the event Lambda's event source mapping would deliver."""
    streams = boto3.client("dynamodbstreams")
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in streams.get_records(ShardIterator=iterator)["Records"]:
            records.append({**record, "eventSourceARN": stream_arn})
    return {"Records": records}


@pytest.mark.usefixtures("aws")
def test_the_writer_turns_the_stream_into_history_and_a_redelivery_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_idempotency_table()  # the App Home's pending-refresh mark, and who has the Home open
    runtime.ledger().home_opened("U0BOB", 0, int(time.time()))
    status_queue = create_queues(monkeypatch)[Queue.STATUS]
    stream_arn = streamed_lock_table()
    table = history_table()
    table.create_table()
    clock = Clock(time.time())  # the stream dates an extend by the wall clock: the store's starts there too
    store = DynamoDBLockStore(LOCK_TABLE, clock=clock)
    store.acquire(AcquireRequest(KEY, "req-alice", 600, locked_by="U0ALICE", locked_by_name="alice"))
    store.note(KEY, "req-alice", 1, runId="42")
    clock.now += 200
    store.extend(KEY, "req-alice", 1, 600)
    clock.now += 100
    store.release(KEY, "req-alice", 1, Status.FAILED)
    clock.now += 10
    store.acquire(AcquireRequest(KEY, "req-bob", 600, locked_by="U0BOB", locked_by_name="bob"))
    clock.now += 5
    store.force_release(KEY, 2, by="U0BOB", reason="cancelled from Slack by bob")

    event = stream_event(stream_arn)
    records = len(event["Records"])
    assert records >= 6  # one a write at least (the acquire, note, extend, release, acquire, cancel)
    assert history_lambda.handler(event, None) == {"records": records, "events": 5}
    assert history_lambda.handler(event, None) == {
        "records": records,
        "events": 5,
    }  # the stream redelivers: the same puts
    refreshes = [json.loads(r["body"])["correlationId"] for r in sqs.drain(status_queue)["Records"]]
    assert len(set(refreshes)) == 1, "one App Home refresh: the redelivered batch's, under the mark it put itself"
    history_lambda.handler({"Records": event["Records"][:1]}, None)  # another batch, while that refresh is pending
    assert sqs.drain(status_queue)["Records"] == [], "no second refresh while one is pending"

    recent = table.recent(KEY)
    assert [(e.kind, e.token, e.who, e.outcome, e.duration) for e in recent] == [
        (EventKind.CANCEL, 2, "U0BOB", "FORCE_RELEASED", 5),
        (EventKind.ACQUIRE, 2, "U0BOB", "", None),
        (EventKind.RELEASE, 1, "U0ALICE", "FAILED", 300),
        (EventKind.EXTEND, 1, "U0ALICE", "", None),
        (EventKind.ACQUIRE, 1, "U0ALICE", "", None),
    ]
    items = boto3.client("dynamodb").scan(TableName=HISTORY_TABLE)["Items"]
    assert len(items) == 5
    assert all(int(item["ttl"]["N"]) == epoch(item["eventAt"]["S"]) + 30 * 86_400 for item in items)
    assert len(table.recent(KEY, limit=2)) == 2
    assert {e.kind for e in table.since(int(clock.now) - 4)} == {EventKind.CANCEL}
    assert table.create_table() is False


# ------------------------------------------------------------------------------- a resumed write, judged
class _HistoryDown(HistoryTwin):
    def recent(self, lock_key: str, limit: int = 10) -> list[HistoryEvent]:
        raise ClientError({"Error": {"Code": "InternalServerError"}}, "Query")


class _InDoubt(Exception):
    pass


@given(
    traced=st.booleans(),
    by_someone_else=st.booleans(),
    age=st.integers(0, 2 * HISTORY_LAG_SECONDS),
    down=st.booleans(),
)
def test_a_resumed_write_counts_as_done_only_on_the_historys_word(
    traced: bool, by_someone_else: bool, age: int, down: bool
) -> None:
    """A cancel or force-release resumed after its lock moved on: done only if the history shows this very user
    ending this very holding; no trace is "not done" only once the history can no longer be lagging behind;
    a history that does not answer is no answer (the message comes back)."""
    was = LockRecord(KEY, 7, "alice-req", Status.IN_PROGRESS, "U0ALICE", "alice", iso(1_800_000_000), 1_800_000_600)
    history = _HistoryDown() if down else HistoryTwin()
    if traced:
        who = "U0SOMEONE" if by_someone_else else "U0ALICE"
        history.put(HistoryEvent(KEY, EventKind.CANCEL, 7, iso(1_800_000_100), who=who, outcome="FORCE_RELEASED"))
    history.put(HistoryEvent(KEY, EventKind.ACQUIRE, 8, iso(1_800_000_200), who="U0BOB"))  # moved on
    asked_at = 1_800_000_050
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "history", lambda: history)

        def judged() -> bool:
            kinds = frozenset({EventKind.CANCEL})
            return resumed_write_took_effect(
                was, "U0ALICE", kinds, asked_at=asked_at, now=asked_at + age, in_doubt=_InDoubt
            )

        done = traced and not by_someone_else
        if down or (not done and age < HISTORY_LAG_SECONDS):
            with pytest.raises(_InDoubt):
                judged()
        else:
            assert judged() is done
