"""The github queue worker: GitHub's ``workflow_run`` events release and renew the locks of the runs they report.

``handler(event, context)`` is the SQS Lambda (``ReportBatchItemFailures``) behind the router's
``/github/webhook``, which has already checked ``X-Hub-Signature-256`` and the repository and queued each event
as a :class:`~workers.protocol.envelope.WorkflowRunEnvelope`. Per event:

1. **Which lock does it claim?** The payload carries no inputs, so the lock key and the correlation id come from
   the run's name (:func:`workers.protocol.workflow.parse_run_name`, the workflow's ``run-name``). A run not named
   so is not ours: done.
2. **One GetItem** of that lock, and :func:`workers.protocol.runs.not_this_runs_lock`: a name is a claim, not
   authority — the run must be a ``workflow_dispatch`` run of the lock's command's workflow in the configured
   repository, carry the lock's correlation id, and be the run the lock noted, if it noted one. Anything else (a
   pull request titled like a lock, another workflow, a late event of an older run, a freeze) is logged and ignored.
3. ``completed`` — release, conditional on the lock's owner and token as just read: ``COMPLETED`` on ``success``,
   ``FAILED`` otherwise, and the result to the channel (:meth:`workers.flows.runlock.RunLocks.finish`). If a newer
   holder took the lock between the read and the write, the token differs and nothing is released.
   ``requested`` / ``in_progress`` — renew the lease if less than half of it is left
   (:meth:`workers.flows.runlock.RunLocks.renew`).

Duplicate deliveries (GitHub retries, SQS at-least-once, the reaper having seen the end first) and a redelivery
whose release took effect but whose answer was lost find the lock already released by this run with the same
outcome: the release again is a repeat, and the result is told from the released lock — once, where the ledger
shows it was told (:func:`workers.flows.handoff.follow_up`).

A lock table that does not answer fails the record, and SQS brings it back (then the DLQ); the reaper catches a
run whose event ended there.
"""

from __future__ import annotations

from typing import Final

from lockcore.record import Status
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.ledger import Ledger
from workers.adapters.slack import SlackReplies
from workers.flows.handoff import tell_channel
from workers.flows.runlock import Effect, RunLocks, RunReport, outcome_of, result_text
from workers.protocol.config import Config
from workers.protocol.envelope import WorkflowRunEnvelope
from workers.protocol.freeing import released_by_this_run
from workers.protocol.message import Message
from workers.protocol.runs import RunFacts, not_this_runs_lock

RENEWING_ACTIONS: Final = frozenset({"requested", "in_progress"})
_UNRELEASED = frozenset({Status.IN_PROGRESS, Status.EXPIRED})


class WebhookWorker:
    """One ``workflow_run`` event at a time. The store's clock is the worker's clock."""

    def __init__(self, config: Config, store: LockStore, slack: SlackReplies) -> None:
        self.config = config
        self.store = store
        self.locks = RunLocks(config, store, slack, retry_unheard=True)
        self.slack = slack

    @property
    def ledger(self) -> Ledger:
        return self.locks.ledger or runtime.ledger()

    def on_event(self, event: WorkflowRunEnvelope) -> Effect:
        run = RunFacts.of_event(event)
        if run.lock_key is None:
            runtime.logger.info("run not named by us: ignored", run_name=(event.display_title or event.name)[:120])
            return Effect.IGNORED
        with runtime.logger.append_context_keys(
            lock_key=run.lock_key,
            run_correlation_id=run.correlation_id,
            run_id=event.run_id,
            run_action=event.action,
            run_event=event.event,
            workflow_path=event.workflow_path,
        ):
            if event.action != "completed" and event.action not in RENEWING_ACTIONS:
                runtime.logger.info("workflow_run action not acted on")
                return Effect.IGNORED
            record = self.store.get(run.lock_key)
            why_not = not_this_runs_lock(run, record, self.config)
            if record is None or why_not is not None:
                told = self.report_end(run, event) if event.action == "completed" else None
                if told is not None:
                    return told
                runtime.logger.info("event ignored: not this run's lock", reason=why_not)
                return Effect.IGNORED
            if event.action == "completed":
                if record.status not in _UNRELEASED and not released_by_this_run(
                    record, run.correlation_id or "", event.run_id, outcome_of(event.conclusion)
                ):  # freed otherwise: a cancel reported the run; a force-unlock or an expiry left it going
                    if self.report_orphan(run, event):
                        return Effect.ORPHAN_REPORTED
                    runtime.logger.info("lock already released", status=record.status.value)
                    return Effect.ALREADY_RELEASED
                # Still held; or released by this run already, whose answer may have been lost before anybody
                # told the result: the release again is answered as a repeat, told unless it was told.
                finished = self.locks.finish(record, RunReport.of_event(event), seen_by="webhook")
                if finished is Effect.REFUSED:  # freed or taken between the read and the write: told from the ledger
                    return self.report_end(run, event) or finished
                return finished
            return self.locks.renew(record)

    def report_end(self, run: RunFacts, event: WorkflowRunEnvelope) -> Effect | None:
        """The end of a run whose lock is no longer its own, from the lock the ledger kept for it: let go before
        the run ended (:meth:`report_orphan`), or released by the run's end with the answer lost and taken since
        (the release again, from the kept lock: :meth:`workers.flows.runlock.RunLocks.finish`). ``None``: no lock
        of this run was kept — not one of our runs, or nothing left to tell."""
        if self.report_orphan(run, event):
            return Effect.ORPHAN_REPORTED
        ending = self.ledger.ending(run.correlation_id) if run.correlation_id else None
        if ending is None or not_this_runs_lock(run, ending, self.config) is not None:
            return None
        return self.locks.finish(ending, RunReport.of_event(event), seen_by="webhook", kept=True)

    def report_orphan(self, run: RunFacts, event: WorkflowRunEnvelope) -> bool:
        """A run whose lock was let go before it ended (force-unlocked, expired) still has its end reported in its
        channel — from the lock as it was let go, kept by correlation id — once. The same authority rule applies:
        only the dispatched run of the command's workflow that the kept lock names."""
        orphaned = self.ledger.orphan(run.correlation_id) if run.correlation_id else None
        if orphaned is None or not_this_runs_lock(run, orphaned, self.config) is not None:
            return False
        key = f"run-end#{orphaned.lock_key}#{orphaned.token}"
        if self.ledger.told(key):
            return True
        report = RunReport.of_event(event)
        text = f"{result_text(orphaned, report, self.store.now())} (Its lock had been let go before it ended.)"
        if not tell_channel(orphaned, Message.in_channel(text), self.slack):
            # no lock of its own for the reaper to look at again: the event comes back (SQS) until it is heard
            raise runtime.RetryLater(f"the end of run {event.run_id} was not heard in its channel")
        self.ledger.mark_told(key)
        return True
