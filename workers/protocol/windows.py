"""Scheduled freeze windows: when an environment is frozen by its configured windows, as instants. Pure.

A window is weekly (``days``, ``start``, ``end`` read in a named time zone) or one-off (``starts_at`` to ``ends_at``,
local times in a named zone). Its occurrences are intervals of epoch seconds, ``[start, end)``. The rules, stated
once (docs/architecture.md repeats them for operators):

- **A wall-clock time the zone skips** (spring forward) is the instant the clock jumps to: 02:30 on the night
  Berlin goes from 02:00 to 03:00 is 03:00 CEST. **A wall-clock time the zone repeats** (fall back) is its first
  occurrence (``fold=0``): 02:30 on the night Berlin goes from 03:00 back to 02:00 is 02:30 CEST. Both are what a
  person watching a wall clock sees: the first instant at which the clock reads the time or later
  (:func:`instant`).
- **An occurrence whose two ends fall on one instant** (both in one skipped hour) is empty: it freezes nothing and
  is not listed.
- **Overlapping or touching occurrences of one environment merge** into one: from the earliest start to the latest
  end, named after the first to start (ties: the window's name), their reasons joined. The freeze a sweep takes
  then lasts the whole span, with no moment of thaw between two windows.

An occurrence is known by its id, ``<window>#<start epoch>``: the freeze lock's owner is ``window#<id>`` (the same
occurrence taken twice re-enters lockcore's lock), and an early lift is recorded under it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

from workers.protocol.schema import WEEKDAYS, WINDOW_END

OWNER_PREFIX: Final = "window#"
SCHEDULER: Final = "scheduler"
"""Who the history names for a freeze a sweep let go of itself (an admin's lift it saw after its acquire)."""
NOTE_PREFIX: Final = "scheduled freeze window "
"""A window's freeze notes ``command`` = ``scheduled freeze window <window>: <reason>`` (lockcore keeps no other
free text for a holder; a manual freeze notes the command as typed there)."""
LOOK_BACK: Final = timedelta(days=8)
"""How far back an occurrence that is still going may have started (a weekly one lasts less than a week)."""
LOOK_AHEAD: Final = timedelta(days=8)
"""How far ahead weekly occurrences are listed: the next one of any weekly window starts within a week."""
LONGEST: Final = timedelta(days=400)
"""Windows that chain into one span longer than this (a freeze that never thaws) are freezes of this length."""
FAR_AHEAD: Final = 2**40
"""A one-off window is listed however far ahead it is."""
DAY: Final = 86_400


@dataclass(frozen=True)
class Occurrence:
    """One span of an environment's freeze, ``[start, end)`` in epoch seconds (``start < end``)."""

    environment: str
    window: str
    """The window's name (after a merge: the first to start)."""
    start: int
    end: int
    reason: str

    @property
    def id(self) -> str:
        return f"{self.window}#{self.start}"

    @property
    def owner(self) -> str:
        """The freeze lock's owner while this occurrence holds it."""
        return OWNER_PREFIX + self.id

    def covers(self, now: int) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True)
class WeeklyWindow:
    environment: str
    name: str
    reason: str
    zone: str
    days: tuple[int, ...]
    """Weekdays an occurrence starts on, Monday = 0."""
    start: time
    end: time
    end_day: int | None = None
    """``mon 09:00``: the occurrence ends on the next Monday at 09:00 after it starts; ``None``: the next 09:00."""

    def local_spans(self, first: date, last: date) -> Iterator[tuple[datetime, datetime]]:
        """Each occurrence starting on a local date from ``first`` to ``last``, as naive local date-times."""
        day = first
        while day <= last:
            if day.weekday() in self.days:
                begins = datetime.combine(day, self.start)
                yield begins, self._end_after(begins)
            day += timedelta(days=1)

    def _end_after(self, begins: datetime) -> datetime:
        ends = datetime.combine(begins.date(), self.end)
        if self.end_day is None:
            return ends if ends > begins else ends + timedelta(days=1)
        ends += timedelta(days=(self.end_day - begins.weekday()) % 7)
        return ends if ends > begins else ends + timedelta(days=7)


@dataclass(frozen=True)
class OneOffWindow:
    environment: str
    name: str
    reason: str
    zone: str
    starts_at: datetime
    """Naive: a local date and time in :attr:`zone`."""
    ends_at: datetime


Window = WeeklyWindow | OneOffWindow


@dataclass(frozen=True)
class Schedule:
    """Where an environment stands at an instant: the occurrence going on, and the next to come."""

    active: Occurrence | None
    next: Occurrence | None


# ----------------------------------------------------------------------------------------------- wall clock
@lru_cache(maxsize=16_384)  # a sweep asks for the same few dozen instants each minute
def instant(local: datetime, zone: ZoneInfo) -> int:
    """The first instant at which a clock in ``zone`` reads ``local`` or later (naive ``local``, whole seconds):
    the first occurrence of a repeated time; the jump's instant for a skipped one."""
    first = int(local.replace(tzinfo=zone, fold=0).timestamp())
    if _wall(first, zone) == local:
        return first  # exists; fold=0 is the first of two when it repeats
    # In a gap: fold=1 reads it with the offset after the jump (an instant before it), fold=0 with the offset before
    # (an instant after it). The jump lies between; find the first instant whose wall clock reads ``local`` or later.
    low, high = int(local.replace(tzinfo=zone, fold=1).timestamp()), first
    while low < high:
        middle = (low + high) // 2
        if _wall(middle, zone) >= local:
            high = middle
        else:
            low = middle + 1
    return low


