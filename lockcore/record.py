"""The lock record: the user's schema, plus the owner and the fencing token, and how it maps to an item.

| attribute        | type | meaning                                                                   |
|------------------|------|---------------------------------------------------------------------------|
| `lockKey`        | S    | partition key, e.g. `build-router-plt`                                    |
| `token`          | N    | fencing token: +1 on every successful acquire of this key, never goes back |
| `owner`          | S    | the request that holds it (a Slack request id, an SQS message, a CLI id)  |
| `status`         | S    | IN_PROGRESS, COMPLETED, FAILED, FORCE_RELEASED or EXPIRED                  |
| `lockedBy`       | S    | user id of the requester                                                  |
| `lockedByName`   | S    | user name of the requester                                                |
| `lockedAt`       | S    | ISO-8601 UTC time of the acquire                                          |
| `leaseExpiresAt` | N    | epoch seconds when the lease ends: the user's `ttl`, renamed (see below)  |
| `component`      | S    | e.g. `router`                                                             |
| `environment`    | S    | e.g. `plt`                                                                |
| `correlationId`  | S    | carried into logs, the GitHub run name and the history                    |
| `releasedAt`     | S    | ISO-8601 UTC time of the release, force-release or recorded expiry        |
| `releasedBy`     | S    | who force-released it                                                     |
| `releaseReason`  | S    | why it was force-released                                                 |
| notes            | S    | command, ref, commitSha, rollback, channelId, dispatchState, runId, runUrl (by the holder) |
| `queue`          | S    | the requests waiting for the lock, first in line first (JSON; absent when none) |
| `watchers`       | S    | user ids to tell when the lock frees (JSON; absent when none)              |
| `previous…`      | S/N  | after a hand-off: the previous holder's owner, token, outcome (and who force-released) |

Why the lease end is not in `ttl`: the table has DynamoDB TTL on `ttl` (the user's design; other item types use
it), and TTL may delete an item any time after that instant. A deleted lock item would restart its token at 1,
and an old run's token would become valid again. So lock items written here carry no `ttl` at all: the key set is
small and bounded by configuration, the item (with its counter and last outcome) lives for ever, and expiry is
decided by the write's condition on `leaseExpiresAt` with the caller's clock. Items written by the user's
original code (no `token`, lease end in `ttl`) are still understood; the first acquire over one removes `ttl`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from lockcore.expressions import Item, Value


class Status(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    FORCE_RELEASED = "FORCE_RELEASED"
    EXPIRED = "EXPIRED"


KEY = "lockKey"
TOKEN = "token"
OWNER = "owner"
STATUS = "status"
LOCKED_BY = "lockedBy"
LOCKED_BY_NAME = "lockedByName"
LOCKED_AT = "lockedAt"
LEASE_EXPIRES_AT = "leaseExpiresAt"
COMPONENT = "component"
ENVIRONMENT = "environment"
CORRELATION_ID = "correlationId"
RELEASED_AT = "releasedAt"
RELEASED_BY = "releasedBy"
RELEASE_REASON = "releaseReason"
LEGACY_TTL = "ttl"
QUEUE = "queue"
WATCHERS = "watchers"
PREVIOUS_OWNER = "previousOwner"
PREVIOUS_TOKEN = "previousToken"
PREVIOUS_STATUS = "previousStatus"
PREVIOUS_RELEASED_BY = "previousReleasedBy"
PREVIOUS_HANDED_TO = "previousHandedTo"
NOTIFIED = "notified"
PREVIOUS_ATTRIBUTES = (
    PREVIOUS_OWNER, PREVIOUS_TOKEN, PREVIOUS_STATUS, PREVIOUS_RELEASED_BY, PREVIOUS_HANDED_TO, NOTIFIED,
)  # fmt: skip
"""What a freeing write keeps so that its retry (the first answer lost) is answered the same, hand-off and
watchers included: a hand-off records how the previous holder let go and the queue entry it was handed to
(``previousHandedTo``, JSON); a write that frees the lock records the watchers it told (``notified``, JSON). The
next acquire or hand-off clears them."""

HOLDER_ATTRIBUTES = (
    OWNER, STATUS, LOCKED_BY, LOCKED_BY_NAME, LOCKED_AT, LEASE_EXPIRES_AT,
    COMPONENT, ENVIRONMENT, CORRELATION_ID,
)  # fmt: skip
"""Attributes that describe the current (or last) holder; an acquire writes or removes every one of them."""
RELEASE_ATTRIBUTES = (RELEASED_AT, RELEASED_BY, RELEASE_REASON)
NOTE_ATTRIBUTES = (
    "command", "ref", "commitSha", "channelId", "dispatchState", "dispatchAttempts", "dispatchSentAt", "runId",
    "runUrl", "rollback",
)  # fmt: skip
"""What the holder may note on its lock while it holds it (the run it started, where to report); an acquire
clears them, so they always describe the current holder's work."""


