"""The DynamoDB store: translates each transition into one conditional ``UpdateItem``; decides nothing.

Every lock operation is one request. A refused write comes back with the item as it was
(``ReturnValuesOnConditionCheckFailure=ALL_OLD``), so a lost race learns the holder without a second read. A
DynamoDB-compatible store that answers without the item (dynalite, older DynamoDB Local) costs one strongly
consistent ``GetItem`` more after such a refusal — found out, not configured: see
:attr:`DynamoDBLockStore.returns_old_item`.
Throttling and transient errors are retried by botocore's own retry modes (standard by default; set
``AWS_RETRY_MODE=adaptive`` for client-side rate limiting) — never by a loop here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config

from lockcore import machine, redecide
from lockcore.errors import LockStoreError, NoCredentials, StoreThrottled, StoreUnreachable, TableMissing
from lockcore.expressions import (
    Above,
    Absent,
    AllOf,
    AnyOf,
    AtMost,
    Effect,
    Equals,
    Guard,
    Item,
    Missing,
    Not,
    OneOf,
    Value,
)
from lockcore.record import KEY, LEGACY_TTL
from lockcore.store import Clock, LockStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

DEFAULT_TABLE = "chatbot-build-locks"
REGION_ENV = "AWS_REGION"
DEFAULT_MAX_ATTEMPTS = 5  # retries after the first attempt
_THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def client_config() -> Config:
    """Short timeouts, and botocore's standard retry mode with 5 retries — unless AWS_RETRY_MODE or
    AWS_MAX_ATTEMPTS say otherwise (whatever the code sets, botocore would not read from the environment;
    whatever it leaves out, botocore would default to its legacy mode)."""
    retries: dict[str, Any] = {"mode": os.environ.get("AWS_RETRY_MODE", "standard")}
    if "AWS_MAX_ATTEMPTS" not in os.environ:
        retries["total_max_attempts"] = DEFAULT_MAX_ATTEMPTS + 1
    return Config(retries=retries, connect_timeout=3, read_timeout=5)  # type: ignore[arg-type]


def make_client(
    endpoint_url: str | None = None, region: str | None = None, session: boto3.Session | None = None
) -> DynamoDBClient:
    """A DynamoDB client from ``session`` (default: boto3's), endpoint the standard boto3 way unless given
    (``AWS_ENDPOINT_URL``…). The region: ``region``, else ``AWS_REGION`` as the AWS CLI v2 and the other AWS SDKs
    read it (before ``AWS_DEFAULT_REGION``; botocore itself reads only the latter), else botocore's own chain
    (``AWS_DEFAULT_REGION``, the profile's ``region``)."""
    region = region or os.environ.get(REGION_ENV) or None
    try:
        if session is not None:
            return session.client("dynamodb", endpoint_url=endpoint_url, region_name=region, config=client_config())
        return boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region, config=client_config())
    except botocore.exceptions.NoRegionError as error:
        raise LockStoreError(f"no AWS region: set {REGION_ENV}") from error


_DYNAMODB_LABELS: Final = frozenset({"dynamodb", "dynamodb-fips", "ddb"})
"""A label every DynamoDB endpoint's host carries (``ddb``: an account-based endpoint, ``<account>.ddb.<region>``)."""


def is_dynamodb_itself(endpoint_url: str) -> bool:
    """An AWS endpoint of DynamoDB (``dynamodb.<region>.amazonaws.com``, ``.amazonaws.com.cn``, the dual-stack
    ``.api.aws``, a VPC endpoint, an account-based one), which returns the old item on a refused write. Anything
    else may be a compatible store that does not — also one behind another AWS host name (an EC2 instance's or a
    load balancer's public name ends in ``.amazonaws.com`` too)."""
    host = (urlsplit(endpoint_url).hostname or "").lower()
    on_aws = host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))
    return on_aws and not _DYNAMODB_LABELS.isdisjoint(host.split("."))


