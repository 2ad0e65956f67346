"""The command configuration: the shipped file, overrides from the environment, one-line errors on bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.protocol.commands import VERBS
from workers.protocol.config import (
    COMMANDS,
    NOBODY,
    Action,
    Audience,
    ConfigError,
    Conflict,
    LockScope,
    Queue,
    WorkflowTarget,
    current_config,
    load_config,
)

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"
NAMED = 'components = ["router"]\nenvironments = ["plt"]\n[github]\nrepository = "o/r"\n[slack]\n'
MINIMAL = NAMED + "allow_any_workspace = true\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chatops.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_file_says_what_the_issue_asks() -> None:
    config = load_config(SHIPPED, environ={})
    assert config.components == ("router", "api")
    assert config.environments == ("plt", "prod")
    assert config.github.repository == "example-org/platform"
    assert config.github.api_url == "https://api.github.com"
    assert config.slack.team_ids == frozenset() and config.slack.app_id is None  # any workspace, any app:
    assert SHIPPED.read_text(encoding="utf-8").count("allow_any_workspace = true") == 1  # said so, for the local stack
    assert config.slack.response_url_hosts == {"hooks.slack.com"}
    rules = config.authorization
    assert rules.audience(Action.BUILD, "prod") == Audience(anyone=True)
    assert rules.audience(Action.DEPLOY, "plt") == Audience(anyone=True)
    assert rules.audience(Action.DEPLOY, "prod") == Audience(groups=frozenset({"S0PLATFORM"}))
    assert rules.admins == Audience(users=frozenset({"U0ADMIN"}))
    assert config.lock_enabled


def test_commands_carry_lock_lease_and_workflow() -> None:
    build, deploy = COMMANDS[Action.BUILD], COMMANDS[Action.DEPLOY]
    assert (build.requires_lock, build.lease_seconds, build.workflow, build.accepts_ref) == (
        True,
        600,
        "build.yml",
        False,
    )
    assert (deploy.requires_lock, deploy.lease_seconds, deploy.workflow, deploy.accepts_ref) == (
        True,
        1800,
        "deploy.yml",
        True,
    )
    assert (build.lock_scope, build.conflict) == (LockScope.COMPONENT_ENVIRONMENT, Conflict.REJECT)
    assert build.lock_key("router", "plt") == "build-router-plt"
    assert deploy.lock_key("api", "prod") == "deploy-api-prod"
    assert build.start_text("router", "plt") == "🔨 Building router (plt)…"


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "GITHUB_REPOSITORY": "acme/ops",
        "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
        "SLACK_TEAM_IDS": "T0ONE, T0TWO",
        "SLACK_APP_ID": "A0APP",
        "RESPONSE_URL_HOSTS": "hooks.slack.com,127.0.0.1",
        "ENABLE_DISTRIBUTED_LOCK": "false",
        "BUILD_QUEUE_URL": "https://sqs.example/build",
        "SLACK_API_URL": "http://127.0.0.1:9/api",
    }
    config = load_config(write(tmp_path, MINIMAL), environ=env)
    assert config.github.repository == "acme/ops"
    assert config.github.api_url == "https://ghe.example.com/api/v3"
    assert config.slack.team_ids == {"T0ONE", "T0TWO"} and config.slack.app_id == "A0APP"
    assert config.slack.api_url == "http://127.0.0.1:9/api/"
    assert not config.lock_enabled
    assert config.queue_url(Queue.BUILD) == "https://sqs.example/build"
    assert config.queue_url(Queue.DEPLOY) is None
    assert config.response_url_allowed("http://127.0.0.1:8080/hook")


def test_response_url_allow_list(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={})
    assert config.response_url_allowed("https://hooks.slack.com/commands/T1/2/3")
    for url in (
        "http://hooks.slack.com/commands/T1/2/3",  # not https
        "https://hooks.slack.com.evil.example/x",
        "https://evil.example/?hooks.slack.com",
        "https://user:pw@hooks.slack.com/x",
        "https://@hooks.slack.com/x",  # user info, even empty: the workers' SlackReplies would refuse it too
        "https://127.0.0.1/x",  # loopback only when configured
        "https://hooks.slack.com:99999/x",
        "",
        "not a url",
    ):
        assert not config.response_url_allowed(url), url


def test_no_rule_means_nobody(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={})
    assert config.authorization.audience(Action.DEPLOY, "plt") == NOBODY
    assert config.authorization.admins == NOBODY


def test_the_file_can_retune_a_command(tmp_path: Path) -> None:
    text = MINIMAL + '[commands.deploy]\nworkflow = "release.yaml"\nlease_seconds = 3600\nlock_scope = "global"\n'
    config = load_config(write(tmp_path, text + "requires_lock = false\n"), environ={})
    deploy = config.commands[Action.DEPLOY]
    assert (deploy.workflow, deploy.lease_seconds, deploy.accepts_ref) == ("release.yaml", 3600, True)
    assert (deploy.lock_scope, deploy.requires_lock, deploy.lock_key("api", "prod")) == (
        LockScope.GLOBAL,
        False,
        "deploy",
    )
    assert not config.locks(Action.DEPLOY) and config.locks(Action.BUILD)


def test_a_component_may_name_its_own_repository_and_workflows(tmp_path: Path) -> None:
    text = MINIMAL.replace('["router"]', '["router", "api"]') + (
        '[github.components.api]\nrepository = "acme/api"\n[github.components.api.workflows]\ndeploy = "ship.yml"\n'
        '[github.components.router.workflows]\nbuild = "4711"\n'
    )
    config = load_config(write(tmp_path, text), environ={"GITHUB_REPOSITORY": "acme/ops"})
    assert config.workflow_of(Action.DEPLOY, "api") == WorkflowTarget("acme/api", "ship.yml")
    assert config.workflow_of(Action.BUILD, "api") == WorkflowTarget("acme/api", "build.yml")
    assert config.workflow_of(Action.BUILD, "router") == WorkflowTarget("acme/ops", "4711")  # the default repository
    assert config.workflow_of(Action.DEPLOY, "gone") == WorkflowTarget("acme/ops", "deploy.yml")
    assert config.workflows_by_repository() == {
        "acme/api": {"build.yml", "ship.yml"},
        "acme/ops": {"4711", "build.yml", "deploy.yml"},
    }
    assert config.serves_repository("ACME/api") and not config.serves_repository("acme/other")


def test_a_deployment_serves_no_workspace_or_app_it_does_not_name_unless_it_says_any(tmp_path: Path) -> None:
    named = NAMED + 'team_ids = ["T0TEAM"]\napp_id = "A0APP"\n'
    slack = load_config(write(tmp_path, named), environ={}).slack
    assert (slack.team_ids, slack.app_id) == (frozenset({"T0TEAM"}), "A0APP")
    for text, unnamed in (
        (NAMED, "slack.team_ids and slack.app_id not set"),
        (NAMED + 'team_ids = ["T0TEAM"]\n', "slack.app_id not set"),
        (NAMED + 'app_id = "A0APP"\n', "slack.team_ids not set"),
        (NAMED + "allow_any_workspace = false\n", "slack.team_ids and slack.app_id not set"),
    ):
        with pytest.raises(ConfigError, match=rf": slack: {unnamed}: .* set slack.allow_any_workspace to true"):
            load_config(write(tmp_path, text), environ={})
    # The switch lets unnamed ones through; what is named is still enforced.
    half = load_config(write(tmp_path, MINIMAL + 'team_ids = ["T0TEAM"]\n'), environ={}).slack
    assert (half.team_ids, half.app_id) == (frozenset({"T0TEAM"}), None)
    # An environment that names them is as good as the file.
    env = {"SLACK_TEAM_IDS": "T0TEAM", "SLACK_APP_ID": "A0APP"}
    assert load_config(write(tmp_path, NAMED), environ=env).slack.app_id == "A0APP"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("components = [", "not valid TOML"),
        ('environments = ["plt"]\n[github]\nrepository = "o/r"', "components: missing"),
        ('components = ["Router"]\nenvironments = ["plt"]', "components: 'Router' is not a lower-case name"),
        ('components = ["status"]\nenvironments = ["plt"]', "is a word of the command syntax"),
        ('components = ["a", "a"]\nenvironments = ["plt"]', "components: lists 'a' twice"),
        (MINIMAL.replace('"router"', '"a-b", "a"').replace('"plt"', '"c", "b-c"'), "share one lock key (build-a-b-c)"),
        ('components = ["a"]\nenvironments = []', "environments: must name at least one"),
        ('components = ["a"]\nenvironments = ["p"]\n[github]\nrepository = "nope"', "expected owner/name, not 'nope'"),
        (MINIMAL + "[authorization]\nadmins = { users = ['S0GROUP'] }", "'S0GROUP' is not a Slack user id"),
        (MINIMAL + "[authorization.deploy]\nqa = { anyone = true }", "authorization.deploy.qa: unknown environment"),
        (MINIMAL + "[authorization.ship]\n", "authorization.ship: unknown key (known here: admins, build, deploy)"),
        (MINIMAL + "[authorization.build]\nplt = { anyone = 'yes' }", "authorization.build.plt.anyone"),
        (MINIMAL + "[authorization.build]\nplt = { everyone = true }", "plt.everyone: unknown key"),
        (MINIMAL + "[commands.build]\nlease_seconds = 5", "commands.build.lease_seconds: expected a whole number"),
        (MINIMAL + "[commands.test]\n", "commands.test: unknown key (known here: build, deploy)"),
        (MINIMAL + "[commands.build]\nleaseSeconds = 60", "commands.build.leaseSeconds: unknown key (did you mean"),
        (MINIMAL + "[commands.build]\nlock_scope = 'team'", "commands.build.lock_scope: expected one of"),
        (MINIMAL + "team_ids = ['X1']", "slack.team_ids: 'X1' is not a Slack team id"),
        (MINIMAL + "[slack.user_groups]\nU0X = ['U1AA']", "slack.user_groups: 'U0X' is not a Slack user-group id"),
        (MINIMAL + "[slak]\nteam_ids = []", "slak: unknown key (did you mean slack?)"),
        (MINIMAL + "[github.components.web]\nrepository = 'o/web'", "github.components.web: unknown component"),
        (MINIMAL + "[github.components.router.workflows]\ntest = 'x.yml'", "workflows.test: unknown key"),
        (MINIMAL + "alarm_email = 'a@b.c'", "alarm_email: unknown key"),  # the stack's, not the workers'
    ],
)
def test_a_bad_file_fails_with_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"chatops config {path}: ")
    assert expected in message


def test_every_problem_is_kept_and_the_message_says_how_many_more(tmp_path: Path) -> None:
    text = 'components = ["Router"]\nenvironments = []\n[slak]\n'
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), environ={})
    assert [problem.split(": ", 2)[1] for problem in raised.value.problems] == [
        "slak",
        "components",
        "environments",
        "github.repository",
    ]
    assert str(raised.value).endswith(" (and 3 more: chatops config check lists them)")


def test_a_missing_file_and_a_bad_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file \(set CHATOPS_CONFIG\)"):
        load_config(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match=r"\$ENABLE_DISTRIBUTED_LOCK: expected true or false, not 'maybe'"):
        load_config(write(tmp_path, MINIMAL), environ={"ENABLE_DISTRIBUTED_LOCK": "maybe"})


def test_current_config_follows_the_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("CHATOPS_CONFIG", str(path))
    monkeypatch.delenv("ENABLE_DISTRIBUTED_LOCK", raising=False)
    assert current_config().lock_enabled
    assert current_config() is current_config()  # cached while nothing changes
    monkeypatch.setenv("ENABLE_DISTRIBUTED_LOCK", "false")
    assert not current_config().lock_enabled
    path.write_text(MINIMAL.replace('"router"', '"router", "api"'), encoding="utf-8")
    os.utime(path, ns=(1, 2))  # a different mtime, whatever the clock's resolution
    assert current_config().components == ("router", "api")


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_no_component_or_environment_may_be_called_like_a_verb(tmp_path: Path, verb: str) -> None:
    """`/build dequeue plt` must mean one thing: every verb the parser knows is refused as a name."""
    for text in (f'components = ["{verb}"]\nenvironments = ["plt"]', f'components = ["a"]\nenvironments = ["{verb}"]'):
        with pytest.raises(ConfigError, match="is a word of the command syntax"):
            load_config(write(tmp_path, text), environ={})
