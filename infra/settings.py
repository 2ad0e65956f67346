"""The stack's configuration (``Pulumi.<stack>.yaml``, namespace ``chatops``), read once, checked, typed.

No secret is ever configuration: the four secrets live in SSM SecureString parameters whose *names* are
configured here (``chatops:ssmParameters``); the functions read them at run time.

:func:`from_values` is pure (the tests call it with the parsed YAML); :func:`load` reads ``pulumi.Config``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from infra.roster import SECRETS, Secret

NAMESPACE: Final = "chatops"
REPOSITORY_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_ARTIFACT: Final = "build/lambda.zip"
LOG_RETENTION_DAYS: Final = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)

#: Every key this program reads (without the ``chatops:`` namespace); any other key is a typo.
KEYS: Final = frozenset(
    {
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


class SettingsError(Exception):
    """The stack configuration cannot be used; the message names the key (``chatops:…``) and what is wrong."""


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

    @property
    def prefix(self) -> str:
        """Every physical name starts so: ``chatops-plt``."""
        return f"{NAMESPACE}-{self.stack}"


def from_values(stack: str, values: Mapping[str, Any], root: Path = REPOSITORY_ROOT) -> Settings:
    """Settings from ``values`` (keys without the namespace, values as YAML gives them)."""
    unknown = sorted(set(values) - KEYS)
    if unknown:
        raise SettingsError(f"chatops:{unknown[0]}: not a key this program reads (known: {', '.join(sorted(KEYS))})")
    prefix = f"{NAMESPACE}-{stack}"
    github = _table(values, "github")
    slack = _table(values, "slack")
    admins = _table(values, "admins")
    workflows = _table(github, "workflows", "github.workflows")
    parameters = _table(values, "ssmParameters")
    missing = [name for name in SECRETS if name not in parameters]
    if missing or set(parameters) - set(SECRETS):
        raise SettingsError(f"chatops:ssmParameters: expected exactly {', '.join(SECRETS)} (missing {missing})")
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
    return Settings(
        stack=stack,
        components=_names(values, "components"),
        environments=_names(values, "environments"),
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
    )


def load(stack: str) -> Settings:
    """The running stack's settings, from ``pulumi.Config("chatops")``."""
    import pulumi  # noqa: PLC0415 — the pure part of this module needs no Pulumi runtime

    config = pulumi.Config(NAMESPACE)
    values: dict[str, Any] = {}
    for key in sorted(KEYS):
        raw = config.get(key)
        if raw is None:
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw  # a plain string (an e-mail address, a path)
    return from_values(stack, values)


# ---------------------------------------------------------------------------------------------- reading
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


def _bool(values: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = values.get(key, default)
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise SettingsError(f"chatops:{key}: expected true or false")
    return value
