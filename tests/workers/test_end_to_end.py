"""The reference design's checklist, end to end: signed slash commands from several users go into
``workers.handlers.router.handler`` as Function URL events, onto the build queue (moto's SQS), and come off it as one
real-shaped SQS batch into ``workers.handlers.build.handler``; GitHub and Slack are the local stand-ins (real HTTP on
loopback). Nothing of ours is mocked.

- "Single user builds successfully": one dispatch, the run announced in the channel, the lock held with its run.
- "Concurrent users trigger lock notification": five users at once, one build; the four others are each told,
  ephemerally, that it is already in progress and who started it.
- DynamoDB throttling, injected at the wire: a moto server behind a WSGI middleware that answers
  ``ThrottlingException`` to the next N requests on one table. A short burst is absorbed by botocore's retries;
  one that outlasts them fails the batch item (so the message comes back, and after ``maxReceiveCount`` it is in
  the DLQ) with no lock taken, and the redelivery builds once.
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lockcore.record import LockRecord, Status
from tests.workers import function_url as f
from tests.workers import sqs_events as sqs
from tests.workers.github_events import github_events
from tests.workers.worker_world import (
    IDEMPOTENCY_TABLE,
    LOCK_TABLE,
    MAIN_SHA,
    Context,
    World,
    create_queues,
    failed_ids,
    running_world,
)
from workers.adapters import queues
from workers.adapters.usergroups import UserGroups
from workers.handlers import build as build_lambda
from workers.handlers import router
from workers.handlers import status as status_lambda
from workers.handlers import webhook as webhook_lambda
from workers.local.github import WorkflowRun
from workers.local.motoserver import LocalAWS, WSGIApp
from workers.local.slack import PostedMessage
from workers.protocol.config import Queue
from workers.protocol.envelope import UNLOCK_CONFIRM_ACTION, InteractionEnvelope
from workers.protocol.workflow import parse_run_name

USERS = ("alice", "bob", "carol", "dave", "erin")
CHANNEL = "C0BUILDS"
BUILD_KEY = "build-router-plt"
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


# ------------------------------------------------------------------------------------------------- the path
@dataclass
class Path:
    """The router in front of the world the build worker runs in, and the queues between them."""

    world: World
    queues: dict[Queue, str]

    def slash(self, user: str, text: str = "router plt", command: str = "/build") -> dict[str, Any]:
        """``user`` types a command in Slack: a signed Function URL event to the router; its answer."""
        body = f.slash_form(
            text,
            command,
            user_id=user_id(user),
            user_name=user,
            channel_id=CHANNEL,
            response_url=self.world.slack.response_url(user),
            trigger_id=trigger_id(user),
        )
        answer = router.handler(f.event("/slack/commands", body, f.slack_headers(body)), Context())
        assert answer["statusCode"] == 200, answer
        return answer

    def build_batch(self) -> dict[str, Any]:
        """What the event source mapping hands the build worker: the build queue's messages, as one SQS event."""
        return sqs.drain(self.queues[Queue.BUILD])

    def replies(self, user: str) -> list[PostedMessage]:
        return self.world.replies_to(user)

    def lock(self) -> LockRecord:
        lock = self.world.lock(BUILD_KEY)
        assert lock is not None
        return lock


def user_id(user: str) -> str:
    return f"U0{user.upper()}"


def trigger_id(user: str) -> str:
    """Slack's trigger_id for ``user``'s command: the request id the whole path carries."""
    return f"1334522{len(user)}.738474920.{user}"


def enter(monkeypatch: pytest.MonkeyPatch, world: World) -> Path:
    """The router's environment on top of the worker's: its signing secret and the queues it writes to."""
    for name in ("SLACK_TEAM_IDS", "SLACK_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", f.SIGNING_SECRET)
    queues.forget_clients()
    UserGroups.forget()
    return Path(world, create_queues(monkeypatch))


