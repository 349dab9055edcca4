"""Stock: balance locks, the append-only ledger, reservations, ATP positions and the release of
backorders when stock arrives.

Every balance change goes through ``post`` (ledger row + balance update in the same transaction).
Balance rows are locked in a fixed order (sku, location) so two transactions never deadlock.

The queries on the order-entry and fulfilment paths are built once, at import, with bound
parameters (``bindparam``) filled per call: building a SELECT costs SQLAlchemy about twice as much
as running it on SQLite.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date, datetime

from sqlalchemy import bindparam, func, select, tuple_, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import MultipleResultsFound

from erp_core.db.models import (
    Customer,
    InventoryBalance,
    InventoryMovement,
    LinePromise,
    Location,
    OrderLine,
    PoLineReceiptForecast,
    PurchaseOrder,
    PurchaseOrderLine,
    Reservation,
    SalesOrder,
    Transfer,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.allocation import BackorderClaim, lines_to_release
from erp_core.domain.atp import ScheduledReceipt, StockPosition
from erp_core.domain.errors import Conflict
from erp_core.domain.states import LineState, PurchaseOrderStatus, TransferStatus
from erp_core.policy import Actor
from erp_core.services.common import transition
from erp_core.services.inbound import NO_FORECAST, promise_receipt_date

BUCKETS = ("on_hand", "reserved", "on_order")


def lock_balances(
    uow: UnitOfWork, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], InventoryBalance]:
    """Lock (creating when missing) the balance rows of (sku, location) pairs, in sorted order.

    Rows this transaction already holds are not asked for again; the others are locked with one
    ``SELECT ... FOR UPDATE`` (``ORDER BY`` the key, so locks are taken in the one global order),
    and only pairs without a row yet are inserted first.
    """
    wanted = sorted(set(pairs))
    locked: dict[tuple[str, str], InventoryBalance] = {}
    missing: list[tuple[str, str]] = []
    for pair in wanted:
        held = uow.held(_balance_lock_key(pair))
        if held is None:
            missing.append(pair)
        else:
            locked[pair] = held
    if missing:
        found = _select_for_update(uow, missing)
        absent = [pair for pair in missing if pair not in found]
        if absent:
            _insert_empty_balances(uow, absent)
            found.update(_select_for_update(uow, absent))
        for pair, balance in found.items():
            uow.hold(_balance_lock_key(pair), balance)
        locked.update(found)
    return {pair: locked[pair] for pair in wanted}


def lock_existing_balances(uow: UnitOfWork, pairs: Iterable[tuple[str, str]]) -> None:
    """Lock the balance rows of the pairs that exist and are not held yet, in one go (a batch's
    balances before its first act); pairs without a row are left for ``lock_balances``."""
    unheld = [pair for pair in sorted(set(pairs)) if uow.held(_balance_lock_key(pair)) is None]
    if unheld:
        for pair, balance in _select_for_update(uow, unheld).items():
            uow.hold(_balance_lock_key(pair), balance)


def _balance_lock_key(pair: tuple[str, str]) -> tuple[str, str, str]:
    return ("inventory_balance", *pair)


_BALANCES_FOR_UPDATE = (
    select(InventoryBalance)
    .where(
        tuple_(InventoryBalance.sku, InventoryBalance.location_id).in_(
            bindparam("pairs", expanding=True)
        )
    )
    .order_by(InventoryBalance.sku, InventoryBalance.location_id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


BALANCES_PER_STATEMENT = 1000
"""Pairs per lock or insert statement: a whole world's balances (master data load) would pass
SQLite's limit of 32766 bound parameters in one."""


