"""The /build and /deploy worker end to end: real-shaped SQS batches in; DynamoDB (moto in-process), GitHub and
Slack (real HTTP servers on loopback) out. Nothing of ours is mocked; faults are injected at the servers.

After every case the same two promises are checked (:func:`assert_settled`): no lock is left IN_PROGRESS by our
own failure — a lock still held has a run going under it — and every request ended in a message to its user or
in a batch item failure (and so, in the end, in the DLQ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any
from unittest.mock import ANY

import boto3
import pytest

from lockcore.machine import AcquireRequest
from lockcore.outcomes import Acquired
from lockcore.record import Status
from tests.workers.test_webhook_worker import emf_values
from tests.workers.worker_world import (
    IDEMPOTENCY_TABLE,
    MAIN_SHA,
    RELEASE_BRANCH,
    RELEASE_SHA,
    Context,
    World,
    failed_ids,
    sqs_event,
    sqs_record,
)
from workers.adapters import runtime
from workers.adapters.github import GitHubClient
from workers.flows import build
from workers.flows.runlock import RUN_COMPLETED_METRIC, RUN_FAILED_METRIC
from workers.handlers import build as build_lambda
from workers.local.github import RunDetails
from workers.protocol.commands import Dispatch, Echo
from workers.protocol.config import Action
from workers.protocol.envelope import CommandEnvelope
from workers.protocol.workflow import parse_run_name

BUILD_KEY = "build-router-plt"


def deliver(event: dict[str, Any]) -> dict[str, Any]:
    return build_lambda.handler(event, Context())


def assert_settled(world: World, envelopes: list[CommandEnvelope], response: dict[str, Any]) -> None:
    failed = failed_ids(response)
    ours = {envelope.request_id for envelope in envelopes}
    live = [record for record in world.store.list() if record.status is Status.IN_PROGRESS and record.owner in ours]
    running = {parse_run_name(run.name) for run in world.dispatches()}
    for record in live:
        assert (record.lock_key, record.correlation_id) in running, f"{record.lock_key} held with no run under it"
    if not failed:
        for envelope in envelopes:
            name = envelope.response_url.split("/")[-2]
            told = world.replies_to(name) or world.slack.messages("chat.postMessage")
            assert told, f"request {name} ended in silence"


# -------------------------------------------------------------------------------------------- the happy path
def test_a_single_user_builds_successfully(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    envelope = world.envelope("a")
    response = deliver(sqs_event(envelope))

    assert response == {"batchItemFailures": []}
    [run] = world.dispatches()
    assert run.workflow == "build.yml" and run.head_branch == "main"
    assert run.inputs == {
        "component": "router",
        "environment": "plt",
        "ref": "main",
        "sha": MAIN_SHA,
        "correlation_id": "cid-a",
        "lock_key": BUILD_KEY,
        "lock_token": "1",
    }
    assert parse_run_name(run.name) == (BUILD_KEY, "cid-a")
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS and lock.owner == envelope.request_id
    assert dict(lock.notes) == {
        "command": "build",
        "ref": "main",
        "commitSha": MAIN_SHA,
        "channelId": "C0BUILDS",
        "dispatchState": "dispatched",
        "dispatchAttempts": "1",
        "dispatchSentAt": ANY,
        "runId": str(run.id),
        "runUrl": run.html_url,
    }
    [message] = world.replies_to("a")
    assert message.body["response_type"] == "in_channel"
    assert message.text == f"🔨 Building router (plt)… <{run.html_url}|run {run.id}>"
    emitted = capsys.readouterr().out
    assert '"buildLockManager.acquireLock.success":[1.0]' in emitted
    assert '"Namespace":"ChatOps"' in emitted
    assert_settled(world, [envelope], response)


def test_the_lock_lease_is_the_commands(world: World) -> None:
    deliver(sqs_event(world.envelope("a")))
    lock = world.lock()
    assert lock is not None
    assert lock.lease_expires_at - int(time.time()) in range(590, 601)


def test_a_server_without_run_details_still_gets_the_run_noted(world: World) -> None:
    world.github.run_details = RunDetails.IGNORED  # answers 204: the run is found by its name
    envelope = world.envelope("a")
    response = deliver(sqs_event(envelope))
    [run] = world.dispatches()
    lock = world.lock()
    assert lock is not None and lock.notes["runId"] == str(run.id)
    assert f"|run {run.id}>" in world.replies_to("a")[0].text
    assert_settled(world, [envelope], response)


# ------------------------------------------------------------------------------------------- several users
def test_concurrent_users_in_one_batch_get_one_build_and_are_told_who_holds_it(world: World) -> None:
    users = ["alice", "bob", "carol", "dave", "erin"]
    envelopes = [world.envelope(f"u{i}", user=user) for i, user in enumerate(users)]
    response = deliver(sqs_event(*envelopes))

    assert response == {"batchItemFailures": []}
    [run] = world.dispatches()
    assert run.inputs["correlation_id"] == "cid-u0"
    for i in range(1, len(users)):
        [busy] = world.replies_to(f"u{i}")
        assert busy.body.get("response_type", "ephemeral") == "ephemeral"
        assert busy.text.startswith("⚠️ Build already in progress — started by alice less than a minute ago, ")
        assert f"<{run.html_url}|run {run.id}>" in busy.text
        lock = world.lock()
        assert lock is not None
        assert f"frees at <!date^{lock.lease_expires_at}^{{time}}|" in busy.text
    assert_settled(world, envelopes, response)


def test_concurrent_users_in_several_batches_get_one_build(world: World) -> None:
    first = [world.envelope("b1", user="bob"), world.envelope("b2", user="carol")]
    second = [world.envelope("b3", user="dave"), world.envelope("b4", user="erin"), world.envelope("b5")]
    responses = [deliver(sqs_event(*first)), deliver(sqs_event(*second))]

    assert len(world.dispatches()) == 1
    assert [len(world.replies_to(f"b{i}")) for i in range(1, 6)] == [1, 1, 1, 1, 1]
    assert all("started by bob" in world.replies_to(f"b{i}")[0].text for i in range(2, 6))
    for batch, response in zip((first, second), responses, strict=True):
        assert_settled(world, batch, response)


def test_the_busy_message_says_how_long_ago_and_which_run(world: World) -> None:
    world.store.acquire(AcquireRequest(BUILD_KEY, "someone-else", 600, "U0BOB", "bob", "router", "plt"))
    held = world.lock()
    assert held is not None
    world.store.note(BUILD_KEY, "someone-else", held.token, runId="42", runUrl="https://github.example/runs/42")
    # The holder took the lock 7 minutes ago, as far as the lock record says.
    seven_minutes_ago = datetime.fromtimestamp(time.time() - 7 * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    boto3.client("dynamodb").update_item(
        TableName="chatbot-build-locks",
        Key={"lockKey": {"S": BUILD_KEY}},
        UpdateExpression="SET lockedAt = :at",
        ExpressionAttributeValues={":at": {"S": seven_minutes_ago}},
    )
    envelope = world.envelope("x")
    response = deliver(sqs_event(envelope))
    [busy] = world.replies_to("x")
    assert busy.text.startswith("⚠️ Build already in progress — started by bob 7 min ago, ")
    assert "<https://github.example/runs/42|run 42>" in busy.text
    assert not world.dispatches()
    assert_settled(world, [envelope], response)


# ------------------------------------------------------------------------------------------------- deploys
def test_a_deploy_resolves_its_ref_to_a_sha_and_shows_it(world: World) -> None:
    envelope = world.envelope("d", Dispatch(Action.DEPLOY, "api", "plt", RELEASE_BRANCH))
    response = deliver(sqs_event(envelope))

    [run] = world.dispatches()
    assert run.workflow == "deploy.yml" and run.head_branch == RELEASE_BRANCH
    assert run.inputs["sha"] == RELEASE_SHA and run.inputs["ref"] == RELEASE_BRANCH
    assert run.inputs["lock_key"] == "deploy-api-plt"
    lock = world.lock("deploy-api-plt")
    assert lock is not None and lock.notes["commitSha"] == RELEASE_SHA
    assert lock.lease_expires_at - int(time.time()) in range(1790, 1801)
    [message] = world.replies_to("d")
    assert message.text.startswith(f"🚀 Deploying api (plt) at {RELEASE_BRANCH} (`{RELEASE_SHA[:7]}`)… <")
    assert_settled(world, [envelope], response)


def test_a_deploy_without_a_ref_deploys_the_default_branch(world: World) -> None:
    deliver(sqs_event(world.envelope("d", Dispatch(Action.DEPLOY, "api", "plt"))))
    [run] = world.dispatches()
    assert (run.head_branch, run.inputs["sha"]) == ("main", MAIN_SHA)
    assert f"(`{MAIN_SHA[:7]}`)" in world.replies_to("d")[0].text


def test_a_deploy_of_a_commit_runs_on_the_default_branch_and_names_the_commit(world: World) -> None:
    deliver(sqs_event(world.envelope("d", Dispatch(Action.DEPLOY, "api", "plt", RELEASE_SHA))))
    [run] = world.dispatches()
    assert run.head_branch == "main"
    assert (run.inputs["ref"], run.inputs["sha"]) == (RELEASE_SHA, RELEASE_SHA)


def test_a_deploy_of_an_unknown_ref_fails_in_one_line_and_frees_the_lock(world: World) -> None:
    envelope = world.envelope("d", Dispatch(Action.DEPLOY, "api", "plt", "no-such-branch"))
    response = deliver(sqs_event(envelope))
    assert not world.dispatches()
    lock = world.lock("deploy-api-plt")
    assert lock is not None and lock.status is Status.FAILED
    [message] = world.replies_to("d")
    assert message.text.startswith("❌ Couldn't start the deploy api (plt): ")
    assert "no-such-branch" in message.text and "\n" not in message.text
    assert_settled(world, [envelope], response)


def test_a_busy_deploy_shows_the_holders_commit(world: World) -> None:
    deliver(sqs_event(world.envelope("d1", Dispatch(Action.DEPLOY, "api", "plt", RELEASE_BRANCH), user="bob")))
    deliver(sqs_event(world.envelope("d2", Dispatch(Action.DEPLOY, "api", "plt"))))
    [busy] = world.replies_to("d2")
    assert busy.text.startswith("⚠️ Deploy already in progress — started by bob")
    assert f"at `{RELEASE_SHA[:7]}`" in busy.text
    assert len(world.dispatches()) == 1


# ---------------------------------------------------------------------------------------------- redelivery
def test_a_redelivered_message_does_not_dispatch_again(world: World) -> None:
    envelope = world.envelope("a")
    deliver(sqs_event(envelope))
    for receive_count in (1, 2, 3):
        response = deliver(sqs_event(envelope, receive_count=receive_count))
        assert response == {"batchItemFailures": []}
    assert len(world.dispatches()) == 1
    assert len(world.replies_to("a")) == 1  # answered from the idempotency record: nothing said twice


def test_a_request_that_ran_never_runs_again_after_its_lock_is_released(world: World) -> None:
    envelope = world.envelope("a")
    deliver(sqs_event(envelope))
    lock = world.lock()
    assert lock is not None
    world.store.release(BUILD_KEY, envelope.request_id, lock.token, Status.COMPLETED)  # the run completed

    for receive_count in (1, 2):
        deliver(sqs_event(envelope, receive_count=receive_count))
    assert len(world.dispatches()) == 1
    after = world.lock()
    assert after is not None and after.status is Status.COMPLETED and after.token == lock.token


def _crashed_after_dispatch(world: World, envelope: CommandEnvelope) -> int:
    """A worker that took the lock, noted `dispatching`, dispatched — and died before noting the run."""
    acquired = world.store.acquire(
        AcquireRequest(BUILD_KEY, envelope.request_id, 600, envelope.user_id, envelope.user_name, "router", "plt",
                       envelope.correlation_id)
    )  # fmt: skip
    assert isinstance(acquired, Acquired)
    world.store.note(
        BUILD_KEY, envelope.request_id, acquired.token, command="build", ref="main", commitSha=MAIN_SHA,
        channelId=envelope.channel_id, dispatchState="dispatching",
    )  # fmt: skip
    client = GitHubClient("ghp_worker_test_token", api_url=world.github.api_url)
    inputs = {
        "component": "router",
        "environment": "plt",
        "ref": "main",
        "sha": MAIN_SHA,
        "correlation_id": envelope.correlation_id,
        "lock_key": BUILD_KEY,
        "lock_token": str(acquired.token),
    }
    result = client.dispatch_workflow("example-org/platform", "build.yml", "main", inputs)
    assert result.run_id is not None
    return result.run_id


@pytest.mark.parametrize("receive_count", [2, 1])
def test_a_worker_that_died_after_dispatching_is_not_followed_by_a_second_dispatch(
    world: World, receive_count: int
) -> None:
    envelope = world.envelope("a")
    run_id = _crashed_after_dispatch(world, envelope)

    response = deliver(sqs_event(envelope, receive_count=receive_count))

    assert response == {"batchItemFailures": []}
    assert [run.id for run in world.dispatches()] == [run_id]
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS
    assert (lock.notes["dispatchState"], lock.notes["runId"]) == ("dispatched", str(run_id))
    [message] = world.replies_to("a")
    assert message.text.startswith("🔨 Building router (plt)… <") and f"|run {run_id}>" in message.text
    assert_settled(world, [envelope], response)


def test_a_worker_that_died_before_dispatching_dispatches_on_redelivery(world: World) -> None:
    envelope = world.envelope("a")
    acquired = world.store.acquire(
        AcquireRequest(BUILD_KEY, envelope.request_id, 600, "U0ALICE", "alice", "router", "plt", "cid-a")
    )
    assert isinstance(acquired, Acquired)
    world.store.note(BUILD_KEY, envelope.request_id, acquired.token, ref="main", commitSha=MAIN_SHA,
                     dispatchState="dispatching")  # fmt: skip

    response = deliver(sqs_event(envelope, receive_count=2))
    [run] = world.dispatches()
    assert run.inputs["lock_token"] == str(acquired.token)
    lock = world.lock()
    assert lock is not None and lock.notes["runId"] == str(run.id)
    assert_settled(world, [envelope], response)


@pytest.mark.parametrize("receive_count", [1, 2])
def test_a_second_envelope_of_the_request_with_another_correlation_id_finds_the_run_of_the_first(
    world: World, receive_count: int
) -> None:
    """Envelopes queued before the router derived correlation ids from the request: the same Slack request twice,
    each with a correlation id of its own. The run carries the lock's — the first one's — and is found by it."""
    first = world.envelope("a")
    run_id = _crashed_after_dispatch(world, first)
    second = dataclasses.replace(first, correlation_id="cid-a-delivered-again")

    response = deliver(sqs_event(second, receive_count=receive_count))

    assert response == {"batchItemFailures": []}
    assert [run.id for run in world.dispatches()] == [run_id]
    lock = world.lock()
    assert lock is not None and lock.correlation_id == first.correlation_id
    assert (lock.notes["dispatchState"], lock.notes["runId"]) == ("dispatched", str(run_id))
    [message] = world.replies_to("a")
    assert f"|run {run_id}>" in message.text
    assert_settled(world, [first], response)


def test_a_delivery_arriving_long_after_the_dispatch_still_finds_the_run_from_when_the_lock_was_taken(
    world: World,
) -> None:
    """The same request again minutes later (Slack retries an event after 1 and 5 minutes): a run looked for from
    its own arrival would be missed — GitHub's list is asked for runs created since then — and started twice."""
    first = world.envelope("a")
    run_id = _crashed_after_dispatch(world, first)
    later = dataclasses.replace(first, received_at=first.received_at + 10 * 60)

    response = deliver(sqs_event(later, receive_count=2))

    assert response == {"batchItemFailures": []}
    assert [run.id for run in world.dispatches()] == [run_id]
    lock = world.lock()
    assert lock is not None and lock.notes["runId"] == str(run_id)
    assert_settled(world, [first], response)


