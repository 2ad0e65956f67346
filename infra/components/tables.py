"""The DynamoDB tables: the lock table (one item per lock key, streamed), the lock history and Powertools
Idempotency's records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

LOCK_KEY: Final = "lockKey"
LOCK_TTL: Final = "ttl"
IDEMPOTENCY_KEY: Final = "id"
IDEMPOTENCY_TTL: Final = "expiration"
HISTORY_SORT_KEY: Final = "at"
HISTORY_TTL: Final = "ttl"
STREAM_VIEW: Final = "NEW_AND_OLD_IMAGES"


@dataclass(frozen=True)
class TableArgs:
    table_name: str


class LockTable(pulumi.ComponentResource):
    """``lockKey`` → the lock. On demand, encrypted, point-in-time recovery, deletion protection (and Pulumi's
    ``protect``: switching the lock off keeps the table). TTL on ``ttl`` as the reference design has it: lockcore
    never decides expiry by TTL deletion (it is lazy, days late), it only lets DynamoDB sweep old items.

    A stream of every change, old and new image (``NEW_AND_OLD_IMAGES``): the history writer reads it, so the
    history costs the lock's hot path nothing (:mod:`workers.flows.history`)."""

    def __init__(self, name: str, args: TableArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:data:LockTable", name, None, opts)
        self.table = aws.dynamodb.Table(
            name,
            name=args.table_name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=LOCK_KEY,
            attributes=[aws.dynamodb.TableAttributeArgs(name=LOCK_KEY, type="S")],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=LOCK_TTL, enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            deletion_protection_enabled=True,
            stream_enabled=True,
            stream_view_type=STREAM_VIEW,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.name: pulumi.Output[str] = self.table.name
        self.arn: pulumi.Output[str] = self.table.arn
        self.stream_arn: pulumi.Output[str] = self.table.stream_arn
        self.register_outputs({"name": self.name, "arn": self.arn, "streamArn": self.stream_arn})


class HistoryTable(pulumi.ComponentResource):
    """The lock history: ``lockKey`` → events sorted by ``at`` (``<time>#<token>#<event>``), TTL on ``ttl`` (30
    days after each event). Losing it loses the log, not a lock: no deletion protection."""

    def __init__(self, name: str, args: TableArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:data:HistoryTable", name, None, opts)
        self.table = aws.dynamodb.Table(
            name,
            name=args.table_name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=LOCK_KEY,
            range_key=HISTORY_SORT_KEY,
            attributes=[
                aws.dynamodb.TableAttributeArgs(name=LOCK_KEY, type="S"),
                aws.dynamodb.TableAttributeArgs(name=HISTORY_SORT_KEY, type="S"),
            ],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=HISTORY_TTL, enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name: pulumi.Output[str] = self.table.name
        self.arn: pulumi.Output[str] = self.table.arn
        self.register_outputs({"name": self.name, "arn": self.arn})


class IdempotencyTable(pulumi.ComponentResource):
    """Powertools Idempotency's persistence layer: partition key ``id``, TTL on ``expiration``. Records live an
    hour; losing the table loses only deduplication of in-flight messages, so no deletion protection."""

    def __init__(self, name: str, args: TableArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:data:IdempotencyTable", name, None, opts)
        self.table = aws.dynamodb.Table(
            name,
            name=args.table_name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=IDEMPOTENCY_KEY,
            attributes=[aws.dynamodb.TableAttributeArgs(name=IDEMPOTENCY_KEY, type="S")],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=IDEMPOTENCY_TTL, enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name: pulumi.Output[str] = self.table.name
        self.arn: pulumi.Output[str] = self.table.arn
        self.register_outputs({"name": self.name, "arn": self.arn})
