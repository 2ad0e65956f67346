"""Freeze windows applied by the reaper's sweep, with the real lockcore store (in memory, its writes able to crash),
the real reaper and freeze flows, the ledger's in-memory twin and a simulated clock.

A state machine moves the clock — sweeps at most a minute apart, or a jump to just before the next boundary — and
an admin freezes and unfreezes by hand; the promises are checked after every step: a window applies within a sweep
of its start and is gone at its end, a lift holds until the next occurrence, a manual freeze is never lifted by a
window's end, and a deploy is refused exactly while a freeze is live.
"""

from __future__ import annotations

import itertools
import json
import logging
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import botocore.exceptions
import pytest
from hypothesis import assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lockcore import machine
from lockcore.record import LockRecord
from tests.system.twins import (
    Died,
    Fault,
    Faults,
    GitHubTwin,
    HistoryTwin,
    IdempotencyTwin,
    LedgerTwin,
    LockTableTwin,
    PendingTwin,
    QueuesTwin,
    SlackTwin,
)
from tests.workers.test_windows import BASE
from workers.adapters import runtime
from workers.flows import freeze, home, insights, status
from workers.flows.reaper import Reaper
from workers.flows.windows import Applied
from workers.protocol import board, render, schema
from workers.protocol.commands import Freeze, Unfreeze
from workers.protocol.config import Config, config_of
from workers.protocol.envelope import CommandEnvelope
from workers.protocol.history import EventKind
from workers.protocol.windows import OneOffWindow, WeeklyWindow, Window, schedule

ENV = "prod"
KEY = freeze.freeze_key(ENV)
ADMIN = "U0ADMIN"
SWEEP = 60
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe")
CONFIG = BASE + '[authorization]\nadmins = { users = ["U0ADMIN"] }\n'


@pytest.fixture(autouse=True)
def no_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")


def configured(*windows: Window) -> Config:
    checked = schema.check(tomllib.loads(CONFIG), schema.Form.FILE, "test")
    assert checked.errors == ()
    return config_of(checked.values, {}).__class__(
        **{**config_of(checked.values, {}).__dict__, "freeze_windows": windows}
    )


class Stage:
    """One world: the store, the ledger, Slack and GitHub as twins, a clock the test moves."""

    def __init__(self, config: Config, now: int) -> None:
        self.now = now
        self.config = config
        self.faults = Faults()
        self.history = HistoryTwin()
        self.store = LockTableTwin(lambda: self.now, self.faults, self.history)
        self.ledger = LedgerTwin(self.faults)
        self.slack = SlackTwin(lambda: self.now, self.faults)
        self.github = GitHubTwin(lambda: self.now, self.faults)
        self.requests = itertools.count()

    @contextmanager
    def installed(self) -> Iterator[Stage]:
        adapters = runtime.Adapters(
            lock_store=self.store,
            slack=self.slack,
            github=self.github,
            idempotency=IdempotencyTwin(lambda: self.now, self.faults, worker_timeout=45),
            pending=PendingTwin(self.faults),
            history=self.history,
            ledger=self.ledger,
            send=QueuesTwin(lambda: self.now, self.faults, visibility=270, max_receive_count=5).send,
        )
        quiet = logging.getLogger(runtime.SERVICE)
        level, quiet.level = quiet.level, logging.CRITICAL
        try:
            with runtime.using(adapters):
                yield self
        finally:
            quiet.setLevel(level)

    def sweep(self) -> Reaper:
        reaper = Reaper(self.config, self.store, self.github, self.slack)
        reaper.sweep()
        return reaper

    def admin(self, command: Freeze | Unfreeze) -> None:
        number = next(self.requests)
        envelope = CommandEnvelope(
            request_id=f"1334522{number}.738474920.admin{number}",
            correlation_id=f"cid-admin-{number}",
            command=command,
            slash="/deploy",
            text="",
            user_id=ADMIN,
            user_name="admin",
            channel_id="C0BUILDS",
            team_id="T0TEAM",
            api_app_id="A0APP",
            response_url=f"https://hooks.slack.com/commands/admin{number}",
            received_at=self.now,
        )
        self.slack.issue(envelope.response_url, ADMIN)
        freeze.handle(envelope, command, config=self.config, store=self.store)

    def freeze_record(self) -> LockRecord | None:
        return freeze.current(self.store, ENV, self.now)


@st.composite
def windows(draw: st.DrawFn) -> tuple[WeeklyWindow, ...]:
    zone = draw(st.sampled_from(ZONES))
    found = []
    for name in draw(st.sampled_from([("a",), ("a", "b")])):
        days = tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=1, max_size=3))))
        start = time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 30])))
        end = time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 30])))
        assume(end != start)
        found.append(WeeklyWindow(ENV, name, f"reason {name}", zone, days, start, end))
    return tuple(found)


