"""``/deploy rollback`` end to end: signed slash commands and button presses into the router, the queues on moto,
the build, status, webhook and history workers from real-shaped events, the lock table's real stream written into
the history table, GitHub and Slack as the local stand-ins. Nothing of ours is mocked.

Two deploys complete (``release/1.2``, then ``main``); ``/deploy rollback api plt`` offers the first one's commit;
*Confirm rollback* deploys it — marked as a rollback in the channel and the history, never in the workflow's inputs
— once, however often the press is delivered. A press after someone else deployed, or into a frozen environment,
deploys nothing; a presser who may not deploy there is told so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

import pytest

from lockcore.record import Status
from tests.workers import function_url as f
from tests.workers import sqs_events as sqs
from tests.workers.github_events import GitHubEvents
from tests.workers.test_end_to_end import enter
from tests.workers.test_freeze_and_history import streamed
from tests.workers.test_history import stream_event
from tests.workers.worker_world import MAIN_SHA, RELEASE_BRANCH, RELEASE_SHA, SHIPPED_CONFIG, Context, World
from workers.adapters import queues
from workers.adapters.history_table import HISTORY_TABLE_ENV, forget, history_table
from workers.handlers import build as build_lambda
from workers.handlers import history as history_lambda
from workers.handlers import router
from workers.handlers import status as status_lambda
from workers.handlers import webhook as webhook_lambda
from workers.local.github import WorkflowRun
from workers.local.slack import PostedMessage
from workers.protocol.config import Queue
from workers.protocol.envelope import ROLLBACK_CANCEL_ACTION, ROLLBACK_CONFIRM_ACTION
from workers.protocol.history import EventKind

NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}
KEY = "deploy-api-plt"
CHANNEL = "C0DEPLOYS"


@dataclass
class Stack:
    world: World
    github: GitHubEvents
    queue_urls: dict[Queue, str]
    stream: str

    # --------------------------------------------------------------------------------------------- Slack
    def slash(self, user: str, text: str, *, name: str | None = None, command: str = "/deploy") -> dict[str, Any]:
        """``user`` types ``command text``; the router's ephemeral answer. ``name``: its response_url's."""
        body = f.slash_form(
            text,
            command,
            user_id=f"U0{user.upper()}",
            user_name=user,
            channel_id=CHANNEL,
            response_url=self.world.slack.response_url(name or user),
            trigger_id=f"trigger.{name or user}.{time.monotonic_ns()}",
        )
        answer = router.handler(f.event("/slack/commands", body, f.slack_headers(body)), Context())
        assert answer["statusCode"] == 200, answer
        return dict(json.loads(answer["body"]))

    def press(self, user: str, value: str, *, trigger: str, action: str = ROLLBACK_CONFIRM_ACTION) -> int:
        """``user`` presses a button of the offer; the router's status code. Its replies go to ``trigger``."""
        body = f.interaction_form(
            action,
            value,
            user={"id": f"U0{user.upper()}", "username": user, "name": user, "team_id": "T0TEAM"},
            trigger_id=trigger,
            response_url=self.world.slack.response_url(trigger),
            channel={"id": CHANNEL, "name": "deploys"},
        )
        return int(router.handler(f.event("/slack/interactions", body, f.slack_headers(body)), Context())["statusCode"])

    def replies(self, name: str) -> list[PostedMessage]:
        return self.world.replies_to(name)

    # --------------------------------------------------------------------------------------------- workers
    def work(self, queue: Queue, *, receive_count: int = 1) -> dict[str, Any]:
        """Everything on ``queue``, to its worker, as one batch."""
        batch = sqs.drain(self.queue_urls[queue])
        if not batch["Records"]:  # the event source mapping invokes nobody for an empty queue
            return NO_FAILURES
        for record in batch["Records"]:
            record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        handler = status_lambda.handler if queue is Queue.STATUS else build_lambda.handler
        return dict(handler(batch, Context()))

    def deploy(self, user: str, text: str = "api plt") -> WorkflowRun:
        """``user`` deploys, and the run completes: the lock released COMPLETED by the webhook worker."""
        assert self.slash(user, text)["text"].startswith("⏳ Got it: /deploy")
        assert self.work(Queue.DEPLOY) == NO_FAILURES
        run = self.world.dispatches()[-1]
        self.complete(run)
        return run

    def complete(self, run: WorkflowRun) -> None:
        self.world.github.complete_run(run.id, "success")
        self.github.post_all(action="completed", run_id=run.id)
        assert webhook_lambda.handler(self.github.queued(), Context()) == NO_FAILURES
        lock = self.world.lock(KEY)
        assert lock is not None and lock.status is Status.COMPLETED

    def write_history(self) -> None:
        history_lambda.handler(stream_event(self.stream), None)

    def offer(self, user: str = "carol", text: str = "rollback api plt") -> dict[str, Any]:
        """``/deploy rollback …`` through the router and the status worker: the offer ``user`` sees."""
        self.write_history()
        assert self.slash(user, text, name=f"offer-{user}")["text"] == (
            f"⏳ Got it: /deploy {text} — looking for the commit to go back to…"
        )
        assert self.work(Queue.STATUS) == NO_FAILURES
        *_, offer = self.replies(f"offer-{user}")
        assert offer.body["response_type"] == "ephemeral"
        return dict(offer.body)


