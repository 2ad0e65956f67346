"""The configuration's schema: every key of the workers' TOML and of the Pulumi stack config, with its type, its
default and what it means, and the rules between keys. Data and a checker; the workers
(:mod:`workers.protocol.config`) and infra (:mod:`infra.settings`) both import it, so it imports nothing of ours.

One tree serves both forms. The TOML writes ``slack.team_ids``; the stack writes ``chatops:slack`` with ``teamIds``
inside (camelCase; names a user chooses — components, environments, group ids — stay as written). A key marked
:attr:`Where.STACK` is the deployment's alone (tables, alarms, the artifact, the deploy role; the four secrets, known
but never read: they stay encrypted with Pulumi); every other key the Pulumi program renders into the workers' TOML
(:func:`render_toml`). :func:`check` reads either form and fails closed: an unknown key, a wrong type or a broken
rule is one line naming the key and the file or stack — nothing is ignored.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Final


# ----------------------------------------------------------------------------------------- the vocabulary
class Action(StrEnum):
    """The commands that dispatch a workflow (under a lock, unless ``requires_lock`` is false)."""

    BUILD = "build"
    DEPLOY = "deploy"

    @property
    def slash(self) -> str:
        return f"/{self.value}"


class LockScope(StrEnum):
    """What one lock of a command covers: which requests of it exclude each other (:func:`lock_key`)."""

    COMPONENT_ENVIRONMENT = "component-environment"
    COMPONENT = "component"
    ENVIRONMENT = "environment"
    GLOBAL = "global"


class Conflict(StrEnum):
    """A command's conflict policy: ``reject`` (told who holds the lock) or ``queue`` (waits its turn)."""

    REJECT = "reject"
    QUEUE = "queue"


def lock_key(action: Action, scope: LockScope, component: str, environment: str) -> str:
    """The lock a request takes: ``build-router-plt``, ``build-router``, ``build-plt`` or ``build``.

    Two requests of one command exclude each other exactly when their keys are equal. The key is one word of
    ``[a-z0-9_.-]`` (it travels in a run's name) and starts with the command, which :func:`workers.protocol.runs.
    action_of` reads back."""
    parts = {
        LockScope.COMPONENT_ENVIRONMENT: (component, environment),
        LockScope.COMPONENT: (component,),
        LockScope.ENVIRONMENT: (environment,),
        LockScope.GLOBAL: (),
    }[scope]
    return "-".join((action.value, *parts))


RESERVED_NAMES: Final = frozenset(
    {"help", "status", "unlock", "cancel", "history", "dequeue", "stats", "freeze", "unfreeze", "rollback", "*"}
)
"""Words the parser gives a meaning of its own; a component or environment may not be called so."""

NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,38}")
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
"""A Slack user id (``U…``, ``W…`` on Enterprise Grid): what ``<@…>`` may mention."""
SLACK_GROUP_ID = re.compile(r"S[A-Z0-9]{2,20}")
SLACK_TEAM_ID = re.compile(r"[TE][A-Z0-9]{2,20}")
SLACK_APP_ID = re.compile(r"A[A-Z0-9]{2,20}")
REPOSITORY = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
WORKFLOW = re.compile(r"[A-Za-z0-9_.-]+\.ya?ml|[0-9]+")
HOST = re.compile(r"([a-z0-9.-]{1,253}|\[[0-9a-f:]+\])(:[0-9]{1,5})?")
"""A host name, optionally with a port: ``127.0.0.1:8123`` allows that port only (the local stack's Slack)."""
HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
SECRET_MEANINGS: Final = (
    ("SLACK_SIGNING_SECRET", "Slack's signing secret (the app's Basic Information)"),
    ("SLACK_BOT_TOKEN", "the Slack app's bot token (xoxb-…, OAuth & Permissions)"),
    ("GITHUB_TOKEN", "the GitHub token that dispatches the workflows and finds their runs"),
    ("GITHUB_WEBHOOK_SECRET", "the GitHub webhook's secret (workflow_run events)"),
)
"""The four secrets, by the name the workers read them under, and what each is."""
SECRET_NAME = re.compile("|".join(name for name, _ in SECRET_MEANINGS))
GITHUB_OIDC_HOST: Final = "token.actions.githubusercontent.com"
OIDC_PROVIDER_ARN = re.compile(rf"arn:aws:iam::\d{{12}}:oidc-provider/{re.escape(GITHUB_OIDC_HOST)}")
OIDC_SUBJECT = re.compile(r"(?!repo:)[A-Za-z0-9_.:/*?-]+")
"""What follows ``repo:<owner>/<name>:`` in a GitHub OIDC token's ``sub`` (the role adds that part itself)."""
GIT_REVISION = re.compile(r"\S(.*\S)?")
PARAMETER_NAME = re.compile(r"/[A-Za-z0-9_.\-/]{1,1010}")
TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""A freeze window's days, Monday first (``datetime.weekday()``'s order)."""
WEEKDAY = re.compile("|".join(WEEKDAYS))
CLOCK_TIME = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
WINDOW_END = re.compile(rf"(?:(?P<day>{WEEKDAY.pattern}) )?(?P<time>{CLOCK_TIME.pattern})")
"""A weekly window's end: ``09:00`` (the next 09:00 after its start) or ``mon 09:00`` (the next Monday 09:00)."""
LOCAL_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]" + CLOCK_TIME.pattern)
ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
WINDOW_REASON = re.compile(r"\S[^\n]{0,199}")
LOG_RETENTION_DAYS: Final = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)
"""The retentions CloudWatch Logs accepts."""


