"""The online path: a draft order's features equal the offline frame's for the same moment.

Parity is checked on the simulated world for every line created by capture (a thousand or so):
the online path, asked "as of" each order's entry from the database as it is now, returns the
offline frame's values (counts and flags exactly, floats to 1e-9, nulls where offline has nulls).
Then by hand, on the service-built world of test_late_shipment, for drafts that were never
captured.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import date, datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, select

from erp_core.db.engine import make_engine
from erp_core.db.models import Lane
from erp_core.domain.errors import DomainError
from erp_core.policy import load_policy
from erp_core.services.orders import LineRequest, capture_order
from features.history import load_history
from features.late_shipment import (
    build_late_shipment_frame,
    covering_receipt_open,
    entry_rows,
    to_micros,
)
from features.online import (
    DraftLine,
    DraftOrder,
    OnlineFeatures,
    _positions_by,
    _receipt_covered,
    _Receipts,
    drafts_from_entry_rows,
)
from features.registry import LATE_SHIPMENT
from tests.conftest import SALES
from tests.features import test_late_shipment as hand
from tests.features.conftest import SimulatedHistory
from tests.features.test_late_shipment import THURSDAY, TUESDAY, HandWorld, at

hand_world = hand.hand_world
"""The service-built world whose offline values test_late_shipment checks by hand."""
CALENDAR = load_policy().calendar
FLOAT_TOLERANCE = 1e-9


def online_as_of_entry(
    online: OnlineFeatures, source: Engine | str, start: datetime, end: datetime
) -> pd.DataFrame:
    """Every order captured in ``[start, end)`` as the draft serving would have scored, run
    through the online path one order at a time."""
    rows = entry_rows(load_history(source), to_micros(start), to_micros(end))
    return pd.concat([online.features(draft) for draft in drafts_from_entry_rows(rows)])


def assert_same_values(offline: pd.DataFrame, online: pd.DataFrame) -> None:
    """Offline (indexed by line_id) against online, column by column, by the declared dtype."""
    assert sorted(online.index) == sorted(offline.index)
    offline = offline.loc[online.index]
    for spec in LATE_SHIPMENT.features:
        expected, found = offline[spec.name], online[spec.name]
        if spec.dtype == "float64":
            a = expected.to_numpy(dtype=np.float64)
            b = found.to_numpy(dtype=np.float64)
            assert (np.isnan(a) == np.isnan(b)).all(), spec.name
            both = ~np.isnan(a)
            np.testing.assert_allclose(
                b[both], a[both], rtol=0, atol=FLOAT_TOLERANCE, err_msg=spec.name
            )
        else:
            a, b = expected.astype(object).to_numpy(), found.astype(object).to_numpy()
            null_a, null_b = pd.isna(a), pd.isna(b)
            assert (null_a == null_b).all(), (
                spec.name,
                online.index[null_a != null_b][:5].tolist(),
            )
            mismatched = (a != b) & ~null_a
            assert not mismatched.any(), (spec.name, online.index[mismatched][:5].tolist())


def test_online_as_of_entry_equals_the_offline_frame_on_a_simulated_world(
    simulated_history: SimulatedHistory,
):
    world = simulated_history
    offline = build_late_shipment_frame(world.url, world.start, world.end, CALENDAR)
    online = OnlineFeatures.from_database(world.url, CALENDAR)
    found = online_as_of_entry(online, world.url, world.start, world.end)
    assert len(found) > 500
    assert_same_values(offline.set_index("line_id"), found)
    # The comparison covered every kind of value, not only nulls and defaults.
    assert found["needs_backorder"].any() and found["split"].any()
    assert found["lane_ontime_delivery_rate_28d"].notna().mean() > 0.9
    assert found["supplier_days_late_56d"].notna().any()
    assert (found["region_alert_severity"] > 0).any()


def test_an_index_of_the_database_as_it_stood_gives_the_rows_entered_before(
    simulated_history: SimulatedHistory,
):
    """Online from the snapshot (30 days less history) and offline from the whole world agree
    on the lines entered before the cut: neither looks past ``t``."""
    world = simulated_history
    offline = build_late_shipment_frame(world.url, world.start, world.cut, CALENDAR)
    online = OnlineFeatures.from_database(world.snapshot_url, CALENDAR)
    found = online_as_of_entry(online, world.snapshot_url, world.start, world.cut)
    assert len(found) > 200
    assert_same_values(offline.set_index("line_id"), found)


def test_refreshing_an_index_of_the_snapshot_with_the_next_30_days_equals_a_fresh_index(
    simulated_history: SimulatedHistory,
):
    """The snapshot is the same world's database 30 days earlier, so its last ids are where
    the whole world's tail starts: a refresh must leave every total as a full build has it."""
    world = simulated_history
    online = OnlineFeatures.from_database(world.snapshot_url, CALENDAR)
    online.engine = make_engine(world.url)
    online.refresh()
    fresh = OnlineFeatures.from_database(world.url, CALENDAR)
    assert online.marks == fresh.marks
    offline = build_late_shipment_frame(world.url, world.start, world.end, CALENDAR)
    assert_same_values(
        offline.set_index("line_id"), online_as_of_entry(online, world.url, world.start, world.end)
    )
    for name, index in fresh.indexes.items():
        refreshed = online.indexes[name]
        assert refreshed.by_key.keys() == index.by_key.keys(), name
        np.testing.assert_array_equal(refreshed.everywhere.times, index.everywhere.times)