def _select_for_update(
    uow: UnitOfWork, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], InventoryBalance]:
    """Lock and (re)load the balance rows of ``pairs`` (sorted) that exist (on SQLite the
    transaction's ``BEGIN IMMEDIATE`` already serialises writers, and ``FOR UPDATE`` is not
    rendered); batches follow the sort order, so the lock order holds across them."""
    found: dict[tuple[str, str], InventoryBalance] = {}
    for start in range(0, len(pairs), BALANCES_PER_STATEMENT):
        batch = list(pairs[start : start + BALANCES_PER_STATEMENT])
        for row in uow.session.execute(_BALANCES_FOR_UPDATE, {"pairs": batch}).scalars():
            found[(row.sku, row.location_id)] = row
    return found


def _insert_empty_balances(uow: UnitOfWork, pairs: Sequence[tuple[str, str]]) -> None:
    """Insert zero balances for the pairs; a row a concurrent transaction just created wins."""
    insert = pg_insert if uow.dialect == "postgresql" else sqlite_insert
    for start in range(0, len(pairs), BALANCES_PER_STATEMENT):
        uow.session.execute(
            insert(InventoryBalance)
            .values(
                [
                    {"sku": s, "location_id": loc, "on_hand": 0, "reserved": 0, "on_order": 0}
                    for s, loc in pairs[start : start + BALANCES_PER_STATEMENT]
                ]
            )
            .on_conflict_do_nothing()
        )


def lock_balance(uow: UnitOfWork, sku: str, location_id: str) -> InventoryBalance:
    return lock_balances(uow, [(sku, location_id)])[(sku, location_id)]


def post(
    uow: UnitOfWork,
    balance: InventoryBalance,
    bucket: str,
    quantity: int,
    *,
    kind: str,
    actor: Actor,
    now: datetime,
    reference: tuple[str, int] | None = None,
) -> None:
    """Append one ledger movement and apply it to the (locked) balance."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket={bucket!r}")
    if quantity == 0:
        return
    setattr(balance, bucket, getattr(balance, bucket) + quantity)
    uow.append(
        InventoryMovement,
        occurred_at=now,
        sku=balance.sku,
        location_id=balance.location_id,
        bucket=bucket,
        quantity=quantity,
        kind=kind,
        reference_type=reference[0] if reference else None,
        reference_id=reference[1] if reference else None,
        actor=actor.name,
    )


def receive_scheduled(
    uow: UnitOfWork,
    balance: InventoryBalance,
    quantity: int,
    *,
    kind: str,
    actor: Actor,
    now: datetime,
    reference: tuple[str, int],
) -> None:
    """A scheduled receipt (purchase order, transfer in transit) arrives at the (locked) balance:
    its units come off order and go on hand."""
    for bucket, change in (("on_order", -quantity), ("on_hand", quantity)):
        post(uow, balance, bucket, change, kind=kind, actor=actor, now=now, reference=reference)


def reserve(
    uow: UnitOfWork, balance: InventoryBalance, line: OrderLine, actor: Actor, now: datetime
) -> Reservation:
    """Reserve the whole line at the balance's location; refuses to oversell."""
    if balance.on_hand - balance.reserved < line.quantity:
        raise Conflict(
            f"only {balance.on_hand - balance.reserved} of {line.sku} free at "
            f"{balance.location_id}, line {line.id} needs {line.quantity}",
            field="quantity",
            value=line.quantity,
        )
    reservation = Reservation(
        line_id=line.id,
        sku=line.sku,
        location_id=balance.location_id,
        quantity=line.quantity,
        created_at=now,
    )
    uow.assign_ids([reservation])
    uow.session.add(reservation)
    post(
        uow,
        balance,
        "reserved",
        line.quantity,
        kind="reservation",
        actor=actor,
        now=now,
        reference=("order_line", line.id),
    )
    return reservation


_ACTIVE_RESERVATION = select(Reservation).where(
    Reservation.line_id == bindparam("line_id"), Reservation.released_at.is_(None)
)
_ACTIVE_RESERVATIONS = select(Reservation).where(
    Reservation.line_id.in_(bindparam("line_ids", expanding=True)),
    Reservation.released_at.is_(None),
)


