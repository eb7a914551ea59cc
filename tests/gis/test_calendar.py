"""The working calendar: deadlines in working hours/days across weekends, holidays, lunch."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Connection

from gis.calendar import CalendarSettings, WorkingCalendar, build_calendar, load_calendar, set_days
from gis.errors import InvalidInput
from tests.factories import tiny_city_at

FRIDAY = date(2026, 1, 9)  # a Friday; Monday is 2026-01-12
CAL = WorkingCalendar()


def at(day: date, hour: int, minute: int = 0, tz=UTC) -> datetime:  # type: ignore[no-untyped-def]
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def test_working_hours_deadline_skips_the_weekend() -> None:
    assert CAL.add(at(FRIDAY, 16), 4, "working_hours") == at(FRIDAY + timedelta(3), 11)


def test_working_hours_deadline_skips_a_holiday() -> None:
    cal = build_calendar("UTC", days=[(FRIDAY + timedelta(3), False)])
    assert cal.add(at(FRIDAY, 16), 4, "working_hours") == at(FRIDAY + timedelta(4), 11)


def test_make_up_working_day_on_a_saturday_counts() -> None:
    cal = build_calendar("UTC", days=[(FRIDAY + timedelta(1), True)])
    assert cal.add(at(FRIDAY, 16), 4, "working_hours") == at(FRIDAY + timedelta(1), 11)


def test_working_days_keep_the_clock_time() -> None:
    assert CAL.add(at(FRIDAY, 15), 1, "working_days") == at(FRIDAY + timedelta(3), 15)
    assert CAL.add(at(FRIDAY, 15), 20, "working_days") == at(date(2026, 2, 6), 15)


def test_report_outside_working_hours_starts_counting_next_working_morning() -> None:
    saturday = FRIDAY + timedelta(1)
    assert CAL.add(at(saturday, 10), 2, "working_hours") == at(FRIDAY + timedelta(3), 11)
    assert CAL.add(at(FRIDAY, 20), 2, "working_hours") == at(FRIDAY + timedelta(3), 11)


def test_lunch_break_is_not_working_time() -> None:
    assert CAL.add(at(FRIDAY, 11), 2, "working_hours") == at(FRIDAY, 14)


def test_calendar_hours_and_days_run_around_the_clock() -> None:
    assert CAL.add(at(FRIDAY, 23), 2, "hours") == at(FRIDAY + timedelta(1), 1)
    assert CAL.add(at(FRIDAY, 23), 1, "days") == at(FRIDAY + timedelta(1), 23)


def test_deadline_counts_in_the_jurisdictions_time_zone() -> None:
    cal = build_calendar("Asia/Shanghai")
    # Friday 16:00 in Shanghai is 08:00 UTC; 4 working hours later is Monday 11:00 Shanghai.
    assert cal.add(at(FRIDAY, 8), 4, "working_hours") == at(FRIDAY + timedelta(3), 3)


def test_working_seconds_between_counts_only_working_time() -> None:
    start, end = at(FRIDAY, 16), at(FRIDAY + timedelta(3), 11)
    assert CAL.working_seconds_between(start, end) == 4 * 3600
    assert CAL.working_seconds_between(end, start) == 0


def test_settings_configure_hours_and_weekdays() -> None:
    settings = CalendarSettings(hours="08:00-12:00", weekdays=[1, 2, 3, 4, 5, 6])
    cal = build_calendar("UTC", settings)
    assert cal.day_seconds == 4 * 3600
    assert cal.add(at(FRIDAY, 11), 2, "working_hours") == at(FRIDAY + timedelta(1), 9)


@pytest.mark.parametrize(("hours", "message"), [
    ("9-12", "not HH:MM"), ("12:00-09:00", "ends before"), ("09:00-12:00,11:00-13:00", "overlap"),
])
def test_bad_working_periods_are_rejected(hours: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build_calendar("UTC", CalendarSettings(hours=hours))


def test_calendar_without_any_working_day_is_rejected() -> None:
    cal = build_calendar("UTC", CalendarSettings(weekdays=[]))
    with pytest.raises(InvalidInput, match="no working time"):
        cal.add(at(FRIDAY, 9), 1, "working_hours")


def test_holidays_are_configuration_rows_per_jurisdiction(conn: Connection) -> None:
    city = tiny_city_at(conn, timezone="Europe/Berlin")
    set_days(conn, city.jurisdiction_id, [FRIDAY + timedelta(3)], working=False, name="test")
    cal = load_calendar(conn, city.jurisdiction_id)
    assert cal.tz == "Europe/Berlin" and not cal.is_working_day(FRIDAY + timedelta(3))
    assert cal.is_working_day(FRIDAY + timedelta(4))
