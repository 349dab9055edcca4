"""The unit of work: all or nothing, and nested acts that undo only themselves."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from erp_core.db.models import OrderLine, SalesOrder
from erp_core.domain.errors import InvalidValue
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import SALES, T0, stock


def orders(uow) -> int:
    with uow:
        return uow.session.execute(select(func.count(SalesOrder.id))).scalar_one()


def test_leaving_without_commit_writes_nothing(world):
    stock(world, "WIDGET", "WEST", 5)
    with world:
        world.session.add(
            SalesOrder(
                customer_id="C-GOLD",
                channel="edi",
                ship_to_region="west",
                entered_at=T0,
                entered_by="x",
            )
        )
        world.session.flush()
    assert orders(world) == 0


def test_refused_act_inside_a_batch_undoes_only_itself(world):
    stock(world, "WIDGET", "WEST", 5)
    with world:
        capture_order(world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 1)], now=T0)
        with pytest.raises(InvalidValue) as refused:
            # The order and its line are written before the region is found to have no lane.
            capture_order(
                world,
                SALES,
                customer_id="C-GOLD",
                lines=[LineRequest("WIDGET", 3)],
                now=T0,
                ship_to_region="nowhere",
            )
        assert refused.value.field == "ship_to_region"
        capture_order(world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 2)], now=T0)
        world.commit()
    with world:
        quantities = (
            world.session.execute(select(OrderLine.quantity).order_by(OrderLine.id)).scalars().all()
        )
    assert quantities == [1, 2]
    assert orders(world) == 2


def test_batch_left_without_commit_undoes_the_acts_inside_it(world):
    stock(world, "WIDGET", "WEST", 5)
    with world:
        capture_order(world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 1)], now=T0)
    assert orders(world) == 0
