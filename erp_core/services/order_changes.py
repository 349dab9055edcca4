"""Governed changes to captured orders: approvals (discount, expedited freight), credit-hold
release, cancellation, allocation override, manual backorder release and promise changes.

Each act is checked against the permission matrix of the governance policy and leaves an audit
entry; a changed commitment is a new promise row, never an update of the old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from erp_core.db.models import (
    ApprovalRequest,
    Customer,
    ExceptionCase,
    Lane,
    OrderLine,
    SalesOrder,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue
from erp_core.domain.promise import promised_delivery_date
from erp_core.domain.states import ApprovalStatus, ExceptionStatus, LineState
from erp_core.policy import Actor
from erp_core.services.approvals import open_approval
from erp_core.services.common import audit, get_or_raise, parse_date, require_aware, transition
from erp_core.services.exceptions import close_case, open_exception
from erp_core.services.orders import Allocator, record_price, split_line
from erp_core.services.stock import (
    allocate_backorder,
    current_promise,
    lock_balance,
    lock_balances,
    record_promise,
    release_backorders,
    unreserve,
)

APPROVAL_PERMISSIONS = {
    "discount": "approve_discount",
    "expedite": "approve_expedited_freight",
}
CANCELLABLE = frozenset(
    {
        LineState.DRAFT,
        LineState.CONFIRMED,
        LineState.CREDIT_HOLD,
        LineState.BACKORDERED,
        LineState.ALLOCATED,
    }
)


@dataclass(frozen=True)
class ApprovalDecision:
    approval_id: int
    kind: str
    status: str
    line_ids: tuple[int, ...]


def _line(uow: UnitOfWork, line_id: int) -> OrderLine:
    return get_or_raise(
        uow.session, OrderLine, line_id, entity="order line", field="line_id", for_update=True
    )


def _line_family(uow: UnitOfWork, line: OrderLine) -> list[OrderLine]:
    """A line and the lines split from it (they share its price and its approvals)."""
    children = uow.session.execute(
        select(OrderLine).where(OrderLine.parent_line_id == line.id).order_by(OrderLine.id)
    ).scalars()
    return [line, *children]


def _add_promise(
    uow: UnitOfWork,
    line: OrderLine,
    ship: date,
    delivery: date,
    reason: str,
    actor: Actor,
    now: datetime,
) -> None:
    record_promise(uow, line.id, ship, delivery, reason, actor, now)
    audit(
        uow,
        actor,
        now,
        "change_promise",
        "order_line",
        line.id,
        reason=reason,
        promised_ship_date=ship,
        promised_delivery_date=delivery,
    )


# --- approvals ---------------------------------------------------------------------------------


def request_expedite(
    uow: UnitOfWork, actor: Actor, *, line_id: int, now: datetime, note: str = ""
) -> int:
    """Ask for expedited freight on an open line; logistics (by default) decides."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "capture_order")
        line = _line(uow, line_id)
        if line.state not in (
            LineState.ALLOCATED,
            LineState.BACKORDERED,
            LineState.PICKED,
            LineState.PACKED,
        ):
            raise Conflict(
                f"line {line.id} is {line.state}: nothing to expedite",
                field="line_id",
                value=line.id,
            )
        lane = _express_lane(uow, line)
        order = uow.session.get(SalesOrder, line.order_id)
        assert order is not None
        customer = uow.session.get(Customer, order.customer_id)
        case = open_exception(
            uow,
            actor,
            now,
            "expedite_approval",
            order_id=order.id,
            line_id=line.id,
            customer=customer,
            sku=line.sku,
            location_id=line.location_id,
            reasons=["expedite_requested"],
            details={"express_lane_id": lane.id, "cost": str(lane.cost_per_shipment)},
        )
        approval = open_approval(
            uow,
            actor,
            now,
            kind="expedite",
            order_id=order.id,
            line_id=line.id,
            exception_id=case.id,
            details={"express_lane_id": lane.id, "note": note, "cost": str(lane.cost_per_shipment)},
        )
        uow.commit()
        return approval.id