# ---------------------------------------------------------------------------------------------- key kinds
@dataclass(frozen=True)
class Text:
    """A string matching ``pattern``; ``what`` names it in errors (``a Slack app id (A…)``)."""

    pattern: re.Pattern[str]
    what: str


@dataclass(frozen=True)
class Texts:
    """A list of distinct strings, each matching ``pattern``."""

    pattern: re.Pattern[str]
    what: str
    at_least_one: bool = False
    reserved: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Flag:
    """``true`` or ``false``."""


@dataclass(frozen=True)
class Whole:
    """A whole number from ``low`` to ``high``, or one of ``allowed``."""

    low: int = 1
    high: int | None = None
    allowed: frozenset[int] = frozenset()


@dataclass(frozen=True)
class StackSecret:
    """A secret the stack holds encrypted (``pulumi config set --secret``): known, never read, never a value
    (:data:`SECRET_HELD` stands for it); in plain text, refused."""


@dataclass(frozen=True)
class Choice:
    """One of an enumeration's values."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table of named keys; any other key is an error."""

    keys: tuple[Key, ...]

    def key(self, name: str) -> Key | None:
        return next((key for key in self.keys if key.name == name), None)


@dataclass(frozen=True)
class MapOf:
    """A table whose keys the user names (``placeholder`` in the reference), each matching ``pattern``."""

    pattern: re.Pattern[str]
    what: str
    placeholder: str
    value: Kind


Kind = Text | Texts | Flag | Whole | Choice | Table | MapOf | StackSecret


class Where(Enum):
    BOTH = "both"
    """In the TOML, and in the stack (which renders it into the TOML)."""
    STACK = "stack"
    """In the stack only: how it is deployed."""


class Form(StrEnum):
    """How a configuration is written: the workers' TOML file, or a Pulumi stack's ``chatops:`` config."""

    FILE = "file"
    STACK = "stack"


STACK_NAMESPACE: Final = "chatops"
"""A stack's keys are ``chatops:<key>``."""

REQUIRED: Final = object()
"""The default of a key that must be given."""


@dataclass(frozen=True)
class Key:
    name: str
    """As the TOML writes it (snake_case); the stack's name is :meth:`named`."""
    kind: Kind
    doc: str
    default: Any = None
    """``None``: absent (nothing configured); :data:`REQUIRED`: must be given."""
    where: Where = Where.BOTH
    env: str | None = None
    """An environment variable that overrides it in the workers (lists: comma-separated)."""
    shown_default: str | None = None
    """The default as the reference shows it, when it is not a value (``chatops-<stack>-locks``)."""

    def named(self, form: Form) -> str:
        if form is Form.FILE:
            return self.name
        head, *rest = self.name.split("_")
        return head + "".join(word.capitalize() for word in rest)

    def in_form(self, form: Form) -> bool:
        return form is Form.STACK or self.where is Where.BOTH


# ------------------------------------------------------------------------------------------------ the keys
def _audience(what: str) -> Table:
    return Table(
        (
            Key("anyone", Flag(), f"{what}: anyone in a served workspace", False),
            Key("users", Texts(SLACK_USER_ID, "a Slack user id (U…)"), f"{what}: these users", []),
            Key("groups", Texts(SLACK_GROUP_ID, "a Slack user-group id (S…)"), f"{what}: these groups' members", []),
        )
    )


DEFAULT_GITHUB_API_URL: Final = "https://api.github.com"
_WORKFLOW_TEXT = Text(WORKFLOW, "a workflow file name (build.yml) or id")


def _command(action: Action, workflow: str, lease_seconds: int) -> Key:
    return Key(
        action.value,
        Table(
            (
                Key("workflow", _WORKFLOW_TEXT, f"the workflow {action.slash} dispatches", workflow),
                Key(
                    "lease_seconds",
                    Whole(60, 86_400),
                    f"how long {action.slash}'s lock is held without renewal (the reaper renews it while the run goes)",
                    lease_seconds,
                ),
                Key(
                    "requires_lock",
                    Flag(),
                    f"false: {action.slash} dispatches at once, without a lock (nothing queues or is refused)",
                    True,
                ),
                Key(
                    "lock_scope",
                    Choice(tuple(LockScope)),
                    f"what one {action.slash} lock covers: a component in an environment, a component, an "
                    "environment, or everything",
                    LockScope.COMPONENT_ENVIRONMENT.value,
                ),
                Key(
                    "conflict",
                    Choice(tuple(Conflict)),
                    f"a {action.slash} meeting a held lock: reject (told who holds it) or queue (waits its turn)",
                    Conflict.REJECT.value,
                ),
            )
        ),
        f"{action.slash}: its workflow and its lock",
    )


