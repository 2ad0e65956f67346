"""Acting on a hand-off: the request the lock was handed to is dispatched by the build worker, as if it came again.

lockcore hands a freed lock to the head of its queue in the freeing write itself (``handed_to`` on the outcome of a
release, force-release, expire — or of an acquire that met a lapsed lease with a queue). The lock is then *held*
by the queued request's owner id; what remains is to start its run and tell its requesters. The worker that made
the freeing write (webhook, reaper, cancel, unlock, the build worker itself) calls :func:`pass_on`, which puts the
queued request's own :class:`~workers.protocol.envelope.CommandEnvelope` back on its command queue, with
``handed_off``, the new token. The build worker takes it as any request: its acquire re-enters (same owner:
``Acquired``, nothing written) and it dispatches under the lock it already holds, through the one dispatch
path there is.

**Where the envelope waits.** A queue entry (:class:`lockcore.record.QueueEntry`) holds the owner, the users, the
component, environment and lease — not the ``response_url`` or the channel a reply needs. So the build worker
keeps the envelope of every request that may queue, *before* it joins the queue (else a release landing between
the join and the keeping would find nothing), in the idempotency table (``$IDEMPOTENCY_TABLE_NAME``) under
``chatops.pending#<request id>`` with the table's TTL (``expiration``, :data:`PENDING_SECONDS`): not in the lock
table, whose scans read any item as a lock; not in lockcore, which stays free of Slack. One PutItem per queueable
request, one GetItem per hand-off.

A hand-off whose envelope cannot be found or queued is logged as an error: the lock is held by a request nobody
dispatches, its lease ends it, and the reaper's expire hands it to the next in line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError

from lockcore import outcomes
from lockcore.record import LockRecord
from workers.adapters import runtime
from workers.adapters.ledger import Ledger
from workers.adapters.pending import PendingRequests
from workers.adapters.queues import NotQueued, enqueue
from workers.adapters.slack import SlackReplies
from workers.protocol.config import Config
from workers.protocol.envelope import CommandEnvelope
from workers.protocol.freeing import as_let_go, news_of, told_key
from workers.protocol.message import Message, escape


def handed_off_body(envelope: CommandEnvelope, token: int, coalesced: tuple[str, ...] = ()) -> str:
    """The queued request's envelope again, handed ``token`` (with the owners coalesced into it)."""
    return replace(envelope, handed_off=token, coalesced=coalesced).to_json()


def free_text(record: LockRecord) -> str:
    return f"🔓 `{escape(record.lock_key)}` is free now ({record.status.value}) — you asked to be told."


def follow_up(
    freed: outcomes.Freed,
    config: Config,
    slack: SlackReplies,
    pending: PendingRequests | None = None,
    *,
    seen: LockRecord | None = None,
    news: Callable[[LockRecord], str] | None = None,
    announce: Callable[[Message], bool] | None = None,
    ledger: Ledger | None = None,
    retry_unheard: bool = False,
) -> bool:
    """The one step after a write that freed the lock — or its repeat, which does the same:

    1. the request the lock was handed to is dispatched (:func:`pass_on`; the queue and the build worker
       deduplicate it, so it is safe to repeat);
    2. unless the ledger shows this holding's news was told already: the channel hears ``news`` (rendered from
       the lock as its holder let go, :func:`workers.protocol.freeing.as_let_go`, with whom it was handed to), the
       requesters coalesced into the holder's run hear it too, the watchers hear that the lock is free; then the
       ledger keeps that they were told.

    ``seen``: the lock as the caller read it before the write. ``news``: ``None`` when the caller tells its own
    requester (the build worker's failed dispatch). ``announce``: where the channel hears it (default: the lock's
    channel, ``chat.postMessage``). Whether anything was told now (``False``: told before, or nothing to tell).

    ``retry_unheard``: a channel that did not hear the news raises :class:`~workers.adapters.runtime.RetryLater`
    at once (the hand-off already passed on; the coalesced requesters and the watchers not yet told, so that the
    repeat tells each of them once), for a caller whose message comes back (SQS) and repeats the write — the lock
    may have moved on by then, so nothing else would look again. Otherwise the ledger shows the news untold for
    the reaper's next sweep.
    """
    pass_on(freed.handed_to, config, pending)
    let_go = as_let_go(freed, seen)
    ledger = ledger or runtime.ledger()
    said = news_of(news(let_go), freed.handed_to) if news is not None else None
    if said is None and not freed.notify:
        return False
    key = told_key(let_go)
    if freed.repeated and ledger.told(key):
        runtime.logger.info("the freeing write was told already", told_key=key)
        return False
    heard = True
    if said is not None:
        message = Message.in_channel(said.channel)
        heard = bool(announce(message) if announce is not None else tell_channel(let_go, message, slack))
        if not heard and retry_unheard:  # before anyone else is told: the repeat tells them, once
            raise runtime.RetryLater(f"the channel did not hear the news of {key}; the write is repeated to tell it")
        tell_coalesced(let_go, said.coalesced, slack, pending)
    tell_watchers(let_go, freed.notify, slack)
    if heard:  # else the ledger shows it untold, and the write's repeat (a redelivery, the reaper) tells it again
        ledger.mark_told(key)
        return True
    runtime.logger.warning("the channel did not hear the news; a repeat will tell it", told_key=key)
    return True


