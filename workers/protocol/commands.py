"""Slash commands: parse the text Slack sends, decide whether this user may run it, render what they are told.

Three steps, each a pure function of its inputs (the configuration included), none doing I/O:

- **parse** — :func:`parse` turns ``("/build", "router plt")`` into a :data:`Command` (``Dispatch``,
  ``LockStatus``, ``Unlock``, ``Cancel``, ``Echo``, ``History``, ``Stats``, ``Freeze``, ``Unfreeze``, ``Rollback``) or
  into :class:`Help` / :class:`Usage`, which the router answers at once. A component or environment outside the
  configured sets is a :class:`Usage`, so it never reaches a queue.
- **decide** — :func:`check_origin` refuses another workspace or app; :func:`audience_for` says who may run a
  command; :func:`decide` answers :class:`Allowed` or :class:`Refused` from the user's id and the user groups
  they are known to be in (looking the groups up is the caller's I/O, see :mod:`workers.adapters.usergroups`).
- **render** — :func:`help_text`, :func:`usage_text`, :func:`refusal_text`, :func:`who_may`, :func:`describe`:
  Slack mrkdwn, user ids as ``<@U…>`` and groups as ``<!subteam^S…>``.

The forms: :data:`VERB_TABLE`, every verb once (and :func:`help_text`, which lists them), beside
``/build <component> <env> [--queue]``, ``/deploy <component> <env> [ref] [--queue]`` and ``/echo <text>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from workers.protocol.codec import WHEN_SET
from workers.protocol.config import Action, Audience, Config, SlackSettings

ECHO_SLASH = "/echo"
MAX_ECHO_CHARS = 500
MAX_REASON_CHARS = 200
DEFAULT_STATS_DAYS = 7
MAX_STATS_DAYS = 30
"""The history keeps 30 days."""
MAX_ROLLBACK_STEPS = 20
_REF = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<![./])(?<!\.lock)")


# ------------------------------------------------------------------------------------------------ commands
@dataclass(frozen=True)
class Dispatch:
    """``/build router plt`` or ``/deploy api prod v1.2``: run the action's workflow under its lock."""

    action: Action
    component: str
    environment: str
    ref: str | None = None
    queue: bool = field(default=False, metadata=WHEN_SET)
    """``--queue``: wait in the lock's queue if it is held, whatever the command's conflict policy."""
    rollback_of: str = field(default="", metadata=WHEN_SET)
    """A confirmed ``/deploy rollback``: the lock as its answer saw it (:func:`workers.protocol.rollback.lock_mark`),
    which the build worker finds unchanged or refuses the deploy. Empty for every typed command."""
    kind_from: ClassVar[str] = "action"
    """On the wire the kind (``build``, ``deploy``) is the action: :mod:`workers.protocol.codec`."""

    @property
    def kind(self) -> str:
        return self.action.value


@dataclass(frozen=True)
class LockStatus:
    """``/build status --locks``: every current lock."""

    kind: ClassVar[str] = "status"


@dataclass(frozen=True)
class OnALock:
    """A verb on one lock, ``/build <verb> <component> <env>``: the subclasses below, one per verb (``kind``)."""

    action: Action
    component: str
    environment: str
    kind: ClassVar[str]


@dataclass(frozen=True)
class Unlock(OnALock):
    """``/build unlock router plt``: force-release ``build-router-plt`` (admins, after a confirm button)."""

    kind: ClassVar[str] = "unlock"


@dataclass(frozen=True)
class Cancel(OnALock):
    """``/build cancel router plt``: cancel the run holding ``build-router-plt`` and release the lock.

    Anyone may send it; the worker (:mod:`workers.flows.cancel`) lets only the holder or an admin through, because
    only the lock knows who holds it."""

    token: int | None = field(default=None, metadata=WHEN_SET)
    """The App Home's *Cancel my run*: the holding the button was shown for; the worker leaves any other alone."""
    kind: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class Echo:
    """``/echo <text>``: a liveness check through the router, the queue and a worker."""

    text: str
    kind: ClassVar[str] = "echo"


