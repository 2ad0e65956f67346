"""The whole system under concurrency and faults: every promise of the workers' protocol, checked after every step.

Hypothesis chooses what happens in the world — people typing commands on shared keys, Slack or a proxy
resubmitting a request, SQS delivering (again, late, out of order), a call failing before or after its effect or
losing its answer, a Lambda dying at any adapter call, GitHub moving runs along and delivering, duplicating,
reordering or losing webhooks, someone sending a run of another workflow or a pull request titled like ours, time
jumping past leases, people opening the App Home and pressing its buttons — and the real router, workers, webhook
worker and reaper run over the twins (:mod:`tests.system.world`). After every step the invariants below hold;
when the world recovers (:meth:`~tests.system.world.World.settle`), every request has had its answer and every
run's end was reported.

What it does not cover (said in docs/lock.md, "The proof", too): real AWS/Slack/GitHub wire behaviour (the
adapters' own tests do, against moto and the HTTP stand-ins), concurrency inside one Lambda invocation (each
handler runs to completion or dies; interleavings are between invocations), and commands other than
``/build``/``/deploy``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, initialize, invariant, precondition, rule

from lockcore.record import LockRecord, Status, epoch
from tests.system.twins import Fault, RunTruth, Said, Utterance
from tests.system.world import (
    ADMIN,
    HANDLERS,
    REAPER_PERIOD,
    REPOSITORY,
    USERS,
    InTheWorld,
    SlackRequest,
    config_path,
    machine_settings,
)
from workers.protocol.board import HOME_WINDOW_SECONDS
from workers.protocol.config import Queue, load_config
from workers.protocol.envelope import (
    DIRECT_MESSAGE_PREFIX,
    HOME_DEQUEUE_ACTION,
    LOCK_WATCH_ACTION,
    ROLLBACK_CONFIRM_ACTION,
    UNLOCK_CONFIRM_ACTION,
    correlation_id_of,
)
from workers.protocol.rollback import lock_mark
from workers.protocol.windows import Window, occurrence_of, schedule
from workers.protocol.workflow import CORRELATION_ID_INPUT, LOCK_KEY_INPUT

COMMANDS = (
    ("/build", "router plt"),
    ("/build", "router plt --queue"),
    ("/build", "api plt"),
    ("/deploy", "api prod"),
)
CALLS = (
    "store.write",
    "store.read",
    "github.dispatch",
    "github.read",
    "github.cancel",
    "slack.post",
    "sqs.send",
    "idempotency.write",
    "pending.write",
    "ledger.write",
)
MAX_FAULTS = 12
"""Faults planned in one schedule: the world recovers within a bounded number of attempts."""
TAKEN: Counter[tuple[str, Fault]] = Counter()
STEPS: Counter[str] = Counter()
LEASES = {"build": 600, "deploy": 1800}
STARTED = ("🔨", "🚀", "⏪")
COULD_NOT_START = "❌ Couldn't start"
FREEZE_KEY = "freeze-prod"


class WholeSystem(InTheWorld):
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.told_failed: dict[str, int] = {}
        self.rollback_presses: dict[str, str] = {}
        """Each *Confirm rollback* press (trigger_id): the value its button carried."""

    def teardown(self) -> None:
        for (call, fault), count in self.world.faults.taken.items():
            TAKEN[call, fault] += count
        STEPS["runs"] += len(self._ours())
        STEPS["requests"] += len(self.world.requests)
        STEPS["rollback runs"] += sum(len(self.world.runs_of(self.world.requests[t])) for t in self.rollback_presses)
        STEPS["examples"] += 1
        try:
            self.world.settle()
            self.every_request_was_answered()
            self.every_home_press_was_answered_by_direct_message()
            self.every_finished_run_was_reported_in_the_channel()
            self.every_force_unlock_was_announced()
            self.no_lock_is_left_held()
            self.every_recent_viewers_home_shows_the_live_locks()
        finally:
            self.leave()

    # ------------------------------------------------------------------------------------------ the world
    @initialize(target=requests, user=st.sampled_from(USERS), command=st.sampled_from(COMMANDS))
    def someone_types_a_command_first(self, user: str, command: tuple[str, str]) -> SlackRequest:
        return self.world.type(user, command[1], command[0])

    @initialize(earlier=st.booleans())
    def api_was_deployed_to_prod_twice_and_a_rollback_offered(self, earlier: bool) -> None:
        """Half the schedules begin after two deploys of api to prod completed (v1, then v2) and carol was offered
        a rollback to v1: a press has something to confirm without a schedule having to build that history first
        (whether the lock moves before it is the schedule's to choose)."""
        for user, text in (("U0ALICE", "api prod v1"), ("U0BOB", "api prod v2"), ("U0CAROL", "rollback api prod")):
            if earlier:
                self.world.type(user, text, "/deploy")
                self.world.settle()

    @rule(target=requests, user=st.sampled_from(USERS), command=st.sampled_from(COMMANDS))
    def someone_types_a_command(self, user: str, command: tuple[str, str]) -> SlackRequest:
        return self.world.type(user, command[1], command[0])

    @rule(request=requests)
    def the_same_request_reaches_the_router_again(self, request: SlackRequest) -> None:
        """Slack retries Events API deliveries, a proxy or a client may resubmit: the same trigger_id again."""
        self.world.deliver_slash(request)

    @rule(picks=st.lists(st.integers(0, 15), min_size=1, max_size=6))
    def sqs_delivers_messages(self, picks: list[int]) -> None:
        """Each pick: one visible message of any queue (so, in any order), to its worker."""
        for pick in picks:
            visible = [(q, m) for q in HANDLERS for m in self.world.sqs.queues[q].visible(self.world.now)]
            if not visible:
                return
            queue, message = visible[pick % len(visible)]
            hostile = queue is Queue.GITHUB and json.loads(message.body).get("runId") in self.world.hostile_runs
            before = self.world.store.items()
            self.world.deliver(queue, message)
            if hostile:
                assert self.world.store.items() == before, "a run that is not ours changed a lock"

    @precondition(lambda self: self.faults_planned < MAX_FAULTS)
    @rule(call=st.sampled_from(CALLS), fault=st.sampled_from(Fault))
    def the_next_call_goes_wrong(self, call: str, fault: Fault) -> None:
        self.world.faults.plan(call, fault)
        self.faults_planned += 1

    @rule(pick=st.integers(0, 31), conclusion=st.sampled_from(("success", "failure", "cancelled")))
    def github_moves_a_run_along(self, pick: int, conclusion: str) -> None:
        going = [run for run in self.world.github.runs.values() if run.status != "completed"]
        if not going:
            return
        run = going[pick % len(going)]
        if run.status == "queued":
            self.world.github.progress(run)
        else:
            self.world.github.finish(run, conclusion)

    @rule(seconds=st.sampled_from((1, 2, 30, 90)))
    def github_lists_new_runs_after(self, seconds: int) -> None:
        """GitHub lists a run a little after creating it: seconds, at most a minute and a half (the assumption
        the workers rely on, :data:`workers.protocol.dispatch.RUN_LISTED_WITHIN`, is two minutes)."""
        self.world.github.list_delay = seconds

    @rule(pick=st.integers(0, 5), duplicate=st.booleans())
    def github_delivers_a_webhook(self, pick: int, duplicate: bool) -> None:
        """Any of the events not yet delivered (reordered); ``duplicate``: delivered, and to be delivered again."""
        self.world.send_webhook(pick, keep=duplicate)

    @rule()
    def a_webhook_is_lost(self) -> None:
        self.world.lose_webhook()

    @rule(
        request=requests,
        how=st.sampled_from(("pull_request", "push", "other-workflow", "other-repository")),
        conclusion=st.sampled_from(("success", "failure")),
    )
    def someone_runs_a_workflow_titled_like_ours(self, request: SlackRequest, how: str, conclusion: str) -> None:
        """A pull request titled ``build-router-plt · cid=<the lock's cid>``, or a run of another workflow or
        repository with our name: GitHub reports it, signed, like any run."""
        key = _lock_key(request)
        holder = self.world.holder(key)
        cid = (holder.correlation_id if holder is not None else None) or next(iter(request.correlation_ids), "x")
        workflow = (
            "other.yml" if how == "other-workflow" else ("deploy.yml" if key.startswith("deploy") else "build.yml")
        )
        repository = "someone/fork" if how == "other-repository" else REPOSITORY
        event = how if how in ("pull_request", "push") else "workflow_dispatch"
        run = self.world.github.start(
            repository, workflow, "main", {LOCK_KEY_INPUT: key, CORRELATION_ID_INPUT: cid}, event=event
        )
        self.world.hostile_runs.add(run.id)
        self.world.github.finish(run, conclusion)

    @rule(pick=st.integers(0, 7))
    def an_admin_force_unlocks_a_lock(self, pick: int) -> None:
        """``/build unlock``'s prompt answered with *Force unlock*: the button carries the key and the token."""
        held = sorted(self.world.live_locks())
        if held:
            key = held[pick % len(held)]
            holder = self.world.holder(key)
            assert holder is not None
            self.world.press(ADMIN, UNLOCK_CONFIRM_ACTION, f"{key}:{holder.token}")

    @rule(request=requests)
    def the_requester_cancels(self, request: SlackRequest) -> None:
        """``/build cancel router plt`` from whoever typed ``request``: theirs if they hold it, refused if not."""
        component, environment = request.text.split()[:2]
        self.world.type(request.user, f"cancel {component} {environment}", request.command)

    @rule(target=requests, user=st.sampled_from(USERS), ref=st.sampled_from(("v1", "v2")))
    def someone_deploys_a_tag(self, user: str, ref: str) -> SlackRequest:
        """Deploys of other commits than the default branch's: something for a rollback to go back to."""
        return self.world.type(user, f"api prod {ref}", "/deploy")

    @rule(user=st.sampled_from(USERS), steps=st.sampled_from(("", " 2")))
    def someone_asks_for_a_rollback(self, user: str, steps: str) -> None:
        self.world.type(user, f"rollback api prod{steps}", "/deploy")

    @rule(pick=st.integers(0, 7), again=st.booleans())
    def the_asker_confirms_a_rollback(self, pick: int, again: bool) -> None:
        """*Confirm rollback* on any offer made so far (a stale one too); ``again``: Slack retries the press."""
        offers = [(u.user, b["value"]) for u in self.world.slack.said for b in _buttons(u, ROLLBACK_CONFIRM_ACTION)]
        if not offers:
            return
        user, value = offers[pick % len(offers)]
        press = self.world.press(user, ROLLBACK_CONFIRM_ACTION, value)
        self.rollback_presses[press.trigger_id] = value
        if again:
            self.world.deliver_press(press)

    @rule(path=st.sampled_from(("/slack/interactions", "/github/webhook")), depth=st.sampled_from((70, 1_000, 50_000)))
    def someone_sends_a_signed_body_nested_deep(self, path: str, depth: int) -> None:
        """A hostile (or broken) client with the signing secret: malformed input gets a 4xx, and nothing moves."""
        before = {q: len(t.messages) for q, t in self.world.sqs.queues.items()}
        answer = self.world.post_signed(path, "[" * depth + "]" * depth)
        assert 400 <= answer["statusCode"] < 500, answer
        assert {q: len(t.messages) for q, t in self.world.sqs.queues.items()} == before

    @rule(user=st.sampled_from(USERS), retries=st.integers(0, 2))
    def someone_opens_the_app_home(self, user: str, retries: int) -> None:
        """Slack sends ``app_home_opened`` — and again, with ``X-Slack-Retry-Num``, when it saw no answer in time."""
        self.world.open_home(user, retries)

    @rule(user=st.sampled_from(USERS), pick=st.integers(0, 7), leave=st.booleans())
    def someone_presses_a_button_on_their_home(self, user: str, pick: int, leave: bool) -> None:
        """*🔔 Notify me when free* or *Leave the queue* on the App Home, on a lock held now (or one that is not: a
        Home shows the board as it was published)."""
        keys = sorted(self.world.live_locks()) or ["build-router-plt"]
        action = HOME_DEQUEUE_ACTION if leave else LOCK_WATCH_ACTION
        self.world.press(user, action, keys[pick % len(keys)], at_home=True)

    @rule()
    def the_lock_tables_stream_reaches_the_history_writer(self) -> None:
        self.world.stream()

    @rule(seconds=st.sampled_from((5, 30, 60, 240, 700, 2000)))
    def time_passes(self, seconds: int) -> None:
        self.world.tick(seconds)

    @rule(after=st.sampled_from((0, 120)))
    def the_clock_crosses_the_next_freeze_window_boundary(self, after: int) -> None:
        """Time passes to a sweep or three past the next start or end of one of prod's freeze windows."""
        found = schedule(_windows(), "prod", self.world.now)
        boundary = found.active.end if found.active is not None else found.next.start if found.next else None
        if boundary is not None:
            self.world.tick(boundary - self.world.now + REAPER_PERIOD + after)

    # --------------------------------------------------------------------------------------- the promises
    @invariant()
    def at_most_one_github_run_per_slack_request(self) -> None:
        for request in self.world.requests.values():
            runs = self.world.runs_of(request)
            assert len(runs) <= 1, f"{request.trigger_id} started runs {[r.id for r in runs]}"

    @invariant()
    def every_run_starts_under_its_lock(self) -> None:
        for run in self._ours():
            under = self.world.dispatched_under.get(run.id)
            assert under is not None, f"run {run.id} started with no live lock on {run.inputs.get(LOCK_KEY_INPUT)}"
            assert str(under[1]) == run.inputs.get("lock_token"), f"run {run.id} carries another token than {under}"

    @invariant()
    def nobody_is_told_something_a_later_step_makes_false(self) -> None:
        for request in self.world.requests.values():
            told = self.world.answered(request)
            runs = self.world.runs_of(request)
            for text in told:
                if text.startswith(STARTED):  # about its own run, or the run it was coalesced into: named by link
                    named = [int(n) for n in re.findall(r"runs/(\d+)", text)]
                    started = [self.world.github.runs.get(n) for n in named] if named else runs
                    assert started and all(started), f"{request.trigger_id} was told {text!r}; no such run exists"
            if any(text.startswith(COULD_NOT_START) for text in told):
                assert not runs, f"{request.trigger_id} was told it could not start, and run {runs[0].id} started"

    @invariant()
    def each_home_event_is_published_once(self) -> None:
        """However often Slack delivers an ``app_home_opened``, its Home is published once — again only when the
        worker died between publishing and keeping that it did, Slack's answer was lost, or the ledger refused the
        keeping (a published Home cannot be taken back: at least once)."""
        again = sum(
            count for (call, _), count in self.world.faults.taken.items() if call in {"slack.post", "ledger.write"}
        )
        published = Counter(cid for _, cid in self.world.slack.home_publishes)
        for event_id in self.world.home_events:
            assert published[correlation_id_of(event_id)] <= 1 + again, event_id

    @invariant()
    def no_lock_outlives_its_run_by_more_than_its_lease_and_a_sweep(self) -> None:
        for run in self._ours():
            holder = self.world.holder(run.inputs.get(LOCK_KEY_INPUT, ""))
            if run.completed_at is None or holder is None or str(holder.token) != run.inputs.get("lock_token"):
                continue
            lease = LEASES[holder.lock_key.split("-")[0]]
            assert self.world.now <= run.completed_at + lease + REAPER_PERIOD, (
                f"the lock of run {run.id} is held {self.world.now - run.completed_at}s after the run ended"
            )

    @invariant()
    def a_rollback_deploys_only_the_commit_it_offered_that_completed_before(self) -> None:
        """…and only from the lock its offer saw: the item its acquire replaced is the one the button carried."""
        for trigger, value in self.rollback_presses.items():
            component, environment, sha, seen = value.split(" ")
            key = f"deploy-{component}-{environment}"
            for run in self.world.runs_of(self.world.requests[trigger]):
                assert run.inputs.get("sha") == sha, f"rollback run {run.id} deploys {run.inputs.get('sha')}, not {sha}"
                replaced = self._replaced_by_the_acquire_of(key, trigger)
                assert lock_mark(replaced) == seen, f"rollback run {run.id} took the lock at {lock_mark(replaced)}"
                before = self.world.store.written[: self.world.written_before[run.id]]
                assert any(
                    item.get("lockKey") == key and item.get("status") == "COMPLETED" and item.get("commitSha") == sha
                    for item in before
                ), f"rollback run {run.id} deploys {sha[:7]}, which no deploy of {key} had completed"

    def _replaced_by_the_acquire_of(self, key: str, owner: str) -> LockRecord | None:
        """The lock ``key`` as it was right before ``owner`` first took it."""
        before = None
        for item in self.world.store.written:
            if item.get("lockKey") == key and item.get("owner") == owner:
                return before
            if item.get("lockKey") == key:
                before = LockRecord.from_item(item)
        return before

    @invariant()
    def a_window_freeze_is_held_only_through_its_occurrence(self) -> None:
        held = self.world.holder(FREEZE_KEY)
        if held is not None and occurrence_of(held.owner) is not None:
            active = schedule(_windows(), "prod", self.world.now).active
            assert active is not None and held.owner == active.owner, f"{held.owner} froze prod outside its window"
            assert held.lease_expires_at == active.end, "a window's freeze ends with its occurrence"

    @invariant()
    def no_deploy_asked_for_inside_an_applied_window_runs_inside_it(self) -> None:
        for start, end in self._applied_windows():
            for request in self.world.requests.values():
                if request.command != "/deploy" or not start <= request.typed_at < end:
                    continue
                for run in self.world.runs_of(request):
                    assert run.created_at >= end, f"{request.text!r} ran inside the window that froze prod"

    def _applied_windows(self) -> list[tuple[int, int]]:
        """Each freeze a window took, as the lock table's writes show it: from its acquire to its lease's end, or
        to the write that freed it first."""
        spans: dict[int, tuple[int, int]] = {}
        for item in self.world.store.written:
            record = LockRecord.from_item(item)
            if record.lock_key != FREEZE_KEY or occurrence_of(record.owner) is None:
                continue
            if record.status is Status.IN_PROGRESS and record.locked_at:
                spans.setdefault(record.token, (epoch(record.locked_at), record.lease_expires_at))
            elif record.token in spans and record.released_at:
                start, end = spans[record.token]
                spans[record.token] = (start, min(end, epoch(record.released_at)))
        return list(spans.values())

    def every_promise_holds(self) -> None:
        """Every invariant at once (what Hypothesis checks after each step), for schedules written by hand."""
        self.at_most_one_github_run_per_slack_request()
        self.every_run_starts_under_its_lock()
        self.nobody_is_told_something_a_later_step_makes_false()
        self.each_home_event_is_published_once()
        self.no_lock_outlives_its_run_by_more_than_its_lease_and_a_sweep()
        self.a_rollback_deploys_only_the_commit_it_offered_that_completed_before()
        self.a_window_freeze_is_held_only_through_its_occurrence()
        self.no_deploy_asked_for_inside_an_applied_window_runs_inside_it()

    # ------------------------------------------------------------------------- promises once it all settles
    def every_request_was_answered(self) -> None:
        for request in self.world.requests.values():
            if request.response_url.startswith(DIRECT_MESSAGE_PREFIX):
                continue  # a Home press: every_home_press_was_answered_by_direct_message
            assert self.world.told(request), f"{request.trigger_id} ({request.text}) was never told anything"

    def every_finished_run_was_reported_in_the_channel(self) -> None:
        channel = [u.text for u in self.world.slack.said if u.public]
        for run in self._ours():
            if run.id in self.world.lost_completions and self._let_go_while_it_ran(run):
                continue  # the known gap (docs/lock.md): no lock of its own left for the reaper, no webhook either
            assert any(f"runs/{run.id}" in text and text.startswith(("✅", "❌", "🛑")) for text in channel), (
                f"the end of run {run.id} ({run.conclusion}) never reached the channel"
            )

    def _let_go_while_it_ran(self, run: RunTruth) -> bool:
        """Its lock was force-unlocked or expired under it before it ended (freed, or handed on by that write)."""
        key, token = run.inputs.get(LOCK_KEY_INPUT), run.inputs.get("lock_token")
        let_go = {Status.FORCE_RELEASED.value, Status.EXPIRED.value}
        for item in self.world.store.written:
            if item.get("lockKey") != key:
                continue
            if str(item.get("token")) == token and str(item.get("status")) in let_go:
                return True
            if str(item.get("previousToken")) == token and str(item.get("previousStatus")) in let_go:
                return True
        return False

    def every_home_press_was_answered_by_direct_message(self) -> None:
        """A Home press has no ``response_url``: its answer is a direct message to whoever pressed (or Slack's own
        error, when the router could not take it). Slack may refuse that message, as it may refuse any reply through
        a ``response_url``: the answer is logged and not sent again (docs/slack.md) — so a schedule in which Slack
        went wrong is not held to it. Slack refuses nothing else: the answer was sent."""
        if any(call == "slack.post" for call, _ in self.world.faults.taken):
            return
        for request in self.world.requests.values():
            if not request.response_url.startswith(DIRECT_MESSAGE_PREFIX):
                continue
            answers = [
                u
                for u in self.world.slack.said
                if u.user == request.user and u.at >= request.typed_at and u.how in (Said.DIRECT, Said.SLACK_ERROR)
            ]
            assert answers, f"{request.user}'s press of {request.command} on the Home was never answered"

    def every_force_unlock_was_announced(self) -> None:
        channel = [u.text for u in self.world.slack.said if u.public]
        for item in self.world.store.written:
            record = LockRecord.from_item(item)
            if record.status is Status.FORCE_RELEASED and (record.release_reason or "").startswith("force unlock"):
                news = f"force-unlocked `{record.lock_key}`"
                assert any(news in text and f"token {record.token}" in text for text in channel), (
                    f"the force-unlock of {record.lock_key} (token {record.token}) was never announced"
                )

    def no_lock_is_left_held(self) -> None:
        assert self.world.live_locks() == {}, "locks still held after everything settled"

    def every_recent_viewers_home_shows_the_live_locks(self) -> None:
        """Once the system settled, whoever opened the Home within its window sees the locks as they are."""
        live = set(self.world.live_locks())
        for user, opened in self.world.home_opened.items():
            if self.world.now - opened >= HOME_WINDOW_SECONDS:
                continue
            view = self.world.slack.homes.get(user)
            assert view is not None, f"{user} opened the Home and was never shown it"
            board = json.dumps(view["blocks"]).split("*Lately*")[0]
            assert set(re.findall(r"\*`([a-z0-9-]+)`\*", board)) == live, (user, live, board[:500])

    def _ours(self) -> list[RunTruth]:
        return [run for run in self.world.github.runs.values() if run.id not in self.world.hostile_runs]


def _buttons(said: Utterance, action_id: str) -> list[dict[str, Any]]:
    blocks = said.message.blocks if said.message is not None and said.message.blocks else []
    elements = [e for block in blocks if block.get("type") == "actions" for e in block.get("elements", [])]
    return [dict(e) for e in elements if e.get("action_id") == action_id]


def _lock_key(request: SlackRequest) -> str:
    action = request.command.removeprefix("/")
    component, environment = request.text.split()[:2]
    return f"{action}-{component}-{environment}"


@cache
def _windows() -> tuple[Window, ...]:
    return load_config(config_path(), {}).freeze_windows


WholeSystem.TestCase.settings = machine_settings(ci_examples=400)
test_the_whole_system_keeps_every_promise = WholeSystem.TestCase
