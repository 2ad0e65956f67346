"""In-memory twins of every adapter the workers act through, each able to fail the way its real counterpart does.

Every call of a twin first asks the :class:`Faults` plan what goes wrong with it, if anything:

- ``FAIL`` — the call is answered with an error and has no effect (DynamoDB throttling, GitHub 5xx before it did
  anything, Slack 500);
- ``LOST`` — the call takes effect and its answer is lost: the caller sees the same error as ``FAIL``
  (DynamoDB 500 after the write, GitHub creating the run and answering 502 or timing out);
- ``CRASH_BEFORE`` / ``CRASH_AFTER`` — the process running the handler dies before or after the call's effect
  (:class:`Died`, a ``BaseException`` that no worker code catches, as nothing catches a Lambda being killed).

The twins keep the truth the simulation's invariants read: every GitHub run with the inputs it was dispatched with,
every word said to anyone in Slack, every message on every queue.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from botocore.exceptions import ClientError

from lockcore import machine
from lockcore.errors import StoreThrottled, StoreUnreachable
from lockcore.expressions import Item
from lockcore.memory import MemoryLockStore
from workers.adapters.github import GitHubClient, GitHubNotFound, GitHubServerError, GitHubUnreachable
from workers.adapters.history_table import HistoryTable
from workers.adapters.ledger import Ledger
from workers.adapters.pending import PendingRequests
from workers.adapters.slack import Published, SlackReplies
from workers.protocol.config import QUEUE_FOR_KIND, Config, Queue
from workers.protocol.envelope import CommandEnvelope, direct_message_user
from workers.protocol.history import HistoryEvent, events_of
from workers.protocol.message import Message, ResponseType
from workers.protocol.workflow import (
    CORRELATION_ID_INPUT,
    LOCK_KEY_INPUT,
    DispatchResult,
    Run,
    parse_run_name,
    run_name,
)

T = TypeVar("T")


class Died(BaseException):
    """The process running a handler died at this call: nothing after it in that invocation runs."""


class Fault(StrEnum):
    FAIL = "fail"
    LOST = "lost"
    CRASH_BEFORE = "crash-before"
    CRASH_AFTER = "crash-after"


class Faults:
    """What goes wrong next, per call (``"store.write"``, ``"github.dispatch"``, ``"slack.post"``…): planned by the
    simulation, taken one at a time by the twins. A plan is finite, so every adapter recovers within a bounded
    number of attempts — the assumption the simulation states about the real world."""

    def __init__(self) -> None:
        self._planned: dict[str, list[Fault | None]] = {}
        self.taken: Counter[tuple[str, Fault]] = Counter()

    def plan(self, call: str, fault: Fault, *, after: int = 0) -> None:
        """``fault`` on the next ``call`` — or, ``after`` calls that go through, on the one after them (a schedule
        written by hand that means the second write of a delivery, not the first)."""
        self._planned.setdefault(call, []).extend([None] * after + [fault])

    def clear(self) -> None:
        self._planned.clear()

    def take(self, call: str) -> Fault | None:
        planned = self._planned.get(call)
        if not planned:
            return None
        fault = planned.pop(0)
        if fault is not None:
            self.taken[call, fault] += 1
        return fault

    def around(self, call: str, effect: Callable[[], T], error: Callable[[], Exception]) -> T:
        """Run ``effect`` as the plan says: not at all (FAIL, CRASH_BEFORE), or with its answer replaced."""
        fault = self.take(call)
        if fault is Fault.CRASH_BEFORE:
            raise Died(call)
        if fault is Fault.FAIL:
            raise error()
        answer = effect()
        if fault is Fault.CRASH_AFTER:
            raise Died(call)
        if fault is Fault.LOST:
            raise error()
        return answer


# --------------------------------------------------------------------------------------------- the lock table
class LockTableTwin(MemoryLockStore):
    """lockcore's in-memory store, whose one conditional write and one read fail as DynamoDB's do."""

    def __init__(self, clock: Callable[[], float], faults: Faults, history: HistoryTwin | None = None) -> None:
        super().__init__(clock)
        self.faults = faults
        self.history = history
        """Fed from every write, as the table's stream feeds the history writer (in order, none lost)."""
        self.written: list[Item] = []
        """Every item as a write that took effect left it, in order: the table's history."""

    def _write(self, transition: machine.Transition) -> machine.WriteResult:
        def write() -> machine.WriteResult:
            old = self._items.get(transition.lock_key)
            result = super(LockTableTwin, self)._write(transition)
            if isinstance(result, machine.Written):
                self.written.append(dict(result.item))
                for event in events_of(dict(old) if old else None, dict(result.item), self.now()):
                    if self.history is not None:
                        self.history.put(event)
            return result

        return self.faults.around("store.write", write, lambda: StoreUnreachable("DynamoDB answered 500 (simulated)"))

    def _read(self, lock_key: str) -> Item | None:
        return self.faults.around(
            "store.read",
            lambda: super(LockTableTwin, self)._read(lock_key),
            lambda: StoreThrottled("DynamoDB throttled the read (simulated)"),
        )

    def items(self) -> dict[str, Item]:
        """Every item as it is, for the invariants (no fault, no copy semantics to worry about)."""
        return {key: dict(item) for key, item in self._items.items()}


