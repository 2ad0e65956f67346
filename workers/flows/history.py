"""The lock history: every change of a lock item, read from the lock table's DynamoDB Stream, as an event.

Why a stream: the history must not add a request to the lock's hot path (one ``UpdateItem`` per operation). The
lock table streams ``NEW_AND_OLD_IMAGES``; the history writer (:func:`handler`, a Lambda on the stream's event
source mapping) turns each change into events and puts them in the history table, off the path of every
``/build``.

- **derive** — :func:`events_of` is pure: (old image, new image) → events. A new token is an *acquire* (a
  *freeze* on a ``freeze-<env>`` key); a lease that lapsed unrecorded under it is an *expire* of the old token.
  The same token leaving ``IN_PROGRESS`` is one release-type event: *release* (COMPLETED or FAILED), *expire*
  (EXPIRED, the reaper), *force-release* (FORCE_RELEASED), *cancel* (FORCE_RELEASED with a ``cancelled …``
  reason) or *unfreeze* (FORCE_RELEASED on a freeze key), with how long the lock was held. A write that frees
  the lock *and* hands it to the head of its queue (lockcore's queue: new token, ``previousToken`` = the old one)
  is the old holder's ending (from ``previousStatus``) and a *hand-off* to the new one. A lease end moved
  later under the same token is an *extend*. Notes (the run id, the dispatch state) are not history.
- **store** — :class:`HistoryTable`: partition key ``lockKey``, sort key ``<at>#<token>#<event>`` (ISO time, the
  token zero-padded: sorted by time, then token), ``ttl`` = the event's time + 30 days. The sort key is a function
  of the change alone and the item of the event alone, so a redelivered stream batch puts the same items again
  and changes nothing: a plain ``PutItem`` is idempotent here.
- **read** — :meth:`HistoryTable.recent` (one ``Query``, newest first, ``Limit``) for ``/build history``;
  :meth:`HistoryTable.since` (a paginated ``Scan`` filtered on time: the table holds 30 days at most) for
  ``/build stats``.

Environment: ``HISTORY_TABLE_NAME`` (default ``chatops-lock-history``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from boto3.dynamodb.types import TypeSerializer

from lockcore import record as r
from lockcore.dynamodb import from_wire, make_client
from lockcore.expressions import Item
from lockcore.record import Status, epoch, iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HISTORY_TABLE_ENV: Final = "HISTORY_TABLE_NAME"
DEFAULT_HISTORY_TABLE: Final = "chatops-lock-history"
RETENTION_SECONDS: Final = 30 * 24 * 3600
FREEZE_PREFIX: Final = "freeze-"
REFUSED_PREFIX: Final = "refused#"
SORT_KEY: Final = "at"
_serializer = TypeSerializer()


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
        }
        item.update({name: value for name, value in optional.items() if value not in (None, "")})
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
    return {
        "lock_key": _text(item, r.KEY),
        "token": _number(item, r.TOKEN) or 0,
        "component": _text(item, r.COMPONENT),
        "environment": _text(item, r.ENVIRONMENT),
        "correlation_id": _text(item, r.CORRELATION_ID),
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
        **_holder(old),
        **_base(old),
    )


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
        reason = ""
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


def events_of_stream_record(record: Mapping[str, Any]) -> list[HistoryEvent]:
    """One record of a DynamoDB Stream (as Lambda delivers it, or ``GetRecords`` returns it)."""
    change = record.get("dynamodb", {})
    old, new = change.get("OldImage"), change.get("NewImage")
    created = change.get("ApproximateCreationDateTime", 0)
    changed_at = int(created.timestamp()) if hasattr(created, "timestamp") else int(float(created))
    return events_of(from_wire(old) if old else None, from_wire(new) if new else None, changed_at)


# ------------------------------------------------------------------------------------------------- storing
class HistoryTable:
    def __init__(self, table: str = DEFAULT_HISTORY_TABLE, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self.client = client if client is not None else make_client()

    def put(self, event: HistoryEvent) -> None:
        """A plain put of an item that depends on the event only: writing it twice is writing it once."""
        item = {name: _serializer.serialize(value) for name, value in event.to_item().items()}
        self.client.put_item(TableName=self.table, Item=item)

    def recent(self, lock_key: str, limit: int = 10) -> list[HistoryEvent]:
        """The newest ``limit`` events of one key, newest first: one Query."""
        answer = self.client.query(
            TableName=self.table,
            KeyConditionExpression="#k = :k",
            ExpressionAttributeNames={"#k": r.KEY},
            ExpressionAttributeValues={":k": {"S": lock_key}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [HistoryEvent.from_item(from_wire(item)) for item in answer.get("Items", [])]

    def since(self, start: int) -> Iterator[HistoryEvent]:
        """Every event at or after ``start`` (epoch seconds), any key."""
        paginator = self.client.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self.table,
            FilterExpression="#at >= :start",
            ExpressionAttributeNames={"#at": SORT_KEY},
            ExpressionAttributeValues={":start": {"S": iso(start)}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield HistoryEvent.from_item(from_wire(item))

    def create_table(self) -> bool:
        """Create the history table (idempotent), TTL on ``ttl``; answers whether it was created now."""
        try:
            self.client.create_table(
                TableName=self.table,
                AttributeDefinitions=[
                    {"AttributeName": r.KEY, "AttributeType": "S"},
                    {"AttributeName": SORT_KEY, "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": r.KEY, "KeyType": "HASH"},
                    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except self.client.exceptions.ResourceInUseException:
            return False
        self.client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1})
        self.client.update_time_to_live(
            TableName=self.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
        )
        return True


def history_table() -> HistoryTable:
    """``$HISTORY_TABLE_NAME``, region and endpoint the standard boto3 way; reused by a warm container, made
    again when the table or the endpoint changes (one local stack after another in a process)."""
    return _history_table(
        os.environ.get(HISTORY_TABLE_ENV) or DEFAULT_HISTORY_TABLE, os.environ.get("AWS_ENDPOINT_URL")
    )


@cache
def _history_table(name: str, endpoint: str | None) -> HistoryTable:
    return HistoryTable(name, make_client())


def forget() -> None:
    """Drop the cached clients (tests that start and stop moto)."""
    _history_table.cache_clear()


# ------------------------------------------------------------------------------------------------ the writer
def write_changes(records: Sequence[Mapping[str, Any]], table: HistoryTable) -> int:
    """Every event of every stream record, put in order; answers how many. Raises if the table does not answer:
    the batch is retried, and the puts it repeats change nothing."""
    written = 0
    for record in records:
        for event in events_of_stream_record(record):
            table.put(event)
            written += 1
    return written
