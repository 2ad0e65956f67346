"""The status worker end to end: SQS events in; DynamoDB (moto, in-process) and Slack (the stand-in, real HTTP on
loopback, as ``response_url`` and Web API) out. Nothing of ours is mocked.

Most cases hand the worker a real-shaped SQS event made from an envelope; the last ones go all the way from a
signed slash command through the router and a (moto) queue, and press the button the worker posted.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
from moto import mock_aws

from lockcore import Acquired, AcquireRequest, LockRecord, Status
from lockcore.dynamodb import DynamoDBLockStore
from tests.workers import function_url
from tests.workers import sqs_events as sqs
from tests.workers.worker_world import create_idempotency_table, create_queues
from workers.adapters import queues as sqs_queues
from workers.adapters import runtime
from workers.adapters.usergroups import UserGroups
from workers.flows import status
from workers.handlers import router
from workers.handlers import status as status_lambda
from workers.local.motoserver import LOCAL_CREDENTIALS
from workers.local.slack import PostedMessage, SlackStandIn
from workers.protocol import render
from workers.protocol.commands import Command, Echo, LockStatus, Unlock
from workers.protocol.config import Action, Queue
from workers.protocol.envelope import UNLOCK_CANCEL_ACTION, UNLOCK_CONFIRM_ACTION, CommandEnvelope, InteractionEnvelope

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"
TABLE = "chatops-locks-status-test"
BOT_TOKEN = "xoxb-status-worker-test"
ADMIN, ALICE, BOB = "U0ADMIN", "U0ALICE", "U0BOB"
CHANNEL = "C0BUILDS"
RUN_URL = "https://github.com/example-org/platform/actions/runs/4242"


# ------------------------------------------------------------------------------------------------ fixtures
@dataclass
class World:
    slack: SlackStandIn
    store: DynamoDBLockStore
    queues: dict[Queue, str]
    logs: sqs.Logs

    def replies(self, name: str) -> list[PostedMessage]:
        """What was posted to the response_url called ``name``."""
        return self.slack.messages(f"/T0LOCAL/{name}/")

    def channel_posts(self) -> list[PostedMessage]:
        return self.slack.messages("/api/chat.postMessage")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "SLACK_TEAM_IDS", "SLACK_APP_ID", "ENABLE_DISTRIBUTED_LOCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHATOPS_CONFIG", str(SHIPPED))
    monkeypatch.setenv("LOCK_TABLE_NAME", TABLE)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", function_url.SIGNING_SECRET)
    monkeypatch.setenv("RESPONSE_URL_HOSTS", "hooks.slack.com,127.0.0.1")
    logs = sqs.Logs()
    with SlackStandIn(token=BOT_TOKEN) as slack, mock_aws():
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        runtime.reset()
        sqs_queues.forget_clients()
        UserGroups.forget()
        store = DynamoDBLockStore(TABLE)
        store.create_table()
        create_idempotency_table()  # the ledger of what was told, and the hand-offs' envelopes
        queues = create_queues(monkeypatch)
        logs.attach()
        try:
            yield World(slack, store, queues, logs)
        finally:
            logs.detach()
            runtime.reset()
            sqs_queues.forget_clients()


def hold(
    store: DynamoDBLockStore,
    key: str = "build-router-plt",
    *,
    user: str = ALICE,
    name: str = "alice",
    lease: int = 600,
    run: bool = True,
) -> LockRecord:
    """Take ``key`` as a build worker would, and note its run."""
    _action, component, environment = key.split("-")
    owner = f"{uuid.uuid4().int % 10**11}.{uuid.uuid4().int % 10**9}.{uuid.uuid4().hex[:8]}"
    request = AcquireRequest(key, owner, lease, user, name, component, environment, correlation_id=f"cid-{owner}")
    outcome = store.acquire(request)
    assert isinstance(outcome, Acquired), outcome
    if run:
        store.note(key, owner, outcome.token, runId="4242", runUrl=RUN_URL, dispatchState="dispatched")
    record = store.get(key)
    assert record is not None
    return record


def command(world: World, cmd: Command, *, user: str = ALICE, name: str = "alice", url: str = "cmd") -> CommandEnvelope:
    return CommandEnvelope(
        request_id=f"trigger-{uuid.uuid4().hex[:12]}",
        correlation_id=f"cid-{uuid.uuid4().hex[:12]}",
        command=cmd,
        slash="/build",
        text="",
        user_id=user,
        user_name=name,
        channel_id=CHANNEL,
        team_id="T0TEAM",
        api_app_id="A0APP",
        response_url=world.slack.response_url(url),
        received_at=int(datetime.now(UTC).timestamp()),
    )


class WithSlack(Protocol):
    @property
    def slack(self) -> SlackStandIn: ...


def press(
    world: WithSlack, action_id: str, value: str, *, user: str = ADMIN, name: str = "admin", url: str = "press"
) -> InteractionEnvelope:
    return InteractionEnvelope(
        request_id=f"trigger-{uuid.uuid4().hex[:12]}",
        correlation_id=f"cid-{uuid.uuid4().hex[:12]}",
        action_id=action_id,
        value=value,
        user_id=user,
        user_name=name,
        team_id="T0TEAM",
        api_app_id="A0APP",
        channel_id=CHANNEL,
        response_url=world.slack.response_url(url),
        received_at=int(datetime.now(UTC).timestamp()),
    )


def run(*messages: CommandEnvelope | InteractionEnvelope | str) -> dict[str, Any]:
    """Hand the worker one SQS batch; the partial batch response it answers."""
    bodies = [message if isinstance(message, str) else message.to_json() for message in messages]
    return status_lambda.handler(
        sqs.event(*(sqs.record(body, message_id=f"m{i}") for i, body in enumerate(bodies))), None
    )


def only(posts: list[PostedMessage]) -> dict[str, Any]:
    assert len(posts) == 1, posts
    body = posts[0].body
    assert isinstance(body, dict)
    return body


def date_of(epoch: int) -> str:
    """The start of a Slack date token for ``epoch``, as Slack documents it."""
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|"


def epoch_of(iso: str) -> int:
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def fields_of(block: dict[str, Any]) -> dict[str, str]:
    """A section's fields as {title: value}."""
    out = {}
    for field in block["fields"]:
        title, _, value = field["text"].partition("\n")
        out[title.strip("*")] = value
    return out


NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


# -------------------------------------------------------------------------------------------------- status
def test_status_without_locks_says_none_is_held(world: World) -> None:
    released = hold(world.store, "build-api-plt")
    world.store.release("build-api-plt", released.owner, released.token, Status.COMPLETED)

    assert run(command(world, LockStatus())) == NO_FAILURES

    reply = only(world.replies("cmd"))
    assert reply["text"] == "No builds or deploys hold a lock right now."
    assert reply["response_type"] == "ephemeral"


def test_status_with_one_lock_shows_its_key_holder_times_token_and_run(world: World) -> None:
    held = hold(world.store)

    assert run(command(world, LockStatus())) == NO_FAILURES

    reply = only(world.replies("cmd"))
    assert reply["response_type"] == "ephemeral"
    assert "1 lock held right now" in reply["text"] and "build-router-plt" in reply["text"]
    blocks = reply["blocks"]
    assert blocks[0]["text"]["text"] == "🔒 *1 lock held right now*"
    (lock,) = [block for block in blocks if block.get("block_id", "").startswith("lock-")]
    assert lock["block_id"] == "lock-build-router-plt"
    assert lock["text"]["text"] == "*`build-router-plt`*"
    fields = fields_of(lock)
    assert fields["Holder"] == f"alice (<@{ALICE}>)"
    assert fields["Since"].startswith(date_of(epoch_of(held.locked_at)))
    assert fields["Frees at"].startswith(date_of(held.lease_expires_at))
    assert fields["Frees at"].endswith(")") and "(in " in fields["Frees at"]
    assert fields["Token"] == str(held.token) == "1"
    assert fields["Run"] == f"<{RUN_URL}|run 4242>"
    assert len(blocks) <= 50


