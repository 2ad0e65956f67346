"""The echo worker: ``/echo <text>`` comes back through the whole path — a liveness check.

Router (signature, parse, enqueue) → the echo queue → this Lambda → the command's ``response_url``: when the
user sees "🔁 echo: <text>", every hop worked. The reply says which request it answers (Slack's ``trigger_id``
and the router's correlation id) and how long the message took: in the queue (SQS's ``SentTimestamp`` to now,
in milliseconds) and since the router accepted the command (the envelope's ``receivedAt``, whole seconds).

The echo touches neither the lock table nor GitHub. A reply Slack refuses is logged (with the correlation id)
and the message is done: an echo that cannot be delivered is the answer to the liveness question, and
redelivering it would only knock on the same door again. A message that is not an echo raises, and after the
queue's ``maxReceiveCount`` ends in the DLQ.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.protocol.commands import Echo
from workers.protocol.envelope import CommandEnvelope, EnvelopeError, read_message
from workers.protocol.message import Message, escape
from workers.protocol.render import duration


@dataclass(frozen=True)
class Timing:
    """When the message was accepted, queued and handled, as each clock tells it."""

    received_at: int
    """Epoch seconds: the router accepted the command (the envelope's ``receivedAt``)."""
    sent_ms: int | None
    """Epoch milliseconds: SQS accepted the message (``SentTimestamp``); ``None`` when the record lacks it."""
    handled_ms: int
    """Epoch milliseconds: this worker took it."""
    deliveries: int = 1
    """SQS's ``ApproximateReceiveCount``: above 1, an earlier delivery was not deleted."""

    @property
    def queue_ms(self) -> int | None:
        return max(self.handled_ms - self.sent_ms, 0) if self.sent_ms is not None else None

    @property
    def since_router_seconds(self) -> int:
        return max(self.handled_ms // 1000 - self.received_at, 0)

    @classmethod
    def of(cls, record: SQSRecord, envelope: CommandEnvelope, now_ms: int) -> Timing:
        attributes = record.attributes
        sent = attributes.get("SentTimestamp")
        count = attributes.get("ApproximateReceiveCount")
        return cls(
            received_at=envelope.received_at,
            sent_ms=int(sent) if isinstance(sent, str) and sent.isdigit() else None,
            handled_ms=now_ms,
            deliveries=int(count) if isinstance(count, str) and count.isdigit() else 1,
        )


def echo_message(envelope: CommandEnvelope, echo: Echo, timing: Timing) -> Message:
    """The ephemeral reply: the text back, and the trace of the trip."""
    queued = f"{timing.queue_ms} ms in the queue" if timing.queue_ms is not None else "time in the queue unknown"
    trip = f"{queued}, {duration(timing.since_router_seconds)} since the router took it"
    if timing.deliveries > 1:
        trip += f", delivery {timing.deliveries}"
    trace = f"request `{escape(envelope.request_id)}` · correlation `{escape(envelope.correlation_id)}` · {trip}"
    shown = escape(echo.text)
    return Message(
        f"🔁 echo: {shown} ({trip})",
        [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"🔁 echo: {shown}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": trace}]},
        ],
    )


# ------------------------------------------------------------------------------------------------- the worker
def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The echo worker Lambda: an SQS batch in, ``ReportBatchItemFailures`` out."""
    return runtime.process_sqs_batch(event, context, handle_record)


def handle_record(record: SQSRecord) -> None:
    envelope = read_message(record.body)
    if not isinstance(envelope, CommandEnvelope) or not isinstance(envelope.command, Echo):
        raise EnvelopeError(f"the echo worker does not handle {envelope.kind!r} messages")
    handle(envelope, envelope.command, Timing.of(record, envelope, time.time_ns() // 1_000_000))


def handle(envelope: CommandEnvelope, echo: Echo, timing: Timing) -> bool:
    """Reply with the echo; whether Slack took it (a refusal is logged, and the message is done either way)."""
    with runtime.logger.append_context_keys(
        correlation_id=envelope.correlation_id, request_id=envelope.request_id, kind=envelope.kind
    ):
        if timing.queue_ms is not None:
            runtime.metrics.add_metric(name="echo.queueLatency", unit=MetricUnit.Milliseconds, value=timing.queue_ms)
        delivered = runtime.slack_replies().reply(
            envelope.response_url, echo_message(envelope, echo, timing), correlation_id=envelope.correlation_id
        )
        runtime.logger.info(
            "echo answered" if delivered else "echo not delivered",
            queue_ms=timing.queue_ms,
            deliveries=timing.deliveries,
        )
        return delivered
