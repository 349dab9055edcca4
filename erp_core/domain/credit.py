"""Credit check: an order that would take the customer's open exposure over the limit is held."""

from __future__ import annotations

from decimal import Decimal


def exceeds_credit_limit(
    open_exposure: Decimal, order_value: Decimal, credit_limit: Decimal
) -> bool:
    """True when open orders plus this order would exceed the credit limit."""
    return open_exposure + order_value > credit_limit