class WindowSweeps(RuleBasedStateMachine):
    """The model: which occurrences an admin lifted, and the manual freeze an admin holds."""

    stage: Stage

    def __init__(self) -> None:
        super().__init__()
        self.lifted: set[str] = set()
        self.manual: LockRecord | None = None
        self.swept = False
        self._exit: Callable[[], Any] | None = None

    @initialize(
        found=windows(),
        days=st.integers(0, 700),
        minute=st.integers(0, 24 * 60 - 1),
        once=st.none() | st.tuples(st.integers(0, 48 * 60), st.integers(1, 72 * 60)),
    )
    def start(self, found: tuple[WeeklyWindow, ...], days: int, minute: int, once: tuple[int, int] | None) -> None:
        now = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) + days * 86400 + minute * 60
        every: tuple[Window, ...] = found
        if once is not None:  # a one-off window too, starting within two days (local time), up to three days long
            zone = found[0].zone
            begins = datetime.fromtimestamp(now, ZoneInfo(zone)).replace(tzinfo=None, second=0)
            begins += timedelta(minutes=once[0])
            every += (OneOffWindow(ENV, "once", "reason once", zone, begins, begins + timedelta(minutes=once[1])),)
        self.stage = Stage(configured(*every), now)
        self._context = self.stage.installed()
        self._context.__enter__()

    def teardown(self) -> None:
        if hasattr(self, "_context"):
            self._context.__exit__(None, None, None)

    def _active(self) -> Any:
        return schedule(self.stage.config.freeze_windows, ENV, self.stage.now).active

    def _move(self, to: int) -> None:
        self.stage.now = to
        if self.manual is not None and self.manual.lease_expires_at <= to:
            self.manual = None  # its own lease ended it: thirty days on
        self.swept = False

    # --------------------------------------------------------------------------------------------- rules
    @rule(gap=st.integers(1, SWEEP), twice=st.booleans())
    def sweep(self, gap: int, twice: bool) -> None:
        self._move(self.stage.now + gap)
        self.stage.sweep()
        if twice:  # a second sweep at the same moment (EventBridge delivers at least once)
            self.stage.sweep()
        self.swept = True

    @rule(before=st.integers(SWEEP + 1, 3 * 3600))
    def jump_to_just_before_the_next_boundary(self, before: int) -> None:
        found = schedule(self.stage.config.freeze_windows, ENV, self.stage.now)
        boundary = found.active.end if found.active is not None else found.next.start if found.next else None
        if boundary is not None and boundary - before > self.stage.now:
            self._move(boundary - before)  # no sweep would have changed anything in between

    @rule(write=st.integers(0, 2), fault=st.sampled_from([Fault.CRASH_BEFORE, Fault.CRASH_AFTER, Fault.LOST]))
    def a_sweep_dies_at_a_write(self, write: int, fault: Fault) -> None:
        self.stage.now += 1
        self.stage.faults.plan("store.write", fault, after=write)
        with suppress(Died):
            self.stage.sweep()
        self.stage.faults.clear()
        self.swept = False

    @rule()
    def admin_unfreezes(self) -> None:
        active = self._active()
        self.stage.admin(Unfreeze(ENV))
        if active is not None:
            self.lifted.add(active.id)
        self.manual = None

    @precondition(lambda self: self.stage.freeze_record() is None)
    @rule()
    def admin_freezes(self) -> None:
        self.stage.admin(Freeze(ENV, "hotfix only"))
        record = self.stage.freeze_record()
        assert record is not None and record.locked_by == ADMIN
        self.manual = record

    # ---------------------------------------------------------------------------------------- promises
    @invariant()
    def a_manual_freeze_is_never_lifted_by_a_window(self) -> None:
        if self.manual is not None:
            record = self.stage.freeze_record()
            assert record is not None and record.owner == self.manual.owner, "the manual freeze was lifted"

    @invariant()
    def a_window_freeze_lasts_exactly_its_occurrence_unless_lifted(self) -> None:
        record = self.stage.freeze_record()
        active = self._active()
        if record is not None and record.locked_by != ADMIN:
            assert active is not None and record.owner == active.owner, "a window's freeze outlived its occurrence"
            assert record.lease_expires_at == active.end
            assert active.id not in self.lifted, "a lifted occurrence froze again"

    @invariant()
    def after_a_sweep_a_going_occurrence_is_frozen_with_its_reason(self) -> None:
        active = self._active()
        if not self.swept or active is None or active.id in self.lifted or self.manual is not None:
            return
        record = self.stage.freeze_record()
        assert record is not None and record.owner == active.owner, "the sweep did not apply the window"
        assert freeze.reason_of(record) == active.reason

    @invariant()
    def a_deploy_is_refused_exactly_while_frozen(self) -> None:
        refused = freeze.refuse_frozen(self.stage.store, ENV, self.stage.now)
        assert (refused is not None) == (self.stage.freeze_record() is not None)


