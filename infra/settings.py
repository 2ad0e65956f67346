"""The stack's configuration (``Pulumi.<stack>.yaml``, namespace ``chatops``), read once, checked, typed.

Every key is :mod:`workers.protocol.schema`'s — the schema the workers read their TOML with — so a key the workers
would refuse is refused here, at preview: an unknown key (a typo such as ``chatops:slack.teamIDs``), a wrong type,
or a stack that names no Slack workspace and app without ``chatops:slack.allowAnyWorkspace``. Each problem is one
line naming the stack and the key.

No secret is ever configuration: the four secrets live in SSM SecureString parameters whose *names* are
configured here (``chatops:ssmParameters``); the functions read them at run time.

:func:`from_values` is pure (the tests call it with the parsed YAML); :func:`load` reads the stack's config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from infra.roster import SECRETS, Secret
from workers.protocol import schema

NAMESPACE: Final = schema.STACK_NAMESPACE
REPOSITORY_ROOT: Final = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """The stack configuration cannot be used: one line per problem, each naming the key (``chatops:…``)."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Settings:
    stack: str
    values: Mapping[str, Any]
    """Every key's value, defaults filled (the schema's names): what the workers' TOML is rendered from."""
    lock_enabled: bool
    alarm_email: str
    powertools_layer_version: int | None
    """None: Powertools is bundled in the artifact; a number: the public layer of that version."""
    ssm_parameters: Mapping[Secret, str]
    lock_table_name: str
    idempotency_table_name: str
    history_table_name: str
    log_retention_days: int
    max_receive_count: int
    artifact: Path
    repositories: tuple[str, ...]
    """Every repository a command may dispatch to (owner/name): its webhook and its runs are ours."""

    @property
    def prefix(self) -> str:
        """Every physical name starts so: ``chatops-plt``."""
        return f"{NAMESPACE}-{self.stack}"


def from_values(stack: str, values: Mapping[str, Any], root: Path = REPOSITORY_ROOT) -> Settings:
    """Settings from ``values`` (keys without the namespace, values as YAML gives them)."""
    checked = schema.check(values, schema.Form.STACK, f"Pulumi stack {stack}")
    if checked.errors:
        raise SettingsError(checked.errors)
    given = checked.values
    parameters = given["ssm_parameters"]
    if set(parameters) != set(SECRETS):
        missing = [name for name in SECRETS if name not in parameters]
        raise SettingsError(
            [f"Pulumi stack {stack}: chatops:ssmParameters: expected exactly {', '.join(SECRETS)} (missing {missing})"]
        )
    prefix = f"{NAMESPACE}-{stack}"
    artifact = Path(given["artifact"])
    github = given["github"]
    own = (component["repository"] for component in github["components"].values() if component["repository"])
    return Settings(
        stack=stack,
        values=given,
        lock_enabled=given["enable_distributed_lock"],
        alarm_email=given["alarm_email"],
        powertools_layer_version=given["powertools_layer_version"],
        ssm_parameters={name: parameters[name] for name in SECRETS},
        lock_table_name=given["lock_table_name"] or f"{prefix}-locks",
        idempotency_table_name=given["idempotency_table_name"] or f"{prefix}-idempotency",
        history_table_name=given["history_table_name"] or f"{prefix}-history",
        log_retention_days=given["log_retention_days"],
        max_receive_count=given["max_receive_count"],
        artifact=artifact if artifact.is_absolute() else root / artifact,
        repositories=tuple(sorted({github["repository"], *own}, key=str.lower)),
    )


def load(stack: str) -> Settings:
    """The running stack's settings: every ``chatops:`` key the stack has (not only the known ones, so that a typo
    is refused rather than ignored). A problem stops the program at preview, one line each, no traceback."""
    import pulumi  # noqa: PLC0415 — the pure part of this module needs no Pulumi runtime
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415

    # The CLI hands the program its config as JSON in $PULUMI_CONFIG; tests and the automation API set it in-process.
    values = schema.stack_values({**runtime_config.get_config_env(), **runtime_config.CONFIG.get()})
    try:
        return from_values(stack, values)
    except SettingsError as error:
        raise pulumi.RunError(str(error)) from None
