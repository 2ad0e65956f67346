"""Real threads racing one key over HTTP.

The server is a moto server whose DynamoDB requests are serialised (workers.local.motoserver): moto itself
is not atomic under concurrent requests — racing conditional UpdateItems on one key can both succeed there —
while DynamoDB performs every single-item write atomically. Serialising restores exactly that guarantee, so the
races below are decided by the store's atomicity, as in AWS, and the test checks our use of it, not moto's
thread-safety. The Hypothesis simulations cover the interleavings; this covers real sockets, threads and retries.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from lockcore import machine as m
from lockcore.dynamodb import DynamoDBLockStore
from lockcore.outcomes import Acquired, AcquireOutcome, HeldBySomeone, Queued, Released
from lockcore.record import Status
from tests.lockcore.stores import SimClock, client_for, dynamodb_store

THREADS = 32
ROUNDS = 50


def test_thirty_two_threads_race_one_key_and_exactly_one_wins_each_round(moto_server: str) -> None:
    under_test = dynamodb_store("moto-server", client_for(moto_server), SimClock())
    table = under_test.store
    assert isinstance(table, DynamoDBLockStore)
    # One client per thread, as separate Lambda invocations would have.
    stores = [DynamoDBLockStore(table.table, client=client_for(moto_server)) for _ in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        for round_ in range(ROUNDS):
            key = f"build-router-plt-{round_}"
            start = threading.Barrier(THREADS)

            def contend(i: int, key: str = key, start: threading.Barrier = start) -> AcquireOutcome:
                start.wait()
                return stores[i].acquire(m.AcquireRequest(key, f"req-{i}", 600, locked_by_name=f"user{i}"))

            outcomes = list(pool.map(contend, range(THREADS)))
            winners = [o for o in outcomes if isinstance(o, Acquired)]
            assert len(winners) == 1, f"round {round_}: {len(winners)} winners"
            winner = winners[0].record
            assert winner.token == 1
            told = [o.holder for o in outcomes if isinstance(o, HeldBySomeone)]
            assert len(told) == THREADS - 1
            assert {(h.owner, h.token) for h in told} == {(winner.owner, 1)}, "every loser was told the one holder"
    under_test.close()


QUEUERS = 16


def test_sixteen_threads_queue_for_one_key_and_are_handed_it_in_the_order_they_were_told(moto_server: str) -> None:
    """Racing joins are compare-and-set writes on one item: every thread ends up holding or in line, each at its
    own place, and the releases hand the lock down the line in exactly that order."""
    under_test = dynamodb_store("moto-server", client_for(moto_server), SimClock())
    table = under_test.store
    assert isinstance(table, DynamoDBLockStore)
    stores = [DynamoDBLockStore(table.table, client=client_for(moto_server)) for _ in range(QUEUERS)]
    key = "build-router-plt-queue"
    start = threading.Barrier(QUEUERS)

    def join(i: int) -> AcquireOutcome:
        start.wait()
        return stores[i].acquire(m.AcquireRequest(key, f"req-{i}", 600, queue=True))

    with ThreadPoolExecutor(QUEUERS) as pool:
        outcomes = list(pool.map(join, range(QUEUERS)))
    winners = [o.record.owner for o in outcomes if isinstance(o, Acquired)]
    queued = sorted((o.position, f"req-{i}") for i, o in enumerate(outcomes) if isinstance(o, Queued))
    assert len(winners) == 1 and [p for p, _ in queued] == list(range(1, QUEUERS))
    holder, token = winners[0], 1
    for _, expected in queued:
        released = table.release(key, holder, token, Status.COMPLETED)
        assert isinstance(released, Released) and released.handed_to is not None
        holder, token = released.handed_to.record.owner, released.handed_to.record.token
        assert holder == expected
    last = table.release(key, holder, token, Status.COMPLETED)
    assert isinstance(last, Released) and last.handed_to is None and token == QUEUERS
    under_test.close()
