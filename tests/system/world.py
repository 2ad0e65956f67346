"""The whole system in one process, over the twins: Slack users typing commands, the router answering them, SQS,
every worker, GitHub running and reporting runs, the reaper every minute, and a clock the simulation moves.

Nothing of ours is replaced: the router and the workers run as Lambda runs them — their ``handler(event, context)``
on real-shaped events — and find the world through :func:`workers.adapters.runtime.using`. The :class:`World`
keeps the truth the invariants read: each Slack request (by ``trigger_id``) and the correlation ids its deliveries
were given, each GitHub run, each word said in Slack.

What the simulation assumes of the real world, and says here once:

- Slack, DynamoDB, SQS and GitHub recover: a fault plan is finite, so every call succeeds within a bounded number
  of attempts, and :meth:`World.settle` plans none.
- GitHub reports every run it started as finished within a bounded time (:meth:`World.settle` finishes them all);
  until then a run ``in_progress`` may be renewed up to its limit.
- SQS delivers every message at least once, in any order, again after its visibility timeout, and after
  ``maxReceiveCount`` receives moves it to the DLQ.
- The reaper runs every minute (each minute the clock crosses, :meth:`World.tick` sweeps once).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from lockcore import machine
from lockcore.record import LockRecord, Status
from tests.system.twins import (
    Died,
    Faults,
    GitHubTwin,
    HistoryTwin,
    IdempotencyTwin,
    LedgerTwin,
    LockTableTwin,
    PendingTwin,
    QueuedMessage,
    QueuesTwin,
    RunTruth,
    Said,
    SlackTwin,
    Utterance,
)
from tests.workers import function_url
from tests.workers.worker_world import Context
from workers.adapters import runtime
from workers.handlers import build as build_lambda
from workers.handlers import deadletter as deadletter_lambda
from workers.handlers import history as history_lambda
from workers.handlers import reaper as reaper_lambda
from workers.handlers import router
from workers.handlers import status as status_lambda
from workers.handlers import webhook as webhook_lambda
from workers.protocol.config import Queue
from workers.protocol.workflow import CORRELATION_ID_INPUT, LOCK_KEY_INPUT

REPOSITORY = "example-org/platform"
CHANNEL = "C0BUILDS"
ADMIN = "U0ADMIN"
USERS = ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE")
REAPER_PERIOD = 60
WORKER_TIMEOUT = 45
VISIBILITY = 6 * WORKER_TIMEOUT
MAX_RECEIVE_COUNT = 5
WINDOW_MINUTES = 10
CONFIG = f"""
components = ["router", "api"]
environments = ["plt", "prod"]

[github]
repository = "{REPOSITORY}"

[slack]
team_ids = []
allow_any_workspace = true
response_url_hosts = ["hooks.slack.com"]

[commands.build]
workflow = "build.yml"
lease_seconds = 600

[commands.deploy]
workflow = "deploy.yml"
lease_seconds = 1800

[authorization]
admins = {{ users = ["{ADMIN}"] }}

[authorization.build]
"*" = {{ anyone = true }}

[authorization.deploy]
"*" = {{ anyone = true }}
""" + "".join(
    f"""
