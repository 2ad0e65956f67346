"""The four secrets: from the plain environment variable when it is set, else from an SSM SecureString.

``get_secret("SLACK_SIGNING_SECRET")`` returns ``$SLACK_SIGNING_SECRET`` if set and not empty (the local stack
and tests), else the SecureString parameter named by ``$SLACK_SIGNING_SECRET_PARAM``, decrypted and cached for
five minutes by Powertools Parameters. Neither set, or the parameter unreadable: :class:`SecretUnavailable`,
whose message names the secret and the parameter — never a value. Nothing here logs a value.
"""

from __future__ import annotations

import os
from typing import Literal, get_args

SecretName = Literal["SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET"]
SECRET_NAMES: tuple[SecretName, ...] = get_args(SecretName)
CACHE_SECONDS = 300


class SecretUnavailable(Exception):
    """A secret could not be had. One line: which secret, where it was looked for, what went wrong."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"secret {name}: {problem}")
        self.name = name


def parameter_env(name: SecretName) -> str:
    """The variable holding the SSM parameter's name: ``SLACK_SIGNING_SECRET_PARAM``."""
    return f"{name}_PARAM"


def get_secret(name: SecretName) -> str:
    if name not in SECRET_NAMES:
        raise SecretUnavailable(name, f"not one of {', '.join(SECRET_NAMES)}")
    plain = os.environ.get(name)
    if plain:
        return plain
    parameter = os.environ.get(parameter_env(name))
    if not parameter:
        raise SecretUnavailable(name, f"set ${name} or ${parameter_env(name)} (an SSM SecureString parameter name)")
    # Imported with the SSM client they make, on the first secret read from SSM, not with this module: a request
    # refused before its secret is needed never pays for them, nor do the local stack and the tests.
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415

    try:
        value = parameters.get_parameter(parameter, decrypt=True, max_age=CACHE_SECONDS)
    except (parameters.exceptions.GetParameterError, BotoCoreError) as error:
        # The error names the parameter and the AWS error code (or, made before Powertools' own handling, the
        # client's: no region, no credentials); a value is never part of it.
        raise SecretUnavailable(name, f"cannot read SSM parameter {parameter}: {_one_line(error)}") from None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value:
        raise SecretUnavailable(name, f"SSM parameter {parameter} is empty")
    return value


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]
