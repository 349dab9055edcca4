"""Returns (RMA): authorised against a delivered line, received back at the line's location, then
restocked (on hand again, releasing waiting backorders) or scrapped (no stock movement).

Several RMAs may return parts of one line; together they never exceed the line's quantity. The
line becomes ``returned`` when the first of its returns is received. Return cycle time is
``authorised_at -> disposed_at``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import func, select

from erp_core.db.models import OrderLine, ReturnOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue
from erp_core.domain.states import LineState, ReturnStatus
from erp_core.policy import Actor
from erp_core.services.common import (
    audit,
    get_or_raise,
    not_before,
    parse_quantity,
    require_aware,
    transition,
)
from erp_core.services.stock import lock_balance, post, release_backorders

RETURNABLE_LINE_STATES = (LineState.DELIVERED, LineState.RETURNED)
DISPOSITIONS = ("restock", "scrap")
MAX_REASON_LENGTH = 200

Disposition = Literal["restock", "scrap"]


def authorise_return(
    uow: UnitOfWork, actor: Actor, *, line_id: int, quantity: int, reason: str, now: datetime
) -> int:
    """Authorise the return of (part of) a delivered line; returns the RMA id."""
    require_aware("now", now)
    units = parse_quantity("quantity", quantity)
    why = _parse_reason(reason)
    with uow:
        uow.policy.require(actor, "authorise_return")
        line = get_or_raise(
            uow.session, OrderLine, line_id, entity="order line", field="line_id", for_update=True
        )
        if line.state not in RETURNABLE_LINE_STATES or line.location_id is None:
            raise Conflict(
                f"order line {line.id} is {line.state}; only delivered lines can be returned",
                field="line_id",
                value=line_id,
            )
        already = returned_quantity(uow, line.id)
        if already + units > line.quantity:
            raise InvalidValue(
                "quantity",
                quantity,
                f"only {line.quantity - already} of the {line.quantity} delivered units of line "
                f"{line.id} can still be returned",
            )
        rma = ReturnOrder(
            line_id=line.id,
            location_id=line.location_id,
            quantity=units,
            reason=why,
            status=ReturnStatus.AUTHORISED,
            authorised_at=now,
            authorised_by=actor.name,
        )
        uow.session.add(rma)
        uow.session.flush()
        audit(
            uow,
            actor,
            now,
            "authorise_return",
            "return_order",
            rma.id,
            to_state=ReturnStatus.AUTHORISED,
            line_id=line.id,
            sku=line.sku,
            quantity=units,
            reason=why,
        )
        uow.commit()
        return rma.id


def returned_quantity(uow: UnitOfWork, line_id: int) -> int:
    """Units of the line under any RMA so far (authorised, received or disposed)."""
    return int(
        uow.session.execute(
            select(func.coalesce(func.sum(ReturnOrder.quantity), 0)).where(
                ReturnOrder.line_id == line_id
            )
        ).scalar_one()
    )


def _parse_reason(reason: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise InvalidValue("reason", reason, "a return needs a reason")
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidValue("reason", reason, f"at most {MAX_REASON_LENGTH} characters")
    return text


def receive_return(uow: UnitOfWork, actor: Actor, *, return_id: int, now: datetime) -> None:
    """Record the goods of an authorised RMA as back at the location (not yet on hand)."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "receive_return")
        rma = _locked_return(uow, return_id)
        not_before("now", now, rma.authorised_at, f"return {rma.id} was authorised")
        transition(uow, actor, now, "return_order", rma, ReturnStatus.RECEIVED, "receive_return")
        rma.received_at = now
        line = get_or_raise(
            uow.session, OrderLine, rma.line_id, entity="order line", field="line_id"
        )
        if line.state != LineState.RETURNED:
            transition(
                uow,
                actor,
                now,
                "order_line",
                line,
                LineState.RETURNED,
                "return_line",
                return_id=rma.id,
            )
        uow.commit()


def dispose_return(
    uow: UnitOfWork, actor: Actor, *, return_id: int, disposition: Disposition, now: datetime
) -> list[int]:
    """Restock (on hand again, then release backorders) or scrap a received return; returns the
    ids of the backordered lines the restocked units released."""
    require_aware("now", now)
    if disposition not in DISPOSITIONS:
        raise InvalidValue("disposition", disposition, f"not one of {', '.join(DISPOSITIONS)}")
    with uow:
        uow.policy.require(actor, "receive_return")
        rma = _locked_return(uow, return_id)
        not_before("now", now, rma.received_at, f"return {rma.id} was received")
        target = ReturnStatus.RESTOCKED if disposition == "restock" else ReturnStatus.SCRAPPED
        transition(
            uow,
            actor,
            now,
            "return_order",
            rma,
            target,
            "dispose_return",
            disposition=disposition,
            quantity=rma.quantity,
        )
        rma.disposed_at = now
        released: list[int] = []
        if target == ReturnStatus.RESTOCKED:
            line = get_or_raise(
                uow.session, OrderLine, rma.line_id, entity="order line", field="line_id"
            )
            balance = lock_balance(uow, line.sku, rma.location_id)
            post(
                uow,
                balance,
                "on_hand",
                rma.quantity,
                kind="return_restock",
                actor=actor,
                now=now,
                reference=("return_order", rma.id),
            )
            released = release_backorders(uow, balance, actor, now)
        uow.commit()
        return released


def _locked_return(uow: UnitOfWork, return_id: int) -> ReturnOrder:
    return get_or_raise(
        uow.session, ReturnOrder, return_id, entity="return", field="return_id", for_update=True
    )