# --------------------------------------------------------------------------------------------------- GitHub
@dataclass
class RunTruth:
    """A run as GitHub knows it, whatever anyone was told."""

    id: int
    repository: str
    workflow: str
    ref: str
    inputs: dict[str, str]
    created_at: int
    listed_at: int
    """GitHub lists a run a little after it creates it."""
    event: str = "workflow_dispatch"
    status: str = "queued"
    conclusion: str | None = None
    name: str = ""
    completed_at: int | None = None

    def as_run(self) -> Run:
        return Run(
            id=self.id,
            name=self.name,
            status=self.status,
            conclusion=self.conclusion,
            html_url=f"https://github.example/{self.repository}/actions/runs/{self.id}",
            created_at=_iso(self.created_at),
            updated_at=_iso(self.completed_at or self.created_at),
            head_sha=f"{self.id:040x}",
            head_branch=self.ref,
            event=self.event,
            display_title=self.name,
            path=f".github/workflows/{self.workflow}",
            repository=self.repository,
        )

    def payload(self, action: str) -> dict[str, Any]:
        """The ``workflow_run`` webhook's body for ``action``."""
        run = {
            "id": self.id,
            "name": self.name,
            "display_title": self.name,
            "status": "completed" if action == "completed" else self.status,
            "conclusion": self.conclusion if action == "completed" else None,
            "html_url": self.as_run().html_url,
            "head_sha": self.as_run().head_sha,
            "head_branch": self.ref,
            "run_attempt": 1,
            "event": self.event,
            "path": f".github/workflows/{self.workflow}",
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.completed_at or self.created_at),
        }
        return {"action": action, "workflow_run": run, "repository": {"full_name": self.repository}}


_COMMIT = re.compile(r"[0-9a-f]{40}")
"""A full commit SHA: GitHub resolves it to itself (``GET /commits/<sha>``)."""


