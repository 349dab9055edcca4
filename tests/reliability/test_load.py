"""Concurrent load: 16 client processes capture orders (each with its idempotency key), cancel
some, pick and ship others (milestones over HTTP) and receive goods, against ``erpx serve
--workers 2``, for a few seconds; then, from the database alone, the books hold (no oversell, the
ledger explains every balance, reservations and audit entries match, every case has the owner
the policy names, no line shipped twice) and every order exists exactly once: each 2xx a client
got is one order, and every order in the database was answered to some client."""

from __future__ import annotations

import json
import threading
import time

from sqlalchemy import select

from erp_core.db.models import Customer, OrderLine, PurchaseOrder, PurchaseOrderLine
from erp_core.db.uow import UnitOfWork
from erp_core.policy import load_policy
from erp_core.services.common import lock_row
from erp_core.services.exceptions import open_exception
from erp_core.services.order_changes import cancel_order_lines
from erp_core.services.orders import LineRequest, capture_order
from erp_core.services.purchasing import receive_purchase_order_line
from erp_core.services.stock import lock_balances
from tests.conftest import LOGISTICS, SALES
from tests.e2e.conftest import NOW
from tests.reliability.load import (
    LoadPlan,
    Server,
    World,
    check_exactly_once,
    figures,
    invariant_violations,
    prepare_world,
    recover,
    run_clients,
)

CLIENTS = 16
SECONDS = 5.0


def test_sixteen_clients_keep_the_books_and_every_order_exactly_once(
    server: Server, world: World
) -> None:
    plan = LoadPlan(server.base_url, world, clients=CLIENTS, seconds=SECONDS, run_id="load")
    reports = run_clients(plan)
    measured = figures(reports, SECONDS)
    print(json.dumps(measured, indent=1))
    assert recover(plan, reports) == 0, "a healthy server left a capture unanswered"

    assert invariant_violations(world.database_url) == []
    once = check_exactly_once(world.database_url, reports)
    assert once.ok, once
    assert once.acknowledged == once.orders_in_database == once.keys
    # The load did what it says: orders of every kind of work, and reads that match.
    for operation in ("capture", "cancel", "pick", "event", "receive", "read"):
        assert measured["operations"].get(operation, 0) > 0, measured["operations"]
    assert measured["mismatched_reads"] == []
    # A healthy server answers everything: no 5xx, no dropped connection.
    assert measured["errors_by_kind"] == {}
    assert "Traceback" not in server.log()


def test_a_cancel_locks_its_balances_in_the_global_order(postgres_schema_url: str) -> None:
    """What the load found on PostgreSQL: a cancel locked its lines' balances one by one in line
    order (WIDGET@WEST, then GADGET@WEST) while a capture locks them sorted (GADGET first), and
    PostgreSQL broke the deadlock by failing one of them (a 503 to the clerk). Here a
    transaction holds GADGET@WEST while the cancel starts, then asks for WIDGET@WEST: with the
    balances locked in the one order, the cancel waits holding nothing and both succeed."""
    world = prepare_world(postgres_schema_url)
    uow = UnitOfWork.from_url(world.database_url, load_policy())
    try:
        order = capture_order(
            uow,
            SALES,
            customer_id="C-GOLD",
            lines=[LineRequest("WIDGET", 1), LineRequest("GADGET", 1)],
            now=NOW,
        )
        assert [line.state for line in order.lines] == ["allocated", "allocated"]
        failures: list[BaseException] = []

        def cancel() -> None:
            try:
                cancel_order_lines(
                    UnitOfWork(uow.session_factory, uow.policy),
                    SALES,
                    order_id=order.order_id,
                    now=NOW,
                )
            except BaseException as error:
                failures.append(error)

        holder = UnitOfWork(uow.session_factory, uow.policy)
        with holder:
            lock_balances(holder, [("GADGET", "WEST")])
            canceller = threading.Thread(target=cancel)
            canceller.start()
            time.sleep(0.5)  # the cancel is now waiting for a balance
            lock_balances(holder, [("WIDGET", "WEST")])
            holder.commit()
        canceller.join(timeout=30)
        assert not canceller.is_alive()
        assert failures == []
        assert invariant_violations(world.database_url) == []
    finally:
        uow.engine.dispose()


