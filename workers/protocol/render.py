"""Lock outcomes and records as text a person reads: the CLI's lines and tables, and the pieces of the Slack replies.

Pure functions of a record (or an outcome) and the clock: no I/O, no decisions. What state a lock is in is
:func:`lockcore.machine.state_of`'s answer, never guessed here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from lockcore import machine as m
from lockcore.record import LockRecord, epoch, iso
from workers.protocol.message import Message, escape


def duration(seconds: int) -> str:
    """``45s``, ``8m12s``, ``1h02m``, ``3d04h``: two units at most, enough to act on."""
    seconds = max(seconds, 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def moment(when: str | int, now: int) -> str:
    """A UTC time of day (``10:00:00Z``), with the date in front when it is not today's."""
    try:
        at = when if isinstance(when, int) else epoch(when)
    except ValueError:
        return when if isinstance(when, str) and when else "?"
    stamp = iso(at)
    day, time_of_day = stamp[:10], stamp[11:]
    today = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    return time_of_day if day == today else f"{day} {time_of_day}"


def person(record: LockRecord) -> str:
    """Who holds (or last held) the lock: ``alice (U123)``, or the owner when no user was given."""
    if record.locked_by_name and record.locked_by:
        return f"{record.locked_by_name} ({record.locked_by})"
    return record.locked_by_name or record.locked_by or f"owner {record.owner or '?'}"


def lease_end(record: LockRecord, now: int) -> str:
    """``frees in 8m12s (10:10:00Z)`` while the lease runs, ``lease ended 10:10:00Z (3m00s ago)`` after."""
    left = record.lease_expires_at - now
    at = moment(record.lease_expires_at, now)
    return f"frees in {duration(left)} ({at})" if left > 0 else f"lease ended {at} ({duration(-left)} ago)"


def holder_line(record: LockRecord, now: int) -> str:
    """``held by alice (U123) since 10:00:00Z, frees in 8m12s (10:10:00Z), token 3``."""
    since = moment(record.locked_at, now)
    return f"held by {person(record)} since {since}, {lease_end(record, now)}, token {record.token}"


def status_line(record: LockRecord | None, now: int) -> str:
    """One sentence on where the lock stands, whatever its state."""
    state = m.state_of(record.to_item() if record is not None else None, now)
    if record is None or state is m.LockState.FREE:
        return "free: no lock has been taken under this key yet"
    if state is m.LockState.HELD:
        return holder_line(record, now)
    token = f"token {record.token}"
    if state is m.LockState.LAPSED:
        return f"free: the lease of {person(record)} ended {moment(record.lease_expires_at, now)}, {token}"
    released = moment(record.released_at or "", now)
    if state is m.LockState.FORCE_RELEASED:
        why = f" ({record.release_reason})" if record.release_reason else ""
        return f"free: force-released by {record.released_by or '?'} at {released}{why}, {token}"
    return f"free: last taken by {person(record)}, released {record.status.value} at {released}, {token}"


def outcome_lines(lock_key: str, outcome: m.Outcome, now: int) -> list[str]:
    """What happened, in the words an operator needs to act on."""
    match outcome:
        case m.Acquired(record, reentered=True):
            return [f"{lock_key}: already yours (a repeated acquire changes nothing), token {record.token}, "
                    f"{lease_end(record, now)}"]  # fmt: skip
        case m.Acquired(record):
            return [f"{lock_key}: acquired, token {record.token}, {lease_end(record, now)}"]
        case m.HeldBySomeone(holder):
            return [f"{lock_key}: {holder_line(holder, now)}"]
        case m.Released(record, repeated=repeated):
            again = " (already released: nothing changed)" if repeated else ""
            return [f"{lock_key}: released as {record.status.value}, token {record.token}{again}"]
        case m.Extended(record):
            return [f"{lock_key}: extended, token {record.token}, {lease_end(record, now)}"]
        case m.ForceReleased(record, repeated=repeated):
            again = " (already force-released: nothing changed)" if repeated else ""
            return [f"{lock_key}: force-released by {record.released_by}, token {record.token}{again}"]
        case m.MarkedExpired(record):
            return [f"{lock_key}: lease recorded as expired, token {record.token}"]
        case m.NotHolder(reason, current):
            return [f"{lock_key}: refused: {reason.value}", f"  now {status_line(current, now)}"]
    raise TypeError(f"not an outcome: {outcome!r}")  # pragma: no cover


