"""Slack replies against the Slack stand-in: real HTTP on loopback; failures logged, never raised."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from workers.adapters.slack import DEFAULT_RESPONSE_HOSTS, SlackReplies
from workers.local.slack import SlackStandIn
from workers.protocol.message import Message, ResponseType

TOKEN = "xoxb-0000-TopSecretBotToken"
CID = "trig.42.cafe"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*router* (plt)"}}]


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN) as stand_in:
        yield stand_in


@pytest.fixture
def replies(slack: SlackStandIn) -> SlackReplies:
    return SlackReplies(TOKEN, api_url=slack.api_url, allow_loopback=True, timeout=2)


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "workers.adapters.slack" and r.levelno >= logging.WARNING]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --------------------------------------------------------------------------------------------- response_url
def test_reply_posts_the_message_to_the_response_url(slack: SlackStandIn, replies: SlackReplies) -> None:
    message = Message("Building router (plt)…", BLOCKS, ResponseType.IN_CHANNEL, replace_original=True)

    assert replies.reply(slack.response_url("a"), message, correlation_id=CID) is True

    (posted,) = slack.messages("/commands/")
    assert posted.body == {
        "text": "Building router (plt)…",
        "blocks": BLOCKS,
        "response_type": "in_channel",
        "replace_original": True,
    }


def test_an_ephemeral_reply_is_the_default(slack: SlackStandIn, replies: SlackReplies) -> None:
    assert replies.reply(slack.response_url(), Message("usage: /build <component> <env>"), correlation_id=CID)
    assert slack.messages()[0].body == {"text": "usage: /build <component> <env>", "response_type": "ephemeral"}


def test_a_reply_to_a_host_not_allowed_sends_nothing_and_is_logged(
    slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    strict = SlackReplies(TOKEN, api_url=slack.api_url)  # Slack's hosts only: no loopback

    with caplog.at_level(logging.WARNING):
        assert strict.reply(slack.response_url(), Message("hello"), correlation_id=CID) is False

    assert slack.requests == []
    (record,) = failures(caplog)
    assert "not allowed" in record.getMessage() and "127.0.0.1" in record.getMessage()
    assert record.__dict__["correlation_id"] == CID


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.slack.com/commands/T1/2/abc", True),
        ("https://HOOKS.slack.com/actions/T1/2/abc", True),
        ("http://hooks.slack.com/commands/T1/2/abc", False),
        ("https://hooks.slack.com.evil.example/commands/T1", False),
        ("https://evil.example/hooks.slack.com/commands", False),
        ("https://hooks.slack.com@evil.example/commands", False),
        ("https://user@hooks.slack.com/commands", False),
        ("https://slack.com/api/chat.postMessage", False),
        ("http://127.0.0.1:9999/commands/x", False),
        ("http://localhost/commands/x", False),
        ("https://hooks.slack.com:bad/x", False),
        ("not a url", False),
        ("", False),
    ],
)
def test_only_slacks_own_hosts_by_default(url: str, allowed: bool) -> None:
    assert SlackReplies(TOKEN).response_url_allowed(url) is allowed


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9999/commands/x", "https://127.0.0.2/x", "http://[::1]:80/x", "http://localhost:3/x"]
)
def test_loopback_when_the_local_stack_allows_it(url: str) -> None:
    assert SlackReplies(TOKEN, allow_loopback=True).response_url_allowed(url)
    assert not SlackReplies(TOKEN, allow_loopback=True).response_url_allowed(url.replace("//", "//x@"))


def test_a_listed_loopback_host_may_use_http_but_other_hosts_need_https() -> None:
    replies = SlackReplies(TOKEN, response_hosts={"127.0.0.1", "slack.internal.example"})
    assert replies.response_url_allowed("http://127.0.0.1:3000/r")
    assert not replies.response_url_allowed("http://[::1]:3000/r")
    assert replies.response_url_allowed("https://slack.internal.example/r")
    assert not replies.response_url_allowed("http://slack.internal.example/r")
    assert sorted(DEFAULT_RESPONSE_HOSTS) == ["hooks.slack.com"]


def test_a_response_url_answering_500_returns_false_and_logs(
    slack: SlackStandIn, replies: SlackReplies, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail_next(status=500)

    with caplog.at_level(logging.WARNING):
        assert replies.reply(slack.response_url(), Message("hello"), correlation_id=CID) is False

    assert len(slack.requests) == 1  # tried, and not retried: Slack may have shown it
    (record,) = failures(caplog)
    assert "HTTP 500" in record.getMessage()
    assert record.__dict__["correlation_id"] == CID


def test_a_response_url_refusing_connections_returns_false_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    replies = SlackReplies(TOKEN, allow_loopback=True, timeout=1)
    with caplog.at_level(logging.WARNING):
        assert replies.reply(f"http://127.0.0.1:{closed_port()}/commands/x", Message("hi"), correlation_id=CID) is False
    assert failures(caplog)[-1].__dict__["correlation_id"] == CID


# ----------------------------------------------------------------------------------------------- Web API
def test_post_message_goes_to_the_channel_with_the_bot_token(slack: SlackStandIn, replies: SlackReplies) -> None:
    assert replies.post_message("C123", Message("✅ router (plt) built in 4m12s", BLOCKS), correlation_id=CID)

    (request,) = slack.requests_to("POST", "/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.body == {"channel": "C123", "text": "✅ router (plt) built in 4m12s", "blocks": BLOCKS}


def test_post_ephemeral_goes_to_one_user(slack: SlackStandIn, replies: SlackReplies) -> None:
    assert replies.post_ephemeral("C123", "U777", Message("only you"), correlation_id=CID)

    (posted,) = slack.messages("/api/chat.postEphemeral")
    assert posted.body == {"channel": "C123", "user": "U777", "text": "only you"}
    assert posted.text == "only you"


def test_the_web_api_url_comes_from_the_environment(slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_API_URL", slack.api_url.rstrip("/"))
    replies = SlackReplies(TOKEN)
    assert replies.api_url == slack.api_url
    assert replies.post_message("C1", Message("hi"), correlation_id=CID)
    assert TOKEN not in repr(replies)


def test_the_default_web_api_is_slacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_API_URL", raising=False)
    assert SlackReplies(TOKEN).api_url == "https://slack.com/api/"


def test_a_web_api_500_returns_false_and_logs_without_the_token(
    slack: SlackStandIn, replies: SlackReplies, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail_next(status=500, path_contains="/api/")

    with caplog.at_level(logging.DEBUG):
        assert replies.post_message("C123", Message("hi"), correlation_id=CID) is False

    record = failures(caplog)[-1]
    assert "chat.postMessage failed: HTTP 500" in record.getMessage()
    assert record.__dict__["correlation_id"] == CID
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("fault", "error"),
    [({"ok": False, "error": "channel_not_found"}, "channel_not_found"), ({"ok": False}, "no Slack error code")],
)
def test_slack_saying_not_ok_returns_false_and_logs_its_error(
    slack: SlackStandIn,
    replies: SlackReplies,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, object],
    error: str,
) -> None:
    slack.fail_next(status=200, body=fault)
    with caplog.at_level(logging.WARNING):
        assert replies.post_ephemeral("C1", "U1", Message("hi"), correlation_id=CID) is False
    assert error in failures(caplog)[-1].getMessage()


def test_a_wrong_bot_token_returns_false(slack: SlackStandIn, caplog: pytest.LogCaptureFixture) -> None:
    replies = SlackReplies("xoxb-wrong", api_url=slack.api_url)
    with caplog.at_level(logging.WARNING):
        assert replies.post_message("C1", Message("hi"), correlation_id=CID) is False
    assert "invalid_auth" in failures(caplog)[-1].getMessage()


def test_a_web_api_refusing_connections_returns_false(caplog: pytest.LogCaptureFixture) -> None:
    replies = SlackReplies(TOKEN, api_url=f"http://127.0.0.1:{closed_port()}/api/", timeout=1)
    with caplog.at_level(logging.WARNING):
        assert replies.post_message("C1", Message("hi"), correlation_id=CID) is False
    assert "chat.postMessage failed" in failures(caplog)[-1].getMessage()


def test_message_in_channel_shorthand() -> None:
    assert Message.in_channel("hi") == Message("hi", None, ResponseType.IN_CHANNEL, replace_original=False)
