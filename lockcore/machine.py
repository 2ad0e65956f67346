"""Every rule of the lock lives in this file.

Theory of operation
===================
A lock is one item per key (``build-router-plt``). Whoever holds it holds a *lease*: the right to act until
``leaseExpiresAt``, proven by the pair (owner, token). The *fencing token* rises by one on every successful
acquire of the key and never goes back, so a holder that slept through its lease and was replaced carries a
smaller token than the new holder, and anything that compares tokens can refuse it.

Nothing here does I/O. Each operation is a :class:`Transition`: a *guard* (the condition under which the write
takes effect) and an *effect* (what the write does), both as data from :mod:`lockcore.expressions`. A store
performs the transition as one atomic conditional write — one DynamoDB request — and hands the item back to
the ``*_outcome`` function here, which names what happened. When the guard refuses, the store hands back the item
as it was (DynamoDB's ``ReturnValuesOnConditionCheckFailure=ALL_OLD``), and the outcome function explains the
refusal from it: who holds the lock, or why the caller is not the holder — or recognises a repeat of a request
that already took effect (an SQS redelivery, a retry whose first answer was lost) and answers it the same way.

Time is the caller's clock, passed in as ``now`` (epoch seconds). A lease is live while ``now <
leaseExpiresAt``; a lease that has ended frees the lock *in the write's condition*, whether or not anybody
recorded the expiry and whether or not DynamoDB's TTL has deleted anything.

States, as :func:`state_of` derives them from the item and the clock::

    FREE            no item
    HELD            IN_PROGRESS and the lease runs
    LAPSED          IN_PROGRESS but the lease has ended (nobody recorded it yet), or EXPIRED (recorded)
    COMPLETED / FAILED / FORCE_RELEASED    released, with the last outcome readable

Only HELD is "locked"; every other state is free to acquire. :data:`TRANSITIONS` is the table of which operation
may start from which state and where it leads; ``tests/lockcore/test_machine.py`` checks every guard against it
and the README's diagram is drawn from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from lockcore import record as r
from lockcore.expressions import (
    Above,
    Absent,
    AllOf,
    AnyOf,
    AtMost,
    Effect,
    Equals,
    Guard,
    Item,
    Missing,
    OneOf,
    Value,
)
from lockcore.record import LockRecord, Status


class LockState(StrEnum):
    FREE = "FREE"
    HELD = "HELD"
    LAPSED = "LAPSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    FORCE_RELEASED = "FORCE_RELEASED"


class Operation(StrEnum):
    ACQUIRE = "acquire"
    RELEASE = "release"
    EXTEND = "extend"
    FORCE_RELEASE = "force-release"
    EXPIRE = "expire"
    NOTE = "note"


RELEASED_STATES = frozenset({LockState.COMPLETED, LockState.FAILED, LockState.FORCE_RELEASED})
FREE_STATES = frozenset({LockState.FREE, LockState.LAPSED}) | RELEASED_STATES

TRANSITIONS: dict[Operation, tuple[frozenset[LockState], frozenset[LockState], str]] = {
    # operation: (states it may start from, states it leads to, who may do it)
    Operation.ACQUIRE: (FREE_STATES, frozenset({LockState.HELD}), "anyone"),
    Operation.EXTEND: (
        frozenset({LockState.HELD}),
        frozenset({LockState.HELD}),
        "the holder (owner + token)",
    ),
    Operation.RELEASE: (
        frozenset({LockState.HELD, LockState.LAPSED}),
        frozenset({LockState.COMPLETED, LockState.FAILED}),
        "the holder (owner + token), also after its lease ended if nobody replaced it",
    ),
    Operation.FORCE_RELEASE: (
        frozenset({LockState.HELD, LockState.LAPSED}),
        frozenset({LockState.FORCE_RELEASED}),
        "anyone presenting the current token (admins, in the workers)",
    ),
    Operation.NOTE: (frozenset({LockState.HELD}), frozenset({LockState.HELD}), "the holder (owner + token)"),
    Operation.EXPIRE: (
        frozenset({LockState.LAPSED}),
        frozenset({LockState.LAPSED}),
        "anyone presenting the current token (the reaper), once the lease has ended",
    ),
}

RELEASE_OUTCOMES = frozenset({Status.COMPLETED, Status.FAILED})
_NOT_IN_PROGRESS = tuple(s.value for s in Status if s is not Status.IN_PROGRESS)


def lease_end(item: Item) -> int | None:
    """Where the lease ends: ``leaseExpiresAt``, or ``ttl`` on an item written by the user's original code."""
    value = item.get(r.LEASE_EXPIRES_AT, item.get(r.LEGACY_TTL))
    return value if isinstance(value, int) else None


