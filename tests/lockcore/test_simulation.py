"""The simulation (tests/lockcore/simulation.py) over each store, and over all of them in lockstep."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from lockcore.store import Clock
from tests.lockcore.simulation import simulation_over
from tests.lockcore.stores import (
    StoreUnderTest,
    client_for,
    dynamodb_store,
    memory_store,
    moto_behind,
    without_old_item,
)


def test_memory_store_keeps_every_promise() -> None:
    simulation = simulation_over(memory_store, name="MemorySimulation")
    run_state_machine_as_test(simulation, settings=settings(stateful_step_count=60))  # type: ignore[no-untyped-call,unused-ignore]
    assert simulation.schedules_run > 0


@pytest.mark.usefixtures("in_process_aws")
def test_dynamodb_store_agrees_with_memory_step_by_step(moto_server: str) -> None:
    """The same schedule on memory, on moto in this process, and on a moto server over HTTP."""

    def in_process(clock: Clock) -> StoreUnderTest:
        return dynamodb_store("moto", client_for(None), clock)

    def over_http(clock: Clock) -> StoreUnderTest:
        return dynamodb_store("moto-server", client_for(moto_server), clock)

    simulation = simulation_over(memory_store, in_process, over_http, name="ThreeStoreSimulation")
    current = settings()
    run_state_machine_as_test(  # type: ignore[no-untyped-call,unused-ignore]
        simulation,
        settings=settings(current, max_examples=max(10, current.max_examples // 5), stateful_step_count=40),
    )
    assert simulation.schedules_run > 0


def test_a_store_that_never_returns_the_old_item_agrees_with_memory_step_by_step() -> None:
    """A DynamoDB-compatible store without ``ALL_OLD`` (dynalite, older DynamoDB Local): every schedule, every
    answer and every item the same as in memory — what a refusal leaves out is read, never guessed."""
    with moto_behind(without_old_item) as url:

        def stripped(clock: Clock) -> StoreUnderTest:
            return dynamodb_store("no-all-old", client_for(url), clock)

        simulation = simulation_over(memory_store, stripped, name="NoOldItemSimulation")
        current = settings()
        run_state_machine_as_test(  # type: ignore[no-untyped-call,unused-ignore]
            simulation,
            settings=settings(current, max_examples=max(10, current.max_examples // 5), stateful_step_count=40),
        )
    assert simulation.schedules_run > 0
