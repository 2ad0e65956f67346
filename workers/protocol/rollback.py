"""``/deploy rollback <component> <env> [N]``, decided: which commit to go back to, what the requester is shown, and
what the *Confirm rollback* button carries. Pure; the status worker reads the lock and the history
(:mod:`workers.flows.rollback`), the router turns a press into an ordinary deploy of the chosen commit, and the
build worker refuses it when the lock changed since the answer (:func:`lock_mark`).

The choice (:func:`choose`), from the key's history newest first: *live* is the newest COMPLETED deploy of that
component and environment (a lock key may be shared: :attr:`~workers.protocol.config.CommandSpec.lock_scope`);
the target is the N-th *distinct* commit before it that COMPLETED — repeats of one commit count once, the live one
never, and FAILED, EXPIRED, cancelled or force-released holdings not at all. The lock's own item is newer than its
history (the stream's writer lags by seconds), so a holding it shows ended COMPLETED counts first. The history
keeps 30 days: an older event is never read, even when DynamoDB's lazy TTL has not deleted it yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from lockcore.record import LockRecord, Status
from workers.protocol.config import Config
from workers.protocol.envelope import ROLLBACK_CANCEL_ACTION, ROLLBACK_CONFIRM_ACTION
from workers.protocol.history import ENDINGS, RETENTION_SECONDS, HistoryEvent, events_of
from workers.protocol.message import Message, confirm_or_cancel, escape
from workers.protocol.render import Shown, person, slack_date

NO_LOCK_MARK: Final = "0"
"""The lock as seen when no lock was ever taken under its key."""
_MARK = re.compile(r"0|[1-9][0-9]{0,18}\.[A-Z_]{1,20}")
_SHA = re.compile(r"[0-9a-f]{40}")


# ------------------------------------------------------------------------------------------------ choosing
@dataclass(frozen=True)
class Deployed:
    """One completed deploy, as the history tells it."""

    sha: str
    who: str
    who_name: str
    at: int
    """When it completed (epoch seconds)."""
    token: int
    rollback: bool

    @classmethod
    def of(cls, event: HistoryEvent) -> Deployed:
        return cls(event.commit_sha, event.who, event.who_name, event.epoch, event.token, event.rollback)

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class GoBack:
    live: Deployed
    target: Deployed
    steps: int


@dataclass(frozen=True)
class NothingToGoBackTo:
    live: Deployed | None
    """The newest completed deploy, when the history names its commit."""
    found: int
    """Distinct earlier commits found (fewer than asked)."""
    steps: int
    live_unknown: bool = False
    """The newest completed deploy was recorded before the history kept commits."""


Choice = GoBack | NothingToGoBackTo


def completed(events: Iterable[HistoryEvent], component: str, environment: str, since: int) -> Iterator[HistoryEvent]:
    """The COMPLETED endings of ``component`` in ``environment`` among ``events`` (newest first), down to
    ``since``: the first older event ends the walk, so no page of the history past it is read."""
    for event in events:
        if event.epoch < since:
            return
        ours = (event.component, event.environment) == (component, environment)
        if ours and event.kind in ENDINGS and event.outcome == Status.COMPLETED.value:
            yield event


def newest_first(lock: LockRecord | None, history: Iterable[HistoryEvent], now: int) -> Iterator[HistoryEvent]:
    """The lock's own ending (when its holding is over) ahead of the history, which may not have it yet."""
    ended = lock is not None and lock.status is not Status.IN_PROGRESS
    if lock is not None and ended:
        yield from (event for event in events_of(None, lock.to_item(), now) if event.kind in ENDINGS)
    for event in history:
        if not (ended and lock is not None and event.token == lock.token):
            yield event


def choose(
    lock: LockRecord | None,
    history: Iterable[HistoryEvent],
    *,
    component: str,
    environment: str,
    steps: int,
    now: int,
) -> Choice:
    """The ``steps``-th distinct commit before the live one (``history``: the lock key's events, newest first)."""
    deploys = completed(newest_first(lock, history, now), component, environment, now - RETENTION_SECONDS)
    newest = next(deploys, None)
    if newest is None:
        return NothingToGoBackTo(None, 0, steps)
    if not newest.commit_sha:
        return NothingToGoBackTo(None, 0, steps, live_unknown=True)
    live = Deployed.of(newest)
    seen = {live.sha}
    for event in deploys:
        if not event.commit_sha or event.commit_sha in seen:
            continue
        seen.add(event.commit_sha)
        if len(seen) - 1 == steps:
            return GoBack(live, Deployed.of(event), steps)
    return NothingToGoBackTo(live, len(seen) - 1, steps)


# ------------------------------------------------------------------------------------------------- the lock
def lock_mark(record: LockRecord | None) -> str:
    """The lock as the answer saw it — its token and status (``7.COMPLETED``) — for the press to find it unchanged:
    a new holder changes the token, a deploy that ended since changes the status (and what is live)."""
    return NO_LOCK_MARK if record is None else f"{record.token}.{record.status.value}"


def handed_on_unchanged(held: LockRecord, seen: str) -> bool:
    """A confirmed rollback that waited in the lock's queue and was handed the lock (``held``): whether it waited
    right behind the holding its offer saw running, and that holding did not complete — else something else is
    live now, and the choice is stale."""
    return seen == f"{held.token - 1}.{Status.IN_PROGRESS.value}" and held.previous_status != Status.COMPLETED.value


