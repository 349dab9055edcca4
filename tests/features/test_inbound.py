"""Receipt-delay features: the rows of a hand-made history by hand, the loader against the ERP's
own receipts and cancellations, and the leakage guard: a row as of ``t`` is the same whatever
happened after ``t`` (a later receipt moved, later lines placed), built offline or online, and
equal to what the ERP's own forecast refresh computes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from erp_core.db.models import PoLineReceiptForecast, PurchaseOrderLine
from erp_core.db.uow import UnitOfWork
from erp_core.services.inbound import SUPPLIER_HISTORY, refresh_receipt_forecasts
from erp_core.services.purchasing import (
    PurchaseLineRequest,
    cancel_purchase_order,
    place_purchase_order,
    receive_purchase_order_line,
)
from features.inbound import (
    DAY_US,
    LABEL,
    OPEN,
    RECEIPT_DELAY,
    InboundHistory,
    load_inbound_history,
    micros,
    open_line_rows,
    receipt_delay_frame,
)
from features.schema import validate_frame
from tests.conftest import LOGISTICS, PLANNER, T0, make_uow
from tests.features.conftest import SimulatedHistory, copy_sqlite

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, epoch day 20514
FEATURES = RECEIPT_DELAY.feature_names


def at(day: float) -> int:
    return micros(DAY0) + int(day * DAY_US)


def epoch_day(day: int) -> int:
    return micros(DAY0) // DAY_US + day


def hand_made() -> InboundHistory:
    """Supplier S: L1 into A (expected day 5, received day 7: 2 days late), L2 into A (open),
    L3 into B (expected day 4, received day 3), L4 into B placed the moment L3 came in."""
    return InboundHistory(
        pd.DataFrame(
            {
                "po_line_id": np.array([1, 2, 3, 4], dtype=np.int64),
                "purchase_order_id": np.array([10, 11, 12, 13], dtype=np.int64),
                "supplier_id": pd.Series(["S", "S", "S", "S"], dtype=object),
                "location_id": pd.Series(["A", "A", "B", "B"], dtype=object),
                "sku": pd.Series(["X", "X", "Y", "Y"], dtype=object),
                "quantity": np.array([10, 20, 5, 7], dtype=np.int64),
                "expected_day": np.array([epoch_day(d) for d in (5, 6, 4, 10)], dtype=np.int64),
                "placed_at": np.array([at(0.5), at(1 + 20 / 24), at(2.4), at(3.25)], np.int64),
                "cancelled_at": np.full(4, OPEN, dtype=np.int64),
                "closed_at": np.array([at(7.25), OPEN, at(3.25), OPEN], dtype=np.int64),
                "lines_on_order": np.ones(4, dtype=np.int64),
            }
        )
    )


def row(frame: pd.DataFrame, line: int, moment: int) -> pd.Series:
    found = frame.loc[(frame["po_line_id"] == line) & (frame["as_of"] == _ts(moment))]
    assert len(found) == 1, (line, moment)
    return found.iloc[0]


def _ts(us: int) -> pd.Timestamp:
    return pd.Timestamp(us, unit="us", tz="UTC")


def test_a_line_has_a_row_at_placement_and_every_midnight_while_open() -> None:
    frame = receipt_delay_frame(hand_made(), DAY0, DAY0 + timedelta(days=9))
    validate_frame(frame, RECEIPT_DELAY)
    first = frame.loc[frame["po_line_id"] == 1]
    # placed day 0 12:00, received day 7 06:00: the placement and midnights of days 1..7
    assert list(first["as_of"]) == [_ts(at(0.5)), *(_ts(at(d)) for d in range(1, 8))]
    assert set(first[LABEL]) == {2.0}
    placement = row(frame, 1, at(0.5))
    assert (placement["lead_days_promised"], placement["days_open"]) == (5, 0.0)
    assert placement["expected_weekday"] == 5  # day 5 after a Monday is a Saturday
    assert row(frame, 1, at(7))["days_to_expected"] == -2
    assert frame.loc[frame["po_line_id"] == 2, LABEL].isna().all()  # still open


def test_supplier_history_counts_only_lines_completed_before_t() -> None:
    frame = receipt_delay_frame(hand_made(), DAY0, DAY0 + timedelta(days=9))
    # L4 is placed the very moment L3 is received: that receipt is not known yet at t.
    placed = row(frame, 4, at(3.25))
    assert placed["supplier_receipts_182d"] == 0
    assert np.isnan(placed["supplier_delay_mean_182d"])
    assert np.isnan(placed["empirical_p80"])
    # At midnight of day 4, L3 (1 day early) is known.
    assert row(frame, 4, at(4))["supplier_receipts_182d"] == 1
    assert row(frame, 4, at(4))["supplier_delay_mean_182d"] == pytest.approx(-1.0)
    # Day 8: L1 (+2) and L3 (-1) are known; L2 is overdue by 2 days, so at least 2.
    late = row(frame, 2, at(8))
    assert late["supplier_receipts_182d"] == 2
    assert late["supplier_delay_mean_182d"] == pytest.approx(0.5)
    assert (late["empirical_p50"], late["empirical_p80"], late["empirical_p90"]) == (2, 2, 2)


def test_the_open_book_sees_the_suppliers_other_open_and_overdue_lines() -> None:
    frame = receipt_delay_frame(hand_made(), DAY0, DAY0 + timedelta(days=9))
    at_four = row(frame, 2, at(4))  # L1 open (due day 5), L3 received, L4 open (due day 10)
    assert (at_four["supplier_open_lines"], at_four["supplier_open_overdue_share"]) == (2, 0.0)
    at_seven = row(frame, 2, at(7))  # L1 still not received at midnight, 2 days overdue
    assert at_seven["supplier_open_lines"] == 2
    assert at_seven["supplier_open_overdue_share"] == pytest.approx(0.5)
    assert at_seven["supplier_open_overdue_max_days"] == 2


def test_the_loader_dates_a_line_by_the_receipt_that_completed_it(sqlite_world: UnitOfWork):
    order = place_purchase_order(
        sqlite_world,
        PLANNER,
        supplier_id="SUP1",
        location_id="WEST",
        lines=[PurchaseLineRequest("WIDGET", 10), PurchaseLineRequest("GADGET", 5)],
        now=T0,
    )
    cancelled = place_purchase_order(
        sqlite_world,
        PLANNER,
        supplier_id="SUP1",
        location_id="EAST",
        lines=[PurchaseLineRequest("WIDGET", 3)],
        now=T0,
    )
    cancel_purchase_order(sqlite_world, PLANNER, purchase_order_id=cancelled, now=T0 + timedelta(1))
    with sqlite_world:
        widget = sqlite_world.session.execute(
            select(PurchaseOrderLine.id).where(
                PurchaseOrderLine.purchase_order_id == order, PurchaseOrderLine.sku == "WIDGET"
            )
        ).scalar_one()
    for days, quantity in ((2, 4), (4, 6)):
        receive_purchase_order_line(
            sqlite_world,
            LOGISTICS,
            purchase_order_line_id=widget,
            quantity=quantity,
            now=T0 + timedelta(days=days),
        )
    lines = load_inbound_history(sqlite_world.engine).po_lines.set_index("po_line_id")
    assert lines.loc[widget, "closed_at"] == micros(T0 + timedelta(days=4))
    assert (lines["closed_at"] == OPEN).sum() == 2
    assert lines.loc[lines["purchase_order_id"] == cancelled, "cancelled_at"].tolist() == [
        micros(T0 + timedelta(days=1))
    ]
    assert lines.loc[widget, "lines_on_order"] == 2
    expected = (T0 + timedelta(days=10)).date()  # SUP1's nominal 10 days
    assert lines.loc[widget, "expected_day"] == (expected - datetime(1970, 1, 1).date()).days


# --- the leakage guard ------------------------------------------------------------------------


def test_rows_before_the_cut_are_the_same_built_from_the_snapshot_or_the_whole_world(
    simulated_history: SimulatedHistory,
) -> None:
    """The snapshot is the world on day 15; the whole world has 30 more days of receipts and
    purchase orders: every row as of a moment before the cut must not see them."""
    h = simulated_history
    early = receipt_delay_frame(load_inbound_history(h.snapshot_url), h.start, h.cut)
    later = receipt_delay_frame(load_inbound_history(h.url), h.start, h.end)
    later = later.loc[later["as_of"] < h.cut].reset_index(drop=True)
    assert len(early) > 100
    keys = ["po_line_id", "as_of", "placed_at"]
    pd.testing.assert_frame_equal(
        _plain(early[keys + FEATURES]), _plain(later[keys + FEATURES]), check_exact=True
    )
    # ... and the whole world does know more: some of those lines were received after the cut.
    assert later[LABEL].notna().sum() > early[LABEL].notna().sum()


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as text: their level sets differ between histories, the values must not."""
    return frame.astype({c: object for c in frame.columns if frame[c].dtype == "category"})


