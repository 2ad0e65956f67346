"""Fuzzing the router: whatever arrives, never a 5xx, and never a message queued without a valid signature."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from tests.workers import function_url as f
from workers.adapters import queues as sqs_queues
from workers.adapters.usergroups import UserGroups
from workers.handlers import router
from workers.local.motoserver import LOCAL_CREDENTIALS
from workers.protocol.commands import Dispatch, Unlock
from workers.protocol.config import Queue, current_config
from workers.protocol.envelope import CommandEnvelope

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"
PATHS = ("/slack/commands", "/slack/interactions", "/github/webhook", "/", "/slack", "/slack/commands/")


@pytest.fixture(scope="module")
def queues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Queue, str]]:
    config = tmp_path_factory.mktemp("config") / "chatops.toml"
    # Group members from the file, so that no example waits on Slack.
    config.write_text(SHIPPED.read_text() + '\n[slack.user_groups]\nS0PLATFORM = ["U0PLAT"]\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as env, mock_aws():
        for name, value in LOCAL_CREDENTIALS.items():
            env.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "SLACK_TEAM_IDS", "SLACK_APP_ID", "ENABLE_DISTRIBUTED_LOCK"):
            env.delenv(name, raising=False)
        env.setenv("CHATOPS_CONFIG", str(config))
        env.setenv("SLACK_SIGNING_SECRET", f.SIGNING_SECRET)
        env.setenv("GITHUB_WEBHOOK_SECRET", f.WEBHOOK_SECRET)
        env.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        env.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")  # nothing listens: a lookup would fail fast
        sqs_queues.forget_clients()
        UserGroups.forget()
        sqs = boto3.client("sqs")
        urls = {queue: sqs.create_queue(QueueName=f"fuzz-{queue.value}")["QueueUrl"] for queue in Queue}
        for queue, url in urls.items():
            env.setenv(queue.url_env, url)
        yield urls
        sqs_queues.forget_clients()


def drain(urls: dict[Queue, str]) -> list[str]:
    sqs = boto3.client("sqs")
    bodies: list[str] = []
    for url in urls.values():
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                bodies.append(message["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


texts = st.text(max_size=60)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
timestamps = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.integers(min_value=-600, max_value=600).map(lambda delta: str(int(time.time()) + delta)),
    texts,
)
signatures = st.one_of(hex64.map(lambda h: "v0=" + h), hex64.map(lambda h: "sha256=" + h), texts)


@st.composite
def forged_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Anything at all, or a real Slack/GitHub body with headers that do not sign it."""
    body: str | bytes = draw(
        st.one_of(
            st.binary(max_size=200),
            texts,
            st.builds(f.slash_form, texts, st.sampled_from(["/build", "/deploy", "/echo", "/x"])),
            st.builds(f.interaction_form, st.sampled_from(["unlock.confirm", "unlock.cancel", "x"]), texts),
        )
    )
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["x-slack-request-timestamp"] = draw(timestamps)
    if draw(st.booleans()):
        headers["x-slack-signature"] = draw(signatures)
    if draw(st.booleans()):
        headers["x-hub-signature-256"] = draw(signatures)
        headers["x-github-event"] = draw(st.sampled_from(["workflow_run", "ping", "push", ""]))
        headers["x-github-delivery"] = draw(texts)
    if draw(st.booleans()) and isinstance(body, str):  # signed, but with another secret
        headers.update(f.slack_headers(body, secret="not-the-signing-secret"))
    headers.update(draw(st.dictionaries(st.text(max_size=20), texts, max_size=3)))
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    encode = draw(st.booleans()) or isinstance(body, bytes)
    event: dict[str, Any] = {
        "version": "2.0",
        "rawPath": draw(st.one_of(st.sampled_from(PATHS), texts)),
        "headers": headers,
        "requestContext": {"http": {"method": draw(st.sampled_from(["POST", "GET", "PUT", "post", ""]))}},
        "body": base64.b64encode(raw).decode() if encode else body,
        "isBase64Encoded": encode,
    }
    if draw(st.booleans()):
        event["body"] = draw(st.one_of(texts, st.none(), st.integers()))
    return event