@dataclass(frozen=True)
class Requester:
    """One request waiting in line: its owner id (what it will hold the lock as) and who asked."""

    owner: str
    user: str = ""
    name: str = ""


@dataclass(frozen=True)
class QueueEntry:
    """One pending run. Identical requests (the same ``coalesce`` identity: command, component, environment,
    ref) share one entry; the first requester is the owner the lock is handed to, and every one is told."""

    requesters: tuple[Requester, ...]
    lease_seconds: int
    component: str = ""
    environment: str = ""
    coalesce: str = ""
    correlation_id: str | None = None

    @property
    def owner(self) -> str:
        return self.requesters[0].owner

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "requesters": [[q.owner, q.user, q.name] for q in self.requesters],
            "leaseSeconds": self.lease_seconds,
            "component": self.component,
            "environment": self.environment,
            "coalesce": self.coalesce,
        }
        if self.correlation_id is not None:
            body["correlationId"] = self.correlation_id
        return body


def encode_queue(entries: Iterable[QueueEntry]) -> str:
    """The queue as one string attribute: the same entries always encode to the same text, so a write can
    be conditioned on the exact queue it was decided from."""
    return json.dumps([entry.to_json() for entry in entries], separators=(",", ":"), sort_keys=True)


def decode_queue(value: Value | None) -> tuple[QueueEntry, ...]:
    """The queue an item carries; text that is not ours reads as no queue."""
    if not isinstance(value, str):
        return ()
    try:
        raw = json.loads(value)
        return tuple(
            QueueEntry(
                requesters=tuple(Requester(str(o), str(u), str(n)) for o, u, n in entry["requesters"]),
                lease_seconds=int(entry["leaseSeconds"]),
                component=str(entry.get("component", "")),
                environment=str(entry.get("environment", "")),
                coalesce=str(entry.get("coalesce", "")),
                correlation_id=str(entry["correlationId"]) if "correlationId" in entry else None,
            )
            for entry in raw
            if entry["requesters"]
        )
    except (ValueError, TypeError, KeyError):
        return ()


def encode_watchers(users: Iterable[str]) -> str:
    return json.dumps(sorted(set(users)), separators=(",", ":"))


