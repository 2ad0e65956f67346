"""The command configuration, as the workers use it: what each slash command does, what it may name, who may run
it, where its workflow is.

The keys, their types, defaults and rules are :mod:`workers.protocol.schema`'s (shared with the Pulumi program, and
listed in docs/configuration.md); this module reads a TOML file against it — named by ``CHATOPS_CONFIG``, default
``docs/chatops.toml`` — and turns what it read into typed settings. A few environment variables override keys
(:data:`workers.protocol.schema.ENV_NAMES`). A bad file fails :func:`load_config` with one line naming the file and
the key (``chatops config check`` lists every problem).

What a command *is* beyond its keys (its start message, whether it takes a ref) is :data:`COMMANDS`'. No rule for
a command and environment (not even ``"*"``) means nobody may run it there: deny by default.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from workers.protocol import schema
from workers.protocol.schema import (
    RESERVED_NAMES,
    SLACK_USER_ID,
    Action,
    Conflict,
    LockScope,
)
from workers.protocol.windows import Window, windows_of

__all__ = ["RESERVED_NAMES", "SLACK_USER_ID", "Action", "Conflict", "LockScope"]  # the schema's words, used from here

CONFIG_ENV = "CHATOPS_CONFIG"
DEFAULT_CONFIG_PATH = "docs/chatops.toml"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_RESPONSE_URL_HOSTS = ("hooks.slack.com",)


class ConfigError(Exception):
    """The configuration cannot be used. The message is one line: the file, the key and what is wrong."""

    def __init__(self, problems: list[str] | tuple[str, ...] | str) -> None:
        self.problems = tuple([problems] if isinstance(problems, str) else problems)
        more = len(self.problems) - 1
        super().__init__(self.problems[0] + (f" (and {more} more: chatops config check lists them)" if more else ""))


# ------------------------------------------------------------------------------------------------ commands
@dataclass(frozen=True)
class CommandSpec:
    """What ``/build`` or ``/deploy`` does: the lock it takes, for how long, and the workflow it dispatches."""

    action: Action
    requires_lock: bool
    """False: the command dispatches at once, without a lock."""
    lock_scope: LockScope
    lease_seconds: int
    workflow: str
    """The workflow of a component that names none of its own (:meth:`Config.workflow_of`)."""
    start_message: str
    """In-channel text when the run starts; ``{component}``, ``{environment}`` and ``{ref}`` are filled in."""
    accepts_ref: bool
    conflict: Conflict = Conflict.REJECT
    """What a request meeting a held lock does: ``reject`` (told who holds it) or ``queue`` (waits its turn)."""

    @property
    def slash(self) -> str:
        return self.action.slash

    def lock_key(self, component: str, environment: str) -> str:
        """``build-router-plt`` (by the command's :attr:`lock_scope`: ``build-router``, ``build-plt``, ``build``)."""
        return schema.lock_key(self.action, self.lock_scope, component, environment)

    def start_text(self, component: str, environment: str, ref: str = "") -> str:
        return self.start_message.format(component=component, environment=environment, ref=ref)


def _spec(action: Action, keys: Mapping[str, Any], start_message: str, *, accepts_ref: bool) -> CommandSpec:
    return CommandSpec(
        action=action,
        requires_lock=keys["requires_lock"],
        lock_scope=LockScope(keys["lock_scope"]),
        lease_seconds=keys["lease_seconds"],
        workflow=keys["workflow"],
        start_message=start_message,
        accepts_ref=accepts_ref,
        conflict=Conflict(keys["conflict"]),
    )


_START_MESSAGES = {
    Action.BUILD: "🔨 Building {component} ({environment})…",
    Action.DEPLOY: "🚀 Deploying {component} ({environment}) at {ref}…",
}
_ACCEPTS_REF = {Action.BUILD: False, Action.DEPLOY: True}

COMMANDS: Mapping[Action, CommandSpec] = {
    action: _spec(
        action, schema.defaults(("commands", action.value)), _START_MESSAGES[action], accepts_ref=_ACCEPTS_REF[action]
    )
    for action in Action
}
"""Each command with the schema's defaults."""


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
    "rollback": Queue.STATUS,
    "echo": Queue.ECHO,
    "interaction": Queue.STATUS,
    "home_opened": Queue.STATUS,
    "home_refresh": Queue.STATUS,
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
class WorkflowTarget:
    """Where a command's run for a component goes: the repository and the workflow (file name or id)."""

    repository: str
    workflow: str


@dataclass(frozen=True)
class ComponentGitHub:
    """A component's own repository and workflows (``[github.components.<component>]``); ``None``: the default."""

    repository: str | None = None
    workflows: Mapping[Action, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GitHubSettings:
    repository: str
    """owner/name: every component's, unless it names its own."""
    api_url: str = schema.DEFAULT_GITHUB_API_URL
    components: Mapping[str, ComponentGitHub] = field(default_factory=dict)


@dataclass(frozen=True)
class SlackSettings:
    team_ids: frozenset[str] = frozenset()
    """Accepted workspaces; empty: any (``allow_any_workspace``, a local stack)."""
    app_id: str | None = None
    """Accepted app; None: any (``allow_any_workspace``)."""
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
    """False when ``ENABLE_DISTRIBUTED_LOCK=false``: workers dispatch without locking (the lock switch)."""
    queue_urls: Mapping[Queue, str] = field(default_factory=dict)
    source: str = "<defaults>"
    freeze_windows: tuple[Window, ...] = ()
    """Scheduled freezes (:mod:`workers.protocol.windows`), applied by the reaper's sweep."""

    def queue_url(self, queue: Queue) -> str | None:
        return self.queue_urls.get(queue)

    def response_url_allowed(self, url: str) -> bool:
        """Whether a reply may be sent to ``url``: https on an allowed host (loopback, if allowed, may be http)."""
        return response_url_allowed(url, self.slack.response_url_hosts)

    def locks(self, action: Action) -> bool:
        """Whether ``action`` takes a lock: it requires one, and the lock switch is not thrown."""
        return self.lock_enabled and self.commands[action].requires_lock

    def lock_targets(self) -> dict[str, tuple[Action, str, str]]:
        """Every lock key the configured commands, components and environments can make, each with the first
        command, component and environment (in the configuration's order) that makes it."""
        targets: dict[str, tuple[Action, str, str]] = {}
        for action, spec in self.commands.items():
            for component in self.components:
                for environment in self.environments:
                    targets.setdefault(spec.lock_key(component, environment), (action, component, environment))
        return targets

    def workflow_of(self, action: Action, component: str) -> WorkflowTarget:
        """Where ``action`` for ``component`` runs: the component's own repository and workflow, else the
        defaults (a component no longer configured, or none named: the defaults too)."""
        own = self.github.components.get(component, ComponentGitHub())
        workflow = own.workflows.get(action, self.commands[action].workflow)
        return WorkflowTarget(own.repository or self.github.repository, workflow)

    def workflows_by_repository(self) -> Mapping[str, frozenset[str]]:
        """Every repository a command may dispatch to, with the workflows it may dispatch there."""
        found: dict[str, set[str]] = {}
        for action in self.commands:
            for component in (*self.components, ""):
                target = self.workflow_of(action, component)
                found.setdefault(target.repository, set()).add(target.workflow)
        return {repository: frozenset(workflows) for repository, workflows in found.items()}

    def serves_repository(self, repository: str) -> bool:
        """Whether a run in ``repository`` (GitHub's names ignore case) may be one of ours."""
        return repository.lower() in {known.lower() for known in self.workflows_by_repository()}


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

    Raises :class:`ConfigError` on a missing, unreadable or invalid file: its message is the first problem in one
    line, its ``problems`` every one.
    """
    env = os.environ if environ is None else environ
    checked = check_config(path, env)
    if checked.errors:
        raise ConfigError(checked.errors)
    return config_of(checked.values, env, source=config_path(path, env))


def config_path(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> str:
    return str(path or environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def check_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> schema.Checked:
    """The file read against the schema, with the environment's overrides: the values, or every problem."""
    source = config_path(path, environ)
    where = f"chatops config {source}"
    try:
        with open(source, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file (set {CONFIG_ENV})") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: not valid TOML: {error}") from None
    return schema.check(document, schema.Form.FILE, where, environ)


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
    names = (*schema.ENV_NAMES, *(queue.url_env for queue in Queue), CONFIG_ENV)
    overrides = tuple((name, os.environ[name]) for name in sorted(names) if name in os.environ)
    return _cached(source, mtime_ns, overrides)


def config_of(values: Mapping[str, Any], environ: Mapping[str, str], *, source: str = "<defaults>") -> Config:
    """The typed settings of a checked configuration (:func:`workers.protocol.schema.check`'s values)."""
    github, slack, authorization = values["github"], values["slack"], values["authorization"]
    slack_api_url = slack["api_url"]
    return Config(
        components=tuple(values["components"]),
        environments=tuple(values["environments"]),
        commands={
            action: _spec(
                action, values["commands"][action.value], _START_MESSAGES[action], accepts_ref=_ACCEPTS_REF[action]
            )
            for action in Action
        },
        github=GitHubSettings(
            repository=github["repository"],
            api_url=github["api_url"].rstrip("/"),
            components={
                name: ComponentGitHub(
                    repository=own["repository"],
                    workflows={Action(action): workflow for action, workflow in own["workflows"].items() if workflow},
                )
                for name, own in github["components"].items()
            },
        ),
        slack=SlackSettings(
            team_ids=frozenset(slack["team_ids"]),
            app_id=slack["app_id"] or None,
            response_url_hosts=frozenset(slack["response_url_hosts"]),
            user_groups={group: frozenset(members) for group, members in slack["user_groups"].items()},
            api_url=slack_api_url if slack_api_url.endswith("/") else slack_api_url + "/",
        ),
        authorization=Authorization(
            rules={
                action: {environment: _audience(rule) for environment, rule in authorization[action.value].items()}
                for action in Action
                if authorization[action.value]
            },
            admins=_audience(authorization["admins"]),
        ),
        lock_enabled=values["enable_distributed_lock"],
        queue_urls={queue: environ[queue.url_env] for queue in Queue if environ.get(queue.url_env)},
        source=source,
        freeze_windows=windows_of(values["freeze_windows"]),
    )


def _audience(rule: Mapping[str, Any]) -> Audience:
    return Audience(anyone=rule["anyone"], users=frozenset(rule["users"]), groups=frozenset(rule["groups"]))
