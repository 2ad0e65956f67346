"""``/build cancel <component> <env>``: parsed and routed like unlock, handled by the status worker's queue.

End to end from a build the build worker really dispatched: the cancel message as the router queues it, the run
cancelled in the GitHub stand-in, the lock in DynamoDB (moto), the words in the Slack stand-in.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import boto3
import pytest

from lockcore.dynamodb import DynamoDBLockStore
from lockcore.machine import AcquireRequest
from lockcore.outcomes import Acquired, ForceReleased
from lockcore.record import Status
from tests.workers.github_events import github_events
from tests.workers.worker_world import SHIPPED_CONFIG, Context, World, create_queues, sqs_event
from workers.adapters import runtime
from workers.adapters.github import GitHubClient
from workers.adapters.slack import SlackReplies
from workers.flows.cancel import Cancelled, CancelWorker, force_release_reason
from workers.handlers import build as build_lambda
from workers.handlers import status as status_lambda
from workers.handlers import webhook as webhook_lambda
from workers.protocol.commands import Cancel, Dispatch, Usage, acknowledgement, audience_for, describe, parse
from workers.protocol.config import QUEUE_FOR_KIND, Action, Queue, current_config, load_config
from workers.protocol.envelope import CommandEnvelope, read_message

BUILD_KEY = "build-router-plt"
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}
CANCEL = Cancel(Action.BUILD, "router", "plt")


def start_build(world: World, *, user: str = "alice") -> int:
    assert build_lambda.handler(sqs_event(world.envelope("a", user=user)), Context()) == NO_FAILURES
    return world.dispatches()[-1].id


def cancel(world: World, name: str, user: str, command: Cancel = CANCEL, channel: str = "C0BUILDS") -> str:
    """Send the cancel through the status worker; the one reply its sender got."""
    envelope = world.envelope(name, command, user=user, channel=channel)
    assert status_lambda.handler(sqs_event(envelope), Context()) == NO_FAILURES
    [reply] = world.replies_to(name)
    return reply.text


# ------------------------------------------------------------------------------------------------ parsing
def test_cancel_is_parsed_routed_and_acknowledged_like_unlock() -> None:
    config = load_config(SHIPPED_CONFIG, {})
    assert parse("/build", "cancel Router PLT", config) == CANCEL
    assert parse("/deploy", "cancel api prod", config) == Cancel(Action.DEPLOY, "api", "prod")
    assert isinstance(parse("/build", "cancel router", config), Usage)
    assert isinstance(parse("/build", "cancel router nowhere", config), Usage)
    assert describe(CANCEL) == "/build cancel router plt"
    assert acknowledgement(CANCEL) == "⏳ Got it: /build cancel router plt — cancelling the run…"
    assert audience_for(config, CANCEL).anyone  # the worker decides: only the lock knows its holder
    assert QUEUE_FOR_KIND["cancel"] is Queue.STATUS


def test_a_cancel_envelope_goes_through_the_queue_intact(world: World) -> None:
    envelope = world.envelope("c", Cancel(Action.DEPLOY, "api", "prod"), user="bob")
    back = read_message(envelope.to_json())
    assert isinstance(back, CommandEnvelope) and back == envelope and back.kind == "cancel"


# -------------------------------------------------------------------------------------------- who may
def test_the_holder_cancels_their_own_build(world: World) -> None:
    run_id = start_build(world, user="alice")
    run_url = world.github.run(run_id).html_url

    reply = cancel(world, "c", "alice")

    assert world.github.run(run_id).status == "completed"
    assert world.github.run(run_id).conclusion == "cancelled"
    lock = world.lock()
    assert lock is not None and lock.status is Status.FORCE_RELEASED
    assert (lock.released_by, lock.release_reason) == ("U0ALICE", "cancelled from Slack by alice")
    assert reply.startswith("🛑 router (plt) build cancelled by <@U0ALICE> — started by <@U0ALICE> at <!date^")
    assert reply.endswith(f", <{run_url}|run {run_id}>. The lock is free.")
    [message] = world.replies_to("c")
    assert message.body["response_type"] == "in_channel"
    assert world.slack.messages("chat.postMessage") == []  # the same channel: told once, by the reply


def test_an_admin_cancels_anyones_build_and_the_lock_channel_is_told(world: World) -> None:
    run_id = start_build(world, user="alice")
    reply = cancel(world, "c", "admin", channel="C0ADMINS")
    assert reply.startswith("🛑 router (plt) build cancelled by <@U0ADMIN> — started by <@U0ALICE>")
    assert world.github.run(run_id).conclusion == "cancelled"
    lock = world.lock()
    assert lock is not None and lock.status is Status.FORCE_RELEASED and lock.released_by == "U0ADMIN"
    [posted] = world.slack.messages("chat.postMessage")
    assert posted.body["channel"] == "C0BUILDS" and posted.text == reply


def test_anyone_else_is_refused_and_told_who_may(world: World) -> None:
    run_id = start_build(world, user="alice")
    reply = cancel(world, "c", "bob")
    assert reply == (
        "🚫 Sorry, only the holder (<@U0ALICE>) or an admin may run /build cancel router plt. "
        "Who may: <@U0ADMIN> or <@U0ALICE>."
    )
    assert world.github.run(run_id).status != "completed"
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS
    assert world.github.requests_to("POST", "/cancel") == []


# ---------------------------------------------------------------------------------------- what follows
def test_the_cancelled_runs_webhook_changes_nothing_more(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    with github_events(world, monkeypatch) as github:
        run_id = start_build(world)
        cancel(world, "c", "alice")
        github.post_all(action="completed", run_id=run_id)
        assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES
    lock = world.lock()
    assert lock is not None and lock.status is Status.FORCE_RELEASED
    assert world.slack.messages("chat.postMessage") == []


def test_nothing_to_cancel_when_no_run_holds_the_lock(world: World) -> None:
    assert cancel(world, "c", "alice") == (
        "✅ Nothing to cancel: `build-router-plt` is free: no lock was ever taken under this key."
    )
    start_build(world)
    cancel(world, "d", "alice")
    again = cancel(world, "e", "alice")
    assert again.startswith("✅ Nothing to cancel: `build-router-plt` is free: force-released by <@U0ALICE> ")
    assert len(world.github.requests_to("POST", "/cancel")) == 1


def test_a_run_that_already_finished_is_left_to_its_result(world: World) -> None:
    run_id = start_build(world)
    world.github.complete_run(run_id, "success")  # its webhook not handled yet
    reply = cancel(world, "c", "alice")
    assert reply.startswith("ℹ️ The run of router (plt)")  # noqa: RUF001
    assert "had already finished, so there was nothing to cancel" in reply
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS  # the webhook or the reaper records the outcome


def test_github_unable_to_say_where_the_run_stands_keeps_the_lock(world: World) -> None:
    run_id = start_build(world)
    world.github.fail_next(3, status=503, method="GET", path_contains=f"/runs/{run_id}")
    reply = cancel(world, "c", "alice")
    assert reply.startswith("⚠️ Couldn't cancel the run of router (plt): GitHub at ")
    assert reply.endswith("Nothing changed, the lock is still held; try again in a moment.")
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS
    assert world.github.requests_to("POST", "/cancel") == []


def test_github_refusing_the_cancel_after_the_release_says_so(world: World) -> None:
    run_id = start_build(world)
    world.github.fail_next(3, status=503, method="POST", path_contains="/cancel")
    reply = cancel(world, "c", "alice")
    assert reply.startswith("🛑 router (plt) build cancelled by <@U0ALICE>")
    assert "⚠️ But GitHub did not cancel the run (GitHub at " in reply and reply.endswith("): cancel it there.")
    lock = world.lock()
    assert lock is not None and lock.status is Status.FORCE_RELEASED
    assert world.github.run(run_id).status != "completed"


def test_a_run_still_being_dispatched_cannot_be_cancelled_yet(world: World) -> None:
    taken = world.store.acquire(
        AcquireRequest(BUILD_KEY, "req-x", 600, "U0ALICE", "alice", "router", "plt", correlation_id="cid-x")
    )
    assert isinstance(taken, Acquired)
    world.store.note(
        BUILD_KEY, "req-x", taken.token, command="build", channelId="C0BUILDS", dispatchState="dispatching"
    )
    reply = cancel(world, "c", "alice")
    assert reply == "⏳ The run is still being started; try `/build cancel router plt` again in a few seconds."
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS


def test_a_redelivered_cancel_goes_on_as_the_first_without_writing_again(world: World) -> None:
    """The release already done by the same user, but read before it (a redelivery racing the first, or the
    first write's answer lost): the store answers a repeat and the cancel goes on — its run must still be
    cancelled — with nothing written twice."""
    taken = world.store.acquire(AcquireRequest(BUILD_KEY, "req-x", 600, "U0ALICE", "alice", "router", "plt"))
    assert isinstance(taken, Acquired)
    envelope = world.envelope("c", CANCEL, user="alice")
    worker = CancelWorker(current_config(), world.store, runtime.github_client())
    assert worker.cancel(envelope, CANCEL) is Cancelled.DONE
    released = world.lock()
    read_before = taken.record
    repeat = worker._release(envelope, read_before, world.store.now())
    assert isinstance(repeat, ForceReleased) and repeat.repeated
    assert world.lock() == released and released is not None and released.status is Status.FORCE_RELEASED


def test_a_cancel_sent_before_the_lock_was_taken_leaves_the_new_holder_alone(world: World) -> None:
    """An admin's cancel redelivered after its first delivery freed the lock and the next in line took it: the
    run under the lock now is not the one the admin meant."""
    typed = replace(world.envelope("c", CANCEL, user="admin"), received_at=int(time.time()) - 10)
    run_id = start_build(world, user="bob")  # taken after the cancel was typed
    assert status_lambda.handler(sqs_event(typed), Context()) == NO_FAILURES
    [reply] = world.replies_to("c")
    assert reply.text.startswith("⚠️ `build-router-plt` changed in the meantime (now held by bob"), reply.text
    assert reply.text.endswith("nothing was released.")
    assert world.github.run(run_id).conclusion is None
    lock = world.lock()
    assert lock is not None and lock.status is Status.IN_PROGRESS


def test_a_cancel_that_died_after_its_release_cancels_the_run_when_delivered_again(world: World) -> None:
    """The first delivery force-released the lock and died before asking GitHub to cancel the run: the
    redelivery finds the lock released by this very cancel, and cancels the run it left going."""
    run_id = start_build(world, user="alice")
    envelope = replace(world.envelope("c", CANCEL, user="alice"), received_at=int(time.time()) + 2)
    held = world.lock()
    assert held is not None
    reason = force_release_reason(envelope.user_name, envelope.user_id)
    world.store.force_release(BUILD_KEY, held.token, by=envelope.user_id, reason=reason)  # then the worker died
    assert world.github.run(run_id).conclusion is None

    assert status_lambda.handler(sqs_event(envelope), Context()) == NO_FAILURES

    assert world.github.run(run_id).conclusion == "cancelled"
    [reply] = world.replies_to("c")
    assert reply.text.startswith("🛑 router (plt) build cancelled by <@U0ALICE>"), reply.text
    lock = world.lock()
    assert lock is not None and lock.status is Status.FORCE_RELEASED and lock.token == held.token


# ------------------------------------------------------------------------------------- a crash mid-way
class WorkerDied(Exception):
    """The Lambda stopped right after an effect took place (a timeout, an out-of-memory kill)."""


def die_after(monkeypatch: pytest.MonkeyPatch, owner: type, method: str, when: Any = lambda *_: True) -> None:
    """The first call of ``owner.method`` for which ``when(args)`` holds takes effect, then the worker dies."""
    real = getattr(owner, method)
    died: list[bool] = []

    def effect_then_die(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = real(self, *args, **kwargs)
        if not died and when(*args):
            died.append(True)
            raise WorkerDied(f"died after {method}")
        return answer

    monkeypatch.setattr(owner, method, effect_then_die)


EFFECTS = {
    "release": (DynamoDBLockStore, "force_release", lambda *_: True),
    "github-cancel": (GitHubClient, "cancel_run", lambda *_: True),
    "slack-answer": (SlackReplies, "reply", lambda _url, message: message.text.startswith("🛑")),
}


@pytest.mark.parametrize("queued", [False, True], ids=["alone", "bob-waiting"])
@pytest.mark.parametrize("effect", list(EFFECTS))
def test_a_cancel_that_died_after_any_effect_is_finished_by_its_redelivery(
    world: World, monkeypatch: pytest.MonkeyPatch, effect: str, queued: bool
) -> None:
    """Release the lock, cancel the run in GitHub, answer in Slack: whichever the first delivery died after, the
    redelivery finishes it — the run cancelled, the lock free (or handed to bob, whose build is queued), alice
    answered that it was cancelled."""
    create_queues(monkeypatch)
    run_id = start_build(world, user="alice")
    bob = world.envelope("b", Dispatch(Action.BUILD, "router", "plt", queue=True), user="bob")
    if queued:
        assert build_lambda.handler(sqs_event(bob), Context()) == NO_FAILURES
    held = world.lock()
    assert held is not None
    owner, method, when = EFFECTS[effect]
    die_after(monkeypatch, owner, method, when)
    envelope = world.envelope("c", CANCEL, user="alice")

    first = status_lambda.handler(sqs_event(envelope), Context())
    assert len(first["batchItemFailures"]) == 1  # back to the queue
    assert status_lambda.handler(sqs_event(envelope, receive_count=2), Context()) == NO_FAILURES

    assert world.github.run(run_id).conclusion == "cancelled"
    lock = world.lock()
    assert lock is not None
    if queued:
        assert (lock.owner, lock.token, lock.status) == (bob.request_id, held.token + 1, Status.IN_PROGRESS)
        handed = [body for body in sqs_bodies(Queue.BUILD) if '"handedOff"' in body]
        assert handed and all(bob.request_id in body for body in handed)
    else:
        assert (lock.status, lock.token, lock.released_by) == (Status.FORCE_RELEASED, held.token, "U0ALICE")
    replies = [reply.text for reply in world.replies_to("c")]
    assert replies and all(text.startswith("🛑 router (plt) build cancelled by <@U0ALICE>") for text in replies), (
        replies
    )


def sqs_bodies(queue: Queue) -> list[str]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=f"chatops-{queue.value}")["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [message["Body"] for message in messages]
