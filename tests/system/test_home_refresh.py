"""App Home refreshes coalesce and none is lost: a proof by Hypothesis over the whole system's twins.

Locks change (acquire, notes, release) while people open the Home; the lock table's stream hands its batches to the
real history writer (which puts the pending-refresh mark, then queues a refresh) and SQS hands the status queue's
messages to the real status worker (which deletes the mark, then reads the board and publishes). Any ledger write,
SQS send or ``views.publish`` may fail, lose its answer, or kill its Lambda before or after its effect; a batch the
writer did not finish comes again, the same; a message the worker did not finish comes back after its visibility
timeout; time passes past the mark's expiry and the viewers' window.

The promises:

- **bounded** (after every step) — the refreshes waiting that no worker has taken yet number at most
  1 + the takes of a refresh beyond its first + the marks taken over stale + the marks put again by their own batch:
  one when nothing goes wrong, and each fault adds one at most (the argument is in
  :mod:`workers.handlers.history`: every send follows a put of the mark in the same attempt; a put over no mark
  follows a delete, and every delete is a worker's take);
- **current** (once the world recovers and everything queued is handled) — every viewer the ledger keeps sees,
  as last published, exactly the Home the lock table as it is now renders at that Home's own *as of* time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from lockcore.machine import AcquireRequest
from lockcore.record import Status
from tests.system.twins import Fault, QueuedMessage
from tests.system.world import InTheWorld, machine_settings
from workers.flows.home import read_board
from workers.protocol.board import HOME_WINDOW_SECONDS, Viewer, home_view
from workers.protocol.config import Queue, current_config

VIEWERS = ("U0ALICE", "U0BOB", "U0CAROL")
KEYS = ("build-router-plt", "deploy-api-prod")
MAX_FAULTS = 4
"""Fewer than ``maxReceiveCount`` (5): no refresh is sent to the DLQ, where nothing would refresh the Homes."""
MIDWAY = ("_delete", "publish_home")
"""Where the status worker may be when another Lambda changes a lock: deleting the mark, publishing a Home."""
AS_OF = re.compile(r"as of <!date\^(\d+)\^")


class HomeRefreshes(InTheWorld):
    def __init__(self) -> None:
        super().__init__()
        self.taken_again = 0
        """Takes of a full refresh beyond its first (it failed, or its Lambda died, and it came back)."""
        self.owners: dict[str, tuple[str, int]] = {}
        self._changes = 0

    def teardown(self) -> None:
        try:
            self.settle()
            self.every_viewer_sees_the_board_as_it_is()
        finally:
            self.leave()

    # ------------------------------------------------------------------------------------------ the world
    @rule(user=st.sampled_from(VIEWERS))
    def someone_opens_the_home(self, user: str) -> None:
        self.world.open_home(user, retries=1)

    @rule(key=st.sampled_from(KEYS), user=st.sampled_from(VIEWERS))
    def a_build_takes_a_lock(self, key: str, user: str) -> None:
        self._changes += 1
        owner = f"req-{self._changes}"
        outcome = self.world.store.acquire(AcquireRequest(key, owner, 600, locked_by=user, locked_by_name=user))
        token = getattr(outcome, "token", None)
        if isinstance(token, int):
            self.owners[key] = (owner, token)

    @rule(key=st.sampled_from(KEYS), note=st.sampled_from(("dispatchState", "runUrl", "commitSha")))
    def the_build_notes_what_it_does(self, key: str, note: str) -> None:
        """The writes that made one build republish every Home four times: each is a stream batch of its own."""
        if key in self.owners:
            self._changes += 1
            owner, token = self.owners[key]
            self.world.store.note(key, owner, token, **{note: f"https://example.test/{self._changes}"})

    @rule(key=st.sampled_from(KEYS))
    def the_build_ends(self, key: str) -> None:
        if key in self.owners:
            self._changes += 1
            owner, token = self.owners.pop(key)
            self.world.store.release(key, owner, token, Status.COMPLETED)

    @rule(key=st.sampled_from(KEYS), moment=st.sampled_from(("before", "after")), call=st.sampled_from(MIDWAY))
    def a_lock_changes_while_the_worker_works(self, key: str, moment: str, call: str) -> None:
        """Another Lambda writes a lock, and the stream brings it to the writer, while the status worker is at
        ``call`` — before or after its effect: the next time it is there."""
        twin = self.world.ledger if call == "_delete" else self.world.slack
        original = getattr(twin, call)

        def midway(*args: Any, **kwargs: Any) -> Any:
            vars(twin).pop(call)  # once
            if moment == "before":
                self.a_change_reaches_the_writer(key)
            answer = original(*args, **kwargs)
            if moment == "after":
                self.a_change_reaches_the_writer(key)
            return answer

        setattr(twin, call, midway)

    def a_change_reaches_the_writer(self, key: str) -> None:
        self.a_build_takes_a_lock(key, VIEWERS[0]) if key not in self.owners else self.the_build_ends(key)
        self.world.stream()

    @rule(going_wrong=st.none() | st.tuples(st.sampled_from(("ledger.write", "sqs.send")), st.sampled_from(Fault)))
    def the_stream_hands_a_batch_to_the_writer(self, going_wrong: tuple[str, Fault] | None) -> None:
        """The writer puts the mark (``ledger.write``) and queues the refresh (``sqs.send``): either may go wrong."""
        self.go_wrong(going_wrong)
        self.world.stream()
        self.world.faults.clear()

    @rule(
        pick=st.integers(0, 7),
        going_wrong=st.none() | st.tuples(st.sampled_from(("ledger.write", "slack.post")), st.sampled_from(Fault)),
    )
    def the_status_worker_takes_a_message(self, pick: int, going_wrong: tuple[str, Fault] | None) -> None:
        """The worker deletes the mark (``ledger.write``) and publishes (``slack.post``): either may go wrong."""
        visible = self.world.sqs.queues[Queue.STATUS].visible(self.world.now)
        if visible:
            self.go_wrong(going_wrong)
            self.take(visible[pick % len(visible)])
            self.world.faults.clear()  # what this take did not reach does not wait for another

    @rule(seconds=st.sampled_from((5, 30, 61, 300)))
    def time_passes(self, seconds: int) -> None:
        """Past the mark's expiry (60 s), a failed message's visibility (270 s); the window is 30 minutes."""
        self.world.now += seconds

    # --------------------------------------------------------------------------------------- the promises
    @invariant()
    def refreshes_waiting_are_bounded(self) -> None:
        waiting = [m for m in self.world.sqs.queues[Queue.STATUS].messages.values() if _full_refresh(m)]
        untaken = sum(1 for m in waiting if m.receive_count == 0)
        claims = self.world.ledger.claims
        bound = 1 + self.taken_again + claims["stale"] + claims["own"]
        assert untaken <= bound, f"{untaken} refreshes wait untaken; the bound is {bound} ({dict(claims)})"

    def every_viewer_sees_the_board_as_it_is(self) -> None:
        now = self.world.now
        viewers = self.world.ledger.home_viewers(since=now - HOME_WINDOW_SECONDS)
        for user, (_, page) in viewers.items():
            published = self.world.slack.homes.get(user)
            assert published is not None, f"{user} is kept as a viewer and was never shown the Home"
            as_of = AS_OF.search(json.dumps(published["blocks"]))
            assert as_of is not None
            board = read_board(self.world.store, int(as_of.group(1)), current_config())
            assert published == home_view(board, Viewer(user, page=page)), f"{user}'s Home is stale"

    # ---------------------------------------------------------------------------------------------- helpers
    def the_status_worker_takes_every_message(self) -> None:
        for message in self.world.sqs.queues[Queue.STATUS].visible(self.world.now):
            self.take(message)

    def go_wrong(self, fault: tuple[str, Fault] | None) -> None:
        if fault is not None and self.faults_planned < MAX_FAULTS:
            self.world.faults.plan(*fault)
            self.faults_planned += 1

    def take(self, message: QueuedMessage) -> None:
        if _full_refresh(message) and message.receive_count > 0:
            self.taken_again += 1
        self.world.deliver(Queue.STATUS, message)

    def settle(self) -> None:
        """The world recovers: the stream catches up, every message is handled, time passes only for the ones that
        wait out their visibility — within the viewers' window."""
        self.world.faults.clear()
        started = self.world.now
        status = self.world.sqs.queues[Queue.STATUS]
        while self.world.stream_behind() or status.messages:
            self.world.stream()
            visible = status.visible(self.world.now)
            for message in visible:
                self.take(message)
            if not visible and status.messages:
                self.world.now = min(m.visible_at for m in status.messages.values())
            assert self.world.now - started < HOME_WINDOW_SECONDS / 2, "the system did not settle"
        assert not status.dead, "a refresh went to the DLQ"


