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
| notes            | S    | command, ref, commitSha, channelId, dispatchState, runId, runUrl (by the holder) |

Why the lease end is not in `ttl`: the table has DynamoDB TTL on `ttl` (the user's design; other item types use
it), and TTL may delete an item any time after that instant. A deleted lock item would restart its token at 1,
and an old run's token would become valid again. So lock items written here carry no `ttl` at all: the key set is
small and bounded by configuration, the item (with its counter and last outcome) lives for ever, and expiry is
decided by the write's condition on `leaseExpiresAt` with the caller's clock. Items written by the user's
original code (no `token`, lease end in `ttl`) are still understood; the first acquire over one removes `ttl`.
"""

from __future__ import annotations

from collections.abc import Mapping
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

HOLDER_ATTRIBUTES = (
    OWNER, STATUS, LOCKED_BY, LOCKED_BY_NAME, LOCKED_AT, LEASE_EXPIRES_AT,
    COMPONENT, ENVIRONMENT, CORRELATION_ID,
)  # fmt: skip
"""Attributes that describe the current (or last) holder; an acquire writes or removes every one of them."""
RELEASE_ATTRIBUTES = (RELEASED_AT, RELEASED_BY, RELEASE_REASON)
NOTE_ATTRIBUTES = (
    "command", "ref", "commitSha", "channelId", "dispatchState", "runId", "runUrl",
)  # fmt: skip
"""What the holder may note on its lock while it holds it (the run it started, where to report); an acquire
clears them, so they always describe the current holder's work."""


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
        }
        item.update({name: value for name, value in optional.items() if value is not None})
        item.update(self.notes)
        return item

    def as_json(self) -> dict[str, Value | None]:
        """The record as the CLI and the history print it: attribute names as in the table, lease end twice."""
        body: dict[str, Value | None] = dict(self.to_item())
        body["leaseExpiresAtIso"] = iso(self.lease_expires_at)
        return body
