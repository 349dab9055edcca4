"""Promise dates: cut-off in the location's time zone, pick capacity and backlog, lane transit.

Every expected date below was worked out by hand against a 2026 calendar (3 Mar is a Tuesday,
6 Mar a Friday, 25 May a Monday).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from erp_core.domain.promise import (
    Promise,
    first_pick_day,
    promise_for,
    promised_delivery_date,
    promised_ship_date,
)

PLAIN = BusinessCalendar()
MEMORIAL_DAY = BusinessCalendar.with_holidays([date(2026, 5, 25)])  # a Monday
YEAR_END = BusinessCalendar.with_holidays([date(2026, 12, 25), date(2027, 1, 1)])
CUTOFF = time(15, 0)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("entered_at", "zone", "calendar", "expected"),
    [
        pytest.param(utc(2026, 3, 3, 9, 0), "UTC", PLAIN, date(2026, 3, 3), id="tue-before-cutoff"),
        pytest.param(utc(2026, 3, 3, 16, 0), "UTC", PLAIN, date(2026, 3, 4), id="tue-after-cutoff"),
        pytest.param(
            utc(2026, 3, 6, 14, 59, 59), "UTC", PLAIN, date(2026, 3, 6), id="fri-just-before"
        ),
        pytest.param(
            utc(2026, 3, 6, 15, 0), "UTC", PLAIN, date(2026, 3, 9), id="fri-at-cutoff-is-late"
        ),
        pytest.param(
            utc(2026, 3, 6, 16, 0), "UTC", PLAIN, date(2026, 3, 9), id="fri-after-cutoff-monday"
        ),
        pytest.param(utc(2026, 3, 7, 10, 0), "UTC", PLAIN, date(2026, 3, 9), id="sat-monday"),
        pytest.param(utc(2026, 3, 8, 23, 0), "UTC", PLAIN, date(2026, 3, 9), id="sun-monday"),
        pytest.param(
            utc(2026, 5, 22, 16, 0),
            "UTC",
            MEMORIAL_DAY,
            date(2026, 5, 26),
            id="fri-late-holiday-monday-tuesday",
        ),
        pytest.param(
            utc(2026, 5, 25, 9, 0), "UTC", MEMORIAL_DAY, date(2026, 5, 26), id="on-holiday"
        ),
        pytest.param(
            utc(2026, 12, 24, 16, 0),
            "UTC",
            YEAR_END,
            date(2026, 12, 28),
            id="thu-late-christmas-friday",
        ),
        # Winter: New York is UTC-5, so 19:30 UTC is 14:30 local, before the 15:00 cut-off
        # (judged in UTC it would be after it).
        pytest.param(
            utc(2026, 1, 14, 19, 30),
            "America/New_York",
            PLAIN,
            date(2026, 1, 14),
            id="ny-winter-1430-local",
        ),
        pytest.param(
            utc(2026, 1, 14, 20, 30),
            "America/New_York",
            PLAIN,
            date(2026, 1, 15),
            id="ny-winter-1530-local",
        ),
        # Summer: New York is UTC-4, so the same 19:30 UTC is 15:30 local, after the cut-off.
        pytest.param(
            utc(2026, 7, 15, 19, 30),
            "America/New_York",
            PLAIN,
            date(2026, 7, 16),
            id="ny-summer-1530-local",
        ),
        # Fri 16 Jan 22:30 UTC is 14:30 in Los Angeles: still Friday's pick.
        pytest.param(
            utc(2026, 1, 16, 22, 30),
            "America/Los_Angeles",
            PLAIN,
            date(2026, 1, 16),
            id="la-friday-afternoon",
        ),
        # Wed 14 Jan 23:00 UTC is Thu 15 Jan 08:00 in Tokyo: the local date counts.
        pytest.param(
            utc(2026, 1, 14, 23, 0), "Asia/Tokyo", PLAIN, date(2026, 1, 15), id="tokyo-next-day"
        ),
        # Sat 7 Mar 03:00 UTC is still Fri 6 Mar 22:00 in New York: after cut-off -> Monday.
        pytest.param(
            utc(2026, 3, 7, 3, 0),
            "America/New_York",
            PLAIN,
            date(2026, 3, 9),
            id="ny-friday-night",
        ),
    ],
)
def test_first_pick_day(
    entered_at: datetime, zone: str, calendar: BusinessCalendar, expected: date
) -> None:
    assert first_pick_day(entered_at, CUTOFF, zone, calendar) == expected


def test_first_pick_day_accepts_any_aware_offset() -> None:
    eastern = timezone(timedelta(hours=-5))
    entered = datetime(2026, 1, 14, 14, 30, tzinfo=eastern)
    assert first_pick_day(entered, CUTOFF, "America/New_York", PLAIN) == date(2026, 1, 14)
    assert first_pick_day(entered, CUTOFF, "UTC", PLAIN) == date(2026, 1, 15)


def test_first_pick_day_refuses_naive_time() -> None:
    with pytest.raises(InvalidValue) as info:
        first_pick_day(datetime(2026, 3, 3, 9, 0), CUTOFF, "UTC", PLAIN)
    assert info.value.field == "entered_at"
    assert "timezone-aware" in info.value.message


@pytest.mark.parametrize(
    ("start", "backlog", "capacity", "expected"),
    [
        (date(2026, 3, 3), 0, 2, date(2026, 3, 3)),  # nothing ahead: same day
        (date(2026, 3, 3), 1, 2, date(2026, 3, 3)),  # 2nd in queue, capacity 2: same day
        (date(2026, 3, 3), 2, 2, date(2026, 3, 4)),  # 3rd in queue: next day
        (date(2026, 3, 3), 5, 2, date(2026, 3, 5)),  # 6th in queue: Tue + 2 = Thu
        (date(2026, 3, 5), 5, 2, date(2026, 3, 9)),  # Thu + 2 over the weekend = Mon
        (date(2026, 3, 3), 99, 100, date(2026, 3, 3)),
        (date(2026, 3, 3), 100, 100, date(2026, 3, 4)),
        (date(2026, 3, 3), 10, 1, date(2026, 3, 17)),  # two working weeks
    ],
)
def test_promised_ship_date_works_off_the_backlog(
    start: date, backlog: int, capacity: int, expected: date
) -> None:
    shipped = promised_ship_date(
        earliest_pick_day=start,
        pick_backlog_lines=backlog,
        pick_capacity_per_day=capacity,
        calendar=PLAIN,
    )
    assert shipped == expected


def test_promised_ship_date_skips_holidays_in_the_backlog() -> None:
    # Fri 22 May, 3 lines ahead at capacity 1 -> 3 business days later, skipping the weekend
    # and the Monday holiday: Fri 22 -> Tue 26 -> Wed 27 -> Thu 28.
    shipped = promised_ship_date(
        earliest_pick_day=date(2026, 5, 22),
        pick_backlog_lines=3,
        pick_capacity_per_day=1,
        calendar=MEMORIAL_DAY,
    )
    assert shipped == date(2026, 5, 28)


@pytest.mark.parametrize(
    ("field", "backlog", "capacity"),
    [
        ("pick_capacity_per_day", 0, 0),
        ("pick_capacity_per_day", 0, -3),
        ("pick_backlog_lines", -1, 2),
    ],
)
def test_promised_ship_date_refuses_bad_numbers(field: str, backlog: int, capacity: int) -> None:
    with pytest.raises(InvalidValue) as info:
        promised_ship_date(
            earliest_pick_day=date(2026, 3, 3),
            pick_backlog_lines=backlog,
            pick_capacity_per_day=capacity,
            calendar=PLAIN,
        )
    assert info.value.field == field


@pytest.mark.parametrize(
    ("calendar", "ship", "transit", "expected"),
    [
        (PLAIN, date(2026, 3, 3), 0, date(2026, 3, 3)),
        (PLAIN, date(2026, 3, 3), 1, date(2026, 3, 4)),
        (PLAIN, date(2026, 3, 6), 1, date(2026, 3, 9)),  # Fri + 1 transit day = Mon
        (PLAIN, date(2026, 3, 6), 4, date(2026, 3, 12)),  # Fri + 4 = Thu
        (PLAIN, date(2026, 3, 4), 3, date(2026, 3, 9)),  # Wed + 3 = Mon
        (YEAR_END, date(2026, 12, 24), 1, date(2026, 12, 28)),  # over Christmas Friday
    ],
)
def test_promised_delivery_date_counts_business_days(
    calendar: BusinessCalendar, ship: date, transit: int, expected: date
) -> None:
    assert promised_delivery_date(ship, transit, calendar) == expected


def test_promised_delivery_date_refuses_negative_transit() -> None:
    with pytest.raises(InvalidValue) as info:
        promised_delivery_date(date(2026, 3, 3), -1, PLAIN)
    assert info.value.field == "transit_days"
    assert info.value.value == -1


def promise(
    entered_at: datetime,
    *,
    ready_on: date | None = None,
    backlog: int = 0,
    capacity: int = 2,
    transit: int = 1,
    zone: str = "UTC",
    calendar: BusinessCalendar = PLAIN,
) -> Promise:
    return promise_for(
        entered_at=entered_at,
        stock_ready_on=ready_on,
        cutoff=CUTOFF,
        timezone=zone,
        pick_backlog_lines=backlog,
        pick_capacity_per_day=capacity,
        transit_days=transit,
        calendar=calendar,
    )


def test_promise_from_stock_before_cutoff() -> None:
    assert promise(utc(2026, 3, 3, 9, 0)) == Promise(date(2026, 3, 3), date(2026, 3, 4))


def test_promise_friday_after_cutoff_with_backlog_and_transit() -> None:
    # Pick from Mon 9 Mar; 5 lines ahead at 2 a day -> Wed 11; 2 transit days -> Fri 13.
    got = promise(utc(2026, 3, 6, 16, 0), backlog=5, transit=2)
    assert got == Promise(date(2026, 3, 11), date(2026, 3, 13))


def test_promise_transit_over_the_weekend() -> None:
    # Ships Fri 6 Mar before cut-off; 3 transit days: Mon, Tue, Wed -> Wed 11.
    got = promise(utc(2026, 3, 6, 10, 0), transit=3)
    assert got == Promise(date(2026, 3, 6), date(2026, 3, 11))


def test_promise_in_new_york_winter_afternoon() -> None:
    got = promise(utc(2026, 1, 14, 19, 30), zone="America/New_York")
    assert got == Promise(date(2026, 1, 14), date(2026, 1, 15))


def test_backorder_is_picked_the_business_day_after_its_receipt() -> None:
    # Entered Tue 3 Mar; receipt Wed 11 Mar -> put away, picked Thu 12, delivered Fri 13.
    got = promise(utc(2026, 3, 3, 9, 0), ready_on=date(2026, 3, 11))
    assert got == Promise(date(2026, 3, 12), date(2026, 3, 13))


def test_backorder_received_on_friday_ships_monday() -> None:
    got = promise(utc(2026, 3, 3, 9, 0), ready_on=date(2026, 3, 13))
    assert got == Promise(date(2026, 3, 16), date(2026, 3, 17))


def test_backorder_received_on_the_first_pick_day_waits_a_day() -> None:
    got = promise(utc(2026, 3, 3, 9, 0), ready_on=date(2026, 3, 3))
    assert got == Promise(date(2026, 3, 4), date(2026, 3, 5))


def test_receipt_before_the_first_pick_day_does_not_delay() -> None:
    # Entered Fri after cut-off (first pick Mon 9); goods arrive that Friday: pick Monday.
    got = promise(utc(2026, 3, 6, 16, 0), ready_on=date(2026, 3, 6))
    assert got == Promise(date(2026, 3, 9), date(2026, 3, 10))


def test_backorder_receipt_then_backlog_then_holiday() -> None:
    # Receipt Thu 21 May -> first pick Fri 22; 2 ahead at capacity 2 -> next business day,
    # which is Tue 26 (Mon 25 is a holiday); 1 transit day -> Wed 27.
    got = promise(
        utc(2026, 5, 18, 9, 0), ready_on=date(2026, 5, 21), backlog=2, calendar=MEMORIAL_DAY
    )
    assert got == Promise(date(2026, 5, 26), date(2026, 5, 27))
