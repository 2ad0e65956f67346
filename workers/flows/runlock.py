"""The lock a GitHub run holds: released when the run ends, renewed while it goes, expired when it is gone.

The build worker (:mod:`workers.flows.build`) takes the lock and dispatches the run; from then on the lock belongs to
the run, and two workers look after it:

- the webhook worker (:mod:`workers.flows.webhook`), on GitHub's ``workflow_run`` events, as they come;
- the reaper (:mod:`workers.flows.reaper`), every minute, from the lock table and GitHub's API — for the events that
  never came.

Both decide with the functions here and act through :class:`RunLocks`, so a run's end reads the same in the
channel whichever of the two saw it first. Every write is conditional on the lock's fencing token (and, for a
release or an extension, its owner), so the two may race freely: the first write takes effect, the second is
refused or recognised as a repeat, and only a write that took effect tells the channel. A late event of an older
run finds a newer request's correlation id (or token) on the lock and changes nothing.

The rules:

- **finish** — a completed run releases its lock: ``COMPLETED`` on ``success``, ``FAILED`` on any other
  conclusion (``failure``, ``cancelled``, ``timed_out``, ``startup_failure``…). The result goes to the channel
  the command came from (``channelId`` on the lock) with ``chat.postMessage`` — the command's ``response_url``
  may be long dead.
- **renew** — a run still going whose lease has less than :data:`RENEW_WHEN_LEFT` of the command's lease left
  gets a fresh lease (now + the command's lease), so a 45-minute deploy keeps its 30-minute lock. Never past
  :data:`MAX_HOLD_SECONDS` after the lock was taken: a run that long is stuck, and its lock should end.
- **expire** — a lease that lapsed (no renewal: the run vanished, never started, or is past its limit) is
  recorded ``EXPIRED`` and the channel told.

The first part of this module decides and renders (pure functions of the record, the run and the clock); the
second, :class:`RunLocks`, performs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit

from lockcore import machine, outcomes
from lockcore.record import LockRecord, Status, epoch
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.github import GitHubClient
from workers.adapters.ledger import Ledger, LedgerError
from workers.adapters.pending import PendingRequests
from workers.adapters.slack import SlackReplies
from workers.flows import handoff
from workers.protocol.config import Action, Config
from workers.protocol.dispatch import DISPATCHED, DISPATCHING, run_link, slack_time
from workers.protocol.envelope import WorkflowRunEnvelope
from workers.protocol.freeing import runs_under, told_key
from workers.protocol.history import ROLLBACK, ROLLBACK_NOTED
from workers.protocol.message import Message
from workers.protocol.render import Shown, duration, holder
from workers.protocol.runs import action_of, dispatched_to
from workers.protocol.workflow import Run

RENEW_WHEN_LEFT: Final = 0.5
"""Renew when less than this fraction of the command's lease is left (the reaper runs every minute)."""
MAX_HOLD_SECONDS: Final = 6 * 3600
"""No renewal after this long under one lock: GitHub's own limit for a job (360 minutes)."""

RELEASED_METRIC: Final = "buildLockManager.releaseLock.success"
LOCK_DURATION_METRIC: Final = "buildLockManager.lockDuration"
EXTENDED_METRIC: Final = "buildLockManager.extendLock.success"
EXPIRED_METRIC: Final = "buildLockManager.lock.expired"
RUN_COMPLETED_METRIC: Final = "buildLockManager.run.completed"
RUN_FAILED_METRIC: Final = "buildLockManager.run.failed"
OUTCOME_METRICS: Final = {Status.COMPLETED: RUN_COMPLETED_METRIC, Status.FAILED: RUN_FAILED_METRIC}
"""A run's end, by the outcome :meth:`RunLocks.finish` released its lock with, once per release (a repeat emits
nothing): the dashboard's run failure rate is FAILED / (COMPLETED + FAILED)."""


# ------------------------------------------------------------------------------------------------ the run
@dataclass(frozen=True)
class RunReport:
    """What is known of a run, from a webhook or from GitHub's API: enough to decide and to link."""

    run_id: int
    status: str
    conclusion: str | None
    html_url: str
    head_sha: str = ""

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @classmethod
    def of_event(cls, event: WorkflowRunEnvelope) -> RunReport:
        # `completed` is the action; the status in the payload says the same, but the action is what GitHub
        # guarantees per event.
        status = "completed" if event.action == "completed" else event.status or event.action
        return cls(event.run_id, status, event.conclusion, event.html_url, event.head_sha)

    @classmethod
    def of_run(cls, run: Run) -> RunReport:
        return cls(run.id, run.status, run.conclusion, run.html_url, run.head_sha)


