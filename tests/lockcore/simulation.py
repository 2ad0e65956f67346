"""The concurrency simulation: actors racing for locks, with crashes, redeliveries, retries, TTL deletions and a
clock that creeps and jumps — every request one atomic step, the interleaving chosen by Hypothesis.

Each step runs on every store under test (in memory, moto in-process, moto over HTTP) and on a reference model
written here, independently of lockcore's machine: all must answer the same and hold the same item. After every
step the invariants below — the lock's promises — are checked.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lockcore.machine import AcquireRequest
from lockcore.outcomes import (
    Acquired,
    Dequeued,
    DequeueOutcome,
    Extended,
    ForceReleased,
    FreeNow,
    HandOff,
    HeldBySomeone,
    MarkedExpired,
    Noted,
    NotHolder,
    NotQueued,
    Outcome,
    Queued,
    Released,
    Watching,
    WatchOutcome,
)
from lockcore.record import LEGACY_TTL, NOTE_ATTRIBUTES, LockRecord, Status
from lockcore.store import Clock
from tests.lockcore.stores import SimClock, StoreUnderTest

StoreFactory = Callable[[Clock], StoreUnderTest]
Answer = tuple[object, ...]

KEYS = ("build-router-plt", "deploy-api-prod")
ADMIN = "U-admin"


# ------------------------------------------------------------------------------------ the reference model
@dataclass
class Holder:
    owner: str
    token: int | None  # None: an item written by the user's original code
    lease_end: int
    status: Status = Status.IN_PROGRESS
    released_by: str | None = None
    legacy: bool = False


@dataclass
class Waiting:
    """One pending run in the queue: its requesters in the order they asked (the first holds it when handed)."""

    requesters: list[str]
    lease: int
    coalesce: str


Handed = tuple[tuple[str, ...], int] | None
"""A hand-off as the model reports it: every requester of the entry, and the token it was handed."""


@dataclass
class KeyModel:
    holder: Holder | None = None
    last_token: int = 0
    force_released: set[int] = field(default_factory=set)
    queue: list[Waiting] = field(default_factory=list)
    watchers: set[str] = field(default_factory=set)
    previous: tuple[str, int | None, Status, str | None] | None = None
    """How the last holder let go when its release handed the lock on: owner, token, outcome, by whom."""
    previous_handed: Handed = None
    """The hand-off that release made — reported again to a repeat while the request handed it still holds."""
    notified: tuple[str, ...] = ()
    """The watchers the write that freed the lock told — reported again to a repeat of that write."""

    def live(self, now: int) -> bool:
        h = self.holder
        return h is not None and h.status is Status.IN_PROGRESS and now < h.lease_end

    def position(self, owner: str) -> tuple[int, bool] | None:
        for index, entry in enumerate(self.queue, 1):
            if owner in entry.requesters:
                return index, entry.requesters[0] != owner
        return None

    def _hand_off(self, now: int, previous: tuple[str, int | None, Status, str | None] | None = None) -> Handed:
        head = self.queue.pop(0)
        self.last_token += 1
        self.holder = Holder(head.requesters[0], self.last_token, now + head.lease)
        handed = tuple(head.requesters), self.last_token
        self.previous, self.previous_handed, self.notified = previous, handed if previous else None, ()
        return handed

    def _handed_again(self) -> Handed:
        """A repeat of the release that handed the lock on reports the hand-off while its request still holds."""
        h = self.holder
        return self.previous_handed if h is not None and h.status is Status.IN_PROGRESS else None

    def _keep_out_of_ttl(self) -> None:
        """A queue or watchers on a legacy lock: its lease end moves out of `ttl`, so TTL deletes nothing."""
        if self.holder is not None:
            self.holder.legacy = False

    def acquire(self, owner: str, lease: int, now: int, queue: bool = False, coalesce: str = "") -> Answer:
        handed: Handed = None
        if self.holder is not None and self.live(now) and self.holder.owner == owner:
            return ("reentered", self.holder.token, handed)
        if not self.live(now) and self.queue:
            handed = self._hand_off(now)  # the head goes first, never the newcomer
            assert self.holder is not None
            if self.holder.owner == owner:
                return ("acquired", self.holder.token, handed)
        h = self.holder
        waiting = self.position(owner)
        if waiting is not None:
            assert h is not None
            return ("queued", h.owner, h.token, *waiting, handed)
        if not self.live(now):
            self.last_token += 1
            self.holder, self.previous = Holder(owner, self.last_token, now + lease), None
            self.previous_handed, self.notified = None, ()
            return ("acquired", self.last_token, handed)
        assert h is not None
        if not queue:
            return ("held", h.owner, h.token, handed)
        self._keep_out_of_ttl()
        for entry in self.queue:
            if coalesce and entry.coalesce == coalesce:
                entry.requesters.append(owner)
                break
        else:
            self.queue.append(Waiting([owner], lease, coalesce))
        place = self.position(owner)
        assert place is not None
        return ("queued", h.owner, h.token, *place, handed)

    def _free(self, status: Status, now: int, by: str | None = None) -> tuple[Handed, tuple[str, ...]]:
        """The write that frees the lock: a hand-off to the head, or the outcome recorded and watchers told."""
        assert self.holder is not None
        if self.queue:
            return self._hand_off(now, (self.holder.owner, self.holder.token, status, by)), ()
        self.holder.status, self.holder.released_by = status, by
        notify = tuple(sorted(self.watchers))
        self.watchers.clear()
        self.notified = notify
        return None, notify

    def dequeue(self, owner: str) -> Answer:
        place = self.position(owner)
        if place is None:
            return ("not-queued",)
        for entry in self.queue:
            if owner in entry.requesters:
                entry.requesters.remove(owner)
        self.queue = [entry for entry in self.queue if entry.requesters]
        return ("dequeued", place[0])

    def watch(self, user: str, now: int) -> Answer:
        if not self.live(now) and not self.queue:
            return ("free",)
        self._keep_out_of_ttl()
        self.watchers.add(user)
        return ("watching",)

    def _refusal(self, token: int, owner: str | None) -> Answer | None:
        h = self.holder
        if h is None:
            return ("refused", "NO_LOCK", None)
        if h.token != token:
            return ("refused", "STALE_TOKEN", h.token)
        if owner is not None and h.owner != owner:
            return ("refused", "NOT_OWNER", h.token)
        return None

    def release(self, owner: str, token: int, outcome: Status, now: int) -> Answer:
        refused = self._refusal(token, owner)
        handed_on = self.previous is not None and self.previous[:3] == (owner, token, outcome)
        if refused and refused[1] == "STALE_TOKEN" and handed_on:  # it took effect and handed the lock on
            return ("released-again", token, outcome.value, self._handed_again(), ())
        if refused:
            return refused
        assert self.holder is not None
        if self.holder.status in (Status.IN_PROGRESS, Status.EXPIRED):
            return ("released", token, outcome.value, *self._free(outcome, now))
        if self.holder.status is outcome:
            return ("released-again", token, outcome.value, None, self.notified)
        return ("refused", "NOT_HELD", self.holder.token)

    def extend(self, owner: str, token: int, lease: int, now: int) -> Answer:
        refused = self._refusal(token, owner)
        if refused:
            return refused
        assert self.holder is not None
        if self.live(now):
            self.holder.lease_end = now + lease
            return ("extended", token, self.holder.lease_end)
        lapsed = self.holder.status in (Status.IN_PROGRESS, Status.EXPIRED)
        return ("refused", "LEASE_ENDED" if lapsed else "NOT_HELD", self.holder.token)

    def note(self, owner: str, token: int, now: int) -> Answer:
        refused = self._refusal(token, owner)
        if refused:
            return refused
        assert self.holder is not None
        if self.live(now):
            return ("noted", token)
        lapsed = self.holder.status in (Status.IN_PROGRESS, Status.EXPIRED)
        return ("refused", "LEASE_ENDED" if lapsed else "NOT_HELD", self.holder.token)

    def force_release(self, token: int, by: str, now: int) -> Answer:
        refused = self._refusal(token, None)
        handed_on = self.previous is not None and self.previous[1:] == (token, Status.FORCE_RELEASED, by)
        if refused and refused[1] == "STALE_TOKEN" and handed_on:
            return ("force-released-again", token, self._handed_again(), ())
        if refused:
            return refused
        assert self.holder is not None
        if self.holder.status in (Status.IN_PROGRESS, Status.EXPIRED):
            self.force_released.add(token)
            return ("force-released", token, *self._free(Status.FORCE_RELEASED, now, by))
        if self.holder.status is Status.FORCE_RELEASED and self.holder.released_by == by:
            return ("force-released-again", token, None, self.notified)
        return ("refused", "NOT_HELD", self.holder.token)

    def expire(self, token: int, now: int) -> Answer:
        refused = self._refusal(token, None)
        handed_on = self.previous is not None and self.previous[1:3] == (token, Status.EXPIRED)
        if refused and refused[1] == "STALE_TOKEN" and handed_on:  # a second reaper, or a retry
            return ("expired-again", token, self._handed_again(), ())
        if refused:
            return refused
        assert self.holder is not None
        if self.holder.status is Status.IN_PROGRESS and not self.live(now):
            return ("expired", token, *self._free(Status.EXPIRED, now))
        if self.holder.status is Status.EXPIRED:
            return ("expired-again", token, None, self.notified)
        return ("refused", "LEASE_RUNS" if self.live(now) else "NOT_HELD", self.holder.token)

    def ttl_sweep(self, now: int) -> bool:
        """Only an item that still carries `ttl` can go: a legacy one nobody has acquired since."""
        if self.holder is not None and self.holder.legacy and self.holder.lease_end < now:
            self.holder = None
            return True
        return False


def handed_of(handed: HandOff | None) -> Handed:
    if handed is None:
        return None
    return tuple(q.owner for q in handed.entry.requesters), handed.record.token


AnyOutcome = Outcome | DequeueOutcome | WatchOutcome


def answer_of(outcome: AnyOutcome) -> Answer:  # noqa: PLR0912 - one case per outcome
    """A store's outcome in the model's terms."""
    match outcome:
        case Acquired(record, reentered, handed):
            return ("reentered" if reentered else "acquired", record.token, handed_of(handed))
        case Queued(holder, handed, position, coalesced):
            return ("queued", holder.owner, holder.token or None, position, coalesced, handed_of(handed))
        case HeldBySomeone(holder, handed):
            return ("held", holder.owner, holder.token or None, handed_of(handed))
        case Released(record, repeated, handed, notify):
            kind = "released-again" if repeated else "released"
            return (kind, record.token, record.status.value, handed_of(handed), notify)
        case Extended(record):
            return ("extended", record.token, record.lease_expires_at)
        case ForceReleased(record, repeated, handed, notify):
            kind = "force-released-again" if repeated else "force-released"
            return (kind, record.token, handed_of(handed), notify)
        case Noted(record):
            return ("noted", record.token)
        case MarkedExpired(record, repeated, handed, notify):
            return ("expired-again" if repeated else "expired", record.token, handed_of(handed), notify)
        case NotHolder(reason, current):
            return ("refused", reason.name, current.token or None if current is not None else None)
        case Dequeued(_, position):
            return ("dequeued", position)
        case NotQueued():
            return ("not-queued",)
        case Watching():
            return ("watching",)
        case FreeNow():
            return ("free",)
    raise AssertionError(outcome)  # pragma: no cover


# ------------------------------------------------------------------------------------------- the actors
@dataclass
class Actor:
    """A worker handling one request at a time for one key; what it believes, it learned from answers."""

    name: str
    key: str
    request: int = 0
    token: int | None = None
    lease_end: int | None = None
    last_release: tuple[int, Status] | None = None
    tokens_seen: list[int] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return f"{self.name}-req{self.request}"


class LockSimulation(RuleBasedStateMachine):
    """Subclasses name the stores; the first one's answers are checked against the model, all against it."""

    STORES: ClassVar[tuple[StoreFactory, ...]] = ()
    schedules_run: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.clock = SimClock()
        self.stores = [factory(self.clock) for factory in self.STORES]
        self.model = {key: KeyModel() for key in KEYS}
        self.actors: list[Actor] = []
        self.max_token = dict.fromkeys(KEYS, 0)
        # The queue's promises, kept apart from the model: which join each waiting requester belongs to.
        self.joins = itertools.count()
        self.pending: dict[str, dict[str, int]] = {key: {} for key in KEYS}
        self.handed: dict[str, list[tuple[tuple[str, ...], int]]] = {key: [] for key in KEYS}
        self.seen: dict[str, LockRecord | None] = {}
        """What a worker last read of each key: freeing writes may be decided from it, fresh or long stale."""
        type(self).schedules_run += 1

    def teardown(self) -> None:
        try:
            if self.stores:
                self.nobody_waits_for_ever()
        finally:
            for store in self.stores:
                store.close()

    @property
    def now(self) -> int:
        return int(self.clock.now)

    def everywhere(self, step: Callable[[StoreUnderTest], AnyOutcome]) -> Answer:
        answers = [answer_of(step(store)) for store in self.stores]
        for store, answer in zip(self.stores[1:], answers[1:], strict=True):
            assert answer == answers[0], f"{store.name} answered {answer}, {self.stores[0].name} {answers[0]}"
        return answers[0]

    # ------------------------------------------------------------------------------ setting the scene
    @initialize(
        actors=st.integers(2, 8),
        keys=st.integers(1, len(KEYS)),
        legacy=st.lists(st.tuples(st.sampled_from(KEYS), st.integers(-30, 120)), max_size=1),
    )
    def cast(self, actors: int, keys: int, legacy: list[tuple[str, int]]) -> None:
        self.actors = [Actor(f"a{i}", KEYS[i % keys]) for i in range(actors)]
        for key, offset in legacy:
            # A lock written by the user's original BuildLockManager: lease end in `ttl`, no token, no owner.
            item: dict[str, str | int] = {
                "lockKey": key, "lockedBy": "U-legacy", "lockedByName": "legacy", "status": "IN_PROGRESS",
                "lockedAt": "2026-01-01T00:00:00Z", "ttl": self.now + offset, "component": "router",
                "environment": "plt",
            }  # fmt: skip
            for store in self.stores:
                store.put_raw(item)
            self.model[key].holder = Holder("", None, self.now + offset, legacy=True)

    actor = st.integers(0, 7)

    def pick(self, index: int) -> Actor:
        return self.actors[index % len(self.actors)]

    # ------------------------------------------------------------------------------ the actors' steps
    @rule(who=actor, lease=st.integers(1, 90))
    def acquire(self, who: int, lease: int) -> None:
        """A first delivery, or a redelivery of the same request (same owner) — also after a crash."""
        self._acquire(self.pick(who), lease, queue=False, coalesce="")

    @rule(who=actor, lease=st.integers(1, 90), coalesce=st.sampled_from(["", "build main", "build main", "build dev"]))
    def queued_acquire(self, who: int, lease: int, coalesce: str) -> None:
        """The same, asking to wait in line; identical requests (same coalesce identity) share one entry."""
        self._acquire(self.pick(who), lease, queue=True, coalesce=coalesce)

    def _acquire(self, a: Actor, lease: int, queue: bool, coalesce: str) -> None:
        model = self.model[a.key]
        waiting_before = bool(model.queue)
        expected = model.acquire(a.owner, lease, self.now, queue=queue, coalesce=coalesce)
        request = AcquireRequest(
            a.key, a.owner, lease, locked_by=a.name, locked_by_name=a.name, queue=queue, coalesce=coalesce
        )
        got = self.everywhere(lambda s: s.store.acquire(request))
        assert got == expected, f"acquire: store {got}, model {expected}"
        handed = got[-1]
        self.learn(a.key, handed)  # type: ignore[arg-type]
        if got[0] == "acquired" and handed is None:
            assert not waiting_before, "newcomers_never_jump_the_queue"
            token = int(str(got[1]))
            assert token > self.max_token[a.key], "tokens_strictly_increase_per_key"
            self.max_token[a.key] = token
            item = self.stores[0].read(a.key) or {}
            assert not set(item) & {*NOTE_ATTRIBUTES, LEGACY_TTL}, f"a new holder inherited {item}"
        if got[0] == "queued":
            self._joined(a.key, a.owner)
        if got[0] in ("acquired", "reentered"):
            holder = model.holder
            assert holder is not None
            a.token, a.lease_end = holder.token, holder.lease_end
            a.tokens_seen.append(int(str(got[1])))

    def _joined(self, key: str, owner: str) -> None:
        """A queued answer: a new join, a coalesced one (its entry's join), or a repeat (nothing new)."""
        pending = self.pending[key]
        if owner in pending:
            return
        place = self.model[key].position(owner)
        assert place is not None
        entry = self.model[key].queue[place[0] - 1]
        first = entry.requesters[0]
        pending[owner] = pending[first] if first != owner else next(self.joins)

    def learn(self, key: str, handed: tuple[tuple[str, ...], int] | None) -> None:
        """A hand-off reported by a store: the worker dispatches for the head, and every requester is told."""
        if handed is None:
            return
        requesters, token = handed
        if token <= self.max_token[key]:  # a repeat reporting a hand-off again: the very one made before
            assert handed in self.handed[key], f"no_double_hand_off: {handed} reported, never made"
            return
        self.handed[key].append(handed)
        pending = self.pending[key]
        assert all(owner in pending for owner in requesters), f"no_double_hand_off: {requesters} not waiting"
        joins = {pending[owner] for owner in requesters}
        assert len(joins) == 1, f"coalesced_requesters_all_reported: {requesters} joined apart"
        assert joins == {min(pending.values())}, f"fifo: {requesters} handed before an older join"
        assert len(requesters) == sum(1 for j in pending.values() if j in joins), "a coalesced requester left out"
        for owner in requesters:
            del pending[owner]
        assert token == self.max_token[key] + 1, "a hand-off is an acquire: the token rises by one"
        self.max_token[key] = token
        holder = self.model[key].holder
        assert holder is not None and holder.owner == requesters[0]
        for a in self.actors:
            if a.key == key and a.owner == requesters[0]:
                a.token, a.lease_end = token, holder.lease_end
                a.tokens_seen.append(token)
        item = self.stores[0].read(key) or {}
        assert not set(item) & {*NOTE_ATTRIBUTES, LEGACY_TTL}, f"the head inherited {item}"

    @rule(who=actor)
    def dequeue(self, who: int) -> None:
        """/build dequeue: the actor's current request leaves the line."""
        a = self.pick(who)
        expected = self.model[a.key].dequeue(a.owner)
        got = self.everywhere(lambda s: s.store.dequeue(a.key, a.owner))
        assert got == expected, f"dequeue: store {got}, model {expected}"
        if got[0] == "dequeued":
            del self.pending[a.key][a.owner]
        else:
            assert a.owner not in self.pending[a.key]

    @rule(who=actor)
    def watch(self, who: int) -> None:
        """The "tell me when it's free" button."""
        a = self.pick(who)
        expected = self.model[a.key].watch(a.name, self.now)
        got = self.everywhere(lambda s: s.store.watch(a.key, a.name))
        assert got == expected, f"watch: store {got}, model {expected}"

    @rule(who=actor)
    def next_request(self, who: int) -> None:
        """The actor moves on to a new request (a new click): a new owner; what it held is forgotten."""
        a = self.pick(who)
        a.request += 1
        a.token = a.lease_end = None

    @rule(key=st.sampled_from(KEYS))
    def read_the_lock(self, key: str) -> None:
        """A worker reads the lock (the webhook worker, the reaper, cancel); it may free it from that read later."""
        self.seen[key] = self.stores[0].store.get(key)

    def hint(self, key: str, use: bool) -> LockRecord | None:
        return self.seen.get(key) if use else None

    @precondition(lambda self: any(a.token is not None for a in self.actors))
    @rule(who=actor, outcome=st.sampled_from([Status.COMPLETED, Status.FAILED]), read=st.booleans())
    def release(self, who: int, outcome: Status, read: bool) -> None:
        a = self.pick(who)
        if a.token is None:
            return
        self._release(a, a.token, outcome, self.hint(a.key, read))
        a.last_release = (a.token, outcome)

    @rule(who=actor, read=st.booleans())
    def retry_release(self, who: int, read: bool) -> None:
        """The same release again: its first answer was lost."""
        a = self.pick(who)
        if a.last_release is not None:
            self._release(a, *a.last_release, self.hint(a.key, read))

    @rule(who=actor, outcome=st.sampled_from([Status.COMPLETED, Status.FAILED]), pick=st.integers(0, 10))
    def release_with_old_token(self, who: int, outcome: Status, pick: int) -> None:
        """A stale actor presents a token it once held (or never held)."""
        a = self.pick(who)
        token = a.tokens_seen[pick % len(a.tokens_seen)] if a.tokens_seen else pick
        self._release(a, token, outcome, self.hint(a.key, pick % 2 == 0))

    def _release(self, a: Actor, token: int, outcome: Status, seen: LockRecord | None) -> None:
        model = self.model[a.key]
        was_holder = model.holder is not None and (model.holder.owner, model.holder.token) == (a.owner, token)
        expected = model.release(a.owner, token, outcome, self.now)
        got = self.everywhere(lambda s: s.store.release(a.key, a.owner, token, outcome, seen=seen))
        assert got == expected, f"release: store {got}, model {expected}"
        self.learn(a.key, got[3] if str(got[0]).startswith("released") else None)  # type: ignore[arg-type]
        if got[0] == "released":
            assert was_holder, "no_release_by_a_non_holder"
        if str(got[0]).startswith("released") and token == a.token:
            a.token = a.lease_end = None

    @rule(who=actor, lease=st.integers(1, 90))
    def extend(self, who: int, lease: int) -> None:
        a = self.pick(who)
        token = a.token if a.token is not None else (a.tokens_seen[-1] if a.tokens_seen else 1)
        model = self.model[a.key]
        was_live_holder = (
            model.live(self.now)
            and model.holder is not None
            and ((model.holder.owner, model.holder.token) == (a.owner, token))
        )
        expected = model.extend(a.owner, token, lease, self.now)
        got = self.everywhere(lambda s: s.store.extend(a.key, a.owner, token, lease))
        assert got == expected, f"extend: store {got}, model {expected}"
        if got[0] == "extended":
            assert was_live_holder, "no_extend_by_a_non_holder"
            a.lease_end = int(str(got[2]))

    @rule(who=actor, run=st.integers(1, 3))
    def note_the_run(self, who: int, run: int) -> None:
        a = self.pick(who)
        token = a.token if a.token is not None else (a.tokens_seen[-1] if a.tokens_seen else 1)
        expected = self.model[a.key].note(a.owner, token, self.now)
        got = self.everywhere(lambda s: s.store.note(a.key, a.owner, token, runId=str(run), dispatchState="done"))
        assert got == expected, f"note: store {got}, model {expected}"

    @rule(who=actor)
    def crash(self, who: int) -> None:
        """The worker dies: it forgets its token. SQS will redeliver the same request (see `acquire`)."""
        a = self.pick(who)
        a.token = a.lease_end = None

    @rule(who=actor)
    def check(self, who: int) -> None:
        a = self.pick(who)
        token = a.token if a.token is not None else 0
        model = self.model[a.key]
        expected = model.live(self.now) and model.holder is not None and model.holder.token == token
        got = {s.store.check(a.key, token) for s in self.stores}
        assert got == {expected}, f"check: stores {got}, model {expected}"

    # ------------------------------------------------------------------------------ the operators' steps
    @rule(key=st.sampled_from(KEYS), stale=st.booleans(), read=st.booleans())
    def force_release(self, key: str, stale: bool, read: bool) -> None:
        model = self.model[key]
        token = model.last_token - 1 if stale else model.last_token
        expected = model.force_release(token, ADMIN, self.now)
        seen = self.hint(key, read)
        got = self.everywhere(lambda s: s.store.force_release(key, token, ADMIN, "stuck in the simulation", seen))
        assert got == expected, f"force-release: store {got}, model {expected}"
        self.learn(key, got[2] if str(got[0]).startswith("force-released") else None)  # type: ignore[arg-type]

    @rule(key=st.sampled_from(KEYS), read=st.booleans())
    def reaper(self, key: str, read: bool) -> None:
        model = self.model[key]
        token = model.last_token
        expected = model.expire(token, self.now)
        seen = self.hint(key, read)
        got = self.everywhere(lambda s: s.store.expire(key, token, seen))
        assert got == expected, f"expire: store {got}, model {expected}"
        self.learn(key, got[2] if str(got[0]).startswith("expired") else None)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------ the world's steps
    @rule()
    def dynamodb_ttl_deletes_expired_items(self) -> None:
        swept = [store.ttl_sweep(self.now) for store in self.stores]
        expected = sorted(key for key in KEYS if self.model[key].ttl_sweep(self.now))
        assert all(keys == expected for keys in swept), f"TTL deleted {swept}, model {expected}"

    @rule(seconds=st.integers(0, 5))
    def clock_creeps(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(seconds=st.integers(30, 200))
    def clock_jumps(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(key=st.sampled_from(KEYS), offset=st.integers(-1, 1))
    def clock_reaches_the_edge_of_a_lease(self, key: str, offset: int) -> None:
        """Off-by-one second is where lease bugs live: stop the clock just before, at, or after a lease end."""
        holder = self.model[key].holder
        if holder is not None and holder.lease_end + offset > self.now:
            self.clock.advance(holder.lease_end + offset - self.now)

    # ------------------------------------------------------------------------------ the promises
    def believers(self, key: str) -> list[Actor]:
        """Actors that hold a token for ``key`` whose lease, as they were told, still runs."""
        return [a for a in self.actors if a.key == key and a.token is not None and a.lease_end is not None
                and self.now < a.lease_end]  # fmt: skip

    @invariant()
    def stores_hold_the_same_item(self) -> None:
        for key in KEYS:
            items = [store.read(key) for store in self.stores]
            assert all(item == items[0] for item in items), f"{key}: stores disagree: {items}"

    @invariant()
    def at_most_one_live_holder(self) -> None:
        for key in KEYS:
            holders = [a for a in self.believers(key) if not self._force_released(key, a)]
            assert len(holders) <= 1, f"{key}: {[a.owner for a in holders]} all believe they hold it"

    @invariant()
    def no_holder_loses_its_lock_before_its_lease_end(self) -> None:
        if not self.stores:
            return
        for key in KEYS:
            for a in self.believers(key):
                if self._force_released(key, a):
                    continue
                item = self.stores[0].read(key)
                assert item is not None, f"{key}: {a.owner}'s lock vanished"
                assert (item["owner"], item["token"], item["status"]) == (a.owner, a.token, "IN_PROGRESS"), (
                    f"{key}: {a.owner} (token {a.token}) lost its lock before {a.lease_end}: {item}"
                )

    @invariant()
    def tokens_never_go_back(self) -> None:
        for key in KEYS:
            item = self.stores[0].read(key) if self.stores else None
            token = item.get("token") if item else None
            if isinstance(token, int):
                assert token == self.max_token[key], f"{key}: token {token}, highest issued {self.max_token[key]}"
            else:
                # Only an item no acquire has touched yet (a legacy one, or none) lacks a token.
                assert self.max_token[key] == 0, f"{key}: the token counter vanished after {self.max_token[key]}"

    @invariant()
    def the_queue_is_the_models(self) -> None:
        """The stores keep the same line as the model (order, coalesced requesters) and the same watchers."""
        if not self.stores:
            return
        for key in KEYS:
            record = self.stores[0].store.get(key)
            line = [[q.owner for q in entry.requesters] for entry in record.queue] if record else []
            assert line == [entry.requesters for entry in self.model[key].queue], f"{key}: queue {line}"
            assert set(record.watchers if record else ()) == self.model[key].watchers
            assert set(self.pending[key]) == {owner for e in self.model[key].queue for owner in e.requesters}

    def nobody_waits_for_ever(self) -> None:
        """No starvation: with every holder gone — released by an admin, or its lease run out — each request
        still in line is handed the lock in turn, in a bounded number of steps, and the line ends empty."""
        for key in KEYS:
            model = self.model[key]
            for _ in range(2 * len(model.queue) + 2):
                if not model.queue:
                    break
                holder = model.holder
                if holder is not None and holder.token is not None and holder.status is Status.IN_PROGRESS:
                    self.read_the_lock(key)  # the admin looks at the lock, then force-releases it from that read
                    self.force_release(key, stale=False, read=True)
                else:  # a legacy holder, or a lapsed one nobody recorded: the next acquire hands off
                    self.clock.advance(max(0, (holder.lease_end if holder else 0) - self.now) + 1)
                    drainer = Actor("drainer", key)
                    self._acquire(drainer, 1, queue=False, coalesce="")
            assert not model.queue, f"{key}: still waiting after the drain: {model.queue}"
            assert not self.pending[key], f"{key}: never served nor dequeued: {self.pending[key]}"

    def _force_released(self, key: str, actor: Actor) -> bool:
        return actor.token in self.model[key].force_released


def simulation_over(*factories: StoreFactory, name: str) -> type[LockSimulation]:
    return type(name, (LockSimulation,), {"STORES": factories, "schedules_run": 0})
