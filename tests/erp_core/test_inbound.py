"""Promising a backorder by the P80 receipt date: the policy switch (nominal by default), the
forecasts it reads (recorded, or refreshed from the suppliers' own receipts), quotes equal to
capture in both modes, and the measure of how many backorder promises were kept."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from erp_core.db.models import (
    AuditEntry,
    OrderLine,
    PoLineReceiptForecast,
    PurchaseOrder,
    PurchaseOrderLine,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue, PermissionDenied, PolicyError
from erp_core.domain.promise import promise_for
from erp_core.policy import load_policy, parse_policy
from erp_core.services.inbound import (
    SUPPLIER_HISTORY,
    ReceiptForecast,
    backorder_promises,
    record_receipt_forecasts,
    refresh_receipt_forecasts,
)
from erp_core.services.orders import LineRequest
from erp_core.services.purchasing import (
    PurchaseLineRequest,
    place_purchase_order,
    receive_purchase_order_line,
)
from erp_core.services.transfers import send_transfer
from erp_core.settings import Settings
from erp_core.simulate.run import simulate
from tests.conftest import ADMIN, LOGISTICS, PLANNER, SALES, T0, stock
from tests.erp_core.test_quotes import capture, quote_then_capture

D0 = T0.date()  # Tuesday 2026-03-03


def p80_mode(uow: UnitOfWork) -> UnitOfWork:
    uow.policy = replace(uow.policy, inbound_quantile="p80")
    return uow


def place_po(
    uow: UnitOfWork, sku: str, quantity: int, expected: date, location: str = "WEST", now=T0
) -> int:
    """Place a one-line PO; returns its line's id."""
    order = place_purchase_order(
        uow,
        PLANNER,
        supplier_id="SUP1",
        location_id=location,
        lines=[PurchaseLineRequest(sku, quantity, expected_date=expected)],
        now=now,
    )
    with uow:
        return uow.session.execute(
            select(PurchaseOrderLine.id).where(PurchaseOrderLine.purchase_order_id == order)
        ).scalar_one()


def forecast(uow: UnitOfWork, line_id: int, p80: date, now=T0) -> None:
    record_receipt_forecasts(
        uow,
        PLANNER,
        forecasts=[ReceiptForecast(line_id, p80 - timedelta(days=1), p80, p80 + timedelta(3))],
        now=now,
        method="test",
    )


def ready_on(uow: UnitOfWork, line_id: int) -> date | None:
    with uow:
        line = uow.session.get(OrderLine, line_id)
        assert line is not None
        return line.expected_ready_on


# --- the switch ------------------------------------------------------------------------------


def test_the_default_policy_promises_by_the_nominal_date() -> None:
    assert load_policy().inbound_quantile == "nominal"


@pytest.mark.parametrize("value", ["p95", "P80", 80, ""])
def test_an_unknown_inbound_quantile_is_refused_naming_the_field_and_value(value) -> None:
    raw = {"promise": {"inbound_quantile": value}}
    with pytest.raises(PolicyError) as refused:
        parse_policy(_with_required(raw))
    assert refused.value.field == "promise.inbound_quantile"
    assert refused.value.value == value


def test_p80_is_accepted_from_the_policy_file() -> None:
    assert (
        parse_policy(_with_required({"promise": {"inbound_quantile": "p80"}})).inbound_quantile
        == "p80"
    )


def _with_required(extra: dict) -> dict:
    import tomllib
    from importlib import resources

    text = resources.files("erp_core").joinpath("policy_default.toml").read_text("utf-8")
    return {**tomllib.loads(text), **extra}


# --- the promise ------------------------------------------------------------------------------


def test_a_backorder_is_promised_by_the_p80_date_when_switched_on_and_nominal_otherwise(world):
    po_line = place_po(world, "GADGET", 20, D0 + timedelta(days=5))
    forecast(world, po_line, D0 + timedelta(days=9))  # Thursday 12 March
    nominal = capture(world, "C-GOLD", LineRequest("GADGET", 3))
    p80 = capture(p80_mode(world), "C-GOLD", LineRequest("GADGET", 3))
    assert ready_on(world, nominal.lines[0].line_id) == D0 + timedelta(days=5)
    assert ready_on(world, p80.lines[0].line_id) == D0 + timedelta(days=9)
    # The promise is the domain's promise_for from the P80 receipt date: received Thursday 12,
    # picked and shipped Friday 13; nominally received Sunday 8, shipped Monday 9.
    calendar = world.policy.calendar
    expected = promise_for(
        entered_at=T0,
        stock_ready_on=D0 + timedelta(days=9),
        cutoff=time(15, 0),
        timezone="UTC",
        pick_backlog_lines=0,
        pick_capacity_per_day=2,
        transit_days=1,
        calendar=calendar,
    )
    assert p80.lines[0].promised_ship_date == expected.ship_date.isoformat() == "2026-03-13"
    assert nominal.lines[0].promised_ship_date == "2026-03-09"