class GitHubTwin(GitHubClient):
    """GitHub Actions in memory: dispatch creates a run named from its inputs, listed ``list_delay`` seconds later."""

    def __init__(self, clock: Callable[[], int], faults: Faults, *, list_delay: int = 2) -> None:  # no HTTP pool
        self.api_url = "https://github.twin"
        self.clock = clock
        self.faults = faults
        self.list_delay = list_delay
        self.runs: dict[int, RunTruth] = {}
        self.webhooks: list[tuple[str, RunTruth]] = []
        """Every ``workflow_run`` event GitHub sends, in order (the simulation delivers, loses or repeats them)."""
        self._ids = itertools.count(7001)

    def resolve_ref(self, owner_repo: str, ref: str | None = None) -> tuple[str, str]:
        return self.faults.around(
            "github.read",
            lambda: (
                ref or "main",
                ref if ref and _COMMIT.fullmatch(ref) else f"{abs(hash((owner_repo, ref or 'main'))):040x}"[:40],
            ),
            lambda: GitHubServerError("GitHub answered 500 (simulated)"),
        )

    def dispatch_workflow(self, owner_repo: str, workflow: str, ref: str, inputs: Mapping[str, str]) -> DispatchResult:
        def create() -> DispatchResult:
            run = self.start(owner_repo, workflow, ref, dict(inputs))
            return DispatchResult(run.id, run.as_run().html_url)

        return self.faults.around(
            "github.dispatch", create, lambda: GitHubServerError("GitHub answered 502 to the dispatch (simulated)")
        )

    def start(
        self, owner_repo: str, workflow: str, ref: str, inputs: dict[str, str], *, event: str = "workflow_dispatch"
    ) -> RunTruth:
        now = self.clock()
        run = RunTruth(next(self._ids), owner_repo, workflow, ref, inputs, now, now + self.list_delay, event=event)
        run.name = run_name(inputs.get(LOCK_KEY_INPUT, ""), inputs.get(CORRELATION_ID_INPUT, ""))
        self.runs[run.id] = run
        self.webhooks.append(("requested", run))
        return run

    def find_run(self, owner_repo: str, workflow: str, correlation_id: str, created_after: datetime) -> Run | None:
        return self._find(owner_repo, workflow, correlation_id, self.clock())

    def await_run(
        self,
        owner_repo: str,
        workflow: str,
        correlation_id: str,
        created_after: datetime,
        *,
        within: float = 4.0,
        every: float = 1.0,
    ) -> Run | None:
        """The worker polls for ``within`` seconds of real time: here, what GitHub lists by then."""
        return self._find(owner_repo, workflow, correlation_id, self.clock() + int(within))

    def _find(self, owner_repo: str, workflow: str, correlation_id: str, by: int) -> Run | None:
        def look() -> Run | None:
            for run in sorted(self.runs.values(), key=lambda r: -r.id):
                parsed = parse_run_name(run.name)
                # GitHub's list of a workflow's runs, asked for event=workflow_dispatch (as the client asks)
                listed = (run.repository, run.workflow, run.event) == (owner_repo, workflow, "workflow_dispatch")
                listed = listed and run.listed_at <= by
                if listed and parsed and parsed[1] == correlation_id:
                    return run.as_run()
            return None

        return self.faults.around("github.read", look, lambda: GitHubServerError("GitHub answered 500 (simulated)"))

    def get_run(self, owner_repo: str, run_id: int) -> Run:
        def look() -> Run:
            run = self.runs.get(run_id)
            if run is None or run.repository != owner_repo:
                raise GitHubNotFound(f"run {run_id} not found (simulated)")
            return run.as_run()

        return self.faults.around("github.read", look, lambda: GitHubUnreachable("GitHub timed out (simulated)"))

    def cancel_run(self, owner_repo: str, run_id: int) -> bool:
        def cancel() -> bool:
            run = self.runs.get(run_id)
            if run is None or run.status == "completed":
                return False
            self.finish(run, "cancelled")
            return True

        return self.faults.around("github.cancel", cancel, lambda: GitHubServerError("GitHub answered 500"))

    # ---------------------------------------------------------------------------------- the runs themselves
    def progress(self, run: RunTruth) -> None:
        if run.status == "queued":
            run.status = "in_progress"
            self.webhooks.append(("in_progress", run))

    def finish(self, run: RunTruth, conclusion: str) -> None:
        run.status, run.conclusion, run.completed_at = "completed", conclusion, self.clock()
        self.webhooks.append(("completed", run))


# ---------------------------------------------------------------------------------------------------- Slack
class Said(StrEnum):
    RESPONSE_URL = "response_url"
    CHANNEL = "channel"
    EPHEMERAL = "ephemeral"
    ROUTER = "router"
    """The router's own answer to a slash command (its HTTP body, which Slack shows the user)."""
    DIRECT = "direct"
    """A direct message from the app (``chat.postMessage`` to a user id): how a Home press is answered."""
    SLACK_ERROR = "slack-error"
    """Slack's own answer when the router did not answer in time: the user sees the command failed."""


@dataclass(frozen=True)
class Utterance:
    """One thing said in Slack: how, where, to whom (for ephemeral ones), and what."""

    how: Said
    where: str
    """The response_url, or the channel (a user id for a DM)."""
    user: str
    text: str
    at: int
    public: bool = False
    """Seen by the channel: a post there, or a ``response_url`` reply sent ``in_channel``."""
    message: Message | None = None
    """The message itself (its buttons), for a ``response_url`` reply."""


