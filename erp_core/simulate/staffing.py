"""Warehouse staffing: how many lines a day each location can pick.

A distributor does not staff its warehouses once and for all. Two things move the pick capacity:

- **The plan.** Each location's permanent crew is sized for its own load (the ERP's nominal
  capacity). Ahead of the weeks when the expected load rises above that (seasons, promotions,
  peak, growth), planners book extra staff for them: the planned capacity of a day covers the
  expected load of the weeks around it, never below the permanent crew. The plan is made in
  advance from the expected rates, so it is known on every day it applies to.
- **The flex.** Every working evening the warehouse looks at the lines still queued after the
  pick. A queue above ``FLEX_TRIGGER`` days of today's capacity calls in overtime and temporary
  staff: a further ``FLEX_STEP`` of the planned capacity, from ``FLEX_LAG`` business days later,
  up to ``FLEX_MAX`` in all (one call at a time: the next waits until the last has arrived). A
  queue below ``FLEX_RELEASE`` days sends one step home from the next business day.

Today's capacity is therefore fixed by decisions taken on earlier days: an order entered today
can know it. Nothing here draws a random number.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from erp_core.simulate.demand import calendar_factor, line_rate
from erp_core.simulate.world import World, own_load

PLAN_WINDOW = (-3, 11)
"""Days (from, to) around a day whose mean expected load its staffing plan covers."""
FLEX_TRIGGER = 0.5
FLEX_RELEASE = 0.25
FLEX_STEP = 0.15
FLEX_MAX = 0.6
FLEX_LAG = 3


def planned_capacity(world: World) -> np.ndarray:
    """(day, location) planned pick capacity over the world's horizon: the permanent crew's,
    scaled up to the expected load of the weeks around the day when that exceeds its own."""
    horizon = world.weather.shape[0]
    load = np.empty((horizon, len(world.locations)))
    for day in range(horizon):
        # The load of a plain weekday: weekends and holidays do not set the crew's size.
        load[day] = line_rate(world, day).sum(axis=0) / calendar_factor(world, world.day_date(day))
    before, after = PLAN_WINDOW
    window = np.array(
        [load[max(0, d + before) : d + after + 1].mean(axis=0) for d in range(horizon)]
    )
    scale = np.maximum(1.0, window / own_load(world.base_rate, world.location_share))
    return np.ceil(world.pick_capacity[None, :] * scale).astype(int)


class Staffing:
    """The planned capacity plus the flex the evening reviews have called in."""

    def __init__(self, world: World) -> None:
        self.planned = planned_capacity(world)
        n_loc = len(world.locations)
        self.extra = np.zeros(n_loc)
        """Flex in force today, as a share of the planned capacity."""
        self.pending: list[tuple[int, int, float]] = []
        """(business day index it takes effect, location, change of the share)."""
        self.capacity = self.planned[0].copy()

    def start_day(self, day: int, business_day_index: int) -> None:
        """Bring in (or send home) the flex due by this business day; fix today's capacity."""
        due = [p for p in self.pending if p[0] <= business_day_index]
        if due:
            self.pending = [p for p in self.pending if p[0] > business_day_index]
            for _when, loc, change in due:
                self.extra[loc] = min(FLEX_MAX, max(0.0, self.extra[loc] + change))
        self.capacity = np.ceil(self.planned[day] * (1 + self.extra)).astype(int)

    def review(self, business_day_index: int, queued: Mapping[int, int]) -> None:
        """The evening review: ``queued`` lines still waiting per location after the pick."""
        for loc, lines in queued.items():
            if any(p[1] == loc for p in self.pending):
                continue  # the last call has not taken effect yet
            days_of_work = lines / self.capacity[loc]
            if days_of_work > FLEX_TRIGGER and self.extra[loc] < FLEX_MAX - 1e-9:
                self.pending.append((business_day_index + FLEX_LAG, loc, FLEX_STEP))
            elif days_of_work < FLEX_RELEASE and self.extra[loc] > 1e-9:
                self.pending.append((business_day_index + 1, loc, -FLEX_STEP))