[freeze_windows.prod.h{hour:02d}]
reason = "the hourly freeze of prod"
zone = "Europe/Berlin"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "{hour:02d}:00"
end = "{hour:02d}:{WINDOW_MINUTES:02d}"
"""
    for hour in range(24)
)
"""Prod freezes for the first minutes of every hour (Berlin time): the clock crosses a window's start or end every
hour, so the reaper applies and lifts freeze windows while deploys, faults and sweeps go on."""
HANDLERS = {
    Queue.BUILD: build_lambda.handler,
    Queue.DEPLOY: build_lambda.handler,
    Queue.STATUS: status_lambda.handler,
    Queue.GITHUB: webhook_lambda.handler,
}


@dataclass
class SlackRequest:
    """One thing a user did in Slack: its identity (``trigger_id``) is kept across every delivery of it."""

    trigger_id: str
    user: str
    text: str
    command: str
    response_url: str
    typed_at: int
    correlation_ids: set[str] = field(default_factory=set)
    """What the router called each delivery of it (one, when identity is kept)."""
    request_ids: set[str] = field(default_factory=set)

    @property
    def is_press(self) -> bool:
        return not self.command.startswith("/")

    @property
    def form(self) -> str:
        return function_url.slash_form(
            self.text,
            command=self.command,
            user_id=self.user,
            user_name=self.user.removeprefix("U0").lower(),
            channel_id=CHANNEL,
            trigger_id=self.trigger_id,
            response_url=self.response_url,
        )


class World:
    def __init__(self, config_path: Path, start: int | None = None) -> None:
        self.config_path = config_path
        self.now = int(time.time()) if start is None else start
        self.faults = Faults()
        clock = lambda: self.now  # noqa: E731 — the one clock every twin reads
        self.history = HistoryTwin()
        self.store = LockTableTwin(clock, self.faults, self.history)
        self.github = GitHubTwin(clock, self.faults)
        self.slack = SlackTwin(clock, self.faults)
        self.pending = PendingTwin(self.faults)
        self.ledger = LedgerTwin(self.faults)
        self.idempotency = IdempotencyTwin(clock, self.faults, worker_timeout=WORKER_TIMEOUT)
        self.sqs = QueuesTwin(clock, self.faults, visibility=VISIBILITY, max_receive_count=MAX_RECEIVE_COUNT)
        self.requests: dict[str, SlackRequest] = {}
        self.webhooks_sent = 0
        """How many of :attr:`GitHubTwin.webhooks` GitHub has tried to deliver (the rest are still to come)."""
        self.hostile_runs: set[int] = set()
        self.lost_completions: set[int] = set()
        """Runs whose ``completed`` webhook GitHub never delivered."""
        self.dispatched_under: dict[int, tuple[str, int] | None] = {}
        """Each run: the (owner, token) that held its lock when GitHub created it (``None``: nobody)."""
        self.written_before: dict[int, int] = {}
        """Each run: how many lock items had been written when GitHub created it (``store.written[:n]``)."""
        self.home_events: dict[str, str] = {}
        """Each ``app_home_opened`` Slack sent: its ``event_id`` and whose Home."""
        self.home_opened: dict[str, int] = {}
        """When each user last opened the Home."""
        self._streamed: dict[str, Any] = {}
        """The lock table as the stream's writer last saw it (:meth:`stream`)."""
        self._triggers = itertools.count(1)
        self._deliveries = itertools.count(1)
        self._last_sweep = self.now

    @contextmanager
    def running(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
        monkeypatch.setenv("CHATOPS_CONFIG", str(self.config_path))
        monkeypatch.setenv("SLACK_SIGNING_SECRET", function_url.SIGNING_SECRET)
        monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", function_url.WEBHOOK_SECRET)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-twin")
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_twin")
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        monkeypatch.delenv("ENABLE_DISTRIBUTED_LOCK", raising=False)
        adapters = runtime.Adapters(
            lock_store=self.store,
            slack=self.slack,
            github=self.github,
            idempotency=self.idempotency,
            pending=self.pending,
            history=self.history,
            ledger=self.ledger,
            send=self.sqs.send,
        )
        quiet = [logging.getLogger(name) for name in (runtime.SERVICE, "chatops-router", "workers", "lockcore")]
        levels = [log.level for log in quiet]
        for log in quiet:
            log.setLevel(logging.CRITICAL)
        original = self.github.start
        self.github.start = self._note_who_held(original)  # type: ignore[method-assign]
        try:
            with runtime.using(adapters):
                yield self
        finally:
            for log, level in zip(quiet, levels, strict=True):
                log.setLevel(level)

    def _note_who_held(self, start: Any) -> Any:
        def start_and_note(owner_repo: str, workflow: str, ref: str, inputs: dict[str, str], **kw: Any) -> RunTruth:
            holder = self.holder(inputs.get(LOCK_KEY_INPUT, ""))
            written = len(self.store.written)
            run: RunTruth = start(owner_repo, workflow, ref, inputs, **kw)
            self.dispatched_under[run.id] = (holder.owner, holder.token) if holder is not None else None
            self.written_before[run.id] = written
            return run

        return start_and_note

    def holder(self, lock_key: str) -> LockRecord | None:
        """The live holder of ``lock_key`` now, as the table says (no fault: this is the simulation looking)."""
        item = self.store.items().get(lock_key)
        return LockRecord.from_item(item) if item is not None and machine.is_live(item, self.now) else None

    # ------------------------------------------------------------------------------------------------ Slack
    def type(self, user: str, text: str, command: str = "/build") -> SlackRequest:
        n = next(self._triggers)
        request = SlackRequest(
            trigger_id=f"{1000 + n}.{n}.t{n:04d}",
            user=user,
            text=text,
            command=command,
            response_url=f"https://hooks.slack.com/commands/T0TEAM/{n}/r{n:04d}",
            typed_at=self.now,
        )
        self.requests[request.trigger_id] = request
        self.slack.issue(request.response_url, user)
        self.deliver_slash(request)
        return request

    def deliver_slash(self, request: SlackRequest) -> dict[str, Any]:
        """The router receives ``request`` (again, when Slack or a proxy resubmits it)."""
        sent_before = self._on_the_queues()
        body = request.form
        try:
            answer = router.handler(function_url.event("/slack/commands", body, function_url.slack_headers(body)), None)
        except Died:  # the router died: Slack shows the user its own error ("operation_timeout")
            answer = {"statusCode": 504}
        assert answer["statusCode"] in (200, 504), answer
        if answer["statusCode"] != 200:
            self.slack.said.append(Utterance(Said.SLACK_ERROR, request.response_url, request.user, "timeout", self.now))
        elif not (text := _answer_text(answer)).startswith("⏳"):  # the router's own answer (usage, could not queue)
            self.slack.said.append(Utterance(Said.ROUTER, request.response_url, request.user, text, self.now))
        self._note_queued(request, sent_before)
        return answer

    def _on_the_queues(self) -> set[str]:
        return {m.id for q in self.sqs.queues.values() for m in q.messages.values()}

    def _note_queued(self, request: SlackRequest, sent_before: set[str]) -> None:
        """The ids the router gave what it queued for ``request`` since ``sent_before``."""
        for queue in self.sqs.queues.values():
            for message in queue.messages.values():
                if message.id not in sent_before:
                    envelope = json.loads(message.body)
                    request.correlation_ids.add(str(envelope.get("correlationId")))
                    request.request_ids.add(str(envelope.get("requestId")))

    # -------------------------------------------------------------------------------------------------- SQS
    def deliver_dead_letters(self) -> None:
        """The dead-letter worker takes every message its command DLQs hold (the github DLQ has no consumer)."""
        for queue, twin in self.sqs.queues.items():
            while twin.dead and queue is not Queue.GITHUB:
                message = twin.dead.pop(0)
                record = self.sqs.record(queue, message)
                record["eventSourceARN"] += "-dlq"
                try:
                    deadletter_lambda.handler({"Records": [record]}, Context())
                except Died:
                    twin.dead.append(message)  # still in the DLQ: taken again
                    return
                finally:
                    runtime.metrics.clear_metrics()

    def deliver(self, queue: Queue, message: QueuedMessage) -> None:
        """One receive of ``message`` by its worker: deleted when handled, back after its visibility otherwise."""
        twin = self.sqs.queues[queue]
        if not twin.receive(message, self.now):
            return
        event = {"Records": [self.sqs.record(queue, message)]}
        try:
            answer = HANDLERS[queue](event, Context())
        except Died:
            return  # the Lambda died: the message comes back when its visibility ends
        finally:
            runtime.metrics.clear_metrics()  # EMF lines on stdout say nothing to a simulation
        if not answer.get("batchItemFailures"):
            twin.delete(message)

    # ------------------------------------------------------------------------------------------------ GitHub
    def send_webhook(self, index: int, *, keep: bool = False) -> None:
        """GitHub delivers one of the events it has not delivered yet (not necessarily the oldest)."""
        pending = self.github.webhooks[self.webhooks_sent :]
        if not pending:
            return
        action, run = pending[index % len(pending)]
        if not keep:  # delivered (or lost): GitHub moves on
            position = self.webhooks_sent + index % len(pending)
            self.github.webhooks.insert(self.webhooks_sent, self.github.webhooks.pop(position))
            self.webhooks_sent += 1
        self.post_webhook(action, run)

    def press(self, user: str, action_id: str, value: str) -> SlackRequest:
        """``user`` presses a button (the unlock confirm carries ``lock key:token``)."""
        n = next(self._triggers)
        response_url = f"https://hooks.slack.com/actions/T0TEAM/{n}/a{n:04d}"
        self.slack.issue(response_url, user)
        press = SlackRequest(f"{2000 + n}.{n}.p{n:04d}", user, value, action_id, response_url, self.now)
        self.requests[press.trigger_id] = press
        self.deliver_press(press)
        return press

    def deliver_press(self, press: SlackRequest) -> None:
        """The router receives the press (again, when Slack retries it: the same ``trigger_id``)."""
        user, response_url, sent_before = press.user, press.response_url, self._on_the_queues()
        body = function_url.interaction_form(
            press.command,
            press.text,
            user={"id": user, "username": user.lower(), "name": user, "team_id": "T0TEAM"},
            trigger_id=press.trigger_id,
            response_url=response_url,
            channel={"id": CHANNEL, "name": "builds"},
        )
        try:
            answer = router.handler(
                function_url.event("/slack/interactions", body, function_url.slack_headers(body)), None
            )
        except Died:
            answer = {"statusCode": 504}
        assert answer["statusCode"] in (200, 503, 504), answer
        if answer["statusCode"] != 200:  # Slack marks the button's message with its own error for the user
            self.slack.said.append(Utterance(Said.SLACK_ERROR, response_url, user, "error", self.now))
        self._note_queued(press, sent_before)

    def open_home(self, user: str, retries: int) -> None:
        """``user`` opens the App Home: Slack's signed event to ``/slack/events``, and ``retries`` more deliveries
        of it (``X-Slack-Retry-Num``), as when it did not see the first acknowledged in time."""
        event_id = f"Ev{next(self._triggers):06d}"
        self.home_events[event_id] = user
        self.home_opened[user] = self.now
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": "T0TEAM",
                "api_app_id": "A0APP",
                "event_id": event_id,
                "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"},
            }
        )
        for attempt in range(retries + 1):
            headers = {**function_url.slack_headers(body), "content-type": "application/json"}
            if attempt:
                headers |= {"x-slack-retry-num": str(attempt), "x-slack-retry-reason": "http_timeout"}
            try:
                answer = router.handler(function_url.event("/slack/events", body, headers), None)
            except Died:
                continue  # Slack saw no answer: it retries (the next attempt)
            assert answer["statusCode"] in (200, 503), answer

    def stream(self) -> None:
        """The lock table's stream: a batch of the changes since the last one reaches the history writer, which
        asks for one App Home refresh (its history it keeps through the table twin already)."""
        items = self.store.items()
        if items == self._streamed:
            return
        try:
            history_lambda.refresh_homes([{"eventID": f"s{next(self._deliveries)}"}])
        except Died:
            return  # the writer died: the batch comes again
        self._streamed = items

    def post_signed(self, path: str, payload: str) -> dict[str, Any]:
        """A body signed as Slack (interactions: in the ``payload`` field) or GitHub signs it, to the router."""
        if path == "/github/webhook":
            body = payload.encode()
            return router.handler(function_url.event(path, body, function_url.github_headers(body)), None)
        form = urlencode({"payload": payload})
        return router.handler(function_url.event(path, form, function_url.slack_headers(form)), None)

    def post_webhook(self, action: str, run: RunTruth) -> None:
        body = json.dumps(run.payload(action)).encode()
        headers = function_url.github_headers(body, delivery=f"d-{next(self._deliveries)}")
        try:
            answer = router.handler(function_url.event("/github/webhook", body, headers), None)
        except Died:
            answer = {"statusCode": 504}
        # 503 when SQS would not take it, 504 when the router died: GitHub records a failed delivery and does not
        # retry it on its own — for the run's end, as good as lost (the reaper speaks for a run still holding a lock)
        assert answer["statusCode"] in (202, 200, 503, 504), answer
        if answer["statusCode"] >= 500 and action == "completed":
            self.lost_completions.add(run.id)

    def lose_webhook(self) -> None:
        if self.webhooks_sent < len(self.github.webhooks):
            action, run = self.github.webhooks[self.webhooks_sent]
            if action == "completed":
                self.lost_completions.add(run.id)
            self.webhooks_sent += 1

    # -------------------------------------------------------------------------------------------------- time
    def tick(self, seconds: int) -> None:
        """Time passes, and the system does not stand still meanwhile: every minute the clock crosses, the workers
        take what their queues show, GitHub delivers what it has to deliver, and the reaper sweeps once. (Lateness
        within a minute, and any order, are the rules' to choose; SQS's redelivery after a failure is minutes.)"""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self._last_sweep + REAPER_PERIOD)
            if self.now >= self._last_sweep + REAPER_PERIOD:
                self.work()
                self.sweep()

    def work(self) -> None:
        """One round of everything that runs without being asked: queued messages, dead letters, webhooks."""
        self.stream()
        for queue in HANDLERS:
            for message in self.sqs.queues[queue].visible(self.now):
                self.deliver(queue, message)
        self.deliver_dead_letters()
        while self.webhooks_sent < len(self.github.webhooks):
            self.send_webhook(0)

    def sweep(self) -> None:
        self._last_sweep = self.now
        try:
            reaper_lambda.handler({"source": "aws.events", "time": "now"}, Context())
        except Died:
            pass
        except Exception:
            logging.getLogger(__name__).debug("sweep failed", exc_info=True)
        finally:
            runtime.metrics.clear_metrics()

    # ---------------------------------------------------------------------------------------------- settling
    def settle(self, rounds: int = 400) -> None:
        """The world recovers and the system finishes what it started: no more faults, every message delivered,
        every run finished and reported, the reaper sweeping — until nothing is left to do."""
        self.faults.clear()
        for _ in range(rounds):
            busy = any(q.visible(self.now) or q.dead for q in self.sqs.queues.values())
            busy = busy or self.webhooks_sent < len(self.github.webhooks)
            busy = busy or self.store.items() != self._streamed  # a change the stream has not brought yet
            self.work()
            for run in self.github.runs.values():
                if run.status != "completed":
                    self.github.progress(run) if run.status == "queued" else self.github.finish(run, "success")
                    busy = True
            waiting = any(q.messages for q in self.sqs.queues.values())
            # A lease that ran out (a freeze window's ends so) is not settled until the reaper has recorded it.
            live = any(str(item.get("status")) == Status.IN_PROGRESS.value for item in self.store.items().values())
            if not busy and not waiting and not live:
                return
            self.tick(REAPER_PERIOD)
        raise AssertionError("the system did not settle")

    def live_locks(self) -> dict[str, str]:
        """Every live lock's key and owner."""
        return {
            key: str(item.get("owner")) for key, item in self.store.items().items() if machine.is_live(item, self.now)
        }

    # ---------------------------------------------------------------------------------------------- reading
    def request_of_correlation(self, correlation_id: str) -> SlackRequest | None:
        for request in self.requests.values():
            if correlation_id in request.correlation_ids:
                return request
        return None

    def runs_of(self, request: SlackRequest) -> list[RunTruth]:
        return [
            run
            for run in self.github.runs.values()
            if run.id not in self.hostile_runs and run.inputs.get(CORRELATION_ID_INPUT) in request.correlation_ids
        ]

    def answered(self, request: SlackRequest) -> list[str]:
        """What was said through this request's own response_url: the answers that are surely about it."""
        return [u.text for u in self.slack.said if u.where == request.response_url]

    def told(self, request: SlackRequest) -> list[str]:
        """Everything the requester may have read about it: its response_url, ephemerals and DMs to them, and what
        the channel was told with a mention of them (which notifies them)."""
        mention = f"<@{request.user}>"
        return [
            u.text
            for u in self.slack.said
            if u.where == request.response_url
            or u.user == request.user
            or (u.how is Said.CHANNEL and mention in u.text)
        ]


def write_config(folder: Path) -> Path:
    path = folder / "chatops.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def _answer_text(answer: dict[str, Any]) -> str:
    """The text of a slash command's HTTP answer (Slack shows it to the user), or ``""``."""
    try:
        body = json.loads(str(answer.get("body") or "{}"))
    except ValueError:
        return ""
    return str(body.get("text", "")) if isinstance(body, dict) else ""
