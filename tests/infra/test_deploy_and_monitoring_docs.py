"""docs/deploying.md and docs/monitoring.md state facts the code decides: the keys, the outputs, the commands and
what they print, the messages a user meets, the metrics and the alarms. Each is read back from the code here."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pulumi
import pytest

from infra import github_variables, metrics, settings
from tests.infra.cloudwatch import ALARM
from tests.infra.conftest import Deploy
from tests.infra.stack import ACCOUNT_ID, Deployment
from tests.workers.test_workflow_examples import run_check, variables_check

ROOT = Path(__file__).resolve().parents[2]
DEPLOYING = ROOT / "docs" / "deploying.md"
MONITORING = ROOT / "docs" / "monitoring.md"


def _flat(path: Path) -> str:
    """The page with its whitespace collapsed: a sentence may wrap anywhere."""
    return " ".join(path.read_text(encoding="utf-8").split())


# ----------------------------------------------------------------------------------------------- deploying
def test_deploying_names_every_key_the_program_reads_and_how_each_secret_is_set() -> None:
    page = _flat(DEPLOYING)
    for key in settings.SECRET_KEYS.values():
        assert f"pulumi config set --stack plt --secret chatops:{key}" in page, key
    for key in settings.KEYS:
        assert f"chatops:{key}" in page or f"`{key}`" in page, key


def test_deploying_lists_every_output_of_the_stack(deployment: Deployment) -> None:
    page = DEPLOYING.read_text(encoding="utf-8")
    table = page[page.index("## Outputs") :].split("\n## ")[0]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    assert {name for cell in first_cells for name in re.findall(r"`([a-zA-Z]+)`", cell)} == set(deployment.outputs)


def test_deploying_shows_the_commands_the_plt_stack_prints_and_the_variables_they_set(
    deployment: Deployment,
) -> None:
    page = DEPLOYING.read_text(encoding="utf-8")
    shown = [line for line in page.splitlines() if line.startswith("gh variable set ")]
    printed = deployment.outputs["githubVariableCommands"].replace(ACCOUNT_ID, "<account>").splitlines()
    assert shown == printed
    assert "pulumi stack output --stack plt githubVariableCommands | sh" in page
    for name in github_variables.NAMES:
        assert f"`{name}`" in page or f" {name} " in page, name


def test_deploying_quotes_the_refusal_of_a_plain_text_secret_as_the_program_says_it(deploy_stack: Deploy) -> None:
    with pytest.raises(pulumi.RunError) as refused:
        deploy_stack("plt", plain={"githubToken": "ghp_plain"})
    assert " ".join(str(refused.value).split()) in _flat(DEPLOYING)


def test_deploying_quotes_the_deploy_workflows_stop_as_it_prints_it() -> None:
    step = variables_check("deploy.yml")
    assert step is not None
    values = {name: "set" for name in step["env"] if name not in {"CHATOPS_REPOSITORY", "CHATOPS_VERSION"}}
    ran: subprocess.CompletedProcess[str] = run_check(step, values)
    message = ran.stdout.split("::", 2)[2].removesuffix("\n").removesuffix(" (docs/deploying.md).")
    assert message in _flat(DEPLOYING)


# ---------------------------------------------------------------------------------------------- monitoring
def _emitted_by_the_workers() -> set[str]:
    """Every metric name written in the workers' code (a string literal in their naming scheme)."""
    names = set()
    for path in (ROOT / "workers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            literal = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if re.fullmatch(r"(buildLockManager|buildWorker|echo)\.[A-Za-z.]+", literal):
                names.add(literal)
    return names


def test_monitoring_lists_exactly_the_metrics_the_workers_emit() -> None:
    page = MONITORING.read_text(encoding="utf-8")
    table = page[page.index("## The metrics the workers emit") :]
    listed = set(re.findall(r"^\| `([A-Za-z.]+)` \|", table, flags=re.MULTILINE))
    assert listed == _emitted_by_the_workers()


def test_monitoring_names_every_alarm_and_each_rates_bounds(deployment: Deployment) -> None:
    page = _flat(MONITORING)
    prefix = f"chatops-{deployment.stack}-"
    for alarm in deployment.of_type(ALARM):
        name = str(alarm.inputs["name"]).removeprefix(prefix)
        generic = re.sub(r"^(build|deploy|status|echo)-dlq", "<queue>-dlq", name)
        generic = re.sub(r"^(locks|idempotency|history)-table", "<table>-table", generic)
        generic = re.sub(
            r"^(router|build|status|echo|webhook|reaper|history|deadletter)-errors", "<worker>-errors", generic
        )
        assert f"`…-{generic}`" in page, name
    failure, expiration = metrics.ACQUISITION_FAILURE, metrics.EXPIRATION
    assert f"above {failure.expected[1]:g} % in an hour with at least {failure.min_sample} attempts" in page
    assert f"above {expiration.expected[1]:g} % in an hour" in page
    assert "**A queued request counts as a refused acquisition.**" in page
    assert set(failure.metrics.values()) == {metrics.ACQUIRED, metrics.BUSY, metrics.QUEUED}