# --- hand-checked drafts on the service-built world ----------------------------------------------


def standard_lane(world: HandWorld, origin: str, region: str) -> int:
    with world.uow:
        return world.uow.session.scalars(
            select(Lane.id).where(
                Lane.origin_location_id == origin,
                Lane.dest_region == region,
                Lane.service_level == "standard",
            )
        ).one()


def draft(when: datetime, *lines: DraftLine, customer: str = "C-GOLD") -> DraftOrder:
    return DraftOrder(customer, "key_account", "west", when, tuple(lines))


def test_a_draft_gets_the_values_checked_by_hand_offline(hand_world: HandWorld):
    """A WIDGET x1 draft at Thursday 11:00 from WEST is line D of the offline hand checks."""
    online = OnlineFeatures.from_database(hand_world.uow.engine, CALENDAR)
    lane = standard_lane(hand_world, "WEST", "west")
    line = DraftLine(
        1,
        "WIDGET",
        1,
        9.0,
        "allocated",
        "WEST",
        lane,
        date(2026, 3, 5),
        date(2026, 3, 6),
    )
    row = online.features(draft(at(THURSDAY, 11), line)).iloc[0]
    assert row["stock_cover"] == pytest.approx(65 / 1)
    assert row["pick_backlog_lines"] == 1  # C, never picked
    assert row["pick_backlog_ratio"] == pytest.approx(1 / 2)
    assert (row["promised_ship_lead_bdays"], row["promised_delivery_lead_bdays"]) == (0, 1)
    assert row["location_ontime_ship_rate_14d"] == pytest.approx((2 + 20 * 0.75) / 23)
    assert row["location_shipped_lines_56d"] == 3
    assert row["lane_ontime_delivery_rate_28d"] == pytest.approx((2 + 20 * 0.5) / 23)
    spread = math.sqrt(10 * np.var([1, 1, 1, 2]) / 13)
    assert row["lane_transit_spread_90d"] == pytest.approx(spread)
    assert row["lane_transit_days"] == 1
    assert not row["expedite"] and not row["transfer"] and not row["needs_backorder"]
    assert math.isnan(row["supplier_days_late_56d"])
    assert (row["order_lines"], row["order_units"], row["order_value"]) == (1, 1, 9.0)
    assert (row["customer_tier"], row["product_category"], row["abc_class"]) == (
        "gold",
        "hardware",
        "A",
    )
    assert (row["entry_weekday"], row["days_to_month_end"]) == (3, 26)


