"""Cycle counts: the physical count replaces the system quantity through an adjustment movement.

A count below what is reserved takes stock away from allocated lines: the lowest-priority lines
fall back to backordered (with a shortage exception) so that reserved never exceeds on hand.
A count above the system quantity releases waiting backorders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select

from erp_core.db.models import (
    Customer,
    CycleCount,
    InventoryBalance,
    Location,
    OrderLine,
    Product,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.allocation import BackorderClaim, release_priority
from erp_core.domain.errors import Conflict, InvalidValue
from erp_core.domain.states import LineState
from erp_core.policy import Actor
from erp_core.services.common import audit, get_kept_or_raise, require_aware, transition
from erp_core.services.exceptions import open_exception
from erp_core.services.stock import (
    current_promise,
    lines_with_customers,
    lock_balance,
    post,
    release_backorders,
    unreserve,
)


@dataclass(frozen=True)
class CycleCountResult:
    cycle_count_id: int
    adjustment: int
    deallocated_line_ids: list[int]
    released_line_ids: list[int]


def record_cycle_count(
    uow: UnitOfWork,
    actor: Actor,
    *,
    sku: str,
    location_id: str,
    counted_quantity: int,
    now: datetime,
    reason: str = "cycle count",
) -> CycleCountResult:
    require_aware("now", now)
    if isinstance(counted_quantity, bool) or not isinstance(counted_quantity, int):
        raise InvalidValue("counted_quantity", counted_quantity, "not a whole number")
    if counted_quantity < 0:
        raise InvalidValue("counted_quantity", counted_quantity, "must be >= 0")
    with uow:
        uow.policy.require(actor, "adjust_inventory")
        get_kept_or_raise(uow, Product, sku, entity="product", field="sku")
        get_kept_or_raise(uow, Location, location_id, entity="location", field="location_id")
        balance = lock_balance(uow, sku, location_id)
        count = CycleCount(
            sku=sku,
            location_id=location_id,
            counted_at=now,
            system_quantity=balance.on_hand,
            counted_quantity=counted_quantity,
            counted_by=actor.name,
            reason=reason,
        )
        uow.session.add(count)
        uow.session.flush()
        staged = _picked_quantity(uow, sku, location_id)
        if counted_quantity < staged:
            raise Conflict(
                f"count of {counted_quantity} {sku} at {location_id} is below the {staged} "
                "units already picked for shipment; count the staged goods too",
                field="counted_quantity",
                value=counted_quantity,
            )
        adjustment = counted_quantity - balance.on_hand
        deallocated = _take_back_reservations(uow, balance, counted_quantity, actor, now)
        post(
            uow,
            balance,
            "on_hand",
            adjustment,
            kind="adjustment",
            actor=actor,
            now=now,
            reference=("cycle_count", count.id),
        )
        released = release_backorders(uow, balance, actor, now) if adjustment > 0 else []
        audit(
            uow,
            actor,
            now,
            "cycle_count",
            "inventory_balance",
            f"{sku}@{location_id}",
            system_quantity=count.system_quantity,
            counted_quantity=counted_quantity,
            adjustment=adjustment,
        )
        uow.commit()
        return CycleCountResult(count.id, adjustment, deallocated, released)


_PICKED_QUANTITY = select(func.coalesce(func.sum(OrderLine.quantity), 0)).where(
    OrderLine.sku == bindparam("sku"),
    OrderLine.location_id == bindparam("location_id"),
    OrderLine.state.in_([LineState.PICKED, LineState.PACKED]),
)
"""Built once with bound parameters (a count per SKU and location counted)."""


def _picked_quantity(uow: UnitOfWork, sku: str, location_id: str) -> int:
    """Units picked or packed and not yet shipped: still on hand, no longer on the shelf."""
    params = {"sku": sku, "location_id": location_id}
    return int(uow.session.execute(_PICKED_QUANTITY, params).scalar_one())


def _take_back_reservations(
    uow: UnitOfWork, balance: InventoryBalance, counted: int, actor: Actor, now: datetime
) -> list[int]:
    """Backorder allocated (not yet picked) lines, lowest priority first, until the reservations
    fit in the counted quantity."""
    if balance.reserved <= counted:
        return []
    rows = lines_with_customers(uow, balance, LineState.ALLOCATED)
    tiers = uow.policy.customer_tiers

    def priority(row: tuple[OrderLine, Customer]) -> tuple[object, ...]:
        line, customer = row
        promise = current_promise(uow, line.id)
        claim = BackorderClaim(
            line.id,
            line.quantity,
            customer.tier,
            promise.promised_ship_date if promise else now.date(),
            line.entered_at,
        )
        return release_priority(claim, tiers)

    deallocated: list[int] = []
    for line, customer in sorted(rows, key=priority, reverse=True):
        if balance.reserved <= counted:
            break
        unreserve(uow, balance, line, "count_shortage", actor, now)
        transition(
            uow,
            actor,
            now,
            "order_line",
            line,
            LineState.BACKORDERED,
            "deallocate",
            reason="cycle count shortage",
        )
        open_exception(
            uow,
            actor,
            now,
            "shortage",
            order_id=line.order_id,
            line_id=line.id,
            customer=customer,
            sku=line.sku,
            location_id=line.location_id,
            reasons=["cycle_count_shortage"],
        )
        deallocated.append(line.id)
    return deallocated
