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


def test_a_read_only_unit_of_work_reads_beside_a_sqlite_writer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite takes the write lock at BEGIN IMMEDIATE; a reader that began deferred reads the
    last committed state while a writer holds it, instead of waiting for the lock."""
    import time

    from sqlalchemy import func, select, text

    from erp_core.db.engine import make_engine, make_session_factory
    from erp_core.db.models import Base, Carrier
    from erp_core.db.uow import UnitOfWork
    from erp_core.policy import load_policy

    url = f"sqlite:///{tmp_path / 'ro.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with engine.connect() as writer:
        writer.begin()
        writer.execute(text("INSERT INTO carriers (id, name) VALUES ('X', 'x')"))
        reader = UnitOfWork(make_session_factory(make_engine(url)), load_policy(), read_only=True)
        started = time.perf_counter()
        with reader:
            seen = reader.session.scalar(select(func.count()).select_from(Carrier))
        waited = time.perf_counter() - started
        writer.rollback()
    assert seen == 0  # the writer's row is not committed
    assert waited < 5  # a locked write transaction would have kept it waiting 30 s
