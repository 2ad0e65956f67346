"""End to end over the local stack: real HTTP into the router, real SQS polling on the moto server, the workers as
deployed, the GitHub and Slack stand-ins on loopback.

Each test gets a stack of its own (:func:`running`). People are a :class:`~workers.local.workspace.Workspace`:
signed requests over HTTP, replies read from the Slack stand-in. Time is a :class:`SimulatedClock`, the stack's
clock (``StackOptions.clock``), which the workers' lock store reads: it keeps real time until a test moves it
forward, where a lease must run out or come near its end. DynamoDB, SQS, the router and the workers are the real
code paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import urllib3

from lockcore import machine as m
from lockcore.dynamodb import DynamoDBLockStore
from lockcore.record import LockRecord, Status
from tests.workers.serving import chatops_serve, clean_environment
from workers.local.github import GitHubStandIn, WorkflowRun, webhook_sender
from workers.local.slack import PostedMessage, SlackStandIn
from workers.local.stack import LocalStack, StackOptions
from workers.local.workspace import Person, Sent, Workspace, slack_signature
from workers.protocol.config import Queue

pytestmark = pytest.mark.timeout(60)

BUILD_KEY = "build-router-plt"
DEPLOY_KEY = "deploy-api-plt"
ALICE, BOB, CAROL, DAVE, ERIN = (Person.named(n) for n in ("alice", "bob", "carol", "dave", "erin"))
ROOT = Path(__file__).resolve().parents[2]


class SimulatedClock:
    """Real time plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: int) -> None:
        self.offset += seconds


@dataclass
class Local:
    stack: LocalStack
    github: GitHubStandIn
    slack: SlackStandIn
    workspace: Workspace
    store: DynamoDBLockStore

    def send(self, person: Person, text: str, slash: str = "/build") -> Sent:
        sent = self.workspace.command(person, slash, text)
        assert sent.status == 200, sent.body
        return sent

    def reply(self, sent: Sent, count: int = 1) -> PostedMessage:
        return self.workspace.await_replies(sent, count)[count - 1]

    def lock(self, key: str = BUILD_KEY) -> LockRecord:
        record = self.store.get(key)
        assert record is not None
        return record

    def state(self, key: str = BUILD_KEY) -> m.LockState:
        return self.store.state(key)[0]

    def until_state(self, state: m.LockState, key: str = BUILD_KEY) -> LockRecord:
        self.stack.wait_until(lambda: self.state(key) is state, f"{key} to be {state.value}")
        return self.lock(key)

    def runs(self, key: str = BUILD_KEY) -> list[WorkflowRun]:
        return [run for run in self.github.runs if run.name.startswith(f"{key} ")]

    def channel(self) -> list[str]:
        return [post.text for post in self.workspace.channel_posts()]

    def channel_post(self, starting: str) -> str:
        self.stack.wait_until(lambda: any(t.startswith(starting) for t in self.channel()), f"a post {starting!r}")
        return next(text for text in self.channel() if text.startswith(starting))

    clock: SimulatedClock


@contextlib.contextmanager
def running(options: StackOptions) -> Iterator[Local]:
    """A stack of its own on a :class:`SimulatedClock`; the workers' logs thrown away (a failing test shows what
    people saw instead)."""
    clock = SimulatedClock()
    with (
        open(os.devnull, "w", encoding="utf-8") as quiet,
        LocalStack(dataclasses.replace(options, clock=clock), logs=quiet) as stack,
    ):
        assert stack.github is not None and stack.slack is not None
        workspace = Workspace(stack.url, stack.secrets["SLACK_SIGNING_SECRET"], stack.slack)
        yield Local(stack, stack.github, stack.slack, workspace, stack.lock_store(), clock)


@pytest.fixture
def local() -> Iterator[Local]:
    # Runs end only when a test says so; the reaper runs only when a test calls it.
    with running(StackOptions.isolated(github_delay=None, reaper_seconds=3600)) as stack:
        yield stack


