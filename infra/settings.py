"""The stack's configuration (``Pulumi.<stack>.yaml``, namespace ``chatops``), read once, checked, typed.

The four secrets reach the functions through SSM SecureString parameters whose *names* are configured here
(``chatops:ssmParameters``, defaults ``/chatops/<stack>/…``); the functions read them at run time. A secret set as
a stack secret (``pulumi config set --secret chatops:githubToken``, :data:`SECRET_KEYS`) is written to its
parameter by the program; one that is not is a parameter made by hand. A secret key holding plain text is refused.

:func:`from_values` is pure (the tests call it with the parsed YAML); :func:`load` reads ``pulumi.Config``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from infra.roster import SECRETS, Secret

if TYPE_CHECKING:
    import pulumi

NAMESPACE: Final = "chatops"
REPOSITORY_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_ARTIFACT: Final = "build/lambda.zip"
LOG_RETENTION_DAYS: Final = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)

#: The four secrets as stack secrets: ``pulumi config set --secret chatops:<key>``. Read with ``get_secret`` only,
#: never as plain configuration (they are not in :data:`KEYS`, whose values :func:`load` reads in plain text).
SECRET_KEYS: Final[Mapping[Secret, str]] = {
    "SLACK_SIGNING_SECRET": "slackSigningSecret",
    "SLACK_BOT_TOKEN": "slackBotToken",
    "GITHUB_TOKEN": "githubToken",
    "GITHUB_WEBHOOK_SECRET": "githubWebhookSecret",
}
#: The keys of the turnkey deploy (docs/deploying.md): the deploy role for GitHub's OIDC, and where the example
#: workflows install the ``chatops`` CLI from.
DEPLOY_KEYS: Final = frozenset({"deployRole", "cli"})
#: Every key this program reads (without the ``chatops:`` namespace) besides :data:`SECRET_KEYS`; any other key is
#: a typo.
KEYS: Final = frozenset(
    {
        *DEPLOY_KEYS,
        "components",
        "environments",
        "admins",
        "authorization",
        "github",
        "slack",
        "enableDistributedLock",
        "alarmEmail",
        "powertoolsLayerVersion",
        "ssmParameters",
        "lockTableName",
        "idempotencyTableName",
        "historyTableName",
        "logRetentionDays",
        "maxReceiveCount",
        "artifact",
    }
)


GITHUB_OIDC_HOST: Final = "token.actions.githubusercontent.com"
_OIDC_PROVIDER_ARN: Final = re.compile(rf"arn:aws:iam::\d{{12}}:oidc-provider/{re.escape(GITHUB_OIDC_HOST)}")
_OIDC_SUBJECT: Final = re.compile(r"[A-Za-z0-9_.:/*?-]+")


class SettingsError(Exception):
    """The stack configuration cannot be used; the message names the key (``chatops:…``) and what is wrong."""


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
    components: tuple[str, ...]
    environments: tuple[str, ...]
    admins: Mapping[str, tuple[str, ...]]
    """``users`` and ``groups`` who may force-unlock."""
    authorization: Mapping[str, Mapping[str, Mapping[str, Any]]]
    """Per command (build, deploy), per environment or ``*``: ``{anyone, users, groups}``."""
    github_repository: str
    workflows: Mapping[str, str]
    github_api_url: str | None
    slack_team_ids: tuple[str, ...]
    slack_app_id: str | None
    response_url_hosts: tuple[str, ...]
    slack_api_url: str | None
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
    stack_secrets: frozenset[Secret] = frozenset()
    """The secrets set as stack secrets (:data:`SECRET_KEYS`): the program writes their parameters."""
    deploy_role: DeployRole | None = None
    """``None``: no role is made; adopters attach the fencing-check policy to a role of their own."""
    cli_repository: str | None = None
    """``chatops:cli.repository``: the repository the example workflows install the ``chatops`` CLI from."""
    cli_version: str | None = None
    """``chatops:cli.version``: the tag or commit of it they install."""

    @property
    def prefix(self) -> str:
        """Every physical name starts so: ``chatops-plt``."""
        return f"{NAMESPACE}-{self.stack}"

    @property
    def repositories(self) -> tuple[str, ...]:
        """Every repository whose workflows ChatOps dispatches: the deploy role trusts theirs, and each needs the
        repository variables of the example workflows."""
        return (self.github_repository,)


def default_parameter_name(stack: str, secret: Secret) -> str:
    """``/chatops/plt/github-token``: where a secret's parameter is when ``chatops:ssmParameters`` does not say."""
    return f"/{NAMESPACE}/{stack}/{secret.lower().replace('_', '-')}"


