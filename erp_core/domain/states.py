"""Every state machine of the core, declared as data and enforced in one function.

An order line moves ``draft -> confirmed -> (credit_hold | backordered | allocated) -> picked ->
packed -> shipped -> delivered``, and may be ``cancelled`` until it is picked or ``returned`` after
it is delivered. A backordered line becomes allocated when stock is reserved for it (a receipt, a
transfer, a manual release); an allocated line can fall back to backordered when a cycle count or an
allocation override takes its stock away.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from erp_core.domain.errors import IllegalTransition


class LineState(StrEnum):
    DRAFT = "draft"
    CONFIRMED = "confirmed"
    CREDIT_HOLD = "credit_hold"
    BACKORDERED = "backordered"
    ALLOCATED = "allocated"
    PICKED = "picked"
    PACKED = "packed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    RETURNED = "returned"


class ExceptionStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class ShipmentStatus(StrEnum):
    PICKED = "picked"
    PACKED = "packed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"


class PurchaseOrderStatus(StrEnum):
    OPEN = "open"
    PARTIALLY_RECEIVED = "partially_received"
    RECEIVED = "received"
    CANCELLED = "cancelled"


class TransferStatus(StrEnum):
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"


class ReturnStatus(StrEnum):
    AUTHORISED = "authorised"
    RECEIVED = "received"
    RESTOCKED = "restocked"
    SCRAPPED = "scrapped"


_L = LineState
LINE_TRANSITIONS: Mapping[LineState, frozenset[LineState]] = {
    _L.DRAFT: frozenset({_L.CONFIRMED, _L.CANCELLED}),
    _L.CONFIRMED: frozenset({_L.CREDIT_HOLD, _L.BACKORDERED, _L.ALLOCATED, _L.CANCELLED}),
    _L.CREDIT_HOLD: frozenset({_L.BACKORDERED, _L.ALLOCATED, _L.CANCELLED}),
    _L.BACKORDERED: frozenset({_L.ALLOCATED, _L.CANCELLED}),
    _L.ALLOCATED: frozenset({_L.PICKED, _L.BACKORDERED, _L.CANCELLED}),
    _L.PICKED: frozenset({_L.PACKED}),
    _L.PACKED: frozenset({_L.SHIPPED}),
    _L.SHIPPED: frozenset({_L.DELIVERED}),
    _L.DELIVERED: frozenset({_L.RETURNED}),
    _L.CANCELLED: frozenset(),
    _L.RETURNED: frozenset(),
}

_E = ExceptionStatus
EXCEPTION_TRANSITIONS: Mapping[ExceptionStatus, frozenset[ExceptionStatus]] = {
    _E.OPEN: frozenset({_E.ACKNOWLEDGED, _E.RESOLVED}),
    _E.ACKNOWLEDGED: frozenset({_E.RESOLVED}),
    _E.RESOLVED: frozenset(),
}

_A = ApprovalStatus
APPROVAL_TRANSITIONS: Mapping[ApprovalStatus, frozenset[ApprovalStatus]] = {
    _A.PENDING: frozenset({_A.APPROVED, _A.REJECTED}),
    _A.APPROVED: frozenset(),
    _A.REJECTED: frozenset(),
}

_S = ShipmentStatus
SHIPMENT_TRANSITIONS: Mapping[ShipmentStatus, frozenset[ShipmentStatus]] = {
    _S.PICKED: frozenset({_S.PACKED}),
    _S.PACKED: frozenset({_S.SHIPPED}),
    _S.SHIPPED: frozenset({_S.DELIVERED}),
    _S.DELIVERED: frozenset(),
}

_P = PurchaseOrderStatus
PURCHASE_ORDER_TRANSITIONS: Mapping[PurchaseOrderStatus, frozenset[PurchaseOrderStatus]] = {
    _P.OPEN: frozenset({_P.PARTIALLY_RECEIVED, _P.RECEIVED, _P.CANCELLED}),
    _P.PARTIALLY_RECEIVED: frozenset({_P.PARTIALLY_RECEIVED, _P.RECEIVED}),
    _P.RECEIVED: frozenset(),
    _P.CANCELLED: frozenset(),
}

_T = TransferStatus
TRANSFER_TRANSITIONS: Mapping[TransferStatus, frozenset[TransferStatus]] = {
    _T.IN_TRANSIT: frozenset({_T.RECEIVED}),
    _T.RECEIVED: frozenset(),
}

_R = ReturnStatus
RETURN_TRANSITIONS: Mapping[ReturnStatus, frozenset[ReturnStatus]] = {
    _R.AUTHORISED: frozenset({_R.RECEIVED}),
    _R.RECEIVED: frozenset({_R.RESTOCKED, _R.SCRAPPED}),
    _R.RESTOCKED: frozenset(),
    _R.SCRAPPED: frozenset(),
}

TRANSITION_TABLES: Mapping[str, Mapping[Any, frozenset[Any]]] = {
    "order_line": LINE_TRANSITIONS,
    "exception_case": EXCEPTION_TRANSITIONS,
    "approval_request": APPROVAL_TRANSITIONS,
    "shipment": SHIPMENT_TRANSITIONS,
    "purchase_order": PURCHASE_ORDER_TRANSITIONS,
    "transfer": TRANSFER_TRANSITIONS,
    "return_order": RETURN_TRANSITIONS,
}

OPEN_LINE_STATES = frozenset(
    {_L.CONFIRMED, _L.CREDIT_HOLD, _L.BACKORDERED, _L.ALLOCATED, _L.PICKED, _L.PACKED}
)
"""Lines that still count against the customer's credit and the location's workload."""


def check_transition(entity: str, current: str, target: str) -> str:
    """The one place a state change is allowed or refused; returns the target state."""
    table = TRANSITION_TABLES[entity]
    allowed = table.get(current)
    if allowed is None or target not in allowed:
        raise IllegalTransition(entity, str(current), str(target))
    return target
