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
the rules here, which name what happened (in the vocabulary of :mod:`lockcore.outcomes`). When the guard
refuses, the store hands back the item as it was (DynamoDB's ``ReturnValuesOnConditionCheckFailure=ALL_OLD``),
and the rules explain the refusal from it: who holds the lock, or why the caller is not the holder — or recognise
a repeat of a request that already took effect (an SQS redelivery, a retry whose first answer was lost) and
answer it the same way.

Time is the caller's clock, passed in as ``now`` (epoch seconds). A lease is live while ``now <
leaseExpiresAt``; a lease that has ended frees the lock *in the write's condition*, whether or not anybody
recorded the expiry and whether or not DynamoDB's TTL has deleted anything.

States, as :func:`state_of` derives them from the item and the clock::

    FREE            no item
    HELD            IN_PROGRESS and the lease runs
    LAPSED          IN_PROGRESS but the lease has ended (nobody recorded it yet), or EXPIRED (recorded)
    COMPLETED / FAILED / FORCE_RELEASED    released, with the last outcome readable

Only HELD is "locked"; every other state is free to acquire — unless others wait in the lock's queue.

The three writes that free the lock — release, force-release, expire — are one rule, :class:`Freeing`, that
differs only in who may free, the status it records and what its repeat is recognised by.

The queue (``AcquireRequest(queue=True)``) lives in the item, in order, with the users watching for the lock to
free. A newcomer never jumps it; the write that frees the lock hands it to the head in the same write (a
HAND_OFF: new owner, token + 1); a lapsed lease with a queue goes to the head on the next acquire or expire.
DynamoDB cannot choose between two effects in one UpdateItem, so where a queue or watchers exist the first write
(which assumes none — unless a freeing write is decided from the caller's read of the lock, ``seen``) is refused,
and the next write is decided from the item it returns, conditioned on the exact queue it saw. Which write to
make from an item is a rule, and lives here; when to decide again, from what, and when to give up is the
protocol of :mod:`lockcore.redecide`. A freeing write keeps on the item what it did (the entry it handed the lock
to, the watchers it told), so that its repeat, after a lost answer, reports the same.

:data:`TRANSITIONS` is the table of which operation may start from which state and where it leads;
``tests/lockcore/test_machine.py`` checks every guard against it and the diagram in docs/lock.md is drawn from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

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
    Not,
    OneOf,
    Value,
    apply,
)
from lockcore.outcomes import (
    Acquired,
    AcquireOutcome,
    Dequeued,
    DequeueOutcome,
    Extended,
    ExtendOutcome,
    ForceReleased,
    Freed,
    FreeNow,
    HandOff,
    HeldBySomeone,
    MarkedExpired,
    Noted,
    NoteOutcome,
    NotHolder,
    NotQueued,
    Queued,
    Refusal,
    Released,
    Watching,
    WatchOutcome,
)
from lockcore.record import LockRecord, QueueEntry, Status


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
    HAND_OFF = "hand-off"
    ENQUEUE = "enqueue"
    DEQUEUE = "dequeue"
    WATCH = "watch"


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
    Operation.HAND_OFF: (
        frozenset({LockState.HELD, LockState.LAPSED}),  # a released lock has no queue: its release handed off
        frozenset({LockState.HELD}),
        "the head of the queue, in the very write that frees the lock (release, force-release, expire), "
        "or in the next acquire of a lapsed lock with a queue",
    ),
}
QUEUE_EDITS = frozenset({Operation.ENQUEUE, Operation.DEQUEUE, Operation.WATCH})
"""Operations that edit the queue or the watchers and never change the lock's state (so not in the table)."""

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
            # No lease end at all (not an item we or the original code write): ended, as state_of reads it,
            # so that such an item can never hold a key for good.
            AllOf((Absent(r.LEASE_EXPIRES_AT), Absent(r.LEGACY_TTL))),
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
    queue: bool = False
    """The conflict policy: ``False`` refuses when the lock is busy (``HeldBySomeone``); ``True`` joins its queue
    (``Queued``)."""
    coalesce: str = ""
    """What makes two pending requests the same run (command, component, environment, ref); empty: never
    coalesced."""


