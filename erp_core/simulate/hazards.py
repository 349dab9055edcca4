"""Lateness hazards: the probabilities the simulator draws each line's fate from at entry.

A line misses its promised delivery date when it ships late or its transit runs late:

    P(ship late)     = 1 - (1 - P(stock late)) * (1 - P(handling late))
    P(delivery late) = 1 - (1 - P(ship late)) * (1 - P(transit late))

Every input is known at the moment of entry: the ERP's pick backlog, the calendar, the order, and
the world's hidden state *at that moment* (the location's pick capacity today, set by its staffing
plan and the flex called in on earlier evenings; its operational quality, the carrier's
reliability, weather already under way, a supplier's disruption that has begun). Nothing that
happens later enters the probability, so it is the best any model could know: its AUC against the
realised outcomes is the oracle's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from erp_core.simulate.world import DELAY_SUPPORT

HANDLING_BASE_LOGIT = -3.6
BACKLOG_SLOPE = 2.5
BACKLOG_KNEE = 0.6
HOLIDAY_AHEAD = 1.2
PEAK = 0.8
BIG_ORDER = 0.8
SPLIT_PART = 0.6
FRIDAY = 0.5
TRANSIT_PEAK = 0.6
TRANSIT_PER_DAY = 0.3


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class LineHazard:
    p_stock_late: float
    p_handling_late: float
    p_transit_late: float

    @property
    def p_ship_late(self) -> float:
        return 1 - (1 - self.p_stock_late) * (1 - self.p_handling_late)

    @property
    def p_delivery_late(self) -> float:
        return 1 - (1 - self.p_ship_late) * (1 - self.p_transit_late)


def handling_late_probability(
    *,
    backlog_lines: int,
    capacity: int,
    holiday_ahead: bool,
    peak: bool,
    order_lines: int,
    split_part: bool,
    friday: bool,
    location_quality: float,
    approval_blocks_today: bool,
) -> float:
    """The warehouse misses the promised ship date (backlog, holidays, big orders, ...).

    ``capacity``: the lines the location can pick today (its staffing, flex included)."""
    if approval_blocks_today:
        # A discount awaiting finance cannot be picked before tomorrow morning's decision.
        return 1.0
    logit = (
        HANDLING_BASE_LOGIT
        + BACKLOG_SLOPE * max(0.0, backlog_lines / capacity - BACKLOG_KNEE)
        + HOLIDAY_AHEAD * holiday_ahead
        + PEAK * peak
        + BIG_ORDER * (order_lines >= 8)
        + SPLIT_PART * split_part
        + FRIDAY * friday
        + location_quality
    )
    return sigmoid(logit)


def transit_late_probability(
    carrier_logit: float, lane_offset: float, transit_days: int, weather: float, peak: bool
) -> float:
    """The carrier delivers after the promised day: its drifting reliability, the lane's own
    record, longer hauls, a storm under way in the destination region, peak season."""
    return sigmoid(
        carrier_logit
        + lane_offset
        + TRANSIT_PER_DAY * (transit_days - 1)
        + weather
        + TRANSIT_PEAK * peak
    )


def receipt_late_probability(delay_pmf: np.ndarray, days_past_expected: int) -> float:
    """P(receipt after its expected day | not received by today), today being
    ``days_past_expected`` days after the expected day (negative: before it)."""
    not_yet = days_past_expected < DELAY_SUPPORT
    still_possible = delay_pmf[not_yet].sum()
    if still_possible <= 0:
        return 1.0
    late = max(0, days_past_expected) < DELAY_SUPPORT
    return float(delay_pmf[late & not_yet].sum() / still_possible)


def draw_delay_days(rng: np.random.Generator) -> int:
    """How many business days a late event slips: 1 most often, sometimes a week."""
    return int(min(8, rng.geometric(0.55)))