def _express_lane(uow: UnitOfWork, line: OrderLine) -> Lane:
    order = uow.session.get(SalesOrder, line.order_id)
    assert order is not None
    lane = uow.session.execute(
        select(Lane)
        .where(
            Lane.origin_location_id == line.location_id,
            Lane.dest_region == order.ship_to_region,
            Lane.service_level == "express",
        )
        .order_by(Lane.transit_days, Lane.cost_per_shipment)
        .limit(1)
    ).scalar_one_or_none()
    if lane is None:
        raise Conflict(
            f"no express lane from {line.location_id} to {order.ship_to_region}",
            field="line_id",
            value=line.id,
        )
    return lane


def decide_approval(
    uow: UnitOfWork,
    actor: Actor,
    *,
    approval_id: int,
    approve: bool,
    now: datetime,
    note: str = "",
) -> ApprovalDecision:
    """Approve or reject a pending request; the permission needed depends on its kind, and the
    requester may never approve their own request."""
    require_aware("now", now)
    with uow:
        approval = get_or_raise(
            uow.session,
            ApprovalRequest,
            approval_id,
            entity="approval",
            field="approval_id",
            for_update=True,
        )
        uow.policy.require(actor, APPROVAL_PERMISSIONS[approval.kind])
        if approval.requested_by == actor.name:
            raise Conflict(
                f"{actor.name} requested approval {approval.id} and may not decide it",
                field="actor",
                value=actor.name,
            )
        target = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
        transition(
            uow,
            actor,
            now,
            "approval_request",
            approval,
            target,
            "decide_approval",
            kind=approval.kind,
            note=note,
        )
        approval.decided_at = now
        approval.decided_by = actor.name
        assert approval.line_id is not None
        lines = _line_family(uow, _line(uow, approval.line_id))
        if approval.kind == "discount":
            _apply_discount_decision(uow, actor, now, approval, lines, approve)
        elif approve:
            _apply_expedite(uow, actor, now, approval, lines)
        if approval.exception_id is not None:
            case = uow.session.get(ExceptionCase, approval.exception_id)
            if case is not None and case.status != ExceptionStatus.RESOLVED:
                close_case(uow, actor, case, f"{approval.kind} {target}", now)
        uow.commit()
        return ApprovalDecision(
            approval.id, approval.kind, str(approval.status), tuple(line.id for line in lines)
        )


def _apply_discount_decision(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    approval: ApprovalRequest,
    lines: Sequence[OrderLine],
    approve: bool,
) -> None:
    for line in lines:
        line.price_approval_pending = False
        if not approve:
            # Rejected: the line falls back to the tier price it was entitled to.
            line.unit_price = line.tier_price
            line.discount_pct = Decimal("0.00")
        record_price(uow, line, "approved" if approve else "rejected", actor, now, approval.id)


def _apply_expedite(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    approval: ApprovalRequest,
    lines: Sequence[OrderLine],
) -> None:
    lane = uow.session.get(Lane, approval.details["express_lane_id"])
    assert lane is not None
    for line in lines:
        if line.state in (
            LineState.SHIPPED,
            LineState.DELIVERED,
            LineState.CANCELLED,
            LineState.RETURNED,
        ):
            continue
        line.lane_id = lane.id
        promise = current_promise(uow, line.id)
        if promise is not None:
            delivery = promised_delivery_date(
                promise.promised_ship_date, lane.transit_days, uow.policy.calendar
            )
            _add_promise(uow, line, promise.promised_ship_date, delivery, "expedite", actor, now)


# --- credit hold, cancellation -----------------------------------------------------------------


