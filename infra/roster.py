"""Every Lambda function of the service, one row each: what runs it, what feeds it, what it may touch.

Adding a worker is one line in :data:`WORKERS`. Everything else follows from its row: the queue and DLQ it
consumes (visibility at least six times its timeout), its log group, its role with exactly the DynamoDB actions
and SSM parameters named here, its environment, its alarms. The row is the least-privilege contract: a handler
that starts calling a new DynamoDB action, or reading another secret, changes its row in the same commit.

What each handler calls, as read from the code (``workers/`` and ``lockcore/``):

- lockcore's :class:`~lockcore.dynamodb.DynamoDBLockStore`: every transition is one conditional ``UpdateItem``
  (a refusal from a DynamoDB-compatible store without ``ALL_OLD`` costs one ``GetItem``); reading a lock is
  ``GetItem``; listing locks (``/build status --locks``, the reaper) is ``Scan``.
- Powertools Idempotency (the build worker): ``GetItem``, ``PutItem``, ``UpdateItem``, ``DeleteItem`` on its own
  table.
- Secrets: :func:`workers.adapters.secrets.get_secret` reads ``$<NAME>_PARAM`` with SSM ``GetParameter`` (decrypted).

Per worker: build (``/build``, ``/deploy``) acquires, notes and releases (UpdateItem, GetItem), keeps
idempotency records, dispatches to GitHub, replies in Slack and puts its refusals in the history (PutItem);
status reads, lists and force-releases (GetItem, Scan, UpdateItem), replies, and for ``/build cancel`` cancels
the run in GitHub; echo only replies; webhook (GitHub's ``workflow_run``) reads one lock and releases or renews it
(GetItem, UpdateItem) and tells the channel; the reaper scans every lock, asks GitHub about its run and releases,
renews or expires it (Scan, GetItem, UpdateItem), telling the channel. The history writer reads the lock table's
stream (never the table) and puts events in the history table (PutItem), then queues an App Home refresh on
the status queue when none is pending (its mark in the idempotency table); the status worker reads them back for
``/build history`` (Query) and ``/build stats`` (Scan). The dead-letter worker consumes the command queues' DLQs
and tells each requester what became of their request: it reads the request's lock (GetItem) and replies in Slack.

Which DLQs it consumes (:data:`REQUESTED_QUEUES`): those whose every message has a requester waiting on the
router's "⏳ Got it" — build, deploy, status, echo. Not the github queue's: a ``workflow_run`` has no requester,
and the lock of a run whose webhook was lost is settled by the reaper, which asks GitHub; that DLQ keeps its
messages for a person (its alarm counts them). A consumed DLQ's messages are deleted once told: what failed is in
the worker's log (and the failing worker's), and a redrive would dispatch what its requester was told was not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

Secret = Literal["SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET"]
SECRETS: Final[tuple[Secret, ...]] = (
    "SLACK_SIGNING_SECRET",
    "SLACK_BOT_TOKEN",
    "GITHUB_TOKEN",
    "GITHUB_WEBHOOK_SECRET",
)

LockAction = Literal["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Scan"]
IDEMPOTENCY_ACTIONS: Final = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
HistoryAction = Literal["dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan"]
STREAM_ACTIONS: Final = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")
"""What Lambda's event source mapping on the lock table's stream needs, on that stream only; ``ListStreams``
(which has no resource but ``*``) is granted apart, see :func:`infra.policies.read_lock_stream`."""

#: The router's queues (:class:`workers.protocol.config.Queue`): the router sends to each, one worker consumes each.
QUEUES: Final = ("build", "deploy", "status", "echo", "github")
REQUESTED_QUEUES: Final = ("build", "deploy", "status", "echo")
"""The queues whose every message is someone's request: a message that dies in one of their DLQs is told to its
requester, so exactly one worker consumes each of their DLQs (and none the others')."""

WORKER_TIMEOUT_SECONDS: Final = 45
"""The reference design's timeout for the queue workers (was 60 s)."""

_READ_WRITE_LOCKS: Final[tuple[LockAction, ...]] = ("dynamodb:GetItem", "dynamodb:UpdateItem")
_ALL_LOCKS: Final[tuple[LockAction, ...]] = ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Scan")


@dataclass(frozen=True)
class Worker:
    name: str
    """Short name: the function is ``chatops-<stack>-<name>``."""
    handler: str
    """``module.function`` inside the artifact."""
    consumes: tuple[str, ...] = ()
    """The queues (of :data:`QUEUES`) whose messages it handles, through an event source mapping each."""
    consumes_dead_letters: tuple[str, ...] = ()
    """The queues (of :data:`REQUESTED_QUEUES`) whose DLQ's messages it handles, an event source mapping each."""
    timeout: int = WORKER_TIMEOUT_SECONDS
    memory: int = 256
    secrets: tuple[Secret, ...] = ()
    lock_table: tuple[LockAction, ...] = ()
    """The lock table actions it calls; empty: it gets neither the table's name nor any access to it."""
    idempotency: bool = False
    """Whether it keeps Powertools Idempotency records (its own table)."""
    history_table: tuple[HistoryAction, ...] = ()
    """The history table actions it calls; empty: neither the table's name nor any access to it."""
    lock_stream: bool = False
    """Whether the lock table's stream feeds it (an event source mapping; read access to the stream only)."""
    sends_to: tuple[str, ...] = ()
    """The queues it writes to: the router all; a worker that hands a lock on, or queues an App Home refresh, some."""
    http: bool = False
    """Whether it answers HTTPS (the Function URL: Slack and GitHub call it)."""
    schedule: str | None = None
    """An EventBridge schedule expression that invokes it."""

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]