@dataclass(frozen=True)
class History(OnALock):
    """``/build history router plt``: the last events of ``build-router-plt`` (:mod:`workers.flows.insights`)."""

    kind: ClassVar[str] = "history"


@dataclass(frozen=True)
class Rollback(OnALock):
    """``/deploy rollback api plt [N]``: offer the last (or N-th) earlier distinct commit that completed, to confirm
    (:mod:`workers.flows.rollback`); who may run it is who may deploy there."""

    steps: int = 1
    kind: ClassVar[str] = "rollback"


@dataclass(frozen=True)
class Dequeue(OnALock):
    """``/build dequeue router plt``: leave the queue of ``build-router-plt`` (the user's own requests only)."""

    kind: ClassVar[str] = "dequeue"


@dataclass(frozen=True)
class Stats:
    """``/build stats [days]``: acquisitions, outcomes and durations from the history."""

    days: int = DEFAULT_STATS_DAYS
    kind: ClassVar[str] = "stats"


@dataclass(frozen=True)
class Freeze:
    """``/deploy freeze prod <reason>``: a manual lock on ``freeze-prod``; deploys to prod are refused (admins)."""

    environment: str
    reason: str
    kind: ClassVar[str] = "freeze"


@dataclass(frozen=True)
class Unfreeze:
    """``/deploy unfreeze prod``: release ``freeze-prod`` (admins)."""

    environment: str
    kind: ClassVar[str] = "unfreeze"


Command = Dispatch | LockStatus | Unlock | Cancel | Echo | History | Stats | Freeze | Unfreeze | Dequeue | Rollback


@dataclass(frozen=True)
class Help:
    """``/build help``: the usage message, asked for."""

    slash: str
    message: str


@dataclass(frozen=True)
class Usage:
    """A command the router cannot run: ``problem`` says why, ``message`` is the whole ephemeral reply."""

    slash: str
    problem: str
    message: str


Parsed = Command | Help | Usage


# ------------------------------------------------------------------------------------------------- parsing
def parse(slash: str, text: str, config: Config) -> Parsed:
    """Parse one slash command. Component and environment names are matched case-insensitively; a ref is kept."""
    words = text.split()
    if words and words[0].lower() in {"help", "-h", "--help"}:
        return Help(slash, help_text(config, slash))
    if slash == ECHO_SLASH:
        echoed = text.strip()
        if not echoed:
            return _usage(slash, "say something to echo: /echo <text>", config)
        if len(echoed) > MAX_ECHO_CHARS:
            return _usage(slash, f"/echo takes at most {MAX_ECHO_CHARS} characters", config)
        return Echo(echoed)
    try:
        action = Action(slash.removeprefix("/")) if slash.startswith("/") else None
    except ValueError:
        action = None
    if action is None:
        return _usage(slash, f"unknown command {_code(slash or '(none)')}", config)
    return _parse_action(action, words, config)


def _parse_action(action: Action, words: list[str], config: Config) -> Parsed:
    """``/build`` and ``/deploy``: status, unlock, or component and environment (and for deploy a ref)."""
    slash = action.slash
    if not words:
        return _usage(slash, f"{slash} needs a component and an environment", config)
    verb = words[0].lower()
    if verb == LockStatus.kind:
        if [word.lower() for word in words[1:]] not in ([], ["--locks"]):
            return _usage(slash, f"{slash} status takes only --locks", config)
        return LockStatus()
    if verb in ON_A_LOCK:
        target = _target(slash, words[1:], config, f"{slash} {verb} <component> <env>")
        return target if isinstance(target, Usage) else ON_A_LOCK[verb](action, *target)
    if verb == Stats.kind:
        return _stats(slash, words[1:], config)
    if verb in {Freeze.kind, Unfreeze.kind}:
        return _freeze(action, verb, words[1:], config)
    if verb == Rollback.kind:
        return _rollback(action, words[1:], config)
    queue = QUEUE_FLAG in (word.lower() for word in words)
    words = [word for word in words if word.lower() != QUEUE_FLAG]
    target = _target(slash, words[:2], config, f"{slash} <component> <env>")
    if isinstance(target, Usage):
        return target
    rest = words[2:]
    if not rest:
        return Dispatch(action, *target, queue=queue)
    if not config.commands[action].accepts_ref:
        return _usage(slash, f"{slash} takes a component and an environment, nothing more", config)
    if len(rest) > 1:
        return _usage(slash, f"{slash} takes one ref at most", config)
    if not _REF.fullmatch(rest[0]):
        return _usage(slash, f"{_code(rest[0])} is not a branch, tag or commit", config)
    return Dispatch(action, *target, ref=rest[0], queue=queue)


