"""The router end to end: real-shaped Function URL events in, SQS (moto in-process) and HTTP answers out.

Slack's ``usergroups.users.list`` is a real HTTP server on loopback that answers from a dict and records what it
was asked; nothing of ours is mocked.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws
from slack_sdk.signature import SignatureVerifier

from tests.workers import function_url as f
from tests.workers import sqs_events as sqs
from workers.adapters import queues, runtime
from workers.adapters.usergroups import UserGroups
from workers.handlers import router
from workers.local.motoserver import LOCAL_CREDENTIALS
from workers.protocol.commands import Cancel, Dispatch, Echo, LockStatus, Unlock
from workers.protocol.config import Action, Queue
from workers.protocol.envelope import (
    CommandEnvelope,
    HomeOpened,
    InteractionEnvelope,
    WorkflowRunEnvelope,
    correlation_id_of,
    read_message,
)
from workers.protocol.runs import completed_event_of
from workers.protocol.workflow import Run

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"


# ------------------------------------------------------------------------------------------------ fixtures
@dataclass
class SlackAPI:
    """Slack's Web API as far as the router uses it: usergroups.users.list."""

    groups: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def slack_api() -> Iterator[SlackAPI]:
    api = SlackAPI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            group = form.get("usergroup", [""])[0]
            api.asked.append(group)
            if self.path.endswith("/usergroups.users.list") and group in api.groups:
                body = {"ok": True, "users": api.groups[group]}
            else:
                body = {"ok": False, "error": "no_such_subteam"}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}/api/"
    yield api
    server.shutdown()
    thread.join()


@dataclass
class Queues:
    urls: dict[Queue, str]

    def messages(self, queue: Queue) -> list[str]:
        sqs = boto3.client("sqs")
        received = sqs.receive_message(QueueUrl=self.urls[queue], MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [message["Body"] for message in received.get("Messages", [])]

    def all_empty(self) -> bool:
        return all(not self.messages(queue) for queue in Queue)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, slack_api: SlackAPI) -> Iterator[Queues]:
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "SLACK_TEAM_IDS", "SLACK_APP_ID", "ENABLE_DISTRIBUTED_LOCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHATOPS_CONFIG", str(SHIPPED))
    monkeypatch.setenv("SLACK_SIGNING_SECRET", f.SIGNING_SECRET)
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", f.WEBHOOK_SECRET)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_API_URL", slack_api.url)
    queues.forget_clients()
    UserGroups.forget()
    with mock_aws():
        sqs = boto3.client("sqs")
        urls = {queue: sqs.create_queue(QueueName=f"chatops-{queue.value}")["QueueUrl"] for queue in Queue}
        for queue, url in urls.items():
            monkeypatch.setenv(queue.url_env, url)
        yield Queues(urls)
    queues.forget_clients()


def call(event: dict[str, Any]) -> tuple[int, str]:
    response = router.handler(event, None)
    assert set(response) == {"statusCode", "headers", "body"}
    return response["statusCode"], response["body"]


def slash(text: str = "router plt", command: str = "/build", **fields: str) -> tuple[int, str]:
    body = f.slash_form(text, command, **fields)
    return call(f.event("/slack/commands", body, f.slack_headers(body)))


def ephemeral_text(body: str) -> str:
    reply = json.loads(body)
    assert reply["response_type"] == "ephemeral"
    text = reply["text"]
    assert isinstance(text, str)
    return text


def only_message(queues: Queues, queue: Queue) -> str:
    bodies = queues.messages(queue)
    assert len(bodies) == 1, bodies
    assert all(not queues.messages(other) for other in Queue if other is not queue)
    return bodies[0]


# --------------------------------------------------------------------------------------------- the command
def test_a_build_is_queued_and_acknowledged(aws: Queues) -> None:
    started = time.monotonic()
    status, body = slash("router plt")
    assert time.monotonic() - started < 3
    assert status == 200
    assert ephemeral_text(body) == "⏳ Got it: /build router plt — checking the lock…"
    envelope = CommandEnvelope.from_json(only_message(aws, Queue.BUILD))
    assert envelope.command == Dispatch(Action.BUILD, "router", "plt")
    assert envelope.request_id == "13345224609.738474920.8088930838d88f008e0"
    assert (envelope.user_id, envelope.user_name, envelope.channel_id) == ("U0ALICE", "alice", "C0CHAN")
    assert (envelope.team_id, envelope.api_app_id, envelope.slash) == ("T0TEAM", "A0APP", "/build")
    assert envelope.response_url == f.RESPONSE_URL
    assert envelope.correlation_id and abs(envelope.received_at - time.time()) < 10


