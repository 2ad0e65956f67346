"""The lock history as events: what each change of a lock item means (:func:`events_of`, old image → new image),
and the event's own item. Pure; the stream writer (:mod:`workers.flows.history`) and the table
(:mod:`workers.adapters.history_table`) act on it. The design is told in :mod:`workers.flows.history`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from lockcore import record as r
from lockcore.expressions import Item
from lockcore.record import Status, epoch, iso
from workers.protocol.windows import ended_reason

RETENTION_SECONDS: Final = 30 * 24 * 3600
FREEZE_PREFIX: Final = "freeze-"
REFUSED_PREFIX: Final = "refused#"
SORT_KEY: Final = "at"
COMMIT_SHA: Final = "commitSha"
REF: Final = "ref"
ROLLBACK: Final = "rollback"
"""The holder's notes the history keeps (the rest — the run, the dispatch state — is not history)."""
ROLLBACK_NOTED: Final = "true"
"""The ``rollback`` note's value on the lock of a ``/deploy rollback``."""


class EventKind(StrEnum):
    ACQUIRE = "acquire"
    RELEASE = "release"
    EXPIRE = "expire"
    FORCE_RELEASE = "force-release"
    CANCEL = "cancel"
    EXTEND = "extend"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    HAND_OFF = "hand-off"
    REFUSE = "refuse"
    """A request refused because the lock was busy (or the environment frozen). A refused write changes no
    item, so the stream never sees it: the build worker puts it here itself, after it has answered the user —
    one PutItem off the lock's path — under its own partition (``refused#<lock key>``), so that
    ``/build history`` (one Query per key) shows the lock's life, and ``/build stats`` counts the refusals."""


ENDINGS: Final = frozenset(
    {EventKind.RELEASE, EventKind.EXPIRE, EventKind.FORCE_RELEASE, EventKind.CANCEL, EventKind.UNFREEZE}
)
"""The release-type events: each ends one holding of the lock, with an outcome and a duration."""
BEGINNINGS: Final = frozenset({EventKind.ACQUIRE, EventKind.FREEZE, EventKind.HAND_OFF})
ACQUISITIONS: Final = frozenset({EventKind.ACQUIRE, EventKind.HAND_OFF})
"""A build or deploy took the lock: by asking, or handed it from the queue."""


