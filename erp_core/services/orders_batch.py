"""Set-based order capture: many orders in one service call (an EDI file, a simulated day).

``capture_orders`` gives each order the result ``capture_order`` would give it called once per
order in a loop, each in its own savepoint with refusals caught: the same rows (orders, lines,
prices, promises, reservations, ledger, exceptions, approvals, audit trail) with the same ids.
Each order is captured by the same act (``_capture``: pricing, credit, allocation, promises) one
after another, so each sees the stock, backlog and exposure the earlier ones left. What the batch
saves is the per-act overhead: one savepoint and one write of the queued history rows for the
whole batch instead of one per order, the products read with one query, and the lanes serving a
region read once.

An order that would be refused (an unknown customer or SKU, a bad quantity or price, a role
without the permission) is checked before anything of it is written, and its refusal stands at
its position in the result list. Should anything else be refused half way through an order, the
whole batch is undone and captured order by order through ``capture_order``, so the outcome is
still the loop's. Idempotency keys are a single-act feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, select

from erp_core.db.models import Customer, Lane, Product
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import DomainError, InvalidValue
from erp_core.policy import Actor
from erp_core.services.common import lock_row, parse_date, require_aware
from erp_core.services.orders import (
    CaptureBatch,
    CapturedOrder,
    LineRequest,
    _capture,
    _parse_line,
    capture_order,
    standard_lanes,
)
from erp_core.services.stock import lock_existing_balances


@dataclass(frozen=True)
class OrderRequest:
    """One ``capture_order``: the same arguments, ``now`` being the order's entry moment."""

    customer_id: str
    lines: Sequence[LineRequest]
    now: datetime
    requested_date: date | str | None = None
    channel: str | None = None
    ship_to_region: str | None = None
    allow_split: bool = True
    external_ref: str | None = None


class _RefusedHalfway(Exception):
    """An order was refused after some of it was written: the batch must be undone."""


def capture_orders(
    uow: UnitOfWork, actor: Actor, *, orders: Sequence[OrderRequest]
) -> list[CapturedOrder | DomainError]:
    """``capture_order`` of every request, in order; a refused order is its ``DomainError``."""
    if not orders:
        return []
    try:
        with uow:
            outcomes = _capture_all(uow, actor, orders)
            uow.commit()
            return outcomes
    except _RefusedHalfway:
        pass
    outcomes = []
    for request in orders:
        try:
            outcomes.append(_capture_one(uow, actor, request))
        except DomainError as refused:
            outcomes.append(refused)
    return outcomes


def _capture_one(uow: UnitOfWork, actor: Actor, request: OrderRequest) -> CapturedOrder:
    return capture_order(
        uow,
        actor,
        customer_id=request.customer_id,
        lines=request.lines,
        now=request.now,
        requested_date=request.requested_date,
        channel=request.channel,
        ship_to_region=request.ship_to_region,
        allow_split=request.allow_split,
        external_ref=request.external_ref,
    )


def _capture_all(
    uow: UnitOfWork, actor: Actor, orders: Sequence[OrderRequest]
) -> list[CapturedOrder | DomainError]:
    uow.preload(Product, {line.sku for order in orders for line in order.lines})
    lanes: dict[str, dict[str, Lane]] = {}
    batch = _read_once(uow, actor, orders, lanes)
    outcomes: list[CapturedOrder | DomainError] = []
    for request in orders:
        try:
            requested_date, region = _check(uow, actor, request)
        except DomainError as refused:
            outcomes.append(refused)
            continue
        if region not in lanes:
            lanes[region] = standard_lanes(uow, region)
        if not lanes[region]:
            # Refused or not depends on the credit check (a held order needs no lane).
            outcomes.append(_nested_single(uow, actor, request))
            batch = CaptureBatch()  # what the batch read may be stale now: read afresh
            continue
        try:
            outcomes.append(
                _capture(
                    uow,
                    actor,
                    request.customer_id,
                    request.lines,
                    request.now,
                    requested_date,
                    request.channel,
                    request.ship_to_region,
                    request.allow_split,
                    request.external_ref,
                    lanes=lanes[region],
                    batch=batch,
                )
            )
        except DomainError as refused:
            raise _RefusedHalfway from refused
    return outcomes


def _read_once(
    uow: UnitOfWork,
    actor: Actor,
    orders: Sequence[OrderRequest],
    lanes: dict[str, dict[str, Lane]],
) -> CaptureBatch:
    """Read for the whole batch what each capture would read for itself: lock the customers
    (one query instead of one each), read their open exposure, the lanes of their regions, and
    lock the balances their lines will be allocated from (only rows that exist: a missing one is
    created by the order that needs it, as the loop does). Locks are taken in the global order
    (customers by id, balances by (sku, location)), before any order is written."""
    batch = CaptureBatch()
    if not uow.policy.allows(actor.role, "capture_order"):
        return batch  # every order is refused by its own check
    batch.skus = {line.sku for r in orders for line in r.lines if isinstance(line.sku, str)}
    wanted = sorted({r.customer_id for r in orders if isinstance(r.customer_id, str)})
    unheld = [c for c in wanted if uow.held((Customer.__name__, c)) is None]
    for start in range(0, len(unheld), 500):
        for customer in uow.session.execute(
            _LOCK_CUSTOMERS, {"ids": unheld[start : start + 500]}
        ).scalars():
            uow.hold((Customer.__name__, customer.id), customer)
    customers: dict[str, Customer | None] = {c: uow.held((Customer.__name__, c)) for c in wanted}
    batch.read_exposures(uow, [c for c, row in customers.items() if row is not None])
    pairs: set[tuple[str, str]] = set()
    for request in orders:
        found = customers.get(request.customer_id) if isinstance(request.customer_id, str) else None
        if found is None:
            continue
        region = request.ship_to_region or found.region
        if region not in lanes:
            lanes[region] = standard_lanes(uow, region)
        pairs.update(
            (line.sku, location)
            for line in request.lines
            if isinstance(line.sku, str)
            for location in lanes[region]
        )
    lock_existing_balances(uow, pairs)
    return batch


_LOCK_CUSTOMERS = (
    select(Customer)
    .where(Customer.id.in_(bindparam("ids", expanding=True)))
    .order_by(Customer.id)
    .with_for_update(key_share=True)
)


def _nested_single(
    uow: UnitOfWork, actor: Actor, request: OrderRequest
) -> CapturedOrder | DomainError:
    try:
        return _capture_one(uow, actor, request)
    except DomainError as refused:
        return refused


def _check(uow: UnitOfWork, actor: Actor, request: OrderRequest) -> tuple[date | None, str]:
    """Everything ``capture_order`` refuses before it writes, in its order; returns the parsed
    requested date and the region the order ships to."""
    require_aware("now", request.now)
    requested_date = parse_date("requested_date", request.requested_date)
    if not request.lines:
        raise InvalidValue("lines", [], "an order needs at least one line")
    uow.policy.require(actor, "capture_order")
    customer = lock_row(uow, Customer, request.customer_id, entity="customer", field="customer_id")
    for index, line in enumerate(request.lines):
        _parse_line(uow, index, line)
    return requested_date, request.ship_to_region or customer.region
