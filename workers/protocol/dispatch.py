"""A dispatch under a lock, as data: what a command asks for, what to do next, and what the user is told.

Pure functions of the envelope, the configuration, the lock record and the clock; no I/O. The worker
(:mod:`workers.flows.build`) performs what these decide.

What to do after the lock is ours (:func:`next_step`) depends on what a previous attempt of the *same request*
left on the lock, because SQS may deliver a message again after a worker died half-way (and Slack, or a proxy, may
deliver the request itself again). The run is looked up by the correlation id *on the lock* (:meth:`Job.holding`):

==========================  ====================================  =================================================
``dispatchState`` noted     the run, looked up by correlation id   next step
==========================  ====================================  =================================================
(none)                      —                                     :class:`DispatchNow`
``dispatching``             found                                 :class:`RecordRun` (never a second dispatch)
``dispatching``             not looked up yet                     :class:`LookForRun`
``dispatching``             looked up, not found                  :class:`DispatchNow` (the first POST created
                                                                  nothing: GitHub lists a run within seconds, and a
                                                                  redelivery comes minutes later)
``dispatched``              —                                     :class:`Announce` (the run is on the lock)
==========================  ====================================  =================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Final

from lockcore.machine import AcquireRequest
from lockcore.record import LockRecord, epoch, iso
from workers.protocol import render
from workers.protocol.commands import Dispatch
from workers.protocol.config import Action, CommandSpec, Config, Conflict
from workers.protocol.envelope import LOCK_WATCH_ACTION, CommandEnvelope
from workers.protocol.history import ROLLBACK, ROLLBACK_NOTED
from workers.protocol.message import Message
from workers.protocol.workflow import Run

DISPATCHING: Final = "dispatching"
DISPATCHED: Final = "dispatched"
NO_LOCK_TOKEN: Final = "0"  # noqa: S105 — a fencing token, not a password
"""The ``lock_token`` input when the lock is switched off: no live lock ever has token 0."""
_SHA_LIKE = re.compile(r"[0-9a-f]{7,40}")


# ------------------------------------------------------------------------------------------------- the job
@dataclass(frozen=True)
class Job:
    """One ``/build`` or ``/deploy`` request, with everything the worker needs from the envelope and config."""

    spec: CommandSpec
    component: str
    environment: str
    requested_ref: str | None
    """What the user typed (``/deploy api prod v1.2``); ``None``: the default branch."""
    repository: str
    workflow: str
    """Where the run goes: the component's repository and workflow (:meth:`Config.workflow_of`)."""
    request_id: str
    correlation_id: str
    user_id: str
    user_name: str
    channel_id: str
    response_url: str
    received_at: int
    locks: bool = True
    """Whether it takes a lock (:meth:`Config.locks`): ``False`` dispatches at once."""
    queue: bool = False
    """Wait in the lock's queue when it is held (``--queue``, or the command's ``conflict = "queue"``)."""
    handed_off: int | None = None
    """The token this request was handed from the lock's queue (:mod:`workers.flows.handoff`): it holds the lock."""
    locked_at: int | None = None
    """When this request took the lock it holds (:meth:`holding`): no run of it can be older."""
    rollback_of: str = ""
    """A confirmed rollback: the lock as its answer saw it (:func:`workers.protocol.rollback.lock_mark`)."""

    @classmethod
    def of(
        cls,
        envelope: CommandEnvelope,
        config: Config,
        *,
        handed_off: int | None = None,
    ) -> Job:
        command = envelope.command
        if not isinstance(command, Dispatch):
            raise ValueError(f"the build worker runs /build and /deploy, not {envelope.kind!r}")
        target = config.workflow_of(command.action, command.component)
        return cls(
            spec=config.commands[command.action],
            component=command.component,
            environment=command.environment,
            requested_ref=command.ref,
            repository=target.repository,
            workflow=target.workflow,
            locks=config.locks(command.action),
            request_id=envelope.request_id,
            correlation_id=envelope.correlation_id,
            user_id=envelope.user_id,
            user_name=envelope.user_name,
            channel_id=envelope.channel_id,
            response_url=envelope.response_url,
            received_at=envelope.received_at,
            queue=command.queue or config.commands[command.action].conflict is Conflict.QUEUE,
            handed_off=handed_off,
            rollback_of=command.rollback_of,
        )

    def holding(self, held: LockRecord) -> Job:
        """This request as the holder of ``held``: its run carries the lock's correlation id, and is looked for
        from when the lock was taken.

        The lock keeps the correlation id of the delivery that took it, and a dispatch under the lock may already
        have put that one in a run's name; another delivery of the same request (a message queued by an older
        router, whose correlation ids were drawn per delivery) re-enters the lock and must look for — and start,
        if none — the run by that id, never its own. Likewise it arrives later than that dispatch, so the run is
        looked for from the lock's ``lockedAt``, not from its own arrival.
        """
        if held.owner != self.request_id:
            return self
        try:
            locked_at: int | None = epoch(held.locked_at)
        except ValueError:
            locked_at = None
        return replace(self, correlation_id=held.correlation_id or self.correlation_id, locked_at=locked_at)

    @property
    def runs_since(self) -> int:
        """Epoch seconds no run of this request can be older than: its arrival, or when it took its lock."""
        return self.received_at if self.locked_at is None else min(self.received_at, self.locked_at)

    @property
    def action(self) -> Action:
        return self.spec.action

    @property
    def lock_key(self) -> str:
        return self.spec.lock_key(self.component, self.environment)

    @property
    def target(self) -> str:
        """``router (plt)``."""
        return f"{self.component} ({self.environment})"

    def acquire_request(self) -> AcquireRequest:
        """The lock, owned by the request id: a redelivery of this request re-enters it instead of queueing."""
        return AcquireRequest(
            lock_key=self.lock_key,
            owner=self.request_id,
            lease_seconds=self.spec.lease_seconds,
            locked_by=self.user_id,
            locked_by_name=self.user_name,
            component=self.component,
            environment=self.environment,
            correlation_id=self.correlation_id,
            queue=self.queue and self.handed_off is None,
            coalesce=self.coalesce,
        )

    @property
    def coalesce(self) -> str:
        """What makes two pending requests one run: the command, component, environment, ref — and a rollback."""
        same = "|".join((self.action.value, self.component, self.environment, self.requested_ref or ""))
        return f"{same}|rollback" if self.rollback_of else same

    @property
    def rollback(self) -> bool:
        return bool(self.rollback_of)