# ------------------------------------------------------------------------------------------------ deciding
def outcome_of(conclusion: str | None) -> Status:
    """``COMPLETED`` on ``success``; ``FAILED`` on anything else, ``cancelled`` and ``timed_out`` included."""
    return Status.COMPLETED if conclusion == "success" else Status.FAILED


def lease_seconds_of(record: LockRecord, config: Config) -> int | None:
    action = action_of(record)
    spec = config.commands.get(action) if action is not None else None
    return spec.lease_seconds if spec is not None else None


def held_for(record: LockRecord, now: int) -> int:
    try:
        return max(now - epoch(record.locked_at), 0)
    except ValueError:
        return 0


def renewal_due(record: LockRecord, now: int, lease_seconds: int) -> bool:
    """The run's lock should be renewed now: held, less than :data:`RENEW_WHEN_LEFT` of a lease left, and not
    held past :data:`MAX_HOLD_SECONDS`."""
    if not machine.is_live(record.to_item(), now):
        return False
    left = record.lease_expires_at - now
    return left < lease_seconds * RENEW_WHEN_LEFT and held_for(record, now) < MAX_HOLD_SECONDS


def lease_lapsed(record: LockRecord, now: int) -> bool:
    """IN_PROGRESS, but the lease has ended: free to take, and nobody has recorded it yet."""
    return record.status is Status.IN_PROGRESS and now >= record.lease_expires_at


def find_unnoted_run(record: LockRecord, config: Config, github: GitHubClient) -> Run | None:
    """The run of a lock whose run id was never noted — ``dispatching`` (the build worker stopped half-way) or
    ``dispatched`` (GitHub answered 204 and did not list the run in time) — found by the correlation id in its
    name; ``None`` for a lock in any other state. Raises :class:`~workers.adapters.github.GitHubError` when GitHub
    cannot
    answer."""
    target = dispatched_to(record, config)
    if record.notes.get("dispatchState") not in (DISPATCHING, DISPATCHED) or not record.correlation_id or not target:
        return None  # (a lock of a command no longer configured: its lease ends it)
    try:
        since = datetime.fromtimestamp(epoch(record.locked_at), UTC)
    except ValueError:
        return None
    return github.find_run(target.repository, target.workflow, record.correlation_id, since)


# ----------------------------------------------------------------------------------------------- rendering
def target_of(record: LockRecord) -> str:
    """``router (plt)``; the lock key when the record does not name them."""
    if record.component and record.environment:
        return f"{record.component} ({record.environment})"
    return f"`{record.lock_key}`"


def started(record: LockRecord, now: int) -> str:
    """``started by <@U0ALICE> at <!date…>``."""
    try:
        at = f" at {slack_time(epoch(record.locked_at), now)}"
    except ValueError:
        at = ""
    return f"started by {holder(record, Shown.MENTION)}{at}"


def short_sha(record: LockRecord, run: RunReport | None = None) -> str:
    sha = record.notes.get("commitSha") or (run.head_sha if run is not None else "")
    return sha[:7]


def link_of(record: LockRecord, run: RunReport | None = None) -> str:
    run_id = run.run_id if run is not None else record.notes.get("runId")
    url = (run.html_url if run is not None else "") or record.notes.get("runUrl")
    return run_link(run_id, url)


def result_text(record: LockRecord, run: RunReport, now: int) -> str:
    """The run's end, for the channel, from the released record:

    ``✅ router (plt) built in 4m12s — started by <@U0ALICE> at <!date…>, <…|run 7>``
    ``❌ api (prod) deploy of `1a2b3c4` failed (timed_out) after 30m00s — started by <@U0BOB> at …, <…|run 9>``
    ``✅ api (plt) ⏪ rolled back to `1a2b3c4` in 2m03s — …`` (a ``/deploy rollback``)
    """
    took = duration(held_for(record, epoch(record.released_at) if record.released_at else now))
    sha = short_sha(record, run)
    deploy = action_of(record) is Action.DEPLOY
    tail = f"{started(record, now)}, {link_of(record, run)}"
    rollback = deploy and record.notes.get(ROLLBACK) == ROLLBACK_NOTED
    if outcome_of(run.conclusion) is Status.COMPLETED:
        what = f"deployed `{sha}`" if deploy and sha else ("deployed" if deploy else "built")
        what = f"⏪ rolled back to `{sha}`" if rollback else what
        return f"✅ {target_of(record)} {what} in {took} — {tail}"
    what = (f"deploy of `{sha}`" if sha else "deploy") if deploy else "build"
    what = f"⏪ rollback to `{sha}`" if rollback else what
    return f"❌ {target_of(record)} {what} failed ({run.conclusion or 'no conclusion'}) after {took} — {tail}"


