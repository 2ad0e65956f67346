"""The App Home benchmark (`nox -s bench`): ``views.publish`` calls per build for N recent viewers, one refresh per
stream batch (the path before refreshes coalesced, kept here as the baseline) against the pending-refresh mark.

A real build runs through the build worker on moto and the GitHub and Slack stand-ins (the lock's acquire, then
its notes), and the run's end releases the lock. Each write of the lock item reaches the history writer as a
stream batch of its own (the writes are seconds apart: the case that republished every Home once per write), and
the status worker takes the status queue as the schedule says:

- **while a refresh publishes** — the worker takes the first refresh as soon as it is queued, and the build's
  other writes land while it publishes (at 200 ms a ``views.publish``, ten viewers take two seconds); it takes
  the queue again when they have landed, and once more after the run's end;
- **spaced out** — it takes each refresh before the next write lands: nothing to coalesce, the same count.

Publishes are counted by the Slack stand-in (every ``views.publish`` it accepted). Not a test of speed; it exits 1
when a viewer's last Home does not show the lock free and its release, or a path published no Home at all.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import boto3
import pytest

from tests.bench.report import Result, expect, machine_line, run
from tests.workers import sqs_events as sqs
from tests.workers.worker_world import LOCK_TABLE, Context, World, create_queues, running_world, sqs_event
from workers.adapters import runtime
from workers.adapters.history_table import HistoryTable
from workers.adapters.queues import enqueue
from workers.flows.history import write_changes
from workers.handlers import build, history
from workers.handlers import status as status_lambda
from workers.local.streams import StreamPoller
from workers.protocol.commands import Dispatch
from workers.protocol.config import Action, Queue, current_config
from workers.protocol.envelope import HomeRefresh

KEY: Final = "build-router-plt"
HISTORY_TABLE: Final = "chatops-lock-history-bench"
PATHS: Final = ("one refresh per batch", "coalesced")
SCHEDULES: Final = ("while a refresh publishes", "spaced out")
Batch = dict[str, Any]


def one_refresh_per_batch(event: Batch, context: Any) -> None:
    """The history writer as it was before refreshes coalesced: its history, then a refresh for every batch."""
    records = event["Records"]
    write_changes(records, runtime.history())
    correlation_id = str(uuid.uuid4())
    refresh = HomeRefresh(correlation_id, int(time.time()))
    enqueue(current_config(), refresh.kind, refresh.to_json(), dedup_id=correlation_id, group_id=refresh.kind,
            correlation_id=correlation_id)  # fmt: skip


WRITERS: Final[dict[str, Callable[[Batch, Any], object]]] = {
    "one refresh per batch": one_refresh_per_batch,
    "coalesced": history.handler,
}


@contextmanager
def build_world() -> Iterator[tuple[World, str, str]]:
    """The workers' world (moto, the stand-ins), its lock table streamed, its queues and history table made."""
    with pytest.MonkeyPatch.context() as env, running_world(env) as world:
        env.setenv("HISTORY_TABLE_NAME", HISTORY_TABLE)
        env.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        HistoryTable(HISTORY_TABLE).create_table()
        client = boto3.client("dynamodb")
        client.update_table(
            TableName=LOCK_TABLE, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        )
        stream_arn = str(client.describe_table(TableName=LOCK_TABLE)["Table"]["LatestStreamArn"])
        queue = create_queues(env)[Queue.STATUS]
        runtime.reset()
        yield world, stream_arn, queue


def publishes_per_build(viewers: int, path: str, schedule: str) -> Result:
    """One build, watched by ``viewers``: how many ``views.publish`` calls, stream batches and refreshes."""
    with build_world() as (world, stream_arn, queue):
        now = int(time.time())
        users = [f"U0VIEW{index:03d}" for index in range(viewers)]
        for user in users:
            runtime.ledger().home_opened(user, 0, now)
        batches: list[Batch] = []
        poller = StreamPoller(
            boto3.client("dynamodbstreams"),
            stream_arn,
            lambda event, _: batches.extend({"Records": [record]} for record in event["Records"]),
            Context,
        )
        refreshes = identical = 0
        last: dict[str, Any] = {}

        def take() -> None:
            nonlocal refreshes, identical
            event = sqs.drain(queue)
            refreshes += len(event["Records"])
            expect(not status_lambda.handler(event, Context()).get("batchItemFailures"), "a refresh failed")
            for user in users:  # what a digest kept beside each viewer would have saved
                view = world.slack.home(user)
                identical += int(bool(event["Records"]) and view == last.get(user))
                last[user] = view

        def writes_land(phase: Callable[[], object]) -> None:
            phase()
            poller.drain()
            landed, batches[:] = list(batches), []
            for index, batch in enumerate(landed):
                WRITERS[path](batch, Context())
                if schedule == "spaced out" or index in (0, len(landed) - 1):
                    take()
            stats["batches"] += len(landed)

        stats = {"batches": 0}
        envelope = world.envelope("b1", Dispatch(Action.BUILD, "router", "plt"), user="bob")
        writes_land(lambda: build.handler(sqs_event(envelope), Context()))
        held = world.lock(KEY)
        expect(held is not None, "the build took no lock")
        assert held is not None
        writes_land(lambda: world.store.release(KEY, held.owner, held.token, held.status.COMPLETED))
        for user in users:
            view = world.slack.home(user)
            expect(view is not None and "release by" in str(view), f"{user} was not shown the release")
            expect(f"*`{KEY}`*" not in str(view).split("Lately")[0], f"{user} still sees the lock held")
        published = world.slack.homes_published()
        expect(published > 0, "no Home was published")
        return {"batches": stats["batches"], "refreshes": refreshes, "publishes": published, "identical": identical}


def measure(viewers: Sequence[int]) -> Result:
    rows = []
    for schedule in SCHEDULES:
        for count in viewers:
            before = publishes_per_build(count, PATHS[0], schedule)
            after = publishes_per_build(count, PATHS[1], schedule)
            expect(before["publishes"] == before["batches"] * count, "the baseline did not refresh once a batch")
            rows.append(
                {
                    "schedule": schedule,
                    "viewers": count,
                    "batches": before["batches"],
                    "before": before,
                    "after": after,
                    "ratio": after["publishes"] / before["publishes"],
                }
            )
    return {"rows": rows}


def markdown(result: Result) -> str:
    lines = [
        "**`views.publish` per build** — a build through the build worker (acquire, notes) and its end (release), "
        "each write a stream batch of its own; publishes counted by the Slack stand-in",
        "",
        "| schedule | viewers | stream batches | refreshes before | publishes before | refreshes after "
        "| publishes after | ratio after / before | after, identical to the viewer's last |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        before, after = row["before"], row["after"]
        lines.append(
            f"| {row['schedule']} | {row['viewers']} | {row['batches']} | {before['refreshes']} | "
            f"{before['publishes']} | {after['refreshes']} | {after['publishes']} | {row['ratio']:.2f} | "
            f"{after['identical']} |"
        )
    return "\n".join([*lines, "", machine_line(result)])


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.home", description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 10, 50], help="recent viewers, each a run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Result:
    args = parse(argv)
    workers = logging.getLogger(runtime.SERVICE)
    level = workers.level
    workers.setLevel(logging.WARNING)  # the workers' info lines say nothing here
    try:
        return run(lambda: measure(args.viewers), markdown, as_json=args.json)
    finally:  # called from a test too: the tests after it in the process read the workers' info lines
        workers.setLevel(level)


if __name__ == "__main__":
    main()