@dataclass(frozen=True)
class HistoryEvent:
    lock_key: str
    kind: EventKind
    token: int
    at: str
    """ISO-8601 UTC time of the event."""
    who: str = ""
    """The user id: the holder for an acquire, release or expiry; whoever force-released for the others."""
    who_name: str = ""
    outcome: str = ""
    """The lock's status after an ending (COMPLETED, FAILED, EXPIRED, FORCE_RELEASED); empty otherwise."""
    duration: int | None = None
    """Seconds from the acquire to the ending (for endings)."""
    reason: str = ""
    component: str = ""
    environment: str = ""
    correlation_id: str = ""
    commit_sha: str = ""
    """The commit the holding's run was dispatched at (the lock's ``commitSha`` note): on endings, and on a hand-off
    or acquire whose image has it. Empty for events recorded before the history kept it, and for freezes."""
    ref: str = ""
    """The ref as the user asked for it (the lock's ``ref`` note): a branch, a tag or a commit."""
    rollback: bool = False
    """The holding was a ``/deploy rollback`` (the lock's ``rollback`` note)."""

    @property
    def sort_key(self) -> str:
        key = f"{self.at}#{self.token:020d}#{self.kind.value}"
        # Many may be refused in the same second under the same holder: each refusal is its own request's.
        return f"{key}#{self.correlation_id}" if self.kind is EventKind.REFUSE else key

    @property
    def partition(self) -> str:
        return REFUSED_PREFIX + self.lock_key if self.kind is EventKind.REFUSE else self.lock_key

    @property
    def epoch(self) -> int:
        return epoch(self.at)

    def to_item(self) -> Item:
        item: Item = {
            r.KEY: self.partition,
            SORT_KEY: self.sort_key,
            "event": self.kind.value,
            r.TOKEN: self.token,
            "eventAt": self.at,
            "ttl": self.epoch + RETENTION_SECONDS,
        }
        optional: dict[str, str | int | None] = {
            "who": self.who,
            "whoName": self.who_name,
            "outcome": self.outcome,
            "durationSeconds": self.duration,
            "reason": self.reason,
            r.COMPONENT: self.component,
            r.ENVIRONMENT: self.environment,
            r.CORRELATION_ID: self.correlation_id,
            COMMIT_SHA: self.commit_sha,
            REF: self.ref,
        }
        item.update({name: value for name, value in optional.items() if value not in (None, "")})
        if self.rollback:  # as the lock notes it (a string: the items come back through lockcore's from_wire)
            item[ROLLBACK] = ROLLBACK_NOTED
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> HistoryEvent:
        def text(name: str) -> str:
            value = item.get(name, "")
            return value if isinstance(value, str) else str(value)

        duration = item.get("durationSeconds")
        return cls(
            lock_key=text(r.KEY).removeprefix(REFUSED_PREFIX),
            kind=EventKind(text("event")),
            token=int(item.get(r.TOKEN, 0)),
            at=text("eventAt"),
            who=text("who"),
            who_name=text("whoName"),
            outcome=text("outcome"),
            duration=int(duration) if duration is not None else None,
            reason=text("reason"),
            component=text(r.COMPONENT),
            environment=text(r.ENVIRONMENT),
            correlation_id=text(r.CORRELATION_ID),
            commit_sha=text(COMMIT_SHA),
            ref=text(REF),
            rollback=text(ROLLBACK) == ROLLBACK_NOTED,
        )


# ------------------------------------------------------------------------------------------------ deriving
def _text(item: Item, name: str) -> str:
    value = item.get(name, "")
    return value if isinstance(value, str) else str(value)


def _number(item: Item, name: str) -> int | None:
    value = item.get(name)
    return value if isinstance(value, int) else None


def _held_for(item: Item, until: str) -> int | None:
    try:
        return max(epoch(until) - epoch(_text(item, r.LOCKED_AT)), 0)
    except ValueError:
        return None


def _base(item: Item) -> dict[str, Any]:
    """What every event of a holding takes from the image that has it: the lock, the token, what ran (the notes
    kept in the history, when the holder has noted them: an acquire clears them, a release keeps them)."""
    return {
        "lock_key": _text(item, r.KEY),
        "token": _number(item, r.TOKEN) or 0,
        "component": _text(item, r.COMPONENT),
        "environment": _text(item, r.ENVIRONMENT),
        "correlation_id": _text(item, r.CORRELATION_ID),
        "commit_sha": _text(item, COMMIT_SHA),
        "ref": _text(item, REF),
        "rollback": _text(item, ROLLBACK) == ROLLBACK_NOTED,
    }


def _holder(item: Item) -> dict[str, Any]:
    return {"who": _text(item, r.LOCKED_BY), "who_name": _text(item, r.LOCKED_BY_NAME)}


def _lapsed(old: Item, at: str) -> HistoryEvent:
    """The old holder's lease ended and nobody recorded it before the next acquire: an expiry at the lease end."""
    end = _number(old, r.LEASE_EXPIRES_AT) or _number(old, r.LEGACY_TTL)
    when = iso(end) if end is not None else at
    return HistoryEvent(
        kind=EventKind.EXPIRE,
        at=when,
        outcome=Status.EXPIRED.value,
        duration=_held_for(old, when),
        reason=_expiry_reason(old),
        **_holder(old),
        **_base(old),
    )


def _expiry_reason(item: Item) -> str:
    """A freeze window's lease runs out at the window's end: its expiry says so."""
    if not _text(item, r.KEY).startswith(FREEZE_PREFIX):
        return ""
    return ended_reason(_text(item, r.OWNER)) or ""