def test_a_request_that_holds_its_lock_dispatches_with_the_locks_correlation_id(world: World) -> None:
    first = world.envelope("a")
    acquired = world.store.acquire(
        AcquireRequest(BUILD_KEY, first.request_id, 600, "U0ALICE", "alice", "router", "plt", first.correlation_id)
    )
    assert isinstance(acquired, Acquired)  # taken, then the worker died before noting anything

    response = deliver(sqs_event(dataclasses.replace(first, correlation_id="cid-a-delivered-again")))

    [run] = world.dispatches()
    assert run.inputs["correlation_id"] == first.correlation_id
    assert parse_run_name(run.name) == (BUILD_KEY, first.correlation_id)
    assert_settled(world, [first], response)


def test_a_redelivery_whose_run_exists_and_whose_lock_moved_on_only_says_so(world: World) -> None:
    envelope = world.envelope("a")
    run_id = _crashed_after_dispatch(world, envelope)
    lock = world.lock()
    assert lock is not None
    world.store.release(BUILD_KEY, envelope.request_id, lock.token, Status.COMPLETED)

    response = deliver(sqs_event(envelope, receive_count=2))
    assert len(world.dispatches()) == 1
    [message] = world.replies_to("a")
    assert message.text.startswith("ℹ️ Your /build router plt already started <")  # noqa: RUF001
    assert f"|run {run_id}>" in message.text
    after = world.lock()
    assert after is not None and after.status is Status.COMPLETED
    assert_settled(world, [envelope], response)


