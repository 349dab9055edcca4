"""Sixteen clerks press enter at once for the last ten units: nobody oversells.

Each worker has its own engine (its own connection) and a barrier releases them together, so the
reservations really race in the database: row locks on PostgreSQL, a write transaction on SQLite.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from erp_core.db.engine import make_engine, make_session_factory
from erp_core.db.models import OrderLine
from erp_core.db.uow import UnitOfWork
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import SALES, T0, stock
from tests.erp_core.support import assert_books_balance, balance, count

WORKERS = 16
LAST_UNITS = 10
CUSTOMERS = ("C-GOLD", "C-BRONZE", "C-EAST")


def race(url: str, policy, work) -> tuple[list[object], list[BaseException]]:
    barrier = threading.Barrier(WORKERS)
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        engine = make_engine(url, poolclass=NullPool)
        unit = UnitOfWork(make_session_factory(engine), policy)
        try:
            barrier.wait(timeout=30)
            outcome = work(unit, index)
            with lock:
                results.append(outcome)
        except BaseException as exc:  # the test asserts that none escapes
            with lock:
                errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return results, errors


def order_one_unit(unit: UnitOfWork, index: int) -> str:
    captured = capture_order(
        unit,
        SALES,
        customer_id=CUSTOMERS[index % len(CUSTOMERS)],
        lines=[LineRequest("WIDGET", 1)],
        now=T0 + timedelta(seconds=index),
        allow_split=False,
    )
    return captured.lines[0].state


def test_sixteen_workers_racing_for_the_last_ten_units_never_oversell(world, db_url):
    # Only WEST holds stock; EAST has none, so every unit comes out of one balance row.
    stock(world, "WIDGET", "WEST", LAST_UNITS)
    results, errors = race(db_url, world.policy, order_one_unit)
    assert errors == []
    assert Counter(results) == {"allocated": LAST_UNITS, "backordered": WORKERS - LAST_UNITS}
    with world:
        allocated_units = world.session.execute(
            select(func.sum(OrderLine.quantity)).where(OrderLine.state == "allocated")
        ).scalar_one()
    assert_books_balance(world)
    assert balance(world, "WIDGET", "WEST") == (LAST_UNITS, LAST_UNITS, 0)
    assert allocated_units == LAST_UNITS


def test_concurrent_retries_with_one_idempotency_key_create_one_order(world, db_url):
    stock(world, "WIDGET", "WEST", LAST_UNITS)

    def retry(unit: UnitOfWork, _index: int) -> int:
        return capture_order(
            unit,
            SALES,
            customer_id="C-GOLD",
            lines=[LineRequest("WIDGET", 2)],
            now=T0,
            idempotency_key="edi-0001",
        ).order_id

    results, errors = race(db_url, world.policy, retry)
    assert errors == []
    assert len(set(results)) == 1
    assert (balance(world, "WIDGET", "WEST").reserved, count(world, OrderLine)) == (2, 1)
