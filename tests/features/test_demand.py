"""The demand frame: values checked by hand on a tiny world built through the ERP services, the
leakage guard and the frame's checks on a simulated world, and the zero days the models need."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from erp_core.db.uow import UnitOfWork
from erp_core.policy import load_policy
from erp_core.services.master_data import MasterData, PriceSpec, load_master_data
from erp_core.services.order_changes import cancel_order_lines
from erp_core.services.orders import LineRequest, capture_order
from erp_core.simulate.truth import DEMAND as DEMAND_TRUTH
from features.build import build_feature_set
from features.demand import demand_frame, promotion_cuts
from features.history import load_history
from features.registry import DEMAND
from features.schema import frame_problems
from features.store import read_manifest
from tests.conftest import ADMIN, SALES, T0, stock
from tests.features.conftest import SimulatedHistory
from tests.features.test_late_shipment import assert_identical_to_the_bit

CALENDAR = load_policy().calendar
TUESDAY = T0.replace(hour=0)  # 2026-03-03: WIDGET counted at WEST at 09:00


def day(n: int, hour: int = 0) -> datetime:
    """``hour`` o'clock UTC ``n`` days after Tuesday 3 March 2026."""
    return TUESDAY + timedelta(days=n, hours=hour)


def build(url_or_engine, start: datetime, end: datetime) -> pd.DataFrame:
    return demand_frame(load_history(url_or_engine), start, end, CALENDAR)


# --- a world small enough to check by hand ------------------------------------------------------


@dataclass(frozen=True)
class HandDemand:
    uow: UnitOfWork

    @cached_property
    def built(self) -> pd.DataFrame:
        frame = build(self.uow.engine, day(0), day(9))
        frame["day"] = frame["day"].dt.date
        return frame.set_index(["sku", "location_id", "day"]).sort_index()

    def row(self, sku: str, location: str, n: int) -> pd.Series:
        return self.built.loc[(sku, location, (day(n)).date())]


@pytest.fixture
def hand_demand(world: UnitOfWork) -> HandDemand:
    """WIDGET counted at WEST on Tuesday. Wednesday: Gold Co (home WEST) orders 4, Bronze Co
    (home WEST) 2, cancelled on Thursday; Friday: Gold Co 6; Monday: East Co (home EAST, no stock
    there) 3. A count on Thursday the 12th closes the days before it. Gold's one-unit WIDGET price
    is cut 20 % on the 10th and 11th (the price list says so from the start)."""
    stock(world, "WIDGET", "WEST", 100)
    promo = [
        PriceSpec("gold", "WIDGET", Decimal("7.20"), valid_from=date(2026, 3, 10)),
        PriceSpec("gold", "WIDGET", Decimal("9.00"), valid_from=date(2026, 3, 12)),
    ]
    load_master_data(world, ADMIN, MasterData(prices=promo), T0)

    def capture(customer: str, when: datetime, units: int):
        return capture_order(
            world, SALES, customer_id=customer, lines=[LineRequest("WIDGET", units)], now=when
        )

    capture("C-GOLD", day(1).replace(hour=10), 4)
    cancelled = capture("C-BRONZE", day(1).replace(hour=11), 2)
    cancel_order_lines(world, SALES, order_id=cancelled.order_id, now=day(2).replace(hour=9))
    capture("C-GOLD", day(3).replace(hour=10), 6)
    capture("C-EAST", day(6).replace(hour=10), 3)
    stock(world, "WIDGET", "WEST", 90, at=day(9).replace(hour=9))
    return HandDemand(world)


def test_rows_cover_every_day_of_each_pair_from_the_day_after_it_was_first_seen(hand_demand):
    frame = hand_demand.built
    west = frame.loc[("WIDGET", "WEST")]
    assert [d.isoformat() for d in west.index] == [
        f"2026-03-{d:02d}" for d in range(4, 12)
    ]  # counted on the 3rd: rows from the 4th, zero days included
    east = frame.loc[("WIDGET", "EAST")]
    assert [d.isoformat() for d in east.index] == ["2026-03-10", "2026-03-11"]  # first asked 9th
    assert "GADGET" not in frame.index.get_level_values("sku")