def decode_watchers(value: Value | None) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    try:
        raw = json.loads(value)
    except ValueError:
        return ()
    return tuple(str(user) for user in raw) if isinstance(raw, list) else ()


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(iso_time: str) -> int:
    return int(datetime.strptime(iso_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def status_of(item: Mapping[str, Value]) -> Status:
    """The item's status. One that is missing or not ours reads as IN_PROGRESS, as the acquire guard treats it:
    a lock we do not understand frees only when its lease ends."""
    value = item.get(STATUS)
    return Status(value) if isinstance(value, str) and value in Status.__members__ else Status.IN_PROGRESS


@dataclass(frozen=True)
class LockRecord:
    lock_key: str
    token: int
    owner: str
    status: Status
    locked_by: str
    locked_by_name: str
    locked_at: str
    lease_expires_at: int
    component: str = ""
    environment: str = ""
    correlation_id: str | None = None
    released_at: str | None = None
    released_by: str | None = None
    release_reason: str | None = None
    legacy_ttl: int | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    queue: tuple[QueueEntry, ...] = ()
    watchers: tuple[str, ...] = ()
    handed_from_queue: QueueEntry | None = None
    """The queue entry the lock was last handed to (``previousHandedTo``) — the holder's, while ``owner`` is its
    owner: a holder that came from the queue, whose requesters are all told its run."""
    previous_status: str | None = None
    previous_released_by: str | None = None
    """How the holder before a hand-off let go, and who force-released it (``previousStatus``,
    ``previousReleasedBy``)."""

    @classmethod
    def from_item(cls, item: Mapping[str, Value]) -> LockRecord:
        def text(name: str, default: str = "") -> str:
            value = item.get(name, default)
            return value if isinstance(value, str) else str(value)

        def optional_text(name: str) -> str | None:
            return text(name) if name in item else None

        def number(name: str) -> int | None:
            value = item.get(name)
            return int(value) if value is not None else None

        legacy_ttl = number(LEGACY_TTL)
        # A legacy item keeps its lease end in `ttl`; ours in `leaseExpiresAt`.
        lease = number(LEASE_EXPIRES_AT)
        return cls(
            lock_key=text(KEY),
            token=number(TOKEN) or 0,
            owner=text(OWNER),
            status=status_of(item),
            locked_by=text(LOCKED_BY),
            locked_by_name=text(LOCKED_BY_NAME),
            locked_at=text(LOCKED_AT),
            lease_expires_at=lease if lease is not None else (legacy_ttl or 0),
            component=text(COMPONENT),
            environment=text(ENVIRONMENT),
            correlation_id=optional_text(CORRELATION_ID),
            released_at=optional_text(RELEASED_AT),
            released_by=optional_text(RELEASED_BY),
            release_reason=optional_text(RELEASE_REASON),
            legacy_ttl=legacy_ttl,
            notes={name: text(name) for name in NOTE_ATTRIBUTES if name in item},
            queue=decode_queue(item.get(QUEUE)),
            watchers=decode_watchers(item.get(WATCHERS)),
            handed_from_queue=next(iter(decode_queue(item.get(PREVIOUS_HANDED_TO))), None),
            previous_status=optional_text(PREVIOUS_STATUS),
            previous_released_by=optional_text(PREVIOUS_RELEASED_BY),
        )

    def to_item(self) -> Item:
        item: Item = {
            KEY: self.lock_key,
            TOKEN: self.token,
            OWNER: self.owner,
            STATUS: self.status.value,
            LOCKED_BY: self.locked_by,
            LOCKED_BY_NAME: self.locked_by_name,
            LOCKED_AT: self.locked_at,
            LEASE_EXPIRES_AT: self.lease_expires_at,
            COMPONENT: self.component,
            ENVIRONMENT: self.environment,
        }
        optional = {
            CORRELATION_ID: self.correlation_id,
            RELEASED_AT: self.released_at,
            RELEASED_BY: self.released_by,
            RELEASE_REASON: self.release_reason,
            LEGACY_TTL: self.legacy_ttl,
            PREVIOUS_STATUS: self.previous_status,
            PREVIOUS_RELEASED_BY: self.previous_released_by,
        }
        item.update({name: value for name, value in optional.items() if value is not None})
        item.update(self.notes)
        if self.queue:
            item[QUEUE] = encode_queue(self.queue)
        if self.watchers:
            item[WATCHERS] = encode_watchers(self.watchers)
        if self.handed_from_queue is not None:
            item[PREVIOUS_HANDED_TO] = encode_queue([self.handed_from_queue])
        return item

    def as_json(self) -> dict[str, Value | None]:
        """The record as the CLI and the history print it: attribute names as in the table, lease end twice."""
        body: dict[str, Value | None] = dict(self.to_item())
        body["leaseExpiresAtIso"] = iso(self.lease_expires_at)
        return body