TestWindowSweeps = WindowSweeps.TestCase
TestWindowSweeps.settings = settings(stateful_step_count=40)


# ------------------------------------------------------------------------------------------------ examples
BERLIN_WEEKDAY_EVENINGS = WeeklyWindow(ENV, "evening", "evenings", "Europe/Berlin", (5, 6), time(2, 30), time(9, 0))


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def test_a_window_freezes_at_its_start_and_its_end_shows_in_the_history_as_the_window_ending() -> None:
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T00:59:00+00:00"))  # 01:59 CET, Sunday
    with stage.installed():
        assert stage.sweep().windows == []
        stage.now += SWEEP  # 03:00 CEST: 02:30 was skipped; the window starts at the jump
        assert [step.applied for step in stage.sweep().windows] == [Applied.FROZE]
        refused = freeze.refuse_frozen(stage.store, ENV, stage.now)
        assert refused is not None and "scheduled window evening" in refused and "evenings" in refused
        stage.now = at("2026-03-29T07:00:00+00:00")  # 09:00 CEST
        assert freeze.refuse_frozen(stage.store, ENV, stage.now) is None  # its lease ended with it
        stage.sweep()
        ended = stage.history.recent(KEY)[0]
        assert ended.kind is EventKind.EXPIRE and ended.reason == "the scheduled window evening ended"
        assert [e.kind for e in stage.history.recent(KEY)] == [EventKind.EXPIRE, EventKind.FREEZE]


class LiftedBetweenReads(LedgerTwin):
    """The admin's unfreeze runs right after the sweep's first read of the lift (before its acquire); the second
    read raises ``second`` when given (the ledger failing, the Lambda dying)."""

    def __init__(self, stage: Stage, second: BaseException | None = None) -> None:
        super().__init__(stage.faults)
        self.stage, self.second, self.reads = stage, second, 0

    def lifted(self, environment: str, occurrence_id: str) -> bool:
        self.reads += 1
        if self.reads == 2 and self.second is not None:
            raise self.second
        answer = super().lifted(environment, occurrence_id)
        if self.reads == 1:
            self.stage.admin(Unfreeze(ENV))
        return answer


def test_a_sweep_that_read_no_lift_lets_go_of_what_it_took_when_the_lift_came_in_between() -> None:
    """The race of the flow's proof: the sweep reads no lift, the admin lifts and finds nothing to release, the
    sweep takes the freeze — and must let go of it."""
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    stage.ledger = LiftedBetweenReads(stage)
    with stage.installed():
        assert [step.applied for step in stage.sweep().windows] == [Applied.LET_GO]
        assert stage.freeze_record() is None
        assert [step.applied for step in stage.sweep().windows] == [Applied.LIFTED]
        assert stage.history.recent(KEY)[0].kind is EventKind.UNFREEZE


def test_an_unfreeze_whose_lift_cannot_be_kept_releases_nothing() -> None:
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    with stage.installed():
        stage.sweep()
        stage.faults.plan("ledger.write", Fault.FAIL)
        stage.admin(Unfreeze(ENV))
        assert stage.freeze_record() is not None
        assert "couldn't record the lift" in stage.slack.said[-1].text


@pytest.mark.parametrize("fault", [Fault.CRASH_AFTER, Fault.LOST])
def test_a_sweep_that_died_after_its_acquire_is_finished_by_the_next(fault: Fault) -> None:
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    with stage.installed():
        stage.faults.plan("store.write", fault)
        with suppress(Died):
            stage.sweep()
        record = stage.freeze_record()
        assert record is not None and freeze.reason_of(record) == freeze.NO_REASON
        assert [step.applied for step in stage.sweep().windows] == [Applied.NOTED]
        record = stage.freeze_record()
        assert record is not None and freeze.reason_of(record) == "evenings"
        assert machine.is_live(record.to_item(), stage.now)


