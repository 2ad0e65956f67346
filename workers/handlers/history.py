"""The history writer's Lambda, on the lock table's stream: every change of a lock item, as events in the
history table (:mod:`workers.flows.history`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.flows.history import write_changes


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The history writer Lambda, on the lock table's stream."""
    records = event.get("Records", [])
    written = write_changes(records, runtime.history())
    runtime.logger.info("history written", records=len(records), events=written)
    return {"records": len(records), "events": written}