def state_of(item: Item | None, now: int) -> LockState:
    if item is None:
        return LockState.FREE
    status = r.status_of(item)
    if status is Status.IN_PROGRESS:
        end = lease_end(item)
        return LockState.HELD if end is not None and now < end else LockState.LAPSED
    if status is Status.EXPIRED:
        return LockState.LAPSED
    return LockState(status.value)


def is_live(item: Item | None, now: int) -> bool:
    return state_of(item, now) is LockState.HELD


# --------------------------------------------------------------------------------------------------- guards
def _lease_ended(now: int) -> Guard:
    return AnyOf(
        (
            AtMost(r.LEASE_EXPIRES_AT, now),
            AllOf((Absent(r.LEASE_EXPIRES_AT), AtMost(r.LEGACY_TTL, now))),
        )
    )


def _lease_runs(now: int) -> Guard:
    return Above(r.LEASE_EXPIRES_AT, now)


def _presents(owner: str, token: int) -> Guard:
    return AllOf((Equals(r.TOKEN, token), Equals(r.OWNER, owner)))


def acquire_guard(now: int) -> Guard:
    """Free: no item, released, or the lease has ended."""
    return AnyOf((Missing(), OneOf(r.STATUS, _NOT_IN_PROGRESS), _lease_ended(now)))


def release_guard(owner: str, token: int) -> Guard:
    # No lease test: a holder nobody replaced may record its outcome late. The token proves nobody did.
    return AllOf((_presents(owner, token), OneOf(r.STATUS, (Status.IN_PROGRESS, Status.EXPIRED))))


def extend_guard(owner: str, token: int, now: int) -> Guard:
    return AllOf((_presents(owner, token), Equals(r.STATUS, Status.IN_PROGRESS), _lease_runs(now)))


def force_release_guard(token: int) -> Guard:
    return AllOf((Equals(r.TOKEN, token), OneOf(r.STATUS, (Status.IN_PROGRESS, Status.EXPIRED))))


def expire_guard(token: int, now: int) -> Guard:
    return AllOf((Equals(r.TOKEN, token), Equals(r.STATUS, Status.IN_PROGRESS), _lease_ended(now)))


# -------------------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class AcquireRequest:
    lock_key: str
    owner: str
    lease_seconds: int
    locked_by: str = ""
    locked_by_name: str = ""
    component: str = ""
    environment: str = ""
    correlation_id: str | None = None


@dataclass(frozen=True)
class Transition:
    operation: Operation
    lock_key: str
    guard: Guard
    effect: Effect

    @property
    def key(self) -> dict[str, Value]:
        return {r.KEY: self.lock_key}


def acquire(request: AcquireRequest, now: int) -> Transition:
    if request.lease_seconds <= 0:
        raise ValueError("a lease must last at least one second")
    values: dict[str, Value] = {
        r.OWNER: request.owner,
        r.STATUS: Status.IN_PROGRESS.value,
        r.LOCKED_BY: request.locked_by,
        r.LOCKED_BY_NAME: request.locked_by_name,
        r.LOCKED_AT: r.iso(now),
        r.LEASE_EXPIRES_AT: now + request.lease_seconds,
        r.COMPONENT: request.component,
        r.ENVIRONMENT: request.environment,
    }
    if request.correlation_id is not None:
        values[r.CORRELATION_ID] = request.correlation_id
    # Everything the previous holder left goes, and so does a legacy `ttl`, so TTL can never delete the
    # item — and its token counter — from now on.
    stale = (set(r.HOLDER_ATTRIBUTES) | set(r.RELEASE_ATTRIBUTES) | set(r.NOTE_ATTRIBUTES) | {r.LEGACY_TTL}) - set(
        values
    )
    return Transition(
        Operation.ACQUIRE,
        request.lock_key,
        acquire_guard(now),
        Effect(set=values, remove=frozenset(stale), bump=r.TOKEN),
    )


