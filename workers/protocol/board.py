"""The App Home lock board: the live locks, their queues and watchers, the freezes and the newest history, as
one Home view (``{"type": "home", "blocks": [...]}``) for one viewer, within Block Kit's limits.

Pure: a function of what the lock table and the history hold, the viewer and the clock. Which buttons a lock
shows depends on who looks (the holder may cancel their run, a waiting user may leave the queue, an admin may
force-unlock), so a view is rendered per viewer. The layout and the limits it keeps are in docs/slack.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lockcore import machine
from lockcore.record import LockRecord, Requester
from workers.protocol.envelope import (  # the Home's buttons and answers are the envelopes' to name
    HOME_CANCEL_ACTION,
    HOME_DEQUEUE_ACTION,
    HOME_NEXT_ACTION,
    HOME_PREVIOUS_ACTION,
    LOCK_WATCH_ACTION,
    UNLOCK_CONFIRM_ACTION,
)
from workers.protocol.history import FREEZE_PREFIX, HistoryEvent
from workers.protocol.message import escape
from workers.protocol.render import (
    Shown,
    frees_at,
    holder,
    lock_facts,
    person,
    requester,
    scheduled_line,
    since,
    slack_date,
    slack_moment,
)
from workers.protocol.windows import Occurrence

# Block Kit's limits for a Home view (docs.slack.dev, "Blocks" and each block's and element's reference).
MAX_BLOCKS: Final = 100
MAX_TEXT: Final = 3000
"""A section's text, a context element's text."""
MAX_FIELDS: Final = 10
MAX_FIELD_TEXT: Final = 2000
MAX_BUTTON_TEXT: Final = 75
MAX_ACTION_ID: Final = 255
MAX_BLOCK_ID: Final = 255
MAX_VALUE: Final = 2000
MAX_HEADER_TEXT: Final = 150
MAX_CONTEXT_ELEMENTS: Final = 10

HOME_WINDOW_SECONDS: Final = 30 * 60
"""How long after opening the Home a viewer's board is kept current: Slack sends no "closed" event."""
PAGE_SIZE: Final = 12
"""Locks per page, after the viewer's own."""
MAX_MINE: Final = 10
"""The viewer's own locks shown in full; more are counted."""
MAX_FREEZES: Final = 5
MAX_HISTORY: Final = 6
MAX_PEOPLE_NAMED: Final = 8
"""People named in one queue or watcher line; the rest are counted."""
MAX_NAME_CHARS: Final = 60
MAX_REASON_CHARS: Final = 200


@dataclass(frozen=True)
class Viewer:
    user_id: str
    admin: bool = False
    page: int = 0


@dataclass(frozen=True)
class Board:
    """What the board shows, read once per refresh and rendered for each viewer."""

    records: Sequence[LockRecord]
    """Every lock item the table holds; only the live ones are shown."""
    now: int
    events: Sequence[HistoryEvent] = ()
    """The newest history events (any order; the newest :data:`MAX_HISTORY` are shown)."""
    freeze_reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Each live freeze's reason, by its lock key."""
    scheduled: Sequence[Occurrence] = ()
    """Each environment's next scheduled freeze window (:mod:`workers.protocol.windows`)."""

    def live(self) -> list[LockRecord]:
        return [record for record in self.records if machine.is_live(record.to_item(), self.now)]


