"""Which run may change which lock (:mod:`workers.protocol.runs`): a run's name is a claim, GitHub's facts decide.

Pure: lock records and run facts as values, the shipped configuration. The webhook worker and the reaper are held
to the same rule end to end in ``test_webhook_worker.py``, ``test_reaper.py`` and ``test_github.py``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lockcore.record import LockRecord, Status, iso
from workers.protocol.config import Action, ComponentGitHub, load_config
from workers.protocol.runs import WORKFLOW_DISPATCH, RunFacts, not_this_runs_lock

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"
CONFIG = load_config(SHIPPED, environ={})
REPOSITORY = CONFIG.github.repository
NOW = int(time.time())
NOTED_RUN = 7_000_042


def lock(key: str, cid: str, **notes: str) -> LockRecord:
    return LockRecord(
        lock_key=key,
        token=3,
        owner="req-1",
        status=Status.IN_PROGRESS,
        locked_by="U0ZOE",
        locked_by_name="zoe",
        locked_at=iso(NOW - 60),
        lease_expires_at=NOW + 540,
        component=key.split("-")[1],
        environment=key.rsplit("-", maxsplit=1)[-1],
        correlation_id=cid,
        notes=notes,
    )


UNNOTED_BUILD = lock("build-router-plt", "cid-b", command="build", dispatchState="dispatched")
NOTED_BUILD = lock("build-router-plt", "cid-b", command="build", dispatchState="dispatched", runId=str(NOTED_RUN))
NOTED_DEPLOY = lock("deploy-api-prod", "cid-d", command="deploy", dispatchState="dispatched", runId=str(NOTED_RUN))
FREEZE = lock("freeze-prod", "cid-f", command="/deploy freeze prod release week")
RUN_LOCKS = (UNNOTED_BUILD, NOTED_BUILD, NOTED_DEPLOY)


def genuine(record: LockRecord) -> RunFacts:
    """What GitHub says of the run the lock's request dispatched."""
    workflow = {"build": "build.yml", "deploy": "deploy.yml"}.get(record.lock_key.split("-")[0], "build.yml")
    return RunFacts(
        run_id=NOTED_RUN,
        event=WORKFLOW_DISPATCH,
        workflow_path=f".github/workflows/{workflow}",
        workflow_id=123456,
        repository=REPOSITORY,
        lock_key=record.lock_key,
        correlation_id=record.correlation_id,
    )


# ----------------------------------------------------------------------------------------- the genuine run
def test_the_dispatched_run_changes_its_lock() -> None:
    for record in RUN_LOCKS:
        assert not_this_runs_lock(genuine(record), record, CONFIG) is None, record.lock_key
    shouting = replace(genuine(NOTED_BUILD), repository=REPOSITORY.upper())  # GitHub's names ignore case
    assert not_this_runs_lock(shouting, NOTED_BUILD, CONFIG) is None


def test_any_run_id_speaks_for_a_lock_that_noted_none() -> None:
    assert not_this_runs_lock(replace(genuine(UNNOTED_BUILD), run_id=1), UNNOTED_BUILD, CONFIG) is None


def test_a_workflow_configured_by_id_is_matched_by_id() -> None:
    build_by_id = replace(CONFIG.commands[Action.BUILD], workflow="4711")
    by_id = replace(CONFIG, commands={**CONFIG.commands, Action.BUILD: build_by_id})
    run = replace(genuine(NOTED_BUILD), workflow_id=4711, workflow_path=".github/workflows/renamed.yml")
    assert not_this_runs_lock(run, NOTED_BUILD, by_id) is None
    assert (
        not_this_runs_lock(replace(run, workflow_id=4712), NOTED_BUILD, by_id)
        == "a run of workflow 4712, not of workflow 4711"
    )
    assert not_this_runs_lock(replace(run, workflow_id=None), NOTED_BUILD, by_id) is not None


def test_a_component_with_a_repository_of_its_own_is_released_only_by_a_run_there() -> None:
    own = ComponentGitHub("acme/router", {Action.BUILD: "ci.yml"})
    config = replace(CONFIG, github=replace(CONFIG.github, components={"router": own}))
    there = replace(genuine(NOTED_BUILD), repository="acme/router", workflow_path=".github/workflows/ci.yml")
    assert not_this_runs_lock(there, NOTED_BUILD, config) is None
    assert not_this_runs_lock(genuine(NOTED_BUILD), NOTED_BUILD, config) == (
        f"a run in {REPOSITORY}, not in acme/router"
    )
    assert not_this_runs_lock(replace(there, workflow_path=".github/workflows/build.yml"), NOTED_BUILD, config) == (
        "a run of .github/workflows/build.yml, not of .github/workflows/ci.yml"
    )
    assert not_this_runs_lock(genuine(NOTED_DEPLOY), NOTED_DEPLOY, config) is None  # api keeps the defaults


