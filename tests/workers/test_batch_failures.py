"""How a worker logs a record it could not finish, through the build worker's real handler and real-shaped SQS
events: an expected retry is one warning line without a traceback, anything else an error with its traceback —
and either way the record is a batch item failure, so SQS delivers it again.

DynamoDB is moto in-process, GitHub and Slack the local stand-ins (:mod:`tests.workers.worker_world`); the log is
what reaches the standard logging tree (pytest's ``caplog``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import boto3
import pytest

from tests.workers import sqs_events as sqs
from tests.workers.worker_world import BUILD_QUEUE, IDEMPOTENCY_TABLE, Context, World, failed_ids
from workers.adapters import runtime
from workers.flows import build
from workers.handlers import build as build_lambda
from workers.protocol.envelope import CommandEnvelope

RETRIED = "record retried later: it goes back to the queue"
FAILED = "record failed: it goes back to the queue (then to the DLQ)"


def as_queued(envelope: CommandEnvelope | str, *, receive_count: int = 1) -> dict[str, Any]:
    """One record as the router queues it (its correlation id a message attribute) and Lambda delivers it."""
    if isinstance(envelope, str):
        return sqs.record(envelope, queue=BUILD_QUEUE, receive_count=receive_count)
    return sqs.record(
        envelope.to_json(),
        queue=BUILD_QUEUE,
        receive_count=receive_count,
        attributes={"kind": envelope.kind, "correlationId": envelope.correlation_id},
    )


def deliver(record: dict[str, Any], caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=runtime.SERVICE):
        return build_lambda.handler(sqs.event(record), Context())


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [line for line in caplog.records if line.getMessage() in {RETRIED, FAILED}]


def assert_one_warning_without_traceback(caplog: pytest.LogCaptureFixture, error: str) -> logging.LogRecord:
    [line] = failure_lines(caplog)
    assert (line.levelname, line.getMessage(), line.error) == ("WARNING", RETRIED, error)  # type: ignore[attr-defined]
    assert line.exc_info is None and "Traceback" not in caplog.text
    assert not [other for other in caplog.records if other.levelno >= logging.ERROR]
    return line


def test_a_request_already_in_progress_is_retried_with_one_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    envelope = world.envelope("a")
    key = hashlib.md5(json.dumps(envelope.request_id).encode(), usedforsecurity=False).hexdigest()
    boto3.client("dynamodb").put_item(  # another invocation is handling the same request right now
        TableName=IDEMPOTENCY_TABLE,
        Item={
            "id": {"S": f"{build.IDEMPOTENCY_KEY_PREFIX}#{key}"},
            "status": {"S": "INPROGRESS"},
            "expiration": {"N": str(int(time.time()) + 3600)},
            "in_progress_expiration": {"N": str(int(time.time() * 1000) + 60_000)},
        },
    )
    record = as_queued(envelope)
    response = deliver(record, caplog)

    assert failed_ids(response) == [record["messageId"]], "a batch item failure: SQS delivers it again"
    line = assert_one_warning_without_traceback(caplog, "IdempotencyAlreadyInProgressError")
    assert (line.message_id, line.correlation_id, line.receive_count) == (  # type: ignore[attr-defined]
        record["messageId"],
        envelope.correlation_id,
        "1",
    )
    assert not world.dispatches() and world.lock() is None


def test_a_dispatch_in_doubt_is_retried_with_one_warning(world: World, caplog: pytest.LogCaptureFixture) -> None:
    envelope = world.envelope("a")
    world.github.fail_next(3, status=503, method="GET", path_contains="/runs")  # a redelivery cannot look for its run
    record = as_queued(envelope, receive_count=2)
    response = deliver(record, caplog)

    assert failed_ids(response) == [record["messageId"]]
    line = assert_one_warning_without_traceback(caplog, "DispatchInDoubt")
    assert line.reason.startswith(f"cannot look for the run of {envelope.correlation_id}: ")  # type: ignore[attr-defined]
    assert (line.correlation_id, line.receive_count) == (envelope.correlation_id, "2")  # type: ignore[attr-defined]
    assert not world.dispatches()


def test_an_unexpected_failure_keeps_its_traceback(world: World, caplog: pytest.LogCaptureFixture) -> None:
    record = as_queued('{"version": 1, "kind": "not-ours"}')
    response = deliver(record, caplog)

    assert failed_ids(response) == [record["messageId"]]
    [line] = failure_lines(caplog)
    assert (line.levelname, line.getMessage(), line.message_id) == ("ERROR", FAILED, record["messageId"])  # type: ignore[attr-defined]
    assert line.exc_info is not None and "Traceback" in caplog.text
    assert not world.dispatches()