def test_a_draft_gets_the_due_rates_a_price_approval_and_a_covered_backorder(
    hand_world: HandWorld,
):
    """At Thursday 11:00: the due rates of the offline hand checks; a discounted line promised
    for today waits for finance; GADGET backordered on the PO line received at 08:30 is not
    covered any more (it was completed before t), WIDGET on a PO still open would be."""
    online = OnlineFeatures.from_database(hand_world.uow.engine, CALENDAR)
    lane = standard_lane(hand_world, "WEST", "west")
    thursday, friday = date(2026, 3, 5), date(2026, 3, 6)
    discounted = DraftLine(
        1,
        "WIDGET",
        1,
        5.0,
        "allocated",
        "WEST",
        lane,
        thursday,
        friday,
        price_approval_pending=True,
    )
    received = DraftLine(
        2,
        "GADGET",
        50,
        40.0,
        "backordered",
        "WEST",
        lane,
        date(2026, 3, 13),
        date(2026, 3, 16),
        expected_ready_on=date(2026, 3, 4),
    )
    frame = online.features(draft(at(THURSDAY, 11), discounted, received))
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["region_ontime_due_rate_7d"] == pytest.approx((1 + 20 / 3) / 22)
    assert first["carrier_ontime_due_rate_14d"] == pytest.approx((1 + 20 / 3) / 23)
    assert first["price_approval_pending"] and first["approval_blocks_promise"]
    assert (first["promised_ship_weekday"], first["holiday_near_promised_ship"]) == (3, False)
    assert not second["price_approval_pending"] and not second["approval_blocks_promise"]
    assert not second["backorder_receipt_covered"]
    assert math.isnan(second["covering_receipt_overdue_bdays"])
    assert second["backorder_slack_bdays"] == 7  # Wednesday 4 to Friday 13 March
    assert math.isnan(first["backorder_slack_bdays"])


def test_the_same_draft_line_as_captured_matches_the_offline_row(hand_world: HandWorld):
    offline = hand_world.frame()
    online = OnlineFeatures.from_database(hand_world.uow.engine, CALENDAR)
    found = online_as_of_entry(
        online, hand_world.uow.engine, TUESDAY, TUESDAY + pd.Timedelta(days=7)
    )
    assert_same_values(offline, found)


def test_alerts_online_are_counted_as_offline_and_a_refresh_reads_new_ones(
    hand_world: HandWorld,
):
    online = OnlineFeatures.from_database(hand_world.uow.engine, CALENDAR)
    hand.announce_hand_alerts(hand_world)
    lane = standard_lane(hand_world, "WEST", "west")
    probe = draft(at(THURSDAY, 12), DraftLine(1, "WIDGET", 1, 9.0, "allocated", "WEST", lane))
    assert online.features(probe).iloc[0]["region_alert_severity"] == 0  # not read yet
    online.refresh()
    assert online.features(probe).iloc[0]["region_alert_severity"] == 2
    found = online_as_of_entry(
        online, hand_world.uow.engine, TUESDAY, TUESDAY + pd.Timedelta(days=7)
    )
    assert_same_values(hand_world.frame(), found)
    assert sorted(found["region_alert_severity"]) == [0, 0, 0, 1, 1, 2, 3]


def test_a_backordered_draft_sees_its_suppliers_lateness_and_a_two_line_order_its_totals(
    hand_world: HandWorld,
):
    online = OnlineFeatures.from_database(hand_world.uow.engine, CALENDAR)
    lane = standard_lane(hand_world, "WEST", "west")
    gadgets = DraftLine(1, "GADGET", 50, 40.0, "backordered", "WEST", lane)
    widgets = DraftLine(2, "WIDGET", 4, 9.0, "allocated", "WEST", lane, date(2026, 3, 5))
    frame = online.features(draft(at(THURSDAY, 11, 30), gadgets, widgets))
    gadget, widget = frame.iloc[0], frame.iloc[1]
    assert gadget["needs_backorder"]
    assert gadget["supplier_days_late_56d"] == pytest.approx(1.0)  # one receipt, a day late
    assert gadget["stock_cover"] == pytest.approx(13 / 50)
    assert math.isnan(gadget["promised_ship_lead_bdays"])  # no promise given with it
    assert math.isnan(widget["supplier_days_late_56d"])
    for row in (gadget, widget):
        assert (row["order_lines"], row["order_units"]) == (2, 54)
        assert row["order_weight_kg"] == pytest.approx(50 * 1.5 + 4 * 2.0)
        assert row["order_value"] == pytest.approx(50 * 40.0 + 4 * 9.0)


