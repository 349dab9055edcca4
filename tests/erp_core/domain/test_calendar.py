"""Business-day arithmetic: weekends and listed holidays are skipped (dates checked by hand)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erp_core.domain.calendar import BusinessCalendar

PLAIN = BusinessCalendar()
# Christmas 2026 is a Friday, Boxing Day 2026 a Saturday, New Year 2027 a Friday.
YEAR_END = BusinessCalendar.with_holidays(
    [date(2026, 12, 25), date(2026, 12, 26), date(2027, 1, 1)]
)

TUE = date(2026, 3, 3)
FRI = date(2026, 3, 6)
SAT = date(2026, 3, 7)
SUN = date(2026, 3, 8)
MON = date(2026, 3, 9)


def test_with_holidays_builds_a_frozen_set() -> None:
    assert YEAR_END.holidays == frozenset(
        {date(2026, 12, 25), date(2026, 12, 26), date(2027, 1, 1)}
    )
    assert PLAIN.holidays == frozenset()


@pytest.mark.parametrize(
    ("calendar", "day", "expected"),
    [
        (PLAIN, TUE, True),
        (PLAIN, FRI, True),
        (PLAIN, SAT, False),
        (PLAIN, SUN, False),
        (PLAIN, MON, True),
        (PLAIN, date(2026, 12, 25), True),  # not a holiday without the list
        (YEAR_END, date(2026, 12, 25), False),
        (YEAR_END, date(2026, 12, 24), True),
        (YEAR_END, date(2027, 1, 1), False),
    ],
)
def test_is_business_day(calendar: BusinessCalendar, day: date, expected: bool) -> None:
    assert calendar.is_business_day(day) is expected


@pytest.mark.parametrize(
    ("calendar", "day", "expected"),
    [
        (PLAIN, TUE, TUE),
        (PLAIN, SAT, MON),
        (PLAIN, SUN, MON),
        # Fri 25 Dec holiday, Sat 26, Sun 27 -> Mon 28 Dec.
        (YEAR_END, date(2026, 12, 25), date(2026, 12, 28)),
        # Fri 1 Jan 2027 holiday -> Mon 4 Jan.
        (YEAR_END, date(2027, 1, 1), date(2027, 1, 4)),
    ],
)
def test_next_business_day_on_or_after(
    calendar: BusinessCalendar, day: date, expected: date
) -> None:
    assert calendar.next_business_day_on_or_after(day) == expected


@pytest.mark.parametrize(
    ("calendar", "start", "days", "expected"),
    [
        (PLAIN, TUE, 0, TUE),
        (PLAIN, TUE, 2, date(2026, 3, 5)),
        (PLAIN, FRI, 1, MON),  # over the weekend
        (PLAIN, FRI, 5, date(2026, 3, 13)),  # one working week later
        (PLAIN, SAT, 0, MON),  # a weekend start rolls forward first
        (PLAIN, SAT, 1, date(2026, 3, 10)),
        (YEAR_END, date(2026, 12, 24), 1, date(2026, 12, 28)),  # Thu + 1 skips Fri holiday
        (YEAR_END, date(2026, 12, 31), 1, date(2027, 1, 4)),  # Thu + 1 skips New Year
        (YEAR_END, date(2026, 12, 23), 3, date(2026, 12, 29)),  # Thu 24, Mon 28, Tue 29
    ],
)
def test_add_business_days(
    calendar: BusinessCalendar, start: date, days: int, expected: date
) -> None:
    assert calendar.add_business_days(start, days) == expected


def test_add_business_days_refuses_negative_days() -> None:
    with pytest.raises(ValueError, match="days=-1"):
        PLAIN.add_business_days(TUE, -1)


@pytest.mark.parametrize(
    ("calendar", "start", "end", "expected"),
    [
        (PLAIN, TUE, TUE, 0),
        (PLAIN, FRI, MON, 1),  # (Fri, Mon]: only Monday counts
        (PLAIN, FRI, SUN, 0),
        (PLAIN, MON, date(2026, 3, 16), 5),
        (PLAIN, MON, FRI, -1),  # end before start is negative
        (PLAIN, date(2026, 3, 13), MON, -4),  # Fri 13 back to Mon 9
        (YEAR_END, date(2026, 12, 24), date(2026, 12, 28), 1),
        (YEAR_END, date(2026, 12, 24), date(2027, 1, 4), 5),  # 28, 29, 30, 31 Dec, 4 Jan
    ],
)
def test_business_days_between(
    calendar: BusinessCalendar, start: date, end: date, expected: int
) -> None:
    assert calendar.business_days_between(start, end) == expected


holiday_sets = st.frozensets(
    st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31)), max_size=40
)
business_starts = st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31))


@given(holidays=holiday_sets, start=business_starts, days=st.integers(0, 300))
def test_add_business_days_round_trips_with_business_days_between(
    holidays: frozenset[date], start: date, days: int
) -> None:
    calendar = BusinessCalendar(holidays)
    day = calendar.next_business_day_on_or_after(start)
    later = calendar.add_business_days(day, days)
    assert calendar.is_business_day(later)
    assert later >= day
    assert calendar.business_days_between(day, later) == days
    assert calendar.business_days_between(later, day) == -days