def active_reservation(uow: UnitOfWork, line_id: int) -> Reservation | None:
    return uow.session.execute(_ACTIVE_RESERVATION, {"line_id": line_id}).scalar_one_or_none()


def active_reservations(uow: UnitOfWork, line_ids: Collection[int]) -> dict[int, Reservation]:
    """``active_reservation`` of several lines in one query; lines holding none are absent."""
    found: dict[int, Reservation] = {}
    for reservation in uow.session.execute(
        _ACTIVE_RESERVATIONS, {"line_ids": list(line_ids)}
    ).scalars():
        if reservation.line_id in found:
            raise MultipleResultsFound(f"line {reservation.line_id} has two active reservations")
        found[reservation.line_id] = reservation
    return found


def unreserve(
    uow: UnitOfWork,
    balance: InventoryBalance,
    line: OrderLine,
    reason: str,
    actor: Actor,
    now: datetime,
) -> int:
    """Release the line's active reservation; returns the quantity released (0 if none)."""
    reservation = active_reservation(uow, line.id)
    if reservation is None:
        return 0
    reservation.released_at = now
    reservation.release_reason = reason
    post(
        uow,
        balance,
        "reserved",
        -reservation.quantity,
        kind=f"release_{reason}",
        actor=actor,
        now=now,
        reference=("order_line", line.id),
    )
    return reservation.quantity


def backordered_quantity(uow: UnitOfWork, sku: str, location_id: str) -> int:
    return backordered_by_location(uow, sku, [location_id])[location_id]


_BACKORDERED_BY_LOCATION = (
    select(OrderLine.location_id, func.sum(OrderLine.quantity))
    .where(
        OrderLine.sku == bindparam("sku"),
        OrderLine.location_id.in_(bindparam("location_ids", expanding=True)),
        OrderLine.state == LineState.BACKORDERED,
    )
    .group_by(OrderLine.location_id)
)


def backordered_by_location(
    uow: UnitOfWork, sku: str, location_ids: Collection[str]
) -> dict[str, int]:
    """Units of the SKU waiting on backorder at each of the locations (one grouped query)."""
    rows = uow.session.execute(
        _BACKORDERED_BY_LOCATION, {"sku": sku, "location_ids": list(location_ids)}
    ).all()
    waiting = {location_id: int(quantity) for location_id, quantity in rows}
    return {location_id: waiting.get(location_id, 0) for location_id in location_ids}


def scheduled_receipts(uow: UnitOfWork, sku: str, location_id: str) -> tuple[ScheduledReceipt, ...]:
    """Open purchase-order lines and inbound transfers of the SKU at the location."""
    return scheduled_receipts_by_location(uow, sku, [location_id])[location_id]


_SCHEDULED_RECEIPTS = union_all(
    # open purchase-order lines (with their receipt forecast, if any) ...
    select(
        PurchaseOrder.location_id.label("location_id"),
        PurchaseOrderLine.expected_date.label("expected_date"),
        (PurchaseOrderLine.quantity - PurchaseOrderLine.received_quantity).label("quantity"),
        PoLineReceiptForecast.p80_date.label("p80_date"),
    )
    .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
    .outerjoin(PoLineReceiptForecast, PoLineReceiptForecast.po_line_id == PurchaseOrderLine.id)
    .where(
        PurchaseOrderLine.sku == bindparam("sku"),
        PurchaseOrder.location_id.in_(bindparam("location_ids", expanding=True)),
        PurchaseOrder.status.in_(
            [PurchaseOrderStatus.OPEN, PurchaseOrderStatus.PARTIALLY_RECEIVED]
        ),
        PurchaseOrderLine.received_quantity < PurchaseOrderLine.quantity,
    ),
    # ... and transfers on their way
    select(Transfer.to_location_id, Transfer.expected_date, Transfer.quantity, NO_FORECAST).where(
        Transfer.sku == bindparam("sku"),
        Transfer.to_location_id.in_(bindparam("location_ids", expanding=True)),
        Transfer.status == TransferStatus.IN_TRANSIT,
    ),
)


