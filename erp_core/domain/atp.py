"""Available-to-promise and the choice of fulfilling location(s) for one order line.

ATP at a location on a date = on hand - reserved + scheduled receipts expected by that date -
quantities already promised from those receipts (open backorders). A line is filled from stock where
it can be; otherwise it waits for the earliest receipt that covers it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from erp_core.domain.errors import InvalidValue


@dataclass(frozen=True)
class ScheduledReceipt:
    expected_date: date
    quantity: int


@dataclass(frozen=True)
class StockPosition:
    """What one location holds and expects of one SKU."""

    location: str
    on_hand: int
    reserved: int
    backordered: int = 0
    receipts: tuple[ScheduledReceipt, ...] = field(default_factory=tuple)

    @property
    def free_now(self) -> int:
        return max(0, self.on_hand - self.reserved)

    def atp_on(self, day: date) -> int:
        inbound = sum(r.quantity for r in self.receipts if r.expected_date <= day)
        return self.on_hand - self.reserved - self.backordered + inbound

    def earliest_date_for(self, quantity: int) -> date | None:
        """The first expected receipt date by which ``quantity`` more units are promisable."""
        available = self.on_hand - self.reserved - self.backordered
        for receipt in sorted(self.receipts, key=lambda r: r.expected_date):
            available += receipt.quantity
            if available >= quantity:
                return receipt.expected_date
        return None


@dataclass(frozen=True)
class Allocation:
    """A part of a line to fill at ``location``: from stock now (``ready_on`` None), or as a
    backorder expected to be ready on ``ready_on``."""

    location: str
    quantity: int
    ready_on: date | None

    @property
    def from_stock(self) -> bool:
        return self.ready_on is None


DeliveryEstimate = Callable[[str, date | None], date]
"""(location, ready_on) -> promised delivery date; the caller knows lanes and backlogs."""


def plan_allocation(
    *,
    quantity: int,
    home_location: str | None,
    positions: Sequence[StockPosition],
    replenish_date: date,
    estimate_delivery: DeliveryEstimate,
    allow_split: bool = True,
) -> list[Allocation]:
    """Where to fill ``quantity``: the customer's home location when it has the stock, else the
    location with the earliest promised delivery; a partial fill is split from a backorder for the
    rest. ``replenish_date`` is when a new purchase would arrive if no receipt covers the line."""
    if quantity <= 0:
        raise InvalidValue("quantity", quantity, "must be > 0")
    if not positions:
        raise InvalidValue("location", None, "no location can fulfil this line")

    def preference(location: str) -> tuple[int, str]:
        return (0 if location == home_location else 1, location)

    full = [p for p in positions if p.free_now >= quantity]
    if full:
        home = next((p for p in full if p.location == home_location), None)
        if home is not None:
            return [Allocation(home.location, quantity, None)]
        best = min(
            full, key=lambda p: (estimate_delivery(p.location, None), preference(p.location))
        )
        return [Allocation(best.location, quantity, None)]

    partial = [p for p in positions if p.free_now > 0]
    if allow_split and partial:
        # Ship what is free now from the location holding most of it; plan the rest again
        # (another location may hold it, else it waits for a receipt).
        source = min(partial, key=lambda p: (-p.free_now, preference(p.location)))
        drained = [
            StockPosition(p.location, p.reserved, p.reserved, p.backordered, p.receipts)
            if p is source
            else p
            for p in positions
        ]
        return [
            Allocation(source.location, source.free_now, None),
            *plan_allocation(
                quantity=quantity - source.free_now,
                home_location=home_location,
                positions=drained,
                replenish_date=replenish_date,
                estimate_delivery=estimate_delivery,
                allow_split=True,
            ),
        ]
    return [_backorder(quantity, positions, home_location, replenish_date, estimate_delivery)]


def _backorder(
    quantity: int,
    positions: Sequence[StockPosition],
    home_location: str | None,
    replenish_date: date,
    estimate_delivery: DeliveryEstimate,
) -> Allocation:
    covered = [(p, p.earliest_date_for(quantity)) for p in positions]
    candidates = [(p, d) for p, d in covered if d is not None]
    if not candidates:
        location = home_location if home_location in {p.location for p in positions} else None
        return Allocation(location or positions[0].location, quantity, replenish_date)
    best, ready_on = min(
        candidates,
        key=lambda pd: (
            estimate_delivery(pd[0].location, pd[1]),
            0 if pd[0].location == home_location else 1,
            pd[0].location,
        ),
    )
    assert ready_on is not None
    return Allocation(best.location, quantity, ready_on)
