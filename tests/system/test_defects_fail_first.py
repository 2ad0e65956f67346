"""The simulation has teeth: each defect the workers' protocol issue named, put back, fails a schedule of the
whole-system simulation — and the same schedule keeps every promise with today's code.

A defect is put back as the smallest change that restores the code's old decision (a monkeypatch of our own
function, here and only here: this module tests the simulation, not the workers). Each schedule is the state
machine's own rules called in order, every invariant checked after each step and the settling checks at the end,
as :mod:`tests.system.test_regressions` runs them. Defects 3 and 7 of the issue, and those the simulation found
on its own, are kept there as the minimal schedules it shrank to.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from lockcore.record import LockRecord
from tests.system.test_regressions import run_schedule
from tests.system.test_whole_system import WholeSystem
from tests.system.twins import Fault
from workers.adapters.ledger import Ledger
from workers.flows import webhook
from workers.handlers import router
from workers.protocol import dispatch
from workers.protocol.config import Config
from workers.protocol.runs import RunFacts

Step = Callable[[WholeSystem], object]


@dataclass(frozen=True)
class Defect:
    number: int
    name: str
    put_back: Callable[[pytest.MonkeyPatch], None]
    schedule: tuple[Step, ...]
    broken: str
    """What the simulation says when the defect is back (a regular expression on its assertion)."""


def _each_delivery_its_own_correlation_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: each HTTP delivery drew a fresh correlation id, and a delivery re-entering its request's lock looked
    for (and dispatched) the run by its own id, not the one on the lock."""
    monkeypatch.setattr(router, "correlation_id_of", lambda request_id: str(uuid.uuid4()))
    monkeypatch.setattr(dispatch.Job, "holding", lambda self, held: self)


def _titles_are_authority(monkeypatch: pytest.MonkeyPatch) -> None:
    def trusting(run: RunFacts, record: LockRecord | None, config: Config) -> str | None:
        if record is None:
            return "no lock"
        return None if record.correlation_id == run.correlation_id else "another request's lock"

    monkeypatch.setattr(webhook, "not_this_runs_lock", trusting)


def _json_read_unbounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "read_json", json.loads)


def _a_store_failure_before_the_dispatch_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def forgets(self: Ledger, *_: Any) -> None:
        return None

    monkeypatch.setattr(dispatch, "gives_up", lambda obstacle: True)
    monkeypatch.setattr(Ledger, "end", forgets)
    monkeypatch.setattr(Ledger, "ended", forgets)


def _first(m: WholeSystem) -> object:
    return next(iter(m.world.requests.values()))


DEFECTS = (
    Defect(
        1,
        "two runs for one request",
        _each_delivery_its_own_correlation_id,
        (
            lambda m: m.someone_types_a_command_first(user="U0BOB", command=("/build", "router plt")),
            lambda m: m.the_next_call_goes_wrong(call="idempotency.write", fault=Fault.LOST),
            lambda m: m.time_passes(seconds=60),
            lambda m: m.the_next_call_goes_wrong(call="github.dispatch", fault=Fault.CRASH_AFTER),
            lambda m: m.the_same_request_reaches_the_router_again(request=_first(m)),
            lambda m: m.time_passes(seconds=60),
            lambda m: m.github_moves_a_run_along(pick=0, conclusion="failure"),
            lambda m: m.github_moves_a_run_along(pick=0, conclusion="cancelled"),
            lambda m: m.time_passes(seconds=240),
        ),
        broken=r"started runs \[\d+, \d+\]",
    ),
    Defect(
        2,
        "a run's name is trusted from anyone",
        _titles_are_authority,
        (
            lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
            lambda m: m.sqs_delivers_messages(picks=[0]),
            lambda m: m.someone_runs_a_workflow_titled_like_ours(
                request=_first(m), how="pull_request", conclusion="success"
            ),
            lambda m: m.time_passes(seconds=60),
        ),
        broken="never reached the channel",
    ),
    Defect(
        5,
        "500 on a valid signature",
        _json_read_unbounded,
        (
            lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
            lambda m: m.someone_sends_a_signed_body_nested_deep(path="/slack/interactions", depth=50_000),
        ),
        broken="'statusCode': 500",
    ),
    Defect(
        6,
        "told the opposite of what happened",
        _a_store_failure_before_the_dispatch_gives_up,
        (
            lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
            lambda m: m.world.faults.plan("store.write", Fault.FAIL, after=1),  # the `dispatching` note
            # and Powertools' record of the result, written after the handler returned: the message comes back
            lambda m: m.world.faults.plan("idempotency.write", Fault.FAIL, after=1),
            lambda m: m.sqs_delivers_messages(picks=[0]),
            lambda m: m.time_passes(seconds=700),
        ),
        broken="was told it could not start, and run",
    ),
)


@pytest.mark.parametrize("defect", DEFECTS, ids=lambda d: f"defect-{d.number}")
def test_the_schedule_keeps_every_promise_today(defect: Defect) -> None:
    run_schedule(*defect.schedule)


@pytest.mark.parametrize("defect", DEFECTS, ids=lambda d: f"defect-{d.number}")
def test_the_schedule_fails_with_the_defect_put_back(defect: Defect, monkeypatch: pytest.MonkeyPatch) -> None:
    defect.put_back(monkeypatch)
    with pytest.raises(AssertionError, match=defect.broken):
        run_schedule(*defect.schedule)
