"""The github worker end to end: a build dispatched by the build worker, its run moved by the GitHub stand-in,
the stand-in's ``workflow_run`` events signed and posted through the router onto the github queue (SQS on moto),
and the queue drained into the worker. DynamoDB on moto, Slack on loopback. Nothing of ours is mocked.
"""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

import pytest

from lockcore.machine import AcquireRequest
from lockcore.outcomes import Acquired, HeldBySomeone, NotHolder
from lockcore.record import LockRecord, Status
from tests.workers.github_events import GitHubEvents, SimulatedClock, store_at
from tests.workers.sqs_events import event as sqs_batch
from tests.workers.sqs_events import record as sqs_record
from tests.workers.worker_world import Context, World, sqs_event
from workers.adapters import runtime
from workers.flows import reaper, webhook
from workers.flows.freeze import FREEZE_SECONDS
from workers.flows.runlock import (
    RELEASED_METRIC,
    RUN_COMPLETED_METRIC,
    RUN_FAILED_METRIC,
    Effect,
    RunReport,
    result_text,
)
from workers.handlers import build as build_lambda
from workers.handlers import webhook as webhook_lambda
from workers.local.github import WorkflowRun
from workers.protocol.commands import Dispatch
from workers.protocol.config import Action, current_config
from workers.protocol.envelope import WorkflowRunEnvelope

BUILD_KEY = "build-router-plt"
DEPLOY_KEY = "deploy-api-prod"
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


def start_build(world: World, name: str = "a", *, user: str = "alice", command: Dispatch | None = None) -> WorkflowRun:
    """``/build router plt`` through the build worker: the lock taken, the run dispatched and noted."""
    assert build_lambda.handler(sqs_event(world.envelope(name, command, user=user)), Context()) == NO_FAILURES
    return world.dispatches()[-1]


def deliver(github: GitHubEvents) -> dict[str, Any]:
    """What is on the github queue, to the worker."""
    return webhook_lambda.handler(github.queued(), Context())


def channel_posts(world: World) -> list[str]:
    return [message.text for message in world.slack.messages("chat.postMessage")]


# ------------------------------------------------------------------------------------------------- the end
def test_success_releases_completed_and_tells_the_channel(world: World, github: GitHubEvents) -> None:
    run = start_build(world)
    world.github.start_run(run.id)
    world.github.complete_run(run.id, "success")
    github.post_all(run_id=run.id)  # requested, in_progress, completed — in order

    assert deliver(github) == NO_FAILURES
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED and lock.released_at is not None
    [posted] = world.slack.messages("chat.postMessage")
    assert posted.body["channel"] == "C0BUILDS"
    assert re.fullmatch(
        rf"✅ router \(plt\) built in \d+s — started by <@U0ALICE> at <!date\^\d+\^\{{time\}}\|\d\d:\d\d UTC>, "
        rf"<{re.escape(run.html_url)}\|run {run.id}>",
        posted.text,
    ), posted.text


@pytest.mark.parametrize("conclusion", ["failure", "cancelled", "timed_out", "startup_failure"])
def test_any_other_conclusion_releases_failed(world: World, github: GitHubEvents, conclusion: str) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, conclusion)
    github.post_all(action="completed")

    assert deliver(github) == NO_FAILURES
    lock = world.lock()
    assert lock is not None and lock.status is Status.FAILED
    [text] = channel_posts(world)
    assert text.startswith(f"❌ router (plt) build failed ({conclusion}) after ")
    assert "started by <@U0ALICE> at <!date^" in text and text.endswith(f"<{run.html_url}|run {run.id}>")


def test_a_deploy_names_its_commit(world: World, github: GitHubEvents) -> None:
    run = start_build(world, command=Dispatch(Action.DEPLOY, "api", "plt", "release/1.2"))
    world.github.complete_run(run.id, "success")
    github.post_all(action="completed")
    assert deliver(github) == NO_FAILURES
    [text] = channel_posts(world)
    assert text.startswith(f"✅ api (plt) deployed `{run.head_sha[:7]}` in ")

    lock = world.lock("deploy-api-plt")
    assert lock is not None
    failed = result_text(lock, RunReport(run.id, "completed", "failure", run.html_url), int(time.time()))
    assert failed.startswith(f"❌ api (plt) deploy of `{run.head_sha[:7]}` failed (failure) after ")