def _idempotency_key(request_id: str) -> str:
    digest = hashlib.md5(json.dumps(request_id).encode(), usedforsecurity=False).hexdigest()
    return f"{build.IDEMPOTENCY_KEY_PREFIX}#{digest}"


def test_a_duplicate_delivered_while_the_first_is_in_progress_comes_back_later(world: World) -> None:
    envelope = world.envelope("a")
    in_a_minute = int(time.time() * 1000) + 60_000
    boto3.client("dynamodb").put_item(
        TableName=IDEMPOTENCY_TABLE,
        Item={
            "id": {"S": _idempotency_key(envelope.request_id)},
            "status": {"S": "INPROGRESS"},
            "expiration": {"N": str(int(time.time()) + 3600)},
            "in_progress_expiration": {"N": str(in_a_minute)},
        },
    )
    event = sqs_event(envelope)
    response = deliver(event)
    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert not world.dispatches() and world.lock() is None


# ------------------------------------------------------------------------------------------------- faults
def minutes_later(minutes: int) -> None:
    """The worker's lock store reads a clock ``minutes`` ahead (the redelivery's time)."""
    runtime.reset(lock_clock=lambda: time.time() + minutes * 60)


def test_github_500_on_dispatch_is_looked_into_again_and_the_retry_builds(world: World) -> None:
    """A 5xx may come after GitHub created the run: not listed within seconds is not "not started". The request is
    put off with its lock (noted ``dispatching``, attempt 1), nobody is told anything; the retry, minutes later,
    looks for the run, finds none, dispatches again — and builds, told once."""
    world.github.fail_next(status=500, method="POST", path_contains="/dispatches")
    envelope = world.envelope("a")
    first = deliver(sqs_event(envelope))

    assert failed_ids(first) and not world.dispatches() and not world.replies_to("a")
    held = world.lock()
    assert held is not None and held.status is Status.IN_PROGRESS
    assert (held.notes["dispatchState"], held.notes["dispatchAttempts"]) == ("dispatching", "1")

    minutes_later(6)  # the visibility timeout: GitHub lists any run it created well before
    retry = deliver(sqs_event(envelope, receive_count=2))
    assert retry == {"batchItemFailures": []}
    [run] = world.dispatches()
    [message] = world.replies_to("a")
    assert message.text.startswith("🔨 Building router (plt)") and f"runs/{run.id}" in message.text
    assert_settled(world, [envelope], retry)