SCHEMA: Final = Table(
    (
        Key(
            "components",
            Texts(NAME, "a lower-case name (a-z, 0-9, '.', '_', '-')", at_least_one=True, reserved=RESERVED_NAMES),
            "what /build and /deploy may name",
            REQUIRED,
        ),
        Key(
            "environments",
            Texts(NAME, "a lower-case name (a-z, 0-9, '.', '_', '-')", at_least_one=True, reserved=RESERVED_NAMES),
            "where /build and /deploy may go",
            REQUIRED,
        ),
        Key(
            "github",
            Table(
                (
                    Key(
                        "repository",
                        Text(REPOSITORY, "owner/name"),
                        "the repository whose workflows are dispatched, unless a component names its own",
                        REQUIRED,
                        env="GITHUB_REPOSITORY",
                    ),
                    Key(
                        "api_url",
                        Text(HTTP_URL, "an http(s) URL"),
                        "GitHub's REST API (GitHub Enterprise: https://HOST/api/v3)",
                        DEFAULT_GITHUB_API_URL,
                        env="GITHUB_API_URL",
                    ),
                    Key(
                        "components",
                        MapOf(
                            NAME,
                            "a component",
                            "<component>",
                            Table(
                                (
                                    Key(
                                        "repository",
                                        Text(REPOSITORY, "owner/name"),
                                        "the component's own repository",
                                        shown_default="the default repository",
                                    ),
                                    Key(
                                        "workflows",
                                        Table(
                                            tuple(
                                                Key(
                                                    action.value,
                                                    _WORKFLOW_TEXT,
                                                    f"the component's own {action.slash} workflow",
                                                    shown_default="the command's workflow",
                                                )
                                                for action in Action
                                            )
                                        ),
                                        "the component's own workflows, by command",
                                    ),
                                )
                            ),
                        ),
                        "components whose runs live in another repository or workflow",
                        {},
                    ),
                )
            ),
            "where the workflows are",
        ),
        Key(
            "slack",
            Table(
                (
                    Key(
                        "team_ids",
                        Texts(SLACK_TEAM_ID, "a Slack team id (T…)"),
                        "the workspaces served; a request from any other is refused",
                        [],
                        env="SLACK_TEAM_IDS",
                    ),
                    Key(
                        "app_id",
                        Text(SLACK_APP_ID, "a Slack app id (A…)"),
                        "the Slack app served; a request from any other is refused",
                        env="SLACK_APP_ID",
                    ),
                    Key(
                        "allow_any_workspace",
                        Flag(),
                        "true: serve any workspace or app that team_ids or app_id leaves unnamed (a local stack); "
                        "false: both must be named",
                        False,
                    ),
                    Key(
                        "response_url_hosts",
                        Texts(HOST, "a host name (host:port: that port only)"),
                        "the hosts a reply's response_url may point at (https; loopback may be http)",
                        ["hooks.slack.com"],
                        env="RESPONSE_URL_HOSTS",
                    ),
                    Key(
                        "api_url",
                        Text(HTTP_URL, "an http(s) URL"),
                        "Slack's Web API",
                        "https://slack.com/api/",
                        env="SLACK_API_URL",
                    ),
                    Key(
                        "user_groups",
                        MapOf(
                            SLACK_GROUP_ID,
                            "a Slack user-group id (S…)",
                            "<group>",
                            Texts(SLACK_USER_ID, "a Slack user id (U…)"),
                        ),
                        "a group's members, instead of asking Slack (usergroups.users.list)",
                        {},
                    ),
                )
            ),
            "which Slack workspace and app are served, and where replies may go",
        ),
        Key(
            "commands",
            Table((_command(Action.BUILD, "build.yml", 600), _command(Action.DEPLOY, "deploy.yml", 1800))),
            "what each command dispatches and how it locks",
        ),
        Key(
            "authorization",
            Table(
                (
                    Key("admins", _audience("admins"), "who may force-unlock, cancel anyone's run and freeze"),
                    *(
                        Key(
                            action.value,
                            MapOf(
                                re.compile(rf"\*|{NAME.pattern}"),
                                'an environment or "*"',
                                "<environment>",
                                _audience(f"may {action.value}"),
                            ),
                            f'who may {action.slash} in an environment ("*": every environment without a rule); '
                            "no rule: nobody",
                            {},
                        )
                        for action in Action
                    ),
                )
            ),
            "who may do what",
        ),
        Key(
            "freeze_windows",
            MapOf(
                NAME,
                "an environment",
                "<environment>",
                MapOf(
                    NAME,
                    "a window name (a lower-case name)",
                    "<window>",
                    Table(
                        (
                            Key(
                                "reason",
                                Text(WINDOW_REASON, "one line of 1 to 200 characters"),
                                "what a refused deploy is told",
                                REQUIRED,
                            ),
                            Key(
                                "zone",
                                Text(ZONE_NAME, "an IANA time zone (Europe/Berlin, UTC)"),
                                "the time zone the window's times are read in",
                                REQUIRED,
                            ),
                            Key(
                                "days",
                                Texts(WEEKDAY, "a day (mon, tue, wed, thu, fri, sat, sun)"),
                                "weekly: the days an occurrence starts on",
                                [],
                            ),
                            Key(
                                "start",
                                Text(CLOCK_TIME, "a time of day (HH:MM)"),
                                "weekly: when an occurrence starts, on each of the days",
                            ),
                            Key(
                                "end",
                                Text(WINDOW_END, "a time of day (HH:MM), or a day and a time (mon 09:00)"),
                                "weekly: when an occurrence ends — the next such time after its start",
                            ),
                            Key(
                                "starts_at",
                                Text(LOCAL_DATE_TIME, "a local date and time (2026-12-21 09:00), quoted"),
                                "one-off: when the window starts",
                            ),
                            Key(
                                "ends_at",
                                Text(LOCAL_DATE_TIME, "a local date and time (2027-01-04 09:00), quoted"),
                                "one-off: when the window ends",
                            ),
                        )
                    ),
                ),
            ),
            "scheduled freezes of an environment, each a weekly or one-off window (docs/architecture.md)",
            {},
        ),
        Key(
            "enable_distributed_lock",
            Flag(),
            "the lock switch: false dispatches every command without a lock",
            True,
            env="ENABLE_DISTRIBUTED_LOCK",
        ),
        # ------------------------------------------------------------------- the deployment's own (the stack)
        Key(
            "alarm_email",
            Text(EMAIL, "an e-mail address"),
            "who gets the alarms",
            REQUIRED,
            Where.STACK,
        ),
        Key(
            "ssm_parameters",
            MapOf(
                SECRET_NAME,
                f"a secret ({', '.join(name for name, _ in SECRET_MEANINGS)})",
                "<SECRET>",
                Text(PARAMETER_NAME, "an SSM parameter name starting with '/' (no wildcard)"),
            ),
            "the SSM SecureString parameter that holds each secret (its name, never its value)",
            {},
            Where.STACK,
            shown_default="`/chatops/<stack>/<secret-name>`",
        ),
        *(
            Key(
                name.lower(),
                StackSecret(),
                f"{what}: the program writes it to its SSM parameter",
                where=Where.STACK,
                shown_default="none: its parameter is made by hand",
            )
            for name, what in SECRET_MEANINGS
        ),
        Key(
            "powertools_layer_version",
            Whole(1),
            "Powertools from the public layer of this version; absent: bundled in the artifact",
            where=Where.STACK,
        ),
        Key(
            "lock_table_name",
            Text(TABLE_NAME, "a DynamoDB table name"),
            "the lock table",
            where=Where.STACK,
            shown_default="`chatops-<stack>-locks`",
        ),
        Key(
            "idempotency_table_name",
            Text(TABLE_NAME, "a DynamoDB table name"),
            "the table of requests that ran (Powertools Idempotency)",
            where=Where.STACK,
            shown_default="`chatops-<stack>-idempotency`",
        ),
        Key(
            "history_table_name",
            Text(TABLE_NAME, "a DynamoDB table name"),
            "the lock history (30 days)",
            where=Where.STACK,
            shown_default="`chatops-<stack>-history`",
        ),
        Key(
            "log_retention_days",
            Whole(allowed=LOG_RETENTION_DAYS),
            "how long the functions' logs are kept",
            30,
            Where.STACK,
        ),
        Key(
            "max_receive_count",
            Whole(1, 1000),
            "deliveries of a message before it goes to its dead-letter queue",
            5,
            Where.STACK,
        ),
        Key(
            "artifact",
            Text(re.compile(r"\S+\.zip"), "a .zip path"),
            "the Lambda artifact (nox -s package), relative to the repository",
            "build/lambda.zip",
            Where.STACK,
        ),
        Key(
            "deploy_role",
            Table(
                (
                    Key(
                        "create",
                        Flag(),
                        "true: make the role the deploy workflows assume with GitHub's OIDC token, the fencing-check "
                        "policy attached",
                        False,
                    ),
                    Key(
                        "oidc_provider_arn",
                        Text(OIDC_PROVIDER_ARN, f"arn:aws:iam::ACCOUNT:oidc-provider/{GITHUB_OIDC_HOST}"),
                        "the account's GitHub OIDC provider (an account has one); needs create",
                        shown_default="none: the stack makes it",
                    ),
                    Key(
                        "subjects",
                        Texts(
                            OIDC_SUBJECT,
                            "what follows repo:OWNER/NAME: in a GitHub token (e.g. environment:prod, "
                            "ref:refs/heads/main)",
                        ),
                        "the token subjects the role accepts, in each repository a command dispatches to; needs create",
                        [],
                        shown_default="`environment:<environment>` for each environment",
                    ),
                )
            ),
            "the deploy workflows' role (docs/deploying.md)",
            where=Where.STACK,
        ),
        Key(
            "cli",
            Table(
                (
                    Key(
                        "repository",
                        Text(REPOSITORY, "owner/name"),
                        "where the deploy workflow installs the chatops CLI from: this project on GitHub",
                    ),
                    Key("version", Text(GIT_REVISION, "a tag or commit"), "the tag or commit of it you trust"),
                )
            ),
            "the chatops CLI the example workflows install",
            where=Where.STACK,
        ),
    )
)
"""Every key there is. The reference in docs/configuration.md is held to it by a test."""


