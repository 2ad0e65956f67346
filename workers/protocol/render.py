"""Lock outcomes and records as text a person reads: the CLI's lines and tables, and the pieces of the Slack replies.

Pure functions of a record (or an outcome) and the clock: no I/O, no decisions. What state a lock is in is
:func:`lockcore.machine.state_of`'s answer, never guessed here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from lockcore import machine, outcomes
from lockcore.record import LockRecord, Requester, epoch, iso
from workers.protocol.config import SLACK_USER_ID
from workers.protocol.message import Message, escape
from workers.protocol.windows import Occurrence


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


class Shown(StrEnum):
    """How a person is shown, by where the words are read."""

    NAME_AND_MENTION = "name and mention"
    """``alice (<@U0ALICE>)``: the status, the unlock prompt, a freeze — who exactly, without guessing."""
    MENTION = "mention"
    """``<@U0ALICE>``: news in the channel, which notifies the person it is about."""
    NAME = "name"
    """``alice``: a reply to someone else (busy, queued), which has no reason to notify the holder."""
    PLAIN = "plain"
    """``alice (U0ALICE)``: a terminal, where nothing is mrkdwn."""


def person(user: str, name: str, owner: str, shown: Shown) -> str:
    """A person as the record has them — Slack user id, display name, lock owner id — with the same fallbacks
    everywhere: the name or the mention ``shown`` asks for, else whichever the record has, else the owner."""
    if shown is Shown.PLAIN:
        if name and user:
            return f"{name} ({user})"
        return name or user or f"owner {owner or '?'}"
    mention = f"<@{user}>" if SLACK_USER_ID.fullmatch(user) else ""
    name = escape(name)
    if shown is Shown.NAME_AND_MENTION and name and mention:
        return f"{name} ({mention})"
    first, second = (mention, name) if shown is Shown.MENTION else (name, mention)
    return first or second or escape(user) or f"owner `{escape(owner) or '?'}`"


def holder(record: LockRecord, shown: Shown = Shown.NAME_AND_MENTION) -> str:
    """Who holds (or last held) the lock: :func:`person` of the record."""
    return person(record.locked_by, record.locked_by_name, record.owner, shown)


def requester(asker: Requester, shown: Shown = Shown.MENTION) -> str:
    """Who waits in a lock's queue: :func:`person` of the queue entry's requester."""
    return person(asker.user, asker.name, asker.owner, shown)


def lease_end(record: LockRecord, now: int) -> str:
    """``frees in 8m12s (10:10:00Z)`` while the lease runs, ``lease ended 10:10:00Z (3m00s ago)`` after."""
    left = record.lease_expires_at - now
    at = moment(record.lease_expires_at, now)
    return f"frees in {duration(left)} ({at})" if left > 0 else f"lease ended {at} ({duration(-left)} ago)"


def holder_line(record: LockRecord, now: int) -> str:
    """``held by alice (U123) since 10:00:00Z, frees in 8m12s (10:10:00Z), token 3``."""
    since = moment(record.locked_at, now)
    return f"held by {holder(record, Shown.PLAIN)} since {since}, {lease_end(record, now)}, token {record.token}"


def status_line(record: LockRecord | None, now: int) -> str:
    """One sentence on where the lock stands, whatever its state."""
    state = machine.state_of(record.to_item() if record is not None else None, now)
    if record is None or state is machine.LockState.FREE:
        return "free: no lock has been taken under this key yet"
    if state is machine.LockState.HELD:
        return holder_line(record, now)
    token = f"token {record.token}"
    if state is machine.LockState.LAPSED:
        return f"free: the lease of {holder(record, Shown.PLAIN)} ended {moment(record.lease_expires_at, now)}, {token}"
    released = moment(record.released_at or "", now)
    if state is machine.LockState.FORCE_RELEASED:
        why = f" ({record.release_reason})" if record.release_reason else ""
        return f"free: force-released by {record.released_by or '?'} at {released}{why}, {token}"
    return f"free: last taken by {holder(record, Shown.PLAIN)}, released {record.status.value} at {released}, {token}"


def outcome_lines(lock_key: str, outcome: outcomes.Outcome, now: int) -> list[str]:
    """What happened, in the words an operator needs to act on."""
    match outcome:
        case outcomes.Acquired(record, reentered=True):
            return [f"{lock_key}: already yours (a repeated acquire changes nothing), token {record.token}, "
                    f"{lease_end(record, now)}"]  # fmt: skip
        case outcomes.Acquired(record):
            return [f"{lock_key}: acquired, token {record.token}, {lease_end(record, now)}"]
        case outcomes.HeldBySomeone(holder):
            return [f"{lock_key}: {holder_line(holder, now)}"]
        case outcomes.Released(record, repeated=repeated):
            again = " (already released: nothing changed)" if repeated else ""
            return [f"{lock_key}: released as {record.status.value}, token {record.token}{again}"]
        case outcomes.Extended(record):
            return [f"{lock_key}: extended, token {record.token}, {lease_end(record, now)}"]
        case outcomes.ForceReleased(record, repeated=repeated):
            again = " (already force-released: nothing changed)" if repeated else ""
            return [f"{lock_key}: force-released by {record.released_by}, token {record.token}{again}"]
        case outcomes.MarkedExpired(record):
            return [f"{lock_key}: lease recorded as expired, token {record.token}"]
        case outcomes.NotHolder(reason, current):
            return [f"{lock_key}: refused: {reason.value}", f"  now {status_line(current, now)}"]
    raise TypeError(f"not an outcome: {outcome!r}")  # pragma: no cover


TABLE_HEADINGS = ("KEY", "STATE", "HOLDER", "SINCE", "EXPIRES IN", "TOKEN")


def table_row(record: LockRecord, now: int) -> tuple[str, ...]:
    state = machine.state_of(record.to_item(), now)
    left = record.lease_expires_at - now
    if state is machine.LockState.HELD:
        expires = duration(left)
    elif state is machine.LockState.LAPSED:
        expires = f"ended {duration(-left)} ago"
    else:
        expires = "-"
    since = moment(record.locked_at, now)
    return (record.lock_key, state.value, holder(record, Shown.PLAIN), since, expires, str(record.token))


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


def standing(record: LockRecord | None, now: int) -> str:
    """Where a lock stands now, in a few words: ``held by bob (<@U0BOB>) since <!date…>, token 4``."""
    state = machine.state_of(record.to_item() if record is not None else None, now)
    if record is None or state is machine.LockState.FREE:
        return "free: no lock was ever taken under this key"
    if state is machine.LockState.HELD:
        return f"held by {holder(record)} since {since(record)}, token {record.token}"
    if state is machine.LockState.LAPSED:
        return f"free: the lease of {holder(record)} ended {slack_date(record.lease_expires_at)}"
    released = slack_moment(record.released_at)
    if state is machine.LockState.FORCE_RELEASED:
        by = person(record.released_by, "", "", Shown.MENTION) if record.released_by else "?"  # (or "scheduler")
        return f"free: force-released by {by} {released}"
    return f"free: {holder(record)} released it ({record.status.value}) {released}"


def store_unavailable(what: str) -> Message:
    """The one line a user gets when the lock table did not answer."""
    return Message(f"⚠️ Sorry, I couldn't {what}: the lock table did not answer. Please try again in a moment.")


def run_link(record: LockRecord) -> str:
    """The run the holder started: a link when it noted one, its id, or why there is none yet."""
    url = record.notes.get("runUrl", "")
    run_id = record.notes.get("runId", "")
    label = f"run {run_id}" if run_id else "run"
    if url.startswith(("https://", "http://")) and not re.search(r"[\s<>|]", url):
        return f"<{url}|{escape(label)}>"
    if run_id:
        return escape(label)
    if record.notes.get("dispatchState"):
        return f"not known yet ({escape(record.notes['dispatchState'])})"
    return "none yet"


def lock_facts(record: LockRecord, now: int, *, token: bool = True) -> list[tuple[str, str]]:
    """A live lock's facts, each a title and its mrkdwn, as status and the App Home show them: the holder, since,
    the lease's end, the ``token`` (unless shown elsewhere), the run, and the commit when one is noted."""
    facts = [("Holder", holder(record)), ("Since", since(record)), ("Frees at", frees_at(record, now))]
    if token:
        facts.append(("Token", str(record.token)))
    facts.append(("Run", run_link(record)))
    sha = record.notes.get("commitSha", "")
    if sha:
        facts.append(("Commit", f"`{escape(sha[:12])}`"))
    return facts


def scheduled_line(occurrence: Occurrence) -> str:
    """``🗓️ Next scheduled freeze of prod: weekend, <!date…> to <!date…>: “reason”`` (status, the App Home)."""
    return (
        f"🗓️ Next scheduled freeze of *{escape(occurrence.environment)}*: {escape(occurrence.window)}, "
        f"{slack_date(occurrence.start)} to {slack_date(occurrence.end)}: “{escape(occurrence.reason)}”"
    )
