"""Line pricing from the customer's tier price list, with quantity breaks and approval rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from erp_core.domain.errors import InvalidValue

CENT = Decimal("0.01")
MAX_PRICE_TO_TIER = 1000
"""A typed unit price more than this many times the tier price is refused as a typing error: no
negotiated price is a thousand price-list prices, and its "discount" (-99,900 %) is the most the
order line's discount column holds. A price typed ten times too high is kept, and flagged by the
margin model."""


@dataclass(frozen=True)
class PriceBreak:
    """Unit price for orders of at least ``min_quantity`` units."""

    min_quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class PriceDecision:
    list_price: Decimal
    tier_price: Decimal
    unit_price: Decimal
    discount_pct: Decimal
    """Discount of the unit price against the tier price, in percent (0 when on the list)."""
    needs_approval: bool
    source: str
    """``price_list`` when the tier price applies, ``override`` when the caller set a price."""


def tier_unit_price(list_price: Decimal, breaks: Sequence[PriceBreak], quantity: int) -> Decimal:
    """The price-list price for ``quantity``: the best break the quantity reaches, else list."""
    if quantity <= 0:
        raise InvalidValue("quantity", quantity, "must be > 0")
    reached = [b for b in breaks if b.min_quantity <= quantity]
    if not reached:
        return list_price
    return max(reached, key=lambda b: b.min_quantity).unit_price


def decide_price(
    *,
    list_price: Decimal,
    breaks: Sequence[PriceBreak],
    quantity: int,
    requested_unit_price: Decimal | None,
    approval_threshold_pct: Decimal,
    field: str = "unit_price",
) -> PriceDecision:
    """Price one line; a requested price below tier price by more than the threshold needs an
    approval before the line may ship. ``field`` names the price in an error."""
    tier_price = tier_unit_price(list_price, breaks, quantity)
    if requested_unit_price is None:
        return PriceDecision(list_price, tier_price, tier_price, Decimal(0), False, "price_list")
    if requested_unit_price <= 0:
        raise InvalidValue(field, requested_unit_price, "must be > 0")
    if requested_unit_price > tier_price * MAX_PRICE_TO_TIER:
        raise InvalidValue(
            field,
            requested_unit_price,
            f"more than {MAX_PRICE_TO_TIER}x the price-list price {tier_price}",
        )
    unit_price = requested_unit_price.quantize(CENT, rounding=ROUND_HALF_UP)
    exact_discount = (tier_price - unit_price) / tier_price * 100
    return PriceDecision(
        list_price,
        tier_price,
        unit_price,
        exact_discount.quantize(CENT, rounding=ROUND_HALF_UP),
        # Judged on the exact discount: rounding first would let 10.004 % pass a 10 % threshold.
        exact_discount > approval_threshold_pct,
        "override",
    )


def parse_money(field: str, raw: object) -> Decimal:
    """Decimal from a user value; a clear error naming the field when it does not parse."""
    try:
        value = Decimal(str(raw))
    except (ArithmeticError, ValueError) as exc:
        raise InvalidValue(field, raw, "not a number") from exc
    if not value.is_finite():
        raise InvalidValue(field, raw, "not a finite number")
    return value
