"""The command worker for ``/build`` and ``/deploy``: take the lock, dispatch the workflow, say so in the channel.

``handler(event, context)`` is the SQS Lambda (``ReportBatchItemFailures``). Each message is a
:class:`~workers.protocol.envelope.CommandEnvelope` the router queued; per message:

1. **Once per request id.** Powertools Idempotency (``idempotent_function``, DynamoDB persistence) keys a record on
   the request id (Slack's ``trigger_id``) and keeps it for :data:`REMEMBER_SECONDS` — longer than SQS keeps a
   message — so a request that ran is answered from its record and never runs again, even after its lock was
   released and a redelivery could otherwise acquire afresh. Why Powertools in a table of its own
   (``IDEMPOTENCY_TABLE_NAME``) rather than a ``request#<id>`` item in the lock table: a scan of the lock table
   (``/build status --locks``, ``chatops locks list``) reads an item with a future ``ttl`` and no status as a
   legacy lock still held, so request records there would show up as locks; and Powertools already does what the
   record must do — it refuses a second concurrent attempt while the first is in progress
   (``IdempotencyAlreadyInProgressError``, so the message comes back later), lets a crashed attempt be retried
   once the Lambda's remaining time has passed, and deletes the record when the attempt raises, so a failure
   worth retrying is retried. One conditional PutItem per request on the way in, one UpdateItem on the way out.
2. **A freeze**, for ``/deploy`` only: one read of ``freeze-<env>``; while it is live the deploy is refused with
   the reason, who froze it and since when (:mod:`workers.flows.freeze`), and takes no lock. A confirmed rollback
   (``/deploy rollback``'s button) reads its lock too: changed since it was offered, it is refused — and so is
   one handed the lock from the queue after the deploy it waited behind completed.
3. **The lock**, owner = request id, lease from the :class:`~workers.protocol.config.CommandSpec`. Held by someone else:
   an ephemeral "⚠️ Build already in progress — started by …" through the ``response_url``, and done.
4. **The revision**: the ref (``/deploy``'s, else the default branch) resolved to a commit SHA.
5. **Dispatch, recorded first**: the lock is noted ``dispatchState=dispatching`` (with command, ref, SHA and
   channel) *before* the ``workflow_dispatch``; after it, ``runId``/``runUrl`` and ``dispatched``. The lock stays
   held while the run goes; the ``workflow_run`` completion releases it (or its lease ends).
6. **In the channel**: "🔨 Building router (plt)… <run>" through the ``response_url`` (``in_channel``), else
   ``chat.postMessage``. A reply that fails is logged with the correlation id and changes nothing.

Never two dispatches for one request: a redelivered message (``ApproximateReceiveCount`` > 1) looks for its run
by correlation id (in the run's name) before it touches the lock or GitHub, and one that finds
``dispatching`` on its lock does the same (:func:`workers.protocol.dispatch.next_step`). A dispatch answered with a
5xx or nothing at all may still have started a run, so the run is looked for before the dispatch is called failed.
Every delivery of one Slack request carries the same correlation id (the router derives it from the
``trigger_id``), and a request that holds its lock dispatches and looks with the one *on the lock*, from when the
lock was taken (:meth:`~workers.protocol.dispatch.Job.holding`) — so another delivery of it, even one queued by an
older router with an id of its own, finds the run the first one started.

Failures: whatever stops the dispatch for sure (a refused token, an unknown ref or workflow, GitHub down before
the dispatch, GitHub answering 5xx and no run appearing) releases the lock ``FAILED`` and tells the user why in
one line. When GitHub cannot even be asked whether the run exists, the lock is kept (a run may be going under
it), the message goes back to the queue to find out later, and its lease bounds the wait; after the last
attempt the message is in the DLQ. A lock store or idempotency store that cannot be reached before the lock is
taken fails the message the same way, with nothing changed; and one that cannot note ``dispatching`` once the lock
is taken puts the request off (:class:`DispatchPutOff`): nothing was dispatched, so nobody is told anything, the
lock is kept for the retry to re-enter, and the retry starts the run, told once
(:func:`~workers.protocol.dispatch.gives_up`).

``ENABLE_DISTRIBUTED_LOCK=false`` dispatches without the lock (a warning in the log, and in the message); so does
a command configured with ``requires_lock = false``, by design (no warning). A confirmed rollback is refused
then: nothing would check what its offer promised.

Metrics (EMF, namespace ``ChatOps``): ``buildLockManager.acquireLock.success`` / ``.failed``,
``buildLockManager.lockDuration`` (seconds, when the worker releases), ``buildWorker.dispatch.failed``,
``buildWorker.dispatch.success``, ``buildWorker.deploy.frozen``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from lockcore import machine as m
from lockcore import outcomes
from lockcore.errors import LockStoreError
from lockcore.record import LockRecord, Status, epoch, iso
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.github import GitHubClient, GitHubError, GitHubServerError, GitHubUnreachable
from workers.adapters.history_table import HistoryTable
from workers.adapters.ledger import LedgerError
from workers.adapters.pending import PendingRequests
from workers.adapters.runtime import logger, metrics
from workers.adapters.secrets import SecretUnavailable
from workers.adapters.slack import SlackReplies
from workers.flows import handoff
from workers.flows.freeze import refuse_frozen
from workers.flows.runlock import RUN_FAILED_METRIC
from workers.protocol import dispatch as d
from workers.protocol import rollback
from workers.protocol.config import Action, Config
from workers.protocol.history import EventKind, HistoryEvent
from workers.protocol.message import Message
from workers.protocol.workflow import Run

REMEMBER_SECONDS: Final = 15 * 24 * 3600
"""How long a request id is remembered: longer than SQS's longest retention (14 days)."""
LOOK_FOR_RUN_SECONDS: Final = 4.0
"""After a dispatch answered 204 or an error, how long to wait for GitHub to list the run."""
IDEMPOTENCY_KEY_PREFIX: Final = "chatops.dispatch"

