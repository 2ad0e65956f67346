"""The reaper: a sweep over the lock table against GitHub, for the events that never came.

Builds are dispatched by the real build worker; GitHub and Slack are the loopback stand-ins; DynamoDB is moto.
Time is simulated where a lease must run out: the reaper (or the build before it) reads and writes the lock
table through a store whose clock is told where it stands. The scheduled handler runs on an EventBridge event.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from lockcore.machine import AcquireRequest
from lockcore.outcomes import Acquired, HeldBySomeone
from lockcore.record import Status
from tests.workers.github_events import SimulatedClock, build_at, github_events, scheduled_event, store_at
from tests.workers.worker_world import Context, World, sqs_event
from workers.adapters import runtime
from workers.flows import reaper
from workers.flows.runlock import Effect, ExpiryCause
from workers.handlers import build as build_lambda
from workers.handlers import reaper as reaper_lambda
from workers.handlers import webhook as webhook_lambda
from workers.local.github import WorkflowRun
from workers.protocol.commands import Dispatch
from workers.protocol.config import Action, current_config

BUILD_KEY = "build-router-plt"
DEPLOY_KEY = "deploy-api-prod"
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


def start_build(world: World, name: str = "a", *, command: Dispatch | None = None) -> WorkflowRun:
    assert build_lambda.handler(sqs_event(world.envelope(name, command)), Context()) == NO_FAILURES
    return world.dispatches()[-1]


def reaper_at(clock: SimulatedClock) -> reaper.Reaper:
    return reaper.Reaper(current_config(), store_at(clock), runtime.github_client(), runtime.slack_replies())


def effects(swept: list[reaper.Swept]) -> dict[str, Effect]:
    return {item.lock_key: item.effect for item in swept}


def channel_posts(world: World) -> list[str]:
    return [message.text for message in world.slack.messages("chat.postMessage")]


# ------------------------------------------------------------------------------------ the missed webhook
def test_a_missed_webhook_is_recovered_by_the_reaper(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, "success")  # GitHub never delivers the webhook: nobody listens

    answer = reaper_lambda.handler(scheduled_event(), Context())

    assert answer == {"locks": 1, "effects": {"released": 1}}
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED
    [text] = channel_posts(world)
    assert text.startswith("✅ router (plt) built in ") and text.endswith(f"<{run.html_url}|run {run.id}>")
    assert '"buildLockManager.releaseLock.success":[1.0]' in capsys.readouterr().out

    assert reaper_lambda.handler(scheduled_event(), Context()) == {"locks": 0, "effects": {}}  # idempotent
    assert len(channel_posts(world)) == 1


def test_a_failed_run_without_its_webhook_is_released_failed(world: World) -> None:
    run = start_build(world)
    world.github.complete_run(run.id, "timed_out")
    assert effects(reaper_at(SimulatedClock()).sweep()) == {BUILD_KEY: Effect.RELEASED}
    lock = world.lock()
    assert lock is not None and lock.status is Status.FAILED
    [text] = channel_posts(world)
    assert text.startswith("❌ router (plt) build failed (timed_out) after ")


def test_the_reaper_and_a_late_webhook_tell_the_channel_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    with github_events(world, monkeypatch) as github:
        run = start_build(world)
        world.github.complete_run(run.id, "success")
        assert effects(reaper_at(SimulatedClock()).sweep()) == {BUILD_KEY: Effect.RELEASED}
        github.post_all(action="completed")  # the webhook arrives after all
        assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED
    assert len(channel_posts(world)) == 1


def test_a_runs_end_the_channel_did_not_hear_after_a_hand_off_is_handed_to_the_webhook_worker(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook never came; the reaper releases alice's lock to bob, next in line, and Slack answers the result
    500. No lock shows the release for the next sweep to look at again: the reaper queues the run's end for the
    webhook worker as the event GitHub did not deliver, and the webhook worker tells it — once."""
    with github_events(world, monkeypatch) as github:
        run = start_build(world, "a")
        queued = Dispatch(Action.BUILD, "router", "plt", queue=True)
        assert build_lambda.handler(sqs_event(world.envelope("b", queued, user="bob")), Context()) == NO_FAILURES
        world.github.complete_run(run.id, "failure")
        world.slack.fail_next(status=500, path_contains="chat.postMessage")

        assert effects(reaper_at(SimulatedClock()).sweep()) == {BUILD_KEY: Effect.END_HANDED_OVER}
        [refused] = channel_posts(world)  # (the stand-in records the post it answered 500)
        handed = github.queued()
        assert webhook_lambda.handler(handed, Context()) == NO_FAILURES
        assert webhook_lambda.handler(handed, Context()) == NO_FAILURES  # and again: told once

    [_, text] = channel_posts(world)
    assert refused.split(" after ")[0] == text.split(" after ")[0]  # told as the reaper would have told it
    assert text.startswith("❌ router (plt) build failed (failure) after "), text
    assert f"<{run.html_url}|run {run.id}>" in text and "Handed to <@U0BOB>" in text
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS and lock.locked_by == "U0BOB"