def test_the_same_slack_request_delivered_twice_carries_one_correlation_id(aws: Queues) -> None:
    """A resubmission of one slash command (its trigger_id) is the same request: both envelopes carry the
    correlation id derived from it, by which the worker finds a run the other may have started."""
    slash("router plt")
    slash("router plt")
    slash("router plt", trigger_id="13345224609.738474920.another")
    first, again, other = (CommandEnvelope.from_json(body) for body in aws.messages(Queue.BUILD))
    assert first.request_id == again.request_id != other.request_id
    assert first.correlation_id == again.correlation_id == correlation_id_of(first.request_id)
    assert other.correlation_id == correlation_id_of(other.request_id) != first.correlation_id


def test_a_base64_body_is_read(aws: Queues) -> None:
    body = f.slash_form("api plt main", "/deploy")
    status, reply = call(f.event("/slack/commands", body, f.slack_headers(body), base64_encoded=True))
    assert status == 200, reply
    envelope = CommandEnvelope.from_json(only_message(aws, Queue.DEPLOY))
    assert envelope.command == Dispatch(Action.DEPLOY, "api", "plt", "main")


@pytest.mark.parametrize(
    ("command", "text", "queue", "expected"),
    [
        ("/build", "status --locks", Queue.STATUS, LockStatus()),
        ("/echo", "ping", Queue.ECHO, Echo("ping")),
    ],
)
def test_status_and_echo_go_to_their_queues(
    aws: Queues, command: str, text: str, queue: Queue, expected: object
) -> None:
    status, body = slash(text, command)
    assert status == 200 and ephemeral_text(body).startswith("⏳ Got it")
    assert CommandEnvelope.from_json(only_message(aws, queue)).command == expected


