"""The reaper: every minute, each lock a run holds is looked at against GitHub — for the events that never came.

``handler(event, context)`` is the Lambda an EventBridge schedule (``rate(1 minute)``) invokes with its
``Scheduled Event``. One Scan of the lock table (:meth:`lockcore.store.LockStore.list`, free keys included, so
that a lapsed lease nobody recorded is seen), then for each lock still ``IN_PROGRESS``:

==============================================  =====================================================
the run (``runId`` noted; else found by its      what the reaper does
correlation id, once it was being dispatched)
==============================================  =====================================================
completed                                       release with its outcome — a missed webhook — and tell
                                                the channel (:meth:`~workers.flows.runlock.RunLocks.finish`);
                                                a channel that did not hear it gets it from the webhook
                                                worker, the run's ``completed`` event queued for it
lease lapsed, run gone / none / still going     expire (recorded EXPIRED), tell the channel, metric
                                                ``buildLockManager.lock.expired``
going, lease nearly over                        extend (:meth:`~workers.flows.runlock.RunLocks.renew`)
handed from the queue, never dispatched,        queue the request again for the build worker
for :data:`HANDOFF_GRACE_SECONDS`               (:func:`workers.flows.handoff.pass_on`) — below
anything else                                   nothing
==============================================  =====================================================

**A hand-off nobody dispatched.** The write that hands a lock to the head of its queue is lockcore's; starting
the head's run is the worker's that made the write, by queueing the request again — a step that a crash, a
timeout or a redelivery that reads the lock after the write can lose. So the reaper looks for it: a lock held by
the very request it was handed to (``previousHandedTo``), with no dispatch noted a minute on, has its request
queued again. Safe to repeat: the queue deduplicates on the request id and token, the build worker's idempotency
record answers a second copy, and a request whose dispatch began notes it first.

**Scheduled freeze windows** are applied first, each sweep (:func:`workers.flows.windows.apply`): a window going on
takes ``freeze-<env>``, with a lease that ends with it; the loop above records its expiry the sweep after.

Each action is one conditional write on the token (and, for release and extend, the owner) the Scan read, so
the reaper is idempotent and safe beside the webhook worker and beside another sweep: whichever writes first
wins, the other is refused or sees a repeat, and only the write that took effect tells the channel. GitHub
failing for one lock is logged and the sweep goes on; a lock table that fails fails the invocation (the next
minute tries again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lockcore import outcomes
from lockcore.errors import LockStoreError
from lockcore.record import LockRecord, Status, epoch
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.github import GitHubClient, GitHubError, GitHubNotFound
from workers.adapters.ledger import LedgerError
from workers.adapters.queues import NotQueued, enqueue
from workers.adapters.slack import SlackReplies
from workers.flows import handoff, windows
from workers.flows.runlock import (
    MAX_HOLD_SECONDS,
    Effect,
    ExpiryCause,
    RunLocks,
    RunReport,
    find_unnoted_run,
    held_for,
    lease_lapsed,
)
from workers.protocol.config import Config
from workers.protocol.freeing import told_key
from workers.protocol.runs import completed_event_of, noted_run_id, repository_of
from workers.protocol.workflow import Run

HANDOFF_GRACE_SECONDS = 60
"""How long a lock handed from the queue may wait for its request to note a dispatch before the reaper queues the
request again (the build worker takes a handed-off request within seconds)."""
HANDOFF_RETRY_SECONDS = 5 * 60
"""For how long after the grace the reaper keeps queueing it again (once a sweep). A request that still notes no
dispatch then has a reason of its own — it answered from its idempotency record, or its worker cannot reach the
lock table — and its lease ends the wait, not a message a minute."""


@dataclass(frozen=True)
class RunLookup:
    """Where a lock's run stands, as far as GitHub said."""

    run: RunReport | None = None
    found: Run | None = None
    """The run as GitHub's API described it (for a hand-over to the webhook worker)."""
    gone: bool = False
    """GitHub answered 404 for the noted run."""
    unknown: bool = False
    """GitHub did not answer (or the run could not be looked for)."""


@dataclass(frozen=True)
class Swept:
    lock_key: str
    token: int
    effect: Effect


UNTOLD_WINDOW_SECONDS: Final = 15 * 60
"""How long after freeing a lock the reaper still checks that its news was told (a lost answer is retried at once
by nobody else): every sweep in that window reads the ledger once for each such lock."""


