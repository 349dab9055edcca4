"""The hidden world: reproducible from its seed, and valid master data for the ERP."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from erp_core.simulate.demand import expected_quantity_by_channel, line_rate
from erp_core.simulate.profiles import PROFILES
from erp_core.simulate.world import TIERS, build_world, master_data

SMALL = PROFILES["small"]


def test_same_seed_same_world():
    a, b = build_world(SMALL, 3, 60), build_world(SMALL, 3, 60)
    assert np.array_equal(a.base_rate, b.base_rate)
    assert a.promotions == b.promotions
    assert not np.array_equal(a.base_rate, build_world(SMALL, 4, 60).base_rate)


def test_world_fits_its_profile():
    world = build_world(SMALL, 3, 60)
    data = master_data(world)
    assert (len(data.products), len(data.locations), len(data.customers)) == (30, 2, 40)
    assert {c.tier for c in data.customers} <= set(TIERS)
    homes = {c.home_location_id for c in data.customers}
    assert homes <= {loc.id for loc in data.locations}
    # Every location reaches every region by a standard lane.
    standard = {
        (lane.origin_location_id, lane.dest_region)
        for lane in data.lanes
        if lane.service_level == "standard"
    }
    assert standard == {(loc, region) for loc in world.locations for region in world.regions}


def test_price_list_has_quantity_breaks_below_the_single_unit_price():
    data = master_data(build_world(SMALL, 3, 60))
    gold = {
        (p.min_quantity, p.valid_from): p.unit_price
        for p in data.prices
        if p.sku == "SKU-00000" and p.tier == "gold"
    }
    first = min(valid for _, valid in gold)
    assert gold[(50, first)] < gold[(1, first)]
    assert gold[(200, first)] < gold[(50, first)]
    assert all(price > Decimal(0) for price in gold.values())


def test_demand_rates_rest_on_weekends_and_sum_to_the_profile():
    world = build_world(SMALL, 3, 60)
    monday, saturday = line_rate(world, 0), line_rate(world, 5)
    assert saturday.sum() < 0.1 * monday.sum()
    assert 0.5 * SMALL.lines_per_day < monday.sum() < 2 * SMALL.lines_per_day


def test_expected_quantity_is_at_least_one_unit():
    table = expected_quantity_by_channel(build_world(SMALL, 3, 60))
    assert (table >= 1).all()
