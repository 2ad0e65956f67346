"""The App Home end to end in the workers' world: the status worker publishes a user's Home when they open it (once
per Slack event, however often Slack delivers it), the history writer asks for one refresh per stream batch, and the
refresh republishes the Home of everyone who opened it lately — through the Slack stand-in's ``views.publish``.
DynamoDB and SQS are moto; nothing of ours is mocked."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from lockcore.record import LockRecord, Status
from tests.workers import sqs_events as sqs
from tests.workers.worker_world import Context, World, create_queues, failed_ids, sqs_event
from workers.adapters import runtime
from workers.adapters.history_table import HistoryTable
from workers.adapters.ledger import HOME_REFRESH_STALE_SECONDS, HOME_VIEWERS_ID, Ledger
from workers.flows import home
from workers.handlers import build, history, router
from workers.handlers import status as status_lambda
from workers.protocol.board import HOME_WINDOW_SECONDS
from workers.protocol.commands import Dequeue, Dispatch
from workers.protocol.config import Action, Queue, current_config
from workers.protocol.envelope import (
    HOME_CANCEL_ACTION,
    HOME_DEQUEUE_ACTION,
    LOCK_WATCH_ACTION,
    UNLOCK_CONFIRM_ACTION,
    HomeOpened,
    HomeRefresh,
    InteractionEnvelope,
    direct_message_address,
)

ALICE, BOB = "U0ALICE", "U0BOB"
KEY = "build-router-plt"


@pytest.fixture
def queues(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[Queue, str]]:
    monkeypatch.setenv("HISTORY_TABLE_NAME", "chatops-lock-history-home")
    HistoryTable("chatops-lock-history-home").create_table()
    runtime.reset()
    yield create_queues(monkeypatch)


def opened(event_id: str = "Ev0001", user: str = ALICE, page: int = 0) -> HomeOpened:
    return HomeOpened(event_id, f"cid-{event_id}", user, "T0TEAM", int(time.time()), page)


def to_status(*envelopes: Any) -> dict[str, Any]:
    return status_lambda.handler(sqs.event(*(sqs.record(e.to_json()) for e in envelopes)), Context())


def home_of(world: World, user: str = ALICE) -> str:
    view = world.slack.home(user)
    assert view is not None, f"no Home published to {user}"
    return json.dumps(view["blocks"])


def stream_batch(*changes: tuple[LockRecord | None, LockRecord | None]) -> dict[str, Any]:
    """The lock table's stream, as Lambda delivers a batch of it to the history writer."""
    serialize = TypeSerializer().serialize

    def image(record: LockRecord | None) -> dict[str, Any] | None:
        return {k: serialize(v) for k, v in record.to_item().items()} if record is not None else None

    records = []
    for index, (old, new) in enumerate(changes):
        change: dict[str, Any] = {"ApproximateCreationDateTime": time.time(), "StreamViewType": "NEW_AND_OLD_IMAGES"}
        change.update({k: v for k, v in (("OldImage", image(old)), ("NewImage", image(new))) if v is not None})
        records.append({"eventID": f"e{time.time_ns()}-{index}", "eventName": "MODIFY", "dynamodb": change})
    return {"Records": records}


def drain_status(queues: dict[Queue, str]) -> dict[str, Any]:
    return status_lambda.handler(sqs.drain(queues[Queue.STATUS]), Context())


# ------------------------------------------------------------------------------------------------ opening
def test_opening_the_home_publishes_the_live_board(world: World, queues: dict[Queue, str]) -> None:
    assert failed_ids(to_status(opened())) == []
    assert "No other build or deploy holds a lock" in home_of(world)


def test_the_same_event_delivered_twice_is_published_once(world: World, queues: dict[Queue, str]) -> None:
    assert failed_ids(to_status(opened("Ev0DUP"))) == []
    assert failed_ids(to_status(opened("Ev0DUP"), opened("Ev0DUP"))) == []
    assert world.slack.homes_published(ALICE) == 1
    assert failed_ids(to_status(opened("Ev0NEXT"))) == []  # a new opening is a new event
    assert world.slack.homes_published(ALICE) == 2


def test_a_rate_limited_publish_comes_back_and_is_published_then(world: World, queues: dict[Queue, str]) -> None:
    world.slack.fail_next(status=429, headers={"Retry-After": "7"}, path_contains="views.publish")
    response = to_status(opened("Ev0LIMIT"))
    assert len(failed_ids(response)) == 1, "a 429 puts the message back on the queue"
    assert world.slack.homes_published(ALICE) == 0
    assert failed_ids(to_status(opened("Ev0LIMIT"))) == []  # SQS delivers it again
    assert world.slack.homes_published(ALICE) == 1


