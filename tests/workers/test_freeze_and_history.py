"""Freeze, history and stats through the workers: real-shaped SQS events into the status and build workers, moto's
DynamoDB (the lock table with its real stream, the history table) and Slack as the stand-in. Nothing of ours is
mocked: the history the commands read is written by the history writer from the lock table's stream."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest

from lockcore import AcquireRequest, Status
from lockcore.dynamodb import DynamoDBLockStore
from lockcore.record import iso
from tests.workers import test_status_worker as sw
from tests.workers.test_history import stream_event
from tests.workers.worker_world import Context, running_world, sqs_event
from workers.adapters.history_table import HISTORY_TABLE_ENV, forget, history_table
from workers.flows import freeze, insights
from workers.handlers import build as build_lambda
from workers.handlers import history as history_lambda
from workers.protocol.commands import Dispatch, Freeze, History, LockStatus, Stats, Unfreeze, parse
from workers.protocol.config import Action, current_config
from workers.protocol.envelope import CommandEnvelope
from workers.protocol.history import EventKind, HistoryEvent

world = sw.world  # the status worker's world: moto, the Slack stand-in, the shipped configuration
ADMIN, ALICE = sw.ADMIN, sw.ALICE
HISTORY = "chatops-history-worker-test"


def streamed(store: DynamoDBLockStore) -> str:
    client = boto3.client("dynamodb")
    client.update_table(
        TableName=store.table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    return str(client.describe_table(TableName=store.table)["Table"]["LatestStreamArn"])


@pytest.fixture
def history(world: sw.World, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The lock table streams; the history table exists; answers the stream's ARN."""
    monkeypatch.setenv(HISTORY_TABLE_ENV, HISTORY)
    forget()
    history_table().create_table()
    yield streamed(world.store)
    forget()


def as_admin(world: sw.World, command: Any, url: str = "cmd") -> CommandEnvelope:
    return sw.command(world, command, user=ADMIN, name="admin", url=url)


# ------------------------------------------------------------------------------------------------- parsing
def test_the_new_forms_parse_and_the_wrong_ones_are_usage() -> None:
    config = current_config()
    assert parse("/build", "history router plt", config) == History(Action.BUILD, "router", "plt")
    assert parse("/deploy", "history api prod", config) == History(Action.DEPLOY, "api", "prod")
    assert parse("/build", "stats", config) == Stats(7)
    assert parse("/build", "stats 30", config) == Stats(30)
    assert parse("/deploy", "freeze PROD release week, ask #platform", config) == Freeze(
        "prod", "release week, ask #platform"
    )
    assert parse("/deploy", "unfreeze prod", config) == Unfreeze("prod")
    for slash, text in [
        ("/build", "stats 0"),
        ("/build", "stats 31"),
        ("/build", "stats week"),
        ("/build", "freeze prod why"),
        ("/deploy", "freeze prod"),
        ("/deploy", "freeze mars why"),
        ("/deploy", "unfreeze prod now"),
        ("/build", "history router"),
    ]:
        assert type(parse(slash, text, config)).__name__ == "Usage", text


# -------------------------------------------------------------------------------------------------- freeze
def test_an_admin_freezes_prod_status_shows_it_and_a_second_freeze_says_who_froze_it(world: sw.World) -> None:
    assert sw.run(as_admin(world, Freeze("prod", "release week"))) == sw.NO_FAILURES

    assert sw.only(world.replies("cmd"))["text"].startswith("✅ Froze *prod* (token 1)")
    (news,) = world.channel_posts()
    assert news.text == f"🧊 <@{ADMIN}> froze deploys to *prod*: “release week”."
    record = world.store.get("freeze-prod")
    assert record is not None and record.status is Status.IN_PROGRESS and record.locked_by == ADMIN
    assert freeze.reason_of(record) == "release week"
    assert record.lease_expires_at - int(time.time()) in range(freeze.FREEZE_SECONDS - 10, freeze.FREEZE_SECONDS + 1)

    assert sw.run(sw.command(world, LockStatus(), url="status")) == sw.NO_FAILURES
    (block,) = [b for b in sw.only(world.replies("status"))["blocks"] if b.get("block_id") == "lock-freeze-prod"]
    fields = sw.fields_of(block)
    assert fields["🧊 Frozen by"] == f"admin (<@{ADMIN}>)" and fields["Reason"] == "release week"

    assert sw.run(as_admin(world, Freeze("prod", "again"), url="again")) == sw.NO_FAILURES
    again = sw.only(world.replies("again"))["text"]
    assert "already frozen" in again and "“release week”" in again
    assert world.store.get("freeze-prod") == record


