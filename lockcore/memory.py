"""The in-memory store: the model the DynamoDB store is checked against, and the store of unit tests.

It keeps items exactly as DynamoDB would (attribute name to value) and performs each transition under one
lock, so that, like a single-item DynamoDB write, every operation is atomic.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from lockcore import machine
from lockcore.expressions import Item, apply, holds
from lockcore.record import LEGACY_TTL
from lockcore.store import Clock, LockStore


class MemoryLockStore(LockStore):
    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock) if clock is not None else super().__init__()
        self._items: dict[str, Item] = {}
        self._mutex = threading.Lock()

    def _write(self, transition: machine.Transition) -> machine.WriteResult:
        with self._mutex:
            current = self._items.get(transition.lock_key)
            if not holds(transition.guard, current):
                return machine.Refused(dict(current) if current is not None else None)
            new = apply(transition.effect, transition.key, current)
            self._items[transition.lock_key] = new
            return machine.Written(dict(new))

    def _read(self, lock_key: str) -> Item | None:
        with self._mutex:
            item = self._items.get(lock_key)
            return dict(item) if item is not None else None

    def _scan(self) -> Iterator[Item]:
        with self._mutex:
            items = [dict(item) for item in self._items.values()]
        return iter(items)

    # -------------------------------------------------------------- the world outside the lock protocol
    def put_raw(self, item: Item) -> None:
        """Write an item as another program would (a legacy lock written by the user's original code)."""
        with self._mutex:
            self._items[str(item["lockKey"])] = dict(item)

    def delete_expired_by_ttl(self, now: int) -> list[str]:
        """What DynamoDB's TTL process may do at any moment: delete items whose ``ttl`` has passed."""
        with self._mutex:
            doomed = [key for key, item in self._items.items() if isinstance(item.get(LEGACY_TTL), int)
                      and int(item[LEGACY_TTL]) < now]  # fmt: skip
            for key in doomed:
                del self._items[key]
        return sorted(doomed)