def test_duplicate_deliveries_release_once_and_tell_the_channel_once(world: World, github: GitHubEvents) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, "success")
    [(action, completed)] = github.events("completed")
    for _ in range(3):  # GitHub's redelivery keeps the delivery id; a retry after a timeout gets a new one
        assert github.post(action, completed, delivery="same-delivery") == 202
    assert github.post(action, completed) == 202

    assert deliver(github) == NO_FAILURES
    assert github.queued()["Records"] == []
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED
    assert len(channel_posts(world)) == 1


def test_a_completion_the_worker_sees_twice_is_a_repeat(world: World, github: GitHubEvents) -> None:
    """The release itself repeated (the read raced the first release): the store answers a repeat, no message."""
    run = start_build(world)
    held = world.lock()
    assert held is not None
    world.github.complete_run(run.id, "failure")
    github.post_all(action="completed")
    assert deliver(github) == NO_FAILURES
    locks = webhook.WebhookWorker(current_config(), runtime.lock_store(), runtime.slack_replies()).locks
    report = RunReport(run.id, "completed", "failure", run.html_url)
    assert locks.finish(held, report, seen_by="test") is Effect.ALREADY_RELEASED
    assert len(channel_posts(world)) == 1


# ------------------------------------------------------------------------------------- late and foreign events
def test_a_late_webhook_from_an_older_run_never_releases_the_newer_holder(world: World, github: GitHubEvents) -> None:
    first = start_build(world, "a", user="alice")
    world.github.complete_run(first.id, "success")
    [(_, first_completed)] = github.events("completed", first.id)
    # The first run's completion is late: meanwhile the lock lapsed and bob took it (simulated: an hour on).
    later = SimulatedClock(time.time() + 3600)
    taken = store_at(later).acquire(
        AcquireRequest(BUILD_KEY, "bob-request", 600, "U0BOB", "bob", "router", "plt", correlation_id="cid-b")
    )
    assert isinstance(taken, Acquired) and taken.token == 2

    assert github.post("completed", first_completed) == 202
    assert deliver(github) == NO_FAILURES
    lock = world.lock()
    assert lock is not None
    assert (lock.status, lock.owner, lock.token, lock.correlation_id) == (Status.IN_PROGRESS, "bob-request", 2, "cid-b")
    assert channel_posts(world) == []


def test_a_late_webhook_finding_a_lock_taken_between_read_and_write_changes_nothing(world: World) -> None:
    """The correlation id matched when read; a newer holder's token refuses the write itself."""
    run = start_build(world)
    read = world.lock()
    assert read is not None
    later = SimulatedClock(time.time() + 3600)
    assert isinstance(store_at(later).acquire(AcquireRequest(BUILD_KEY, "bob-request", 600)), Acquired)
    locks = webhook.WebhookWorker(current_config(), store_at(later), runtime.slack_replies()).locks
    report = RunReport(run.id, "completed", "success", run.html_url)
    assert locks.finish(read, report, seen_by="test") is Effect.REFUSED
    lock = world.lock()
    assert lock is not None and lock.owner == "bob-request" and lock.status is Status.IN_PROGRESS
    assert channel_posts(world) == []


def test_runs_that_are_not_ours_are_ignored(world: World, github: GitHubEvents) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, "success")
    [(action, completed)] = github.events("completed")
    renamed = {**completed, "name": "CI", "display_title": "Fix the flaky test"}
    unknown_key = {**completed, "name": "build-api-prod · cid=cid-a", "display_title": "build-api-prod · cid=cid-a"}
    other_run = {**completed, "id": completed["id"] + 100}
    for payload in (renamed, unknown_key, other_run):
        assert github.post(action, payload) == 202
    assert deliver(github) == NO_FAILURES
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS
    assert channel_posts(world) == []


