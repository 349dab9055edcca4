"""Procure to stock: purchase orders, receipts against their lines, and the release of backorders.

Placing a PO puts its quantities on order at the receiving location (so available-to-promise sees
them as scheduled receipts by their expected date). A receipt moves units from on order to on hand,
records the supplier's actual lead time and lateness, and hands the new stock to waiting backorders
by priority (customer tier, then promise date).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from erp_core.db.models import (
    Location,
    Product,
    PurchaseOrder,
    PurchaseOrderLine,
    Receipt,
    Supplier,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue, NotFound
from erp_core.domain.pricing import parse_money
from erp_core.domain.states import PurchaseOrderStatus
from erp_core.policy import Actor
from erp_core.services.common import (
    audit,
    get_or_raise,
    lock_row,
    not_before,
    parse_date,
    parse_quantity,
    require_aware,
    transition,
)
from erp_core.services.stock import (
    lock_balance,
    lock_balances,
    post,
    receive_scheduled,
    release_backorders,
)

RECEIVABLE = (PurchaseOrderStatus.OPEN, PurchaseOrderStatus.PARTIALLY_RECEIVED)


@dataclass(frozen=True)
class PurchaseLineRequest:
    sku: str
    quantity: int
    unit_cost: Decimal | str | None = None
    """None takes the product's standard unit cost."""
    expected_date: date | str | None = None
    """None expects the goods after the supplier's nominal lead time."""


@dataclass(frozen=True)
class ReceiptResult:
    receipt_id: int
    purchase_order_id: int
    purchase_order_status: str
    quantity: int
    lead_time_days: int
    days_late: int
    released_line_ids: list[int]


def utc_day(moment: datetime) -> date:
    """The calendar day of a moment in UTC (the day every stored timestamp is judged by)."""
    return moment.astimezone(UTC).date()


def place_purchase_order(
    uow: UnitOfWork,
    actor: Actor,
    *,
    supplier_id: str,
    location_id: str,
    lines: Sequence[PurchaseLineRequest],
    now: datetime,
) -> int:
    """Place an open PO with the supplier for delivery to the location; its units go on order."""
    require_aware("now", now)
    if not lines:
        raise InvalidValue("lines", [], "a purchase order needs at least one line")
    with uow:
        uow.policy.require(actor, "place_purchase_order")
        supplier = get_or_raise(
            uow.session, Supplier, supplier_id, entity="supplier", field="supplier_id"
        )
        get_or_raise(uow.session, Location, location_id, entity="location", field="location_id")
        default_expected = utc_day(now) + timedelta(days=supplier.nominal_lead_days)
        uow.preload(Product, {request.sku for request in lines})
        parsed = [
            _parse_line(uow, index, request, utc_day(now), default_expected)
            for index, request in enumerate(lines)
        ]
        order = PurchaseOrder(
            supplier_id=supplier_id,
            location_id=location_id,
            status=PurchaseOrderStatus.OPEN,
            placed_at=now,
            placed_by=actor.name,
        )
        uow.session.add(order)
        uow.session.flush()
        balances = lock_balances(uow, [(product.sku, location_id) for product, *_ in parsed])
        po_lines = [
            PurchaseOrderLine(
                purchase_order_id=order.id,
                sku=product.sku,
                quantity=quantity,
                received_quantity=0,
                unit_cost=unit_cost,
                expected_date=expected,
            )
            for product, quantity, unit_cost, expected in parsed
        ]
        # One flush for all the lines (an executemany of rows given their ids on SQLite, one
        # multi-row INSERT on PostgreSQL), ids in line order as one flush per line gave them.
        uow.assign_ids(po_lines)
        uow.session.add_all(po_lines)
        uow.session.flush()
        for (product, quantity, _cost, _expected), po_line in zip(parsed, po_lines, strict=True):
            post(
                uow,
                balances[(product.sku, location_id)],
                "on_order",
                quantity,
                kind="po_placed",
                actor=actor,
                now=now,
                reference=("purchase_order_line", po_line.id),
            )
        audit(
            uow,
            actor,
            now,
            "place_purchase_order",
            "purchase_order",
            order.id,
            to_state=PurchaseOrderStatus.OPEN,
            supplier_id=supplier_id,
            location_id=location_id,
            lines=[
                {"sku": p.sku, "quantity": q, "unit_cost": c, "expected_date": e}
                for p, q, c, e in parsed
            ],
        )
        uow.commit()
        return order.id


