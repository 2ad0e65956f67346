"""The stores under test, each in its world: in memory, DynamoDB on in-process moto, DynamoDB on a moto server
over HTTP in a subprocess, and DynamoDB-compatible stores that answer differently (moto over HTTP behind a
middleware: one that never returns the old item, as dynalite does). Also what the world does to a table behind
our back: DynamoDB's TTL process, and items written by the user's original code."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from lockcore.dynamodb import DynamoDBLockStore, from_wire, make_client
from lockcore.expressions import Item
from lockcore.memory import MemoryLockStore
from lockcore.record import KEY, LEGACY_TTL
from lockcore.store import Clock, LockStore
from workers.local.motoserver import LOCAL_CREDENTIALS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_tables = itertools.count()


class SimClock:
    """The simulations' clock: it only moves when a step moves it."""

    def __init__(self, start: float = 1_800_000_000) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.contextmanager
def moto_server_process() -> Iterator[str]:
    """A serialised moto server in a subprocess (its state is never shared with an in-process mock_aws)."""
    env = dict(os.environ, PYTHONPATH=ROOT, **LOCAL_CREDENTIALS)
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.local.motoserver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(f"moto server did not start: {line!r}")
    try:
        yield line.split()[1]
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def moto_behind(middleware: Callable[[WSGI], WSGI]) -> Iterator[str]:
    """moto served over HTTP through ``middleware``: a DynamoDB-compatible store that behaves differently."""
    server = make_server("127.0.0.1", 0, middleware(DomainDispatcherApplication(create_backend_app)), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def without_old_item(app: WSGI) -> WSGI:
    """Answers a refused write without the item, as a store without ReturnValuesOnConditionCheckFailure does."""

    def strip(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answered: list[Any] = []
        body = b"".join(app(environ, lambda status, headers, *_: answered.extend([status, headers])))
        if b"ConditionalCheckFailed" in body:
            answer = json.loads(body)
            answer.pop("Item", None)
            body = json.dumps(answer).encode()
        status, headers = answered
        # The body changed: its length and DynamoDB's CRC32 header no longer hold.
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "x-amz-crc32")]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return strip


def answering(error_type: str, message: str) -> Callable[[WSGI], WSGI]:
    """An endpoint that answers every request with DynamoDB's error ``error_type`` (HTTP 400)."""

    def middleware(app: WSGI) -> WSGI:
        def refuse(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0")])
            return [json.dumps({"__type": error_type, "message": message}).encode()]

        return refuse

    return middleware


throttling = answering("com.amazonaws.dynamodb.v20120810#ThrottlingException", "slow down")
denying = answering("com.amazon.coral.service#AccessDeniedException", "not allowed")


@dataclass
class StoreUnderTest:
    """A store plus the levers the world has on it."""

    name: str
    store: LockStore
    put_raw: Callable[[Item], None]
    ttl_sweep: Callable[[int], list[str]]
    read: Callable[[str], Item | None]
    close: Callable[[], None]


def memory_store(clock: Clock) -> StoreUnderTest:
    store = MemoryLockStore(clock)
    return StoreUnderTest("memory", store, store.put_raw, store.delete_expired_by_ttl, store._read, lambda: None)


def dynamodb_store(name: str, client: DynamoDBClient, clock: Clock) -> StoreUnderTest:
    """A fresh table on ``client``'s endpoint, dropped on ``close``."""
    table = f"locks-{os.getpid()}-{next(_tables)}"
    client.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    store = DynamoDBLockStore(table, client=client, clock=clock)

    def put_raw(item: Item) -> None:
        wire = {k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in item.items()}
        client.put_item(TableName=table, Item=wire)

    def ttl_sweep(now: int) -> list[str]:
        """DynamoDB's TTL process: delete whatever carries a `ttl` in the past (it may run at any time)."""
        deleted = []
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for wire in page.get("Items", []):
                item = from_wire(wire)
                ttl = item.get(LEGACY_TTL)
                if isinstance(ttl, int) and ttl < now:
                    client.delete_item(TableName=table, Key={KEY: {"S": str(item[KEY])}})
                    deleted.append(str(item[KEY]))
        return sorted(deleted)

    def close() -> None:
        client.delete_table(TableName=table)

    return StoreUnderTest(name, store, put_raw, ttl_sweep, store._read, close)


def client_for(url: str | None) -> DynamoDBClient:
    return make_client(url, region=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"])
