"""An order line as capture decided (or would decide) it, and an action that could save it: the
plain values every part of scoring passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from features.online import DraftOrder
from features.online_pricing import PricedDraftLine


@dataclass(frozen=True)
class LineView:
    """One order line as capture decided (or would decide) it."""

    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    state: str
    location_id: str | None
    lane_id: int | None
    carrier_id: str | None
    promised_ship_date: date | None
    promised_delivery_date: date | None
    expected_ready_on: date | None = None
    parent_line_no: int | None = None
    price_approval_pending: bool = False
    price_overridden: bool | None = None
    """Whether the request typed the price (capture's ``override``); None when not known."""
    unit_cost: Decimal | None = None
    tier_price: Decimal | None = None
    line_id: int | None = None
    options: Any = None
    """What else could be done for the line (a quote's alternatives), or None."""


@dataclass(frozen=True)
class OrderView:
    customer_id: str
    channel: str
    ship_to_region: str
    entered_at: datetime
    credit_hold: bool
    lines: tuple[LineView, ...]
    order_id: int = 0


@dataclass(frozen=True)
class Action:
    kind: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)


SCORED_STATES = ("allocated", "backordered", "credit_hold")


def _state_at_location(state: str) -> str:
    """A line picked or packed since capture is still at its location with its stock: the
    features read it as allocated."""
    return state if state in SCORED_STATES else "allocated"


def draft_of(order: OrderView) -> DraftOrder:
    """The order as both feature indexes read it (a priced draft line is a draft line that also
    says whether its price was typed)."""
    return DraftOrder(
        customer_id=order.customer_id,
        channel=order.channel,
        ship_region=order.ship_to_region,
        entered_at=order.entered_at,
        order_id=order.order_id,
        lines=tuple(
            PricedDraftLine(
                line_no=line.line_no,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=float(line.unit_price),
                state=_state_at_location(line.state),
                location_id=line.location_id,
                lane_id=line.lane_id,
                promised_ship_date=line.promised_ship_date,
                promised_delivery_date=line.promised_delivery_date,
                parent_line_no=line.parent_line_no,
                price_approval_pending=line.price_approval_pending,
                expected_ready_on=line.expected_ready_on,
                price_overridden=line.price_overridden,
            )
            for line in order.lines
        ),
    )