# ---------------------------------------------------------------------------------------- everything else
events = st.one_of(
    st.none(),  # a message queued before the router noted the event
    st.sampled_from(["pull_request", "pull_request_target", "push", "schedule", "workflow_run", "repository_dispatch"]),
    st.text(max_size=20),
).filter(lambda event: event != WORKFLOW_DISPATCH)
paths = st.one_of(
    st.sampled_from(
        [
            ".github/workflows/ci.yml",
            ".github/workflows/build.yml@refs/pull/7/merge",
            "forks/.github/workflows/build.yml",
            "build.yml",
            "dynamic/github-code-scanning/codeql",
            "",
        ]
    ),
    st.text(max_size=40),
)
repositories = st.one_of(
    st.sampled_from(["attacker/platform", "example-org/platform-fork", "", "example-org"]), st.text(max_size=30)
).filter(lambda repository: repository.lower() != REPOSITORY.lower())
hostile_fields = st.sampled_from(["event", "workflow_path", "repository", "run_id", "correlation_id"])


@st.composite
def hostile_claims(draw: st.DrawFn) -> tuple[RunFacts, LockRecord]:
    """A lock of a run, and a run that claims it by name with at least one of GitHub's facts not the dispatched
    run's: another event, another workflow, another repository, another run than the one noted, another request."""
    record = draw(st.sampled_from(RUN_LOCKS))
    run = genuine(record)
    dispatched_path = run.workflow_path
    changed = draw(st.lists(hostile_fields, min_size=1, unique=True))
    if changed == ["run_id"] and record is UNNOTED_BUILD:
        changed.append("event")  # with no run noted, any run id may be the one: change something that counts
    for field in changed:
        match field:
            case "event":
                run = replace(run, event=draw(events))
            case "workflow_path":
                run = replace(run, workflow_path=draw(paths.filter(lambda path: path != dispatched_path)))
            case "repository":
                run = replace(run, repository=draw(repositories))
            case "run_id":
                run = replace(run, run_id=draw(st.integers(min_value=1).filter(lambda run_id: run_id != NOTED_RUN)))
            case "correlation_id":
                run = replace(
                    run, correlation_id=draw(st.text(min_size=1).filter(lambda c: c != record.correlation_id))
                )
    return run, record


@given(claim=hostile_claims())
def test_a_run_that_is_not_the_dispatched_one_changes_no_lock(claim: tuple[RunFacts, LockRecord]) -> None:
    run, record = claim
    assert not_this_runs_lock(run, record, CONFIG) is not None


@given(
    run=st.builds(
        RunFacts,
        run_id=st.integers(min_value=1),
        event=st.one_of(st.none(), st.just(WORKFLOW_DISPATCH), st.text(max_size=20)),
        workflow_path=st.one_of(
            st.sampled_from([".github/workflows/build.yml", ".github/workflows/deploy.yml"]), paths
        ),
        workflow_id=st.one_of(st.none(), st.integers()),
        repository=st.one_of(st.just(REPOSITORY), repositories),
        lock_key=st.just(FREEZE.lock_key),
        correlation_id=st.one_of(st.just(FREEZE.correlation_id), st.text(min_size=1)),
    )
)
def test_no_run_ever_changes_a_freeze(run: RunFacts) -> None:
    """Not even a real dispatch of build.yml, in the repository, named ``freeze-prod · cid=<the freeze's>``:
    whoever may dispatch a workflow may choose its inputs. Only ``/deploy unfreeze`` (or the lease) ends it."""
    assert not_this_runs_lock(run, FREEZE, CONFIG) is not None


def test_a_run_named_for_one_lock_does_not_change_another() -> None:
    run = replace(genuine(NOTED_BUILD), lock_key="build-api-plt")
    assert not_this_runs_lock(run, NOTED_BUILD, CONFIG) == "the run names build-api-plt, not build-router-plt"
    assert not_this_runs_lock(replace(run, lock_key=None), NOTED_BUILD, CONFIG) == "the run's name names no lock"
    assert not_this_runs_lock(genuine(NOTED_BUILD), None, CONFIG) == "no lock is recorded under this key"


def test_a_build_run_does_not_change_a_deploy_lock() -> None:
    """The workflow is the lock's command's: build.yml, dispatched and named ``deploy-api-prod · cid=…``, is not
    the deploy's run."""
    run = replace(genuine(NOTED_DEPLOY), workflow_path=".github/workflows/build.yml")
    assert not_this_runs_lock(run, NOTED_DEPLOY, CONFIG) == (
        "a run of .github/workflows/build.yml, not of .github/workflows/deploy.yml"
    )


def test_the_reasons_read_as_a_log_line() -> None:
    run = genuine(UNNOTED_BUILD)
    assert not_this_runs_lock(replace(run, event="pull_request"), UNNOTED_BUILD, CONFIG) == (
        "a pull_request run, not a workflow_dispatch"
    )
    assert not_this_runs_lock(replace(run, event=None), UNNOTED_BUILD, CONFIG) == (
        "the run's event is not known (a message from before the router noted it)"
    )
    assert not_this_runs_lock(replace(run, repository="attacker/platform"), UNNOTED_BUILD, CONFIG) == (
        "a run in attacker/platform, not in example-org/platform"
    )
    assert not_this_runs_lock(run, FREEZE, CONFIG) == "the run names build-router-plt, not freeze-prod"
