"""Telling the requester of a request that gave up: its message failed every attempt and lies in its queue's DLQ.

Read, decide, perform. For a ``/build`` or ``/deploy``, its lock (one ``GetItem``); :mod:`workers.protocol.giving_up`
decides what is true to say now; the answer goes to the request's ``response_url``, else ephemeral in its channel,
else a direct message (:func:`workers.flows.handoff.tell_privately`).

Nothing here raises for a lock table or Slack that fails: a lock that cannot be read is itself a verdict (a run
may have started), and a telling that fails is logged. A DLQ has no DLQ of its own, so a record failed here would
come back until the DLQ's retention ends — two weeks of the same error — and the request is dead either way.
"""

from __future__ import annotations

from lockcore.errors import LockStoreError
from lockcore.store import LockStore
from workers.adapters.runtime import logger
from workers.adapters.slack import SlackReplies
from workers.flows.handoff import tell_privately
from workers.protocol import giving_up
from workers.protocol.commands import Dispatch
from workers.protocol.config import Config
from workers.protocol.dispatch import Job
from workers.protocol.envelope import CommandEnvelope, InteractionEnvelope


def tell(
    envelope: CommandEnvelope | InteractionEnvelope, *, config: Config, store: LockStore, slack: SlackReplies
) -> bool:
    """Tell the requester what became of their request; whether anyone could be told."""
    lock_key = ""
    if isinstance(envelope, CommandEnvelope) and isinstance(envelope.command, Dispatch):
        job = Job.of(envelope, config)
        lock_key = job.lock_key
        lock = _read(store, lock_key) if job.locks else None
        verdict = giving_up.assess_dispatch(envelope.request_id, envelope.received_at, lock, lock_enabled=job.locks)
    else:
        verdict = giving_up.assess_other(envelope)
    message = giving_up.message(envelope, lock_key, verdict, store.now())
    cid = envelope.correlation_id
    told = slack.reply(envelope.response_url, message, correlation_id=cid) or tell_privately(
        slack, envelope.channel_id, envelope.user_id, message, cid
    )
    log = logger.info if told else logger.error
    log(
        "dead letter: requester told" if told else "dead letter: the requester could not be told",
        verdict=type(verdict).__name__,
        lock_key=lock_key or None,
        text=message.text,
    )
    return told


def _read(store: LockStore, lock_key: str) -> giving_up.LockRead | None:
    try:
        state, record = store.state(lock_key)
    except LockStoreError as error:
        logger.warning("dead letter: the lock could not be read", lock_key=lock_key, reason=str(error))
        return None
    return giving_up.LockRead(state, record)
