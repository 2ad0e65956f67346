"""GitHub's ``workflow_run`` webhooks the way they reach the github worker: from the GitHub stand-in's run events,
signed, through the router's ``/github/webhook`` onto the github queue (SQS on moto), then drained into a
real-shaped SQS event for :func:`workers.handlers.webhook.handler`. Plus a simulated clock and the EventBridge event the
reaper is scheduled with.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from lockcore.dynamodb import DynamoDBLockStore
from tests.workers import function_url as f
from tests.workers.sqs_events import drain
from tests.workers.worker_world import LOCK_TABLE, World
from workers.adapters import queues, runtime
from workers.flows.build import BuildWorker
from workers.handlers import router
from workers.protocol.config import current_config
from workers.protocol.dispatch import Job
from workers.protocol.envelope import CommandEnvelope

GITHUB_QUEUE = "chatops-github"


class SimulatedClock:
    """Epoch seconds that move only when told: for leases that would take minutes to run out."""

    def __init__(self, start: float | None = None) -> None:
        self.at = time.time() if start is None else start

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


def store_at(clock: SimulatedClock) -> DynamoDBLockStore:
    """The lock table, read and written at the clock's time."""
    return DynamoDBLockStore(LOCK_TABLE, clock=clock)


def build_at(clock: SimulatedClock, envelope: CommandEnvelope) -> None:
    """The build worker's run of ``envelope``, with the clock's time (a lock taken in the past, for instance)."""
    config = current_config()
    worker = BuildWorker(
        config, store_at(clock), runtime.github_client(), runtime.slack_replies(), clock=clock, look_for_run_seconds=1
    )
    worker.run(Job.of(envelope, config), redelivered=False)


def scheduled_event() -> dict[str, Any]:
    """What EventBridge sends a ``rate(1 minute)`` rule's target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "ca-central-1",
        "resources": ["arn:aws:events:ca-central-1:123456789012:rule/chatops-reaper"],
        "detail": {},
    }


@dataclass
class GitHubEvents:
    """The stand-in's run events as they happen, and their delivery as webhooks."""

    world: World
    queue_url: str
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, action: str, run: Any) -> None:
        with self._lock:
            self.seen.append((action, dict(run)))

    def events(self, action: str | None = None, run_id: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        self.world.github.drain()
        with self._lock:
            return [
                (a, run)
                for a, run in self.seen
                if (action is None or a == action) and (run_id is None or run["id"] == run_id)
            ]

    def post(self, action: str, run: dict[str, Any], *, delivery: str | None = None) -> int:
        """One signed delivery through the router, as GitHub posts it; the router's status code."""
        body = json.dumps(
            {
                "action": action,
                "workflow_run": run,
                "workflow": {"path": run.get("path", "")},
                "repository": run.get("repository", {}),
                "sender": {"login": "github-actions[bot]"},
            }
        ).encode()
        headers = f.github_headers(body, delivery=delivery or str(uuid.uuid4()))
        answer = router.handler(f.event("/github/webhook", body, headers), None)
        return int(answer["statusCode"])

    def post_all(self, action: str | None = None, run_id: int | None = None) -> None:
        for seen_action, run in self.events(action, run_id):
            assert self.post(seen_action, run) == 202

    def queued(self) -> dict[str, Any]:
        """Everything on the github queue, as the Lambda event source would hand it over."""
        return drain(self.queue_url)


@contextlib.contextmanager
def github_events(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubEvents]:
    """The router's webhook secret and github queue, and a recorder on the stand-in's run events."""
    queue_url = boto3.client("sqs").create_queue(QueueName=GITHUB_QUEUE)["QueueUrl"]
    monkeypatch.setenv("GITHUB_QUEUE_URL", queue_url)
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", f.WEBHOOK_SECRET)
    queues.forget_clients()
    events = GitHubEvents(world, queue_url)
    world.github.on_workflow_run(events.record)
    try:
        yield events
    finally:
        queues.forget_clients()