def test_status_with_several_locks_lists_the_live_ones_in_key_order(world: World) -> None:
    deploy = hold(world.store, "deploy-api-prod", user=BOB, name="bob", run=False)
    hold(world.store, "build-router-plt")
    build_api = hold(world.store, "build-api-plt", user=BOB, name="bob")
    done = hold(world.store, "build-router-prod")
    world.store.release("build-router-prod", done.owner, done.token, Status.FAILED)
    an_hour_ago = DynamoDBLockStore(TABLE, clock=lambda: time.time() - 3600)
    an_hour_ago.acquire(AcquireRequest("deploy-router-plt", "lapsed", 600, ALICE, "alice"))

    assert run(command(world, LockStatus())) == NO_FAILURES

    reply = only(world.replies("cmd"))
    locks = [block for block in reply["blocks"] if block.get("block_id", "").startswith("lock-")]
    assert [block["block_id"] for block in locks] == [
        "lock-build-api-plt",
        "lock-build-router-plt",
        "lock-deploy-api-prod",
    ]
    assert reply["blocks"][0]["text"]["text"] == "🔒 *3 locks held right now*"
    by_key = {block["block_id"]: fields_of(block) for block in locks}
    assert by_key["lock-deploy-api-prod"]["Holder"] == f"bob (<@{BOB}>)"
    assert by_key["lock-deploy-api-prod"]["Run"] == "none yet"
    assert by_key["lock-deploy-api-prod"]["Frees at"].startswith(date_of(deploy.lease_expires_at))
    assert by_key["lock-build-api-plt"]["Token"] == str(build_api.token)
    assert "build-router-prod" not in json.dumps(reply)


def test_status_shows_at_most_forty_locks_and_counts_the_rest() -> None:
    now = 1_767_261_600
    records = [
        LockRecord(
            f"build-c{i:02d}-plt", 1, f"o{i}", Status.IN_PROGRESS, ALICE, "alice", "2026-01-01T09:55:00Z", now + 60
        )
        for i in range(45)
    ]

    message = status.status_message(records, now)

    assert message.blocks is not None
    assert len(message.blocks) <= 50
    assert message.blocks[-1]["elements"][0]["text"].startswith("…and 5 more")
    assert "45 locks held right now" in message.text


def test_names_from_the_table_cannot_mention_anyone(world: World) -> None:
    hold(world.store, name="<!channel> & co")

    run(command(world, LockStatus()))

    holder = fields_of(next(b for b in only(world.replies("cmd"))["blocks"] if "fields" in b))["Holder"]
    assert holder == f"&lt;!channel&gt; &amp; co (<@{ALICE}>)"


# -------------------------------------------------------------------------------------------------- unlock
def test_unlock_by_someone_not_an_admin_is_refused_and_names_who_may(world: World) -> None:
    held = hold(world.store)

    assert run(command(world, Unlock(Action.BUILD, "router", "plt"), user=BOB, name="bob")) == NO_FAILURES

    reply = only(world.replies("cmd"))
    assert reply["text"] == f"🚫 Sorry, only admins may run /build unlock router plt. Who may: <@{ADMIN}>."
    assert "blocks" not in reply
    assert world.store.get("build-router-plt") == held


def test_unlock_by_an_admin_shows_the_holder_and_a_confirm_button_with_the_token(world: World) -> None:
    held = hold(world.store)

    assert run(command(world, Unlock(Action.BUILD, "router", "plt"), user=ADMIN, name="admin")) == NO_FAILURES

    reply = only(world.replies("cmd"))
    assert reply["response_type"] == "ephemeral"
    question = reply["blocks"][0]["text"]["text"]
    assert question.startswith("*Force-unlock `build-router-plt`?*\nHeld by alice (<@U0ALICE>) since ")
    assert date_of(held.lease_expires_at) in question and f"token {held.token}" in question and RUN_URL in question
    (actions,) = [block for block in reply["blocks"] if block["type"] == "actions"]
    confirm, cancel = actions["elements"]
    assert (confirm["action_id"], confirm["value"], confirm["style"]) == (
        UNLOCK_CONFIRM_ACTION,
        "build-router-plt:1",
        "danger",
    )
    assert (cancel["action_id"], cancel["value"]) == (UNLOCK_CANCEL_ACTION, "build-router-plt:1")
    assert world.store.get("build-router-plt") == held  # asking releases nothing


