"""The history writer's Lambda, on the lock table's stream: every change of a lock item, as events in the
history table (:mod:`workers.flows.history`); then an App Home refresh on the status queue
(:mod:`workers.flows.home`) — unless one is pending already.

Why refreshes coalesce, and why none is lost. A build writes its lock several times (the acquire, then notes:
dispatching, the run, the commit), each write reaches the writer in a stream batch of its own, and every refresh
republishes every recent viewer's Home (``views.publish``, Tier 4). So the writer queues a refresh only when it
puts the ledger's pending-refresh mark (:meth:`~workers.adapters.ledger.Ledger.mark_home_refresh`: a conditional
put, refused while another batch's mark younger than a minute is there), and the status worker deletes the mark
*before* it reads the board. A change either

- reaches the writer while the mark is there: the refresh of that mark is handled later, and its worker's read
  comes after its delete, which comes after this change — the change is on the board it publishes; or
- finds no mark (or a stale one, or its own batch's, put by an attempt that died before it queued): it puts the
  mark and queues a refresh, whose read comes after the change.

Either way the last change is on the last board published. A batch when nobody has opened the Home within
:data:`~workers.protocol.board.HOME_WINDOW_SECONDS` queues nothing (one read of the viewers): whoever opens it after
that read is kept as a viewer *before* their own open reads the board, which has the change. What cannot be arranged
(the ledger or SQS does not answer) fails the batch: Lambda hands it again (its history puts are idempotent) and the
redelivery, whose mark is its own, queues the refresh. A writer that dies between its mark and its send, and whose
batch is never retried, holds the refreshes back for :data:`~workers.adapters.ledger.HOME_REFRESH_STALE_SECONDS` at
most.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.adapters import runtime
from workers.adapters.ledger import LedgerError
from workers.adapters.queues import NotQueued, enqueue
from workers.flows.history import write_changes
from workers.protocol.board import HOME_WINDOW_SECONDS
from workers.protocol.config import ConfigError, current_config
from workers.protocol.envelope import HomeRefresh


class RefreshNotArranged(Exception):
    """The pending-refresh mark could not be put, or the refresh could not be queued: the stream batch is handed
    again (its history puts repeat harmlessly)."""


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The history writer Lambda, on the lock table's stream."""
    records = event.get("Records", [])
    written = write_changes(records, runtime.history())
    runtime.logger.info("history written", records=len(records), events=written)
    if records:
        refresh_homes(records)
    return {"records": len(records), "events": written}


def refresh_homes(records: list[dict[str, Any]]) -> None:
    """One refresh for the whole batch, however many locks it changed, and none when one is pending already.
    Raises :class:`RefreshNotArranged` when the ledger or SQS does not answer."""
    ids = [str(record.get("eventID", "")) for record in records]
    correlation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "home-refresh:" + ",".join(ids)))
    try:
        config = current_config()
    except ConfigError as error:  # no retry mends it; the Homes refresh once it is mended
        runtime.logger.error("home refresh not queued", reason=str(error))
        return
    try:
        if not runtime.ledger().home_viewers(since=int(time.time()) - HOME_WINDOW_SECONDS):
            runtime.logger.info("home refresh not needed: nobody has the Home open")
            return
        if not runtime.ledger().mark_home_refresh(correlation_id):
            runtime.logger.info("home refresh pending already: its read comes after these changes")
            return
    except LedgerError as error:
        raise RefreshNotArranged(f"the viewers could not be read, or the mark put: {error}") from None
    refresh = HomeRefresh(correlation_id, int(time.time()))
    try:
        enqueue(config, refresh.kind, refresh.to_json(), dedup_id=correlation_id, group_id=refresh.kind,
                correlation_id=correlation_id)  # fmt: skip
    except NotQueued as error:
        raise RefreshNotArranged(f"home refresh not queued: {error}") from None
