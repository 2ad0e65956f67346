"""The failures a caller of a lock store must expect, one named error each, each a one-line message."""

from __future__ import annotations


class LockStoreError(Exception):
    """The store could not answer. The message is one line a person can act on."""


class TableMissing(LockStoreError):
    pass


class StoreUnreachable(LockStoreError):
    pass


class NoCredentials(LockStoreError):
    pass


class StoreThrottled(LockStoreError):
    pass