def test_unlock_of_a_free_lock_has_nothing_to_unlock(world: World) -> None:
    done = hold(world.store)
    world.store.release("build-router-plt", done.owner, done.token, Status.COMPLETED)

    run(
        command(world, Unlock(Action.BUILD, "router", "plt"), user=ADMIN),
        command(world, Unlock(Action.DEPLOY, "api", "prod"), user=ADMIN, url="never"),
    )

    (first,) = world.replies("cmd")[:1]
    assert first.text.startswith(
        "✅ Nothing to unlock: `build-router-plt` is free: alice (<@U0ALICE>) released it (COMPLETED) "
    )
    assert only(world.replies("never"))["text"] == (
        "✅ Nothing to unlock: `deploy-api-prod` is free: no lock was ever taken under this key."
    )


def test_an_admin_of_a_user_group_may_unlock(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = (
        SHIPPED.read_text()
        .replace('admins = { users = ["U0ADMIN"] }', 'admins = { groups = ["S0ONCALL"] }')
        .replace("# [slack.user_groups]\n# S0PLATFORM", '[slack.user_groups]\nS0ONCALL = ["U0CAROL"]\nS0PLATFORM')
    )
    (tmp_path / "chatops.toml").write_text(config)
    monkeypatch.setenv("CHATOPS_CONFIG", str(tmp_path / "chatops.toml"))
    hold(world.store)

    run(command(world, Unlock(Action.BUILD, "router", "plt"), user="U0CAROL", name="carol", url="carol"))
    run(command(world, Unlock(Action.BUILD, "router", "plt"), user=ADMIN, name="admin", url="former"))

    assert only(world.replies("carol"))["blocks"][-1]["elements"][0]["value"] == "build-router-plt:1"
    assert only(world.replies("former"))["text"].endswith("Who may: members of <!subteam^S0ONCALL>.")


# ------------------------------------------------------------------------------------------------- confirm
def test_confirm_with_the_current_token_force_releases_records_who_and_why_and_tells_the_channel(world: World) -> None:
    held = hold(world.store)

    assert run(press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1")) == NO_FAILURES

    after = world.store.get("build-router-plt")
    assert after is not None
    assert (after.status, after.token) == (Status.FORCE_RELEASED, held.token)
    assert (after.released_by, after.release_reason) == (ADMIN, "force unlock from Slack by admin")
    news = only(world.channel_posts())
    assert news["channel"] == CHANNEL
    assert news["text"].startswith(
        f"🔓 <@{ADMIN}> force-unlocked `build-router-plt` (was held by alice (<@U0ALICE>) since "
    )
    assert date_of(epoch_of(held.locked_at)) in news["text"]
    replaced = only(world.replies("press"))
    assert replaced["replace_original"] is True
    assert replaced["text"].startswith(
        "✅ Force-released `build-router-plt` (token 1), recorded as FORCE_RELEASED by you"
    )
    # …and the lock is free for the next build.
    assert isinstance(world.store.acquire(AcquireRequest("build-router-plt", "next", 600)), Acquired)


def test_confirm_with_a_stale_token_releases_nothing_and_says_who_holds_it_now(world: World) -> None:
    first = hold(world.store)
    world.store.release("build-router-plt", first.owner, first.token, Status.COMPLETED)
    second = hold(world.store, user=BOB, name="bob")

    assert run(press(world, UNLOCK_CONFIRM_ACTION, f"build-router-plt:{first.token}")) == NO_FAILURES

    assert world.store.get("build-router-plt") == second
    assert world.channel_posts() == []
    replaced = only(world.replies("press"))
    assert replaced["replace_original"] is True
    assert replaced["text"].startswith("⚠️ The lock `build-router-plt` changed since (now held by bob (<@U0BOB>) since ")
    assert replaced["text"].endswith(f", token {second.token}); nothing was released.")


def test_confirm_after_the_holder_released_says_it_is_free(world: World) -> None:
    held = hold(world.store)
    world.store.release("build-router-plt", held.owner, held.token, Status.COMPLETED)

    run(press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1"))

    after = world.store.get("build-router-plt")
    assert after is not None and after.status is Status.COMPLETED and after.released_by is None
    assert "changed since (now free: alice (<@U0ALICE>) released it (COMPLETED)" in only(world.replies("press"))["text"]


def test_pressing_confirm_twice_releases_once_and_tells_the_channel_once(world: World) -> None:
    hold(world.store)

    run(press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1", url="one"))
    run(press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1", url="two"))

    assert len(world.channel_posts()) == 1
    assert only(world.replies("two"))["text"].startswith("✅ `build-router-plt` was already force-released by you")


def test_confirm_by_someone_not_an_admin_releases_nothing(world: World) -> None:
    held = hold(world.store)

    assert run(press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1", user=BOB, name="bob")) == NO_FAILURES

    assert world.store.get("build-router-plt") == held
    assert world.channel_posts() == []
    assert only(world.replies("press"))["text"].startswith("🚫 Sorry, only admins may force-unlock a lock.")


@pytest.mark.parametrize("value", ["", "build-router-plt", "build-router-plt:x", "build-nope-plt:1", "other:1"])
def test_confirm_with_a_value_that_names_no_lock_releases_nothing(world: World, value: str) -> None:
    held = hold(world.store)

    assert run(press(world, UNLOCK_CONFIRM_ACTION, value)) == NO_FAILURES

    assert world.store.get("build-router-plt") == held
    assert "not one I can act on" in only(world.replies("press"))["text"]


def test_when_the_bot_is_not_in_the_channel_the_news_goes_through_the_response_url(world: World) -> None:
    hold(world.store)
    world.slack.fail_next(status=200, body={"ok": False, "error": "not_in_channel"}, path_contains="chat.postMessage")

    run(press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1"))

    news, replaced = (posted.body for posted in world.replies("press"))
    assert news["response_type"] == "in_channel" and news["text"].startswith(f"🔓 <@{ADMIN}> force-unlocked")
    assert replaced["replace_original"] is True


def test_cancel_replaces_the_prompt_and_releases_nothing(world: World) -> None:
    held = hold(world.store)

    assert run(press(world, UNLOCK_CANCEL_ACTION, "build-router-plt:1", user=BOB)) == NO_FAILURES

    assert world.store.get("build-router-plt") == held
    assert only(world.replies("press")) == {
        "text": "Unlock cancelled: `build-router-plt` stays as it was.",
        "response_type": "ephemeral",
        "replace_original": True,
    }


# ------------------------------------------------------------------------------------------------- failures
def test_a_reply_slack_refuses_is_logged_and_the_message_is_not_retried(world: World) -> None:
    hold(world.store)
    world.slack.fail_next(2, status=500, path_contains="/commands/")
    asking = command(world, LockStatus())
    confirming = press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1")

    assert run(asking, confirming) == NO_FAILURES

    # The release happened and the channel heard of it; only the replies were lost, and they are in the log.
    after = world.store.get("build-router-plt")
    assert after is not None and after.status is Status.FORCE_RELEASED
    assert len(world.channel_posts()) == 1
    failed = [line for line in world.logs.at("WARNING") if "reply to response_url failed" in line["message"]]
    assert {line["correlation_id"] for line in failed} == {asking.correlation_id, confirming.correlation_id}


def test_a_lock_table_that_does_not_answer_is_told_to_the_user(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCK_TABLE_NAME", "no-such-table")
    runtime.reset()

    result = run(
        command(world, LockStatus(), url="status"),
        command(world, Unlock(Action.BUILD, "router", "plt"), user=ADMIN, url="unlock"),
        press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1", url="confirm"),
    )

    # The force-release may have taken effect with its answer lost: the press is handled again (its repeat is then
    # recognised and announced); a table that stays away ends in the DLQ, whose worker answers the admin.
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert only(world.replies("status"))["text"].startswith("⚠️ Sorry, I couldn't read the locks: the lock table")
    assert only(world.replies("unlock"))["text"].startswith("⚠️ Sorry, I couldn't look up `build-router-plt`")
    assert world.replies("confirm") == []
    assert any("no-such-table" in line.get("reason", "") for line in world.logs.at("ERROR"))
    assert any("no-such-table" in line.get("reason", "") for line in world.logs.at("WARNING"))


def test_a_message_that_is_not_ours_fails_alone_and_its_neighbours_are_answered(world: World) -> None:
    echo = command(world, Echo("hi"))

    result = run("not json", command(world, LockStatus()), echo)

    assert result == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m2"}]}
    assert only(world.replies("cmd"))["text"] == "No builds or deploys hold a lock right now."


# ---------------------------------------------------------------------------------------------- end to end
def slash(world: World, text: str, user: str, name: str) -> None:
    body = function_url.slash_form(
        text, "/build", user_id=user, user_name=name, response_url=world.slack.response_url(name)
    )
    response = router.handler(function_url.event("/slack/commands", body, function_url.slack_headers(body)), None)
    assert response["statusCode"] == 200, response


def click(world: World, button: dict[str, Any], user: str, name: str) -> None:
    body = function_url.interaction_form(
        button["action_id"],
        button["value"],
        user={"id": user, "username": name, "name": name, "team_id": "T0TEAM"},
        response_url=world.slack.response_url(f"{name}-click"),
        channel={"id": CHANNEL, "name": "builds"},
    )
    response = router.handler(function_url.event("/slack/interactions", body, function_url.slack_headers(body)), None)
    assert response["statusCode"] == 200, response


def test_status_unlock_and_confirm_through_router_queue_and_worker(world: World) -> None:
    hold(world.store)
    status_queue = world.queues[Queue.STATUS]

    slash(world, "status --locks", ALICE, "alice")
    slash(world, "unlock router plt", ADMIN, "admin")
    assert status_lambda.handler(sqs.drain(status_queue), None) == NO_FAILURES

    assert only(world.replies("alice"))["blocks"][0]["text"]["text"] == "🔒 *1 lock held right now*"
    prompt = only(world.replies("admin"))
    confirm = next(block for block in prompt["blocks"] if block["type"] == "actions")["elements"][0]

    click(world, confirm, ADMIN, "admin")
    assert status_lambda.handler(sqs.drain(status_queue), None) == NO_FAILURES

    after = world.store.get("build-router-plt")
    assert after is not None and (after.status, after.released_by) == (Status.FORCE_RELEASED, ADMIN)
    assert only(world.channel_posts())["text"].startswith(f"🔓 <@{ADMIN}> force-unlocked `build-router-plt`")
    assert only(world.replies("admin-click"))["replace_original"] is True


# ------------------------------------------------------------------------------------------- the rendering
NOW = 1_767_261_600  # 2026-01-01T10:00:00Z


def lock(**changes: Any) -> LockRecord:
    base = LockRecord(
        "build-router-plt", 3, "o-1", Status.IN_PROGRESS, ALICE, "alice", "2026-01-01T09:55:00Z", NOW + 60
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, "free: no lock was ever taken under this key"),
        (
            lock(),
            "held by alice (<@U0ALICE>) since "
            "<!date^1767261300^{date_short_pretty} {time}|2026-01-01 09:55 UTC>, token 3",
        ),
        (lock(lease_expires_at=NOW - 60), "free: the lease of alice (<@U0ALICE>) ended <!date^1767261540^"),
        (
            lock(status=Status.FORCE_RELEASED, released_by=ADMIN, released_at="2026-01-01T09:58:00Z"),
            "free: force-released by <@U0ADMIN> <!date^1767261480^",
        ),
        (
            lock(status=Status.FAILED, released_at="not a time"),
            "free: alice (<@U0ALICE>) released it (FAILED) not a time",
        ),
    ],
)
def test_where_a_lock_stands_in_a_few_words(record: LockRecord | None, expected: str) -> None:
    assert render.standing(record, NOW).startswith(expected)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (lock(locked_by="", locked_by_name=""), "owner `o-1`"),
        (lock(locked_by="cli-user", locked_by_name=""), "cli-user"),
        (lock(locked_by_name=""), f"<@{ALICE}>"),
    ],
)
def test_a_holder_without_a_slack_user_is_named_as_well_as_the_record_allows(record: LockRecord, expected: str) -> None:
    assert render.holder(record) == expected


@pytest.mark.parametrize(
    ("record", "shown"),
    [
        (lock(), {"name and mention": "alice (<@U0ALICE>)", "mention": "<@U0ALICE>", "name": "alice"}),
        (lock(locked_by_name="<b&b>"), {"name and mention": "&lt;b&amp;b&gt; (<@U0ALICE>)", "name": "&lt;b&amp;b&gt;"}),
        (lock(locked_by="cli-user"), {"name and mention": "alice", "mention": "alice", "plain": "alice (cli-user)"}),
        (lock(locked_by_name=""), {"name": "<@U0ALICE>", "plain": "U0ALICE"}),
        (
            lock(locked_by="", locked_by_name=""),
            {"mention": "owner `o-1`", "name": "owner `o-1`", "plain": "owner o-1"},
        ),
    ],
)
def test_a_person_is_rendered_one_way_with_the_same_fallbacks_wherever_it_is_read(
    record: LockRecord, shown: dict[str, str]
) -> None:
    assert {form: render.holder(record, render.Shown(form)) for form in shown} == shown


@pytest.mark.parametrize(
    ("notes", "expected"),
    [
        (
            {"runId": "77", "runUrl": "https://github.com/o/r/actions/runs/77"},
            "<https://github.com/o/r/actions/runs/77|run 77>",
        ),
        ({"runId": "77", "runUrl": "javascript:alert(1)"}, "run 77"),
        ({"runId": "77", "runUrl": "https://x/|<!channel>"}, "run 77"),
        ({"dispatchState": "dispatching"}, "not known yet (dispatching)"),
        ({}, "none yet"),
    ],
)
def test_the_run_is_a_link_only_to_a_web_address(notes: dict[str, str], expected: str) -> None:
    assert render.run_link(lock(notes=notes)) == expected


def test_a_deploy_shows_its_commit() -> None:
    message = status.status_message(
        [lock(lock_key="deploy-api-prod", notes={"commitSha": "0123456789abcdef0123"})], NOW
    )
    assert message.blocks is not None
    assert fields_of(dict(message.blocks[3]))["Commit"] == "`0123456789ab`"


def test_when_the_admin_group_cannot_be_looked_up_the_admin_is_told_and_nothing_is_released(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The group is not in the configuration, so it is asked of Slack — whose stand-in does not know it.
    config = SHIPPED.read_text().replace('admins = { users = ["U0ADMIN"] }', 'admins = { groups = ["S0ONCALL"] }')
    (tmp_path / "chatops.toml").write_text(config)
    monkeypatch.setenv("CHATOPS_CONFIG", str(tmp_path / "chatops.toml"))
    held = hold(world.store)

    assert run(press(world, UNLOCK_CONFIRM_ACTION, "build-router-plt:1")) == NO_FAILURES

    assert world.store.get("build-router-plt") == held
    assert only(world.replies("press"))["text"].startswith("⚠️ Sorry, I couldn't check your user groups")


def test_a_button_of_someone_else_is_left_alone(world: World) -> None:
    assert run(press(world, "deploy.approve", "build-router-plt:1")) == NO_FAILURES
    assert world.slack.requests == []
