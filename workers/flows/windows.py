"""Scheduled freeze windows applied, once a sweep (:class:`workers.flows.reaper.Reaper` calls :func:`apply`).

For each environment with windows (:mod:`workers.protocol.windows` says which occurrence is going on), the sweep
takes ``freeze-<env>`` with lockcore's own acquire when an occurrence is going on and nothing holds the freeze:

- owner ``window#<window>#<start>`` (the same occurrence taken again, by a repeated or a concurrent sweep, re-enters
  the lock: one freeze, one token), ``lockedByName`` ``scheduled window <window>``, a lease ending at the
  occurrence's end — so the freeze ends by itself then, and the sweep after records its expiry, which the history
  shows as the window's end;
- the reason noted as :func:`workers.protocol.windows.scheduled_note`; a sweep that finds its own freeze without
  it (a crash between the two writes) notes it again;
- a window edited while its occurrence holds the freeze (the same start, a new end or reason): the sweep moves the
  lease's end (lockcore's extend, which may shorten it) and notes the new reason.

A freeze held by anyone else — an admin's manual freeze, its own lease — is left alone: a window never takes over,
nor ends, a manual freeze.

**An early lift** (``/deploy unfreeze`` during an occurrence) keeps a record in the ledger *before* it releases
the freeze (:meth:`workers.adapters.ledger.Ledger.lift`); the sweep reads it before its acquire (to do nothing) and
again *after* (to let go of what it just took). Either the sweep's second read sees the record, or that read came
before the record was written — and so did the sweep's acquire, which the unfreeze's own read of the lock then
sees and releases. Both reads are strongly consistent; so the occurrence stays lifted whichever ran first. A sweep
whose read after its acquire never answered (the ledger failed, the Lambda died) leaves that to the next: a sweep
that finds the occurrence's own freeze reads the lift first, and lets go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from lockcore import machine, outcomes
from lockcore.errors import LockStoreError
from lockcore.record import LockRecord
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.ledger import Ledger, LedgerError
from workers.flows.freeze import current, freeze_key, is_freeze
from workers.protocol.config import Config
from workers.protocol.history import FREEZE_PREFIX
from workers.protocol.windows import SCHEDULER, Occurrence, occurrence_of, schedule, scheduled_note

LIFTED_REASON: Final = "lifted early by an admin: held until the window's next occurrence"


class Applied(StrEnum):
    """What the sweep did about one environment's windows."""

    FROZE = "froze"
    NOTED = "noted"
    """Its own freeze had not this reason noted (a crash between the acquire and the note, or the window's reason
    edited): noted now."""
    RESCHEDULED = "rescheduled"
    """The window was edited while its occurrence holds the freeze (same start, a new end): the lease ends then."""
    LET_GO = "let-go"
    """An admin lifted the occurrence while a sweep took it: released again (by that sweep, or the next)."""
    LIFTED = "lifted"
    """An admin lifted the occurrence early: not frozen again until the next one."""
    HELD = "held"
    """The freeze is held already (by this occurrence, or by hand)."""


@dataclass(frozen=True)
class WindowStep:
    environment: str
    occurrence: Occurrence
    applied: Applied

    @property
    def occurrence_key(self) -> str:
        """The freeze's lock key (what the sweep may have written since its scan)."""
        return freeze_key(self.environment)


def _windowed(config: Config) -> list[str]:
    """The environments that have freeze windows, in name order."""
    return sorted({window.environment for window in config.freeze_windows})


def next_windows(config: Config, now: int) -> list[Occurrence]:
    """Each environment's next scheduled occurrence (status and the App Home show them)."""
    coming = [schedule(config.freeze_windows, environment, now).next for environment in _windowed(config)]
    return [occurrence for occurrence in coming if occurrence is not None]


