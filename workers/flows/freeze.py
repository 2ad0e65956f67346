"""Freezes: ``/deploy freeze <env> <reason>`` and ``/deploy unfreeze <env>`` (admins), and what a deploy is told.

A freeze is a lock like any other, taken with lockcore's own operations — the same token rules, the same history
(the stream records a *freeze* and an *unfreeze*, :mod:`workers.flows.history`):

- **the key** ``freeze-<env>``; owner = the request id (Slack's ``trigger_id``, so a redelivered freeze re-enters
  its own lock), ``lockedBy`` = the admin, a lease of :data:`FREEZE_SECONDS` (30 days: a forgotten freeze ends by
  itself, as a lapsed lease does; freeze again to go on).
- **the reason** — lockcore keeps no free text for a holder but its notes, and this module must not change
  lockcore: the freeze notes ``command`` = the command as typed (``/deploy freeze prod release week``; a build's
  lock notes its action there, ``build`` or ``deploy``), and the reason is read back from it (:func:`reason_of`).
  The note is a second write after the acquire; if it fails, the freeze holds with "no reason recorded". The
  reaper leaves a freeze alone while its lease runs (it has no run to look for) and records its expiry after.
- **unfreeze** force-releases with the token the admin's request read (one ``GetItem``, then the guarded write): a
  freeze taken again in between is not released by a stale unfreeze.
- **a deploy** to a frozen environment reads ``freeze-<env>`` once (one strongly consistent ``GetItem``) before
  it takes its own lock, and is refused with the reason, who froze it and since when. Only ``/deploy`` pays that
  read; ``/build`` never does.

Status (``/build status --locks``) lists a live freeze with its reason (:func:`freeze_fields`).

**Scheduled windows** (:mod:`workers.flows.windows`) take the same key, so a deploy is refused the same way, told
the window's reason and when it ends. An unfreeze during a window's occurrence keeps that the occurrence was
lifted (the ledger) *before* it releases anything, so the sweep does not freeze it again until the next one.
"""

from __future__ import annotations

from typing import Final

from aws_lambda_powertools.metrics import MetricUnit

from lockcore import machine, outcomes
from lockcore.errors import LockStoreError
from lockcore.record import LockRecord, Status, epoch
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.ledger import LedgerError
from workers.adapters.secrets import SecretUnavailable
from workers.adapters.usergroups import GroupLookupFailed, member_groups
from workers.protocol.commands import Freeze, Refused, Unfreeze, describe, is_admin, refusal_text
from workers.protocol.config import Config
from workers.protocol.envelope import CommandEnvelope
from workers.protocol.history import FREEZE_PREFIX
from workers.protocol.message import Message, escape
from workers.protocol.render import duration, frees_at, holder, since, slack_date, standing, store_unavailable
from workers.protocol.windows import SCHEDULER, Occurrence, occurrence_of, schedule, scheduled_reason

FREEZE_SECONDS: Final = 30 * 24 * 3600
FROZEN_METRIC: Final = "buildWorker.deploy.frozen"
NO_REASON: Final = "no reason recorded"


def freeze_key(environment: str) -> str:
    return f"{FREEZE_PREFIX}{environment}"


def is_freeze(lock_key: str) -> bool:
    return lock_key.startswith(FREEZE_PREFIX)


def reason_of(record: LockRecord) -> str:
    """The reason the admin gave, from the freeze's ``command`` note (see above), or the window's."""
    typed = record.notes.get("command", "")
    if (scheduled := scheduled_reason(typed)) is not None:
        return scheduled
    prefix = f"/deploy freeze {record.lock_key.removeprefix(FREEZE_PREFIX)} "
    return typed.removeprefix(prefix) if typed.startswith(prefix) else NO_REASON


def current(store: LockStore, environment: str, now: int) -> LockRecord | None:
    """The live freeze of ``environment``, if any: one strongly consistent read."""
    record = store.get(freeze_key(environment))
    return record if record is not None and machine.is_live(record.to_item(), now) else None


# ----------------------------------------------------------------------------------------------- rendering
def frozen_text(environment: str, record: LockRecord) -> str:
    """What a ``/deploy`` to a frozen environment is told (a window's freeze: until when)."""
    env = escape(environment)
    if occurrence_of(record.owner) is not None:
        return (
            f"🧊 Deploys to *{env}* are frozen by the {escape(record.locked_by_name)} until "
            f"{slack_date(record.lease_expires_at)}: “{escape(reason_of(record))}”. An admin can lift it early with "
            f"`/deploy unfreeze {env}` (until the window's next occurrence)."
        )
    return (
        f"🧊 Deploys to *{env}* are frozen by {holder(record)} since {since(record)}: "
        f"“{escape(reason_of(record))}”. An admin can lift it with `/deploy unfreeze {env}`."
    )


