"""Every ``ChatOps`` metric the dashboard draws or an alarm watches is one the workers emit: the life of a few locks
is run through the real handlers (DynamoDB on moto, GitHub and Slack on loopback, as in tests/workers), their EMF
output is read, and a name the program reads that no code path wrote fails here — a renamed or dropped metric would
otherwise leave a graph flat and an alarm silent, forever."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator

import pytest

from infra import metrics
from lockcore.machine import AcquireRequest
from tests.infra.cloudwatch import chatops_metrics_read
from tests.infra.stack import Deployment
from tests.workers.github_events import GitHubEvents, SimulatedClock, build_at, github_events, scheduled_event
from tests.workers.worker_world import Context, World, running_world, sqs_event
from workers.flows.freeze import FREEZE_SECONDS, freeze_key
from workers.handlers import build as build_lambda
from workers.handlers import reaper as reaper_lambda
from workers.handlers import webhook as webhook_lambda
from workers.protocol.commands import Dispatch
from workers.protocol.config import Action

NO_FAILURES: dict[str, list[object]] = {"batchItemFailures": []}


def request(world: World, name: str, command: Dispatch) -> None:
    assert build_lambda.handler(sqs_event(world.envelope(name, command, user=name)), Context()) == NO_FAILURES


def end_run(world: World, github: GitHubEvents, run_id: int, conclusion: str) -> None:
    world.github.complete_run(run_id, conclusion)
    github.post_all(run_id=run_id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES


def the_life_of_some_locks(world: World, github: GitHubEvents) -> None:
    router = Dispatch(Action.BUILD, "router", "plt")
    request(world, "a", router)  # acquired, dispatched
    request(world, "b", router)  # busy: refused
    request(world, "c", Dispatch(Action.BUILD, "router", "plt", queue=True))  # queued behind a
    end_run(world, github, world.dispatches()[0].id, "success")  # completed, its duration; handed to c
    request(world, "d", Dispatch(Action.BUILD, "api", "plt"))
    end_run(world, github, world.dispatches()[-1].id, "failure")  # failed
    world.store.acquire(AcquireRequest(freeze_key("prod"), "req-freeze", FREEZE_SECONDS, "U0ADMIN", "admin"))
    request(world, "e", Dispatch(Action.DEPLOY, "api", "prod"))  # frozen
    world.github.fail_next(status=401, body={"message": "Bad credentials"}, path_contains="/dispatches")
    request(world, "f", Dispatch(Action.BUILD, "api", "prod"))  # the dispatch failed
    # A build whose lease (ten minutes) lapsed ten minutes ago and whose run GitHub no longer knows: expired.
    build_at(SimulatedClock(time.time() - 1200), world.envelope("g", Dispatch(Action.BUILD, "router", "prod")))
    lapsed = world.dispatches()[-1]
    world.github.fail_next(status=404, body={"message": "Not Found"}, method="GET", path_contains=f"/runs/{lapsed.id}")
    reaper_lambda.handler(scheduled_event(), Context())


def emf_metrics(out: str) -> dict[str, list[float]]:
    """Every metric in the EMF blobs printed, with its values; each blob must be in the namespace and dimension
    the dashboard and the alarms read."""
    emitted: dict[str, list[float]] = {}
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == metrics.NAMESPACE
        assert directive["Dimensions"] == [list(metrics.DIMENSIONS)]
        assert {key: blob[key] for key in metrics.DIMENSIONS} == metrics.DIMENSIONS
        for metric in directive["Metrics"]:
            values = blob[metric["Name"]]
            emitted.setdefault(metric["Name"], []).extend(values if isinstance(values, list) else [values])
    return emitted


@pytest.fixture(scope="module")
def emitted() -> Iterator[dict[str, list[float]]]:
    printed = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        running_world(patch) as world,
        github_events(world, patch) as github,
        contextlib.redirect_stdout(printed),
    ):
        patch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
        the_life_of_some_locks(world, github)
    yield emf_metrics(printed.getvalue())


def test_every_chatops_metric_the_dashboard_or_an_alarm_reads_is_emitted_by_the_workers(
    deployment: Deployment, emitted: dict[str, list[float]]
) -> None:
    read = set(chatops_metrics_read(deployment))
    names = {name for _, name in read}
    rates = {name for rate in metrics.RATES for name in rate.metrics.values()}
    assert rates <= names and metrics.LOCK_DURATION in names  # the reading side is collected at all
    never = sorted(f"{name} ({where})" for where, name in read if name not in emitted)
    assert not never, f"read by the dashboard or an alarm, emitted by no code path: {never}"


def test_the_life_of_the_locks_emitted_each_outcome_as_it_happened(emitted: dict[str, list[float]]) -> None:
    """The run above is what it says: one refusal, one queued request, one of each ending."""
    for name in (metrics.BUSY, metrics.QUEUED, metrics.FROZEN, metrics.RUN_COMPLETED, metrics.LOCK_EXPIRED):
        assert emitted[name] == [1.0], name
    assert emitted[metrics.DISPATCH_FAILED] == [1.0]
    assert emitted[metrics.RUN_FAILED] == [1.0, 1.0]  # the failed run, and the dispatch that never started one
    assert all(seconds >= 0 for seconds in emitted[metrics.LOCK_DURATION])