def release(lock_key: str, owner: str, token: int, outcome: Status, now: int) -> Transition:
    if outcome not in RELEASE_OUTCOMES:
        raise ValueError(f"a holder releases with COMPLETED or FAILED, not {outcome}")
    return Transition(
        Operation.RELEASE,
        lock_key,
        release_guard(owner, token),
        Effect(set={r.STATUS: outcome.value, r.RELEASED_AT: r.iso(now)}),
    )


def extend(lock_key: str, owner: str, token: int, lease_seconds: int, now: int) -> Transition:
    if lease_seconds <= 0:
        raise ValueError("a lease must last at least one second")
    return Transition(
        Operation.EXTEND,
        lock_key,
        extend_guard(owner, token, now),
        Effect(set={r.LEASE_EXPIRES_AT: now + lease_seconds}),
    )


def force_release(lock_key: str, token: int, by: str, reason: str, now: int) -> Transition:
    if not by or not reason:
        raise ValueError("a force-release records who did it and why")
    return Transition(
        Operation.FORCE_RELEASE,
        lock_key,
        force_release_guard(token),
        Effect(
            set={
                r.STATUS: Status.FORCE_RELEASED.value,
                r.RELEASED_AT: r.iso(now),
                r.RELEASED_BY: by,
                r.RELEASE_REASON: reason,
            }
        ),
    )


def note(lock_key: str, owner: str, token: int, notes: Mapping[str, str], now: int) -> Transition:
    unknown = set(notes) - set(r.NOTE_ATTRIBUTES)
    if unknown or not notes:
        raise ValueError(f"a holder notes some of {', '.join(r.NOTE_ATTRIBUTES)}; not {sorted(unknown)}")
    # The same guard as extend: only a live holder may say what it is doing under the lock.
    return Transition(Operation.NOTE, lock_key, extend_guard(owner, token, now), Effect(set=dict(notes)))


def expire(lock_key: str, token: int, now: int) -> Transition:
    return Transition(
        Operation.EXPIRE,
        lock_key,
        expire_guard(token, now),
        Effect(set={r.STATUS: Status.EXPIRED.value, r.RELEASED_AT: r.iso(now)}),
    )


# -------------------------------------------------------------------------------------------------- outcomes
class Refusal(StrEnum):
    NO_LOCK = "no lock is recorded under this key"
    STALE_TOKEN = "the token is stale: the lock has been acquired again since"
    NOT_OWNER = "the lock is held under another owner"
    LEASE_ENDED = "the lease has already ended"
    LEASE_RUNS = "the lease has not ended yet"
    NOT_HELD = "the lock is not held any more"
    CHANGED = "the lock changed while the request was in flight; look again"


@dataclass(frozen=True)
class Acquired:
    record: LockRecord
    reentered: bool = False
    """True when the owner already held the lock (a redelivered request): same token, nothing written."""

    @property
    def token(self) -> int:
        return self.record.token


@dataclass(frozen=True)
class HeldBySomeone:
    holder: LockRecord


@dataclass(frozen=True)
class Released:
    record: LockRecord
    repeated: bool = False
    """True when the same release had already taken effect (a retry whose first answer was lost)."""


@dataclass(frozen=True)
class Extended:
    record: LockRecord


@dataclass(frozen=True)
class ForceReleased:
    record: LockRecord
    repeated: bool = False


@dataclass(frozen=True)
class Noted:
    record: LockRecord


@dataclass(frozen=True)
class MarkedExpired:
    record: LockRecord


@dataclass(frozen=True)
class NotHolder:
    """Refused: the caller does not hold the lock it names (or, for the reaper, the lease has not lapsed)."""

    reason: Refusal
    current: LockRecord | None


AcquireOutcome = Acquired | HeldBySomeone
ReleaseOutcome = Released | NotHolder
ExtendOutcome = Extended | NotHolder
ForceReleaseOutcome = ForceReleased | NotHolder
ExpireOutcome = MarkedExpired | NotHolder
NoteOutcome = Noted | NotHolder
Outcome = Acquired | HeldBySomeone | Released | Extended | Noted | ForceReleased | MarkedExpired | NotHolder


