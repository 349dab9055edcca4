"""The vectorised calendar agrees with the ERP's own BusinessCalendar, date by date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from erp_core.domain.calendar import BusinessCalendar
from erp_core.policy import load_policy
from features import calendar as cal

CALENDAR = load_policy().calendar
HOLIDAYS = cal.holiday_array(CALENDAR)
FIRST = date(2025, 12, 1)
DAYS = [FIRST + timedelta(days=offset) for offset in range(75)]  # spans Christmas and New Year


def epoch_days(days: list[date]) -> np.ndarray:
    return np.array([(day - date(1970, 1, 1)).days for day in days], dtype=np.int64)


def test_business_days_between_equals_the_erp_calendar_both_ways() -> None:
    starts = [day for day in DAYS for _ in range(3)]
    ends = [day + timedelta(days=delta) for day in DAYS for delta in (-4, 3, 11)]
    counted = cal.business_days_between(epoch_days(starts), epoch_days(ends), HOLIDAYS)
    expected = [CALENDAR.business_days_between(s, e) for s, e in zip(starts, ends, strict=True)]
    assert counted.tolist() == expected


def test_weekday_and_distance_to_month_and_quarter_end() -> None:
    days = epoch_days(DAYS)
    assert cal.weekday(days).tolist() == [day.weekday() for day in DAYS]
    month_end = [(pd.Timestamp(day) + pd.offsets.MonthEnd(0)).date() for day in DAYS]
    assert cal.days_to_month_end(days).tolist() == [
        (end - day).days for end, day in zip(month_end, DAYS, strict=True)
    ]
    quarter_end = [(pd.Timestamp(day) + pd.offsets.QuarterEnd(0)).date() for day in DAYS]
    assert cal.days_to_quarter_end(days).tolist() == [
        (end - day).days for end, day in zip(quarter_end, DAYS, strict=True)
    ]


def test_holiday_within_two_business_days_looks_from_the_entry_date_to_the_horizon() -> None:
    calendar = BusinessCalendar.with_holidays([date(2026, 12, 25)])  # a Friday
    holidays = cal.holiday_array(calendar)
    days = [date(2026, 12, 22), date(2026, 12, 23), date(2026, 12, 25), date(2026, 12, 28)]
    # Tue 22: horizon Thu 24, no holiday. Wed 23: horizon Mon 28, over the 25th. The 25th itself
    # counts. Mon 28: after it.
    assert cal.holiday_within(epoch_days(days), 2, holidays).tolist() == [False, True, True, False]


def test_peak_season_runs_from_the_fifteenth_of_november_to_christmas_eve() -> None:
    days = [date(2025, 11, 14), date(2025, 11, 15), date(2025, 12, 24), date(2025, 12, 25)]
    assert cal.in_peak_season(epoch_days(days)).tolist() == [False, True, True, False]


def test_local_days_use_each_rows_time_zone() -> None:
    moment = (
        datetime(2026, 3, 3, 23, 30, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    ) // timedelta(microseconds=1)
    zones = pd.Series(["UTC", "Asia/Tokyo", "America/New_York"])
    days = cal.local_days(np.array([moment] * 3), zones)
    assert [date(1970, 1, 1) + timedelta(days=int(d)) for d in days] == [
        date(2026, 3, 3),
        date(2026, 3, 4),
        date(2026, 3, 3),
    ]
