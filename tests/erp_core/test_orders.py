"""Order capture: pricing, credit, available-to-promise, promises, backorders, bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from erp_core.db.models import (
    ApprovalRequest,
    ExceptionCase,
    LinePromise,
    OrderLine,
    PriceDecision,
    Reservation,
    SalesOrder,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue, NotFound, PermissionDenied
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import FINANCE, LOGISTICS, SALES, T0, stock
from tests.erp_core.support import assert_books_balance, balance, count, row


def order(uow: UnitOfWork, customer: str = "C-GOLD", *lines: LineRequest, **kwargs):
    return capture_order(
        uow, SALES, customer_id=customer, lines=list(lines), now=kwargs.pop("now", T0), **kwargs
    )


def test_tier_price_and_quantity_break_are_applied(world):
    stock(world, "WIDGET", "WEST", 500)
    small = order(world, "C-GOLD", LineRequest("WIDGET", 99))
    large = order(world, "C-GOLD", LineRequest("WIDGET", 100))
    bronze = order(world, "C-BRONZE", LineRequest("WIDGET", 100))
    no_tier_entry = order(world, "C-GOLD", LineRequest("GADGET", 1))
    assert Decimal(small.lines[0].unit_price) == Decimal("9.00")
    assert Decimal(large.lines[0].unit_price) == Decimal("8.00")
    assert Decimal(bronze.lines[0].unit_price) == Decimal("10.00")
    assert Decimal(no_tier_entry.lines[0].unit_price) == Decimal("40.00")


def test_every_price_is_recorded_with_who_decided_it(world):
    stock(world, "WIDGET", "WEST", 10)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 2, unit_price="8.50"))
    with world:
        decision = world.session.execute(
            select(PriceDecision).where(PriceDecision.line_id == captured.lines[0].line_id)
        ).scalar_one()
    assert decision.source == "override"
    assert decision.decided_by == SALES.name
    assert decision.discount_pct == Decimal("5.56")
    assert not captured.lines[0].price_approval_pending


def test_discount_beyond_threshold_waits_for_finance_approval(world):
    stock(world, "WIDGET", "WEST", 10)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 2, unit_price="7.00"))
    assert captured.lines[0].price_approval_pending
    assert len(captured.approval_ids) == 1
    with world:
        approval = world.session.get(ApprovalRequest, captured.approval_ids[0])
        case = world.session.get(ExceptionCase, approval.exception_id)
    assert approval.kind == "discount" and approval.status == "pending"
    assert case.type == "discount_approval" and case.owner_role == "finance"
    # The stock is still reserved so the customer does not lose it while finance decides.
    assert captured.lines[0].state == "allocated"


def test_credit_limit_is_inclusive_and_exceeding_it_holds_the_order(world):
    stock(world, "WIDGET", "WEST", 50)
    at_limit = order(world, "C-SMALL", LineRequest("WIDGET", 10))  # 10 x 10.00 = 100
    assert not at_limit.credit_hold
    held = order(world, "C-SMALL", LineRequest("WIDGET", 1))  # exposure 100 + 10 > 100
    assert held.credit_hold
    assert [line.state for line in held.lines] == ["credit_hold"]
    case = row(world, ExceptionCase, held.exception_ids[0])
    reserved = count(world, Reservation, Reservation.line_id == held.lines[0].line_id)
    assert case.type == "credit_hold" and case.owner_role == "finance"
    assert reserved == 0
    assert balance(world, "WIDGET", "WEST").reserved == 10


def test_home_location_is_preferred_when_it_has_stock(world):
    stock(world, "WIDGET", "WEST", 5)
    stock(world, "WIDGET", "EAST", 50)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 5))
    assert captured.lines[0].location_id == "WEST"
    assert balance(world, "WIDGET", "WEST").reserved == 5


def test_another_location_fills_the_line_when_home_is_empty(world):
    stock(world, "WIDGET", "EAST", 50)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 5))
    line = captured.lines[0]
    assert (line.location_id, line.state) == ("EAST", "allocated")
    # EAST -> west is 4 business days: Tuesday 3 March + 4 = Monday 9 March.
    assert line.promised_ship_date == "2026-03-03"
    assert line.promised_delivery_date == "2026-03-09"


def test_line_is_split_across_locations_before_anything_is_backordered(world):
    stock(world, "WIDGET", "WEST", 5)
    stock(world, "WIDGET", "EAST", 3)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 10))
    parts = [(line.location_id, line.quantity, line.state) for line in captured.lines]
    assert parts == [("WEST", 5, "allocated"), ("EAST", 3, "allocated"), ("WEST", 2, "backordered")]
    assert all(line.parent_line_id == captured.lines[0].line_id for line in captured.lines[1:])
    assert sum(line.quantity for line in captured.lines) == 10


def test_order_that_may_not_be_split_waits_whole(world):
    stock(world, "WIDGET", "WEST", 5)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 10), allow_split=False)
    assert [(line.quantity, line.state) for line in captured.lines] == [(10, "backordered")]
    assert balance(world, "WIDGET", "WEST").reserved == 0


def test_order_after_cutoff_on_friday_ships_monday(world):
    stock(world, "WIDGET", "WEST", 5)
    friday_after_cutoff = datetime(2026, 3, 6, 15, 30, tzinfo=UTC)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 1), now=friday_after_cutoff)
    assert captured.lines[0].promised_ship_date == "2026-03-09"
    assert captured.lines[0].promised_delivery_date == "2026-03-10"


def test_pick_backlog_beyond_capacity_pushes_the_ship_date(world):
    stock(world, "WIDGET", "WEST", 50)
    ship_dates = [
        order(world, "C-GOLD", LineRequest("WIDGET", 1)).lines[0].promised_ship_date
        for _ in range(5)
    ]
    # WEST picks 2 lines a day: lines 1-2 ship Tuesday, 3-4 Wednesday, 5 Thursday.
    assert ship_dates == ["2026-03-03", "2026-03-03", "2026-03-04", "2026-03-04", "2026-03-05"]


def test_line_without_stock_is_backordered_with_a_promise_from_supplier_lead_time(world):
    captured = order(world, "C-GOLD", LineRequest("GADGET", 3))
    line = captured.lines[0]
    assert line.state == "backordered"
    # No receipt is scheduled: SUP1's 10-day lead time gives Friday 13 March; put away that day,
    # picked Monday 16 March, delivered Tuesday 17 March.
    assert (line.promised_ship_date, line.promised_delivery_date) == ("2026-03-16", "2026-03-17")
    with world:
        case = world.session.get(ExceptionCase, captured.exception_ids[0])
    assert case.type == "shortage" and case.owner_role == "planner" and case.severity == "high"


def test_requested_date_is_kept_beside_the_promise(world):
    stock(world, "WIDGET", "WEST", 5)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 1), requested_date="2026-03-04")
    with world:
        line = world.session.get(OrderLine, captured.lines[0].line_id)
        promises = (
            world.session.execute(select(LinePromise).where(LinePromise.line_id == line.id))
            .scalars()
            .all()
        )
    assert line.requested_date == date(2026, 3, 4)
    assert len(promises) == 1 and promises[0].reason == "capture"


@pytest.mark.parametrize(
    ("customer", "line", "field", "error"),
    [
        ("C-NOPE", LineRequest("WIDGET", 1), "customer_id", NotFound),
        ("C-GOLD", LineRequest("NOPE", 1), "lines[1].sku", NotFound),
        ("C-GOLD", LineRequest("WIDGET", 0), "lines[1].quantity", InvalidValue),
        ("C-GOLD", LineRequest("WIDGET", -3), "lines[1].quantity", InvalidValue),
        ("C-GOLD", LineRequest("WIDGET", "2.5"), "lines[1].quantity", InvalidValue),  # type: ignore[arg-type]
        ("C-GOLD", LineRequest("WIDGET", 1, unit_price="abc"), "lines[1].unit_price", InvalidValue),
        ("C-GOLD", LineRequest("WIDGET", 1, unit_price="0"), "lines[1].unit_price", InvalidValue),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(world, customer, line, field, error):
    stock(world, "WIDGET", "WEST", 5)
    with pytest.raises(error) as raised:
        order(world, customer, LineRequest("WIDGET", 1), line)
    assert raised.value.field == field
    assert count(world, SalesOrder) == 0
    assert count(world, OrderLine) == 0
    assert balance(world, "WIDGET", "WEST").reserved == 0


def test_unparseable_requested_date_is_refused(world):
    with pytest.raises(InvalidValue) as raised:
        order(world, "C-GOLD", LineRequest("WIDGET", 1), requested_date="2026-13-01")
    assert raised.value.field == "requested_date"


def test_order_without_lines_is_refused(world):
    with pytest.raises(InvalidValue) as raised:
        order(world, "C-GOLD")
    assert raised.value.field == "lines"


def test_role_without_capture_permission_is_refused(world):
    for actor in (LOGISTICS, FINANCE):
        with pytest.raises(PermissionDenied):
            capture_order(
                world, actor, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 1)], now=T0
            )
    assert count(world, SalesOrder) == 0


def test_retry_with_the_same_idempotency_key_returns_the_first_order(world):
    stock(world, "WIDGET", "WEST", 5)
    first = order(world, "C-GOLD", LineRequest("WIDGET", 2), idempotency_key="po-4711")
    retry = order(world, "C-GOLD", LineRequest("WIDGET", 2), idempotency_key="po-4711")
    assert not first.replayed and retry.replayed
    assert retry == first
    assert count(world, SalesOrder) == 1
    assert balance(world, "WIDGET", "WEST").reserved == 2


def test_same_idempotency_key_with_another_payload_is_a_conflict(world):
    stock(world, "WIDGET", "WEST", 5)
    order(world, "C-GOLD", LineRequest("WIDGET", 2), idempotency_key="po-4711")
    with pytest.raises(Conflict) as raised:
        order(world, "C-GOLD", LineRequest("WIDGET", 3), idempotency_key="po-4711")
    assert raised.value.field == "idempotency_key"
    assert count(world, SalesOrder) == 1


def test_naive_clock_is_refused(world):
    with pytest.raises(InvalidValue) as raised:
        order(world, "C-GOLD", LineRequest("WIDGET", 1), now=datetime(2026, 3, 3, 9))
    assert raised.value.field == "now"


def test_books_balance_after_a_day_of_orders(world):
    stock(world, "WIDGET", "WEST", 7)
    stock(world, "WIDGET", "EAST", 4)
    for customer, quantity in [("C-GOLD", 3), ("C-EAST", 5), ("C-BRONZE", 6), ("C-SMALL", 20)]:
        order(world, customer, LineRequest("WIDGET", quantity))
    assert_books_balance(world)