# --------------------------------------------------------------------------------------------- one user
def test_a_single_build_holds_the_lock_until_its_run_completes(local: Local) -> None:
    sent = local.send(ALICE, "router plt")
    assert sent.acknowledgement == "⏳ Got it: /build router plt — checking the lock…"

    started = local.reply(sent)
    assert started.text.startswith("🔨 Building router (plt)…")
    assert started.body["response_type"] == "in_channel"
    [run] = local.runs()
    record = local.lock()
    assert (record.status, record.owner, record.locked_by) == (Status.IN_PROGRESS, sent.request_id, ALICE.user_id)
    assert run.inputs["lock_key"] == BUILD_KEY and run.inputs["lock_token"] == str(record.token)
    assert record.notes["runId"] == str(run.id), "the run is noted on the lock"

    local.github.start_run(run.id)
    local.github.drain()
    assert local.state() is m.LockState.HELD, "an in_progress event does not release"

    local.github.complete_run(run.id, "success")
    released = local.until_state(m.LockState.COMPLETED)
    assert released.token == record.token
    result = local.channel_post("✅")
    assert result.startswith("✅ router (plt) built in") and f"<@{ALICE.user_id}>" in result

    again = local.reply(local.send(BOB, "router plt"))
    assert again.text.startswith("🔨 Building router (plt)…")
    assert local.lock().token == record.token + 1 and local.lock().locked_by == BOB.user_id


def test_a_failed_run_releases_the_lock_as_failed(local: Local) -> None:
    local.reply(local.send(ALICE, "router plt"))
    [run] = local.runs()
    local.github.complete_run(run.id, "failure")
    assert local.until_state(m.LockState.FAILED).status is Status.FAILED
    assert local.channel_post("❌").startswith("❌ router (plt) build failed (failure)")


# ------------------------------------------------------------------------------------------ many users
def test_concurrent_users_get_one_run_and_the_others_are_told_who_holds_it(local: Local) -> None:
    people = (ALICE, BOB, CAROL, DAVE, ERIN)
    sent = [local.workspace.command(person, "/build", "router plt") for person in people]
    assert {request.status for request in sent} == {200}

    first = {request.person: local.reply(request).text for request in sent}
    winners = [person for person, text in first.items() if text.startswith("🔨")]
    assert len(winners) == 1
    holder = local.lock()
    assert holder.locked_by == winners[0].user_id and holder.token == 1
    assert len(local.runs()) == 1, "one dispatch, whatever the order the workers ran in"
    for person, text in first.items():
        if person is not winners[0]:
            assert text.startswith(f"⚠️ Build already in progress — started by {winners[0].name} "), text


