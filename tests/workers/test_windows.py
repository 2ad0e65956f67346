"""Freeze windows' schedule (pure): configuration, wall-clock rules across daylight-saving changes, merging.

The oracle here is a person watching a wall clock, minute by minute: a window starts at the first instant the
clock in its zone reads its start or later, and ends the same way. It shares no code with
:mod:`workers.protocol.windows`, which computes the same instants by arithmetic.
"""

from __future__ import annotations

import itertools
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

from workers.cli.demo import WEEKEND_WINDOW
from workers.protocol import schema
from workers.protocol.config import config_of
from workers.protocol.windows import (
    Occurrence,
    OneOffWindow,
    WeeklyWindow,
    instant,
    merged,
    occurrence_of,
    occurrences,
    schedule,
    scheduled_note,
    scheduled_reason,
    windows_of,
)

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kathmandu")
"""Lord Howe moves its clocks by 30 minutes; Kathmandu is UTC+5:45 and never changes."""
YEARS = (2026, 2027)
BASE = """
components = ["api"]
environments = ["plt", "prod"]
[github]
repository = "example-org/platform"
[slack]
allow_any_workspace = true
"""


# ------------------------------------------------------------------------------------------------- oracle
def wall(at: int, zone: str) -> datetime:
    return datetime.fromtimestamp(at, ZoneInfo(zone)).replace(tzinfo=None)


def first_reading(local: datetime, zone: str) -> int:
    """The first instant at which the zone's wall clock reads ``local`` or later, found minute by minute."""
    as_utc = int(local.replace(tzinfo=UTC).timestamp())
    at = as_utc - 15 * 3600  # no zone is ahead of UTC by 15 hours: the clock reads earlier here
    while wall(at, zone) + timedelta(hours=3) < local:
        at += 3600  # coarse, while far below
    assert wall(at, zone) < local
    while wall(at, zone) < local:
        at += 60
    return at


@cache
def transitions(zone: str) -> tuple[int, ...]:
    """The instants the zone's UTC offset changes in :data:`YEARS` (to the minute)."""
    tz, found = ZoneInfo(zone), []
    start = int(datetime(YEARS[0], 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(YEARS[-1] + 1, 1, 1, tzinfo=UTC).timestamp())
    for at in range(start, end, 1800):
        before, after = (datetime.fromtimestamp(t, tz).utcoffset() for t in (at, at + 1800))
        if before != after:
            low, high = at, at + 1800
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, tz).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            found.append(high)
    return tuple(found)


@st.composite
def near_a_change(draw: st.DrawFn, zone: str) -> int:
    """An instant (whole minutes) within a few hours of one of the zone's offset changes, or anywhere in the years."""
    changes = transitions(zone)
    if len(changes) > 0 and draw(st.booleans()):
        return draw(st.sampled_from(changes)) + 60 * draw(st.integers(-240, 240))
    start = int(datetime(YEARS[0], 1, 1, tzinfo=UTC).timestamp())
    return start + 60 * draw(st.integers(0, 2 * 365 * 24 * 60))


times_of_day = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))


@st.composite
def weekly(draw: st.DrawFn, zone: str, name: str = "w") -> WeeklyWindow:
    days = tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=1, max_size=3))))
    start = draw(times_of_day)
    end = draw(times_of_day)
    end_day = draw(st.none() | st.integers(0, 6))
    assume(not (end == start and (end_day is None or end_day in days)))  # the schema refuses it
    return WeeklyWindow("prod", name, f"reason {name}", zone, days, start, end, end_day)


def oracle_spans(window: WeeklyWindow, around: int) -> list[tuple[int, int]]:
    """Each occurrence as the wall clock says, for start dates near ``around``: the end is the earliest end time
    (on the end day, if any) after the start."""
    spans = []
    centre = wall(around, window.zone).date()
    for offset in range(-9, 2):
        day = centre + timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        begins = datetime.combine(day, window.start)
        candidates = [datetime.combine(day + timedelta(days=k), window.end) for k in range(0, 9)]
        ends = min(c for c in candidates if c > begins and (window.end_day is None or c.weekday() == window.end_day))
        spans.append((first_reading(begins, window.zone), first_reading(ends, window.zone)))
    return spans


def frozen_by_oracle(windows: list[WeeklyWindow], at: int) -> bool:
    return any(start <= at < end for window in windows for start, end in oracle_spans(window, at))


# ------------------------------------------------------------------------------------------- wall clock
@given(st.data())
def test_a_local_time_is_the_first_instant_a_wall_clock_reads_it(data: st.DataObject) -> None:
    zone = data.draw(st.sampled_from(ZONES))
    local = wall(data.draw(near_a_change(zone)), "UTC") + timedelta(minutes=data.draw(st.integers(-90, 90)))
    local += timedelta(hours=data.draw(st.sampled_from([-14, -10, -5, 0, 1, 2, 9, 10, 11])))  # the zone's side
    assert instant(local, ZoneInfo(zone)) == first_reading(local, zone)


