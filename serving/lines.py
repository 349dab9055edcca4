"""An order line as capture decided (or would decide) it, and an action that could save it: the
plain values every part of scoring passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any


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
