"""Procure to stock: purchase orders go on order and feed the promise of backorders; receipts
move stock on hand, record supplier lead time and lateness, and release backorders by priority."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from erp_core.db.models import (
    AuditEntry,
    InventoryMovement,
    OrderLine,
    PurchaseOrder,
    PurchaseOrderLine,
    Receipt,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue, NotFound, PermissionDenied
from erp_core.policy import Actor
from erp_core.services.orders import LineRequest, capture_order
from erp_core.services.purchasing import (
    PurchaseLineRequest,
    cancel_purchase_order,
    place_purchase_order,
    receive_purchase_order_line,
)
from tests.conftest import ADMIN, LOGISTICS, PLANNER, SALES, T0
from tests.erp_core.support import assert_books_balance, balance, count, line_row, row

D0 = T0.date()  # Tuesday 2026-03-03


def place(
    uow: UnitOfWork,
    *lines: PurchaseLineRequest,
    actor: Actor = PLANNER,
    location: str = "WEST",
    now=T0,
) -> int:
    return place_purchase_order(
        uow, actor, supplier_id="SUP1", location_id=location, lines=list(lines), now=now
    )


def po_line_ids(uow: UnitOfWork, purchase_order_id: int) -> list[int]:
    with uow:
        return list(
            uow.session.execute(
                select(PurchaseOrderLine.id)
                .where(PurchaseOrderLine.purchase_order_id == purchase_order_id)
                .order_by(PurchaseOrderLine.id)
            ).scalars()
        )


def receive(uow: UnitOfWork, po_line_id: int, quantity: int, now=T0, actor: Actor = LOGISTICS):
    return receive_purchase_order_line(
        uow, actor, purchase_order_line_id=po_line_id, quantity=quantity, now=now
    )


def test_placing_a_po_puts_its_quantity_on_order_with_defaults_from_master_data(world):
    po_id = place(
        world,
        PurchaseLineRequest("WIDGET", 40),
        PurchaseLineRequest("GADGET", 7, unit_cost="18.50", expected_date="2026-03-06"),
    )
    assert balance(world, "WIDGET") == (0, 0, 40)
    assert balance(world, "GADGET") == (0, 0, 7)
    with world:
        order = world.session.get(PurchaseOrder, po_id)
        widget, gadget = order.lines
        placed = world.session.execute(
            select(AuditEntry).where(
                AuditEntry.entity_type == "purchase_order", AuditEntry.entity_id == str(po_id)
            )
        ).scalar_one()
    assert order.status == "open" and order.placed_by == PLANNER.name
    assert widget.unit_cost == Decimal("5.00")  # the product's unit cost
    assert widget.expected_date == D0 + timedelta(days=10)  # supplier's nominal lead time
    assert gadget.unit_cost == Decimal("18.50") and gadget.expected_date == date(2026, 3, 6)
    assert (placed.action, placed.to_state, placed.actor) == (
        "place_purchase_order",
        "open",
        "plan-1",
    )
    assert_books_balance(world)


def test_po_lines_written_in_one_go_keep_line_order_and_each_its_own_ledger_movement(world):
    """The lines of a purchase order are inserted together: their ids follow the line order,
    across orders too, and each line's on-order movement names that line."""
    first = place(world, PurchaseLineRequest("WIDGET", 40), PurchaseLineRequest("GADGET", 7))
    second = place(world, PurchaseLineRequest("GADGET", 3), PurchaseLineRequest("WIDGET", 11))
    ids = po_line_ids(world, first) + po_line_ids(world, second)
    assert ids == sorted(ids) and len(set(ids)) == 4
    with world:
        lines = {
            line.id: (line.sku, line.quantity)
            for line in world.session.execute(select(PurchaseOrderLine)).scalars()
        }
        moved = {
            movement.reference_id: (movement.sku, movement.quantity)
            for movement in world.session.execute(
                select(InventoryMovement).where(InventoryMovement.kind == "po_placed")
            ).scalars()
        }
    assert [lines[i] for i in ids] == [("WIDGET", 40), ("GADGET", 7), ("GADGET", 3), ("WIDGET", 11)]
    assert moved == lines
    assert_books_balance(world)