def test_a_skipped_time_is_the_jump_and_a_repeated_one_its_first_pass() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC).
    jump = int(datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp())
    assert instant(datetime(2026, 3, 29, 2, 30), berlin) == jump
    assert instant(datetime(2026, 10, 25, 2, 30), berlin) == int(datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp())
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 2026-10-04: 02:00 +10:30 becomes 02:30 +11:00 (15:30 UTC)
    assert instant(datetime(2026, 10, 4, 2, 10), lord_howe) == int(
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC).timestamp()
    )


# ------------------------------------------------------------------------------------------- occurrences
@given(st.data())
def test_an_instant_is_frozen_exactly_when_a_windows_wall_clock_rule_says_so(data: st.DataObject) -> None:
    zone = data.draw(st.sampled_from(ZONES))
    windows = [data.draw(weekly(zone, name)) for name in data.draw(st.sampled_from([["a"], ["a", "b"]]))]
    at = data.draw(near_a_change(zone))
    note(f"at {datetime.fromtimestamp(at, UTC)} UTC, {wall(at, zone)} local")
    found = schedule(windows, "prod", at)
    assert (found.active is not None) == frozen_by_oracle(windows, at)
    if found.active is not None and found.active.end - found.active.start < 300 * 86400:  # (not a chain for ever)
        assert frozen_by_oracle(windows, found.active.start)
        assert frozen_by_oracle(windows, found.active.end - 60)
        assert not frozen_by_oracle(windows, found.active.end)
    if found.next is not None:
        assert found.next.start > at and frozen_by_oracle(windows, found.next.start)
        assert not frozen_by_oracle(windows, found.next.start - 60)


@given(st.data())
def test_no_occurrence_ends_before_it_starts_and_merged_ones_never_overlap(data: st.DataObject) -> None:
    zone = data.draw(st.sampled_from(ZONES))
    windows = [data.draw(weekly(zone, name)) for name in ("a", "b", "c")]
    at = data.draw(near_a_change(zone))
    listed = [o for w in windows for o in occurrences(w, at - 8 * 86400, at + 8 * 86400)]
    assert all(o.start < o.end for o in listed)
    spans = merged(listed)
    assert all(o.start < o.end for o in spans)
    assert all(first.end < second.start for first, second in itertools.pairwise(spans))
    assert {o.reason for o in listed} <= {part for o in spans for part in o.reason.split("; ")}


def test_an_occurrence_inside_one_skipped_hour_is_empty() -> None:
    window = WeeklyWindow("prod", "gap", "r", "Europe/Berlin", (6,), time(2, 10), time(2, 40))  # Sundays
    at = int(datetime(2026, 3, 29, 12, 0, tzinfo=UTC).timestamp())
    starts = [o.start for o in occurrences(window, at - 86400, at + 86400)]
    assert starts == []  # 02:10 to 02:40 did not happen that Sunday
    after = occurrences(window, at + 86400, at + 8 * 86400)
    assert [wall(o.start, "Europe/Berlin").time() for o in after] == [time(2, 10)]


def test_a_weekend_window_runs_from_friday_to_monday_across_the_change() -> None:
    window = WeeklyWindow("prod", "weekend", "r", "Europe/Berlin", (4,), time(15, 0), time(9, 0), end_day=0)
    friday = int(datetime(2026, 10, 23, 14, 0, tzinfo=UTC).timestamp())  # 16:00 CEST
    active = schedule([window], "prod", friday).active
    assert active is not None
    assert wall(active.start, "Europe/Berlin") == datetime(2026, 10, 23, 15, 0)
    assert wall(active.end, "Europe/Berlin") == datetime(2026, 10, 26, 9, 0)
    assert active.end - active.start == (66 + 1) * 3600  # the night of the change is an hour longer


def test_a_one_off_window_far_ahead_is_the_next_one() -> None:
    window = OneOffWindow("prod", "year-end", "r", "UTC", datetime(2027, 12, 20), datetime(2028, 1, 3))
    found = schedule([window], "prod", int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()))
    assert found.active is None and found.next is not None and found.next.window == "year-end"


def test_the_owner_and_the_note_name_the_occurrence_and_its_reason() -> None:
    occurrence = Occurrence("prod", "release-week", 1_790_000_000, 1_790_100_000, "Release: no deploys")
    assert occurrence_of(occurrence.owner) == ("release-week", 1_790_000_000)
    assert occurrence_of("1334522.738474920.abc") is None
    assert scheduled_reason(scheduled_note(occurrence)) == "Release: no deploys"
    assert scheduled_reason("/deploy freeze prod x") is None


# ------------------------------------------------------------------------------------------ configuration
WINDOW_TOML = (
    WEEKEND_WINDOW  # the demo's
    + """
[freeze_windows.prod.year-end]
reason = "Year end"
zone = "America/New_York"
starts_at = "2026-12-21 00:00"
ends_at = "2027-01-04 09:00"
"""
)