def freeze_fields(record: LockRecord, now: int) -> list[dict[str, str]]:
    """A freeze in ``/build status --locks``."""
    return [
        {"type": "mrkdwn", "text": f"*🧊 Frozen by*\n{holder(record)}"},
        {"type": "mrkdwn", "text": f"*Since*\n{since(record)}"},
        {"type": "mrkdwn", "text": f"*Reason*\n{escape(reason_of(record))}"},
        {"type": "mrkdwn", "text": f"*Ends at*\n{frees_at(record, now)}"},
        {"type": "mrkdwn", "text": f"*Token*\n{record.token}"},
    ]


def answer_freeze(command: Freeze, outcome: outcomes.AcquireOutcome, admin_id: str) -> tuple[Message, Message | None]:
    """The admin's reply, and the channel's news (None when nothing changed)."""
    env = escape(command.environment)
    match outcome:
        case outcomes.HeldBySomeone(holder=holder):
            text = f"🧊 *{env}* is already frozen ({frozen_text(command.environment, holder)})"
            return Message(text), None
        case outcomes.Acquired(record=record):
            news = f"🧊 <@{admin_id}> froze deploys to *{env}*: “{escape(command.reason)}”."
            done = f"✅ Froze *{env}* (token {record.token}); `/deploy unfreeze {env}` lifts it."
            return Message(done), Message.in_channel(news)
    raise TypeError(f"not an acquire outcome: {outcome!r}")  # pragma: no cover


def answer_unfreeze(
    command: Unfreeze,
    outcome: outcomes.ForceReleaseOutcome | None,
    admin_id: str,
    now: int,
    lifted: Occurrence | None = None,
) -> tuple[Message, Message | None]:
    """``lifted``: the window occurrence going on, which stays lifted until the window's next one."""
    env = escape(command.environment)
    until = (
        f" The scheduled window {escape(lifted.window)} stays lifted until its next occurrence."
        if lifted is not None
        else ""
    )
    match outcome:
        case None if lifted is not None:
            return Message(f"✅ *{env}* was not frozen yet.{until}"), None
        case None:
            return Message(f"✅ *{env}* is not frozen; nothing to do."), None
        case outcomes.ForceReleased(repeated=True):
            return Message(f"✅ *{env}* was already unfrozen by you."), None
        case outcomes.ForceReleased(record=record):
            held = duration(now - epoch(record.locked_at)) if record.locked_at else "?"
            news = f"☀️ <@{admin_id}> lifted the freeze on *{env}* (frozen for {held}: “{escape(reason_of(record))}”)."
            return Message(f"✅ Unfroze *{env}*.{until}"), Message.in_channel(news + until)
        case outcomes.NotHolder(current=current_record):
            return Message(f"⚠️ The freeze of *{env}* changed since (now {standing(current_record, now)})."), None
    raise TypeError(f"not a force-release outcome: {outcome!r}")  # pragma: no cover


# ------------------------------------------------------------------------------------------------- the work
def handle(envelope: CommandEnvelope, command: Freeze | Unfreeze, *, config: Config, store: LockStore) -> None:
    """One ``/deploy freeze`` or ``unfreeze``, on the status worker. Admins only, checked again here."""
    cid = envelope.correlation_id
    try:
        admin = is_admin(
            config, envelope.user_id, member_groups(config.slack, config.authorization.admins, envelope.user_id)
        )
    except (GroupLookupFailed, SecretUnavailable) as error:
        runtime.logger.error("freeze: admin check failed, user groups unknown", reason=str(error))
        _reply(envelope, Message("⚠️ Sorry, I couldn't check your user groups with Slack just now."))
        return
    if not admin:
        runtime.logger.warning("freeze refused: not an admin")
        refused = Refused(f"only admins may run {describe(command)}", config.authorization.admins)
        _reply(envelope, Message(refusal_text(refused)))
        return
    key = freeze_key(command.environment)
    try:
        if isinstance(command, Freeze):
            reply, news = _freeze(envelope, command, store)
        else:
            reply, news = _unfreeze(envelope, command, config, store)
    except LedgerError as error:  # the lift not kept: nothing was released
        runtime.logger.error("unfreeze: the window's lift could not be kept", lock_key=key, reason=str(error))
        _reply(envelope, Message(f"⚠️ Sorry, I couldn't record the lift of `{key}`; nothing changed. Try again."))
        return
    except LockStoreError as error:
        runtime.logger.error("freeze: the lock table did not answer", lock_key=key, reason=str(error))
        _reply(envelope, store_unavailable(f"change `{key}`"))
        return
    runtime.logger.info("freeze answered", lock_key=key, command=command.kind, changed=news is not None)
    if news is not None:
        replies = runtime.slack_replies()
        if not (envelope.channel_id and replies.post_message(envelope.channel_id, news, correlation_id=cid)):
            replies.reply(envelope.response_url, news, correlation_id=cid)
    _reply(envelope, reply)