def let_go_of_unconfigured(config: Config, store: LockStore, records: Sequence[LockRecord]) -> set[str]:
    """The live freezes a window holds whose occurrence the configuration no longer has going on (the window was
    removed, or moved): let go, before :func:`apply` takes what is configured now — deploys are not held to a window
    nobody configures. ``records`` is the sweep's own scan (no read of its own); a manual freeze is never touched.
    The keys let go."""
    now, released = store.now(), set()
    for record in records:
        held = occurrence_of(record.owner)
        if held is None or not is_freeze(record.lock_key) or not machine.is_live(record.to_item(), now):
            continue
        environment = record.lock_key.removeprefix(FREEZE_PREFIX)
        active = schedule(config.freeze_windows, environment, now).active
        if active is not None and active.owner == record.owner:
            continue
        reason = f"the scheduled window {held[0]} is no longer configured to hold it"
        try:
            store.force_release(record.lock_key, record.token, by=SCHEDULER, reason=reason)
        except LockStoreError as error:
            runtime.logger.error("unconfigured window's freeze not let go; next sweep tries again", reason=str(error))
            continue
        runtime.logger.info("freeze window no longer configured: let go", lock_key=record.lock_key)
        released.add(record.lock_key)
    return released


def apply(config: Config, store: LockStore, ledger: Ledger) -> list[WindowStep]:
    """One pass over the environments whose window is going on now. A store failing for one environment is logged
    and the others go on (the next sweep tries again)."""
    steps: list[WindowStep] = []
    now = store.now()
    for environment in _windowed(config):
        occurrence = schedule(config.freeze_windows, environment, now).active
        if occurrence is None:
            continue
        try:
            applied = _apply(store, ledger, occurrence)
        except (LockStoreError, *LedgerError) as error:
            runtime.logger.error("freeze window not applied; next sweep tries again", reason=str(error))
            continue
        runtime.logger.info("freeze window", environment=environment, occurrence=occurrence.id, applied=applied)
        steps.append(WindowStep(environment, occurrence, applied))
    return steps


def _apply(store: LockStore, ledger: Ledger, occurrence: Occurrence) -> Applied:
    held = current(store, occurrence.environment, store.now())
    if held is None:
        return _take(store, ledger, occurrence)
    if held.owner != occurrence.owner:
        return Applied.HELD
    if ledger.lifted(occurrence.environment, occurrence.id):  # a sweep that took it never read the lift after
        _let_go(store, occurrence, held.token)
        return Applied.LET_GO
    applied = Applied.HELD
    if held.lease_expires_at != occurrence.end:  # the window was edited: the same occurrence, a new end
        _reschedule(store, occurrence, held.token)
        applied = Applied.RESCHEDULED
    if held.notes.get("command") != scheduled_note(occurrence):  # a crash before the note, or a new reason
        _note(store, occurrence, held.token)
        applied = Applied.NOTED
    return applied


def _take(store: LockStore, ledger: Ledger, occurrence: Occurrence) -> Applied:
    key, environment = freeze_key(occurrence.environment), occurrence.environment
    if ledger.lifted(environment, occurrence.id):
        return Applied.LIFTED
    request = machine.AcquireRequest(
        key,
        occurrence.owner,
        max(occurrence.end - store.now(), 1),
        locked_by_name=f"scheduled window {occurrence.window}",
        component="freeze",
        environment=environment,
        correlation_id=occurrence.owner,
    )
    taken = store.acquire(request)
    if not isinstance(taken, outcomes.Acquired):  # someone froze it by hand in between: theirs stands
        return Applied.HELD
    _note(store, occurrence, taken.token)
    if ledger.lifted(environment, occurrence.id):  # lifted while we took it: see the module's proof
        _let_go(store, occurrence, taken.token)
        return Applied.LET_GO
    return Applied.HELD if taken.reentered else Applied.FROZE


def _let_go(store: LockStore, occurrence: Occurrence, token: int) -> None:
    store.force_release(freeze_key(occurrence.environment), token, by=SCHEDULER, reason=LIFTED_REASON)


def _reschedule(store: LockStore, occurrence: Occurrence, token: int) -> None:
    extended = store.extend(freeze_key(occurrence.environment), occurrence.owner, token, occurrence.end - store.now())
    if isinstance(extended, outcomes.NotHolder):  # lifted or lapsed in between: nothing to move
        runtime.logger.warning("freeze window end not moved", reason=extended.reason.value)


def _note(store: LockStore, occurrence: Occurrence, token: int) -> None:
    noted = store.note(freeze_key(occurrence.environment), occurrence.owner, token, command=scheduled_note(occurrence))
    if isinstance(noted, outcomes.NotHolder):  # lifted or lapsed in between: nothing to say it on
        runtime.logger.warning("freeze window reason not noted", reason=noted.reason.value)
