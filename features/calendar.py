"""Calendar arithmetic on whole arrays of days (int64 days since 1970-01-01), with the policy's
business calendar: the vectorised twin of ``erp_core.domain.calendar.BusinessCalendar``.

numpy's business-day functions take the same weekmask (Monday to Friday) and the policy's holidays,
so a count here equals the ERP's own count for every date, without a Python loop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from erp_core.domain.calendar import BusinessCalendar
from features.asof import MICROS_PER_DAY

WEEKMASK = "1111100"
PEAK_SEASON = ((11, 15), (12, 24))
"""The distributor's peak weeks, from 15 November to 24 December (inclusive): carriers and
warehouses run at their limits."""


def holiday_array(calendar: BusinessCalendar) -> np.ndarray:
    return np.array(sorted(calendar.holidays), dtype="datetime64[D]")


def as_dates(days: np.ndarray) -> np.ndarray:
    return np.asarray(days, dtype=np.int64).astype("datetime64[D]")


def business_days_between(start: np.ndarray, end: np.ndarray, holidays: np.ndarray) -> np.ndarray:
    """Working days in (start, end], negative when end is before start (as
    ``BusinessCalendar.business_days_between``)."""
    first, last = as_dates(start), as_dates(end)
    # numpy counts a reversed range as (end, start] rather than [end, start): order it first.
    low, high = np.minimum(first, last), np.maximum(first, last)
    count = np.busday_count(low + 1, high + 1, weekmask=WEEKMASK, holidays=holidays)
    return np.where(last >= first, count, -count).astype(np.int64)


def weekday(days: np.ndarray) -> np.ndarray:
    """0 = Monday (1970-01-01 was a Thursday)."""
    return (np.asarray(days, dtype=np.int64) + 3) % 7


def days_to_month_end(days: np.ndarray) -> np.ndarray:
    dates = as_dates(days)
    month_end = (dates.astype("datetime64[M]") + 1).astype("datetime64[D]") - 1
    return (month_end - dates).astype(np.int64)


def days_to_quarter_end(days: np.ndarray) -> np.ndarray:
    dates = as_dates(days)
    months = dates.astype("datetime64[M]").astype(np.int64)
    next_quarter = ((months // 3 + 1) * 3).astype("datetime64[M]")
    return (next_quarter.astype("datetime64[D]") - 1 - dates).astype(np.int64)


def holiday_within(days: np.ndarray, business_days: int, holidays: np.ndarray) -> np.ndarray:
    """A holiday falls on a date from ``days`` through ``business_days`` working days later."""
    dates = as_dates(days)
    horizon = np.busday_offset(
        dates, business_days, roll="forward", weekmask=WEEKMASK, holidays=holidays
    )
    first = np.searchsorted(holidays, dates, side="left")
    last = np.searchsorted(holidays, horizon, side="right")
    return last > first


def in_peak_season(days: np.ndarray) -> np.ndarray:
    dates = as_dates(days)
    month_start = dates.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day = (dates - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    (first_month, first_day), (last_month, last_day) = PEAK_SEASON
    after_start = (month > first_month) | ((month == first_month) & (day >= first_day))
    before_end = (month < last_month) | ((month == last_month) & (day <= last_day))
    return after_start & before_end


def local_days(moments: np.ndarray, zones: pd.Series) -> np.ndarray:
    """The local calendar date of each moment (int64 microseconds, UTC) in its row's time zone.

    ``zones`` holds one IANA zone name per row; the conversion runs once per distinct zone.
    """
    moments = np.asarray(moments, dtype=np.int64)
    result = moments // MICROS_PER_DAY
    names = zones.fillna("UTC").to_numpy()
    for zone in pd.unique(names):
        if zone == "UTC":
            continue
        mask = names == zone
        stamps = pd.to_datetime(moments[mask], unit="us", utc=True).as_unit("us")
        wall = stamps.tz_convert(str(zone)).tz_localize(None)
        result[mask] = wall.asi8 // MICROS_PER_DAY
    return result