def test_dispatches_github_never_confirms_end_the_request_once_no_run_of_them_is_listed(world: World) -> None:
    """Three dispatches unconfirmed (500, 502, 500), each looked for on the next delivery and never listed: only
    then is the request over — the lock released FAILED and the user told why, in one line."""
    world.github.fail_next(status=500, method="POST", path_contains="/dispatches")
    envelope = world.envelope("a")
    assert failed_ids(deliver(sqs_event(envelope)))
    world.github.fail_next(status=502, method="POST", path_contains="/dispatches")
    minutes_later(6)
    assert failed_ids(deliver(sqs_event(envelope, receive_count=2)))
    world.github.fail_next(status=500, method="POST", path_contains="/dispatches")
    minutes_later(12)
    assert failed_ids(deliver(sqs_event(envelope, receive_count=3)))
    assert not world.replies_to("a")

    minutes_later(18)
    last = deliver(sqs_event(envelope, receive_count=4))
    assert last == {"batchItemFailures": []}
    assert not world.dispatches()
    lock = world.lock()
    assert lock is not None and lock.status is Status.FAILED
    [message] = world.replies_to("a")
    assert message.text.startswith("❌ Couldn't start the build router (plt): GitHub confirmed none of 3 dispatches")
    assert message.text.endswith("The lock is released; try again once that is fixed.")
    assert_settled(world, [envelope], last)


