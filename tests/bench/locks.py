"""The lock benchmark (`nox -s bench`): DynamoDB requests per lock operation, contended acquires against raw
conditional PutItems, and the in-memory store's acquire/release rate. Prints a markdown table for docs/benchmarks.md.

Not a test: nothing here is timed against a limit. It does check what it measures — each operation's outcome is
the one being counted, the client-side request count equals the server's, every contention round has exactly one
winner for both methods — and exits 1 if any of that fails, because a benchmark of a wrong result is worthless.

Requests are counted from botocore's ``before-send.dynamodb.*`` events, which fire once per HTTP attempt, so
retries are counted too. The server is :class:`~workers.local.motoserver.LocalAWS`: moto on loopback in this
process, one DynamoDB request at a time, like the atomic single-item writes of DynamoDB itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

import botocore.exceptions

from lockcore import machine as m
from lockcore.dynamodb import DynamoDBLockStore, make_client
from lockcore.memory import MemoryLockStore
from lockcore.outcomes import (
    Acquired,
    Dequeued,
    Extended,
    ForceReleased,
    HeldBySomeone,
    MarkedExpired,
    Noted,
    Queued,
    Released,
    Watching,
)
from lockcore.record import KEY, LockRecord, Status
from tests.bench.report import Result, expect, machine_line, run
from workers.local.motoserver import LOCAL_CREDENTIALS, LocalAWS, use_local_credentials

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, WriteRequestTypeDef

T = TypeVar("T")

LEASE_SECONDS = 300
DEFAULT_LIST_KEYS = (3, 250)
"""DynamoDB (and moto) return at most 1 MB per Scan page. A lock item is ~0.2 KB, so `list` pages only beyond some
5,000 keys; moto needs seconds per thousand items there (``--list-keys 6000`` shows it, slowly)."""
PAGE_BYTES = 1024 * 1024
MEMORY_SECONDS = 0.5


# ------------------------------------------------------------------------------------------ counting requests
@dataclass(frozen=True)
class Sent:
    requests: int
    """HTTP attempts botocore sent (``before-send``), retries included."""
    calls: tuple[str, ...]
    """The DynamoDB operation of each attempt, in order."""
    served: int
    """DynamoDB requests the server answered in the same window."""
    server_seconds: float
    """Time the server spent answering them."""


class RequestCounter:
    """Counts every DynamoDB request the clients it is attached to send, one per HTTP attempt; and how long the
    server spent answering (inside its one-at-a-time section, so the sum is time the server was busy)."""

    def __init__(self, server: LocalAWS) -> None:
        self._server = server
        self._mutex = threading.Lock()
        self._calls: list[str] = []
        self.server_busy = 0.0
        inner = server.app._app

        def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            start = time.perf_counter()
            try:
                return list(inner(environ, start_response))
            finally:
                # The bench sends only DynamoDB requests, which the server runs one at a time.
                self.server_busy += time.perf_counter() - start

        server.app._app = timed

    def attach(self, client: DynamoDBClient) -> DynamoDBClient:
        client.meta.events.register("before-send.dynamodb", self._sent, unique_id=f"bench-counter-{id(self)}")
        return client

    def _sent(self, event_name: str = "", **_: Any) -> None:
        # Returning None lets the request go; the last part of the event name is the operation.
        with self._mutex:
            self._calls.append(event_name.rsplit(".", 1)[-1])

    def mark(self) -> tuple[int, int, float]:
        with self._mutex:
            return len(self._calls), self._server.app.dynamodb_requests, self.server_busy

    def since(self, mark: tuple[int, int, float]) -> Sent:
        with self._mutex:
            calls = tuple(self._calls[mark[0] :])
            served = self._server.app.dynamodb_requests - mark[1]
            return Sent(len(calls), calls, served, self.server_busy - mark[2])

    def measure(self, action: Callable[[], T]) -> tuple[T, Sent]:
        mark = self.mark()
        result = action()
        return result, self.since(mark)


def summarise(calls: Iterable[str]) -> str:
    counts = Counter(calls)
    return " + ".join(name if n == 1 else f"{name} x{n}" for name, n in counts.items())


# ------------------------------------------------------------------------------------------ requests per operation
class Clock:
    """A clock the benchmark moves, so that a lease can end without waiting."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def new_table(client: DynamoDBClient, name: str, clock: Clock | None = None) -> DynamoDBLockStore:
    store = DynamoDBLockStore(name, client=client, clock=clock)
    store.create_table()
    return store


