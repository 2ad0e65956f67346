"""``/deploy rollback``: the command as typed, who may run it, and the choice of commit as properties over random
histories (:mod:`workers.protocol.rollback`); the history's paginated read on moto. The whole path — two deploys,
the offer, the press through the router, the deploy — is in ``test_rollback_end_to_end.py``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from moto import mock_aws

from lockcore.record import LockRecord, Status, iso
from workers.adapters.history_table import HistoryTable
from workers.local.motoserver import LOCAL_CREDENTIALS
from workers.protocol import commands, rollback
from workers.protocol.commands import Rollback, Usage, parse
from workers.protocol.config import Action, Config, current_config
from workers.protocol.history import RETENTION_SECONDS, ROLLBACK_NOTED, EventKind, HistoryEvent, events_of

KEY = "deploy-api-plt"
NOW = 1_800_000_000
SHAS = tuple(f"{digit}" * 40 for digit in "abcdef")


@pytest.fixture
def config() -> Config:
    return current_config()


# ------------------------------------------------------------------------------------------------- parsing
def test_rollback_parses_with_an_optional_count(config: Config) -> None:
    assert parse("/deploy", "rollback api plt", config) == Rollback(Action.DEPLOY, "api", "plt", 1)
    assert parse("/deploy", "ROLLBACK Api PLT 3", config) == Rollback(Action.DEPLOY, "api", "plt", 3)
    assert parse("/deploy", "rollback api plt 20", config) == Rollback(Action.DEPLOY, "api", "plt", 20)


@pytest.mark.parametrize(
    ("slash", "text", "problem"),
    [
        ("/deploy", "rollback api plt 0", "expected /deploy rollback <component> <env> [N], N from 1 to 20"),
        ("/deploy", "rollback api plt 21", "expected /deploy rollback <component> <env> [N], N from 1 to 20"),
        ("/deploy", "rollback api plt -1", "expected /deploy rollback <component> <env> [N], N from 1 to 20"),
        ("/deploy", "rollback api plt two", "expected /deploy rollback <component> <env> [N], N from 1 to 20"),
        ("/deploy", "rollback api plt 1 2", "expected /deploy rollback <component> <env> [N], N from 1 to 20"),
        ("/deploy", "rollback api", "expected /deploy rollback <component> <env> [N], N from 1 to 20"),
        ("/deploy", "rollback", "expected /deploy rollback <component> <env> [N], N from 1 to 20"),
        ("/deploy", "rollback web plt", "unknown component `web`"),
        ("/deploy", "rollback api mars 2", "unknown environment `mars`"),
        ("/build", "rollback api plt", "rolling back is for deploys: /deploy rollback <component> <env> [N], N from 1"),
    ],
)
def test_a_wrong_rollback_is_usage(config: Config, slash: str, text: str, problem: str) -> None:
    parsed = parse(slash, text, config)
    assert isinstance(parsed, Usage), parsed
    assert parsed.problem.startswith(problem), parsed.problem
    assert parsed.message.startswith("⚠️ ") and "/deploy rollback <component> <env> [N]" in parsed.message


@given(count=st.integers(-5, 100) | st.text(min_size=1, max_size=4).filter(lambda t: not t.isspace()))
def test_any_count_is_a_rollback_of_that_many_or_usage(count: int | str) -> None:
    text = str(count).split()[0] if str(count).split() else "x"
    parsed = parse("/deploy", f"rollback api plt {text}", current_config())
    if text.isdecimal() and 1 <= int(text) <= commands.MAX_ROLLBACK_STEPS:
        assert parsed == Rollback(Action.DEPLOY, "api", "plt", int(text))
    else:
        assert isinstance(parsed, Usage) and parsed.problem.startswith("expected /deploy rollback"), parsed


def test_who_may_roll_back_is_who_may_deploy_there(config: Config) -> None:
    for environment in config.environments:
        asked = Rollback(Action.DEPLOY, "api", environment)
        deploy = commands.Dispatch(Action.DEPLOY, "api", environment)
        assert commands.audience_for(config, asked) == commands.audience_for(config, deploy)
    prod = Rollback(Action.DEPLOY, "api", "prod")
    refused = commands.decide(prod, commands.audience_for(config, prod), "U0ALICE")
    assert refused == commands.Refused("you may not run /deploy rollback api prod", commands.audience_for(config, prod))
    allowed = commands.decide(prod, commands.audience_for(config, prod), "U0PLAT", frozenset({"S0PLATFORM"}))
    assert isinstance(allowed, commands.Allowed)
    assert isinstance(
        commands.decide(Rollback(Action.DEPLOY, "api", "plt"), commands.ANYONE, "U0ALICE"), commands.Allowed
    )


def test_the_confirm_button_carries_only_what_it_names(config: Config) -> None:
    target = rollback.RollbackTarget("api", "plt", SHAS[0], "7.COMPLETED")
    assert rollback.RollbackTarget.read(target.value, config) == target
    assert rollback.RollbackTarget.read(f"api plt {SHAS[0]} 0", config) is not None  # no lock was ever taken
    for value in [
        f"web plt {SHAS[0]} 7.COMPLETED",
        f"api mars {SHAS[0]} 7.COMPLETED",
        f"api plt {SHAS[0][:7]} 7.COMPLETED",
        f"api plt {SHAS[0]} 7",
        f"api plt {SHAS[0]} 07.COMPLETED",
        f"api plt {SHAS[0]} 7.COMPLETED extra",
        "",
    ]:
        assert rollback.RollbackTarget.read(value, config) is None, value


@pytest.mark.parametrize(
    ("seen", "handed", "before_it", "stands"),
    [
        ("7.IN_PROGRESS", 8, Status.FAILED, True),  # the deploy it waited for failed: the same commit is live
        ("7.IN_PROGRESS", 8, Status.EXPIRED, True),
        ("7.IN_PROGRESS", 8, Status.COMPLETED, False),  # it completed: another commit is live now
        ("7.IN_PROGRESS", 9, Status.FAILED, False),  # someone else held the lock in between
        ("7.COMPLETED", 8, Status.FAILED, False),  # never a hand-off behind a free lock
    ],
)
def test_a_rollback_handed_the_lock_from_the_queue_stands_only_if_nothing_went_live_meanwhile(
    seen: str, handed: int, before_it: Status, stands: bool
) -> None:
    held = LockRecord(
        KEY, handed, "press-1", Status.IN_PROGRESS, "U0CAROL", "carol", iso(0), 600, "api", "plt",
        previous_status=before_it.value,
    )  # fmt: skip
    assert rollback.handed_on_unchanged(held, seen) is stands


# ------------------------------------------------------------------------------------------ the choice
@dataclass(frozen=True)
class Holding:
    """One deploy under the key, as the lock recorded it."""

    component: str
    environment: str
    outcome: Status
    sha: str
    """Empty: recorded before the history kept commits."""
    ended_at: int
    token: int

    def record(self) -> LockRecord:
        notes = {"ref": self.sha, "commitSha": self.sha} if self.sha else {}
        return LockRecord(
            KEY,
            self.token,
            f"req-{self.token}",
            self.outcome,
            f"U0USER{self.token}",
            f"user{self.token}",
            iso(self.ended_at - 60),
            self.ended_at + 600,
            self.component,
            self.environment,
            released_at=iso(self.ended_at),
            released_by="U0ADMIN" if self.outcome is Status.FORCE_RELEASED else None,
            release_reason="cancelled from Slack by admin" if self.outcome is Status.FORCE_RELEASED else None,
            notes=notes,
        )


@st.composite
def holdings(draw: st.DrawFn) -> list[Holding]:
    """Deploys oldest first, under a key that two components and environments may share; some older than the
    history keeps."""
    count = draw(st.integers(0, 20))
    at = NOW - draw(st.integers(1, 33)) * 86_400
    found = []
    for token in range(1, count + 1):
        at += draw(st.integers(60, 86_400))
        found.append(
            Holding(
                component=draw(st.sampled_from(["api", "api", "api", "router"])),
                environment=draw(st.sampled_from(["plt", "plt", "plt", "prod"])),
                outcome=draw(
                    st.sampled_from([Status.COMPLETED] * 6 + [Status.FAILED, Status.EXPIRED, Status.FORCE_RELEASED])
                ),
                sha=draw(st.sampled_from([*SHAS[:5], ""])),
                ended_at=at,
                token=token,
            )
        )
    return [h for h in found if h.ended_at <= NOW]


def history_of(held: list[Holding]) -> list[HistoryEvent]:
    """The events the history writer derives from each holding, newest first."""
    events = [e for h in held for e in events_of(None, h.record().to_item(), h.ended_at)]
    return sorted(events, key=lambda e: e.sort_key, reverse=True)


@given(held=holdings(), steps=st.integers(1, 4), lag=st.booleans(), lock_shown=st.booleans())
def test_the_target_is_the_nth_distinct_completed_commit_before_the_live_one(
    held: list[Holding], steps: int, lag: bool, lock_shown: bool
) -> None:
    """Whatever the history: live is the newest COMPLETED deploy of api (plt) in the last 30 days; the target
    COMPLETED before it, is not its commit, and exactly steps-1 other distinct commits completed between them;
    there is none iff fewer than ``steps`` distinct earlier commits completed. The lock's own item counts when the
    history lags behind it (its newest holding not written yet)."""
    lock = held[-1].record() if held and (lock_shown or lag) else None
    history = history_of(held[:-1] if lag and held else held)
    choice = rollback.choose(lock, iter(history), component="api", environment="plt", steps=steps, now=NOW)

    mine = [
        h
        for h in reversed(held)
        if (h.component, h.environment) == ("api", "plt")
        and h.outcome is Status.COMPLETED
        and h.ended_at >= NOW - RETENTION_SECONDS
    ]
    if not mine:
        assert choice == rollback.NothingToGoBackTo(None, 0, steps)
        return
    live = mine[0]
    if not live.sha:
        assert choice == rollback.NothingToGoBackTo(None, 0, steps, live_unknown=True)
        return
    earlier = list(dict.fromkeys(h.sha for h in mine[1:] if h.sha and h.sha != live.sha))
    assert choice.live is not None and (choice.live.sha, choice.live.token) == (live.sha, live.token)
    if len(earlier) < steps:
        event("nothing to go back to")
        assert isinstance(choice, rollback.NothingToGoBackTo) and choice.found == len(earlier)
        return
    event(f"went back {steps}")
    assert isinstance(choice, rollback.GoBack)
    target = choice.target
    assert target.sha != live.sha and target.token < live.token  # never the live commit, never a newer one
    [chosen] = [h for h in held if h.token == target.token]
    assert (chosen.outcome, chosen.sha, chosen.component, chosen.environment) == (
        Status.COMPLETED,
        target.sha,
        "api",
        "plt",
    )
    between = {h.sha for h in mine if target.token < h.token < live.token and h.sha and h.sha != live.sha}
    assert target.sha not in between and len(between) == steps - 1
    assert target == max(
        (rollback.Deployed(h.sha, f"U0USER{h.token}", f"user{h.token}", h.ended_at, h.token, False) for h in mine),
        key=lambda d: d.token if d.sha == target.sha else -1,
    )  # the newest completion of that commit: who deployed it and when


def test_two_deploys_and_a_failure_go_back_to_the_first() -> None:
    held = [
        Holding("api", "plt", Status.COMPLETED, SHAS[0], NOW - 3000, 1),
        Holding("api", "plt", Status.COMPLETED, SHAS[0], NOW - 2500, 2),
        Holding("api", "plt", Status.COMPLETED, SHAS[1], NOW - 2000, 3),
        Holding("api", "plt", Status.FAILED, SHAS[2], NOW - 1000, 4),
    ]
    choice = rollback.choose(
        held[-1].record(), iter(history_of(held)), component="api", environment="plt", steps=1, now=NOW
    )
    assert isinstance(choice, rollback.GoBack)
    assert (choice.live.sha, choice.target.sha, choice.target.token) == (SHAS[1], SHAS[0], 2)
    message = rollback.answer(choice, "api", "plt", held[-1].record())
    assert message.text == f"Roll back api (plt) to {SHAS[0][:7]}? Live now: {SHAS[1][:7]}."
    section = message.blocks[0]["text"]["text"] if message.blocks else ""
    assert f"Goes live: `{SHAS[0][:7]}`, deployed by user2 (<@U0USER2>), completed <!date^{NOW - 2500}^" in section
    assert f"Live now: `{SHAS[1][:7]}`, deployed by user3 (<@U0USER3>), completed <!date^{NOW - 2000}^" in section
    confirm = message.blocks[2]["elements"][0] if message.blocks else {}
    assert confirm["text"]["text"] == "Confirm rollback"
    assert confirm["value"] == f"api plt {SHAS[0]} 4.FAILED"


def test_only_history_older_than_30_days_is_nothing_to_go_back_to() -> None:
    old = [
        Holding("api", "plt", Status.COMPLETED, sha, NOW - RETENTION_SECONDS - 100 + i, i + 1)
        for i, sha in enumerate(SHAS)
    ]
    choice = rollback.choose(None, iter(history_of(old)), component="api", environment="plt", steps=1, now=NOW)
    assert choice == rollback.NothingToGoBackTo(None, 0, 1)
    assert rollback.nothing_text(choice, "api", "plt") == (
        "🤷 Nothing to roll back to: no deploy of api (plt) completed in the last 30 days (the history keeps 30)."
    )
    one = [Holding("api", "plt", Status.COMPLETED, SHAS[0], NOW - 100, 1)]
    alone = rollback.choose(None, iter(history_of(one)), component="api", environment="plt", steps=2, now=NOW)
    assert isinstance(alone, rollback.NothingToGoBackTo) and alone.found == 0
    assert "is live, and no earlier commit of api (plt) completed in the last 30 days (asked to go back 2)" in (
        rollback.nothing_text(alone, "api", "plt")
    )


def test_a_rollback_marked_in_the_history_counts_like_any_completed_deploy() -> None:
    first = Holding("api", "plt", Status.COMPLETED, SHAS[0], NOW - 300, 1)
    second = Holding("api", "plt", Status.COMPLETED, SHAS[1], NOW - 200, 2)
    back = Holding("api", "plt", Status.COMPLETED, SHAS[0], NOW - 100, 3)
    item = dict(back.record().to_item())
    item["rollback"] = ROLLBACK_NOTED
    history = history_of([first, second])
    [ending] = [e for e in events_of(None, item, NOW - 100) if e.kind is EventKind.RELEASE]
    assert ending.rollback
    choice = rollback.choose(None, iter([ending, *history]), component="api", environment="plt", steps=1, now=NOW)
    assert isinstance(choice, rollback.GoBack) and choice.live.rollback and choice.target.sha == SHAS[1]


# -------------------------------------------------------------------------------------- pages, on moto
@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[HistoryTable]:
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        history = HistoryTable("chatops-history-rollback-test", boto3.client("dynamodb"))
        history.create_table()
        yield history


def test_the_history_is_read_newest_first_a_page_at_a_time_and_only_as_far_as_needed(table: HistoryTable) -> None:
    held = [
        Holding("api", "plt", Status.COMPLETED, SHAS[token % 2], NOW - 10_000 + token * 60, token)
        for token in range(1, 31)
    ]
    for event_ in history_of(held):
        table.put(event_)
    table.put(HistoryEvent(KEY, EventKind.ACQUIRE, 99, iso(NOW - RETENTION_SECONDS - 5)))  # past the 30 days
    table.put(HistoryEvent("deploy-api-prod", EventKind.ACQUIRE, 1, iso(NOW - 5)))  # another key
    read = list(table.newest_first(KEY, NOW - RETENTION_SECONDS, page_size=7))
    assert [e.sort_key for e in read] == sorted((e.sort_key for e in history_of(held)), reverse=True)

    pages: list[str] = []
    table.client.meta.events.register("before-call.dynamodb.Query", lambda **_: pages.append("a page"))
    choice = rollback.choose(
        None,
        table.newest_first(KEY, NOW - RETENTION_SECONDS, page_size=3),
        component="api",
        environment="plt",
        steps=1,
        now=NOW,
    )
    assert isinstance(choice, rollback.GoBack) and choice.target.token == 29
    assert len(pages) == 1  # the answer was on the first page: no other page was asked for
