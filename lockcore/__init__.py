"""lockcore: a lease lock with fencing tokens — the rules (pure), and the stores that perform them."""

from lockcore.errors import LockStoreError, NoCredentials, StoreThrottled, StoreUnreachable, TableMissing
from lockcore.machine import AcquireRequest, LockState
from lockcore.memory import MemoryLockStore
from lockcore.outcomes import (
    Acquired,
    Dequeued,
    Extended,
    ForceReleased,
    FreeNow,
    HandOff,
    HeldBySomeone,
    MarkedExpired,
    Noted,
    NotHolder,
    NotQueued,
    Queued,
    Refusal,
    Released,
    Watching,
)
from lockcore.record import LockRecord, QueueEntry, Requester, Status
from lockcore.store import LockStore

__all__ = [
    "AcquireRequest",
    "Acquired",
    "Dequeued",
    "Extended",
    "ForceReleased",
    "FreeNow",
    "HandOff",
    "HeldBySomeone",
    "LockRecord",
    "LockState",
    "LockStore",
    "LockStoreError",
    "MarkedExpired",
    "MemoryLockStore",
    "NoCredentials",
    "NotHolder",
    "NotQueued",
    "Noted",
    "QueueEntry",
    "Queued",
    "Refusal",
    "Released",
    "Requester",
    "Status",
    "StoreThrottled",
    "StoreUnreachable",
    "TableMissing",
    "Watching",
]