def test_windows_read_the_same_from_the_file_and_from_a_stack() -> None:
    checked = schema.check(tomllib.loads(BASE + WINDOW_TOML), schema.Form.FILE, "file")
    assert checked.errors == ()
    stack = schema.in_form(checked.values, schema.Form.STACK)
    assert "startsAt" in stack["freezeWindows"]["prod"]["year-end"]
    again = schema.check({**stack, "alarmEmail": "ops@example.org"}, schema.Form.STACK, "stack")
    assert again.errors == ()
    assert config_of(again.values, {}).freeze_windows == config_of(checked.values, {}).freeze_windows
    rendered = schema.check(tomllib.loads(schema.render_toml(checked.values)), schema.Form.FILE, "rendered")
    assert windows_of(rendered.values["freeze_windows"]) == windows_of(checked.values["freeze_windows"])
    weekend = config_of(checked.values, {}).freeze_windows[0]
    assert weekend == WeeklyWindow(
        "prod", "weekend", "Weekend: no deploys to production", "Europe/Berlin", (4,), time(15), time(9), 0
    )


WEEKLY = {"reason": '"r"', "zone": '"UTC"', "days": '["fri"]', "start": '"15:00"', "end": '"16:00"'}
ONE_OFF = {"reason": '"r"', "zone": '"UTC"', "starts_at": '"2026-12-21 00:00"', "ends_at": '"2027-01-04 00:00"'}


def window_toml(keys: dict[str, str], environment: str = "prod") -> str:
    return f"[freeze_windows.{environment}.w]\n" + "\n".join(f"{key} = {value}" for key, value in keys.items())


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        (window_toml(WEEKLY, "qa"), "freeze_windows.qa: unknown environment (environments: plt, prod)"),
        (window_toml(WEEKLY | {"zone": '"Europe/Berlln"'}), "freeze_windows.prod.w.zone: unknown time zone"),
        (window_toml(WEEKLY | {"days": '["friday"]'}), "freeze_windows.prod.w.days: 'friday' is not a day (mon, "),
        (window_toml(WEEKLY | {"end": '"15:00"'}), "freeze_windows.prod.w.end: equals start"),
        (window_toml(WEEKLY | {"end": '"fri 15:00"'}), "freeze_windows.prod.w.end: equals start"),
        (window_toml(WEEKLY | {"start": '"25:00"'}), "freeze_windows.prod.w.start: expected a time of day (HH:MM)"),
        (window_toml({k: v for k, v in WEEKLY.items() if k != "end"}), "freeze_windows.prod.w: missing end"),
        (window_toml(ONE_OFF | {"end": '"16:00"'}), "freeze_windows.prod.w: either weekly"),
        (window_toml(ONE_OFF | {"ends_at": '"2026-12-20 00:00"'}), "freeze_windows.prod.w.ends_at: not after"),
        (window_toml(ONE_OFF | {"starts_at": '"2026-02-30 00:00"'}), "freeze_windows.prod.w.starts_at: not a date"),
        (
            window_toml(ONE_OFF | {"starts_at": "2026-12-21T00:00:00"}),
            "freeze_windows.prod.w.starts_at: expected a local date and time",
        ),
        (
            window_toml(ONE_OFF | {"zone": '"America/New_York"', "ends_at": '"9999-12-31 23:59"'}),
            "freeze_windows.prod.w.ends_at: out of range",
        ),
        (
            window_toml(ONE_OFF | {"zone": '"Asia/Tokyo"', "starts_at": '"0001-01-01 00:00"'}),
            "freeze_windows.prod.w.starts_at: out of range",
        ),
        (window_toml(WEEKLY | {"zone": '"localtime"'}), "freeze_windows.prod.w.zone: unknown time zone"),
        (window_toml(WEEKLY | {"zone": '"right/UTC"'}), "freeze_windows.prod.w.zone: unknown time zone"),
        (window_toml(WEEKLY | {"zone": '"posixrules"'}), "freeze_windows.prod.w.zone: unknown time zone"),
        (window_toml(WEEKLY | {"zone": '"utc"'}), "freeze_windows.prod.w.zone: unknown time zone"),
        (window_toml({k: v for k, v in WEEKLY.items() if k != "reason"}), "freeze_windows.prod.w.reason: missing"),
        (window_toml(WEEKLY | {"until": "1"}), "freeze_windows.prod.w.until: unknown key"),
    ],
)
def test_a_bad_window_is_one_line_naming_its_key(toml: str, error: str) -> None:
    checked = schema.check(tomllib.loads(BASE + toml), schema.Form.FILE, "chatops config x.toml")
    assert checked.errors, "refused"
    assert checked.errors[0].startswith(f"chatops config x.toml: {error}"), checked.errors


def test_every_day_of_a_window_is_a_weekday_index() -> None:
    checked = schema.check(tomllib.loads(BASE + WINDOW_TOML), schema.Form.FILE, "file")
    weekend = windows_of(checked.values["freeze_windows"])[0]
    assert isinstance(weekend, WeeklyWindow)
    assert date(2026, 11, 27).weekday() in weekend.days  # a Friday