def _handed_on(old: Item, new: Item) -> HistoryEvent:
    """The write that freed the old holder's lock handed it to the head of the queue (lockcore's ``previous…``
    attributes say how it freed): the old holder's ending, at the hand-off. A force-release's reason is not kept
    across a hand-off, so a cancel shows as a force-release there."""
    status = r.status_of({r.STATUS: new.get(r.PREVIOUS_STATUS, "")})
    at = _text(new, r.LOCKED_AT)
    if status is Status.FORCE_RELEASED:
        kind = EventKind.UNFREEZE if _text(new, r.KEY).startswith(FREEZE_PREFIX) else EventKind.FORCE_RELEASE
        who: dict[str, Any] = {"who": _text(new, r.PREVIOUS_RELEASED_BY), "who_name": ""}
    else:
        kind = EventKind.EXPIRE if status is Status.EXPIRED else EventKind.RELEASE
        who = _holder(old)
    return HistoryEvent(kind=kind, at=at, outcome=status.value, duration=_held_for(old, at), **who, **_base(old))


def _ending(old: Item, new: Item, status: Status, changed_at: str) -> HistoryEvent:
    at = _text(new, r.RELEASED_AT) or changed_at
    freeze = _text(new, r.KEY).startswith(FREEZE_PREFIX)
    if status is Status.FORCE_RELEASED:
        reason = _text(new, r.RELEASE_REASON)
        kind = (
            EventKind.UNFREEZE
            if freeze
            else EventKind.CANCEL
            if reason.lower().startswith("cancelled")
            else EventKind.FORCE_RELEASE
        )
        who: dict[str, Any] = {"who": _text(new, r.RELEASED_BY), "who_name": ""}
    else:
        kind = EventKind.EXPIRE if status is Status.EXPIRED else EventKind.RELEASE
        reason = _expiry_reason(new) if status is Status.EXPIRED else ""
        who = _holder(new)
    return HistoryEvent(
        kind=kind, at=at, outcome=status.value, duration=_held_for(new, at), reason=reason, **who, **_base(new)
    )


def events_of(old: Item | None, new: Item | None, changed_at: int) -> list[HistoryEvent]:
    """What one change of a lock item means, oldest first. ``changed_at`` (epoch seconds, the stream record's
    approximate creation time) dates the events the item itself does not date (an extend)."""
    if new is None:  # a deleted item (by hand; lock items carry no ttl): nothing happened to a lock
        return []
    changed = iso(changed_at)
    old_token = _number(old, r.TOKEN) if old is not None else None
    new_token = _number(new, r.TOKEN)
    old_status = r.status_of(old) if old is not None else None
    new_status = r.status_of(new)
    events: list[HistoryEvent] = []
    if new_token != old_token:
        at = _text(new, r.LOCKED_AT) or changed
        handed = old is not None and old_token is not None and _number(new, r.PREVIOUS_TOKEN) == old_token
        if old is not None and old_status is Status.IN_PROGRESS:
            events.append(_handed_on(old, new) if handed else _lapsed(old, at))
        kind = EventKind.FREEZE if _text(new, r.KEY).startswith(FREEZE_PREFIX) else EventKind.ACQUIRE
        kind = EventKind.HAND_OFF if handed and kind is EventKind.ACQUIRE else kind
        events.append(HistoryEvent(kind=kind, at=at, **_holder(new), **_base(new)))
        if new_status is not Status.IN_PROGRESS:  # acquired and ended in one change: not a write lockcore makes
            events.append(_ending(new, new, new_status, changed))
        return events
    if old_status is Status.IN_PROGRESS and new_status is not Status.IN_PROGRESS:
        return [_ending(old or new, new, new_status, changed)]
    old_end, new_end = (_number(item, r.LEASE_EXPIRES_AT) if item else None for item in (old, new))
    if new_status is Status.IN_PROGRESS and old_end is not None and new_end is not None and new_end > old_end:
        return [HistoryEvent(kind=EventKind.EXTEND, at=changed, **_holder(new), **_base(new))]
    return []
