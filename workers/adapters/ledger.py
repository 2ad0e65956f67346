"""What a worker already did, for its repeat to read: small records in the idempotency table.

- **told** — ``chatops.told#<lock key>#<token>``: the news of a freeing write was told (the channel, the
  coalesced requesters, the watchers). Put *after* telling, so a crash in between tells again (at least once);
  read before telling a repeat, so one that finds it tells nothing twice.
- **started** — ``chatops.cancel#<request id>``: a cancel's first delivery, before its first effect, keeps the
  lock as it read it and the run it means to cancel; a redelivery finishes from there.
- **home viewers** — ``chatops.home-viewers``: one item, a map from each user who opened the App Home to when
  (and which page): whose Home a lock change republishes (:mod:`workers.flows.home`). One ``UpdateItem`` per
  open, so two opens at once both count; entries older than the window are dropped when read.
- **home refresh pending** — ``chatops.home-refresh-pending``: one item, put by the history writer before it
  queues an App Home refresh and deleted by the status worker before it reads the board, so that a burst of
  lock changes queues one refresh, not one per stream batch (:mod:`workers.handlers.history` says why none is
  lost).
- **orphan** / **ending** — ``chatops.orphan#<correlation id>``, ``chatops.ending#<correlation id>``: the lock a
  run held, kept before a write frees it — one that lets the run go on without it (force-unlock, expiry), or the
  run's own release at its end — so that the run's end is still told after the lock has moved on to a new holder.
- **lifted** — ``chatops.window-lifted#<env>#<occurrence id>``: an admin lifted a scheduled freeze window's
  occurrence early; kept until a day past the occurrence's end, so the sweep does not freeze it again.

A table that does not answer is logged: a telling is then done again rather than lost, and a cancel is answered
that it could not start.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from lockcore.record import LockRecord
from workers.adapters.pending import IdempotencyTableItems

TOLD_PREFIX: Final = "chatops.told#"
STARTED_PREFIX: Final = "chatops.cancel#"
ORPHAN_PREFIX: Final = "chatops.orphan#"
ENDING_PREFIX: Final = "chatops.ending#"
DISPATCH_PREFIX: Final = "chatops.dispatch-sent#"
ENDED_PREFIX: Final = "chatops.ended#"
HOME_VIEWERS_ID: Final = "chatops.home-viewers"
HOME_REFRESH_ID: Final = "chatops.home-refresh-pending"
HOME_REFRESH_STALE_SECONDS: Final = 60
"""A pending-refresh mark this old no longer holds refreshes back: a writer that died between putting it and
queueing its refresh, and whose batch is not retried, silences the Homes for a minute at most."""
_VIEWERS: Final = "viewers"
LIFTED_PREFIX: Final = "chatops.window-lifted#"
LIFTED_MARGIN_SECONDS: Final = 24 * 3600
"""A lifted occurrence's record outlives the occurrence by this much (DynamoDB's TTL deletes within days)."""
KEPT_SECONDS: Final = 2 * 24 * 3600
"""Longer than any redelivery (the queues keep a message 4 days at most, but a DLQ is not redelivered by itself)."""

_log = Logger(service="chatops")  # the workers' one logger: Powertools shares it by service name

LedgerError = (BotoCoreError, ClientError)


class Ledger(IdempotencyTableItems):
    """The idempotency table's records of what was done (its TTL, ``expiration``, removes them)."""

    # ------------------------------------------------------------------------------------------------- told
    def told(self, key: str) -> bool:
        """The news under ``key`` was told; ``False`` also when the table cannot say (then it is told again)."""
        try:
            return self._get(TOLD_PREFIX + key) is not None
        except LedgerError as error:
            _log.error("the ledger could not say whether the news was told", key=key, reason=str(error))
            return False

    def untold(self, key: str) -> bool:
        """The table answers that the news under ``key`` was not told (``False`` when it cannot say: a sweep that
        cannot read the ledger repeats nothing, rather than everything)."""
        try:
            return self._get(TOLD_PREFIX + key) is None
        except LedgerError as error:
            _log.error("the ledger could not say whether the news was told", key=key, reason=str(error))
            return False

    def mark_told(self, key: str) -> None:
        try:
            self._put(TOLD_PREFIX + key, {})
        except LedgerError as error:  # a repeat tells it again: at least once
            _log.error("the ledger could not keep that the news was told", key=key, reason=str(error))

    # ---------------------------------------------------------------------------------------------- started
    def start(self, request_id: str, body: dict[str, Any]) -> None:
        """Raises ``BotoCoreError``/``ClientError``: what cannot be kept must not be started."""
        self._put(STARTED_PREFIX + request_id, {"body": {"S": json.dumps(body, ensure_ascii=False)}})

    def started(self, request_id: str) -> dict[str, Any] | None:
        """Raises ``BotoCoreError``/``ClientError``."""
        item = self._get(STARTED_PREFIX + request_id)
        body = (item or {}).get("body", {}).get("S")
        if not isinstance(body, str):
            return None
        kept = json.loads(body)
        return kept if isinstance(kept, dict) else None

    # -------------------------------------------------------------------------------------------- dispatches
    def dispatch_sent(self, request_id: str, at: int, attempt: int) -> None:
        """A request's dispatch is about to go out: kept apart from the lock, which a force-unlock may take away
        while the request is put off. Raises ``BotoCoreError``/``ClientError``: what cannot be kept is not sent."""
        self._put(DISPATCH_PREFIX + request_id, {"at": {"N": str(at)}, "attempt": {"N": str(attempt)}})

    def last_dispatch(self, request_id: str) -> tuple[int, int] | None:
        """When this request last sent a dispatch, and how many it has sent; raises like :meth:`dispatch_sent`."""
        item = self._get(DISPATCH_PREFIX + request_id)
        if item is None:
            return None
        return int(item["at"]["N"]), int(item["attempt"]["N"])

    def end(self, request_id: str, reason: str) -> None:
        """A request gives up (its lock released FAILED, its user told why): kept first, so that a redelivery of it
        finishes giving up rather than start afresh. Raises ``BotoCoreError``/``ClientError``."""
        self._put(ENDED_PREFIX + request_id, {"reason": {"S": reason}})

    def ended(self, request_id: str) -> str | None:
        """Why the request gave up, if it did; raises like :meth:`end`."""
        item = self._get(ENDED_PREFIX + request_id)
        reason = (item or {}).get("reason", {}).get("S")
        return reason if isinstance(reason, str) else None

    # ------------------------------------------------------------------------------------- freeze windows
    def lift(self, environment: str, occurrence_id: str, until: int) -> None:
        """An admin lifted this occurrence (ending at ``until``) of a freeze window: kept *before* the freeze is
        released, so a sweep that reads it after its own acquire lets go (:mod:`workers.flows.windows`). Raises
        ``BotoCoreError``/``ClientError``: a lift that cannot be kept is not made."""
        expiration = {"N": str(until + LIFTED_MARGIN_SECONDS)}
        self._put(f"{LIFTED_PREFIX}{environment}#{occurrence_id}", {"expiration": expiration})

    def lifted(self, environment: str, occurrence_id: str) -> bool:
        """Whether an admin lifted this occurrence; raises like :meth:`lift` (a sweep that cannot tell freezes
        nothing new)."""
        return self._get(f"{LIFTED_PREFIX}{environment}#{occurrence_id}") is not None

    # ------------------------------------------------------------------------------------- a run's holding
    def keep_orphan(self, record: LockRecord) -> None:
        """A run goes on after its lock was let go (force-unlocked, expired): keep the lock as it was, by the run's
        correlation id, so that the run's end can still be reported. Raises ``BotoCoreError``/``ClientError``: the
        freeing write is then repeated (SQS, the next sweep), and so is this."""
        self._keep_record(ORPHAN_PREFIX, record)

    def orphan(self, correlation_id: str) -> LockRecord | None:
        """The lock a run with ``correlation_id`` held when it was let go, if one was kept. Raises
        ``BotoCoreError``/``ClientError``: the run's end is then looked at again (SQS), not dropped."""
        return self._kept_record(ORPHAN_PREFIX, correlation_id)

    def keep_ending(self, record: LockRecord) -> None:
        """A run ended and its lock is about to be released: keep the lock as it was, so that a repeat of the
        release whose answer was lost can still tell the run's end when a new holder has taken the lock since.
        Raises like :meth:`keep_orphan`."""
        self._keep_record(ENDING_PREFIX, record)

    def ending(self, correlation_id: str) -> LockRecord | None:
        """The lock a run with ``correlation_id`` held when its end released it, if one was kept; raises like
        :meth:`orphan`."""
        return self._kept_record(ENDING_PREFIX, correlation_id)

    def _keep_record(self, prefix: str, record: LockRecord) -> None:
        body = json.dumps(record.to_item(), ensure_ascii=False, default=str)
        self._put(prefix + (record.correlation_id or ""), {"record": {"S": body}})

    def _kept_record(self, prefix: str, correlation_id: str) -> LockRecord | None:
        item = self._get(prefix + correlation_id)
        body = (item or {}).get("record", {}).get("S")
        return LockRecord.from_item(json.loads(body)) if isinstance(body, str) else None

    # ------------------------------------------------------------------------------------------- home viewers
    def home_opened(self, user_id: str, page: int, at: int) -> None:
        """``user_id`` opened the App Home (at ``page``) at ``at``. Raises ``BotoCoreError``/``ClientError``."""
        self._set_entry(HOME_VIEWERS_ID, _VIEWERS, user_id, {"M": {"at": {"N": str(at)}, "page": {"N": str(page)}}})

    def home_viewers(self, since: int) -> dict[str, tuple[int, int]]:
        """Who opened the Home at ``since`` or later: each user's (when, page). Older entries are dropped (best
        effort: a failed drop is done again at the next read). Raises ``BotoCoreError``/``ClientError``."""
        item = self._get(HOME_VIEWERS_ID) or {}
        viewers: dict[str, tuple[int, int]] = {}
        stale = []
        for user_id, value in item.get(_VIEWERS, {}).get("M", {}).items():
            entry = value.get("M", {})
            at, page = int(entry.get("at", {}).get("N", "0")), int(entry.get("page", {}).get("N", "0"))
            if at >= since:
                viewers[user_id] = (at, page)
            else:
                stale.append(user_id)
        if stale:
            try:
                self._remove_entries(HOME_VIEWERS_ID, _VIEWERS, stale[:100], older_than=since)
            except LedgerError as error:
                _log.warning("the ledger could not drop stale Home viewers", reason=str(error))
        return viewers

    # ------------------------------------------------------------------------------------- home refresh mark
    def mark_home_refresh(self, batch: str) -> bool:
        """Put the pending-refresh mark for ``batch`` (a stream batch's id) unless another batch put one less than
        :data:`HOME_REFRESH_STALE_SECONDS` ago: ``True`` when put (queue the refresh), ``False`` when a refresh is
        pending already. The mark ``batch`` put itself is put again (its redelivery, after a crash before the
        send). Raises ``BotoCoreError``/``ClientError``."""
        now = int(self.clock())
        return self._put_unless_held(
            HOME_REFRESH_ID, {"at": {"N": str(now)}}, holder=batch, stale_since=now - HOME_REFRESH_STALE_SECONDS
        )

    def clear_home_refresh(self) -> None:
        """No refresh is pending any more: the caller reads the board next. Raises ``BotoCoreError``/``ClientError``."""
        self._delete(HOME_REFRESH_ID)

    # ------------------------------------------------------------------------------------------------- wire
    def _get(self, item_id: str) -> dict[str, Any] | None:
        answer = self.client.get_item(TableName=self.table, Key={"id": {"S": item_id}}, ConsistentRead=True)
        item = answer.get("Item")
        return item if isinstance(item, dict) else None

    def _kept(self) -> dict[str, str]:
        """The ``expiration`` of an item written now: :data:`KEPT_SECONDS` from the clock."""
        return {"N": str(int(self.clock()) + KEPT_SECONDS)}

    def _put(self, item_id: str, attributes: dict[str, Any]) -> None:
        item = {"id": {"S": item_id}, "expiration": self._kept(), **attributes}  # a record may keep longer
        self.client.put_item(TableName=self.table, Item=item)

    def _put_unless_held(self, item_id: str, attributes: dict[str, Any], *, holder: str, stale_since: int) -> bool:
        """Put the item (``attributes`` must hold ``at``) unless one is there that another ``holder`` put at
        after ``stale_since``: one conditional ``PutItem``; ``False`` when its condition failed."""
        item = {"id": {"S": item_id}, **attributes, "holder": {"S": holder}, "expiration": self._kept()}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(id) OR #at <= :stale OR #holder = :holder",
                ExpressionAttributeNames={"#at": "at", "#holder": "holder"},
                ExpressionAttributeValues={":stale": {"N": str(stale_since)}, ":holder": {"S": holder}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _delete(self, item_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"id": {"S": item_id}})

    def _set_entry(self, item_id: str, name: str, key: str, value: dict[str, Any]) -> None:
        """``name[key] = value`` in one write; the map (and the item) made first when there is none."""
        expiration = self._kept()
        for _ in range(2):
            try:
                self.client.update_item(
                    TableName=self.table,
                    Key={"id": {"S": item_id}},
                    UpdateExpression="SET #m.#k = :v, expiration = :e",
                    ConditionExpression="attribute_exists(#m)",
                    ExpressionAttributeNames={"#m": name, "#k": key},
                    ExpressionAttributeValues={":v": value, ":e": expiration},
                )
                return
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
            # No map yet: make an empty one unless another writer just did, then set the entry in it.
            self.client.update_item(
                TableName=self.table,
                Key={"id": {"S": item_id}},
                UpdateExpression="SET #m = if_not_exists(#m, :empty), expiration = :e",
                ExpressionAttributeNames={"#m": name},
                ExpressionAttributeValues={":empty": {"M": {}}, ":e": expiration},
            )
        raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem")  # pragma: no cover

    def _remove_entries(self, item_id: str, name: str, keys: list[str], *, older_than: int) -> None:
        """Only while each is still older than ``older_than``: a user who opened the Home again since the read
        keeps their new entry (the write fails, and the next read drops what is still stale)."""
        names = {f"#k{index}": key for index, key in enumerate(keys)}
        self.client.update_item(
            TableName=self.table,
            Key={"id": {"S": item_id}},
            UpdateExpression="REMOVE " + ", ".join(f"#m.{alias}" for alias in names),
            ConditionExpression=" AND ".join(f"#m.{alias}.#at < :since" for alias in names),
            ExpressionAttributeNames={"#m": name, "#at": "at", **names},
            ExpressionAttributeValues={":since": {"N": str(older_than)}},
        )