class Reaper:
    """One sweep over the lock table. The store's clock is the reaper's clock."""

    def __init__(self, config: Config, store: LockStore, github: GitHubClient, slack: SlackReplies) -> None:
        self.config = config
        self.store = store
        self.github = github
        self.locks = RunLocks(config, store, slack, retry_unheard=True)
        self.windows: list[windows.WindowStep] = []
        """What the last sweep did about freeze windows."""

    def sweep(self) -> list[Swept]:
        records = self.store.list(include_free=True)
        let_go = windows.let_go_of_unconfigured(self.config, self.store, records)
        self.windows = windows.apply(self.config, self.store, self.locks.ledger_or_default())
        written = let_go | {step.occurrence_key for step in self.windows}
        swept: list[Swept] = []
        for record in records:
            if record.lock_key in written:
                continue  # written since the scan: the next sweep reads it as it is
            if record.status is not Status.IN_PROGRESS and not self._untold(record):
                continue
            with runtime.logger.append_context_keys(
                lock_key=record.lock_key, correlation_id=record.correlation_id, token=record.token
            ):
                try:
                    effect = self.look_at(record) if record.status is Status.IN_PROGRESS else self.tell_again(record)
                except (LockStoreError, *LedgerError) as error:  # this lock's write failed; the others may still go
                    runtime.logger.error("a store failed on this lock; next sweep tries again", reason=str(error))
                    continue
            swept.append(Swept(record.lock_key, record.token, effect))
        return swept

    def look_at(self, record: LockRecord) -> Effect:
        handed = self._undispatched_hand_off(record)
        if handed is not None:
            runtime.logger.warning("a hand-off was never dispatched: queueing its request again", owner=record.owner)
            return Effect.HANDED_AGAIN if handoff.pass_on(handed, self.config) else Effect.KEPT
        lookup = self._find(record)
        if lookup.run is not None and lookup.run.completed:
            runtime.logger.warning("run completed without its webhook: releasing", run_id=lookup.run.run_id)
            return self._finish(record, lookup.run, lookup.found)
        now = self.store.now()
        if lease_lapsed(record, now):
            return self.locks.expire(record, self._cause(record, lookup, now))
        if lookup.run is not None:
            return self.locks.renew(record)
        return Effect.KEPT  # no run to speak for it: the lease runs out on its own

    def _untold(self, record: LockRecord) -> bool:
        """A lock this reaper freed a moment ago (expired it, or released it at its run's end) whose news the ledger
        does not show told: the write took effect and its answer was lost, and nothing else will look again."""
        if record.status not in (Status.EXPIRED, Status.COMPLETED, Status.FAILED) or not record.released_at:
            return False
        if record.status is not Status.EXPIRED and record.notes.get("dispatchState") != "dispatched":
            return False  # released with no run (a dispatch that failed): its requester was told by the build worker
        try:
            recent = self.store.now() - epoch(record.released_at) <= UNTOLD_WINDOW_SECONDS
        except ValueError:
            return False
        if not recent or not record.notes.get("channelId"):  # no channel to tell: a repeat would tell nobody more
            return False
        return self.locks.ledger_or_default().untold(told_key(record))

    def tell_again(self, record: LockRecord) -> Effect:
        """The freeing write again — a repeat, which tells what the first would have (:func:`handoff.follow_up`)."""
        lookup = self._find(record)
        if record.status is Status.EXPIRED:
            return self.locks.expire(record, self._cause(record, lookup, self.store.now()))
        if lookup.run is not None and lookup.run.completed:
            return self._finish(record, lookup.run, lookup.found)
        return Effect.KEPT

    def _finish(self, record: LockRecord, run: RunReport, found: Run | None) -> Effect:
        """Release the completed run's lock and tell its end. A channel that did not hear it — with the lock
        perhaps handed on, or taken, before the next sweep could look again — hands the end to the webhook worker,
        as the ``completed`` event GitHub did not deliver: its queue brings it back until it is heard, told from
        the lock kept at the run's end."""
        try:
            return self.locks.finish(record, run, seen_by="reaper")
        except runtime.RetryLater:
            if found is None or not record.correlation_id:
                return Effect.RELEASED  # (no run to hand over: the ledger shows it untold for the next sweep)
        event = completed_event_of(
            found,
            correlation_id=record.correlation_id,
            delivery_id=f"reaper-{found.id}-{record.token}",
            received_at=self.store.now(),
        )
        try:
            enqueue(
                self.config,
                event.kind,
                event.to_json(),
                dedup_id=event.delivery_id,
                group_id=str(event.run_id),
                correlation_id=event.correlation_id,
            )
        except NotQueued as error:  # the ledger shows it untold; the next sweep looks again while the lock shows it
            runtime.logger.error("the run's end was not heard, nor handed to the webhook worker", reason=str(error))
            return Effect.RELEASED
        runtime.logger.warning("the run's end was not heard: handed to the webhook worker", run_id=event.run_id)
        return Effect.END_HANDED_OVER

    def _undispatched_hand_off(self, record: LockRecord) -> outcomes.HandOff | None:
        """The hand-off that gave ``record`` its holder, if that holder has not noted a dispatch in time."""
        entry, now = record.handed_from_queue, self.store.now()
        if entry is None or entry.owner != record.owner or "dispatchState" in record.notes:
            return None
        held = held_for(record, now)
        if not HANDOFF_GRACE_SECONDS <= held < HANDOFF_GRACE_SECONDS + HANDOFF_RETRY_SECONDS or lease_lapsed(
            record, now
        ):
            return None
        return outcomes.HandOff(entry, record)

    def _cause(self, record: LockRecord, lookup: RunLookup, now: int) -> ExpiryCause:
        if lookup.gone:
            return ExpiryCause.RUN_GONE
        if lookup.unknown:
            return ExpiryCause.RUN_UNKNOWN
        if lookup.run is None:
            return ExpiryCause.NO_RUN
        return ExpiryCause.RUN_TOO_LONG if held_for(record, now) >= MAX_HOLD_SECONDS else ExpiryCause.RUN_STILL_GOING

    def _find(self, record: LockRecord) -> RunLookup:
        repository = repository_of(record, self.config)
        run_id = noted_run_id(record)
        try:
            if run_id is not None:
                run = self.github.get_run(repository, run_id)
                return RunLookup(RunReport.of_run(run), run)
            found = find_unnoted_run(record, self.config, self.github)
        except GitHubNotFound:
            runtime.logger.warning("the lock's run is gone from GitHub", run_id=run_id)
            return RunLookup(gone=True)
        except GitHubError as error:
            runtime.logger.error("GitHub could not say where the run stands", run_id=run_id, reason=str(error))
            return RunLookup(unknown=True)
        return RunLookup(RunReport.of_run(found), found) if found is not None else RunLookup()