def announce_once(was: LockRecord, announce: Callable[[], bool], ledger: Ledger) -> bool:
    """The news of the holding ``was``, announced unless the ledger shows it told (:func:`told_key`), and kept as
    told once heard. Whether it was heard now."""
    key = told_key(was)
    if ledger.told(key) or not announce():
        return False
    ledger.mark_told(key)
    return True


def tell_channel(record: LockRecord, message: Message, slack: SlackReplies) -> bool:
    """``chat.postMessage`` to the channel the command came from (the ``channelId`` note)."""
    channel = record.notes.get("channelId", "")
    if not channel:
        runtime.logger.warning("no channel noted on the lock: the channel is not told", text=message.text)
        return False
    return slack.post_message(channel, message, correlation_id=record.correlation_id or "")


def tell_watchers(record: LockRecord, notify: tuple[str, ...], slack: SlackReplies) -> int:
    """The users who pressed "Notify me when free": an ephemeral message in the lock's channel (the command's
    ``response_url`` may be long dead), else a direct message. How many were told."""
    channel = record.notes.get("channelId", "")
    message = Message(free_text(record))
    cid = record.correlation_id or ""
    return sum(tell_privately(slack, channel, user, message, cid) for user in notify)


def tell_privately(slack: SlackReplies, channel: str, user: str, message: Message, correlation_id: str) -> bool:
    """Only ``user`` sees it: ephemeral in ``channel``, else a direct message; logged when neither works. For news
    that comes after the command's ``response_url`` is spent (5 posts) or expired (30 minutes)."""
    if (channel and slack.post_ephemeral(channel, user, message, correlation_id=correlation_id)) or slack.post_message(
        user, message, correlation_id=correlation_id
    ):
        return True
    runtime.logger.warning("a user could not be told", user=user)
    return False


def tell_coalesced(
    record: LockRecord,
    text: str,
    slack: SlackReplies,
    pending: PendingRequests | None = None,
    *,
    announced: bool = True,
) -> int:
    """The requesters whose identical requests waited with the holder's of ``record`` and run as its run, told
    ``text`` where each asked. How many.

    ``announced``: the news was just posted in the open in the lock's channel (the run's end), so those who asked
    there have read it, and the others — long after they typed the command — are told privately. Otherwise (the
    build worker's news of the run starting, or not) each is told through their command's own ``response_url``
    while Slack still takes it, else privately.
    """
    entry = record.handed_from_queue
    if entry is None or entry.owner != record.owner:
        return 0
    lock_channel = record.notes.get("channelId", "") if announced else ""
    message = Message(text)
    users = {requester.owner: requester.user for requester in entry.requesters[1:]}
    told = 0
    for owner, envelope in (pending or runtime.pending_requests()).find_each(users):
        channel = envelope.channel_id if envelope is not None else ""
        if channel and channel == lock_channel:
            continue  # they read it in the channel
        cid = envelope.correlation_id if envelope is not None else record.correlation_id or ""
        if not announced and envelope is not None and slack.reply(envelope.response_url, message, correlation_id=cid):
            told += 1
            continue
        told += tell_privately(slack, channel, users[owner], message, cid)
    return told


def pass_on(handed: outcomes.HandOff | None, config: Config, pending: PendingRequests | None = None) -> bool:
    """Put the request the lock was handed to back on its command queue, to be dispatched; ``False`` if it could
    not be (logged: its lease bounds the wait)."""
    if handed is None:
        return False
    entry, record = handed.entry, handed.record
    log = runtime.logger
    try:
        envelope = (pending or runtime.pending_requests()).find(entry.owner)
    except (BotoCoreError, ClientError) as error:  # logged: the lease bounds the wait
        log.error("hand-off: the queued request could not be read", owner=entry.owner, reason=str(error))
        return False
    if envelope is None:
        log.error("hand-off: no envelope kept for the queued request", owner=entry.owner, lock_key=record.lock_key)
        return False
    coalesced = tuple(q.owner for q in entry.requesters[1:])
    try:
        enqueue(
            config,
            envelope.kind,
            handed_off_body(envelope, record.token, coalesced),
            dedup_id=f"{envelope.request_id}#{record.token}",
            group_id=record.lock_key,
            correlation_id=envelope.correlation_id,
        )
    except NotQueued as error:
        log.error("hand-off: the queued request could not be queued", owner=entry.owner, reason=str(error))
        return False
    log.info("lock handed to the next in line", owner=entry.owner, token=record.token, lock_key=record.lock_key)
    return True