def request(key: str, owner: str, lease: int = LEASE_SECONDS) -> m.AcquireRequest:
    return m.AcquireRequest(
        key, owner, lease, locked_by=f"U{owner.upper()}", locked_by_name=owner, component="router", environment="plt"
    )


def per_operation(client: DynamoDBClient, counter: RequestCounter, list_keys: Iterable[int]) -> Result:
    """Each operation once, on the path named, counting the requests it sends; and the size of a lock item,
    which decides how many keys one Scan page (1 MB) holds."""
    clock = Clock()
    store = new_table(client, "bench-operations", clock)
    rows: list[Result] = []

    def count(operation: str, action: Callable[[], T], check: Callable[[T], bool], outcome: str) -> T:
        result, sent = counter.measure(action)
        expect(check(result), f"{operation}: expected {outcome}, got {result!r}")
        expect(
            sent.requests == sent.served,
            f"{operation}: botocore sent {sent.requests} DynamoDB requests but the server answered {sent.served}",
        )
        rows.append({"operation": operation, "requests": sent.requests, "calls": summarise(sent.calls),
                     "outcome": outcome})  # fmt: skip
        return result

    key = "build-router-plt"
    won = count(
        "acquire-win",
        lambda: store.acquire(request(key, "alice")),
        lambda o: isinstance(o, Acquired) and not o.reentered,
        "Acquired",
    )
    assert isinstance(won, Acquired)
    token = won.token
    count(
        "acquire-lose",
        lambda: store.acquire(request(key, "bob")),
        lambda o: isinstance(o, HeldBySomeone) and o.holder.owner == "alice",
        "HeldBySomeone (holder from ALL_OLD)",
    )
    count(
        "acquire-reentered",
        lambda: store.acquire(request(key, "alice")),
        lambda o: isinstance(o, Acquired) and o.reentered and o.token == token,
        "Acquired (reentered)",
    )
    count("check", lambda: store.check(key, token), lambda held: held is True, "True")
    count(
        "extend",
        lambda: store.extend(key, "alice", token, LEASE_SECONDS),
        lambda o: isinstance(o, Extended),
        "Extended",
    )
    count(
        "note",
        lambda: store.note(key, "alice", token, runId="4242"),
        lambda o: isinstance(o, Noted),
        "Noted",
    )
    count(
        "release",
        lambda: store.release(key, "alice", token, Status.COMPLETED),
        lambda o: isinstance(o, Released) and not o.repeated,
        "Released",
    )
    count(
        "release-repeated",
        lambda: store.release(key, "alice", token, Status.COMPLETED),
        lambda o: isinstance(o, Released) and o.repeated,
        "Released (repeated)",
    )
    again = store.acquire(request(key, "bob"))
    expect(isinstance(again, Acquired) and again.token == token + 1, f"acquire after release: {again!r}")
    count(
        "force-release",
        lambda: store.force_release(key, token + 1, "admin", "stuck build"),
        lambda o: isinstance(o, ForceReleased) and not o.repeated,
        "ForceReleased",
    )
    lapsing = store.acquire(request(key, "carol", lease=60))
    expect(isinstance(lapsing, Acquired), f"acquire after force-release: {lapsing!r}")
    clock.now += 120
    count(
        "expire",
        lambda: store.expire(key, token + 2),
        lambda o: isinstance(o, MarkedExpired),
        "MarkedExpired",
    )

    queued_operations(store, count)

    size = 0
    for n in list_keys:
        listed = new_table(client, f"bench-list-{n}")
        size = fill(listed, n)

        def all_listed(records: list[LockRecord], n: int = n) -> bool:
            return len(records) == n

        count(f"list ({n} keys)", listed.list, all_listed, f"{n} records")
    return {"operations": rows, "item_bytes": size, "keys_per_scan_page": PAGE_BYTES // size if size else None}


def queued_operations(store: DynamoDBLockStore, count: Callable[..., Any]) -> None:
    """The queue's operations: where a queue or watchers exist, a write decided blind is refused and decided again
    from the item it returns; one decided from the caller's read of the lock is one request."""
    key = "build-api-plt"
    held = store.acquire(request(key, "alice"))
    expect(isinstance(held, Acquired), f"acquire on {key}: {held!r}")
    count(
        "acquire-join (--queue)",
        lambda: store.acquire(replace(request(key, "bob"), queue=True, coalesce="build|api|plt|main")),
        lambda o: isinstance(o, Queued) and o.position == 1 and not o.coalesced,
        "Queued (position 1)",
    )
    count(
        "acquire-coalesce (--queue)",
        lambda: store.acquire(replace(request(key, "carol"), queue=True, coalesce="build|api|plt|main")),
        lambda o: isinstance(o, Queued) and o.coalesced,
        "Queued (coalesced)",
    )
    count(
        "dequeue",
        lambda: store.dequeue(key, "carol"),
        lambda o: isinstance(o, Dequeued) and o.position == 1,
        "Dequeued",
    )
    count("watch", lambda: store.watch(key, "U0DAVE"), lambda o: isinstance(o, Watching), "Watching")
    count(
        "release (hand-off, blind)",
        lambda: store.release(key, "alice", 1, Status.COMPLETED),
        lambda o: isinstance(o, Released) and o.handed_to is not None,
        "Released, handed to bob",
    )
    store.acquire(replace(request(key, "erin"), queue=True))
    read = store.get(key)
    count(
        "release (hand-off, from a read)",
        lambda: store.release(key, "bob", 2, Status.COMPLETED, seen=read),
        lambda o: isinstance(o, Released) and o.handed_to is not None and o.handed_to.entry.owner == "erin",
        "Released, handed to erin",
    )
    read = store.get(key)
    count(
        "release (watchers told, from a read)",
        lambda: store.release(key, "erin", 3, Status.COMPLETED, seen=read),
        lambda o: isinstance(o, Released) and o.notify == ("U0DAVE",),
        "Released, watchers named",
    )


def item_bytes(item: dict[str, AttributeValueTypeDef]) -> int:
    """An item's size as DynamoDB counts it: names and values in UTF-8; a number ~1 byte per 2 digits, plus 1."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        elif "N" in value:
            size += len(value["N"].lstrip("-").replace(".", "")) // 2 + 2
        else:
            size += len(json.dumps(value))  # not in a lock item; a rough figure
    return size


def fill(store: DynamoDBLockStore, n: int) -> int:
    """``n`` live locks: the first through the store, the rest its copy under other keys (BatchWriteItem, so
    that a large table fills quickly), so every item has the size of a real one. Answers that size in bytes."""
    first = store.acquire(request("lock-00000", "owner-00000"))
    expect(isinstance(first, Acquired), f"fill: {first!r}")
    template = store.client.get_item(TableName=store.table, Key={KEY: {"S": "lock-00000"}}, ConsistentRead=True)
    item = template["Item"]
    pending: list[WriteRequestTypeDef] = []
    for i in range(1, n):
        copy: dict[str, AttributeValueTypeDef] = {**item, KEY: {"S": f"lock-{i:05d}"}, "owner": {"S": f"owner-{i:05d}"}}
        pending.append({"PutRequest": {"Item": copy}})
    while pending:
        batch, pending = pending[:25], pending[25:]
        answer = store.client.batch_write_item(RequestItems={store.table: batch})
        unprocessed = answer.get("UnprocessedItems", {}).get(store.table, [])
        pending = [cast("WriteRequestTypeDef", again) for again in unprocessed] + pending
    return item_bytes(item)


# ------------------------------------------------------------------------------------------ contention
@dataclass(frozen=True)
class Race:
    wall: float
    """Seconds from the first contender's start to the last one's answer."""
    results: list[object]
    sent: Sent


def race(counter: RequestCounter, contenders: int, attempt: Callable[[int], object]) -> Race:
    """``contenders`` threads, released together by a barrier, each making one attempt."""
    barrier = threading.Barrier(contenders)
    starts = [0.0] * contenders
    ends = [0.0] * contenders
    results: list[object] = [None] * contenders

    def run(i: int) -> None:
        barrier.wait()
        starts[i] = time.perf_counter()
        try:
            results[i] = attempt(i)
        except Exception as error:  # the round is checked below; an error is a wrong result
            results[i] = error
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=run, args=(i,), name=f"contender-{i}") for i in range(contenders)]
    mark = counter.mark()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Race(max(ends) - min(starts), results, counter.since(mark))


def owner_of(client: DynamoDBClient, table: str, key: str) -> str | None:
    item = client.get_item(TableName=table, Key={KEY: {"S": key}}, ConsistentRead=True).get("Item")
    return item["owner"]["S"] if item else None


def check_lockcore_round(name: str, outcome: Race, stored_owner: str | None) -> None:
    errors = [r for r in outcome.results if isinstance(r, BaseException)]
    expect(not errors, f"{name}: {len(errors)} contenders failed, first: {errors[:1]!r}")
    winners = [r for r in outcome.results if isinstance(r, Acquired)]
    losers = [r for r in outcome.results if isinstance(r, HeldBySomeone)]
    expect(len(winners) == 1, f"{name}: {len(winners)} winners")
    winner = winners[0]
    expect(not winner.reentered and winner.token == 1, f"{name}: the winner is {winner!r}")
    expect(len(losers) == len(outcome.results) - 1, f"{name}: {len(losers)} losers of {len(outcome.results)}")
    expect(all(lost.holder.owner == winner.record.owner for lost in losers), f"{name}: a loser saw another holder")
    expect(stored_owner == winner.record.owner, f"{name}: the table says {stored_owner}, the winner {winner!r}")


def check_raw_round(name: str, outcome: Race, stored_owner: str | None) -> None:
    errors = [r for r in outcome.results if isinstance(r, BaseException)]
    expect(not errors, f"{name}: {len(errors)} contenders failed, first: {errors[:1]!r}")
    winners = [i for i, r in enumerate(outcome.results) if r is True]
    losers = [r for r in outcome.results if r is False]
    expect(len(winners) == 1, f"{name}: {len(winners)} winners")
    expect(len(losers) == len(outcome.results) - 1, f"{name}: {len(losers)} losers of {len(outcome.results)}")
    expect(stored_owner == f"contender-{winners[0]}", f"{name}: the table says {stored_owner}")


def contention(url: str, counter: RequestCounter, contenders: int, rounds: int) -> Result:
    table = "bench-contention"
    clients = [counter.attach(client_for(url)) for _ in range(contenders)]
    stores = [DynamoDBLockStore(table, client=client) for client in clients]
    stores[0].create_table()
    attributes = request("", "x")
    epoch = int(time.time())

    def lockcore_attempt(key: str) -> Callable[[int], object]:
        return lambda i: stores[i].acquire(request(key, f"contender-{i}"))

    def raw_attempt(key: str) -> Callable[[int], object]:
        def attempt(i: int) -> bool:
            try:
                clients[i].put_item(
                    TableName=table,
                    Item={
                        KEY: {"S": key},
                        "owner": {"S": f"contender-{i}"},
                        "status": {"S": Status.IN_PROGRESS.value},
                        "lockedBy": {"S": attributes.locked_by},
                        "lockedByName": {"S": attributes.locked_by_name},
                        "lockedAt": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))},
                        "leaseExpiresAt": {"N": str(epoch + LEASE_SECONDS)},
                        "component": {"S": attributes.component},
                        "environment": {"S": attributes.environment},
                    },
                    ConditionExpression="attribute_not_exists(lockKey)",
                )
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    return False
                raise
            return True

        return attempt

    methods: dict[str, tuple[Callable[[str], Callable[[int], object]], Callable[[str, Race, str | None], None]]] = {
        "lockcore": (lockcore_attempt, check_lockcore_round),
        "raw": (raw_attempt, check_raw_round),
    }
    walls: dict[str, list[float]] = {name: [] for name in methods}
    requests: dict[str, list[int]] = {name: [] for name in methods}
    busy: dict[str, list[float]] = {name: [] for name in methods}
    # Round 0 warms every client (connection, operation models) for both methods and is not reported.
    for round_ in range(rounds + 1):
        # Alternate which method goes first, so neither always runs on a warmer (or more tired) process.
        order = list(methods) if round_ % 2 == 0 else list(reversed(methods))
        for name in order:
            make_attempt, check = methods[name]
            key = f"contended-{name}-{round_}"
            outcome = race(counter, contenders, make_attempt(key))
            check(f"{name} round {round_}", outcome, owner_of(clients[0], table, key))
            if round_ > 0:
                walls[name].append(outcome.wall)
                requests[name].append(outcome.sent.requests)
                busy[name].append(outcome.sent.server_seconds)
    return {
        "contenders": contenders,
        "rounds": rounds,
        "clients": "one client per contender (lockcore's `make_client`: standard retries, 5 attempts), created "
        "before the rounds and used by both methods",
        "methods": {
            name: {
                "median_ms": statistics.median(walls[name]) * 1000,
                "min_ms": min(walls[name]) * 1000,
                "max_ms": max(walls[name]) * 1000,
                "wall_ms": [wall * 1000 for wall in walls[name]],
                "requests_per_round": requests[name],
                "server_busy_median_ms": statistics.median(busy[name]) * 1000,
                "winners_per_round": 1,
            }
            for name in methods
        },
        "ratio": statistics.median(walls["lockcore"]) / statistics.median(walls["raw"]),
    }


# ------------------------------------------------------------------------------------------ in memory
def memory_throughput(seconds: float = MEMORY_SECONDS, repeats: int = 5) -> Result:
    """Acquire + release cycles on one key, one thread; the median of ``repeats`` timed slices."""
    store = MemoryLockStore()
    acquire = request("build-router-plt", "alice")
    rates: list[float] = []
    for _ in range(repeats):
        cycles = 0
        start = time.perf_counter()
        deadline = start + seconds / repeats
        while True:
            for _ in range(100):
                won = store.acquire(acquire)
                expect(isinstance(won, Acquired) and not won.reentered, f"memory acquire: {won!r}")
                assert isinstance(won, Acquired)
                released = store.release(acquire.lock_key, acquire.owner, won.token, Status.COMPLETED)
                expect(isinstance(released, Released), f"memory release: {released!r}")
            cycles += 100
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(cycles / (now - start))
    rate = statistics.median(rates)
    return {"cycles_per_second": rate, "us_per_cycle": 1e6 / rate, "repeats": repeats}


# ------------------------------------------------------------------------------------------ report
def client_for(url: str) -> DynamoDBClient:
    return make_client(url, region=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"])


def markdown(result: Result) -> str:
    lines = [
        "**DynamoDB requests per lock operation** (HTTP attempts counted from botocore `before-send` events, "
        "retries included; equal to the requests the server answered)",
        "",
        "| operation | requests | DynamoDB calls | outcome |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {r['operation']} | {r['requests']} | {r['calls']} | {r['outcome']} |" for r in result["operations"]]
    if result["keys_per_scan_page"]:
        lines += [
            "",
            f"`list` is one consistent Scan per 1 MB page: a lock item is ~{result['item_bytes']} bytes, so one page "
            f"holds ~{result['keys_per_scan_page']:,} keys and `list` costs about ceil(keys / "
            f"{result['keys_per_scan_page']:,}) requests.",
        ]
    race_ = result["contention"]
    lockcore, raw = race_["methods"]["lockcore"], race_["methods"]["raw"]
    lines += [
        "",
        f"**{race_['contenders']} contenders on one key**, released together by a barrier, against the serialised "
        f"moto server (LocalAWS, in this process); {race_['clients']}; median of {race_['rounds']} rounds, "
        "a fresh key each round, exactly one winner in every round for both methods",
        "",
        "| method | median wall (ms) | min (ms) | max (ms) | requests per round | server busy (ms, median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in (
        ("lockcore `store.acquire` (conditional UpdateItem, ALL_NEW / ALL_OLD)", lockcore),
        ("raw boto3 `put_item` + `attribute_not_exists(lockKey)`", raw),
    ):
        per_round = sorted(set(row["requests_per_round"]))
        lines.append(
            f"| {label} | {row['median_ms']:.1f} | {row['min_ms']:.1f} | {row['max_ms']:.1f} | "
            f"{', '.join(str(n) for n in per_round)} | {row['server_busy_median_ms']:.1f} |"
        )
    lines.append(f"| **ratio lockcore / raw** (medians, same run) | **{race_['ratio']:.2f}x** | | | | |")
    memory = result["memory"]
    lines += [
        "",
        "| in-memory store | acquire + release cycles/s | µs per cycle |",
        "|---|---:|---:|",
        f"| `MemoryLockStore`, one thread, median of {memory['repeats']} | {memory['cycles_per_second']:,.0f} | "
        f"{memory['us_per_cycle']:.1f} |",
        "",
        machine_line(result),
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.locks", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="contention rounds, a fresh key each (default 5)")
    parser.add_argument("--contenders", type=int, default=64, help="threads racing for one key (default 64)")
    parser.add_argument(
        "--list-keys",
        default=",".join(str(n) for n in DEFAULT_LIST_KEYS),
        help=f"table sizes for `list`, comma-separated (default {','.join(map(str, DEFAULT_LIST_KEYS))}); "
        "moto scans slowly: a few thousand keys take seconds",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of markdown")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.contenders < 2:
        parser.error("at least 1 round and 2 contenders")
    try:
        args.list_keys = [int(n) for n in args.list_keys.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--list-keys: not a list of numbers: {args.list_keys!r}")
    if any(n < 1 for n in args.list_keys):
        parser.error("--list-keys: each size at least 1")
    return args


def main(argv: list[str] | None = None) -> Result:
    """Run the benchmark, print it, and return the results; exits 1 if anything measured went wrong."""
    args = parse(argv)
    use_local_credentials()

    def measure() -> Result:
        with LocalAWS() as server:
            counter = RequestCounter(server)
            client = counter.attach(client_for(server.url))
            result: Result = per_operation(client, counter, args.list_keys)
            result["contention"] = contention(server.url, counter, args.contenders, args.rounds)
        result["memory"] = memory_throughput()
        return result

    return run(measure, markdown, as_json=args.json)


if __name__ == "__main__":
    main()