def test_backorder_captured_after_a_po_is_promised_from_the_po_expected_date(world):
    place(world, PurchaseLineRequest("GADGET", 10, expected_date="2026-03-06"))  # a Friday
    captured = capture_order(
        world, SALES, customer_id="C-GOLD", lines=[LineRequest("GADGET", 4)], now=T0
    )
    line = captured.lines[0]
    assert (line.state, line.location_id) == ("backordered", "WEST")
    # Put away on the receipt day, picked from the next business day: Monday 2026-03-09,
    # not the supplier's nominal lead time (2026-03-13 -> 2026-03-16).
    assert line.promised_ship_date == "2026-03-09"
    assert line.promised_delivery_date == "2026-03-10"
    with world:
        assert world.session.get(OrderLine, line.line_id).expected_ready_on == date(2026, 3, 6)
    assert_books_balance(world)


def test_receipt_serves_a_gold_backorder_before_an_earlier_bronze_one_then_the_next_serves_bronze(
    world,
):
    po_id = place(world, PurchaseLineRequest("WIDGET", 10, expected_date="2026-03-06"))
    (po_line,) = po_line_ids(world, po_id)
    bronze = capture_order(
        world, SALES, customer_id="C-BRONZE", lines=[LineRequest("WIDGET", 5)], now=T0
    ).lines[0]
    gold = capture_order(
        world,
        SALES,
        customer_id="C-GOLD",
        lines=[LineRequest("WIDGET", 5)],
        now=T0 + timedelta(hours=1),
    ).lines[0]
    assert bronze.state == gold.state == "backordered"

    first = receive(world, po_line, 5, now=T0 + timedelta(days=3))
    assert first.released_line_ids == [gold.line_id]
    assert line_row(world, gold.line_id).state == "allocated"
    assert line_row(world, bronze.line_id).state == "backordered"
    assert first.purchase_order_status == "partially_received"
    assert balance(world) == (5, 5, 5)

    second = receive(world, po_line, 5, now=T0 + timedelta(days=4))
    assert second.released_line_ids == [bronze.line_id]
    assert line_row(world, bronze.line_id).state == "allocated"
    assert second.purchase_order_status == "received"
    assert row(world, PurchaseOrder, po_id).status == "received"
    assert balance(world) == (10, 10, 0)
    assert_books_balance(world)


def test_partial_receipt_keeps_po_partially_received_and_records_lead_time_and_lateness(world):
    po_id = place(
        world,
        PurchaseLineRequest("WIDGET", 10, expected_date="2026-03-06"),
        PurchaseLineRequest("GADGET", 2, expected_date="2026-03-06"),
    )
    widget_line, gadget_line = po_line_ids(world, po_id)
    early = receive(world, widget_line, 3, now=T0 + timedelta(days=1))
    late = receive(world, widget_line, 4, now=T0 + timedelta(days=5, hours=3))
    # Every line complete but the gadget: still partially received.
    rest = receive(world, widget_line, 3, now=T0 + timedelta(days=5, hours=4))
    assert (early.lead_time_days, early.days_late) == (1, -2)
    assert (late.lead_time_days, late.days_late) == (5, 2)
    assert early.purchase_order_status == late.purchase_order_status == "partially_received"
    assert rest.purchase_order_status == "partially_received"
    with world:
        receipts = world.session.execute(select(Receipt).order_by(Receipt.id)).scalars().all()
        widget = world.session.get(PurchaseOrderLine, widget_line)
    assert [(r.quantity, r.lead_time_days, r.days_late) for r in receipts] == [
        (3, 1, -2),
        (4, 5, 2),
        (3, 5, 2),
    ]
    assert all(r.received_by == LOGISTICS.name for r in receipts)
    assert widget.received_quantity == 10
    assert balance(world, "WIDGET") == (10, 0, 0)
    assert balance(world, "GADGET") == (0, 0, 2)
    assert row(world, PurchaseOrder, po_id).status == "partially_received"

    last = receive(world, gadget_line, 2, now=T0 + timedelta(days=6))
    assert last.purchase_order_status == "received"
    assert_books_balance(world)


@pytest.mark.parametrize("quantity", [11, 0, -1, "many"])
def test_over_receipt_or_bad_quantity_is_refused_with_nothing_written(world, quantity):
    po_id = place(world, PurchaseLineRequest("WIDGET", 10))
    (po_line,) = po_line_ids(world, po_id)
    before = (count(world, Receipt), count(world, InventoryMovement), count(world, AuditEntry))
    with pytest.raises(InvalidValue) as refused:
        receive(world, po_line, quantity)
    assert refused.value.field == "quantity" and refused.value.value == quantity
    assert (count(world, Receipt), count(world, InventoryMovement), count(world, AuditEntry)) == (
        before
    )
    assert balance(world) == (0, 0, 10)
    assert row(world, PurchaseOrder, po_id).status == "open"
    assert_books_balance(world)