def test_only_admins_freeze_and_unfreeze(world: sw.World) -> None:
    assert sw.run(sw.command(world, Freeze("prod", "mine"), url="f"), sw.command(world, Unfreeze("prod"), url="u"))
    assert "only admins may run /deploy freeze prod mine" in sw.only(world.replies("f"))["text"]
    assert "only admins may run /deploy unfreeze prod" in sw.only(world.replies("u"))["text"]
    assert world.store.get("freeze-prod") is None


def test_unfreeze_releases_with_the_token_and_says_so_once(world: sw.World) -> None:
    assert sw.run(as_admin(world, Unfreeze("prod"), url="none")) == sw.NO_FAILURES
    assert sw.only(world.replies("none"))["text"] == "✅ *prod* is not frozen; nothing to do."
    sw.run(as_admin(world, Freeze("prod", "release week")))

    sw.run(as_admin(world, Unfreeze("prod"), url="u1"))
    sw.run(as_admin(world, Unfreeze("prod"), url="u2"))

    assert sw.only(world.replies("u1"))["text"] == "✅ Unfroze *prod*."
    assert sw.only(world.replies("u2"))["text"] == "✅ *prod* was already unfrozen by you."
    record = world.store.get("freeze-prod")
    assert record is not None and record.status is Status.FORCE_RELEASED and record.released_by == ADMIN
    assert [post.text.split(" ", 1)[0] for post in world.channel_posts()] == ["🧊", "☀️"]


def test_a_frozen_environment_refuses_deploys_not_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_world(monkeypatch) as bw:
        monkeypatch.setenv(HISTORY_TABLE_ENV, HISTORY)
        forget()
        history_table().create_table()
        now = int(time.time())
        request = AcquireRequest(
            "freeze-prod", "req-freeze", freeze.FREEZE_SECONDS, "U0ADMIN", "admin", "freeze", "prod"
        )
        bw.store.acquire(request)
        bw.store.note("freeze-prod", "req-freeze", 1, command="/deploy freeze prod release week")

        deploy = bw.envelope("d", Dispatch(Action.DEPLOY, "api", "prod"))
        deploy_plt = bw.envelope("p", Dispatch(Action.DEPLOY, "api", "plt"))
        build_prod = bw.envelope("b", Dispatch(Action.BUILD, "api", "prod"))
        build_lambda.handler(sqs_event(deploy, deploy_plt, build_prod), Context())

        (refusal,) = bw.replies_to("d")
        assert refusal.text.startswith("🧊 Deploys to *prod* are frozen by admin (<@U0ADMIN>) since <!date^")
        assert "“release week”" in refusal.text and "`/deploy unfreeze prod`" in refusal.text
        assert bw.lock("deploy-api-prod") is None
        assert {run.inputs["lock_key"] for run in bw.dispatches()} == {"deploy-api-plt", "build-api-prod"}
        [refused] = [event for event in history_table().since(now) if event.kind is EventKind.REFUSE]
        assert (refused.lock_key, refused.who, refused.reason) == ("deploy-api-prod", deploy.user_id, "prod is frozen")
        assert refused.correlation_id == deploy.correlation_id

        bw.store.force_release("freeze-prod", 1, by="U0ADMIN", reason="unfrozen from Slack by admin")
        build_lambda.handler(sqs_event(bw.envelope("d2", Dispatch(Action.DEPLOY, "api", "prod"))), Context())
        assert bw.lock("deploy-api-prod") is not None
        assert now <= int(time.time())
        forget()