# ------------------------------------------------------------------------------------------------ refresh
def test_a_build_starting_and_ending_refreshes_the_home_of_whoever_opened_it(
    world: World, queues: dict[Queue, str]
) -> None:
    to_status(opened())
    envelope = world.envelope("b1", Dispatch(Action.BUILD, "router", "plt"), user="bob")
    assert failed_ids(build.handler(sqs_event(envelope), Context())) == []
    held = world.lock(KEY)
    assert held is not None and held.locked_by == BOB

    history.handler(stream_batch((None, held)), Context())
    assert failed_ids(drain_status(queues)) == []
    board = home_of(world)
    assert f"`{KEY}`" in board
    assert "<@U0BOB>" in board
    assert LOCK_WATCH_ACTION in board, "alice may ask to be told when it is free"

    released = world.store.release(KEY, held.owner, held.token, Status.COMPLETED)
    after = world.lock(KEY)
    history.handler(stream_batch((held, after)), Context())
    assert failed_ids(drain_status(queues)) == []
    board = home_of(world)
    assert f"`{KEY}`" not in board.split("Lately")[0], released
    assert "release by" in board, "the history shows the release"
    assert world.slack.homes_published(ALICE) == 3


def test_one_refresh_per_stream_batch_however_many_locks_changed(world: World, queues: dict[Queue, str]) -> None:
    runtime.ledger().home_opened(ALICE, 0, int(time.time()))
    held = world.lock(KEY)
    history.handler(stream_batch((None, held), (None, held), (None, held)), Context())
    event = sqs.drain(queues[Queue.STATUS])
    assert [json.loads(r["body"])["kind"] for r in event["Records"]] == ["home_refresh"]


def test_no_refresh_is_queued_when_nobody_has_the_home_open(world: World, queues: dict[Queue, str]) -> None:
    """Nobody opened the Home within its window: a stream batch queues nothing (one read of the viewers). Whoever
    opens it next is kept as a viewer before their open reads the board, which has the change."""
    runtime.ledger().home_opened(ALICE, 0, int(time.time()) - HOME_WINDOW_SECONDS - 1)
    held = world.lock(KEY)
    history.handler(stream_batch((None, held)), Context())
    assert sqs.drain(queues[Queue.STATUS])["Records"] == []
    assert runtime.ledger().mark_home_refresh("the next batch's"), "no pending mark was put"


def test_a_refresh_is_queued_only_when_none_is_pending(world: World, queues: dict[Queue, str]) -> None:
    """A build's several writes, each its own stream batch: one refresh; once the worker took it (and deleted the
    mark before reading the board), the next change queues the next."""
    to_status(opened())
    held = world.lock(KEY)
    for _ in range(4):  # the acquire, then notes: dispatching, the run, the commit
        history.handler(stream_batch((None, held)), Context())
    event = sqs.drain(queues[Queue.STATUS])
    assert [json.loads(r["body"])["kind"] for r in event["Records"]] == ["home_refresh"]
    assert failed_ids(status_lambda.handler(event, Context())) == []
    assert world.slack.homes_published(ALICE) == 2
    history.handler(stream_batch((held, held)), Context())
    assert len(sqs.drain(queues[Queue.STATUS])["Records"]) == 1, "a change after the worker's read: a new refresh"