def _reply(envelope: CommandEnvelope, message: Message) -> None:
    runtime.slack_replies().reply(envelope.response_url, message, correlation_id=envelope.correlation_id)


def _freeze(envelope: CommandEnvelope, command: Freeze, store: LockStore) -> tuple[Message, Message | None]:
    key = freeze_key(command.environment)
    request = machine.AcquireRequest(
        key,
        envelope.request_id,
        FREEZE_SECONDS,
        locked_by=envelope.user_id,
        locked_by_name=envelope.user_name,
        component="freeze",
        environment=command.environment,
        correlation_id=envelope.correlation_id,
    )
    outcome = store.acquire(request)
    if isinstance(outcome, outcomes.Acquired):
        notes = {"command": describe(command)}
        if envelope.channel_id:
            notes["channelId"] = envelope.channel_id
        noted = store.note(key, envelope.request_id, outcome.token, **notes)
        if isinstance(noted, outcomes.NotHolder):  # unfrozen in between: the freeze stands as it was taken
            runtime.logger.warning("freeze reason not noted", reason=noted.reason.value)
    return answer_freeze(command, outcome, envelope.user_id)


def _unfreeze(
    envelope: CommandEnvelope, command: Unfreeze, config: Config, store: LockStore
) -> tuple[Message, Message | None]:
    key = freeze_key(command.environment)
    lifted = _lift_window(command.environment, config, store)  # before the read: see workers.flows.windows
    record = store.get(key)
    now = store.now()
    if record is None or not machine.is_live(record.to_item(), now):
        # A redelivered unfreeze finds its own release done: say so, not "not frozen".
        repeated = (
            record is not None and record.status is Status.FORCE_RELEASED and record.released_by == envelope.user_id
        )
        outcome = outcomes.ForceReleased(record, repeated=True) if repeated and record is not None else None
        return answer_unfreeze(command, outcome, envelope.user_id, now, lifted)
    if (held := occurrence_of(record.owner)) is not None:  # a window's freeze, of an occurrence config no longer has
        runtime.ledger().lift(command.environment, f"{held[0]}#{held[1]}", record.lease_expires_at)
    reason = f"unfrozen from Slack by {envelope.user_name or envelope.user_id}"
    released = store.force_release(key, record.token, by=envelope.user_id, reason=reason)
    if isinstance(released, outcomes.NotHolder) and _let_go_by_a_sweep(released.current, record.token):
        released = outcomes.ForceReleased(record)  # a sweep read this lift first and let go: the release is ours
    return answer_unfreeze(command, released, envelope.user_id, now, lifted)


def _let_go_by_a_sweep(current_record: LockRecord | None, token: int) -> bool:
    return (
        current_record is not None
        and current_record.token == token
        and current_record.status is Status.FORCE_RELEASED
        and current_record.released_by == SCHEDULER
    )


def _lift_window(environment: str, config: Config, store: LockStore) -> Occurrence | None:
    """The window occurrence going on in ``environment``, if any, kept as lifted (raises ``LedgerError``)."""
    occurrence = schedule(config.freeze_windows, environment, store.now()).active
    if occurrence is not None:
        runtime.ledger().lift(environment, occurrence.id, occurrence.end)
    return occurrence


def refuse_frozen(store: LockStore, environment: str, now: int) -> str | None:
    """For the build worker: the text a deploy to ``environment`` is refused with, or None when not frozen."""
    record = current(store, environment, now)
    if record is None:
        return None
    runtime.metrics.add_metric(name=FROZEN_METRIC, unit=MetricUnit.Count, value=1)
    return frozen_text(environment, record)