@dataclass(frozen=True)
class Revision:
    """What is built: the ref the workflow runs on, the commit it names, and the ref as the user asked."""

    ref: str
    """A branch or tag: ``workflow_dispatch`` runs on one, never on a bare commit."""
    sha: str
    shown: str
    """The ref as the user typed it (or the default branch)."""

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


def is_commit(ref: str, sha: str) -> bool:
    """The user named a commit (``/deploy api prod 1a2b3c4``), not a branch or tag."""
    return bool(_SHA_LIKE.fullmatch(ref)) and sha.startswith(ref)


def dispatch_inputs(job: Job, revision: Revision, token: str) -> dict[str, str]:
    """The ``workflow_dispatch`` inputs. ``lock_key`` and ``correlation_id`` make the run's name
    (:data:`workers.adapters.github.RUN_NAME_EXPRESSION`); ``lock_token`` lets the workflow check it still holds
    the lock."""
    return {
        "component": job.component,
        "environment": job.environment,
        "ref": revision.shown,
        "sha": revision.sha,
        "correlation_id": job.correlation_id,
        "lock_key": job.lock_key,
        "lock_token": token,
    }


def dispatching_notes(job: Job, revision: Revision, attempt: int = 1, now: int = 0) -> dict[str, str]:
    """Noted on the lock *before* the dispatch, so a redelivery knows one may be under way, how many were, and
    since when (GitHub lists a run only after a while: :data:`RUN_LISTED_WITHIN`)."""
    notes = {
        "dispatchSentAt": str(now),
        "command": job.action.value,
        "ref": revision.shown,
        "commitSha": revision.sha,
        "channelId": job.channel_id,
        "dispatchState": DISPATCHING,
        "dispatchAttempts": str(attempt),
    }
    if job.rollback:  # the history's mark (the workflow's inputs never carry it: an undeclared input is a 422)
        notes[ROLLBACK] = ROLLBACK_NOTED
    return notes