QUEUE_FLAG = "--queue"


# ---------------------------------------------------------------------------------------------- the verbs
@dataclass(frozen=True)
class Verb:
    """A word after ``/build`` or ``/deploy``: what it parses into, how it is typed, what the help says of it."""

    word: str
    command: type[LockStatus | Unlock | Cancel | History | Dequeue | Stats | Freeze | Unfreeze | Rollback] | None
    """``None`` for ``help``, which the router answers itself."""
    arguments: str
    meaning: str
    slashes: tuple[Action, ...] = (Action.BUILD, Action.DEPLOY)

    @property
    def form(self) -> str:
        """As the help shows it: ``/build unlock <component> <env>``."""
        return " ".join(part for part in (self.slashes[0].slash, self.word, self.arguments) if part)


VERB_TABLE: tuple[Verb, ...] = (
    Verb("status", LockStatus, "--locks", "every lock held right now"),
    Verb("unlock", Unlock, "<component> <env>", "force-release a stuck lock (admins)"),
    Verb("cancel", Cancel, "<component> <env>", "cancel the run and free its lock (who started it, or admins)"),
    Verb("history", History, "<component> <env>", "the last 10 acquires and releases of that lock"),
    Verb("dequeue", Dequeue, "<component> <env>", "leave the lock's queue (your own requests)"),
    Verb("stats", Stats, "[days]", f"acquisitions, outcomes and lock durations (default {DEFAULT_STATS_DAYS} days)"),
    Verb("freeze", Freeze, "<env> <reason>", "stop deploys to an environment (admins)", (Action.DEPLOY,)),
    Verb("unfreeze", Unfreeze, "<env>", "let deploys to an environment go again (admins)", (Action.DEPLOY,)),
    Verb(
        "rollback",
        Rollback,
        "<component> <env> [N]",
        "redeploy the last (or N-th) earlier commit that completed, after a confirm",
        (Action.DEPLOY,),
    ),
    Verb("help", None, "", "this message"),
)
"""Every verb, once, in the order the help lists them. The parser's words, the envelope's kinds, the help, the
reserved names (:data:`workers.protocol.config.RESERVED_NAMES`), the Slack manifest's usage hints and the docs
are derived from it or tested against it."""
VERBS = frozenset(verb.word for verb in VERB_TABLE)
"""Every word the parser reads as a verb (none may name a component or an environment: config.RESERVED_NAMES)."""
ON_A_LOCK: dict[str, type[Unlock | Cancel | History | Dequeue]] = {
    verb.word: verb.command
    for verb in VERB_TABLE
    if verb.command is not None and issubclass(verb.command, Unlock | Cancel | History | Dequeue)
}
"""The verbs that take a component and an environment: ``/build <verb> <component> <env>``."""


def _stats(slash: str, words: list[str], config: Config) -> Stats | Usage:
    if not words:
        return Stats()
    if len(words) == 1 and words[0].isdecimal() and 1 <= int(words[0]) <= MAX_STATS_DAYS:
        return Stats(int(words[0]))
    return _usage(slash, f"expected {slash} stats [days], days from 1 to {MAX_STATS_DAYS}", config)