def test_the_label_is_the_days_demand_at_the_home_location_cancelled_lines_included(
    hand_demand,
):
    west = hand_demand.built.loc[("WIDGET", "WEST"), "label_demand_units"]
    assert west.tolist() == [6, 0, 6, 0, 0, 0, 0, 0]  # 4 + 2 cancelled on the 4th; 6 on the 6th
    east = hand_demand.built.loc[("WIDGET", "EAST"), "label_demand_units"]
    assert east.tolist() == [0, 0]  # the 3 ordered on the 9th are EAST's, where East Co lives


def test_lags_and_windows_count_only_days_before_t_since_the_pair_was_first_seen(hand_demand):
    thursday = hand_demand.row("WIDGET", "WEST", 2)
    assert thursday["demand_lag_1d"] == 6
    assert thursday["days_seen_91d"] == 2  # Tuesday (counted) and Wednesday
    assert thursday["demand_mean_7d"] == pytest.approx(6 / 2)
    assert thursday["demand_zero_share_7d"] == pytest.approx(1 / 2)

    wednesday = hand_demand.row("WIDGET", "WEST", 8)  # days 3rd..10th: 0 6 0 6 0 0 0 0
    assert wednesday["demand_lag_1d"] == 0
    assert wednesday["demand_lag_7d"] == 6
    assert wednesday["demand_lag_14d"] == 0
    assert wednesday["demand_mean_7d"] == pytest.approx(12 / 7)
    assert wednesday["demand_zero_share_7d"] == pytest.approx(5 / 7)
    assert wednesday["demand_mean_28d"] == pytest.approx(12 / 8)
    assert wednesday["demand_zero_share_91d"] == pytest.approx(6 / 8)
    assert wednesday["demand_std_28d"] == pytest.approx(np.std([0, 6, 0, 6, 0, 0, 0, 0]))
    assert wednesday["adi_91d"] == pytest.approx(4.0)
    assert wednesday["cv2_91d"] == pytest.approx(0.0)
    assert wednesday["intermittency_class"] == "intermittent"
    assert wednesday["item_age_days"] == 7  # WIDGET first asked for on the 4th
    assert (wednesday["weekday"], wednesday["month"], wednesday["days_to_month_end"]) == (2, 3, 20)
    assert not wednesday["holiday"]
    assert not wednesday["peak_season"]


def test_a_young_pair_is_classed_on_its_few_days_and_an_item_has_no_age_before_its_first_order(
    hand_demand,
):
    east = hand_demand.row("WIDGET", "EAST", 7)
    assert (east["demand_lag_1d"], east["days_seen_91d"]) == (3, 1)
    assert (east["adi_91d"], east["cv2_91d"]) == (1.0, 0.0)
    assert east["intermittency_class"] == "smooth"
    first = hand_demand.row("WIDGET", "WEST", 1)  # the first order is on this very day
    assert math.isnan(first["item_age_days"])
    assert first["intermittency_class"] == "none"
    assert math.isnan(first["adi_91d"])


def test_promotions_and_price_level_come_from_the_price_list_in_force(hand_demand):
    before, during = (hand_demand.row("WIDGET", "WEST", n) for n in (2, 7))
    # One-unit prices: gold 9.00 (7.20 on the 10th and 11th), silver 9.50, bronze 10.00.
    assert before["list_price"] == pytest.approx((9.0 + 9.5 + 10.0) / 3)
    assert during["list_price"] == pytest.approx((7.2 + 9.5 + 10.0) / 3)
    assert during["promo_discount"] == pytest.approx(0.2 / 3)  # gold's cut, mean over 3 tiers
    assert before["promo_discount"] == 0
    assert before["promo_discount_in_7d"] == 0  # the 12th: raised again
    assert hand_demand.row("WIDGET", "WEST", 1)["promo_discount_in_7d"] == pytest.approx(0.2 / 3)
    # Paid before Thursday: 4 at gold's 9.00 and 2 at bronze's 10.00 (cancelled: still asked at).
    assert before["price_level_91d"] == pytest.approx(9.5 / ((4 * 9 + 2 * 10) / 6))
    assert math.isnan(hand_demand.row("WIDGET", "WEST", 1)["price_level_91d"])


