"""The command configuration: what each slash command does, what it may name, who may run it, where it goes.

What a command *is* (``/build`` takes a lock scoped to component and environment for 10 minutes and dispatches a
workflow) lives in :data:`COMMANDS`; what a deployment *allows* (components, environments, the repository, the
Slack workspace and app, who may build or deploy where, who is an admin) comes from a TOML file, so that a team
changes it without changing code. The file is named by ``CHATOPS_CONFIG`` (default ``docs/chatops.toml``); a few
environment variables override it (see :data:`ENV_OVERRIDES`). A bad file fails :func:`load_config` with one
line naming the file and the field.

The file's shape (every table optional except ``components`` and ``environments``)::

    components = ["router", "api"]
    environments = ["plt", "prod"]

    [github]
    repository = "example-org/platform"      # owner/name; GITHUB_REPOSITORY overrides

    [slack]
    team_ids = ["T0123"]                     # empty or absent: any workspace
    app_id = "A0123"                         # absent: any app
    response_url_hosts = ["hooks.slack.com"] # replies go only to these hosts
    [slack.user_groups]                      # optional: members of a group, instead of asking Slack
    S0PLATFORM = ["U0ALICE"]

    [commands.build]                         # optional overrides of COMMANDS
    workflow = "build.yml"
    lease_seconds = 600

    [authorization]
    admins = { users = ["U0ADMIN"], groups = [] }    # may force-unlock
    [authorization.build]
    "*" = { anyone = true }                  # "*": every environment without its own rule
    [authorization.deploy]
    "*" = { anyone = true }
    prod = { groups = ["S0PLATFORM"] }

No rule for a command and environment (not even ``"*"``) means nobody may run it there: deny by default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

CONFIG_ENV = "CHATOPS_CONFIG"
DEFAULT_CONFIG_PATH = "docs/chatops.toml"
DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_RESPONSE_URL_HOSTS = ("hooks.slack.com",)

#: Environment variables read on top of the file. Lists are comma-separated and replace the file's list.
ENV_OVERRIDES = {
    "GITHUB_API_URL": "GitHub's REST API base URL (GitHub Enterprise: https://HOST/api/v3)",
    "GITHUB_REPOSITORY": "owner/name of the repository whose workflows are dispatched",
    "SLACK_API_URL": "Slack Web API base URL (default https://slack.com/api/)",
    "SLACK_TEAM_IDS": "accepted workspace ids; empty: any",
    "SLACK_APP_ID": "accepted app id; empty: any",
    "RESPONSE_URL_HOSTS": "hosts a response_url may point at (the local stack adds its Slack's 127.0.0.1:PORT)",
    "ENABLE_DISTRIBUTED_LOCK": "'false' dispatches without locking (the rollback switch); default true",
}

# Words the parser gives a meaning of its own; a component or environment may not be called so.
RESERVED_NAMES = frozenset(
    {"help", "status", "unlock", "cancel", "history", "dequeue", "stats", "freeze", "unfreeze", "*"}
)

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,38}")
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
"""A Slack user id (``U…``, ``W…`` on Enterprise Grid): what ``<@…>`` may mention."""
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,20}")
_TEAM_ID = re.compile(r"[TE][A-Z0-9]{2,20}")
_APP_ID = re.compile(r"A[A-Z0-9]{2,20}")
_REPO_PART = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_WORKFLOW = re.compile(r"[A-Za-z0-9_.-]+\.ya?ml|[0-9]+")
_HOST = re.compile(r"([a-z0-9.-]{1,253}|\[[0-9a-f:]+\])(:[0-9]{1,5})?")
"""A host name, optionally with a port: ``127.0.0.1:8123`` allows that port only (the local stack's Slack)."""


class ConfigError(Exception):
    """The configuration cannot be used. The message is one line: the file, the field and what is wrong."""


# ------------------------------------------------------------------------------------------------ commands
class Action(StrEnum):
    """The commands that dispatch a workflow under a lock; they share one worker implementation."""

    BUILD = "build"
    DEPLOY = "deploy"

    @property
    def slash(self) -> str:
        return f"/{self.value}"


class LockScope(StrEnum):
    COMPONENT_ENVIRONMENT = "component-environment"


class Conflict(StrEnum):
    """A command's conflict policy (``conflict`` in ``[commands.<name>]``); ``--queue`` asks to queue anyway."""

    REJECT = "reject"
    QUEUE = "queue"


@dataclass(frozen=True)
class CommandSpec:
    """What ``/build`` or ``/deploy`` does: the lock it takes, for how long, and the workflow it dispatches."""

    action: Action
    requires_lock: bool
    lock_scope: LockScope
    lease_seconds: int
    workflow: str
    start_message: str
    """In-channel text when the run starts; ``{component}``, ``{environment}`` and ``{ref}`` are filled in."""
    accepts_ref: bool
    conflict: Conflict = Conflict.REJECT
    """What a request meeting a held lock does: ``reject`` (told who holds it) or ``queue`` (waits its turn)."""

    @property
    def slash(self) -> str:
        return self.action.slash

    def lock_key(self, component: str, environment: str) -> str:
        """``build-router-plt``: one lock per action, component and environment."""
        return f"{self.action.value}-{component}-{environment}"

    def start_text(self, component: str, environment: str, ref: str = "") -> str:
        return self.start_message.format(component=component, environment=environment, ref=ref)


COMMANDS: Mapping[Action, CommandSpec] = {
    Action.BUILD: CommandSpec(
        action=Action.BUILD,
        requires_lock=True,
        lock_scope=LockScope.COMPONENT_ENVIRONMENT,
        lease_seconds=600,
        workflow="build.yml",
        start_message="🔨 Building {component} ({environment})…",
        accepts_ref=False,
    ),
    Action.DEPLOY: CommandSpec(
        action=Action.DEPLOY,
        requires_lock=True,
        lock_scope=LockScope.COMPONENT_ENVIRONMENT,
        lease_seconds=1800,
        workflow="deploy.yml",
        start_message="🚀 Deploying {component} ({environment}) at {ref}…",
        accepts_ref=True,
    ),
}


# ------------------------------------------------------------------------------------------------- queues
class Queue(StrEnum):
    """The SQS queues the router writes to; each one's URL comes from its environment variable."""

    BUILD = "build"
    DEPLOY = "deploy"
    STATUS = "status"
    ECHO = "echo"
    GITHUB = "github"

    @property
    def url_env(self) -> str:
        return f"{self.value.upper()}_QUEUE_URL"


#: Which queue each kind of message goes to (the ``kind`` of :class:`workers.protocol.envelope.CommandEnvelope`, plus
#: Slack interactions and GitHub events). Unlock and its confirm button are the status worker's, and so is cancel.
QUEUE_FOR_KIND: Mapping[str, Queue] = {
    "build": Queue.BUILD,
    "deploy": Queue.DEPLOY,
    "status": Queue.STATUS,
    "unlock": Queue.STATUS,
    "cancel": Queue.STATUS,
    "history": Queue.STATUS,
    "stats": Queue.STATUS,
    "freeze": Queue.STATUS,
    "unfreeze": Queue.STATUS,
    "dequeue": Queue.STATUS,
    "echo": Queue.ECHO,
    "interaction": Queue.STATUS,
    "workflow_run": Queue.GITHUB,
}


# ----------------------------------------------------------------------------------------- authorization
@dataclass(frozen=True)
class Audience:
    """Who may do something: anyone, or these users and the members of these Slack user groups."""

    anyone: bool = False
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @property
    def nobody(self) -> bool:
        return not (self.anyone or self.users or self.groups)


NOBODY = Audience()


@dataclass(frozen=True)
class Authorization:
    rules: Mapping[Action, Mapping[str, Audience]]
    """Per action, per environment (or ``"*"`` for the others): who may run it."""
    admins: Audience
    """Who may force-unlock a lock."""

    def audience(self, action: Action, environment: str) -> Audience:
        by_environment = self.rules.get(action, {})
        return by_environment.get(environment) or by_environment.get("*") or NOBODY


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class GitHubSettings:
    owner: str
    name: str
    api_url: str = DEFAULT_GITHUB_API_URL

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class SlackSettings:
    team_ids: frozenset[str] = frozenset()
    """Accepted workspaces; empty: any (the local stack)."""
    app_id: str | None = None
    """Accepted app; None: any."""
    response_url_hosts: frozenset[str] = frozenset(DEFAULT_RESPONSE_URL_HOSTS)
    user_groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Members of user groups as configured; groups not named here are looked up in Slack."""
    api_url: str = DEFAULT_SLACK_API_URL


@dataclass(frozen=True)
class Config:
    components: tuple[str, ...]
    environments: tuple[str, ...]
    commands: Mapping[Action, CommandSpec]
    github: GitHubSettings
    slack: SlackSettings
    authorization: Authorization
    lock_enabled: bool = True
    """False when ``ENABLE_DISTRIBUTED_LOCK=false``: workers dispatch without locking (rollback)."""
    queue_urls: Mapping[Queue, str] = field(default_factory=dict)
    source: str = "<defaults>"

    def queue_url(self, queue: Queue) -> str | None:
        return self.queue_urls.get(queue)

    def response_url_allowed(self, url: str) -> bool:
        """Whether a reply may be sent to ``url``: https on an allowed host (loopback, if allowed, may be http)."""
        return response_url_allowed(url, self.slack.response_url_hosts)


def response_url_allowed(url: str, hosts: frozenset[str], *, allow_loopback: bool = False) -> bool:
    """Whether a reply may go to ``url``: https to one of ``hosts`` (exact, lower-case names; no sub-domains
    implied; a host listed with a port allows that port only), no user info in the URL. A loopback host
    (``127.0.0.0/8``, ``::1``, ``localhost``) may be http or https when it is listed or ``allow_loopback`` is set —
    for the local stack only."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port  # a malformed port raises here
    except ValueError:
        return False
    if not host or parts.username is not None or parts.password is not None:
        return False
    listed = host in hosts or (port is not None and f"{host}:{port}" in hosts)
    if _is_loopback(host) and (allow_loopback or listed):
        return parts.scheme in {"http", "https"}
    return listed and parts.scheme == "https"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------------ loading
def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (``path``, else ``$CHATOPS_CONFIG``, else ``docs/chatops.toml``) and the overrides.

    Raises :class:`ConfigError` with one line on a missing, unreadable or invalid file.
    """
    env = os.environ if environ is None else environ
    source = str(path or env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    try:
        with open(source, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"chatops config {source}: no such file (set {CONFIG_ENV})") from None
    except OSError as error:
        raise ConfigError(f"chatops config {source}: cannot read it: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"chatops config {source}: not valid TOML: {error}") from None
    return _Reader(source).config(document, env)


@lru_cache(maxsize=4)
def _cached(source: str, mtime_ns: int, overrides: tuple[tuple[str, str], ...]) -> Config:
    return load_config(source, dict(overrides))


def current_config() -> Config:
    """:func:`load_config` for this process, read again only when the file or a variable it reads changes."""
    source = os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    try:
        mtime_ns = os.stat(source).st_mtime_ns
    except OSError:
        mtime_ns = -1
    names = (*ENV_OVERRIDES, *(queue.url_env for queue in Queue), CONFIG_ENV)
    overrides = tuple((name, os.environ[name]) for name in sorted(names) if name in os.environ)
    return _cached(source, mtime_ns, overrides)


class _Reader:
    """Turns the parsed TOML into a :class:`Config`, naming the first field that is wrong."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"chatops config {self.source}: {where}: {problem}")

    def table(self, document: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = document.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(where, "expected a table")
        return value

    def strings(self, value: Any, where: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(where, "expected a list of strings")
        for item in value:
            if not pattern.fullmatch(item):
                raise self.fail(where, f"{item!r} is not {what}")
        if len(set(value)) != len(value):
            raise self.fail(where, "lists a value twice")
        return tuple(value)

    def names(self, document: Mapping[str, Any], key: str) -> tuple[str, ...]:
        if key not in document:
            raise self.fail(key, "missing (a list of names)")
        names = self.strings(document[key], key, _NAME, "a lower-case name (a-z, 0-9, '.', '_', '-')")
        if not names:
            raise self.fail(key, "must name at least one")
        for name in names:
            if name in RESERVED_NAMES:
                raise self.fail(key, f"{name!r} is a word of the command syntax")
        return names

    def config(self, document: Mapping[str, Any], env: Mapping[str, str]) -> Config:
        components = self.names(document, "components")
        environments = self.names(document, "environments")
        keys = {f"{c}-{e}" for c in components for e in environments}
        if len(keys) != len(components) * len(environments):
            raise self.fail("components", "two component-environment pairs would share one lock key")
        return Config(
            components=components,
            environments=environments,
            commands=self.commands(self.table(document, "commands", "commands")),
            github=self.github(self.table(document, "github", "github"), env),
            slack=self.slack(self.table(document, "slack", "slack"), env),
            authorization=self.authorization(self.table(document, "authorization", "authorization"), environments),
            lock_enabled=self.flag(env, "ENABLE_DISTRIBUTED_LOCK", default=True),
            queue_urls={queue: env[queue.url_env] for queue in Queue if env.get(queue.url_env)},
            source=self.source,
        )

    def flag(self, env: Mapping[str, str], name: str, *, default: bool) -> bool:
        value = env.get(name, "").strip().lower()
        if not value:
            return default
        if value in {"true", "1", "yes", "on"}:
            return True
        if value in {"false", "0", "no", "off"}:
            return False
        raise ConfigError(f"${name}: expected true or false, not {value!r}")

    def commands(self, table: Mapping[str, Any]) -> Mapping[Action, CommandSpec]:
        specs = dict(COMMANDS)
        for name, overrides in table.items():
            where = f"commands.{name}"
            try:
                action = Action(name)
            except ValueError:
                raise self.fail(where, f"unknown command (known: {', '.join(a.value for a in Action)})") from None
            if not isinstance(overrides, dict) or set(overrides) - {"workflow", "lease_seconds", "conflict"}:
                raise self.fail(where, "expected a table of workflow, lease_seconds and conflict")
            spec = specs[action]
            workflow = overrides.get("workflow", spec.workflow)
            if not isinstance(workflow, str) or not _WORKFLOW.fullmatch(workflow):
                raise self.fail(f"{where}.workflow", "expected a workflow file name (build.yml) or id")
            lease = overrides.get("lease_seconds", spec.lease_seconds)
            if not isinstance(lease, int) or isinstance(lease, bool) or not 60 <= lease <= 86_400:
                raise self.fail(f"{where}.lease_seconds", "expected whole seconds between 60 and 86400")
            try:
                conflict = Conflict(overrides.get("conflict", spec.conflict.value))
            except ValueError:
                raise self.fail(f"{where}.conflict", "expected reject or queue") from None
            specs[action] = CommandSpec(
                action=action,
                requires_lock=spec.requires_lock,
                lock_scope=spec.lock_scope,
                lease_seconds=lease,
                workflow=workflow,
                start_message=spec.start_message,
                accepts_ref=spec.accepts_ref,
                conflict=conflict,
            )
        return specs

    def github(self, table: Mapping[str, Any], env: Mapping[str, str]) -> GitHubSettings:
        repository = env.get("GITHUB_REPOSITORY") or table.get("repository")
        where = "$GITHUB_REPOSITORY" if env.get("GITHUB_REPOSITORY") else "github.repository"
        if not isinstance(repository, str):
            raise self.fail("github.repository", "missing (owner/name)")
        owner, _, name = repository.partition("/")
        if not (_REPO_PART.fullmatch(owner) and _REPO_PART.fullmatch(name)):
            raise self.fail(where, f"expected owner/name, not {repository!r}")
        api_url = (env.get("GITHUB_API_URL") or DEFAULT_GITHUB_API_URL).rstrip("/")
        if urlsplit(api_url).scheme not in {"http", "https"}:
            raise ConfigError(f"$GITHUB_API_URL: expected an http(s) URL, not {api_url!r}")
        return GitHubSettings(owner=owner, name=name, api_url=api_url)

    def slack(self, table: Mapping[str, Any], env: Mapping[str, str]) -> SlackSettings:
        team_ids = self.listed(
            table, env, key="team_ids", env_name="SLACK_TEAM_IDS", pattern=_TEAM_ID, what="a Slack team id (T…)"
        )
        app_id: Any = env["SLACK_APP_ID"] if "SLACK_APP_ID" in env else table.get("app_id")
        if app_id is not None and (not isinstance(app_id, str) or (app_id and not _APP_ID.fullmatch(app_id))):
            raise self.fail("slack.app_id", f"{app_id!r} is not a Slack app id (A…)")
        hosts = self.listed(
            table,
            env,
            key="response_url_hosts",
            env_name="RESPONSE_URL_HOSTS",
            pattern=_HOST,
            what="a host name",
            default=DEFAULT_RESPONSE_URL_HOSTS,
        )
        groups = self.table(table, "user_groups", "slack.user_groups")
        user_groups: dict[str, frozenset[str]] = {}
        for group, members in groups.items():
            if not _GROUP_ID.fullmatch(group):
                raise self.fail("slack.user_groups", f"{group!r} is not a Slack user-group id (S…)")
            where = f"slack.user_groups.{group}"
            user_groups[group] = frozenset(self.strings(members, where, SLACK_USER_ID, "a Slack user id (U…)"))
        api_url = env.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
        return SlackSettings(
            team_ids=frozenset(team_ids),
            app_id=app_id or None,
            response_url_hosts=frozenset(host.lower() for host in hosts),
            user_groups=user_groups,
            api_url=api_url if api_url.endswith("/") else api_url + "/",
        )

    def listed(
        self,
        table: Mapping[str, Any],
        env: Mapping[str, str],
        *,
        key: str,
        env_name: str,
        pattern: re.Pattern[str],
        what: str,
        default: tuple[str, ...] = (),
    ) -> tuple[str, ...]:
        if env_name in env:
            items = [item.strip() for item in env[env_name].split(",") if item.strip()]
            for item in items:
                if not pattern.fullmatch(item):
                    raise ConfigError(f"${env_name}: {item!r} is not {what}")
            return tuple(items)
        return self.strings(table.get(key, list(default)), f"slack.{key}", pattern, what)

    def audience(self, value: Any, where: str) -> Audience:
        if not isinstance(value, dict) or set(value) - {"anyone", "users", "groups"}:
            raise self.fail(where, "expected a table of anyone, users and groups")
        anyone = value.get("anyone", False)
        if not isinstance(anyone, bool):
            raise self.fail(f"{where}.anyone", "expected true or false")
        users = self.strings(value.get("users", []), f"{where}.users", SLACK_USER_ID, "a Slack user id (U…)")
        groups = self.strings(value.get("groups", []), f"{where}.groups", _GROUP_ID, "a Slack user-group id (S…)")
        return Audience(anyone=anyone, users=frozenset(users), groups=frozenset(groups))

    def authorization(self, table: Mapping[str, Any], environments: tuple[str, ...]) -> Authorization:
        rules: dict[Action, dict[str, Audience]] = {}
        admins = NOBODY
        for key, value in table.items():
            if key == "admins":
                admins = self.audience(value, "authorization.admins")
                continue
            try:
                action = Action(key)
            except ValueError:
                raise self.fail(f"authorization.{key}", "expected admins, build or deploy") from None
            if not isinstance(value, dict):
                raise self.fail(f"authorization.{key}", "expected a table of environment = {…}")
            for environment, audience in value.items():
                where = f"authorization.{key}.{environment}"
                if environment != "*" and environment not in environments:
                    raise self.fail(where, f"unknown environment (environments: {', '.join(environments)})")
                rules.setdefault(action, {})[environment] = self.audience(audience, where)
        return Authorization(rules=rules, admins=admins)
