"""The world an SQS worker runs in, for tests: DynamoDB on moto in-process, GitHub and Slack as real HTTP servers
on loopback (the local stack's stand-ins), and real-shaped SQS events carrying the router's envelopes.

:func:`running_world` sets the environment a deployed worker reads (config file, table names, API URLs, tokens,
``RESPONSE_URL_HOSTS=127.0.0.1``), creates the lock and idempotency tables, and drops the worker runtime's cached
clients before and after.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from moto import mock_aws

from lockcore.dynamodb import DynamoDBLockStore
from lockcore.record import LockRecord
from tests.workers import sqs_events as sqs
from workers.adapters import runtime
from workers.local.github import GitHubStandIn, Repository, WorkflowRun, fake_sha
from workers.local.motoserver import LOCAL_CREDENTIALS
from workers.local.slack import PostedMessage, SlackStandIn
from workers.protocol.commands import Command, Dispatch
from workers.protocol.config import Action, Queue
from workers.protocol.envelope import CommandEnvelope

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"
REPOSITORY = "example-org/platform"
GITHUB_TOKEN = "ghp_worker_test_token"
SLACK_TOKEN = "xoxb-worker-test"
LOCK_TABLE = "chatbot-build-locks"
IDEMPOTENCY_TABLE = "chatops-idempotency"
RELEASE_BRANCH = "release/1.2"
RELEASE_SHA = fake_sha(REPOSITORY, RELEASE_BRANCH)
MAIN_SHA = fake_sha(REPOSITORY, "main")
BUILD_QUEUE = "chatops-build"


class Context(LambdaContext):
    """Lambda's context object, as much of it as Powertools reads."""

    def __init__(self) -> None:
        self._function_name = "chatops-build-worker"
        self._function_version = "$LATEST"
        self._invoked_function_arn = "arn:aws:lambda:ca-central-1:123456789012:function:chatops-build-worker"
        self._memory_limit_in_mb = 256
        self._aws_request_id = str(uuid.uuid4())
        self._log_group_name = "/aws/lambda/chatops-build-worker"
        self._log_stream_name = "2026/01/01/[$LATEST]abc"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@dataclass
class World:
    github: GitHubStandIn
    slack: SlackStandIn
    store: DynamoDBLockStore

    # ------------------------------------------------------------------------------------------- requests
    def envelope(
        self,
        name: str,
        command: Command | None = None,
        *,
        user: str = "alice",
        channel: str = "C0BUILDS",
    ) -> CommandEnvelope:
        """A request as the router queues it; ``name`` makes its request id and its own response_url."""
        command = command or Dispatch(Action.BUILD, "router", "plt")
        slash = f"/{command.kind}" if command.kind in {"build", "deploy"} else "/build"
        return CommandEnvelope(
            request_id=f"1334522{name}.738474920.{name}",
            correlation_id=f"cid-{name}",
            command=command,
            slash=slash,
            text="",
            user_id=f"U0{user.upper()}",
            user_name=user,
            channel_id=channel,
            team_id="T0TEAM",
            api_app_id="A0APP",
            response_url=self.slack.response_url(name),
            received_at=int(time.time()),
        )

    def replies_to(self, name: str) -> list[PostedMessage]:
        """What reached the response_url of request ``name``."""
        return self.slack.messages(f"/commands/T0LOCAL/{name}/")

    def lock(self, key: str = "build-router-plt") -> LockRecord | None:
        return self.store.get(key)

    def dispatches(self) -> list[WorkflowRun]:
        return self.github.runs


def sqs_record(body: str, *, receive_count: int = 1, message_id: str | None = None) -> dict[str, Any]:
    """One record of the build queue's SQS event as Lambda delivers it."""
    return sqs.record(body, queue=BUILD_QUEUE, message_id=message_id, receive_count=receive_count)


def sqs_event(*envelopes: CommandEnvelope | str, receive_count: int = 1) -> dict[str, Any]:
    """A batch: each envelope (or raw body) one record."""
    return sqs.event(
        *(
            sqs_record(item if isinstance(item, str) else item.to_json(), receive_count=receive_count)
            for item in envelopes
        )
    )


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def bodies(event: dict[str, Any]) -> Sequence[str]:
    return [record["body"] for record in event["Records"]]


def create_idempotency_table(name: str = IDEMPOTENCY_TABLE) -> None:
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"})


def create_queues(monkeypatch: pytest.MonkeyPatch) -> dict[Queue, str]:
    """Every queue the router writes to, made in the AWS at hand (moto), their URLs in the environment."""
    client = boto3.client("sqs")
    urls = {queue: client.create_queue(QueueName=f"chatops-{queue.value}")["QueueUrl"] for queue in Queue}
    for queue, url in urls.items():
        monkeypatch.setenv(queue.url_env, url)
    return urls


@contextlib.contextmanager
def running_world(
    monkeypatch: pytest.MonkeyPatch, *, github_timeout: float = 1.0, aws_endpoint: str | None = None
) -> Iterator[World]:
    """``aws_endpoint``: a moto server to use (``AWS_ENDPOINT_URL``) instead of moto in-process."""
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "ENABLE_DISTRIBUTED_LOCK", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHATOPS_CONFIG", str(SHIPPED_CONFIG))
    monkeypatch.setenv("LOCK_TABLE_NAME", LOCK_TABLE)
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", IDEMPOTENCY_TABLE)
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("RESPONSE_URL_HOSTS", "127.0.0.1")
    monkeypatch.setenv("GITHUB_TIMEOUT_SECONDS", str(github_timeout))
    if aws_endpoint is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)
    repository = Repository(REPOSITORY, branches={RELEASE_BRANCH: RELEASE_SHA})
    with (
        GitHubStandIn([repository], token=GITHUB_TOKEN) as github,
        SlackStandIn(token=SLACK_TOKEN) as slack,
        mock_aws() if aws_endpoint is None else contextlib.nullcontext(),
    ):
        monkeypatch.setenv("GITHUB_API_URL", github.api_url)
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        runtime.reset()
        store = DynamoDBLockStore(LOCK_TABLE)
        store.create_table()
        create_idempotency_table()
        try:
            yield World(github, slack, store)
        finally:
            runtime.reset()
            if aws_endpoint is not None:
                forget_server_state()


def forget_server_state() -> None:
    """An in-process moto server shares moto's state with every later ``mock_aws`` in this process: drop what
    a world made there, so the next test starts from nothing."""
    dynamodb = boto3.client("dynamodb")
    for table in (LOCK_TABLE, IDEMPOTENCY_TABLE):
        dynamodb.delete_table(TableName=table)
    sqs = boto3.client("sqs")
    for url in sqs.list_queues(QueueNamePrefix="chatops-").get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=url)


def envelope_json(envelope: CommandEnvelope) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(envelope.to_json())
    return data
