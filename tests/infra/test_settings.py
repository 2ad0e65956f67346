"""The stack configuration, the roster, and the chatops.toml rendered from them agree with the workers' code."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra import command_config, settings
from infra.roster import QUEUES, REQUESTED_QUEUES, SECRETS, WORKERS, Worker, check, dead_letter_consumer_of
from tests.infra.conftest import Deploy
from tests.infra.stack import stack_config, stack_files
from workers.adapters.secrets import SECRET_NAMES
from workers.protocol import schema
from workers.protocol.config import QUEUE_FOR_KIND, Action, Queue, WorkflowTarget, config_of, load_config


def _values(stack: str) -> dict[str, Any]:
    return {
        key.removeprefix("chatops:"): value for key, value in stack_config(stack).items() if key.startswith("chatops:")
    }


@pytest.mark.parametrize("stack", sorted(stack_files()))
def test_the_rendered_chatops_toml_is_what_the_workers_read(stack: str, tmp_path: Path) -> None:
    configured = settings.from_values(stack, _values(stack))
    path = tmp_path / "chatops.toml"
    path.write_text(command_config.render(configured), encoding="utf-8")
    assert load_config(path, environ={}) == config_of(configured.values, {}, source=str(path))


def test_a_component_with_a_repository_of_its_own_reaches_the_workers_and_the_stacks_repositories(
    tmp_path: Path,
) -> None:
    values = _values("plt")
    github = {
        **values["github"],
        "components": {"api": {"repository": "example-org/api", "workflows": {"build": "ci.yml"}}},
    }
    configured = settings.from_values("plt", {**values, "github": github})
    assert configured.repositories == ("example-org/api", "example-org/platform")
    path = tmp_path / "chatops.toml"
    path.write_text(command_config.render(configured), encoding="utf-8")
    loaded = load_config(path, environ={})
    assert loaded.workflow_of(Action.BUILD, "api") == WorkflowTarget("example-org/api", "ci.yml")
    assert loaded.workflow_of(Action.DEPLOY, "api") == WorkflowTarget("example-org/api", "deploy.yml")
    assert loaded.workflow_of(Action.BUILD, "router") == WorkflowTarget("example-org/platform", "build.yml")


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
    assert not set(settings.SECRET_KEYS.values()) & settings.KEYS  # the plain keys' values are read; a secret's never
    assert {"deployRole", "cli", "ssmParameters"} <= settings.KEYS
    stack_only = {key.named(schema.Form.STACK) for key in schema.SCHEMA.keys if key.where is schema.Where.STACK}
    assert {"deployRole", "cli", *settings.SECRET_KEYS.values()} <= stack_only  # never in the workers' TOML


def test_a_secret_the_stack_holds_is_known_never_a_value_and_refused_in_plain_text() -> None:
    config = {key: value for key, value in stack_config("plt").items() if key != "chatops:ssmParameters"}
    held = {**config, "chatops:githubToken": {"secure": "v1:AAAAciphertext"}}
    configured = settings.from_values("plt", schema.stack_values(held))
    assert configured.stack_secrets == {"GITHUB_TOKEN"}
    assert configured.ssm_parameters["GITHUB_TOKEN"] == "/chatops/plt/github-token"
    rendered = command_config.render(configured)
    for text in (json.dumps(configured.values), rendered):
        assert schema.SECRET_HELD not in text and "github_token" not in text and "githubToken" not in text
    told = schema.stack_values({**config, "chatops:githubToken": "ghp_told"}, secret_keys={"chatops:githubToken"})
    assert settings.from_values("plt", told).stack_secrets == {"GITHUB_TOKEN"}
    in_the_file = schema.stack_values({**config, "chatops:githubToken": "ghp_plain"})
    as_given = {**schema.stack_values(config), "githubToken": "ghp_plain"}
    for plain in (in_the_file, as_given):
        with pytest.raises(settings.SettingsError, match=r"chatops:githubToken: stored in plain text") as refused:
            settings.from_values("plt", plain)
        assert "ghp_plain" not in str(refused.value)


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        ("cli", {"repository": "chatops-locks"}, r"chatops:cli\.repository: expected owner/name"),
        ("cli", {"repository": "a/b", "ref": "main"}, r"chatops:cli\.ref: unknown key"),
        ("ssmParameters", {"GITHUB_TOKENS": "/x"}, r"chatops:ssmParameters: 'GITHUB_TOKENS' is not a secret \(SLACK"),
    ],
)
def test_a_misspelt_deploy_key_is_refused_by_name(key: str, value: Any, refused: str) -> None:
    with pytest.raises(settings.SettingsError, match=refused):
        settings.from_values("plt", {**_values("plt"), key: value})


def test_a_misspelt_key_or_a_wildcard_parameter_is_refused_by_name() -> None:
    values = _values("plt")
    with pytest.raises(settings.SettingsError, match=r"chatops:alarmEmails: unknown key \(did you mean alarmEmail\?\)"):
        settings.from_values("plt", {**values, "alarmEmails": "x@example.org"})
    parameters = {**values["ssmParameters"], "GITHUB_TOKEN": "/laco/plt/*"}
    with pytest.raises(settings.SettingsError, match=r"ssmParameters\.GITHUB_TOKEN"):
        settings.from_values("plt", {**values, "ssmParameters": parameters})
    with pytest.raises(settings.SettingsError, match="logRetentionDays"):
        settings.from_values("plt", {**values, "logRetentionDays": 31})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"slack.teamIDs": ["T0TYPO"]}, r"chatops:slack\.teamIDs: not a key: Pulumi reads it as one key .*teamIds\?"),
        ({"slack.teamIds": ["T0RIGHT"]}, r"chatops:slack\.teamIds: not a key: .*pulumi config set --path"),
        ({"slak": {}}, r"chatops:slak: unknown key \(did you mean slack\?\)"),
        ({"admins": {"users": ["U0ADMIN"]}}, r"chatops:admins: moved: write it as chatops:authorization\.admins"),
        ({"commands": {"build": {"lockScope": "team"}}}, r"chatops:commands\.build\.lockScope: expected one of"),
        ({"commands": {"build": {"lease_seconds": 60}}}, r"chatops:commands\.build\.lease_seconds: .*leaseSeconds\?"),
    ],
)
def test_every_unknown_or_wrong_key_of_a_stack_is_refused_naming_the_stack_and_the_key(
    change: dict[str, Any], expected: str
) -> None:
    with pytest.raises(settings.SettingsError, match=expected) as raised:
        settings.from_values("plt", {**_values("plt"), **change})
    assert all(line.startswith("Pulumi stack plt: chatops:") for line in raised.value.problems)


def test_a_stack_serves_no_workspace_it_does_not_name_unless_it_says_any() -> None:
    values = _values("plt")
    unnamed: list[dict[str, Any]] = [{"teamIds": []}, {"teamIds": ["T0123ABCD"]}, {"appId": "A0123ABCD"}, {}]
    for slack in unnamed:
        with pytest.raises(settings.SettingsError, match=r"chatops:slack: .*not set.*allowAnyWorkspace to true"):
            settings.from_values("plt", {**values, "slack": slack})
    anything = settings.from_values("plt", {**values, "slack": {"allowAnyWorkspace": True}})
    assert anything.values["slack"]["team_ids"] == [] and anything.values["slack"]["app_id"] is None


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


def test_the_program_stops_at_preview_on_a_typo_or_an_unnamed_workspace_one_line_each(deploy_stack: Deploy) -> None:
    """What ``pulumi preview`` shows: the stack's problems, no traceback (a ``RunError``), nothing created."""
    with pytest.raises(pulumi.RunError) as raised:
        deploy_stack("plt", **{"slack": {"responseUrlHosts": ["hooks.slack.com"]}, "slack.teamIDs": ["T0123ABCD"]})
    lines = str(raised.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith("Pulumi stack plt: chatops:slack.teamIDs: not a key")
    with pytest.raises(pulumi.RunError, match=r"^Pulumi stack plt: chatops:slack: chatops:slack\.teamIds and"):
        deploy_stack("plt", slack={"responseUrlHosts": ["hooks.slack.com"]})
    served = deploy_stack("plt", slack={"allowAnyWorkspace": True})
    assert served.of_type("aws:lambda/function:Function")


def test_the_config_the_cli_passes_in_its_environment_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pulumi up`` hands the program every key as JSON in ``$PULUMI_CONFIG``: unknown ones included."""
    config = {key: value if isinstance(value, str) else json.dumps(value) for key, value in stack_config("plt").items()}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**config, "chatops:slak": "{}"}))
    pulumi.runtime.set_all_config({})
    with pytest.raises(
        pulumi.RunError, match=r"^Pulumi stack plt: chatops:slak: unknown key \(did you mean slack\?\)$"
    ):
        settings.load("plt")
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    assert settings.load("plt").max_receive_count == 5


def test_a_secret_the_cli_passes_is_held_when_it_names_it_secret_and_refused_when_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pulumi up`` passes a secret's value decrypted, and its key in ``$PULUMI_CONFIG_SECRET_KEYS``."""
    config = {key: value if isinstance(value, str) else json.dumps(value) for key, value in stack_config("plt").items()}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**config, "chatops:githubToken": "ghp_from_the_cli"}))
    pulumi.runtime.set_all_config({}, [])
    with pytest.raises(pulumi.RunError, match=r"^Pulumi stack plt: chatops:githubToken: stored in plain text") as no:
        settings.load("plt")
    assert "ghp_from_the_cli" not in str(no.value)
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["chatops:githubToken"]))
    loaded = settings.load("plt")
    assert loaded.stack_secrets == {"GITHUB_TOKEN"}
    assert "ghp_from_the_cli" not in json.dumps(loaded.values)


def test_a_plain_key_set_as_a_secret_is_refused_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pulumi config set --secret chatops:alarmEmail …``: a secret where no secret belongs is never read — it
    would be rendered into the workers' TOML in plain text — but refused, its value unsaid."""
    config = {key: value if isinstance(value, str) else json.dumps(value) for key, value in stack_config("plt").items()}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**config, "chatops:alarmEmail": "hidden@example.org"}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["chatops:alarmEmail"]))
    pulumi.runtime.set_all_config({}, [])
    with pytest.raises(pulumi.RunError, match=r"chatops:alarmEmail") as refused:
        settings.load("plt")
    assert "hidden@example.org" not in str(refused.value)