class _Expression:
    """Builds one request's expression strings with placeholder names and values."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValueTypeDef] = {}

    def name(self, attribute: str) -> str:
        for placeholder, known in self.names.items():
            if known == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Value) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = _serializer.serialize(value)
        return placeholder

    def condition(self, guard: Guard) -> str:
        match guard:
            case Missing():
                return f"attribute_not_exists({self.name(KEY)})"
            case Absent(name):
                return f"attribute_not_exists({self.name(name)})"
            case Equals(name, value):
                return f"{self.name(name)} = {self.value(value)}"
            case OneOf(name, values):
                return f"{self.name(name)} IN ({', '.join(self.value(v) for v in values)})"
            case AtMost(name, value):
                return f"{self.name(name)} <= {self.value(value)}"
            case Above(name, value):
                return f"{self.name(name)} > {self.value(value)}"
            case AllOf(parts) | AnyOf(parts) if len(parts) == 1:
                return self.condition(parts[0])  # DynamoDB refuses redundant parentheses
            case AllOf(parts):
                return "(" + " AND ".join(self.condition(part) for part in parts) + ")"
            case AnyOf(parts):
                return "(" + " OR ".join(self.condition(part) for part in parts) + ")"
            case Not(part):
                return f"(NOT {self.condition(part)})"
        raise TypeError(f"not a guard: {guard!r}")  # pragma: no cover

    def update(self, effect: Effect) -> str:
        assignments = [f"{self.name(name)} = {self.value(value)}" for name, value in sorted(effect.set.items())]
        if effect.bump is not None:
            counter = self.name(effect.bump)
            assignments.append(f"{counter} = if_not_exists({counter}, {self.value(0)}) + {self.value(1)}")
        clauses = ["SET " + ", ".join(assignments)] if assignments else []
        if effect.remove:
            clauses.append("REMOVE " + ", ".join(self.name(name) for name in sorted(effect.remove)))
        return " ".join(clauses)


def _python(value: Any) -> Value:
    plain = _deserializer.deserialize(value)
    if isinstance(plain, Decimal):
        return int(plain)
    if isinstance(plain, str):
        return plain
    return str(plain)


def from_wire(item: Mapping[str, Any]) -> Item:
    return {name: _python(value) for name, value in item.items()}


class DynamoDBLockStore(LockStore):
    def __init__(
        self,
        table: str = DEFAULT_TABLE,
        client: DynamoDBClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock) if clock is not None else super().__init__()
        self.table = table
        self.client = client if client is not None else make_client()
        # Known to answer a refused write with the item as it was, so that a refusal without one means there was
        # none: DynamoDB itself (an AWS endpoint) from the start; any other endpoint once one of its refusals has
        # come back with an item. Until then each refusal without the item costs one consistent read.
        self.returns_old_item = is_dynamodb_itself(self.client.meta.endpoint_url)

    # ------------------------------------------------------------------ the one atomic write
    def _write(self, transition: machine.Transition) -> machine.WriteResult:
        expression = _Expression()
        update = expression.update(transition.effect)
        condition = expression.condition(transition.guard)
        # DynamoDB refuses an empty map of values (a write that only removes, on a guard without values).
        values = {"ExpressionAttributeValues": expression.values} if expression.values else {}
        try:
            answer = self._call(
                self.client.update_item,
                TableName=self.table,
                Key={KEY: {"S": transition.lock_key}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=expression.names,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **values,
            )
        except _Refused as refused:
            if refused.item is not None:
                self.returns_old_item = True
            return redecide.refused(
                transition.guard,
                refused.item,
                lambda: self._read(transition.lock_key),
                returns_old_item=self.returns_old_item,
            )
        return machine.Written(from_wire(answer["Attributes"]))

    def _read(self, lock_key: str) -> Item | None:
        answer = self._call(self.client.get_item, TableName=self.table, Key={KEY: {"S": lock_key}}, ConsistentRead=True)
        item = answer.get("Item")
        return from_wire(item) if item else None

    def _scan(self) -> Iterator[Item]:
        paginator = self.client.get_paginator("scan")
        pages = self._call(lambda **kw: list(paginator.paginate(**kw)), TableName=self.table, ConsistentRead=True)
        for page in pages:
            for item in page.get("Items", []):
                yield from_wire(item)

    # ------------------------------------------------------------------ errors, one name each
    def _call(self, operation: Any, **request: Any) -> Any:
        try:
            return operation(**request)
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                old = cast("Mapping[str, Any] | None", error.response.get("Item"))
                raise _Refused(from_wire(old) if old else None) from None
            if code == "ResourceNotFoundException":
                raise TableMissing(
                    f"lock table {self.table!r} does not exist at {self.client.meta.endpoint_url} "
                    f"({self.client.meta.region_name}): "
                    f"create it with `chatops locks create-table --table {self.table}`"
                ) from None
            if code in _THROTTLED:
                raise StoreThrottled(f"DynamoDB is throttling requests to {self.table!r}; try again shortly") from None
            message = error.response.get("Error", {}).get("Message", str(error))
            raise LockStoreError(f"DynamoDB refused the request on {self.table!r}: {code}: {message}") from None
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
            raise NoCredentials(
                "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            ) from None
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError):
            # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError, …
            raise StoreUnreachable(f"cannot reach DynamoDB at {self.client.meta.endpoint_url}") from None

    # ------------------------------------------------------------------ administration
    def create_table(self) -> bool:
        """Create the lock table (idempotent); answers whether it was created now. TTL is enabled on ``ttl``
        as in the user's design — for other item types; lock items never carry it."""
        try:
            self._call(
                self.client.create_table,
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except LockStoreError as error:
            if "ResourceInUseException" in str(error):
                return False
            raise
        self.client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1})
        self._call(
            self.client.update_time_to_live,
            TableName=self.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": LEGACY_TTL},
        )
        return True


class _Refused(Exception):
    def __init__(self, item: Item | None) -> None:
        self.item = item
