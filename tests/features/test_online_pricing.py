"""The online pricing path: a draft order's pricing features equal the offline frame's for the
same moment.

Parity is checked on the simulated world for every priced line (a thousand or so): the online
path, asked "as of" each order's entry from the database as it is now, returns the offline
frame's values exactly (the same arithmetic on the same numbers: floats to the bit, nulls where
offline has nulls). Then by hand, on the service-built world of test_pricing, for drafts that
were never captured: the first line of a customer, lines of the same instant, a line captured
after the draft, a refresh, a tier change and wrong input.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from erp_core.db.engine import make_engine
from erp_core.domain.errors import DomainError
from erp_core.policy import load_policy
from erp_core.services.master_data import load_master_data
from erp_core.services.orders import LineRequest, capture_order
from features.history import load_history
from features.late_shipment import entry_rows, to_micros
from features.online import DraftLine, DraftOrder, drafts_from_entry_rows
from features.online_pricing import OnlinePricing, PricedDraftLine
from features.pricing import EVERY_MOMENT, priced_lines, pricing_frame
from features.registry import PRICING
from tests.conftest import ADMIN, SALES, small_world
from tests.features import test_pricing as hand
from tests.features.conftest import SimulatedHistory
from tests.features.test_pricing import HandPricing, day

hand_pricing = hand.hand_pricing
"""The service-built world whose offline pricing values test_pricing checks by hand."""
CALENDAR = load_policy().calendar


def priced_drafts_as_of_entry(source: Engine | str, start: datetime, end: datetime):
    """Every order captured in ``[start, end)`` as the draft serving would have scored: the
    lines as captured, each saying whether its price was typed (its first price decision)."""
    history = load_history(source)
    sources = history.first_prices.set_index("line_id")["price_source"]
    for draft in drafts_from_entry_rows(entry_rows(history, to_micros(start), to_micros(end))):
        lines = tuple(
            PricedDraftLine(**asdict(line), price_overridden=sources[line.line_no] == "override")
            for line in draft.lines
        )
        yield replace(draft, lines=lines)


def online_as_of_entry(
    online: OnlinePricing, source: Engine | str, start: datetime, end: datetime
) -> pd.DataFrame:
    """The online features of every order captured in ``[start, end)``, one order at a time."""
    return pd.concat(
        [online.features(draft) for draft in priced_drafts_as_of_entry(source, start, end)]
    )


def assert_same_values(offline: pd.DataFrame, online: pd.DataFrame) -> None:
    """Offline (indexed by line_id) against online, column by column: equal values, nulls where
    offline has nulls, nothing rounded."""
    assert sorted(online.index) == sorted(offline.index)
    offline = offline.loc[online.index]
    for spec in PRICING.features:
        expected = offline[spec.name].astype(object).to_numpy()
        found = online[spec.name].astype(object).to_numpy()
        null_expected, null_found = pd.isna(expected), pd.isna(found)
        assert (null_expected == null_found).all(), (
            spec.name,
            online.index[null_expected != null_found][:5].tolist(),
        )
        mismatched = (expected != found) & ~null_expected
        assert not mismatched.any(), (spec.name, online.index[mismatched][:5].tolist())


def offline_frame(source: Engine | str, start: datetime, end: datetime) -> pd.DataFrame:
    return pricing_frame(load_history(source), start, end, CALENDAR).set_index("line_id")


# --- the simulated world --------------------------------------------------------------------


def test_online_as_of_entry_equals_the_offline_pricing_frame_on_a_simulated_world(
    simulated_history: SimulatedHistory,
):
    world = simulated_history
    offline = offline_frame(world.url, world.start, world.end)
    online = OnlinePricing.from_database(world.url, CALENDAR)
    found = online_as_of_entry(online, world.url, world.start, world.end)
    assert len(found) == len(offline) > 500
    assert_same_values(offline, found)
    # The comparison covered the boundaries, not only defaults: first lines of a customer's SKU,
    # lines with a full history, typed prices, quantity breaks, a tier window with lines.
    assert (found["customer_price_count"] == 0).any()
    assert (found["customer_price_count"] > 5).any()
    assert found["price_overridden"].any() and (found["quantity_break_discount"] > 0).any()
    assert (found["tier_price_count_90d"] > 11).any()
    # ... and lines entered in the same instant as another line of the same customer and SKU
    # (a line split at capture), which must not see each other.
    paid = priced_lines(load_history(world.url), *EVERY_MOMENT)
    assert paid.duplicated(["customer_id", "sku", "entered_at"], keep=False).any()


def test_an_index_of_the_database_as_it_stood_gives_the_rows_entered_before(
    simulated_history: SimulatedHistory,
):
    """Online from the snapshot (30 days less history) and offline from the whole world agree
    on the lines entered before the cut: neither looks past ``t``."""
    world = simulated_history
    offline = offline_frame(world.url, world.start, world.cut)
    online = OnlinePricing.from_database(world.snapshot_url, CALENDAR)
    found = online_as_of_entry(online, world.snapshot_url, world.start, world.cut)
    assert len(found) > 200
    assert_same_values(offline, found)


def test_refreshing_an_index_of_the_snapshot_with_the_next_30_days_equals_a_fresh_index(
    simulated_history: SimulatedHistory,
):
    """The snapshot is the same world's database 30 days earlier, so its last line id is where
    the whole world's tail starts: a refresh must leave the index as a full build has it."""
    world = simulated_history
    online = OnlinePricing.from_database(world.snapshot_url, CALENDAR)
    before = len(online.paid)
    online.engine = make_engine(world.url)
    online.refresh()
    fresh = OnlinePricing.from_database(world.url, CALENDAR)
    assert online.last_line_id == fresh.last_line_id
    assert len(online.paid) > before
    pd.testing.assert_frame_equal(online.paid, fresh.paid)
    for refreshed, built in (
        (online.by_customer, fresh.by_customer),
        (online.by_tier, fresh.by_tier),
    ):
        assert refreshed.slices == built.slices
        np.testing.assert_array_equal(refreshed.times, built.times)
        np.testing.assert_array_equal(refreshed.prices, built.prices)
    offline = offline_frame(world.url, world.start, world.end)
    assert_same_values(offline, online_as_of_entry(online, world.url, world.start, world.end))