# -------------------------------------------------------------------------------------------- history, stats
def test_history_shows_the_last_events_from_the_stream_newest_first(world: sw.World, history: str) -> None:
    held = sw.hold(world.store, "build-router-plt")
    world.store.release("build-router-plt", held.owner, held.token, Status.FAILED)
    again = sw.hold(world.store, "build-router-plt", user="U0BOB", name="bob")
    world.store.force_release("build-router-plt", again.token, by=ADMIN, reason="force unlock from Slack by admin")
    history_lambda.handler(stream_event(history), None)

    assert sw.run(sw.command(world, History(Action.BUILD, "router", "plt"))) == sw.NO_FAILURES

    reply = sw.only(world.replies("cmd"))
    assert reply["response_type"] == "ephemeral"
    lines = reply["blocks"][-1]["text"]["text"].split("\n")
    assert len(lines) == 4
    assert re.search(
        r"🔓 force-released by <@U0ADMIN> after \ds: “force unlock from Slack by admin” \(token 2\)", lines[0]
    )
    assert "🔒 acquired by bob (<@U0BOB>) (token 2)" in lines[1]
    assert re.search(r"❌ released FAILED by alice \(<@U0ALICE>\) after \ds \(token 1\)", lines[2])  # 0s or 1s
    assert lines[3].startswith("• <!date^") and "🔒 acquired by alice" in lines[3]

    sw.run(sw.command(world, History(Action.DEPLOY, "api", "prod"), url="empty"))
    assert sw.only(world.replies("empty"))["text"] == "📜 No history for `deploy-api-prod` in the last 30 days."


def test_stats_count_acquisitions_refusals_outcomes_and_durations(world: sw.World, history: str) -> None:
    for key, outcome in [
        ("build-router-plt", Status.COMPLETED),
        ("build-router-plt", Status.FAILED),
        ("build-api-plt", Status.COMPLETED),
    ]:
        held = sw.hold(world.store, key)
        world.store.release(key, held.owner, held.token, outcome)
    sw.run(as_admin(world, Freeze("prod", "not a build"), url="freeze"))
    history_lambda.handler(stream_event(history), None)
    for who in ("U0BOB", "U0CAROL"):  # what the build worker puts when it refuses (the same second, the same holder)
        refused = HistoryEvent("build-router-plt", EventKind.REFUSE, 2, "2026-11-27T10:00:00Z", who=who)
        history_table().put(replace(refused, at=iso(int(time.time())), correlation_id=f"cid-{who}"))

    assert sw.run(sw.command(world, Stats(7))) == sw.NO_FAILURES

    reply = sw.only(world.replies("cmd"))
    fields = sw.fields_of(reply["blocks"][1])
    assert fields["Acquisitions"] == "3"
    assert fields["Refused (busy or frozen)"] == "2"
    assert fields["Completed / failed"] == "2 / 1"
    assert fields["Failure rate"] == "33%"
    assert reply["blocks"][2]["text"]["text"] == "*Busiest keys*\n`build-router-plt` — 2\n`build-api-plt` — 1"
    assert reply["text"].startswith("Locks over the last 7 days: 3 acquisitions, 2 refused, failure rate 33%")
    assert [e.kind for e in history_table().recent("build-router-plt")].count(EventKind.REFUSE) == 0


def test_stats_of_known_events() -> None:
    def ending(key: str, outcome: str, held: int, kind: EventKind = EventKind.RELEASE) -> HistoryEvent:
        return HistoryEvent(key, kind, 1, "2026-01-01T10:00:00Z", outcome=outcome, duration=held)

    events = [
        HistoryEvent("build-a-plt", EventKind.ACQUIRE, 1, "2026-01-01T09:00:00Z"),
        HistoryEvent("build-a-plt", EventKind.ACQUIRE, 2, "2026-01-01T09:30:00Z"),
        HistoryEvent("build-b-plt", EventKind.ACQUIRE, 1, "2026-01-01T14:00:00Z"),
        HistoryEvent("freeze-prod", EventKind.FREEZE, 1, "2026-01-01T14:00:00Z"),
        HistoryEvent("build-a-plt", EventKind.REFUSE, 2, "2026-01-01T09:31:00Z", who="U0BOB"),
        *(ending("build-a-plt", "COMPLETED", seconds) for seconds in range(1, 20)),
        ending("build-a-plt", "FAILED", 1000),
        ending("build-b-plt", "FORCE_RELEASED", 10, EventKind.CANCEL),
        ending("freeze-prod", "FORCE_RELEASED", 99_999, EventKind.UNFREEZE),
    ]
    stats = insights.stats_of(events, 7)
    assert (stats.acquisitions, stats.cancelled, stats.busiest_keys) == (3, 1, [("build-a-plt", 2), ("build-b-plt", 1)])
    assert stats.refusals == 1
    assert stats.failure_rate == 1 / 20
    assert stats.p95_seconds == 19 and stats.average_seconds == round((190 + 1000 + 10) / 21)
    assert stats.busiest_hours == [(9, 2), (14, 1)]
    assert insights.p95([]) is None and insights.p95([5]) == 5
