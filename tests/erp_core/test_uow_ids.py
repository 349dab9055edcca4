"""Ids given to new rows before the flush (``UnitOfWork.assign_ids``, SQLite) are the ones the
database would have given: the next free ones, consecutive, and after an undone savepoint the
undone rows' ids again."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from erp_core.db.models import OrderLine
from erp_core.domain.errors import InvalidValue
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import SALES, T0, stock


def line_ids(uow) -> list[int]:
    with uow:
        return list(uow.session.execute(select(OrderLine.id).order_by(OrderLine.id)).scalars())


def capture(uow, *quantities: int, region: str | None = None):
    return capture_order(
        uow,
        SALES,
        customer_id="C-GOLD",
        lines=[LineRequest("WIDGET", q) for q in quantities],
        now=T0,
        ship_to_region=region,
    )


def test_lines_captured_in_one_transaction_get_the_next_free_ids_in_order(world) -> None:
    stock(world, "WIDGET", "WEST", 50)
    first = capture(world, 1)
    with world:
        second = capture(world, 1, 2, 3)
        third = capture(world, 4)
        world.commit()

    ids = [line.line_id for order in (first, second, third) for line in order.lines]
    assert ids == [1, 2, 3, 4, 5]
    assert line_ids(world) == ids


def test_an_undone_act_leaves_no_gap_in_the_ids_of_the_next_on_sqlite(sqlite_world) -> None:
    """(PostgreSQL sequences do not roll back: there the gap is the database's own.)"""
    world = sqlite_world
    stock(world, "WIDGET", "WEST", 50)
    with world:
        kept = capture(world, 1)
        with pytest.raises(InvalidValue):
            capture(world, 2, 3, region="mars")  # inserted, then refused: no lane serves it
        after = capture(world, 4)
        world.commit()

    assert [kept.lines[0].line_id, after.lines[0].line_id] == [1, 2]
    assert line_ids(world) == [1, 2]
