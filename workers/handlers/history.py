"""The history writer's Lambda, on the lock table's stream: every change of a lock item, as events in the
history table (:mod:`workers.flows.history`); then one App Home refresh per batch, on the status queue
(:mod:`workers.flows.home`)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.adapters.queues import NotQueued, enqueue
from workers.flows.history import write_changes
from workers.protocol.config import ConfigError, current_config
from workers.protocol.envelope import HomeRefresh


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The history writer Lambda, on the lock table's stream."""
    records = event.get("Records", [])
    written = write_changes(records, runtime.history())
    runtime.logger.info("history written", records=len(records), events=written)
    if records:
        refresh_homes(records)
    return {"records": len(records), "events": written}


def refresh_homes(records: list[dict[str, Any]]) -> None:
    """One refresh for the whole batch, however many locks it changed. Not queued (SQS down): logged, and the
    batch is done all the same — retrying it would hold the history back for a refresh that the next change, or
    the viewer's next open, brings anyway."""
    ids = [str(record.get("eventID", "")) for record in records]
    correlation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "home-refresh:" + ",".join(ids)))
    refresh = HomeRefresh(correlation_id, int(time.time()))
    try:
        enqueue(current_config(), refresh.kind, refresh.to_json(), dedup_id=correlation_id, group_id=refresh.kind,
                correlation_id=correlation_id)  # fmt: skip
    except (NotQueued, ConfigError) as error:
        runtime.logger.error("home refresh not queued", reason=str(error))