def own_notes(record: LockRecord) -> Mapping[str, str]:
    """The holder's notes, less a dispatch count and time noted under an earlier holding (an acquire by a worker
    of the release before counting did not clear them: trusted only when sent since this holding began)."""
    sent = record.notes.get("dispatchSentAt", "")
    try:
        stale = sent.isdigit() and int(sent) < epoch(record.locked_at)
    except ValueError:
        stale = False
    if not stale:
        return record.notes
    return {k: v for k, v in record.notes.items() if k not in ("dispatchAttempts", "dispatchSentAt")}


def dispatch_attempts(notes: Mapping[str, str]) -> int:
    """How many dispatches the lock's holder has sent (a lock noted before attempts were counted: one)."""
    counted = notes.get("dispatchAttempts", "")
    if counted.isdigit():
        return int(counted)
    return 1 if notes.get("dispatchState") == DISPATCHING else 0


def dispatched_notes(run_id: int | None, run_url: str | None) -> dict[str, str]:
    notes = {"dispatchState": DISPATCHED}
    if run_id is not None:
        notes["runId"] = str(run_id)
    if run_url:
        notes["runUrl"] = run_url
    return notes


def noted_revision(notes: Mapping[str, str]) -> Revision | None:
    """The revision a previous attempt noted, to dispatch exactly that one again (the branch may have moved)."""
    ref, sha = notes.get("ref"), notes.get("commitSha")
    if not ref or not sha:
        return None
    return Revision(ref=ref, sha=sha, shown=ref)


# ------------------------------------------------------------------------------------------------ deciding
@dataclass(frozen=True)
class DispatchNow:
    pass


@dataclass(frozen=True)
class LookForRun:
    """A dispatch may have reached GitHub before the worker died: look the run up before deciding."""


@dataclass(frozen=True)
class RecordRun:
    run: Run


@dataclass(frozen=True)
class Announce:
    run_id: int | None
    run_url: str | None


@dataclass(frozen=True)
class NoRunStarted:
    """Every dispatch so far went unconfirmed (GitHub answered 5xx or nothing) and GitHub lists no run of any of
    them, minutes later: nothing runs, and after :data:`MAX_DISPATCH_ATTEMPTS` the request ends."""

    attempts: int


@dataclass(frozen=True)
class WaitForRun:
    """A dispatch went out moments ago (another delivery of the same request sent it) and GitHub lists no run yet:
    too soon to tell; look again later rather than dispatch a second run."""


Step = DispatchNow | LookForRun | RecordRun | Announce | NoRunStarted | WaitForRun

RUN_LISTED_WITHIN: Final = 120
"""What the simulation assumes of GitHub, and the workers rely on: a run it created is listed within two minutes.
A redelivery comes after the queue's visibility timeout (six times the worker's), so later than that."""

MAX_DISPATCH_ATTEMPTS: Final = 3
"""Unconfirmed dispatches before a request ends. A dispatch GitHub does not confirm is never called failed on the
spot — GitHub may have created the run and lost the answer, and lists a run only within a couple of minutes — so
the request is retried (the message comes back after its visibility timeout, minutes later), looks for the run
first, and only then dispatches again; after this many, the look that finds nothing proves that nothing ran."""

NOT_LOOKED: Final = "not looked"


def looked_alike(asked: Job, holder: Job) -> bool:
    """Whether a look for the run made as ``asked`` (before the lock) answers for ``holder`` (the same request as
    the lock's holder, :meth:`Job.holding`): by the same correlation id, from no later a time."""
    return asked.correlation_id == holder.correlation_id and asked.runs_since <= holder.runs_since