@dataclass(frozen=True)
class RollbackTarget:
    """What *Confirm rollback* carries: the component, the environment, the commit and the lock as seen."""

    component: str
    environment: str
    sha: str
    lock_seen: str

    @property
    def value(self) -> str:
        return " ".join((self.component, self.environment, self.sha, self.lock_seen))

    @classmethod
    def read(cls, value: str, config: Config) -> RollbackTarget | None:
        """The target, if ``value`` names a configured component and environment, a full commit and a lock mark."""
        parts = value.split(" ")
        if len(parts) != 4:
            return None
        component, environment, sha, seen = parts
        if component not in config.components or environment not in config.environments:
            return None
        if not _SHA.fullmatch(sha) or not _MARK.fullmatch(seen):
            return None
        return cls(component, environment, sha, seen)


# ----------------------------------------------------------------------------------------------- rendering
def _who(deployed: Deployed) -> str:
    return person(deployed.who, deployed.who_name, "", Shown.NAME_AND_MENTION)


def _deployed(deployed: Deployed) -> str:
    """```1a2b3c4`, deployed by alice (<@U0ALICE>), completed <!date…>``."""
    again = " (itself a rollback)" if deployed.rollback else ""
    return f"`{escape(deployed.short_sha)}`{again}, deployed by {_who(deployed)}, completed {slack_date(deployed.at)}"


def prompt(choice: GoBack, component: str, environment: str, seen: LockRecord | None) -> Message:
    """The requester's choice: what goes live, what is live now, and the buttons (the confirm carries the lock)."""
    target = RollbackTarget(component, environment, choice.target.sha, lock_mark(seen))
    back = "The newest earlier commit" if choice.steps == 1 else f"{choice.steps} distinct commits back, the commit"
    title = f"⏪ *Roll back {component} ({environment}) to `{escape(choice.target.short_sha)}`?*"
    facts = f"Goes live: {_deployed(choice.target)}.\nLive now: {_deployed(choice.live)}."
    note = (
        f"{back} whose deploy completed. Confirming deploys it as "
        f"`/deploy {component} {environment} {choice.target.short_sha}` would — under the lock, unless "
        f"{environment} is frozen."
    )
    busy = seen is not None and seen.status is Status.IN_PROGRESS
    if busy:
        note += (
            " A deploy holds the lock right now: confirming is refused or queued as a /deploy would be, and a queued"
            " rollback is dropped if that deploy completes (what is live then is not what is shown here)."
        )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{facts}"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]},
        confirm_or_cancel(
            "rollback", (ROLLBACK_CONFIRM_ACTION, "Confirm rollback"), ROLLBACK_CANCEL_ACTION, target.value
        ),
    ]
    text = f"Roll back {component} ({environment}) to {choice.target.short_sha}? Live now: {choice.live.short_sha}."
    return Message(text, blocks)


def nothing_text(choice: NothingToGoBackTo, component: str, environment: str) -> str:
    """One line: why there is nothing to go back to."""
    what = f"{component} ({environment})"
    if choice.live_unknown:
        return (
            f"🤷 Nothing to roll back to: the live deploy of {what} was recorded before the history kept commits. "
            f"Deploy a commit by name: `/deploy {component} {environment} <sha>`."
        )
    if choice.live is None:
        return f"🤷 Nothing to roll back to: no deploy of {what} completed in the last 30 days (the history keeps 30)."
    earlier = "no earlier commit" if choice.found == 0 else f"only {choice.found} earlier commit"
    earlier += "s" if choice.found > 1 else ""
    return (
        f"🤷 Nothing to roll back to: {_deployed(choice.live)} is live, and {earlier} of {what} completed "
        f"in the last 30 days (asked to go back {choice.steps})."
    )


def answer(choice: Choice, component: str, environment: str, seen: LockRecord | None) -> Message:
    if isinstance(choice, GoBack):
        return prompt(choice, component, environment, seen)
    return Message(nothing_text(choice, component, environment))


def lock_changed_text(component: str, environment: str) -> str:
    """A press whose lock moved on since the answer: the choice may be stale, so nothing is deployed."""
    return (
        f"⚠️ The lock of {component} ({environment}) changed since this rollback was offered (someone deployed "
        f"meanwhile), so nothing was deployed — run `/deploy rollback {component} {environment}` again."
    )


def takes_no_lock_text(component: str, environment: str, *, switched_off: bool) -> str:
    """A deploy that takes no lock is missing from the history (the lock table's stream), and a confirm would be
    checked against neither the lock nor a freeze — so there is no rollback to offer or confirm."""
    why = (
        "the distributed lock is switched off (`ENABLE_DISTRIBUTED_LOCK=false`)"
        if switched_off
        else "deploys take no lock (`requires_lock = false`)"
    )
    return (
        f"🤷 Not rolling back {component} ({environment}): {why}, so the history does not know what is live. "
        f"Deploy a commit by name: `/deploy {component} {environment} <sha>`."
    )


def cancelled() -> Message:
    return Message("Rollback cancelled: nothing was deployed.", replace_original=True)


def not_understood() -> Message:
    return Message(
        "⚠️ This button is not one I can act on any more; run `/deploy rollback <component> <env>` again.",
        replace_original=True,
    )
