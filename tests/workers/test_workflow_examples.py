"""The example workflows in ``docs/examples`` keep the contract with the workers: the inputs the build worker
dispatches, the run name the webhook worker and the reaper read back, and — for the deploy — the fencing check
right before the deploy step, with AWS credentials from GitHub's OIDC, after a first step that stops the run when
a repository variable it reads is not set (its script is run here with bash). And what a tag dispatches on."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from tests.workers.worker_world import REPOSITORY, Context, running_world, sqs_event
from workers.cli.main import build_parser
from workers.handlers import build as build_lambda
from workers.local.github import fake_sha, render_run_name
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
    page = (DOCS / "workflow.md").read_text(encoding="utf-8")
    for key in dispatch_inputs(a_job(Action.BUILD), Revision("main", "a" * 40, "main"), "7"):
        assert f"`{key}`" in page, key
    assert RUN_NAME_EXPRESSION in page
    assert 'chatops locks check "$LOCK_KEY" --token "$LOCK_TOKEN"' in page


# ------------------------------------------------------------------------------ repository variables, checked first
VARIABLE = re.compile(r"\$\{\{\s*vars\.([A-Z0-9_]+)\s*\}\}")


def variables_read(name: str) -> set[str]:
    return set(VARIABLE.findall((EXAMPLES / name).read_text(encoding="utf-8")))


def variables_check(name: str) -> dict[str, Any] | None:
    """The job's first step, if it is the variables check."""
    [job] = workflow(name)["jobs"].values()
    first: dict[str, Any] = job["steps"][0]
    return first if first.get("name") == "Check the repository variables" else None


def run_check(step: dict[str, Any], values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The step's script as GitHub runs it (``shell: bash``), each variable as ``${{ vars.X }}`` gives it: the value,
    or an empty string when the repository has none."""
    environment = {"PATH": os.environ["PATH"], **{name: values.get(name, "") for name in step["env"]}}
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]], env=environment, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("*.yml")))
def test_every_variable_an_example_reads_is_checked_by_its_first_step(name: str) -> None:
    read = variables_read(name)
    step = variables_check(name)
    if not read:
        assert step is None, "a check for variables nothing reads"
        return
    assert step is not None, f"{name} reads {sorted(read)} and does not check them first"
    assert step["shell"] == "bash"
    assert step["env"] == {variable: f"${{{{ vars.{variable} }}}}" for variable in read}
    assert run_check(step, {variable: "set" for variable in read}).returncode == 0


@pytest.mark.parametrize("missing", ["DEPLOY_ROLE_ARN", "CHATOPS_REPOSITORY", "CHATOPS_VERSION", "AWS_REGION"])
def test_a_missing_variable_stops_the_deploy_before_anything_naming_it(missing: str) -> None:
    step = variables_check("deploy.yml")
    assert step is not None
    values = {variable: "set" for variable in step["env"] if variable != missing}
    ran = run_check(step, values)
    assert ran.returncode == 1
    [line] = ran.stdout.splitlines()
    assert line.startswith("::error title=Repository variables missing::Not set: ")
    assert line.split("::")[2].split(".")[0] == f"Not set: {missing}"
    assert "pulumi stack output githubVariableCommands" in line


def test_with_no_variable_at_all_the_deploy_names_all_five_and_never_reaches_the_install() -> None:
    step = variables_check("deploy.yml")
    assert step is not None
    ran = run_check(step, {})
    assert ran.returncode == 1
    assert "Not set: DEPLOY_ROLE_ARN CHATOPS_REPOSITORY CHATOPS_VERSION AWS_REGION LOCK_TABLE_NAME." in ran.stdout
    # What an unset CHATOPS_REPOSITORY used to give the install step: an address that is no repository.
    [job] = workflow("deploy.yml")["jobs"].values()
    install = next(step for step in job["steps"] if step.get("name") == "Install the chatops CLI")
    assert (
        install["env"]["CHATOPS_SOURCE"]
        == "git+https://github.com/${{ vars.CHATOPS_REPOSITORY }}@${{ vars.CHATOPS_VERSION }}"
    )
    assert job["steps"].index(install) > 0


# ------------------------------------------------------------------------------ what /deploy api prod v1.2 runs
def test_a_deploy_of_a_tag_runs_the_tags_own_workflow_file_as_deploying_md_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag_sha = fake_sha(REPOSITORY, "v1.2")
    with running_world(monkeypatch) as world:
        # The stand-in resolves any named ref to its commit as GitHub's commits/{ref} does for a tag.
        world.github.repositories[REPOSITORY].branches["v1.2"] = tag_sha
        envelope = world.envelope("t", Dispatch(Action.DEPLOY, "api", "prod", "v1.2"))
        assert build_lambda.handler(sqs_event(envelope), Context()) == {"batchItemFailures": []}
        envelope = world.envelope("c", Dispatch(Action.DEPLOY, "api", "plt", tag_sha))
        assert build_lambda.handler(sqs_event(envelope), Context()) == {"batchItemFailures": []}
        tag, commit = world.dispatches()
    assert (tag.workflow, tag.head_branch) == ("deploy.yml", "v1.2")  # the dispatch's ref: the file at the tag
    assert (tag.inputs["ref"], tag.inputs["sha"]) == ("v1.2", tag_sha)
    assert (commit.head_branch, commit.inputs["sha"]) == ("main", tag_sha)  # a commit: the default branch's file
    page = " ".join((DOCS / "deploying.md").read_text(encoding="utf-8").split())
    assert "`/deploy api prod v1.2` runs `deploy.yml` as it is at the tag `v1.2`" in page


NODE_24_MAJORS = {"actions/checkout": 5, "actions/setup-python": 6, "aws-actions/configure-aws-credentials": 6}
"""The first major of each action that runs on Node 24: GitHub removed Node 20 from its runners on 2026-09-16, so
a copied example pinning an older major no longer runs. An action not listed here fails the test until it is."""


@pytest.mark.parametrize(
    "path", [EXAMPLES / "build.yml", EXAMPLES / "deploy.yml", DOCS.parent / ".github/workflows/ci.yml"]
)
def test_every_action_a_workflow_uses_runs_on_node_24(path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    used = [step["uses"] for job in document["jobs"].values() for step in job["steps"] if "uses" in step]
    assert used, f"{path.name} uses no action: this test reads the wrong file"
    for reference in used:
        action, _, version = reference.partition("@")
        assert action in NODE_24_MAJORS, f"{path.name}: {action} has no known Node 24 major here; add it"
        major = re.fullmatch(r"v(\d+)(?:\.\d+)*", version)
        assert major, f"{path.name}: {reference} is not pinned to a version tag"
        assert int(major.group(1)) >= NODE_24_MAJORS[action], f"{path.name}: {reference} runs on Node 20"