class ExpiryCause(StrEnum):
    """Why nothing renewed a lease, in the words the channel reads."""

    RUN_GONE = "its run is gone from GitHub"
    NO_RUN = "no run was ever recorded under it"
    RUN_TOO_LONG = "its run has been going for longer than a lock is kept"
    RUN_STILL_GOING = "its run is still going, but nothing renewed the lease in time"
    RUN_UNKNOWN = "GitHub could not say where its run stands"


def expired_text(record: LockRecord, cause: ExpiryCause, now: int) -> str:
    """``⌛ The lock on router (plt) expired at <!date…>: its run is gone from GitHub (<run>). started by …``."""
    noun = "deploy" if action_of(record) is Action.DEPLOY else "build"
    run = f" ({link_of(record)})" if record.notes.get("runId") or record.notes.get("runUrl") else ""
    return (
        f"⌛ The {noun} lock on {target_of(record)} expired at {slack_time(record.lease_expires_at, now)}: "
        f"{cause.value}{run}. It was {started(record, now)}. The lock is free again."
    )


# ------------------------------------------------------------------------------------------------- acting
class Effect(StrEnum):
    """What one look at a lock did."""

    RELEASED = "released"
    ALREADY_RELEASED = "already-released"
    EXTENDED = "extended"
    EXPIRED = "expired"
    ALREADY_EXPIRED = "already-expired"
    HANDED_AGAIN = "handed-again"
    """A lock handed from the queue whose request was never dispatched: the request was queued again."""
    END_HANDED_OVER = "end-handed-over"
    """The reaper released a completed run's lock, and the channel did not hear its end: handed to the webhook
    worker as the ``completed`` event, to be told from there."""
    END_TOLD = "end-told"
    """The end of a run whose release's answer was lost, told from its lock as kept: a new holder has it now."""
    ORPHAN_REPORTED = "orphan-reported"
    """The end of a run whose lock had been let go before it ended, told in its channel (no lock changed)."""
    KEPT = "kept"
    """Nothing to do: the run goes on and its lease is long enough, or the lease still runs."""
    REFUSED = "refused"
    """The write was refused: the lock moved on (a newer holder, or another worker acted first)."""
    IGNORED = "ignored"
    """Not this run's lock, or not one of our runs."""