def _parse_line(
    uow: UnitOfWork, index: int, request: PurchaseLineRequest, today: date, default_expected: date
) -> tuple[Product, int, Decimal, date]:
    prefix = f"lines[{index}]"
    product = uow.get(Product, request.sku)
    if product is None or not product.active:
        raise NotFound("product", f"{prefix}.sku", request.sku)
    quantity = parse_quantity(f"{prefix}.quantity", request.quantity)
    unit_cost = product.unit_cost
    if request.unit_cost is not None:
        unit_cost = parse_money(f"{prefix}.unit_cost", request.unit_cost)
        if unit_cost < 0:
            raise InvalidValue(f"{prefix}.unit_cost", request.unit_cost, "must be >= 0")
    expected = parse_date(f"{prefix}.expected_date", request.expected_date) or default_expected
    if expected < today:
        raise InvalidValue(
            f"{prefix}.expected_date", request.expected_date, "must not be before the order date"
        )
    return product, quantity, unit_cost, expected


def receive_purchase_order_line(
    uow: UnitOfWork,
    actor: Actor,
    *,
    purchase_order_line_id: int,
    quantity: int,
    now: datetime,
) -> ReceiptResult:
    """Receive goods against one PO line (all or part of what is still open; never more), then
    release the backorders the new stock can fill."""
    require_aware("now", now)
    received = parse_quantity("quantity", quantity)
    with uow:
        uow.policy.require(actor, "receive_goods")
        po_line = lock_row(
            uow,
            PurchaseOrderLine,
            purchase_order_line_id,
            entity="purchase order line",
            field="purchase_order_line_id",
        )
        order = _locked_purchase_order(uow, po_line.purchase_order_id)
        if order.status not in RECEIVABLE:
            raise Conflict(
                f"purchase order {order.id} is {order.status}; nothing can be received on it",
                field="purchase_order_line_id",
                value=purchase_order_line_id,
            )
        not_before("now", now, order.placed_at, f"purchase order {order.id} was placed")
        open_quantity = po_line.quantity - po_line.received_quantity
        if received > open_quantity:
            raise InvalidValue(
                "quantity",
                quantity,
                f"only {open_quantity} of {po_line.quantity} still open on purchase order line "
                f"{po_line.id} (over-receipt refused)",
            )
        day = utc_day(now)
        receipt = Receipt(
            purchase_order_line_id=po_line.id,
            quantity=received,
            received_at=now,
            received_by=actor.name,
            lead_time_days=(day - utc_day(order.placed_at)).days,
            days_late=(day - po_line.expected_date).days,
        )
        uow.session.add(receipt)
        po_line.received_quantity += received
        uow.session.flush()
        balance = lock_balance(uow, po_line.sku, order.location_id)
        receive_scheduled(
            uow,
            balance,
            received,
            kind="receipt",
            actor=actor,
            now=now,
            reference=("receipt", receipt.id),
        )
        complete = all(line.received_quantity >= line.quantity for line in order.lines)
        target = (
            PurchaseOrderStatus.RECEIVED if complete else PurchaseOrderStatus.PARTIALLY_RECEIVED
        )
        transition(
            uow,
            actor,
            now,
            "purchase_order",
            order,
            target,
            "receive_goods",
            receipt_id=receipt.id,
            purchase_order_line_id=po_line.id,
            sku=po_line.sku,
            quantity=received,
            lead_time_days=receipt.lead_time_days,
            days_late=receipt.days_late,
        )
        released = release_backorders(uow, balance, actor, now)
        uow.commit()
        return ReceiptResult(
            receipt_id=receipt.id,
            purchase_order_id=order.id,
            purchase_order_status=str(order.status),
            quantity=received,
            lead_time_days=receipt.lead_time_days,
            days_late=receipt.days_late,
            released_line_ids=released,
        )


def cancel_purchase_order(
    uow: UnitOfWork, actor: Actor, *, purchase_order_id: int, now: datetime, reason: str = ""
) -> None:
    """Cancel an open PO (nothing received yet): its units come off order."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "place_purchase_order")
        order = _locked_purchase_order(uow, purchase_order_id)
        transition(
            uow,
            actor,
            now,
            "purchase_order",
            order,
            PurchaseOrderStatus.CANCELLED,
            "cancel_purchase_order",
            reason=reason,
        )
        balances = lock_balances(uow, [(line.sku, order.location_id) for line in order.lines])
        for line in order.lines:
            post(
                uow,
                balances[(line.sku, order.location_id)],
                "on_order",
                -(line.quantity - line.received_quantity),
                kind="po_cancelled",
                actor=actor,
                now=now,
                reference=("purchase_order_line", line.id),
            )
        uow.commit()


def _locked_purchase_order(uow: UnitOfWork, purchase_order_id: int) -> PurchaseOrder:
    return lock_row(
        uow, PurchaseOrder, purchase_order_id, entity="purchase order", field="purchase_order_id"
    )