def test_a_cancel_racing_a_receipt_that_releases_its_backorder_frees_the_reservation(
    postgres_schema_url: str,
) -> None:
    """What the load found next on PostgreSQL: a cancel read a line as backordered, a receipt
    released the backorder (a reservation for the line) and committed, and the cancel then
    wrote the line cancelled over it, leaving the reservation active on a cancelled line
    (stock held for nobody). Here the receipt's transaction is held open while the cancel
    starts; the cancel must read the line again once it may change it, and free the stock."""
    world = prepare_world(postgres_schema_url)
    uow = UnitOfWork.from_url(world.database_url, load_policy())
    try:
        order = capture_order(
            uow,
            SALES,
            customer_id="C-GOLD",
            lines=[LineRequest("GADGET", 25)],  # 10 on hand at WEST: backordered whole
            now=NOW,
            allow_split=False,
        )
        assert [line.state for line in order.lines] == ["backordered"]
        with uow:
            po_line = uow.session.scalar(
                select(PurchaseOrderLine.id)
                .join(PurchaseOrder)
                .where(PurchaseOrderLine.sku == "GADGET", PurchaseOrder.location_id == "WEST")
            )
        failures: list[BaseException] = []

        def cancel() -> None:
            try:
                cancel_order_lines(
                    UnitOfWork(uow.session_factory, uow.policy),
                    SALES,
                    order_id=order.order_id,
                    now=NOW,
                )
            except BaseException as error:
                failures.append(error)

        receipt = UnitOfWork(uow.session_factory, uow.policy)
        with receipt:
            released = receive_purchase_order_line(
                receipt, LOGISTICS, purchase_order_line_id=po_line, quantity=25, now=NOW
            )
            assert released.released_line_ids == [order.lines[0].line_id]
            canceller = threading.Thread(target=cancel)
            canceller.start()
            time.sleep(0.5)  # the cancel has read the line as backordered, and waits
            receipt.commit()
        canceller.join(timeout=30)
        assert not canceller.is_alive()
        assert failures == []
        with uow:
            line = uow.session.get(OrderLine, order.lines[0].line_id)
            assert line is not None and line.state == "cancelled"
        assert invariant_violations(world.database_url) == []
    finally:
        uow.engine.dispose()


def test_a_locked_customer_does_not_hold_up_a_case_that_names_it(postgres_schema_url: str) -> None:
    """The third deadlock the load found on PostgreSQL: a capture locked its customer (FOR
    UPDATE) and waited for a balance a cancel held, while the cancel, releasing a backorder,
    opened a case naming that customer, whose foreign key check waited for the customer's
    lock. Locked FOR NO KEY UPDATE, the customer no longer blocks a row that refers to it."""
    world = prepare_world(postgres_schema_url)
    uow = UnitOfWork.from_url(world.database_url, load_policy())
    try:
        opened: list[int] = []

        def open_case() -> None:
            writer = UnitOfWork(uow.session_factory, uow.policy)
            with writer:
                customer = writer.session.get(Customer, "C-GOLD")
                opened.append(open_exception(writer, SALES, NOW, "shortage", customer=customer).id)
                writer.commit()

        holder = UnitOfWork(uow.session_factory, uow.policy)
        with holder:
            lock_row(holder, Customer, "C-GOLD", entity="customer", field="customer_id")
            writer = threading.Thread(target=open_case)
            writer.start()
            writer.join(timeout=5)
            waited = writer.is_alive()
            holder.commit()
        writer.join(timeout=30)
        assert not waited, "the case waited for the customer's lock"
        assert len(opened) == 1
    finally:
        uow.engine.dispose()
