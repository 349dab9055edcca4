"""Invariants of the ledger and the order book, checked from the database alone.

Used by the property and concurrency tests and, later, the reliability scenarios. Each check
returns human-readable violations; an empty list means the books are sound.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from erp_core.db.models import (
    AuditEntry,
    InventoryBalance,
    InventoryMovement,
    LineStateChange,
    OrderLine,
    PurchaseOrder,
    PurchaseOrderLine,
    Reservation,
    Transfer,
)
from erp_core.domain.states import LineState, PurchaseOrderStatus, TransferStatus

RESERVING_STATES = frozenset({LineState.ALLOCATED, LineState.PICKED, LineState.PACKED})


def ledger_violations(session: Session) -> list[str]:
    """Balances must equal the sums of their ledger movements, bucket by bucket."""
    sums: dict[tuple[str, str, str], int] = {
        (sku, loc, bucket): int(total)
        for sku, loc, bucket, total in session.execute(
            select(
                InventoryMovement.sku,
                InventoryMovement.location_id,
                InventoryMovement.bucket,
                func.sum(InventoryMovement.quantity),
            ).group_by(
                InventoryMovement.sku, InventoryMovement.location_id, InventoryMovement.bucket
            )
        )
    }
    problems = []
    for balance in session.execute(select(InventoryBalance)).scalars():
        for bucket in ("on_hand", "reserved", "on_order"):
            ledger = sums.get((balance.sku, balance.location_id, bucket), 0)
            if getattr(balance, bucket) != ledger:
                problems.append(
                    f"{balance.sku}@{balance.location_id} {bucket}={getattr(balance, bucket)} "
                    f"but the ledger sums to {ledger}"
                )
    return problems


def stock_violations(session: Session) -> list[str]:
    """No oversell, no negative stock, reserved equal to the active reservations."""
    active = {
        (sku, loc): int(total)
        for sku, loc, total in session.execute(
            select(Reservation.sku, Reservation.location_id, func.sum(Reservation.quantity))
            .where(Reservation.released_at.is_(None))
            .group_by(Reservation.sku, Reservation.location_id)
        )
    }
    problems = []
    for b in session.execute(select(InventoryBalance)).scalars():
        where = f"{b.sku}@{b.location_id}"
        if b.reserved > b.on_hand:
            problems.append(f"{where} oversold: reserved {b.reserved} > on hand {b.on_hand}")
        if b.on_hand < 0 or b.reserved < 0 or b.on_order < 0:
            problems.append(f"{where} negative balance {b.on_hand}/{b.reserved}/{b.on_order}")
        if b.reserved != active.get((b.sku, b.location_id), 0):
            problems.append(
                f"{where} reserved {b.reserved} != active reservations "
                f"{active.get((b.sku, b.location_id), 0)}"
            )
    return problems


def on_order_violations(session: Session) -> list[str]:
    """On order must equal what is still to come: open purchase-order quantities plus transfers
    in transit, per SKU and location."""
    expected: dict[tuple[str, str], int] = {}
    open_po = session.execute(
        select(
            PurchaseOrderLine.sku,
            PurchaseOrder.location_id,
            func.sum(PurchaseOrderLine.quantity - PurchaseOrderLine.received_quantity),
        )
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(
            PurchaseOrder.status.in_(
                [PurchaseOrderStatus.OPEN, PurchaseOrderStatus.PARTIALLY_RECEIVED]
            )
        )
        .group_by(PurchaseOrderLine.sku, PurchaseOrder.location_id)
    )
    in_transit = session.execute(
        select(Transfer.sku, Transfer.to_location_id, func.sum(Transfer.quantity))
        .where(Transfer.status == TransferStatus.IN_TRANSIT)
        .group_by(Transfer.sku, Transfer.to_location_id)
    )
    for sku, location_id, quantity in [*open_po, *in_transit]:
        expected[(sku, location_id)] = expected.get((sku, location_id), 0) + int(quantity)
    return [
        f"{b.sku}@{b.location_id} on order {b.on_order} but "
        f"{expected.get((b.sku, b.location_id), 0)} is open on POs and transfers"
        for b in session.execute(select(InventoryBalance)).scalars()
        if b.on_order != expected.get((b.sku, b.location_id), 0)
    ]


def reservation_violations(session: Session) -> list[str]:
    """Every active reservation belongs to a line that holds stock, for its full quantity, and
    every line that holds stock has exactly one."""
    problems = []
    rows = session.execute(
        select(Reservation, OrderLine)
        .join(OrderLine, OrderLine.id == Reservation.line_id, isouter=True)
        .where(Reservation.released_at.is_(None))
    ).all()
    seen: set[int] = set()
    for reservation, line in rows:
        if line is None:
            problems.append(f"reservation {reservation.id} has no order line")
            continue
        if line.id in seen:
            problems.append(f"line {line.id} has more than one active reservation")
        seen.add(line.id)
        if line.state not in RESERVING_STATES:
            problems.append(f"reservation {reservation.id} held by line {line.id} in {line.state}")
        if (reservation.quantity, reservation.sku, reservation.location_id) != (
            line.quantity,
            line.sku,
            line.location_id,
        ):
            problems.append(f"reservation {reservation.id} does not match line {line.id}")
    holding = session.execute(
        select(OrderLine.id).where(OrderLine.state.in_([str(s) for s in RESERVING_STATES]))
    ).scalars()
    problems.extend(f"line {i} holds no reservation" for i in holding if i not in seen)
    return problems


def audit_violations(session: Session) -> list[str]:
    """Every line state change has its audit entry (same line, same from/to states)."""
    changes = session.execute(
        select(
            LineStateChange.line_id,
            LineStateChange.from_state,
            LineStateChange.to_state,
            func.count(),
        ).group_by(LineStateChange.line_id, LineStateChange.from_state, LineStateChange.to_state)
    ).all()
    audited = {
        (int(entity_id), from_state, to_state): count
        for entity_id, from_state, to_state, count in session.execute(
            select(AuditEntry.entity_id, AuditEntry.from_state, AuditEntry.to_state, func.count())
            .where(AuditEntry.entity_type == "order_line", AuditEntry.to_state.is_not(None))
            .group_by(AuditEntry.entity_id, AuditEntry.from_state, AuditEntry.to_state)
        )
    }
    problems = [
        f"line {line_id} {from_state}->{to_state}: {count} changes, "
        f"{audited.get((line_id, from_state, to_state), 0)} audit entries"
        for line_id, from_state, to_state, count in changes
        if from_state is not None and audited.get((line_id, from_state, to_state), 0) < count
    ]
    unaudited_lines = session.execute(
        select(OrderLine.id).where(
            ~select(AuditEntry.id)
            .where(
                AuditEntry.entity_type == "order_line",
                AuditEntry.entity_id == func.cast(OrderLine.id, AuditEntry.entity_id.type),
            )
            .exists()
        )
    ).scalars()
    problems.extend(f"line {i} has no audit entry" for i in unaudited_lines)
    return problems


def all_violations(session: Session) -> list[str]:
    return [
        *ledger_violations(session),
        *stock_violations(session),
        *on_order_violations(session),
        *reservation_violations(session),
        *audit_violations(session),
    ]