class RunLocks:
    """Release, renew and expire run locks, and tell the channel — each one conditional write on the token.

    A lock store that fails raises :class:`~lockcore.errors.LockStoreError` to the caller (the webhook worker
    lets SQS redeliver; the reaper tries again next minute). A Slack post that fails is logged and changes
    nothing: the lock is what matters.
    """

    def __init__(
        self,
        config: Config,
        store: LockStore,
        slack: SlackReplies,
        pending: PendingRequests | None = None,
        ledger: Ledger | None = None,
        *,
        retry_unheard: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.slack = slack
        self.pending = pending
        self.ledger = ledger
        # A channel that did not hear a run's end raises RetryLater (once the rest is done): the webhook worker's
        # event comes back (SQS), the reaper hands the end to the webhook worker, and it is told from the lock kept
        # at the end, wherever the lock has gone since.
        self.retry_unheard = retry_unheard

    def finish(self, record: LockRecord, run: RunReport, *, seen_by: str, kept: bool = False) -> Effect:
        """The run completed: release its lock with the run's outcome, and tell the channel the result — a repeat
        (the first answer lost, a duplicate event) the same result, unless it was told already.

        The lock is kept in the ledger first (:meth:`~workers.adapters.ledger.Ledger.keep_ending`): a release whose
        answer is lost, and whose lock a new request takes before the event comes back, is then repeated from the
        lock as kept (``kept``) — a repeat if the item still shows it (a hand-off records who let go), else the
        run's end is told from the kept lock, once."""
        outcome = outcome_of(run.conclusion)
        if record.status is Status.IN_PROGRESS and record.correlation_id and not kept:
            try:
                self.ledger_or_default().keep_ending(record)
            except LedgerError as error:  # the release matters more: only a lost answer's repeat would need it
                runtime.logger.error("the lock could not be kept before its release", reason=str(error))
        released = self.store.release(record.lock_key, record.owner, record.token, outcome, seen=record)
        log = runtime.logger
        if isinstance(released, outcomes.NotHolder):
            if kept:
                return self.tell_end_of_kept(record, run)
            log.info("lock not released: it moved on", reason=released.reason.value, seen_by=seen_by)
            return Effect.REFUSED
        now = self.store.now()
        if released.repeated:
            log.info("lock already released with this outcome", outcome=outcome.value, seen_by=seen_by)
        else:
            log.info(
                "lock released: the run ended",
                outcome=outcome.value,
                conclusion=run.conclusion,
                run_id=run.run_id,
                token=released.record.token,
                seen_by=seen_by,
            )
            runtime.metrics.add_metric(name=RELEASED_METRIC, unit=MetricUnit.Count, value=1)
            runtime.metrics.add_metric(name=OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=1)
            held = held_for(released.record, now)
            runtime.metrics.add_metric(name=LOCK_DURATION_METRIC, unit=MetricUnit.Seconds, value=held)
        self.follow_up(released, record, lambda let_go: result_text(let_go, run, now), retry_unheard=self.retry_unheard)
        return Effect.ALREADY_RELEASED if released.repeated else Effect.RELEASED

    def tell_end_of_kept(self, kept: LockRecord, run: RunReport) -> Effect:
        """The lock kept at the run's end has moved on to a new holder, and nothing on it says how this run let go:
        the run's end is told from the kept lock — unless its news was told already (by the release's first
        answer, or by whatever freed it first, such as a cancel)."""
        ledger, key = self.ledger_or_default(), told_key(kept)
        if ledger.told(key):
            runtime.logger.info("the run's end was told already; its lock has moved on", told_key=key)
            return Effect.ALREADY_RELEASED
        text = result_text(kept, run, self.store.now())
        if not handoff.tell_channel(kept, Message.in_channel(text), self.slack):
            raise runtime.RetryLater(f"the end of run {run.run_id} was not heard in its channel")
        ledger.mark_told(key)
        runtime.logger.warning("the run's end told after its lock moved on", told_key=key)
        return Effect.END_TOLD

    def follow_up(
        self,
        freed: outcomes.Freed,
        seen: LockRecord,
        news: Callable[[LockRecord], str],
        *,
        retry_unheard: bool = False,
    ) -> bool:
        return handoff.follow_up(
            freed,
            self.config,
            self.slack,
            self.pending,
            seen=seen,
            news=news,
            ledger=self.ledger,
            retry_unheard=retry_unheard,
        )

    def renew(self, record: LockRecord) -> Effect:
        """Extend the lease by the command's lease, if it is due (:func:`renewal_due`)."""
        now = self.store.now()
        lease = lease_seconds_of(record, self.config)
        if lease is None or not renewal_due(record, now, lease):
            return Effect.KEPT
        extended = self.store.extend(record.lock_key, record.owner, record.token, lease)
        if isinstance(extended, outcomes.NotHolder):
            runtime.logger.info("lease not extended: the lock moved on", reason=extended.reason.value)
            return Effect.REFUSED
        runtime.logger.info(
            "lease extended: the run goes on",
            token=record.token,
            was=record.lease_expires_at,
            now_ends=extended.record.lease_expires_at,
        )
        runtime.metrics.add_metric(name=EXTENDED_METRIC, unit=MetricUnit.Count, value=1)
        return Effect.EXTENDED

    def ledger_or_default(self) -> Ledger:
        return self.ledger or runtime.ledger()

    def expire(self, record: LockRecord, cause: ExpiryCause) -> Effect:
        """Record the lapsed lease as EXPIRED (only while nobody took the lock since) and tell the channel — a
        repeat the same, unless it was told already. A run still under it is remembered first (its end is reported
        when it comes: :meth:`workers.flows.webhook.WebhookWorker.report_orphan`)."""
        if runs_under(record):
            self.ledger_or_default().keep_orphan(record)
        expired = self.store.expire(record.lock_key, record.token, seen=record)
        if isinstance(expired, outcomes.NotHolder):
            runtime.logger.info("lock not expired", reason=expired.reason.value)
            return Effect.REFUSED
        if expired.repeated:
            runtime.logger.info("lock already expired", token=record.token)
        else:
            runtime.logger.warning("lock expired: its lease lapsed", cause=cause.name, token=record.token)
            runtime.metrics.add_metric(name=EXPIRED_METRIC, unit=MetricUnit.Count, value=1)
        now = self.store.now()
        self.follow_up(expired, record, lambda let_go: expired_text(let_go, cause, now))
        return Effect.ALREADY_EXPIRED if expired.repeated else Effect.EXPIRED
