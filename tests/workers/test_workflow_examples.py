"""The example workflows in ``docs/examples`` keep the contract with the workers: the inputs the build worker
dispatches, the run name the github worker and the reaper read back, and — for the deploy — the fencing check
right before the deploy step, with AWS credentials from GitHub's OIDC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from workers.cli.main import build_parser
from workers.local.github import render_run_name
from workers.protocol.commands import Dispatch
from workers.protocol.config import Action, load_config
from workers.protocol.dispatch import Job, Revision, dispatch_inputs
from workers.protocol.envelope import CommandEnvelope
from workers.protocol.workflow import RUN_NAME_EXPRESSION, parse_run_name

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES = DOCS / "examples"
CONFIG = load_config(DOCS / "chatops.toml", {})


def workflow(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as the boolean true; GitHub reads it as "on".
    if True in document:
        document["on"] = document.pop(True)
    return document


def a_job(action: Action) -> Job:
    envelope = CommandEnvelope(
        request_id="1334.5678.abc",
        correlation_id="cid-1",
        command=Dispatch(action, "router", "plt"),
        slash=action.slash,
        text="router plt",
        user_id="U0ALICE",
        user_name="alice",
        channel_id="C0BUILDS",
        team_id="T0TEAM",
        api_app_id="A0APP",
        response_url="https://hooks.slack.com/commands/T0TEAM/1/x",
        received_at=1_700_000_000,
    )
    return Job.of(envelope, CONFIG)


@pytest.mark.parametrize("action", list(Action))
def test_the_example_declares_exactly_the_inputs_the_worker_dispatches(action: Action) -> None:
    name = CONFIG.commands[action].workflow
    inputs = workflow(name)["on"]["workflow_dispatch"]["inputs"]
    sent = dispatch_inputs(a_job(action), Revision("main", "a" * 40, "main"), "7")
    assert list(inputs) == list(sent)
    for key, declared in inputs.items():
        assert declared["type"] == "string" and declared["required"] is True, key


@pytest.mark.parametrize("action", list(Action))
def test_the_run_name_is_the_one_the_workers_read_back(action: Action) -> None:
    document = workflow(CONFIG.commands[action].workflow)
    assert document["run-name"] == RUN_NAME_EXPRESSION
    job = a_job(action)
    sent = dispatch_inputs(job, Revision("main", "a" * 40, "main"), "7")
    assert parse_run_name(render_run_name(document["run-name"], sent, "x.yml")) == (job.lock_key, job.correlation_id)


def test_the_deploy_checks_its_token_right_before_deploying_with_oidc_credentials() -> None:
    document = workflow("deploy.yml")
    assert document["permissions"]["id-token"] == "write"
    [job] = document["jobs"].values()
    assert job["env"]["LOCK_KEY"] == "${{ inputs.lock_key }}"
    assert job["env"]["LOCK_TOKEN"] == "${{ inputs.lock_token }}"
    steps = job["steps"]
    uses = [step.get("uses", "") for step in steps]
    runs = [step.get("run", "") for step in steps]
    names = [step.get("name", "") for step in steps]

    credentials = next(i for i, used in enumerate(uses) if used.startswith("aws-actions/configure-aws-credentials@"))
    assert "role-to-assume" in steps[credentials]["with"] and "aws-access-key-id" not in steps[credentials]["with"]
    installed = next(i for i, run in enumerate(runs) if run.startswith("pip install") and "chatops-locks" in run)
    check = runs.index('chatops locks check "$LOCK_KEY" --token "$LOCK_TOKEN"')
    deploy = names.index("Deploy")
    assert installed < check and credentials < check
    assert deploy == check + 1, "nothing may run between the fencing check and the deploy step"

    args = build_parser().parse_args(["locks", "check", "deploy-api-prod", "--token", "7"])
    assert (args.command, args.action, args.key, args.token) == ("locks", "check", "deploy-api-prod", 7)


def test_the_workflows_page_documents_every_input_and_the_window() -> None:
    page = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for key in dispatch_inputs(a_job(Action.BUILD), Revision("main", "a" * 40, "main"), "7"):
        assert f"`{key}`" in page, key
    assert RUN_NAME_EXPRESSION in page
    assert 'chatops locks check "$LOCK_KEY" --token "$LOCK_TOKEN"' in page
