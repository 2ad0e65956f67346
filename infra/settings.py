"""The stack's configuration (``Pulumi.<stack>.yaml``, namespace ``chatops``), read once, checked, typed.

Every key is :mod:`workers.protocol.schema`'s — the schema the workers read their TOML with — so a key the workers
would refuse is refused here, at preview: an unknown key (a typo such as ``chatops:slack.teamIDs``), a wrong type,
or a stack that names no Slack workspace and app without ``chatops:slack.allowAnyWorkspace``. Each problem is one
line naming the stack and the key.

The four secrets reach the functions through SSM SecureString parameters whose *names* are configured here
(``chatops:ssmParameters``, defaults ``/chatops/<stack>/…``); the functions read them at run time. A secret set as
a stack secret (``pulumi config set --secret chatops:githubToken``, :data:`SECRET_KEYS`) is written to its
parameter by the program; one that is not is a parameter made by hand. A secret key holding plain text is refused.
No secret's value is ever among the settings' values (nor in the workers' TOML): only whether the stack holds it.

:func:`from_values` is pure (the tests call it with the parsed YAML); :func:`load` reads the stack's config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from infra.roster import SECRETS, Secret
from workers.protocol import schema

if TYPE_CHECKING:
    import pulumi

NAMESPACE: Final = schema.STACK_NAMESPACE
REPOSITORY_ROOT: Final = Path(__file__).resolve().parent.parent
GITHUB_OIDC_HOST: Final = schema.GITHUB_OIDC_HOST

#: The four secrets as stack secrets: ``pulumi config set --secret chatops:<key>``. Known to the schema, read with
#: ``get_secret`` only (:func:`stack_secret`), never as plain configuration.
SECRET_KEYS: Final[Mapping[Secret, str]] = {secret: schema.STACK_SECRET_KEYS[secret] for secret in SECRETS}
#: Every plain key of a stack (without the ``chatops:`` namespace): the schema's top-level keys but the secrets.
KEYS: Final = frozenset(
    key.named(schema.Form.STACK) for key in schema.SCHEMA.keys if not isinstance(key.kind, schema.StackSecret)
)


class SettingsError(Exception):
    """The stack configuration cannot be used: one line per problem, each naming the key (``chatops:…``)."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class DeployRole:
    """``chatops:deployRole``: a role the configured repositories' workflows assume with GitHub's OIDC token."""

    oidc_provider_arn: str | None
    """The account's GitHub OIDC provider (an account has one); ``None``: the stack makes it."""
    subjects: tuple[str, ...]
    """What follows ``repo:<owner>/<name>:`` in the token's ``sub`` claim the role accepts, e.g. ``environment:prod``
    (a job with ``environment:``) or ``ref:refs/heads/main``. Default: each configured environment."""


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
    """Every repository a command may dispatch to (owner/name): its webhook and its runs are ours, the deploy role
    trusts its workflows, and it needs the repository variables of the example workflows."""
    stack_secrets: frozenset[Secret]
    """The secrets set as stack secrets (:data:`SECRET_KEYS`): the program writes their parameters."""
    deploy_role: DeployRole | None
    """``None``: no role is made; adopters attach the fencing-check policy to a role of their own."""
    cli_repository: str | None
    """``chatops:cli.repository``: the repository the example workflows install the ``chatops`` CLI from."""
    cli_version: str | None
    """``chatops:cli.version``: the tag or commit of it they install."""

    @property
    def prefix(self) -> str:
        """Every physical name starts so: ``chatops-plt``."""
        return f"{NAMESPACE}-{self.stack}"


def default_parameter_name(stack: str, secret: Secret) -> str:
    """``/chatops/plt/github-token``: where a secret's parameter is when ``chatops:ssmParameters`` does not say."""
    return f"/{NAMESPACE}/{stack}/{secret.lower().replace('_', '-')}"


def from_values(stack: str, values: Mapping[str, Any], root: Path = REPOSITORY_ROOT) -> Settings:
    """Settings from ``values`` (keys without the namespace, values as YAML gives them; a secret the stack holds
    as :data:`workers.protocol.schema.SECRET_HELD`, as :func:`workers.protocol.schema.stack_values` gives it)."""
    checked = schema.check(values, schema.Form.STACK, f"Pulumi stack {stack}")
    if checked.errors:
        raise SettingsError(checked.errors)
    given = checked.values
    parameters = given["ssm_parameters"]
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
        ssm_parameters={name: parameters.get(name) or default_parameter_name(stack, name) for name in SECRETS},
        lock_table_name=given["lock_table_name"] or f"{prefix}-locks",
        idempotency_table_name=given["idempotency_table_name"] or f"{prefix}-idempotency",
        history_table_name=given["history_table_name"] or f"{prefix}-history",
        log_retention_days=given["log_retention_days"],
        max_receive_count=given["max_receive_count"],
        artifact=artifact if artifact.is_absolute() else root / artifact,
        repositories=tuple(sorted({github["repository"], *own}, key=str.lower)),
        # The schema refused a secret key that is not held encrypted: each one given is the stack's.
        stack_secrets=frozenset(secret for secret, key in SECRET_KEYS.items() if key in values),
        deploy_role=_deploy_role(given["deploy_role"], given["environments"]),
        cli_repository=given["cli"]["repository"],
        cli_version=given["cli"]["version"],
    )


def _deploy_role(role: Mapping[str, Any], environments: list[str]) -> DeployRole | None:
    if not role["create"]:
        return None
    subjects = role["subjects"] or [f"environment:{name}" for name in environments]
    return DeployRole(oidc_provider_arn=role["oidc_provider_arn"], subjects=tuple(subjects))


def load(stack: str) -> Settings:
    """The running stack's settings: every ``chatops:`` key the stack has (not only the known ones, so that a typo
    is refused rather than ignored). A secret key is only looked at: whether Pulumi holds it as a secret (else it is
    refused); its value stays a secret ``Output`` (:func:`stack_secret`). A problem stops the program at preview,
    one line each, no traceback."""
    import pulumi  # noqa: PLC0415 — the pure part of this module needs no Pulumi runtime
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415

    # The CLI hands the program its config as JSON in $PULUMI_CONFIG (the secret keys' names in
    # $PULUMI_CONFIG_SECRET_KEYS); tests and the automation API set both in-process.
    config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {key for key in config if pulumi.runtime.is_config_secret(key)}
    values = schema.stack_values(config, secret_keys | set(runtime_config.get_config_secret_keys_env()))
    try:
        return from_values(stack, values)
    except SettingsError as error:
        raise pulumi.RunError(str(error)) from None


def stack_secret(secret: Secret) -> pulumi.Output[str]:
    """The secret's value as Pulumi holds it: a secret ``Output``, never plain text (the stack must hold it)."""
    import pulumi  # noqa: PLC0415

    return pulumi.Config(NAMESPACE).require_secret(SECRET_KEYS[secret])
