"""The working calendar: working hours, working days, holidays; deadline arithmetic.

Deadlines are set per category in working hours or working days (DOMAIN.md), or in plain
(calendar) hours or days for emergencies that run around the clock. Working time is counted in
the jurisdiction's own time zone, inside its working periods (default 09:00–12:00 and
13:00–18:00, Monday to Friday). Public holidays and make-up working days (调休: a Saturday that
is worked to bridge a holiday) are configuration rows in ``calendar_days`` per jurisdiction,
plus optional global ones from ``GRIDGOV_CALENDAR_HOLIDAYS`` / ``GRIDGOV_CALENDAR_WORKDAYS``.

A working day is as long as its working periods (8 h by default): "1 working day" from
Friday 15:00 is Monday 15:00, "4 working hours" from Friday 16:00 is Monday 11:00.

>>> from datetime import datetime, UTC
>>> cal = WorkingCalendar()
>>> cal.add(datetime(2026, 1, 9, 16, 0, tzinfo=UTC), 4, "working_hours").isoformat()
'2026-01-12T11:00:00+00:00'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, text

from gis.errors import InvalidInput

UNITS = ("working_hours", "working_days", "hours", "days")
_US = 1_000_000
_MICRO = timedelta(microseconds=1)
_HOUR_US = 3600 * _US
_DAY_US = 86400 * _US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)
_NO_OFFSET = np.iinfo(np.int64).min
# A calendar with no working day in this many days is misconfigured, not a long weekend.
_MAX_SCAN_DAYS = 800


class CalendarSettings(BaseSettings):
    """Working hours and days shared by every jurisdiction; holidays live in ``calendar_days``."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_CALENDAR_", extra="ignore")

    hours: str = Field(default="09:00-12:00,13:00-18:00",
                       description="working periods of a working day, local time")
    weekdays: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5],
                                description="ISO weekdays that are working days (Mon=1)")
    holidays: list[date] = Field(default_factory=list, description="extra non-working dates")
    workdays: list[date] = Field(default_factory=list, description="extra working dates")

    @field_validator("weekdays")
    @classmethod
    def _iso_weekdays(cls, value: list[int]) -> list[int]:
        bad = [d for d in value if d not in range(1, 8)]
        if bad:
            raise ValueError(f"weekdays are ISO numbers 1 (Mon) … 7 (Sun), not {bad}")
        return value


def parse_periods(spec: str) -> tuple[tuple[time, time], ...]:
    """``"09:00-12:00,13:00-18:00"`` → ordered, non-overlapping (start, end) pairs."""
    periods: list[tuple[time, time]] = []
    for chunk in spec.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        try:
            a, b = (time.fromisoformat(p.strip()) for p in chunk.split("-"))
        except ValueError as exc:
            raise InvalidInput(f"working period {chunk!r} is not HH:MM-HH:MM",
                               field="hours") from exc
        if a >= b:
            raise InvalidInput(f"working period {chunk!r} ends before it starts", field="hours")
        periods.append((a, b))
    periods.sort()
    if not periods:
        raise InvalidInput("at least one working period is needed", field="hours")
    for (_, end), (start, _) in zip(periods, periods[1:], strict=False):
        if start < end:
            raise InvalidInput(f"working periods overlap: {spec!r}", field="hours")
    return tuple(periods)


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


