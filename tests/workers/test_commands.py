"""Parsing, deciding and rendering slash commands, each on its own: pure functions, no I/O."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.protocol import commands
from workers.protocol.config import QUEUE_FOR_KIND, RESERVED_NAMES, Action, Audience, Config, load_config
from workers.protocol.envelope import COMMAND_KINDS, CommandEnvelope, EnvelopeError, read_message

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "chatops.toml"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(SHIPPED, environ={})


# ------------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("slash", "text", "expected"),
    [
        ("/build", "router plt", commands.Dispatch(Action.BUILD, "router", "plt")),
        ("/build", "  Router   PLT ", commands.Dispatch(Action.BUILD, "router", "plt")),
        ("/deploy", "api prod", commands.Dispatch(Action.DEPLOY, "api", "prod")),
        ("/deploy", "api prod release/v1.2", commands.Dispatch(Action.DEPLOY, "api", "prod", "release/v1.2")),
        ("/deploy", "api prod 3f9c1e2", commands.Dispatch(Action.DEPLOY, "api", "prod", "3f9c1e2")),
        ("/build", "status --locks", commands.LockStatus()),
        ("/build", "status", commands.LockStatus()),
        ("/build", "unlock router plt", commands.Unlock(Action.BUILD, "router", "plt")),
        ("/deploy", "unlock api prod", commands.Unlock(Action.DEPLOY, "api", "prod")),
        ("/echo", "  hello there ", commands.Echo("hello there")),
    ],
)
def test_commands_parse(config: Config, slash: str, text: str, expected: commands.Command) -> None:
    assert commands.parse(slash, text, config) == expected


@pytest.mark.parametrize(("slash", "text"), [("/build", "help"), ("/deploy", "HELP"), ("/echo", "help")])
def test_help(config: Config, slash: str, text: str) -> None:
    parsed = commands.parse(slash, text, config)
    assert isinstance(parsed, commands.Help)
    assert "/deploy <component> <env> [ref]" in parsed.message
    assert "`router`, `api`" in parsed.message and "`plt`, `prod`" in parsed.message


@pytest.mark.parametrize(
    ("slash", "text", "problem"),
    [
        ("/build", "", "/build needs a component and an environment"),
        ("/build", "router", "expected /build <component> <env>"),
        ("/build", "web plt", "unknown component `web`"),
        ("/build", "router qa", "unknown environment `qa`"),
        ("/build", "router plt main", "/build takes a component and an environment, nothing more"),
        ("/deploy", "api prod main extra", "/deploy takes one ref at most"),
        ("/deploy", "api prod ../etc", "`../etc` is not a branch, tag or commit"),
        ("/deploy", "api prod -x", "`-x` is not a branch, tag or commit"),
        ("/build", "status --all", "/build status takes only --locks"),
        ("/build", "unlock router", "expected /build unlock <component> <env>"),
        ("/build", "unlock router dev", "unknown environment `dev`"),
        ("/echo", "   ", "say something to echo"),
        ("/ship", "router plt", "unknown command `/ship`"),
    ],
)
def test_malformed_commands_get_the_usage_message(config: Config, slash: str, text: str, problem: str) -> None:
    parsed = commands.parse(slash, text, config)
    assert isinstance(parsed, commands.Usage)
    assert problem in parsed.problem
    assert parsed.message.startswith("⚠️ ")
    assert "/build <component> <env>" in parsed.message
    assert "Components: `router`, `api`. Environments: `plt`, `prod`." in parsed.message


@given(slash=st.sampled_from(["/build", "/deploy", "/echo", "/x", ""]), text=st.text(max_size=80))
def test_anything_parses_to_something_and_never_to_a_name_outside_the_config(slash: str, text: str) -> None:
    config = load_config(SHIPPED, environ={})
    parsed = commands.parse(slash, text, config)
    if isinstance(parsed, commands.Dispatch | commands.Unlock):
        assert parsed.component in config.components
        assert parsed.environment in config.environments


# ------------------------------------------------------------------------------------------------ deciding
def test_origin(config: Config) -> None:
    strict = load_config(SHIPPED, environ={"SLACK_TEAM_IDS": "T0TEAM", "SLACK_APP_ID": "A0APP"}).slack
    assert commands.check_origin(config.slack, "T0ANY", "A0ANY") is None  # the shipped file accepts any
    assert commands.check_origin(strict, "T0TEAM", "A0APP") is None
    other_team = commands.check_origin(strict, "T0OTHER", "A0APP")
    other_app = commands.check_origin(strict, "T0TEAM", "A0OTHER")
    assert other_team is not None and "workspace" in other_team.reason
    assert other_app is not None and "another Slack app" in other_app.reason


def test_who_may_deploy_to_prod(config: Config) -> None:
    deploy = commands.Dispatch(Action.DEPLOY, "api", "prod")
    audience = commands.audience_for(config, deploy)
    assert commands.decide(deploy, audience, "U0PLAT", frozenset({"S0PLATFORM"})) == commands.Allowed()
    refused = commands.decide(deploy, audience, "U0ALICE")
    assert isinstance(refused, commands.Refused)
    assert commands.refusal_text(refused) == (
        "🚫 Sorry, you may not run /deploy api prod. Who may: members of <!subteam^S0PLATFORM>."
    )
    plt = commands.Dispatch(Action.DEPLOY, "api", "plt")
    assert commands.decide(plt, commands.audience_for(config, plt), "U0ALICE") == commands.Allowed()


def test_only_admins_unlock(config: Config) -> None:
    unlock = commands.Unlock(Action.BUILD, "router", "plt")
    audience = commands.audience_for(config, unlock)
    assert commands.decide(unlock, audience, "U0ADMIN") == commands.Allowed()
    refused = commands.decide(unlock, audience, "U0ALICE")
    assert isinstance(refused, commands.Refused)
    assert commands.refusal_text(refused).endswith("Who may: <@U0ADMIN>.")


def test_status_and_echo_are_for_anyone(config: Config) -> None:
    for command in (commands.LockStatus(), commands.Echo("hi")):
        assert commands.decide(command, commands.audience_for(config, command), "U0ANYONE") == commands.Allowed()


def test_who_may_renders_users_and_groups() -> None:
    audience = Audience(users=frozenset({"U2", "U1"}), groups=frozenset({"S9"}))
    assert commands.who_may(audience) == "<@U1>, <@U2> or members of <!subteam^S9>"
    assert commands.who_may(Audience(anyone=True)) == "anyone"
    nobody = commands.Refused("you may not run /deploy api prod", Audience())
    assert "Nobody may, as configured" in commands.refusal_text(nobody)


def test_acknowledgements() -> None:
    build = commands.Dispatch(Action.BUILD, "router", "plt")
    assert commands.acknowledgement(build) == "⏳ Got it: /build router plt — checking the lock…"
    assert (
        commands.acknowledgement(build, lock_enabled=False) == "⏳ Got it: /build router plt — starting the workflow…"
    )
    assert commands.acknowledgement(commands.Dispatch(Action.DEPLOY, "api", "prod", "v1")).startswith(
        "⏳ Got it: /deploy api prod v1"
    )


# ----------------------------------------------------------------------------------------------- envelopes
@pytest.mark.parametrize(
    "command",
    [
        commands.Dispatch(Action.BUILD, "router", "plt"),
        commands.Dispatch(Action.DEPLOY, "api", "prod", "main"),
        commands.LockStatus(),
        commands.Unlock(Action.DEPLOY, "api", "prod"),
        commands.Echo("héllo"),
    ],
)
def test_a_command_envelope_survives_the_queue(command: commands.Command) -> None:
    envelope = CommandEnvelope(
        request_id="1.2.abc",
        correlation_id="cid",
        command=command,
        slash="/build",
        text="router plt",
        user_id="U0ALICE",
        user_name="alice",
        channel_id="C0CHAN",
        team_id="T0TEAM",
        api_app_id="A0APP",
        response_url="https://hooks.slack.com/commands/x",
        received_at=1_767_261_600,
    )
    assert CommandEnvelope.from_json(envelope.to_json()) == envelope
    assert read_message(envelope.to_json()) == envelope


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("nope", "not JSON"),
        ("[]", "expected a JSON object"),
        ('{"version": 2, "kind": "build"}', "version: expected 1"),
        ('{"version": 1, "kind": "launch"}', "unknown kind"),
        ('{"version": 1, "kind": "build", "command": {"kind": "build"}}', "requestId: expected a string"),
    ],
)
def test_a_message_that_is_not_ours_is_one_named_error(body: str, problem: str) -> None:
    with pytest.raises(EnvelopeError, match=problem):
        read_message(body)


# ---------------------------------------------------------------------------------------------- the verbs
ROOT = Path(__file__).resolve().parents[2]
ARGUMENTS = {
    "<component> <env>": "router plt",
    "<component> <env> [N]": "api plt 2",
    "<env> <reason>": "prod a release",
    "<env>": "prod",
    "[days]": "3",
}


@pytest.mark.parametrize("verb", commands.VERB_TABLE, ids=lambda verb: verb.word)
def test_every_verb_of_the_table_parses_as_its_form_says_on_the_slashes_that_take_it(
    config: Config, verb: commands.Verb
) -> None:
    for action in Action:
        typed = f"{verb.word} {ARGUMENTS.get(verb.arguments, verb.arguments)}"
        parsed = commands.parse(action.slash, typed, config)
        if verb.command is None:
            assert isinstance(parsed, commands.Help)
        elif action in verb.slashes:
            assert isinstance(parsed, verb.command) and parsed.kind == verb.word, parsed
        else:
            assert isinstance(parsed, commands.Usage)


def test_the_verbs_are_the_reserved_names_and_the_envelopes_kinds_and_each_has_a_queue() -> None:
    assert commands.VERBS | {"*"} == RESERVED_NAMES
    assert {*COMMAND_KINDS, "interaction", "workflow_run", "home_opened", "home_refresh"} == set(QUEUE_FOR_KIND)
    assert {action.value for action in Action} | {commands.Echo.kind} | commands.VERBS - {"help"} == COMMAND_KINDS


@pytest.mark.parametrize("page", ["README.md", "docs/slack.md"])
def test_the_readme_and_the_slack_page_quote_the_help_the_bot_answers(config: Config, page: str) -> None:
    assert f"```\n{commands.help_text(config)}\n```" in (ROOT / page).read_text(encoding="utf-8")


def test_the_slack_page_names_every_verb_and_every_reserved_word() -> None:
    page = (ROOT / "docs" / "slack.md").read_text(encoding="utf-8")
    reserved = re.search(r"The words (.+?) cannot be\s+component or environment names", page, re.S)
    assert reserved is not None and set(re.findall(r"`([^`]+)`", reserved[1])) == RESERVED_NAMES
    table = page[page.index("## Commands") : page.index("## Messages users see")]
    assert all(f"`{verb.form}" in table for verb in commands.VERB_TABLE), "a verb the commands table leaves out"


def test_the_slack_page_shows_the_acknowledgement_of_every_queued_command(config: Config) -> None:
    page = (ROOT / "docs" / "slack.md").read_text(encoding="utf-8")
    shown = {
        "<component> <env>": "router plt",
        "<component> <env> [N]": "api plt",
        "<env> <reason>": "prod release week",
        "<env>": "prod",
        "[days]": "",
    }
    typed = [
        (verb.slashes[0].slash, f"{verb.word} {shown.get(verb.arguments, verb.arguments)}".strip())
        for verb in commands.VERB_TABLE
        if verb.command is not None
    ]
    for slash, text in [("/build", "router plt"), ("/echo", "hello"), *typed]:
        command = commands.parse(slash, text, config)
        assert not isinstance(command, commands.Help | commands.Usage), command
        assert commands.acknowledgement(command) in page, commands.acknowledgement(command)
    unlocked = commands.Dispatch(Action.BUILD, "router", "plt")
    assert commands.acknowledgement(unlocked, lock_enabled=False) in page