def from_values(
    stack: str,
    values: Mapping[str, Any],
    root: Path = REPOSITORY_ROOT,
    *,
    stack_secrets: frozenset[Secret] = frozenset(),
) -> Settings:
    """Settings from ``values`` (keys without the namespace, values as YAML gives them); ``stack_secrets``: the
    secrets the stack holds encrypted (their values stay with Pulumi, see :func:`load`)."""
    unknown = sorted(set(values) - KEYS)
    if unknown:
        raise SettingsError(f"chatops:{unknown[0]}: not a key this program reads (known: {', '.join(sorted(KEYS))})")
    prefix = f"{NAMESPACE}-{stack}"
    github = _table(values, "github")
    slack = _table(values, "slack")
    admins = _table(values, "admins")
    workflows = _table(github, "workflows", "github.workflows")
    configured = _table(values, "ssmParameters")
    if set(configured) - set(SECRETS):
        unexpected = sorted(set(configured) - set(SECRETS))
        raise SettingsError(f"chatops:ssmParameters.{unexpected[0]}: not a secret (the secrets: {', '.join(SECRETS)})")
    parameters = {name: configured.get(name, default_parameter_name(stack, name)) for name in SECRETS}
    for name, value in parameters.items():
        if not isinstance(value, str) or not value.startswith("/") or "*" in value:
            raise SettingsError(f"chatops:ssmParameters.{name}: expected a parameter name starting with '/'")
    email = values.get("alarmEmail")
    if not isinstance(email, str) or "@" not in email:
        raise SettingsError("chatops:alarmEmail: expected the e-mail address that gets the alarms")
    retention = _int(values, "logRetentionDays", 30)
    if retention not in LOG_RETENTION_DAYS:
        raise SettingsError(f"chatops:logRetentionDays: {retention} is not one CloudWatch Logs accepts")
    receives = _int(values, "maxReceiveCount", 5)
    if not 1 <= receives <= 1000:
        raise SettingsError("chatops:maxReceiveCount: expected 1 to 1000")
    layer = values.get("powertoolsLayerVersion")
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 1):
        raise SettingsError("chatops:powertoolsLayerVersion: expected a layer version number (or no key: bundled)")
    repository = github.get("repository")
    if not isinstance(repository, str) or repository.count("/") != 1:
        raise SettingsError("chatops:github.repository: expected owner/name")
    artifact = Path(str(values.get("artifact") or DEFAULT_ARTIFACT))
    environments = _names(values, "environments")
    cli = _only(_table(values, "cli"), "cli", {"repository", "version"})
    cli_repository = _optional_string(cli, "repository", "cli")
    if cli_repository is not None and cli_repository.count("/") != 1:
        raise SettingsError("chatops:cli.repository: expected owner/name (where this project's code is on GitHub)")
    return Settings(
        stack=stack,
        components=_names(values, "components"),
        environments=environments,
        admins={"users": _strings(admins, "users", "admins"), "groups": _strings(admins, "groups", "admins")},
        authorization=_table(values, "authorization"),
        github_repository=repository,
        workflows={str(action): str(workflow) for action, workflow in workflows.items()},
        github_api_url=_optional_string(github, "apiUrl", "github"),
        slack_team_ids=_strings(slack, "teamIds", "slack"),
        slack_app_id=_optional_string(slack, "appId", "slack"),
        response_url_hosts=_strings(slack, "responseUrlHosts", "slack") or ("hooks.slack.com",),
        slack_api_url=_optional_string(slack, "apiUrl", "slack"),
        lock_enabled=_bool(values, "enableDistributedLock", default=True),
        alarm_email=email,
        powertools_layer_version=layer,
        ssm_parameters={name: parameters[name] for name in SECRETS},
        lock_table_name=str(values.get("lockTableName") or f"{prefix}-locks"),
        idempotency_table_name=str(values.get("idempotencyTableName") or f"{prefix}-idempotency"),
        history_table_name=str(values.get("historyTableName") or f"{prefix}-history"),
        log_retention_days=retention,
        max_receive_count=receives,
        artifact=artifact if artifact.is_absolute() else root / artifact,
        stack_secrets=stack_secrets,
        deploy_role=_deploy_role(_table(values, "deployRole"), environments),
        cli_repository=cli_repository,
        cli_version=_optional_string(cli, "version", "cli"),
    )