@dataclass(frozen=True)
class Transition:
    operation: Operation
    lock_key: str
    guard: Guard
    effect: Effect
    seen: Item | None = None
    """The item this write was decided from (a refused write's answer, or the caller's read), where reading its
    outcome needs it: a hand-off (whom it went to, how the lock was let go), a freeing write that clears the
    watchers (whom to tell), a dequeue (where the request stood)."""
    handed: HandOff | None = None
    """A hand-off an earlier write of the same operation performed, to be reported with its outcome."""

    @property
    def key(self) -> dict[str, Value]:
        return {r.KEY: self.lock_key}


_STALE = (
    frozenset(r.HOLDER_ATTRIBUTES)
    | set(r.RELEASE_ATTRIBUTES)
    | set(r.NOTE_ATTRIBUTES)
    | set(r.PREVIOUS_ATTRIBUTES)
    | {r.LEGACY_TTL}
)
"""What a new holder must not inherit from the last: its attributes, its release, its notes, a legacy `ttl`."""


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
    stale = _STALE - set(values)
    # A newcomer never jumps a queue: with anyone waiting, the write is refused and the machine decides again.
    return Transition(
        Operation.ACQUIRE,
        request.lock_key,
        AllOf((acquire_guard(now), Absent(r.QUEUE))),
        Effect(set=values, remove=frozenset(stale), bump=r.TOKEN),
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


def note(lock_key: str, owner: str, token: int, notes: Mapping[str, str], now: int) -> Transition:
    unknown = set(notes) - set(r.NOTE_ATTRIBUTES)
    if unknown or not notes:
        raise ValueError(f"a holder notes some of {', '.join(r.NOTE_ATTRIBUTES)}; not {sorted(unknown)}")
    # The same guard as extend: only a live holder may say what it is doing under the lock.
    return Transition(Operation.NOTE, lock_key, extend_guard(owner, token, now), Effect(set=dict(notes)))


# --------------------------------------------------------------------------------------------- freeing writes
_TOLD = frozenset({r.NOTIFIED})
"""A freeing write says whom it told: nobody, unless it is decided again from the watchers it saw."""
_Freed_co = TypeVar("_Freed_co", bound=Freed, covariant=True)


def _not_held(item: Item, now: int) -> Refusal:
    return Refusal.NOT_HELD


@dataclass(frozen=True)
class Freeing(Generic[_Freed_co]):
    """A write that frees the lock, written once for the three that do (release, force-release, expire: thin
    instances below). They differ in who may free (``guard``), the status recorded (and ``records``: who and why,
    for a force-release), and what a repeat is recognised by (the status, the holder's ``owner``, the admin's
    ``by``); everything else — the hand-off, the watchers told, the explanation of a refusal — is the same."""

    operation: Operation
    lock_key: str
    token: int
    now: int
    guard: Guard
    """Who may free the lock, whoever waits or watches."""
    status: Status
    answer: type[_Freed_co]
    """What a write that took effect (or its repeat) answers."""
    owner: str | None = None
    """The holder, for a release: only its own write is recognised as a repeat (anyone else: ``NOT_OWNER``)."""
    by: str | None = None
    """The admin, for a force-release: only theirs is recognised as a repeat."""
    records: Mapping[str, Value] = field(default_factory=dict)
    """What the write records besides the status and when."""
    refused_because: Callable[[Item, int], Refusal] = _not_held
    """Why a write presenting the current token, and no repeat, was refused (given the item and ``now``)."""

    @property
    def effect(self) -> Effect:
        values: dict[str, Value] = {r.STATUS: self.status.value, r.RELEASED_AT: r.iso(self.now), **self.records}
        return Effect(set=values, remove=_TOLD)

    @property
    def blind(self) -> Transition:
        """The write decided without a read of the lock: it takes effect at once only when nobody waits and nobody
        watches; otherwise it is refused, and the item it returns shows which write to make (:meth:`decided_from`).
        """
        guard = AllOf((self.guard, Absent(r.QUEUE), Absent(r.WATCHERS)))
        return Transition(self.operation, self.lock_key, guard, self.effect)

    def decided_from(self, seen: Item) -> Transition:
        """The write decided knowing ``seen``'s queue and watchers: hand the lock to the head of the queue, or free
        it and clear the watchers — conditioned on the exact queue and watchers (and token) it was decided from."""
        effect = self.effect
        if queue_of(seen):
            previous: dict[str, Value] = {
                r.PREVIOUS_OWNER: seen.get(r.OWNER, ""),
                r.PREVIOUS_TOKEN: seen.get(r.TOKEN, 0),
                r.PREVIOUS_STATUS: self.status.value,
            }
            if self.by is not None:
                previous[r.PREVIOUS_RELEASED_BY] = self.by
            return hand_off(self.lock_key, seen, self.guard, self.now, previous=previous)
        gone = {r.WATCHERS} | ({r.QUEUE} & set(seen))  # an unreadable queue goes too
        guard = AllOf((self.guard, _as_seen(r.QUEUE, seen), _as_seen(r.WATCHERS, seen)))
        told = watchers_of(seen)  # kept, so that a retry of this write tells them again
        kept = {**effect.set, r.NOTIFIED: r.encode_watchers(told)} if told else effect.set
        effect = replace(effect, set=kept, remove=(effect.remove | gone) - set(kept))
        return Transition(self.operation, self.lock_key, guard, effect, seen=seen)

    def outcome(self, result: WriteResult, transition: Transition | None = None) -> _Freed_co | NotHolder:
        """What one of this operation's writes answered; ``transition`` is the write (by default :attr:`blind`),
        which knows what it was decided from: the entry a hand-off went to, the watchers it told."""
        if isinstance(result, Written):
            return self._freed(transition if transition is not None else self.blind, result.item)
        item = result.item
        reason = _why_not_holder(item, self.owner, self.token)
        if item is not None and reason is Refusal.STALE_TOKEN and self._handed_on(item):
            # it took effect, and handed the lock on
            released = _as_released(item, self.token, self.status)
            return self.answer(released, repeated=True, handed_to=_still_handed(item))
        if reason is not None:
            return NotHolder(reason, _record(item))
        assert item is not None
        if item.get(r.STATUS) == self.status and (self.by is None or item.get(r.RELEASED_BY) == self.by):
            return self.answer(LockRecord.from_item(item), repeated=True, notify=_notified(item))
        return NotHolder(self.refused_because(item, self.now), _record(item))

    def _freed(self, transition: Transition, item: Item) -> _Freed_co:
        """What a freeing write did: the lock as freed, the hand-off it made, the watchers to tell."""
        seen = transition.seen
        if transition.operation is Operation.HAND_OFF and seen is not None:
            effect = self.effect
            released = apply(replace(effect, remove=effect.remove | {r.QUEUE}), transition.key, seen)
            handed = HandOff(queue_of(seen)[0], LockRecord.from_item(item))
            return self.answer(LockRecord.from_item(released), handed_to=handed)
        return self.answer(LockRecord.from_item(item), notify=watchers_of(seen))

    def _handed_on(self, item: Item) -> bool:
        """The item records that the holder of the token let go with this status and the lock went to the queue."""
        previous = (item.get(r.PREVIOUS_TOKEN), item.get(r.PREVIOUS_STATUS))
        return (
            previous == (self.token, self.status.value)
            and (self.owner is None or item.get(r.PREVIOUS_OWNER) == self.owner)
            and (self.by is None or item.get(r.PREVIOUS_RELEASED_BY) == self.by)
        )


def _changed_unless_released(item: Item, now: int) -> Refusal:
    """A release refused while its holder's lock is still in progress: the queue or the watchers changed."""
    return Refusal.NOT_HELD if item.get(r.STATUS) != Status.IN_PROGRESS else Refusal.CHANGED


def _lease_runs_or_not_held(item: Item, now: int) -> Refusal:
    return Refusal.LEASE_RUNS if is_live(item, now) else Refusal.NOT_HELD


def release(lock_key: str, owner: str, token: int, outcome: Status, now: int) -> Freeing[Released]:
    """The holder (owner + token) records how its run ended, also after its lease ended if nobody replaced it."""
    if outcome not in RELEASE_OUTCOMES:
        raise ValueError(f"a holder releases with COMPLETED or FAILED, not {outcome}")
    return Freeing(
        Operation.RELEASE,
        lock_key,
        token,
        now,
        guard=release_guard(owner, token),
        status=outcome,
        answer=Released,
        owner=owner,
        refused_because=_changed_unless_released,
    )


def force_release(lock_key: str, token: int, by: str, reason: str, now: int) -> Freeing[ForceReleased]:
    """Anyone presenting the current token (an admin) frees the lock, recording who and why."""
    if not by or not reason:
        raise ValueError("a force-release records who did it and why")
    return Freeing(
        Operation.FORCE_RELEASE,
        lock_key,
        token,
        now,
        guard=force_release_guard(token),
        status=Status.FORCE_RELEASED,
        answer=ForceReleased,
        by=by,
        records={r.RELEASED_BY: by, r.RELEASE_REASON: reason},
    )


def expire(lock_key: str, token: int, now: int) -> Freeing[MarkedExpired]:
    """Anyone presenting the current token (the reaper) records a lease that has ended."""
    return Freeing(
        Operation.EXPIRE,
        lock_key,
        token,
        now,
        guard=expire_guard(token, now),
        status=Status.EXPIRED,
        answer=MarkedExpired,
        refused_because=_lease_runs_or_not_held,
    )


# ----------------------------------------------------------------------------------- what a write answered
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


def _still_handed(item: Item) -> HandOff | None:
    """The hand-off the item records, while the request it was handed to still holds the lock (once that request
    has let go, reporting the hand-off again would start its run twice)."""
    handed = r.decode_queue(item.get(r.PREVIOUS_HANDED_TO))
    if not handed or item.get(r.OWNER) != handed[0].owner or r.status_of(item) is not Status.IN_PROGRESS:
        return None
    return HandOff(handed[0], LockRecord.from_item(item))


def _notified(item: Item) -> tuple[str, ...]:
    """The watchers the write that freed the lock told (kept on the item until the next acquire)."""
    return r.decode_watchers(item.get(r.NOTIFIED))


def _as_released(item: Item, token: int, status: Status) -> LockRecord:
    """The lock as its previous holder left it, from what the hand-off recorded."""
    previous = {r.KEY: item[r.KEY], r.TOKEN: token, r.OWNER: item.get(r.PREVIOUS_OWNER, ""), r.STATUS: status.value}
    if r.PREVIOUS_RELEASED_BY in item:
        previous[r.RELEASED_BY] = item[r.PREVIOUS_RELEASED_BY]
    return LockRecord.from_item(previous)


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


def holds_token(item: Item | None, token: int, now: int) -> bool:
    """The fencing check: is ``token`` the token of the current, unexpired holder?"""
    return is_live(item, now) and item is not None and item.get(r.TOKEN) == token


# --------------------------------------------------------------------------------- the queue and the watchers
# DynamoDB's UpdateItem cannot choose between two effects, and freeing a lock with a queue is a different write
# (hand the lock to the head) from freeing one without (record the outcome). So each write is decided from what
# the machine knows: a first attempt assumes no queue and no watchers — one request, as always, when none
# exist. If they do, the refused write hands back the item (ALL_OLD) and the machine decides the next write from
# it, conditioned on the exact queue (and watchers, and token) it saw: a write that races another is refused in
# turn and decided again, so nothing is ever done on a stale view. `lockcore.redecide.drive` runs those steps for
# every store.
_Answer_co = TypeVar("_Answer_co", covariant=True)


class Step(Protocol[_Answer_co]):
    """What the machine decides from a write's answer: the next write, or the operation's outcome."""

    def __call__(self, transition: Transition | None, result: WriteResult, /) -> Transition | _Answer_co: ...


def queue_of(item: Item | None) -> tuple[QueueEntry, ...]:
    return r.decode_queue(item.get(r.QUEUE)) if item is not None else ()


def watchers_of(item: Item | None) -> tuple[str, ...]:
    return r.decode_watchers(item.get(r.WATCHERS)) if item is not None else ()


def position_of(entries: tuple[QueueEntry, ...], owner: str) -> int | None:
    """Where ``owner`` waits (1: next in line) — as an entry's owner or as a requester coalesced into it."""
    for position, entry in enumerate(entries, 1):
        if any(requester.owner == owner for requester in entry.requesters):
            return position
    return None


def _as_seen(name: str, item: Item | None) -> Guard:
    """The attribute is exactly as in ``item`` (absent if it was)."""
    value = item.get(name) if item is not None else None
    return Equals(name, value) if value is not None else Absent(name)


def _busy(now: int) -> Guard:
    """A newcomer could not take the lock now: it is held, or others wait."""
    return AnyOf((Not(acquire_guard(now)), Not(Absent(r.QUEUE))))


def _out_of_ttl(seen: Item) -> tuple[dict[str, Value], frozenset[str], tuple[Guard, ...]]:
    """A legacy item keeps its lease end in ``ttl``, which DynamoDB's TTL may delete — queue and watchers with
    it. Whoever writes a queue or watchers onto one moves the lease end to ``leaseExpiresAt`` first."""
    if r.LEGACY_TTL not in seen:
        return {}, frozenset(), ()
    end = lease_end(seen)
    moved: dict[str, Value] = {r.LEASE_EXPIRES_AT: end} if end is not None else {}
    return (
        moved,
        frozenset({r.LEGACY_TTL}),
        (Equals(r.LEGACY_TTL, seen[r.LEGACY_TTL]), _as_seen(r.LEASE_EXPIRES_AT, seen)),
    )


def hand_off(
    lock_key: str,
    seen: Item,
    base: Guard,
    now: int,
    *,
    handed: HandOff | None = None,
    previous: Mapping[str, Value] | None = None,
) -> Transition:
    """The head of ``seen``'s queue takes the lock in the same write that frees it: a new token, its own lease,
    the rest of the queue moving up. ``base`` is the freeing operation's own guard."""
    head, *rest = queue_of(seen)
    asker = head.requesters[0]
    values: dict[str, Value] = {
        r.OWNER: head.owner,
        r.STATUS: Status.IN_PROGRESS.value,
        r.LOCKED_BY: asker.user,
        r.LOCKED_BY_NAME: asker.name,
        r.LOCKED_AT: r.iso(now),
        r.LEASE_EXPIRES_AT: now + head.lease_seconds,
        r.COMPONENT: head.component,
        r.ENVIRONMENT: head.environment,
    }
    if head.correlation_id is not None:
        values[r.CORRELATION_ID] = head.correlation_id
    if rest:
        values[r.QUEUE] = r.encode_queue(rest)
    values[r.PREVIOUS_HANDED_TO] = r.encode_queue([head])  # whom it went to: for a repeat, and for the reaper
    values.update(previous or {})
    stale = (_STALE | {r.QUEUE}) - set(values)
    guard = AllOf((base, _as_seen(r.TOKEN, seen), _as_seen(r.QUEUE, seen)))
    effect = Effect(set=values, remove=frozenset(stale), bump=r.TOKEN)
    return Transition(Operation.HAND_OFF, lock_key, guard, effect, seen=seen, handed=handed)


def enqueue(request: AcquireRequest, seen: Item, now: int, handed: HandOff | None = None) -> Transition:
    """Join the queue — into an identical pending entry if there is one — conditioned on the queue as seen and
    on the lock still being busy (a lock that freed meanwhile is taken, not queued for)."""
    entries = list(queue_of(seen))
    me = r.Requester(request.owner, request.locked_by, request.locked_by_name)
    for index, entry in enumerate(entries):
        if request.coalesce and entry.coalesce == request.coalesce:
            entries[index] = replace(entry, requesters=(*entry.requesters, me))
            break
    else:
        entries.append(
            QueueEntry(
                (me,),
                request.lease_seconds,
                request.component,
                request.environment,
                request.coalesce,
                request.correlation_id,
            )
        )
    moved, gone, kept = _out_of_ttl(seen)
    guard = AllOf((_as_seen(r.QUEUE, seen), _busy(now), *kept))
    effect = Effect(set={**moved, r.QUEUE: r.encode_queue(entries)}, remove=gone)
    return Transition(Operation.ENQUEUE, request.lock_key, guard, effect, handed=handed)


def _queued(request: AcquireRequest, item: Item, handed: HandOff | None) -> Queued | None:
    entries = queue_of(item)
    position = position_of(entries, request.owner)
    if position is None:
        return None
    coalesced = entries[position - 1].owner != request.owner
    return Queued(LockRecord.from_item(item), handed, position=position, coalesced=coalesced)


def acquire_step(request: AcquireRequest, now: int) -> Step[AcquireOutcome]:
    def step(transition: Transition | None, result: WriteResult) -> Transition | AcquireOutcome:
        handed = transition.handed if transition is not None else None
        item: Item | None = result.item
        if isinstance(result, Written) and transition is not None:
            item = result.item
            if transition.operation is Operation.ACQUIRE:
                return Acquired(LockRecord.from_item(item), handed_to=handed)
            if transition.operation is Operation.ENQUEUE:
                queued = _queued(request, item, handed)
                assert queued is not None
                return queued
            assert transition.seen is not None  # a hand-off this acquire made: decide again on the new item
            handed = HandOff(queue_of(transition.seen)[0], LockRecord.from_item(result.item))
        if item is None:
            raise LookupError(f"{request.lock_key}: the write was refused but no lock exists; try again")
        return _acquire_decision(request, item, now, handed)

    return step


def _acquire_decision(
    request: AcquireRequest, item: Item, now: int, handed: HandOff | None
) -> Transition | AcquireOutcome:
    record = LockRecord.from_item(item)
    live = is_live(item, now)
    if live and record.owner == request.owner:
        fresh = handed is not None and handed.entry.owner == request.owner
        return Acquired(record, reentered=not fresh, handed_to=handed)
    if not live and queue_of(item):
        # The lease lapsed with a queue waiting and nobody freed it: the head takes it, not this newcomer.
        return hand_off(request.lock_key, item, acquire_guard(now), now, handed=handed)
    queued = _queued(request, item, handed)
    if queued is not None:
        return queued  # already waiting: joining twice keeps one entry
    if not live:  # freed meanwhile (or a queue attribute that is not ours): take it, as seen
        first = acquire(request, now)
        guard = AllOf((acquire_guard(now), _as_seen(r.QUEUE, item)))
        effect = replace(first.effect, remove=first.effect.remove | ({r.QUEUE} & set(item)))
        return replace(first, guard=guard, effect=effect, handed=handed)
    if not request.queue:
        return HeldBySomeone(record, handed_to=handed)
    return enqueue(request, item, now, handed)


def dequeue_step(lock_key: str, owner: str) -> Step[DequeueOutcome]:
    def step(transition: Transition | None, result: WriteResult) -> Transition | DequeueOutcome:
        if isinstance(result, Written) and transition is not None:
            position = position_of(queue_of(transition.seen), owner)
            assert position is not None
            return Dequeued(LockRecord.from_item(result.item), position)
        item = result.item
        entries = queue_of(item)
        if item is None or position_of(entries, owner) is None:
            return NotQueued(_record(item))
        remaining = []
        for entry in entries:
            requesters = tuple(q for q in entry.requesters if q.owner != owner)
            if requesters:
                remaining.append(replace(entry, requesters=requesters))
        effect = (
            Effect(set={r.QUEUE: r.encode_queue(remaining)})
            if remaining
            else Effect(set={}, remove=frozenset({r.QUEUE}))
        )
        return Transition(Operation.DEQUEUE, lock_key, _as_seen(r.QUEUE, item), effect, seen=item)

    return step


def watch_step(lock_key: str, user: str, now: int) -> Step[WatchOutcome]:
    def step(transition: Transition | None, result: WriteResult) -> Transition | WatchOutcome:
        if isinstance(result, Written):
            return Watching(LockRecord.from_item(result.item))
        item = result.item
        if item is None or (not is_live(item, now) and not queue_of(item)):
            return FreeNow(_record(item))
        watchers = watchers_of(item)
        if user in watchers:
            return Watching(LockRecord.from_item(item))
        moved, gone, kept = _out_of_ttl(item)
        guard = AllOf((_as_seen(r.WATCHERS, item), _busy(now), *kept))
        effect = Effect(set={**moved, r.WATCHERS: r.encode_watchers((*watchers, user))}, remove=gone)
        return Transition(Operation.WATCH, lock_key, guard, effect)

    return step
