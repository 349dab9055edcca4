"""The late-shipment frame: values checked by hand on a tiny world built through the ERP services,
the leakage guard on a simulated world, labels that agree with the simulator's truth, and
features that carry the signal the truth says is there."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from erp_core.db.models import PurchaseOrderLine
from erp_core.db.uow import UnitOfWork
from erp_core.policy import load_policy
from erp_core.services.alerts import announce_service_alert
from erp_core.services.fulfilment import deliver, pack, pick, ship
from erp_core.services.orders import CapturedOrder, LineRequest, capture_order
from erp_core.services.purchasing import (
    PurchaseLineRequest,
    place_purchase_order,
    receive_purchase_order_line,
)
from erp_core.simulate import hazards
from erp_core.simulate.truth import LINES
from features.history import load_history
from features.late_shipment import build_late_shipment_frame
from features.registry import LATE_SHIPMENT
from tests.conftest import LOGISTICS, PLANNER, SALES, T0, stock
from tests.features.conftest import SimulatedHistory

CALENDAR = load_policy().calendar
TUESDAY = T0.replace(hour=0)  # 2026-03-03
WEDNESDAY = TUESDAY + timedelta(days=1)
THURSDAY = TUESDAY + timedelta(days=2)
ENTRY = T0 + timedelta(minutes=1)
"""An entry after the opening count: a count in the same instant would not be known yet."""


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute)


# --- a world small enough to check by hand ------------------------------------------------------


@dataclass(frozen=True)
class HandWorld:
    """Who ordered what, when, in the hand-made history below."""

    uow: UnitOfWork
    a: CapturedOrder  # Tue 10:00 WIDGET x10 at WEST
    b: CapturedOrder  # Tue 10:30 WIDGET x5 + GADGET x2 at WEST
    e: CapturedOrder  # Tue 10:45 WIDGET x3 at EAST
    c: CapturedOrder  # Tue 11:00 WIDGET x20 at WEST, never picked
    d: CapturedOrder  # Thu 11:00 WIDGET x1 at WEST
    f: CapturedOrder  # Thu 11:30 GADGET x50 at WEST, no split: backordered

    def frame(self) -> pd.DataFrame:
        frame = build_late_shipment_frame(
            self.uow.engine, TUESDAY, TUESDAY + timedelta(days=7), CALENDAR
        )
        return frame.set_index("line_id")

    def line(self, order: CapturedOrder, number: int = 1) -> int:
        return next(line.line_id for line in order.lines if line.line_no == number)


def order(customer: str, when: datetime, *lines: LineRequest, allow_split: bool = True) -> dict:
    return {"customer_id": customer, "lines": list(lines), "now": when, "allow_split": allow_split}


def fulfil(
    uow: UnitOfWork,
    captured: CapturedOrder,
    picked: datetime,
    shipped: datetime,
    delivered: datetime,
) -> None:
    picks = {line.line_id: line.quantity for line in captured.lines}
    shipment = pick(uow, LOGISTICS, order_id=captured.order_id, picks=picks, now=picked).shipment_id
    pack(uow, LOGISTICS, shipment_id=shipment, occurred_at=picked, now=picked)
    ship(uow, LOGISTICS, shipment_id=shipment, occurred_at=shipped, now=shipped)
    deliver(uow, LOGISTICS, shipment_id=shipment, occurred_at=delivered, now=delivered)


@pytest.fixture
def hand_world(world: UnitOfWork) -> HandWorld:
    """Tuesday: stock is counted, four orders arrive; A and E ship that day, B the next. Thursday
    morning B and E are delivered (E late), a late receipt of GADGET arrives, then D and F are
    entered. Capacity is 2 picks a day at each location, transit 1 business day on the standard
    lanes."""
    stock(world, "WIDGET", "WEST", 100)
    stock(world, "WIDGET", "EAST", 50)
    stock(world, "GADGET", "WEST", 10)
    po = place_purchase_order(
        world,
        PLANNER,
        supplier_id="SUP1",
        location_id="WEST",
        lines=[PurchaseLineRequest("GADGET", 5, expected_date=WEDNESDAY.date())],
        now=T0,
    )

    def capture(**request) -> CapturedOrder:
        return capture_order(world, SALES, **request)

    a = capture(**order("C-GOLD", at(TUESDAY, 10), LineRequest("WIDGET", 10)))
    b = capture(
        **order("C-BRONZE", at(TUESDAY, 10, 30), LineRequest("WIDGET", 5), LineRequest("GADGET", 2))
    )
    e = capture(**order("C-EAST", at(TUESDAY, 10, 45), LineRequest("WIDGET", 3)))
    c = capture(**order("C-GOLD", at(TUESDAY, 11), LineRequest("WIDGET", 20)))
    fulfil(world, a, at(TUESDAY, 14), at(TUESDAY, 16), at(WEDNESDAY, 10))
    fulfil(world, e, at(TUESDAY, 14, 10), at(TUESDAY, 16, 10), at(THURSDAY, 10))
    fulfil(world, b, at(WEDNESDAY, 14), at(WEDNESDAY, 16), at(THURSDAY, 8))
    with world:
        po_line = world.session.query(PurchaseOrderLine).filter_by(purchase_order_id=po).one().id
    receive_purchase_order_line(
        world, LOGISTICS, purchase_order_line_id=po_line, quantity=5, now=at(THURSDAY, 8, 30)
    )
    d = capture(**order("C-GOLD", at(THURSDAY, 11), LineRequest("WIDGET", 1)))
    f = capture(
        **order("C-GOLD", at(THURSDAY, 11, 30), LineRequest("GADGET", 50), allow_split=False)
    )
    return HandWorld(world, a, b, e, c, d, f)


def test_stock_cover_is_free_stock_just_before_entry_over_the_ordered_quantity(hand_world):
    frame = hand_world.frame()
    # C at Tue 11:00: 100 counted - 10 (A) - 5 (B) reserved before it; its own 20 not counted.
    assert frame.loc[hand_world.line(hand_world.c), "stock_cover"] == pytest.approx(85 / 20)
    # D at Thu 11:00: A and B shipped (reservation and stock leave together), C still holds 20.
    assert frame.loc[hand_world.line(hand_world.d), "stock_cover"] == pytest.approx(65 / 1)
    # F: 10 counted + 5 received - 2 (B's gadget) = 13 free of the 50 asked for.
    assert frame.loc[hand_world.line(hand_world.f), "stock_cover"] == pytest.approx(13 / 50)


def test_pick_backlog_counts_lines_allocated_and_not_yet_picked_before_entry(hand_world):
    frame = hand_world.frame()
    c, d = hand_world.line(hand_world.c), hand_world.line(hand_world.d)
    assert frame.loc[c, "pick_backlog_lines"] == 3  # A, B's two lines; E is at EAST
    assert frame.loc[c, "pick_backlog_ratio"] == pytest.approx(3 / 2)
    assert frame.loc[d, "pick_backlog_lines"] == 1  # only C is left unpicked
    assert frame.loc[d, "pick_backlog_ratio"] == pytest.approx(1 / 2)


def test_promised_lead_times_count_business_days_from_the_entry_date(hand_world):
    frame = hand_world.frame()
    c, d = hand_world.line(hand_world.c), hand_world.line(hand_world.d)
    # C queues behind 3 picks at 2 a day: ships Wednesday, delivered Thursday.
    assert frame.loc[c, ["promised_ship_lead_bdays", "promised_delivery_lead_bdays"]].tolist() == [
        1,
        2,
    ]
    assert frame.loc[d, ["promised_ship_lead_bdays", "promised_delivery_lead_bdays"]].tolist() == [
        0,
        1,
    ]


def test_location_on_time_ship_rate_is_shrunk_toward_the_global_rate(hand_world):
    frame = hand_world.frame()
    d = hand_world.line(hand_world.d)
    # Shipped before Thu 11:00: WEST A (on time), B1 (a day late), B2 (on time); EAST E (on time).
    global_rate = 3 / 4
    expected = (2 + 20 * global_rate) / (3 + 20)
    assert frame.loc[d, "location_ontime_ship_rate_14d"] == pytest.approx(expected)
    assert frame.loc[d, "location_ontime_ship_rate_56d"] == pytest.approx(expected)
    assert frame.loc[d, "location_shipped_lines_56d"] == 3
    # Nothing had shipped anywhere when C was entered: no rate to shrink toward.
    assert math.isnan(frame.loc[hand_world.line(hand_world.c), "location_ontime_ship_rate_14d"])


def test_lane_rates_and_transit_spread_come_from_deliveries_recorded_before_entry(hand_world):
    frame = hand_world.frame()
    d = hand_world.line(hand_world.d)
    # Delivered before Thu 11:00 over WEST->west: A (on time, 1 day), B1 (late, 1), B2 (on time,
    # 1); over EAST->east: E (late, 2 days). Global on-time 2/4; transits 1, 1, 1, 2.
    assert frame.loc[d, "lane_ontime_delivery_rate_28d"] == pytest.approx((2 + 20 * 0.5) / 23)
    global_variance = np.var([1, 1, 1, 2])
    expected_spread = math.sqrt((0 + 10 * global_variance) / (3 + 10))
    assert frame.loc[d, "lane_transit_spread_28d"] == pytest.approx(expected_spread)
    assert frame.loc[d, "lane_transit_spread_90d"] == pytest.approx(expected_spread)
    assert frame.loc[d, "lane_transit_days"] == 1
    assert not frame.loc[d, "expedite"]


def test_due_rates_count_a_line_still_travelling_after_its_promised_day_as_late(hand_world):
    frame = hand_world.frame()
    d = hand_world.line(hand_world.d)
    # Promised delivery days ended before Thu 11:00 (at midnight Wed/Thu): A (west, delivered
    # Wed: on time), B1 (west, still travelling at midnight, delivered Thu 08:00: late) and E
    # (east, delivered Thu 10:00: late); B2 is due Thursday, C Thursday too. All on TRUCK.
    prior = 1 / 3
    assert frame.loc[d, "region_ontime_due_rate_7d"] == pytest.approx((1 + 20 * prior) / 22)
    assert frame.loc[d, "carrier_ontime_due_rate_14d"] == pytest.approx((1 + 20 * prior) / 23)
    # Nothing was due anywhere when C was entered on Tuesday: no rate to shrink toward.
    c = hand_world.line(hand_world.c)
    assert math.isnan(frame.loc[c, "region_ontime_due_rate_7d"])
    assert math.isnan(frame.loc[c, "carrier_ontime_due_rate_14d"])


def test_supplier_lateness_is_given_to_backordered_lines_only(hand_world):
    frame = hand_world.frame()
    f, d = hand_world.line(hand_world.f), hand_world.line(hand_world.d)
    assert frame.loc[f, "needs_backorder"]
    # One receipt from SUP1, a day late, in the 56 days before F: mean 1 (the global mean is 1).
    assert frame.loc[f, "supplier_days_late_56d"] == pytest.approx(1.0)
    assert math.isnan(frame.loc[d, "supplier_days_late_56d"])
    assert not frame.loc[d, "needs_backorder"]


def test_the_suppliers_late_share_and_where_and_with_whom_the_line_goes(hand_world):
    frame = hand_world.frame()
    f, d, e = (hand_world.line(order) for order in (hand_world.f, hand_world.d, hand_world.e))
    # SUP1's one receipt came a day late: a share of 1, and 1 everywhere too.
    assert frame.loc[f, "supplier_late_share_56d"] == pytest.approx(1.0)
    assert math.isnan(frame.loc[d, "supplier_late_share_56d"])
    assert frame.loc[[d, e], "fulfilling_location"].tolist() == ["WEST", "EAST"]
    assert frame.loc[[d, e], "carrier"].tolist() == ["TRUCK", "TRUCK"]


def test_order_size_and_who_ordered_are_those_at_entry(hand_world):
    frame = hand_world.frame()
    b1, b2 = hand_world.line(hand_world.b, 1), hand_world.line(hand_world.b, 2)
    for line in (b1, b2):
        row = frame.loc[line]
        assert (row["order_lines"], row["order_units"]) == (2, 7)
        assert row["order_weight_kg"] == pytest.approx(5 * 2.0 + 2 * 1.5)
        assert row["order_value"] == pytest.approx(5 * 10.00 + 2 * 40.00)
        assert (row["customer_tier"], row["channel"], row["ship_region"]) == (
            "bronze",
            "e_commerce",
            "west",
        )
    assert frame.loc[b2, "product_category"] == "electronics"
    assert frame.loc[b2, "abc_class"] == "B"
    assert not frame.loc[hand_world.line(hand_world.e), "transfer"]


def test_calendar_features_describe_the_entry_date(hand_world):
    row = hand_world.frame().loc[hand_world.line(hand_world.d)]  # Thursday 5 March 2026
    assert row["entry_weekday"] == 3
    assert row["days_to_month_end"] == 26
    assert row["days_to_quarter_end"] == 26
    assert not row["holiday_within_2bd"]
    assert not row["peak_season"]


MONDAY = TUESDAY - timedelta(days=1)
FRIDAY = TUESDAY + timedelta(days=3)


def announce_hand_alerts(world: HandWorld) -> None:
    """Service alerts around the hand world's entries, recorded on Friday with the moment each
    was announced; each one's comment says which entry it reaches and why."""
    for region, carrier, severity, starts, ends, announced in (
        # west, every carrier: announced Tue 10:15, after A (10:00), before B and C.
        ("west", None, 1, TUESDAY, WEDNESDAY, at(TUESDAY, 10, 15)),
        # west, TRUCK: in force from Tue 11:00, C's very entry (counts), after B (does not).
        ("west", "TRUCK", 3, at(TUESDAY, 11), at(TUESDAY, 12), MONDAY),
        # west, AIR only: D and F travel by TRUCK.
        ("west", "AIR", 2, THURSDAY, FRIDAY, WEDNESDAY),
        # west, every carrier: begins at F's entry (Thu 11:30), after D's (11:00).
        ("west", None, 2, at(THURSDAY, 11, 30), FRIDAY, WEDNESDAY),
        # west: announced at D's very entry (not before it): D does not know it.
        ("west", None, 3, THURSDAY, at(THURSDAY, 11, 20), at(THURSDAY, 11)),
        # east: over at E's entry (Tue 10:45; an alert ends before its ends_at).
        ("east", None, 3, TUESDAY, at(TUESDAY, 10, 45), MONDAY),
    ):
        announce_service_alert(
            world.uow,
            LOGISTICS,
            region=region,
            carrier_id=carrier,
            severity=severity,
            starts_at=starts,
            ends_at=ends,
            announced_at=announced,
            now=FRIDAY,
        )


