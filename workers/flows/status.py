"""The status worker: ``/build status --locks``, ``/build unlock <component> <env>`` and the unlock buttons.

Its queue carries three kinds of message (:data:`workers.protocol.config.QUEUE_FOR_KIND`): ``status`` and ``unlock``
(:class:`~workers.protocol.envelope.CommandEnvelope`) and ``interaction``
(:class:`~workers.protocol.envelope.InteractionEnvelope`,
the buttons of the unlock prompt and of the App Home), and the App Home's ``home_opened`` and ``home_refresh``
(:mod:`workers.flows.home`). For each:

- **status** — every live lock (:meth:`lockcore.store.LockStore.list`) in Block Kit, ephemeral through the
  command's ``response_url``: key, holder, since, frees at (``<!date^…>``, in each reader's timezone), fencing
  token and the run it started.
- **unlock** — admins only, checked again here against the configuration (the router checked once; the
  configuration may have changed since, and a queue is not a place to trust). A non-admin is told who may. An
  admin is shown the holder and two buttons: *Force unlock*, whose value is ``<lock key>:<token>``, and *Cancel*.
  A free lock has nothing to unlock, and says so.
- **unlock.confirm** — admin checked again; the lock is force-released *only if its token is still the one the
  prompt showed* (the store's guard decides, in the same write): FORCE_RELEASED, by the admin's user id, with
  the reason ``force unlock from Slack by <name>``. The channel is told (``chat.postMessage``; when the bot cannot
  post there, the interaction's ``response_url`` ``in_channel``) and the prompt is replaced by the result. A token
  that moved on (the lock was released, or taken again) releases nothing and says who holds it now. Pressing
  the button twice — or a redelivery — finds the release already done by the same admin: the channel is told
  as the first would have told it unless it was (:func:`workers.flows.handoff.follow_up`), and the prompt says
  which.
- **unlock.cancel** — the prompt is replaced by "Unlock cancelled."; nothing is written.
- **cancel** (``/build cancel <component> <env>``) — the holder's or an admin's: :mod:`workers.flows.cancel`.
- **history**, **stats** (``/build history <component> <env>``, ``/build stats [days]``): :mod:`workers.flows.insights`.
- **freeze**, **unfreeze** (``/deploy freeze <env> <reason>``, ``/deploy unfreeze <env>``, admins):
  :mod:`workers.flows.freeze`; a live freeze shows in status with its reason.
- **rollback** (``/deploy rollback <component> <env> [N]``) and its *Cancel* button: :mod:`workers.flows.rollback`.

Deciding and rendering are pure functions of the records, the outcome and the clock (``now``, epoch seconds),
tested alone; :func:`handle` does the I/O around them.

Failures. A reply that Slack refuses (``response_url`` 500, a channel the bot is not in) is logged with the
correlation id by :class:`~workers.adapters.slack.SlackReplies` and the message is *done*: what it reports has happened
(or, for status, is a read anyone can repeat), and redelivering it would only re-run the work — a second prompt,
a second announcement — to a Slack that is failing. A lock table that does not answer (after botocore's own
retries) is told to the user in one line and the message is done too: the user is there and can press or type
again, where a silent redelivery would leave them waiting. Anything else (a message that is not ours, a bug)
raises, fails the batch item, and after the queue's ``maxReceiveCount`` ends in the DLQ.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lockcore import machine, outcomes
from lockcore.errors import LockStoreError
from lockcore.record import LockRecord
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.ledger import Ledger, LedgerError
from workers.adapters.secrets import SecretUnavailable
from workers.adapters.usergroups import GROUPS_UNKNOWN, GroupLookupFailed, member_groups
from workers.flows import cancel, freeze, handoff, home, insights, rollback
from workers.flows.history import resumed_write_took_effect
from workers.flows.windows import next_windows
from workers.protocol.commands import (
    Cancel,
    Dequeue,
    Freeze,
    History,
    LockStatus,
    Refused,
    Rollback,
    Stats,
    Unfreeze,
    Unlock,
    describe,
    is_admin,
    refusal_text,
)
from workers.protocol.config import Audience, Config
from workers.protocol.envelope import (
    LOCK_WATCH_ACTION,
    ROLLBACK_CANCEL_ACTION,
    UNLOCK_CANCEL_ACTION,
    UNLOCK_CONFIRM_ACTION,
    CommandEnvelope,
    Envelope,
    EnvelopeError,
    HomeOpened,
    HomeRefresh,
    InteractionEnvelope,
)
from workers.protocol.freeing import runs_under
from workers.protocol.history import FREEZE_PREFIX, EventKind
from workers.protocol.message import Message, confirm_or_cancel, escape
from workers.protocol.render import (
    Shown,
    frees_at,
    holder,
    lock_facts,
    requester,
    run_link,
    scheduled_line,
    since,
    slack_date,
    standing,
    store_unavailable,
)
from workers.protocol.windows import Occurrence

NO_LOCKS = "No builds or deploys hold a lock right now."
MAX_LOCKS_SHOWN = 40
"""Slack takes at most 50 blocks in a message: a header, a context and a divider, one section per lock, and a
last line for the ones left out."""
UNLOCK_BLOCK_ID = "unlock"
_VALUE = re.compile(r"(?P<key>[a-z0-9][a-z0-9_.-]{0,120}):(?P<token>[1-9][0-9]{0,18})")


# ---------------------------------------------------------------------------------------- the button value
@dataclass(frozen=True)
class UnlockTarget:
    """What the *Force unlock* button carries: the lock, and the token the admin saw."""

    lock_key: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.lock_key}:{self.token}"

    @classmethod
    def read(cls, value: str, config: Config) -> UnlockTarget | None:
        """The target, if ``value`` names a lock this configuration has; ``None`` for anything else."""
        match = _VALUE.fullmatch(value)
        if match is None or match["key"] not in lock_keys(config):
            return None
        return cls(match["key"], int(match["token"]))


def lock_keys(config: Config) -> frozenset[str]:
    """Every lock key the configured commands, components and environments can make."""
    return frozenset(config.lock_targets())


def lock_key_of(command: Unlock | Dequeue, config: Config) -> str:
    return config.commands[command.action].lock_key(command.component, command.environment)


# ---------------------------------------------------------------------------------------- mrkdwn pieces
def _section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _field(title: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{title}*\n{value}"}


# ------------------------------------------------------------------------------------------------- status
def lock_fields(record: LockRecord, now: int) -> list[dict[str, str]]:
    """The facts of one lock, as section fields (Slack allows ten); a freeze's own (:mod:`workers.flows.freeze`)."""
    if record.lock_key.startswith(FREEZE_PREFIX):
        return freeze.freeze_fields(record, now)
    return [_field(title, value) for title, value in lock_facts(record, now)]