def scheduled_receipts_by_location(
    uow: UnitOfWork, sku: str, location_ids: Collection[str]
) -> dict[str, tuple[ScheduledReceipt, ...]]:
    """Open purchase-order lines and inbound transfers of the SKU at each of the locations, read
    in one query (purchase orders first, then transfers, as the ATP arithmetic does not care),
    each dated as the policy promises by (``inbound.promise_receipt_date``)."""
    receipts: dict[str, list[ScheduledReceipt]] = {location_id: [] for location_id in location_ids}
    for location_id, expected, quantity, p80 in uow.session.execute(
        _SCHEDULED_RECEIPTS, {"sku": sku, "location_ids": list(location_ids)}
    ):
        dated = promise_receipt_date(uow.policy, expected, p80)
        receipts[location_id].append(ScheduledReceipt(dated, int(quantity)))
    return {location_id: tuple(found) for location_id, found in receipts.items()}


def stock_position(uow: UnitOfWork, balance: InventoryBalance) -> StockPosition:
    return stock_positions(uow, [balance])[0]


def stock_positions(uow: UnitOfWork, balances: Sequence[InventoryBalance]) -> list[StockPosition]:
    """The positions of one SKU at the balances' locations, in the balances' order: two queries
    for all locations instead of two per location."""
    if not balances:
        return []
    skus = {balance.sku for balance in balances}
    if len(skus) != 1:
        raise ValueError(f"stock_positions takes the balances of one SKU, got {sorted(skus)}")
    locations = [balance.location_id for balance in balances]
    backordered = backordered_by_location(uow, balances[0].sku, locations)
    receipts = scheduled_receipts_by_location(uow, balances[0].sku, locations)
    return [
        StockPosition(
            location=balance.location_id,
            on_hand=balance.on_hand,
            reserved=balance.reserved,
            backordered=backordered[balance.location_id],
            receipts=receipts[balance.location_id],
        )
        for balance in balances
    ]


def pick_backlog(uow: UnitOfWork, location_id: str) -> int:
    """Lines allocated at the location and not yet picked: the queue a new line joins."""
    return pick_backlogs(uow, [location_id])[location_id]


_PICK_BACKLOGS = (
    select(OrderLine.location_id, func.count(OrderLine.id))
    .where(
        OrderLine.location_id.in_(bindparam("location_ids", expanding=True)),
        OrderLine.state == LineState.ALLOCATED,
    )
    .group_by(OrderLine.location_id)
)


def pick_backlogs(uow: UnitOfWork, location_ids: Collection[str]) -> dict[str, int]:
    """``pick_backlog`` of several locations in one grouped query."""
    rows = uow.session.execute(_PICK_BACKLOGS, {"location_ids": list(location_ids)}).all()
    queued = {location_id: int(count) for location_id, count in rows}
    return {location_id: queued.get(location_id, 0) for location_id in location_ids}


_CURRENT_PROMISE = (
    select(LinePromise)
    .where(LinePromise.line_id == bindparam("line_id"))
    .order_by(LinePromise.id.desc())
    .limit(1)
)
_PROMISES_OF_LINES = (
    select(LinePromise)
    .where(LinePromise.line_id.in_(bindparam("line_ids", expanding=True)))
    .order_by(LinePromise.id)
)


def record_promise(
    uow: UnitOfWork,
    line_id: int,
    ship: date,
    delivery: date,
    reason: str,
    actor: Actor,
    now: datetime,
) -> None:
    """Add a promise to the line's promise history (queued with the act's other history rows;
    the readers below write the queue first, so they see it)."""
    uow.append(
        LinePromise,
        line_id=line_id,
        promised_ship_date=ship,
        promised_delivery_date=delivery,
        reason=reason,
        decided_at=now,
        decided_by=actor.name,
    )