def test_an_alert_counts_only_in_force_and_announced_before_entry_for_the_lines_carrier(
    hand_world,
):
    announce_hand_alerts(hand_world)
    frame = hand_world.frame()
    w = hand_world
    found = {
        name: frame.loc[w.line(order), "region_alert_severity"]
        for name, order in (("a", w.a), ("b", w.b), ("c", w.c), ("d", w.d), ("e", w.e), ("f", w.f))
    }
    assert found == {"a": 0, "b": 1, "c": 3, "d": 0, "e": 0, "f": 2}
    assert frame["region_alert_severity"].dtype == np.int64


def test_without_alerts_every_line_has_severity_zero(hand_world):
    assert (hand_world.frame()["region_alert_severity"] == 0).all()


def test_labels_judge_each_line_against_its_first_promise(hand_world):
    frame = hand_world.frame()
    w = hand_world
    expected = {
        w.line(w.a): (0.0, 0.0),
        w.line(w.b, 1): (1.0, 1.0),  # promised Tue/Wed, shipped Wed, delivered Thu
        w.line(w.b, 2): (0.0, 0.0),  # queued to Wednesday by its promise: on time
        w.line(w.e): (0.0, 1.0),  # left on time, a day late at the customer
    }
    for line, (late_ship, late_delivery) in expected.items():
        assert frame.loc[line, ["label_late_ship", "label_late_delivery"]].tolist() == [
            late_ship,
            late_delivery,
        ]
    assert frame.loc[w.line(w.c), ["label_late_ship", "label_late_delivery"]].isna().all()


