"""The status worker's Lambda (``/build status``, unlock, cancel, freeze, history, stats, queue and watch):
each SQS record to :func:`workers.flows.status.handle`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.flows.status import handle
from workers.protocol.config import current_config
from workers.protocol.envelope import read_message


# ------------------------------------------------------------------------------------------------- the worker
def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The status worker Lambda: an SQS batch in, ``ReportBatchItemFailures`` out."""
    return runtime.process_sqs_batch(event, context, handle_record)


def handle_record(record: SQSRecord) -> None:
    handle(read_message(record.body), config=current_config(), store=runtime.lock_store())