def walk(table: Table = SCHEMA, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Key]]:
    """Every key with its path (a key the user names appears as its placeholder, ``<component>``), depth first."""
    for key in table.keys:
        here = (*path, key.name)
        yield here, key
        kind = key.kind
        while isinstance(kind, MapOf):
            here = (*here, kind.placeholder)
            kind = kind.value
        if isinstance(kind, Table):
            yield from walk(kind, here)


MOVED: Final[Mapping[tuple[str, ...], tuple[str, ...]]] = {
    ("admins",): ("authorization", "admins"),
    ("github", "workflows"): ("commands", "<command>", "workflow"),
}
"""Keys an earlier stack file wrote elsewhere, and where they are now."""


def defaults(path: Sequence[str]) -> dict[str, Any]:
    """The defaults of the table at ``path`` (``("commands", "build")``), as :func:`check` fills them in."""
    kind: Kind = SCHEMA
    for part in path:
        key = kind.key(part) if isinstance(kind, Table) else None
        if key is None:
            raise KeyError(f"no table {'.'.join(path)} in the schema")
        kind = key.kind
    if not isinstance(kind, Table):
        raise KeyError(f"{'.'.join(path)} is not a table")
    return _Reader(Form.FILE, "").table({}, kind, tuple(path))


ENV_NAMES: Final = tuple(key.env for _, key in walk() if key.env)
"""Every environment variable that overrides a key."""