# ------------------------------------------------------------------------------------------- lapsed leases
def test_a_lapsed_lease_whose_run_vanished_is_expired_with_a_message_and_a_metric(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # The build started twenty minutes ago (its lease was ten) and GitHub no longer knows its run.
    run_clock = SimulatedClock(time.time() - 1200)
    build_at(run_clock, world.envelope("a"))
    [run] = world.dispatches()
    world.github.fail_next(status=404, body={"message": "Not Found"}, method="GET", path_contains=f"/runs/{run.id}")
    capsys.readouterr()

    answer = reaper_lambda.handler(scheduled_event(), Context())

    assert answer == {"locks": 1, "effects": {"expired": 1}}
    lock = world.lock()
    assert lock is not None and lock.status is Status.EXPIRED and lock.released_at is not None
    [posted] = world.slack.messages("chat.postMessage")
    assert posted.body["channel"] == "C0BUILDS"
    assert re.fullmatch(
        r"⌛ The build lock on router \(plt\) expired at <!date\^\d+\^\{time\}\|[^>]+>: its run is gone from GitHub "
        rf"\(<{re.escape(run.html_url)}\|run {run.id}>\)\. It was started by <@U0ALICE> at <!date\^\d+\^\{{time\}}"
        r"\|[^>]+>\. The lock is free again\.",
        posted.text,
    ), posted.text
    emitted = capsys.readouterr().out
    assert '"buildLockManager.lock.expired":[1.0]' in emitted and '"Namespace":"ChatOps"' in emitted

    assert reaper_lambda.handler(scheduled_event(), Context()) == {"locks": 0, "effects": {}}
    assert len(channel_posts(world)) == 1


def test_a_lapsed_lock_with_no_run_is_expired(world: World) -> None:
    clock = SimulatedClock()
    store = store_at(clock)
    taken = store.acquire(AcquireRequest(BUILD_KEY, "cli-1", 60, "U0CAROL", "carol", "router", "plt", "cid-cli"))
    assert isinstance(taken, Acquired)
    store.note(BUILD_KEY, "cli-1", taken.token, channelId="C0OPS")

    assert effects(reaper_at(clock).sweep()) == {BUILD_KEY: Effect.KEPT}  # the lease still runs
    clock.advance(61)
    assert effects(reaper_at(clock).sweep()) == {BUILD_KEY: Effect.EXPIRED}
    [posted] = world.slack.messages("chat.postMessage")
    assert posted.body["channel"] == "C0OPS" and "no run was ever recorded under it" in posted.text
    assert reaper_at(clock).sweep() == []


def test_a_run_still_going_when_its_lease_lapsed_is_expired_and_said_so(world: World) -> None:
    run = start_build(world)
    world.github.start_run(run.id)
    late = SimulatedClock(time.time() + 601)  # the reaper did not run for a whole lease
    assert effects(reaper_at(late).sweep()) == {BUILD_KEY: Effect.EXPIRED}
    [text] = channel_posts(world)
    assert "its run is still going, but nothing renewed the lease in time" in text


def test_a_lock_taken_again_before_the_reaper_writes_is_left_alone(world: World) -> None:
    start_build(world)
    late = SimulatedClock(time.time() + 700)
    sweeper = reaper_at(late)
    [stale] = [record for record in sweeper.store.list(include_free=True) if record.lock_key == BUILD_KEY]
    assert isinstance(store_at(late).acquire(AcquireRequest(BUILD_KEY, "bob-request", 600)), Acquired)
    assert sweeper.locks.expire(stale, ExpiryCause.NO_RUN) is Effect.REFUSED
    lock = world.lock()
    assert lock is not None and lock.owner == "bob-request" and lock.status is Status.IN_PROGRESS
    assert channel_posts(world) == []


def test_github_failing_for_one_lock_does_not_stop_the_sweep(world: World) -> None:
    first = start_build(world, "a")
    second = start_build(world, "b", command=Dispatch(Action.BUILD, "api", "plt"))
    world.github.complete_run(second.id, "success")
    world.github.fail_next(3, status=502, method="GET", path_contains=f"/runs/{first.id}")
    assert effects(reaper_at(SimulatedClock()).sweep()) == {BUILD_KEY: Effect.KEPT, "build-api-plt": Effect.RELEASED}
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS


# ------------------------------------------------------------------------------------- a long run kept alive
def test_a_long_deploy_is_kept_alive_by_the_reaper(world: World) -> None:
    """A 45-minute deploy under a 30-minute lease, with no in_progress events at all: the reaper renews it each
    time less than half a lease is left; nobody takes the lock meanwhile; the completion releases it."""
    run = start_build(world, command=Dispatch(Action.DEPLOY, "api", "prod", "main"))
    world.github.start_run(run.id)
    clock = SimulatedClock()
    store = store_at(clock)
    extended = 0
    for _ in range(45):  # every minute
        clock.advance(60)
        extended += effects(reaper_at(clock).sweep())[DEPLOY_KEY] is Effect.EXTENDED
        assert isinstance(store.acquire(AcquireRequest(DEPLOY_KEY, "someone-else", 1800)), HeldBySomeone)
    assert extended == 2  # at 15 and 30 minutes in (less than 15 of 30 minutes left)
    world.github.complete_run(run.id, "success")
    clock.advance(60)
    assert effects(reaper_at(clock).sweep()) == {DEPLOY_KEY: Effect.RELEASED}
    [text] = channel_posts(world)
    assert text.startswith(f"✅ api (prod) deployed `{run.head_sha[:7]}` in 46m")


def test_a_run_held_past_the_limit_is_not_renewed(world: World) -> None:
    run = start_build(world)
    world.github.start_run(run.id)
    clock = SimulatedClock()
    for _ in range(6 * 15 + 5):  # six hours and a quarter; a sweep every four minutes renews a 10-minute lease
        clock.advance(240)
        outcome = effects(reaper_at(clock).sweep()).get(BUILD_KEY)
        if outcome is Effect.EXPIRED:
            break
    else:
        pytest.fail("a run going for more than six hours kept its lock")
    [text] = channel_posts(world)
    assert "its run has been going for longer than a lock is kept" in text


def test_a_run_dispatched_but_never_noted_is_found_by_its_name_and_released(world: World) -> None:
    """GitHub answered the dispatch with 204 and did not list the run in time: the lock says `dispatched` with no
    run id. The reaper finds the run by the correlation id in its name, and its completion frees the lock."""
    clock = SimulatedClock()
    store = store_at(clock)
    taken = store.acquire(AcquireRequest(BUILD_KEY, "req-z", 600, "U0ZOE", "zoe", "router", "plt", "cid-zoe"))
    assert isinstance(taken, Acquired)
    store.note(BUILD_KEY, "req-z", taken.token, command="build", channelId="C0BUILDS", dispatchState="dispatched")
    inputs = {"lock_key": BUILD_KEY, "correlation_id": "cid-zoe", "component": "router", "environment": "plt"}
    runtime.github_client().dispatch_workflow(current_config().github.repository, "build.yml", "main", inputs)
    [run] = world.dispatches()
    world.github.complete_run(run.id, "success")

    assert effects(reaper_at(clock).sweep()) == {BUILD_KEY: Effect.RELEASED}
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED
    [text] = channel_posts(world)
    assert text.startswith("✅ router (plt) built in ")