def test_without_a_forecast_the_p80_policy_keeps_the_nominal_date(world):
    place_po(world, "GADGET", 20, D0 + timedelta(days=5))
    captured = capture(p80_mode(world), "C-GOLD", LineRequest("GADGET", 3))
    assert ready_on(world, captured.lines[0].line_id) == D0 + timedelta(days=5)


def test_p80_dates_decide_which_receipt_covers_the_line(world):
    """PO A is due first but forecast late; PO B is due later and forecast on time."""
    a = place_po(world, "GADGET", 5, D0 + timedelta(days=3))
    b = place_po(world, "GADGET", 5, D0 + timedelta(days=6))
    forecast(world, a, D0 + timedelta(days=14))
    forecast(world, b, D0 + timedelta(days=7))
    line = capture(p80_mode(world), "C-GOLD", LineRequest("GADGET", 4)).lines[0]
    assert ready_on(world, line.line_id) == D0 + timedelta(days=7)


def test_transfers_keep_their_expected_date(world):
    stock(world, "WIDGET", "EAST", 30)
    send_transfer(
        world,
        PLANNER,
        sku="WIDGET",
        from_location_id="EAST",
        to_location_id="WEST",
        quantity=10,
        now=T0,
        expected_date=D0 + timedelta(days=2),
    )
    line = capture(p80_mode(world), "C-GOLD", LineRequest("WIDGET", 25)).lines[-1]
    assert ready_on(world, line.line_id) == D0 + timedelta(days=2)


# --- quote == capture in both modes ------------------------------------------------------------


def two_pos_reordered(uow: UnitOfWork) -> None:
    a = place_po(uow, "GADGET", 6, D0 + timedelta(days=3))
    b = place_po(uow, "GADGET", 6, D0 + timedelta(days=6))
    forecast(uow, a, D0 + timedelta(days=12))
    forecast(uow, b, D0 + timedelta(days=8))


def east_po_forecast_earlier(uow: UnitOfWork) -> None:
    stock(uow, "WIDGET", "WEST", 4)
    west = place_po(uow, "WIDGET", 20, D0 + timedelta(days=2))
    east = place_po(uow, "WIDGET", 20, D0 + timedelta(days=4), location="EAST")
    forecast(uow, west, D0 + timedelta(days=15))
    forecast(uow, east, D0 + timedelta(days=5))


def forecast_only_one_of_two(uow: UnitOfWork) -> None:
    a = place_po(uow, "GADGET", 3, D0 + timedelta(days=4))
    place_po(uow, "GADGET", 10, D0 + timedelta(days=5))
    forecast(uow, a, D0 + timedelta(days=11))


PARITY = {
    "two_pos_reordered": (two_pos_reordered, [LineRequest("GADGET", 4), LineRequest("GADGET", 5)]),
    "another_location_forecast_earlier": (east_po_forecast_earlier, [LineRequest("WIDGET", 10)]),
    "one_forecast_of_two": (forecast_only_one_of_two, [LineRequest("GADGET", 8)]),
}


@pytest.mark.parametrize("mode", ["nominal", "p80"])
@pytest.mark.parametrize("scenario", list(PARITY))
def test_capture_does_what_the_quote_said_in_both_modes(world, mode, scenario):
    setup, lines = PARITY[scenario]
    setup(world)
    world.policy = replace(world.policy, inbound_quantile=mode)
    quoted = quote_then_capture(world, "C-GOLD", *lines)
    assert any(line.state == "backordered" for line in quoted.lines)