# --- hand-checked drafts on the service-built world -----------------------------------------


def gold(when: datetime, *lines: DraftLine, customer: str = "C-GOLD") -> DraftOrder:
    return DraftOrder(customer, "key_account", "west", when, tuple(lines))


def widgets(units: int, price: float, line_no: int = 1, **typed: bool) -> PricedDraftLine:
    return PricedDraftLine(line_no, "WIDGET", units, price, "allocated", "WEST", **typed)


def test_the_same_draft_lines_as_captured_match_the_offline_rows(hand_pricing: HandPricing):
    online = OnlinePricing.from_database(hand_pricing.uow.engine, CALENDAR)
    start, end = day(0, 0), day(10, 0)
    found = online_as_of_entry(online, hand_pricing.uow.engine, start, end)
    assert len(found) == 7
    assert_same_values(hand_pricing.built, found)


def test_a_new_draft_sees_every_earlier_line_and_the_quantity_break(hand_pricing: HandPricing):
    """Wednesday after the last capture, Gold Co asks 100 at the price list: the 100-unit break
    (8.00) against the one-unit tier price 9.00, against its five earlier lines."""
    online = OnlinePricing.from_database(hand_pricing.uow.engine, CALENDAR)
    row = online.features(gold(day(8), widgets(100, 8.0))).iloc[0]
    assert (row["list_price"], row["tier_price"], row["quantity_break_price"]) == (10, 9, 8)
    assert row["quantity_break_discount"] == pytest.approx(1 - 8 / 9)
    assert not row["price_overridden"] and row["discount_vs_tier"] == 0
    assert row["customer_last_price"] == 7.0  # the admin's deep discount, the day before
    assert row["customer_price_count"] == 5
    assert row["customer_median_price_5"] == 8.5  # 9, 8.5, 90, 8, 7
    assert row["customer_usual_units"] == 4  # 4, 10, 4, 100, 1
    assert row["units_to_customer_usual"] == 25
    assert row["tier_price_count_90d"] == 5 and row["tier_median_price_90d"] == 8.5
    assert (row["unit_cost"], row["price_cost_ratio"]) == (5.0, 8 / 5)
    assert (row["channel"], row["customer_tier"], row["product_category"]) == (
        "key_account",
        "gold",
        "hardware",
    )