def current_promise(uow: UnitOfWork, line_id: int) -> LinePromise | None:
    uow.write_appended()
    return uow.session.execute(_CURRENT_PROMISE, {"line_id": line_id}).scalar_one_or_none()


def current_promises(uow: UnitOfWork, line_ids: Collection[int]) -> dict[int, LinePromise]:
    """``current_promise`` of several lines in one query; lines without a promise are absent."""
    uow.write_appended()
    newest: dict[int, LinePromise] = {}
    for promise in uow.session.execute(_PROMISES_OF_LINES, {"line_ids": list(line_ids)}).scalars():
        newest[promise.line_id] = promise
    return newest


def first_promises(uow: UnitOfWork, line_ids: Collection[int]) -> dict[int, LinePromise]:
    """The first promise of several lines (the one KPIs judge) in one query."""
    uow.write_appended()
    first: dict[int, LinePromise] = {}
    for promise in uow.session.execute(_PROMISES_OF_LINES, {"line_ids": list(line_ids)}).scalars():
        first.setdefault(promise.line_id, promise)
    return first


def first_promise(uow: UnitOfWork, line_id: int) -> LinePromise | None:
    uow.write_appended()
    return uow.session.execute(
        select(LinePromise).where(LinePromise.line_id == line_id).order_by(LinePromise.id).limit(1)
    ).scalar_one_or_none()


def allocate_backorder(
    uow: UnitOfWork,
    balance: InventoryBalance,
    line: OrderLine,
    actor: Actor,
    now: datetime,
    action: str,
) -> None:
    """Reserve stock for a backordered line and mark it allocated."""
    reserve(uow, balance, line, actor, now)
    line.expected_ready_on = None
    transition(uow, actor, now, "order_line", line, LineState.ALLOCATED, action)


_LINES_WITH_CUSTOMERS = (
    select(OrderLine, Customer)
    .join(SalesOrder, SalesOrder.id == OrderLine.order_id)
    .join(Customer, Customer.id == SalesOrder.customer_id)
    .where(
        OrderLine.sku == bindparam("sku"),
        OrderLine.location_id == bindparam("location_id"),
        OrderLine.state == bindparam("state"),
    )
)


def lines_with_customers(
    uow: UnitOfWork, balance: InventoryBalance, state: LineState
) -> list[tuple[OrderLine, Customer]]:
    """The order lines of the balance's SKU and location in ``state``, each with its customer."""
    params = {"sku": balance.sku, "location_id": balance.location_id, "state": str(state)}
    rows = uow.session.execute(_LINES_WITH_CUSTOMERS, params).all()
    return [(line, customer) for line, customer in rows]


def release_backorders(
    uow: UnitOfWork, balance: InventoryBalance, actor: Actor, now: datetime
) -> list[int]:
    """Give the free stock of a (locked) balance to waiting backorders by priority: customer tier,
    then promise date, then entry time. Returns the ids of the lines released."""
    free = balance.on_hand - balance.reserved
    if free <= 0:
        return []
    waiting = lines_with_customers(uow, balance, LineState.BACKORDERED)
    if not waiting:
        return []
    lines = {line.id: line for line, _customer in waiting}
    claims = [
        BackorderClaim(
            line_id=line.id,
            quantity=line.quantity,
            customer_tier=customer.tier,
            promised_ship_date=_promised_ship_date(uow, line),
            entered_at=line.entered_at,
        )
        for line, customer in waiting
    ]
    released = lines_to_release(claims, free, uow.policy.customer_tiers)
    for claim in released:
        allocate_backorder(uow, balance, lines[claim.line_id], actor, now, "release_backorder")
    return [claim.line_id for claim in released]


def _promised_ship_date(uow: UnitOfWork, line: OrderLine) -> date:
    promise = current_promise(uow, line.id)
    return promise.promised_ship_date if promise else date.max


def location_ids(uow: UnitOfWork) -> Sequence[str]:
    return list(uow.session.execute(select(Location.id).order_by(Location.id)).scalars())