def test_the_lock_switch_changes_the_acknowledgement(aws: Queues, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_DISTRIBUTED_LOCK", "false")
    assert ephemeral_text(slash()[1]) == "⏳ Got it: /build router plt — starting the workflow…"


# ---------------------------------------------------------------------------------------------- signatures
def unsigned_variants() -> list[tuple[str, dict[str, str]]]:
    body = f.slash_form()
    now = int(time.time())
    headers = f.slack_headers(body)
    return [
        ("no headers", {}),
        ("no signature", {k: v for k, v in headers.items() if k != "x-slack-signature"}),
        ("no timestamp", {k: v for k, v in headers.items() if k != "x-slack-request-timestamp"}),
        ("wrong secret", f.slack_headers(body, secret="another-secret")),
        ("stale", f.slack_headers(body, timestamp=now - 6 * 60)),
        ("future", f.slack_headers(body, timestamp=now + 6 * 60)),
        ("other body", f.slack_headers(f.slash_form("api plt"))),
        ("junk timestamp", {**headers, "x-slack-request-timestamp": "١٢٣"}),
        ("junk signature", {**headers, "x-slack-signature": "v0=é"}),
    ]


@pytest.mark.parametrize("case", [case for case, _ in unsigned_variants()])
def test_without_a_valid_signature_401_and_nothing_queued(aws: Queues, case: str) -> None:
    # Signed now, not at collection: a suite that runs for minutes would otherwise age "future" into the window.
    headers = dict(unsigned_variants())[case]
    status, _ = call(f.event("/slack/commands", f.slash_form(), headers))
    assert status == 401, case
    status, _ = call(f.event("/slack/interactions", f.interaction_form(), headers))
    assert status == 401, case
    assert aws.all_empty()


def test_slacks_ssl_check_is_answered(aws: Queues) -> None:
    body = "ssl_check=1&token=deprecated"
    assert call(f.event("/slack/commands", body, f.slack_headers(body))) == (200, "")
    assert call(f.event("/slack/commands", body, {}))[0] == 401
    assert aws.all_empty()


def test_unknown_paths_and_methods(aws: Queues) -> None:
    body = f.slash_form()
    assert call(f.event("/slack/command", body, f.slack_headers(body)))[0] == 404
    assert call(f.event("/", "", {}, method="GET"))[0] == 404
    assert call(f.event("/slack/commands", body, f.slack_headers(body), method="GET"))[0] == 405
    assert call({"rawPath": "/slack/commands"})[0] == 400
    assert aws.all_empty()


# ------------------------------------------------------------------------------------ answered at once
@pytest.mark.parametrize(
    ("command", "text", "expected"),
    [
        ("/build", "help", "*ChatOps commands*"),
        ("/build", "", "⚠️ /build needs a component and an environment."),
        ("/build", "web plt", "⚠️ Unknown component `web`."),
        ("/deploy", "api qa", "⚠️ Unknown environment `qa`."),
        ("/launch", "api plt", "⚠️ Unknown command `/launch`."),
    ],
)
def test_help_and_usage_are_answered_not_queued(aws: Queues, command: str, text: str, expected: str) -> None:
    status, body = slash(text, command)
    assert status == 200
    reply = ephemeral_text(body)
    assert reply.startswith(expected)
    assert "Components: `router`, `api`. Environments: `plt`, `prod`." in reply
    assert aws.all_empty()


def test_another_workspace_or_app_is_refused(aws: Queues, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_TEAM_IDS", "T0TEAM")
    monkeypatch.setenv("SLACK_APP_ID", "A0APP")
    assert "does not serve your workspace" in ephemeral_text(slash(team_id="T0OTHER")[1])
    assert "another Slack app" in ephemeral_text(slash(api_app_id="A0OTHER")[1])
    assert "does not serve your workspace" in ephemeral_text(
        call(f.event("/slack/interactions", body := f.interaction_form(team={"id": "T0X"}), f.slack_headers(body)))[1]
    )
    assert aws.all_empty()
    assert slash()[0] == 200
    assert len(aws.messages(Queue.BUILD)) == 1


def test_prod_deploys_are_for_the_platform_group(aws: Queues, slack_api: SlackAPI) -> None:
    slack_api.groups["S0PLATFORM"] = ["U0PLAT"]
    status, body = slash("api prod", "/deploy")
    assert status == 200
    assert ephemeral_text(body) == (
        "🚫 Sorry, you may not run /deploy api prod. Who may: members of <!subteam^S0PLATFORM>."
    )
    assert aws.all_empty()
    status, body = slash("api prod v1.2", "/deploy", user_id="U0PLAT", user_name="pat")
    assert ephemeral_text(body).startswith("⏳ Got it: /deploy api prod v1.2")
    assert CommandEnvelope.from_json(only_message(aws, Queue.DEPLOY)).user_id == "U0PLAT"
    assert slack_api.asked == ["S0PLATFORM"]  # asked once, then cached
    slash("api plt", "/deploy")  # anyone outside prod: no question to Slack
    assert slack_api.asked == ["S0PLATFORM"]


def test_when_slack_cannot_say_who_is_in_the_group_the_router_refuses(aws: Queues, slack_api: SlackAPI) -> None:
    status, body = slash("api prod", "/deploy")  # the stand-in does not know S0PLATFORM
    assert status == 200
    assert "couldn't check your user groups" in ephemeral_text(body)
    assert aws.all_empty()


def test_groups_can_come_from_the_config_file(
    aws: Queues, slack_api: SlackAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = SHIPPED.read_text(encoding="utf-8") + '\n[slack.user_groups]\nS0PLATFORM = ["U0PLAT"]\n'
    (tmp_path / "chatops.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("CHATOPS_CONFIG", str(tmp_path / "chatops.toml"))
    assert ephemeral_text(slash("api prod", "/deploy", user_id="U0PLAT")[1]).startswith("⏳")
    assert slack_api.asked == []


def test_only_admins_unlock(aws: Queues) -> None:
    assert ephemeral_text(slash("unlock router plt")[1]) == (
        "🚫 Sorry, you may not run /build unlock router plt. Who may: <@U0ADMIN>."
    )
    assert aws.all_empty()
    assert ephemeral_text(slash("unlock router plt", user_id="U0ADMIN")[1]).startswith("⏳ Got it: /build unlock")
    envelope = CommandEnvelope.from_json(only_message(aws, Queue.STATUS))
    assert envelope.command == Unlock(Action.BUILD, "router", "plt")


def test_a_response_url_off_slack_is_refused(aws: Queues) -> None:
    status, body = slash(response_url="https://attacker.example/hook")
    assert status == 200 and "not on an allowed host" in ephemeral_text(body)
    assert aws.all_empty()


# ------------------------------------------------------------------------------------------ queue failures
def test_a_queue_that_cannot_be_written_is_one_ephemeral_line(aws: Queues, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILD_QUEUE_URL", aws.urls[Queue.BUILD].replace("chatops-build", "no-such-queue"))
    status, body = slash()
    assert status == 200
    assert ephemeral_text(body) == router.COULD_NOT_QUEUE
    monkeypatch.delenv("BUILD_QUEUE_URL")
    status, body = slash()
    assert (status, ephemeral_text(body)) == (200, router.COULD_NOT_QUEUE)
    assert aws.all_empty()


def test_a_fifo_queue_gets_a_group_and_a_deduplication_id(aws: Queues, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="chatops-build.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    monkeypatch.setenv("BUILD_QUEUE_URL", url)
    assert slash()[0] == 200
    assert slash()[0] == 200  # the same trigger_id again: deduplicated by SQS
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(received) == 1
    assert received[0]["Attributes"]["MessageGroupId"] == "build-router-plt"


# -------------------------------------------------------------------------------------------- interactions
def interact(**fields: Any) -> tuple[int, str]:
    body = f.interaction_form(**fields)
    return call(f.event("/slack/interactions", body, f.slack_headers(body)))


def test_an_admin_confirming_an_unlock_is_queued_for_the_status_worker(aws: Queues) -> None:
    assert interact() == (200, "")
    envelope = read_message(only_message(aws, Queue.STATUS))
    assert isinstance(envelope, InteractionEnvelope)
    assert (envelope.action_id, envelope.value, envelope.user_id) == ("unlock.confirm", "build-router-plt:3", "U0ADMIN")
    assert (envelope.request_id, envelope.channel_id) == ("555.666.abcdef", "C0CHAN")
    assert envelope.correlation_id == correlation_id_of("555.666.abcdef")


def test_interactions_that_are_not_ours_or_not_allowed_are_dropped(aws: Queues) -> None:
    not_admin = {"id": "U0ALICE", "username": "alice", "team_id": "T0TEAM"}
    assert interact(user=not_admin)[0] == 200
    assert interact(action_id="something.else")[0] == 200
    assert interact(type="view_submission")[0] == 200
    assert interact(response_url="https://attacker.example/x")[0] == 400
    assert aws.all_empty()
    assert interact(user=not_admin, actions=[{"action_id": "unlock.cancel", "value": "x"}])[0] == 200
    assert len(aws.messages(Queue.STATUS)) == 1  # anyone may cancel


def test_anyone_pressing_notify_me_when_free_is_queued_for_the_status_worker(aws: Queues) -> None:
    alice = {"id": "U0ALICE", "username": "alice", "team_id": "T0TEAM"}
    assert interact(user=alice, actions=[{"action_id": "lock.watch", "value": "build-router-plt"}])[0] == 200
    envelope = read_message(only_message(aws, Queue.STATUS))
    assert isinstance(envelope, InteractionEnvelope)
    assert (envelope.action_id, envelope.value, envelope.user_id) == ("lock.watch", "build-router-plt", "U0ALICE")


# ------------------------------------------------------------------------------------------------- GitHub
def workflow_run(repository: str = "example-org/platform", attempt: int = 1) -> bytes:
    return json.dumps(
        {
            "action": "completed",
            "workflow_run": {
                "id": 30433642,
                "name": "Build",
                "display_title": "build router plt [cid-123]",
                "status": "completed",
                "conclusion": "success",
                "html_url": "https://github.com/example-org/platform/actions/runs/30433642",
                "head_sha": "acb5820ced9479c074f688cc328bf03f341a511d",
                "path": ".github/workflows/build.yml",
                "event": "workflow_dispatch",
                "workflow_id": 161335,
                "run_attempt": attempt,
            },
            "repository": {"full_name": repository},
        }
    ).encode()


def test_the_reapers_hand_over_of_a_runs_end_is_the_event_github_would_have_sent(aws: Queues) -> None:
    """The reaper tells the webhook worker of a run's end it could not tell itself as the ``completed`` event
    built from GitHub's REST run (:func:`workers.protocol.runs.completed_event_of`); the webhook worker must not be
    able to tell it from the delivery, a re-run's attempt included."""
    body = workflow_run(attempt=3)
    assert call(f.event("/github/webhook", body, f.github_headers(body, delivery="d-43")))[0] == 202
    delivered = WorkflowRunEnvelope.from_json(only_message(aws, Queue.GITHUB))
    payload = json.loads(body)
    rest_run = {**payload["workflow_run"], "repository": payload["repository"]}  # REST nests the repository
    handed = completed_event_of(
        Run.from_json(rest_run), correlation_id="cid-reaper", delivery_id="reaper-1", received_at=1
    )
    assert handed.run_attempt == 3
    ignored = {"delivery_id", "correlation_id", "received_at"}
    assert {k: v for k, v in asdict(handed).items() if k not in ignored} == {
        k: v for k, v in asdict(delivered).items() if k not in ignored
    }


def test_a_signed_workflow_run_is_queued(aws: Queues) -> None:
    body = workflow_run()
    status, _ = call(f.event("/github/webhook", body, f.github_headers(body, delivery="d-42")))
    assert status == 202
    envelope = WorkflowRunEnvelope.from_json(only_message(aws, Queue.GITHUB))
    assert (envelope.run_id, envelope.action, envelope.conclusion) == (30433642, "completed", "success")
    assert (envelope.delivery_id, envelope.display_title) == ("d-42", "build router plt [cid-123]")
    assert (envelope.event, envelope.workflow_path, envelope.workflow_id, envelope.repository) == (
        "workflow_dispatch",
        ".github/workflows/build.yml",
        161335,
        "example-org/platform",
    )


def test_github_webhooks_without_a_valid_signature_or_not_for_us(aws: Queues) -> None:
    body = workflow_run()
    assert call(f.event("/github/webhook", body, f.github_headers(body, secret="wrong")))[0] == 401
    assert call(f.event("/github/webhook", body, {"x-github-event": "workflow_run"}))[0] == 401
    assert call(f.event("/github/webhook", b"{}", f.github_headers(b"{}", event="ping")))[0] == 200
    assert call(f.event("/github/webhook", b"{}", f.github_headers(b"{}", event="push")))[0] == 200
    other = workflow_run("someone/else")
    assert call(f.event("/github/webhook", other, f.github_headers(other)))[0] == 200
    assert call(f.event("/github/webhook", b"[", f.github_headers(b"[")))[0] == 400
    assert aws.all_empty()


# ------------------------------------------------------------------------------------- requests not served
@pytest.fixture
def logs() -> Iterator[sqs.Logs]:
    """The router's JSON log lines."""
    logs = sqs.Logs()
    logs.setFormatter(router.logger.registered_formatter)
    source = logging.getLogger(router.logger.name)
    source.addHandler(logs)
    yield logs
    source.removeHandler(logs)


def only_error(logs: sqs.Logs) -> dict[str, Any]:
    [line] = logs.at("ERROR")
    return line


def correlation_id_in(text: str) -> str:
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
    assert found, text
    return found[0]


def test_without_the_signing_secret_a_command_is_told_nothing_was_done_in_one_line(
    aws: Queues, logs: sqs.Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    monkeypatch.delenv("SLACK_SIGNING_SECRET_PARAM", raising=False)
    status, body = slash()
    assert status == 200, "Slack shows its user only 'dispatch_failed' for anything else"
    text = ephemeral_text(body)
    cid = correlation_id_in(text)
    assert text == (
        "⚠️ Sorry, ChatOps can't verify requests right now, so it did nothing. "
        f"An admin can find why in the router's log: {cid}."
    )
    error = only_error(logs)
    assert error["correlation_id"] == cid and "exception" not in error, "one line, no traceback"
    assert error["message"] == "request not verified: its secret cannot be had; nothing done"
    assert error["reason"].startswith("secret SLACK_SIGNING_SECRET: set $SLACK_SIGNING_SECRET or")
    assert aws.all_empty()


@pytest.mark.parametrize(
    "case", [case for case, _ in unsigned_variants() if case not in {"wrong secret", "other body"}]
)
def test_without_the_signing_secret_unsigned_or_stale_requests_are_still_401(
    aws: Queues, logs: sqs.Logs, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    headers = dict(unsigned_variants())[case]
    assert call(f.event("/slack/commands", f.slash_form(), headers))[0] == 401, case
    assert call(f.event("/slack/interactions", f.interaction_form(), headers))[0] == 401, case
    assert logs.at("ERROR") == [] and aws.all_empty()


def test_without_their_secrets_interactions_and_webhooks_are_500_in_one_clear_line(
    aws: Queues, logs: sqs.Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    body = f.interaction_form()
    # Slack ignores the body of a 200 to a button press; a 500 marks the button as failed.
    status, answer = call(f.event("/slack/interactions", body, f.slack_headers(body)))
    cid = correlation_id_in(answer)
    assert (status, answer) == (
        500,
        f"ChatOps can't verify requests right now, so it did nothing (correlation id {cid})",
    )
    run = workflow_run()
    status, answer = call(f.event("/github/webhook", run, f.github_headers(run)))
    assert status == 500 and answer.startswith("ChatOps can't verify requests right now, so it did nothing")
    assert [line["reason"].split(":")[0] for line in logs.at("ERROR")] == [
        "secret SLACK_SIGNING_SECRET",
        "secret GITHUB_WEBHOOK_SECRET",
    ]
    assert aws.all_empty()


def test_an_unexpected_failure_is_one_error_line_and_a_clear_answer_without_internals(
    aws: Queues, logs: sqs.Logs
) -> None:
    def sqs_breaks(**_: Any) -> None:  # a fault inside the AWS SDK that is none of botocore's errors
        raise RuntimeError("connection pool state corrupted at 0x7f3a")

    queues.sqs_client().meta.events.register("before-call.sqs.SendMessage", sqs_breaks)
    status, body = slash()
    assert status == 200
    text = ephemeral_text(body)
    cid = correlation_id_in(text)
    assert text == (f"⚠️ Sorry, ChatOps ran into an unexpected error. An admin can find why in the router's log: {cid}.")
    error = only_error(logs)
    assert (error["message"], error["correlation_id"], error["error"]) == ("unexpected failure", cid, "RuntimeError")
    assert "connection pool state corrupted" in error["exception"], "the traceback, in the same JSON line"

    run = workflow_run()
    status, answer = call(f.event("/github/webhook", run, f.github_headers(run)))
    assert status == 500 and answer.startswith("ChatOps ran into an unexpected error (correlation id ")
    for answered in (text, answer):
        assert "RuntimeError" not in answered and "0x7f3a" not in answered and "Traceback" not in answered
    assert aws.all_empty()


# ---------------------------------------------------------------------------------------- malformed, signed
def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_a_signed_body_nested_too_deep_is_a_400_in_one_line_and_nothing_is_queued(
    aws: Queues, logs: sqs.Logs, depth: int
) -> None:
    """A valid signature does not make a body readable: JSON nested past any Slack or GitHub payload is a
    malformed request (400), not a failure of ours (500, a traceback in the log)."""
    interaction = urlencode({"payload": nested(depth)})
    webhook = nested(depth).encode()
    answers = [
        call(f.event("/slack/interactions", interaction, f.slack_headers(interaction))),
        call(f.event("/github/webhook", webhook, f.github_headers(webhook))),
    ]
    for status, body in answers:
        assert status == 400 and "\n" not in body and body.startswith("expected "), body
    assert aws.all_empty()
    assert logs.at("ERROR") == []
    assert all("exception" not in line for line in logs.lines), "no traceback"


@given(
    secret=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    timestamp=st.integers(1_500_000_000, 2_000_000_000),
    body=st.text(max_size=300).map(lambda text: text.encode()),
)
def test_the_routers_signature_is_slacks_own(secret: str, timestamp: int, body: bytes) -> None:
    """The router signs without importing slack_sdk's Web API client (cold start); the signature it computes is the
    one slack_sdk's own ``SignatureVerifier`` — Slack's reference code — computes, for any secret, time and body."""
    expected = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    assert router.slack_signature(secret, timestamp, body) == expected


# ------------------------------------------------------------------------------------------------- events
def home_opened(event_id: str = "Ev0HOME1", **fields: Any) -> str:
    body: dict[str, Any] = {
        "token": "deprecated",
        "team_id": "T0TEAM",
        "api_app_id": "A0APP",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1767261600,
        "event": {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0ALICE", "tab": "home"},
    }
    body.update(fields)
    return json.dumps(body)


def slack_event(body: str, **headers: str) -> tuple[int, str]:
    signed = {**f.slack_headers(body), "content-type": "application/json", **headers}
    return call(f.event("/slack/events", body, signed))


def test_url_verification_is_answered_with_its_challenge_only_when_signed(aws: Queues) -> None:
    body = json.dumps(
        {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}
    )
    status, answer = slack_event(body)
    assert (status, json.loads(answer)) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    assert call(f.event("/slack/events", body, {"content-type": "application/json"}))[0] == 401
    assert aws.all_empty()


def test_an_opened_home_is_queued_for_the_status_worker_and_acknowledged_at_once(
    aws: Queues, slack_api: SlackAPI
) -> None:
    assert slack_event(home_opened()) == (200, "")
    envelope = read_message(only_message(aws, Queue.STATUS))
    assert isinstance(envelope, HomeOpened)
    assert (envelope.event_id, envelope.user_id, envelope.team_id) == ("Ev0HOME1", "U0ALICE", "T0TEAM")
    assert envelope.correlation_id == correlation_id_of("Ev0HOME1")
    assert slack_api.asked == [], "no Web API call on the acknowledgement's path"


def test_slacks_retry_of_an_event_is_queued_again_with_the_same_event_id(aws: Queues) -> None:
    assert slack_event(home_opened())[0] == 200
    assert slack_event(home_opened(), **{"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"})[0] == 200
    bodies = aws.messages(Queue.STATUS)
    assert len(bodies) == 2
    assert {read_message(body).event_id for body in bodies} == {"Ev0HOME1"}  # type: ignore[union-attr]


def test_an_unsigned_stale_or_forged_event_is_401_with_nothing_queued(aws: Queues) -> None:
    body, now = home_opened(), int(time.time())
    for headers in (
        {},
        f.slack_headers(body, secret="another-secret"),
        f.slack_headers(body, timestamp=now - 6 * 60),
        f.slack_headers(body, timestamp=now + 6 * 60),
        f.slack_headers(home_opened("Ev0OTHER")),
    ):
        assert call(f.event("/slack/events", body, headers)) == (401, "invalid signature")
    assert aws.all_empty()


def test_other_events_are_acknowledged_and_dropped_and_malformed_ones_are_400(aws: Queues) -> None:
    messages_tab = {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0ALICE", "tab": "messages"}
    assert slack_event(home_opened(event=messages_tab)) == (200, "")
    assert slack_event(home_opened(event={"type": "app_mention", "user": "U0ALICE"})) == (200, "")
    assert slack_event(json.dumps({"type": "app_rate_limited", "team_id": "T0TEAM"})) == (200, "")
    assert slack_event("not json")[0] == 400
    assert slack_event(json.dumps(["a list"]))[0] == 400
    assert slack_event(home_opened(event_id=""))[0] == 400
    assert slack_event(json.dumps({"type": "url_verification"}))[0] == 400
    assert aws.all_empty()


def test_an_event_from_another_workspace_is_dropped(aws: Queues, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_TEAM_IDS", "T0OTHER")
    assert slack_event(home_opened())[0] == 200
    assert aws.all_empty()


def home_press(action_id: str, value: str, user: str = "U0ALICE") -> tuple[int, str]:
    return interact(
        user={"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        container={"type": "view", "view_id": "V0HOME"},
        view={"id": "V0HOME", "type": "home", "blocks": []},
        channel=None,
        response_url=None,
        actions=[{"action_id": action_id, "type": "button", "value": value}],
    )


def test_a_home_press_has_no_response_url_and_is_answered_by_direct_message(aws: Queues) -> None:
    assert home_press("lock.watch", "build-router-plt") == (200, "")
    envelope = read_message(only_message(aws, Queue.STATUS))
    assert isinstance(envelope, InteractionEnvelope)
    assert (envelope.action_id, envelope.response_url) == ("lock.watch", "slack-dm:U0ALICE")


def test_leave_the_queue_and_cancel_my_run_on_the_home_are_the_users_commands(aws: Queues) -> None:
    assert home_press("home.dequeue", "build-router-plt")[0] == 200
    assert home_press("home.cancel", "deploy-api-prod")[0] == 200
    envelopes = [read_message(body) for body in aws.messages(Queue.STATUS)]
    commands_sent = sorted(
        (type(e.command).__name__, e.slash, e.text, e.response_url) for e in envelopes if isinstance(e, CommandEnvelope)
    )
    assert commands_sent == [
        ("Cancel", "/deploy", "cancel api prod", "slack-dm:U0ALICE"),
        ("Dequeue", "/build", "dequeue router plt", "slack-dm:U0ALICE"),
    ]


def test_a_page_press_on_the_home_republishes_that_page(aws: Queues) -> None:
    assert home_press("home.page.next", "3")[0] == 200
    envelope = read_message(only_message(aws, Queue.STATUS))
    assert isinstance(envelope, HomeOpened)
    assert (envelope.user_id, envelope.page, envelope.event_id) == ("U0ALICE", 3, "555.666.abcdef")


def test_home_buttons_off_the_home_or_naming_no_lock_are_dropped(aws: Queues) -> None:
    """Nothing is queued. A Home press naming no lock is answered by direct message (tests/workers/test_home.py);
    this Slack has no chat.postMessage, so the router answers 503 and Slack marks the button with an error."""
    assert interact(actions=[{"action_id": "home.cancel", "value": "build-router-plt"}])[0] == 200  # in a message
    assert home_press("home.cancel", "build-nothing-here")[0] == 503
    assert home_press("home.cancel", "build-router-plt:²")[0] == 503
    assert home_press("home.cancel", "build-router-plt:-1")[0] == 503
    assert aws.all_empty()


def test_cancel_my_run_on_the_home_carries_the_holding_it_was_shown_for(aws: Queues) -> None:
    assert home_press("home.cancel", "build-router-plt:7")[0] == 200
    envelope = read_message(only_message(aws, Queue.STATUS))
    assert isinstance(envelope, CommandEnvelope)
    assert envelope.command == Cancel(Action.BUILD, "router", "plt", token=7)


def test_a_page_value_that_is_no_page_number_is_the_first_page_not_a_500(aws: Queues) -> None:
    """A superscript or other non-decimal digit passes ``str.isdigit`` but not ``int``."""
    assert home_press("home.page.next", "²")[0] == 200
    envelope = read_message(only_message(aws, Queue.STATUS))
    assert isinstance(envelope, HomeOpened) and envelope.page == 0


def test_a_direct_message_address_is_never_taken_from_slacks_response_url(aws: Queues) -> None:
    """Only a Home press gets a ``slack-dm:`` address, made from its presser: one sent as a response_url (which the
    workers would turn into a direct message to anyone) is refused like any host off the allow-list."""
    status, body = slash(response_url="slack-dm:U0CEO")
    assert status == 200 and "not on an allowed host" in ephemeral_text(body)
    assert interact(response_url="slack-dm:U0CEO")[0] == 400
    assert home_press("lock.watch", "build-router-plt", user="U0ALICE")[0] == 200
    [envelope] = [read_message(body) for body in aws.messages(Queue.STATUS)]
    assert isinstance(envelope, InteractionEnvelope) and envelope.response_url == "slack-dm:U0ALICE"


def test_two_requests_answered_at_once_each_log_their_own_keys(aws: Queues, logs: sqs.Logs) -> None:
    """`chatops serve` answers on many threads: a command held up in SQS while a GitHub ping is answered on another
    thread. Each request's lines carry its own correlation id and user, never the other's."""
    queued, ping_done = threading.Event(), threading.Event()

    def sqs_waits(**_: Any) -> None:  # SQS slow to answer, while the other request is served
        queued.set()
        assert ping_done.wait(10)

    queues.sqs_client().meta.events.register("before-call.sqs.SendMessage", sqs_waits)
    answered: list[tuple[int, str]] = []
    command = threading.Thread(target=lambda: answered.append(slash(user_id="U0ALICE")))
    command.start()
    assert queued.wait(10)
    assert call(f.event("/github/webhook", b"{}", f.github_headers(b"{}", event="ping")))[0] == 200
    ping_done.set()
    command.join(10)
    assert answered and answered[0][0] == 200

    by_path = {line.get("path"): line for line in logs.lines if line["message"] == "answered"}
    ping, slash_line = by_path["/github/webhook"], by_path["/slack/commands"]
    assert "user_id" not in ping, ping
    assert slash_line.get("user_id") == "U0ALICE"
    assert ping["correlation_id"] != slash_line["correlation_id"]
    [queued_line] = [line for line in logs.lines if line["message"] == "slash command queued"]
    assert queued_line["correlation_id"] == slash_line["correlation_id"]


def test_a_request_answered_leaves_no_key_on_what_the_thread_logs_next(aws: Queues) -> None:
    """The router's keys are thread-local, and Powertools shares those among every logger of the thread: once the
    request is answered they are gone, so a worker logging on the same thread (a test, the local stack) does not
    wear the router's correlation id."""
    workers = sqs.Logs()
    workers.attach()
    try:
        assert slash(user_id="U0ALICE")[0] == 200
        runtime.logger.info("a worker's line")
    finally:
        workers.detach()
    [line] = [line for line in workers.lines if line["message"] == "a worker's line"]
    assert "user_id" not in line and "request_id" not in line and line.get("correlation_id") is None, line
