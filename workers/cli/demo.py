"""`chatops demo`: the life of a build, from five people typing `/build` at once to the CI run's end.

Everything runs on this machine, in this process: the local stack (:mod:`workers.local.stack`) — the router
behind real HTTP, the SQS queues and DynamoDB tables on a moto server on loopback, the workers polling the
queues as Lambda would — with stand-ins for Slack and GitHub. The people are a
:class:`~workers.local.workspace.Workspace`: their commands are signed with the signing secret and POSTed
to the router as Slack posts them; what they "see" is what reached their ``response_url`` and the channel.
No AWS account, no Slack, no GitHub, no credentials, nothing beyond 127.0.0.1.

The story, each step checked before the next (exit 1 when something does not hold — nothing is assumed):

1. Five people send `/build router plt` at once: one run starts, the other four are told who holds the lock.
2. `/build status --locks` shows the lock, its holder, its fencing token and its run.
3. GitHub finishes the run; its signed `workflow_run` webhook releases the lock (COMPLETED) and the result goes
   to the channel.
4. The next `/build` goes through, with a higher token.
5. While it runs, two people queue the same build (`--queue`: one pending run for both), a third joins and
   leaves (`/build dequeue`), status shows the line, and one presses "Notify me when free"; the run ends, the
   lock is handed to the queue in the same write and the queued build starts; when that one ends, the watcher
   is told the lock is free.
6. A deploy is stuck: an admin force-unlocks it (`/deploy unlock`, then the confirm button); a non-admin cannot.
7. An admin freezes an environment; the history and the stats, from the lock table's stream.
8. The lock switch `ENABLE_DISTRIBUTED_LOCK=false`: workflows are dispatched without any lock.
9. alice opens the App Home: the live board; a build starts and ends, and her Home is republished each time.
10. Two deploys complete; `/deploy rollback api plt` offers the first one's commit, and confirmed, deploys it.
11. A weekend freeze window for prod (Europe/Berlin), the clock moved across the change to summer time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO, TypeVar
from zoneinfo import ZoneInfo

from lockcore import machine as m
from lockcore.dynamodb import DynamoDBLockStore
from lockcore.record import LockRecord, Status
from workers.local.github import GitHubStandIn, WorkflowRun
from workers.local.slack import PostedMessage, SlackStandIn
from workers.local.stack import RELEASE_BRANCH, LocalStack, StackOptions, config_path
from workers.local.workspace import Person, Sent, Workspace, buttons, plain
from workers.protocol.config import Action

BUILD_KEY = "build-router-plt"
DEPLOY_KEY = "deploy-api-plt"
UNLOCKED_KEY = "build-api-plt"
RACERS = tuple(Person.named(name) for name in ("alice", "bob", "carol", "dave", "erin"))
ADMIN = Person.named("admin")  # the one admin of docs/chatops.toml: U0ADMIN
EVERYONE = (*RACERS, ADMIN)
WAIT_SECONDS = 15.0
WEEKEND_WINDOW = """
[freeze_windows.prod.weekend]
reason = "Weekend: no deploys to production"
zone = "Europe/Berlin"
days = ["fri"]
start = "15:00"
end = "mon 09:00"
"""
"""The demo's configuration is the shipped one with this window (docs/chatops.toml has it commented out)."""
_T = TypeVar("_T")


