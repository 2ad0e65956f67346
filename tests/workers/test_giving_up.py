"""What a request that gave up tells its requester: true of the lock as read, whatever state the lock is in.

The property: "Nothing was started" is said only when no run of this request can exist — by a reading of the lock
written here apart from the code (:func:`may_have_a_run`); a dispatch noted on its own lock is always named, with
its run's link when noted; a request still in the lock's queue is told it waits.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from lockcore import machine as m
from lockcore.record import LockRecord, QueueEntry, Requester, Status, epoch, iso
from workers.protocol import giving_up
from workers.protocol.commands import Cancel, Dispatch, Echo, LockStatus
from workers.protocol.config import Action
from workers.protocol.envelope import LOCK_WATCH_ACTION, UNLOCK_CANCEL_ACTION, CommandEnvelope, InteractionEnvelope

ME = "13345.738474920.me"
OTHER = "13345.738474920.other"
SENT = 1_800_000_000
NOW = SENT + 900
KEY = "build-router-plt"
NOTHING = "Nothing was started"


def envelope(command: object = None, slash: str = "/build", text: str = "router plt") -> CommandEnvelope:
    return CommandEnvelope(
        request_id=ME,
        correlation_id="cid-me",
        command=command or Dispatch(Action.BUILD, "router", "plt"),  # type: ignore[arg-type]
        slash=slash,
        text=text,
        user_id="U0ME",
        user_name="me",
        channel_id="C0BUILDS",
        team_id="T0",
        api_app_id="A0",
        response_url="https://hooks.slack.com/commands/T0/1/x",
        received_at=SENT,
    )


# -------------------------------------------------------------------------------------------- the locks
DISPATCH_STATES = st.sampled_from([None, "dispatching", "dispatched"])
RUN_NOTES = st.fixed_dictionaries(
    {},
    optional={"runId": st.just("4242"), "runUrl": st.just("https://github.com/o/r/actions/runs/4242")},
)


@st.composite
def records(draw: st.DrawFn) -> LockRecord:
    owner = draw(st.sampled_from([ME, OTHER]))
    notes: dict[str, str] = {}
    state = draw(DISPATCH_STATES)
    if state is not None:
        notes = {"dispatchState": state, **(draw(RUN_NOTES) if state == "dispatched" else {})}
    waiting = draw(st.sampled_from([(), (ME,), (OTHER, ME), (OTHER,)]))
    queue = (
        (QueueEntry(requesters=tuple(Requester(o, f"U{o[-2:]}") for o in waiting), lease_seconds=600),)
        if waiting and owner not in waiting
        else ()
    )
    handed = draw(st.booleans())
    return LockRecord(
        lock_key=KEY,
        token=draw(st.integers(1, 50)),
        owner=owner,
        status=draw(st.sampled_from(list(Status))),
        locked_by="U0X",
        locked_by_name="someone",
        locked_at=iso(SENT + draw(st.integers(-3600, 900))),
        lease_expires_at=SENT + draw(st.integers(-600, 3600)),
        notes=notes,
        queue=queue,
        handed_from_queue=QueueEntry((Requester(owner),), 600) if handed else None,
    )


LOCKS = st.one_of(
    st.none(),  # could not be read
    st.just(giving_up.LockRead(m.LockState.FREE, None)),  # the key was never taken
    records().map(lambda record: giving_up.LockRead(m.state_of(record.to_item(), NOW), record)),
)


def may_have_a_run(lock: giving_up.LockRead | None, *, lock_enabled: bool) -> bool:
    """Could a run of this request exist, as far as the lock can tell? (The reference, written apart.)"""
    if not lock_enabled or lock is None:
        return True
    record = lock.record
    if record is None:
        return False
    if record.owner == ME:
        return "dispatchState" in record.notes  # noted before the dispatch is sent
    return epoch(record.locked_at) > SENT - giving_up.MOVED_ON_MARGIN_SECONDS  # it may have held it in between


def queued(lock: giving_up.LockRead | None) -> bool:
    return bool(lock and lock.record and any(r.owner == ME for e in lock.record.queue for r in e.requesters))


@given(LOCKS, st.booleans())
def test_nothing_started_is_said_only_when_no_run_of_the_request_can_exist(
    lock: giving_up.LockRead | None, lock_enabled: bool
) -> None:
    verdict = giving_up.assess_dispatch(ME, SENT, lock, lock_enabled=lock_enabled)
    text = giving_up.message(envelope(), KEY, verdict, NOW).text
    if may_have_a_run(lock, lock_enabled=lock_enabled):
        assert NOTHING not in text and not text.startswith("❌"), (verdict, text)
    if NOTHING in text:
        assert not may_have_a_run(lock, lock_enabled=lock_enabled)
    assert "`/build router plt`" in text


@given(records())
def test_a_dispatch_noted_on_its_own_lock_is_named_with_its_run_and_never_called_failed(record: LockRecord) -> None:
    record = dataclasses.replace(record, owner=ME, queue=())
    lock = giving_up.LockRead(m.state_of(record.to_item(), NOW), record)
    verdict = giving_up.assess_dispatch(ME, SENT, lock, lock_enabled=True)
    text = giving_up.message(envelope(), KEY, verdict, NOW).text
    noted = record.notes.get("dispatchState")
    if noted == "dispatched":
        assert isinstance(verdict, giving_up.Dispatched)
        assert "was dispatched" in text
        if "runUrl" in record.notes:
            assert record.notes["runUrl"] in text
    elif noted == "dispatching":
        assert verdict == giving_up.MayHaveStarted(giving_up.Doubt.DISPATCHING, lock.state)
        assert "a run may have started" in text
    if noted is not None:
        assert "could not be done" not in text and NOTHING not in text
    if lock.state is m.LockState.HELD and noted is not None:
        assert "held" in text, "the lock is said to be still held: its run (or lease) frees it, not this message"


@given(LOCKS)
def test_a_request_still_in_the_locks_queue_is_told_it_waits(lock: giving_up.LockRead | None) -> None:
    verdict = giving_up.assess_dispatch(ME, SENT, lock, lock_enabled=True)
    assert isinstance(verdict, giving_up.StillQueued) == queued(lock)
    if queued(lock):
        assert "still waiting in line" in giving_up.message(envelope(), KEY, verdict, NOW).text


def test_a_lock_held_by_the_request_with_nothing_noted_frees_by_its_lease_at_the_latest() -> None:
    record = LockRecord(KEY, 3, ME, Status.IN_PROGRESS, "U0ME", "me", iso(SENT + 2), NOW + 600)
    lock = giving_up.LockRead(m.LockState.HELD, record)
    verdict = giving_up.assess_dispatch(ME, SENT, lock, lock_enabled=True)
    assert verdict == giving_up.NothingStarted(holds_until=NOW + 600)
    text = giving_up.message(envelope(), KEY, verdict, NOW).text
    assert text.startswith("❌ Your `/build router plt` could not be done")
    assert f"<!date^{NOW + 600}^" in text and "at the latest" in text


def test_a_lock_handed_from_the_queue_and_never_dispatched_may_still_start() -> None:
    handed = QueueEntry((Requester(ME, "U0ME"),), 600)
    record = LockRecord(
        KEY, 3, ME, Status.IN_PROGRESS, "U0ME", "me", iso(NOW - 60), NOW + 540, handed_from_queue=handed
    )
    verdict = giving_up.assess_dispatch(ME, SENT, giving_up.LockRead(m.LockState.HELD, record), lock_enabled=True)
    assert verdict == giving_up.HandedOffNotStarted(NOW + 540)
    assert "queues it again" in giving_up.message(envelope(), KEY, verdict, NOW).text


def test_the_users_text_is_escaped_in_what_they_are_told() -> None:
    asked = envelope(Echo("<!channel> hi"), slash="/echo", text="<!channel> hi")
    text = giving_up.message(asked, "", giving_up.assess_other(asked), NOW).text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_a_command_that_writes_nothing_changed_nothing_and_one_that_writes_may_have() -> None:
    status = envelope(LockStatus(), text="status --locks")
    assert giving_up.assess_other(status) == giving_up.NotDone(may_have_changed=False)
    assert "Nothing was changed" in giving_up.message(status, "", giving_up.assess_other(status), NOW).text
    cancel = envelope(Cancel(Action.BUILD, "router", "plt"), text="cancel router plt")
    assert giving_up.assess_other(cancel) == giving_up.NotDone(may_have_changed=True)
    told = giving_up.message(cancel, "", giving_up.assess_other(cancel), NOW).text
    assert "may have taken effect" in told and "`/build status --locks`" in told
    press = InteractionEnvelope("t", "c", LOCK_WATCH_ACTION, KEY, "U0ME", "me", "T0", "A0", "C0", "https://x", SENT)
    assert giving_up.assess_other(press) == giving_up.NotDone(may_have_changed=True)
    dismiss = dataclasses.replace(press, action_id=UNLOCK_CANCEL_ACTION)
    assert giving_up.assess_other(dismiss) == giving_up.NotDone(may_have_changed=False)
