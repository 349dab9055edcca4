"""The replenishment policy by hand: inventory position, pack rounding, nothing ordered while the
position covers the reorder point, safety stock that grows with the fill target and the lead-time
spread, transfers from excess to shortage; and the ledger read against the ERP's own balances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from erp_core.db.engine import make_engine
from erp_core.db.models import InventoryBalance
from training import replenishment as rp


def test_inventory_position_is_on_hand_plus_on_order_minus_reserved_and_backordered():
    assert rp.inventory_position(on_hand=40, on_order=25, reserved=10, backordered=7) == 48


@pytest.mark.parametrize(
    ("position", "reorder_point", "order_up_to", "pack", "expected"),
    [
        (10, 20, 57, 12, 48),  # 47 short, rounded up to 4 packs of 12
        (10, 20, 57, 1, 47),
        (10, 20, 57, 0, 47),  # no pack size: 1
        (20, 20, 57, 12, 48),  # at the reorder point: order
        (21, 20, 57, 12, 0),  # above it: nothing
        (60, 70, 57, 12, 0),  # position already covers the order-up-to level
        (-5, 20, 57, 10, 70),  # backorders make the position negative
    ],
)
def test_order_quantity(position, reorder_point, order_up_to, pack, expected):
    assert rp.order_quantity(position, reorder_point, order_up_to, pack) == expected


def test_without_uncertainty_the_levels_are_the_expected_demand():
    levels = rp.policy_levels(rate=2.0, sigma_daily=0.0, lead_mean=10, lead_std=0.0, fill=0.95)
    assert levels.reorder_point == pytest.approx(20.0)
    assert levels.order_up_to == pytest.approx(2.0 * (10 + rp.REVIEW_DAYS))


def test_safety_stock_grows_with_the_fill_target_and_the_lead_time_spread():
    def up_to(fill: float, lead_std: float) -> float:
        return rp.policy_levels(2.0, 1.5, 10, lead_std, fill).order_up_to

    assert up_to(0.90, 0.0) < up_to(0.95, 0.0) < up_to(0.98, 0.0)
    assert up_to(0.95, 0.0) < up_to(0.95, 3.0)


def test_the_safety_factor_solves_the_loss_equation():
    k = rp.safety_factor(0.95, cycle_demand=14.0, sigma=6.0)
    assert 6.0 * rp.loss_function(k) == pytest.approx(0.05 * 14.0, rel=1e-6)


def test_recommendations_move_excess_before_ordering_and_round_to_packs():
    forecast = pd.DataFrame(
        {
            "sku": ["S1", "S1"],
            "location_id": ["L1", "L2"],
            "rate": [2.0, 2.0],
            "sigma_daily": [0.0, 0.0],
        }
    )
    positions = pd.DataFrame(
        {
            "sku": ["S1", "S1"],
            "location_id": ["L1", "L2"],
            "on_hand": [100, 5],
            "reserved": [0, 0],
            "on_order": [0, 0],
            "backordered": [0, 3],
            "position": [100, 2],
        }
    )
    lead = pd.DataFrame(
        {"supplier_id": ["V"], "lead_mean": [7.0], "lead_std": [0.0], "receipts": [5]}
    )
    catalogue = pd.DataFrame(
        {
            "sku": ["S1"],
            "name": ["thing"],
            "pack_size": [10],
            "unit_cost": [3.0],
            "abc_class": ["A"],
            "supplier_id": ["V"],
        }
    )
    recs, moves = rp.recommend(forecast, positions, lead, catalogue, review_days=7)
    # order-up-to 2 x 14 = 28 at both; L1 holds 72 above it, L2 needs 26
    assert moves.to_dict("records") == [
        {"sku": "S1", "from_location_id": "L1", "to_location_id": "L2", "quantity": 26}
    ]
    by_location = recs.set_index("location_id")
    assert by_location.loc["L2", "transfer_in"] == 26
    assert by_location.loc["L2", "order_qty"] == 0  # the transfer covers it
    assert by_location.loc["L1", "order_qty"] == 0
    assert by_location.loc["L2", "days_of_cover"] == pytest.approx(1.0)  # (5 - 3) / 2

    no_excess = positions.assign(position=[20, 2], on_hand=[20, 5])
    recs, moves = rp.recommend(forecast, no_excess, lead, catalogue, review_days=7)
    assert moves.empty
    assert recs.set_index("location_id").loc["L2", "order_qty"] == 30  # 26 -> 3 packs of 10
    assert recs.set_index("location_id").loc["L2", "value"] == pytest.approx(90.0)


def test_the_ledger_positions_agree_with_the_erps_balances(training_world):
    positions = rp.inventory_positions(training_world.url).set_index(["sku", "location_id"])
    engine = make_engine(training_world.url)
    with engine.connect() as connection:
        balances = connection.execute(select(InventoryBalance)).all()
    engine.dispose()
    assert len(balances) > 0
    for balance in balances:
        row = positions.loc[(balance.sku, balance.location_id)]
        assert (row.on_hand, row.reserved, row.on_order) == (
            balance.on_hand,
            balance.reserved,
            balance.on_order,
        )
    assert (
        positions["position"] == positions.eval("on_hand + on_order - reserved - backordered")
    ).all()


def test_supplier_lead_times_come_from_receipts(training_world):
    lead = rp.supplier_lead_times(training_world.url)
    measured = lead.loc[lead["receipts"] > 0]
    assert len(measured) > 0
    assert (measured["lead_mean"] > 0).all() and (measured["lead_std"] >= 0).all()


def pair(actual, rate, lead_times, review_days_lead=3.0):
    return rp.PairReplay(
        sku="S",
        location_id="L",
        actual=np.asarray(actual, dtype=float),
        rates={p: np.full(len(actual), rate) for p in rp.POLICIES},
        sigma=dict.fromkeys(rp.POLICIES, 0.0),
        lead_times=np.asarray(lead_times),
        lead_mean=review_days_lead,
        lead_std=0.0,
        fill=0.95,
        pack=1,
        unit_cost=2.0,
    )


def test_a_steady_replay_by_hand_never_runs_out():
    # 2 units a day, lead time 3, daily review: s = 6, S = 8; every day the position falls to
    # 6 and 2 are ordered, arriving 3 days later: never short, one order a day
    score = rp.replay(pair([2] * 10, 2.0, [3]), "model", review_days=1)
    assert score.as_dict()["fill_rate"] == 1.0
    assert score.stockout_days == 0 and score.orders == 10
    # on hand after each day's demand: 6, 4, 2, then 2 every day (value at cost 2 per unit)
    assert score.as_dict()["average_inventory_value"] == pytest.approx(2 * (6 + 4 + 2 + 2 * 7) / 10)


def test_a_late_supplier_causes_stockouts_in_the_replay():
    score = rp.replay(pair([2] * 10, 2.0, [9]), "model", review_days=1)
    assert score.stockout_days > 0 and score.as_dict()["fill_rate"] < 1.0


def test_service_matching_raises_a_policy_that_misses_its_target_until_it_meets_it():
    # A late supplier (lead 9 against a planned 3): as it is, the policy runs out.
    short = [pair([2] * 40, 2.0, [9])]
    assert rp.replay(short[0], "model", review_days=1).as_dict()["fill_rate"] < 0.95
    matched = rp.service_matched(short, review_days=1)["model"]
    assert matched["classes"]["B"]["scale"] > 1.0 and matched["classes"]["B"]["reached"]
    assert matched["fill_rate"] >= 0.95


def test_service_matching_trims_a_policy_that_overshoots_to_less_inventory():
    # Demand of 1 a day planned as 3: plenty of stock, more than the 95% target needs.
    generous = [pair([1] * 40, 3.0, [3])]
    as_it_is = rp.replay(generous[0], "model", review_days=1).as_dict()
    matched = rp.service_matched(generous, review_days=1)["model"]
    assert matched["classes"]["B"]["scale"] < 1.0
    assert matched["fill_rate"] >= 0.95
    assert matched["average_inventory_value"] < as_it_is["average_inventory_value"]


def test_a_target_out_of_reach_is_reported_not_met():
    # Lead times far beyond the 40 replayed days: nothing ordered ever arrives.
    hopeless = [pair([5] * 40, 1.0, [400])]
    matched = rp.service_matched(hopeless, review_days=1)["model"]
    assert matched["classes"]["B"]["scale"] == rp.SCALE_RANGE[1]
    assert matched["classes"]["B"]["reached"] is False