class SlackTwin(SlackReplies):
    """Slack's answers in memory: a ``response_url`` takes five posts within 30 minutes, as Slack's does."""

    def __init__(self, clock: Callable[[], int], faults: Faults) -> None:  # no WebClient
        self.clock = clock
        self.faults = faults
        self.said: list[Utterance] = []
        self.response_urls: dict[str, tuple[str, int]] = {}
        """Each response_url Slack issued: the user it answers, and when it was issued."""
        self.posts: Counter[str] = Counter()
        self.homes: dict[str, dict[str, Any]] = {}
        """Each user's App Home as last published."""
        self.home_publishes: list[tuple[str, str]] = []
        """Every ``views.publish``: to whom, under which correlation id."""

    def __repr__(self) -> str:
        return "SlackTwin()"

    def issue(self, response_url: str, user: str) -> None:
        self.response_urls[response_url] = (user, self.clock())

    def response_url_allowed(self, url: str) -> bool:
        return url in self.response_urls

    def reply(self, response_url: str, message: Message, *, correlation_id: str) -> bool:
        user = direct_message_user(response_url)
        if user is not None:  # a Home press: answered by direct message, as the real adapter does
            return self.post_message(user, message, correlation_id=correlation_id)
        issued = self.response_urls.get(response_url)
        if issued is None or self.posts[response_url] >= 5 or self.clock() - issued[1] > 30 * 60:
            return False

        def post() -> bool:
            self.posts[response_url] += 1
            public = message.response_type is ResponseType.IN_CHANNEL
            said = Utterance(Said.RESPONSE_URL, response_url, issued[0], message.text, self.clock(), public, message)
            self.said.append(said)
            return True

        return self._answered(post)

    def post_message(self, channel: str, message: Message, *, correlation_id: str) -> bool:
        if channel.startswith(("U", "W")):  # a user id: Slack opens the app's direct message with them
            direct = Utterance(Said.DIRECT, channel, channel, message.text, self.clock())
            return self._answered(lambda: self._say(direct))
        return self._answered(
            lambda: self._say(Utterance(Said.CHANNEL, channel, "", message.text, self.clock(), public=True))
        )

    def post_ephemeral(self, channel: str, user: str, message: Message, *, correlation_id: str) -> bool:
        return self._answered(lambda: self._say(Utterance(Said.EPHEMERAL, channel, user, message.text, self.clock())))

    def _say(self, utterance: Utterance) -> bool:
        self.said.append(utterance)
        return True

    def _answered(self, call: Callable[[], bool]) -> bool:
        """Slack's failures come back as ``False`` from the real client too (logged, never raised)."""
        try:
            return bool(self.faults.around("slack.post", call, lambda: RuntimeError("Slack answered 500")))
        except RuntimeError:
            return False

    def publish_home(self, user_id: str, view: Mapping[str, Any], *, correlation_id: str) -> Published:
        """``views.publish``: the user's Home kept, and by which message; a fault is a 429 (the caller retries)."""

        def publish() -> bool:
            self.homes[user_id] = dict(view)
            self.home_publishes.append((user_id, correlation_id))
            return True

        try:
            self.faults.around("slack.post", publish, lambda: RuntimeError("Slack answered 429"))
        except RuntimeError:
            return Published(ok=False, retry_after=1)
        return Published(ok=True)

    def to(self, user: str, response_urls: Iterable[str] = ()) -> list[Utterance]:
        """Everything ``user`` saw meant for them: their response_urls, their ephemerals and DMs."""
        urls = set(response_urls)
        return [u for u in self.said if u.user == user or u.where in urls]


# ------------------------------------------------------------------------------------- the DynamoDB side tables
class PendingTwin(PendingRequests):
    def __init__(self, faults: Faults) -> None:  # no table
        self.faults = faults
        self.kept: dict[str, str] = {}

    def keep(self, envelope: CommandEnvelope) -> None:
        self.faults.around(
            "pending.write",
            lambda: self.kept.__setitem__(envelope.request_id, envelope.to_json()),
            lambda: StoreThrottled("throttled (simulated)"),
        )

    def find(self, request_id: str) -> CommandEnvelope | None:
        body = self.kept.get(request_id)
        return CommandEnvelope.from_json(body) if body is not None else None

    def find_each(self, owners: Iterable[str]) -> Iterator[tuple[str, CommandEnvelope | None]]:
        for owner in owners:
            yield owner, self.find(owner)


