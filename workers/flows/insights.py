"""``/build history <component> <env>`` and ``/build stats [days]``: the lock history
(:mod:`workers.flows.history`) read
back for people. Handled by the status worker; pure rendering here, one read each.

- **history** — one ``Query`` on the history table (newest first, ``Limit`` 10): who, when (``<!date…>``, in each
  reader's timezone), what happened (acquired, released COMPLETED / FAILED, expired, force-released, cancelled,
  extended, frozen, unfrozen) and, for an ending, how long the lock was held.
- **stats** — the events of the last ``days`` (a filtered ``Scan``: the table keeps 30 days at most) reduced by
  :func:`stats_of`: acquisitions, outcomes, failure rate (FAILED among the runs that reported COMPLETED or FAILED),
  average and p95 lock duration (over every ending), the busiest keys and hours (UTC, by acquisitions), and the
  refusals ("already in progress", or a deploy to a frozen environment) — which change no lock item, so the build
  worker records them in the history itself once it has answered (:data:`workers.flows.history.EventKind.REFUSE`).
  Freezes are left out: a freeze is not a build.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import botocore.exceptions

from workers.adapters import runtime
from workers.adapters.history_table import HistoryTable
from workers.protocol.commands import History, Stats
from workers.protocol.config import Config
from workers.protocol.envelope import CommandEnvelope
from workers.protocol.history import ACQUISITIONS, ENDINGS, FREEZE_PREFIX, EventKind, HistoryEvent
from workers.protocol.message import Message, escape
from workers.protocol.render import Shown, duration, person, slack_date

HISTORY_SHOWN: Final = 10
BUSIEST_SHOWN: Final = 5


# ------------------------------------------------------------------------------------------------- history
def who(event: HistoryEvent) -> str:
    """A person by name and mention; a holder that is no Slack user (a freeze window) by its name alone."""
    if not event.who and not event.who_name:
        return "someone"
    return person(event.who, event.who_name, "", Shown.NAME_AND_MENTION)


def describe_event(event: HistoryEvent) -> str:
    """``✅ released COMPLETED by alice (<@U0ALICE>) after 4m12s``."""
    held = f" after {duration(event.duration)}" if event.duration is not None else ""
    reason = f": “{escape(event.reason)}”" if event.reason else ""
    match event.kind:
        case EventKind.ACQUIRE:
            return f"🔒 acquired by {who(event)}"
        case EventKind.RELEASE if event.outcome == "COMPLETED":
            return f"✅ released COMPLETED by {who(event)}{held}"
        case EventKind.RELEASE:
            return f"❌ released {escape(event.outcome)} by {who(event)}{held}"
        case EventKind.EXPIRE:
            return f"⌛ lease of {who(event)} expired{held}{reason}"
        case EventKind.FORCE_RELEASE:
            return f"🔓 force-released by {who(event)}{held}{reason}"
        case EventKind.CANCEL:
            return f"🛑 cancelled by {who(event)}{held}"
        case EventKind.EXTEND:
            return f"⏱️ lease extended by {who(event)}"
        case EventKind.FREEZE:
            return f"🧊 frozen by {who(event)}"
        case EventKind.UNFREEZE:
            return f"☀️ unfrozen by {who(event)}{held}"
        case EventKind.HAND_OFF:
            return f"🤝 handed from the queue to {who(event)}"
        case EventKind.REFUSE:
            return f"🚫 {who(event)} refused{reason}"


def ran(event: HistoryEvent) -> str:
    """`` at `1a2b3c4` (⏪ rollback)``: the commit the holding ran, when the history knows it."""
    if not event.commit_sha:
        return ""
    return f" at `{escape(event.commit_sha[:7])}`" + (" (⏪ rollback)" if event.rollback else "")


def history_message(lock_key: str, events: Sequence[HistoryEvent]) -> Message:
    key = escape(lock_key)
    if not events:
        text = f"📜 No history for `{key}` in the last 30 days."
        return Message(text, [_section(text)])
    lines = [f"• {slack_date(e.epoch)} — {describe_event(e)}{ran(e)} (token {e.token})" for e in events[:HISTORY_SHOWN]]
    title = f"📜 *The last {len(lines)} event{'s' if len(lines) != 1 else ''} of `{key}`*, newest first"
    blocks = [_section(title), {"type": "divider"}, _section("\n".join(lines))]
    return Message(f"The last {len(lines)} events of {lock_key}", blocks)


# --------------------------------------------------------------------------------------------------- stats
@dataclass(frozen=True)
class LockStats:
    days: int
    acquisitions: int
    refusals: int
    """Requests refused: the lock was busy, or the environment frozen."""
    outcomes: dict[str, int]
    """Endings by outcome: COMPLETED, FAILED, EXPIRED, FORCE_RELEASED."""
    cancelled: int
    failure_rate: float | None
    average_seconds: int | None
    p95_seconds: int | None
    busiest_keys: list[tuple[str, int]]
    busiest_hours: list[tuple[int, int]]
    """(hour of day, UTC; acquisitions)."""


def p95(values: Sequence[int]) -> int | None:
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def stats_of(events: Iterable[HistoryEvent], days: int) -> LockStats:
    builds = [e for e in events if not e.lock_key.startswith(FREEZE_PREFIX)]
    acquires = [e for e in builds if e.kind in ACQUISITIONS]
    endings = [e for e in builds if e.kind in ENDINGS]
    outcomes = Counter(e.outcome for e in endings)
    reported = outcomes["COMPLETED"] + outcomes["FAILED"]
    durations = [e.duration for e in endings if e.duration is not None]
    hours = Counter(datetime.fromtimestamp(e.epoch, UTC).hour for e in acquires)
    return LockStats(
        days=days,
        acquisitions=len(acquires),
        refusals=sum(e.kind is EventKind.REFUSE for e in builds),
        outcomes=dict(outcomes),
        cancelled=sum(e.kind is EventKind.CANCEL for e in endings),
        failure_rate=outcomes["FAILED"] / reported if reported else None,
        average_seconds=round(sum(durations) / len(durations)) if durations else None,
        p95_seconds=p95(durations),
        busiest_keys=Counter(e.lock_key for e in acquires).most_common(BUSIEST_SHOWN),
        busiest_hours=sorted(hours.items(), key=lambda pair: (-pair[1], pair[0]))[:3],
    )


def stats_message(stats: LockStats, now: int) -> Message:
    def maybe(seconds: int | None) -> str:
        return duration(seconds) if seconds is not None else "n/a"

    rate = f"{stats.failure_rate:.0%}" if stats.failure_rate is not None else "n/a"
    out = stats.outcomes
    fields = [
        _field("Acquisitions", str(stats.acquisitions)),
        _field("Refused (busy or frozen)", str(stats.refusals)),
        _field("Completed / failed", f"{out.get('COMPLETED', 0)} / {out.get('FAILED', 0)}"),
        _field("Failure rate", rate),
        _field("Expired", str(out.get("EXPIRED", 0))),
        _field("Force-released (cancelled)", f"{out.get('FORCE_RELEASED', 0)} ({stats.cancelled})"),
        _field("Lock held: average / p95", f"{maybe(stats.average_seconds)} / {maybe(stats.p95_seconds)}"),
    ]
    keys = "\n".join(f"`{escape(key)}` — {count}" for key, count in stats.busiest_keys) or "none"
    hours = ", ".join(f"{hour:02d}:00 ({count})" for hour, count in stats.busiest_hours) or "none"
    period = f"the last {stats.days} day{'s' if stats.days != 1 else ''}"
    blocks: list[dict[str, Any]] = [
        _section(f"📊 *Locks over {period}*"),
        {"type": "section", "fields": fields},
        _section(f"*Busiest keys*\n{keys}"),
        _section(f"*Busiest hours (UTC)*\n{hours}"),
        _context(f"As of {slack_date(now)}, from the lock history."),
    ]
    text = (
        f"Locks over {period}: {stats.acquisitions} acquisitions, {stats.refusals} refused, failure rate {rate}, "
        f"held {maybe(stats.average_seconds)} on average, p95 {maybe(stats.p95_seconds)}"
    )
    return Message(text, blocks)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _field(title: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{title}*\n{value}"}


def history_unavailable() -> Message:
    return Message("⚠️ Sorry, I couldn't read the lock history: its table did not answer. Please try again shortly.")


# ------------------------------------------------------------------------------------------------- the work
def handle(
    envelope: CommandEnvelope, command: History | Stats, *, config: Config, now: int, table: HistoryTable | None = None
) -> None:
    """One ``/build history`` or ``/build stats``, on the status worker."""
    table = table if table is not None else runtime.history()
    try:
        if isinstance(command, History):
            lock_key = config.commands[command.action].lock_key(command.component, command.environment)
            message = history_message(lock_key, table.recent(lock_key, HISTORY_SHOWN))
        else:
            message = stats_message(stats_of(table.since(now - command.days * 86_400), command.days), now)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        runtime.logger.error("history: the table did not answer", reason=str(error))
        message = history_unavailable()
    runtime.logger.info("history answered", command=command.kind)
    runtime.slack_replies().reply(envelope.response_url, message, correlation_id=envelope.correlation_id)
