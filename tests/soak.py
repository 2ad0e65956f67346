"""The long run: the lock simulations for a time budget, reporting how many schedules ran.

    nox -s soak                      # 20 minutes
    nox -s soak -- --minutes 5 --moto-share 0.3

Three quarters of the budget (by default) goes to the in-memory store, where schedules are cheap; the rest to the
lockstep run on memory + moto in-process + a moto server over HTTP. Any counterexample stops the run, prints the
shrunk schedule and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from moto import mock_aws

from lockcore.store import Clock
from tests.lockcore.simulation import LockSimulation, simulation_over
from tests.lockcore.stores import StoreUnderTest, client_for, dynamodb_store, memory_store, moto_server_process
from workers.local.motoserver import LOCAL_CREDENTIALS


def run_for(simulation: type[LockSimulation], seconds: float, batch: int, steps: int) -> int:
    deadline = time.monotonic() + seconds
    soak = settings(
        max_examples=batch, stateful_step_count=steps, deadline=None, database=None,
        suppress_health_check=list(HealthCheck), print_blob=True,
    )  # fmt: skip
    while time.monotonic() < deadline:
        run_state_machine_as_test(simulation, settings=soak)  # type: ignore[no-untyped-call,unused-ignore]
    return simulation.schedules_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "20")))
    parser.add_argument("--moto-share", type=float, default=0.25, help="share of the time on the DynamoDB stores")
    args = parser.parse_args(argv)
    budget = args.minutes * 60
    os.environ.update(LOCAL_CREDENTIALS)
    started = time.monotonic()

    memory = simulation_over(memory_store, name="MemorySoak")
    memory_count = run_for(memory, budget * (1 - args.moto_share), batch=500, steps=50)
    print(f"in-memory store: {memory_count} schedules, every promise kept", flush=True)

    with mock_aws(), moto_server_process() as url:

        def in_process(clock: Clock) -> StoreUnderTest:
            return dynamodb_store("moto", client_for(None), clock)

        def over_http(clock: Clock) -> StoreUnderTest:
            return dynamodb_store("moto-server", client_for(url), clock)

        factories: tuple[Callable[[Clock], StoreUnderTest], ...] = (memory_store, in_process, over_http)
        lockstep = simulation_over(*factories, name="ThreeStoreSoak")
        lockstep_count = run_for(lockstep, budget * args.moto_share, batch=50, steps=40)
    print(f"memory + moto + moto server in lockstep: {lockstep_count} schedules, all agreed", flush=True)
    print(f"soak: {memory_count + lockstep_count} schedules in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