class LedgerTwin(Ledger):
    """What was told and started, in memory; its writes fail as DynamoDB's do (botocore's ClientError)."""

    def __init__(self, faults: Faults, clock: Callable[[], float] | None = None) -> None:  # no table
        self.faults = faults
        self.items: dict[str, dict[str, Any]] = {}
        if clock is not None:
            self.clock = clock
        self.claims: Counter[str] = Counter()
        """How each conditional put went: over no item (``absent``), over a stale one (``stale``), over the
        holder's own (``own``), or ``refused`` — what DynamoDB's condition saw, for the invariants."""

    def _get(self, item_id: str) -> dict[str, Any] | None:
        return self.items.get(item_id)

    def _put(self, item_id: str, attributes: dict[str, Any]) -> None:
        self.faults.around(
            "ledger.write",
            lambda: self.items.__setitem__(item_id, {"id": {"S": item_id}, **attributes}),
            _throttled("PutItem"),
        )

    def _put_unless_held(self, item_id: str, attributes: dict[str, Any], *, holder: str, stale_since: int) -> bool:
        """The conditional ``PutItem``: ``attribute_not_exists(id) OR #at <= :stale OR #holder = :holder``."""

        def put() -> bool:
            old = self.items.get(item_id)
            if old is None:
                seen = "absent"
            elif int(old["at"]["N"]) <= stale_since:
                seen = "stale"
            elif old["holder"]["S"] == holder:
                seen = "own"
            else:
                self.claims["refused"] += 1
                return False
            self.claims[seen] += 1
            self.items[item_id] = {"id": {"S": item_id}, **attributes, "holder": {"S": holder}}
            return True

        return self.faults.around("ledger.write", put, _throttled("PutItem"))

    def _delete(self, item_id: str) -> None:
        self.faults.around("ledger.write", lambda: self.items.pop(item_id, None), _throttled("DeleteItem"))

    def _set_entry(self, item_id: str, name: str, key: str, value: dict[str, Any]) -> None:
        item = self.items.setdefault(item_id, {"id": {"S": item_id}})
        item.setdefault(name, {"M": {}})["M"][key] = value

    def _remove_entries(self, item_id: str, name: str, keys: list[str], *, older_than: int) -> None:
        entries = self.items.get(item_id, {}).get(name, {}).get("M", {})
        ats = [entries.get(key, {}).get("M", {}).get("at", {}).get("N") for key in keys]  # a gone one fails too
        if any(at is None or int(at) >= older_than for at in ats):
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem")
        for key in keys:
            entries.pop(key, None)


class HistoryTwin(HistoryTable):
    def __init__(self) -> None:  # no table
        self.events: dict[str, HistoryEvent] = {}

    def put(self, event: HistoryEvent) -> None:
        self.events[f"{event.lock_key}|{event.sort_key}"] = event

    def recent(self, lock_key: str, limit: int = 10) -> list[HistoryEvent]:
        mine = sorted((e for e in self.events.values() if e.lock_key == lock_key), key=lambda e: e.sort_key)
        return list(reversed(mine))[:limit]

    def since(self, start: int) -> Iterator[HistoryEvent]:
        return iter([e for e in self.events.values() if e.epoch >= start])

    def newest_first(self, lock_key: str, start: int, page_size: int = 100) -> Iterator[HistoryEvent]:
        return iter([e for e in self.recent(lock_key, limit=len(self.events)) if e.epoch >= start])