def test_status_shows_a_windows_freeze_with_its_reason_and_end_and_the_next_window() -> None:
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    with stage.installed():
        stage.sweep()
        coming = schedule(stage.config.freeze_windows, ENV, stage.now).next
        assert coming is not None
        message = status.status_message(stage.store.list(), stage.now, [coming])
    shown = json.dumps(message.blocks, ensure_ascii=False)
    assert "scheduled window evening" in shown and "evenings" in shown
    assert f"<!date^{at('2026-03-29T07:00:00+00:00')}^" in shown  # ends at 09:00 CEST
    assert f"Next scheduled freeze of *prod*: evening, <!date^{coming.start}^" in shown


def test_the_history_tells_a_windows_end_and_names_no_one_who_is_not_a_user() -> None:
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    with stage.installed():
        stage.sweep()
        stage.now = at("2026-03-29T07:01:00+00:00")
        stage.sweep()
    lines = [insights.describe_event(event) for event in stage.history.recent(KEY)]
    assert lines == [
        "⌛ lease of scheduled window evening expired after 5h01m: “the scheduled window evening ended”",
        "🧊 frozen by scheduled window evening",
    ]


def test_an_early_lift_says_until_when_and_the_next_sweep_leaves_it_lifted() -> None:
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    with stage.installed():
        stage.sweep()
        stage.admin(Unfreeze(ENV))
        assert stage.freeze_record() is None
        said = [utterance.text for utterance in stage.slack.said]
        assert "✅ Unfroze *prod*. The scheduled window evening stays lifted until its next occurrence." in said
        assert any(text.startswith("☀️ <@U0ADMIN> lifted the freeze on *prod*") for text in said)
        stage.now += SWEEP
        assert [step.applied for step in stage.sweep().windows] == [Applied.LIFTED]
        stage.admin(Freeze(ENV, "hotfix only"))  # an admin may still freeze by hand during the window
        manual = stage.freeze_record()
        assert manual is not None and manual.locked_by == ADMIN
        stage.now = at("2026-03-29T07:00:00+00:00")
        stage.sweep()
        assert stage.freeze_record() == manual  # the window's end is not the manual freeze's


@pytest.mark.parametrize(
    ("between", "outer", "inner"),
    [
        ("acquire", Applied.HELD, Applied.FROZE),  # both read it free; the second acquire re-enters the first's
        ("note", Applied.FROZE, Applied.NOTED),  # the other finds the freeze before its reason: notes it
    ],
)
def test_two_sweeps_at_once_take_one_freeze(between: str, outer: Applied, inner: Applied) -> None:
    """Another sweep runs whole just before this one's ``between`` write: one freeze, one token, one reason."""
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    with stage.installed():
        write = getattr(stage.store, between)
        other: list[Reaper] = []
        started: list[bool] = []

        def interleaved(*args: Any, **kwargs: Any) -> Any:
            if not started:
                started.append(True)
                other.append(stage.sweep())  # the other sweep, concurrent with this one
            return write(*args, **kwargs)

        setattr(stage.store, between, interleaved)
        first = stage.sweep()
    assert [step.applied for step in first.windows] == [outer]
    assert [step.applied for step in other[0].windows] == [inner]
    record = stage.freeze_record()
    assert record is not None and record.token == 1 and freeze.reason_of(record) == "evenings"


def test_the_app_home_shows_a_windows_freeze_and_the_next_window() -> None:
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    with stage.installed():
        stage.sweep()
        shown = home.read_board(stage.store, stage.now, stage.config)
    view = json.dumps(board.home_view(shown, board.Viewer("U0ALICE")), ensure_ascii=False)
    assert "scheduled window evening" in view and "evenings" in view
    assert "Next scheduled freeze of *prod*: evening" in view


@pytest.mark.parametrize("hours", [1, 4])
def test_a_window_edited_while_it_holds_the_freeze_holds_it_to_its_new_end(hours: int) -> None:
    """The same occurrence (same window, same start) with a new end and reason: the freeze ends then, with no thaw
    at the old end and no history saying the window ended while it goes on, and a refused deploy is told why."""
    release = OneOffWindow(ENV, "release", "Release", "UTC", datetime(2026, 12, 1, 9), datetime(2026, 12, 1, 11))
    stage = Stage(configured(release), at("2026-12-01T09:00:30+00:00"))
    with stage.installed():
        assert [step.applied for step in stage.sweep().windows] == [Applied.FROZE]
        new_end = datetime(2026, 12, 1, 9 + hours)
        stage.config = configured(OneOffWindow(ENV, "release", "Moved", "UTC", release.starts_at, new_end))
        stage.now += SWEEP
        stage.sweep()
        held = stage.freeze_record()
        assert held is not None and held.lease_expires_at == at(f"{new_end.isoformat()}+00:00")
        assert freeze.reason_of(held) == "Moved"
        stage.now = at(f"{new_end.isoformat()}+00:00") + SWEEP
        stage.sweep()
        assert stage.freeze_record() is None
        ended = [e for e in stage.history.recent(KEY) if e.kind is EventKind.EXPIRE]
        assert len(ended) == 1, "the window ended once"


