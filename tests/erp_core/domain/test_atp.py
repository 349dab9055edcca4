"""Available-to-promise per location and the choice of fulfilling location(s) for a line."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erp_core.domain.atp import (
    Allocation,
    DeliveryEstimate,
    ScheduledReceipt,
    StockPosition,
    plan_allocation,
)
from erp_core.domain.errors import InvalidValue

TODAY = date(2026, 3, 3)
REPLENISH = date(2026, 4, 1)


def receipt(day: int, quantity: int) -> ScheduledReceipt:
    """A receipt expected on ``day`` March 2026."""
    return ScheduledReceipt(date(2026, 3, day), quantity)


def transit(days: Mapping[str, int]) -> DeliveryEstimate:
    """Delivery = (ready date, else today) + a fixed number of days per location."""

    def estimate(location: str, ready_on: date | None) -> date:
        return (ready_on or TODAY) + timedelta(days=days[location])

    return estimate


SAME_SPEED = transit({"WEST": 2, "EAST": 2, "NORTH": 2, "SOUTH": 2})


# --- StockPosition -----------------------------------------------------------------------------


def test_free_now_is_on_hand_minus_reserved() -> None:
    assert StockPosition("WEST", on_hand=10, reserved=3).free_now == 7
    assert StockPosition("WEST", on_hand=10, reserved=10).free_now == 0


def test_free_now_never_goes_negative() -> None:
    assert StockPosition("WEST", on_hand=2, reserved=5).free_now == 0


def test_free_now_ignores_backorders_and_receipts() -> None:
    position = StockPosition("WEST", 10, 3, backordered=4, receipts=(receipt(4, 50),))
    assert position.free_now == 7


POSITION = StockPosition(
    "WEST",
    on_hand=10,
    reserved=3,
    backordered=2,
    receipts=(receipt(20, 8), receipt(10, 5)),  # out of date order on purpose
)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 3, 3), 5),  # 10 - 3 - 2
        (date(2026, 3, 9), 5),
        (date(2026, 3, 10), 10),  # + 5 received on the 10th (inclusive)
        (date(2026, 3, 19), 10),
        (date(2026, 3, 20), 18),  # + 8 on the 20th
        (date(2026, 12, 31), 18),
    ],
)
def test_atp_on_adds_receipts_expected_by_the_date(day: date, expected: int) -> None:
    assert POSITION.atp_on(day) == expected


def test_atp_on_can_be_negative_when_backorders_exceed_stock() -> None:
    position = StockPosition("WEST", 0, 0, backordered=4, receipts=(receipt(10, 3),))
    assert position.atp_on(date(2026, 3, 9)) == -4
    assert position.atp_on(date(2026, 3, 10)) == -1


EXHAUSTED = StockPosition(
    "WEST",
    on_hand=10,
    reserved=10,
    backordered=3,
    receipts=(receipt(20, 8), receipt(10, 5)),
)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (1, date(2026, 3, 10)),  # -3 + 5 = 2 promisable after the first receipt
        (2, date(2026, 3, 10)),
        (3, date(2026, 3, 20)),  # -3 + 5 + 8 = 10 after the second
        (10, date(2026, 3, 20)),
        (11, None),  # no receipt covers it
    ],
)
def test_earliest_date_for(quantity: int, expected: date | None) -> None:
    assert EXHAUSTED.earliest_date_for(quantity) == expected


def test_earliest_date_for_without_receipts_is_none() -> None:
    assert StockPosition("WEST", 0, 0).earliest_date_for(1) is None


# --- plan_allocation ----------------------------------------------------------------------------


def plan(
    quantity: int,
    positions: list[StockPosition],
    *,
    home: str | None = "WEST",
    estimate: DeliveryEstimate = SAME_SPEED,
    allow_split: bool = True,
) -> list[Allocation]:
    return plan_allocation(
        quantity=quantity,
        home_location=home,
        positions=positions,
        replenish_date=REPLENISH,
        estimate_delivery=estimate,
        allow_split=allow_split,
    )


def test_home_location_first_when_it_has_the_stock() -> None:
    positions = [StockPosition("EAST", 50, 0), StockPosition("WEST", 5, 0)]
    slow_home = transit({"WEST": 6, "EAST": 1})
    assert plan(5, positions, estimate=slow_home) == [Allocation("WEST", 5, None)]


def test_elsewhere_the_earliest_delivery_wins() -> None:
    positions = [
        StockPosition("WEST", 4, 0),  # home, but short of the 5 asked
        StockPosition("EAST", 10, 0),
        StockPosition("NORTH", 10, 0),
    ]
    estimate = transit({"WEST": 1, "EAST": 3, "NORTH": 1})
    assert plan(5, positions, estimate=estimate) == [Allocation("NORTH", 5, None)]


def test_equal_deliveries_fall_back_to_location_name() -> None:
    positions = [StockPosition("NORTH", 10, 0), StockPosition("EAST", 10, 0)]
    assert plan(5, positions, home=None) == [Allocation("EAST", 5, None)]


def test_reserved_stock_is_not_free() -> None:
    positions = [StockPosition("WEST", 10, 8), StockPosition("EAST", 10, 0)]
    assert plan(5, positions) == [Allocation("EAST", 5, None)]


def test_split_sends_the_remainder_to_another_locations_free_stock() -> None:
    # Nobody holds 8. WEST gives its 6 now and EAST the other 2 now; WEST's receipt of 100
    # tomorrow is not waited for.
    positions = [
        StockPosition("WEST", 6, 0, receipts=(receipt(4, 100),)),
        StockPosition("EAST", 5, 0),
    ]
    assert plan(8, positions) == [Allocation("WEST", 6, None), Allocation("EAST", 2, None)]


def test_split_starts_with_the_location_holding_most() -> None:
    positions = [StockPosition("WEST", 3, 0), StockPosition("EAST", 7, 0)]
    assert plan(9, positions) == [Allocation("EAST", 7, None), Allocation("WEST", 2, None)]


def test_split_drains_every_location_then_backorders_the_rest() -> None:
    positions = [
        StockPosition("WEST", 3, 0),
        StockPosition("EAST", 4, 0),
        StockPosition("NORTH", 0, 0, receipts=(receipt(12, 20),)),
    ]
    assert plan(10, positions) == [
        Allocation("EAST", 4, None),
        Allocation("WEST", 3, None),
        Allocation("NORTH", 3, date(2026, 3, 12)),
    ]


def test_split_backorder_may_stay_at_the_drained_location() -> None:
    # WEST ships its 2 free now; its own receipt on the 9th covers the other 3.
    positions = [StockPosition("WEST", 2, 0, receipts=(receipt(9, 10),))]
    assert plan(5, positions) == [
        Allocation("WEST", 2, None),
        Allocation("WEST", 3, date(2026, 3, 9)),
    ]


def test_backorder_at_the_location_whose_receipt_covers_it_earliest() -> None:
    positions = [
        StockPosition("WEST", 0, 0, receipts=(receipt(20, 10),)),
        # EAST's receipt on the 10th is mostly promised already (8 backordered), so only its
        # second receipt on the 25th covers 5 more.
        StockPosition("EAST", 0, 0, backordered=8, receipts=(receipt(10, 10), receipt(25, 10))),
        # NORTH's receipt is the earliest but too small.
        StockPosition("NORTH", 0, 0, receipts=(receipt(5, 2),)),
    ]
    assert plan(5, positions) == [Allocation("WEST", 5, date(2026, 3, 20))]


def test_backorder_is_judged_by_delivery_not_receipt() -> None:
    positions = [
        StockPosition("WEST", 0, 0, receipts=(receipt(10, 10),)),  # ready 10th, 5 days transit
        StockPosition("EAST", 0, 0, receipts=(receipt(12, 10),)),  # ready 12th, 1 day transit
    ]
    estimate = transit({"WEST": 5, "EAST": 1})
    assert plan(5, positions, estimate=estimate) == [Allocation("EAST", 5, date(2026, 3, 12))]


def test_backorder_tie_prefers_home() -> None:
    positions = [
        StockPosition("EAST", 0, 0, receipts=(receipt(10, 10),)),
        StockPosition("WEST", 0, 0, receipts=(receipt(10, 10),)),
    ]
    assert plan(5, positions) == [Allocation("WEST", 5, date(2026, 3, 10))]


@pytest.mark.parametrize(
    ("home", "expected_location"),
    [("EAST", "EAST"), (None, "WEST"), ("SOUTH", "WEST")],  # else the first position
)
def test_replenish_date_when_no_receipt_covers_the_line(
    home: str | None, expected_location: str
) -> None:
    positions = [
        StockPosition("WEST", 0, 0, receipts=(receipt(10, 2),)),
        StockPosition("EAST", 1, 1),
    ]
    assert plan(5, positions, home=home) == [Allocation(expected_location, 5, REPLENISH)]


def test_no_split_keeps_the_line_whole_and_waits() -> None:
    # 3 free at WEST and 4 at EAST, 5 wanted: WEST's 3 plus its receipt of 5 on the 10th cover
    # the whole line then.
    positions = [
        StockPosition("WEST", 3, 0, receipts=(receipt(10, 5),)),
        StockPosition("EAST", 4, 0),
    ]
    assert plan(5, positions, allow_split=False) == [Allocation("WEST", 5, date(2026, 3, 10))]


def test_no_split_still_ships_from_stock_when_one_location_has_it() -> None:
    positions = [StockPosition("WEST", 3, 0), StockPosition("EAST", 6, 0)]
    assert plan(5, positions, allow_split=False) == [Allocation("EAST", 5, None)]


def test_no_split_without_any_cover_waits_for_replenishment() -> None:
    positions = [StockPosition("WEST", 3, 0), StockPosition("EAST", 4, 0)]
    assert plan(5, positions, allow_split=False) == [Allocation("WEST", 5, REPLENISH)]


def test_allocation_from_stock_flag() -> None:
    assert Allocation("WEST", 1, None).from_stock is True
    assert Allocation("WEST", 1, TODAY).from_stock is False


@pytest.mark.parametrize("quantity", [0, -2])
def test_plan_refuses_non_positive_quantity(quantity: int) -> None:
    with pytest.raises(InvalidValue) as info:
        plan(quantity, [StockPosition("WEST", 10, 0)])
    assert info.value.field == "quantity"
    assert info.value.value == quantity


def test_plan_refuses_no_locations() -> None:
    with pytest.raises(InvalidValue) as info:
        plan(1, [])
    assert info.value.field == "location"


positions_strategy = st.lists(
    st.builds(
        StockPosition,
        location=st.sampled_from(["WEST", "EAST", "NORTH", "SOUTH"]),
        on_hand=st.integers(0, 20),
        reserved=st.integers(0, 20),
        backordered=st.integers(0, 10),
        receipts=st.lists(
            st.builds(ScheduledReceipt, st.dates(TODAY, REPLENISH), st.integers(1, 15)),
            max_size=3,
        ).map(tuple),
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda p: p.location,
)


@given(
    quantity=st.integers(1, 60),
    positions=positions_strategy,
    allow_split=st.booleans(),
    home=st.sampled_from(["WEST", "EAST", None]),
)
def test_plan_always_accounts_for_the_whole_line(
    quantity: int, positions: list[StockPosition], allow_split: bool, home: str | None
) -> None:
    allocations = plan(quantity, positions, home=home, allow_split=allow_split)
    assert sum(a.quantity for a in allocations) == quantity
    assert all(a.quantity > 0 for a in allocations)
    # At most one backorder part, and it comes last.
    assert all(a.from_stock for a in allocations[:-1])
    free = {p.location: p.free_now for p in positions}
    for allocation in allocations:
        assert allocation.location in free
        if allocation.from_stock:
            assert allocation.quantity <= free[allocation.location]
    if not allow_split:
        assert len(allocations) == 1
