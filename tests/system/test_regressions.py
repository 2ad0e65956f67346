"""Each defect the whole-system simulation found, kept as the minimal schedule it shrank to.

A schedule here is the state machine's own rules called in order, with every invariant checked after each step and
the settling checks at the end — exactly as Hypothesis ran it when it failed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from hypothesis.stateful import INVARIANT_MARKER

from tests.system.test_whole_system import WholeSystem
from tests.system.twins import Fault


def run_schedule(*steps: Callable[[WholeSystem], object]) -> None:
    machine = WholeSystem()
    try:
        for step in steps:
            step(machine)
            machine.every_promise_holds()
    finally:
        machine.teardown()


def test_a_hand_written_schedule_checks_every_invariant_hypothesis_checks() -> None:
    """:meth:`WholeSystem.every_promise_holds` lists the invariants by hand: one left out is a promise no schedule here
    checks (the App Home's was, until this test)."""
    invariants = {name for name, member in vars(WholeSystem).items() if hasattr(member, INVARIANT_MARKER)}
    called = set(re.findall(r"self\.(\w+)\(\)", inspect.getsource(WholeSystem.every_promise_holds)))
    assert invariants and invariants - called == set()


def test_a_dispatch_whose_answer_is_lost_and_whose_run_is_listed_late_is_not_called_failed() -> None:
    """GitHub created the run, answered 502, and listed it 30 s later: the worker may not tell "couldn't start"."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.github_lists_new_runs_after(seconds=30),
        lambda m: m.the_next_call_goes_wrong(call="github.dispatch", fault=Fault.LOST),
        lambda m: m.sqs_delivers_messages(picks=[0]),
    )


def test_a_release_whose_answer_is_lost_still_reports_the_run_in_the_channel() -> None:
    """Defect 3: the webhook worker's release takes effect, its answer is lost; the retry must still tell."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.github_delivers_a_webhook(pick=0, duplicate=False),
        lambda m: m.the_next_call_goes_wrong(call="store.write", fault=Fault.LOST),
        lambda m: m.sqs_delivers_messages(picks=[0]),
    )


def test_a_second_delivery_moments_after_an_unconfirmed_dispatch_does_not_dispatch_again() -> None:
    """Defect 1's cousin: the same request twice; the first's dispatch answered 502 after creating a run GitHub lists
    30 s later; the second delivery, seconds after, may not start a second run."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.github_lists_new_runs_after(seconds=30),
        lambda m: m.the_same_request_reaches_the_router_again(request=next(iter(m.world.requests.values()))),
        lambda m: m.the_next_call_goes_wrong(call="github.dispatch", fault=Fault.LOST),
        lambda m: m.time_passes(seconds=60),
    )


def test_a_run_whose_lock_was_force_unlocked_still_has_its_end_reported() -> None:
    """Every finished run's result reaches the channel — also one whose lock an admin let go while it ran."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.an_admin_force_unlocks_a_lock(pick=0),
        lambda m: m.the_next_call_goes_wrong(call="ledger.write", fault=Fault.FAIL),
        lambda m: m.time_passes(seconds=60),
    )


def test_a_release_told_to_a_failing_slack_is_told_again_by_the_reaper() -> None:
    """The webhook's release took effect; Slack answered 500 to the result: the ledger shows it untold, and the
    reaper's next sweep tells it."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.the_next_call_goes_wrong(call="slack.post", fault=Fault.FAIL),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.time_passes(seconds=60),
    )


def test_a_press_that_cannot_be_queued_is_answered_through_its_response_url() -> None:
    """Slack ignores a block_actions reply body: an admin's Force unlock that SQS refused is answered all the same."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.the_next_call_goes_wrong(call="sqs.send", fault=Fault.FAIL),
        lambda m: m.an_admin_force_unlocks_a_lock(pick=0),
    )


def test_an_expiry_whose_answer_is_lost_is_still_announced() -> None:
    """The reaper's expire took effect and its answer was lost: nothing else looks again, so the reaper does."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.time_passes(seconds=700),
        lambda m: m.the_next_call_goes_wrong(call="store.write", fault=Fault.LOST),
        lambda m: m.time_passes(seconds=30),
    )


def test_a_request_force_unlocked_while_put_off_never_starts_a_second_run() -> None:
    """Found by the soak: a dispatch unconfirmed (502, the run listed 30 s later), the request put off with its
    lock; an admin force-unlocks it; a second delivery of the same request takes a fresh lock with no notes. It
    must look for its run first (the ledger keeps that it sent one), adopt it, and report its end."""

    def second_request(machine: WholeSystem) -> object:
        return machine.someone_types_a_command(command=("/build", "router plt"), user="U0ALICE")

    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.github_lists_new_runs_after(seconds=30),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.an_admin_force_unlocks_a_lock(pick=0),
        lambda m: m.the_next_call_goes_wrong(call="github.dispatch", fault=Fault.LOST),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        second_request,
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.an_admin_force_unlocks_a_lock(pick=0),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.the_same_request_reaches_the_router_again(request=list(m.world.requests.values())[2]),
        lambda m: m.time_passes(seconds=60),
    )


def test_the_end_of_a_force_unlocked_run_that_slack_did_not_take_is_told_again() -> None:
    """Found by the soak: the run's lock had been force-unlocked; its end, reported from the kept lock, met a Slack
    500 — with no lock of its own for the reaper to look at, the webhook's event comes back until it is heard."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.an_admin_force_unlocks_a_lock(pick=0),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.the_next_call_goes_wrong(call="slack.post", fault=Fault.FAIL),
        lambda m: m.time_passes(seconds=240),
    )