def _wall(at: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at, zone).replace(tzinfo=None)


# ---------------------------------------------------------------------------------------------- occurrences
def occurrences(window: Window, since: int, until: int) -> list[Occurrence]:
    """The window's non-empty occurrences that overlap ``[since, until)``, by start."""
    zone = ZoneInfo(window.zone)
    if isinstance(window, OneOffWindow):
        spans: Iterable[tuple[datetime, datetime]] = [(window.starts_at, window.ends_at)]
    else:
        first = datetime.fromtimestamp(since, UTC).date() - LOOK_BACK
        last = datetime.fromtimestamp(until, UTC).date() + timedelta(days=2)
        spans = window.local_spans(first, last)
    found = []
    for begins, ends in spans:
        start, end = instant(begins, zone), instant(ends, zone)
        if start < end and end > since and start < until:
            found.append(Occurrence(window.environment, window.name, start, end, window.reason))
    return found


def merged(found: Iterable[Occurrence]) -> list[Occurrence]:
    """Overlapping or touching occurrences as one each (the module's rule), by start."""
    out: list[Occurrence] = []
    for occurrence in sorted(found, key=lambda o: (o.start, o.window)):
        last = out[-1] if out else None
        if last is None or occurrence.start > last.end:
            out.append(occurrence)
            continue
        reasons = last.reason.split("; ")
        reason = last.reason if occurrence.reason in reasons else f"{last.reason}; {occurrence.reason}"
        out[-1] = Occurrence(last.environment, last.window, last.start, max(last.end, occurrence.end), reason)
    return out


def schedule(windows: Iterable[Window], environment: str, now: int) -> Schedule:
    """The occurrence of ``environment``'s windows going on at ``now`` (merged), and the next one after it.

    Occurrences are listed from :data:`LOOK_BACK` before ``now``'s UTC day to :data:`LOOK_AHEAD` after it (one
    listing serves every sweep of that day); while the one going on reaches either edge (windows that chain into a
    longer span), the listing doubles, up to :data:`LONGEST`."""
    mine = tuple(window for window in windows if window.environment == environment)
    day = now - now % DAY
    back, ahead = LOOK_BACK, LOOK_AHEAD
    while True:
        since, until = day - int(back.total_seconds()), day + DAY + int(ahead.total_seconds())
        spans = _listed(mine, since, until)
        active = next((o for o in spans if o.covers(now)), None)
        whole = active is None or (since < active.start and active.end < until)
        if whole or back >= LONGEST:
            return Schedule(active, next((o for o in spans if o.start > now), None))
        back, ahead = back * 2, ahead * 2


@lru_cache(maxsize=256)
def _listed(windows: tuple[Window, ...], since: int, until: int) -> tuple[Occurrence, ...]:
    return tuple(
        merged(
            occurrence
            for window in windows
            for occurrence in occurrences(window, since, until if isinstance(window, WeeklyWindow) else FAR_AHEAD)
        )
    )


def scheduled_note(occurrence: Occurrence) -> str:
    return f"{NOTE_PREFIX}{occurrence.window}: {occurrence.reason}"


def scheduled_reason(note: str) -> str | None:
    """The reason in a window's :func:`scheduled_note`; ``None`` for any other note."""
    if not note.startswith(NOTE_PREFIX) or ": " not in note:
        return None
    return note.partition(": ")[2]


def ended_reason(owner: str) -> str | None:
    """What the history says of a freeze whose lease ran out: the window's end, when a window held it."""
    held = occurrence_of(owner)
    return f"the scheduled window {held[0]} ended" if held is not None else None


def occurrence_of(owner: str) -> tuple[str, int] | None:
    """``(window, start)`` of a freeze lock's owner when a window holds it; ``None`` for a manual freeze."""
    if not owner.startswith(OWNER_PREFIX):
        return None
    name, _, start = owner.removeprefix(OWNER_PREFIX).rpartition("#")
    return (name, int(start)) if name and start.isdigit() else None


# ---------------------------------------------------------------------------------------------- configured
def windows_of(values: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> tuple[Window, ...]:
    """The windows of a checked configuration's ``freeze_windows`` (the schema's rules already held)."""
    out: list[Window] = []
    for environment, windows in values.items():
        for name, keys in windows.items():
            common = {"environment": environment, "name": name, "reason": keys["reason"], "zone": keys["zone"]}
            if keys.get("starts_at"):
                starts, ends = (datetime.fromisoformat(keys[k]) for k in ("starts_at", "ends_at"))
                out.append(OneOffWindow(**common, starts_at=starts, ends_at=ends))
                continue
            end = WINDOW_END.fullmatch(keys["end"])
            assert end is not None  # the schema's pattern
            out.append(
                WeeklyWindow(
                    **common,
                    days=tuple(sorted(WEEKDAYS.index(day) for day in keys["days"])),
                    start=time.fromisoformat(keys["start"]),
                    end=time.fromisoformat(end["time"]),
                    end_day=WEEKDAYS.index(end["day"]) if end["day"] else None,
                )
            )
    return tuple(out)
