"""Batch capture (``capture_orders``) leaves the database exactly as calling ``capture_order`` once
per order would: the same rows in every table with the same ids (orders, lines, prices,
promises, reservations, ledger, exceptions, approvals, audit trail), the same results and the
same refusals, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import DomainError, InvalidValue, NotFound, PermissionDenied
from erp_core.policy import Actor
from erp_core.services.orders import LineRequest, capture_order
from erp_core.services.orders_batch import OrderRequest, capture_orders
from tests.conftest import SALES, T0
from tests.erp_core.support import assert_books_balance, dump, one_by_one, same_outcomes


def single(uow: UnitOfWork, actor: Actor = SALES):  # type: ignore[no-untyped-def]
    return lambda r: capture_order(
        uow,
        actor,
        customer_id=r.customer_id,
        lines=r.lines,
        now=r.now,
        requested_date=r.requested_date,
        channel=r.channel,
        ship_to_region=r.ship_to_region,
        allow_split=r.allow_split,
        external_ref=r.external_ref,
    )


def day_of_orders() -> list[OrderRequest]:
    """Orders that allocate, split across locations, backorder, go over the credit limit, wait
    for a discount approval, or are refused (unknown customer or SKU, zero quantity, no lines),
    one after another so each sees what the earlier ones took."""
    at = [T0 + timedelta(minutes=m) for m in range(20)]
    return [
        OrderRequest("C-GOLD", [LineRequest("WIDGET", 60), LineRequest("GADGET", 5)], at[0]),
        OrderRequest("C-NOBODY", [LineRequest("WIDGET", 1)], at[1]),
        OrderRequest("C-BRONZE", [LineRequest("WIDGET", 70)], at[2]),  # WEST runs short
        OrderRequest("C-EAST", [LineRequest("WIDGET", 30)], at[3], requested_date="2026-03-10"),
        OrderRequest("C-GOLD", [LineRequest("NOPE", 1)], at[4]),
        OrderRequest("C-GOLD", [LineRequest("WIDGET", 0)], at[5]),
        OrderRequest("C-SMALL", [LineRequest("WIDGET", 20)], at[6]),  # beyond its credit
        OrderRequest("C-GOLD", [], at[7]),
        OrderRequest("C-BRONZE", [LineRequest("GADGET", 40, Decimal("20.00"))], at[8]),
        OrderRequest("C-GOLD", [LineRequest("GADGET", 3)], at[9], ship_to_region="east"),
        OrderRequest("C-GOLD", [LineRequest("WIDGET", 5)], at[10], ship_to_region="mars"),
        OrderRequest("C-EAST", [LineRequest("WIDGET", 500)], at[11], allow_split=False),
    ]


def test_capturing_a_batch_writes_what_capturing_one_by_one_writes(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins
    orders = day_of_orders()

    singles = one_by_one(single(loop), orders)
    batched = capture_orders(batch, SALES, orders=orders)

    same_outcomes(singles, batched)
    refused = {i: type(o) for i, o in enumerate(batched) if isinstance(o, DomainError)}
    assert refused == {
        1: NotFound,
        4: NotFound,
        5: InvalidValue,
        7: InvalidValue,
        10: InvalidValue,  # no lane serves the region
    }
    captured = [o for o in batched if not isinstance(o, DomainError)]
    states = {line.state for order in captured for line in order.lines}
    assert {"allocated", "backordered", "credit_hold"} <= states
    assert any(order.approval_ids for order in captured)
    assert dump(batch) == dump(loop)
    assert_books_balance(batch)


def test_a_batch_by_a_role_without_the_permission_refuses_every_order(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins
    orders = day_of_orders()[:3]
    logistics = Actor("log-9", "logistics")

    singles = one_by_one(single(loop, logistics), orders)
    batched = capture_orders(batch, logistics, orders=orders)

    same_outcomes(singles, batched)
    assert all(isinstance(o, PermissionDenied) for o in batched)
    assert dump(batch) == dump(loop)


def test_an_order_refused_half_way_undoes_the_batch_and_captures_order_by_order(
    twins: tuple[UnitOfWork, UnitOfWork], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal no check foresaw (here: the promise arithmetic refusing the third order's
    location) leaves the database as the loop leaves it."""
    from erp_core.services import orders as orders_module

    real = orders_module.promise_for

    def refuse_the_second_order(**kwargs):  # type: ignore[no-untyped-def]
        if kwargs["entered_at"] == T0 + timedelta(minutes=2):
            raise InvalidValue("pick_capacity_per_day", 0, "must be > 0")
        return real(**kwargs)

    monkeypatch.setattr(orders_module, "promise_for", refuse_the_second_order)
    loop, batch = twins
    orders = day_of_orders()[:4]

    singles = one_by_one(single(loop), orders)
    batched = capture_orders(batch, SALES, orders=orders)

    assert isinstance(batched[2], InvalidValue)
    assert_books_balance(batch)
    if batch.dialect == "postgresql":
        # Sequences do not roll back: the undone batch leaves gaps in the ids (as a refused
        # single act does), so only what was written, not its ids, can match the loop's.
        assert [type(o) for o in batched] == [type(o) for o in singles]
        assert {t: len(rows) for t, rows in dump(batch).items()} == {
            t: len(rows) for t, rows in dump(loop).items()
        }
        return
    same_outcomes(singles, batched)
    assert dump(batch) == dump(loop)


def test_a_customers_orders_in_one_batch_reach_its_credit_limit_as_they_do_one_by_one(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    """The batch keeps each customer's exposure as a running sum: orders well inside the limit
    go without a query, those near it (exactly at it: not held) or beyond it are checked
    against the database, and a held order's case records the same exposure as the loop's."""
    loop, batch = twins
    at = [T0 + timedelta(minutes=m) for m in range(10)]
    widgets = [3, 4, 3, 1, 1]  # C-SMALL: 10.00 each, limit 100: 30, 70, 100 (at it), 110, 120
    orders = [
        OrderRequest("C-SMALL", [LineRequest("WIDGET", n)], at[i]) for i, n in enumerate(widgets)
    ]
    orders.insert(2, OrderRequest("C-GOLD", [LineRequest("WIDGET", 2)], at[7]))

    singles = one_by_one(single(loop), orders)
    batched = capture_orders(batch, SALES, orders=orders)

    same_outcomes(singles, batched)
    held = [o.credit_hold for o in batched if not isinstance(o, DomainError)]
    assert held == [False, False, False, False, True, True]
    assert dump(batch) == dump(loop)
    assert_books_balance(batch)
