"""What the unit of work keeps for a batch of acts in one transaction (queued history rows, row
locks) follows the savepoints: a refused act leaves none of it behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from erp_core.db.models import AuditEntry, InventoryMovement, LineStateChange, OrderLine
from erp_core.domain.errors import InvalidValue
from erp_core.services.fulfilment import pick, record_shipment_event
from erp_core.services.order_changes import change_promise
from erp_core.services.orders import LineRequest, capture_order
from erp_core.services.stock import current_promise, first_promise, lock_balance
from tests.conftest import LOGISTICS, SALES, SERVICE, T0, stock
from tests.erp_core.support import assert_books_balance, balance


def rows(uow, model, *where) -> int:
    return uow.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_history_of_an_act_is_readable_in_the_batch_once_the_act_returns(world):
    stock(world, "WIDGET", "WEST", 5)
    with world:
        line = capture_order(
            world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 2)], now=T0
        ).lines[0]
        assert rows(world, LineStateChange, LineStateChange.line_id == line.line_id) == 2
        line_audit = (
            AuditEntry.entity_type == "order_line",
            AuditEntry.entity_id == str(line.line_id),
        )
        assert rows(world, AuditEntry, *line_audit) == 3
        assert rows(world, InventoryMovement, InventoryMovement.kind == "reservation") == 1
        world.commit()
    assert_books_balance(world)


def test_a_refused_act_in_a_batch_leaves_no_history_behind(world):
    stock(world, "WIDGET", "WEST", 5)
    with world:
        capture_order(world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 1)], now=T0)
        with pytest.raises(InvalidValue):
            capture_order(
                world,
                SALES,
                customer_id="C-GOLD",
                lines=[LineRequest("WIDGET", 3)],
                now=T0,
                ship_to_region="nowhere",
            )
        world.commit()
    with world:
        assert rows(world, OrderLine) == 1
        assert rows(world, AuditEntry, AuditEntry.action == "capture_order") == 1
        assert rows(world, LineStateChange) == 2
    assert_books_balance(world)


def test_append_takes_only_whole_rows_of_append_only_tables(world):
    with world:
        with pytest.raises(ValueError, match="not an append-only table"):
            world.append(OrderLine, sku="WIDGET")
        with pytest.raises(ValueError, match="need exactly the columns"):
            world.append(AuditEntry, actor="x")


def test_locks_taken_in_a_rolled_back_savepoint_are_forgotten(world):
    with world:
        with world:
            undone = lock_balance(world, "WIDGET", "WEST")
            assert world.held(("inventory_balance", "WIDGET", "WEST")) is undone
        assert world.held(("inventory_balance", "WIDGET", "WEST")) is None
        with world:
            kept = lock_balance(world, "WIDGET", "EAST")
            world.commit()
        assert world.held(("inventory_balance", "WIDGET", "EAST")) is kept
        world.commit()
        assert world.held(("inventory_balance", "WIDGET", "EAST")) is None


def test_a_relocked_balance_shows_what_the_database_holds(world):
    stock(world, "WIDGET", "WEST", 5)
    with world:
        with world:
            balance = lock_balance(world, "WIDGET", "WEST")
            balance.on_hand = 99
            world.session.flush()
        assert lock_balance(world, "WIDGET", "WEST").on_hand == 5


def _stored_state(world, line_id: int) -> str:
    return world.session.execute(
        select(OrderLine.state).where(OrderLine.id == line_id)
    ).scalar_one()


def _captured_line(world) -> int:
    """A committed two-unit line allocated from stock: its id."""
    stock(world, "WIDGET", "WEST", 5)
    with world:
        line_id = (
            capture_order(
                world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 2)], now=T0
            )
            .lines[0]
            .line_id
        )
        world.commit()
    return line_id


def test_write_changes_writes_the_changed_columns_and_leaves_the_row_clean(world):
    line_id = _captured_line(world)
    with world:
        line = world.session.get(OrderLine, line_id)
        assert line is not None
        line.state = "picked"
        world.write_changes([line], ("state", "quantity"))
        assert line not in world.session.dirty
        assert line.state == "picked"
        assert _stored_state(world, line_id) == "picked"
        line.quantity = 1  # a later change of another column still goes out with the flush
        world.session.flush()
        world.commit()
    with world:
        stored = world.session.get(OrderLine, line_id)
        assert stored is not None
        assert (stored.state, stored.quantity) == ("picked", 1)


def test_rows_written_past_the_session_are_reloaded_when_their_savepoint_is_undone(world):
    line_id = _captured_line(world)
    with world:
        line = world.session.get(OrderLine, line_id)
        assert line is not None
        with world:  # undone: the savepoint is rolled back
            line.state = "picked"
            world.write_changes([line], ("state",))
        assert line.state == "allocated"
        with world:  # kept by the savepoint, undone with the transaction's rollback
            line.state = "picked"
            world.write_changes([line], ("state",))
            world.commit()
        assert line.state == "picked"
    with world:
        assert _stored_state(world, line_id) == "allocated"


def test_a_whole_day_of_acts_in_one_batch_keeps_the_books(world):
    """Capture, pick, pack, ship and deliver, and a refused milestone in between, in one
    transaction: locks and queued rows taken by one act are reused or dropped correctly."""
    stock(world, "WIDGET", "WEST", 10)
    stock(world, "GADGET", "WEST", 10)
    day = T0.replace(hour=8)
    with world:
        captured = capture_order(
            world,
            SALES,
            customer_id="C-GOLD",
            lines=[LineRequest("WIDGET", 3), LineRequest("GADGET", 2)],
            now=day,
        )
        picks = {line.line_id: line.quantity for line in captured.lines}
        shipment = pick(
            world, LOGISTICS, order_id=captured.order_id, picks=picks, now=day + timedelta(hours=1)
        ).shipment_id
        record_shipment_event(
            world,
            LOGISTICS,
            shipment_id=shipment,
            event_type="packed",
            occurred_at=day + timedelta(hours=2),
            now=day + timedelta(hours=2),
        )
        with pytest.raises(InvalidValue):  # before the packing: refused, undoes only itself
            record_shipment_event(
                world,
                LOGISTICS,
                shipment_id=shipment,
                event_type="shipped",
                occurred_at=day + timedelta(minutes=90),
                now=day + timedelta(hours=3),
            )
        for event_type, hours in (("shipped", 3), ("delivered", 9)):
            record_shipment_event(
                world,
                LOGISTICS,
                shipment_id=shipment,
                event_type=event_type,
                occurred_at=day + timedelta(hours=hours),
                now=day + timedelta(hours=hours),
            )
        world.commit()
    with world:
        states = world.session.execute(select(OrderLine.state)).scalars().all()
        shipped = rows(world, InventoryMovement, InventoryMovement.kind == "shipment")
    assert states == ["delivered", "delivered"]
    assert shipped == 4  # reserved and on hand, for each line
    assert balance(world, "WIDGET", "WEST") == (7, 0, 0)
    assert_books_balance(world)


def test_a_promise_queued_in_an_act_is_seen_by_the_promise_readers(world):
    """Promises are queued history rows: the readers write the queue first, and a promise
    change returns the id of the row it wrote."""
    stock(world, "WIDGET", "WEST", 5)
    with world:
        line = capture_order(
            world, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 2)], now=T0
        ).lines[0]
        assert line.promised_ship_date is not None  # read back within the capture act
        changed = change_promise(
            world,
            SERVICE,
            line_id=line.line_id,
            promised_ship_date="2026-03-10",
            promised_delivery_date="2026-03-11",
            reason="customer asked",
            now=T0 + timedelta(hours=1),
        )
        newest = current_promise(world, line.line_id)
        first = first_promise(world, line.line_id)
        world.commit()
    assert newest is not None and first is not None
    assert (newest.id, newest.reason) == (changed["promise_id"], "customer asked")
    assert (first.reason, first.promised_ship_date.isoformat()) == (
        "capture",
        line.promised_ship_date,
    )