def test_the_transit_label_judges_the_carrier_against_the_lane_not_the_promise(hand_world):
    frame = hand_world.frame()
    w = hand_world
    assert frame.loc[w.line(w.a), "label_late_transit"] == 0.0
    assert frame.loc[w.line(w.e), "label_late_transit"] == 1.0  # left on time, arrived late
    assert np.isnan(frame.loc[w.line(w.c), "label_late_transit"])  # not delivered yet


def test_a_line_split_after_entry_keeps_its_entry_quantity_and_the_remainder_gets_no_row(
    world: UnitOfWork,
):
    stock(world, "WIDGET", "WEST", 10)
    captured = capture_order(
        world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 8)], now=ENTRY
    )
    line = captured.lines[0].line_id
    # Only 5 are found on the shelf the next day: the other 3 become a new backordered line.
    result = pick(
        world, LOGISTICS, order_id=captured.order_id, picks={line: 5}, now=T0 + timedelta(days=1)
    )
    assert result.short_picks
    frame = build_late_shipment_frame(world.engine, TUESDAY, TUESDAY + timedelta(days=7), CALENDAR)
    assert frame["line_id"].tolist() == [line]
    assert frame["line_units"].tolist() == [8]
    assert frame["stock_cover"].tolist() == [10 / 8]
    assert not frame["split"].iloc[0]