class IdempotencyTwin(BasePersistenceLayer):
    """Powertools Idempotency's persistence in memory: Powertools owns the lifecycle; this keeps records with the
    conditions the DynamoDB layer writes (a record exists unless it expired, or is INPROGRESS past its Lambda's
    deadline) — the deadline measured on the simulation's clock: the worker's timeout after it started."""

    def __init__(self, clock: Callable[[], int], faults: Faults, *, worker_timeout: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.clock = clock
        self.faults = faults
        self.worker_timeout = worker_timeout
        self.records: dict[str, tuple[DataRecord, int]] = {}

    def _live(self, key: str) -> DataRecord | None:
        kept = self.records.get(key)
        if kept is None:
            return None
        record, started = kept
        if record.status == "INPROGRESS" and self.clock() > started + self.worker_timeout:
            return None  # its Lambda is long dead: the record no longer blocks
        return record

    def _get_record(self, idempotency_key: str) -> DataRecord:
        record = self._live(idempotency_key)
        if record is None:
            raise IdempotencyItemNotFoundError
        return record

    def _put_record(self, data_record: DataRecord) -> None:
        old = self._live(data_record.idempotency_key)
        if old is not None:
            raise IdempotencyItemAlreadyExistsError(old_data_record=old)
        self.faults.around(
            "idempotency.write",
            lambda: self.records.__setitem__(data_record.idempotency_key, (data_record, self.clock())),
            lambda: StoreThrottled("throttled (simulated)"),
        )

    def _update_record(self, data_record: DataRecord) -> None:
        """The result, written after the handler returned — a write that can fail too, leaving the record
        INPROGRESS until its Lambda's deadline passes (and the message, failed, comes back)."""
        started = self.records.get(data_record.idempotency_key, (data_record, self.clock()))[1]
        self.faults.around(
            "idempotency.write",
            lambda: self.records.__setitem__(data_record.idempotency_key, (data_record, started)),
            lambda: StoreThrottled("throttled (simulated)"),
        )

    def _delete_record(self, data_record: DataRecord) -> None:
        self.records.pop(data_record.idempotency_key, None)


# ------------------------------------------------------------------------------------------------------- SQS
@dataclass
class QueuedMessage:
    id: str
    body: str
    kind: str
    visible_at: int
    receive_count: int = 0
    correlation_id: str = ""


@dataclass
class QueueTwin:
    """One SQS queue: at-least-once, a visibility timeout, ``maxReceiveCount`` then the DLQ; no order promised."""

    name: Queue
    visibility: int
    max_receive_count: int
    messages: dict[str, QueuedMessage] = field(default_factory=dict)
    dead: list[QueuedMessage] = field(default_factory=list)

    def visible(self, now: int) -> list[QueuedMessage]:
        return sorted((m for m in self.messages.values() if m.visible_at <= now), key=lambda m: m.id)

    def receive(self, message: QueuedMessage, now: int) -> bool:
        """Hand ``message`` to a consumer (``False``: it went to the DLQ instead, its receives spent)."""
        if message.receive_count >= self.max_receive_count:
            self.dead.append(self.messages.pop(message.id))
            return False
        message.receive_count += 1
        message.visible_at = now + self.visibility
        return True

    def delete(self, message: QueuedMessage) -> None:
        self.messages.pop(message.id, None)


class QueuesTwin:
    """Every command queue, and :func:`workers.adapters.queues.enqueue`'s twin (:meth:`send`)."""

    def __init__(self, clock: Callable[[], int], faults: Faults, *, visibility: int, max_receive_count: int) -> None:
        self.clock = clock
        self.faults = faults
        self.queues = {q: QueueTwin(q, visibility, max_receive_count) for q in Queue}
        self._ids = itertools.count(1)

    def send(self, config: Config, kind: str, body: str, *, dedup_id: str, group_id: str, correlation_id: str) -> str:
        from workers.adapters.queues import NotQueued  # noqa: PLC0415 — the real adapter's error, raised as it would

        def put() -> str:
            message = QueuedMessage(f"m{next(self._ids):05d}", body, kind, self.clock(), 0, correlation_id)
            self.queues[QUEUE_FOR_KIND[kind]].messages[message.id] = message
            return message.id

        return self.faults.around("sqs.send", put, lambda: NotQueued("SQS answered 500 (simulated)"))

    def record(self, queue: Queue, message: QueuedMessage) -> dict[str, Any]:
        """The message as Lambda's SQS event record shows it."""
        return {
            "messageId": message.id,
            "receiptHandle": f"rh-{message.id}-{message.receive_count}",
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.receive_count),
                "SentTimestamp": "0",
                "SenderId": "twin",
                "ApproximateFirstReceiveTimestamp": "0",
            },
            "messageAttributes": {
                "kind": {"stringValue": message.kind, "dataType": "String"},
                "correlationId": {"stringValue": message.correlation_id, "dataType": "String"},
            },
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:ca-central-1:123456789012:chatops-{queue.value}",
            "awsRegion": "ca-central-1",
        }


def _throttled(operation: str) -> Callable[[], ClientError]:
    return lambda: ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, operation)


def _iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