def test_the_lock_switch_dispatches_without_the_lock(local: Local, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_DISTRIBUTED_LOCK", "false")
    sent = [local.send(person, "router plt") for person in (ALICE, BOB)]
    assert all("starting the workflow" in request.acknowledgement for request in sent)
    for request in sent:
        assert "(the distributed lock is switched off)" in local.reply(request).text
    assert len(local.runs()) == 2
    assert local.store.get(BUILD_KEY) is None


# ------------------------------------------------------------------------------------------ expiry
def test_a_lease_expires_after_its_ttl_and_the_old_runs_late_webhook_is_ignored(local: Local) -> None:
    clock = local.clock
    local.reply(local.send(ALICE, "router plt"))
    [old_run] = local.runs()
    first = local.lock()

    clock.advance(first.lease_expires_at - int(time.time()) + 60)  # the 10-minute lease ended a minute ago
    assert local.state() is m.LockState.LAPSED
    taken = local.reply(local.send(BOB, "router plt"))
    assert taken.text.startswith("🔨 Building router (plt)…"), "a lapsed lease is free to take"
    second = local.lock()
    assert second.locked_by == BOB.user_id and second.token == first.token + 1

    local.github.complete_run(old_run.id, "success")  # the first run ends, late
    local.github.drain()
    local.stack.settle()
    assert local.lock() == second, "the older run's completion does not release the newer holder"
    assert not any(text.startswith("✅") for text in local.channel())


def test_a_late_redelivered_webhook_of_an_older_run_is_ignored(local: Local) -> None:
    local.reply(local.send(ALICE, "router plt"))
    [old_run] = local.runs()
    local.github.complete_run(old_run.id, "success")
    local.until_state(m.LockState.COMPLETED)
    local.reply(local.send(BOB, "router plt"))
    newer = local.lock()
    posts = len(local.channel())

    # GitHub redelivers the first run's completion (a retry, or a person pressing "Redeliver").
    resend = webhook_sender(f"{local.stack.url}/github/webhook", local.stack.secrets["GITHUB_WEBHOOK_SECRET"])
    resend("completed", local.github.run(old_run.id).to_json())
    local.stack.settle()
    assert local.lock() == newer and local.state() is m.LockState.HELD
    assert len(local.channel()) == posts, "nothing said twice"


# ------------------------------------------------------------------------------------------ the reaper
def test_a_missed_webhook_is_recovered_by_the_reaper(local: Local) -> None:
    local.reply(local.send(ALICE, "router plt"))
    [run] = local.runs()
    local.stack.deliver_webhooks = False  # GitHub's webhook never arrives
    local.github.complete_run(run.id, "success")
    local.github.drain()
    local.stack.settle()
    assert local.state() is m.LockState.HELD, "without the webhook the lock stays held"

    local.stack.schedules["reaper"].run_now()
    assert local.state() is m.LockState.COMPLETED
    assert local.channel_post("✅").startswith("✅ router (plt) built in")


def test_a_long_deploy_keeps_its_lock(local: Local) -> None:
    clock = local.clock
    started = local.reply(local.send(ALICE, "api plt", slash="/deploy"))
    assert started.text.startswith("🚀 Deploying api (plt)")
    [run] = local.runs(DEPLOY_KEY)
    first = local.lock(DEPLOY_KEY)
    lease = first.lease_expires_at - int(clock())
    assert 1790 <= lease <= 1800, "a deploy's lease is 30 minutes"

    clock.advance(25 * 60)  # 25 minutes in: the run reports in_progress, its lease is renewed
    local.github.start_run(run.id)
    local.github.drain()
    local.stack.wait_until(lambda: local.lock(DEPLOY_KEY).lease_expires_at > first.lease_expires_at, "a renewal")
    renewed = local.lock(DEPLOY_KEY)
    assert renewed.token == first.token and renewed.lease_expires_at >= int(clock()) + 1790

    clock.advance(25 * 60)  # 50 minutes in, no event: the reaper sees the run still going and renews again
    local.stack.schedules["reaper"].run_now()
    again = local.lock(DEPLOY_KEY)
    assert again.lease_expires_at > renewed.lease_expires_at and local.state(DEPLOY_KEY) is m.LockState.HELD

    intruder = local.reply(local.send(BOB, "api plt", slash="/deploy"))
    assert intruder.text.startswith("⚠️ Deploy already in progress"), "still held, 50 minutes into a 30-minute lease"
    local.github.complete_run(run.id, "success")
    assert local.until_state(m.LockState.COMPLETED, DEPLOY_KEY).token == first.token


# ------------------------------------------------------------------------------------------ plumbing
def test_a_record_that_fails_comes_back_then_goes_to_the_dlq_and_its_neighbours_do_not() -> None:
    with running(StackOptions.isolated(github_delay=None, reaper_seconds=3600, visibility_timeout=1)) as local:
        sqs = boto3.client("sqs", endpoint_url=local.stack.aws_url, region_name="ca-central-1")
        url = local.stack.queue_urls[Queue.STATUS]
        sqs.send_message(QueueUrl=url, MessageBody='{"version": 1, "kind": "not-ours"}')
        status = local.send(CAROL, "status --locks")
        assert local.reply(status).text.startswith("No builds or deploys hold a lock")

        told = local.stack.dead_letter_pollers[Queue.STATUS]
        local.stack.wait_until(lambda: told.stats.records == 1, "the bad message taken from the DLQ")
        poller = local.stack.pollers[Queue.STATUS]
        assert poller.stats.failed_records == 3, "received three times (maxReceiveCount), failed each time"
        assert told.stats.failed_records == 0, "not ours: dropped in one log line, never back in the DLQ"
        local.stack.settle()
        assert local.stack.dead_letters(Queue.STATUS) == []
        assert len(local.workspace.replies(status)) == 1, "the good message was handled once"


def test_the_user_of_a_build_that_fails_every_attempt_is_told_that_nothing_was_started() -> None:
    """Before the dead-letter worker, a request retried into its DLQ left its user with "⏳ Got it" alone."""
    options = StackOptions.isolated(github_delay=None, reaper_seconds=3600, visibility_timeout=1)
    with running(options) as local:
        dynamodb = boto3.client("dynamodb", endpoint_url=local.stack.aws_url, region_name="ca-central-1")
        dynamodb.delete_table(TableName=options.idempotency_table)  # every attempt fails before the lock
        sent = local.send(ALICE, "router plt")
        assert sent.acknowledgement == "⏳ Got it: /build router plt — checking the lock…"

        [told] = local.workspace.await_replies(sent, timeout=30)
        assert told.text == (
            "❌ Your `/build router plt` could not be done: it failed on every attempt. Nothing was started; try again."
        )
        assert told.body["response_type"] == "ephemeral", "only the requester reads why"
        assert local.stack.pollers[Queue.BUILD].stats.failed_records == 3
        assert local.store.get(BUILD_KEY) is None and local.runs() == [], "and it is true: nothing was started"
        local.stack.settle()
        assert local.stack.dead_letters(Queue.BUILD) == [] and local.channel() == []


def test_the_router_refuses_an_unsigned_command_over_http_and_queues_nothing(local: Local) -> None:
    http = urllib3.PoolManager()
    body = "command=/build&text=router+plt&user_id=U0MALLORY&team_id=T0LOCAL&trigger_id=1.2.3&response_url=x"
    now = int(time.time())
    forged = slack_signature("not-the-secret", now, body)
    answer = http.request(
        "POST",
        f"{local.stack.url}/slack/commands",
        body=body,
        headers={"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": forged},
    )
    assert answer.status == 401
    assert http.request("GET", f"{local.stack.url}/slack/commands").status == 405
    local.stack.settle()
    assert local.stack.queue_depths()[Queue.BUILD] == (0, 0) and local.runs() == []


# ------------------------------------------------------------------------------------------ chatops serve
def test_chatops_serve_runs_the_stack_until_sigterm(tmp_path: Path) -> None:
    # XDG_RUNTIME_DIR: where it leaves its card for `chatops try`.
    secret = {"SLACK_SIGNING_SECRET": "serve-test-signing-secret", "XDG_RUNTIME_DIR": str(tmp_path)}
    with chatops_serve("--github-delay", "1", env=secret) as serve:
        app, aws, text, server = serve.url, serve.aws_url, serve.described, serve.process
        assert "SLACK_SIGNING_SECRET from the environment (not shown)" in text
        assert "serve-test-signing-secret" not in text
        assert re.search(r"GITHUB_WEBHOOK_SECRET=[0-9a-f]{32}  \(generated for this run; local only\)", text)

        slack_api = re.search(r"built-in Slack stand-in at (http://127\.0\.0\.1:\d+)/api/", text)
        assert slack_api
        # Where `chatops try` finds it: its URL, its Slack stand-in, and no secret that came from the environment.
        [card] = (tmp_path / "chatops").iterdir()
        assert card.name == f"serve-{app.rsplit(':', 1)[1]}.json" and card.stat().st_mode & 0o777 == 0o600
        assert json.loads(card.read_text()) == {
            "url": app,
            "slack_url": slack_api[1],
            "signing_secret": None,
            "pid": server.pid,
        }
        response_url = f"{slack_api[1]}/commands/T0LOCAL/serve-test/stand-in"
        form = (
            "command=%2Fbuild&text=router+plt&user_id=U0ALICE&user_name=alice&team_id=T0LOCAL&channel_id=C0B"
            f"&trigger_id=77.88.99&response_url={response_url}"
        )
        now = int(time.time())
        answer = urllib3.PoolManager().request(
            "POST",
            f"{app}/slack/commands",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": str(now),
                "X-Slack-Signature": slack_signature("serve-test-signing-secret", now, form),
            },
        )
        assert answer.status == 200 and "checking the lock" in json.loads(answer.data)["text"]

        locks = {**clean_environment(), "AWS_ENDPOINT_URL": aws, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
        locks["AWS_DEFAULT_REGION"] = "ca-central-1"

        def chatops_locks(*argv: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "workers.cli", "locks", *argv, "--json"],
                cwd=ROOT,
                env=locks,
                capture_output=True,
                text=True,
                check=True,
            )
            return done.stdout

        deadline = time.monotonic() + 15
        while json.loads(chatops_locks("show", BUILD_KEY))["state"] != "COMPLETED":
            assert time.monotonic() < deadline, "the run completed (1 s) and its webhook released the lock"
            time.sleep(0.3)
        assert json.loads(chatops_locks("list", "--all"))["locks"][0]["lockedBy"] == "U0ALICE"
    assert server.returncode == 0
    assert serve.said_last.endswith("chatops serve: stopped\n")
    assert not list((tmp_path / "chatops").iterdir()), "the card goes with the serve"


# ------------------------------------------------------------------------------------------ /build cancel
def test_the_holder_cancels_their_build_and_the_lock_is_free(local: Local) -> None:
    local.reply(local.send(ALICE, "router plt"))
    [run] = local.runs()
    local.github.start_run(run.id)

    other = local.reply(local.send(BOB, "cancel router plt"))
    assert other.text.startswith("🚫"), "neither the holder nor an admin"
    assert local.state() is m.LockState.HELD

    cancelled = local.reply(local.send(ALICE, "cancel router plt"))
    assert cancelled.text.startswith("🛑 router (plt) build") and "cancelled by <@U0ALICE>" in cancelled.text
    assert cancelled.body["response_type"] == "in_channel"
    assert local.state() is not m.LockState.HELD
    assert local.github.run(run.id).conclusion == "cancelled"
    assert "cancelled from Slack by alice" in (local.lock().release_reason or "")
    local.github.drain()
    local.stack.settle()
    assert local.channel() == [], "GitHub's own cancelled event finds the lock released: nothing said twice"
    assert local.reply(local.send(BOB, "router plt")).text.startswith("🔨"), "the next build goes through"