@dataclass(frozen=True)
class WorkingCalendar:
    """Working periods, working weekdays (ISO), holidays and make-up working days, in ``tz``."""

    tz: str = "UTC"
    periods: tuple[tuple[time, time], ...] = ((time(9), time(12)), (time(13), time(18)))
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)

    @cached_property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown time zone {self.tz!r}", field="timezone") from exc

    @property
    def day_seconds(self) -> int:
        """Length of one working day in seconds (the sum of its periods)."""
        return sum(_seconds(b) - _seconds(a) for a, b in self.periods)

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.isoweekday() in self.weekdays

    def add(self, start: datetime, value: float, unit: str) -> datetime:
        """The deadline ``value`` ``unit``s after ``start`` (aware; returned in UTC).

        Working time that starts outside working hours starts counting at the next working
        period; a deadline that falls exactly on the end of a period stays there.
        """
        if unit not in UNITS:
            raise InvalidInput(f"unknown deadline unit {unit!r}; use one of {', '.join(UNITS)}",
                               field="deadline_unit")
        if value < 0:
            raise InvalidInput(f"deadline must not be negative, got {value}", field="deadline")
        if start.tzinfo is None:
            raise InvalidInput("start time must carry a time zone", field="reported_at")
        if unit == "hours":
            return (start + timedelta(hours=value)).astimezone(UTC)
        if unit == "days":
            return (start + timedelta(days=value)).astimezone(UTC)
        hours = value if unit == "working_hours" else value * self.day_seconds / 3600
        return self.add_working_seconds(start, round(hours * 3600))

    def add_working_seconds(self, start: datetime, seconds: float) -> datetime:
        zone = self.zone
        local = start.astimezone(zone)
        day = local.date()
        # Seconds since local midnight, wall clock (DST days keep their wall-clock periods).
        clock = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        remaining = float(seconds)
        for _ in range(_MAX_SCAN_DAYS):
            if self.is_working_day(day):
                for a, b in self.periods:
                    lo, hi = max(clock, _seconds(a)), _seconds(b)
                    if lo >= hi:
                        continue
                    if remaining <= hi - lo:
                        return self._at(day, lo + remaining)
                    remaining -= hi - lo
            day += timedelta(days=1)
            clock = 0.0
        raise InvalidInput(f"the working calendar has no working time within {_MAX_SCAN_DAYS} "
                           "days: check weekdays and holidays", field="calendar")

    def working_seconds_between(self, start: datetime, end: datetime) -> float:
        """Working time elapsed from ``start`` to ``end`` (0 when end is not after start)."""
        if end <= start:
            return 0.0
        zone = self.zone
        a_local, b_local = start.astimezone(zone), end.astimezone(zone)
        total = 0.0
        day = a_local.date()
        while day <= b_local.date():
            if self.is_working_day(day):
                lo_day = _clock(a_local) if day == a_local.date() else 0.0
                hi_day = _clock(b_local) if day == b_local.date() else 86400.0
                for a, b in self.periods:
                    lo, hi = max(lo_day, _seconds(a)), min(hi_day, _seconds(b))
                    if hi > lo:
                        total += hi - lo
            day += timedelta(days=1)
        return total

    def add_many(self, starts_us: ArrayLike, value: float, unit: str) -> NDArray[np.int64]:
        """:meth:`add` for many starts at once: UTC epoch microseconds in, the same out.

        Equal to calling :meth:`add` on each start (tests compare them): working time is laid
        out once as a timeline of working periods (local wall-clock microseconds) with their
        cumulative working time, and each deadline is two binary searches on it. Starts or
        deadlines in an hour that holds a UTC-offset change (DST) are computed one by one.

        >>> cal = WorkingCalendar()
        >>> start = int(datetime(2026, 1, 9, 16, tzinfo=UTC).timestamp()) * 10**6
        >>> due = cal.add_many([start], 4, "working_hours")[0]
        >>> datetime.fromtimestamp(due / 1e6, UTC).isoformat()
        '2026-01-12T11:00:00+00:00'
        """
        starts = np.asarray(starts_us, dtype=np.int64).ravel()
        if unit not in UNITS:
            raise InvalidInput(f"unknown deadline unit {unit!r}; use one of {', '.join(UNITS)}",
                               field="deadline_unit")
        if value < 0:
            raise InvalidInput(f"deadline must not be negative, got {value}", field="deadline")
        if len(starts) == 0:
            return starts.copy()
        if unit in ("hours", "days"):
            step = timedelta(hours=value) if unit == "hours" else timedelta(days=value)
            return starts + step // _MICRO
        hours = value if unit == "working_hours" else value * self.day_seconds / 3600
        need = int(round(hours * 3600)) * _US
        out = np.zeros(len(starts), dtype=np.int64)
        slow = np.zeros(len(starts), dtype=bool)
        # UTC → local wall clock, with one offset per UTC hour (checked at both ends).
        offset = self._offsets(starts // _HOUR_US, utc=True)
        slow |= offset == _NO_OFFSET
        wall = starts + np.where(slow, 0, offset)
        first_day = int(wall.min() // _DAY_US)
        last_day = int(wall.max() // _DAY_US)
        starts_w, ends_w, cum = self._timeline(first_day, last_day, need)
        cum_end = cum + (ends_w - starts_w)
        at = np.searchsorted(ends_w, wall, side="right")
        short = at >= len(ends_w)
        slow |= short
        at = np.minimum(at, max(len(ends_w) - 1, 0))
        if len(ends_w):
            done = cum[at] + np.maximum(wall - starts_w[at], 0)
            target = done + need
            j = np.maximum(np.searchsorted(cum_end, target, side="left"), at)
            slow |= j >= len(ends_w)
            j = np.minimum(j, len(ends_w) - 1)
            due_wall = starts_w[j] + (target - cum[j])
            # The scanning rule of add_working_seconds: at most _MAX_SCAN_DAYS days.
            slow |= (due_wall // _DAY_US) - (wall // _DAY_US) >= _MAX_SCAN_DAYS
            back = self._offsets(due_wall // _HOUR_US, utc=False)
            slow |= back == _NO_OFFSET
            out = due_wall - np.where(slow, 0, back)
        else:
            slow[:] = True
        for i in np.flatnonzero(slow).tolist():
            moment = _EPOCH + timedelta(microseconds=int(starts[i]))
            out[i] = (self.add(moment, value, unit) - _EPOCH) // _MICRO
        return out

    def _offsets(self, hours: NDArray[np.int64], *, utc: bool) -> NDArray[np.int64]:
        """UTC offset (µs) per hour number: of UTC instants (``utc``) or of local wall-clock
        hours (fold 0, as ``_at`` resolves them); ``_NO_OFFSET`` where it changes inside."""
        zone = self.zone
        uniq, inverse = np.unique(hours, return_inverse=True)
        found = np.empty(len(uniq), dtype=np.int64)
        for n, h in enumerate(uniq.tolist()):
            begin = _EPOCH + timedelta(hours=h)
            end = begin + timedelta(hours=1) - _MICRO
            if utc:
                a, b = begin.astimezone(zone).utcoffset(), end.astimezone(zone).utcoffset()
            else:
                a = begin.replace(tzinfo=zone).utcoffset()
                b = end.replace(tzinfo=zone).utcoffset()
            found[n] = _NO_OFFSET if a != b or a is None else a // _MICRO
        return found[inverse]

    def _timeline(self, first_day: int, last_day: int, need_us: int
                  ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Working periods (wall-clock µs, start and end) from ``first_day`` (days since
        1970-01-01, local) until ``need_us`` of working time past ``last_day``, with the
        working time before each."""
        spans = [(_seconds(a) * _US, _seconds(b) * _US) for a, b in self.periods
                 if _seconds(b) > _seconds(a)]
        per_day = sum(b - a for a, b in spans)
        starts: list[int] = []
        ends: list[int] = []
        after = 0
        day_no = first_day
        limit = last_day + _MAX_SCAN_DAYS + 1
        while day_no <= limit and (day_no <= last_day or after <= need_us + per_day):
            if per_day and self.is_working_day(_EPOCH_DAY + timedelta(days=day_no)):
                base = day_no * _DAY_US
                for a, b in spans:
                    starts.append(base + a)
                    ends.append(base + b)
                if day_no > last_day:
                    after += per_day
            day_no += 1
        s = np.asarray(starts, dtype=np.int64)
        e = np.asarray(ends, dtype=np.int64)
        cum = np.concatenate(([0], np.cumsum(e - s)[:-1])).astype(np.int64) if len(s) else s
        return s, e, cum

    def _at(self, day: date, seconds: float) -> datetime:
        # Aware + timedelta is wall-clock arithmetic in Python: a deadline at 11:00 local stays
        # at 11:00 across a DST change.
        wall = datetime(day.year, day.month, day.day, tzinfo=self.zone) + timedelta(
            seconds=seconds)
        return wall.astimezone(UTC)


def _clock(moment: datetime) -> float:
    return moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6


def build_calendar(
    tz: str,
    settings: CalendarSettings | None = None,
    days: Iterable[tuple[date, bool]] = (),
) -> WorkingCalendar:
    """A calendar from settings plus ``(day, working)`` rows (rows win over settings)."""
    settings = settings or CalendarSettings()
    holidays = set(settings.holidays)
    workdays = set(settings.workdays)
    for day, working in days:
        (workdays if working else holidays).add(day)
        (holidays if working else workdays).discard(day)
    return WorkingCalendar(
        tz=tz or "UTC", periods=parse_periods(settings.hours),
        weekdays=frozenset(settings.weekdays), holidays=frozenset(holidays),
        workdays=frozenset(workdays),
    )


def load_calendar(conn: Connection, jurisdiction_id: int,
                  settings: CalendarSettings | None = None) -> WorkingCalendar:
    """The working calendar of a jurisdiction: its time zone and its ``calendar_days`` rows."""
    tz = conn.execute(text("SELECT timezone FROM jurisdictions WHERE id = :j"),
                      {"j": jurisdiction_id}).scalar()
    rows = conn.execute(text("SELECT day, working FROM calendar_days WHERE jurisdiction_id = :j"),
                        {"j": jurisdiction_id}).all()
    return build_calendar(tz or "UTC", settings, [(r.day, r.working) for r in rows])


def set_days(conn: Connection, jurisdiction_id: int, days: Sequence[date], *, working: bool,
             name: str | None = None) -> int:
    """Mark dates as holidays (``working=False``) or make-up working days (``True``)."""
    if not days:
        return 0
    conn.execute(
        text("INSERT INTO calendar_days (jurisdiction_id, day, working, name)"
             " VALUES (:j, :day, :working, :name) ON CONFLICT (jurisdiction_id, day)"
             " DO UPDATE SET working = EXCLUDED.working, name = EXCLUDED.name"),
        [{"j": jurisdiction_id, "day": d, "working": working, "name": name} for d in days],
    )
    return len(days)


def clear_days(conn: Connection, jurisdiction_id: int, days: Sequence[date]) -> int:
    """Return dates to the ordinary weekday rule."""
    result = conn.execute(
        text("DELETE FROM calendar_days WHERE jurisdiction_id = :j AND day = ANY(:days)"),
        {"j": jurisdiction_id, "days": list(days)},
    )
    return int(result.rowcount or 0)


def list_days(conn: Connection, jurisdiction_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        text("SELECT day, working, name FROM calendar_days WHERE jurisdiction_id = :j"
             " ORDER BY day"), {"j": jurisdiction_id}).mappings()
    return [dict(r) for r in rows]
