"""The github queue worker: GitHub's ``workflow_run`` events release and renew the locks of the runs they report.

``handler(event, context)`` is the SQS Lambda (``ReportBatchItemFailures``) behind the router's
``/github/webhook``, which has already checked ``X-Hub-Signature-256`` and the repository and queued each event
as a :class:`~workers.envelope.WorkflowRunEnvelope`. Per event:

1. **Whose run?** The payload carries no inputs, so the lock key and the correlation id come from the run's name
   (:func:`workers.github.parse_run_name`, the workflow's ``run-name``). A run not named so is not ours: done.
2. **One GetItem** of that lock. Its correlation id must be the run's: a late event from an older run (or any
   event for a lock that has moved on to a newer request) is logged and ignored.
3. ``completed`` — release, conditional on the lock's owner and token as just read: ``COMPLETED`` on ``success``,
   ``FAILED`` otherwise, and the result to the channel (:meth:`workers.runlock.RunLocks.finish`). If a newer
   holder took the lock between the read and the write, the token differs and nothing is released.
   ``requested`` / ``in_progress`` — renew the lease if less than half of it is left
   (:meth:`workers.runlock.RunLocks.renew`).

Duplicate deliveries (GitHub retries, SQS at-least-once, the reaper having seen the end first) find the lock
already released with the same outcome — a repeat, not news — and the channel is told once.

A lock table that does not answer fails the record, and SQS brings it back (then the DLQ); the reaper catches a
run whose event ended there.
"""

from __future__ import annotations

from typing import Any, Final

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from lockcore.record import Status
from lockcore.store import LockStore
from workers import runtime
from workers.config import Config, current_config
from workers.envelope import WorkflowRunEnvelope
from workers.github import parse_run_name
from workers.runlock import Effect, RunLocks, RunReport, not_this_runs_lock
from workers.slack import SlackReplies

RENEWING_ACTIONS: Final = frozenset({"requested", "in_progress"})
_UNRELEASED = frozenset({Status.IN_PROGRESS, Status.EXPIRED})


class WebhookWorker:
    """One ``workflow_run`` event at a time. The store's clock is the worker's clock."""

    def __init__(self, config: Config, store: LockStore, slack: SlackReplies) -> None:
        self.store = store
        self.locks = RunLocks(config, store, slack)

    def on_event(self, event: WorkflowRunEnvelope) -> Effect:
        named = parse_run_name(event.name) or parse_run_name(event.display_title)
        if named is None:
            runtime.logger.info("run not named by us: ignored", run_name=event.name[:120])
            return Effect.IGNORED
        lock_key, correlation_id = named
        with runtime.logger.append_context_keys(
            lock_key=lock_key, run_correlation_id=correlation_id, run_id=event.run_id, run_action=event.action
        ):
            if event.action != "completed" and event.action not in RENEWING_ACTIONS:
                runtime.logger.info("workflow_run action not acted on")
                return Effect.IGNORED
            record = self.store.get(lock_key)
            why_not = not_this_runs_lock(record, correlation_id, event.run_id)
            if record is None or why_not is not None:
                runtime.logger.info("event ignored: not this run's lock", reason=why_not)
                return Effect.IGNORED
            run = RunReport.of_event(event)
            if event.action == "completed":
                if record.status not in _UNRELEASED:  # released already, under this very token: a repeat
                    runtime.logger.info("lock already released", status=record.status.value)
                    return Effect.ALREADY_RELEASED
                return self.locks.finish(record, run, seen_by="webhook")
            return self.locks.renew(record)


def handle_record(record: SQSRecord, worker: WebhookWorker | None = None) -> Effect:
    """One SQS record; a body that is not a ``workflow_run`` envelope raises (and ends in the DLQ)."""
    event = WorkflowRunEnvelope.from_json(record.body)
    with runtime.logger.append_context_keys(correlation_id=event.correlation_id, delivery_id=event.delivery_id):
        worker = worker or WebhookWorker(current_config(), runtime.lock_store(), runtime.slack_replies())
        effect = worker.on_event(event)
        runtime.logger.info("workflow_run handled", effect=effect.value)
        return effect


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """The SQS Lambda: each record on its own; failures reported per record (``ReportBatchItemFailures``)."""
    return runtime.process_sqs_batch(event, context, handle_record)
