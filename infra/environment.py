"""Each function's environment variables, from its roster row: only what that function reads.

Every function gets ``CHATOPS_CONFIG`` (the stack's rendered ``chatops.toml``) and ``ENABLE_DISTRIBUTED_LOCK``
(the lock switch: ``pulumi config set chatops:enableDistributedLock false && pulumi up``). The rest follows
the row: the lock table's name to those that touch locks, the idempotency table's to those that keep records,
the history table's to those that write or read it,
``<SECRET>_PARAM`` (an SSM parameter *name*, never a value) per secret it reads, and the URL of each queue it sends to.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from infra.command_config import CHATOPS_CONFIG
from infra.roster import Worker
from infra.settings import Settings


def worker_environment(
    worker: Worker,
    settings: Settings,
    *,
    lock_table_name: pulumi.Input[str],
    idempotency_table_name: pulumi.Input[str],
    history_table_name: pulumi.Input[str],
    queue_urls: Mapping[str, pulumi.Input[str]],
) -> dict[str, pulumi.Input[str]]:
    environment: dict[str, pulumi.Input[str]] = {
        "CHATOPS_CONFIG": CHATOPS_CONFIG,
        "ENABLE_DISTRIBUTED_LOCK": "true" if settings.lock_enabled else "false",
    }
    if worker.lock_table:
        environment["LOCK_TABLE_NAME"] = lock_table_name
    if worker.idempotency:
        environment["IDEMPOTENCY_TABLE_NAME"] = idempotency_table_name
    if worker.history_table:
        environment["HISTORY_TABLE_NAME"] = history_table_name
    for secret in worker.secrets:
        environment[f"{secret}_PARAM"] = settings.ssm_parameters[secret]
    for queue in worker.sends_to:
        environment[f"{queue.upper()}_QUEUE_URL"] = queue_urls[queue]
    return environment
