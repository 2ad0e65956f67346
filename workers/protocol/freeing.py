"""What a write that freed a lock tells, decided from the lock as its holder let go — never from which answer of
the write came back.

A freeing write (release, force-release, expire) whose answer is lost is retried, and the retry is answered as a
repeat (:attr:`lockcore.machine.Freed.repeated`); a redelivered message may read the lock already freed. Either way
the news is the same as the first answer's would have been: it is derived from the lock as it was let go
(:func:`as_let_go`), and told unless the worker's record shows it was told already (:func:`told_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from lockcore import machine, outcomes
from lockcore.record import LockRecord, Status
from workers.protocol.render import requester

FREE_AGAIN: Final = (" The lock is free again.", " The lock is free.")
"""How a piece of news says nobody holds the lock now — untrue once it was handed to the next in line."""


def as_let_go(freed: outcomes.Freed, seen: LockRecord | None) -> LockRecord:
    """The lock as its holder let go. A repeat whose write had handed the lock on finds the item the next holder's,
    and the store answers only who let go and how (key, token, owner, status); the holding's own facts — who
    started it, when, its run, its channel — are then the caller's read of it (``seen``, same token), and it was
    let go when the next holder took it."""
    record = freed.record
    if record.locked_at or seen is None or (seen.lock_key, seen.token) != (record.lock_key, record.token):
        return record
    handed = freed.handed_to
    return replace(
        seen,
        status=record.status,
        released_at=handed.record.locked_at if handed is not None else seen.released_at,
        released_by=record.released_by if record.released_by is not None else seen.released_by,
        queue=(),
        watchers=(),
    )


def told_key(record: LockRecord) -> str:
    """One holding of one lock: its news is told once (``<lock key>#<token>``)."""
    return f"{record.lock_key}#{record.token}"


def handed_text(handed: outcomes.HandOff) -> str:
    """``⏭️ Handed to <@U0BOB>, next in line (token 8).``"""
    who = requester(handed.entry.requesters[0])
    more = len(handed.entry.requesters) - 1
    also = f" (and {more} identical request{'s' if more > 1 else ''})" if more else ""
    return f"⏭️ Handed to {who}{also}, next in line (token {handed.record.token})."


@dataclass(frozen=True)
class FreeingNews:
    """What one freeing write tells: the channel, and the requesters coalesced into the holder's run."""

    channel: str
    """The news, and the hand-off if there was one."""
    coalesced: str
    """The news alone: they waited for the run, not for the lock."""


def news_of(news: str, handed: outcomes.HandOff | None) -> FreeingNews:
    """The channel hears the news and whom the lock went to; "free again" is left out when it went to someone."""
    if handed is None:
        return FreeingNews(news, news)
    said = next((news.removesuffix(free) for free in FREE_AGAIN if news.endswith(free)), news)
    return FreeingNews(f"{said} {handed_text(handed)}", news)


def released_by_this_run(record: LockRecord, correlation_id: str, run_id: int, outcome: Status) -> bool:
    """The lock as read shows this run's own release: its request's correlation id, this run noted, and released
    with the outcome the run's conclusion gives — a release whose answer was lost, or a duplicate event's."""
    noted = record.notes.get("runId", "")
    return (
        record.correlation_id == correlation_id
        and noted.isdigit()
        and int(noted) == run_id
        and record.status is outcome
        and outcome in machine.RELEASE_OUTCOMES
    )


def runs_under(record: LockRecord) -> bool:
    """A run may be going under this lock (a dispatch noted, a correlation id to find it by): freeing it other
    than by the run's own end (a force-unlock, an expiry) leaves the run going, to be reported when it ends."""
    return record.notes.get("dispatchState") in ("dispatching", "dispatched") and bool(record.correlation_id)