def _full_refresh(message: QueuedMessage) -> bool:
    body: dict[str, Any] = json.loads(message.body)
    return message.kind == "home_refresh" and not body.get("users")


HomeRefreshes.TestCase.settings = machine_settings(ci_examples=500)
test_home_refreshes_coalesce_and_none_is_lost = HomeRefreshes.TestCase


# ------------------------------------------------------------------------------------ schedules written by hand
def _homes_after(*steps: Callable[[HomeRefreshes], object]) -> None:
    """Alice has her Home open and a build takes a lock; then ``steps``; then the world settles and the promises
    are checked (the machine's own teardown)."""
    machine = HomeRefreshes()
    machine.someone_opens_the_home(VIEWERS[0])
    machine.the_status_worker_takes_every_message()
    machine.a_build_takes_a_lock(KEYS[0], VIEWERS[1])
    for step in steps:
        step(machine)
        machine.refreshes_waiting_are_bounded()
    machine.teardown()


@pytest.mark.parametrize("call", ["ledger.write", "sqs.send"])
@pytest.mark.parametrize("fault", list(Fault))
def test_a_refresh_the_writer_could_not_arrange_comes_with_the_batch_again(call: str, fault: Fault) -> None:
    _homes_after(lambda machine: machine.the_stream_hands_a_batch_to_the_writer((call, fault)))


@pytest.mark.parametrize("call", ["ledger.write", "slack.post"])
@pytest.mark.parametrize("fault", list(Fault))
def test_a_refresh_the_worker_did_not_finish_comes_back(call: str, fault: Fault) -> None:
    _homes_after(
        lambda machine: machine.the_stream_hands_a_batch_to_the_writer(None),
        lambda machine: machine.the_status_worker_takes_a_message(0, (call, fault)),
        lambda machine: machine.a_build_takes_a_lock(KEYS[1], VIEWERS[2]),  # a change while it waits to come back
        lambda machine: machine.the_stream_hands_a_batch_to_the_writer(None),
    )


@pytest.mark.parametrize("call", MIDWAY)
@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_change_while_the_worker_works_is_published(call: str, moment: str) -> None:
    _homes_after(
        lambda machine: machine.the_stream_hands_a_batch_to_the_writer(None),
        lambda machine: machine.a_lock_changes_while_the_worker_works(KEYS[1], moment, call),
        lambda machine: machine.the_status_worker_takes_a_message(0, None),
    )