_HAND_OFF: Final = ("build", "deploy")
"""Where a worker that frees a lock puts the request it was handed to (:mod:`workers.flows.handoff`); it reads that
request's envelope from the idempotency table."""

# fmt: off
WORKERS: Final[tuple[Worker, ...]] = (
    Worker("router", "workers.handlers.router.handler", timeout=10, memory=512, http=True, sends_to=QUEUES,
           secrets=("SLACK_SIGNING_SECRET", "GITHUB_WEBHOOK_SECRET", "SLACK_BOT_TOKEN")),
    Worker("build", "workers.handlers.build.handler", consumes=("build", "deploy"),
           secrets=("SLACK_BOT_TOKEN", "GITHUB_TOKEN"),
           lock_table=_READ_WRITE_LOCKS, idempotency=True, sends_to=_HAND_OFF, history_table=("dynamodb:PutItem",)),
    Worker("status", "workers.handlers.status.handler", consumes=("status",),
           secrets=("SLACK_BOT_TOKEN", "GITHUB_TOKEN"),
           lock_table=_ALL_LOCKS, history_table=("dynamodb:Query", "dynamodb:Scan"), sends_to=(*_HAND_OFF, "status"),
           idempotency=True),
    Worker("echo", "workers.handlers.echo.handler", consumes=("echo",), secrets=("SLACK_BOT_TOKEN",)),
    Worker("webhook", "workers.handlers.webhook.handler", consumes=("github",), secrets=("SLACK_BOT_TOKEN",),
           lock_table=_READ_WRITE_LOCKS, sends_to=_HAND_OFF, idempotency=True),
    Worker("reaper", "workers.handlers.reaper.handler", schedule="rate(1 minute)",
           secrets=("SLACK_BOT_TOKEN", "GITHUB_TOKEN"),
           lock_table=_ALL_LOCKS, sends_to=_HAND_OFF, idempotency=True),
    Worker("history", "workers.handlers.history.handler", lock_stream=True, history_table=("dynamodb:PutItem",),
           sends_to=("status",), idempotency=True),
    Worker("deadletter", "workers.handlers.deadletter.handler", consumes_dead_letters=REQUESTED_QUEUES,
           secrets=("SLACK_BOT_TOKEN",), lock_table=("dynamodb:GetItem",)),
)
# fmt: on


def consumer_of(queue: str) -> Worker:
    """The one worker that consumes ``queue``."""
    (worker,) = (worker for worker in WORKERS if queue in worker.consumes)
    return worker


def dead_letter_consumer_of(queue: str) -> Worker | None:
    """The worker that consumes ``queue``'s DLQ; ``None``: its messages wait there for a person."""
    found = [worker for worker in WORKERS if queue in worker.consumes_dead_letters]
    return found[0] if found else None


def check(workers: tuple[Worker, ...] = WORKERS) -> None:
    """The roster's own rules; :class:`ValueError` names the row that breaks one."""
    names = [worker.name for worker in workers]
    if len(set(names)) != len(names):
        raise ValueError(f"roster: a worker name is used twice: {names}")
    consumers: Mapping[str, list[str]] = {q: [w.name for w in workers if q in w.consumes] for q in QUEUES}
    for queue, by in consumers.items():
        if len(by) != 1:
            raise ValueError(f"roster: queue {queue!r} must have exactly one consumer, has {by or 'none'}")
    for queue in QUEUES:
        by = [w.name for w in workers if queue in w.consumes_dead_letters]
        if queue in REQUESTED_QUEUES and len(by) != 1:
            raise ValueError(f"roster: the {queue!r} DLQ must have exactly one consumer, has {by or 'none'}")
        if queue not in REQUESTED_QUEUES and by:
            raise ValueError(f"roster: the {queue!r} DLQ has no requester to tell, yet {by} consume it")
    for worker in workers:
        unknown = set(worker.consumes) | set(worker.sends_to) | set(worker.consumes_dead_letters)
        if unknown - set(QUEUES):
            raise ValueError(f"roster: {worker.name}: unknown queues {sorted(unknown - set(QUEUES))}")
        if set(worker.consumes) & set(worker.consumes_dead_letters):
            raise ValueError(f"roster: {worker.name}: consumes a queue and its DLQ (a failure would fail twice)")
        if not 1 <= worker.timeout <= 900:
            raise ValueError(f"roster: {worker.name}: timeout {worker.timeout}s is outside Lambda's 1-900 s")
        if worker.lock_stream and (worker.consumes or worker.consumes_dead_letters):
            raise ValueError(f"roster: {worker.name}: the lock stream's writer consumes no queue")
        if (worker.consumes or worker.consumes_dead_letters) and worker.timeout * 6 > 43_200:
            raise ValueError(f"roster: {worker.name}: 6 x {worker.timeout}s exceeds SQS's 12-hour visibility limit")


check()
