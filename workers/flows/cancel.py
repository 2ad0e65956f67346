"""``/build cancel <component> <env>``: stop your own run and free its lock, without an admin's force-unlock.

The status worker hands ``cancel`` messages here (:data:`workers.protocol.config.QUEUE_FOR_KIND`: the status queue,
beside
``unlock``, which it resembles). The router lets anyone send the command, because only the lock knows who holds
it; this worker decides:

1. **The lock** (one GetItem). Not held by a run — free, released, or never taken — there is nothing to cancel,
   and the user is told where the lock stands.
2. **Who may**: the holder (the user who started it, ``lockedBy``) or an admin (the configuration, as for
   unlock). Anyone else is told who may.
3. **The run**: the one noted on the lock (``runId``), else the one named with the lock's correlation id. A run
   still being dispatched, and not yet listed by GitHub, cannot be cancelled yet: the user is asked to try again
   in a moment (releasing now would let the run start with no lock over it). A run that has already finished is
   left to its result (the webhook, or the reaper within a minute, records it); GitHub not answering leaves the
   lock as it is, and says so.
   A lock taken *after* the command was sent (the router's ``receivedAt``), or handed on by this user's
   force-release since (:data:`CLOCK_SKEW_SECONDS` allowed between the two clocks), is not the one the user meant
   — a redelivered cancel whose first delivery freed the lock and handed it to the next in line — and is left
   alone; so is a holding other than the one an App Home press names (its ``token``: the Home was not yet
   refreshed). A lock this very cancel already force-released (a delivery that died before it cancelled the run) has
   its run cancelled if it still goes.
4. **Keep that it started, release the lock, cancel the run, tell.** Before its first effect the cancel keeps the
   lock as it read it and the run it means to cancel (:class:`workers.adapters.ledger.Ledger`, under its request
   id); a redelivery that finds that record does not decide again but finishes from it, repeating each step —
   which is safe for each: the release is answered as a repeat (with the hand-off it made, while the next holder
   still holds the lock), GitHub answers 409 for a run already cancelled, and the news is told unless the ledger
   shows it was. So a crash between any two effects is finished by the redelivery.
   The release is one conditional write on the token that was read — force-release, because it is the operation
   that records who ended the lock and why (``releasedBy`` = the canceller's user id, ``releaseReason`` =
   ``cancelled from Slack by <name>``); if the lock moved on in the meantime, nothing is released and the run is
   not touched. Then ``POST …/runs/{id}/cancel``. In this order because GitHub reports the cancelled run at once:
   its ``completed`` event then finds the lock already released and says nothing, where the other order would
   race it to the lock and tell the channel "build failed (cancelled)" besides. If GitHub then fails to cancel,
   the lock is free and the run goes on without it — the user is told to cancel it in GitHub; a deploy run's
   fencing check (``chatops locks check``) already refuses its token.
5. **The channel is told** (the reply ``in_channel``, and the lock's channel if the command came from another),
   through the one follow-up after a freeing write (:func:`workers.flows.handoff.follow_up`): the hand-off
   dispatched, the coalesced requesters and the watchers told.

GitHub then reports the run ``completed``/``cancelled``; that event finds the lock already released and changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit

from lockcore import machine, outcomes
from lockcore.errors import LockStoreError
from lockcore.record import LockRecord, Status, epoch
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.github import GitHubClient, GitHubError
from workers.adapters.ledger import Ledger, LedgerError
from workers.adapters.secrets import SecretUnavailable
from workers.adapters.usergroups import GroupLookupFailed, member_groups
from workers.flows import handoff
from workers.flows.history import resumed_write_took_effect
from workers.flows.runlock import find_unnoted_run, link_of, started, target_of
from workers.protocol.commands import Cancel, Refused, describe, is_admin, refusal_text
from workers.protocol.config import Action, Audience, Config
from workers.protocol.dispatch import DISPATCHING, run_link
from workers.protocol.envelope import CommandEnvelope
from workers.protocol.history import EventKind
from workers.protocol.message import Message, escape
from workers.protocol.render import Shown, holder, standing, store_unavailable
from workers.protocol.runs import action_of, noted_run_id, repository_of

CANCELLED_METRIC: Final = "buildLockManager.cancel.success"
_CANCELLABLE = frozenset({Status.IN_PROGRESS, Status.EXPIRED})
CLOCK_SKEW_SECONDS: Final = 5
"""How far the router's clock (``receivedAt``) may run ahead of the workers' (the lock's times), in whole
seconds, when a cancel recognises what its own earlier delivery did."""


class Cancelled(StrEnum):
    """How a cancel request ended (logged, and returned for tests)."""

    DONE = "done"
    NOTHING_HELD = "nothing-held"
    REFUSED = "refused"
    RUN_STARTING = "run-starting"
    RUN_FINISHED = "run-finished"
    GITHUB_FAILED = "github-failed"
    RUN_NOT_CANCELLED = "run-not-cancelled"
    """The lock was released, but GitHub did not cancel the run."""
    LOCK_MOVED = "lock-moved"
    STORE_FAILED = "store-failed"
    GROUPS_UNKNOWN = "groups-unknown"


# ----------------------------------------------------------------------------------------------- rendering
def lock_key_of(command: Cancel, config: Config) -> str:
    return config.commands[command.action].lock_key(command.component, command.environment)


def who_may_cancel(record: LockRecord, admins: Audience) -> Audience:
    """The holder, and the admins."""
    holder = frozenset({record.locked_by}) if record.locked_by else frozenset()
    return Audience(users=admins.users | holder, groups=admins.groups)


def refused_text(command: Cancel, record: LockRecord, admins: Audience) -> str:
    reason = f"only the holder ({holder(record, Shown.MENTION)}) or an admin may run {describe(command)}"
    return refusal_text(Refused(reason, who_may_cancel(record, admins)))


def nothing_to_cancel(lock_key: str, record: LockRecord | None, now: int) -> str:
    return f"✅ Nothing to cancel: `{escape(lock_key)}` is {standing(record, now)}."


def run_starting_text(command: Cancel) -> str:
    return f"⏳ The run is still being started; try `{describe(command)}` again in a few seconds."


def run_finished_text(record: LockRecord) -> str:
    return (
        f"ℹ️ The run of {target_of(record)} ({link_of(record)}) had already finished, so there was nothing to "  # noqa: RUF001
        "cancel; its result will be posted here and the lock released in a minute at most."
    )


def github_failed_text(record: LockRecord, reason: str) -> str:
    return (
        f"⚠️ Couldn't cancel the run of {target_of(record)}: {reason}. Nothing changed, the lock is still held; "
        "try again in a moment."
    )


@dataclass(frozen=True)
class RunToCancel:
    """The run a cancel stops: the one the lock noted, or the one GitHub listed under the lock's correlation id
    (a dispatch whose run id was never noted) — named in the news either way."""

    id: int
    url: str = ""


def cancelled_text(record: LockRecord, canceller_id: str, now: int, run: RunToCancel | None = None) -> str:
    """``🛑 router (plt) build cancelled by <@U0BOB> — started by <@U0ALICE> at <!date…>, <run>. The lock is free.``"""
    noun = "deploy" if action_of(record) is Action.DEPLOY else "build"
    sha = record.notes.get("commitSha", "")[:7]
    at = f" of `{sha}`" if noun == "deploy" and sha else ""
    if record.notes.get("runId") or record.notes.get("runUrl"):
        link = link_of(record)
    else:
        link = run_link(run.id, run.url) if run is not None else "no run had started"
    return (
        f"🛑 {target_of(record)} {noun}{at} cancelled by <@{canceller_id}> — {started(record, now)}, {link}. "
        "The lock is free."
    )


def lock_moved_text(lock_key: str, current: LockRecord | None, now: int) -> str:
    return f"⚠️ `{escape(lock_key)}` changed in the meantime (now {standing(current, now)}); nothing was released."


def taken_after(record: LockRecord, envelope: CommandEnvelope) -> bool:
    """The lock was taken after the command was sent (``receivedAt``, epoch seconds, as the router received it);
    or it was handed on by this user's force-release since (this cancel's own first delivery) — which, in whole
    seconds and across two clocks, may seem as old as the command (:data:`CLOCK_SKEW_SECONDS`)."""
    try:
        taken = epoch(record.locked_at)
    except ValueError:
        return False
    handed_on_by_this = (
        record.handed_from_queue is not None
        and record.handed_from_queue.owner == record.owner
        and record.previous_status == Status.FORCE_RELEASED.value
        and record.previous_released_by == envelope.user_id
    )
    return taken > envelope.received_at or (handed_on_by_this and taken >= envelope.received_at - CLOCK_SKEW_SECONDS)


def freed_by(record: LockRecord, envelope: CommandEnvelope) -> bool:
    """This cancel (a delivery of it) already force-released the lock — and nobody took it since."""
    try:
        released = epoch(record.released_at) if record.released_at is not None else None
    except ValueError:
        return False
    return (
        released is not None
        and released >= envelope.received_at - CLOCK_SKEW_SECONDS
        and record.status is Status.FORCE_RELEASED
        and record.released_by == envelope.user_id
        and record.release_reason == force_release_reason(envelope.user_name, envelope.user_id)
    )


def started_body(record: LockRecord, run: RunToCancel | None) -> dict[str, Any]:
    """What a cancel keeps before its first effect: the lock as it read it, and the run it cancels."""
    return {"lock": dict(record.to_item()), "runId": run.id if run else None, "runUrl": run.url if run else ""}


def started_of(body: dict[str, Any]) -> tuple[LockRecord, RunToCancel | None]:
    run, url = body.get("runId"), body.get("runUrl")  # (no runUrl in a record kept before it was named)
    kept = RunToCancel(run, url if isinstance(url, str) else "") if isinstance(run, int) else None
    return LockRecord.from_item(body["lock"]), kept


def force_release_reason(user_name: str, user_id: str) -> str:
    return f"cancelled from Slack by {user_name or user_id}"


# ------------------------------------------------------------------------------------------------ the work
class CancelWorker:
    def __init__(self, config: Config, store: LockStore, github: GitHubClient, ledger: Ledger | None = None) -> None:
        self.config = config
        self.store = store
        self.github = github
        self.ledger = ledger or runtime.ledger()

    def cancel(self, envelope: CommandEnvelope, command: Cancel) -> Cancelled:
        lock_key = lock_key_of(command, self.config)
        with runtime.logger.append_context_keys(lock_key=lock_key):
            outcome = self._cancel(envelope, command, lock_key)
            runtime.logger.info("cancel answered", outcome=outcome.value)
            return outcome

    def _cancel(self, envelope: CommandEnvelope, command: Cancel, lock_key: str) -> Cancelled:
        try:
            started = self.ledger.started(envelope.request_id)
            record = self.store.get(lock_key) if started is None else None
        except (LockStoreError, *LedgerError) as error:
            runtime.logger.error("cancel: a table did not answer", reason=str(error))
            self._reply(envelope, store_unavailable(f"look up `{lock_key}`"))
            return Cancelled.STORE_FAILED
        if started is not None:
            # A delivery of this very cancel started: finish what it began, from the lock as it read it.
            runtime.logger.warning("cancel: redelivered after it started; finishing it")
            return self._finish(envelope, *started_of(started), resumed=True)
        now = self.store.now()
        if record is not None and freed_by(record, envelope):
            return self._after_own_release(envelope, record, now)
        if record is None or record.status not in _CANCELLABLE:
            self._reply(envelope, Message(nothing_to_cancel(lock_key, record, now)))
            return Cancelled.NOTHING_HELD
        if taken_after(record, envelope):
            # A redelivered cancel whose first delivery freed the lock, now handed on or taken again: it was not
            # this holder's run the user asked to cancel.
            runtime.logger.warning("cancel refused: the lock was taken after the command was sent")
            self._reply(envelope, Message(lock_moved_text(lock_key, record, now)))
            return Cancelled.LOCK_MOVED
        if command.token is not None and command.token != record.token:
            runtime.logger.warning("cancel refused: the Home showed another holding", shown=command.token)
            self._reply(envelope, Message(lock_moved_text(lock_key, record, now)))
            return Cancelled.LOCK_MOVED
        refused = self._refusal(envelope, command, record)
        if refused is not None:
            return refused
        to_cancel = self._run_to_cancel(envelope, command, record, now)
        if isinstance(to_cancel, Cancelled):
            return to_cancel
        try:
            self.ledger.start(envelope.request_id, started_body(record, to_cancel))
        except LedgerError as error:  # nothing done yet: the user may simply try again
            runtime.logger.error("cancel: could not keep that it started", reason=str(error))
            self._reply(envelope, store_unavailable(f"cancel the run under `{lock_key}`"))
            return Cancelled.STORE_FAILED
        return self._finish(envelope, record, to_cancel)

    def _after_own_release(self, envelope: CommandEnvelope, record: LockRecord, now: int) -> Cancelled:
        """A delivery of this very cancel freed the lock already, and kept no record of starting (one that began
        before cancels kept it); if it died before cancelling the run, the run is still going: finish now. Else
        there is nothing more to do."""
        run_id = noted_run_id(record)
        try:
            repository = repository_of(record, self.config)
            going = run_id is not None and not self.github.get_run(repository, run_id).completed
        except GitHubError as error:
            runtime.logger.error("cancel: GitHub could not say where the run stands", run_id=run_id, reason=str(error))
            self._reply(envelope, Message(github_failed_text(record, str(error))))
            return Cancelled.GITHUB_FAILED
        if not going or run_id is None:
            self._reply(envelope, Message(nothing_to_cancel(record.lock_key, record, now)))
            return Cancelled.NOTHING_HELD
        runtime.logger.warning("cancel: the lock was freed by this cancel, its run still goes: cancelling it")
        return self._finish(envelope, record, RunToCancel(run_id, record.notes.get("runUrl", "")))

    def _finish(
        self, envelope: CommandEnvelope, record: LockRecord, run: RunToCancel | None, *, resumed: bool = False
    ) -> Cancelled:
        """Release the lock read as ``record``, cancel the run, tell: each step safe to repeat, so a redelivery
        that died after any of them runs them all again — a release answered as a repeat, a cancel of a finished
        run answered 409, the news told unless the ledger shows it was. ``resumed``: a delivery of this cancel
        started it; when the lock has moved on since (its release took effect and someone took the lock), the run
        it set out to cancel is still cancelled and the news told."""
        released = self._release(envelope, record, self.store.now(), answer_moved=not resumed)
        if released is Cancelled.LOCK_MOVED and resumed:
            return self._finish_moved_on(envelope, record, run)
        if isinstance(released, Cancelled):
            return released
        not_cancelled = self._cancel_run(record, run.id) if run is not None else None
        now = self.store.now()

        def news(let_go: LockRecord) -> str:
            text = cancelled_text(let_go, envelope.user_id, now, run)
            if not_cancelled is not None:
                text += f" ⚠️ But GitHub did not cancel the run ({not_cancelled}): cancel it there."
            return text

        handoff.follow_up(
            released,
            self.config,
            runtime.slack_replies(),
            seen=record,
            news=news,
            announce=lambda message: self._announce(envelope, record, message),
            ledger=self.ledger,
        )
        return Cancelled.DONE if not_cancelled is None else Cancelled.RUN_NOT_CANCELLED

    def _refusal(self, envelope: CommandEnvelope, command: Cancel, record: LockRecord) -> Cancelled | None:
        """``None`` for the holder or an admin; anyone else is answered here."""
        if envelope.user_id == record.locked_by:
            return None
        try:
            admins = self.config.authorization.admins
            if is_admin(self.config, envelope.user_id, member_groups(self.config.slack, admins, envelope.user_id)):
                return None
        except (GroupLookupFailed, SecretUnavailable) as error:
            runtime.logger.error("cancel: admin check failed, user groups unknown", reason=str(error))
            self._reply(envelope, Message("⚠️ Sorry, I couldn't check your user groups with Slack just now."))
            return Cancelled.GROUPS_UNKNOWN
        runtime.logger.warning("cancel refused: neither the holder nor an admin")
        self._reply(envelope, Message(refused_text(command, record, self.config.authorization.admins)))
        return Cancelled.REFUSED

    def _run_to_cancel(
        self, envelope: CommandEnvelope, command: Cancel, record: LockRecord, now: int
    ) -> RunToCancel | Cancelled | None:
        """The lock's run, still going; ``None`` when no run was ever started under the lock; or how the request
        ended here (the run is starting, has finished, or GitHub cannot say)."""
        run_id = noted_run_id(record)
        try:
            if run_id is None:
                unnoted = find_unnoted_run(record, self.config, self.github)
                run_id = unnoted.id if unnoted is not None else None
            if run_id is None:
                if record.notes.get("dispatchState") == DISPATCHING and machine.is_live(record.to_item(), now):
                    self._reply(envelope, Message(run_starting_text(command)))
                    return Cancelled.RUN_STARTING
                return None
            run = self.github.get_run(repository_of(record, self.config), run_id)
        except GitHubError as error:
            runtime.logger.error("cancel: GitHub could not say where the run stands", run_id=run_id, reason=str(error))
            self._reply(envelope, Message(github_failed_text(record, str(error))))
            return Cancelled.GITHUB_FAILED
        if run.completed:
            self._reply(envelope, Message(run_finished_text(record)))
            return Cancelled.RUN_FINISHED
        return RunToCancel(run.id, run.html_url)

    def _cancel_run(self, record: LockRecord, run_id: int) -> str | None:
        """Ask GitHub to cancel the run of ``record``; ``None`` when it did (or the run had just finished), else
        why not."""
        try:
            accepted = self.github.cancel_run(repository_of(record, self.config), run_id)
        except GitHubError as error:
            runtime.logger.error("cancel: the lock is free but GitHub did not cancel the run", reason=str(error))
            return str(error)
        runtime.logger.info("run cancelled in GitHub" if accepted else "run had just finished", run_id=run_id)
        return None

    def _finish_moved_on(self, envelope: CommandEnvelope, record: LockRecord, run: RunToCancel | None) -> Cancelled:
        """The cancel a first delivery started, whose lock has moved on: its run cancelled, its news told once."""
        kinds = frozenset({EventKind.CANCEL, EventKind.FORCE_RELEASE})
        now = self.store.now()
        if not resumed_write_took_effect(
            record, envelope.user_id, kinds, asked_at=envelope.received_at, now=now, in_doubt=runtime.RetryLater
        ):  # its release never took effect: the lock moved on by other means, as for any cancel late
            self._reply(envelope, Message(lock_moved_text(record.lock_key, self.store.get(record.lock_key), now)))
            return Cancelled.LOCK_MOVED
        runtime.logger.warning("cancel: resumed after the lock moved on; cancelling the run it set out to")
        not_cancelled = self._cancel_run(record, run.id) if run is not None else None
        text = cancelled_text(record, envelope.user_id, now, run)
        if not_cancelled is not None:
            text += f" ⚠️ But GitHub did not cancel the run ({not_cancelled}): cancel it there."
        news = Message.in_channel(text)
        if not handoff.announce_once(record, lambda: self._announce(envelope, record, news), self.ledger):
            self._reply(envelope, Message(text))
        return Cancelled.DONE if not_cancelled is None else Cancelled.RUN_NOT_CANCELLED

    def _release(
        self, envelope: CommandEnvelope, record: LockRecord, now: int, *, answer_moved: bool = True
    ) -> outcomes.ForceReleased | Cancelled:
        """Free the lock, recording who and why — or recognise that this cancel did (a repeat: a lost answer, a
        redelivery); anything else is answered here."""
        lock_key = record.lock_key
        reason = force_release_reason(envelope.user_name, envelope.user_id)
        try:
            released = self.store.force_release(lock_key, record.token, by=envelope.user_id, reason=reason, seen=record)
        except LockStoreError as error:
            # The release may have taken effect with its answer lost: this cancel kept that it started, so the
            # message comes back (SQS) and its redelivery finishes every step from there.
            raise runtime.RetryLater(
                f"cancel: the lock table did not answer the release of {lock_key}: {error}"
            ) from None
        if isinstance(released, outcomes.NotHolder):
            if answer_moved:
                self._reply(envelope, Message(lock_moved_text(lock_key, released.current, now)))
            return Cancelled.LOCK_MOVED
        if not released.repeated:
            runtime.metrics.add_metric(name=CANCELLED_METRIC, unit=MetricUnit.Count, value=1)
        return released

    def _reply(self, envelope: CommandEnvelope, message: Message) -> bool:
        return runtime.slack_replies().reply(envelope.response_url, message, correlation_id=envelope.correlation_id)

    def _announce(self, envelope: CommandEnvelope, record: LockRecord, news: Message) -> bool:
        """In the channel the cancel came from (the reply, in_channel), and in the lock's own if it differs."""
        told = self._reply(envelope, news)
        channel = record.notes.get("channelId", "")
        if channel and (channel != envelope.channel_id or not told):
            return runtime.slack_replies().post_message(channel, news, correlation_id=envelope.correlation_id)
        return told


def handle(envelope: CommandEnvelope, command: Cancel, *, config: Config, store: LockStore) -> Cancelled:
    """One ``cancel`` message of the status queue."""
    return CancelWorker(config, store, runtime.github_client()).cancel(envelope, command)
