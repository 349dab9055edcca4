"""Cycle counts: the physical count replaces the system quantity through an adjustment movement.

A count below what is reserved takes stock away from allocated lines: the lowest-priority lines
fall back to backordered (with a shortage exception) so that reserved never exceeds on hand.
A count above the system quantity releases waiting backorders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, tuple_

from erp_core.db.models import (
    Customer,
    CycleCount,
    InventoryBalance,
    Location,
    OrderLine,
    Product,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.allocation import BackorderClaim, release_priority
from erp_core.domain.errors import Conflict, DomainError, InvalidValue
from erp_core.domain.states import LineState
from erp_core.policy import Actor
from erp_core.services.common import audit, get_kept_or_raise, require_aware, transition
from erp_core.services.exceptions import open_exception
from erp_core.services.stock import (
    current_promise,
    lines_with_customers,
    lock_balance,
    lock_balances,
    post,
    release_backorders,
    unreserve,
)


@dataclass(frozen=True)
class CycleCountResult:
    cycle_count_id: int
    adjustment: int
    deallocated_line_ids: list[int]
    released_line_ids: list[int]


def record_cycle_count(
    uow: UnitOfWork,
    actor: Actor,
    *,
    sku: str,
    location_id: str,
    counted_quantity: int,
    now: datetime,
    reason: str = "cycle count",
) -> CycleCountResult:
    request = CountRequest(sku, location_id, counted_quantity, now, reason)
    with uow:
        _check_count(uow, actor, request)
        balance = lock_balance(uow, sku, location_id)
        count = CycleCount(
            sku=sku,
            location_id=location_id,
            counted_at=now,
            system_quantity=balance.on_hand,
            counted_quantity=counted_quantity,
            counted_by=actor.name,
            reason=reason,
        )
        uow.assign_ids([count])  # as ``record_cycle_counts`` does (see ``assign_ids``)
        uow.session.add(count)
        uow.session.flush()
        staged = _picked_quantity(uow, sku, location_id)
        if counted_quantity < staged:
            raise _staged_conflict(sku, location_id, counted_quantity, staged)
        result = _apply_count(uow, actor, request, count, balance, backorders_waiting=True)
        uow.commit()
        return result


@dataclass(frozen=True)
class CountRequest:
    """One ``record_cycle_count``: the same arguments."""

    sku: str
    location_id: str
    counted_quantity: int
    now: datetime
    reason: str = "cycle count"


def record_cycle_counts(
    uow: UnitOfWork, actor: Actor, *, counts: Sequence[CountRequest]
) -> list[CycleCountResult | DomainError]:
    """``record_cycle_count`` of every request, in order; a refused count is its ``DomainError``.

    The rows written (counts, ledger, audit trail, lines deallocated or released, exceptions)
    and their ids are those of the loop of single acts. What the batch saves is the per-act
    overhead: one savepoint and one write of the history rows for all the counts, the balances
    locked with one query, and the units picked and the backorders waiting at each (SKU,
    location) read with one query each instead of one per count. Those reads stay true through
    the batch because a count changes the lines of its own SKU and location only; a batch that
    counts one (SKU, location) twice is recorded count by count.
    """
    if not counts:
        return []
    pairs = [(c.sku, c.location_id) for c in counts]
    if len(set(pairs)) < len(pairs):
        return [_count_one(uow, actor, c) for c in counts]
    try:
        return _count_all(uow, actor, counts)
    except _RefusedHalfway:
        # Undone: recorded count by count, so the outcome is still the loop's.
        return [_count_one(uow, actor, c) for c in counts]


class _RefusedHalfway(Exception):
    """A count was refused after some of the batch was written: the batch must be undone."""


def _count_all(
    uow: UnitOfWork, actor: Actor, counts: Sequence[CountRequest]
) -> list[CycleCountResult | DomainError]:
    outcomes: list[CycleCountResult | DomainError | None] = []
    with uow:
        for request in counts:
            try:
                _check_count(uow, actor, request)
                outcomes.append(None)
            except DomainError as refused:
                outcomes.append(refused)
        valid = [(i, c) for i, c in enumerate(counts) if outcomes[i] is None]
        keys = [(c.sku, c.location_id) for _i, c in valid]
        staged = _by_pair(uow, _PICKED_BY_PAIR, keys)
        for i, c in valid:
            picked = staged.get((c.sku, c.location_id), 0)
            if c.counted_quantity < picked:
                outcomes[i] = _staged_conflict(c.sku, c.location_id, c.counted_quantity, picked)
        valid = [(i, c) for i, c in valid if outcomes[i] is None]
        balances = lock_balances(uow, [(c.sku, c.location_id) for _i, c in valid])
        waiting = _by_pair(uow, _BACKORDERED_BY_PAIR, list(balances))
        rows = [
            CycleCount(
                sku=c.sku,
                location_id=c.location_id,
                counted_at=c.now,
                system_quantity=0,  # set below, as each count finds its balance
                counted_quantity=c.counted_quantity,
                counted_by=actor.name,
                reason=c.reason,
            )
            for _i, c in valid
        ]
        uow.assign_ids(rows)
        uow.session.add_all(rows)
        for (i, c), row in zip(valid, rows, strict=True):
            balance = balances[(c.sku, c.location_id)]
            row.system_quantity = balance.on_hand
            if row.id is None:
                uow.session.flush()  # PostgreSQL hands out the id
            released_any = waiting.get((c.sku, c.location_id), 0) > 0
            try:
                outcomes[i] = _apply_count(uow, actor, c, row, balance, released_any)
            except DomainError as refused:
                raise _RefusedHalfway from refused
        uow.commit()
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(counts)
    return done


def _count_one(
    uow: UnitOfWork, actor: Actor, request: CountRequest
) -> CycleCountResult | DomainError:
    try:
        return record_cycle_count(
            uow,
            actor,
            sku=request.sku,
            location_id=request.location_id,
            counted_quantity=request.counted_quantity,
            now=request.now,
            reason=request.reason,
        )
    except DomainError as refused:
        return refused


def _check_count(uow: UnitOfWork, actor: Actor, request: CountRequest) -> None:
    """What ``record_cycle_count`` refuses before it writes, in its order."""
    require_aware("now", request.now)
    quantity = request.counted_quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidValue("counted_quantity", quantity, "not a whole number")
    if quantity < 0:
        raise InvalidValue("counted_quantity", quantity, "must be >= 0")
    uow.policy.require(actor, "adjust_inventory")
    get_kept_or_raise(uow, Product, request.sku, entity="product", field="sku")
    get_kept_or_raise(uow, Location, request.location_id, entity="location", field="location_id")


def _staged_conflict(sku: str, location_id: str, counted: int, staged: int) -> Conflict:
    return Conflict(
        f"count of {counted} {sku} at {location_id} is below the {staged} "
        "units already picked for shipment; count the staged goods too",
        field="counted_quantity",
        value=counted,
    )


def _apply_count(
    uow: UnitOfWork,
    actor: Actor,
    request: CountRequest,
    count: CycleCount,
    balance: InventoryBalance,
    backorders_waiting: bool,
) -> CycleCountResult:
    """The writes of a count once its checks passed, for the single act and the batch alike
    (``backorders_waiting`` False lets the batch skip a release it knows finds nothing)."""
    now, counted = request.now, request.counted_quantity
    adjustment = counted - balance.on_hand
    deallocated = _take_back_reservations(uow, balance, counted, actor, now)
    post(
        uow,
        balance,
        "on_hand",
        adjustment,
        kind="adjustment",
        actor=actor,
        now=now,
        reference=("cycle_count", count.id),
    )
    released = (
        release_backorders(uow, balance, actor, now)
        if adjustment > 0 and backorders_waiting
        else []
    )
    audit(
        uow,
        actor,
        now,
        "cycle_count",
        "inventory_balance",
        f"{request.sku}@{request.location_id}",
        system_quantity=count.system_quantity,
        counted_quantity=counted,
        adjustment=adjustment,
    )
    return CycleCountResult(count.id, adjustment, deallocated, released)


_PICKED_BY_PAIR = (
    select(OrderLine.sku, OrderLine.location_id, func.sum(OrderLine.quantity))
    .where(
        tuple_(OrderLine.sku, OrderLine.location_id).in_(bindparam("pairs", expanding=True)),
        OrderLine.state.in_([LineState.PICKED, LineState.PACKED]),
    )
    .group_by(OrderLine.sku, OrderLine.location_id)
)
_BACKORDERED_BY_PAIR = (
    select(OrderLine.sku, OrderLine.location_id, func.count(OrderLine.id))
    .where(
        tuple_(OrderLine.sku, OrderLine.location_id).in_(bindparam("pairs", expanding=True)),
        OrderLine.state == LineState.BACKORDERED,
    )
    .group_by(OrderLine.sku, OrderLine.location_id)
)


def _by_pair(
    uow: UnitOfWork, query: Any, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """A grouped figure of the order lines of each (SKU, location), 500 pairs a query."""
    found: dict[tuple[str, str], int] = {}
    ordered = sorted(set(pairs))
    for start in range(0, len(ordered), 500):
        params = {"pairs": ordered[start : start + 500]}
        for sku, location_id, figure in uow.session.execute(query, params):
            found[(sku, location_id)] = int(figure)
    return found


_PICKED_QUANTITY = select(func.coalesce(func.sum(OrderLine.quantity), 0)).where(
    OrderLine.sku == bindparam("sku"),
    OrderLine.location_id == bindparam("location_id"),
    OrderLine.state.in_([LineState.PICKED, LineState.PACKED]),
)
"""Built once with bound parameters (a count per SKU and location counted)."""


def _picked_quantity(uow: UnitOfWork, sku: str, location_id: str) -> int:
    """Units picked or packed and not yet shipped: still on hand, no longer on the shelf."""
    params = {"sku": sku, "location_id": location_id}
    return int(uow.session.execute(_PICKED_QUANTITY, params).scalar_one())


def _take_back_reservations(
    uow: UnitOfWork, balance: InventoryBalance, counted: int, actor: Actor, now: datetime
) -> list[int]:
    """Backorder allocated (not yet picked) lines, lowest priority first, until the reservations
    fit in the counted quantity."""
    if balance.reserved <= counted:
        return []
    rows = lines_with_customers(uow, balance, LineState.ALLOCATED)
    tiers = uow.policy.customer_tiers

    def priority(row: tuple[OrderLine, Customer]) -> tuple[object, ...]:
        line, customer = row
        promise = current_promise(uow, line.id)
        claim = BackorderClaim(
            line.id,
            line.quantity,
            customer.tier,
            promise.promised_ship_date if promise else now.date(),
            line.entered_at,
        )
        return release_priority(claim, tiers)

    deallocated: list[int] = []
    for line, customer in sorted(rows, key=priority, reverse=True):
        if balance.reserved <= counted:
            break
        unreserve(uow, balance, line, "count_shortage", actor, now)
        transition(
            uow,
            actor,
            now,
            "order_line",
            line,
            LineState.BACKORDERED,
            "deallocate",
            reason="cycle count shortage",
        )
        open_exception(
            uow,
            actor,
            now,
            "shortage",
            order_id=line.order_id,
            line_id=line.id,
            customer=customer,
            sku=line.sku,
            location_id=line.location_id,
            reasons=["cycle_count_shortage"],
        )
        deallocated.append(line.id)
    return deallocated
