"""Governed changes to captured orders: approvals, credit release, cancellation, overrides."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from erp_core.db.models import (
    ExceptionCase,
    LinePromise,
    OrderLine,
    PriceDecision,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, IllegalTransition, InvalidValue, PermissionDenied
from erp_core.policy import Actor
from erp_core.services.integrity import all_violations
from erp_core.services.order_changes import (
    cancel_order_lines,
    change_promise,
    decide_approval,
    override_allocation,
    release_backorder,
    release_credit_hold,
    request_expedite,
)
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import ADMIN, FINANCE, LOGISTICS, PLANNER, SALES, SERVICE, T0, stock
from tests.erp_core.support import assert_books_balance, balance, line_row

LATER = T0 + timedelta(hours=2)


def order(uow: UnitOfWork, customer: str, *lines: LineRequest, **kwargs):
    return capture_order(uow, SALES, customer_id=customer, lines=list(lines), now=T0, **kwargs)


def promises(uow: UnitOfWork, line_id: int) -> list[LinePromise]:
    with uow:
        return list(
            uow.session.execute(
                select(LinePromise).where(LinePromise.line_id == line_id).order_by(LinePromise.id)
            ).scalars()
        )


def test_finance_approves_a_discount_and_closes_its_exception(world):
    stock(world, "WIDGET", "WEST", 10)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 2, unit_price="7.00"))
    decision = decide_approval(
        world, FINANCE, approval_id=captured.approval_ids[0], approve=True, now=LATER
    )
    assert decision.status == "approved"
    approved = line_row(world, captured.lines[0].line_id)
    assert not approved.price_approval_pending
    assert approved.unit_price == Decimal("7.00")
    with world:
        case = world.session.get(ExceptionCase, captured.exception_ids[0])
        sources = (
            world.session.execute(
                select(PriceDecision.source)
                .where(PriceDecision.line_id == approved.id)
                .order_by(PriceDecision.id)
            )
            .scalars()
            .all()
        )
    assert (case.status, case.resolved_by) == ("resolved", FINANCE.name)
    assert sources == ["override", "approved"]


def test_rejected_discount_falls_back_to_the_tier_price(world):
    stock(world, "WIDGET", "WEST", 10)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 2, unit_price="7.00"))
    decide_approval(world, FINANCE, approval_id=captured.approval_ids[0], approve=False, now=LATER)
    rejected = line_row(world, captured.lines[0].line_id)
    assert (rejected.unit_price, rejected.discount_pct) == (Decimal("9.00"), Decimal("0"))
    assert not rejected.price_approval_pending


def test_sales_rep_cannot_approve_a_discount(world):
    stock(world, "WIDGET", "WEST", 10)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 2, unit_price="7.00"))
    with pytest.raises(PermissionDenied):
        decide_approval(
            world,
            Actor("rep-2", "sales_rep"),
            approval_id=captured.approval_ids[0],
            approve=True,
            now=LATER,
        )


def test_no_one_decides_their_own_request(world):
    stock(world, "WIDGET", "EAST", 10)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 2))
    approval_id = request_expedite(world, ADMIN, line_id=captured.lines[0].line_id, now=LATER)
    with pytest.raises(Conflict) as raised:
        decide_approval(world, ADMIN, approval_id=approval_id, approve=True, now=LATER)
    assert raised.value.field == "actor"


def test_a_decided_approval_cannot_be_decided_again(world):
    stock(world, "WIDGET", "WEST", 10)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 2, unit_price="7.00"))
    decide_approval(world, FINANCE, approval_id=captured.approval_ids[0], approve=True, now=LATER)
    with pytest.raises(IllegalTransition):
        decide_approval(
            world, FINANCE, approval_id=captured.approval_ids[0], approve=False, now=LATER
        )


def test_approved_expedite_moves_the_line_to_the_express_lane_and_keeps_the_first_promise(world):
    stock(world, "WIDGET", "EAST", 10)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 2))  # EAST -> west by truck, 4 days
    line_id = captured.lines[0].line_id
    approval_id = request_expedite(world, SALES, line_id=line_id, now=LATER)
    with world:
        case = world.session.execute(
            select(ExceptionCase).where(ExceptionCase.type == "expedite_approval")
        ).scalar_one()
    assert case.owner_role == "logistics"
    decide_approval(world, LOGISTICS, approval_id=approval_id, approve=True, now=LATER)
    history = promises(world, line_id)
    assert [p.reason for p in history] == ["capture", "expedite"]
    assert history[0].promised_delivery_date == date(2026, 3, 9)
    assert history[1].promised_delivery_date == date(2026, 3, 4)  # AIR: 1 business day


def test_released_credit_hold_allocates_the_lines(world):
    stock(world, "WIDGET", "WEST", 50)
    held = order(world, "C-SMALL", LineRequest("WIDGET", 11))
    assert held.credit_hold
    with pytest.raises(PermissionDenied):
        release_credit_hold(world, SALES, order_id=held.order_id, now=LATER)
    released = release_credit_hold(world, FINANCE, order_id=held.order_id, now=LATER)
    assert line_row(world, released[0]).state == "allocated"
    assert balance(world, "WIDGET", "WEST").reserved == 11
    with world:
        case = world.session.get(ExceptionCase, held.exception_ids[0])
    assert case.status == "resolved"


def test_cancelled_line_gives_its_stock_to_the_waiting_backorder(world):
    stock(world, "WIDGET", "WEST", 5)
    first = order(world, "C-BRONZE", LineRequest("WIDGET", 5))
    waiting = order(world, "C-GOLD", LineRequest("WIDGET", 5), allow_split=False)
    assert waiting.lines[0].state == "backordered"
    cancel_order_lines(world, SERVICE, order_id=first.order_id, now=LATER)
    assert line_row(world, first.lines[0].line_id).state == "cancelled"
    assert line_row(world, waiting.lines[0].line_id).state == "allocated"
    assert balance(world, "WIDGET", "WEST").reserved == 5
    assert_books_balance(world)


def test_cancel_refuses_a_line_of_another_order(world):
    stock(world, "WIDGET", "WEST", 5)
    first = order(world, "C-GOLD", LineRequest("WIDGET", 1))
    second = order(world, "C-GOLD", LineRequest("WIDGET", 1))
    with pytest.raises(InvalidValue) as raised:
        cancel_order_lines(
            world, SALES, order_id=first.order_id, now=LATER, line_ids=[second.lines[0].line_id]
        )
    assert raised.value.field == "line_ids"


def test_planner_overrides_allocation_in_favour_of_a_backorder(world):
    stock(world, "WIDGET", "WEST", 4)
    bronze = order(world, "C-BRONZE", LineRequest("WIDGET", 4))
    gold = order(world, "C-GOLD", LineRequest("WIDGET", 4), allow_split=False)
    args = dict(
        to_line_id=gold.lines[0].line_id,
        from_line_id=bronze.lines[0].line_id,
        now=LATER,
        reason="key account launch",
    )
    with pytest.raises(PermissionDenied):
        override_allocation(world, SALES, **args)
    override_allocation(world, PLANNER, **args)
    assert line_row(world, gold.lines[0].line_id).state == "allocated"
    assert line_row(world, bronze.lines[0].line_id).state == "backordered"
    assert_books_balance(world)


def test_manual_backorder_release_needs_free_stock(world):
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 3))
    line_id = captured.lines[0].line_id
    with pytest.raises(Conflict) as raised:
        release_backorder(world, PLANNER, line_id=line_id, now=LATER)
    assert raised.value.field == "line_id"
    # Stock found by a count is released to the waiting line by priority on its own.
    stock(world, "WIDGET", "WEST", 3, at=LATER)
    assert line_row(world, line_id).state == "allocated"


def test_planner_releases_what_is_free_and_the_rest_keeps_waiting(world):
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 5), allow_split=False)
    line_id = captured.lines[0].line_id
    stock(world, "WIDGET", "WEST", 3, at=LATER)  # too little for the whole line: not released
    assert line_row(world, line_id).state == "backordered"
    release_backorder(world, PLANNER, line_id=line_id, now=LATER)
    with world:
        family = (
            world.session.execute(
                select(OrderLine)
                .where(OrderLine.order_id == captured.order_id)
                .order_by(OrderLine.id)
            )
            .scalars()
            .all()
        )
        assert all_violations(world.session) == []
    assert [(row.quantity, row.state) for row in family] == [(3, "allocated"), (2, "backordered")]
    assert family[1].parent_line_id == line_id
    assert [p.reason for p in promises(world, family[1].id)] == ["partial_release"]
    assert balance(world, "WIDGET", "WEST").reserved == 3


def test_promise_change_is_a_new_row_and_the_first_promise_stays(world):
    stock(world, "WIDGET", "WEST", 5)
    captured = order(world, "C-GOLD", LineRequest("WIDGET", 1))
    line_id = captured.lines[0].line_id
    with pytest.raises(PermissionDenied):
        change_promise(
            world,
            SALES,
            line_id=line_id,
            promised_ship_date="2026-03-05",
            promised_delivery_date="2026-03-06",
            reason="dock closed",
            now=LATER,
        )
    with pytest.raises(InvalidValue) as raised:
        change_promise(
            world,
            SERVICE,
            line_id=line_id,
            promised_ship_date="2026-03-05",
            promised_delivery_date="2026-03-04",
            reason="dock closed",
            now=LATER,
        )
    assert raised.value.field == "promised_delivery_date"
    change_promise(
        world,
        SERVICE,
        line_id=line_id,
        promised_ship_date="2026-03-05",
        promised_delivery_date="2026-03-06",
        reason="dock closed",
        now=LATER,
    )
    history = promises(world, line_id)
    assert [(p.promised_ship_date, p.reason) for p in history] == [
        (date(2026, 3, 3), "capture"),
        (date(2026, 3, 5), "dock closed"),
    ]