def test_a_pair_untouched_for_91_days_rests_until_its_next_event(world: UnitOfWork):
    stock(world, "WIDGET", "WEST", 10)  # Tuesday 3 March, 09:00; then nothing until 20 June
    capture_order(
        world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 1)], now=day(109, 10)
    )
    days = build(world.engine, day(0), day(119))["day"].dt.date
    first_rest, back = (day(0) + timedelta(days=92)).date(), day(110).date()
    assert days.min() == day(1).date()
    assert days.max() == day(118).date()
    assert first_rest not in set(days)  # 2 June was the 91st day after the count: the last row
    assert (day(0) + timedelta(days=91)).date() in set(days)
    assert len(days) == 91 + (118 - 110 + 1)
    assert back in set(days)


def test_a_sku_without_a_price_list_is_at_its_list_price_for_every_tier(world: UnitOfWork):
    stock(world, "GADGET", "EAST", 10)
    frame = build(world.engine, day(0), day(3))
    assert frame["sku"].astype(str).unique().tolist() == ["GADGET"]
    assert frame["list_price"].tolist() == [40.0, 40.0]  # the product's list price
    assert frame["promo_discount"].tolist() == [0.0, 0.0]
    assert frame["price_level_91d"].isna().all()  # nothing paid yet


def test_a_promotion_is_a_cut_raised_again_by_a_later_entry_not_a_lasting_cut() -> None:
    price_list = pd.DataFrame(
        {
            "tier": ["gold"] * 4 + ["bronze"] * 2,
            "sku": ["A"] * 6,
            "min_quantity": [1] * 6,
            "unit_price": [10.0, 8.0, 10.0, 9.0, 10.0, 9.0],
            "valid_from": [0, 10, 20, 30, 0, 10],
        }
    )
    # gold: 10 -> 8 (raised again at 20: a promotion) -> 10 -> 9 (lasting); bronze: lasting cut
    assert promotion_cuts(price_list).tolist() == pytest.approx([0, 0.2, 0, 0, 0, 0])


# --- the simulated world -------------------------------------------------------------------------