def _freeze(action: Action, verb: str, words: list[str], config: Config) -> Freeze | Unfreeze | Usage:
    slash = action.slash
    form = "/deploy freeze <env> <reason>" if verb == "freeze" else "/deploy unfreeze <env>"
    if action is not Action.DEPLOY:
        return _usage(slash, f"freezing is for deploys: {form}", config)
    if not words or (verb == "unfreeze" and len(words) != 1):
        return _usage(slash, f"expected {form}", config)
    environment = words[0].lower()
    if environment not in config.environments:
        return _usage(slash, f"unknown environment {_code(words[0])}", config)
    if verb == "unfreeze":
        return Unfreeze(environment)
    reason = " ".join(words[1:])
    if not reason:
        return _usage(slash, f"say why: {form}", config)
    if len(reason) > MAX_REASON_CHARS:
        return _usage(slash, f"a freeze reason takes at most {MAX_REASON_CHARS} characters", config)
    return Freeze(environment, reason)


def _rollback(action: Action, words: list[str], config: Config) -> Rollback | Usage:
    slash = action.slash
    form = f"/deploy rollback <component> <env> [N], N from 1 to {MAX_ROLLBACK_STEPS}"
    if action is not Action.DEPLOY:
        return _usage(slash, f"rolling back is for deploys: {form}", config)
    steps = 1
    if len(words) == 3:
        if not (words[2].isdecimal() and 1 <= int(words[2]) <= MAX_ROLLBACK_STEPS):
            return _usage(slash, f"expected {form}", config)
        steps = int(words[2])
    target = _target(slash, words[:2] if len(words) in (2, 3) else words, config, form)
    return target if isinstance(target, Usage) else Rollback(action, *target, steps=steps)


def _target(slash: str, words: list[str], config: Config, form: str) -> tuple[str, str] | Usage:
    if len(words) != 2:
        return _usage(slash, f"expected {form}", config)
    component, environment = (word.lower() for word in words)
    if component not in config.components:
        return _usage(slash, f"unknown component {_code(words[0])}", config)
    if environment not in config.environments:
        return _usage(slash, f"unknown environment {_code(words[1])}", config)
    return component, environment


def _usage(slash: str, problem: str, config: Config) -> Usage:
    return Usage(slash, problem, usage_text(config, slash, problem))


# ------------------------------------------------------------------------------------------------ deciding
@dataclass(frozen=True)
class Allowed:
    pass


@dataclass(frozen=True)
class Refused:
    """Not allowed: ``reason`` in words, and who may do it instead (None when the question does not arise)."""

    reason: str
    audience: Audience | None = None


Decision = Allowed | Refused

ANYONE = Audience(anyone=True)


def check_origin(slack: SlackSettings, team_id: str, api_app_id: str) -> Refused | None:
    """Refuse a request from a workspace or an app this deployment does not serve."""
    if slack.team_ids and team_id not in slack.team_ids:
        return Refused("this ChatOps app does not serve your workspace")
    if slack.app_id is not None and api_app_id != slack.app_id:
        return Refused("this request came from another Slack app")
    return None


def audience_for(config: Config, command: Command) -> Audience:
    """Who may run ``command``: the rule for its action and environment, the admins for unlock, else anyone."""
    match command:
        case Dispatch(action=action, environment=environment) | Rollback(action=action, environment=environment):
            return config.authorization.audience(action, environment)
        case Unlock() | Freeze() | Unfreeze():
            return config.authorization.admins
        case (
            LockStatus() | Echo() | Cancel() | History() | Stats() | Dequeue()
        ):  # Cancel: the worker checks holder-or-admin against the lock
            return ANYONE


def admits(audience: Audience, user_id: str, user_groups: frozenset[str] = frozenset()) -> bool:
    return audience.anyone or user_id in audience.users or bool(audience.groups & user_groups)


def is_admin(config: Config, user_id: str, user_groups: frozenset[str] = frozenset()) -> bool:
    """Whether ``user_id`` may do what only admins may (force-unlock, freeze), by the configuration as it is now.
    ``user_groups``: the groups of the admins the user is known to be in (looking them up is the caller's I/O)."""
    return admits(config.authorization.admins, user_id, user_groups)


def decide(command: Command, audience: Audience, user_id: str, user_groups: frozenset[str] = frozenset()) -> Decision:
    """``user_groups``: the groups of ``audience`` the user is known to be in (only those matter)."""
    if admits(audience, user_id, user_groups):
        return Allowed()
    return Refused(f"you may not run {describe(command)}", audience)


