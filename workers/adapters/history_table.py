"""The history table (DynamoDB): one idempotent PutItem per event, one Query for a key's recent events (paginated
for a rollback's), a Scan for a period — see :mod:`workers.flows.history` for the design."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Final

from boto3.dynamodb.types import TypeSerializer

from lockcore import record as r
from lockcore.dynamodb import from_wire, make_client
from lockcore.record import iso
from workers.protocol.history import SORT_KEY, HistoryEvent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HISTORY_TABLE_ENV: Final = "HISTORY_TABLE_NAME"
DEFAULT_HISTORY_TABLE: Final = "chatops-lock-history"
_serializer = TypeSerializer()


class HistoryTable:
    def __init__(self, table: str = DEFAULT_HISTORY_TABLE, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self.client = client if client is not None else make_client()

    def put(self, event: HistoryEvent) -> None:
        """A plain put of an item that depends on the event only: writing it twice is writing it once."""
        item = {name: _serializer.serialize(value) for name, value in event.to_item().items()}
        self.client.put_item(TableName=self.table, Item=item)

    def recent(self, lock_key: str, limit: int = 10) -> list[HistoryEvent]:
        """The newest ``limit`` events of one key, newest first: one Query."""
        answer = self.client.query(
            TableName=self.table,
            KeyConditionExpression="#k = :k",
            ExpressionAttributeNames={"#k": r.KEY},
            ExpressionAttributeValues={":k": {"S": lock_key}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [HistoryEvent.from_item(from_wire(item)) for item in answer.get("Items", [])]

    def newest_first(self, lock_key: str, start: int, page_size: int = 100) -> Iterator[HistoryEvent]:
        """Every event of one key at or after ``start`` (epoch seconds), newest first: a paginated Query, each page
        read only when the caller iterates that far."""
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="#k = :k AND #at >= :start",
            ExpressionAttributeNames={"#k": r.KEY, "#at": SORT_KEY},
            ExpressionAttributeValues={":k": {"S": lock_key}, ":start": {"S": iso(start)}},
            ScanIndexForward=False,
            PaginationConfig={"PageSize": page_size},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield HistoryEvent.from_item(from_wire(item))

    def since(self, start: int) -> Iterator[HistoryEvent]:
        """Every event at or after ``start`` (epoch seconds), any key."""
        paginator = self.client.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self.table,
            FilterExpression="#at >= :start",
            ExpressionAttributeNames={"#at": SORT_KEY},
            ExpressionAttributeValues={":start": {"S": iso(start)}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield HistoryEvent.from_item(from_wire(item))

    def create_table(self) -> bool:
        """Create the history table (idempotent), TTL on ``ttl``; answers whether it was created now."""
        try:
            self.client.create_table(
                TableName=self.table,
                AttributeDefinitions=[
                    {"AttributeName": r.KEY, "AttributeType": "S"},
                    {"AttributeName": SORT_KEY, "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": r.KEY, "KeyType": "HASH"},
                    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except self.client.exceptions.ResourceInUseException:
            return False
        self.client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1})
        self.client.update_time_to_live(
            TableName=self.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
        )
        return True


def history_table() -> HistoryTable:
    """``$HISTORY_TABLE_NAME``, region and endpoint the standard boto3 way; reused by a warm container, made
    again when the table or the endpoint changes (one local stack after another in a process)."""
    return _history_table(
        os.environ.get(HISTORY_TABLE_ENV) or DEFAULT_HISTORY_TABLE, os.environ.get("AWS_ENDPOINT_URL")
    )


@cache
def _history_table(name: str, endpoint: str | None) -> HistoryTable:
    return HistoryTable(name, make_client())


def forget() -> None:
    """Drop the cached clients (tests that start and stop moto)."""
    _history_table.cache_clear()