def feature_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Keys and features; categories reduced to the values present (a frame over a longer window
    knows SKUs first seen after the cut)."""
    chosen = frame[[key.name for key in DEMAND.keys] + DEMAND.feature_names].copy()
    for name in chosen.columns:
        if isinstance(chosen[name].dtype, pd.CategoricalDtype):
            chosen[name] = chosen[name].cat.remove_unused_categories()
    return chosen


def test_appending_thirty_days_of_history_changes_no_row_before_the_cut(
    simulated_history: SimulatedHistory,
):
    world = simulated_history
    at_the_cut = build(world.snapshot_url, world.start, world.cut)
    later = build(world.url, world.start, world.cut)
    whole = build(world.url, world.start, world.end)
    assert len(at_the_cut) > 300
    assert_identical_to_the_bit(feature_columns(at_the_cut), feature_columns(later))
    before_cut = whole.loc[whole["day"] < world.cut].reset_index(drop=True)
    assert_identical_to_the_bit(feature_columns(at_the_cut), feature_columns(before_cut))
    # The future did arrive: the snapshot's last day was not over, it is now.
    assert at_the_cut["label_demand_units"].isna().sum() > later["label_demand_units"].isna().sum()


def test_the_simulated_frame_passes_its_checks_and_keeps_the_zero_days(simulated_history):
    world = simulated_history
    frame = build(world.url, world.start, world.end)
    assert frame_problems(frame, DEMAND) == []
    labelled = frame["label_demand_units"].dropna()
    assert 0.2 < (labelled == 0).mean() < 0.95  # zero days are rows, not gaps
    assert (frame["demand_lag_1d"] == 0).any()
    assert set(frame["intermittency_class"].cat.categories) <= {
        "none",
        "smooth",
        "erratic",
        "intermittent",
        "lumpy",
    }
    # Each pair has one row per day from its first row to the window's end.
    per_pair = frame.groupby(["sku", "location_id"], observed=True)["day"]
    span_days = (per_pair.max() - per_pair.min()).dt.days + 1
    assert (span_days == per_pair.count()).all()
    assert (per_pair.max() == world.end - timedelta(days=1)).all()


def test_labels_equal_the_units_entered_that_day_for_customers_at_home_there(simulated_history):
    """Independently of the pipeline: a split moves units between the lines of one family, which
    all carry the family's entry moment, so the current quantities add up to what was asked."""
    world = simulated_history
    frame = build(world.url, world.start, world.end)
    history = load_history(world.url)
    lines = history.lines.merge(history.orders, on="order_id").merge(
        history.customers, on="customer_id"
    )
    asked = (
        lines.assign(
            sku=lines["sku"].astype(str),
            location_id=lines["home_location_id"].astype(str),
            day=pd.to_datetime(lines["entered_at"] // 86_400_000_000 * 86_400_000_000, unit="us")
            .dt.tz_localize(UTC)
            .dt.as_unit("us"),
        )
        .groupby(["sku", "location_id", "day"])["quantity"]
        .sum()
    )
    labelled = frame.loc[frame["label_demand_units"].notna()]
    keys = pd.MultiIndex.from_arrays(
        [labelled["sku"].astype(str), labelled["location_id"].astype(str), labelled["day"]]
    )
    expected = asked.reindex(keys).fillna(0).to_numpy()
    assert (labelled["label_demand_units"].to_numpy() == expected).all()
    assert expected.sum() > 0.9 * asked.loc[asked.index.get_level_values("day") < world.end].sum()


def test_labels_and_rolling_means_follow_the_truths_expected_units(simulated_history):
    """The simulator draws each SKU x location's demand from the customers living there: the
    labels at the home location add up to its expected units, and the past means track them."""
    world = simulated_history
    frame = build(world.url, world.start, world.end)
    truth = pd.read_parquet(world.truth_dir / DEMAND_TRUTH)
    truth["day"] = pd.to_datetime(truth["day"]).dt.tz_localize(UTC).dt.as_unit("us")
    keyed = frame.assign(sku=frame["sku"].astype(str), location_id=frame["location_id"].astype(str))
    joined = keyed.merge(truth, on=["day", "sku", "location_id"], how="inner")
    assert len(joined) == len(frame)  # every row is a place and day the simulator drew demand for
    known = joined.dropna(subset=["label_demand_units"])
    ratio = known["label_demand_units"].sum() / known["expected_units"].sum()
    assert 0.85 < ratio < 1.15
    assert known["demand_mean_28d"].corr(known["expected_units"]) > 0.4


def test_build_feature_set_writes_the_demand_frame(simulated_history, tmp_path: Path):
    world = simulated_history
    start, end = world.start.date(), (world.start + timedelta(days=20)).date()
    result = build_feature_set("demand", world.url, start, end, tmp_path, CALENDAR)
    manifest = read_manifest(result.manifest_path)
    assert manifest["rows"] == result.rows > 0
    assert [f["name"] for f in manifest["features"]] == DEMAND.feature_names
    assert pd.read_parquet(result.frame_path)["day"].min() >= datetime.combine(
        start, datetime.min.time(), tzinfo=UTC
    )