def test_a_draft_held_for_credit_has_nulls_where_a_location_is_needed(hand_world: HandWorld):
    online = OnlineFeatures.from_database(hand_world.uow.engine, CALENDAR)
    held = DraftLine(1, "WIDGET", 3, 10.0, "credit_hold")
    row = online.features(draft(at(THURSDAY, 11), held, customer="C-SMALL")).iloc[0]
    assert row["credit_hold"] and not row["transfer"]
    for name in ("stock_cover", "pick_backlog_ratio", "location_ontime_ship_rate_56d"):
        assert math.isnan(row[name]), name
    assert math.isnan(row["lane_ontime_delivery_rate_28d"])
    assert row["customer_tier"] == "bronze"


def test_a_refresh_takes_in_what_was_written_since_the_index_was_built(hand_world: HandWorld):
    """Built, then a later order is captured: only after ``refresh`` does its reservation
    count."""
    online = OnlineFeatures.from_database(hand_world.uow.engine, CALENDAR)
    lane = standard_lane(hand_world, "WEST", "west")
    friday = at(THURSDAY, 15) + pd.Timedelta(days=1)
    probe = draft(friday, DraftLine(1, "WIDGET", 1, 9.0, "allocated", "WEST", lane))
    before = online.features(probe).iloc[0]["stock_cover"]
    capture_order(
        hand_world.uow,
        SALES,
        customer_id="C-GOLD",
        lines=[LineRequest("WIDGET", 5)],
        now=at(THURSDAY, 14),
    )
    assert online.features(probe).iloc[0]["stock_cover"] == before
    online.refresh()
    assert online.features(probe).iloc[0]["stock_cover"] == before - 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"customer_id": "C-NOBODY"}, "unknown customer: customer_id='C-NOBODY'"),
        ({"sku": "SPROCKET"}, "unknown product: sku='SPROCKET'"),
        ({"quantity": 0}, "invalid quantity=0"),
        ({"location_id": "NORTH"}, "unknown location: location_id='NORTH'"),
    ],
)
def test_a_draft_with_an_unknown_or_bad_value_is_refused_naming_it(
    hand_world: HandWorld, change: dict, message: str
):
    online = OnlineFeatures.from_database(hand_world.uow.session, CALENDAR)
    line = DraftLine(1, "WIDGET", 1, 9.0, "allocated", "WEST", None)
    changed_line = {name: value for name, value in change.items() if name != "customer_id"}
    customer = change.get("customer_id", "C-GOLD")
    with pytest.raises(DomainError, match=re.escape(message)):
        online.features(draft(at(THURSDAY, 11), replace(line, **changed_line), customer=customer))


def test_a_drafts_receipt_cover_is_the_offline_merge_of_the_purchase_order_lines() -> None:
    """The online match of a backorder's covering receipt, row by row on arrays, against
    :func:`features.late_shipment.covering_receipt_open`'s merge over the whole frame: random
    purchase-order lines (missing locations and dates, open and received, placed before and
    after) and rows (other SKUs, no location, no ready date)."""
    rng = np.random.default_rng(11)
    days = [np.nan, 20_000.0, 20_001.0, 20_002.0]
    covered = 0
    for _ in range(200):
        n = int(rng.integers(0, 12))
        po = pd.DataFrame(
            {
                "sku": rng.choice(["A", "B", "C"], n).astype(object),
                "location_id": rng.choice(["L1", "L2", None], n),
                "expected_date": rng.choice(days, n),
                "placed_at": rng.integers(0, 100, n).astype(np.int64),
                "closed_at": rng.choice([-1, 30, 60, 90], n).astype(np.int64),
            }
        )
        rows = int(rng.integers(1, 8))
        skus = list(rng.choice(["A", "B", "C", "D"], rows))
        located = list(rng.choice(["L1", "L2", None], rows))
        ready_on = rng.choice(days, rows)
        t = rng.integers(0, 120, rows).astype(np.int64)
        master = SimpleNamespace(
            receipts=_Receipts.of(po), po_lines_of_sku=_positions_by(po, "sku")
        )
        online = _receipt_covered(skus, located, ready_on, t, master)  # type: ignore[arg-type]
        offline = covering_receipt_open(skus, located, ready_on, t, po)
        assert online.tolist() == offline.tolist()
        covered += int(offline.sum())
    assert covered > 5  # the draws do reach covered backorders (14 of them)
