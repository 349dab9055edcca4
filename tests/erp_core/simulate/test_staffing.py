"""Warehouse staffing: the plan follows the expected load, the flex answers a queue with a lag,
within bounds, and goes home when the queue is gone."""

from __future__ import annotations

import numpy as np
import pytest

from erp_core.simulate import staffing
from erp_core.simulate.profiles import PROFILES
from erp_core.simulate.staffing import Staffing, planned_capacity
from erp_core.simulate.world import build_world

SMALL = PROFILES["small"]


def test_the_plan_never_staffs_below_the_permanent_crew():
    world = build_world(SMALL, 3, 60)
    plan = planned_capacity(world)
    assert plan.shape == (world.weather.shape[0], len(world.locations))
    assert (plan >= world.pick_capacity[None, :]).all()


def test_the_plan_grows_with_the_expected_load():
    world = build_world(SMALL, 3, 300)
    world.trend[:] = 1 / 365  # every item's demand grows by e in a year
    plan = planned_capacity(world)
    assert (plan[250] > 1.5 * world.pick_capacity).all()
    assert (plan[250] > plan[100]).all()


def test_flex_comes_after_its_lag_and_stays_within_bounds():
    world = build_world(SMALL, 3, 200)
    crew = Staffing(world)
    crew.planned[:] = 100
    crew.start_day(0, 0)
    queue = {0: 80, 1: 10}  # location 0: 0.8 days of work waiting overnight
    capacities = []
    for business_day in range(40):
        crew.start_day(business_day, business_day)
        capacities.append(crew.capacity.copy())
        crew.review(business_day, queue)
    first = np.array(capacities)
    lag = staffing.FLEX_LAG
    # Called in on the first evening, the extra staff start FLEX_LAG business days later.
    assert (first[:lag, 0] == 100).all()
    assert first[lag, 0] == pytest.approx(100 * (1 + staffing.FLEX_STEP))
    assert first[:, 0].max() == pytest.approx(100 * (1 + staffing.FLEX_MAX))
    assert (np.diff(first[:, 0]) >= 0).all()
    assert (first[:, 1] == 100).all()  # a short queue calls no one in


def test_flex_goes_home_when_the_queue_has_drained():
    world = build_world(SMALL, 3, 200)
    crew = Staffing(world)
    crew.planned[:] = 100
    for business_day in range(30):
        crew.start_day(business_day, business_day)
        crew.review(business_day, {0: 90})
    assert crew.capacity[0] > 100
    for business_day in range(30, 60):
        crew.start_day(business_day, business_day)
        crew.review(business_day, {0: 5})
    assert crew.capacity[0] == 100
