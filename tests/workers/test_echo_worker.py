"""The echo worker: a signed ``/echo`` through the router, the (moto) queue and the worker, back to the Slack
stand-in's ``response_url`` — and what happens when that reply fails. Nothing of ours is mocked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from tests.workers import function_url as f
from tests.workers import sqs_events as sqs
from tests.workers.worker_world import create_queues
from workers.adapters import queues as sqs_queues
from workers.adapters import runtime
from workers.handlers import echo, router
from workers.local.motoserver import LOCAL_CREDENTIALS
from workers.local.slack import SlackStandIn
from workers.protocol.commands import Echo, LockStatus
from workers.protocol.config import Queue
from workers.protocol.envelope import CommandEnvelope

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"
BOT_TOKEN = "xoxb-echo-worker-test"
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


@dataclass
class World:
    slack: SlackStandIn
    queues: dict[Queue, str]
    logs: sqs.Logs


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "SLACK_TEAM_IDS", "SLACK_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHATOPS_CONFIG", str(SHIPPED))
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", f.SIGNING_SECRET)
    monkeypatch.setenv("RESPONSE_URL_HOSTS", "hooks.slack.com,127.0.0.1")
    logs = sqs.Logs()
    with SlackStandIn(token=BOT_TOKEN) as slack, mock_aws():
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        runtime.reset()
        sqs_queues.forget_clients()
        queues = create_queues(monkeypatch)
        logs.attach()
        try:
            yield World(slack, queues, logs)
        finally:
            logs.detach()
            runtime.reset()
            sqs_queues.forget_clients()


def envelope(world: World, text: str = "ping", *, url: str = "cmd", received_at: int | None = None) -> CommandEnvelope:
    return CommandEnvelope(
        request_id="13345224609.738474920.8088930838d88f008e0",
        correlation_id="cid-echo-1",
        command=Echo(text),
        slash="/echo",
        text=text,
        user_id="U0ALICE",
        user_name="alice",
        channel_id="C0CHAN",
        team_id="T0TEAM",
        api_app_id="A0APP",
        response_url=world.slack.response_url(url),
        received_at=int(time.time()) if received_at is None else received_at,
    )


def only(world: World, url: str = "cmd") -> dict[str, Any]:
    (posted,) = world.slack.messages(f"/T0LOCAL/{url}/")
    assert isinstance(posted.body, dict)
    return posted.body


def test_echo_goes_through_router_queue_and_worker_and_comes_back(world: World) -> None:
    body = f.slash_form("are you there?", "/echo", response_url=world.slack.response_url("alice"))
    answer = router.handler(f.event("/slack/commands", body, f.slack_headers(body)), None)
    assert answer["statusCode"] == 200

    batch = sqs.drain(world.queues[Queue.ECHO])
    assert len(batch["Records"]) == 1
    assert echo.handler(batch, None) == NO_FAILURES

    reply = only(world, "alice")
    assert reply["response_type"] == "ephemeral"
    assert reply["blocks"][0]["text"]["text"] == "🔁 echo: are you there?"
    trace = reply["blocks"][1]["elements"][0]["text"]
    cid = batch["Records"][0]["messageAttributes"]["correlationId"]["stringValue"]
    assert trace.startswith(f"request `13345224609.738474920.8088930838d88f008e0` · correlation `{cid}` · ")
    assert " ms in the queue, " in trace and trace.endswith(" since the router took it")
    assert reply["text"].startswith("🔁 echo: are you there? (")


def test_the_reply_says_how_long_the_message_waited() -> None:
    timing = echo.Timing(received_at=1_767_261_600, sent_ms=1_767_261_600_250, handled_ms=1_767_261_602_400)
    assert (timing.queue_ms, timing.since_router_seconds) == (2150, 2)

    again = echo.Timing(received_at=1_767_261_600, sent_ms=None, handled_ms=1_767_261_600_000, deliveries=3)
    message = echo.echo_message(_bare_envelope(), Echo("x"), again)
    assert message.text == "🔁 echo: x (time in the queue unknown, 0s since the router took it, delivery 3)"


def _bare_envelope() -> CommandEnvelope:
    return CommandEnvelope("r", "c", Echo("x"), "/echo", "x", "U0A", "a", "C0", "T0", "A0", "https://x", 0)


def test_the_time_in_the_queue_comes_from_sqs(world: World) -> None:
    sent_ms = int(time.time() * 1000) - 1500
    record = sqs.record(envelope(world).to_json(), queue="chatops-echo", sent_ms=sent_ms, receive_count=2)

    assert echo.handler(sqs.event(record), None) == NO_FAILURES

    trace = only(world)["blocks"][1]["elements"][0]["text"]
    waited = int(trace.split(" · ")[2].split(" ms")[0])
    assert 1500 <= waited < 10_000
    assert trace.endswith(", delivery 2")


def test_the_echoed_text_cannot_mention_anyone(world: World) -> None:
    echo.handler(sqs.event(sqs.record(envelope(world, "<!channel> & <@U0BOB>").to_json())), None)

    assert only(world)["blocks"][0]["text"]["text"] == "🔁 echo: &lt;!channel&gt; &amp; &lt;@U0BOB&gt;"


def test_a_reply_slack_refuses_is_logged_and_the_message_is_not_retried(world: World) -> None:
    world.slack.fail_next(status=500)

    assert echo.handler(sqs.event(sqs.record(envelope(world).to_json())), None) == NO_FAILURES

    assert len(world.slack.messages("/commands/")) == 1  # tried once, not again
    (failed,) = [line for line in world.logs.at("WARNING") if "reply to response_url failed" in line["message"]]
    assert failed["correlation_id"] == "cid-echo-1" and "HTTP 500" in failed["message"]
    assert any(line["message"] == "echo not delivered" for line in world.logs.at("INFO"))


def test_a_message_that_is_not_an_echo_fails_alone(world: World) -> None:
    status = CommandEnvelope(**{**envelope(world).__dict__, "command": LockStatus()}).to_json()

    result = echo.handler(
        sqs.event(sqs.record(status, message_id="m0"), sqs.record(envelope(world).to_json(), message_id="m1")), None
    )

    assert result == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert only(world)["blocks"][0]["text"]["text"] == "🔁 echo: ping"
