"""The lock's queue through the workers: a request that meets a held lock with ``--queue`` waits in line, and the
write that frees the lock — a run's completion (webhook), the reaper's expiry — hands it on and has the waiting
request dispatched by the build worker. DynamoDB and SQS on moto, GitHub and Slack on loopback; nothing mocked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest

from lockcore.record import Status
from tests.workers.github_events import (
    GitHubEvents,
    SimulatedClock,
    build_at,
    scheduled_event,
    store_at,
)
from tests.workers.test_status_worker import press
from tests.workers.worker_world import (
    SHIPPED_CONFIG,
    Context,
    World,
    create_queues,
    running_world,
    sqs_event,
    sqs_record,
)
from workers.adapters import runtime
from workers.adapters.pending import PendingRequests
from workers.flows import runlock, status
from workers.handlers import build as build_lambda
from workers.handlers import reaper as reaper_lambda
from workers.handlers import status as status_lambda
from workers.handlers import webhook as webhook_lambda
from workers.protocol.codec import from_tagged, to_wire
from workers.protocol.commands import Cancel, Command, Dequeue, Dispatch, Freeze, parse
from workers.protocol.config import Action, ConfigError, Conflict, Queue, current_config, load_config
from workers.protocol.dispatch import Job
from workers.protocol.envelope import (
    LOCK_WATCH_ACTION,
    CommandEnvelope,
    InteractionEnvelope,
)

BUILD_KEY = "build-router-plt"
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}
QUEUED = Dispatch(Action.BUILD, "router", "plt", queue=True)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with running_world(monkeypatch) as world:
        create_queues(monkeypatch)
        yield world


def send(world: World, envelope: CommandEnvelope) -> None:
    assert build_lambda.handler(sqs_event(envelope), Context()) == NO_FAILURES


def build_queue(queue: Queue = Queue.BUILD) -> list[str]:
    """Take what waits on the build (or deploy) queue: the hand-offs the workers queued."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=f"chatops-{queue.value}")["QueueUrl"]
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    messages = answer.get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [message["Body"] for message in messages]


def drain(world: World, queue: Queue = Queue.BUILD) -> list[str]:
    bodies = build_queue(queue)
    if bodies:
        event = {"Records": [sqs_record(body) for body in bodies]}
        assert build_lambda.handler(event, Context()) == NO_FAILURES
    return bodies


def channel_posts(world: World) -> list[str]:
    return [message.text for message in world.slack.messages("chat.postMessage")]


def test_the_parser_and_the_envelope_carry_the_queue_flag() -> None:
    parsed = parse("/build", "router plt --queue", load_config())
    assert parsed == QUEUED
    assert from_tagged(Command, to_wire(QUEUED)) == QUEUED
    plain = Dispatch(Action.BUILD, "router", "plt")
    assert from_tagged(Command, to_wire(plain)) == plain and "queue" not in to_wire(plain)


