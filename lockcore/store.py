"""One protocol for every lock store; the operations are written once, here, on top of one atomic write.

A concrete store supplies three things: ``_write`` (perform a :class:`~lockcore.machine.Transition` as one
atomic conditional write and say whether it took effect), ``_read`` (one strongly consistent read) and ``_scan``.
The rules, and the reading of what came back, belong to :mod:`lockcore.machine`; the sequence of an operation's
writes to :mod:`lockcore.redecide`.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from lockcore import machine, redecide
from lockcore.expressions import Item
from lockcore.outcomes import (
    AcquireOutcome,
    DequeueOutcome,
    ExpireOutcome,
    ExtendOutcome,
    ForceReleaseOutcome,
    NoteOutcome,
    ReleaseOutcome,
    WatchOutcome,
)
from lockcore.record import LockRecord, Status

Clock = Callable[[], float]


class LockStore(ABC):
    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock

    def now(self) -> int:
        return math.floor(self._clock())

    # ------------------------------------------------------------------ what a concrete store provides
    @abstractmethod
    def _write(self, transition: machine.Transition) -> machine.WriteResult: ...

    @abstractmethod
    def _read(self, lock_key: str) -> Item | None: ...

    @abstractmethod
    def _scan(self) -> Iterator[Item]: ...

    # ------------------------------------------------------------------ the operations
    def acquire(self, request: machine.AcquireRequest) -> AcquireOutcome:
        """Take the lock; or, when it is busy, answer who holds it — and with ``request.queue``, join its queue
        (``Queued``, a ``HeldBySomeone``). A lapsed lock with a queue goes to the queue's head (``handed_to``)."""
        now = self.now()
        return redecide.drive(machine.acquire(request, now), machine.acquire_step(request, now), self._write)

    def release(
        self, lock_key: str, owner: str, token: int, outcome: Status, seen: LockRecord | None = None
    ) -> ReleaseOutcome:
        """Release; with a queue, the head is handed the lock in the same write (``handed_to``); without one,
        whoever watched is named (``notify``). ``seen``: the lock as the caller last read it, if it did — with a
        queue or watchers, the write is decided from it (one request, when nothing changed since)."""
        freeing = machine.release(lock_key, owner, token, outcome, self.now())
        return redecide.free(freeing, self._write, seen=_item(seen))

    def extend(self, lock_key: str, owner: str, token: int, lease_seconds: int) -> ExtendOutcome:
        now = self.now()
        written = self._write(machine.extend(lock_key, owner, token, lease_seconds, now))
        return machine.extend_outcome(owner, token, written, now)

    def note(self, lock_key: str, owner: str, token: int, **notes: str) -> NoteOutcome:
        """The live holder notes what it does under the lock (``runId=…``, ``dispatchState=…``)."""
        now = self.now()
        return machine.note_outcome(owner, token, self._write(machine.note(lock_key, owner, token, notes, now)), now)

    def force_release(
        self, lock_key: str, token: int, by: str, reason: str, seen: LockRecord | None = None
    ) -> ForceReleaseOutcome:
        freeing = machine.force_release(lock_key, token, by, reason, self.now())
        return redecide.free(freeing, self._write, seen=_item(seen))

    def expire(self, lock_key: str, token: int, seen: LockRecord | None = None) -> ExpireOutcome:
        return redecide.free(machine.expire(lock_key, token, self.now()), self._write, seen=_item(seen))

    def dequeue(self, lock_key: str, owner: str) -> DequeueOutcome:
        """Leave the queue (a coalesced requester leaves its entry; the entry goes with its last requester)."""
        return redecide.drive(None, machine.dequeue_step(lock_key, owner), self._write, lambda: self._read(lock_key))

    def watch(self, lock_key: str, user: str) -> WatchOutcome:
        """Ask to be told when the lock frees: ``user`` is named in the outcome of the write that frees it."""
        step = machine.watch_step(lock_key, user, self.now())
        return redecide.drive(None, step, self._write, lambda: self._read(lock_key))

    def item(self, lock_key: str) -> Item | None:
        """The item as stored, one strongly consistent read: for a caller that explains a rule's verdict (why a
        token is not the live holder's), which a :class:`LockRecord` cannot always (a token it lacks reads 0)."""
        return self._read(lock_key)

    def get(self, lock_key: str) -> LockRecord | None:
        item = self._read(lock_key)
        return LockRecord.from_item(item) if item is not None else None

    def state(self, lock_key: str) -> tuple[machine.LockState, LockRecord | None]:
        item = self._read(lock_key)
        return machine.state_of(item, self.now()), (LockRecord.from_item(item) if item is not None else None)

    def check(self, lock_key: str, token: int) -> bool:
        """The fencing check, one strongly consistent read: does ``token`` belong to the live holder?"""
        return machine.holds_token(self._read(lock_key), token, self.now())

    def list(self, include_free: bool = False) -> list[LockRecord]:
        """Live locks (with ``include_free``, every key and its last outcome), sorted by key."""
        now = self.now()
        items = [item for item in self._scan() if include_free or machine.is_live(item, now)]
        return sorted((LockRecord.from_item(item) for item in items), key=lambda rec: rec.lock_key)


def _item(record: LockRecord | None) -> Item | None:
    return record.to_item() if record is not None else None