def _deploy_role(table: Mapping[str, Any], environments: tuple[str, ...]) -> DeployRole | None:
    _only(table, "deployRole", {"create", "oidcProviderArn", "subjects"})
    if not _bool(table, "create", default=False, where="deployRole.create"):
        if set(table) - {"create"}:
            raise SettingsError("chatops:deployRole: oidcProviderArn and subjects need create: true")
        return None
    provider = _optional_string(table, "oidcProviderArn", "deployRole")
    if provider is not None and not _OIDC_PROVIDER_ARN.fullmatch(provider):
        raise SettingsError(
            f"chatops:deployRole.oidcProviderArn: expected arn:aws:iam::<account>:oidc-provider/{GITHUB_OIDC_HOST}"
        )
    subjects = _strings(table, "subjects", "deployRole") or tuple(f"environment:{name}" for name in environments)
    for subject in subjects:
        if subject.startswith("repo:") or not _OIDC_SUBJECT.fullmatch(subject):
            raise SettingsError(
                f"chatops:deployRole.subjects: {subject!r} is not what follows repo:<owner>/<name>: in a GitHub "
                "token (e.g. environment:prod, ref:refs/heads/main)"
            )
    return DeployRole(oidc_provider_arn=provider, subjects=subjects)


def load(stack: str) -> Settings:
    """The running stack's settings, from ``pulumi.Config("chatops")``. A secret key is only looked at: its value
    stays a secret ``Output`` (:func:`stack_secret`); set in plain text, it is refused."""
    import pulumi  # noqa: PLC0415 — the pure part of this module needs no Pulumi runtime

    config = pulumi.Config(NAMESPACE)
    held: set[Secret] = set()
    for secret, key in SECRET_KEYS.items():
        if config.get_secret(key) is None:
            continue
        if not pulumi.runtime.is_config_secret(config.full_key(key)):
            raise SettingsError(
                f"chatops:{key} is stored in plain text in Pulumi.{stack}.yaml: remove it (pulumi config rm "
                f"chatops:{key}), set it again with --secret, and replace the credential, which was in a file"
            )
        held.add(secret)
    values: dict[str, Any] = {}
    for key in sorted(KEYS):
        raw = config.get(key)
        if raw is None:
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw  # a plain string (an e-mail address, a path)
    return from_values(stack, values, stack_secrets=frozenset(held))


def stack_secret(secret: Secret) -> pulumi.Output[str]:
    """The secret's value as Pulumi holds it: a secret ``Output``, never plain text (the stack must hold it)."""
    import pulumi  # noqa: PLC0415

    return pulumi.Config(NAMESPACE).require_secret(SECRET_KEYS[secret])


# ---------------------------------------------------------------------------------------------- reading
def _only(table: Mapping[str, Any], where: str, known: set[str]) -> Mapping[str, Any]:
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"chatops:{where}.{unknown[0]}: not a key (known: {', '.join(sorted(known))})")
    return table


def _table(values: Mapping[str, Any], key: str, where: str | None = None) -> Mapping[str, Any]:
    value = values.get(key, {})
    if not isinstance(value, dict):
        raise SettingsError(f"chatops:{where or key}: expected a mapping")
    return value


def _strings(values: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = values.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SettingsError(f"chatops:{where}.{key}: expected a list of strings")
    return tuple(value)


def _names(values: Mapping[str, Any], key: str) -> tuple[str, ...]:
    names = values.get(key)
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise SettingsError(f"chatops:{key}: expected a list of at least one name")
    return tuple(names)


def _optional_string(values: Mapping[str, Any], key: str, where: str) -> str | None:
    value = values.get(key)
    if value is not None and not isinstance(value, str):
        raise SettingsError(f"chatops:{where}.{key}: expected a string")
    return value or None


def _int(values: Mapping[str, Any], key: str, default: int) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"chatops:{key}: expected a whole number")
    return value


def _bool(values: Mapping[str, Any], key: str, *, default: bool, where: str | None = None) -> bool:
    value = values.get(key, default)
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise SettingsError(f"chatops:{where or key}: expected true or false")
    return value
