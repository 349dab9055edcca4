"""Credit check: open exposure plus this order against the customer's credit limit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from erp_core.domain.credit import exceeds_credit_limit


@pytest.mark.parametrize(
    ("open_exposure", "order_value", "limit", "held"),
    [
        ("0", "500.00", "1000.00", False),
        ("400.00", "500.00", "1000.00", False),
        ("500.00", "500.00", "1000.00", False),  # exactly at the limit: allowed
        ("500.00", "500.01", "1000.00", True),  # one cent over: held
        ("1000.00", "0", "1000.00", False),
        ("999.99", "0.02", "1000.00", True),
        ("0", "100.01", "100", True),  # a small customer's limit (100) and a bigger order
        ("0", "0", "0", False),
        ("0", "0.01", "0", True),  # a zero limit holds any order
        ("1200.00", "0.01", "1000.00", True),  # already over the limit
    ],
)
def test_exceeds_credit_limit(open_exposure: str, order_value: str, limit: str, held: bool) -> None:
    assert (
        exceeds_credit_limit(Decimal(open_exposure), Decimal(order_value), Decimal(limit)) is held
    )


def test_trailing_zeros_do_not_matter() -> None:
    assert exceeds_credit_limit(Decimal("250.0"), Decimal("750.000"), Decimal("1000")) is False
