"""The dead-letter worker's Lambda: each message of a command queue's DLQ (build, deploy, status, echo) — a
request that failed every attempt — to :func:`workers.flows.deadletter.tell`, so its requester hears why rather
than nothing after the router's "⏳ Got it".

Every record is done after one try: a DLQ has no DLQ of its own, so a record reported failed here would come
back until the DLQ's retention ends. A body that is not one of ours is logged in one line and dropped (it is
already dead); a ``workflow_run`` or a Home's publishing has no requester (the reaper settles the lock of a lost
webhook; a Home is published again at the next change or open); anything else that goes wrong is logged with
its traceback and the record is dropped all the same.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.flows.deadletter import tell
from workers.protocol.config import current_config
from workers.protocol.envelope import EnvelopeError, HomeOpened, HomeRefresh, WorkflowRunEnvelope, read_message


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The SQS Lambda on the DLQs: a batch in; no record is ever reported failed."""
    return runtime.process_sqs_batch(event, context, handle_record)


def handle_record(record: SQSRecord) -> bool:
    """Tell the requester of one dead letter; whether someone was told."""
    source = record.event_source_arn.rpartition(":")[2]
    try:
        envelope = read_message(record.body)
    except EnvelopeError as error:
        runtime.logger.warning("dead letter dropped: not one of ours", queue=source, reason=str(error))
        return False
    if isinstance(envelope, WorkflowRunEnvelope | HomeOpened | HomeRefresh):
        # Nobody waits on these: a lost Home is published again when its user opens it or a lock changes.
        runtime.logger.warning("dead letter dropped: it has no requester", kind=envelope.kind, queue=source)
        return False
    with runtime.logger.append_context_keys(
        correlation_id=envelope.correlation_id, request_id=envelope.request_id, kind=envelope.kind, queue=source
    ):
        try:
            return tell(envelope, config=current_config(), store=runtime.lock_store(), slack=runtime.slack_replies())
        except Exception:  # already dead: retrying would only repeat it for two weeks
            runtime.logger.exception("dead letter dropped: telling its requester failed")
            return False