# ------------------------------------------------------------------------------------------------ the view
def home_view(board: Board, viewer: Viewer) -> dict[str, Any]:
    """The Home of ``viewer``: their own locks first, then the freezes, a page of the others, the history."""
    live = board.live()
    freezes = sorted((r for r in live if r.lock_key.startswith(FREEZE_PREFIX)), key=lambda r: r.lock_key)
    locks = sorted((r for r in live if not r.lock_key.startswith(FREEZE_PREFIX)), key=lambda r: r.lock_key)
    mine = [record for record in locks if _concerns(record, viewer.user_id)]
    others = [record for record in locks if not _concerns(record, viewer.user_id)]
    pages = max(1, -(-len(others) // PAGE_SIZE))
    page = min(max(viewer.page, 0), pages - 1)
    count = f"{len(locks)} lock{'' if len(locks) == 1 else 's'} held"
    frozen = f", {len(freezes)} environment{'' if len(freezes) == 1 else 's'} frozen" if freezes else ""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Build and deploy locks"}},
        _context(
            f"*{count}{frozen}* as of {slack_date(board.now)}. This tab stays current for "
            f"{HOME_WINDOW_SECONDS // 60} minutes after you open it."
        ),
    ]
    if mine:
        blocks += [{"type": "divider"}, _section("*Yours*")]
        for index, record in enumerate(mine[:MAX_MINE]):
            blocks += _lock_blocks(record, viewer, board.now, f"mine-{index}")
        if len(mine) > MAX_MINE:
            blocks.append(_context(f"…and {len(mine) - MAX_MINE} more of yours: `/build status --locks` lists all."))
    if freezes or board.scheduled:
        blocks += [{"type": "divider"}, _section("*Freezes*")]
        for index, record in enumerate(freezes[:MAX_FREEZES]):
            blocks.append(_freeze_block(record, board, f"freeze-{index}"))
        if len(freezes) > MAX_FREEZES:
            blocks.append(_context(f"…and {len(freezes) - MAX_FREEZES} more freezes."))
        if board.scheduled:  # one block, an element per environment
            lines = [_mrkdwn(scheduled_line(occurrence)) for occurrence in board.scheduled[:MAX_CONTEXT_ELEMENTS]]
            blocks.append({"type": "context", "elements": lines})
    blocks += [{"type": "divider"}, _section("*Everyone's locks*" if not mine else "*Other locks*")]
    shown = others[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    if not shown:
        blocks.append(_context("No other build or deploy holds a lock right now."))
    for index, record in enumerate(shown):
        blocks += _lock_blocks(record, viewer, board.now, f"lock-{index}")
    if pages > 1:
        first = page * PAGE_SIZE + 1
        last = first + len(shown) - 1
        blocks.append(_context(f"Page {page + 1} of {pages}: locks {first} to {last} of {len(others)}."))
        blocks.append(_paging(page, pages))
    blocks += _history_blocks(board)
    return {"type": "home", "blocks": blocks}


def _concerns(record: LockRecord, user_id: str) -> bool:
    """The viewer holds the lock, waits for it or watches it."""
    return record.locked_by == user_id or user_id in record.watchers or _waits(record, user_id)


def _waits(record: LockRecord, user_id: str) -> bool:
    return any(asker.user == user_id for entry in record.queue for asker in entry.requesters)


# --------------------------------------------------------------------------------------------- one lock
def _lock_blocks(record: LockRecord, viewer: Viewer, now: int, block_id: str) -> list[dict[str, Any]]:
    """A lock's section (its facts as fields), its queue and watchers (a context), and the viewer's buttons."""
    shown = dataclasses.replace(record, locked_by_name=record.locked_by_name[:MAX_NAME_CHARS])
    fields = [_field(title, value) for title, value in lock_facts(shown, now, token=False)]
    section = _section(f"*`{escape(record.lock_key)}`* · token {record.token}", block_id)
    section["fields"] = fields[:MAX_FIELDS]
    blocks = [section]
    people = [line for line in (_queue_line(record), _watchers_line(record)) if line]
    if people:
        blocks.append({"type": "context", "elements": [_mrkdwn(line) for line in people]})
    buttons = _buttons(record, viewer)
    if buttons:
        blocks.append({"type": "actions", "block_id": _clip(f"{block_id}-actions", MAX_BLOCK_ID), "elements": buttons})
    return blocks


def _queue_line(record: LockRecord) -> str:
    if not record.queue:
        return ""
    named = []
    for position, entry in enumerate(record.queue[:MAX_PEOPLE_NAMED], start=1):
        asker = entry.requesters[0] if entry.requesters else None
        who = requester(_short(asker)) if asker is not None else "?"
        more = len(entry.requesters) - 1
        named.append(f"{position}. {who}" + (f" (+{more})" if more > 0 else ""))
    rest = len(record.queue) - MAX_PEOPLE_NAMED
    return f"⏳ {len(record.queue)} waiting: " + ", ".join(named) + (f", and {rest} more" if rest > 0 else "")


def _watchers_line(record: LockRecord) -> str:
    if not record.watchers:
        return ""
    named = [person(user[:MAX_NAME_CHARS], "", "", Shown.MENTION) for user in record.watchers[:MAX_PEOPLE_NAMED]]
    rest = len(record.watchers) - MAX_PEOPLE_NAMED
    return "👀 Watching: " + ", ".join(named) + (f", and {rest} more" if rest > 0 else "")


def _short(asker: Requester) -> Requester:
    return dataclasses.replace(asker, name=asker.name[:MAX_NAME_CHARS], user=asker.user[:MAX_NAME_CHARS])


def _buttons(record: LockRecord, viewer: Viewer) -> list[dict[str, Any]]:
    """What the viewer may do about this lock: the same rules as the commands, which the workers check again."""
    key = record.lock_key
    if len(key) + 20 > MAX_VALUE:  # never a configured key; a value Slack would refuse is no button at all
        return []
    buttons = []
    if record.locked_by == viewer.user_id:
        buttons.append(
            _button(
                "Cancel my run",
                HOME_CANCEL_ACTION,
                f"{key}:{record.token}",
                confirm=("Cancel your run?", f"Cancels the run holding {key} and frees the lock."),
            )
        )
    elif viewer.user_id not in record.watchers:
        buttons.append(_button("🔔 Notify me when free", LOCK_WATCH_ACTION, key))
    if _waits(record, viewer.user_id):
        buttons.append(_button("Leave the queue", HOME_DEQUEUE_ACTION, key))
    if viewer.admin:
        buttons.append(
            _button(
                "Force unlock",
                UNLOCK_CONFIRM_ACTION,
                f"{key}:{record.token}",
                style="danger",
                confirm=("Force-unlock?", f"Releases {key} (token {record.token}); the run is not stopped."),
            )
        )
    return buttons


def _freeze_block(record: LockRecord, board: Board, block_id: str) -> dict[str, Any]:
    shown = dataclasses.replace(record, locked_by_name=record.locked_by_name[:MAX_NAME_CHARS])
    reason = board.freeze_reasons.get(record.lock_key, "")[:MAX_REASON_CHARS]
    section = _section(f"🧊 *`{escape(record.lock_key.removeprefix(FREEZE_PREFIX))}`* is frozen", block_id)
    section["fields"] = [
        _field("Frozen by", holder(shown)),
        _field("Since", since(shown)),
        _field("Reason", escape(reason) or "none given"),
        _field("Ends at", frees_at(shown, board.now)),
    ]
    return section


def _paging(page: int, pages: int) -> dict[str, Any]:
    elements = []
    if page > 0:
        elements.append(_button("◀ Previous", HOME_PREVIOUS_ACTION, str(page - 1)))
    if page < pages - 1:
        elements.append(_button("Next ▶", HOME_NEXT_ACTION, str(page + 1)))
    return {"type": "actions", "block_id": "paging", "elements": elements}


# ---------------------------------------------------------------------------------------------- history
def _history_blocks(board: Board) -> list[dict[str, Any]]:
    events = sorted(board.events, key=lambda event: (event.at, event.token), reverse=True)[:MAX_HISTORY]
    if not events:
        return []
    lines = [f"• {slack_moment(event.at)} `{escape(event.lock_key[:120])}` {_event_text(event)}" for event in events]
    return [{"type": "divider"}, _section("*Lately*\n" + "\n".join(lines))]


def _event_text(event: HistoryEvent) -> str:
    who = person(event.who[:MAX_NAME_CHARS], event.who_name[:MAX_NAME_CHARS], "", Shown.NAME) or "someone"
    outcome = f" ({escape(event.outcome[:30])})" if event.outcome else ""
    return f"{escape(event.kind.value)} by {who}{outcome}, token {event.token}"


# ------------------------------------------------------------------------------------------------ blocks
def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(text, MAX_TEXT)}


def _section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": _mrkdwn(text)}
    if block_id:
        block["block_id"] = _clip(block_id, MAX_BLOCK_ID)
    return block


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _field(title: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(f"*{title}*\n{value}", MAX_FIELD_TEXT)}


def _button(
    text: str, action_id: str, value: str, *, style: str | None = None, confirm: tuple[str, str] | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": _clip(text, MAX_BUTTON_TEXT)},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    if confirm is not None:
        title, body = confirm
        button["confirm"] = {
            "title": {"type": "plain_text", "text": _clip(title, 100)},
            "text": {"type": "plain_text", "text": _clip(body, 300)},
            "confirm": {"type": "plain_text", "text": "Yes"},
            "deny": {"type": "plain_text", "text": "No"},
        }
        if style:
            button["confirm"]["style"] = style
    return button
