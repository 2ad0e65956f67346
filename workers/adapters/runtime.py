"""What every SQS worker Lambda shares: its logger and metrics, its clients, and the batch loop.

- :data:`logger` (Powertools ``Logger``, service ``chatops``) writes JSON lines; the stdlib loggers of
  :mod:`workers.adapters.slack` and :mod:`lockcore` are routed through it, so their ``correlation_id`` extras land
  in the
  same JSON. :data:`metrics` (Powertools ``Metrics``, namespace ``ChatOps``) writes EMF; :func:`process_sqs_batch`
  flushes it at the end of every invocation.
- :func:`lock_store`, :func:`slack_replies`, :func:`github_client`, :func:`idempotency_store`: made on first use
  and reused by the warm container (one connection pool each). Their settings come from
  :func:`workers.protocol.config.current_config` and the environment; :func:`reset` drops them (tests that change either
  between cases), and may give the lock store a clock of its own (the local stack's simulated time).
- :func:`process_sqs_batch` runs a record handler over an SQS batch with Powertools' ``BatchProcessor`` and
  answers Lambda's ``ReportBatchItemFailures``: a record whose handler raises goes back to the queue alone (and,
  after ``maxReceiveCount``, to the DLQ), its neighbours are deleted. Each failed record is logged once
  (:class:`WorkerBatchProcessor`): an expected retry (:data:`EXPECTED_RETRIES`) as one warning line, anything
  else as an error with its traceback.

Environment: ``LOCK_TABLE_NAME`` (default ``chatbot-build-locks``), ``IDEMPOTENCY_TABLE_NAME`` (default
``chatops-idempotency``), ``GITHUB_TIMEOUT_SECONDS`` (default 10: each
GitHub request's connect and read timeout), the secrets of :mod:`workers.adapters.secrets`, and those of
:mod:`workers.protocol.config`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.base import FailureResponse
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from lockcore.dynamodb import DEFAULT_TABLE, DynamoDBLockStore, client_config
from lockcore.store import Clock, LockStore
from workers.adapters.github import DEFAULT_TIMEOUT_SECONDS, GitHubClient
from workers.adapters.history_table import HistoryTable, history_table
from workers.adapters.ledger import Ledger
from workers.adapters.pending import DEFAULT_IDEMPOTENCY_TABLE, IDEMPOTENCY_TABLE_ENV, PendingRequests
from workers.adapters.secrets import get_secret
from workers.adapters.slack import SlackReplies
from workers.protocol.config import current_config

SERVICE: Final = "chatops"
NAMESPACE: Final = "ChatOps"
LOCK_TABLE_ENV: Final = "LOCK_TABLE_NAME"
GITHUB_TIMEOUT_ENV: Final = "GITHUB_TIMEOUT_SECONDS"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
copy_config_to_registered_loggers(source_logger=logger, include={"workers.adapters.slack", "lockcore"})

RecordHandler = Callable[[SQSRecord], object]
"""Handles one SQS record; raising puts that record (only) back on the queue."""


# ---------------------------------------------------------------------------------------------- the clients
@dataclass(frozen=True)
class Adapters:
    """The world a worker acts on, every adapter at once: what a deployed worker makes from its environment
    (:func:`lock_store` and the rest, below), or in-memory twins that a simulation installs with :func:`using`.
    A handler asks this module for each adapter and never builds one itself, so the one seam is here."""

    lock_store: LockStore
    slack: SlackReplies
    github: GitHubClient
    idempotency: BasePersistenceLayer
    pending: PendingRequests
    history: HistoryTable
    ledger: Ledger
    send: Callable[..., str]
    """:func:`workers.adapters.queues.enqueue`'s signature: puts a body on a command queue, answers its id."""


_installed: Adapters | None = None
_lock_clock: Clock | None = None
"""The clock :func:`lock_store` reads, as :func:`reset` was last given it; ``None``: the system's."""


@contextmanager
def using(adapters: Adapters) -> Iterator[Adapters]:
    """Every handler, flow and the queues act on ``adapters`` until the block ends (one world at a time)."""
    global _installed  # noqa: PLW0603 — the process's one world, as the cached clients are
    before, _installed = _installed, adapters
    try:
        yield adapters
    finally:
        _installed = before


def installed() -> Adapters | None:
    """The adapters :func:`using` installed, if any (the queues read it to send through the twin)."""
    return _installed


def lock_store() -> LockStore:
    """The lock table (``$LOCK_TABLE_NAME``) through DynamoDB, region and endpoint the standard boto3 way."""
    return _installed.lock_store if _installed is not None else _lock_store()


def slack_replies() -> SlackReplies:
    """Replies with the bot token, to the configured Web API and ``response_url`` hosts."""
    return _installed.slack if _installed is not None else _slack_replies()


def github_client() -> GitHubClient:
    """GitHub with the token, at the configured API URL (github.com or a GitHub Enterprise server)."""
    return _installed.github if _installed is not None else _github_client()