def test_randomised_orders_are_captured_as_quoted_under_p80(world):
    rng = random.Random(8020)
    p80_mode(world)
    stock(world, "WIDGET", "WEST", 30)
    stock(world, "GADGET", "EAST", 10)
    now = T0
    for _ in range(25):
        now += timedelta(hours=rng.choice([1, 3, 20]))
        if rng.random() < 0.5:
            expected = now.date() + timedelta(days=rng.randint(1, 10))
            po_line = place_po(
                world,
                rng.choice(["WIDGET", "GADGET"]),
                rng.randint(3, 20),
                expected,
                location=rng.choice(["WEST", "EAST"]),
                now=now,
            )
            if rng.random() < 0.7:
                forecast(world, po_line, expected + timedelta(days=rng.randint(-1, 6)), now=now)
        lines = [
            LineRequest(rng.choice(["WIDGET", "GADGET"]), rng.randint(1, 12))
            for _ in range(rng.randint(1, 3))
        ]
        quote_then_capture(
            world,
            rng.choice(["C-GOLD", "C-BRONZE", "C-EAST"]),
            *lines,
            now=now,
            allow_split=rng.random() < 0.8,
        )


# --- the forecasts --------------------------------------------------------------------------


def test_recording_replaces_a_lines_forecast(world):
    line = place_po(world, "GADGET", 5, D0 + timedelta(days=5))
    forecast(world, line, D0 + timedelta(days=6))
    forecast(world, line, D0 + timedelta(days=8), now=T0 + timedelta(hours=1))
    with world:
        (row,) = world.session.execute(select(PoLineReceiptForecast)).scalars()
        assert (row.p80_date, row.as_of, row.method) == (
            D0 + timedelta(days=8),
            T0 + timedelta(hours=1),
            "test",
        )


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda i: [ReceiptForecast(i, D0, D0 - timedelta(1), D0)], "forecasts[0].p80_date"),
        (lambda i: [ReceiptForecast(i + 99, D0, D0, D0)], "forecasts.po_line_id"),
        (lambda i: [ReceiptForecast(i, D0, D0, D0)] * 2, "forecasts.po_line_id"),
    ],
)
def test_bad_forecasts_are_refused_and_nothing_is_written(world, make, field):
    line = place_po(world, "GADGET", 5, D0 + timedelta(days=5))
    good = ReceiptForecast(line, D0, D0, D0)
    with pytest.raises(InvalidValue) as refused:
        record_receipt_forecasts(
            world, PLANNER, forecasts=[good, *make(line)][1:], now=T0, method="test"
        )
    assert refused.value.field == field
    with world:
        assert (
            world.session.execute(select(func.count(PoLineReceiptForecast.po_line_id))).scalar()
            == 0
        )


def test_a_sales_rep_may_not_record_forecasts(world):
    line = place_po(world, "GADGET", 5, D0 + timedelta(days=5))
    with pytest.raises(PermissionDenied):
        record_receipt_forecasts(
            world, SALES, forecasts=[ReceiptForecast(line, D0, D0, D0)], now=T0, method="x"
        )


def test_the_refresh_forecasts_open_lines_from_completed_ones(world):
    """Three lines came in 2, 2 and 4 days late: P50 2, P80 and P90 4 days after the date."""
    for days_late in (2, 2, 4):
        expected = D0 + timedelta(days=3)
        line = place_po(world, "WIDGET", 5, expected)
        arrived = datetime.combine(expected + timedelta(days=days_late), time(6), tzinfo=UTC)
        receive_purchase_order_line(
            world, LOGISTICS, purchase_order_line_id=line, quantity=5, now=arrived
        )
    now = T0 + timedelta(days=10)
    open_line = place_po(world, "GADGET", 5, D0 + timedelta(days=15), now=now - timedelta(1))
    later = place_po(world, "GADGET", 5, D0 + timedelta(days=20), now=now + timedelta(1))
    assert refresh_receipt_forecasts(world, PLANNER, now=now) == 1
    with world:
        rows = {
            r.po_line_id: r for r in world.session.execute(select(PoLineReceiptForecast)).scalars()
        }
    assert set(rows) == {open_line} and later not in rows
    row = rows[open_line]
    assert (row.p50_date, row.p80_date, row.p90_date, row.method) == (
        D0 + timedelta(days=17),
        D0 + timedelta(days=19),
        D0 + timedelta(days=19),
        SUPPLIER_HISTORY,
    )


def test_an_overdue_line_is_forecast_no_earlier_than_today(world):
    done = place_po(world, "WIDGET", 5, D0 + timedelta(days=1))
    receive_purchase_order_line(
        world, LOGISTICS, purchase_order_line_id=done, quantity=5, now=T0 + timedelta(days=1)
    )
    overdue = place_po(world, "GADGET", 5, D0 + timedelta(days=2))
    now = T0 + timedelta(days=9)  # 7 days past its date; nothing was ever that late
    refresh_receipt_forecasts(world, PLANNER, now=now)
    with world:
        row = world.session.get(PoLineReceiptForecast, overdue)
        assert row is not None and row.p50_date == row.p90_date == now.date()


