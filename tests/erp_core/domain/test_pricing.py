"""Line pricing: tier price lists with quantity breaks, requested prices and approval rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from erp_core.domain.errors import InvalidValue
from erp_core.domain.pricing import (
    PriceBreak,
    PriceDecision,
    decide_price,
    parse_money,
    tier_unit_price,
)

LIST = Decimal("10.00")
# Gold tier: 9.00 from 1 unit, 8.00 from 100, 7.50 from 500 (declared out of order on purpose).
GOLD = (
    PriceBreak(100, Decimal("8.00")),
    PriceBreak(1, Decimal("9.00")),
    PriceBreak(500, Decimal("7.50")),
)
TEN_PCT = Decimal("10")


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (1, Decimal("9.00")),
        (99, Decimal("9.00")),
        (100, Decimal("8.00")),  # the break is reached exactly at its min quantity
        (101, Decimal("8.00")),
        (499, Decimal("8.00")),
        (500, Decimal("7.50")),
        (10_000, Decimal("7.50")),  # the best (largest) break reached wins
    ],
)
def test_tier_unit_price_applies_the_largest_break_reached(
    quantity: int, expected: Decimal
) -> None:
    assert tier_unit_price(LIST, GOLD, quantity) == expected


def test_tier_unit_price_is_list_price_without_breaks() -> None:
    assert tier_unit_price(LIST, (), 1) == LIST
    assert tier_unit_price(LIST, [], 1_000) == LIST


def test_tier_unit_price_is_list_price_below_the_first_break() -> None:
    breaks = [PriceBreak(10, Decimal("9.25")), PriceBreak(50, Decimal("8.75"))]
    assert tier_unit_price(LIST, breaks, 9) == LIST
    assert tier_unit_price(LIST, breaks, 10) == Decimal("9.25")
    assert tier_unit_price(LIST, breaks, 50) == Decimal("8.75")


@pytest.mark.parametrize("quantity", [0, -1, -100])
def test_tier_unit_price_refuses_non_positive_quantity(quantity: int) -> None:
    with pytest.raises(InvalidValue) as info:
        tier_unit_price(LIST, GOLD, quantity)
    assert info.value.field == "quantity"
    assert info.value.value == quantity
    assert "quantity" in str(info.value)


def decide(
    quantity: int,
    requested: str | None,
    threshold: Decimal = TEN_PCT,
    breaks: tuple[PriceBreak, ...] = GOLD,
) -> PriceDecision:
    return decide_price(
        list_price=LIST,
        breaks=breaks,
        quantity=quantity,
        requested_unit_price=None if requested is None else Decimal(requested),
        approval_threshold_pct=threshold,
    )


def test_no_requested_price_takes_the_tier_price() -> None:
    assert decide(100, None) == PriceDecision(
        list_price=LIST,
        tier_price=Decimal("8.00"),
        unit_price=Decimal("8.00"),
        discount_pct=Decimal(0),
        needs_approval=False,
        source="price_list",
    )


def test_no_requested_price_without_breaks_is_list_price() -> None:
    decision = decide(3, None, breaks=())
    assert (decision.tier_price, decision.unit_price, decision.source) == (
        LIST,
        LIST,
        "price_list",
    )


@pytest.mark.parametrize(
    ("quantity", "requested", "discount", "needs_approval"),
    [
        (10, "9.00", "0.00", False),  # requested == tier price
        (10, "8.10", "10.00", False),  # exactly at the threshold: no approval
        (10, "8.09", "10.11", True),  # a cent beyond it: approval
        (10, "4.50", "50.00", True),
        (10, "9.90", "-10.00", False),  # above tier price: a negative discount, fine
        # Against the tier price (8.00 at 100 units), not the list price (10.00):
        (100, "7.20", "10.00", False),
        (100, "7.19", "10.13", True),
        # The same 7.20 for 99 units is 20 % under that quantity's 9.00 tier price.
        (99, "7.20", "20.00", True),
    ],
)
def test_requested_price_discount_and_approval(
    quantity: int, requested: str, discount: str, needs_approval: bool
) -> None:
    decision = decide(quantity, requested)
    assert decision.unit_price == Decimal(requested)
    assert decision.discount_pct == Decimal(discount)
    assert decision.needs_approval is needs_approval
    assert decision.source == "override"
    assert decision.list_price == LIST


def test_requested_price_is_rounded_half_up_to_cents() -> None:
    decision = decide(10, "8.105")
    assert decision.unit_price == Decimal("8.11")
    assert decision.discount_pct == Decimal("9.89")  # 0.89 / 9.00 = 9.888...%


def test_zero_threshold_needs_approval_for_any_discount() -> None:
    assert decide(10, "8.99", threshold=Decimal(0)).needs_approval is True
    assert decide(10, "9.00", threshold=Decimal(0)).needs_approval is False


def test_discount_just_beyond_threshold_needs_approval_despite_rounding() -> None:
    decision = decide_price(
        list_price=Decimal("250.00"),
        breaks=[PriceBreak(1, Decimal("200.01"))],
        quantity=1,
        requested_unit_price=Decimal("180.00"),
        approval_threshold_pct=TEN_PCT,
    )
    # (200.01 - 180.00) / 200.01 = 10.0045 % > 10 %
    assert decision.needs_approval is True


@pytest.mark.parametrize("requested", ["0", "0.00", "-1.00"])
def test_non_positive_requested_price_is_refused(requested: str) -> None:
    with pytest.raises(InvalidValue) as info:
        decide(10, requested)
    assert info.value.field == "unit_price"
    assert info.value.value == Decimal(requested)


def test_bad_quantity_is_refused_before_pricing() -> None:
    with pytest.raises(InvalidValue) as info:
        decide(0, "8.00")
    assert info.value.field == "quantity"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.50", Decimal("12.50")),
        (" 7.25 ", Decimal("7.25")),
        (3, Decimal(3)),
        (0.1, Decimal("0.1")),  # via str(): no binary-float artefacts
        (Decimal("4.2"), Decimal("4.2")),
        ("-5", Decimal(-5)),  # sign rules belong to the caller
        ("1e2", Decimal(100)),
    ],
)
def test_parse_money_accepts_numbers(raw: object, expected: Decimal) -> None:
    value = parse_money("unit_price", raw)
    assert isinstance(value, Decimal)
    assert value == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", "not a number"),
        ("", "not a number"),
        (None, "not a number"),
        ("1,000", "not a number"),
        ("12.50 EUR", "not a number"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        (float("inf"), "not a finite number"),
    ],
)
def test_parse_money_names_the_field_and_value(raw: object, reason: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_money("lines[0].unit_price", raw)
    error = info.value
    assert error.field == "lines[0].unit_price"
    assert error.value == raw
    assert error.reason == reason
    assert str(error) == f"invalid lines[0].unit_price={raw!r}: {reason}"
    assert error.as_dict()["code"] == "invalid_value"
    assert error.as_dict()["field"] == "lines[0].unit_price"


def test_parse_money_error_example_from_the_brief() -> None:
    with pytest.raises(InvalidValue, match=r"invalid unit_price='abc': not a number"):
        parse_money("unit_price", "abc")


def test_a_price_over_a_thousand_tier_prices_is_refused_as_a_typing_error() -> None:
    from erp_core.domain.pricing import MAX_PRICE_TO_TIER

    breaks = [PriceBreak(1, Decimal("10.00"))]
    kept = decide_price(
        list_price=Decimal("12.00"),
        breaks=breaks,
        quantity=1,
        requested_unit_price=Decimal("10.00") * MAX_PRICE_TO_TIER,
        approval_threshold_pct=Decimal(10),
    )
    assert kept.discount_pct == Decimal("-99900.00")
    with pytest.raises(InvalidValue) as refused:
        decide_price(
            list_price=Decimal("12.00"),
            breaks=breaks,
            quantity=1,
            requested_unit_price=Decimal("10000.01"),
            approval_threshold_pct=Decimal(10),
            field="lines[2].unit_price",
        )
    assert refused.value.field == "lines[2].unit_price"
