"""Promise dates: when a line can leave its location and when it reaches the customer.

The ship date honours the location's daily cut-off (an order entered after it is picked from the
next business day), its pick capacity (lines per day) and the pick backlog already queued ahead.
The delivery date adds the lane's transit in business days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue


@dataclass(frozen=True)
class Promise:
    ship_date: date
    delivery_date: date


def first_pick_day(
    entered_at: datetime, cutoff: time, timezone: str, calendar: BusinessCalendar
) -> date:
    """The first business day the warehouse can work the line, judged in the location's time."""
    if entered_at.tzinfo is None:
        raise InvalidValue("entered_at", entered_at, "must be timezone-aware")
    local = entered_at.astimezone(ZoneInfo(timezone))
    day = local.date()
    if not calendar.is_business_day(day) or local.time() >= cutoff:
        day = day + timedelta(days=1)
    return calendar.next_business_day_on_or_after(day)


def promised_ship_date(
    *,
    earliest_pick_day: date,
    pick_backlog_lines: int,
    pick_capacity_per_day: int,
    calendar: BusinessCalendar,
) -> date:
    """The day this line is picked and shipped once the backlog ahead of it is worked off.

    With capacity C and B lines queued ahead, this line is number B + 1 in the queue, so it ships
    ``B // C`` business days after the first pick day.
    """
    if pick_capacity_per_day <= 0:
        raise InvalidValue("pick_capacity_per_day", pick_capacity_per_day, "must be > 0")
    if pick_backlog_lines < 0:
        raise InvalidValue("pick_backlog_lines", pick_backlog_lines, "must be >= 0")
    return calendar.add_business_days(
        earliest_pick_day, pick_backlog_lines // pick_capacity_per_day
    )


def promised_delivery_date(ship_date: date, transit_days: int, calendar: BusinessCalendar) -> date:
    """Ship date plus lane transit, counted in business days."""
    if transit_days < 0:
        raise InvalidValue("transit_days", transit_days, "must be >= 0")
    return calendar.add_business_days(ship_date, transit_days)


def promise_for(
    *,
    entered_at: datetime,
    stock_ready_on: date | None,
    cutoff: time,
    timezone: str,
    pick_backlog_lines: int,
    pick_capacity_per_day: int,
    transit_days: int,
    calendar: BusinessCalendar,
) -> Promise:
    """Ship and delivery promise for a line; ``stock_ready_on`` is the receipt date of a backorder
    (None when the stock is on hand now)."""
    start = first_pick_day(entered_at, cutoff, timezone, calendar)
    if stock_ready_on is not None and stock_ready_on >= start:
        # Received goods are put away on their day and picked from the next business day.
        start = calendar.next_business_day_on_or_after(stock_ready_on + timedelta(days=1))
    ship = promised_ship_date(
        earliest_pick_day=start,
        pick_backlog_lines=pick_backlog_lines,
        pick_capacity_per_day=pick_capacity_per_day,
        calendar=calendar,
    )
    return Promise(ship, promised_delivery_date(ship, transit_days, calendar))