def confirm_value(offer: dict[str, Any]) -> str:
    [actions] = [block for block in offer["blocks"] if block["type"] == "actions"]
    confirm, cancel = actions["elements"]
    assert (confirm["action_id"], confirm["text"]["text"]) == (ROLLBACK_CONFIRM_ACTION, "Confirm rollback")
    assert (cancel["action_id"], cancel["value"]) == (ROLLBACK_CANCEL_ACTION, confirm["value"])
    return str(confirm["value"])


@pytest.fixture
def stack(world: World, github: GitHubEvents, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv(HISTORY_TABLE_ENV, "chatops-history-rollback-e2e")
    forget()
    history_table().create_table()
    stream = streamed(world.store)
    path = enter(monkeypatch, world)
    try:
        yield Stack(world, github, path.queues, stream)
    finally:
        forget()
        queues.forget_clients()


@pytest.fixture
def two_deploys(stack: Stack) -> tuple[WorkflowRun, WorkflowRun]:
    first = stack.deploy("alice", f"api plt {RELEASE_BRANCH}")
    second = stack.deploy("bob")
    assert (first.inputs["sha"], second.inputs["sha"]) == (RELEASE_SHA, MAIN_SHA)
    return first, second


# ------------------------------------------------------------------------------------------------ the path
def test_after_two_deploys_rollback_offers_the_first_commit_and_confirmed_deploys_it_once(
    stack: Stack, two_deploys: tuple[WorkflowRun, WorkflowRun]
) -> None:
    first, _ = two_deploys
    offer = stack.offer()

    assert offer["text"] == f"Roll back api (plt) to {RELEASE_SHA[:7]}? Live now: {MAIN_SHA[:7]}."
    facts = offer["blocks"][0]["text"]["text"]
    assert f"Goes live: `{RELEASE_SHA[:7]}`, deployed by alice (<@U0ALICE>), completed <!date^" in facts
    assert f"Live now: `{MAIN_SHA[:7]}`, deployed by bob (<@U0BOB>), completed <!date^" in facts
    lock = stack.world.lock(KEY)
    assert lock is not None and confirm_value(offer) == f"api plt {RELEASE_SHA} {lock.token}.COMPLETED"

    assert stack.press("carol", confirm_value(offer), trigger="press-1") == 200
    batch = sqs.drain(stack.queue_urls[Queue.DEPLOY])
    assert build_lambda.handler(batch, Context()) == NO_FAILURES

    runs = stack.world.dispatches()
    rolled = runs[-1]
    assert len(runs) == 3 and rolled.head_branch == "main"  # a commit runs on the default branch, told its SHA
    assert (rolled.inputs["sha"], rolled.inputs["ref"]) == (RELEASE_SHA, RELEASE_SHA)
    assert set(rolled.inputs) == set(first.inputs)  # the workflow's inputs are any deploy's: no rollback input
    [told] = stack.replies("press-1")
    assert told.body["response_type"] == "in_channel"
    assert told.text == f"⏪ Rolling back api (plt) to `{RELEASE_SHA[:7]}`… <{rolled.html_url}|run {rolled.id}>"
    held = stack.world.lock(KEY)
    assert held is not None and held.status is Status.IN_PROGRESS and held.locked_by == "U0CAROL"
    assert (held.notes["rollback"], held.notes["commitSha"]) == ("true", RELEASE_SHA)

    # The same press again: SQS redelivers the message, and Slack's retry reaches the router once more.
    for record in batch["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = "2"
    assert build_lambda.handler(batch, Context()) == NO_FAILURES
    assert stack.press("carol", confirm_value(offer), trigger="press-1") == 200
    assert stack.work(Queue.DEPLOY) == NO_FAILURES
    assert len(stack.world.dispatches()) == 3

    stack.complete(rolled)
    *_, result = stack.world.slack.messages("chat.postMessage")
    assert result.text.startswith(f"✅ api (plt) ⏪ rolled back to `{RELEASE_SHA[:7]}` in "), result.text
    stack.write_history()
    [ending] = history_table().recent(KEY, limit=1)
    assert (ending.kind, ending.commit_sha, ending.rollback, ending.who) == (
        EventKind.RELEASE,
        RELEASE_SHA,
        True,
        "U0CAROL",
    )
    assert stack.slash("carol", "history api plt", name="history")["text"].startswith("⏳")
    assert stack.work(Queue.STATUS) == NO_FAILURES
    [shown] = stack.replies("history")
    assert f"at `{RELEASE_SHA[:7]}` (⏪ rollback) (token {ending.token})" in shown.body["blocks"][-1]["text"]["text"]

    again = stack.offer("dave")  # the rollback is live now: going back once more is the commit it replaced
    assert again["text"] == f"Roll back api (plt) to {MAIN_SHA[:7]}? Live now: {RELEASE_SHA[:7]}."


def test_a_press_after_someone_deployed_meanwhile_deploys_nothing(
    stack: Stack, two_deploys: tuple[WorkflowRun, WorkflowRun]
) -> None:
    offer = stack.offer()
    stack.deploy("dave", f"api plt {RELEASE_BRANCH}")

    assert stack.press("carol", confirm_value(offer), trigger="late") == 200
    assert stack.work(Queue.DEPLOY) == NO_FAILURES

    assert len(stack.world.dispatches()) == 3
    [told] = stack.replies("late")
    assert told.text == (
        "⚠️ The lock of api (plt) changed since this rollback was offered (someone deployed meanwhile), so nothing "
        "was deployed — run `/deploy rollback api plt` again."
    )


def test_a_press_while_the_deploy_shown_as_running_has_ended_deploys_nothing(
    stack: Stack, two_deploys: tuple[WorkflowRun, WorkflowRun]
) -> None:
    """Offered while a third deploy ran: that deploy completing is a change too (it is live now)."""
    assert stack.slash("dave", "api plt")["text"].startswith("⏳")
    assert stack.work(Queue.DEPLOY) == NO_FAILURES
    running = stack.world.dispatches()[-1]
    offer = stack.offer()
    assert "A deploy holds the lock right now" in offer["blocks"][1]["elements"][0]["text"]
    stack.complete(running)

    assert stack.press("carol", confirm_value(offer), trigger="after") == 200
    assert stack.work(Queue.DEPLOY) == NO_FAILURES
    assert len(stack.world.dispatches()) == 3
    assert stack.replies("after")[0].text.startswith("⚠️ The lock of api (plt) changed since")


def test_a_press_into_a_frozen_environment_deploys_nothing(
    stack: Stack, two_deploys: tuple[WorkflowRun, WorkflowRun]
) -> None:
    offer = stack.offer()
    assert stack.slash("admin", "freeze plt release week", name="freeze")["text"].startswith("⏳")
    assert stack.work(Queue.STATUS) == NO_FAILURES

    assert stack.press("carol", confirm_value(offer), trigger="frozen") == 200
    assert stack.work(Queue.DEPLOY) == NO_FAILURES

    assert len(stack.world.dispatches()) == 2
    [told] = stack.replies("frozen")
    assert told.text.startswith("🧊 Deploys to *plt* are frozen by admin (<@U0ADMIN>)")


def test_cancel_replaces_the_offer_and_deploys_nothing(
    stack: Stack, two_deploys: tuple[WorkflowRun, WorkflowRun]
) -> None:
    offer = stack.offer()
    assert stack.press("carol", confirm_value(offer), trigger="cancel", action=ROLLBACK_CANCEL_ACTION) == 200
    assert stack.work(Queue.STATUS) == NO_FAILURES
    assert stack.work(Queue.DEPLOY) == NO_FAILURES
    [told] = stack.replies("cancel")
    assert (told.text, told.body["replace_original"]) == ("Rollback cancelled: nothing was deployed.", True)
    assert len(stack.world.dispatches()) == 2


def test_nothing_to_go_back_to_is_one_clear_answer(stack: Stack) -> None:
    assert stack.offer()["text"] == (
        "🤷 Nothing to roll back to: no deploy of api (plt) completed in the last 30 days (the history keeps 30)."
    )
    stack.deploy("alice")
    stack.deploy("bob")  # the same commit again: still nothing earlier
    answer = stack.offer("dave")["text"]
    assert answer.startswith(f"🤷 Nothing to roll back to: `{MAIN_SHA[:7]}`, deployed by bob (<@U0BOB>), completed")
    assert answer.endswith(
        "is live, and no earlier commit of api (plt) completed in the last 30 days (asked to go back 1)."
    )


def test_a_bad_count_is_usage_from_the_router(stack: Stack) -> None:
    answer = stack.slash("carol", "rollback api plt 0")
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("⚠️ Expected /deploy rollback <component> <env> [N], N from 1 to 20.")
    assert sqs.drain(stack.queue_urls[Queue.STATUS])["Records"] == []


def test_the_presser_must_be_allowed_to_deploy_there(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: FilePath
) -> None:
    """A button value is not a permission: whoever presses is authorized again, as a /deploy of that commit."""
    config = tmp_path / "chatops.toml"
    config.write_text(
        SHIPPED_CONFIG.read_text(encoding="utf-8") + '\n[slack.user_groups]\nS0PLATFORM = ["U0PAT"]\n', encoding="utf-8"
    )
    monkeypatch.setenv("CHATOPS_CONFIG", str(config))
    value = f"api prod {RELEASE_SHA} 0"

    assert stack.press("alice", value, trigger="not-allowed") == 200
    assert sqs.drain(stack.queue_urls[Queue.DEPLOY])["Records"] == []
    [told] = stack.replies("not-allowed")
    assert (
        told.text == "🚫 Sorry, you may not run /deploy rollback api prod. Who may: members of <!subteam^S0PLATFORM>."
    )

    assert stack.press("pat", value, trigger="allowed") == 200
    assert stack.work(Queue.DEPLOY) == NO_FAILURES
    [rolled] = stack.world.dispatches()
    assert (rolled.inputs["environment"], rolled.inputs["sha"]) == ("prod", RELEASE_SHA)
    assert stack.replies("allowed")[0].text.startswith(f"⏪ Rolling back api (prod) to `{RELEASE_SHA[:7]}`")


def test_a_button_value_that_names_no_rollback_is_answered_not_queued(stack: Stack) -> None:
    assert stack.press("carol", "api plt not-a-sha 3.COMPLETED", trigger="forged") == 200
    assert sqs.drain(stack.queue_urls[Queue.DEPLOY])["Records"] == []
    [told] = stack.replies("forged")
    assert told.text.startswith("⚠️ This button is not one I can act on any more")


def test_a_press_while_a_deploy_runs_never_waits_to_deploy_a_stale_choice(
    stack: Stack, two_deploys: tuple[WorkflowRun, WorkflowRun], monkeypatch: pytest.MonkeyPatch, tmp_path: FilePath
) -> None:
    """Deploys queue here: a rollback pressed while a deploy runs must not wait in the queue and be handed the lock
    after that deploy completed — what is live then is no longer what the offer showed."""
    config = tmp_path / "chatops.toml"
    shipped = SHIPPED_CONFIG.read_text(encoding="utf-8")
    config.write_text(shipped.replace("lease_seconds = 1800\n", 'lease_seconds = 1800\nconflict = "queue"\n'), "utf-8")
    monkeypatch.setenv("CHATOPS_CONFIG", str(config))
    assert stack.slash("dave", f"api plt {RELEASE_BRANCH}")["text"].startswith("⏳")
    assert stack.work(Queue.DEPLOY) == NO_FAILURES
    running = stack.world.dispatches()[-1]
    offer = stack.offer()
    assert offer["text"] == f"Roll back api (plt) to {RELEASE_SHA[:7]}? Live now: {MAIN_SHA[:7]}."

    assert stack.press("carol", confirm_value(offer), trigger="while-running") == 200
    assert stack.work(Queue.DEPLOY) == NO_FAILURES
    stack.world.github.complete_run(running.id, "success")  # RELEASE_SHA is live now: no rollback to it
    stack.github.post_all(action="completed", run_id=running.id)
    assert webhook_lambda.handler(stack.github.queued(), Context()) == NO_FAILURES
    assert stack.work(Queue.DEPLOY) == NO_FAILURES

    assert len(stack.world.dispatches()) == 3
    *_, told = stack.replies("while-running")
    assert told.text.startswith("⚠️ The lock of api (plt) changed since this rollback was offered")
    lock = stack.world.lock(KEY)  # let go at once, for whoever is next in line
    assert lock is not None and lock.status is Status.FAILED and lock.owner == "while-running"


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("switch", "the distributed lock is switched off (`ENABLE_DISTRIBUTED_LOCK=false`)"),
        ("config", "deploys take no lock (`requires_lock = false`)"),
    ],
)
@pytest.mark.usefixtures("two_deploys")
def test_when_deploys_take_no_lock_a_rollback_is_neither_offered_nor_deployed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: FilePath, how: str, why: str
) -> None:
    """Without the lock a deploy is not in the history (the lock table's stream), so what is live is unknown, and
    the build worker checks neither the lock nor a freeze: an offer or a confirm would promise what is not done."""
    offer = stack.offer()
    if how == "switch":
        monkeypatch.setenv("ENABLE_DISTRIBUTED_LOCK", "false")
    else:
        config = tmp_path / "chatops.toml"
        shipped = SHIPPED_CONFIG.read_text(encoding="utf-8")
        config.write_text(shipped.replace("lease_seconds = 1800\n", "lease_seconds = 1800\nrequires_lock = false\n"))
        monkeypatch.setenv("CHATOPS_CONFIG", str(config))

    no_lock = (
        f"🤷 Not rolling back api (plt): {why}, so the history does not know what is live. Deploy a commit by name: "
        "`/deploy api plt <sha>`."
    )
    assert stack.offer("dave")["text"] == no_lock
    assert stack.press("carol", confirm_value(offer), trigger="no-lock") == 200
    assert stack.work(Queue.DEPLOY) == NO_FAILURES
    assert len(stack.world.dispatches()) == 2
    assert [reply.text for reply in stack.replies("no-lock")] == [no_lock]