def status_message(records: Sequence[LockRecord], now: int, scheduled: Sequence[Occurrence] = ()) -> Message:
    """Every live lock in ``records`` (the others are left out), ephemeral; :data:`NO_LOCKS` when none is. Then the
    next ``scheduled`` freeze window of each environment that has one."""
    live = [record for record in records if machine.is_live(record.to_item(), now)]
    coming = [_context(scheduled_line(occurrence)) for occurrence in scheduled]
    if not live:
        return Message(NO_LOCKS, [_section(f"🔓 {NO_LOCKS}"), *coming])
    count = f"{len(live)} lock{'s' if len(live) != 1 else ''} held right now"
    blocks: list[dict[str, Any]] = [
        _section(f"🔒 *{count}*"),
        _context(f"As of {slack_date(now)}. An admin can free a stuck one with `/build unlock <component> <env>`."),
        {"type": "divider"},
    ]
    for record in live[:MAX_LOCKS_SHOWN]:
        block = _section(f"*`{escape(record.lock_key)}`*", block_id=f"lock-{record.lock_key}"[:255])
        block["fields"] = lock_fields(record, now)
        blocks.append(block)
        if record.queue:
            blocks.append(_context(queue_line(record)))
    if len(live) > MAX_LOCKS_SHOWN:
        blocks.append(_context(f"…and {len(live) - MAX_LOCKS_SHOWN} more: `chatops locks list` shows them all."))
    summary = ", ".join(f"{record.lock_key} ({holder(record, Shown.NAME)})" for record in live[:10])
    more = f" and {len(live) - 10} more" if len(live) > 10 else ""
    return Message(f"{count}: {summary}{more}", blocks + coming)


