"""The dead-letter worker: a request that failed every attempt is told what is true of it now, where it can still be
told, and no record it takes ever goes back to its DLQ."""

from __future__ import annotations

import pytest

from lockcore import machine as m
from lockcore import outcomes
from lockcore.record import Status
from tests.workers import sqs_events as sqs
from tests.workers.worker_world import World, failed_ids
from workers.handlers import deadletter
from workers.protocol.commands import Dispatch, LockStatus
from workers.protocol.config import Action
from workers.protocol.envelope import CommandEnvelope, HomeRefresh, WorkflowRunEnvelope


def dead(*bodies: str, queue: str = "chatops-build-dlq") -> dict[str, object]:
    return sqs.event(*(sqs.record(body, queue=queue, receive_count=6) for body in bodies))


def hold(world: World, envelope: CommandEnvelope, **notes: str) -> None:
    command = envelope.command
    assert isinstance(command, Dispatch)
    outcome = world.store.acquire(
        m.AcquireRequest(
            "build-router-plt", envelope.request_id, 600, envelope.user_id, envelope.user_name, "router", "plt"
        )
    )
    assert isinstance(outcome, outcomes.Acquired)
    if notes:
        world.store.note("build-router-plt", envelope.request_id, outcome.record.token, **notes)


def test_a_dead_build_that_never_took_its_lock_is_told_nothing_was_started(world: World) -> None:
    request = world.envelope("never")
    assert failed_ids(deadletter.handler(dead(request.to_json()), None)) == []
    [reply] = world.replies_to("never")
    assert reply.text.startswith("❌ Your `/build` could not be done: it failed on every attempt. Nothing was started")
    assert reply.body.get("response_type") == "ephemeral"


def test_a_dead_build_whose_dispatch_was_under_way_is_not_called_failed_and_its_lock_is_left_alone(
    world: World,
) -> None:
    request = world.envelope("midway")
    hold(world, request, dispatchState="dispatching", ref="main", commitSha="a" * 40, channelId="C0BUILDS")
    before = world.lock()
    assert failed_ids(deadletter.handler(dead(request.to_json()), None)) == []
    [reply] = world.replies_to("midway")
    assert "a run may have started" in reply.text and "stays held" in reply.text
    assert "could not be done" not in reply.text
    assert world.lock() == before, "telling writes nothing: the reaper and the lease settle the lock"


def test_a_dead_build_that_dispatched_names_its_run(world: World) -> None:
    request = world.envelope("ran")
    run_url = "https://github.com/example-org/platform/actions/runs/77"
    hold(world, request, dispatchState="dispatched", runId="77", runUrl=run_url)
    world.store.release("build-router-plt", request.request_id, world.lock().token, Status.COMPLETED)  # type: ignore[union-attr]
    deadletter.handler(dead(request.to_json()), None)
    [reply] = world.replies_to("ran")
    assert f"<{run_url}|run 77>" in reply.text and "released since (COMPLETED)" in reply.text


def test_when_the_response_url_is_spent_the_requester_is_told_in_the_channel_alone(world: World) -> None:
    request = world.envelope("spent", LockStatus())
    world.slack.expire_response_url("spent")
    deadletter.handler(dead(request.to_json(), queue="chatops-status-dlq"), None)
    [ephemeral] = world.slack.messages("/api/chat.postEphemeral")
    assert ephemeral.body["channel"] == "C0BUILDS" and ephemeral.body["user"] == "U0ALICE"
    assert (
        ephemeral.text.startswith("❌ Your `/build` could not be answered") and "Nothing was changed" in ephemeral.text
    )


def test_a_body_that_is_not_ours_or_has_no_requester_is_dropped_in_one_line_not_retried(world: World) -> None:
    workflow_run = WorkflowRunEnvelope(
        "d-1", "cid-run", "completed", 7, 1, "build", "build-router-plt cid-run", "completed", "success",
        "https://github.com/o/r/actions/runs/7", "a" * 40, ".github/workflows/build.yml", "o/r", 0,
    )  # fmt: skip
    logs = sqs.Logs()
    logs.attach()
    try:
        refresh = HomeRefresh("cid-home", 0)
        bodies = ("not json", '{"version": 1, "kind": "not-ours"}', workflow_run.to_json(), refresh.to_json())
        response = deadletter.handler(dead(*bodies), None)
    finally:
        logs.detach()
    assert failed_ids(response) == [], "already dead: a DLQ has no DLQ, a failure would come back for two weeks"
    assert world.slack.messages() == []
    assert [line["message"] for line in logs.at("WARNING")] == [
        "dead letter dropped: not one of ours",
        "dead letter dropped: not one of ours",
        "dead letter dropped: it has no requester",
        "dead letter dropped: it has no requester",
    ]
    assert not logs.at("ERROR")


def test_a_telling_that_breaks_is_logged_and_dropped(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def breaks(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(deadletter, "tell", breaks)
    logs = sqs.Logs()
    logs.attach()
    try:
        request = world.envelope("broken", Dispatch(Action.DEPLOY, "api", "plt"))
        assert failed_ids(deadletter.handler(dead(request.to_json(), queue="chatops-deploy-dlq"), None)) == []
    finally:
        logs.detach()
    [error] = logs.at("ERROR")
    assert error["message"] == "dead letter dropped: telling its requester failed"
    assert error["correlation_id"] == "cid-broken"
