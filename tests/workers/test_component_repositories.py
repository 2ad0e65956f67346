"""A component whose runs live in a repository (and workflow) of its own, end to end: dispatched there, found
there, cancelled there, released by that repository's run and by no other's — through the build worker, the
router's webhook, the webhook worker, the reaper and the cancel, with GitHub and Slack as the loopback stand-ins
and DynamoDB on moto.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockcore.record import Status
from tests.workers.github_events import GitHubEvents, scheduled_event
from tests.workers.worker_world import SHIPPED_CONFIG, Context, World, running_world, sqs_event
from workers.handlers import build as build_lambda
from workers.handlers import reaper as reaper_lambda
from workers.handlers import status as status_lambda
from workers.handlers import webhook as webhook_lambda
from workers.local.github import WorkflowRun
from workers.protocol.commands import Cancel, Dispatch
from workers.protocol.config import Action, WorkflowTarget, current_config

API_REPOSITORY = "example-org/api"
DEFAULT_REPOSITORY = "example-org/platform"
API_BUILD = Dispatch(Action.BUILD, "api", "plt")
API_KEY = "build-api-plt"
OWN = f'\n[github.components.api]\nrepository = "{API_REPOSITORY}"\nworkflows = {{ build = "ci.yml" }}\n'
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    config = tmp_path / "chatops.toml"
    config.write_text(SHIPPED_CONFIG.read_text(encoding="utf-8") + OWN, encoding="utf-8")
    with running_world(monkeypatch) as world:
        monkeypatch.setenv("CHATOPS_CONFIG", str(config))
        world.github.add_repository(API_REPOSITORY, workflows=("ci.yml", "deploy.yml"))
        yield world


def build_api(world: World, name: str = "a") -> WorkflowRun:
    assert build_lambda.handler(sqs_event(world.envelope(name, API_BUILD)), Context()) == NO_FAILURES
    return world.dispatches()[-1]


def test_a_components_build_runs_in_its_own_repository_and_workflow(world: World) -> None:
    config = current_config()
    assert config.workflow_of(Action.BUILD, "api") == WorkflowTarget(API_REPOSITORY, "ci.yml")
    assert config.workflow_of(Action.DEPLOY, "api") == WorkflowTarget(API_REPOSITORY, "deploy.yml")
    assert config.workflow_of(Action.BUILD, "router") == WorkflowTarget(DEFAULT_REPOSITORY, "build.yml")

    run = build_api(world)
    assert build_lambda.handler(sqs_event(world.envelope("r")), Context()) == NO_FAILURES
    router_run = world.dispatches()[-1]

    assert (run.repository, run.workflow, run.inputs["lock_key"]) == (API_REPOSITORY, "ci.yml", API_KEY)
    assert (router_run.repository, router_run.workflow) == (DEFAULT_REPOSITORY, "build.yml")
    lock = world.lock(API_KEY)
    assert lock is not None and lock.notes["runId"] == str(run.id)
    assert world.replies_to("a")[0].text == f"🔨 Building api (plt)… <{run.html_url}|run {run.id}>"


def test_only_the_components_repository_run_releases_its_lock_through_the_webhook(
    world: World, github: GitHubEvents
) -> None:
    run = build_api(world)
    impostor = world.github.trigger_run(DEFAULT_REPOSITORY, "ci.yml", "workflow_dispatch", run.name)
    world.github.complete_run(impostor, "success")
    assert github.post("completed", github.events("completed", impostor)[0][1]) == 202
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES
    lock = world.lock(API_KEY)
    assert lock is not None and lock.status is Status.IN_PROGRESS, "a run in another repository changed nothing"

    world.github.complete_run(run.id, "success")
    github.post_all("completed", run.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES
    lock = world.lock(API_KEY)
    assert lock is not None and lock.status is Status.COMPLETED
    [posted] = world.slack.messages("chat.postMessage")
    assert posted.text.startswith("✅ api (plt) built in ")


def test_the_router_takes_webhooks_from_every_configured_repository_and_no_other(
    world: World, github: GitHubEvents
) -> None:
    run = build_api(world)
    [(action, payload)] = github.events(run_id=run.id)
    assert github.post(action, payload) == 202
    elsewhere = {**payload, "repository": {"full_name": "someone-else/api"}}
    assert github.post(action, elsewhere) == 200  # ignored, not queued
    assert len(github.queued()["Records"]) == 1


def test_the_reaper_finds_the_components_run_in_its_repository(world: World) -> None:
    run = build_api(world)
    world.github.complete_run(run.id, "failure")  # its webhook never comes
    assert reaper_lambda.handler(scheduled_event(), Context()) == {"locks": 1, "effects": {"released": 1}}
    lock = world.lock(API_KEY)
    assert lock is not None and lock.status is Status.FAILED
    asked = world.github.requests_to("GET", f"/repos/{API_REPOSITORY}/actions/runs/{run.id}")
    assert asked, "the reaper asked the component's repository"


def test_a_cancel_cancels_the_run_in_the_components_repository(world: World) -> None:
    run = build_api(world)
    envelope = world.envelope("c", Cancel(Action.BUILD, "api", "plt"), user="alice")
    assert status_lambda.handler(sqs_event(envelope), Context()) == NO_FAILURES
    assert world.github.run(run.id).conclusion == "cancelled"
    assert world.github.requests_to("POST", f"/repos/{API_REPOSITORY}/actions/runs/{run.id}/cancel")
    lock = world.lock(API_KEY)
    assert lock is not None and lock.status is Status.FORCE_RELEASED
