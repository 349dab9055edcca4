"""Transfers: free stock leaves the source, is on order (a scheduled receipt) at the destination
while in transit, and on receipt is on hand there and released to waiting backorders."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from erp_core.db.models import AuditEntry, InventoryMovement, OrderLine, Transfer
from erp_core.db.uow import UnitOfWork
from erp_core.domain.atp import ScheduledReceipt
from erp_core.domain.errors import Conflict, IllegalTransition, InvalidValue, PermissionDenied
from erp_core.policy import Actor
from erp_core.services.orders import LineRequest, capture_order
from erp_core.services.stock import scheduled_receipts
from erp_core.services.transfers import receive_transfer, send_transfer
from tests.conftest import LOGISTICS, PLANNER, SALES, SERVICE, T0, stock
from tests.erp_core.support import assert_books_balance, balance, count


def send(
    uow: UnitOfWork,
    quantity: int,
    *,
    source: str = "WEST",
    destination: str = "EAST",
    actor: Actor = LOGISTICS,
    **kwargs,
) -> int:
    return send_transfer(
        uow,
        actor,
        sku="WIDGET",
        from_location_id=source,
        to_location_id=destination,
        quantity=quantity,
        now=kwargs.pop("now", T0),
        **kwargs,
    )


def test_transfer_moves_stock_and_releases_a_backorder_at_the_destination(world):
    waiting = capture_order(
        world, SALES, customer_id="C-EAST", lines=[LineRequest("WIDGET", 3)], now=T0
    ).lines[0]
    assert (waiting.state, waiting.location_id) == ("backordered", "EAST")
    stock(world, "WIDGET", "WEST", 10)

    transfer_id = send(world, 4, now=T0 + timedelta(hours=1))
    assert balance(world, "WIDGET", "WEST") == (6, 0, 0)
    assert balance(world, "WIDGET", "EAST") == (0, 0, 4)
    with world:
        transfer = world.session.get(Transfer, transfer_id)
        in_transit = scheduled_receipts(world, "WIDGET", "EAST")
    assert transfer.status == "in_transit" and transfer.requested_by == LOGISTICS.name
    assert transfer.expected_date == date(2026, 3, 5)  # two days after sending by default
    assert in_transit == (ScheduledReceipt(date(2026, 3, 5), 4),)

    released = receive_transfer(
        world, LOGISTICS, transfer_id=transfer_id, now=T0 + timedelta(days=2)
    )
    assert released == [waiting.line_id]
    assert balance(world, "WIDGET", "EAST") == (4, 3, 0)
    assert balance(world, "WIDGET", "WEST") == (6, 0, 0)
    with world:
        transfer = world.session.get(Transfer, transfer_id)
        line = world.session.get(OrderLine, waiting.line_id)
        kinds = world.session.execute(
            select(InventoryMovement.location_id, InventoryMovement.bucket, InventoryMovement.kind)
            .where(InventoryMovement.reference_type == "transfer")
            .order_by(InventoryMovement.id)
        ).all()
        assert scheduled_receipts(world, "WIDGET", "EAST") == ()
    assert transfer.status == "received" and transfer.received_at == T0 + timedelta(days=2)
    assert line.state == "allocated"
    assert [tuple(k) for k in kinds] == [
        ("WEST", "on_hand", "transfer_out"),
        ("EAST", "on_order", "transfer_in_transit"),
        ("EAST", "on_order", "transfer_in"),
        ("EAST", "on_hand", "transfer_in"),
    ]
    assert_books_balance(world)


def test_in_transit_transfer_is_a_scheduled_receipt_for_the_promise_at_the_destination(world):
    stock(world, "GADGET", "WEST", 5)
    send_transfer(
        world,
        PLANNER,
        sku="GADGET",
        from_location_id="WEST",
        to_location_id="EAST",
        quantity=5,
        now=T0,
        expected_date="2026-03-04",
    )
    line = capture_order(
        world, SALES, customer_id="C-EAST", lines=[LineRequest("GADGET", 2)], now=T0
    ).lines[0]
    # Backordered against the transfer (arriving Wednesday, picked Thursday), not the supplier.
    assert (line.state, line.location_id, line.promised_ship_date) == (
        "backordered",
        "EAST",
        "2026-03-05",
    )
    assert_books_balance(world)


def test_transfer_without_enough_free_stock_is_refused_with_nothing_written(world):
    stock(world, "WIDGET", "WEST", 5)
    capture_order(world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 3)], now=T0)
    before = (count(world, Transfer), count(world, InventoryMovement), count(world, AuditEntry))
    with pytest.raises(Conflict, match="only 2 of WIDGET free at WEST") as refused:
        send(world, 3)
    assert (refused.value.field, refused.value.value) == ("quantity", 3)
    assert (count(world, Transfer), count(world, InventoryMovement), count(world, AuditEntry)) == (
        before
    )
    assert balance(world, "WIDGET", "WEST") == (5, 3, 0)
    assert balance(world, "WIDGET", "EAST") == (0, 0, 0)
    assert_books_balance(world)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"destination": "WEST"}, "to_location_id"),
        ({"quantity": 0}, "quantity"),
        ({"expected_date": "2026-03-02"}, "expected_date"),
        ({"expected_date": "soon"}, "expected_date"),
    ],
)
def test_bad_transfer_requests_name_the_field(world, kwargs, field):
    stock(world, "WIDGET", "WEST", 5)
    request = dict(kwargs)  # the parameters are shared by the SQLite and PostgreSQL runs
    with pytest.raises(InvalidValue) as refused:
        send(world, request.pop("quantity", 1), **request)
    assert refused.value.field == field
    assert count(world, Transfer) == 0


def test_a_transfer_is_received_only_once(world):
    stock(world, "WIDGET", "WEST", 5)
    transfer_id = send(world, 5)
    receive_transfer(world, LOGISTICS, transfer_id=transfer_id, now=T0 + timedelta(days=1))
    with pytest.raises(IllegalTransition):
        receive_transfer(world, LOGISTICS, transfer_id=transfer_id, now=T0 + timedelta(days=2))
    assert balance(world, "WIDGET", "EAST") == (5, 0, 0)
    assert_books_balance(world)


@pytest.mark.parametrize(
    ("actor", "allowed"), [(SALES, False), (SERVICE, False), (PLANNER, True), (LOGISTICS, True)]
)
def test_sending_a_transfer_needs_transfer_stock(world, actor, allowed):
    stock(world, "WIDGET", "WEST", 5)
    if allowed:
        send(world, 2, actor=actor)
        assert balance(world, "WIDGET", "WEST") == (3, 0, 0)
    else:
        with pytest.raises(PermissionDenied):
            send(world, 2, actor=actor)
        assert count(world, Transfer) == 0
    assert_books_balance(world)


@pytest.mark.parametrize(
    ("actor", "allowed"), [(SALES, False), (PLANNER, False), (LOGISTICS, True)]
)
def test_receiving_a_transfer_needs_receive_goods(world, actor, allowed):
    stock(world, "WIDGET", "WEST", 5)
    transfer_id = send(world, 2)
    if allowed:
        receive_transfer(world, actor, transfer_id=transfer_id, now=T0 + timedelta(days=1))
        assert balance(world, "WIDGET", "EAST") == (2, 0, 0)
    else:
        with pytest.raises(PermissionDenied):
            receive_transfer(world, actor, transfer_id=transfer_id, now=T0 + timedelta(days=1))
        assert balance(world, "WIDGET", "EAST") == (0, 0, 2)
    assert_books_balance(world)


def test_a_transfer_cannot_be_received_before_it_was_sent(world):
    stock(world, "WIDGET", "WEST", 5)
    transfer_id = send(world, 2, now=T0 + timedelta(hours=2))
    with pytest.raises(InvalidValue) as refused:
        receive_transfer(world, LOGISTICS, transfer_id=transfer_id, now=T0 + timedelta(hours=1))
    assert refused.value.field == "now"
    assert balance(world, "WIDGET", "EAST") == (0, 0, 2)
    assert_books_balance(world)