def test_the_pending_refresh_mark_is_one_conditional_put_on_dynamodb(
    world: World, queues: dict[Queue, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ledger on moto: refused while another batch's mark is fresh; put again by its own batch, over a
    stale one, or once the worker deleted it."""
    clock = [1_800_000_000.0]
    ledger = Ledger(clock=lambda: clock[0])
    assert ledger.mark_home_refresh("batch-a")
    assert not ledger.mark_home_refresh("batch-b"), "a refresh is pending: b's changes are in its read"
    assert ledger.mark_home_refresh("batch-a"), "a's redelivery, after a crash before its send"
    clock[0] += HOME_REFRESH_STALE_SECONDS - 1
    assert not ledger.mark_home_refresh("batch-b")
    clock[0] += 1
    assert ledger.mark_home_refresh("batch-b"), "a mark a minute old holds nothing back"
    ledger.clear_home_refresh()
    assert ledger.mark_home_refresh("batch-c")


def test_only_recent_viewers_are_refreshed(world: World, queues: dict[Queue, str]) -> None:
    to_status(opened("Ev0A", ALICE))
    runtime.ledger().home_opened(BOB, 0, int(time.time()) - HOME_WINDOW_SECONDS - 1)  # opened long ago
    assert failed_ids(to_status(HomeRefresh("cid-r", int(time.time())))) == []
    assert (world.slack.homes_published(ALICE), world.slack.homes_published(BOB)) == (2, 0)


def test_a_viewer_who_opens_again_while_their_old_entry_is_dropped_stays_a_viewer(
    world: World, queues: dict[Queue, str]
) -> None:
    """Another Lambda keeps Bob's new open between a refresh's read of the viewers and its drop of the stale ones:
    the drop must not take his new entry with the old."""
    now, since = int(time.time()), int(time.time()) - HOME_WINDOW_SECONDS
    reader = Ledger()
    reader.home_opened(BOB, 0, since - 60)
    client = reader.client

    class BobOpensFirst:
        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def update_item(self, **request: Any) -> Any:
            if str(request["UpdateExpression"]).startswith("REMOVE"):
                Ledger().home_opened(BOB, 1, now)
            return client.update_item(**request)

    reader._client = BobOpensFirst()
    assert reader.home_viewers(since) == {}
    assert Ledger().home_viewers(since) == {BOB: (now, 1)}

    Ledger().home_opened(ALICE, 0, since - 60)  # with nobody in between, a stale entry is dropped by the read
    assert Ledger().home_viewers(since) == {BOB: (now, 1)}
    item = client.get_item(TableName=reader.table, Key={"id": {"S": HOME_VIEWERS_ID}})["Item"]
    assert set(item["viewers"]["M"]) == {BOB}


def test_a_refresh_beyond_its_cap_queues_the_rest(
    world: World, queues: dict[Queue, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(home, "MAX_PUBLISHES", 2)
    now = int(time.time())
    for index in range(5):
        runtime.ledger().home_opened(f"U0USER{index}", 0, now - index)
    assert failed_ids(to_status(HomeRefresh("cid-r", now))) == []
    assert world.slack.homes_published() == 2
    assert failed_ids(drain_status(queues)) == []  # the rest, queued
    assert failed_ids(drain_status(queues)) == []
    assert world.slack.homes_published() == 5
    assert all(world.slack.home(f"U0USER{index}") is not None for index in range(5))


def test_a_rate_limited_refresh_queues_the_rest_once_however_often_it_comes_back(
    world: World, queues: dict[Queue, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each redelivery of a refresh that met a 429 must not queue its rest again: under a rate limit, copies of the
    rest would multiply the very publishes that are being limited."""
    monkeypatch.setattr(home, "MAX_PUBLISHES", 2)
    now = int(time.time())
    for index in range(5):
        runtime.ledger().home_opened(f"U0USER{index}", 0, now - index)
    refresh = HomeRefresh("cid-r", now)
    for _ in range(3):  # rate-limited, then SQS delivers it again after its visibility timeout
        world.slack.fail_next(status=429, headers={"Retry-After": "7"}, path_contains="views.publish")
        assert len(failed_ids(to_status(refresh))) == 1
    assert failed_ids(to_status(refresh)) == []
    rest = sqs.drain(queues[Queue.STATUS])["Records"]
    assert [json.loads(record["body"])["kind"] for record in rest] == ["home_refresh"]


# ------------------------------------------------------------------------------------------- home presses
def test_notify_me_from_the_home_is_answered_by_direct_message(world: World, queues: dict[Queue, str]) -> None:
    envelope = world.envelope("b1", Dispatch(Action.BUILD, "router", "plt"), user="bob")
    build.handler(sqs_event(envelope), Context())
    press = InteractionEnvelope(
        "555.1.home", "cid-press", LOCK_WATCH_ACTION, KEY, ALICE, "alice", "T0TEAM", "A0APP", "",
        direct_message_address(ALICE), int(time.time()),
    )  # fmt: skip
    assert failed_ids(to_status(press)) == []
    lock = world.lock(KEY)
    assert lock is not None and ALICE in lock.watchers
    dms = [m for m in world.slack.messages("/api/chat.postMessage") if m.body.get("channel") == ALICE]
    assert [m.text for m in dms] == ["👀 I'll tell you here when `build-router-plt` is free."]


def test_force_unlock_from_the_home_tells_the_locks_channel_and_the_admin_by_direct_message(
    world: World, queues: dict[Queue, str]
) -> None:
    envelope = world.envelope("b1", Dispatch(Action.BUILD, "router", "plt"), user="bob")
    build.handler(sqs_event(envelope), Context())
    held = world.lock(KEY)
    assert held is not None
    press = InteractionEnvelope(
        "555.2.home", "cid-unlock", UNLOCK_CONFIRM_ACTION, f"{KEY}:{held.token}", "U0ADMIN", "admin", "T0TEAM",
        "A0APP", "", direct_message_address("U0ADMIN"), int(time.time()),
    )  # fmt: skip
    assert failed_ids(to_status(press)) == []
    after = world.lock(KEY)
    assert after is not None and after.status is Status.FORCE_RELEASED
    posts = world.slack.messages("/api/chat.postMessage")
    assert any(m.body.get("channel") == "C0BUILDS" and "force-unlocked" in m.text for m in posts), "the channel"
    assert any(m.body.get("channel") == "U0ADMIN" and m.text.startswith("✅ Force-released") for m in posts)


def test_cancel_my_run_on_a_home_shown_before_the_lock_changed_hands_cancels_nothing(
    world: World, queues: dict[Queue, str]
) -> None:
    """The Home shows alice's run; it ends and she starts another before her Home is refreshed (a refresh lags a
    429 by minutes, and ends 30 minutes after she opened it). Her press on the old button must not cancel the new
    run: the button carries the token it was shown for, as Force unlock's does."""
    assert failed_ids(build.handler(sqs_event(world.envelope("b1")), Context())) == []
    assert failed_ids(to_status(opened("Ev0SHOWN"))) == []
    view = world.slack.home(ALICE)
    assert view is not None
    [shown] = [
        button["value"]
        for block in view["blocks"]
        if block["type"] == "actions"
        for button in block["elements"]
        if button["action_id"] == HOME_CANCEL_ACTION
    ]
    first = world.lock(KEY)
    assert first is not None
    world.store.release(KEY, first.owner, first.token, Status.COMPLETED)
    assert failed_ids(build.handler(sqs_event(world.envelope("b2")), Context())) == []
    second = world.lock(KEY)
    assert second is not None and second.token == first.token + 1 and second.locked_by == ALICE

    config = current_config()
    pressed = router.home_press(
        config, HOME_CANCEL_ACTION, shown, ALICE, team_id="T0TEAM", request_id="press.1.x", correlation_id="cid-p"
    )
    assert pressed.status == 200
    assert failed_ids(drain_status(queues)) == []

    after = world.lock(KEY)
    assert after is not None and (after.token, after.status) == (second.token, Status.IN_PROGRESS)
    dms = [m.text for m in world.slack.messages("/api/chat.postMessage") if m.body.get("channel") == ALICE]
    assert dms and dms[-1].startswith(f"⚠️ `{KEY}` changed in the meantime"), dms


def test_leave_the_queue_from_the_home_is_answered_by_direct_message(world: World, queues: dict[Queue, str]) -> None:
    build.handler(sqs_event(world.envelope("b1", Dispatch(Action.BUILD, "router", "plt"), user="bob")), Context())
    queued = world.envelope("q1", Dispatch(Action.BUILD, "router", "plt", queue=True), user="alice")
    build.handler(sqs_event(queued), Context())
    lock = world.lock(KEY)
    assert lock is not None and [e.requesters[0].user for e in lock.queue] == [ALICE]
    leave = dataclasses.replace(
        world.envelope("d1", Dequeue(Action.BUILD, "router", "plt"), user="alice"),
        response_url=direct_message_address(ALICE),
        channel_id="",
    )
    assert failed_ids(to_status(leave)) == []
    lock = world.lock(KEY)
    assert lock is not None and lock.queue == ()
    dms = [m.text for m in world.slack.messages("/api/chat.postMessage") if m.body.get("channel") == ALICE]
    assert dms == ["✅ You left the queue of `build-router-plt` (you were at position 1); nothing will run for you."]


@pytest.mark.parametrize(
    ("action_id", "value", "told"),
    [
        (HOME_DEQUEUE_ACTION, "freeze-prod", "⚠️ That button names no lock you can act on any more"),
        (HOME_CANCEL_ACTION, "build-nothing-here:3", "⚠️ That button names no lock you can act on any more"),
    ],
)
def test_a_home_press_the_router_refuses_is_answered_by_direct_message(
    world: World, queues: dict[Queue, str], action_id: str, value: str, told: str
) -> None:
    """A stale Home (published before a freeze took the key, or before the configuration changed) or a forged
    press: the router queues nothing and the presser hears why, rather than nothing."""
    pressed = router.home_press(
        current_config(), action_id, value, "U0NOBODY", team_id="T0TEAM", request_id="p.1.x", correlation_id="cid-p"
    )
    assert pressed.status == 200
    assert sqs.drain(queues[Queue.STATUS])["Records"] == []
    dms = [m.text for m in world.slack.messages("/api/chat.postMessage") if m.body.get("channel") == "U0NOBODY"]
    assert len(dms) == 1 and dms[0].startswith(told), dms