def release_credit_hold(
    uow: UnitOfWork, actor: Actor, *, order_id: int, now: datetime
) -> list[int]:
    """Finance releases an order held for credit: its lines are allocated as at capture."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "release_credit_hold")
        order = get_or_raise(uow.session, SalesOrder, order_id, entity="order", field="order_id")
        customer = get_or_raise(
            uow.session,
            Customer,
            order.customer_id,
            entity="customer",
            field="customer_id",
            for_update=True,
        )
        held = [line for line in order.lines if line.state == LineState.CREDIT_HOLD]
        if not held:
            raise Conflict(
                f"order {order.id} has no lines on credit hold", field="order_id", value=order.id
            )
        allocator = Allocator(uow, actor, now, order, customer)
        allocator.lock([line.sku for line in held])
        for line in held:
            allocator.allocate(line)
        for case in _open_cases(uow, order.id, "credit_hold"):
            close_case(uow, actor, case, "credit released", now)
        audit(uow, actor, now, "release_credit_hold", "sales_order", order.id)
        uow.commit()
        return [line.id for line in held]


def _open_cases(uow: UnitOfWork, order_id: int, exception_type: str) -> list[ExceptionCase]:
    return list(
        uow.session.execute(
            select(ExceptionCase).where(
                ExceptionCase.order_id == order_id,
                ExceptionCase.type == exception_type,
                ExceptionCase.status != ExceptionStatus.RESOLVED,
            )
        ).scalars()
    )


def cancel_order_lines(
    uow: UnitOfWork,
    actor: Actor,
    *,
    order_id: int,
    now: datetime,
    line_ids: Sequence[int] | None = None,
    reason: str = "customer request",
) -> list[int]:
    """Cancel lines not yet picked (all open ones when ``line_ids`` is None); their stock goes to
    waiting backorders."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "cancel_order")
        order = get_or_raise(uow.session, SalesOrder, order_id, entity="order", field="order_id")
        by_id = {line.id: line for line in order.lines}
        if line_ids is None:
            targets = [line for line in order.lines if line.state in CANCELLABLE]
        else:
            unknown = [i for i in line_ids if i not in by_id]
            if unknown:
                raise InvalidValue("line_ids", unknown[0], f"not a line of order {order.id}")
            targets = [by_id[i] for i in line_ids]
        if not targets:
            raise Conflict(
                f"order {order.id} has no line that can still be cancelled",
                field="order_id",
                value=order.id,
            )
        # Every balance the lines sit at, up front in the one sorted order (one at a time in
        # line order, a cancel deadlocked with a capture locking them sorted), then the lines
        # themselves, read again under the lock: a backorder a receipt released since they
        # were read is allocated now, and its reservation must go with it.
        lock_balances(
            uow, [(line.sku, line.location_id) for line in targets if line.location_id is not None]
        )
        targets = list(
            uow.session.execute(
                select(OrderLine)
                .where(OrderLine.id.in_([line.id for line in targets]))
                .order_by(OrderLine.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).scalars()
        )
        if line_ids is None:
            targets = [line for line in targets if line.state in CANCELLABLE]
            if not targets:
                raise Conflict(
                    f"order {order.id} has no line that can still be cancelled",
                    field="order_id",
                    value=order.id,
                )
        freed: set[tuple[str, str]] = set()
        for line in targets:
            if line.state == LineState.ALLOCATED and line.location_id is not None:
                balance = lock_balance(uow, line.sku, line.location_id)
                unreserve(uow, balance, line, "cancelled", actor, now)
                freed.add((line.sku, line.location_id))
            transition(
                uow,
                actor,
                now,
                "order_line",
                line,
                LineState.CANCELLED,
                "cancel_line",
                reason=reason,
            )
        for sku, location_id in sorted(freed):
            release_backorders(uow, lock_balance(uow, sku, location_id), actor, now)
        uow.commit()
        return [line.id for line in targets]


# --- allocation overrides and promises ---------------------------------------------------------


def override_allocation(
    uow: UnitOfWork,
    actor: Actor,
    *,
    to_line_id: int,
    from_line_id: int,
    now: datetime,
    reason: str,
) -> None:
    """A planner gives the stock reserved for one line to a backordered line of the same SKU and
    location, out of the usual priority; the robbed line becomes a backorder."""
    require_aware("now", now)
    if not reason.strip():
        raise InvalidValue("reason", reason, "an allocation override needs a reason")
    with uow:
        uow.policy.require(actor, "override_allocation")
        to_line, from_line = _line(uow, to_line_id), _line(uow, from_line_id)
        if to_line.state != LineState.BACKORDERED:
            raise Conflict(
                f"line {to_line.id} is {to_line.state}, not backordered",
                field="to_line_id",
                value=to_line.id,
            )
        if from_line.state != LineState.ALLOCATED:
            raise Conflict(
                f"line {from_line.id} is {from_line.state}, not allocated",
                field="from_line_id",
                value=from_line.id,
            )
        if (to_line.sku, to_line.location_id) != (from_line.sku, from_line.location_id):
            raise Conflict(
                "both lines must be for the same SKU at the same location",
                field="from_line_id",
                value=from_line.id,
            )
        assert from_line.location_id is not None
        balance = lock_balance(uow, from_line.sku, from_line.location_id)
        unreserve(uow, balance, from_line, "override", actor, now)
        transition(
            uow,
            actor,
            now,
            "order_line",
            from_line,
            LineState.BACKORDERED,
            "override_allocation",
            given_to=to_line.id,
            reason=reason,
        )
        allocate_backorder(uow, balance, to_line, actor, now, "override_allocation")
        uow.commit()


def release_backorder(uow: UnitOfWork, actor: Actor, *, line_id: int, now: datetime) -> list[int]:
    """Reserve free stock for one backordered line now, ahead of the priority queue.

    When less is free than the line needs, what is free is split off and allocated (it can ship
    now) and the rest keeps waiting; returns the ids of the lines allocated.
    """
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "release_backorder")
        line = _line(uow, line_id)
        if line.state != LineState.BACKORDERED or line.location_id is None:
            raise Conflict(
                f"line {line.id} is {line.state}, not backordered", field="line_id", value=line.id
            )
        balance = lock_balance(uow, line.sku, line.location_id)
        free = balance.on_hand - balance.reserved
        if free <= 0:
            raise Conflict(
                f"nothing of {line.sku} is free at {line.location_id}",
                field="line_id",
                value=line.id,
            )
        if free < line.quantity:
            waiting = split_line(uow, actor, now, line, line.quantity - free, "partial_release")
            waiting.expected_ready_on = line.expected_ready_on
            transition(
                uow,
                actor,
                now,
                "order_line",
                waiting,
                LineState.BACKORDERED,
                "backorder",
                reason="partial_release",
            )
            promise = current_promise(uow, line.id)
            if promise is not None:
                _add_promise(
                    uow,
                    waiting,
                    promise.promised_ship_date,
                    promise.promised_delivery_date,
                    "partial_release",
                    actor,
                    now,
                )
        allocate_backorder(uow, balance, line, actor, now, "release_backorder")
        uow.commit()
        return [line.id]


