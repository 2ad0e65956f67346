"""The ``code`` of every ``chatops locks … --json`` answer that is not a success: one stable name per reason.

A refusal (exit 3 or 4) carries it beside ``reason`` (the same in words); a failure (exit 1) and a usage error
(exit 2) print ``{"error": "<one line>", "code": …}``. A script branches on ``code``, never on the words. A
name, once here, keeps its meaning; new ones may come. docs/operations.md lists them, held to this table by a test.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from lockcore.outcomes import Refusal


class Code(StrEnum):
    HELD = "HELD"
    NO_LOCK = "NO_LOCK"
    STALE_TOKEN = "STALE_TOKEN"  # noqa: S105 - a fencing token is not a password
    NOT_OWNER = "NOT_OWNER"
    LEASE_ENDED = "LEASE_ENDED"
    LEASE_RUNS = "LEASE_RUNS"
    NOT_HELD = "NOT_HELD"
    CHANGED = "CHANGED"
    TABLE_MISSING = "TABLE_MISSING"
    UNREACHABLE = "UNREACHABLE"
    NO_CREDENTIALS = "NO_CREDENTIALS"
    NO_REGION = "NO_REGION"
    THROTTLED = "THROTTLED"
    AWS_CONFIG = "AWS_CONFIG"
    STORE_ERROR = "STORE_ERROR"
    TRY_AGAIN = "TRY_AGAIN"
    INVALID = "INVALID"
    NOT_INSTALLED = "NOT_INSTALLED"
    USAGE = "USAGE"


MEANINGS: Final[dict[Code, tuple[int, str]]] = {
    # Each code: the exit status it comes with, and what it means.
    Code.HELD: (3, "another holder has the lock (acquire); `holder` says who"),
    Code.NO_LOCK: (4, Refusal.NO_LOCK.value),
    Code.STALE_TOKEN: (4, Refusal.STALE_TOKEN.value),
    Code.NOT_OWNER: (4, Refusal.NOT_OWNER.value),
    Code.LEASE_ENDED: (4, Refusal.LEASE_ENDED.value),
    Code.LEASE_RUNS: (4, Refusal.LEASE_RUNS.value),
    Code.NOT_HELD: (4, Refusal.NOT_HELD.value),
    Code.CHANGED: (4, Refusal.CHANGED.value),
    Code.TABLE_MISSING: (1, "the lock table does not exist: `chatops locks create-table`"),
    Code.UNREACHABLE: (1, "DynamoDB (or the --endpoint-url) cannot be reached"),
    Code.NO_CREDENTIALS: (1, "no AWS credentials were found"),
    Code.NO_REGION: (1, "no AWS region: --region, AWS_REGION, AWS_DEFAULT_REGION or the profile's region"),
    Code.THROTTLED: (1, "DynamoDB throttled the request after botocore's retries: try again shortly"),
    Code.AWS_CONFIG: (1, "the AWS configuration cannot be used (e.g. an unknown --profile), named in `error`"),
    Code.STORE_ERROR: (1, "DynamoDB refused the request for another reason (access denied, …), named in `error`"),
    Code.TRY_AGAIN: (1, "the lock changed under the request too often to answer: try again"),
    Code.INVALID: (1, "a value the lock refuses before asking DynamoDB (e.g. a force-release without a reason)"),
    Code.NOT_INSTALLED: (1, "a part of chatops that needs an extra: pip install 'chatops-locks[local]'"),
    Code.USAGE: (2, "the command line is not one chatops takes"),
}


def of_refusal(refusal: Refusal) -> Code:
    """A lock refusal's code: its name (every :class:`~lockcore.outcomes.Refusal` has one here)."""
    return Code[refusal.name]