def test_receiving_more_than_what_is_still_open_is_refused_after_a_partial_receipt(world):
    po_id = place(world, PurchaseLineRequest("WIDGET", 10))
    (po_line,) = po_line_ids(world, po_id)
    receive(world, po_line, 6)
    with pytest.raises(InvalidValue, match="only 4 of 10 still open"):
        receive(world, po_line, 5)
    assert count(world, Receipt) == 1
    assert balance(world) == (6, 0, 4)
    assert_books_balance(world)


def test_unknown_references_and_bad_lines_are_named_and_nothing_is_placed(world):
    with pytest.raises(NotFound) as unknown_sku:
        place(world, PurchaseLineRequest("WIDGET", 1), PurchaseLineRequest("NOPE", 1))
    assert (unknown_sku.value.field, unknown_sku.value.value) == ("lines[1].sku", "NOPE")
    with pytest.raises(NotFound) as unknown_supplier:
        place_purchase_order(
            world,
            PLANNER,
            supplier_id="NOPE",
            location_id="WEST",
            lines=[PurchaseLineRequest("WIDGET", 1)],
            now=T0,
        )
    assert unknown_supplier.value.field == "supplier_id"
    with pytest.raises(InvalidValue) as bad_date:
        place(world, PurchaseLineRequest("WIDGET", 1, expected_date="2026-02-30"))
    assert bad_date.value.field == "lines[0].expected_date"
    with pytest.raises(InvalidValue) as past:
        place(world, PurchaseLineRequest("WIDGET", 1, expected_date="2026-03-02"))
    assert past.value.field == "lines[0].expected_date"
    with pytest.raises(NotFound) as unknown_line:
        receive(world, 999, 1)
    assert (unknown_line.value.field, unknown_line.value.value) == ("purchase_order_line_id", 999)
    assert count(world, PurchaseOrder) == 0
    assert balance(world) == (0, 0, 0)


def test_cancelling_an_open_po_takes_its_quantity_off_order_and_blocks_receipts(world):
    po_id = place(world, PurchaseLineRequest("WIDGET", 10), PurchaseLineRequest("GADGET", 3))
    widget_line, _ = po_line_ids(world, po_id)
    cancel_purchase_order(world, PLANNER, purchase_order_id=po_id, now=T0, reason="wrong supplier")
    assert row(world, PurchaseOrder, po_id).status == "cancelled"
    assert balance(world, "WIDGET") == (0, 0, 0)
    assert balance(world, "GADGET") == (0, 0, 0)
    with pytest.raises(Conflict) as refused:
        receive(world, widget_line, 1)
    assert refused.value.field == "purchase_order_line_id"
    assert_books_balance(world)


@pytest.mark.parametrize(
    ("actor", "allowed"), [(SALES, False), (LOGISTICS, False), (PLANNER, True)]
)
def test_placing_a_po_needs_place_purchase_order(world, actor, allowed):
    if allowed:
        place(world, PurchaseLineRequest("WIDGET", 1), actor=actor)
        assert balance(world) == (0, 0, 1)
    else:
        with pytest.raises(PermissionDenied) as refused:
            place(world, PurchaseLineRequest("WIDGET", 1), actor=actor)
        assert refused.value.role == actor.role
        assert count(world, PurchaseOrder) == 0


@pytest.mark.parametrize(
    ("actor", "allowed"), [(SALES, False), (PLANNER, False), (LOGISTICS, True)]
)
def test_receiving_goods_needs_receive_goods(world, actor, allowed):
    po_id = place(world, PurchaseLineRequest("WIDGET", 2), actor=ADMIN)
    (po_line,) = po_line_ids(world, po_id)
    if allowed:
        receive(world, po_line, 2, actor=actor)
        assert balance(world) == (2, 0, 0)
    else:
        with pytest.raises(PermissionDenied):
            receive(world, po_line, 2, actor=actor)
        assert count(world, Receipt) == 0
        assert balance(world) == (0, 0, 2)
    assert_books_balance(world)


def test_a_receipt_dated_before_the_po_was_placed_is_refused(world):
    po_id = place(world, PurchaseLineRequest("WIDGET", 5), now=T0 + timedelta(days=1))
    (po_line,) = po_line_ids(world, po_id)
    with pytest.raises(InvalidValue) as refused:
        receive(world, po_line, 5, now=T0)
    assert refused.value.field == "now"
    assert count(world, Receipt) == 0
    assert balance(world) == (0, 0, 5)
