"""The reaper's Lambda, every minute: one sweep of :class:`workers.flows.reaper.Reaper`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.flows.reaper import Reaper
from workers.protocol.config import current_config


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The scheduled Lambda (EventBridge ``Scheduled Event``): one sweep; what it did, counted."""
    runtime.logger.info("sweep", source=event.get("source"), scheduled_at=event.get("time"))
    reaper = Reaper(current_config(), runtime.lock_store(), runtime.github_client(), runtime.slack_replies())
    try:
        swept = reaper.sweep()
    finally:
        if runtime.metrics.metric_set:
            runtime.metrics.flush_metrics()
    counts = Counter(item.effect.value for item in swept)
    applied = Counter(step.applied.value for step in reaper.windows)
    runtime.logger.info("sweep done", locks=len(swept), effects=dict(counts), windows=dict(applied))
    return {"locks": len(swept), "effects": dict(counts), **({"windows": dict(applied)} if applied else {})}