def test_without_any_completed_line_nothing_is_forecast(world):
    place_po(world, "GADGET", 5, D0 + timedelta(days=5))
    assert refresh_receipt_forecasts(world, PLANNER, now=T0 + timedelta(days=1)) == 0


# --- the simulated world in both modes, and the measure ------------------------------------------


@pytest.fixture(scope="module")
def two_worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The small world's first 70 days under each policy (its opening stock lasts about six
    weeks, so backorders come in the second month)."""
    folder = tmp_path_factory.mktemp("inbound-worlds")
    urls = {}
    for mode in ("nominal", "p80"):
        policy = folder / f"{mode}.toml"
        text = (Path(__file__).parents[2] / "erp_core" / "policy_default.toml").read_text()
        policy.write_text(
            text.replace('inbound_quantile = "nominal"', f'inbound_quantile = "{mode}"')
        )
        settings = Settings(
            database_url=f"sqlite:///{folder / mode}.db", var_dir=folder / mode, policy_path=policy
        )
        simulate(settings, "small", days=70, seed=7)
        urls[mode] = settings.database_url
    return urls


def test_only_the_p80_world_refreshes_forecasts_and_its_backorders_read_them(two_worlds):
    counts = {}
    for mode, url in two_worlds.items():
        uow = UnitOfWork.from_url(url)
        with uow:
            counts[mode] = (
                uow.session.execute(select(func.count(PoLineReceiptForecast.po_line_id))).scalar(),
                uow.session.execute(
                    select(func.count(AuditEntry.id)).where(
                        AuditEntry.action == "record_receipt_forecasts"
                    )
                ).scalar(),
            )
        uow.engine.dispose()
    assert counts["nominal"] == (0, 0)
    forecasts, refreshes = counts["p80"]
    assert forecasts > 20 and refreshes >= 50  # one a day, once some line was completed


def test_the_measure_agrees_with_the_simulators_truth(two_worlds):
    """The ERP-side count of kept backorder promises equals the one the simulator's own plans
    give (promised and actual ship days of the same lines)."""
    for url in two_worlds.values():
        uow = UnitOfWork.from_url(url)
        start = datetime(2025, 1, 6, tzinfo=UTC)
        end, as_of = start + timedelta(days=49), start + timedelta(days=70)
        with uow:
            found = backorder_promises(uow.session, start, end, as_of)
            backordered = {
                int(entity_id)
                for (entity_id,) in uow.session.execute(
                    select(AuditEntry.entity_id).where(AuditEntry.action == "backorder")
                )
            }
        uow.engine.dispose()
        folder = Path(url.removeprefix("sqlite:///")).with_suffix(".truth")
        truth = pd.read_parquet(next(folder.glob("run-*/lines.parquet")))
        judged = truth.loc[
            truth["line_id"].isin(backordered)
            & (pd.to_datetime(truth["entered_on"]) < pd.Timestamp(end.date()))
            & ~truth["cancelled"].astype(bool)
            & (truth["cause"] != "never_promised")
        ]
        kept = judged["shipped_on"].notna() & (judged["shipped_on"] <= judged["promised_ship_date"])
        assert found.lines == len(judged) > 10
        assert found.shipped_by_promise == int(kept.sum())


def test_the_measure_refuses_a_window_past_what_is_known(sqlite_world):
    with sqlite_world, pytest.raises(InvalidValue) as refused:
        backorder_promises(sqlite_world.session, T0, T0 + timedelta(days=2), T0 + timedelta(1))
    assert refused.value.field == "end"


def test_purchase_orders_placed_by_admin_are_forecast_too(world):
    """The refresh reads every open line whoever placed it."""
    done = place_po(world, "WIDGET", 5, D0 + timedelta(days=1))
    receive_purchase_order_line(
        world, LOGISTICS, purchase_order_line_id=done, quantity=5, now=T0 + timedelta(days=2)
    )
    order = place_purchase_order(
        world,
        ADMIN,
        supplier_id="SUP1",
        location_id="EAST",
        lines=[PurchaseLineRequest("GADGET", 2)],
        now=T0 + timedelta(days=2),
    )
    assert refresh_receipt_forecasts(world, PLANNER, now=T0 + timedelta(days=3)) == 1
    with world:
        placed_by = world.session.get(PurchaseOrder, order)
        assert placed_by is not None and placed_by.placed_by == ADMIN.name