def queue_line(record: LockRecord) -> str:
    """``⏳ Waiting: 1. <@U0BOB> (+1 identical), 2. <@U0CAROL>`` — the lock's queue, first in line first."""
    shown = []
    for position, entry in enumerate(record.queue, start=1):
        who = requester(entry.requesters[0])
        more = len(entry.requesters) - 1
        shown.append(f"{position}. {who}" + (f" (+{more} identical)" if more else ""))
    return "⏳ Waiting: " + ", ".join(shown)


# ------------------------------------------------------------------------------------------------- unlock
def unlock_refused(command: Unlock, admins: Audience) -> Message:
    return Message(refusal_text(Refused(f"only admins may run {describe(command)}", admins)))


def groups_unknown() -> Message:
    return Message(GROUPS_UNKNOWN)


def unlock_prompt(record: LockRecord, now: int) -> Message:
    """The admin's choice: the holder, and the buttons. The confirm button carries the token shown here."""
    target = UnlockTarget(record.lock_key, record.token)
    key = escape(record.lock_key)
    facts = (
        f"Held by {holder(record)} since {since(record)}, frees at {frees_at(record, now)}, "
        f"token {record.token}, run: {run_link(record)}."
    )
    blocks: list[dict[str, Any]] = [
        _section(f"*Force-unlock `{key}`?*\n{facts}"),
        _context("Releasing the lock does not stop the run; cancel it in GitHub if it must stop."),
        confirm_or_cancel(UNLOCK_BLOCK_ID, (UNLOCK_CONFIRM_ACTION, "Force unlock"), UNLOCK_CANCEL_ACTION, target.value),
    ]
    return Message(f"Force-unlock {record.lock_key}? {facts}", blocks)


def nothing_to_unlock(lock_key: str, record: LockRecord | None, now: int) -> Message:
    return Message(f"✅ Nothing to unlock: `{escape(lock_key)}` is {standing(record, now)}.")


def answer_unlock(lock_key: str, record: LockRecord | None, now: int) -> Message:
    """An admin's ``/build unlock``: the prompt when the lock is held, else why there is nothing to do."""
    if record is not None and machine.is_live(record.to_item(), now):
        return unlock_prompt(record, now)
    return nothing_to_unlock(lock_key, record, now)


def force_release_reason(user_name: str, user_id: str) -> str:
    return f"force unlock from Slack by {user_name or user_id}"


def force_unlocked_text(record: LockRecord, admin_id: str) -> str:
    """The channel's news, from the lock as it was let go: ``🔓 <@U0ADMIN> force-unlocked `key` (was held by …)``."""
    was = f"was held by {holder(record)} since {since(record)}, token {record.token}"
    return f"🔓 <@{admin_id}> force-unlocked `{escape(record.lock_key)}` ({was})."


def answer_confirm(
    target: UnlockTarget, outcome: outcomes.ForceReleaseOutcome, reason: str, now: int, *, told: bool
) -> Message:
    """The prompt's replacement. ``told``: the channel heard of this force-release now — the first answer, or a
    repeat of it whose first answer was lost before anyone was told; a repeat that finds it told says so."""
    key = escape(target.lock_key)
    match outcome:
        case outcomes.ForceReleased(record) if told:
            done = (
                f"✅ Force-released `{key}` (token {record.token}), recorded as FORCE_RELEASED by you: "
                f"“{escape(reason)}”. The channel has been told."
            )
            return Message(done, replace_original=True)
        case outcomes.ForceReleased(record):
            text = f"✅ `{key}` was already force-released by you (token {record.token}); nothing more to do."
            return Message(text, replace_original=True)
        case outcomes.NotHolder(current=current):
            text = f"⚠️ The lock `{key}` changed since (now {standing(current, now)}); nothing was released."
            return Message(text, replace_original=True)
    raise TypeError(f"not a force-release outcome: {outcome!r}")  # pragma: no cover


def confirm_not_understood() -> Message:
    return Message(
        "⚠️ This button is not one I can act on any more; run `/build unlock <component> <env>` again.",
        replace_original=True,
    )


def unlock_cancelled(target: UnlockTarget | None) -> Message:
    what = f"`{escape(target.lock_key)}` stays as it was" if target is not None else "nothing was released"
    return Message(f"Unlock cancelled: {what}.", replace_original=True)


