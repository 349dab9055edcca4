"""Cycle counts: adjustments through the ledger, and what they do to reservations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from erp_core.db.models import CycleCount, ExceptionCase, OrderLine
from erp_core.domain.errors import InvalidValue, NotFound, PermissionDenied
from erp_core.services.inventory import record_cycle_count
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import LOGISTICS, SALES, T0, stock
from tests.erp_core.support import assert_books_balance, balance, row

LATER = T0 + timedelta(hours=3)


def test_count_adjusts_on_hand_through_the_ledger(world):
    stock(world, "WIDGET", "WEST", 10)
    result = record_cycle_count(
        world, LOGISTICS, sku="WIDGET", location_id="WEST", counted_quantity=7, now=LATER
    )
    assert result.adjustment == -3
    counted = row(world, CycleCount, result.cycle_count_id)
    assert_books_balance(world)
    assert balance(world, "WIDGET", "WEST").on_hand == 7
    assert (counted.system_quantity, counted.counted_quantity) == (10, 7)


def test_count_below_reservations_backorders_the_lowest_priority_line(world):
    stock(world, "WIDGET", "WEST", 10)
    gold = capture_order(
        world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 5)], now=T0
    )
    bronze = capture_order(
        world, SALES, customer_id="C-BRONZE", lines=[LineRequest("WIDGET", 5)], now=T0
    )
    result = record_cycle_count(
        world, LOGISTICS, sku="WIDGET", location_id="WEST", counted_quantity=6, now=LATER
    )
    assert result.deallocated_line_ids == [bronze.lines[0].line_id]
    with world:
        states = {row.id: row.state for row in world.session.execute(select(OrderLine)).scalars()}
        case = world.session.execute(
            select(ExceptionCase).where(ExceptionCase.line_id == bronze.lines[0].line_id)
        ).scalar_one()
    assert_books_balance(world)
    assert states == {gold.lines[0].line_id: "allocated", bronze.lines[0].line_id: "backordered"}
    assert case.type == "shortage" and "cycle_count_shortage" in case.reasons
    assert balance(world, "WIDGET", "WEST") == (6, 5, 0)


def test_count_above_system_quantity_releases_backorders(world):
    captured = capture_order(
        world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 4)], now=T0
    )
    result = record_cycle_count(
        world, LOGISTICS, sku="WIDGET", location_id="WEST", counted_quantity=4, now=LATER
    )
    assert result.released_line_ids == [captured.lines[0].line_id]


@pytest.mark.parametrize(
    ("kwargs", "field", "error"),
    [
        ({"sku": "NOPE", "location_id": "WEST", "counted_quantity": 1}, "sku", NotFound),
        ({"sku": "WIDGET", "location_id": "NOPE", "counted_quantity": 1}, "location_id", NotFound),
        (
            {"sku": "WIDGET", "location_id": "WEST", "counted_quantity": -1},
            "counted_quantity",
            InvalidValue,
        ),
    ],
)
def test_bad_count_is_refused_with_the_field_named(world, kwargs, field, error):
    with pytest.raises(error) as raised:
        record_cycle_count(world, LOGISTICS, now=LATER, **kwargs)
    assert raised.value.field == field


def test_sales_rep_may_not_adjust_inventory(world):
    with pytest.raises(PermissionDenied):
        record_cycle_count(
            world, SALES, sku="WIDGET", location_id="WEST", counted_quantity=3, now=LATER
        )
