"""The long run: both simulations for a time budget, reporting how many schedules ran.

    nox -s soak                      # 20 minutes
    nox -s soak -- --minutes 5 --system-share 0.5 --moto-share 0.1

The budget is split three ways (by default): 40 % to the whole system over the twins
(:mod:`tests.system.test_whole_system`: router, workers, webhook, reaper under faults), 45 % to lockcore's
simulation on the in-memory store, where schedules are cheap, and 15 % to lockcore's lockstep run on memory + moto
in-process + a moto server over HTTP. Any counterexample stops the run, prints the shrunk schedule and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from moto import mock_aws

from lockcore.store import Clock
from tests.lockcore.simulation import LockSimulation, simulation_over
from tests.lockcore.stores import StoreUnderTest, client_for, dynamodb_store, memory_store, moto_server_process
from workers.local.motoserver import LOCAL_CREDENTIALS


def run_for(simulation: type[LockSimulation], seconds: float, batch: int, steps: int) -> int:
    _batches(simulation, seconds, batch, steps)
    return simulation.schedules_run


def run_system_for(seconds: float, batch: int = 200, steps: int = 60) -> int:
    """The whole-system state machine, batch after batch, until ``seconds`` have passed."""
    from tests.system import test_whole_system as system  # noqa: PLC0415 — its twins install themselves per run

    _batches(system.WholeSystem, seconds, batch, steps)
    return system.STEPS["examples"]


def _batches(machine: type[RuleBasedStateMachine], seconds: float, batch: int, steps: int) -> None:
    """``batch`` random schedules of up to ``steps`` steps at a time, until ``seconds`` have passed; a
    counterexample raises, shrunk and printed."""
    deadline = time.monotonic() + seconds
    soak = settings(
        max_examples=batch, stateful_step_count=steps, deadline=None, database=None,
        suppress_health_check=list(HealthCheck), print_blob=True,
    )  # fmt: skip
    while time.monotonic() < deadline:
        run_state_machine_as_test(machine, settings=soak)  # type: ignore[no-untyped-call,unused-ignore]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "20")))
    parser.add_argument("--moto-share", type=float, default=0.15, help="share of the time on the DynamoDB stores")
    parser.add_argument("--system-share", type=float, default=0.40, help="share of the time on the whole system")
    args = parser.parse_args(argv)
    budget = args.minutes * 60
    os.environ.update(LOCAL_CREDENTIALS)
    started = time.monotonic()

    system_count = run_system_for(budget * args.system_share)
    print(f"whole system over the twins: {system_count} schedules, every promise kept", flush=True)

    memory = simulation_over(memory_store, name="MemorySoak")
    memory_count = run_for(memory, budget * (1 - args.moto_share - args.system_share), batch=500, steps=50)
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
    print(f"soak: {system_count + memory_count + lockstep_count} schedules in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
