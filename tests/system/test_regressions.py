"""Each defect the whole-system simulation found, kept as the minimal schedule it shrank to.

A schedule here is the state machine's own rules called in order, with every invariant checked after each step and
the settling checks at the end — exactly as Hypothesis ran it when it failed.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.system.test_whole_system import WholeSystem
from tests.system.twins import Fault


def run_schedule(*steps: Callable[[WholeSystem], object]) -> None:
    machine = WholeSystem()
    try:
        for step in steps:
            step(machine)
            machine.every_promise_holds()
    finally:
        machine.teardown()


def test_a_dispatch_whose_answer_is_lost_and_whose_run_is_listed_late_is_not_called_failed() -> None:
    """GitHub created the run, answered 502, and listed it 30 s later: the worker may not tell "couldn't start"."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.github_lists_new_runs_after(seconds=30),
        lambda m: m.the_next_call_goes_wrong(call="github.dispatch", fault=Fault.LOST),
        lambda m: m.sqs_delivers_messages(picks=[0]),
    )


def test_a_release_whose_answer_is_lost_still_reports_the_run_in_the_channel() -> None:
    """Defect 3: the webhook worker's release takes effect, its answer is lost; the retry must still tell."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.github_delivers_a_webhook(pick=0, duplicate=False),
        lambda m: m.the_next_call_goes_wrong(call="store.write", fault=Fault.LOST),
        lambda m: m.sqs_delivers_messages(picks=[0]),
    )