def display(path: Sequence[str], form: Form) -> str:
    """A key's path as its form writes it: ``slack.team_ids`` in the TOML, ``chatops:slack.teamIds`` in a stack."""
    shown: list[str] = []
    kind: Kind | None = SCHEMA
    for part in path:
        if isinstance(kind, Table) and (key := kind.key(part)) is not None:
            shown.append(key.named(form))
            kind = key.kind
        else:
            shown.append(part)
            kind = kind.value if isinstance(kind, MapOf) else None
    return (f"{STACK_NAMESPACE}:" if form is Form.STACK else "") + ".".join(shown)


# --------------------------------------------------------------------------------------------- checking
SECRET_HELD: Final = "[secret]"  # noqa: S105 — a marker, no secret
"""What stands for a value the stack holds encrypted, in what :func:`check` reads."""
SECRET_IN_PLAIN_TEXT: Final = "[plain text]"  # noqa: S105 — a marker, no secret
"""What stands for a stack secret's key whose value is not encrypted: refused, the value carried no further."""
STACK_SECRET_KEYS: Final[Mapping[str, str]] = {
    key.name.upper(): key.named(Form.STACK) for key in SCHEMA.keys if isinstance(key.kind, StackSecret)
}
"""Each secret's stack key: ``GITHUB_TOKEN`` → ``githubToken`` (``pulumi config set --secret chatops:githubToken``)."""


def stack_values(config: Mapping[str, Any], secret_keys: Collection[str] = ()) -> dict[str, Any]:
    """A stack's ``chatops:`` keys (namespace dropped) from its config as the program or the stack file has it.

    The CLI passes every value as a string — objects, lists, numbers and booleans as JSON (``pulumi config set
    chatops:maxReceiveCount 5`` is ``"5"``) — so a string is decoded when it is JSON. A secret as the stack file
    keeps it (``{secure: …}``) is never decrypted here: it stands as :data:`SECRET_HELD`. A stack secret's key
    (:data:`STACK_SECRET_KEYS`) never gives its value: :data:`SECRET_HELD` when it is encrypted in the file or one of
    ``secret_keys`` (the keys the program is told are secrets, ``chatops:githubToken``), else
    :data:`SECRET_IN_PLAIN_TEXT`."""
    secrets = set(STACK_SECRET_KEYS.values())
    values: dict[str, Any] = {}
    for full_key, raw in config.items():
        namespace, _, key = str(full_key).partition(":")
        if namespace != STACK_NAMESPACE or not key:
            continue
        encrypted = isinstance(raw, Mapping) and set(raw) == {"secure"}
        if key in secrets:
            values[key] = SECRET_HELD if encrypted or full_key in secret_keys else SECRET_IN_PLAIN_TEXT
            continue
        if encrypted or full_key in secret_keys:  # a secret where no secret belongs: refused, never read
            values[key] = SECRET_HELD
            continue
        try:
            values[key] = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            values[key] = raw  # a plain string (an e-mail address, a path)
    return values


@dataclass(frozen=True)
class Checked:
    """A configuration read against the schema: every key's value (defaults filled, TOML names), or the errors."""

    values: dict[str, Any]
    errors: tuple[str, ...]
    """One line each: ``<source>: <key>: <problem>``."""
    overridden: tuple[str, ...] = ()
    """The environment variables that replaced a value: ``$GITHUB_REPOSITORY``."""


def check(document: Mapping[str, Any], form: Form, source: str, environ: Mapping[str, str] | None = None) -> Checked:
    """``document`` (a parsed TOML file, or a stack's ``chatops:`` keys without the namespace) against the schema;
    then, for the workers, the overrides in ``environ``; then the rules between keys (when nothing else failed).
    ``source`` starts every error line: ``chatops config docs/chatops.toml``, ``Pulumi stack plt``."""
    reader = _Reader(form, source)
    values = reader.table(document, SCHEMA, ())
    overridden = reader.overrides(values, environ or {})
    if not reader.errors:
        for path, problem in _rules(values, form):
            reader.fail(path, problem)
    return Checked(values, tuple(reader.errors), overridden)