@pytest.mark.parametrize("second_read", ["fails", "dies"])
def test_a_lift_that_came_in_between_holds_when_the_sweeps_second_read_never_answered(second_read: str) -> None:
    """The proof's race again, but the sweep's read after its acquire fails (or the sweep dies before it): the
    admin was told the window stays lifted, so a later sweep, finding the occurrence's own freeze, lets go."""
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    failure = botocore.exceptions.EndpointConnectionError(endpoint_url="https://dynamodb")
    stage.ledger = LiftedBetweenReads(stage, failure if second_read == "fails" else Died("the Lambda timed out"))
    with stage.installed():
        with suppress(Died):
            stage.sweep()
        assert "stays lifted" in stage.slack.said[-1].text
        stage.now += SWEEP
        assert [step.applied for step in stage.sweep().windows] == [Applied.LET_GO]
        assert stage.freeze_record() is None
        assert freeze.refuse_frozen(stage.store, ENV, stage.now) is None


def test_an_unfreeze_whose_release_a_sweep_made_first_says_it_unfroze(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lift is kept, then a sweep finds it and lets go before the admin's own release: the admin is told the
    environment was unfrozen, and the channel hears it, as if theirs had been first."""
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    with stage.installed():
        stage.sweep()
        release = stage.store.force_release

        def a_sweep_first(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("by") == ADMIN:
                assert [step.applied for step in stage.sweep().windows] == [Applied.LET_GO]
            return release(*args, **kwargs)

        monkeypatch.setattr(stage.store, "force_release", a_sweep_first)
        stage.admin(Unfreeze(ENV))
        assert stage.freeze_record() is None
        said = [utterance.text for utterance in stage.slack.said]
        assert said[-1].startswith("✅ Unfroze *prod*.") and "stays lifted" in said[-1]
        assert any("lifted the freeze on *prod*" in text for text in said[:-1])


def test_a_freeze_a_sweep_let_go_is_not_said_to_be_released_by_a_slack_user() -> None:
    stage = Stage(configured(BERLIN_WEEKDAY_EVENINGS), at("2026-03-29T02:00:00+00:00"))
    stage.ledger = LiftedBetweenReads(stage)
    with stage.installed():
        stage.sweep()
        let_go = stage.store.get(KEY)
        assert let_go is not None and let_go.released_by == "scheduler"
        assert render.standing(let_go, stage.now).startswith("free: force-released by scheduler <!date^")


@pytest.mark.parametrize("then", ["no windows", "moved"])
def test_a_window_taken_out_of_the_configuration_lets_go_of_its_freeze_at_the_next_sweep(then: str) -> None:
    """A window removed (or moved to start later) while its occurrence holds the freeze: deploys are not held to
    a window nobody configures any more. The sweep lets go at once — and a moved window takes its own occurrence
    when it comes — while a manual freeze is never let go."""
    release = OneOffWindow(ENV, "release", "Release", "UTC", datetime(2026, 12, 1, 9), datetime(2026, 12, 1, 11))
    stage = Stage(configured(release), at("2026-12-01T09:00:30+00:00"))
    with stage.installed():
        assert [step.applied for step in stage.sweep().windows] == [Applied.FROZE]
        moved = OneOffWindow(ENV, "release", "Release", "UTC", datetime(2026, 12, 1, 10), datetime(2026, 12, 1, 11))
        stage.config = configured() if then == "no windows" else configured(moved)
        stage.now += SWEEP
        stage.sweep()
        assert stage.freeze_record() is None, "the freeze of a window no longer configured is let go"
        [ended] = [e for e in stage.history.recent(KEY) if e.kind is EventKind.UNFREEZE]
        assert "no longer" in ended.reason
        if then == "moved":
            stage.now = at("2026-12-01T10:00:30+00:00")
            assert [step.applied for step in stage.sweep().windows] == [Applied.FROZE]
        stage.config = configured()
        stage.now += SWEEP
        stage.sweep()
        assert stage.freeze_record() is None
        stage.admin(Freeze(ENV, "by hand"))
        stage.now += SWEEP
        stage.sweep()
        manual = stage.freeze_record()
        assert manual is not None and manual.locked_by == ADMIN, "a manual freeze is never a window's to let go"
