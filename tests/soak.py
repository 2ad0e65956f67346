"""The long run: every simulation for a time budget, reporting how many schedules ran.

    nox -s soak                      # 20 minutes
    nox -s soak -- --minutes 5 --system-share 0.5 --moto-share 0.1 --features-share 0.1

The budget is split four ways (by default): 40 % to the whole system over the twins
(:mod:`tests.system.test_whole_system`: router, workers, webhook, reaper under faults), 35 % to lockcore's
simulation on the in-memory store, where schedules are cheap, 15 % to lockcore's lockstep run on memory + moto
in-process + a moto server over HTTP, and 10 % to the focused simulations of the App Home's refreshes
(:mod:`tests.system.test_home_refresh`) and of freeze windows' sweeps (:mod:`tests.workers.test_window_sweeps`),
half each. Any counterexample stops the run, prints the shrunk schedule and exits 1.
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


def run_counted_for(machine: type[RuleBasedStateMachine], seconds: float, batch: int, steps: int) -> int:
    """``machine``'s schedules, batch after batch, until ``seconds`` have passed: how many ran to the end."""

    class Counted(machine):  # type: ignore[valid-type,misc]
        finished = 0

        def teardown(self) -> None:
            super().teardown()
            Counted.finished += 1

    Counted.__name__ = machine.__name__
    _batches(Counted, seconds, batch, steps)
    return Counted.finished


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
    parser.add_argument(
        "--features-share", type=float, default=0.10, help="share of the time on the App Home's and windows' own"
    )
    args = parser.parse_args(argv)
    budget = args.minutes * 60
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # the workers under simulation print no EMF lines
    started = time.monotonic()

    system_count = run_system_for(budget * args.system_share)
    print(f"whole system over the twins: {system_count} schedules, every promise kept", flush=True)

    memory = simulation_over(memory_store, name="MemorySoak")
    memory_share = 1 - args.moto_share - args.system_share - args.features_share
    memory_count = run_for(memory, budget * memory_share, batch=500, steps=50)
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

    from tests.system.test_home_refresh import HomeRefreshes  # noqa: PLC0415 — as the whole system's, per run
    from tests.workers.test_window_sweeps import WindowSweeps  # noqa: PLC0415

    half = budget * args.features_share / 2
    home_count = run_counted_for(HomeRefreshes, half, batch=100, steps=40)
    print(f"App Home refreshes: {home_count} schedules, none lost, at most one pending", flush=True)
    windows_count = run_counted_for(WindowSweeps, half, batch=100, steps=40)
    print(f"freeze windows' sweeps: {windows_count} schedules, every rule kept", flush=True)
    total = system_count + memory_count + lockstep_count + home_count + windows_count
    print(f"soak: {total} schedules in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
