"""KPIs: hand-made histories built through the real services, each KPI checked against the number
worked out by hand; a simulated world checked for shares within [0, 1] that agree with each other;
``erpx kpis`` on the command line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from erp_core.cli import app
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.kpis import DEFINITIONS, DIMENSIONS, Kpi, KpiReport, compute_kpis, is_false_alarm
from erp_core.services.exceptions import open_exception, resolve_exception
from erp_core.services.fulfilment import deliver, pack, pick, ship
from erp_core.services.inventory import record_cycle_count
from erp_core.services.order_changes import change_promise, decide_approval, request_expedite
from erp_core.services.orders import CapturedOrder, LineRequest, capture_order
from erp_core.services.returns import authorise_return, dispose_return, receive_return
from erp_core.settings import get_settings
from tests.conftest import ADMIN, LOGISTICS, SALES, SERVICE, T0, stock

# March 2026; T0 is Tuesday 2026-03-03 09:00 UTC, every location in the hand-made world is on UTC.
START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


# --- helpers -----------------------------------------------------------------------------------


def order(uow: UnitOfWork, sku: str, quantity: int, customer_id: str = "C-GOLD") -> CapturedOrder:
    return capture_order(
        uow, SALES, customer_id=customer_id, lines=[LineRequest(sku, quantity)], now=T0
    )


def fulfil(
    uow: UnitOfWork,
    captured: CapturedOrder,
    *,
    shipped_at: datetime,
    delivered_at: datetime | None,
    picked: int | None = None,
    freight_cost: str | None = None,
) -> int:
    """Pick (``picked`` units of the order's one line, all by default), pack and ship at
    ``shipped_at``, deliver at ``delivered_at``; returns the shipment id."""
    (line,) = captured.lines
    picks = {line.line_id: line.quantity if picked is None else picked}
    picking = shipped_at - 2 * HOUR
    sid = pick(uow, LOGISTICS, order_id=captured.order_id, picks=picks, now=picking).shipment_id
    pack(uow, LOGISTICS, shipment_id=sid, occurred_at=picking + HOUR, now=picking + HOUR)
    ship(uow, LOGISTICS, shipment_id=sid, occurred_at=shipped_at, now=shipped_at)
    if delivered_at is not None:
        deliver(
            uow,
            LOGISTICS,
            shipment_id=sid,
            occurred_at=delivered_at,
            now=delivered_at,
            freight_cost=freight_cost,
        )
    return sid


def kpis(uow: UnitOfWork, start: datetime = START, end: datetime = END, **kw: Any) -> KpiReport:
    return compute_kpis(uow, start, end, **kw)


def number(value: float | None) -> float:
    """A value the test knows is there."""
    assert value is not None
    return value


def share(kpi: Kpi) -> tuple[float | None, int | float | None, int | float | None]:
    return kpi.value, kpi.numerator, kpi.denominator


# --- lines, orders and their promises ----------------------------------------------------------


def test_a_line_shipped_and_delivered_by_its_promise_in_full_counts_in_every_share(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 100)
    captured = order(world, "WIDGET", 10)  # promised: ship 03-03, deliver 03-04
    delivered_at = T0 + DAY + 5 * HOUR  # 03-04 14:00
    fulfil(world, captured, shipped_at=T0 + 4 * HOUR, delivered_at=delivered_at)

    report = kpis(world)

    for name in ("line_fill_rate", "on_time_shipment", "otif", "order_otif"):
        assert share(report.kpi(name)) == (1.0, 1, 1), name
    assert share(report.kpi("unit_fill_rate")) == (1.0, 10, 10)
    cycle = report.kpi("order_cycle_time")  # 03-03 09:00 -> 03-04 14:00: 29 hours
    assert (cycle.value, cycle.denominator) == (pytest.approx(29 / 24), 1)
    assert cycle.details["p90_days"] == pytest.approx(29 / 24)
    assert report.kpi("otif").details == {"on_time": 1, "in_full": 1}


def test_a_late_line_is_judged_against_its_first_promise_even_after_the_promise_moved(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 100)
    captured = order(world, "WIDGET", 5)  # first promise: ship 03-03, deliver 03-04
    change_promise(
        world,
        SERVICE,
        line_id=captured.lines[0].line_id,
        promised_ship_date="2026-03-10",
        promised_delivery_date="2026-03-11",
        reason="customer asked to wait",
        now=T0 + HOUR,
    )
    # Ships 03-05 and arrives 03-06: on time for the new promise, late for the first.
    fulfil(world, captured, shipped_at=T0 + 2 * DAY, delivered_at=T0 + 3 * DAY)

    report = kpis(world)

    assert share(report.kpi("on_time_shipment")) == (0.0, 0, 1)
    assert share(report.kpi("otif")) == (0.0, 0, 1)
    assert report.kpi("otif").details == {"on_time": 0, "in_full": 1}
    assert share(report.kpi("order_otif")) == (0.0, 0, 1)
    # Still due on 03-03 (first promise), so in the period's fill rates: complete from stock in
    # its first shipment (fill rate does not judge time) but no unit left by 03-03.
    assert share(report.kpi("line_fill_rate")) == (1.0, 1, 1)
    assert share(report.kpi("unit_fill_rate")) == (0.0, 0, 5)


def test_a_short_picked_line_is_not_in_full_and_its_remainder_ages_as_a_backorder(
    world: UnitOfWork,
) -> None:
    stock(world, "GADGET", "WEST", 10)
    captured = order(world, "GADGET", 10)  # promised: ship 03-03, deliver 03-04
    # 6 found at 10:00 on 03-03: 4 split off, backordered (nothing else in stock, no PO).
    fulfil(world, captured, picked=6, shipped_at=T0 + 3 * HOUR, delivered_at=T0 + DAY)

    report = kpis(world)

    assert share(report.kpi("line_fill_rate")) == (0.0, 0, 1)
    assert share(report.kpi("unit_fill_rate")) == (0.6, 6, 10)
    assert share(report.kpi("on_time_shipment")) == (1.0, 1, 1)  # its first shipment was on time
    otif = report.kpi("otif")
    assert share(otif) == (0.0, 0, 1)
    assert otif.details == {"on_time": 1, "in_full": 0}
    assert share(report.kpi("order_otif")) == (0.0, 0, 1)
    # The order is not complete (4 units wait): no cycle time yet, None and not 0.
    cycle = report.kpi("order_cycle_time")
    assert (cycle.value, cycle.denominator) == (None, 0)
    # Backordered at the pick, 03-03 10:00; at 04-01 00:00 it is 28 days 14 hours old.
    aging = report.kpi("backorder_aging")
    assert (aging.value, aging.denominator) == (pytest.approx(28 + 14 / 24), 1)
    assert aging.details["lines_15-30_days"] == 1


def test_backorder_aging_buckets_the_lines_backordered_at_the_end_of_the_period(
    world: UnitOfWork,
) -> None:
    # No stock anywhere: each line is backordered at capture (03-03, 03-23 and 03-30, 09:00).
    for days in (0, 20, 27):
        capture_order(
            world,
            SALES,
            customer_id="C-GOLD",
            lines=[LineRequest("GADGET", 2)],
            now=T0 + days * DAY,
        )

    march = kpis(world).kpi("backorder_aging")
    may = kpis(world, end=datetime(2026, 5, 1, tzinfo=UTC)).kpi("backorder_aging")

    # Ages at 04-01 00:00: 28.625, 8.625 and 1.625 days.
    assert (march.value, march.denominator) == (pytest.approx(8.625), 3)
    buckets = {k: v for k, v in march.details.items() if k.startswith("lines_")}
    assert buckets == {
        "lines_0-7_days": 1,
        "lines_8-14_days": 1,
        "lines_15-30_days": 1,
        "lines_>30_days": 0,
    }
    assert may.details["lines_>30_days"] == 3  # 30 days older each
    # Lines captured after the end of a period are not yet backordered in it.
    early = kpis(world, end=T0 + 10 * DAY).kpi("backorder_aging")
    assert early.denominator == 1


def test_a_period_without_events_gives_none_not_zero(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 100)
    order(world, "WIDGET", 10)

    report = kpis(world, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))

    assert [kpi.name for kpi in report.kpis] == list(DEFINITIONS)
    for kpi in report.kpis:
        assert kpi.value is None, kpi.name
        assert kpi.denominator == 0, kpi.name
        assert kpi.definition == DEFINITIONS[kpi.name]
    json.dumps(report.as_dict())  # plain values only


def test_grouping_splits_each_kpi_by_its_dimension_and_leaves_out_kpis_without_it(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 100)
    stock(world, "WIDGET", "EAST", 100)
    west = order(world, "WIDGET", 10)  # C-GOLD (gold, key_account) at WEST: ship 03-03
    east = order(world, "WIDGET", 4, customer_id="C-EAST")  # silver, field_sales, at EAST
    fulfil(world, west, shipped_at=T0 + 4 * HOUR, delivered_at=T0 + DAY)
    fulfil(world, east, shipped_at=T0 + 2 * DAY, delivered_at=T0 + 3 * DAY)  # 2 days late

    by_location = kpis(world, group_by="location")
    by_tier = kpis(world, group_by="customer_tier")
    by_carrier = kpis(world, group_by="carrier")

    assert share(by_location.kpi("on_time_shipment")) == (0.5, 1, 2)
    assert list(by_location.groups) == ["EAST", "WEST"]
    assert share(by_location.kpi("on_time_shipment", "WEST")) == (1.0, 1, 1)
    assert share(by_location.kpi("on_time_shipment", "EAST")) == (0.0, 0, 1)
    assert share(by_tier.kpi("otif", "gold")) == (1.0, 1, 1)
    assert share(by_tier.kpi("otif", "silver")) == (0.0, 0, 1)
    assert share(by_tier.kpi("order_otif", "silver")) == (0.0, 0, 1)
    assert share(by_carrier.kpi("on_time_shipment", "TRUCK")) == (0.5, 1, 2)
    names = {kpi.name for kpi in by_location.groups["WEST"]}
    assert "order_otif" not in names and "order_cycle_time" not in names  # orders: no location
    assert names == {name for name, dims in DIMENSIONS.items() if "location" in dims}
    with pytest.raises(KeyError):
        by_location.kpi("order_otif", "WEST")
    with pytest.raises(InvalidValue):
        kpis(world, group_by="region")


def test_an_order_split_across_a_backorder_is_judged_by_the_latest_date_first_promised(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 6)
    captured = order(world, "WIDGET", 10)  # 6 from stock (ship 03-03), 4 backordered
    assert [line.state for line in captured.lines] == ["allocated", "backordered"]

    report = kpis(world)

    # One ordered line, due when its last part was first promised (03-13, the supplier's 10
    # days), not filled from stock; nothing shipped yet.
    assert share(report.kpi("line_fill_rate")) == (0.0, 0, 1)
    assert share(report.kpi("unit_fill_rate")) == (0.0, 0, 10)
    assert report.kpi("backorder_aging").denominator == 1


# --- freight, stock, returns -------------------------------------------------------------------


def test_freight_variance_sums_over_standard_shipments_and_shows_expedited_apart(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 100)
    first = order(world, "WIDGET", 10)
    second = order(world, "WIDGET", 5)
    express = order(world, "WIDGET", 2, customer_id="C-EAST")  # WEST -> east, truck 120
    approval = request_expedite(world, SALES, line_id=express.lines[0].line_id, now=T0)
    decide_approval(world, LOGISTICS, approval_id=approval, approve=True, now=T0 + HOUR)
    # Planned 50 each on the truck lane; actual 55 and 40; the air lane plans 400, costs 460.
    fulfil(world, first, shipped_at=T0 + 4 * HOUR, delivered_at=T0 + DAY, freight_cost="55")
    fulfil(world, second, shipped_at=T0 + 4 * HOUR, delivered_at=T0 + DAY, freight_cost="40")
    fulfil(world, express, shipped_at=T0 + 4 * HOUR, delivered_at=T0 + DAY, freight_cost="460")

    freight = kpis(world).kpi("freight_variance")

    assert share(freight) == (pytest.approx(-5 / 100), pytest.approx(-5.0), pytest.approx(100.0))
    assert freight.details["shipments"] == 2
    assert freight.details["expedited_shipments"] == 1
    assert freight.details["expedited_variance_cost"] == pytest.approx(60.0)
    assert freight.details["expedited_variance"] == pytest.approx(60 / 400)


def test_inventory_turns_annualise_cost_shipped_over_the_time_weighted_stock_value(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 100)  # 100 x 5.00 on hand from 03-03 09:00
    captured = order(world, "WIDGET", 10)
    fulfil(world, captured, shipped_at=T0 + 3 * HOUR, delivered_at=T0 + DAY)  # 50.00 leaves
    end = datetime(2026, 3, 15, tzinfo=UTC)  # 14 days

    report = kpis(world, end=end)

    # 500 held for the 11.625 days left after 03-03 09:00, less 50 for the 11.5 days after
    # 12:00, averaged over 14 days; 50 shipped in 14 days is 50 * 365 / 14 a year.
    average = (500 * 11.625 - 50 * 11.5) / 14
    turns = report.kpi("inventory_turns")
    assert turns.denominator == pytest.approx(average)
    assert turns.numerator == pytest.approx(50 * 365 / 14)
    assert turns.value == pytest.approx(50 * 365 / 14 / average)
    # 90 on hand at 03-15 against 10 ordered in the 28 days before: 90 / (10 / 28) days.
    supply = report.kpi("days_of_supply")
    assert (supply.value, supply.denominator) == (pytest.approx(252.0), 1)


def test_inventory_accuracy_counts_within_two_percent_and_leaves_out_opening_balances(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 100)  # an opening balance: not a check of the books
    for counted, hours in ((100, 1), (98, 2), (90, 3)):  # exact; 2 off (2 %); 8 off
        record_cycle_count(
            world,
            LOGISTICS,
            sku="WIDGET",
            location_id="WEST",
            counted_quantity=counted,
            now=T0 + hours * HOUR,
        )

    accuracy = kpis(world).kpi("inventory_accuracy")

    assert share(accuracy) == (pytest.approx(2 / 3), 2, 3)


def test_return_cycle_time_runs_from_authorisation_to_disposal(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 100)
    captured = order(world, "WIDGET", 10)
    fulfil(world, captured, shipped_at=T0 + 3 * HOUR, delivered_at=T0 + DAY)
    line_id = captured.lines[0].line_id
    for authorised, days in ((T0 + 2 * DAY, 3), (T0 + 2 * DAY, 1)):
        rma = authorise_return(
            world, SERVICE, line_id=line_id, quantity=2, reason="damaged", now=authorised
        )
        receive_return(world, LOGISTICS, return_id=rma, now=authorised + HOUR)
        dispose_return(
            world, LOGISTICS, return_id=rma, disposition="scrap", now=authorised + days * DAY
        )

    returns = kpis(world).kpi("return_cycle_time")

    assert (returns.value, returns.denominator) == (pytest.approx(2.0), 2)  # median of 1 and 3
    assert returns.details["p90_days"] == pytest.approx(2.8)


# --- exceptions --------------------------------------------------------------------------------


def test_exception_resolution_time_and_alert_precision_follow_the_false_alarm_convention(
    world: UnitOfWork,
) -> None:
    # Three late-risk alerts from a model score (customer_service, 24 h SLA) and a shortage
    # (no score, planner, 24 h SLA), resolved 2, 10, 30 and 4 hours after opening.
    cases = [
        ("late_risk", 0.8, 2, "false_alarm: the carrier was on time"),
        ("late_risk", 0.6, 10, "expedited the order"),
        ("late_risk", 0.9, 30, "  False alarm - duplicate order"),
        ("shortage", None, 4, "stock found in another bin"),
    ]
    with world:
        opened = [
            open_exception(world, ADMIN, T0, kind, score=score, location_id="WEST").id
            for kind, score, _hours, _text in cases
        ]
        world.commit()
    for case_id, (_kind, _score, hours, text) in zip(opened, cases, strict=True):
        resolve_exception(world, ADMIN, case_id, text, T0 + hours * HOUR)

    report = kpis(world)
    by_type = kpis(world, group_by="exception_type")

    resolution = report.kpi("exception_resolution_time")
    assert (resolution.value, resolution.denominator) == (pytest.approx(7.0), 4)  # 4 and 10
    assert resolution.details["p90_hours"] == pytest.approx(24.0)  # 10 + 0.7 * (30 - 10)
    assert resolution.details["within_sla_share"] == pytest.approx(3 / 4)  # 30 h is late
    assert share(report.kpi("alert_precision")) == (pytest.approx(1 / 3), 1, 3)
    assert by_type.kpi("exception_resolution_time", "shortage").value == pytest.approx(4.0)
    assert share(by_type.kpi("alert_precision", "shortage")) == (None, 0, 0)


def test_a_false_alarm_is_a_resolution_starting_with_false_alarm() -> None:
    assert is_false_alarm("false_alarm")
    assert is_false_alarm(" False Alarm: fine")
    assert not is_false_alarm("not a false alarm")
    assert not is_false_alarm(None)


def test_a_period_that_ends_before_it_starts_is_refused(world: UnitOfWork) -> None:
    with pytest.raises(InvalidValue) as refused:
        compute_kpis(world, END, START)
    assert refused.value.field == "start"
    with pytest.raises(InvalidValue):
        compute_kpis(world, datetime(2026, 3, 1), END)


# --- a simulated world -------------------------------------------------------------------------

SHARES = (
    "line_fill_rate",
    "unit_fill_rate",
    "on_time_shipment",
    "otif",
    "order_otif",
    "inventory_accuracy",
)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> UnitOfWork:
    from erp_core.settings import Settings
    from erp_core.simulate.run import simulate

    folder = tmp_path_factory.mktemp("kpi-world")
    settings = Settings(database_url=f"sqlite:///{folder / 'world.db'}", var_dir=folder)
    simulate(settings, "small", days=20, seed=7)
    return UnitOfWork.from_url(settings.database_url)


def test_kpis_of_a_simulated_world_are_shares_within_bounds_that_agree(
    simulated: UnitOfWork,
) -> None:
    started = time.perf_counter()
    report = compute_kpis(
        simulated, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)
    )
    assert time.perf_counter() - started < 10

    for name in SHARES:
        kpi = report.kpi(name)
        assert kpi.denominator, name  # the world has events of every kind
        assert 0 <= number(kpi.value) <= 1, name
        assert kpi.value == pytest.approx(number(kpi.numerator) / kpi.denominator), name
    otif = report.kpi("otif")
    on_time, in_full = number(otif.details["on_time"]), number(otif.details["in_full"])
    assert number(otif.numerator) <= min(on_time, in_full)
    assert number(report.kpi("order_otif").denominator) <= number(otif.denominator)
    units = number(report.kpi("unit_fill_rate").denominator)
    assert units >= number(report.kpi("line_fill_rate").denominator)  # a line has >= 1 unit
    cycle = report.kpi("order_cycle_time")
    assert 0 < number(cycle.value) <= number(cycle.details["p90_days"])
    aging = report.kpi("backorder_aging")
    buckets = sum(number(v) for k, v in aging.details.items() if k.startswith("lines_"))
    assert buckets == aging.denominator
    assert number(report.kpi("inventory_turns").value) > 0
    grouped = compute_kpis(
        simulated,
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 2, 1, tzinfo=UTC),
        group_by="location",
    )
    parts = [grouped.kpi("otif", group) for group in grouped.groups]
    assert sum(number(kpi.denominator) for kpi in parts) == otif.denominator
    assert sum(number(kpi.numerator) for kpi in parts) == otif.numerator


# --- erpx kpis ---------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ("ERPX_DATABASE_URL", "ERPX_POLICY_PATH"):
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "var" / "erpx.db"
    monkeypatch.setenv("ERPX_DATABASE_URL", f"sqlite:///{database}")
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--from", "2026-13-01", "--to", "2026-02-01"], "--from='2026-13-01'"),
        (["--from", "2026-01-01", "--to", "soon"], "--to='soon'"),
        (["--from", "2026-02-01", "--to", "2026-02-01"], "--from='2026-02-01'"),
        (["--from", "2026-01-01", "--to", "2026-02-01", "--by", "region"], "--by='region'"),
    ],
)
def test_erpx_kpis_refuses_a_bad_period_with_one_line_and_exit_code_2(
    cli_database: Path, args: list[str], named: str
) -> None:
    result = runner.invoke(app, ["kpis", *args])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and named in line
    assert "Traceback" not in result.output


def test_erpx_kpis_prints_a_table_or_the_report_as_json(cli_database: Path) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    table = runner.invoke(app, ["kpis", "--from", "2026-01-01", "--to", "2026-02-01"])
    assert table.exit_code == 0, table.output
    assert "line fill rate" in table.output and "alert precision" in table.output
    grouped = runner.invoke(
        app, ["kpis", "--from", "2026-01-01", "--to", "2026-02-01", "--by", "location", "--json"]
    )
    assert grouped.exit_code == 0, grouped.output
    data = json.loads(grouped.stdout)
    assert data["group_by"] == "location"
    assert data["start"] == "2026-01-01T00:00:00+00:00"
    assert {kpi["name"] for kpi in data["kpis"]} == set(DEFINITIONS)
    assert all(kpi["value"] is None for kpi in data["kpis"])  # an empty database


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC), "start"),
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), "end"),
    ],
)
def test_a_period_at_the_calendars_edge_is_refused_naming_the_bound(
    world: UnitOfWork, start: datetime, end: datetime, field: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        compute_kpis(world, start, end)
    assert refused.value.field == field
