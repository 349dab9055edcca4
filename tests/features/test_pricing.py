"""The pricing frame: values checked by hand on a tiny world built through the ERP services, the
leakage guard and the frame's checks on a simulated world, and the truth labels joined by line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path

import pandas as pd
import pytest

from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.policy import load_policy
from erp_core.services.orders import CapturedOrder, LineRequest, capture_order
from features.build import build_feature_set
from features.history import load_history
from features.pricing import pricing_frame, row_median
from features.registry import PRICING
from features.schema import frame_problems
from features.truth_labels import load_pricing_truth
from tests.conftest import ADMIN, SALES, T0, stock
from tests.features.conftest import SimulatedHistory
from tests.features.test_late_shipment import assert_identical_to_the_bit

CALENDAR = load_policy().calendar
TUESDAY = T0.replace(hour=0)


def day(n: int, hour: int = 10) -> datetime:
    return TUESDAY + timedelta(days=n, hours=hour)


def build(url_or_engine, start: datetime, end: datetime) -> pd.DataFrame:
    return pricing_frame(load_history(url_or_engine), start, end, CALENDAR)


# --- a world small enough to check by hand ------------------------------------------------------


@dataclass(frozen=True)
class HandPricing:
    uow: UnitOfWork
    first: CapturedOrder  # Wed: Gold Co 4 WIDGET at the list's 9.00
    haggled: CapturedOrder  # Thu: Gold Co 10 at 8.50 typed
    typo: CapturedOrder  # Fri: Gold Co 4 at 90.00 typed (x10)
    bulk: CapturedOrder  # Mon: Gold Co 100 at the break's 8.00
    bronze: CapturedOrder  # Mon 11:00: Bronze Co 2
    small: CapturedOrder  # Mon 11:00, the same instant: Small Co (bronze too) 1
    deep: CapturedOrder  # Tue: Gold Co 1 at 7.00 typed by an admin (22 % off, no approval)

    @cached_property
    def built(self) -> pd.DataFrame:
        return build(self.uow.engine, TUESDAY, TUESDAY + timedelta(days=10)).set_index("line_id")

    def row(self, order: CapturedOrder) -> pd.Series:
        return self.built.loc[order.lines[0].line_id]


@pytest.fixture
def hand_pricing(world: UnitOfWork) -> HandPricing:
    stock(world, "WIDGET", "WEST", 500)

    def capture(customer: str, when: datetime, units: int, price: str | None = None, actor=SALES):
        unit_price = None if price is None else Decimal(price)
        line = LineRequest("WIDGET", units, unit_price)
        return capture_order(world, actor, customer_id=customer, lines=[line], now=when)

    return HandPricing(
        world,
        first=capture("C-GOLD", day(1), 4),
        haggled=capture("C-GOLD", day(2), 10, "8.50"),
        typo=capture("C-GOLD", day(3), 4, "90.00"),
        bulk=capture("C-GOLD", day(6), 100),
        bronze=capture("C-BRONZE", day(6, 11), 2),
        small=capture("C-SMALL", day(6, 11), 1),
        deep=capture("C-GOLD", day(7), 1, "7.00", actor=ADMIN),
    )


def test_a_line_priced_ten_times_the_usual_shows_it_against_its_recent_prices(hand_pricing):
    row = hand_pricing.row(hand_pricing.typo)
    assert row["customer_last_price"] == 8.5
    assert row["customer_median_price_5"] == pytest.approx((9.0 + 8.5) / 2)
    assert row["customer_price_count"] == 2
    assert row["price_to_customer_median"] == pytest.approx(90 / 8.75)
    assert row["tier_median_price_90d"] == pytest.approx(8.75)  # gold: Gold Co alone
    assert row["discount_vs_tier"] == pytest.approx(1 - 90 / 9)
    assert row["price_cost_ratio"] == pytest.approx(90 / 5)
    assert row["price_to_list"] == pytest.approx(90 / 10)
    assert row["price_overridden"]
    assert row["customer_usual_units"] == pytest.approx((4 + 10) / 2)
    assert row["units_to_customer_usual"] == pytest.approx(4 / 7)


def test_the_first_line_has_no_history_and_its_own_price_never_feeds_it(hand_pricing):
    row = hand_pricing.row(hand_pricing.first)
    assert row["customer_price_count"] == 0
    assert row["tier_price_count_90d"] == 0
    for name in ("customer_last_price", "customer_median_price_5", "tier_median_price_90d"):
        assert math.isnan(row[name]), name
    assert (row["list_price"], row["tier_price"], row["unit_price"]) == (10.0, 9.0, 9.0)
    assert row["discount_vs_tier"] == 0
    assert not row["price_overridden"]
    assert not row["discount_beyond_threshold"]


def test_quantity_breaks_discounts_and_the_approval_threshold(hand_pricing):
    bulk = hand_pricing.row(hand_pricing.bulk)
    assert (bulk["tier_price"], bulk["quantity_break_price"], bulk["unit_price"]) == (9, 8, 8)
    assert bulk["quantity_break_discount"] == pytest.approx(1 - 8 / 9)
    assert bulk["customer_median_price_5"] == pytest.approx(9.0)  # 9, 8.5, 90
    haggled = hand_pricing.row(hand_pricing.haggled)
    assert haggled["discount_vs_tier"] == pytest.approx(1 - 8.5 / 9)
    assert not haggled["discount_beyond_threshold"]  # 5.6 %, under the policy's 10 %
    deep = hand_pricing.row(hand_pricing.deep)
    assert deep["discount_vs_tier"] == pytest.approx(1 - 7 / 9)
    assert deep["discount_beyond_threshold"]  # no approval asked (an admin), still beyond
    assert deep["customer_median_price_5"] == pytest.approx((8.5 + 9) / 2)  # 9, 8.5, 90, 8
    assert deep["customer_price_count"] == 4


def test_lines_entered_in_the_same_instant_do_not_see_each_other(hand_pricing):
    bronze, small = hand_pricing.row(hand_pricing.bronze), hand_pricing.row(hand_pricing.small)
    for row in (bronze, small):
        assert row["tier_price_count_90d"] == 0  # both bronze, both at Monday 11:00
        assert math.isnan(row["tier_median_price_90d"])
    assert (bronze["customer_tier"], bronze["channel"]) == ("bronze", "e_commerce")
    assert small["product_category"] == "hardware"


def test_row_median_ignores_the_missing_and_leaves_empty_rows_null() -> None:
    nan = float("nan")
    found = row_median(pd.DataFrame([[3, 1, 2], [4, 1, nan], [nan, nan, nan]]).to_numpy(float))
    assert found[:2].tolist() == [2.0, 2.5]
    assert math.isnan(found[2])


# --- the simulated world -------------------------------------------------------------------------


def feature_columns(frame: pd.DataFrame) -> pd.DataFrame:
    chosen = frame[[key.name for key in PRICING.keys] + PRICING.feature_names].copy()
    for name in chosen.columns:
        if isinstance(chosen[name].dtype, pd.CategoricalDtype):
            chosen[name] = chosen[name].cat.remove_unused_categories()
    return chosen


def test_appending_thirty_days_of_history_changes_no_line_entered_before(
    simulated_history: SimulatedHistory,
):
    world = simulated_history
    at_the_cut = build(world.snapshot_url, world.start, world.cut)
    later = build(world.url, world.start, world.cut)
    whole = build(world.url, world.start, world.end)
    assert len(at_the_cut) > 200
    assert_identical_to_the_bit(feature_columns(at_the_cut), feature_columns(later))
    before_cut = whole.loc[whole["entered_at"] < world.cut].reset_index(drop=True)
    assert_identical_to_the_bit(feature_columns(at_the_cut), feature_columns(before_cut))


def test_the_simulated_frame_passes_its_checks_and_joins_the_truth_by_line(simulated_history):
    world = simulated_history
    frame = build(world.url, world.start, world.end)
    assert frame_problems(frame, PRICING) == []
    truth = load_pricing_truth(world.url)
    assert list(truth.columns) == ["line_id", "is_anomaly", "anomaly_type"]
    joined = frame.merge(truth, on="line_id", how="left", validate="one_to_one")
    assert joined["is_anomaly"].notna().all()  # every priced line has its truth
    normal = joined.loc[~joined["is_anomaly"].astype(bool)]
    assert normal["price_to_tier_median"].median() == pytest.approx(1.0, abs=0.02)
    tenfold = joined.loc[joined["anomaly_type"] == "price_x10", "price_to_tier_median"].dropna()
    assert tenfold.between(7, 13).all()


def test_the_truth_of_a_database_never_simulated_is_refused(sqlite_world: UnitOfWork):
    with pytest.raises(InvalidValue) as refused:
        load_pricing_truth(sqlite_world.engine)
    assert refused.value.field == "database_url"


def test_build_feature_set_writes_the_pricing_frame(simulated_history, tmp_path: Path):
    world = simulated_history
    start, end = world.start.date(), world.cut.date()
    result = build_feature_set("pricing", world.url, start, end, tmp_path, CALENDAR)
    written = pd.read_parquet(result.frame_path)
    assert len(written) == result.rows > 200
    assert list(written.columns) == [column.name for column in PRICING.columns]