@pytest.mark.parametrize("where", ["/dispatches", "/repos/"])
def test_github_401_releases_failed_and_says_why(world: World, where: str) -> None:
    world.github.fail_next(status=401, body={"message": "Bad credentials"}, path_contains=where)
    envelope = world.envelope("a")
    response = deliver(sqs_event(envelope))

    assert not world.dispatches()
    lock = world.lock()
    assert lock is not None and lock.status is Status.FAILED
    [message] = world.replies_to("a")
    assert message.text.startswith("❌ Couldn't start the build router (plt): ")
    assert_settled(world, [envelope], response)


def test_a_wrong_github_token_releases_failed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong")
    runtime.reset()
    envelope = world.envelope("a")
    response = deliver(sqs_event(envelope))
    assert not world.dispatches()
    lock = world.lock()
    assert lock is not None and lock.status is Status.FAILED
    assert "ghp_wrong" not in world.replies_to("a")[0].text
    assert_settled(world, [envelope], response)


def test_the_lock_table_missing_fails_the_record_and_changes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCK_TABLE_NAME", "no-such-table")
    runtime.reset()
    envelope = world.envelope("a")
    event = sqs_event(envelope)
    response = deliver(event)
    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert not world.dispatches() and world.lock() is None
    # The idempotency record went with the failure: once the table is back, the retry runs.
    monkeypatch.setenv("LOCK_TABLE_NAME", "chatbot-build-locks")
    runtime.reset()
    assert deliver(sqs_event(envelope, receive_count=2)) == {"batchItemFailures": []}
    assert len(world.dispatches()) == 1