class StoryBroken(Exception):
    """What the demo was about to tell is not what the system did."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise StoryBroken(what)


class Story:
    """The demo's steps, in order; each prints what happened and checks it before the next one starts."""

    def __init__(self, stack: LocalStack, out: TextIO) -> None:
        self.stack = stack
        self.out = out
        self.github: GitHubStandIn = _present(stack.github, "the GitHub stand-in")
        self.slack: SlackStandIn = _present(stack.slack, "the Slack stand-in")
        self.workspace = Workspace(stack.url, stack.secrets["SLACK_SIGNING_SECRET"], self.slack)
        self.store: DynamoDBLockStore = stack.lock_store()

    # ------------------------------------------------------------------------------------------ telling
    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def heading(self, text: str) -> None:
        self.say(f"\n── {text} " + "─" * max(0, 86 - len(text)))

    def show(self, who: str, text: str) -> None:
        """One line of what someone saw, mrkdwn made plain."""
        self.say(f"  {who:<9} {plain(text, EVERYONE)}")

    # ------------------------------------------------------------------------------------------ waiting
    def reply_to(self, sent: Sent, count: int = 1) -> PostedMessage:
        """The ``count``-th message that reached the request's response_url."""
        try:
            return self.workspace.await_replies(sent, count, WAIT_SECONDS)[count - 1]
        except TimeoutError as error:
            raise StoryBroken(str(error)) from None

    def until(self, condition: Callable[[], bool], what: str) -> None:
        try:
            self.stack.wait_until(condition, what, WAIT_SECONDS)
        except TimeoutError as error:
            raise StoryBroken(str(error)) from None

    def lock(self, key: str) -> LockRecord:
        record = self.store.get(key)
        expect(record is not None, f"{key} has a lock record")
        assert record is not None
        return record

    def state(self, key: str) -> m.LockState:
        return self.store.state(key)[0]

    def _ephemerals_to(self, person: Person) -> list[PostedMessage]:
        """What the bot showed ``person`` alone with ``chat.postEphemeral``."""
        return [
            message
            for message in self.slack.messages("/api/chat.postEphemeral")
            if isinstance(message.body, dict) and message.body.get("user") == person.user_id
        ]

    def runs_of(self, key: str) -> list[WorkflowRun]:
        return [run for run in self.github.runs if run.name.startswith(f"{key} ")]

    # ------------------------------------------------------------------------------------------ the story
    def run(self) -> None:
        winner, run = self.race()
        self.status(winner)
        self.completion(winner, run)
        holder = self.next_build(winner)
        self.queue_and_notify(holder)
        self.stuck_deploy()
        self.freeze_and_history()
        self.lock_switch()
        self.app_home()
        self.rollback()
        self.freeze_window()

    def together(self, people: Sequence[Person], slash: str, text: str) -> dict[Person, Sent]:
        """Everyone sends the command from their own thread, released at the same instant."""
        start = threading.Barrier(len(people))
        sent: dict[Person, Sent] = {}

        def send(person: Person) -> None:
            start.wait()
            sent[person] = self.workspace.command(person, slash, text)

        threads = [threading.Thread(target=send, args=(person,), name=person.name) for person in people]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expect(len(sent) == len(people), "every request was answered")
        return sent

    def race(self) -> tuple[Person, WorkflowRun]:
        self.heading(f"1. {len(RACERS)} people send `/build router plt` at the same moment")
        sent = self.together(RACERS, "/build", "router plt")
        for person in RACERS:
            expect(sent[person].status == 200, f"the router answered {person.name} with 200")
        self.show("router", f"answered all {len(RACERS)} at once (200): “{sent[RACERS[0]].acknowledgement}”")

        first = {person: self.reply_to(sent[person]) for person in RACERS}
        started = [person for person in RACERS if first[person].text.startswith("🔨 Building router (plt)")]
        expect(len(started) == 1, f"exactly one build started, not {len(started)}")
        winner = started[0]
        runs = self.runs_of(BUILD_KEY)
        expect(len(runs) == 1, f"exactly one run was dispatched to GitHub, not {len(runs)}")
        record = self.lock(BUILD_KEY)
        expect(record.owner == sent[winner].request_id, "the lock is held by the winner's request")
        expect(record.locked_by == winner.user_id, "the lock names the winner")
        self.show(winner.name, f"{first[winner].text}   (in the channel)")
        self.say(f"  {'GitHub':<9} one run dispatched: #{runs[0].id} “{runs[0].name}”, fencing token {record.token}")
        for person in RACERS:
            if person is winner:
                continue
            told = first[person].text
            expect(told.startswith("⚠️ Build already in progress"), f"{person.name} was told the build is running")
            expect(f"started by {winner.name}" in told, f"{person.name} was told that {winner.name} holds it")
            self.show(person.name, told)
        return winner, runs[0]

    def status(self, winner: Person) -> None:
        self.heading("2. Someone asks `/build status --locks`")
        asker = next(person for person in RACERS if person is not winner)
        reply = self.reply_to(self.workspace.command(asker, "/build", "status --locks"))
        record = self.lock(BUILD_KEY)
        expect(BUILD_KEY in reply.text and winner.name in reply.text, "status shows the lock and its holder")
        fields = [
            field["text"]
            for block in reply.body.get("blocks", [])
            if block.get("block_id") == f"lock-{BUILD_KEY}"
            for field in block.get("fields", [])
        ]
        expect(f"*Token*\n{record.token}" in fields, "status shows the fencing token")
        self.show(asker.name, reply.text)
        for field in fields:
            title, _, value = field.partition("\n")
            self.say(f"  {'':<9}   {title.strip('*') + ':':<10} {plain(value, EVERYONE)}")

    def completion(self, winner: Person, run: WorkflowRun) -> None:
        self.heading("3. The CI run finishes: GitHub's signed webhook releases the lock")
        posts_before = len(self.workspace.channel_posts())
        self.github.start_run(run.id)
        self.github.complete_run(run.id, "success")
        self.say(f"  {'GitHub':<9} run #{run.id} completed (success) → POST /github/webhook, X-Hub-Signature-256")
        self.until(lambda: self.state(BUILD_KEY) is m.LockState.COMPLETED, f"{BUILD_KEY} released as COMPLETED")
        self.until(lambda: len(self.workspace.channel_posts()) > posts_before, "the result in the channel")
        result = self.workspace.channel_posts()[-1].text
        expect(result.startswith("✅ router (plt) built in"), "the channel is told the build succeeded")
        expect(f"<@{winner.user_id}>" in result, "the result mentions who started it")
        self.show("#builds", result)
        self.say(f"  {'lock':<9} {BUILD_KEY}: {self.state(BUILD_KEY).value}, token {self.lock(BUILD_KEY).token}")

    def next_build(self, winner: Person) -> Person:
        self.heading("4. The next `/build router plt` goes through, with a higher fencing token")
        before = self.lock(BUILD_KEY).token
        person = next(person for person in reversed(RACERS) if person is not winner)
        reply = self.reply_to(self.workspace.command(person, "/build", "router plt"))
        expect(reply.text.startswith("🔨 Building router (plt)"), f"{person.name}'s build started")
        record = self.lock(BUILD_KEY)
        expect(record.locked_by == person.user_id and record.token > before, "a new holder with a higher token")
        expect(len(self.runs_of(BUILD_KEY)) == 2, "a second run was dispatched")
        self.show(person.name, reply.text)
        self.say(f"  {'lock':<9} {BUILD_KEY}: held by {person.name}, token {before} → {record.token}")
        # What a deploy workflow runs right before it touches anything: `chatops locks check KEY --token N`.
        for token, holds in ((record.token, True), (before, False)):
            expect(self.store.check(BUILD_KEY, token) is holds, f"check --token {token} answers {holds}")
            verdict = "✅ holds the lock: go ahead" if holds else "⛔ not the holder: stop"
            self.say(f"  {'fencing':<9} chatops locks check {BUILD_KEY} --token {token} → {verdict}")
        return person

    def queue_and_notify(self, holder: Person) -> None:
        self.heading("5. The build is busy: two queue the same build, one leaves, one asks to be told when free")
        first, second, watcher = [person for person in RACERS if person is not holder][:3]
        waits = self.workspace.command(first, "/build", "router plt --queue")
        queued = self.reply_to(waits)
        expect(queued.text.startswith(f"⏳ Queued: position 1 behind {holder.name}"), f"{first.name} waits, first")
        self.show(first.name, f"/build router plt --queue → {queued.text}")
        joined = self.workspace.command(second, "/build", "router plt --queue")
        same = self.reply_to(joined)
        expect(same.text.startswith("⏳ Queued with an identical request"), f"{second.name} joins the same run")
        self.show(second.name, f"/build router plt --queue → {same.text}")
        busy = self.workspace.command(watcher, "/build", "router plt")
        refused = self.reply_to(busy)
        expect(refused.text.startswith("⚠️ Build already in progress"), f"{watcher.name} is told it is busy")
        notify = next((b for b in buttons(refused) if b.get("action_id") == "lock.watch"), None)
        expect(notify is not None, "the busy message offers “Notify me when free”")
        assert notify is not None
        self.show(watcher.name, f"/build router plt → {refused.text}  [{notify['text']['text']}]")
        watching = self.reply_to(self.workspace.press(watcher, notify, busy.response_url))
        expect(watching.text.startswith("👀 I'll tell you"), f"{watcher.name} will be told")
        self.show(watcher.name, f"[{notify['text']['text']}] → {watching.text}")
        self.join_leave_and_look(next(person for person in RACERS if person not in (holder, first, second, watcher)))
        record = self.lock(BUILD_KEY)
        expect([len(entry.requesters) for entry in record.queue] == [2], "one entry in line, with two requesters")
        self.say(
            f"  {'lock':<9} {BUILD_KEY}: held by {holder.name}, token {record.token}; waiting: "
            f"{' + '.join(q.name for q in record.queue[0].requesters)} (one run); watching: {watcher.name}"
        )

        running = self.runs_of(BUILD_KEY)[-1]
        posts_before = len(self.workspace.channel_posts())
        self.github.start_run(running.id)
        self.github.complete_run(running.id, "success")
        self.say(f"  {'GitHub':<9} run #{running.id} completed (success) → the webhook releases the lock…")
        self.until(lambda: len(self.runs_of(BUILD_KEY)) == 3, "the queued build dispatched")
        self.until(lambda: len(self.workspace.channel_posts()) > posts_before, "the result in the channel")
        result = self.workspace.channel_posts()[posts_before].text
        expect(f"Handed to <@{first.user_id}> (and 1 identical request)" in result, "…and hands it to the queue")
        self.show("#builds", result)
        handed = self.lock(BUILD_KEY)
        expect(handed.locked_by == first.user_id and handed.token == record.token + 1, "the head holds it, token + 1")
        self.until(lambda: "runId" in self.lock(BUILD_KEY).notes, "the handed build noted its run")
        self.show(first.name, self.reply_to(waits, 2).text)
        told = self.reply_to(joined, 2)
        expect("waited with" in told.text, f"{second.name} is told the run that serves both")
        self.show(second.name, told.text)
        expect(not self._ephemerals_to(watcher), f"{watcher.name} is not told yet: the lock went to the queue")

        third = self.runs_of(BUILD_KEY)[-1]
        self.github.start_run(third.id)
        self.github.complete_run(third.id, "success")
        self.say(f"  {'GitHub':<9} run #{third.id} completed (success): nobody waits, the lock is free")
        self.until(lambda: bool(self._ephemerals_to(watcher)), f"{watcher.name} told the lock is free")
        self.show(watcher.name, f"(only {watcher.name} sees) {self._ephemerals_to(watcher)[-1].text}")

    def join_leave_and_look(self, person: Person) -> None:
        """Someone joins the line and thinks better of it (`/build dequeue`); status shows who still waits."""
        self.reply_to(self.workspace.command(person, "/build", "router plt --queue"))
        left = self.reply_to(self.workspace.command(person, "/build", "dequeue router plt"))
        expect(left.text.startswith("✅ You left the queue of `build-router-plt`"), f"{person.name} left the line")
        self.show(person.name, f"/build router plt --queue, then /build dequeue router plt → {left.text}")
        listing = self.reply_to(self.workspace.command(person, "/build", "status --locks"))
        blocks = listing.body.get("blocks", []) if isinstance(listing.body, dict) else []
        waiting = [line for block in blocks for line in _texts(block) if "⏳ Waiting:" in line]
        expect(len(waiting) == 1 and "(+1 identical)" in waiting[0], "status shows the queue, one entry of two")
        self.show(person.name, f"/build status --locks → … {plain(waiting[0], EVERYONE)}")

    def stuck_deploy(self) -> None:
        self.heading("6. A deploy is stuck (its run never reports back): the admin force-unlocks it")
        deployer, bystander = RACERS[3], RACERS[4]
        started = self.reply_to(self.workspace.command(deployer, "/deploy", "api plt"))
        expect(started.text.startswith("🚀 Deploying api (plt)"), "the deploy started")
        token = self.lock(DEPLOY_KEY).token
        self.show(deployer.name, started.text)

        refused = self.workspace.command(bystander, "/deploy", "unlock api plt")
        expect(refused.acknowledgement.startswith("🚫"), "a non-admin is refused by the router, at once")
        self.show(bystander.name, f"/deploy unlock api plt → {refused.acknowledgement}")

        asked = self.workspace.command(ADMIN, "/deploy", "unlock api plt")
        prompt = self.reply_to(asked)
        confirm = next((b for b in buttons(prompt) if b.get("action_id") == "unlock.confirm"), None)
        expect(confirm is not None, "the admin is shown a confirm button")
        assert confirm is not None
        expect(confirm.get("value") == f"{DEPLOY_KEY}:{token}", "the button carries the lock and the token shown")
        self.show(ADMIN.name, f"/deploy unlock api plt → {prompt.text}")
        self.show("", "  ".join(f"[{button['text']['text']}]" for button in buttons(prompt)))

        posts_before = len(self.workspace.channel_posts())
        pressed = self.workspace.press(ADMIN, confirm, asked.response_url)
        expect(pressed.status == 200, "the button press was accepted")
        done = self.reply_to(pressed)
        self.until(lambda: len(self.workspace.channel_posts()) > posts_before, "the channel told of the unlock")
        record = self.lock(DEPLOY_KEY)
        expect(self.state(DEPLOY_KEY) is m.LockState.FORCE_RELEASED, f"{DEPLOY_KEY} is FORCE_RELEASED")
        expect(record.released_by == ADMIN.user_id, "the record says which admin released it")
        self.show(ADMIN.name, f"[Force unlock] → {done.text}")
        self.show("#builds", self.workspace.channel_posts()[-1].text)

    def freeze_and_history(self) -> None:
        self.heading("7. An admin freezes plt; the history and the stats, from the lock table's stream")
        frozen = self.reply_to(self.workspace.command(ADMIN, "/deploy", "freeze plt release week"))
        expect(frozen.text.startswith("✅ Froze *plt*"), "the admin froze plt")
        self.show(ADMIN.name, f"/deploy freeze plt release week → {frozen.text}")
        deployer = RACERS[0]
        refused = self.reply_to(self.workspace.command(deployer, "/deploy", "api plt"))
        expect(refused.text.startswith("🧊 Deploys to *plt* are frozen"), "a deploy to plt is refused")
        expect(len(self.runs_of(DEPLOY_KEY)) == 1, "nothing more was dispatched to plt")
        self.show(deployer.name, f"/deploy api plt → {refused.text}")
        unfrozen = self.reply_to(self.workspace.command(ADMIN, "/deploy", "unfreeze plt"))
        expect(unfrozen.text == "✅ Unfroze *plt*.", "the admin lifted the freeze")
        self.show(ADMIN.name, f"/deploy unfreeze plt → {unfrozen.text}")

        history = self.stack.history
        expect(history is not None, "the lock table's stream feeds the history writer")
        assert history is not None
        history.drain()  # what the poller would hand over within 0.2 s, now
        shown = self.reply_to(self.workspace.command(deployer, "/build", "history router plt"))
        lines = shown.body["blocks"][-1]["text"]["text"].split("\n") if shown.body.get("blocks") else []
        expect(any("released COMPLETED" in line for line in lines), "the history shows the completed build")
        self.show(deployer.name, f"/build history router plt → {shown.text}")
        for line in lines:
            self.say(f"  {'':<9}   {plain(line, EVERYONE)}")
        stats = self.reply_to(self.workspace.command(deployer, "/build", "stats"))
        expect("acquisitions" in stats.text, "the stats count the acquisitions")
        self.show(deployer.name, f"/build stats → {stats.text}")

    def lock_switch(self) -> None:
        self.heading("8. The lock switch: ENABLE_DISTRIBUTED_LOCK=false dispatches without a lock")
        with _environment("ENABLE_DISTRIBUTED_LOCK", "false"):
            sent = list(self.together(RACERS[:2], "/build", "api plt").values())
            replies = [self.reply_to(request) for request in sent]
        for request, reply in zip(sent, replies, strict=True):
            expect("lock is switched off" in reply.text, f"{request.person.name} is told the lock is off")
            self.show(request.person.name, reply.text)
        expect(len(self.runs_of(UNLOCKED_KEY)) == 2, "both builds were dispatched: no lock stopped the second")
        expect(self.store.get(UNLOCKED_KEY) is None, f"no lock was taken for {UNLOCKED_KEY}")
        self.say(f"  {'GitHub':<9} {len(self.runs_of(UNLOCKED_KEY))} runs of api (plt) at once; no {UNLOCKED_KEY} lock")
        self.say("  Switch it back (unset it, or `true`) and the lock guards every dispatch again.")

    def app_home(self) -> None:
        self.heading("9. alice opens the App Home: the live board, republished as a build starts and ends")
        alice, bob = RACERS[0], RACERS[1]

        def board() -> str:
            view = self.slack.home(alice.user_id)
            return " ".join(text for block in (view or {}).get("blocks", []) for text in _texts(block))

        def held_on_board(key: str) -> bool:
            return f"`{key}`" in board().split("*Lately*")[0]

        self.workspace.open_home(alice, retries=1)  # Slack retries the event once: published once
        self.until(lambda: self.slack.home(alice.user_id) is not None, "alice's Home published")
        first = board()
        expect("0 locks held" in first and "*Lately*" in first, "the board shows no lock held, and the history")
        self.show(alice.name, "Home → 0 locks held, and what happened lately (the newest history)")

        started = self.reply_to(self.workspace.command(bob, "/build", "router plt"))
        expect(started.text.startswith("🔨 Building router (plt)"), "bob's build started")
        self.until(lambda: held_on_board(BUILD_KEY) and f"<@{bob.user_id}>" in board(), "alice's Home shows it")
        self.show(alice.name, f"Home → `{BUILD_KEY}` held by bob, with a 🔔 Notify me when free button")

        run = self.runs_of(BUILD_KEY)[-1]
        self.github.start_run(run.id)
        self.github.complete_run(run.id, "success")
        self.until(lambda: not held_on_board(BUILD_KEY), "alice's Home no longer shows it held")
        expect("release by" in board().split("*Lately*")[-1], "the board's history shows the release")
        self.show(alice.name, f"Home → `{BUILD_KEY}` free again; Lately: release by bob")
        published = self.slack.homes_published(alice.user_id)
        expect(published >= 3, "alice's Home was published at the opening, the start and the end")
        self.say(f"  {'Slack':<9} {published} views.publish to alice: one per opening, one per batch of lock changes")

    def rollback(self) -> None:
        self.heading("10. Two deploys complete; `/deploy rollback api plt` offers the first commit, and deploys it")
        first, second, asker = RACERS[1], RACERS[2], RACERS[3]
        repository = self.github.repositories[self.stack.config.workflow_of(Action.DEPLOY, "api").repository]
        old = repository.branches[RELEASE_BRANCH]
        for person, text in ((first, f"api plt {RELEASE_BRANCH}"), (second, "api plt")):
            started = self.reply_to(self.workspace.command(person, "/deploy", text))
            expect(started.text.startswith("🚀 Deploying api (plt)"), f"{person.name}'s deploy started")
            self.complete_deploy(self.runs_of(DEPLOY_KEY)[-1])
            self.show(person.name, f"/deploy {text} → {started.text} — completed")
        history = _present(self.stack.history, "the history writer")
        history.drain()
        asked = self.workspace.command(asker, "/deploy", "rollback api plt")
        offer = self.reply_to(asked)
        expect(offer.text.startswith(f"Roll back api (plt) to {old[:7]}?"), "the offer is the first deploy's commit")
        confirm = next((b for b in buttons(offer) if b.get("action_id") == "rollback.confirm"), None)
        expect(confirm is not None, "the offer has a Confirm rollback button")
        assert confirm is not None
        self.show(asker.name, f"/deploy rollback api plt → (only {asker.name} sees)")
        for line in (line for block in offer.body.get("blocks", []) for t in _texts(block) for line in t.split("\n")):
            self.say(f"  {'':<9}   {plain(line, EVERYONE)}")
        self.show("", "  ".join(f"[{button['text']['text']}]" for button in buttons(offer)))
        done = self.reply_to(self.workspace.press(asker, confirm, asked.response_url))
        expect(done.text.startswith(f"⏪ Rolling back api (plt) to `{old[:7]}`"), "the channel is told the rollback")
        self.show(asker.name, f"[Confirm rollback] → {done.text}   (in the channel)")
        run = self.runs_of(DEPLOY_KEY)[-1]
        expect(run.inputs["sha"] == old, "the run deploys the first commit")
        expect(self.lock(DEPLOY_KEY).notes.get("rollback") == "true", "the lock notes the rollback")
        self.say(
            f"  {'GitHub':<9} run #{run.id} on {run.head_branch}, inputs sha={old[:7]}… ref={run.inputs['ref'][:7]}…"
        )
        self.complete_deploy(run)
        history.drain()
        shown = self.reply_to(self.workspace.command(asker, "/deploy", "history api plt"))
        lines = shown.body["blocks"][-1]["text"]["text"].split("\n") if shown.body.get("blocks") else []
        expect(bool(lines) and "(⏪ rollback)" in lines[0], "the history marks the rollback")
        self.show(asker.name, f"/deploy history api plt → {plain(lines[0], EVERYONE)}")

    def complete_deploy(self, run: WorkflowRun) -> None:
        self.github.start_run(run.id)
        self.github.complete_run(run.id, "success")
        self.until(lambda: self.state(DEPLOY_KEY) is m.LockState.COMPLETED, f"{DEPLOY_KEY} released as COMPLETED")

    def freeze_window(self) -> None:
        self.heading("11. A weekend freeze window for prod, in Berlin time, across the change to summer time")
        clock = _present(self.stack.options.clock, "the demo's clock")
        sweep = self.stack.schedules["reaper"].run_now
        berlin = "Europe/Berlin"

        def at(local: str) -> int:  # a wall-clock time in Berlin, as the window reads it
            return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(berlin)).timestamp())

        def set_clock(local: str) -> None:
            assert isinstance(clock, ShiftedClock)
            clock.set(at(local))
            self.say(f"  {'clock':<9} {local.replace('T', ' ')} Berlin")

        self.say("  The configuration: weekend = Fridays 15:00 to Mondays 09:00, Europe/Berlin, for prod.")
        set_clock("2027-03-26T14:59:30")
        sweep()
        expect(self.store.state("freeze-prod")[0] is not m.LockState.HELD, "prod is not frozen before 15:00")
        set_clock("2027-03-26T15:00:20")
        swept = sweep()
        expect(swept.get("windows") == {"froze": 1}, f"the sweep froze prod at 15:00 ({swept})")
        freeze = self.lock("freeze-prod")
        expect(freeze.lease_expires_at == at("2027-03-29T09:00"), "the freeze ends Monday 09:00 Berlin time")
        hours = (freeze.lease_expires_at - at("2027-03-26T15:00")) / 3600
        expect(hours == 65, "Friday 15:00 to Monday 09:00 is 65 hours this weekend: Sunday had no 02:00-03:00")
        self.say(f"  {'reaper':<9} froze prod until Monday 09:00 CEST ({hours:.0f} h: the clocks go forward on Sunday)")
        alice = RACERS[0]  # in the platform group: she may deploy to prod
        refused = self.reply_to(self.workspace.command(alice, "/deploy", "api prod"))
        expect(refused.text.startswith("🧊 Deploys to *prod* are frozen by the scheduled window"), "the deploy waits")
        self.show(alice.name, f"/deploy api prod → {refused.text}")
        set_clock("2027-03-29T08:59:30")
        sweep()
        expect(self.state("freeze-prod") is m.LockState.HELD, "prod is still frozen at 08:59 on Monday")
        set_clock("2027-03-29T09:00:10")
        sweep()
        expect(self.lock("freeze-prod").status is Status.EXPIRED, "the window ended at 09:00; the sweep recorded it")
        self.say(f"  {'reaper':<9} the window ended at 09:00 CEST: its lease ran out, and the sweep recorded it")
        allowed = self.reply_to(self.workspace.command(alice, "/deploy", "api prod"))
        expect(allowed.text.startswith("🚀 Deploying api (prod)"), "the deploy goes once the window has ended")
        self.show(alice.name, f"/deploy api prod → {allowed.text}")


