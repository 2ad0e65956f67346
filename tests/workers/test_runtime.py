"""The worker runtime: partial batch responses, metrics flushed, clients made from the environment."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from lockcore.dynamodb import DynamoDBLockStore
from tests.workers.worker_world import SHIPPED_CONFIG, sqs_record
from workers.adapters import runtime


def batch(*bodies: str) -> dict[str, Any]:
    return {"Records": [sqs_record(body, message_id=f"m-{i}") for i, body in enumerate(bodies)]}


def fail_on_bad(record: SQSRecord) -> str:
    if record.body == "bad":
        raise ValueError("bad record")
    runtime.metrics.add_metric(name="handled", unit="Count", value=1)
    return record.body


def test_only_the_failed_records_go_back_to_the_queue() -> None:
    assert runtime.process_sqs_batch(batch("ok", "bad", "ok"), None, fail_on_bad) == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}]
    }


def test_a_batch_that_failed_entirely_lists_every_record_rather_than_raising() -> None:
    response = runtime.process_sqs_batch(batch("bad", "bad"), None, fail_on_bad)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-0"}, {"itemIdentifier": "m-1"}]}


def test_metrics_are_flushed_as_emf(capsys: pytest.CaptureFixture[str]) -> None:
    runtime.process_sqs_batch(batch("ok", "ok"), None, fail_on_bad)
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ChatOps"
    assert emf["handled"] == [1.0, 1.0] and emf["service"] == "chatops"


def test_the_clients_come_from_the_environment_and_reset_forgets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATOPS_CONFIG", str(SHIPPED_CONFIG))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    monkeypatch.setenv("LOCK_TABLE_NAME", "locks-a")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-x")
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")
    monkeypatch.setenv("RESPONSE_URL_HOSTS", "hooks.slack.com,127.0.0.1")
    runtime.reset()
    try:
        store = runtime.lock_store()
        assert isinstance(store, DynamoDBLockStore) and store.table == "locks-a"
        assert runtime.lock_store() is store
        assert runtime.github_client().api_url == "https://ghe.example.com/api/v3"
        replies = runtime.slack_replies()
        assert replies.api_url == "http://127.0.0.1:9/api/"
        assert replies.response_url_allowed("http://127.0.0.1:5/commands/x")
        assert not replies.response_url_allowed("https://evil.example/commands/x")
        monkeypatch.setenv("LOCK_TABLE_NAME", "locks-b")
        runtime.reset()
        new_store = runtime.lock_store()
        assert isinstance(new_store, DynamoDBLockStore) and new_store.table == "locks-b"
    finally:
        runtime.reset()