def test_a_cancel_whose_release_answer_is_lost_finishes_on_its_redelivery() -> None:
    """Found by the soak: the cancel's release took effect and its answer was lost; the cancel answered "the
    table did not answer" and stopped, leaving the run going, uncancelled and unreported. It now comes back."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.the_requester_cancels(request=next(iter(m.world.requests.values()))),
        lambda m: m.the_next_call_goes_wrong(call="store.write", fault=Fault.LOST),
        lambda m: m.sqs_delivers_messages(picks=[0]),
    )


def test_a_request_that_gave_up_and_died_after_telling_never_starts_afterwards() -> None:
    """Found by the soak: GitHub failed before the dispatch, the user was told "couldn't start" and the worker
    died right after; the redelivery found the lock free and started the run. A request that gives up keeps that
    it did (the ledger, before any effect), and every later delivery gives up again."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.the_next_call_goes_wrong(call="github.read", fault=Fault.FAIL),
        lambda m: m.the_next_call_goes_wrong(call="slack.post", fault=Fault.CRASH_AFTER),
        lambda m: m.time_passes(seconds=700),
    )


def test_a_release_whose_answer_is_lost_is_told_after_a_new_request_took_the_lock() -> None:
    """Found by the soak: the webhook's release took effect and its answer was lost; before the event came back,
    another request took the free lock, and the redelivery read a lock that was no longer the run's — its end was
    never told. The lock is kept in the ledger before the release, and the redelivery tells the end from it."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.github_delivers_a_webhook(pick=0, duplicate=False),
        lambda m: m.the_next_call_goes_wrong(call="store.write", fault=Fault.LOST),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.someone_types_a_command(user="U0BOB", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.time_passes(seconds=60),
    )


def test_a_runs_end_slack_did_not_take_is_told_after_the_lock_was_handed_on() -> None:
    """Found by the soak: the webhook released alice's lock to bob, next in line, and Slack answered the run's
    result 500. The reaper looks again only at a lock that still shows the release; this one was bob's. The event
    now comes back (SQS) until the channel hears it, told from the lock kept at the run's end."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.someone_types_a_command(user="U0BOB", command=("/build", "router plt --queue")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="success"),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.the_next_call_goes_wrong(call="slack.post", fault=Fault.FAIL),
        lambda m: m.github_delivers_a_webhook(pick=0, duplicate=False),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.time_passes(seconds=60),
    )


def test_a_cancel_that_finds_an_unnoted_run_names_it_in_the_channel() -> None:
    """Found by the soak: the build worker died right after GitHub created the run, before noting its id; the
    requester's cancel found the run by its correlation id and cancelled it — and told the channel "no run had
    started". The news now names the run it cancelled (the run's end, in the channel)."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.the_next_call_goes_wrong(call="github.dispatch", fault=Fault.CRASH_AFTER),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.the_requester_cancels(request=next(iter(m.world.requests.values()))),
        lambda m: m.time_passes(seconds=60),
    )


def test_a_runs_end_the_reaper_could_not_tell_after_a_hand_off_is_told_by_the_webhook_worker() -> None:
    """The reaper's twin of the webhook's case: the completed event was lost, the reaper released alice's lock to
    bob and Slack answered the result 500 — no lock left showing the release for the next sweep. The reaper hands
    the end to the webhook worker as the event GitHub did not deliver, and it is told from there."""
    run_schedule(
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.someone_types_a_command(user="U0BOB", command=("/build", "router plt --queue")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="failure"),
        lambda m: m.github_moves_a_run_along(pick=0, conclusion="failure"),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.a_webhook_is_lost(),
        lambda m: m.the_next_call_goes_wrong(call="slack.post", fault=Fault.FAIL),
        lambda m: m.time_passes(seconds=60),
    )


def test_a_home_whose_keeping_the_ledger_refused_may_be_published_again_but_not_more() -> None:
    """Slack sent alice's ``app_home_opened`` twice; the worker published her Home and the ledger refused to keep
    that it had: the second delivery publishes again. The promise was too strict (a refused write did not count as
    a fault that may repeat a publish): at least once, and once more per fault, is what can be kept."""
    run_schedule(
        lambda m: m.api_was_deployed_to_prod_twice_and_a_rollback_offered(earlier=False),
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.someone_opens_the_app_home(retries=1, user="U0ALICE"),
        lambda m: m.the_next_call_goes_wrong(call="ledger.write", fault=Fault.FAIL),
        lambda m: m.time_passes(seconds=60),
    )


def test_a_home_press_whose_direct_message_slack_refused_is_not_held_to_an_answer_it_cannot_get() -> None:
    """The soak's find: bob's *Leave the queue* on his Home, and Slack refused the direct message that answered
    it. Its answer is logged and not sent again, as any reply Slack refuses; bob had been told nothing else, so the
    promise "every request was answered" failed — it now holds Home presses to their own promise, which a schedule
    where Slack went wrong cannot keep."""
    run_schedule(
        lambda m: m.api_was_deployed_to_prod_twice_and_a_rollback_offered(earlier=False),
        lambda m: m.someone_types_a_command_first(user="U0ALICE", command=("/build", "router plt")),
        lambda m: m.sqs_delivers_messages(picks=[0]),
        lambda m: m.the_next_call_goes_wrong(call="slack.post", fault=Fault.FAIL),
        lambda m: m.someone_presses_a_button_on_their_home(leave=True, pick=0, user="U0BOB"),
        lambda m: m.the_clock_crosses_the_next_freeze_window_boundary(after=0),
    )
