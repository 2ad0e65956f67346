"""The webhook worker's Lambda: GitHub's ``workflow_run`` events, each to
:class:`workers.flows.webhook.WebhookWorker`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.flows.runlock import Effect
from workers.flows.webhook import WebhookWorker
from workers.protocol.config import current_config
from workers.protocol.envelope import WorkflowRunEnvelope


def handle_record(record: SQSRecord, worker: WebhookWorker | None = None) -> Effect:
    """One SQS record; a body that is not a ``workflow_run`` envelope raises (and ends in the DLQ)."""
    event = WorkflowRunEnvelope.from_json(record.body)
    with runtime.logger.append_context_keys(correlation_id=event.correlation_id, delivery_id=event.delivery_id):
        worker = worker or WebhookWorker(current_config(), runtime.lock_store(), runtime.slack_replies())
        effect = worker.on_event(event)
        runtime.logger.info("workflow_run handled", effect=effect.value)
        return effect


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The SQS Lambda: each record on its own; failures reported per record (``ReportBatchItemFailures``)."""
    return runtime.process_sqs_batch(event, context, handle_record)
