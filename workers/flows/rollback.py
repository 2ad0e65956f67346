"""``/deploy rollback <component> <env> [N]`` in the status worker: read the lock, then its history, and answer the
requester alone — the commit it would deploy, who deployed it and when, what is live now, and a *Confirm rollback*
button carrying the lock as read (:mod:`workers.protocol.rollback` decides and words it).

The lock is read *before* the history: a deploy that ends between the two reads shows in the history but not in
the mark the button carries, so the press finds the lock changed and refuses rather than deploying a choice made
on a stale view. The confirm itself never comes here: the router makes it an ordinary ``/deploy`` of the commit
(the build worker: the same lock, freeze, queue and idempotency). The *Cancel* button comes here, and only
replaces the prompt.

A lock table or history that does not answer is one line to the requester, who can run it again.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from lockcore.errors import LockStoreError
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.protocol import rollback
from workers.protocol.commands import Rollback
from workers.protocol.config import Config
from workers.protocol.envelope import CommandEnvelope, InteractionEnvelope
from workers.protocol.history import RETENTION_SECONDS
from workers.protocol.message import Message
from workers.protocol.render import store_unavailable

HISTORY_UNAVAILABLE = "⚠️ Sorry, I couldn't read the deploy history just now. Please try again in a moment."


def handle(envelope: CommandEnvelope, *, config: Config, store: LockStore) -> None:
    """The command: the offer, to the requester alone."""
    if not isinstance(envelope.command, Rollback):
        raise TypeError(f"not a rollback: {envelope.kind!r}")
    _offer(envelope, envelope.command, config, store)


def cancel(envelope: InteractionEnvelope, config: Config, store: LockStore) -> None:
    """The offer's *Cancel* button (one of the status worker's presses): the prompt is replaced, nothing else."""
    runtime.logger.info("rollback cancelled")
    runtime.slack_replies().reply(envelope.response_url, rollback.cancelled(), correlation_id=envelope.correlation_id)


def _offer(envelope: CommandEnvelope, command: Rollback, config: Config, store: LockStore) -> None:
    lock_key = config.commands[command.action].lock_key(command.component, command.environment)
    replies = runtime.slack_replies()
    cid = envelope.correlation_id
    if not config.locks(command.action):
        runtime.logger.info("rollback refused: deploys take no lock", lock_key=lock_key)
        text = rollback.takes_no_lock_text(command.component, command.environment, switched_off=not config.lock_enabled)
        replies.reply(envelope.response_url, Message(text), correlation_id=cid)
        return
    try:
        seen = store.get(lock_key)
    except LockStoreError as error:
        runtime.logger.error("rollback: the lock table did not answer", lock_key=lock_key, reason=str(error))
        replies.reply(envelope.response_url, store_unavailable(f"look up `{lock_key}`"), correlation_id=cid)
        return
    now = store.now()
    try:
        history = runtime.history().newest_first(lock_key, now - RETENTION_SECONDS)
        choice = rollback.choose(
            seen, history, component=command.component, environment=command.environment, steps=command.steps, now=now
        )
    except (BotoCoreError, ClientError) as error:
        runtime.logger.error("rollback: the history did not answer", lock_key=lock_key, reason=str(error))
        replies.reply(envelope.response_url, Message(HISTORY_UNAVAILABLE), correlation_id=cid)
        return
    runtime.logger.info(
        "rollback answered",
        lock_key=lock_key,
        target=choice.target.sha if isinstance(choice, rollback.GoBack) else None,
        live=choice.live.sha if choice.live is not None else None,
    )
    replies.reply(
        envelope.response_url, rollback.answer(choice, command.component, command.environment, seen), correlation_id=cid
    )