def test_a_queued_request_is_dispatched_when_the_holders_run_completes(world: World, github: GitHubEvents) -> None:
    send(world, world.envelope("a"))
    [first] = world.dispatches()
    send(world, world.envelope("b", QUEUED, user="bob"))
    send(world, world.envelope("c", QUEUED, user="carol", channel="C0RELEASES"))  # identical: joins bob's entry
    [told_b] = world.replies_to("b")
    assert told_b.text.startswith("⏳ Queued: position 1 behind alice"), told_b.text
    [told_c] = world.replies_to("c")
    assert told_c.text.startswith("⏳ Queued with an identical request already waiting"), told_c.text
    assert len(world.dispatches()) == 1
    held = world.lock()
    assert held is not None and held.owner == world.envelope("a").request_id

    world.github.start_run(first.id)
    world.github.complete_run(first.id, "success")
    github.post_all(run_id=first.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES

    handed = world.lock()
    bob = world.envelope("b", QUEUED, user="bob")
    assert handed is not None and handed.owner == bob.request_id and handed.token == held.token + 1
    assert handed.status is Status.IN_PROGRESS
    [result] = channel_posts(world)
    assert result.startswith("✅ router (plt) built in ") and "⏭️ Handed to <@U0BOB> (and 1 identical request)" in result

    [body] = drain(world)
    handed_off = CommandEnvelope.from_json(body)
    assert (handed_off.handed_off, handed_off.coalesced) == (handed.token, (world.envelope("c").request_id,))
    [_, second] = world.dispatches()
    after = world.lock()
    assert after is not None and after.owner == bob.request_id and after.token == handed.token
    assert after.notes.get("runId") == str(second.id)
    assert any(m.text.startswith("🔨 Building router (plt)…") for m in world.replies_to("b"))

    world.github.start_run(second.id)  # bob's run — carol's too — ends: carol hears it where she asked
    world.github.complete_run(second.id, "failure")
    github.post_all(run_id=second.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES
    [_, bobs] = channel_posts(world)
    assert bobs.startswith("❌ router (plt) build failed") and "<@U0BOB>" in bobs
    [carols] = world.slack.messages("chat.postEphemeral")
    assert (carols.body["channel"], carols.body["user"]) == ("C0RELEASES", "U0CAROL")
    assert carols.text == bobs
    assert any("your identical request waited with bob's" in m.text for m in world.replies_to("c"))

    assert drain(world) == []  # one hand-off, one dispatch
    send(world, world.envelope("b", QUEUED, user="bob"))  # the original request again: answered from its record
    assert len(world.dispatches()) == 2


def test_a_handed_request_that_cannot_start_tells_every_coalesced_requester(world: World, github: GitHubEvents) -> None:
    send(world, world.envelope("a"))
    [first] = world.dispatches()
    send(world, world.envelope("b", QUEUED, user="bob"))
    send(world, world.envelope("c", QUEUED, user="carol"))
    world.github.complete_run(first.id, "success")
    github.post_all(run_id=first.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES

    world.github.fail_next(status=401, body={"message": "Bad credentials"}, path_contains="/dispatches")
    world.slack.expire_response_url("b")  # bob queued more than 30 minutes ago
    [_] = drain(world)

    assert len(world.dispatches()) == 1
    [_, expired] = world.replies_to("b")  # refused by Slack: the news went to bob alone instead
    [bob] = world.slack.messages("chat.postEphemeral")
    assert (bob.body["user"], bob.body["channel"], bob.text) == ("U0BOB", "C0BUILDS", expired.text)
    assert bob.text.startswith("❌ Couldn't start the build router (plt): ")
    [_, carol] = world.replies_to("c")
    assert carol.text == f"{bob.text} (Your identical request waited with bob's.)"
    lock = world.lock()
    assert lock is not None and lock.status is Status.FAILED and lock.owner == world.envelope("b").request_id


def test_the_reaper_hands_a_lapsed_lease_to_the_next_in_line(world: World) -> None:
    clock = SimulatedClock(time.time() - 1200)  # alice's build started twenty minutes ago; its lease was ten
    build_at(clock, world.envelope("a"))
    bob = world.envelope("b", QUEUED, user="bob")
    PendingRequests().keep(bob)  # what the build worker's handler keeps before it may queue
    build_at(clock, bob)
    [run] = world.dispatches()
    [told] = world.replies_to("b")
    assert told.text.startswith("⏳ Queued: position 1"), told.text
    world.github.fail_next(status=404, body={"message": "Not Found"}, method="GET", path_contains=f"/runs/{run.id}")

    assert reaper_lambda.handler(scheduled_event(), Context()) == {"locks": 1, "effects": {"expired": 1}}

    handed = world.lock()
    assert handed is not None and handed.owner == bob.request_id and handed.status is Status.IN_PROGRESS
    [expired] = channel_posts(world)
    assert expired.startswith("⌛ The build lock on router (plt) expired") and "⏭️ Handed to <@U0BOB>" in expired
    assert "The lock is free again" not in expired

    [_] = drain(world)
    [_, second] = world.dispatches()
    after = world.lock()
    assert after is not None and after.owner == bob.request_id and after.notes.get("runId") == str(second.id)


def test_a_hand_off_nobody_dispatched_is_queued_again_by_the_reaper(world: World, github: GitHubEvents) -> None:
    """The webhook worker's release handed the lock to bob and the worker died before queueing bob's request;
    its redelivery reads the lock — bob's now — and ignores the event. A minute on, the reaper finds the lock held
    by the request it was handed to with no dispatch noted, and queues that request again: bob's build starts."""
    clock = SimulatedClock(time.time() - 120)
    build_at(clock, world.envelope("a"))
    [first] = world.dispatches()
    bob = world.envelope("b", QUEUED, user="bob")
    PendingRequests().keep(bob)  # what the build worker's handler keeps before it may queue
    build_at(clock, bob)
    held = world.lock()
    assert held is not None
    lost = store_at(clock).release(BUILD_KEY, held.owner, held.token, Status.COMPLETED)  # then the worker died
    assert lost.handed_to is not None  # type: ignore[union-attr]
    world.github.start_run(first.id)
    world.github.complete_run(first.id, "success")
    github.post_all(run_id=first.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES  # the redelivery: not this run's lock
    assert build_queue() == []

    assert reaper_lambda.handler(scheduled_event(), Context()) == {"locks": 1, "effects": {"handed-again": 1}}

    [body] = drain(world)
    handed_off = CommandEnvelope.from_json(body)
    assert (handed_off.handed_off, handed_off.coalesced) == (held.token + 1, ())
    [_, second] = world.dispatches()
    after = world.lock()
    assert after is not None and after.owner == bob.request_id and after.notes.get("runId") == str(second.id)
    assert reaper_lambda.handler(scheduled_event(), Context())["effects"] != {"handed-again": 1}  # dispatched: done
    assert drain(world) == []


def test_the_reaper_stops_queueing_a_hand_off_again_after_a_few_minutes(world: World) -> None:
    """A handed request that still notes no dispatch minutes on has a reason of its own: its lease ends the wait,
    not a message a minute."""
    clock = SimulatedClock(time.time() - 900)
    deploy = Dispatch(Action.DEPLOY, "api", "plt")  # a deploy's lease (30 minutes) outlasts the retry window
    build_at(clock, world.envelope("a", deploy))
    bob = world.envelope("b", replace(deploy, queue=True), user="bob")
    PendingRequests().keep(bob)
    build_at(clock, bob)
    held = world.lock("deploy-api-plt")
    assert held is not None
    handed = store_at(clock).release("deploy-api-plt", held.owner, held.token, Status.COMPLETED)
    assert handed.handed_to is not None  # type: ignore[union-attr]

    assert reaper_lambda.handler(scheduled_event(), Context())["effects"] == {"kept": 1}
    assert build_queue(Queue.DEPLOY) == []


def test_an_expiry_recorded_twice_tells_the_watchers_and_the_channel_either_way(world: World) -> None:
    """Two reapers read the same lapsed lock; the second's expire is a repeat — and if the first died before
    telling, the second tells the watchers and the channel what the first would have (once: a third repeat finds
    it told)."""
    clock = SimulatedClock(time.time() - 1200)  # alice's build started twenty minutes ago; its lease was ten
    build_at(clock, world.envelope("a"))
    clock.advance(60)  # bob pressed "Notify me when free" a minute into the build
    status.handle(watch_press(world, "bob", "U0BOB"), config=current_config(), store=store_at(clock))
    read_by_both = world.lock()
    assert read_by_both is not None
    first = world.store.expire(BUILD_KEY, read_by_both.token)  # the first reaper, which died before telling
    assert first.notify == ("U0BOB",)  # type: ignore[union-attr]

    locks = runlock.RunLocks(current_config(), world.store, runtime.slack_replies())
    assert locks.expire(read_by_both, runlock.ExpiryCause.NO_RUN) is runlock.Effect.ALREADY_EXPIRED

    [told] = world.slack.messages("chat.postEphemeral")
    assert told.body["user"] == "U0BOB"
    assert told.text == f"🔓 `{BUILD_KEY}` is free now (EXPIRED) — you asked to be told."
    [expired] = channel_posts(world)
    assert expired.startswith("⌛ The build lock on router (plt) expired at <!date^"), expired
    assert locks.expire(read_by_both, runlock.ExpiryCause.NO_RUN) is runlock.Effect.ALREADY_EXPIRED
    assert len(channel_posts(world)) == 1 and len(world.slack.messages("chat.postEphemeral")) == 1


def watch_press(world: World, name: str, user: str) -> InteractionEnvelope:
    """The "Notify me when free" button, pressed."""
    return press(world, LOCK_WATCH_ACTION, BUILD_KEY, user=user, name=name, url=f"watch-{name}")


def test_dequeue_leaves_the_line_and_status_shows_it(world: World) -> None:
    send(world, world.envelope("a"))
    send(world, world.envelope("b", QUEUED, user="bob"))
    send(world, world.envelope("c", Dispatch(Action.BUILD, "router", "plt", queue=True), user="carol"))
    store = world.store
    listing = status.status_message(store.list(), store.now())
    assert "⏳ Waiting: 1. <@U0BOB> (+1 identical)" in json.dumps(listing.blocks, ensure_ascii=False)

    leave = world.envelope("d", Dequeue(Action.BUILD, "router", "plt"), user="bob")
    status.handle(leave, config=current_config(), store=store)
    [told] = world.replies_to("d")
    assert told.text == (
        "✅ You left the queue of `build-router-plt` (you were at position 1); nothing will run for you."
    )
    held = world.lock()
    assert held is not None and [[q.user for q in e.requesters] for e in held.queue] == [["U0CAROL"]]

    again = world.envelope("e", Dequeue(Action.BUILD, "router", "plt"), user="bob")
    status.handle(again, config=current_config(), store=store)
    [nothing] = world.replies_to("e")
    assert nothing.text.startswith("🤷 You have no request waiting for `build-router-plt`")


def test_notify_me_when_free_tells_the_watcher_when_the_run_ends(world: World, github: GitHubEvents) -> None:
    send(world, world.envelope("a"))
    [run] = world.dispatches()
    send(world, world.envelope("b", user="bob"))  # no --queue: refused, with the button
    [busy] = world.replies_to("b")
    assert busy.text.startswith("⚠️ Build already in progress")
    [button] = busy.body["blocks"][1]["elements"]
    assert button["action_id"] == LOCK_WATCH_ACTION and button["value"] == BUILD_KEY

    press = watch_press(world, "bob", "U0BOB")
    status.handle(press, config=current_config(), store=world.store)
    [watching] = world.replies_to("watch-bob")
    assert watching.text == f"👀 I'll tell you here when `{BUILD_KEY}` is free."

    world.github.start_run(run.id)
    world.github.complete_run(run.id, "success")
    github.post_all(run_id=run.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES

    [told] = world.slack.messages("chat.postEphemeral")
    assert told.body["user"] == "U0BOB" and told.body["channel"] == "C0BUILDS"
    assert told.text == f"🔓 `{BUILD_KEY}` is free now (COMPLETED) — you asked to be told."
    lock = world.lock()
    assert lock is not None and lock.status is Status.COMPLETED


def test_a_command_configured_to_queue_queues_without_the_flag(tmp_path: Any) -> None:
    shipped = SHIPPED_CONFIG.read_text()
    path = _write(tmp_path, shipped, "queue")
    config = load_config(path, {})
    assert config.commands[Action.BUILD].conflict is Conflict.QUEUE
    assert config.commands[Action.DEPLOY].conflict is Conflict.REJECT
    plain = Dispatch(Action.BUILD, "router", "plt")
    envelope = CommandEnvelope("r1", "c1", plain, "/build", "router plt", "U1", "u", "C1", "T", "A", "https://x", 0)
    job = Job.of(envelope, config)
    assert job.queue and job.acquire_request().queue and job.acquire_request().coalesce == "build|router|plt|"
    assert not Job.of(envelope, config, handed_off=3).acquire_request().queue  # handed the lock: never queues
    with pytest.raises(ConfigError, match="conflict"):
        load_config(_write(tmp_path, shipped, "wait"), {})


def _write(tmp_path: Any, shipped: str, conflict: str) -> Any:
    path = tmp_path / f"{conflict}.toml"
    path.write_text(shipped.replace("lease_seconds = 600\n", f'lease_seconds = 600\nconflict = "{conflict}"\n', 1))
    return path


def test_a_redelivered_cancel_leaves_the_request_its_first_delivery_handed_the_lock_to(world: World) -> None:
    """alice's build holds the lock, bob waits; the admin's cancel frees it — handing it to bob — and is delivered
    again (the status worker died before deleting the message), within the same second: bob's run goes on, and
    the redelivery, finding the cancel started and told, tells nothing twice."""
    send(world, world.envelope("a"))
    send(world, world.envelope("b", QUEUED, user="bob"))
    cancel = world.envelope("x", Cancel(Action.BUILD, "router", "plt"), user="admin")
    cancel = replace(cancel, received_at=cancel.received_at + 2)  # the router's clock a little ahead
    assert status_lambda.handler(sqs_event(cancel), Context()) == NO_FAILURES
    [_] = drain(world)
    [first, second] = world.dispatches()
    assert world.github.run(first.id).conclusion == "cancelled"

    assert status_lambda.handler(sqs_event(cancel), Context()) == NO_FAILURES  # the redelivery, the same message

    assert world.github.run(second.id).conclusion is None
    lock = world.lock()
    assert lock is not None and lock.owner == world.envelope("b").request_id and lock.status is Status.IN_PROGRESS
    [told] = world.replies_to("x")  # finished and told by the first delivery: the redelivery adds nothing
    assert told.text.startswith("🛑 router (plt) build cancelled by <@U0ADMIN>"), told.text
    assert told.text.endswith(f"⏭️ Handed to <@U0BOB>, next in line (token {lock.token})."), told.text


def test_a_deploy_handed_the_lock_after_its_environment_froze_lets_go_of_it(world: World, github: GitHubEvents) -> None:
    """bob's deploy waited in line; meanwhile an admin froze plt. Handed the lock, it is refused like any deploy to
    a frozen environment — and releases the lock FAILED rather than sit on it until its lease ends."""
    send(world, world.envelope("a", Dispatch(Action.DEPLOY, "api", "plt")))
    [first] = world.dispatches()
    send(world, world.envelope("b", Dispatch(Action.DEPLOY, "api", "plt", queue=True), user="bob"))
    status.handle(world.envelope("f", Freeze("plt", "release week"), user="admin"), config=current_config(),
                  store=world.store)  # fmt: skip
    world.github.complete_run(first.id, "success")
    github.post_all(run_id=first.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES

    [_] = drain(world, Queue.DEPLOY)

    assert len(world.dispatches()) == 1
    told = world.replies_to("b")[-1]
    assert told.text.startswith("🧊 Deploys to *plt* are frozen by admin"), told.text
    lock = world.lock("deploy-api-plt")
    assert lock is not None and lock.owner == world.envelope("b").request_id and lock.status is Status.FAILED


@pytest.mark.parametrize("value", ["freeze-prod", "build-nothing-plt", "x" * 300])
def test_notify_me_on_a_value_that_names_no_lock_is_answered_and_watches_nothing(world: World, value: str) -> None:
    """A button pressed on a Home published before a freeze (whose key no command takes), or crafted: the presser
    hears that it names no lock, rather than nothing at all."""
    press_ = press(world, LOCK_WATCH_ACTION, value, user="U0BOB", name="bob", url="watch-bob")
    status.handle(press_, config=current_config(), store=world.store)
    [told] = world.replies_to("watch-bob")
    assert told.text.startswith("⚠️ That button names no lock I can watch")
    assert world.store.list(include_free=True) == []
