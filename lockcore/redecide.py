"""The decide-again protocol: how an operation's writes follow one another until it has an answer.

Theory of operation
===================
A store performs one conditional write at a time and decides nothing. Which write to make from what the caller
knows is a rule of :mod:`lockcore.machine`; this module only says *when* to decide again, *from what*, and
*when to give up*. Stores call it; it knows nothing of DynamoDB.

Decided from what. A write is decided from the freshest item the operation has: the caller's read (``seen``) for
its first write, if it read the lock; after that, the item a refusal returned — the item as it was when the
write was refused (DynamoDB's ``ALL_OLD``), never an older one. A freeing write decided from ``seen`` is the
hand-off, or the freeing write that clears the watchers, when ``seen`` shows a queue or watchers; otherwise (and
when there is no ``seen``) it is the blind write, which takes effect only if nobody waits and nobody watches.

Why it is safe. Every decided write is conditioned on exactly what it was decided from: the freeing operation's
own guard (who may free) and the token, the queue and the watchers as seen. So a stale read is never acted on —
it costs one refused write, whose answer is fresh — and a refusal is either the operation's own answer (the
guard itself does not hold: not the holder, a stale token, a repeat that already took effect, which the machine
explains) or proof that another write to the item took effect in between, so the item's writers as a whole
always progress.

What each path costs, in writes (each one request):

- nobody waits or watches: 1, decided from ``seen`` or not;
- a queue or watchers, decided from a ``seen`` that is still current: 1;
- a queue or watchers and no ``seen`` (or a stale one): 2 — refused, then decided again;
- each write that lands on the item between an operation's writes: 1 more;
- an acquire that joins the queue: 2 (refused, then the join); one that meets a lapsed lease with a queue: 3
  (refused, the hand-off to the head, the join);
- ``dequeue`` and ``watch``: one read, then 1 write;
- a refusal that comes back without the item from a store not known to return it (a DynamoDB-compatible store
  without ``ALL_OLD``), or that only an item can explain: one strongly consistent read more (:func:`refused`).

When it gives up. At :data:`MAX_WRITES` writes, with a :class:`~lockcore.errors.LockStoreError` that says to try
again — only a burst of other writers landing between every one of the caller's can get there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from lockcore import record as r
from lockcore.errors import LockStoreError
from lockcore.expressions import Guard, Item, holds
from lockcore.machine import Freeing, Refused, Step, Transition, WriteResult
from lockcore.outcomes import Freed, NotHolder

MAX_WRITES = 32
"""An operation's writes, at most. A refused compare-and-set means another write to the item took effect, so the
item's writers as a whole always progress; the bound only caps one caller's bad luck in a burst (32 joining at
once), and is reported as a LockStoreError rather than retried for ever."""

_Answer = TypeVar("_Answer")
_Freed = TypeVar("_Freed", bound=Freed)


def drive(
    first: Transition | None,
    step: Step[_Answer],
    write: Callable[[Transition], WriteResult],
    read: Callable[[], Item | None] | None = None,
) -> _Answer:
    """Perform an operation: its first write (or, for ``first=None``, one read), then what the machine decides
    from each answer, until it names an outcome."""
    if first is None:
        assert read is not None
        decided = step(None, Refused(read()))
    else:
        decided = first
    for _ in range(MAX_WRITES):
        if not isinstance(decided, Transition):
            return decided
        transition = decided
        decided = step(transition, write(transition))
    if not isinstance(decided, Transition):
        return decided
    raise LockStoreError(f"{decided.lock_key}: the lock changed under each of {MAX_WRITES} writes; try again")


def free(
    freeing: Freeing[_Freed], write: Callable[[Transition], WriteResult], seen: Item | None = None
) -> _Freed | NotHolder:
    """Release, force-release or expire: the first write decided from ``seen`` (the lock as the caller last read
    it, if it did), then decided again from each refusal that the freeing operation itself may overcome."""
    return drive(first_write(freeing, seen), freeing_step(freeing), write)


def first_write(freeing: Freeing[_Freed], seen: Item | None) -> Transition:
    """Decided from ``seen`` when that shows a queue or watchers, else the blind write; either way conditioned on
    what it assumed, so a stale ``seen`` costs one refused write and never a wrong one."""
    if seen is not None and (r.QUEUE in seen or r.WATCHERS in seen):
        return freeing.decided_from(seen)
    return freeing.blind


def freeing_step(freeing: Freeing[_Freed]) -> Step[_Freed | NotHolder]:
    def step(transition: Transition | None, result: WriteResult) -> Transition | _Freed | NotHolder:
        if isinstance(result, Refused) and _must_decide_again(freeing, result.item):
            assert result.item is not None
            return freeing.decided_from(result.item)
        return freeing.outcome(result, transition)

    return step


def _must_decide_again(freeing: Freeing[_Freed], item: Item | None) -> bool:
    """Refused although the freeing operation itself is allowed: somebody waits or watches (a blind write), or the
    queue or the watchers changed under the write decided from them (someone left, joined, watched)."""
    return item is not None and holds(freeing.guard, item)


def refused(guard: Guard, item: Item | None, read: Callable[[], Item | None], *, returns_old_item: bool) -> Refused:
    """A refused write's answer: the item as the refusal returned it — or one strongly consistent read, when the
    refusal came back without it and "there was none" cannot be taken as the answer: the store is not known to
    return the item (``returns_old_item``: a DynamoDB-compatible store without ``ALL_OLD``), or ``guard`` holds on
    a missing item, so that only an item can have refused it (an acquire: impossible on DynamoDB itself)."""
    if item is not None:
        return Refused(item)
    if returns_old_item and not holds(guard, None):
        return Refused(None)  # DynamoDB returns the item whenever there is one: there was none
    return Refused(read())