@dataclass
class _Reader:
    form: Form
    source: str
    errors: list[str] = field(default_factory=list)
    label: str | None = None
    """Names every error instead of the key's path (an environment variable)."""

    def fail(self, path: Sequence[str], problem: str, *, shown: str | None = None) -> None:
        where = shown or self.label or display(path, self.form)
        self.errors.append(f"{self.source}: {where}: {problem}")

    def table(self, value: Any, table: Table, path: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, "expected a table")
            value = {}
        keys = {key.named(self.form): key for key in table.keys if key.in_form(self.form)}
        for name in value:
            if name not in keys:
                self.unknown(path, str(name), keys)
        out: dict[str, Any] = {}
        for name, key in keys.items():
            here = (*path, key.name)
            if isinstance(key.kind, StackSecret):
                if name in value and value[name] != SECRET_HELD:
                    self.fail(here, _plain_text_secret(here))
                continue  # known; its value stays with Pulumi, never in the values (nor the workers' TOML)
            if name in value:
                out[key.name] = self.value(value[name], key.kind, here)
            elif key.default is REQUIRED:
                self.fail(here, f"missing ({_kind_text(key.kind)})")
                out[key.name] = None
            elif isinstance(key.kind, Table):
                out[key.name] = self.table({}, key.kind, here)
            else:
                out[key.name] = json.loads(json.dumps(key.default))  # a copy, lists and tables included
        return out

    def unknown(self, path: tuple[str, ...], name: str, keys: Mapping[str, Key]) -> None:
        shown = f"{display(path, self.form)}.{name}" if path else display((name,), self.form)
        head, _, rest = name.partition(".")
        if self.form is Form.STACK and not path and rest and head in keys:  # `chatops:slack.teamIds: [...]`
            inner = keys[head].kind
            hint = ""
            if isinstance(inner, Table) and (first := rest.partition(".")[0]) not in inner_names(inner, self.form):
                hint = _did_you_mean(first, {k.named(self.form): k for k in inner.keys}, self.form)
            problem = (
                f"not a key: Pulumi reads it as one key named {name!r}; put {rest} inside chatops:{head} "
                f"(pulumi config set --path 'chatops:{name}' …){hint}"
            )
            self.fail(path, problem, shown=shown)
            return
        moved = MOVED.get((*path, name))
        if moved is not None:
            self.fail(path, f"moved: write it as {display(moved, self.form)}", shown=shown)
            return
        self.fail(path, f"unknown key{_did_you_mean(name, keys, self.form)}", shown=shown)

    def value(self, value: Any, kind: Kind, path: tuple[str, ...]) -> Any:
        match kind:
            case Table():
                return self.table(value, kind, path)
            case MapOf():
                return self.mapping(value, kind, path)
            case Text(pattern=pattern, what=what):
                if not isinstance(value, str) or not pattern.fullmatch(value):
                    self.fail(path, f"expected {what}, not {value!r}")
                return value
            case Texts():
                return self.texts(value, kind, path)
            case Flag():
                if not isinstance(value, bool):
                    self.fail(path, f"expected true or false, not {value!r}")
                return value
            case Whole():
                if isinstance(value, bool) or not isinstance(value, int) or not _whole_fits(kind, value):
                    self.fail(path, f"expected {_kind_text(kind)}, not {value!r}")
                return value
            case Choice(values=choices):
                if value not in choices:
                    self.fail(path, f"expected one of {', '.join(choices)}, not {value!r}")
                return value

    def mapping(self, value: Any, kind: MapOf, path: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, "expected a table")
            return {}
        out: dict[str, Any] = {}
        for name, item in value.items():
            if not isinstance(name, str) or not kind.pattern.fullmatch(name):
                self.fail(path, f"{name!r} is not {kind.what}")
                continue
            out[name] = self.value(item, kind.value, (*path, name))
        return out

    def texts(self, value: Any, kind: Texts, path: tuple[str, ...]) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(path, "expected a list of strings")
            return []
        problems = [f"{item!r} is not {kind.what}" for item in value if not kind.pattern.fullmatch(item)]
        problems += [f"{item!r} is a word of the command syntax" for item in value if item in kind.reserved]
        problems += [f"lists {item!r} twice" for item in sorted({i for i in value if value.count(i) > 1})]
        if kind.at_least_one and not value:
            problems.append("must name at least one")
        for problem in problems[:1]:  # the first says what to fix; the rest would repeat the kind of mistake
            self.fail(path, problem)
        return list(value)

    def overrides(self, values: dict[str, Any], environ: Mapping[str, str]) -> tuple[str, ...]:
        """The environment variables of :data:`ENV_NAMES` that are set replace their keys' values."""
        used: list[str] = []
        for path, key in walk():
            if key.env is None or key.env not in environ:
                continue
            text, parent = environ[key.env].strip(), values
            for part in path[:-1]:
                parent = parent[part]
            if not text and key.default is REQUIRED:
                continue  # set but empty: the file's value stands
            used.append(f"${key.env}")
            reader = _Reader(self.form, self.source, self.errors, label=f"${key.env}")
            if not text:
                parent[key.name] = json.loads(json.dumps(key.default))
            elif isinstance(key.kind, Texts):
                parent[key.name] = reader.texts(
                    [item.strip() for item in text.split(",") if item.strip()], key.kind, path
                )
            elif isinstance(key.kind, Flag):
                flag = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False}
                parent[key.name] = reader.value(flag.get(text.lower(), text), key.kind, path)
            else:
                parent[key.name] = reader.value(text, key.kind, path)
        return tuple(used)


def _plain_text_secret(path: Sequence[str]) -> str:
    """The refusal of a stack secret held in plain text; it never repeats the value."""
    key = display(path, Form.STACK)
    return (
        f"stored in plain text in the stack's file: remove it (pulumi config rm {key}), set it again with --secret, "
        "and replace the credential, which was in a file"
    )


def inner_names(table: Table, form: Form) -> set[str]:
    return {key.named(form) for key in table.keys if key.in_form(form)}


def _whole_fits(kind: Whole, value: int) -> bool:
    if kind.allowed:
        return value in kind.allowed
    return value >= kind.low and (kind.high is None or value <= kind.high)


