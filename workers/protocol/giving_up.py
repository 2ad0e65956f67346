"""What a request that gave up tells its requester, decided from the state at the time of telling.

A message that failed every attempt lands in its queue's DLQ; the dead-letter worker
(:mod:`workers.flows.deadletter`) reads what it needs and asks :func:`assess` what is true, then :func:`message`
for the words. Pure: the lock as read (or ``None`` when it could not be read), the envelope, the clock.

The rule is the product's: nobody is told something a later step makes false. So a ``/build`` or ``/deploy`` is
never called failed while its lock may be carrying a run (owner = its request id, a dispatch noted): the run may
be going, and the lock's lease and the reaper settle it. "Nothing was started" is said only when no run of this
request can exist: the lock was never its, or it holds the lock with no dispatch noted (a dispatch is noted
*before* it is sent). When the lock cannot tell — it could not be read, it is switched off, or another request
took it after this one was sent (this one may have held it in between) — the user is told a run may have started
and where to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, assert_never

from lockcore.machine import LockState
from lockcore.record import LockRecord, epoch
from workers.protocol.commands import Dispatch
from workers.protocol.dispatch import DISPATCHED, DISPATCHING, slack_time
from workers.protocol.envelope import (
    LOCK_WATCH_ACTION,
    UNLOCK_CANCEL_ACTION,
    UNLOCK_CONFIRM_ACTION,
    CommandEnvelope,
    InteractionEnvelope,
)
from workers.protocol.message import Message, escape

MOVED_ON_MARGIN_SECONDS: Final = 5
"""A lock another request took fewer than this many seconds before this one was sent (by the router's clock and
the worker's) is read as taken *after* it: this one may have held it in between, so nothing is claimed."""

CHANGES_NOTHING: Final = frozenset({"status", "unlock", "history", "stats", "echo"})
"""Command kinds whose handling writes nothing (``unlock`` only asks for the confirm button), so a failed one
changed nothing. The others (cancel, dequeue, freeze, unfreeze; a dispatch is assessed on its lock) may have."""
INTERACTIONS: Final = {
    UNLOCK_CONFIRM_ACTION: ("*Force unlock* press", True),
    UNLOCK_CANCEL_ACTION: ("*Cancel* press", False),
    LOCK_WATCH_ACTION: ("*Notify me when free* press", True),
}
"""A button's name as the user saw it, and whether handling it writes something."""


# ------------------------------------------------------------------------------------------------ verdicts
@dataclass(frozen=True)
class LockRead:
    """The request's lock as read when telling: :func:`lockcore.machine.state_of`'s answer and the record."""

    state: LockState
    record: LockRecord | None


class Doubt(StrEnum):
    """Why the lock cannot say whether a run started."""

    DISPATCHING = "dispatching"
    """Its lock notes a dispatch under way: GitHub may have taken it."""
    LOCK_UNREAD = "lock unread"
    NO_LOCK = "no lock"
    """The distributed lock is switched off: runs are dispatched without one."""
    MOVED_ON = "moved on"
    """Another request took the lock after this one was sent."""


@dataclass(frozen=True)
class NothingStarted:
    """No run of this request exists, and none will."""

    holds_until: int | None = None
    """The lease end of the lock it took and holds (``None``: it holds none) — the latest it frees."""


@dataclass(frozen=True)
class StillQueued:
    """It waits in the lock's queue: the hand-off dispatches it (its envelope was kept before it joined)."""


@dataclass(frozen=True)
class HandedOffNotStarted:
    """The lock was handed to it from the queue and no dispatch is noted: the reaper queues it again for a few
    minutes, so it may still start; else the lease ends it."""

    holds_until: int


@dataclass(frozen=True)
class Dispatched:
    """Its dispatch is noted on its lock: the run exists (and may be going)."""

    run_id: str | None
    run_url: str | None
    lock: LockState


@dataclass(frozen=True)
class MayHaveStarted:
    doubt: Doubt
    lock: LockState | None = None
    """The lock's state when it notes a dispatch under way (:attr:`Doubt.DISPATCHING`)."""


@dataclass(frozen=True)
class NotDone:
    """A command that dispatches nothing: it either changed nothing, or may have taken effect."""

    may_have_changed: bool


Verdict = NothingStarted | StillQueued | HandedOffNotStarted | Dispatched | MayHaveStarted | NotDone


# ------------------------------------------------------------------------------------------------ deciding
def assess_dispatch(request_id: str, received_at: int, lock: LockRead | None, *, lock_enabled: bool) -> Verdict:
    """A ``/build`` or ``/deploy`` that gave up, from its lock as read now (``None``: it could not be read)."""
    if not lock_enabled:
        return MayHaveStarted(Doubt.NO_LOCK)
    if lock is None:
        return MayHaveStarted(Doubt.LOCK_UNREAD)
    record = lock.record
    if record is None:
        return NothingStarted()  # the key was never taken
    if any(requester.owner == request_id for entry in record.queue for requester in entry.requesters):
        return StillQueued()
    if record.owner == request_id:
        noted = record.notes.get("dispatchState")
        if noted == DISPATCHED:
            return Dispatched(record.notes.get("runId"), record.notes.get("runUrl"), lock.state)
        if noted == DISPATCHING:
            return MayHaveStarted(Doubt.DISPATCHING, lock.state)
        if lock.state is not LockState.HELD:
            return NothingStarted()  # it held the lock and let go of it before any dispatch
        handed = record.handed_from_queue
        if handed is not None and handed.owner == request_id:
            return HandedOffNotStarted(record.lease_expires_at)
        return NothingStarted(record.lease_expires_at)
    try:
        taken_at = epoch(record.locked_at)
    except ValueError:
        return MayHaveStarted(Doubt.MOVED_ON)
    if taken_at + MOVED_ON_MARGIN_SECONDS <= received_at:
        return NothingStarted()  # someone else holds it since before this request was sent: it never had it
    return MayHaveStarted(Doubt.MOVED_ON)


def assess_other(envelope: CommandEnvelope | InteractionEnvelope) -> NotDone:
    """A command that dispatches nothing, or a button press."""
    if isinstance(envelope, InteractionEnvelope):
        _, writes = INTERACTIONS.get(envelope.action_id, ("", False))
        return NotDone(may_have_changed=writes)
    if isinstance(envelope.command, Dispatch):
        raise ValueError("a dispatch is assessed on its lock: assess_dispatch")
    return NotDone(may_have_changed=envelope.kind not in CHANGES_NOTHING)


# ----------------------------------------------------------------------------------------------- rendering
def what_was_asked(envelope: CommandEnvelope | InteractionEnvelope) -> str:
    """```/build router plt``` — or the button's name for a press."""
    if isinstance(envelope, InteractionEnvelope):
        name, _ = INTERACTIONS.get(envelope.action_id, ("button press", False))
        return name
    return f"`{escape(f'{envelope.slash} {envelope.text}'.strip())}`"


def _status_hint(envelope: CommandEnvelope | InteractionEnvelope) -> str:
    slash = envelope.slash if isinstance(envelope, CommandEnvelope) and envelope.slash != "/echo" else "/build"
    return f"`{slash} status --locks`"


def _lock_now(lock_key: str, state: LockState | None) -> str:
    key = f"`{escape(lock_key)}`"
    if state is LockState.HELD:
        return f"Its lock {key} stays held until the run ends; the reaper checks the run every minute."
    if state is LockState.LAPSED:
        return f"Its lock {key} is past its lease; the reaper releases it."
    if state is None or state is LockState.FREE:
        return ""
    return f"Its lock {key} has been released since ({state.value})."


def message(envelope: CommandEnvelope | InteractionEnvelope, lock_key: str, verdict: Verdict, now: int) -> Message:
    """What the requester reads (only they: ephemeral). ``lock_key`` is the dispatch's lock ("" otherwise)."""
    what, key, status = what_was_asked(envelope), f"`{escape(lock_key)}`", _status_hint(envelope)
    match verdict:
        case NothingStarted(holds_until=until):
            frees = (
                f"the lock it took, {key}, frees by {slack_time(until, now)} at the latest"
                if until is not None
                else "try again"
            )
            text = f"❌ Your {what} could not be done: it failed on every attempt. Nothing was started; {frees}."
        case StillQueued():
            text = (
                f"⏳ Your {what} hit an error after it joined the queue for {key}, and it is still waiting in line: "
                "it starts when the lock is handed to it, and you will be told then."
            )
        case HandedOffNotStarted(holds_until=until):
            text = (
                f"⚠️ Your {what} was handed the lock {key} from the queue but failed to start. The reaper queues "
                f"it again for a few minutes; if it still cannot start, the lock frees by {slack_time(until, now)}."
            )
        case Dispatched():
            text = _dispatched(what, lock_key, verdict)
        case MayHaveStarted():
            text = _may_have_started(what, key, status, verdict)
        case NotDone(may_have_changed=True):
            text = f"⚠️ Your {what} failed on every attempt, and it may have taken effect before it did: {status} "
            text += "shows where things stand."
        case NotDone():
            text = f"❌ Your {what} could not be answered: it failed on every attempt. Nothing was changed; try again."
        case _:
            assert_never(verdict)
    return Message(text)


def _dispatched(what: str, lock_key: str, verdict: Dispatched) -> str:
    if verdict.run_url:
        label = f"run {verdict.run_id}" if verdict.run_id else "its run"
        started = f"was dispatched: <{verdict.run_url}|{label}>"
    else:
        started = "was dispatched (its run is in GitHub Actions)"
    lock = _lock_now(lock_key, verdict.lock)
    return f"ℹ️ Your {what} {started}; an error came after that. {lock}".rstrip()  # noqa: RUF001


def _may_have_started(what: str, key: str, status: str, verdict: MayHaveStarted) -> str:
    if verdict.doubt is Doubt.DISPATCHING:
        settle = (
            f"the lock {key} stays held: the reaper releases it when that run ends, or when its lease ends if there "
            "is no run"
            if verdict.lock is LockState.HELD
            else f"the lock {key} is no longer held for it"
        )
        return (
            f"⚠️ Your {what} failed while it was being dispatched, so a run may have started: {settle}. "
            f"GitHub Actions shows the runs, {status} the lock."
        )
    why = {
        Doubt.LOCK_UNREAD: f"its lock {key} could not be read to find out",
        Doubt.NO_LOCK: "the distributed lock is switched off, so no lock tells",
        Doubt.MOVED_ON: f"another request has taken its lock {key} since",
    }[verdict.doubt]
    return (
        f"⚠️ Your {what} failed on every attempt, and a run may have started before it did ({why}). "
        f"GitHub Actions shows the runs, {status} the locks."
    )