def idempotency_store() -> BasePersistenceLayer:
    """Powertools Idempotency's records, in ``$IDEMPOTENCY_TABLE_NAME`` (partition key ``id``, TTL on
    ``expiration``) — a table of its own, so the lock table holds locks only."""
    return _installed.idempotency if _installed is not None else _idempotency_store()


def pending_requests() -> PendingRequests:
    """Queued requests' envelopes (:mod:`workers.adapters.pending`)."""
    return _installed.pending if _installed is not None else PendingRequests()


def ledger() -> Ledger:
    """What was already told and started (:mod:`workers.adapters.ledger`), in the idempotency table."""
    return _installed.ledger if _installed is not None else Ledger()


def history() -> HistoryTable:
    """The lock history's table (:mod:`workers.adapters.history_table`)."""
    return _installed.history if _installed is not None else history_table()


@cache
def _lock_store() -> LockStore:
    return DynamoDBLockStore(os.environ.get(LOCK_TABLE_ENV) or DEFAULT_TABLE, clock=_lock_clock)


@cache
def _slack_replies() -> SlackReplies:
    slack = current_config().slack
    return SlackReplies(get_secret("SLACK_BOT_TOKEN"), api_url=slack.api_url, response_hosts=slack.response_url_hosts)


@cache
def _github_client() -> GitHubClient:
    timeout = float(os.environ.get(GITHUB_TIMEOUT_ENV) or DEFAULT_TIMEOUT_SECONDS)
    return GitHubClient(get_secret("GITHUB_TOKEN"), api_url=current_config().github.api_url, timeout=timeout)


@cache
def _idempotency_store() -> DynamoDBPersistenceLayer:
    table = os.environ.get(IDEMPOTENCY_TABLE_ENV) or DEFAULT_IDEMPOTENCY_TABLE
    return DynamoDBPersistenceLayer(table_name=table, boto_config=client_config())


def reset(*, lock_clock: Clock | None = None) -> None:
    """Forget the cached clients: the next call makes them again from the environment as it is now, and the lock
    store reads ``lock_clock`` (``None``: the system's clock; a deployed worker never sets one)."""
    global _lock_clock  # noqa: PLW0603 — set with the cache it belongs to, so the two never disagree
    _lock_clock = lock_clock
    for factory in (_lock_store, _slack_replies, _github_client, _idempotency_store):
        factory.cache_clear()


# ------------------------------------------------------------------------------------------------ the batch
class RetryLater(Exception):
    """Raised by a record handler to have the record handled again later — no fault, so logged without a
    traceback (e.g. :class:`workers.flows.build.DispatchInDoubt`: GitHub could not say whether a dispatch started a
    run)."""


EXPECTED_RETRIES: Final = (IdempotencyAlreadyInProgressError, RetryLater)
"""The failures by which a record asks to be handled again later: ours, and Powertools'
``IdempotencyAlreadyInProgressError`` (another invocation is handling the same request now)."""


class WorkerBatchProcessor(BatchProcessor):
    """Powertools' SQS ``BatchProcessor``, logging each failed record once, with its message id, correlation id
    and receive count: an expected retry as one warning line, anything else as an error with its traceback. The
    record is reported as a batch item failure either way, so SQS redelivers it."""

    def __init__(self) -> None:
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def failure_handler(self, record: SQSRecord, exception: ExceptionInfo) -> FailureResponse:
        error = exception[1]
        correlation = record.message_attributes["correlationId"]
        keys = {
            "message_id": record.message_id,
            "correlation_id": correlation.string_value if correlation is not None else None,
            "receive_count": record.attributes.approximate_receive_count,
            "error": type(error).__name__,
        }
        if isinstance(error, EXPECTED_RETRIES):
            logger.warning("record retried later: it goes back to the queue", extra={**keys, "reason": str(error)})
        else:
            logger.error("record failed: it goes back to the queue (then to the DLQ)", exc_info=error, extra=keys)
        return super().failure_handler(record, exception)


def process_sqs_batch(
    event: dict[str, Any], context: LambdaContext | None, record_handler: RecordHandler
) -> dict[str, Any]:
    """Run ``record_handler`` on each record of an SQS ``event``; Lambda's partial batch response.

    A batch in which every record failed is answered with every record listed, not with an exception
    (``raise_on_entire_batch_failure=False``): Lambda treats both the same way — each record returns to the queue —
    and the answer keeps the log readable. EMF metrics are flushed whatever happens.
    """

    def handle(record: SQSRecord) -> object:  # Powertools requires the parameter's name: `record`
        with logger.append_context_keys(message_id=record.message_id):
            return record_handler(record)

    try:
        response = process_partial_response(
            event=event, record_handler=handle, processor=WorkerBatchProcessor(), context=context
        )
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
    failures = response.get("batchItemFailures", [])
    if failures:
        logger.warning("batch done with failures", failed=len(failures), records=len(event.get("Records", [])))
    return dict(response)