def test_a_message_that_is_not_a_workflow_run_fails_alone(world: World, github: GitHubEvents) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, "success")
    github.post_all(action="completed")
    good = github.queued()["Records"]
    bad = sqs_record('{"version": 1, "kind": "echo"}', queue="chatops-github", message_id="bad-1")
    response = webhook_lambda.handler(sqs_batch(bad, *good), Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED


# ------------------------------------------------------------------------------------------ a run going on
def test_in_progress_renews_a_lease_that_nears_its_end(world: World, github: GitHubEvents) -> None:
    run = start_build(world)
    held = world.lock()
    assert held is not None and held.lease_expires_at - int(time.time()) > 590
    world.github.start_run(run.id)
    [(action, in_progress)] = github.events("in_progress")
    event = WorkflowRunEnvelope(
        delivery_id="d-1",
        correlation_id="router-cid",
        action=action,
        run_id=in_progress["id"],
        run_attempt=1,
        name=in_progress["name"],
        display_title=in_progress["display_title"],
        status=in_progress["status"],
        conclusion=None,
        html_url=in_progress["html_url"],
        head_sha=in_progress["head_sha"],
        workflow_path=in_progress["path"],
        repository="example-org/platform",
        received_at=int(time.time()),
        event=in_progress["event"],
        workflow_id=in_progress["workflow_id"],
    )
    clock = SimulatedClock()
    worker = webhook.WebhookWorker(current_config(), store_at(clock), runtime.slack_replies())

    assert worker.on_event(event) is Effect.KEPT  # nine minutes and more left of ten: nothing to do
    clock.advance(320)  # under half the lease left
    assert worker.on_event(event) is Effect.EXTENDED
    lock = world.lock()
    assert lock is not None and lock.lease_expires_at == int(clock()) + 600 and lock.token == held.token
    assert worker.on_event(event) is Effect.KEPT


def test_a_long_deploy_is_kept_alive_by_its_in_progress_events(world: World, github: GitHubEvents) -> None:
    """A 45-minute deploy under a 30-minute lease: each in_progress event past half the lease renews it, and
    nobody can take the lock meanwhile; its completion then releases it."""
    run = start_build(world, command=Dispatch(Action.DEPLOY, "api", "prod", "main"), user="admin")
    world.github.start_run(run.id)
    [(_, in_progress)] = github.events("in_progress")
    [(_, requested)] = github.events("requested")
    clock = SimulatedClock()
    store = store_at(clock)
    worker = webhook.WebhookWorker(current_config(), store, runtime.slack_replies())

    def on_queue(action: str, payload: dict[str, Any]) -> None:
        assert github.post(action, payload) == 202
        response = runtime.process_sqs_batch(
            github.queued(), Context(), lambda r: webhook_lambda.handle_record(r, worker)
        )
        assert response == NO_FAILURES

    on_queue("requested", requested)
    for _ in range(9):  # every five minutes, 45 minutes in all: GitHub re-sends in_progress as jobs start
        clock.advance(300)
        on_queue("in_progress", in_progress)
        assert isinstance(store.acquire(AcquireRequest(DEPLOY_KEY, "someone-else", 1800)), HeldBySomeone)
    lock = world.lock(DEPLOY_KEY)
    assert lock is not None and lock.status is Status.IN_PROGRESS and lock.lease_expires_at > clock()

    world.github.complete_run(run.id, "success")
    [(_, completed)] = github.events("completed")
    on_queue("completed", completed)
    lock = world.lock(DEPLOY_KEY)
    assert lock is not None and lock.status is Status.COMPLETED
    [text] = channel_posts(world)
    assert text.startswith(f"✅ api (prod) deployed `{run.head_sha[:7]}` in 45m")


def test_the_lock_table_failing_sends_the_event_back(world: World, github: GitHubEvents) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, "success")
    github.post_all(action="completed")
    queued = github.queued()
    world.store.client.delete_table(TableName=world.store.table)
    response = webhook_lambda.handler(queued, Context())
    assert [failure["itemIdentifier"] for failure in response["batchItemFailures"]] == [
        record["messageId"] for record in queued["Records"]
    ]
    assert channel_posts(world) == []


# ------------------------------------------------------------------------------------- what the dashboard reads
def emf_values(out: str, metric: str) -> list[float]:
    """Every value of ``metric`` in the EMF blobs printed (namespace ChatOps, dimension service=chatops)."""
    values: list[float] = []
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        if metric in {m["Name"] for m in directive["Metrics"]}:
            assert directive["Namespace"] == "ChatOps" and blob["service"] == "chatops"
            assert directive["Dimensions"] == [["service"]]
            values += blob[metric] if isinstance(blob[metric], list) else [blob[metric]]
    return values


@pytest.mark.parametrize(
    ("conclusion", "outcome", "other"),
    [("success", RUN_COMPLETED_METRIC, RUN_FAILED_METRIC), ("timed_out", RUN_FAILED_METRIC, RUN_COMPLETED_METRIC)],
)
def test_a_finished_run_emits_its_outcome_once_for_the_dashboards_failure_rate(
    world: World, github: GitHubEvents, capsys: pytest.CaptureFixture[str], *, conclusion: str, outcome: str, other: str
) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, conclusion)
    [(action, completed)] = github.events("completed")
    assert github.post(action, completed) == 202
    assert github.post(action, completed) == 202  # delivered twice: the second release is a repeat, not a run
    capsys.readouterr()

    assert deliver(github) == NO_FAILURES

    emitted = capsys.readouterr().out
    assert emf_values(emitted, outcome) == [1.0]
    assert emf_values(emitted, other) == []
    assert emf_values(emitted, RELEASED_METRIC) == [1.0]