ACQUIRED_METRIC: Final = "buildLockManager.acquireLock.success"
BUSY_METRIC: Final = "buildLockManager.acquireLock.failed"
LOCK_DURATION_METRIC: Final = "buildLockManager.lockDuration"
DISPATCH_FAILED_METRIC: Final = "buildWorker.dispatch.failed"
DISPATCHED_METRIC: Final = "buildWorker.dispatch.success"
QUEUED_METRIC: Final = "buildLockManager.acquireLock.queued"


@dataclass(frozen=True)
class Result:
    """How a request ended; kept in the idempotency record and logged."""

    outcome: str
    """``dispatched``, ``busy``, ``frozen``, ``failed``, ``already-ran``, ``lock-changed`` (a stale rollback),
    ``no-lock`` (a rollback when deploys take no lock)."""
    lock_key: str
    run_id: int | None = None
    sha: str | None = None
    replayed: bool = False


class DispatchInDoubt(runtime.RetryLater):
    """GitHub could not say whether the dispatch started a run; the message is retried to find out."""


class DispatchPutOff(runtime.RetryLater):
    """The lock store could not note the dispatch, so nothing was sent (:func:`workers.protocol.dispatch.gives_up`):
    the message is retried, and re-enters the lock it kept."""


# ------------------------------------------------------------------------------------------------ the worker
class BuildWorker:
    """One request at a time; the clients are the process's (see :mod:`workers.adapters.runtime`)."""

    def __init__(
        self,
        config: Config,
        store: LockStore,
        github: GitHubClient,
        slack: SlackReplies,
        *,
        clock: Callable[[], float] = time.time,
        look_for_run_seconds: float = LOOK_FOR_RUN_SECONDS,
        pending: PendingRequests | None = None,
        refusals: HistoryTable | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.github = github
        self.slack = slack
        self.clock = clock
        self.look_for_run_seconds = look_for_run_seconds
        self.pending = pending or runtime.pending_requests()
        self.refusals = refusals

    def now(self) -> int:
        return int(self.clock())

    def run(self, job: d.Job, *, redelivered: bool) -> Result:
        # A redelivery first asks GitHub whether this request's run exists: then it ran, whatever the lock says.
        found = self._find_run(job) if redelivered else None
        gave_up = self._gave_up(job)  # any delivery of it, SQS's or a resubmission: one GetItem, off the lock
        if gave_up is not None:
            return gave_up
        if not job.locks:
            if job.spec.requires_lock:
                logger.warning("ENABLE_DISTRIBUTED_LOCK=false: dispatching without the lock", lock_key=job.lock_key)
            else:
                logger.info("the command requires no lock: dispatching at once", lock_key=job.lock_key)
            if found is not None:
                return self._already_ran(job, found)
            if job.rollback:  # offered under the lock: taken away since, nothing would check what it promised
                logger.info("rollback refused: deploys take no lock", lock_key=job.lock_key)
                off = not self.config.lock_enabled
                self._tell(job, Message(rollback.takes_no_lock_text(job.component, job.environment, switched_off=off)))
                return Result("no-lock", job.lock_key)
            return self._start(job, None, d.DispatchNow())
        if found is not None:
            return self._adopt(job, found)
        refused = self._refused_before_the_lock(job)
        if refused is not None:
            return refused
        outcome = self.store.acquire(job.acquire_request())
        handed = outcome.handed_to
        if handed is not None and handed.entry.owner != job.request_id:
            handoff.pass_on(handed, self.config, self.pending)  # a lapsed lease went to the head of its queue
        if isinstance(outcome, outcomes.Queued):
            metrics.add_metric(name=QUEUED_METRIC, unit=MetricUnit.Count, value=1)
            logger.info("lock held: queued", holder=outcome.holder.owner, position=outcome.position)
            text = d.queued_text(job, outcome.holder, outcome.position, self.now(), coalesced=outcome.coalesced)
            self._tell(job, Message(text))
            return Result("queued", job.lock_key)
        if isinstance(outcome, outcomes.HeldBySomeone):
            metrics.add_metric(name=BUSY_METRIC, unit=MetricUnit.Count, value=1)
            logger.info("lock held by someone else", holder=outcome.holder.owner, token=outcome.holder.token)
            self._tell(job, d.busy_message(job, outcome.holder, self.now()))
            self._record_refusal(job, outcome.holder, "already in progress")
            return Result("busy", job.lock_key)
        metrics.add_metric(name=ACQUIRED_METRIC, unit=MetricUnit.Count, value=1)
        record = outcome.record
        logger.info("lock acquired", token=record.token, reentered=outcome.reentered)
        holder = self._holding(job, record)
        # The look before the lock counts only if it asked for the run the lock's holder would have started.
        looked = None if redelivered and d.looked_alike(job, holder) else d.NOT_LOOKED
        notes = d.own_notes(record) if "dispatchState" in record.notes else self._sent_before(job, record)
        step = d.next_step(notes, looked, self.store.now())
        if isinstance(step, d.LookForRun):
            step = d.next_step(notes, self._find_run(holder), self.store.now())
        return self._start(holder, record, step, sent=d.dispatch_attempts(notes))

    # ------------------------------------------------------------------------------------------ the steps
    def _start(self, job: d.Job, held: LockRecord | None, step: d.Step, *, sent: int = 0) -> Result:
        """From the lock held (``None``: no lock) to a run announced, or the lock released FAILED. ``sent``: the
        dispatches this request sent before, under this lock or (the ledger says) under one it lost."""
        token = str(held.token) if held is not None else d.NO_LOCK_TOKEN
        revision = d.noted_revision(held.notes) if held is not None else None
        if isinstance(step, d.RecordRun):
            revision = revision or d.Revision(step.run.head_branch, step.run.head_sha, step.run.head_branch)
            return self._started(job, held, revision, step.run.id, step.run.html_url)
        if isinstance(step, d.Announce):  # never dispatched again, even if the notes lost the revision
            revision = revision or d.Revision(ref="?", sha="", shown="?")
            return self._started(job, held, revision, step.run_id, step.run_url)
        if isinstance(step, d.WaitForRun):
            self._keep(job, held)
            raise DispatchInDoubt("a dispatch of this request went out moments ago and GitHub lists no run yet")
        if isinstance(step, d.NoRunStarted):  # looked for after each: none of them started a run
            reason = f"GitHub confirmed none of {step.attempts} dispatches and lists no run of them"
            return self._give_up(job, held, reason, revision)
        try:
            if revision is None:
                revision = self._resolve(job)
            if held is not None:
                attempt = max(sent, d.dispatch_attempts(d.own_notes(held))) + 1
                notes = d.dispatching_notes(job, revision, attempt, self.store.now())
                self._note(job, held, notes, required=True)
                runtime.ledger().dispatch_sent(job.request_id, self.store.now(), attempt)
            return self._dispatch(job, held, revision, token)
        except (GitHubError, SecretUnavailable, LockStoreError, _LostLock, *LedgerError) as error:
            obstacle = _obstacle(error)
            if not d.gives_up(obstacle):  # nothing dispatched and nothing over: nobody is told anything yet
                raise DispatchPutOff(f"{obstacle.value} before the dispatch, lock kept: {error}") from None
            return self._give_up(job, held, str(error), revision)

    def _resolve(self, job: d.Job) -> d.Revision:
        ref, sha = self.github.resolve_ref(job.repository, job.requested_ref)
        if d.is_commit(ref, sha):  # a workflow runs on a branch or tag: the default branch, told the commit
            branch, _ = self.github.resolve_ref(job.repository, None)
            return d.Revision(ref=branch, sha=sha, shown=ref)
        return d.Revision(ref=ref, sha=sha, shown=ref)

    def _dispatch(self, job: d.Job, held: LockRecord | None, revision: d.Revision, token: str) -> Result:
        inputs = d.dispatch_inputs(job, revision, token)
        try:
            answer = self.github.dispatch_workflow(job.repository, job.workflow, revision.ref, inputs)
        except (GitHubServerError, GitHubUnreachable) as error:
            # Sent once, no answer we can trust: GitHub may have started the run. Look before calling it failed.
            logger.warning("dispatch outcome unknown; looking for the run", reason=str(error))
            run = self._await_run(job)
            if run is None and held is not None:  # not listed yet is not "not started": look again later
                self._keep(job, held)
                raise DispatchInDoubt(f"GitHub did not confirm the dispatch ({error}) and lists no run yet") from None
            if run is None:
                raise
            return self._started(job, held, revision, run.id, run.html_url)
        if answer.run_id is not None:
            return self._started(job, held, revision, answer.run_id, answer.html_url)
        run = self._await_run(job)  # a server that answers 204: the run is found by its name
        return self._started(job, held, revision, run.id if run else None, run.html_url if run else None)

    def _started(
        self, job: d.Job, held: LockRecord | None, revision: d.Revision, run_id: int | None, run_url: str | None
    ) -> Result:
        metrics.add_metric(name=DISPATCHED_METRIC, unit=MetricUnit.Count, value=1)
        logger.info("run dispatched", run_id=run_id, run_url=run_url, sha=revision.sha)
        if held is not None:
            try:
                # A run found under a fresh lock (its first was force-unlocked meanwhile) notes where to report too.
                where = {} if "channelId" in held.notes else {"command": job.action.value, "channelId": job.channel_id}
                self._note(job, held, {**d.dispatched_notes(run_id, run_url), **where}, required=False)
            except LockStoreError as error:  # the run goes on; the completion finds its lock by the run's name
                logger.error("could not note the run on the lock", reason=str(error))
        text = d.started_text(job, revision, run_id, run_url, locked=held is not None)
        self._tell(job, Message.in_channel(text), channel_too=True)
        if held is not None:  # the identical requests that waited with this one: their run is this one
            coalesced = f"{text} — your identical request waited with {job.user_name}'s and runs as this one."
            handoff.tell_coalesced(held, coalesced, self.slack, self.pending, announced=False)
        return Result("dispatched", job.lock_key, run_id, revision.sha)

    def _give_up(self, job: d.Job, held: LockRecord | None, reason: str, revision: d.Revision | None) -> Result:
        """The dispatch did not happen: free the lock (FAILED) and say why, in one line."""
        metrics.add_metric(name=DISPATCH_FAILED_METRIC, unit=MetricUnit.Count, value=1)
        logger.warning("dispatch failed", reason=reason)
        try:  # before any effect: a redelivery (this worker dying after telling) finishes this, never starts afresh
            runtime.ledger().end(job.request_id, reason)
        except LedgerError as error:
            raise DispatchPutOff(f"cannot keep that the request gave up: {error}") from None
        released = held is not None and self._release_failed(job, held)
        # Say the lock is free only when this release freed it (not when the store failed or it had moved on).
        failed = d.failed_text(job, reason, revision, locked=released)
        self._tell(job, Message(failed))
        if held is not None:
            coalesced = f"{failed} (Your identical request waited with {job.user_name}'s.)"
            handoff.tell_coalesced(held, coalesced, self.slack, self.pending, announced=False)
        return Result("failed", job.lock_key, sha=revision.sha if revision else None)

    def _gave_up(self, job: d.Job) -> Result | None:
        """A redelivery of a request that had given up: give up again (release its lock if it still holds it, tell
        why), never dispatch. ``None`` when it had not."""
        try:
            reason = runtime.ledger().ended(job.request_id)
            held = self.store.get(job.lock_key) if reason is not None else None
        except (LockStoreError, *LedgerError) as error:
            raise DispatchPutOff(f"cannot tell whether this request gave up: {error}") from None
        if reason is None:
            return None
        ours = held is not None and held.owner == job.request_id and held.status is Status.IN_PROGRESS
        return self._give_up(job, held if ours else None, reason, None)

    def _refused_before_the_lock(self, job: d.Job) -> Result | None:
        """A deploy to a frozen environment (one read, deploys only), or a confirmed rollback whose lock changed since
        it was offered: refused before any lock is taken."""
        if job.spec.action is Action.DEPLOY:
            frozen = refuse_frozen(self.store, job.environment, self.now())
            if frozen is not None:
                logger.info("deploy refused: the environment is frozen", environment=job.environment)
                self._tell(job, Message(frozen))
                self._record_refusal(job, None, f"{job.environment} is frozen")
                self._let_go_of_hand_off(job)
                return Result("frozen", job.lock_key)
        if job.rollback and self._lock_moved_since_offered(job):
            self._let_go_of_hand_off(job)
            return Result("lock-changed", job.lock_key)
        return None

    def _lock_moved_since_offered(self, job: d.Job) -> bool:
        """A confirmed rollback whose lock changed since it was offered (someone deployed meanwhile): the choice may
        be stale, so it is refused. The lock this request holds is unchanged when it re-enters it (a redelivery) —
        unless it was handed the lock from the queue after the deploy the offer saw running completed."""
        held = self.store.get(job.lock_key)
        if held is not None and held.owner == job.request_id:
            queued = held.handed_from_queue is not None and held.handed_from_queue.owner == held.owner
            if not queued or rollback.handed_on_unchanged(held, job.rollback_of):
                return False
        elif rollback.lock_mark(held) == job.rollback_of:
            return False
        logger.info("rollback refused: the lock changed since it was offered", seen=job.rollback_of)
        self._tell(job, Message(rollback.lock_changed_text(job.component, job.environment)))
        return True

    def _let_go_of_hand_off(self, job: d.Job) -> None:
        """A request handed the lock from the queue that will not run (its environment froze while it waited, or
        it is a rollback whose choice went stale) releases it FAILED, so that the next in line gets it rather than
        waiting out the lease."""
        if job.handed_off is None:
            return
        try:
            held = self.store.get(job.lock_key)
        except LockStoreError as error:
            logger.error("could not read the lock handed to a frozen deploy; its lease will end it", reason=str(error))
            return
        if held is not None and (held.owner, held.token) == (job.request_id, job.handed_off):
            self._release_failed(job, held)

    def _release_failed(self, job: d.Job, held: LockRecord) -> bool:
        """Release FAILED; whether it did."""
        try:
            released = self.store.release(job.lock_key, job.request_id, held.token, Status.FAILED, seen=held)
        except LockStoreError as error:
            logger.error("could not release the lock; its lease will end it", reason=str(error))
            return False
        if isinstance(released, outcomes.NotHolder):
            logger.warning("lock not released: not ours any more", reason=released.reason.value)
            return False
        handoff.follow_up(released, self.config, self.slack, self.pending)  # the next in line is dispatched
        if not released.repeated:  # a run that never started is a failed run, as /build stats counts it
            metrics.add_metric(name=RUN_FAILED_METRIC, unit=MetricUnit.Count, value=1)
        try:
            held_for = self.now() - epoch(held.locked_at)
        except ValueError:
            return True
        metrics.add_metric(name=LOCK_DURATION_METRIC, unit=MetricUnit.Seconds, value=max(held_for, 0))
        return True

    def _adopt(self, job: d.Job, run: Run) -> Result:
        """A redelivery whose run exists: complete the lock's record of it if the lock is still ours, else say so."""
        state, record = self.store.state(job.lock_key)
        if state is m.LockState.HELD and record is not None and record.owner == job.request_id:
            return self._start(self._holding(job, record), record, d.next_step(record.notes, run))
        logger.info("request already ran; its lock has moved on", run_id=run.id)
        return self._already_ran(job, run)

    def _already_ran(self, job: d.Job, run: Run) -> Result:
        self._tell(job, Message(d.already_ran_text(job, run)))
        return Result("already-ran", job.lock_key, run.id, run.head_sha or None)

    def _holding(self, job: d.Job, record: LockRecord) -> d.Job:
        holder = job.holding(record)
        if holder.correlation_id != job.correlation_id:
            logger.info("the run carries the lock's correlation id", run_correlation_id=holder.correlation_id)
        return holder

    # ------------------------------------------------------------------------------------------------ I/O
    def _note(self, job: d.Job, held: LockRecord, notes: dict[str, str], *, required: bool) -> None:
        noted = self.store.note(job.lock_key, job.request_id, held.token, **notes)
        if isinstance(noted, outcomes.NotHolder):
            logger.warning("lock not noted: not ours any more", reason=noted.reason.value, notes=sorted(notes))
            if required:
                raise _LostLock(f"the lock {job.lock_key} is no longer ours ({noted.reason.value})")

    def _sent_before(self, job: d.Job, record: LockRecord) -> Mapping[str, str]:
        """The lock's notes — or, when a fresh lock has none, what this request's earlier delivery sent under a lock
        it lost since (force-unlocked while it was put off): then its run is looked for before any dispatch."""
        try:
            sent = runtime.ledger().last_dispatch(job.request_id)
        except LedgerError as error:
            raise DispatchPutOff(f"cannot tell whether this request dispatched before: {error}") from None
        if sent is None:
            return d.own_notes(record)
        at, attempts = sent
        return {**record.notes, **d.dispatching_notes(job, d.Revision("", "", ""), attempts, at)}

    def _keep(self, job: d.Job, held: LockRecord | None) -> None:
        """A request put off keeps its lock alive until its retry: one lease more (a store that fails leaves it to
        the lease it has, which the retry re-enters while it runs)."""
        if held is None:
            return
        try:
            self.store.extend(job.lock_key, job.request_id, held.token, job.spec.lease_seconds)
        except LockStoreError as error:
            logger.warning("could not extend the lock of a request put off", reason=str(error))

    def _find_run(self, job: d.Job) -> Run | None:
        """GitHub's answer, or :class:`DispatchInDoubt` when GitHub cannot give one (the message is retried)."""
        try:
            return self.github.find_run(
                job.repository, job.workflow, job.correlation_id, datetime.fromtimestamp(job.runs_since, UTC)
            )
        except GitHubError as error:
            raise DispatchInDoubt(f"cannot look for the run of {job.correlation_id}: {error}") from None

    def _await_run(self, job: d.Job) -> Run | None:
        try:
            return self.github.await_run(
                job.repository,
                job.workflow,
                job.correlation_id,
                datetime.fromtimestamp(job.runs_since, UTC),
                within=self.look_for_run_seconds,
                every=min(1.0, self.look_for_run_seconds),
            )
        except GitHubError as error:
            raise DispatchInDoubt(f"cannot look for the run of {job.correlation_id}: {error}") from None

    def _tell(self, job: d.Job, message: Message, *, channel_too: bool = False) -> None:
        """Reply through the response_url; when it is spent or expired (a request handed the lock from the queue
        long after it was typed), news for the channel goes to chat.postMessage, the rest to the user alone."""
        cid = job.correlation_id
        if self.slack.reply(job.response_url, message, correlation_id=cid):
            return
        if channel_too and job.channel_id and self.slack.post_message(job.channel_id, message, correlation_id=cid):
            return
        if not channel_too and handoff.tell_privately(self.slack, job.channel_id, job.user_id, message, cid):
            return
        logger.error("the user could not be told", text=message.text)

    def _record_refusal(self, job: d.Job, holder: LockRecord | None, reason: str) -> None:
        """The refusal, in the history (for ``/build stats``): after the user was told, and never in their way."""
        who = (holder.locked_by_name or holder.locked_by) if holder is not None else ""
        event = HistoryEvent(
            lock_key=job.lock_key,
            kind=EventKind.REFUSE,
            token=holder.token if holder is not None else 0,
            at=iso(self.now()),
            who=job.user_id,
            who_name=job.user_name,
            reason=f"{reason} ({who})" if who else reason,
            component=job.component,
            environment=job.environment,
            correlation_id=job.correlation_id,
        )
        try:
            (self.refusals or runtime.history()).put(event)
        except (BotoCoreError, ClientError) as error:
            logger.warning("the refusal could not be added to the history", reason=str(error))


class _LostLock(Exception):
    pass


def _obstacle(error: Exception) -> d.Obstacle:
    """What stopped the dispatch, by what was raised."""
    match error:
        case LockStoreError() | BotoCoreError() | ClientError():  # the lock table, or the ledger beside it
            return d.Obstacle.STORE_DOWN
        case _LostLock():
            return d.Obstacle.LOCK_LOST
        case SecretUnavailable():
            return d.Obstacle.NO_CREDENTIALS
        case GitHubServerError() | GitHubUnreachable():
            return d.Obstacle.GITHUB_DOWN
        case _:
            return d.Obstacle.GITHUB_REFUSED