def test_the_first_draft_of_a_customer_has_no_history(hand_pricing: HandPricing):
    """East Co (silver) never ordered: no price of its own nor of its tier, its tier price in
    force; a price 20 % under it is beyond the 10 % threshold."""
    online = OnlinePricing.from_database(hand_pricing.uow.engine, CALENDAR)
    row = online.features(gold(day(8), widgets(3, 7.6), customer="C-EAST")).iloc[0]
    assert row["customer_price_count"] == 0 and row["tier_price_count_90d"] == 0
    for name in ("customer_last_price", "customer_median_price_5", "tier_median_price_90d"):
        assert math.isnan(row[name]), name
    assert math.isnan(row["price_to_customer_median"])
    assert row["tier_price"] == 9.5 and row["discount_vs_tier"] == pytest.approx(0.2)
    assert row["discount_beyond_threshold"] and row["price_overridden"]


def test_an_index_of_a_database_with_no_orders_yet_scores_a_first_draft(world) -> None:
    """A fresh install (master data, no order captured): the index builds, and the first draft
    has no history of its own, its tier or its customer."""
    online = OnlinePricing.from_database(world.engine, CALENDAR)
    row = online.features(gold(day(1), widgets(3, 9.0))).iloc[0]
    assert row["customer_price_count"] == 0 and row["tier_price_count_90d"] == 0
    assert math.isnan(row["customer_last_price"]) and row["tier_price"] == 9.0


def test_lines_of_the_drafts_instant_do_not_count_and_a_moment_later_they_do(
    hand_pricing: HandPricing,
):
    """Bronze Co and Small Co (both bronze) were captured at Monday 11:00: a bronze draft at that
    instant sees neither, one a microsecond later sees both."""
    online = OnlinePricing.from_database(hand_pricing.uow.engine, CALENDAR)
    instant = day(6, 11)
    at_it = online.features(gold(instant, widgets(1, 10.0), customer="C-SMALL")).iloc[0]
    later = instant + timedelta(microseconds=1)
    after = online.features(gold(later, widgets(1, 10.0), customer="C-SMALL")).iloc[0]
    assert at_it["tier_price_count_90d"] == 0 and math.isnan(at_it["tier_median_price_90d"])
    assert at_it["customer_price_count"] == 0
    assert after["tier_price_count_90d"] == 2 and after["customer_price_count"] == 1


def test_two_lines_of_one_draft_do_not_see_each_other(hand_pricing: HandPricing):
    online = OnlinePricing.from_database(hand_pricing.uow.engine, CALENDAR)
    frame = online.features(gold(day(8), widgets(1, 9.0), widgets(1, 50.0, line_no=2)))
    assert frame.index.tolist() == [1, 2]
    assert frame["customer_price_count"].tolist() == [5, 5]
    assert frame["customer_median_price_5"].tolist() == [8.5, 8.5]


def test_a_line_captured_after_the_drafts_moment_changes_nothing_and_a_refresh_counts_it(
    hand_pricing: HandPricing,
):
    """Built, then Gold Co orders again on Thursday: a draft of Wednesday keeps its values after
    the refresh, a draft of Friday counts the new line only after it."""
    uow = hand_pricing.uow
    online = OnlinePricing.from_database(uow.engine, CALENDAR)
    wednesday, friday = gold(day(8), widgets(2, 9.0)), gold(day(10), widgets(2, 9.0))
    before = online.features(wednesday), online.features(friday)
    capture_order(uow, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 7)], now=day(9))
    pd.testing.assert_frame_equal(online.features(friday), before[1])
    online.refresh()
    pd.testing.assert_frame_equal(online.features(wednesday), before[0])
    counted = online.features(friday).iloc[0]
    assert counted["customer_price_count"] == 6 and counted["customer_last_price"] == 9.0
    fresh = OnlinePricing.from_database(uow.engine, CALENDAR)
    pd.testing.assert_frame_equal(fresh.features(friday), online.features(friday))


def test_a_refresh_after_a_tier_change_counts_the_customers_lines_in_its_new_tier(
    hand_pricing: HandPricing,
):
    """Small Co moves to gold (master data, as it is now): its Monday line joins the gold tier's
    history, as a fresh index and the offline frame count it."""
    uow = hand_pricing.uow
    online = OnlinePricing.from_database(uow.engine, CALENDAR)
    master = small_world()
    customers = [
        replace(spec, tier="gold") if spec.id == "C-SMALL" else spec for spec in master.customers
    ]
    load_master_data(uow, ADMIN, replace(master, customers=customers), day(8, 8))
    online.refresh()
    draft = gold(day(8), widgets(2, 9.0))
    assert online.features(draft).iloc[0]["tier_price_count_90d"] == 6
    fresh = OnlinePricing.from_database(uow.engine, CALENDAR)
    pd.testing.assert_frame_equal(online.features(draft), fresh.features(draft))
    offline = offline_frame(uow.engine, day(0, 0), day(10, 0))
    assert offline.loc[hand_pricing.deep.lines[0].line_id, "tier_price_count_90d"] == 5