def handle(envelope: Envelope, *, config: Config, store: LockStore) -> None:
    """One message of the status queue. Raises only for a message that is not this worker's, or a bug."""
    with runtime.logger.append_context_keys(
        correlation_id=envelope.correlation_id, kind=envelope.kind, user_id=getattr(envelope, "user_id", None)
    ):
        match envelope:
            case CommandEnvelope(command=LockStatus()):
                _status(envelope, config, store)
            case CommandEnvelope(command=Unlock() as command):
                _unlock(envelope, command, config, store)
            case CommandEnvelope(command=Cancel() as command):
                cancel.handle(envelope, command, config=config, store=store)
            case CommandEnvelope(command=Dequeue() as command):
                _dequeue(envelope, command, config, store)
            case CommandEnvelope(command=History() | Stats() as command):
                insights.handle(envelope, command, config=config, now=store.now())
            case CommandEnvelope(command=Freeze() | Unfreeze() as command):
                freeze.handle(envelope, command, config=config, store=store)
            case CommandEnvelope(command=Rollback()):
                rollback.handle(envelope, config=config, store=store)
            case InteractionEnvelope(action_id=action_id) if action_id in _PRESSES:
                _PRESSES[action_id](envelope, config, store)
            case InteractionEnvelope(action_id=action_id):
                runtime.logger.warning("interaction ignored: not an action of this worker", action_id=action_id)
            case HomeOpened() | HomeRefresh():
                home.handle(envelope, config=config, store=store)
            case _:
                raise EnvelopeError(f"the status worker does not handle {envelope.kind!r} messages")


def _unlock_cancel(envelope: InteractionEnvelope, config: Config, store: LockStore) -> None:
    target = UnlockTarget.read(envelope.value, config)
    runtime.logger.info("unlock cancelled", lock_key=target.lock_key if target else None)
    _reply(envelope.response_url, unlock_cancelled(target), envelope.correlation_id)


def _reply(response_url: str, message: Message, correlation_id: str) -> bool:
    """Through the ``response_url``; a failure is logged by SlackReplies and changes nothing here (see above)."""
    return runtime.slack_replies().reply(response_url, message, correlation_id=correlation_id)


def _status(envelope: CommandEnvelope, config: Config, store: LockStore) -> None:
    try:
        records = store.list()
    except LockStoreError as error:
        runtime.logger.error("status: the lock table did not answer", reason=str(error))
        _reply(envelope.response_url, store_unavailable("read the locks"), envelope.correlation_id)
        return
    now = store.now()
    message = status_message(records, now, next_windows(config, now))
    runtime.logger.info("status answered", locks=sum(machine.is_live(r.to_item(), now) for r in records))
    _reply(envelope.response_url, message, envelope.correlation_id)


def _watch(envelope: InteractionEnvelope, config: Config, store: LockStore) -> None:
    """ "Notify me when free": the user is named in the outcome of the write that frees the lock."""
    lock_key = envelope.value
    if lock_key not in lock_keys(config):
        runtime.logger.warning("watch refused: a button value that names no lock", value=lock_key[:80])
        text = "⚠️ That button names no lock I can watch; `/build status --locks` shows the locks there are."
        _reply(envelope.response_url, Message(text), envelope.correlation_id)
        return
    try:
        outcome = store.watch(lock_key, envelope.user_id)
    except LockStoreError as error:
        runtime.logger.error("watch: the lock table did not answer", lock_key=lock_key, reason=str(error))
        _reply(envelope.response_url, store_unavailable(f"watch `{lock_key}`"), envelope.correlation_id)
        return
    key = escape(lock_key)
    if isinstance(outcome, outcomes.Watching):
        text = f"👀 I'll tell you here when `{key}` is free."
    else:
        text = f"🔓 `{key}` is free already: try again now."
    runtime.logger.info("watch answered", lock_key=lock_key, watching=isinstance(outcome, outcomes.Watching))
    _reply(envelope.response_url, Message(text), envelope.correlation_id)


def dequeued_text(lock_key: str, left: list[outcomes.DequeueOutcome]) -> str:
    positions = sorted(outcome.position for outcome in left if isinstance(outcome, outcomes.Dequeued))
    if not positions:
        return f"🤷 You have no request waiting for `{escape(lock_key)}`; nothing changed."
    where = ", ".join(str(p) for p in positions)
    return f"✅ You left the queue of `{escape(lock_key)}` (you were at position {where}); nothing will run for you."