def test_changing_a_later_receipt_or_adding_later_lines_changes_nothing_before_it(
    simulated_history: SimulatedHistory,
) -> None:
    history = load_inbound_history(simulated_history.url)
    cut = simulated_history.start + timedelta(days=25)
    lines = history.po_lines
    later = lines["closed_at"].to_numpy() >= micros(cut)
    assert later.sum() > 5
    moved = lines.assign(
        closed_at=np.where(later, lines["closed_at"] + 9 * DAY_US, lines["closed_at"]),
        quantity=np.where(lines["placed_at"] >= micros(cut), 1, lines["quantity"]),
    )
    extra = lines.iloc[:3].assign(
        po_line_id=lines["po_line_id"].max() + np.arange(1, 4),
        placed_at=micros(cut) + 3_600_000_000,
        closed_at=micros(cut) + 5 * DAY_US,
    )
    changed = history.with_lines(pd.concat([moved, extra], ignore_index=True))
    before = receipt_delay_frame(history, simulated_history.start, simulated_history.end)
    after = receipt_delay_frame(changed, simulated_history.start, simulated_history.end)
    early = before["as_of"] < cut
    assert early.sum() > 100
    pd.testing.assert_frame_equal(
        _plain(before.loc[early, FEATURES]).reset_index(drop=True),
        _plain(after.loc[after["as_of"] < cut, FEATURES]).reset_index(drop=True),
        check_exact=True,
    )
    # The change is real: rows after the moved receipts read different supplier histories.
    late_before = before.loc[before["as_of"] >= cut + timedelta(days=10)]
    late_after = after.loc[after["as_of"] >= cut + timedelta(days=10)]
    assert (
        not late_before["supplier_delay_mean_182d"]
        .reset_index(drop=True)
        .equals(late_after["supplier_delay_mean_182d"].reset_index(drop=True))
    )