def test_the_idempotency_table_missing_fails_the_record_before_the_lock(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", "no-such-table")
    runtime.reset()
    event = sqs_event(world.envelope("a"))
    response = deliver(event)
    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert not world.dispatches() and world.lock() is None


def test_github_unable_to_list_runs_on_a_redelivery_fails_the_record_and_keeps_the_lock(world: World) -> None:
    envelope = world.envelope("a")
    _crashed_after_dispatch(world, envelope)
    world.github.fail_next(3, status=503, method="GET", path_contains="/runs")
    event = sqs_event(envelope, receive_count=2)
    response = deliver(event)

    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert len(world.dispatches()) == 1
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS  # a run is going under it
    assert_settled(world, [envelope], response)
    # GitHub is back: the next delivery records the run instead of dispatching again.
    assert deliver(sqs_event(envelope, receive_count=3)) == {"batchItemFailures": []}
    assert len(world.dispatches()) == 1
    after = world.lock()
    assert after is not None and after.notes["dispatchState"] == "dispatched"


def test_a_response_url_answering_500_falls_back_to_the_channel_and_leaves_the_lock_alone(world: World) -> None:
    world.slack.fail_next(status=500, path_contains="/commands/")
    envelope = world.envelope("a")
    response = deliver(sqs_event(envelope))

    assert response == {"batchItemFailures": []}
    [run] = world.dispatches()
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS and lock.notes["runId"] == str(run.id)
    [posted] = world.slack.messages("chat.postMessage")
    assert posted.body["channel"] == "C0BUILDS" and posted.text.startswith("🔨 Building router (plt)…")
    assert_settled(world, [envelope], response)


def test_a_busy_reply_that_fails_changes_no_lock(world: World, caplog: pytest.LogCaptureFixture) -> None:
    deliver(sqs_event(world.envelope("a")))
    before = world.lock()
    world.slack.fail_next(status=500, path_contains="/commands/T0LOCAL/b/")
    response = deliver(sqs_event(world.envelope("b", user="bob")))
    assert response == {"batchItemFailures": []}
    assert world.lock() == before
    assert any(getattr(r, "correlation_id", None) == "cid-b" for r in caplog.records)


def test_a_message_that_is_not_a_build_goes_to_the_dlq(world: World) -> None:
    event = {
        "Records": [
            sqs_record("not json"),
            sqs_record(world.envelope("e", Echo("hello")).to_json()),
            sqs_record(world.envelope("ok").to_json()),
        ]
    }
    response = deliver(event)
    assert failed_ids(response) == [record["messageId"] for record in event["Records"][:2]]
    assert len(world.dispatches()) == 1


# ----------------------------------------------------------------------------------------- the lock switch
def test_with_the_lock_switched_off_every_request_dispatches_without_locking(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ENABLE_DISTRIBUTED_LOCK", "false")
    envelopes = [world.envelope("a"), world.envelope("b", user="bob")]
    response = deliver(sqs_event(*envelopes))

    assert response == {"batchItemFailures": []}
    runs = world.dispatches()
    assert len(runs) == 2 and {run.inputs["lock_token"] for run in runs} == {"0"}
    assert world.lock() is None
    assert world.replies_to("b")[0].text.endswith("(the distributed lock is switched off)")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "ENABLE_DISTRIBUTED_LOCK=false: dispatching without the lock" in warnings
    assert_settled(world, envelopes, response)


def test_a_run_that_could_not_start_counts_as_a_failed_run_once(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dashboard's failure rate counts what /build stats counts: a lock released FAILED by the build worker
    because its dispatch failed is a failed run; its redelivery (answered from the idempotency record) is not."""
    world.github.fail_next(status=401, body={"message": "Bad credentials"}, path_contains="/dispatches")
    envelope = world.envelope("a")
    capsys.readouterr()
    deliver(sqs_event(envelope))
    deliver(sqs_event(envelope))
    emitted = capsys.readouterr().out
    assert emf_values(emitted, RUN_FAILED_METRIC) == [1.0]
    assert emf_values(emitted, RUN_COMPLETED_METRIC) == []
