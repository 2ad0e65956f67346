"""lockcore: a lease lock with fencing tokens — the rules (pure), and the stores that perform them."""

from lockcore.errors import LockStoreError, NoCredentials, StoreThrottled, StoreUnreachable, TableMissing
from lockcore.machine import (
    Acquired,
    AcquireRequest,
    Extended,
    ForceReleased,
    HeldBySomeone,
    LockState,
    MarkedExpired,
    Noted,
    NotHolder,
    Refusal,
    Released,
)
from lockcore.memory import MemoryLockStore
from lockcore.record import LockRecord, Status
from lockcore.store import LockStore

__all__ = [
    "AcquireRequest",
    "Acquired",
    "Extended",
    "ForceReleased",
    "HeldBySomeone",
    "LockRecord",
    "LockState",
    "LockStore",
    "LockStoreError",
    "MarkedExpired",
    "MemoryLockStore",
    "NoCredentials",
    "NotHolder",
    "Noted",
    "Refusal",
    "Released",
    "Status",
    "StoreThrottled",
    "StoreUnreachable",
    "TableMissing",
]
