"""The history loader: moments as UTC microseconds, dates as epoch days, milestones known from
when the ERP recorded them, and splits read from the audit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from erp_core.db.uow import UnitOfWork
from erp_core.services.fulfilment import pack, pick, ship
from erp_core.services.orders import LineRequest, capture_order
from features.availability import Sources
from features.history import TAILED, load_history, load_history_since, to_epoch_days, to_micros
from tests.conftest import LOGISTICS, SALES, T0, stock

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def test_moments_and_dates_parse_from_text_and_from_python_values() -> None:
    text = pd.Series(["2026-03-03 09:00:00.000000", "2026-03-03 09:00:00.250000"])
    assert to_micros(text).tolist() == [micros(T0), micros(T0) + 250_000]
    aware = pd.Series([T0, T0 + timedelta(seconds=1)], dtype=object)
    assert to_micros(aware).tolist() == [micros(T0), micros(T0) + 1_000_000]
    days = pd.Series(["1970-01-02", date(2026, 3, 3)], dtype=object)
    assert to_epoch_days(days).tolist() == [1, (date(2026, 3, 3) - date(1970, 1, 1)).days]


def test_a_milestone_is_known_when_it_was_recorded_not_when_it_happened(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 10)
    entered = T0 + timedelta(minutes=1)
    captured = capture_order(
        world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 2)], now=entered
    )
    line = captured.lines[0].line_id
    picked = T0 + timedelta(hours=2)
    shipment = pick(world, LOGISTICS, order_id=captured.order_id, picks={line: 2}, now=picked)
    pack(world, LOGISTICS, shipment_id=shipment.shipment_id, occurred_at=picked, now=picked)
    handed_over, keyed_in = T0 + timedelta(hours=3), T0 + timedelta(hours=5)
    ship(world, LOGISTICS, shipment_id=shipment.shipment_id, occurred_at=handed_over, now=keyed_in)
    history = load_history(world.engine)
    shipped = history.milestones.set_index("event_type").loc["shipped"]
    assert (shipped["line_id"], shipped["location_id"]) == (line, "WEST")
    assert shipped["occurred_at"] == micros(handed_over)
    assert shipped["known_at"] == micros(keyed_in)
    assert history.lines.set_index("line_id").loc[line, "entered_at"] == micros(entered)


def test_text_columns_are_categorical_and_splits_come_from_the_audit(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 4)
    captured = capture_order(
        world,
        SALES,
        customer_id="C-GOLD",
        lines=[LineRequest("WIDGET", 10)],
        now=T0 + timedelta(minutes=1),
    )
    history = load_history(world.engine)
    assert isinstance(history.state_changes["to_state"].dtype, pd.CategoricalDtype)
    assert isinstance(history.lines["sku"].dtype, pd.CategoricalDtype)
    parent, child = (line.line_id for line in captured.lines)
    split = history.splits.iloc[0]
    assert (split["line_id"], split["parent_line_id"]) == (child, parent)
    assert split["quantity"] + split["kept_quantity"] == 10


def test_the_history_carries_its_sources_and_its_parts_keep_them(world: UnitOfWork) -> None:
    """erpx's own database: nothing imported, no gaps (every feature available). A history cut
    from it (a Dask chunk's prefix) decides availability as the whole does; a tail has none."""
    stock(world, "WIDGET", "WEST", 10)
    capture_order(world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 2)], now=T0)
    history = load_history(world.engine)
    assert history.sources == Sources()
    assert not history.sources.is_imported
    marked = replace(history, sources=Sources(frozenset({"order_lines"}), frozenset({"x"})))
    assert marked.with_tables(lines=marked.lines.iloc[0:0]).sources == marked.sources
    assert "sources" not in history.table_sizes()
    assert history.table_sizes()["lines"] == 1
    tail = load_history_since(world.engine, {name: (0, 10**9) for name in TAILED})
    assert tail.sources is None