class ShiftedClock:
    """The lock store's clock for the demo: the system's until :meth:`set`, then running on from that instant."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def set(self, at: float) -> None:
        self.offset = at - time.time()


def _texts(block: dict[str, Any]) -> list[str]:
    """The mrkdwn texts of a Block Kit block: its text, its fields, its context elements."""
    parts = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
    return [part["text"] for part in parts if isinstance(part, dict) and isinstance(part.get("text"), str)]


def _present(thing: _T | None, what: str) -> _T:
    if thing is None:
        raise StoryBroken(f"{what} is not running")
    return thing


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``name=value`` for the block (the workers read their configuration from the environment, per message)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def main(out: TextIO | None = None) -> int:
    out = out or sys.stdout
    started = time.monotonic()
    handle, log_path = tempfile.mkstemp(prefix="chatops-demo-", suffix=".log")  # kept, for whoever wants to read it
    log = os.fdopen(handle, "w", encoding="utf-8")
    print("chatops demo: the whole system on this machine — router, queues, workers, DynamoDB, Slack, GitHub", file=out)
    config = tempfile.NamedTemporaryFile("w", prefix="chatops-demo-", suffix=".toml", delete=False)  # noqa: SIM115
    with config, open(config_path(None), encoding="utf-8") as shipped:
        config.write(shipped.read() + WEEKEND_WINDOW)
    options = StackOptions.isolated(  # the story says when a run ends, and when the reaper sweeps
        github_delay=None, reaper_seconds=3600, config_path=config.name, clock=ShiftedClock()
    )
    try:
        # The workers' JSON logs and EMF metrics go to the log file; this output is the story.
        with log, contextlib.redirect_stdout(log), LocalStack(options, logs=log) as stack:
            print(f"  router   {stack.url}  (Slack and GitHub post here, signed)", file=out)
            print(f"  AWS      {stack.aws_url}  (moto: lock, history, idempotency tables; 5 queues, DLQs)", file=out)
            print(f"  workers  polling their queues; their logs: {log_path}", file=out)
            Story(stack, out).run()
    except StoryBroken as broken:
        print(f"\n❌ the demo's story did not hold: {broken}", file=out)
        print(f"   the workers' logs: {log_path}", file=out)
        return 1
    print("\nEvery step above was checked against the lock table, GitHub and Slack, not assumed.", file=out)
    print(f"Done in {time.monotonic() - started:.1f} s. `chatops serve` runs the same stack for you to try.", file=out)
    return 0
