"""SQS, as the workers send to it: one client per process, and :func:`enqueue` — the router's queued requests and
a hand-off's request queued again both go through it.

The router imports this module on its cold start, so nothing heavy is imported with it: boto3 comes with the
client, on the first send (:func:`sqs_client`), and the workers' runtime only when a simulation installed it
(:func:`_installed_world`)."""

from __future__ import annotations

import hashlib
import re
import sys
import threading
from typing import TYPE_CHECKING

from workers.protocol.config import QUEUE_FOR_KIND, Config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from workers.adapters.runtime import Adapters

_sqs: SQSClient | None = None
_sqs_lock = threading.Lock()


def sqs_client() -> SQSClient:
    """One client per process, made on first use (region and endpoint from the usual boto3 environment)."""
    global _sqs  # noqa: PLW0603 — a module-level client is reused across warm invocations
    with _sqs_lock:
        if _sqs is None:
            import boto3  # noqa: PLC0415 — with the client, not with the router's cold start

            _sqs = boto3.client("sqs")
        return _sqs


def forget_clients() -> None:
    """Drop the cached client (tests that change region or endpoint between cases)."""
    global _sqs  # noqa: PLW0603
    with _sqs_lock:
        _sqs = None


class NotQueued(Exception):
    """The message was not sent. One line, for the log."""


def enqueue(config: Config, kind: str, body: str, *, dedup_id: str, group_id: str, correlation_id: str) -> str:
    """Send ``body`` to the queue for ``kind``; the message id, or :class:`NotQueued`.

    A FIFO queue (``….fifo``) gets ``group_id`` as its message group and ``dedup_id`` as its deduplication id.
    """
    world = _installed_world()
    if world is not None:
        return world.send(config, kind, body, dedup_id=dedup_id, group_id=group_id, correlation_id=correlation_id)
    queue = QUEUE_FOR_KIND[kind]
    url = config.queue_url(queue)
    if not url:
        raise NotQueued(f"no queue URL for {queue.value} (set ${queue.url_env})")
    import botocore.exceptions  # noqa: PLC0415 — loaded with boto3 by now

    fifo: dict[str, str] = {}
    if url.endswith(".fifo"):
        fifo = {"MessageGroupId": group_id[:128], "MessageDeduplicationId": _dedup(dedup_id)}
    try:
        sent = sqs_client().send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": kind},
                "correlationId": {"DataType": "String", "StringValue": correlation_id},
            },
            **fifo,  # type: ignore[arg-type]
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise NotQueued(f"{queue.value} queue: {' '.join(str(error).split())[:300]}") from None
    return sent.get("MessageId", "")


def _installed_world() -> Adapters | None:
    """The adapters a simulation installed with :func:`workers.adapters.runtime.using`, if any. Only that module
    installs them, so while it has not been imported — the router's case — there are none; it is not imported
    here for the asking (it brings the workers' clients and Powertools' batch and idempotency utilities)."""
    runtime = sys.modules.get("workers.adapters.runtime")
    return runtime.installed() if runtime is not None else None


def _dedup(request_id: str) -> str:
    """A FIFO deduplication id: at most 128 of the allowed characters; a hash when the id does not fit."""
    if re.fullmatch(r"[A-Za-z0-9!-/:-@\[-`{-~]{1,128}", request_id):
        return request_id
    return hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()
