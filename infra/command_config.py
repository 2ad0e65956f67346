"""The workers' ``chatops.toml`` for a stack, rendered from its configuration.

What a deployment allows — components, environments, the repositories and their workflows, the Slack workspace,
who may build, deploy and force-unlock — is stack configuration (``Pulumi.<stack>.yaml``), checked against the
workers' own schema (:mod:`workers.protocol.schema`). The workers read it from a TOML file
(:func:`workers.protocol.config.load_config`); this module writes that file — every key they read, defaults
included — and the program puts it in the function's code as :data:`PATH_IN_ARTIFACT` with ``CHATOPS_CONFIG``
pointing at it.
"""

from __future__ import annotations

from typing import Final

from infra.settings import Settings
from workers.protocol import schema

PATH_IN_ARTIFACT: Final = "chatops.toml"
LAMBDA_TASK_ROOT: Final = "/var/task"
CHATOPS_CONFIG: Final = f"{LAMBDA_TASK_ROOT}/{PATH_IN_ARTIFACT}"


def render(settings: Settings) -> str:
    """The TOML text; :func:`workers.protocol.config.load_config` reads it back into the same settings."""
    header = f"Rendered by the Pulumi program from Pulumi.{settings.stack}.yaml — change the stack config, not this."
    return schema.render_toml(settings.values, header=[header])
