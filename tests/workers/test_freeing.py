"""What a freeing write tells (:mod:`workers.protocol.freeing`): a repeat of the write — its first answer lost —
tells what the first answer would have, whatever the queue, the watchers and the kind of write."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockcore import machine as m
from lockcore import outcomes
from lockcore.memory import MemoryLockStore
from lockcore.record import LockRecord, Status
from tests.system.twins import Fault, Faults, LedgerTwin, SlackTwin
from tests.workers.worker_world import SHIPPED_CONFIG
from workers.adapters import runtime
from workers.flows import handoff
from workers.flows.runlock import ExpiryCause, RunReport, expired_text, result_text
from workers.protocol.config import load_config
from workers.protocol.dispatch import DISPATCHING, dispatched_notes
from workers.protocol.freeing import as_let_go, news_of, released_by_this_run, runs_under, told_key

KEY = "build-router-plt"
NOW = 1_800_000_000


@dataclass
class Fixed:
    """A clock that does not move between a write and its repeat (unless set): what differs is only the answer."""

    at: float

    def __call__(self) -> float:
        return self.at


def taken(store: MemoryLockStore, waiting: int, watchers: int) -> LockRecord:
    """alice's build holds the lock, with its run noted; ``waiting`` queued behind it, ``watchers`` watching."""
    asked = m.AcquireRequest(KEY, "req-alice", 600, "U0ALICE", "alice", "router", "plt", correlation_id="cid-a")
    held = store.acquire(asked)
    assert isinstance(held, outcomes.Acquired)
    store.note(KEY, "req-alice", held.record.token, channelId="C0BUILDS", runId="7", runUrl="https://x/runs/7")
    for n in range(waiting):
        queued = m.AcquireRequest(KEY, f"req-{n}", 600, f"U0Q{n}", f"q{n}", "router", "plt", queue=True)
        assert isinstance(store.acquire(queued), outcomes.Queued)
    for n in range(watchers):
        store.watch(KEY, f"U0W{n}")
    record = store.get(KEY)
    assert record is not None
    return record


def free(store: MemoryLockStore, kind: str, read: LockRecord) -> outcomes.Freed:
    match kind:
        case "release":
            outcome: object = store.release(KEY, read.owner, read.token, Status.FAILED, seen=read)
        case "force-release":
            outcome = store.force_release(KEY, read.token, by="U0ADMIN", reason="force unlock", seen=read)
        case _:
            outcome = store.expire(KEY, read.token, seen=read)
    assert isinstance(outcome, outcomes.Freed), outcome
    return outcome


def news(record: LockRecord, kind: str) -> str:
    if kind == "expire":
        return expired_text(record, ExpiryCause.RUN_GONE, NOW)
    return result_text(record, RunReport(7, "completed", "failure", "https://x/runs/7"), NOW)


@given(
    kind=st.sampled_from(["release", "force-release", "expire"]),
    waiting=st.integers(0, 2),
    watchers=st.integers(0, 2),
)
def test_a_repeat_tells_what_the_first_answer_would_have(kind: str, waiting: int, watchers: int) -> None:
    clock = Fixed(NOW - 900 if kind == "expire" else NOW)  # an expiry: taken a quarter of an hour ago
    store = MemoryLockStore(clock)
    read = taken(store, waiting, watchers)
    clock.at = NOW
    first = free(store, kind, read)
    repeat = free(store, kind, read)

    assert repeat.repeated and not first.repeated
    first_let_go, repeat_let_go = as_let_go(first, read), as_let_go(repeat, read)
    assert news_of(news(repeat_let_go, kind), repeat.handed_to) == news_of(news(first_let_go, kind), first.handed_to)
    assert told_key(repeat_let_go) == told_key(first_let_go) == f"{KEY}#{read.token}"
    assert repeat.notify == first.notify
    assert repeat_let_go.notes == read.notes and repeat_let_go.handed_from_queue == read.handed_from_queue