# --- online = offline = the ERP's own refresh -----------------------------------------------------


def test_open_line_rows_are_the_frames_rows_at_that_moment(
    simulated_history: SimulatedHistory,
) -> None:
    history = load_inbound_history(simulated_history.url)
    frame = receipt_delay_frame(history, simulated_history.start, simulated_history.end)
    moment = simulated_history.start + timedelta(days=30)
    online = open_line_rows(history, moment)
    offline = frame.loc[frame["as_of"] == moment].reset_index(drop=True)
    assert len(online) > 10
    pd.testing.assert_frame_equal(_plain(online), _plain(offline), check_exact=True)
    placed = history.po_lines.iloc[len(history.po_lines) // 2]
    one = open_line_rows(history, _ts(int(placed["placed_at"])).to_pydatetime())
    mine = one.loc[one["po_line_id"] == placed["po_line_id"]].iloc[0]
    theirs = frame.loc[
        (frame["po_line_id"] == placed["po_line_id"]) & (frame["as_of"] == frame["placed_at"])
    ].iloc[0]
    assert mine[FEATURES].astype(str).tolist() == theirs[FEATURES].astype(str).tolist()


def test_the_erp_refresh_forecasts_the_empirical_quantiles_of_the_frame(
    simulated_history: SimulatedHistory, tmp_path: Path
) -> None:
    copy = tmp_path / "world.db"
    copy_sqlite(Path(simulated_history.url.removeprefix("sqlite:///")), copy)
    uow = make_uow(f"sqlite:///{copy}")
    moment = simulated_history.end + timedelta(hours=1)  # after the world's last event
    written = refresh_receipt_forecasts(uow, PLANNER, now=moment)
    rows = open_line_rows(load_inbound_history(uow.engine), moment).set_index("po_line_id")
    known = rows.loc[rows["empirical_p80"].notna()]
    assert written == len(known) > 5
    with uow:
        forecasts = {
            f.po_line_id: f for f in uow.session.execute(select(PoLineReceiptForecast)).scalars()
        }
        expected = {
            line_id: day
            for line_id, day in uow.session.execute(
                select(PurchaseOrderLine.id, PurchaseOrderLine.expected_date)
            )
        }
    assert set(forecasts) == set(known.index)
    for line_id, forecast in forecasts.items():
        days = [
            (getattr(forecast, f"p{level}_date") - expected[line_id]).days for level in (50, 80, 90)
        ]
        assert days == [int(known.loc[line_id, f"empirical_p{level}"]) for level in (50, 80, 90)]
        assert (forecast.method, forecast.as_of) == (SUPPLIER_HISTORY, moment)
    uow.engine.dispose()


def test_a_history_without_purchase_orders_gives_an_empty_frame() -> None:
    empty = hand_made().with_lines(hand_made().po_lines.iloc[:0])
    frame = receipt_delay_frame(empty, DAY0, DAY0 + timedelta(days=3))
    assert frame.empty and list(frame.columns) == [c.name for c in RECEIPT_DELAY.columns]
    assert replace(empty).last_moment == 0
