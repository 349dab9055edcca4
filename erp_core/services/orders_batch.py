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

from erp_core.db.models import Customer, Lane, Product
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import DomainError, InvalidValue
from erp_core.policy import Actor
from erp_core.services.common import lock_row, parse_date, require_aware
from erp_core.services.orders import (
    CapturedOrder,
    LineRequest,
    _capture,
    _parse_line,
    capture_order,
    standard_lanes,
)


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
                )
            )
        except DomainError as refused:
            raise _RefusedHalfway from refused
    return outcomes


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