@given(event=forged_requests())
def test_without_a_valid_signature_nothing_is_ever_queued(queues: dict[Queue, str], event: dict[str, Any]) -> None:
    response = router.handler(event, None)
    assert response["statusCode"] < 500, response
    assert drain(queues) == []


@given(
    command=st.sampled_from(["/build", "/deploy", "/echo", "/status"]),
    text=st.one_of(
        texts,
        st.lists(
            st.sampled_from(["router", "api", "plt", "prod", "status", "--locks", "unlock", "help", "main", "x"])
        ).map(" ".join),
    ),
    user=st.sampled_from(["U0ALICE", "U0ADMIN", "U0PLAT"]),
    base64_encoded=st.booleans(),
)
def test_signed_commands_are_answered_200_and_queue_only_what_is_allowed(
    queues: dict[Queue, str], command: str, text: str, user: str, base64_encoded: bool
) -> None:
    body = f.slash_form(text, command, user_id=user)
    response = router.handler(
        f.event("/slack/commands", body, f.slack_headers(body), base64_encoded=base64_encoded), None
    )
    assert response["statusCode"] == 200, response
    queued = drain(queues)
    assert len(queued) <= 1
    config = current_config()
    for message in queued:
        envelope = CommandEnvelope.from_json(message)
        assert envelope.user_id == user
        if isinstance(envelope.command, Dispatch | Unlock):
            assert envelope.command.component in config.components
            assert envelope.command.environment in config.environments
        if isinstance(envelope.command, Unlock):
            assert user == "U0ADMIN"
        if isinstance(envelope.command, Dispatch) and envelope.command.environment == "prod" and command == "/deploy":
            assert user == "U0PLAT"


# ------------------------------------------------------------------------------------- signed, and still wrong
MAX_READ_DEPTH = 64
"""Deeper than any Slack or GitHub payload: the router refuses it before reading it (workers.protocol.inbound)."""
clean_texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | clean_texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(clean_texts, inner, max_size=3),
    max_leaves=12,
)


def nested(depth: int, shape: str) -> str:
    """JSON ``depth`` levels deep: ``[[[…]]]`` or ``{"a":{"a":…}}``."""
    return "[" * depth + "]" * depth if shape == "[" else '{"a":' * depth + "1" + "}" * depth


deep = st.builds(nested, st.integers(min_value=MAX_READ_DEPTH + 1, max_value=5_000), st.sampled_from(["[", "{"]))


def payload_form(payload: str) -> str:
    return urlencode({"payload": payload})


def delivery(run: object) -> str:
    return json.dumps({"action": "completed", "workflow_run": run, "repository": {"full_name": "example-org/platform"}})


signed_bodies = st.one_of(
    clean_texts,
    deep,
    deep.map(payload_form),
    deep.map(delivery),
    json_values.map(json.dumps),
    json_values.map(json.dumps).map(payload_form),
    json_values.map(delivery),
    st.builds(f.slash_form, clean_texts, st.sampled_from(["/build", "/deploy", "/echo", "/x"])),
    st.builds(f.interaction_form, st.sampled_from(["unlock.confirm", "unlock.cancel", "lock.watch", "x"]), clean_texts),
)


def signed(path: str, body: str, github_event: str) -> dict[str, Any]:
    """Signed for Slack and for GitHub at once: whichever route it reaches, the signature holds."""
    headers = {**f.slack_headers(body), **f.github_headers(body.encode(), event=github_event, delivery="d-fuzz")}
    return f.event(path, body, headers)


@given(
    body=signed_bodies,
    path=st.sampled_from(PATHS),
    github_event=st.sampled_from(["workflow_run", "ping", "push"]),
)
def test_a_signed_body_at_any_path_is_answered_below_500(
    queues: dict[Queue, str], body: str, path: str, github_event: str
) -> None:
    response = router.handler(signed(path, body, github_event), None)
    assert response["statusCode"] < 500, response
    drain(queues)


@given(body=st.one_of(deep.map(payload_form), deep, deep.map(delivery)), path=st.sampled_from(PATHS))
def test_a_signed_body_nested_too_deep_is_refused_and_queues_nothing(
    queues: dict[Queue, str], body: str, path: str
) -> None:
    response = router.handler(signed(path, body, "workflow_run"), None)
    assert 400 <= response["statusCode"] < 500, response
    assert "\n" not in response["body"]
    assert drain(queues) == []