def test_the_build_workers_lock_acquired_line_names_the_lock_key(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard's busiest keys and hours count these lines (``filter message = "lock acquired"``, by
    ``lock_key``) in the build worker's log group: the JSON the Powertools handler writes, as Lambda gets it."""
    written = io.StringIO()
    monkeypatch.setattr(runtime.logger.registered_handler, "stream", written)
    start_build(world)
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    [acquired] = [line for line in lines if line.get("message") == "lock acquired"]
    assert acquired["lock_key"] == BUILD_KEY


# ------------------------------------------------------------------------------------------- lost answers
def test_a_release_whose_worker_died_before_telling_is_told_by_the_redelivery_once(
    world: World, github: GitHubEvents
) -> None:
    """The release took effect, its answer was lost and the worker died (the item fails, SQS brings it back): the
    redelivery reads the lock released by this very run and tells the result the first would have told — once,
    however often the event comes again; a lock freed by anything else than this run's release tells nothing."""
    run = start_build(world)
    held = world.lock()
    assert held is not None
    world.github.complete_run(run.id, "failure")
    world.store.release(BUILD_KEY, held.owner, held.token, Status.FAILED)  # then the worker died
    [(action, completed)] = github.events("completed")

    assert github.post(action, completed, delivery="redelivered") == 202
    assert deliver(github) == NO_FAILURES
    assert github.post(action, completed, delivery="again") == 202
    assert deliver(github) == NO_FAILURES

    released = world.lock()
    assert released is not None and released.status is Status.FAILED
    report = RunReport(run.id, "completed", "failure", run.html_url)
    assert channel_posts(world) == [result_text(released, report, int(time.time()))]


def test_a_lock_freed_by_another_write_is_not_told_as_this_runs_result(world: World, github: GitHubEvents) -> None:
    run = start_build(world)
    held = world.lock()
    assert held is not None
    world.store.force_release(BUILD_KEY, held.token, by="U0ADMIN", reason="force unlock from Slack by admin")
    world.github.complete_run(run.id, "cancelled")
    github.post_all(action="completed", run_id=run.id)
    assert deliver(github) == NO_FAILURES
    assert channel_posts(world) == []


# ------------------------------------------------------------------------------ a run's name is not authority
ZOE_CID = "cid-zoe"
FREEZE_KEY = "freeze-prod"
FREEZE_CID = "cid-freeze"


def unnoted_lock(key: str = BUILD_KEY, cid: str = ZOE_CID) -> None:
    """A build lock whose run id was never noted: GitHub answered the dispatch 204 and did not list the run in
    time (``dispatched``, no ``runId``) — the window in which only the correlation id names its run."""
    store = runtime.lock_store()
    taken = store.acquire(AcquireRequest(key, "req-z", 600, "U0ZOE", "zoe", "router", "plt", cid))
    assert isinstance(taken, Acquired)
    store.note(key, "req-z", taken.token, command="build", channelId="C0BUILDS", dispatchState="dispatched")


def frozen_prod() -> LockRecord:
    """``/deploy freeze prod`` as the status worker takes it."""
    store = runtime.lock_store()
    freeze = AcquireRequest(FREEZE_KEY, "req-f", FREEZE_SECONDS, "U0ADMIN", "admin", "freeze", "prod", FREEZE_CID)
    taken = store.acquire(freeze)
    assert isinstance(taken, Acquired)
    noted = store.note(FREEZE_KEY, "req-f", taken.token, command="/deploy freeze prod release week")
    assert not isinstance(noted, NotHolder)
    return noted.record


def dispatched_run(world: World, github: GitHubEvents, lock_key: str, cid: str) -> dict[str, Any]:
    """A real ``workflow_dispatch`` run of build.yml named for ``lock_key``/``cid``, completed: its event's run."""
    inputs = {"lock_key": lock_key, "correlation_id": cid, "component": "router", "environment": "plt"}
    runtime.github_client().dispatch_workflow(current_config().github.repository, "build.yml", "main", inputs)
    run = world.dispatches()[-1]
    world.github.complete_run(run.id, "success")
    [(_, completed)] = github.events("completed", run.id)
    return completed


