"""The stack configuration, the roster, and the chatops.toml rendered from them agree with the workers' code."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from infra import command_config, settings
from infra.roster import QUEUES, REQUESTED_QUEUES, SECRETS, WORKERS, Worker, check, dead_letter_consumer_of
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
def test_no_stack_file_holds_a_secret_value_in_plain_text(stack: str) -> None:
    text = stack_files()[stack].read_text(encoding="utf-8")
    for marker in ("xoxb-", "xoxp-", "ghp_", "github_pat_"):
        assert marker not in text
    for key, value in stack_config(stack).items():  # `pulumi config set --secret` writes {secure: <ciphertext>}
        encrypted = isinstance(value, dict) and set(value) == {"secure"}
        assert encrypted == (key.removeprefix("chatops:") in settings.SECRET_KEYS.values()), key
    assert set(_values(stack).get("ssmParameters", {})) <= set(SECRETS)


def test_the_secret_keys_are_one_per_secret_and_apart_from_the_plain_keys() -> None:
    assert set(settings.SECRET_KEYS) == set(SECRETS) == set(SECRET_NAMES)
    assert not set(settings.SECRET_KEYS.values()) & settings.KEYS  # load() reads KEYS in plain text
    assert settings.DEPLOY_KEYS <= settings.KEYS


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        ("cli", {"repository": "chatops-locks"}, r"chatops:cli\.repository: expected owner/name"),
        ("cli", {"repository": "a/b", "ref": "main"}, r"chatops:cli\.ref: not a key"),
        ("ssmParameters", {"GITHUB_TOKENS": "/x"}, r"chatops:ssmParameters\.GITHUB_TOKENS: not a secret"),
    ],
)
def test_a_misspelt_deploy_key_is_refused_by_name(key: str, value: Any, refused: str) -> None:
    with pytest.raises(settings.SettingsError, match=refused):
        settings.from_values("plt", {**_values("plt"), key: value})


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


def test_the_dead_letters_of_every_queue_with_a_requester_are_told_and_the_webhooks_are_not() -> None:
    requested = {queue.value for kind, queue in QUEUE_FOR_KIND.items() if kind != "workflow_run"}
    assert set(REQUESTED_QUEUES) == requested, "a queue a Slack request goes to has a requester to tell"
    assert {queue: dead_letter_consumer_of(queue) is not None for queue in QUEUES} == {
        queue: queue in requested for queue in QUEUES
    }
    (told_by,) = {dead_letter_consumer_of(queue) for queue in REQUESTED_QUEUES}
    assert (
        told_by is not None and told_by.lock_table == ("dynamodb:GetItem",) and told_by.secrets == ("SLACK_BOT_TOKEN",)
    )


def test_the_roster_refuses_an_untold_dlq_a_told_webhook_dlq_and_a_worker_on_its_own_dlq() -> None:
    without = tuple(worker for worker in WORKERS if worker.name != "deadletter")
    with pytest.raises(ValueError, match="'build' DLQ must have exactly one consumer, has none"):
        check(without)
    told = Worker(
        "deadletter", "workers.handlers.deadletter.handler", consumes_dead_letters=(*REQUESTED_QUEUES, "github")
    )
    with pytest.raises(ValueError, match="'github' DLQ has no requester to tell"):
        check((*without, told))
    echo = Worker("echo", "workers.handlers.echo.handler", consumes=("echo",), consumes_dead_letters=("echo",))
    rest = tuple(
        replace(worker, consumes_dead_letters=("build", "deploy", "status")) if worker.name == "deadletter" else worker
        for worker in WORKERS
        if worker.name != "echo"
    )
    with pytest.raises(ValueError, match="echo: consumes a queue and its DLQ"):
        check((*rest, echo))
