"""The pure half of the build worker: what a request is, what to do next, and what the user reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockcore.record import LockRecord, Status, iso
from workers.protocol import dispatch
from workers.protocol.commands import Dispatch, Echo
from workers.protocol.config import Action, Config, load_config
from workers.protocol.envelope import CommandEnvelope, correlation_id_of
from workers.protocol.workflow import Run, parse_run_name, run_name

CONFIG = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"
NOW = 1_800_000_000
SHA = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(CONFIG, {})


def envelope(command: Dispatch | Echo, request_id: str = "111.222.abc") -> CommandEnvelope:
    return CommandEnvelope(
        request_id=request_id,
        correlation_id="cid-1",
        command=command,
        slash="/build",
        text="",
        user_id="U0ALICE",
        user_name="alice",
        channel_id="C0CHAN",
        team_id="T0TEAM",
        api_app_id="A0APP",
        response_url="https://hooks.slack.com/commands/T0TEAM/1/x",
        received_at=NOW,
    )


def job(config: Config, action: Action = Action.BUILD, ref: str | None = None) -> dispatch.Job:
    return dispatch.Job.of(envelope(Dispatch(action, "router", "plt", ref)), config)


def holder(**notes: str) -> LockRecord:
    return LockRecord(
        lock_key="build-router-plt",
        token=3,
        owner="999.888.xyz",
        status=Status.IN_PROGRESS,
        locked_by="U0BOB",
        locked_by_name="bob",
        locked_at=iso(NOW - 7 * 60 - 5),
        lease_expires_at=NOW + 180,
        notes=notes,
    )


def run(run_id: int = 7, url: str = "https://github.com/o/r/actions/runs/7") -> Run:
    return Run(run_id, "build-router-plt · cid=cid-1", "queued", None, url, "", "", head_sha=SHA, head_branch="main")


# ----------------------------------------------------------------------------------------------- the job
def test_a_job_takes_its_lock_as_the_request(config: Config) -> None:
    request = job(config).acquire_request()
    assert (request.lock_key, request.owner, request.lease_seconds) == ("build-router-plt", "111.222.abc", 600)
    assert (request.locked_by, request.locked_by_name, request.correlation_id) == ("U0ALICE", "alice", "cid-1")
    assert job(config, Action.DEPLOY).acquire_request().lease_seconds == 1800


def test_only_build_and_deploy_are_jobs(config: Config) -> None:
    with pytest.raises(ValueError, match="not 'echo'"):
        dispatch.Job.of(envelope(Echo("hi")), config)


def test_the_inputs_carry_what_the_run_name_and_the_fencing_check_need(config: Config) -> None:
    inputs = dispatch.dispatch_inputs(job(config), dispatch.Revision("main", SHA, "main"), "3")
    assert inputs == {
        "component": "router",
        "environment": "plt",
        "ref": "main",
        "sha": SHA,
        "correlation_id": "cid-1",
        "lock_key": "build-router-plt",
        "lock_token": "3",
    }


def test_a_commit_is_told_from_a_branch() -> None:
    assert dispatch.is_commit(SHA[:7], SHA) and dispatch.is_commit(SHA, SHA)
    assert not dispatch.is_commit("main", SHA)
    assert not dispatch.is_commit("deadbeef", SHA)  # hex, but another commit's


def test_the_revision_noted_is_the_one_dispatched_again(config: Config) -> None:
    notes = dispatch.dispatching_notes(job(config), dispatch.Revision("main", SHA, "main"))
    assert notes["dispatchState"] == "dispatching"
    assert dispatch.noted_revision(notes) == dispatch.Revision("main", SHA, "main")
    assert dispatch.noted_revision({"dispatchState": "dispatching"}) is None


# -------------------------------------------------------------------------------------------- next step
def test_nothing_noted_dispatches() -> None:
    assert dispatch.next_step({}) == dispatch.DispatchNow()


def test_dispatching_noted_looks_for_the_run_first() -> None:
    assert dispatch.next_step({"dispatchState": "dispatching"}) == dispatch.LookForRun()


def test_dispatching_noted_and_the_run_found_records_it_and_never_dispatches() -> None:
    assert dispatch.next_step({"dispatchState": "dispatching"}, run()) == dispatch.RecordRun(run())


def test_dispatching_noted_and_no_run_found_dispatches() -> None:
    assert dispatch.next_step({"dispatchState": "dispatching"}, None) == dispatch.DispatchNow()


def test_dispatched_noted_only_announces() -> None:
    noted = {"dispatchState": "dispatched", "runId": "7", "runUrl": "u"}
    assert dispatch.next_step(noted) == dispatch.Announce(7, "u")
    assert dispatch.next_step(noted, None) == dispatch.Announce(7, "u")
    assert dispatch.next_step(noted, run(7, "v")) == dispatch.Announce(7, "v")


@given(
    state=st.sampled_from([None, "dispatching", "dispatched"]),
    found=st.sampled_from(["not looked", "none", "run"]),
)
def test_a_dispatch_is_never_chosen_once_a_run_is_known(state: str | None, found: str) -> None:
    notes = {"dispatchState": state} if state else {}
    looked: Run | str | None = {"not looked": dispatch.NOT_LOOKED, "none": None, "run": run()}[found]
    step = dispatch.next_step(notes, looked)
    if found == "run" or state == "dispatched":
        assert not isinstance(step, dispatch.DispatchNow | dispatch.LookForRun)
    if state == "dispatching" and found == "not looked":
        assert step == dispatch.LookForRun()


@given(attempts=st.integers(0, 9), found=st.sampled_from(["not looked", "none", "run"]))
def test_unconfirmed_dispatches_end_only_after_a_look_and_the_last_attempt(attempts: int, found: str) -> None:
    """After a dispatch GitHub did not confirm, the next step always looks first; with no run found it dispatches
    again until :data:`MAX_DISPATCH_ATTEMPTS`, then ends the request — never before, never without looking."""
    notes = {"dispatchState": "dispatching", "dispatchAttempts": str(attempts)}
    looked: Run | str | None = {"not looked": dispatch.NOT_LOOKED, "none": None, "run": run()}[found]
    step = dispatch.next_step(notes, looked)
    if found == "not looked":
        assert step == dispatch.LookForRun()
    elif found == "run":
        assert step == dispatch.RecordRun(run())
    elif attempts >= dispatch.MAX_DISPATCH_ATTEMPTS:
        assert step == dispatch.NoRunStarted(attempts)
    else:
        assert step == dispatch.DispatchNow()


def test_each_dispatch_is_counted_on_the_lock_and_an_older_note_counts_one(config: Config) -> None:
    notes = dispatch.dispatching_notes(job(config), dispatch.Revision("main", SHA, "main"), 3)
    assert dispatch.dispatch_attempts(notes) == 3
    assert dispatch.dispatch_attempts({"dispatchState": "dispatching"}) == 1  # noted before attempts were counted
    assert dispatch.dispatch_attempts({}) == 0


# --------------------------------------------------------------------------------- one request, one run
REQUEST_IDS = st.text("0123456789.abcdef", min_size=1, max_size=40)
CORRELATION_IDS = st.sampled_from(["cid-1", "cid-2", "0b5e1c7a-2f4d-5a6b-8c9d-0e1f2a3b4c5d"])


@given(request_id=REQUEST_IDS, other=REQUEST_IDS)
def test_a_slack_requests_correlation_id_is_its_own_and_goes_in_a_run_name(request_id: str, other: str) -> None:
    cid = correlation_id_of(request_id)
    assert cid == correlation_id_of(request_id), "every delivery of the request gets the same one"
    assert (cid == correlation_id_of(other)) == (request_id == other)
    assert parse_run_name(run_name("build-router-plt", cid)) == ("build-router-plt", cid)


def held_by(owner: str, correlation_id: str | None, locked_at: int) -> LockRecord:
    return dataclasses.replace(holder(), owner=owner, correlation_id=correlation_id, locked_at=iso(locked_at))


@given(
    ours=st.booleans(),
    envelope_cid=CORRELATION_IDS,
    lock_cid=st.none() | CORRELATION_IDS,
    taken=st.integers(-900, 900),
)
def test_the_holder_dispatches_with_the_locks_correlation_id_never_a_fresh_one(
    config: Config, ours: bool, envelope_cid: str, lock_cid: str | None, taken: int
) -> None:
    asked = dataclasses.replace(job(config), correlation_id=envelope_cid)
    held = held_by(asked.request_id if ours else "999.888.xyz", lock_cid, NOW + taken)
    holder_job = asked.holding(held)
    assert holder_job.holding(held) == holder_job
    if not ours:
        assert holder_job == asked, "another's lock tells this request nothing"
        return
    assert holder_job.correlation_id == (lock_cid or envelope_cid)
    assert holder_job.runs_since == min(NOW, NOW + taken), "from the arrival or the lock, whichever came first"
    assert dataclasses.replace(holder_job, correlation_id=asked.correlation_id, locked_at=None) == asked


@given(
    envelope_cid=CORRELATION_IDS,
    lock_cid=CORRELATION_IDS,
    taken=st.integers(-900, 900),
    runs=st.lists(st.tuples(CORRELATION_IDS, st.integers(-1800, 1800)), max_size=6),
)
def test_a_look_before_the_lock_counts_only_if_it_finds_what_the_holder_would(
    config: Config, envelope_cid: str, lock_cid: str, taken: int, runs: list[tuple[str, int]]
) -> None:
    asked = dataclasses.replace(job(config), correlation_id=envelope_cid)
    holder_job = asked.holding(held_by(asked.request_id, lock_cid, NOW + taken))

    def finds(looker: dispatch.Job, run: tuple[str, int]) -> bool:  # GitHub's list, created since, and the run's name
        cid, created = run
        return cid == looker.correlation_id and NOW + created >= looker.runs_since

    if dispatch.looked_alike(asked, holder_job):
        assert all(finds(asked, run) for run in runs if finds(holder_job, run))
    else:
        assert envelope_cid != lock_cid or taken < 0


@given(obstacle=st.sampled_from(dispatch.Obstacle))
def test_only_a_failing_store_puts_a_dispatch_off_and_everything_else_ends_it(obstacle: dispatch.Obstacle) -> None:
    assert dispatch.gives_up(obstacle) is (obstacle is not dispatch.Obstacle.STORE_DOWN)


# -------------------------------------------------------------------------------------------- messages
def test_the_busy_message_is_the_users(config: Config) -> None:
    text = dispatch.busy_text(job(config), holder(runId="42", runUrl="https://gh/runs/42"), NOW)
    assert text == (
        "⚠️ Build already in progress — started by bob 7 min ago, <https://gh/runs/42|run 42>, "
        f"frees at <!date^{NOW + 180}^{{time}}|{iso(NOW + 180)[11:16]} UTC>"
    )


def test_the_busy_message_before_the_run_is_known(config: Config) -> None:
    text = dispatch.busy_text(job(config), dataclasses.replace(holder(), locked_at=iso(NOW - 10)), NOW)
    assert "started by bob less than a minute ago, its run is starting, frees at" in text


def test_a_busy_deploy_names_the_holders_commit(config: Config) -> None:
    text = dispatch.busy_text(job(config, Action.DEPLOY), holder(commitSha=SHA), NOW)
    assert text.startswith("⚠️ Deploy already in progress — started by bob 7 min ago at `1a2b3c4`, ")


def test_a_date_on_another_day_carries_the_day_in_its_fallback() -> None:
    assert dispatch.slack_time(NOW + 86_400, NOW).endswith(f"|{iso(NOW + 86_400)[:10]} {iso(NOW)[11:16]} UTC>")


def test_the_start_messages(config: Config) -> None:
    revision = dispatch.Revision("release/1.2", SHA, "release/1.2")
    assert dispatch.started_text(job(config), revision, 7, "https://gh/7", locked=True) == (
        "🔨 Building router (plt)… <https://gh/7|run 7>"
    )
    assert dispatch.started_text(job(config, Action.DEPLOY), revision, 7, "https://gh/7", locked=True) == (
        "🚀 Deploying router (plt) at release/1.2 (`1a2b3c4`)… <https://gh/7|run 7>"
    )
    unlocked = dispatch.started_text(job(config), revision, None, None, locked=False)
    assert unlocked == (
        "🔨 Building router (plt)… run link to follow in GitHub Actions (the distributed lock is switched off)"
    )


def test_a_start_message_without_the_sha_in_its_template_still_shows_it(config: Config) -> None:
    spec = dataclasses.replace(config.commands[Action.DEPLOY], start_message="Deploying {component}")
    deploy = dataclasses.replace(job(config, Action.DEPLOY), spec=spec)
    text = dispatch.started_text(deploy, dispatch.Revision("main", SHA, "main"), 7, "u", locked=True)
    assert text == "Deploying router <u|run 7> — commit `1a2b3c4`"


def test_a_failure_is_one_line_that_says_why(config: Config) -> None:
    revision = dispatch.Revision("v1", SHA, "v1")
    text = dispatch.failed_text(job(config, Action.DEPLOY), "GitHub refused the token\n(401).", revision, locked=True)
    assert text == (
        "❌ Couldn't start the deploy router (plt) at v1 (`1a2b3c4`): GitHub refused the token (401). "
        "The lock is released; try again once that is fixed."
    )
    assert "\n" not in text


def test_a_request_that_already_ran_says_which_run(config: Config) -> None:
    assert dispatch.already_ran_text(job(config, Action.DEPLOY), run()) == (
        "ℹ️ Your /deploy router plt at `1a2b3c4` already started <https://github.com/o/r/actions/runs/7|run 7>."  # noqa: RUF001
    )


def test_a_dispatch_count_noted_under_an_earlier_holding_is_not_this_holders() -> None:
    """Upgrade and downgrade safety: an acquire by a worker that does not know the counting leaves the previous
    holder's count and time on the item; they were sent before this holding began, and are not read as its own."""
    fresh = LockRecord(
        lock_key="build-router-plt",
        token=2,
        owner="req-2",
        status=Status.IN_PROGRESS,
        locked_by="U0BOB",
        locked_by_name="bob",
        locked_at=iso(1_000),
        lease_expires_at=2_000,
        notes={"dispatchState": "dispatching", "dispatchAttempts": "3", "dispatchSentAt": "900"},
    )
    assert dispatch.own_notes(fresh) == {"dispatchState": "dispatching"}
    own = dataclasses.replace(fresh, notes={**fresh.notes, "dispatchSentAt": "1000"})
    assert dispatch.own_notes(own) == own.notes


@given(
    locked_at=st.integers(10_000, 2_000_000_000),  # epoch seconds: a time noted is never negative
    sent_offset=st.integers(-10_000, 10_000),
    attempts=st.integers(0, 9),
    state=st.sampled_from(["dispatching", "dispatched"]),
)
def test_a_holder_reads_as_its_own_only_the_dispatches_sent_since_it_took_the_lock(
    locked_at: int, sent_offset: int, attempts: int, state: str
) -> None:
    notes = {"dispatchState": state, "dispatchAttempts": str(attempts), "dispatchSentAt": str(locked_at + sent_offset)}
    record = LockRecord(
        lock_key="build-router-plt",
        token=2,
        owner="req-2",
        status=Status.IN_PROGRESS,
        locked_by="U0BOB",
        locked_by_name="bob",
        locked_at=iso(locked_at),
        lease_expires_at=locked_at + 600,
        notes=notes,
    )
    own = dispatch.own_notes(record)
    assert own["dispatchState"] == state  # the state itself is always the holder's
    if sent_offset >= 0:
        assert own == notes
    else:
        assert "dispatchAttempts" not in own and "dispatchSentAt" not in own
        assert dispatch.dispatch_attempts(own) == (1 if state == "dispatching" else 0)