def titled(run: dict[str, Any], title: str, **facts: Any) -> dict[str, Any]:
    """Another run whose title reads ``title``: a pull request's title is chosen by whoever opens it."""
    return {**run, "id": run["id"] + 1000, "name": "CI", "display_title": title, **facts}


def test_a_pull_request_titled_like_a_lock_never_releases_it(world: World, github: GitHubEvents) -> None:
    unnoted_lock()
    genuine = dispatched_run(world, github, BUILD_KEY, ZOE_CID)
    name = f"{BUILD_KEY} · cid={ZOE_CID}"
    hostile = [
        titled(genuine, name, event="pull_request", path=".github/workflows/ci.yml"),
        titled(genuine, name, event="pull_request"),  # build.yml itself, run for a pull request
        titled(genuine, name, event="push"),
        titled(genuine, name, path=".github/workflows/release.yml"),  # another workflow, dispatched
        titled(genuine, name, path=".github/workflows/deploy.yml"),  # the deploy workflow, not the build's
    ]
    for run in hostile:
        assert github.post("completed", run) == 202
    assert deliver(github) == NO_FAILURES
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS and lock.correlation_id == ZOE_CID
    assert channel_posts(world) == []

    assert github.post("completed", genuine) == 202  # the run that was dispatched still releases
    assert deliver(github) == NO_FAILURES
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED


def test_no_run_lifts_a_freeze_whatever_its_title(world: World, github: GitHubEvents) -> None:
    frozen = frozen_prod()
    genuine = dispatched_run(world, github, FREEZE_KEY, FREEZE_CID)  # dispatched with crafted inputs
    title = f"{FREEZE_KEY} · cid={FREEZE_CID}"
    for run in (genuine, titled(genuine, title, event="pull_request"), titled(genuine, title)):
        for action in ("in_progress", "completed"):
            assert github.post(action, run) == 202
    assert deliver(github) == NO_FAILURES
    assert world.lock(FREEZE_KEY) == frozen  # neither released nor renewed
    assert channel_posts(world) == []


def todays_envelope(run: dict[str, Any]) -> str:
    """A ``workflow_run`` message as the router wrote it before it noted the run's event: already on the github
    queue when the new workers are deployed."""
    return json.dumps(
        {
            "version": 1,
            "kind": "workflow_run",
            "deliveryId": "5f1b2c3d-0000-11ef-8000-000000000001",
            "correlationId": "0b6c7f4e-2d7e-4a55-9a7e-3f1d2c4b5a69",
            "action": "completed",
            "runId": run["id"],
            "runAttempt": 1,
            "name": run["name"],
            "displayTitle": run["display_title"],
            "status": "completed",
            "conclusion": "success",
            "htmlUrl": run["html_url"],
            "headSha": run["head_sha"],
            "workflowPath": run["path"],
            "repository": "example-org/platform",
            "receivedAt": int(time.time()),
        },
        ensure_ascii=False,
    )


def test_a_message_queued_before_the_upgrade_changes_no_lock_and_the_reaper_releases_it(
    world: World, github: GitHubEvents
) -> None:
    """Fail closed: without the run's event the message cannot tell a dispatch from a pull request, so it is
    read, logged and changes nothing; the reaper asks GitHub's API, which can, and releases the lock."""
    unnoted_lock()
    genuine = dispatched_run(world, github, BUILD_KEY, ZOE_CID)
    body = todays_envelope(genuine)
    assert webhook_lambda.handler(sqs_batch(sqs_record(body, queue="chatops-github")), Context()) == NO_FAILURES
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS
    assert channel_posts(world) == []

    assert {
        s.lock_key: s.effect
        for s in reaper.Reaper(
            current_config(), runtime.lock_store(), runtime.github_client(), runtime.slack_replies()
        ).sweep()
    } == {BUILD_KEY: Effect.RELEASED}
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED
    [text] = channel_posts(world)
    assert text.startswith("✅ router (plt) built in ")


def test_a_message_nested_too_deep_fails_alone(world: World, github: GitHubEvents) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, "success")
    github.post_all(action="completed")
    good = github.queued()["Records"]
    deep = '{"version": 1, "kind": "workflow_run", "runId": ' + "[" * 5_000 + "]" * 5_000 + "}"
    bad = sqs_record(deep, queue="chatops-github", message_id="deep-1")
    response = webhook_lambda.handler(sqs_batch(bad, *good), Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": "deep-1"}]}
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED
