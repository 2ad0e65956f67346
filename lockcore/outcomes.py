"""What a lock operation answered: one type per answer, and one union per operation.

The rules that decide them live in :mod:`lockcore.machine`; these are only their vocabulary — what the stores
return and the workers read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lockcore.record import LockRecord, QueueEntry


class Refusal(StrEnum):
    NO_LOCK = "no lock is recorded under this key"
    STALE_TOKEN = "the token is stale: the lock has been acquired again since"
    NOT_OWNER = "the lock is held under another owner"
    LEASE_ENDED = "the lease has already ended"
    LEASE_RUNS = "the lease has not ended yet"
    NOT_HELD = "the lock is not held any more"
    CHANGED = "the lock changed while the request was in flight; look again"


@dataclass(frozen=True)
class HandOff:
    """The head of the queue was handed the lock: ``entry`` is who asked (every coalesced requester), ``record``
    the lock as it now holds it (a new token, its own lease)."""

    entry: QueueEntry
    record: LockRecord


@dataclass(frozen=True)
class Acquired:
    record: LockRecord
    reentered: bool = False
    """True when the owner already held the lock (a redelivered request): same token, nothing written."""
    handed_to: HandOff | None = None
    """Set when this acquire found a lapsed lock with a queue and handed it to the head (perhaps the caller)."""

    @property
    def token(self) -> int:
        return self.record.token


@dataclass(frozen=True)
class HeldBySomeone:
    holder: LockRecord
    handed_to: HandOff | None = None
    """Set when this acquire found a lapsed lock with a queue and handed it to the head: dispatch for it."""


@dataclass(frozen=True)
class Queued(HeldBySomeone):
    """The lock is busy and the request waits in its queue (``AcquireRequest(queue=True)``). A kind of
    ``HeldBySomeone``, so a caller that only knows refusals still tells its user who holds the lock."""

    position: int = 0
    """1: next in line."""
    coalesced: bool = False
    """The request joined an identical pending one and will be told its result."""


@dataclass(frozen=True)
class Freed:
    """What a write that frees the lock did — a release, a force-release, an expiry (each its own subclass)."""

    record: LockRecord
    """The lock as the write left it (after a hand-off: as its previous holder let go)."""
    repeated: bool = False
    """True when the same write had already taken effect (a retry whose first answer was lost, a second reaper,
    a button pressed twice). A repeat reports the hand-off (while the request it was handed to still holds the
    lock) and the watchers told, as the first answer did: the caller acts on them again (the hand-off's dispatch
    and the messages are idempotent)."""
    handed_to: HandOff | None = None
    """The head of the queue, handed the lock in the same write: dispatch for it and tell its requesters."""
    notify: tuple[str, ...] = ()
    """The users who asked to be told when the lock frees (moved to ``notified`` in the same write)."""


@dataclass(frozen=True)
class Released(Freed):
    """The holder released the lock (COMPLETED or FAILED)."""


@dataclass(frozen=True)
class Extended:
    record: LockRecord


@dataclass(frozen=True)
class ForceReleased(Freed):
    """Someone presenting the current token (an admin, a cancel) force-released the lock."""


@dataclass(frozen=True)
class Noted:
    record: LockRecord


@dataclass(frozen=True)
class MarkedExpired(Freed):
    """The reaper recorded a lapsed lease as EXPIRED."""


@dataclass(frozen=True)
class NotHolder:
    """Refused: the caller does not hold the lock it names (or, for the reaper, the lease has not lapsed)."""

    reason: Refusal
    current: LockRecord | None


@dataclass(frozen=True)
class Dequeued:
    record: LockRecord
    position: int
    """Where the request stood before it left."""


@dataclass(frozen=True)
class NotQueued:
    current: LockRecord | None


@dataclass(frozen=True)
class Watching:
    """The user will be named in the outcome of the write that frees the lock."""

    record: LockRecord


@dataclass(frozen=True)
class FreeNow:
    """Nothing to wait for: the lock is free and nobody waits."""

    current: LockRecord | None


AcquireOutcome = Acquired | HeldBySomeone
ReleaseOutcome = Released | NotHolder
ExtendOutcome = Extended | NotHolder
ForceReleaseOutcome = ForceReleased | NotHolder
ExpireOutcome = MarkedExpired | NotHolder
NoteOutcome = Noted | NotHolder
DequeueOutcome = Dequeued | NotQueued
WatchOutcome = Watching | FreeNow
Outcome = Acquired | HeldBySomeone | Released | Extended | Noted | ForceReleased | MarkedExpired | NotHolder