def _dequeue(envelope: CommandEnvelope, command: Dequeue, config: Config, store: LockStore) -> None:
    """Leave the lock's queue: every waiting request of this user (a user leaves only their own)."""
    lock_key = lock_key_of(command, config)
    try:
        record = store.get(lock_key)
        entries = record.queue if record is not None else ()
        mine = [q.owner for entry in entries for q in entry.requesters if q.user == envelope.user_id]
        left = [store.dequeue(lock_key, owner) for owner in mine]
    except LockStoreError as error:
        runtime.logger.error("dequeue: the lock table did not answer", lock_key=lock_key, reason=str(error))
        _reply(envelope.response_url, store_unavailable(f"leave the queue of `{lock_key}`"), envelope.correlation_id)
        return
    runtime.logger.info("dequeue answered", lock_key=lock_key, left=len(left))
    _reply(envelope.response_url, Message(dequeued_text(lock_key, left)), envelope.correlation_id)


def _admin_or_answer(config: Config, user_id: str, response_url: str, refusal: Message, correlation_id: str) -> bool:
    """True for an admin; anyone else (or a user whose groups cannot be looked up) is answered here."""
    try:
        if is_admin(config, user_id, member_groups(config.slack, config.authorization.admins, user_id)):
            return True
    except (GroupLookupFailed, SecretUnavailable) as error:
        runtime.logger.error("admin check failed: user groups unknown", reason=str(error))
        _reply(response_url, groups_unknown(), correlation_id)
        return False
    runtime.logger.warning("unlock refused: not an admin")
    _reply(response_url, refusal, correlation_id)
    return False


def _unlock(envelope: CommandEnvelope, command: Unlock, config: Config, store: LockStore) -> None:
    refusal = unlock_refused(command, config.authorization.admins)
    if not _admin_or_answer(config, envelope.user_id, envelope.response_url, refusal, envelope.correlation_id):
        return
    lock_key = lock_key_of(command, config)
    try:
        record = store.get(lock_key)
    except LockStoreError as error:
        runtime.logger.error("unlock: the lock table did not answer", lock_key=lock_key, reason=str(error))
        _reply(envelope.response_url, store_unavailable(f"look up `{lock_key}`"), envelope.correlation_id)
        return
    now = store.now()
    runtime.logger.info(
        "unlock asked", lock_key=lock_key, held=record is not None and machine.is_live(record.to_item(), now)
    )
    _reply(envelope.response_url, answer_unlock(lock_key, record, now), envelope.correlation_id)


def _finish_moved_on(envelope: InteractionEnvelope, target: UnlockTarget, was: LockRecord, ledger: Ledger) -> None:
    """This press's first delivery force-released ``was`` and died before telling; the lock has moved on since:
    the channel hears it (once) and the admin is answered."""
    now = runtime.lock_store().now()
    kinds = frozenset({EventKind.FORCE_RELEASE})
    if not resumed_write_took_effect(
        was, envelope.user_id, kinds, asked_at=envelope.received_at, now=now, in_doubt=ForceReleaseInDoubt
    ):
        # No trace that the write took effect (the lock moved on by other means): nothing to announce as done.
        runtime.logger.warning("force-release resumed after the lock moved on; no trace it took effect")
        text = f"⚠️ `{escape(target.lock_key)}` changed in the meantime; it was not force-released by this press."
        _reply(envelope.response_url, Message(text, replace_original=True), envelope.correlation_id)
        return
    runtime.logger.warning("force-release resumed after the lock moved on; announcing it", lock_key=target.lock_key)
    news = Message.in_channel(force_unlocked_text(was, envelope.user_id))
    handoff.announce_once(was, lambda: _announce(envelope, news), ledger)
    text = f"✅ `{escape(target.lock_key)}` (token {target.token}) was force-released; the channel has been told."
    _reply(envelope.response_url, Message(text, replace_original=True), envelope.correlation_id)


class ForceReleaseInDoubt(runtime.RetryLater):
    """The lock table did not answer a force-release, which may have taken effect: the press is handled again."""