def _did_you_mean(name: str, keys: Mapping[str, Key], form: Form) -> str:
    """`` (did you mean teamIds?)`` for a near miss, a case slip, or the other form's spelling; else ``(known: …)``."""
    by_other_form = {key.named(other): mine for mine, key in keys.items() for other in Form}
    folded = {known.lower(): mine for known, mine in by_other_form.items()}
    near = difflib.get_close_matches(name, list(keys), n=1, cutoff=0.7)
    cut = [known for known in keys if len(name) >= 3 and known.lower().startswith(name.lower())]  # `repo`
    guess = folded.get(name.lower()) or next(iter(near + cut), None)
    if guess is not None:
        return f" (did you mean {guess}?)"
    return f" (known here: {', '.join(sorted(keys))})"


# --------------------------------------------------------------------------------------------------- rules
def _rules(values: Mapping[str, Any], form: Form) -> Iterator[tuple[tuple[str, ...], str]]:
    """What must hold between keys: each broken rule as (the key to change, the problem)."""
    components, environments = values["components"], values["environments"]
    shared = _shared_lock_key(values)
    if shared is not None:
        yield ("components",), shared
    for action in Action:
        for environment in values["authorization"][action.value]:
            if environment != "*" and environment not in environments:
                where = ("authorization", action.value, environment)
                yield where, f"unknown environment (environments: {', '.join(environments)})"
    for component in values["github"]["components"]:
        if component not in components:
            yield ("github", "components", component), f"unknown component (components: {', '.join(components)})"
    yield from _window_rules(values)
    role = values.get("deploy_role")  # a key of the stack alone, so named as a stack writes it
    if role is not None and not role["create"] and (role["oidc_provider_arn"] or role["subjects"]):
        yield ("deploy_role",), "oidcProviderArn and subjects need create: true"
    slack = values["slack"]
    unnamed = [name for name in ("team_ids", "app_id") if not slack[name]]
    if unnamed and not slack["allow_any_workspace"]:
        keys = " and ".join(display(("slack", name), form) for name in unnamed)
        allow = display(("slack", "allow_any_workspace"), form)
        yield (
            ("slack",),
            (
                f"{keys} not set: name the Slack workspace and app this deployment serves, or set {allow} to true to "
                "serve any (a local stack)"
            ),
        )


