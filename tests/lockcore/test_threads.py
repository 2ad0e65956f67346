"""Real threads racing one key over HTTP.

The server is a moto server whose DynamoDB requests are serialised (workers.localstack.motoserver): moto itself
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

            def contend(i: int, key: str = key, start: threading.Barrier = start) -> m.AcquireOutcome:
                start.wait()
                return stores[i].acquire(m.AcquireRequest(key, f"req-{i}", 600, locked_by_name=f"user{i}"))

            outcomes = list(pool.map(contend, range(THREADS)))
            winners = [o for o in outcomes if isinstance(o, m.Acquired)]
            assert len(winners) == 1, f"round {round_}: {len(winners)} winners"
            winner = winners[0].record
            assert winner.token == 1
            told = [o.holder for o in outcomes if isinstance(o, m.HeldBySomeone)]
            assert len(told) == THREADS - 1
            assert {(h.owner, h.token) for h in told} == {(winner.owner, 1)}, "every loser was told the one holder"
    under_test.close()