TABLE_HEADINGS = ("KEY", "STATE", "HOLDER", "SINCE", "EXPIRES IN", "TOKEN")


def table_row(record: LockRecord, now: int) -> tuple[str, ...]:
    state = m.state_of(record.to_item(), now)
    left = record.lease_expires_at - now
    if state is m.LockState.HELD:
        expires = duration(left)
    elif state is m.LockState.LAPSED:
        expires = f"ended {duration(-left)} ago"
    else:
        expires = "-"
    since = moment(record.locked_at, now)
    return (record.lock_key, state.value, person(record), since, expires, str(record.token))


def table(records: Sequence[LockRecord], now: int) -> list[str]:
    """Aligned columns under :data:`TABLE_HEADINGS`, one line per record."""
    rows = [TABLE_HEADINGS, *(table_row(record, now) for record in records)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(TABLE_HEADINGS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


# ------------------------------------------------------------------------------------------ Slack mrkdwn
def slack_date(at: int) -> str:
    """``<!date^EPOCH^{date_short_pretty} {time}|2026-01-01 10:00 UTC>``: each reader sees their own timezone."""
    fallback = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{at}^{{date_short_pretty}} {{time}}|{fallback}>"


def slack_moment(iso_time: str | None) -> str:
    """An ISO time from the record as a Slack date; as it is (escaped) if it is not one of ours."""
    try:
        return slack_date(epoch(iso_time or ""))
    except ValueError:
        return escape(iso_time or "") or "?"


def since(record: LockRecord) -> str:
    return slack_moment(record.locked_at)


def frees_at(record: LockRecord, now: int) -> str:
    """``<!date…> (in 8m12s)`` while the lease runs, ``<!date…> (ended 3m00s ago)`` after."""
    left = record.lease_expires_at - now
    relative = f"in {duration(left)}" if left > 0 else f"ended {duration(-left)} ago"
    return f"{slack_date(record.lease_expires_at)} ({relative})"


def holder(record: LockRecord) -> str:
    """``alice (<@U0ALICE>)``; the user id or the owner alone when that is all the record has."""
    name = escape(record.locked_by_name)
    mention = f"<@{record.locked_by}>" if re.fullmatch(r"[UW][A-Z0-9]{2,20}", record.locked_by) else ""
    if name and mention:
        return f"{name} ({mention})"
    return name or mention or escape(record.locked_by) or f"owner `{escape(record.owner) or '?'}`"


def standing(record: LockRecord | None, now: int) -> str:
    """Where a lock stands now, in a few words: ``held by bob (<@U0BOB>) since <!date…>, token 4``."""
    state = m.state_of(record.to_item() if record is not None else None, now)
    if record is None or state is m.LockState.FREE:
        return "free: no lock was ever taken under this key"
    if state is m.LockState.HELD:
        return f"held by {holder(record)} since {since(record)}, token {record.token}"
    if state is m.LockState.LAPSED:
        return f"free: the lease of {holder(record)} ended {slack_date(record.lease_expires_at)}"
    released = slack_moment(record.released_at)
    if state is m.LockState.FORCE_RELEASED:
        by = f"<@{record.released_by}>" if record.released_by else "?"
        return f"free: force-released by {by} {released}"
    return f"free: {holder(record)} released it ({record.status.value}) {released}"


def store_unavailable(what: str) -> Message:
    """The one line a user gets when the lock table did not answer."""
    return Message(f"⚠️ Sorry, I couldn't {what}: the lock table did not answer. Please try again in a moment.")