@pytest.fixture
def path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with running_world(monkeypatch) as world:
        try:
            yield enter(monkeypatch, world)
        finally:
            queues.forget_clients()


def deliver(event: dict[str, Any]) -> dict[str, Any]:
    return build_lambda.handler(event, Context())


def correlation_id_of(record: dict[str, Any]) -> str:
    """The router's correlation id, as it rode on the SQS message."""
    value: str = record["messageAttributes"]["correlationId"]["stringValue"]
    return value


def assert_built_by(path: Path, user: str, run: WorkflowRun, correlation_id: str) -> None:
    """``user``'s request holds the lock, its run is noted on it, and the channel was told."""
    assert run.workflow == "build.yml" and run.head_branch == "main"
    assert run.inputs["correlation_id"] == correlation_id
    assert (run.inputs["component"], run.inputs["environment"], run.inputs["sha"]) == ("router", "plt", MAIN_SHA)
    lock = path.lock()
    assert lock.status is Status.IN_PROGRESS
    assert (lock.owner, lock.locked_by, lock.locked_by_name) == (trigger_id(user), user_id(user), user)
    assert lock.correlation_id == correlation_id and run.inputs["lock_token"] == str(lock.token)
    assert lock.lease_expires_at - int(time.time()) in range(590, 601)
    assert (lock.notes["dispatchState"], lock.notes["runId"], lock.notes["runUrl"]) == (
        "dispatched",
        str(run.id),
        run.html_url,
    )
    assert lock.notes["channelId"] == CHANNEL
    [started] = path.replies(user)
    assert started.body["response_type"] == "in_channel"
    assert started.text == f"🔨 Building router (plt)… <{run.html_url}|run {run.id}>"


# ------------------------------------------------------------------------------------- the checklist lines
def test_single_user_builds_successfully(path: Path) -> None:
    answer = path.slash("alice")
    assert json.loads(answer["body"]) == {
        "response_type": "ephemeral",
        "text": "⏳ Got it: /build router plt — checking the lock…",
    }

    batch = path.build_batch()
    [record] = batch["Records"]
    assert record["messageAttributes"]["kind"]["stringValue"] == "build"
    assert record["eventSourceARN"].endswith(":chatops-build")
    assert deliver(batch) == NO_FAILURES

    [run] = path.world.dispatches()
    assert_built_by(path, "alice", run, correlation_id_of(record))
    assert path.build_batch()["Records"] == []  # nothing else was queued, nothing came back


def test_concurrent_users_trigger_lock_notification(path: Path) -> None:
    for user in USERS:
        path.slash(user)

    batch = path.build_batch()
    assert len(batch["Records"]) == len(USERS)
    assert deliver(batch) == NO_FAILURES

    # The batch is handled in order: the first message's user wins the lock, the four others find it held.
    by_request = {trigger_id(user): user for user in USERS}
    winner = by_request[json.loads(batch["Records"][0]["body"])["requestId"]]
    [run] = path.world.dispatches()
    assert_built_by(path, winner, run, correlation_id_of(batch["Records"][0]))
    lock = path.lock()
    for user in USERS:
        if user == winner:
            continue
        [busy] = path.replies(user)
        assert busy.body.get("response_type", "ephemeral") == "ephemeral"
        assert busy.text.startswith(f"⚠️ Build already in progress — started by {winner} less than a minute ago, ")
        assert f"<{run.html_url}|run {run.id}>" in busy.text
        assert f"frees at <!date^{lock.lease_expires_at}^{{time}}|" in busy.text
    assert path.world.slack.messages("/api/") == []  # every reply went through its own response_url


def test_concurrent_users_across_batches_still_get_one_build(path: Path) -> None:
    """Two invocations, as when the event source mapping splits the queue: the lock decides, not the batch."""
    for user in USERS:
        path.slash(user)
    batch = path.build_batch()
    first, second = sqs.event(*batch["Records"][:2]), sqs.event(*batch["Records"][2:])

    assert deliver(first) == NO_FAILURES
    assert deliver(second) == NO_FAILURES

    [run] = path.world.dispatches()
    winner = path.lock().locked_by_name
    assert sum(len(path.replies(user)) for user in USERS) == len(USERS)
    assert all(
        path.replies(user)[0].text.startswith(f"⚠️ Build already in progress — started by {winner} ")
        for user in USERS
        if user != winner
    )
    assert run.inputs["lock_token"] == str(path.lock().token)