@dataclass(frozen=True)
class Written:
    """The guard held; ``item`` is the item after the write."""

    item: Item


@dataclass(frozen=True)
class Refused:
    """The guard did not hold; ``item`` is the item as it was (``None``: no item)."""

    item: Item | None


WriteResult = Written | Refused


def _record(item: Item | None) -> LockRecord | None:
    return LockRecord.from_item(item) if item is not None else None


def _why_not_holder(item: Item | None, owner: str | None, token: int) -> Refusal | None:
    if item is None:
        return Refusal.NO_LOCK
    if item.get(r.TOKEN) != token:
        return Refusal.STALE_TOKEN
    if owner is not None and item.get(r.OWNER) != owner:
        return Refusal.NOT_OWNER
    return None


def acquire_outcome(request: AcquireRequest, result: WriteResult, now: int) -> AcquireOutcome:
    if isinstance(result, Written):
        return Acquired(LockRecord.from_item(result.item))
    item = result.item
    if item is None:
        # Only a store that answers a refused write without the item, then finds none on a fresh read.
        raise LookupError(f"{request.lock_key}: the write was refused but no lock exists; try again")
    holder = LockRecord.from_item(item)
    if is_live(item, now) and holder.owner == request.owner:
        return Acquired(holder, reentered=True)
    return HeldBySomeone(holder)


def release_outcome(owner: str, token: int, outcome: Status, result: WriteResult) -> ReleaseOutcome:
    if isinstance(result, Written):
        return Released(LockRecord.from_item(result.item))
    item = result.item
    reason = _why_not_holder(item, owner, token)
    if reason is not None:
        return NotHolder(reason, _record(item))
    assert item is not None
    if item.get(r.STATUS) == outcome:
        return Released(LockRecord.from_item(item), repeated=True)
    return NotHolder(Refusal.NOT_HELD if item.get(r.STATUS) != Status.IN_PROGRESS else Refusal.CHANGED,
                     _record(item))  # fmt: skip


def extend_outcome(owner: str, token: int, result: WriteResult, now: int) -> ExtendOutcome:
    if isinstance(result, Written):
        return Extended(LockRecord.from_item(result.item))
    item = result.item
    reason = _why_not_holder(item, owner, token)
    if reason is None:
        state = state_of(item, now)
        reason = {LockState.LAPSED: Refusal.LEASE_ENDED, LockState.HELD: Refusal.CHANGED}.get(state, Refusal.NOT_HELD)
    return NotHolder(reason, _record(item))


def note_outcome(owner: str, token: int, result: WriteResult, now: int) -> NoteOutcome:
    if isinstance(result, Written):
        return Noted(LockRecord.from_item(result.item))
    refused = extend_outcome(owner, token, result, now)
    assert isinstance(refused, NotHolder)
    return refused


def force_release_outcome(token: int, by: str, result: WriteResult) -> ForceReleaseOutcome:
    if isinstance(result, Written):
        return ForceReleased(LockRecord.from_item(result.item))
    item = result.item
    reason = _why_not_holder(item, None, token)
    if reason is not None:
        return NotHolder(reason, _record(item))
    assert item is not None
    if item.get(r.STATUS) == Status.FORCE_RELEASED and item.get(r.RELEASED_BY) == by:
        return ForceReleased(LockRecord.from_item(item), repeated=True)
    return NotHolder(Refusal.NOT_HELD, _record(item))


def expire_outcome(token: int, result: WriteResult, now: int) -> ExpireOutcome:
    if isinstance(result, Written):
        return MarkedExpired(LockRecord.from_item(result.item))
    item = result.item
    reason = _why_not_holder(item, None, token)
    if reason is None:
        reason = Refusal.LEASE_RUNS if is_live(item, now) else Refusal.NOT_HELD
    return NotHolder(reason, _record(item))


def holds_token(item: Item | None, token: int, now: int) -> bool:
    """The fencing check: is ``token`` the token of the current, unexpired holder?"""
    return is_live(item, now) and item is not None and item.get(r.TOKEN) == token
