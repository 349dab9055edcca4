"""Returns (RMA): authorised against a delivered line, received, then restocked (on hand again,
backorders released) or scrapped; never more than was delivered."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from erp_core.db.models import (
    AuditEntry,
    InventoryMovement,
    LineStateChange,
    ReturnOrder,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, IllegalTransition, InvalidValue, PermissionDenied
from erp_core.policy import Actor
from erp_core.services.fulfilment import deliver, pack, pick, ship
from erp_core.services.orders import LineRequest, capture_order
from erp_core.services.returns import authorise_return, dispose_return, receive_return
from tests.conftest import LOGISTICS, SALES, SERVICE, T0, stock
from tests.erp_core.support import assert_books_balance, balance, count, line_row, row

DELIVERED_AT = T0 + timedelta(days=1)
AUTHORISED_AT = T0 + timedelta(days=3)
RECEIVED_AT = T0 + timedelta(days=5)
DISPOSED_AT = T0 + timedelta(days=6)


def delivered_line(uow: UnitOfWork, quantity: int = 5, on_hand: int = 10) -> int:
    """A gold customer's WIDGET line at WEST, picked, packed, shipped and delivered."""
    stock(uow, "WIDGET", "WEST", on_hand)
    captured = capture_order(
        uow, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", quantity)], now=T0
    )
    order_id, line_id = captured.order_id, captured.lines[0].line_id
    at = T0 + timedelta(hours=1)
    shipment = pick(uow, LOGISTICS, order_id=order_id, picks={line_id: quantity}, now=at)
    for step, hours in ((pack, 2), (ship, 3)):
        moment = T0 + timedelta(hours=hours)
        step(uow, LOGISTICS, shipment_id=shipment.shipment_id, occurred_at=moment, now=moment)
    deliver(
        uow,
        LOGISTICS,
        shipment_id=shipment.shipment_id,
        occurred_at=DELIVERED_AT,
        now=DELIVERED_AT,
    )
    assert line_row(uow, line_id).state == "delivered"
    return line_id


def authorise(
    uow: UnitOfWork,
    line_id: int,
    quantity: int,
    actor: Actor = SERVICE,
    now: datetime = AUTHORISED_AT,
) -> int:
    return authorise_return(
        uow, actor, line_id=line_id, quantity=quantity, reason="damaged in transit", now=now
    )


def test_restocked_return_goes_back_on_hand_releases_a_backorder_and_the_line_is_returned(world):
    line_id = delivered_line(world, quantity=5, on_hand=5)
    assert balance(world) == (0, 0, 0)
    waiting = capture_order(
        world, SALES, customer_id="C-BRONZE", lines=[LineRequest("WIDGET", 2)], now=DELIVERED_AT
    ).lines[0]
    assert waiting.state == "backordered"

    return_id = authorise(world, line_id, 3)
    authorised = row(world, ReturnOrder, return_id)
    assert (authorised.status, authorised.location_id, authorised.quantity) == (
        "authorised",
        "WEST",
        3,
    )
    assert line_row(world, line_id).state == "delivered"

    receive_return(world, LOGISTICS, return_id=return_id, now=RECEIVED_AT)
    assert row(world, ReturnOrder, return_id).status == "received"
    assert line_row(world, line_id).state == "returned"
    assert balance(world) == (0, 0, 0)  # received, not yet on hand

    released = dispose_return(
        world, LOGISTICS, return_id=return_id, disposition="restock", now=DISPOSED_AT
    )
    assert released == [waiting.line_id]
    assert line_row(world, waiting.line_id).state == "allocated"
    assert balance(world) == (3, 2, 0)
    done = row(world, ReturnOrder, return_id)
    assert done.status == "restocked"
    assert (done.received_at, done.disposed_at) == (RECEIVED_AT, DISPOSED_AT)
    assert done.disposed_at - done.authorised_at == timedelta(days=3)  # return cycle time
    with world:
        restock = world.session.execute(
            select(InventoryMovement).where(InventoryMovement.kind == "return_restock")
        ).scalar_one()
        history = world.session.execute(
            select(LineStateChange.from_state, LineStateChange.to_state, LineStateChange.actor)
            .where(LineStateChange.line_id == line_id)
            .order_by(LineStateChange.id.desc())
            .limit(1)
        ).one()
    assert (restock.bucket, restock.quantity, restock.reference_type, restock.reference_id) == (
        "on_hand",
        3,
        "return_order",
        return_id,
    )
    assert tuple(history) == ("delivered", "returned", LOGISTICS.name)
    assert_books_balance(world)


def test_scrapped_return_leaves_on_hand_unchanged(world):
    line_id = delivered_line(world, quantity=5, on_hand=10)
    assert balance(world) == (5, 0, 0)
    return_id = authorise(world, line_id, 5)
    receive_return(world, LOGISTICS, return_id=return_id, now=RECEIVED_AT)
    movements = count(world, InventoryMovement)
    released = dispose_return(
        world, LOGISTICS, return_id=return_id, disposition="scrap", now=DISPOSED_AT
    )
    assert released == []
    assert row(world, ReturnOrder, return_id).status == "scrapped"
    assert row(world, ReturnOrder, return_id).disposed_at == DISPOSED_AT
    assert line_row(world, line_id).state == "returned"
    assert balance(world) == (5, 0, 0)
    assert count(world, InventoryMovement) == movements
    assert_books_balance(world)