# ----------------------------------------------------------------------------------------------- rendering
def describe(command: Command) -> str:
    """The command as the user would type it: ``/deploy api prod v1.2``."""
    match command:
        case Dispatch(action=action, component=component, environment=environment, rollback_of=seen) if seen:
            return f"{action.slash} rollback {component} {environment}"
        case Dispatch(action=action, component=component, environment=environment, ref=ref):
            return " ".join(part for part in (action.slash, component, environment, ref) if part)
        case Rollback(component=component, environment=environment, steps=steps):
            return " ".join(("/deploy rollback", component, environment, *([str(steps)] if steps != 1 else [])))
        case OnALock(action=action, component=component, environment=environment):
            return f"{action.slash} {command.kind} {component} {environment}"
        case LockStatus():
            return "/build status --locks"
        case Echo():
            return ECHO_SLASH
        case Stats(days=days):
            return f"/build stats {days}"
        case Freeze(environment=environment, reason=reason):
            return f"/deploy freeze {environment} {reason}"
        case Unfreeze(environment=environment):
            return f"/deploy unfreeze {environment}"


def who_may(audience: Audience) -> str:
    """``<@U1>, <@U2> or members of <!subteam^S1>``; ``anyone``; ``nobody``."""
    if audience.anyone:
        return "anyone"
    names = [f"<@{user}>" for user in sorted(audience.users)]
    names += [f"members of <!subteam^{group}>" for group in sorted(audience.groups)]
    if not names:
        return "nobody"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def refusal_text(refused: Refused) -> str:
    text = f"🚫 Sorry, {refused.reason}."
    if refused.audience is None:
        return text
    if refused.audience.nobody:
        return f"{text} Nobody may, as configured; ask a ChatOps admin to change that."
    return f"{text} Who may: {who_may(refused.audience)}."


def help_text(config: Config, slash: str = "/build") -> str:
    if slash not in {ECHO_SLASH, *(action.slash for action in Action)}:
        slash = "/build"
    components = ", ".join(f"`{name}`" for name in config.components)
    environments = ", ".join(f"`{name}`" for name in config.environments)
    verbs = [f"• `{verb.form}` — {verb.meaning}" for verb in VERB_TABLE if verb.word != "help"]
    return "\n".join(
        [
            "*ChatOps commands*",
            "• `/build <component> <env>` — build under a lock, one build per component and environment",
            "• `/deploy <component> <env> [ref]` — deploy a branch, tag or commit (default branch if omitted)",
            f"• `/build <component> <env> {QUEUE_FLAG}` — wait in line if the lock is held",
            *verbs,
            "• `/echo <text>` — check that ChatOps is alive",
            f"• `{slash} help` — this message",
            f"Components: {components}. Environments: {environments}.",
        ]
    )


def usage_text(config: Config, slash: str, problem: str) -> str:
    return f"⚠️ {problem[:1].upper()}{problem[1:]}.\n{help_text(config, slash)}"


def _code(word: str) -> str:
    """A word the user typed, shown back safely: at most 40 characters, no backticks to break out of."""
    shown = word if len(word) <= 40 else word[:39] + "…"
    return "`" + shown.replace("`", "'") + "`"


def acknowledgement(command: Command, lock_enabled: bool = True) -> str:
    """What the router answers at once, before a worker has done anything."""
    match command:
        case Dispatch():
            next_step = "checking the lock" if lock_enabled else "starting the workflow"
        case Unlock():
            next_step = "looking up the holder"
        case Cancel():
            next_step = "cancelling the run"
        case LockStatus():
            next_step = "looking up the locks"
        case Echo():
            next_step = "sending it through the queue"
        case History() | Stats():
            next_step = "reading the history"
        case Dequeue():
            next_step = "leaving the queue"
        case Rollback():
            next_step = "looking for the commit to go back to"
        case Freeze():
            next_step = "taking the freeze lock"
        case Unfreeze():
            next_step = "releasing the freeze lock"
    return f"⏳ Got it: {describe(command)} — {next_step}…"