@given(news=st.text(max_size=40), free_again=st.sampled_from(["", " The lock is free again.", " The lock is free."]))
def test_the_channel_hears_whom_the_lock_went_to_and_never_that_it_is_free_then(news: str, free_again: str) -> None:
    store = MemoryLockStore(Fixed(NOW))
    read = taken(store, 1, 0)
    handed = free(store, "release", read).handed_to
    assert handed is not None
    said = news_of(news + free_again, handed)
    assert said.channel == f"{news} ⏭️ Handed to <@U0Q0>, next in line (token {read.token + 1})."
    assert said.coalesced == news + free_again
    assert news_of(news + free_again, None).channel == news + free_again


@given(
    correlation_id=st.sampled_from(["cid-a", "cid-b"]),
    run_id=st.sampled_from([7, 8]),
    status=st.sampled_from(list(Status)),
    outcome=st.sampled_from([Status.COMPLETED, Status.FAILED]),
)
def test_only_this_runs_own_release_is_told_as_its_result(
    correlation_id: str, run_id: int, status: Status, outcome: Status
) -> None:
    store = MemoryLockStore(Fixed(NOW))
    record = taken(store, 0, 0)
    shown = replace(record, status=status)
    expected = (correlation_id, run_id, status) == ("cid-a", 7, outcome)
    assert released_by_this_run(shown, correlation_id, run_id, outcome) is expected


@given(
    phase=st.sampled_from(("taken", "dispatching", "dispatched")),
    attempt=st.integers(1, 3),
    run_id=st.none() | st.integers(1, 10**9),
    correlation_id=st.none() | st.sampled_from(("", "cid-a")),
)
def test_a_run_may_be_going_under_a_lock_from_its_first_dispatching_note(
    phase: str, attempt: int, run_id: int | None, correlation_id: str | None
) -> None:
    """A force-unlock or an expiry keeps the lock for its run's end (``runs_under``) from the moment the build
    worker notes ``dispatching`` — before the dispatch goes out, so a run GitHub started but never confirmed is
    covered — through ``dispatched``, noted run or not; never for a lock that was only taken, nor for one with
    no correlation id to know its run by."""
    notes: dict[str, str] = {"channelId": "C0BUILDS"}
    if phase != "taken":
        notes |= {"dispatchState": DISPATCHING, "dispatchAttempts": str(attempt), "dispatchSentAt": str(NOW)}
    if phase == "dispatched":
        notes |= dispatched_notes(run_id, f"https://x/runs/{run_id}" if run_id else None)
    record = LockRecord(
        KEY, 3, "req-alice", Status.IN_PROGRESS, "U0ALICE", "alice", "2027-01-15T08:00:00Z", NOW + 600,
        correlation_id=correlation_id, notes=notes,
    )  # fmt: skip
    assert runs_under(record) is (phase != "taken" and bool(correlation_id))


def test_a_channel_that_did_not_hear_is_retried_before_anyone_else_is_told() -> None:
    """The webhook's release: Slack refuses the run's end in the channel. The event is to come back, and its
    repeat tells everyone — so the watchers are not told now, or they would hear it once per delivery."""
    store = MemoryLockStore(Fixed(NOW))
    held = taken(store, waiting=0, watchers=2)
    faults = Faults()
    slack, ledger = SlackTwin(lambda: NOW, faults), LedgerTwin(faults)
    config = load_config(SHIPPED_CONFIG, environ={})

    def tell(freed: outcomes.Freed) -> bool:
        return handoff.follow_up(
            freed, config, slack, seen=held, news=lambda _: "✅ built", ledger=ledger, retry_unheard=True
        )

    faults.plan("slack.post", Fault.FAIL)
    with pytest.raises(runtime.RetryLater):
        tell(free(store, "release", held))
    assert slack.said == []

    assert tell(free(store, "release", held)) is True  # the redelivery: a repeat of the release
    assert tell(free(store, "release", held)) is False  # and another: told already
    assert sorted((u.where, u.user) for u in slack.said) == [
        ("C0BUILDS", ""),
        ("C0BUILDS", "U0W0"),
        ("C0BUILDS", "U0W1"),
    ]