def next_step(notes: Mapping[str, str], found: Run | str | None = NOT_LOOKED, now: int | None = None) -> Step:
    """What the holder does next, from the lock's notes and, when looked up, the run found by correlation id.

    ``found`` is :data:`NOT_LOOKED` until the worker has asked GitHub, then the run or ``None``. ``now``: when the
    worker asks (``None``: long after any dispatch noted).
    """
    state = notes.get("dispatchState")
    if isinstance(found, Run):
        return RecordRun(found) if state != DISPATCHED else Announce(found.id, found.html_url or notes.get("runUrl"))
    if state == DISPATCHED:
        run_id = notes.get("runId")
        return Announce(int(run_id) if run_id and run_id.isdigit() else None, notes.get("runUrl"))
    if state == DISPATCHING and found == NOT_LOOKED:
        return LookForRun()
    sent = notes.get("dispatchSentAt", "")
    if state == DISPATCHING and now is not None and sent.isdigit() and now - int(sent) < RUN_LISTED_WITHIN:
        return WaitForRun()
    if state == DISPATCHING and dispatch_attempts(notes) >= MAX_DISPATCH_ATTEMPTS:
        return NoRunStarted(dispatch_attempts(notes))
    return DispatchNow()


class Obstacle(Enum):
    """What stopped a dispatch before any run was started."""

    GITHUB_REFUSED = "GitHub refused"
    """A token, ref or workflow GitHub will not take (4xx)."""
    GITHUB_DOWN = "GitHub down"
    """GitHub failing (5xx) or out of reach before the dispatch, or after it with no run appearing."""
    NO_CREDENTIALS = "no GitHub credentials"
    """The GitHub token could not be had."""
    LOCK_LOST = "lock lost"
    """The lock is not this request's any more (its lease ended, someone took it)."""
    STORE_DOWN = "store down"
    """The lock store could not note the dispatch (throttled, unreachable): nothing was sent to GitHub."""


def gives_up(obstacle: Obstacle) -> bool:
    """Whether ``obstacle`` ends the request — its lock released FAILED and its user told why — or the request is
    only put off: the lock kept (the retry re-enters it), the message back to the queue, nobody told anything yet.

    Only a lock store that failed is put off. Nothing was dispatched and the same attempt can still succeed, so
    "failed, the lock is released" would be told too soon: a retry that then starts the run would make it false.
    (And giving up there is not even final: the idempotency record that would answer the retry is written to the
    same DynamoDB, and during a throttling episode it may not be.) A store that stays down leaves the lock to its
    lease and the message to the DLQ. Everything else stops the dispatch for sure, and the user is told at once.
    """
    return obstacle is not Obstacle.STORE_DOWN


# ----------------------------------------------------------------------------------------------- rendering
def _noun(action: Action) -> str:
    return {Action.BUILD: "Build", Action.DEPLOY: "Deploy"}[action]


def run_link(run_id: int | str | None, run_url: str | None) -> str:
    """``<https://…/runs/7|run 7>``; the words when there is no URL yet."""
    if run_url:
        label = f"run {run_id}" if run_id else "the run"
        return f"<{run_url}|{label}>"
    return "run link to follow in GitHub Actions"


def slack_time(epoch_seconds: int, fallback_now: int) -> str:
    """A time each reader sees in their own timezone, with a UTC fallback for clients that cannot render it."""
    stamp = iso(epoch_seconds)
    today = iso(fallback_now)[:10]
    fallback = f"{stamp[11:16]} UTC" if stamp[:10] == today else f"{stamp[:10]} {stamp[11:16]} UTC"
    return f"<!date^{epoch_seconds}^{{time}}|{fallback}>"


def minutes_ago(record: LockRecord, now: int) -> str:
    try:
        seconds = now - epoch(record.locked_at)
    except ValueError:
        return "a while ago"
    minutes = max(seconds, 0) // 60
    return "less than a minute ago" if minutes == 0 else f"{minutes} min ago"