def _window_rules(values: Mapping[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
    """A freeze window names a known environment and zone, and is either weekly or one-off, never empty."""
    environments = values["environments"]
    weekly, one_off = ("days", "start", "end"), ("starts_at", "ends_at")
    for environment, windows in values["freeze_windows"].items():
        where = ("freeze_windows", environment)
        if environment not in environments:
            yield where, f"unknown environment (environments: {', '.join(environments)})"
            continue
        for name, window in windows.items():
            here = (*where, name)
            if window["zone"] not in bundled_zones():
                yield (*here, "zone"), f"unknown time zone {window['zone']!r} (an IANA name: Europe/Berlin, UTC)"
            given = {key for key in (*weekly, *one_off) if window[key]}
            if given & set(weekly) and given & set(one_off):
                yield here, "either weekly (days, start, end) or one-off (starts_at, ends_at), not both"
            elif given & set(one_off):
                yield from _one_off_rules(window, here)
            elif set(weekly) - given:
                missing = ", ".join(key for key in weekly if key not in given)
                yield here, f"missing {missing}: a weekly window has days, start and end; a one-off starts_at, ends_at"
            else:
                yield from _weekly_rules(window, here)


def _weekly_rules(window: Mapping[str, Any], here: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    end = WINDOW_END.fullmatch(window["end"])
    assert end is not None  # checked against its pattern before the rules run
    if end["time"] == window["start"] and (end["day"] is None or end["day"] in window["days"]):
        yield (*here, "end"), "equals start: an occurrence would be empty, or a whole week"


@functools.cache
def bundled_zones() -> frozenset[str]:
    """The zones of the ``tzdata`` package, which the Lambda artifact bundles (the runtime has no zone database):
    a name only this machine's database knows (``localtime``, ``posixrules``, ``right/UTC``) would pass a check here
    and fail every sweep there."""
    return frozenset(importlib.resources.files("tzdata").joinpath("zones").read_text().split())


def _one_off_rules(window: Mapping[str, Any], here: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    times: list[datetime] = []
    for key in ("starts_at", "ends_at"):
        try:
            times.append(datetime.fromisoformat(window[key]))
        except (TypeError, ValueError):
            yield (*here, key), f"not a date: {window[key]!r}" if window[key] else "missing: a one-off needs both"
            continue
        if not 1970 < times[-1].year < 9999:  # a day's offset either way stays within datetime's years 1 to 9999
            yield (*here, key), f"out of range: {window[key]!r} (a year from 1971 to 9998)"
    if len(times) == 2 and times[1] <= times[0]:
        yield (*here, "ends_at"), "not after starts_at"


def _shared_lock_key(values: Mapping[str, Any]) -> str | None:
    """Two component-environment pairs whose lock keys would be one (``a-b`` in ``c``, ``a`` in ``b-c``), for a
    command whose lock is per component and environment."""
    for action in Action:
        if values["commands"][action.value]["lock_scope"] != LockScope.COMPONENT_ENVIRONMENT:
            continue
        seen: dict[str, tuple[str, str]] = {}
        for component in values["components"]:
            for environment in values["environments"]:
                key = lock_key(action, LockScope.COMPONENT_ENVIRONMENT, component, environment)
                if key in seen:
                    other, other_environment = seen[key]
                    return (
                        f"{component} in {environment} and {other} in {other_environment} would share one lock key "
                        f"({key})"
                    )
                seen[key] = (component, environment)
    return None


# ------------------------------------------------------------------------------------------------ writing
def render_toml(values: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """The TOML the workers read for ``values`` (a :class:`Checked`'s): every key they know, defaults included."""
    lines = [f"# {line}" for line in header]
    _toml_table(values, SCHEMA, (), lines)
    return "\n".join(lines).strip("\n") + "\n"


def _toml_table(values: Mapping[str, Any], table: Table | MapOf, path: tuple[str, ...], lines: list[str]) -> None:
    """One section: its own lines first (TOML puts a section's keys before its sub-sections), then each
    sub-section."""
    entries = [(name, kind) for name, kind in _entries(values, table) if values.get(name) is not None]
    here: list[str] = []
    deeper: list[tuple[str, Table | MapOf]] = []
    for name, kind in entries:
        value = values[name]
        if isinstance(kind, Table | MapOf) and not _inline(kind):
            deeper.append((name, kind))
        elif isinstance(kind, Table | MapOf):
            if inline := _toml_inline(value, kind):
                here.append(f"{_toml_key(name)} = {inline}")
        else:
            here.append(f"{_toml_key(name)} = {_toml_value(value)}")
    if here:
        if path:
            lines += ["", f"[{'.'.join(_toml_key(part) for part in path)}]"]
        lines += here
    for name, kind in deeper:
        _toml_table(values[name], kind, (*path, name), lines)


def _entries(values: Mapping[str, Any], table: Table | MapOf) -> list[tuple[str, Kind]]:
    if isinstance(table, MapOf):
        return [(name, table.value) for name in values]
    return [(key.name, key.kind) for key in table.keys if key.in_form(Form.FILE)]


def _inline(kind: Table | MapOf) -> bool:
    """A small table of plain values (who may, a component's workflows) reads best on one line."""
    return (
        isinstance(kind, Table)
        and len(kind.keys) <= 3
        and not any(isinstance(k.kind, Table | MapOf) for k in kind.keys)
    )


def _toml_inline(value: Mapping[str, Any], kind: Table | MapOf) -> str:
    parts = [
        f"{_toml_key(name)} = {_toml_value(value[name])}"
        for name, _ in _entries(value, kind)
        if value.get(name) is not None
    ]
    return "{ " + ", ".join(parts) + " }" if parts else ""


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value)  # a JSON string is a TOML basic string (same quotes and escapes, \uXXXX included)


def in_form(values: Mapping[str, Any], form: Form, table: Table | MapOf = SCHEMA) -> dict[str, Any]:
    """``values`` with every key named as ``form`` writes it (absent keys left out): the stack's ``chatops:``
    keys from a :class:`Checked`'s values."""
    out: dict[str, Any] = {}
    for name, item in values.items():
        if item is None:
            continue
        key = table.key(name) if isinstance(table, Table) else None
        kind = key.kind if key is not None else table.value if isinstance(table, MapOf) else None
        if key is not None and not key.in_form(form):
            continue
        shown = key.named(form) if key is not None else name
        out[shown] = (
            in_form(item, form, kind) if isinstance(kind, Table | MapOf) and isinstance(item, Mapping) else item
        )
    return out


# ----------------------------------------------------------------------------------------------- reference
@dataclass(frozen=True)
class Row:
    """One key as docs/configuration.md lists it."""

    file_key: str
    stack_key: str
    type: str
    default: str
    meaning: str

    @property
    def markdown(self) -> str:
        cells = (self.file_key, self.stack_key, self.type, self.default, self.meaning)
        return "| " + " | ".join(cells) + " |"


def reference() -> list[Row]:
    """Every key that holds a value (not the tables that group them), in the schema's order."""
    rows = []
    for path, key in walk():
        kind, leaf = key.kind, path
        while isinstance(kind, MapOf):
            leaf = (*leaf, kind.placeholder)
            kind = kind.value
        if isinstance(kind, Table):
            continue
        top = SCHEMA.key(path[0])  # the keys of a table of the stack alone are the stack's alone too
        in_file = key.where is Where.BOTH and (top is None or top.where is Where.BOTH)
        file_key = f"`{display(leaf, Form.FILE)}`" if in_file else "—"
        meaning = key.doc + (f"; `${key.env}` overrides it" if key.env else "")
        rows.append(Row(file_key, f"`{display(leaf, Form.STACK)}`", _kind_text(kind), _default_text(key), meaning))
    return rows


def _kind_text(kind: Kind) -> str:
    match kind:
        case Text(what=what):
            return what
        case Texts(what=what, at_least_one=at_least_one):
            return f"a list{' (at least one)' if at_least_one else ''}, each {what}"
        case Flag():
            return "true or false"
        case Whole(low=low, high=high, allowed=allowed):
            if allowed:
                return f"one of {', '.join(str(n) for n in sorted(allowed))}"
            return f"a whole number from {low}" + (f" to {high}" if high is not None else "")
        case Choice(values=choices):
            return "one of " + ", ".join(choices)
        case MapOf(placeholder=placeholder, value=value):
            return f"{placeholder} = {_kind_text(value)}"
        case Table():
            return "a table"
        case StackSecret():
            return "a stack secret (pulumi config set --secret)"


def _default_text(key: Key) -> str:
    if key.default is REQUIRED:
        return "required"
    if key.shown_default is not None:
        return key.shown_default
    if key.default is None:
        return "none"
    return f"`{_toml_value(key.default)}`" if not isinstance(key.default, dict) else "none"
