"""The sales desk's prices: mostly the price list, some negotiated discounts, and a few labelled
anomalies (a price typed x10 or /10, a unit-of-measure mix-up, a discount beyond authority entered
without approval, a price below cost, a stale price list)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from erp_core.db.models import ApprovalRequest
from erp_core.simulate.world import PRICE_RISE, PRICE_RISE_DAY, QUANTITY_BREAKS, World, tier_price

ANOMALY_RATE = 0.004
ANOMALY_TYPES = (
    "price_x10",
    "price_div10",
    "uom_mixup",
    "discount_without_approval",
    "below_cost",
    "stale_price",
)
NEGOTIATING_CHANNELS = ("field_sales", "key_account")


@dataclass(frozen=True)
class PricedLine:
    sku: int
    quantity: int
    unit_price: Decimal | None
    """None: the ERP prices it from the customer's price list."""
    anomaly: str | None = None


class PricingDesk:
    def __init__(self, world: World, rng: np.random.Generator) -> None:
        self.world = world
        self.rng = rng

    def price(self, buyer: int, sku: int, quantity: int, today: date) -> PricedLine:
        w = self.world
        if self.rng.random() < ANOMALY_RATE:
            kind = str(self.rng.choice(ANOMALY_TYPES))
            unit_price = self._anomalous(kind, buyer, sku, quantity, today)
            if unit_price is not None:
                return PricedLine(sku, quantity, unit_price, kind)
        if w.customer_channel[buyer] in NEGOTIATING_CHANNELS and self.rng.random() < 0.15:
            # A negotiated discount, mostly within authority, sometimes needing finance's yes.
            cut = (
                self.rng.uniform(0.12, 0.2)
                if self.rng.random() < 0.1
                else self.rng.uniform(0.02, 0.09)
            )
            return PricedLine(sku, quantity, self._list_price(buyer, sku, quantity, today, 1 - cut))
        return PricedLine(sku, quantity, None)

    def _list_price(
        self,
        buyer: int,
        sku: int,
        quantity: int,
        today: date,
        factor: float = 1.0,
        current: bool = True,
    ) -> Decimal:
        w = self.world
        base = float(w.list_price[sku])
        day = (today - w.start).days
        if current and day >= PRICE_RISE_DAY:
            base *= 1 + PRICE_RISE
        for min_qty, extra in reversed(QUANTITY_BREAKS):
            if quantity >= min_qty:
                base *= 1 - extra
                break
        return tier_price(base * factor, w.customer_tier[buyer])

    def _anomalous(
        self, kind: str, buyer: int, sku: int, quantity: int, today: date
    ) -> Decimal | None:
        w = self.world
        price = self._list_price(buyer, sku, quantity, today)
        if kind == "price_x10":
            return price * 10
        if kind == "price_div10":
            return (price / 10).quantize(Decimal("0.01"))
        if kind == "uom_mixup":
            pack = int(w.pack_size[sku])
            return price * pack if pack > 1 else None
        if kind == "discount_without_approval":
            return self._list_price(buyer, sku, quantity, today, float(self.rng.uniform(0.6, 0.75)))
        if kind == "below_cost":
            return Decimal(str(round(float(w.unit_cost[sku]) * self.rng.uniform(0.7, 0.95), 2)))
        if kind == "stale_price":
            if (today - w.start).days < PRICE_RISE_DAY:
                return None
            return self._list_price(buyer, sku, quantity, today, current=False)
        raise ValueError(kind)

    def pending_decisions(
        self, session: Session, rng: np.random.Generator, orders: set[int]
    ) -> Iterator[tuple[int, bool]]:
        """Finance approves most of the simulated world's discount requests the next morning and
        rejects some."""
        pending = session.execute(
            select(ApprovalRequest.id, ApprovalRequest.order_id)
            .where(ApprovalRequest.status == "pending")
            .order_by(ApprovalRequest.id)
        ).all()
        for approval_id, order_id in pending:
            if order_id in orders:
                yield approval_id, bool(rng.random() < 0.8)