def test_a_plain_draft_line_reads_as_typed_only_when_its_price_is_not_the_lists(
    hand_pricing: HandPricing,
):
    """A DraftLine cannot say a price was typed; a PricedDraftLine can, even at the list's own
    price (capture's override source)."""
    online = OnlinePricing.from_database(hand_pricing.uow.engine, CALENDAR)
    plain = DraftLine(1, "WIDGET", 4, 9.0, "allocated", "WEST")
    haggled = replace(plain, line_no=2, unit_price=8.5)
    typed_at_list = widgets(4, 9.0, line_no=3, price_overridden=True)
    frame = online.features(gold(day(8), plain, haggled, typed_at_list))
    assert frame["price_overridden"].tolist() == [False, True, True]


def test_the_frame_has_the_registrys_columns_in_order_indexed_by_line_number(
    hand_pricing: HandPricing,
):
    online = OnlinePricing.from_database(hand_pricing.uow.session, CALENDAR)
    draft = gold(day(8), widgets(1, 9.0, line_no=4), widgets(2, 9.0, line_no=7))
    frame = online.features(draft)
    assert list(frame.columns) == PRICING.feature_names
    assert frame.index.name == "line_no" and frame.index.tolist() == [4, 7]
    values = online.feature_values(draft)
    assert list(values) == PRICING.feature_names
    assert all(len(column) == 2 for column in values.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"customer_id": "C-NOBODY"}, "unknown customer: customer_id='C-NOBODY'"),
        ({"sku": "SPROCKET"}, "unknown product: sku='SPROCKET'"),
        ({"quantity": 0}, "invalid quantity=0"),
        ({"unit_price": 0.0}, "invalid unit_price=0.0"),
        ({"unit_price": float("nan")}, "invalid unit_price=nan"),
        ({"entered_at": datetime(2026, 3, 11, 10)}, "invalid entered_at="),
        ({"lines": ()}, "invalid lines=[]"),
    ],
)
def test_a_draft_with_an_unknown_or_bad_value_is_refused_naming_it(
    hand_pricing: HandPricing, change: dict, message: str
):
    online = OnlinePricing.from_database(hand_pricing.uow.engine, CALENDAR)
    order_fields = {"customer_id", "entered_at", "lines"}
    line = replace(widgets(1, 9.0), **{k: v for k, v in change.items() if k not in order_fields})
    draft = replace(gold(day(8), line), **{k: v for k, v in change.items() if k in order_fields})
    with pytest.raises(DomainError, match=re.escape(message)) as refused:
        online.features(draft)
    assert refused.value.field == next(iter(change))


def test_an_index_of_loaded_history_refuses_to_refresh(hand_pricing: HandPricing):
    online = OnlinePricing(load_history(hand_pricing.uow.engine), CALENDAR)
    assert online.features(gold(datetime(2026, 3, 11, 10, tzinfo=UTC), widgets(1, 9.0))).shape[0]
    with pytest.raises(ValueError, match="no database to refresh"):
        online.refresh()


def test_of_two_lines_entered_in_one_instant_the_later_line_is_the_last_price(
    hand_pricing: HandPricing,
):
    """One order with WIDGET twice (8.80 then 9.20), then one more at noon: the noon line's last
    price is the second line's, offline (as-of search, a tie ordered by line id) and online."""
    uow = hand_pricing.uow
    twice = [LineRequest("WIDGET", 1, Decimal("8.80")), LineRequest("WIDGET", 1, Decimal("9.20"))]
    capture_order(uow, SALES, customer_id="C-GOLD", lines=twice, now=day(8, 9))
    noon = capture_order(
        uow, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 1)], now=day(8, 12)
    )
    offline = offline_frame(uow.engine, day(0, 0), day(10, 0))
    probe = offline.loc[noon.lines[0].line_id]
    assert probe["customer_last_price"] == 9.2
    assert probe["customer_median_price_5"] == 8.8  # 90, 8, 7, 8.80, 9.20
    online = OnlinePricing.from_database(uow.engine, CALENDAR)
    found = online_as_of_entry(online, uow.engine, day(0, 0), day(10, 0))
    assert len(found) == 10
    assert_same_values(offline, found)
