"""The Slack app manifest (docs/slack-app-manifest.yml) asks for what the code uses: the slash commands the router
serves, with every verb in their usage hints, the interactivity URL, and the bot scopes of the Web API methods the
workers call."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from workers.handlers.router import ROUTES, SLACK_COMMANDS_PATH, SLACK_EVENTS_PATH, SLACK_INTERACTIONS_PATH
from workers.protocol.commands import VERB_TABLE
from workers.protocol.config import Action

MANIFEST = Path(__file__).parents[2] / "docs" / "slack-app-manifest.yml"
WORKERS = Path(__file__).parents[2] / "workers"
SCOPES_FOR = {
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "usergroups.users.list": "usergroups:read",
    "views.publish": "",
}
"""The Web API methods and the bot scope each needs (api.slack.com/methods/<method>; "": none)."""


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return loaded


def test_every_slash_command_goes_to_the_router_and_hints_every_verb() -> None:
    commands = {c["command"]: c for c in manifest()["features"]["slash_commands"]}
    assert set(commands) == {"/build", "/deploy", "/echo"}
    assert all(c["url"] == f"ROUTER_URL{SLACK_COMMANDS_PATH}" for c in commands.values())
    for action in Action:
        hinted = set(re.findall(r"[a-z]+", commands[action.slash]["usage_hint"]))
        taken = {verb.word for verb in VERB_TABLE if action in verb.slashes}
        assert taken <= hinted, (action.slash, taken - hinted)
        assert not (hinted & {verb.word for verb in VERB_TABLE}) - taken, action.slash  # no verb it does not take
    assert manifest()["settings"]["interactivity"]["request_url"] == "ROUTER_URL/slack/interactions"


def test_the_bot_scopes_cover_every_web_api_method_the_workers_call() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    source = "\n".join(path.read_text(encoding="utf-8") for path in WORKERS.rglob("*.py"))
    called = {method for method in SCOPES_FOR if f".{method.replace('.', '_')}(" in source}  # slack_sdk's calls
    assert called == set(SCOPES_FOR), called
    every_call = set(re.findall(r"\.((?:chat|usergroups|users|conversations|views)_[A-Za-z_]+)\(", source))
    assert every_call == {method.replace(".", "_") for method in SCOPES_FOR}, every_call  # none left out
    assert {SCOPES_FOR[method] for method in called if SCOPES_FOR[method]} | {"commands"} <= scopes


def test_the_events_go_to_the_router_and_the_home_tab_is_on() -> None:
    events = manifest()["settings"]["event_subscriptions"]
    assert events["request_url"] == f"ROUTER_URL{SLACK_EVENTS_PATH}"
    assert events["bot_events"] == ["app_home_opened"]
    assert SLACK_EVENTS_PATH in ROUTES
    home = manifest()["features"]["app_home"]
    assert home["home_tab_enabled"] is True
    assert home["messages_tab_enabled"] is True, "the Home's buttons are answered by direct message"
    routes = {SLACK_COMMANDS_PATH, SLACK_INTERACTIONS_PATH, SLACK_EVENTS_PATH}
    assert routes <= set(ROUTES), "every Slack URL in the manifest is a route of the router"
    assert manifest()["settings"]["interactivity"]["request_url"] == f"ROUTER_URL{SLACK_INTERACTIONS_PATH}"