# ------------------------------------------------------------------------------------- one request, twice
def test_one_slack_request_reaching_the_router_twice_starts_one_run_whose_end_frees_the_lock(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice's /build reaches the router twice (the same trigger_id: a resubmission). GitHub creates the first
    delivery's run but answers its dispatch 502, and cannot list runs: the first attempt is in doubt and comes
    back. Whichever delivery is handled next finds that run — by the correlation id both deliveries carry — and
    never dispatches a second; the run's completion then frees the lock."""
    with github_events(path.world, monkeypatch) as events:
        path.slash("alice")
        first = path.build_batch()
        path.world.github.fail_next(status=502, method="POST", path_contains="/dispatches", performed=True)
        path.world.github.fail_next(3, status=500, method="GET", path_contains="/runs")

        assert failed_ids(deliver(first)) == [first["Records"][0]["messageId"]]  # in doubt: back to the queue
        [run] = path.world.dispatches()
        assert path.replies("alice") == []

        path.slash("alice")  # the same Slack request again
        again = path.build_batch()
        assert deliver(again) == NO_FAILURES
        for record in first["Records"]:  # and the first delivery's message, back from the queue
            record["attributes"]["ApproximateReceiveCount"] = "2"
        assert deliver(first) == NO_FAILURES

        assert [r.id for r in path.world.dispatches()] == [run.id]  # one run for one request
        lock = path.lock()
        assert parse_run_name(run.name) == (BUILD_KEY, lock.correlation_id)
        assert lock.notes["runId"] == str(run.id)
        assert [m.text for m in path.replies("alice")] == [f"🔨 Building router (plt)… <{run.html_url}|run {run.id}>"]

        path.world.github.start_run(run.id)
        path.world.github.complete_run(run.id, "success")
        events.post_all(run_id=run.id)
        assert webhook_lambda.handler(events.queued(), Context()) == NO_FAILURES
        assert path.lock().status is Status.COMPLETED


# ----------------------------------------------------------------------------------- DynamoDB throttling
THROTTLED = json.dumps(
    {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "Rate of requests exceeds"}
).encode()
LOST = json.dumps(
    {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "the answer was lost"}
).encode()


class Throttling:
    """WSGI middleware in front of moto: the next ``count`` DynamoDB requests on ``table`` are throttled — or,
    :meth:`lose_answers`, performed and their answers replaced by a 500 (a response lost on the way back)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.table = ""
        self.left = 0
        self.let_through = 0
        self.refused: list[str] = []
        self.lose: tuple[str, int] = ("", 0)
        self.lost: list[str] = []
        self._mutex = threading.Lock()

    def lose_answer(self, operation: str) -> None:
        """The answer to the next ``operation`` is lost."""
        with self._mutex:
            self.lose = (operation, 1)

    def _answer_lost(self, target: str) -> bool:
        operation = target.rsplit(".", 1)[-1]
        with self._mutex:
            lose, left = self.lose
            if operation != lose or left <= 0:
                return False
            self.lose = (lose, left - 1)
            self.lost.append(operation)
            return True

    def arm(self, table: str, count: int, *, after: int = 0) -> None:
        """Throttle the next ``count`` requests on ``table``, once ``after`` more have gone through."""
        with self._mutex:
            self.table, self.left, self.let_through = table, count, after

    def disarm(self) -> None:
        self.arm("", 0)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith("DynamoDB_"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            table = json.loads(body or b"{}").get("TableName")
            with self._mutex:
                passes = self.let_through > 0 and table == self.table
                self.let_through -= passes
                refuse = not passes and self.left > 0 and table == self.table
                if refuse:
                    self.left -= 1
                    self.refused.append(target.rsplit(".", 1)[-1])
            if refuse:
                start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0")])
                return [THROTTLED]
            if self._answer_lost(target):
                b"".join(self.app(environ, lambda *_: None))  # performed by DynamoDB, the answer dropped
                start_response("500 Internal Server Error", [("Content-Type", "application/x-amz-json-1.0")])
                return [LOST]
        return self.app(environ, start_response)


@dataclass
class ThrottledPath(Path):
    throttling: Throttling


@pytest.fixture
def throttled(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThrottledPath]:
    throttlings: list[Throttling] = []

    def remember(app: WSGIApp) -> WSGIApp:
        throttlings.append(Throttling(app))
        return throttlings[-1]

    with LocalAWS(middleware=remember) as aws:
        reset_moto(aws.url)  # moto's state is the process's: start from nothing, leave nothing
        try:
            with running_world(monkeypatch, aws_endpoint=aws.url) as world:
                base = enter(monkeypatch, world)
                yield ThrottledPath(base.world, base.queues, throttlings[0])
        finally:
            queues.forget_clients()
            reset_moto(aws.url)


def reset_moto(url: str) -> None:
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310 — our loopback server
    with urllib.request.urlopen(reset, timeout=10):  # noqa: S310
        pass


def test_a_burst_of_throttling_is_absorbed_by_botocores_retries(throttled: ThrottledPath) -> None:
    throttled.slash("alice")
    batch = throttled.build_batch()
    throttled.throttling.arm(LOCK_TABLE, 2)

    assert deliver(batch) == NO_FAILURES

    assert throttled.throttling.refused == ["UpdateItem", "UpdateItem"]  # the acquire, twice, then through
    [run] = throttled.world.dispatches()
    assert_built_by(throttled, "alice", run, correlation_id_of(batch["Records"][0]))


@pytest.mark.parametrize("table", [LOCK_TABLE, IDEMPOTENCY_TABLE])
def test_throttling_that_outlasts_the_retries_fails_the_item_with_no_lock_then_the_redelivery_builds(
    throttled: ThrottledPath, monkeypatch: pytest.MonkeyPatch, table: str
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # read when the worker makes its clients, below
    throttled.slash("alice")
    batch = throttled.build_batch()
    throttled.throttling.arm(table, 1_000)

    response = deliver(batch)

    throttled.throttling.disarm()
    assert failed_ids(response) == [batch["Records"][0]["messageId"]]  # back to the queue; then the DLQ
    assert len(throttled.throttling.refused) == 2  # one request, AWS_MAX_ATTEMPTS times; then no other
    assert throttled.world.lock(BUILD_KEY) is None  # no lock left behind by the failure
    assert throttled.world.dispatches() == []
    assert throttled.replies("alice") == []  # nothing to tell yet: the request is not over
    for record in batch["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = "2"
    assert deliver(batch) == NO_FAILURES

    [run] = throttled.world.dispatches()
    assert_built_by(throttled, "alice", run, correlation_id_of(batch["Records"][0]))


# ------------------------------------------------------------------------------------------ lost answers
def test_a_cancel_whose_release_answer_was_lost_still_hands_the_lock_to_the_next_in_line(
    throttled: ThrottledPath,
) -> None:
    """alice's build holds the lock, bob waits in line; alice cancels, and the answer to the force-release —
    which handed the lock to bob — is lost on the way back. botocore retries the write, which now finds bob
    holding the lock: the store recognises its own repeat and still names the hand-off, so bob's build starts."""
    throttled.slash("alice")
    assert deliver(throttled.build_batch()) == NO_FAILURES
    throttled.slash("bob", "router plt --queue")
    assert deliver(throttled.build_batch()) == NO_FAILURES
    [queued] = throttled.replies("bob")
    assert queued.text.startswith("⏳ Queued: position 1 behind alice"), queued.text

    throttled.slash("alice", "cancel router plt")
    # the force-release is decided from the lock cancel read (bob waiting): one write, handing the lock to bob
    throttled.throttling.lose_answer("UpdateItem")
    assert status_lambda.handler(sqs.drain(throttled.queues[Queue.STATUS]), Context()) == NO_FAILURES

    assert throttled.throttling.lost == ["UpdateItem"]
    [first_run] = throttled.world.dispatches()
    assert throttled.world.github.run(first_run.id).conclusion == "cancelled"  # alice's run was still cancelled
    [cancelled] = [m for m in throttled.replies("alice") if m.text.startswith("🛑")]
    assert "cancelled by <@U0ALICE>" in cancelled.text
    handed = throttled.build_batch()
    assert len(handed["Records"]) == 1  # the hand-off, queued once
    assert deliver(handed) == NO_FAILURES
    [_, second] = throttled.world.dispatches()
    lock = throttled.lock()
    assert (lock.owner, lock.notes.get("runId")) == (trigger_id("bob"), str(second.id))


# ---------------------------------------------------------------------------- a store failing before the run
def test_a_throttled_dispatching_note_tells_nobody_it_failed_and_the_retry_builds_once(
    throttled: ThrottledPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is taken; noting ``dispatching`` on it is throttled past botocore's retries. Nothing was
    dispatched, so nothing is over: the message comes back, and its retry builds — once, told once."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    throttled.slash("alice")
    batch = throttled.build_batch()
    throttled.throttling.arm(LOCK_TABLE, 2, after=1)  # the acquire goes through; the note is refused twice

    response = deliver(batch)

    throttled.throttling.disarm()
    assert throttled.throttling.refused == ["UpdateItem", "UpdateItem"]
    assert failed_ids(response) == [batch["Records"][0]["messageId"]]  # back to the queue
    assert throttled.world.dispatches() == []
    assert throttled.replies("alice") == []  # nothing to tell yet: the request is not over
    for record in batch["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = "2"
    assert deliver(batch) == NO_FAILURES

    [run] = throttled.world.dispatches()
    assert_built_by(throttled, "alice", run, correlation_id_of(batch["Records"][0]))
    assert not [m for m in throttled.replies("alice") if "released" in m.text or m.text.startswith("❌")]


def lose_the_answer_of_the_next_write(throttled: ThrottledPath) -> None:
    throttled.throttling.lose_answer("UpdateItem")


@pytest.mark.parametrize("queued", [False, True], ids=["alone", "bob-waiting"])
def test_a_runs_end_whose_release_answer_was_lost_is_still_told_in_the_channel(
    throttled: ThrottledPath, monkeypatch: pytest.MonkeyPatch, queued: bool
) -> None:
    """alice's run completes; the webhook worker's release takes effect but its answer is lost, and botocore's
    retry is answered as a repeat. The channel hears the run's result all the same — once, and as the first
    answer would have told it (with bob's hand-off when bob waited)."""
    throttled.slash("alice")
    assert deliver(throttled.build_batch()) == NO_FAILURES
    if queued:
        throttled.slash("bob", "router plt --queue")
        assert deliver(throttled.build_batch()) == NO_FAILURES
    [run] = throttled.world.dispatches()
    with github_events(throttled.world, monkeypatch) as github:
        throttled.world.github.complete_run(run.id, "success")
        github.post_all(action="completed", run_id=run.id)
        lose_the_answer_of_the_next_write(throttled)
        assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES

    assert throttled.throttling.lost == ["UpdateItem"]
    [posted] = throttled.world.slack.messages("chat.postMessage")
    assert posted.body["channel"] == CHANNEL
    assert posted.text.startswith("✅ router (plt) built in "), posted.text
    assert "started by <@U0ALICE> at <!date^" in posted.text and f"|run {run.id}>" in posted.text
    if queued:
        assert posted.text.endswith(f"⏭️ Handed to <@U0BOB>, next in line (token {throttled.lock().token})."), (
            posted.text
        )
    else:
        assert throttled.lock().status is Status.COMPLETED


def test_a_runs_end_whose_release_answer_was_lost_is_told_after_bob_took_the_lock(
    throttled: ThrottledPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice's run completes; the release takes effect, its answer is lost and not retried (the item fails, SQS
    brings it back). Before it comes back, bob takes the free lock. The redelivery reads bob's lock — and still
    tells alice's result in the channel, from the lock the worker kept before releasing; once, however often the
    event comes again. bob's lock is untouched."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # read when the worker makes its clients, below
    throttled.slash("alice")
    assert deliver(throttled.build_batch()) == NO_FAILURES
    [run] = throttled.world.dispatches()
    with github_events(throttled.world, monkeypatch) as github:
        throttled.world.github.complete_run(run.id, "success")
        github.post_all(action="completed", run_id=run.id)
        completed = github.queued()
        lose_the_answer_of_the_next_write(throttled)
        assert failed_ids(webhook_lambda.handler(completed, Context())) == [completed["Records"][0]["messageId"]]
        assert throttled.world.slack.messages("chat.postMessage") == []

        throttled.slash("bob")
        assert deliver(throttled.build_batch()) == NO_FAILURES
        for _ in range(2):  # SQS brings the event back; then a duplicate of it
            assert webhook_lambda.handler(completed, Context()) == NO_FAILURES

    assert throttled.throttling.lost == ["UpdateItem"]
    [posted] = throttled.world.slack.messages("chat.postMessage")
    assert posted.body["channel"] == CHANNEL
    assert posted.text.startswith("✅ router (plt) built in "), posted.text
    assert "started by <@U0ALICE> at <!date^" in posted.text and f"|run {run.id}>" in posted.text
    lock = throttled.lock()
    assert (lock.owner, lock.status) == (trigger_id("bob"), Status.IN_PROGRESS)


@pytest.mark.parametrize("queued", [False, True], ids=["alone", "bob-waiting"])
def test_a_force_unlock_whose_answer_was_lost_is_still_announced(throttled: ThrottledPath, queued: bool) -> None:
    """An admin presses *Force unlock*; the force-release takes effect, its answer is lost and the retry is a
    repeat. The channel is told as the first answer would have told it, and the prompt says it was done."""
    throttled.slash("alice")
    assert deliver(throttled.build_batch()) == NO_FAILURES
    if queued:
        throttled.slash("bob", "router plt --queue")
        assert deliver(throttled.build_batch()) == NO_FAILURES
    held = throttled.lock()
    pressed = InteractionEnvelope(
        request_id="trigger-confirm",
        correlation_id="cid-confirm",
        action_id=UNLOCK_CONFIRM_ACTION,
        value=f"{BUILD_KEY}:{held.token}",
        user_id="U0ADMIN",
        user_name="admin",
        team_id="T0TEAM",
        api_app_id="A0APP",
        channel_id=CHANNEL,
        response_url=throttled.world.slack.response_url("confirm"),
        received_at=int(time.time()),
    )
    lose_the_answer_of_the_next_write(throttled)
    assert status_lambda.handler(sqs.event(sqs.record(pressed.to_json())), Context()) == NO_FAILURES

    assert throttled.throttling.lost == ["UpdateItem"]
    [news] = throttled.world.slack.messages("chat.postMessage")
    assert news.text.startswith(
        f"🔓 <@U0ADMIN> force-unlocked `{BUILD_KEY}` (was held by alice (<@U0ALICE>) since <!date^"
    ), news.text
    assert f"token {held.token})." in news.text
    if queued:
        assert news.text.endswith(f"⏭️ Handed to <@U0BOB>, next in line (token {held.token + 1})."), news.text
    [replaced] = throttled.world.replies_to("confirm")
    assert replaced.text.startswith(f"✅ Force-released `{BUILD_KEY}` (token {held.token})"), replaced.text
