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
  later under the same token is an *extend*. Of the holder's notes, what ran is history — the commit, the ref as
  asked and whether it was a rollback (on the endings, from the image that still has them: a release keeps the
  notes, an acquire clears them) — the run id and the dispatch state are not.
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

from collections.abc import Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from lockcore.dynamodb import from_wire
from lockcore.record import LockRecord
from workers.adapters import runtime
from workers.adapters.history_table import HistoryTable
from workers.protocol.history import EventKind, HistoryEvent, events_of


def events_of_stream_record(record: Mapping[str, Any]) -> list[HistoryEvent]:
    """One record of a DynamoDB Stream (as Lambda delivers it, or ``GetRecords`` returns it)."""
    change = record.get("dynamodb", {})
    old, new = change.get("OldImage"), change.get("NewImage")
    created = change.get("ApproximateCreationDateTime", 0)
    changed_at = int(created.timestamp()) if hasattr(created, "timestamp") else int(float(created))
    return events_of(from_wire(old) if old else None, from_wire(new) if new else None, changed_at)


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


def freed_in_history(was: LockRecord, by: str, kinds: frozenset[EventKind], *, pages: int = 5) -> bool:
    """The lock's own history shows the holding ``was`` ended by ``by`` as one of ``kinds`` — the evidence a
    write resumed after its lock moved on has that it took effect. One Query of the newest events (``20 * pages``),
    read back to when that holding began; raises ``BotoCoreError``/``ClientError`` when the table does not answer."""
    for event in runtime.history().recent(was.lock_key, limit=20 * pages):
        if event.kind in kinds and event.token == was.token and event.who == by:
            return True
        if event.token < was.token:
            return False
    return False


HISTORY_LAG_SECONDS: Final = 300
"""How long the history (the stream's writer) may lag behind a write before no trace of it means it did not
happen."""


def resumed_write_took_effect(
    was: LockRecord, by: str, kinds: frozenset[EventKind], *, asked_at: int, now: int, in_doubt: type[Exception]
) -> bool:
    """A freeing write by ``by`` (a cancel, a force-release) resumed by a redelivery, whose lock has moved on
    since: did it take effect before? The history says — and while it may still lag behind the write (within
    :data:`HISTORY_LAG_SECONDS` of when it was asked), no trace is no answer yet. Raises ``in_doubt`` (a
    :class:`~workers.adapters.runtime.RetryLater`: the message comes back) when the history cannot say."""
    try:
        traced = freed_in_history(was, by, kinds)
    except (BotoCoreError, ClientError) as error:
        raise in_doubt(f"the history did not answer: {error}") from None
    if not traced and now - asked_at < HISTORY_LAG_SECONDS:
        raise in_doubt("no trace of the write in the history yet; it may lag behind")
    return traced
