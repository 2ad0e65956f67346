"""Acting on a hand-off: the request the lock was handed to is dispatched by the build worker, as if it came again.

lockcore hands a freed lock to the head of its queue in the freeing write itself (``handed_to`` on the outcome of a
release, force-release, expire — or of an acquire that met a lapsed lease with a queue). The lock is then *held*
by the queued request's owner id; what remains is to start its run and tell its requesters. The worker that made
the freeing write (webhook, reaper, cancel, unlock, the build worker itself) calls :func:`pass_on`, which puts the
queued request's own :class:`~workers.protocol.envelope.CommandEnvelope` back on its command queue, marked ``handedOff``
with the new token. The build worker takes it as any request: its acquire re-enters (same owner: ``Acquired``,
nothing written) and it dispatches under the lock it already holds, through the one dispatch path there is.

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

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lockcore import machine as m
from lockcore.dynamodb import client_config
from lockcore.record import LockRecord
from workers.adapters import runtime
from workers.adapters.queues import NotQueued, enqueue
from workers.adapters.slack import SlackReplies
from workers.protocol.config import Config
from workers.protocol.envelope import CommandEnvelope, EnvelopeError
from workers.protocol.inbound import read_json
from workers.protocol.message import Message, escape

PENDING_PREFIX: Final = "chatops.pending#"
PENDING_SECONDS: Final = 2 * 24 * 3600
"""How long a queued request's envelope is kept: a queue longer than that has its leases to end it."""
HANDED_OFF: Final = "handedOff"
"""The envelope's extra field on a hand-off: the token the request was handed."""
COALESCED: Final = "coalesced"
"""The owner ids of the requesters coalesced into the handed-off one (told its run)."""


class PendingRequests:
    """The envelopes of requests waiting in a lock's queue, by request id."""

    def __init__(self, table: str | None = None, *, clock: Any = time.time) -> None:
        self.table = table or os.environ.get(runtime.IDEMPOTENCY_TABLE_ENV) or runtime.DEFAULT_IDEMPOTENCY_TABLE
        self.clock = clock
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client("dynamodb", config=client_config())
        return self._client

    def keep(self, envelope: CommandEnvelope) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                "id": {"S": PENDING_PREFIX + envelope.request_id},
                "envelope": {"S": envelope.to_json()},
                "expiration": {"N": str(int(self.clock()) + PENDING_SECONDS)},
            },
        )

    def find(self, request_id: str) -> CommandEnvelope | None:
        answer = self.client.get_item(
            TableName=self.table, Key={"id": {"S": PENDING_PREFIX + request_id}}, ConsistentRead=True
        )
        body = answer.get("Item", {}).get("envelope", {}).get("S")
        if not isinstance(body, str):
            return None
        try:
            return CommandEnvelope.from_json(body)
        except EnvelopeError:
            return None

    def find_each(self, owners: Iterable[str]) -> Iterator[tuple[str, CommandEnvelope | None]]:
        """Each owner's kept envelope (``None``: none kept); an owner whose lookup fails is logged and skipped —
        for telling people, where one lost lookup must not stop the others."""
        for owner in owners:
            try:
                yield owner, self.find(owner)
            except (BotoCoreError, ClientError) as error:
                runtime.logger.error("a waiting request could not be looked up", owner=owner, reason=str(error))


def handed_off_body(envelope: CommandEnvelope, token: int, coalesced: tuple[str, ...] = ()) -> str:
    data: dict[str, Any] = json.loads(envelope.to_json())
    data[HANDED_OFF] = token
    if coalesced:
        data[COALESCED] = list(coalesced)
    return json.dumps(data, ensure_ascii=False)


def handed_off(body: str) -> tuple[int | None, tuple[str, ...]]:
    """The token a message was handed (``None``: a request as the router sent it) and its coalesced owners."""
    try:
        data = read_json(body)
    except ValueError:
        return None, ()
    if not isinstance(data, dict) or not isinstance(data.get(HANDED_OFF), int):
        return None, ()
    coalesced = data.get(COALESCED, [])
    return data[HANDED_OFF], tuple(str(o) for o in coalesced) if isinstance(coalesced, list) else ()


def free_text(record: LockRecord) -> str:
    return f"🔓 `{escape(record.lock_key)}` is free now ({record.status.value}) — you asked to be told."


def follow_up(freed: m.Freed, config: Config, slack: SlackReplies, pending: PendingRequests | None = None) -> None:
    """After a write that freed the lock (or its repeat): the request it was handed to is dispatched
    (:func:`pass_on`) and the watchers it named are told (:func:`tell_watchers`). Both are safe to repeat."""
    pass_on(freed.handed_to, config, pending)
    tell_watchers(freed.record, freed.notify, slack)


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


def tell_coalesced(record: LockRecord, text: str, slack: SlackReplies, pending: PendingRequests | None = None) -> int:
    """The requesters whose identical requests waited with the holder's and ran as its run, told its result where
    each asked — those who asked in another channel than the holder's, which was told in the open. How many."""
    entry = record.handed_from_queue
    if entry is None or entry.owner != record.owner:
        return 0
    lock_channel = record.notes.get("channelId", "")
    message = Message(text)
    users = {requester.owner: requester.user for requester in entry.requesters[1:]}
    told = 0
    for owner, envelope in (pending or PendingRequests()).find_each(users):
        channel = envelope.channel_id if envelope is not None else ""
        if channel and channel == lock_channel:
            continue  # they read it in the channel
        told += tell_privately(slack, channel, users[owner], message, record.correlation_id or "")
    return told


def pass_on(handed: m.HandOff | None, config: Config, pending: PendingRequests | None = None) -> bool:
    """Put the request the lock was handed to back on its command queue, to be dispatched; ``False`` if it could
    not be (logged: its lease bounds the wait)."""
    if handed is None:
        return False
    entry, record = handed.entry, handed.record
    log = runtime.logger
    try:
        envelope = (pending or PendingRequests()).find(entry.owner)
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