def test_returning_more_than_delivered_is_refused_across_partial_returns(world):
    line_id = delivered_line(world, quantity=5)
    with pytest.raises(InvalidValue) as too_many:
        authorise(world, line_id, 6)
    assert (too_many.value.field, too_many.value.value) == ("quantity", 6)
    assert count(world, ReturnOrder) == 0

    first = authorise(world, line_id, 3)
    receive_return(world, LOGISTICS, return_id=first, now=RECEIVED_AT)
    assert line_row(world, line_id).state == "returned"
    audits = count(world, AuditEntry)
    with pytest.raises(InvalidValue, match="only 2 of the 5 delivered units") as refused:
        authorise(world, line_id, 3, now=RECEIVED_AT)
    assert refused.value.field == "quantity"
    assert (count(world, ReturnOrder), count(world, AuditEntry)) == (1, audits)

    # The rest of the line may still come back; its receipt leaves the returned line as it is.
    second = authorise(world, line_id, 2, now=RECEIVED_AT)
    receive_return(world, LOGISTICS, return_id=second, now=DISPOSED_AT)
    assert row(world, ReturnOrder, second).status == "received"
    assert line_row(world, line_id).state == "returned"
    returned = count(
        world,
        LineStateChange,
        LineStateChange.line_id == line_id,
        LineStateChange.to_state == "returned",
    )
    assert returned == 1
    with pytest.raises(InvalidValue):
        authorise(world, line_id, 1, now=DISPOSED_AT)
    assert_books_balance(world)


def test_a_line_not_yet_delivered_cannot_be_returned(world):
    stock(world, "WIDGET", "WEST", 10)
    line = capture_order(
        world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 2)], now=T0
    ).lines[0]
    with pytest.raises(Conflict) as refused:
        authorise(world, line.line_id, 1)
    assert (refused.value.field, refused.value.value) == ("line_id", line.line_id)
    assert count(world, ReturnOrder) == 0


def test_a_return_is_received_before_disposal_and_disposed_once(world):
    line_id = delivered_line(world)
    return_id = authorise(world, line_id, 1)
    with pytest.raises(IllegalTransition):
        dispose_return(
            world, LOGISTICS, return_id=return_id, disposition="restock", now=RECEIVED_AT
        )
    receive_return(world, LOGISTICS, return_id=return_id, now=RECEIVED_AT)
    with pytest.raises(InvalidValue) as bad:
        dispose_return(world, LOGISTICS, return_id=return_id, disposition="resell", now=DISPOSED_AT)
    assert (bad.value.field, bad.value.value) == ("disposition", "resell")
    dispose_return(world, LOGISTICS, return_id=return_id, disposition="restock", now=DISPOSED_AT)
    with pytest.raises(IllegalTransition):
        dispose_return(world, LOGISTICS, return_id=return_id, disposition="scrap", now=DISPOSED_AT)
    with pytest.raises(IllegalTransition):
        receive_return(world, LOGISTICS, return_id=return_id, now=DISPOSED_AT)
    assert balance(world) == (6, 0, 0)
    assert_books_balance(world)


@pytest.mark.parametrize(
    ("actor", "allowed"), [(SALES, False), (LOGISTICS, False), (SERVICE, True)]
)
def test_authorising_a_return_needs_authorise_return(world, actor, allowed):
    line_id = delivered_line(world)
    if allowed:
        return_id = authorise(world, line_id, 1, actor=actor)
        assert row(world, ReturnOrder, return_id).authorised_by == actor.name
    else:
        with pytest.raises(PermissionDenied) as refused:
            authorise(world, line_id, 1, actor=actor)
        assert refused.value.role == actor.role
        assert count(world, ReturnOrder) == 0


@pytest.mark.parametrize(
    ("actor", "allowed"), [(SALES, False), (SERVICE, False), (LOGISTICS, True)]
)
def test_receiving_and_disposing_a_return_need_receive_return(world, actor, allowed):
    line_id = delivered_line(world)
    return_id = authorise(world, line_id, 1)
    if allowed:
        receive_return(world, actor, return_id=return_id, now=RECEIVED_AT)
        dispose_return(world, actor, return_id=return_id, disposition="restock", now=DISPOSED_AT)
        assert row(world, ReturnOrder, return_id).status == "restocked"
        assert balance(world) == (6, 0, 0)
    else:
        with pytest.raises(PermissionDenied):
            receive_return(world, actor, return_id=return_id, now=RECEIVED_AT)
        assert row(world, ReturnOrder, return_id).status == "authorised"
        receive_return(world, LOGISTICS, return_id=return_id, now=RECEIVED_AT)
        with pytest.raises(PermissionDenied):
            dispose_return(
                world, actor, return_id=return_id, disposition="restock", now=DISPOSED_AT
            )
        assert row(world, ReturnOrder, return_id).status == "received"
        assert balance(world) == (5, 0, 0)
    assert_books_balance(world)


def test_a_return_cannot_be_received_before_it_was_authorised(world):
    line_id = delivered_line(world)
    return_id = authorise(world, line_id, 1)
    with pytest.raises(InvalidValue) as refused:
        receive_return(
            world, LOGISTICS, return_id=return_id, now=AUTHORISED_AT - timedelta(hours=1)
        )
    assert refused.value.field == "now"
    assert row(world, ReturnOrder, return_id).status == "authorised"
    assert line_row(world, line_id).state == "delivered"
