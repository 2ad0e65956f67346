"""The build worker's Lambda (``/build``, ``/deploy``): each SQS record once, under its request's idempotency
record; the work is :class:`workers.flows.build.BuildWorker`'s."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.adapters.runtime import logger
from workers.flows.build import IDEMPOTENCY_KEY_PREFIX, REMEMBER_SECONDS, BuildWorker, Result
from workers.protocol import dispatch
from workers.protocol.config import current_config
from workers.protocol.envelope import CommandEnvelope


# ------------------------------------------------------------------------------------------------ the Lambda
def _replayed(response: Any, idempotent_data: DataRecord) -> Any:
    """Powertools calls this only when it answers from a stored record: the request had already run."""
    return {**response, "replayed": True} if isinstance(response, dict) else response


_idempotency_config = IdempotencyConfig(
    event_key_jmespath="requestId",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=REMEMBER_SECONDS,
    response_hook=_replayed,
)


def handle_record(record: SQSRecord, context: LambdaContext | None = None) -> Result:
    """One SQS record: the request once, under its idempotency record."""
    body = record.body
    envelope = CommandEnvelope.from_json(body)  # not one of ours: raise, and the DLQ keeps it
    config = current_config()
    token = envelope.handed_off  # its coalesced requesters are on the lock it was handed
    job = dispatch.Job.of(envelope, config, handed_off=token)
    request = json.loads(body)
    if token is not None:  # the same request again, handed the lock: once more, under an idempotency key of its own
        request = {**request, "requestId": f"{envelope.request_id}#handed-off-{token}"}
    receive_count = int(record.attributes.approximate_receive_count or "1")
    with logger.append_context_keys(
        correlation_id=job.correlation_id, request_id=job.request_id, lock_key=job.lock_key, command=job.spec.slash
    ):
        pending = runtime.pending_requests()
        worker = BuildWorker(
            config, runtime.lock_store(), runtime.github_client(), runtime.slack_replies(), pending=pending
        )

        def once(request: dict[str, Any]) -> dict[str, Any]:
            if job.queue and job.handed_off is None and job.locks:
                pending.keep(envelope)  # before it may join a queue: a hand-off reads it from there
            return asdict(worker.run(job, redelivered=receive_count > 1))

        if context is not None:
            _idempotency_config.register_lambda_context(context)
        guarded = idempotent_function(
            once,
            data_keyword_argument="request",
            persistence_store=runtime.idempotency_store(),
            config=_idempotency_config,
            key_prefix=IDEMPOTENCY_KEY_PREFIX,
        )
        result = Result(**guarded(request=request))
        if result.replayed:
            logger.info("request already ran: nothing done", outcome=result.outcome)
        else:
            logger.info("request done", outcome=result.outcome, run_id=result.run_id)
        return result


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The SQS Lambda: each record once; failures reported per record (``ReportBatchItemFailures``)."""

    def record_handler(record: SQSRecord) -> Result:
        return handle_record(record, context)

    return runtime.process_sqs_batch(event, context, record_handler)
