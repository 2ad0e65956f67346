"""The repository variables the example workflows read (``${{ vars.NAME }}`` in ``docs/examples/deploy.yml``), as
the stack knows them, and the ``gh`` commands that set them.

``pulumi stack output githubVariableCommands`` prints one ``gh variable set`` line per variable and repository, ready
to paste (or to pipe to ``sh``); ``pulumi stack output --json githubVariables`` gives the same as one JSON object.
A variable the stack cannot know is left out (and the deploy workflow's first step names it): the role's ARN
without ``chatops:deployRole.create``, the CLI's source without ``chatops:cli``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Final

import pulumi

from infra.settings import Settings

DEPLOY_ROLE_ARN: Final = "DEPLOY_ROLE_ARN"
CHATOPS_REPOSITORY: Final = "CHATOPS_REPOSITORY"
CHATOPS_VERSION: Final = "CHATOPS_VERSION"
AWS_REGION: Final = "AWS_REGION"
LOCK_TABLE_NAME: Final = "LOCK_TABLE_NAME"
NAMES: Final = (DEPLOY_ROLE_ARN, CHATOPS_REPOSITORY, CHATOPS_VERSION, AWS_REGION, LOCK_TABLE_NAME)
"""Every variable the example workflows read, in the order the deploy workflow checks them."""

_SOURCES: Final = {
    DEPLOY_ROLE_ARN: "chatops:deployRole.create: true (or your own role with the fencingCheckPolicyArn output)",
    CHATOPS_REPOSITORY: "chatops:cli.repository",
    CHATOPS_VERSION: "chatops:cli.version",
}


def variables(
    settings: Settings,
    region: str,
    lock_table_name: pulumi.Input[str],
    deploy_role_arn: pulumi.Input[str] | None,
) -> dict[str, pulumi.Input[str]]:
    known: dict[str, pulumi.Input[str] | None] = {
        DEPLOY_ROLE_ARN: deploy_role_arn,
        CHATOPS_REPOSITORY: settings.cli_repository,
        CHATOPS_VERSION: settings.cli_version,
        AWS_REGION: region,
        LOCK_TABLE_NAME: lock_table_name,
    }
    return {name: value for name, value in known.items() if value is not None}


def missing(found: Mapping[str, object]) -> list[str]:
    """``NAME (set …)`` for each variable the stack cannot give, to say so at ``pulumi up``."""
    return [f"{name} (set {_SOURCES[name]})" for name in NAMES if name not in found]


def commands(found: Mapping[str, pulumi.Input[str]], repositories: Sequence[str]) -> pulumi.Output[str]:
    """``gh variable set NAME --repo owner/name --body VALUE``, one line each, every word shell-quoted."""

    def render(values: Mapping[str, str]) -> str:
        return "".join(
            f"gh variable set {name} --repo {shlex.quote(repository)} --body {shlex.quote(values[name])}\n"
            for repository in repositories
            for name in NAMES
            if name in values
        )

    return pulumi.Output.all(**found).apply(render)