def change_promise(
    uow: UnitOfWork,
    actor: Actor,
    *,
    line_id: int,
    promised_ship_date: date | str,
    promised_delivery_date: date | str,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    """Change a line's delivery commitment: a new promise row; the first one stays for KPIs."""
    require_aware("now", now)
    ship = parse_date("promised_ship_date", promised_ship_date)
    delivery = parse_date("promised_delivery_date", promised_delivery_date)
    assert ship is not None and delivery is not None
    if delivery < ship:
        raise InvalidValue("promised_delivery_date", delivery, "before the promised ship date")
    if not reason.strip():
        raise InvalidValue("reason", reason, "a promise change needs a reason")
    with uow:
        uow.policy.require(actor, "change_delivery_commitment")
        line = _line(uow, line_id)
        if line.state in (LineState.DELIVERED, LineState.CANCELLED, LineState.RETURNED):
            raise Conflict(
                f"line {line.id} is {line.state}: no commitment to change",
                field="line_id",
                value=line.id,
            )
        _add_promise(uow, line, ship, delivery, reason, actor, now)
        promise = current_promise(uow, line.id)  # the row just written: the line is locked
        assert promise is not None
        uow.commit()
        return {
            "line_id": line.id,
            "promise_id": promise.id,
            "promised_ship_date": ship.isoformat(),
            "promised_delivery_date": delivery.isoformat(),
        }
