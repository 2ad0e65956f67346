"""The workers' ``chatops.toml`` for a stack, rendered from its configuration.

What a deployment allows — components, environments, the repository and its workflows, the Slack workspace,
who may build, deploy and force-unlock — is stack configuration (``Pulumi.<stack>.yaml``). The workers read it
from a TOML file (:func:`workers.protocol.config.load_config`); this module writes that file, and the program puts it in
the function's code as :data:`PATH_IN_ARTIFACT` with ``CHATOPS_CONFIG`` pointing at it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from infra.settings import Settings

PATH_IN_ARTIFACT: Final = "chatops.toml"
LAMBDA_TASK_ROOT: Final = "/var/task"
CHATOPS_CONFIG: Final = f"{LAMBDA_TASK_ROOT}/{PATH_IN_ARTIFACT}"


def render(settings: Settings) -> str:
    """The TOML text; :func:`workers.protocol.config.load_config` reads it back into the same settings."""
    lines = [
        f"# Rendered by the Pulumi program from Pulumi.{settings.stack}.yaml — change the stack config, not this.",
        f"components = {_list(settings.components)}",
        f"environments = {_list(settings.environments)}",
        "",
        "[github]",
        f"repository = {_string(settings.github_repository)}",
        "",
        "[slack]",
        f"team_ids = {_list(settings.slack_team_ids)}",
        f"response_url_hosts = {_list(settings.response_url_hosts)}",
    ]
    if settings.slack_app_id:
        lines.append(f"app_id = {_string(settings.slack_app_id)}")
    for action, workflow in sorted(settings.workflows.items()):
        lines += ["", f"[commands.{action}]", f"workflow = {_string(workflow)}"]
    lines += ["", "[authorization]", f"admins = {_audience(settings.admins)}"]
    for action, rules in sorted(settings.authorization.items()):
        lines += ["", f"[authorization.{action}]"]
        lines += [f"{_string(environment)} = {_audience(rule)}" for environment, rule in sorted(rules.items())]
    return "\n".join(lines) + "\n"


def _string(value: str) -> str:
    # A JSON string is a TOML basic string (same quotes and escapes, \uXXXX included).
    return json.dumps(value)


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_string(value) for value in values) + "]"


def _audience(rule: Mapping[str, Any]) -> str:
    parts = []
    if rule.get("anyone"):
        parts.append("anyone = true")
    for key in ("users", "groups"):
        if rule.get(key):
            parts.append(f"{key} = {_list(rule[key])}")
    return "{ " + ", ".join(parts) + " }" if parts else "{}"
