"""SQS → Lambda events as the event source mapping delivers them, and the worker test plumbing around them.

:func:`record` shapes one record by hand (a message body with the attributes Lambda adds); :func:`drain` receives
what is really on a (moto) queue and turns it into the same shape, so a test can go router → queue → worker.
:class:`Logs` collects the JSON lines the workers' Powertools logger writes (its own and those routed through it
from ``workers.adapters.slack`` and ``lockcore``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from typing import Any

import boto3

from workers.adapters import runtime

REGION = "ca-central-1"
ACCOUNT = "123456789012"


def record(
    body: str,
    *,
    queue: str = "chatops-status",
    message_id: str | None = None,
    sent_ms: int | None = None,
    receive_count: int = 1,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One SQS record of a Lambda event."""
    sent = int(time.time() * 1000) if sent_ms is None else sent_ms
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "AQEB" + uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(sent),
            "SenderId": "AROAEXAMPLE:chatops-router",
            "ApproximateFirstReceiveTimestamp": str(sent + 5),
        },
        "messageAttributes": {
            name: {"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            for name, value in (attributes or {}).items()
        },
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def drain(queue_url: str) -> dict[str, Any]:
    """Everything on the queue now (deleted from it, as a successful batch would be), as one Lambda event."""
    sqs = boto3.client("sqs")
    records: list[dict[str, Any]] = []
    while True:
        received = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            return event(*records)
        for message in messages:
            attributes = {
                name: value["StringValue"]
                for name, value in message.get("MessageAttributes", {}).items()
                if "StringValue" in value
            }
            shaped = record(
                message["Body"],
                queue=queue_url.rsplit("/", 1)[-1],
                message_id=message["MessageId"],
                attributes=attributes,
            )
            shaped["attributes"].update(message.get("Attributes", {}))
            records.append(shaped)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


class Logs(logging.Handler):
    """The workers' log lines as the Lambda would write them (JSON), parsed."""

    LOGGERS = (runtime.SERVICE, "workers.adapters.slack", "lockcore")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []
        self.setFormatter(runtime.logger.registered_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def attach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def detach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def at(self, level: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("level") == level]
