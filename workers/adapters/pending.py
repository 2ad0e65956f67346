"""Where a queued request's envelope waits for its hand-off: the idempotency table, under
``chatops.pending#<request id>`` with the table's TTL (see :mod:`workers.flows.handoff` for why there)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from lockcore.dynamodb import client_config
from workers.protocol.envelope import CommandEnvelope, EnvelopeError

IDEMPOTENCY_TABLE_ENV: Final = "IDEMPOTENCY_TABLE_NAME"
DEFAULT_IDEMPOTENCY_TABLE: Final = "chatops-idempotency"
"""The table that keeps Powertools Idempotency's records and the queued requests' envelopes."""
_log = Logger(service="chatops")  # the workers' one logger: Powertools shares it by service name

PENDING_PREFIX: Final = "chatops.pending#"
PENDING_SECONDS: Final = 2 * 24 * 3600
"""How long a queued request's envelope is kept: a queue longer than that has its leases to end it."""


class IdempotencyTableItems:
    """Items of our own in the idempotency table (``$IDEMPOTENCY_TABLE_NAME``) beside Powertools' records: one
    client, made on first use, and the clock their TTL (``expiration``) is counted from."""

    def __init__(self, table: str | None = None, *, clock: Any = time.time) -> None:
        self.table = table or os.environ.get(IDEMPOTENCY_TABLE_ENV) or DEFAULT_IDEMPOTENCY_TABLE
        self.clock = clock
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client("dynamodb", config=client_config())
        return self._client


class PendingRequests(IdempotencyTableItems):
    """The envelopes of requests waiting in a lock's queue, by request id."""

    def keep(self, envelope: CommandEnvelope) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                "id": {"S": PENDING_PREFIX + envelope.request_id},
                "envelope": {"S": envelope.to_json()},
                "expiration": {"N": str(int(self.clock()) + PENDING_SECONDS)},
            },
        )

    def find(self, request_id: str) -> CommandEnvelope | None:
        answer = self.client.get_item(
            TableName=self.table, Key={"id": {"S": PENDING_PREFIX + request_id}}, ConsistentRead=True
        )
        body = answer.get("Item", {}).get("envelope", {}).get("S")
        if not isinstance(body, str):
            return None
        try:
            return CommandEnvelope.from_json(body)
        except EnvelopeError:
            return None

    def find_each(self, owners: Iterable[str]) -> Iterator[tuple[str, CommandEnvelope | None]]:
        """Each owner's kept envelope (``None``: none kept); an owner whose lookup fails is logged and skipped —
        for telling people, where one lost lookup must not stop the others."""
        for owner in owners:
            try:
                yield owner, self.find(owner)
            except (BotoCoreError, ClientError) as error:
                _log.error("a waiting request could not be looked up", owner=owner, reason=str(error))