def test_a_line_split_at_capture_is_flagged_on_both_parts(world: UnitOfWork):
    stock(world, "WIDGET", "WEST", 4)
    captured = capture_order(
        world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 10)], now=ENTRY
    )
    assert len(captured.lines) == 2
    frame = build_late_shipment_frame(world.engine, TUESDAY, TUESDAY + timedelta(days=7), CALENDAR)
    assert frame["split"].all()
    assert sorted(frame["line_units"]) == [4, 6]
    assert frame["order_lines"].tolist() == [1, 1]
    assert frame["order_units"].tolist() == [10, 10]


# --- the simulated world -------------------------------------------------------------------------


def feature_columns(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [key.name for key in LATE_SHIPMENT.keys]
    return frame[keys + LATE_SHIPMENT.feature_names]


def assert_identical_to_the_bit(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right)
    for name in left.columns:
        a, b = left[name], right[name]
        assert a.dtype == b.dtype, name
        if a.dtype == np.float64:
            same = a.to_numpy().view(np.uint64) == b.to_numpy().view(np.uint64)
            assert same.all(), (name, left.loc[~same, "line_id"].tolist()[:5])
        else:
            pd.testing.assert_series_equal(a, b, check_exact=True, obj=name)


def test_appending_thirty_days_of_history_changes_no_row_entered_before(
    simulated_history: SimulatedHistory,
):
    world = simulated_history
    at_the_cut = build_late_shipment_frame(world.snapshot_url, world.start, world.cut, CALENDAR)
    later = build_late_shipment_frame(world.url, world.start, world.cut, CALENDAR)
    whole = build_late_shipment_frame(world.url, world.start, world.end, CALENDAR)
    assert len(at_the_cut) > 200
    assert_identical_to_the_bit(feature_columns(at_the_cut), feature_columns(later))
    before_cut = whole.loc[whole["entered_at"] < world.cut].reset_index(drop=True)
    assert_identical_to_the_bit(feature_columns(at_the_cut), feature_columns(before_cut))
    # The future did arrive: outcomes unknown at the cut are known now.
    assert (
        at_the_cut["label_late_delivery"].isna().sum() > later["label_late_delivery"].isna().sum()
    )


def truth_frame(world: SimulatedHistory) -> pd.DataFrame:
    frame = build_late_shipment_frame(world.url, world.start, world.end, CALENDAR)
    truth = pd.read_parquet(world.truth_dir / LINES)
    return frame.merge(truth, on="line_id", how="inner", suffixes=("", "_truth"))


def test_labels_agree_with_the_simulators_recorded_outcomes(simulated_history):
    joined = truth_frame(simulated_history)
    for label, truth in (
        ("label_late_delivery", "late_delivery"),
        ("label_late_ship", "late_ship"),
        ("label_late_transit", "drawn_transit_late"),
    ):
        known = joined[label].notna() & joined[truth].notna()
        assert known.sum() > 300
        assert (joined.loc[known, label] == joined.loc[known, truth].astype(float)).all()


def test_backlog_and_lane_lateness_carry_the_signal_the_truth_puts_there(simulated_history):
    """The truth's P(late) is known at entry for every promised line, settled or not.

    The handling risk depends on the queue only past its knee (0.6 of a day's picking), which
    the staffed-for-load world reaches for ~3% of lines, so a rank correlation over all lines
    measures the other terms (the location's drifting quality above all) and sits near 0. What
    holds instead, exactly: once the terms the features know are taken out of the truth's
    handling logit (the queue past the knee, a holiday near and a Friday for the promised ship
    date, peak season, a big order, a split), what is left is the location's hidden quality of
    that day, the same for every line entered there that day."""
    joined = truth_frame(simulated_history)
    joined = joined.loc[joined["p_late_delivery"].notna()]
    queued = joined["pick_backlog_ratio"]
    p_handling = joined["p_handling_late"]
    assert p_handling[queued > 0.6].mean() > 1.2 * p_handling[queued <= 0.3].mean()
    # A price approval open on the promised ship day: the truth's handling risk is 1, only then.
    assert ((p_handling >= 1.0) == joined["approval_blocks_promise"]).all()
    assert joined["approval_blocks_promise"].any()
    lines = joined.loc[~joined["credit_hold"] & ~joined["approval_blocks_promise"]]
    lines = lines.sort_values("line_id")
    # The simulator queues each line behind the lines of its own order allocated before it;
    # the feature counts what was allocated strictly before the order's entry.
    allocated = (~lines["needs_backorder"]).astype(int)
    own = allocated.groupby(lines["order_id"]).cumsum() - allocated
    capacity = lines["pick_backlog_lines"] / lines["pick_backlog_ratio"]
    queue = (lines["pick_backlog_lines"] + own) / capacity
    p = lines["p_handling_late"]
    known = (
        hazards.HANDLING_BASE_LOGIT
        + hazards.BACKLOG_SLOPE * np.maximum(0.0, queue - hazards.BACKLOG_KNEE)
        + hazards.HOLIDAY_AHEAD * lines["holiday_near_promised_ship"]
        + hazards.PEAK * lines["peak_season"]
        + hazards.BIG_ORDER * (lines["order_lines"] >= 8)
        + hazards.SPLIT_PART * lines["split"]
        + hazards.FRIDAY * (lines["promised_ship_weekday"] == 4)
    )
    quality = np.log(p / (1 - p)) - known
    location = lines["line_id"].map(
        load_history(simulated_history.url).lines.set_index("line_id")["location_id"]
    )
    day = lines["entered_at"].dt.floor("D")
    spread = quality - quality.groupby([location, day]).transform("median")
    assert (spread.abs() < 1e-6).mean() > 0.9
    lane_late = 1 - joined["lane_ontime_delivery_rate_28d"]
    assert lane_late.corr(joined["p_transit_late"], method="spearman") > 0.3
    assert lane_late.corr(joined["p_late_delivery"], method="spearman") > 0.1
    by_backorder = joined.groupby("needs_backorder")["p_late_delivery"].mean()
    assert by_backorder[True] > 2 * by_backorder[False]


def test_nulls_appear_only_where_the_history_explains_them(simulated_history):
    world = simulated_history
    frame = build_late_shipment_frame(world.url, world.start, world.end, CALENDAR)
    no_location = frame["credit_hold"]
    for column in ("stock_cover", "pick_backlog_ratio", "promised_ship_lead_bdays"):
        assert (frame[column].isna() == no_location).all(), column
    history = load_history(world.url)
    entered = frame["entered_at"].array.asi8
    no_receipt_yet = entered <= history.receipts["received_at"].min()
    supplier_known = frame["supplier_days_late_56d"].notna()
    assert (supplier_known == (frame["needs_backorder"] & ~no_receipt_yet)).all()
    milestones = history.milestones
    for event, rate in (
        ("shipped", "location_ontime_ship_rate_14d"),
        ("delivered", "lane_ontime_delivery_rate_28d"),
    ):
        first_known = milestones.loc[milestones["event_type"] == event, "known_at"].min()
        nothing_yet = entered <= first_known
        assert (frame[rate].isna() == (no_location | nothing_yet)).all(), rate
        assert frame[rate].isna().mean() < 0.1


# --- the promised ship day, price approvals and backorders, by hand ---------------------------


def frame_between(world: UnitOfWork, start: datetime, days: int) -> pd.DataFrame:
    return build_late_shipment_frame(
        world.engine, start, start + timedelta(days=days), CALENDAR
    ).set_index("line_id")


def test_the_promised_ship_day_its_weekday_a_holiday_near_it_and_a_pending_approval(
    world: UnitOfWork,
):
    stock(world, "WIDGET", "WEST", 100)
    week = datetime(2026, 6, 29, tzinfo=TUESDAY.tzinfo)  # a Monday; Saturday 4 July is a holiday

    def widget(day: int, price: str | None = None) -> CapturedOrder:
        return capture_order(
            world,
            SALES,
            customer_id="C-GOLD",
            lines=[LineRequest("WIDGET", 1, price)],
            now=at(week + timedelta(days=day), 10),
        )

    wednesday = widget(2)
    thursday = widget(3)
    for captured, day in ((wednesday, 2), (thursday, 3)):  # picked and gone the same day
        evening = at(week + timedelta(days=day), 17)
        fulfil(world, captured, evening, evening, evening + timedelta(days=1))
    # 5.00 against the gold price of 9.00: a discount beyond a sales rep's 10%.
    entries = {"wednesday": wednesday, "thursday": thursday, "friday_discount": widget(4, "5.00")}
    frame = frame_between(world, week, 7)
    row = {name: frame.loc[captured.lines[0].line_id] for name, captured in entries.items()}
    promised = {name: captured.lines[0].promised_ship_date for name, captured in entries.items()}
    # Picked the day they are entered (an empty queue, before the cut-off).
    assert [str(promised[name]) for name in entries] == [
        "2026-07-01",
        "2026-07-02",
        "2026-07-03",
    ]
    assert [row[name]["promised_ship_weekday"] for name in entries] == [2.0, 3.0, 4.0]
    # 4 July is two calendar days after Thursday and one after Friday, three after Wednesday.
    assert [bool(row[name]["holiday_near_promised_ship"]) for name in entries] == [
        False,
        True,
        True,
    ]
    assert [bool(row[name]["price_approval_pending"]) for name in entries] == [False, False, True]
    # Promised for its own entry day while finance decides tomorrow: the promise cannot hold.
    assert [bool(row[name]["approval_blocks_promise"]) for name in entries] == [
        False,
        False,
        True,
    ]


def test_a_backorder_knows_its_slack_and_how_overdue_its_covering_receipt_is(world: UnitOfWork):
    stock(world, "GADGET", "WEST", 1)
    stock(world, "WIDGET", "WEST", 5)
    place_purchase_order(
        world,
        PLANNER,
        supplier_id="SUP1",
        location_id="WEST",
        lines=[PurchaseLineRequest("GADGET", 10, expected_date=WEDNESDAY.date())],
        now=T0,
    )

    def backorder(when: datetime, quantity: int) -> int:
        captured = capture_order(
            world,
            SALES,
            customer_id="C-GOLD",
            lines=[LineRequest("GADGET", quantity)],
            now=when,
            allow_split=False,
        )
        assert captured.lines[0].state == "backordered"
        return captured.lines[0].line_id

    due = backorder(at(TUESDAY, 10), 5)  # waits for Wednesday's receipt
    friday = TUESDAY + timedelta(days=3)
    overdue = backorder(at(friday, 10), 4)  # the receipt is two business days overdue by then
    uncovered = backorder(at(friday, 11), 20)  # more than the purchase brings: the supplier's lead
    stocked = (
        capture_order(
            world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 1)], now=at(friday, 12)
        )
        .lines[0]
        .line_id
    )
    frame = frame_between(world, TUESDAY, 7)
    columns = [
        "backorder_slack_bdays",
        "backorder_receipt_covered",
        "covering_receipt_overdue_bdays",
    ]
    # Ready Wednesday, picked from Thursday: one business day of slack; due in one business day.
    assert frame.loc[due, columns].tolist() == [1.0, True, -1.0]
    # Ready (on paper) last Wednesday, picked from Friday: two days of slack, two days overdue.
    assert frame.loc[overdue, columns].tolist() == [2.0, True, 2.0]
    row = frame.loc[uncovered]
    assert not row["backorder_receipt_covered"]
    assert math.isnan(row["covering_receipt_overdue_bdays"])
    assert row["backorder_slack_bdays"] >= 1
    row = frame.loc[stocked]
    assert math.isnan(row["backorder_slack_bdays"]) and not row["backorder_receipt_covered"]
