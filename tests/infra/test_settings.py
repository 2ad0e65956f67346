"""The stack configuration, the roster, and the chatops.toml rendered from them agree with the workers' code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra import command_config, settings
from infra.roster import QUEUES, SECRETS, WORKERS, Worker, check
from tests.infra.stack import stack_config, stack_files
from workers.adapters.secrets import SECRET_NAMES
from workers.protocol.config import QUEUE_FOR_KIND, Queue, load_config


def _values(stack: str) -> dict[str, Any]:
    return {
        key.removeprefix("chatops:"): value for key, value in stack_config(stack).items() if key.startswith("chatops:")
    }


@pytest.mark.parametrize("stack", sorted(stack_files()))
def test_the_rendered_chatops_toml_is_what_the_workers_read(stack: str, tmp_path: Path) -> None:
    configured = settings.from_values(stack, _values(stack))
    path = tmp_path / "chatops.toml"
    path.write_text(command_config.render(configured), encoding="utf-8")
    loaded = load_config(path, environ={})
    assert loaded.components == configured.components
    assert loaded.environments == configured.environments
    assert loaded.github.repository == configured.github_repository
    assert {action.value: spec.workflow for action, spec in loaded.commands.items()} == dict(configured.workflows)
    assert loaded.authorization.admins.users == frozenset(configured.admins["users"])
    assert loaded.slack.response_url_hosts == frozenset(configured.response_url_hosts)
    for action, rules in configured.authorization.items():
        for environment, rule in rules.items():
            audience = loaded.authorization.rules[next(a for a in loaded.commands if a.value == action)][environment]
            assert audience.anyone == bool(rule.get("anyone"))
            assert audience.groups == frozenset(rule.get("groups", []))


@pytest.mark.parametrize("stack", sorted(stack_files()))
def test_no_stack_file_holds_a_secret_value(stack: str) -> None:
    text = stack_files()[stack].read_text(encoding="utf-8")
    assert "secure:" not in text
    for marker in ("xoxb-", "xoxp-", "ghp_", "github_pat_"):
        assert marker not in text
    assert set(_values(stack)["ssmParameters"]) == set(SECRETS)


def test_a_misspelt_key_or_a_wildcard_parameter_is_refused_by_name() -> None:
    values = _values("plt")
    with pytest.raises(settings.SettingsError, match="chatops:alarmEmails"):
        settings.from_values("plt", {**values, "alarmEmails": "x@example.org"})
    parameters = {**values["ssmParameters"], "GITHUB_TOKEN": "/laco/plt/*"}
    with pytest.raises(settings.SettingsError, match=r"ssmParameters\.GITHUB_TOKEN"):
        settings.from_values("plt", {**values, "ssmParameters": parameters})
    with pytest.raises(settings.SettingsError, match="logRetentionDays"):
        settings.from_values("plt", {**values, "logRetentionDays": 31})


def test_the_roster_names_the_queues_and_secrets_the_workers_use() -> None:
    assert set(QUEUES) == {queue.value for queue in Queue} == {queue.value for queue in QUEUE_FOR_KIND.values()}
    assert set(SECRETS) == set(SECRET_NAMES)
    (router,) = (worker for worker in WORKERS if worker.http)
    assert router.handler == "workers.handlers.router.handler"
    assert set(router.sends_to) == set(QUEUES)
    assert not router.lock_table and not router.idempotency  # the router never calls DynamoDB


def test_the_roster_refuses_a_queue_without_or_with_two_consumers() -> None:
    with pytest.raises(ValueError, match="'echo' must have exactly one consumer"):
        check(tuple(worker for worker in WORKERS if worker.name != "echo"))
    with pytest.raises(ValueError, match="'echo' must have exactly one consumer"):
        check((*WORKERS, Worker("echo2", "workers.handlers.echo.handler", consumes=("echo",))))