def busy_text(job: Job, holder: LockRecord, now: int) -> str:
    """⚠️ Build already in progress — started by alice 3 min ago, <run>, frees at <time>."""
    who = render.holder(holder, render.Shown.NAME)
    sha = holder.notes.get("commitSha", "")
    at = f" at `{sha[:7]}`" if sha and job.action is Action.DEPLOY else ""
    link = run_link(holder.notes.get("runId"), holder.notes.get("runUrl"))
    if not holder.notes.get("runUrl"):
        link = "its run is starting"
    # A lock wider than one component and environment (its command's lock_scope): say whose it is.
    shared = holder.component and (holder.component, holder.environment) != (job.component, job.environment)
    whose = f" ({holder.component} ({holder.environment}) holds `{job.lock_key}`)" if shared else ""
    return (
        f"⚠️ {_noun(job.action)} already in progress{whose} — started by {who} {minutes_ago(holder, now)}{at}, "
        f"{link}, frees at {slack_time(holder.lease_expires_at, now)}"
    )


def busy_message(job: Job, holder: LockRecord, now: int) -> Message:
    """The busy reply, with a "Notify me when free" button (:data:`~workers.protocol.envelope.LOCK_WATCH_ACTION`)."""
    text = busy_text(job, holder, now)
    button: dict[str, Any] = {
        "type": "button",
        "action_id": LOCK_WATCH_ACTION,
        "text": {"type": "plain_text", "text": "Notify me when free"},
        "value": job.lock_key,
    }
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": "lock-watch", "elements": [button]},
    ]
    return Message(text, blocks)


def queued_text(job: Job, holder: LockRecord, position: int, now: int, *, coalesced: bool) -> str:
    """⏳ Queued: position 2 behind alice (frees at <time>) — you'll be told when it starts."""
    who = render.holder(holder, render.Shown.NAME)
    same = " with an identical request already waiting (one run for both)" if coalesced else ""
    return (
        f"⏳ Queued{same}: position {position} behind {who} (frees at {slack_time(holder.lease_expires_at, now)}). "
        f"The {job.action.value} of {job.target} starts when the lock is handed to it; "
        f"`{job.spec.slash} dequeue {job.component} {job.environment}` leaves the queue."
    )


def started_text(job: Job, revision: Revision, run_id: int | None, run_url: str | None, *, locked: bool) -> str:
    """🔨 Building router (plt)… <run>  /  🚀 Deploying api (prod) at v1.2 (`1a2b3c4`)… <run>  /  ⏪ Rolling back
    api (plt) to `1a2b3c4`… <run>."""
    if job.rollback:
        return f"⏪ Rolling back {job.target} to `{revision.short_sha}`… {run_link(run_id, run_url)}"
    ref = f"{revision.shown} (`{revision.short_sha}`)" if revision.sha else revision.shown
    text = f"{job.spec.start_text(job.component, job.environment, ref)} {run_link(run_id, run_url)}"
    if job.action is Action.DEPLOY and revision.sha and revision.short_sha not in text:
        text += f" — commit `{revision.short_sha}`"
    return text if locked or not job.spec.requires_lock else f"{text} (the distributed lock is switched off)"


def failed_text(job: Job, reason: str, revision: Revision | None, *, locked: bool) -> str:
    """One line: what did not start, why, and that the lock is free again."""
    what = f"{job.action.value} {job.target}"
    if revision is not None and job.action is Action.DEPLOY:
        what += f" at {revision.shown} (`{revision.short_sha}`)"
    lock = " The lock is released; try again once that is fixed." if locked else " Try again once that is fixed."
    return f"❌ Couldn't start the {what}: {_sentence(reason)}.{lock}"


def already_ran_text(job: Job, run: Run) -> str:
    """A redelivered request whose run exists and whose lock has moved on: nothing more to do."""
    link = run_link(run.id, run.html_url)
    at = f" at `{run.head_sha[:7]}`" if run.head_sha and job.action is Action.DEPLOY else ""
    return f"ℹ️ Your {job.spec.slash} {job.component} {job.environment}{at} already started {link}."  # noqa: RUF001


def _sentence(reason: str) -> str:
    text = " ".join(reason.split()).rstrip(".")
    return text[:300] if text else "no reason given"