def _confirm(envelope: InteractionEnvelope, config: Config, store: LockStore) -> None:
    cid = envelope.correlation_id
    target = UnlockTarget.read(envelope.value, config)
    if target is None:
        runtime.logger.warning("unlock confirm ignored: a button value that names no lock", value=envelope.value[:80])
        _reply(envelope.response_url, confirm_not_understood(), cid)
        return
    refusal = Message(refusal_text(Refused("only admins may force-unlock a lock", config.authorization.admins)))
    if not _admin_or_answer(config, envelope.user_id, envelope.response_url, refusal, cid):
        return
    reason = force_release_reason(envelope.user_name, envelope.user_id)
    ledger = runtime.ledger()
    try:
        # A delivery of this press that started (kept the lock as it read it, then wrote) is finished from there:
        # the lock may have moved on since its write took effect.
        started = ledger.started(envelope.request_id)
        # Read first: the channel's news names the holder as it let go, even when the write hands the lock on and
        # its answer is lost (the repeat then finds the next holder's item).
        read = store.get(target.lock_key)
        seen = read if read is not None and read.token == target.token else None
        if seen is None and started is not None:  # a repeat whose first write handed the lock on: as it was read
            seen = LockRecord.from_item(started["lock"])
        if started is None and seen is not None:
            ledger.start(envelope.request_id, {"lock": dict(seen.to_item())})
        if seen is not None and runs_under(seen):  # before the write: its run's end is reported all the same
            ledger.keep_orphan(seen)
        outcome = store.force_release(target.lock_key, target.token, by=envelope.user_id, reason=reason, seen=seen)
    except (LockStoreError, *LedgerError) as error:
        # The write may have taken effect with its answer lost: the press comes back (SQS) and its repeat is
        # recognised and announced; a store that stays down ends in the DLQ, whose worker tells the admin.
        raise ForceReleaseInDoubt(
            f"the lock table did not answer the force-release of {target.lock_key}: {error}"
        ) from None
    if isinstance(outcome, outcomes.NotHolder) and started is not None:
        _finish_moved_on(envelope, target, LockRecord.from_item(started["lock"]), ledger)
        return
    if not envelope.channel_id and seen is not None:  # pressed on the App Home: the lock's own channel is told
        envelope = dataclasses.replace(envelope, channel_id=seen.notes.get("channelId", ""))
    told = isinstance(outcome, outcomes.ForceReleased) and handoff.follow_up(
        outcome,
        config,
        runtime.slack_replies(),
        seen=seen,
        news=lambda let_go: force_unlocked_text(let_go, envelope.user_id),
        announce=lambda news: _announce(envelope, news),
    )
    released = isinstance(outcome, outcomes.ForceReleased) and not outcome.repeated
    runtime.logger.info(
        "force-release answered",
        lock_key=target.lock_key,
        token=target.token,
        outcome=type(outcome).__name__,
        repeated=isinstance(outcome, outcomes.ForceReleased) and outcome.repeated,
        told=told,
        refusal=outcome.reason.value if isinstance(outcome, outcomes.NotHolder) else None,
    )
    runtime.metrics.add_metric(
        name="buildLockManager.forceRelease.success" if released else "buildLockManager.forceRelease.refused",
        unit=MetricUnit.Count,
        value=1,
    )
    _reply(envelope.response_url, answer_confirm(target, outcome, reason, store.now(), told=told), cid)


def _announce(envelope: InteractionEnvelope, news: Message) -> bool:
    """Tell the channel: ``chat.postMessage``; when the bot may not post there, the ``response_url`` in_channel."""
    replies = runtime.slack_replies()
    cid = envelope.correlation_id
    if envelope.channel_id and replies.post_message(envelope.channel_id, news, correlation_id=cid):
        return True
    runtime.logger.warning("channel not told through chat.postMessage; trying the response_url in_channel")
    return replies.reply(envelope.response_url, news, correlation_id=cid)


_PRESSES: dict[str, Callable[[InteractionEnvelope, Config, LockStore], None]] = {
    UNLOCK_CONFIRM_ACTION: _confirm,
    LOCK_WATCH_ACTION: _watch,
    UNLOCK_CANCEL_ACTION: _unlock_cancel,
    ROLLBACK_CANCEL_ACTION: rollback.cancel,
}
"""The unlock prompt's buttons, "Notify me when free" and the rollback offer's *Cancel*: the handler of each."""
