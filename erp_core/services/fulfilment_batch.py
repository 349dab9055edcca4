"""Set-based fulfilment: many picks, or many shipment milestones, in one service call.

A warehouse closing its day (or a carrier's delivery file) records hundreds of acts at once.
``pick_orders`` and ``record_shipment_events`` give each act the same result as calling ``pick``
or ``record_shipment_event`` once per act in a loop, each in its own savepoint with refusals
caught: the same rows, balances, ledger movements, line history and audit entries, in the same
order (so with the same ids). The difference is in the reads and the round trips: the rows every
act needs (orders, lines, shipments, balances, reservations, last milestones) are read and locked
with one query per kind for the whole batch, and the new shipments and events are inserted in one
flush each; the domain rules (``check_transition``, the pickable and chronology checks) are the
ones the single acts apply.

Each act is checked completely before anything of it is written, so a refused act writes nothing,
as its rolled-back savepoint would not; the result list holds, at the act's position, its result
or the ``DomainError`` that refused it. Permission is checked per act. Idempotency keys are a
single-act feature (a batch is retried as a whole by its caller). A short pick (fewer units found
than the line holds) splits lines and re-promises backorders, so a batch holding one is run act
by act through ``pick``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import lazyload

from erp_core.db.models import (
    InventoryBalance,
    Lane,
    OrderLine,
    Product,
    Reservation,
    SalesOrder,
    Shipment,
    ShipmentEvent,
    ShipmentLine,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, DomainError, IllegalTransition, InvalidValue, NotFound
from erp_core.domain.states import LineState, ShipmentStatus, check_transition
from erp_core.policy import Actor
from erp_core.services.common import audit, require_aware, transition
from erp_core.services.fulfilment import (
    _MILESTONES,
    LineStatus,
    PickResult,
    ShipmentEventResult,
    _by_line,
    _check_pickable,
    _only,
    _parse_details,
    _parse_picks,
    _weight_kg,
    pick,
    planned_freight_cost,
)
from erp_core.services.stock import active_reservations, lock_balances, post

ResultT = TypeVar("ResultT")

IDS_PER_STATEMENT = 500
"""Ids per ``IN (...)`` list: well inside SQLite's bound-parameter limit."""


@dataclass(frozen=True)
class PickRequest:
    """One ``pick``: allocated lines of one order at one location (line id -> quantity found)."""

    order_id: int
    picks: Mapping[int, int]


@dataclass(frozen=True)
class MilestoneRequest:
    """One ``record_shipment_event`` of a milestone: ``packed``, ``shipped`` or ``delivered``
    (``details["freight_cost"]`` sets a delivered shipment's actual freight)."""

    shipment_id: int
    event_type: str
    occurred_at: datetime
    details: Mapping[str, Any] | None = None


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    ordered = sorted(set(ids))
    return [ordered[i : i + IDS_PER_STATEMENT] for i in range(0, len(ordered), IDS_PER_STATEMENT)]


def _each(items: Sequence[Any], check: Callable[[Any], ResultT]) -> list[ResultT | DomainError]:
    """``check`` of every item, or the domain error it raised."""
    outcomes: list[ResultT | DomainError] = []
    for item in items:
        try:
            outcomes.append(check(item))
        except DomainError as refused:
            outcomes.append(refused)
    return outcomes


# --- picks -------------------------------------------------------------------------------------


@dataclass
class _PickPlan:
    order: SalesOrder
    lines: list[OrderLine]
    quantities: dict[int, int]
    location_id: str
    lane: Lane | None

    @property
    def short(self) -> bool:
        return any(self.quantities[line.id] < line.quantity for line in self.lines)


_ORDERS = select(SalesOrder).where(SalesOrder.id.in_(bindparam("ids", expanding=True)))
_LINES = select(OrderLine).where(OrderLine.id.in_(bindparam("ids", expanding=True)))
_LOCK_LINES = (
    _LINES.order_by(OrderLine.id).with_for_update().execution_options(populate_existing=True)
)


def pick_orders(
    uow: UnitOfWork, actor: Actor, *, requests: Sequence[PickRequest], now: datetime
) -> list[PickResult | DomainError]:
    """``pick`` of every request (each a new shipment), as one act after another would pick."""
    if not requests:
        return []
    parsed = _each(requests, lambda r: _parse_pick(uow, actor, now, r))
    with uow:
        plans = _plan_picks(uow, requests, parsed)
        if not any(isinstance(plan, _PickPlan) and plan.short for plan in plans):
            outcomes = _apply_picks(uow, actor, now, plans)
            uow.commit()
            return outcomes
    # Nothing written yet: a short pick splits lines and re-promises, so act by act.
    return _each(requests, lambda r: pick(uow, actor, order_id=r.order_id, picks=r.picks, now=now))


def _parse_pick(
    uow: UnitOfWork, actor: Actor, now: datetime, request: PickRequest
) -> dict[int, int]:
    """What ``pick`` checks before it reads anything: the moment, the picks, the permission."""
    require_aware("now", now)
    quantities = _parse_picks(request.picks)
    uow.policy.require(actor, "record_shipment_event")
    return quantities


def _plan_picks(
    uow: UnitOfWork,
    requests: Sequence[PickRequest],
    parsed: Sequence[dict[int, int] | DomainError],
) -> list[_PickPlan | DomainError]:
    """Read and lock what the picks need, then check each pick in turn as ``_pick`` would, a line
    picked by an earlier request counting as picked."""
    session = uow.session
    order_ids = [r.order_id for r, p in zip(requests, parsed, strict=True) if isinstance(p, dict)]
    orders: dict[int, SalesOrder] = {}
    for chunk in _chunks(order_ids):
        for order in session.execute(
            _ORDERS.options(lazyload(SalesOrder.lines)), {"ids": chunk}
        ).scalars():
            orders[order.id] = order
    line_ids = [i for p in parsed if isinstance(p, dict) for i in p]
    found: dict[int, OrderLine] = {}
    for chunk in _chunks(line_ids):
        found.update((line.id, line) for line in session.execute(_LINES, {"ids": chunk}).scalars())
    balances = lock_balances(
        uow, [(line.sku, line.location_id) for line in found.values() if line.location_id]
    )
    del balances  # locked for the transaction; a full pick does not change them
    for chunk in _chunks(list(found)):
        for line in session.execute(_LOCK_LINES, {"ids": chunk}).scalars():
            found[line.id] = line
    uow.preload(Product, {line.sku for line in found.values()})
    uow.preload(Lane, {line.lane_id for line in found.values() if line.lane_id is not None})
    taken: set[int] = set()

    def check(item: tuple[PickRequest, dict[int, int] | DomainError]) -> _PickPlan:
        request, quantities = item
        if isinstance(quantities, DomainError):
            raise quantities
        order = orders.get(request.order_id)
        if order is None:
            raise NotFound("sales order", "order_id", request.order_id)
        ids = sorted(quantities)
        for line_id in ids:
            line = found.get(line_id)
            if line is None or line.order_id != order.id:
                raise NotFound(f"line of order {order.id}", f"picks[{line_id}]", line_id)
        lines = [found[line_id] for line_id in ids]
        for line in lines:
            if line.id in taken:
                raise _picked_already(line)
            _check_pickable(line, quantities[line.id])
        location_id = _only(lines, "location_id", "location")
        lane_id = _only(lines, "lane_id", "lane")
        taken.update(ids)
        lane = uow.get(Lane, lane_id) if lane_id is not None else None
        return _PickPlan(order, lines, quantities, location_id, lane)

    return _each(list(zip(requests, parsed, strict=True)), check)


def _picked_already(line: OrderLine) -> DomainError:
    """What ``_check_pickable`` says of a line an earlier pick of the batch took."""
    return IllegalTransition(f"order_line {line.id}", str(LineState.PICKED), LineState.PICKED)


def _apply_picks(
    uow: UnitOfWork, actor: Actor, now: datetime, plans: Sequence[_PickPlan | DomainError]
) -> list[PickResult | DomainError]:
    """Insert the shipments of the accepted picks in one flush, then write each pick's lines,
    line history, audit entries and ``picked`` event in the order the single acts would."""
    shipments: dict[int, tuple[Shipment, Decimal]] = {}
    for index, plan in enumerate(plans):
        if isinstance(plan, _PickPlan):
            weight = sum(
                (_weight_kg(uow, line.sku) * plan.quantities[line.id] for line in plan.lines),
                Decimal(0),
            )
            lane = plan.lane
            shipments[index] = (
                Shipment(
                    order_id=plan.order.id,
                    location_id=plan.location_id,
                    lane_id=lane.id if lane else None,
                    status=ShipmentStatus.PICKED,
                    created_at=now,
                    planned_freight_cost=planned_freight_cost(lane, weight),
                    expedited=lane is not None and lane.service_level != "standard",
                ),
                weight,
            )
    new_shipments = [shipment for shipment, _ in shipments.values()]
    uow.assign_ids(new_shipments)
    uow.session.add_all(new_shipments)
    uow.session.flush()
    events: list[ShipmentEvent] = []
    outcomes: list[PickResult | DomainError] = []
    for index, plan in enumerate(plans):
        if not isinstance(plan, _PickPlan):
            outcomes.append(plan)
            continue
        shipment, weight = shipments[index]
        audit(
            uow,
            actor,
            now,
            "create_shipment",
            "shipment",
            shipment.id,
            to_state=ShipmentStatus.PICKED,
            order_id=plan.order.id,
            weight_kg=weight,
            planned_freight_cost=shipment.planned_freight_cost,
        )
        for line in plan.lines:
            picked = plan.quantities[line.id]
            uow.append(ShipmentLine, shipment_id=shipment.id, line_id=line.id, quantity=picked)
            transition(
                uow, actor, now, "order_line", line, LineState.PICKED, "pick", shipment=shipment.id
            )
        events.append(
            ShipmentEvent(
                shipment_id=shipment.id,
                event_type="picked",
                occurred_at=now,
                recorded_at=now,
                source=actor.name,
                details={"picked": _by_line(plan.quantities)},
            )
        )
        outcomes.append(
            PickResult(
                shipment_id=shipment.id,
                order_id=plan.order.id,
                location_id=plan.location_id,
                status=str(shipment.status),
                planned_freight_cost=str(shipment.planned_freight_cost),
                lines=tuple(
                    LineStatus(line.id, line.quantity, str(line.state)) for line in plan.lines
                ),
            )
        )
    # The picked lines' new state goes out in one UPDATE, not through the flush's bookkeeping.
    uow.write_changes(
        (line for plan in plans if isinstance(plan, _PickPlan) for line in plan.lines), ("state",)
    )
    uow.assign_ids(events)
    uow.session.add_all(events)
    uow.session.flush()
    return outcomes


# --- milestones --------------------------------------------------------------------------------


_LOCK_SHIPMENTS = (
    select(Shipment)
    .where(Shipment.id.in_(bindparam("ids", expanding=True)))
    .order_by(Shipment.id)
    .options(lazyload(Shipment.lines))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_LINES_OF_SHIPMENTS = (
    select(ShipmentLine.shipment_id, ShipmentLine.quantity, OrderLine)
    .join(OrderLine, OrderLine.id == ShipmentLine.line_id)
    .where(ShipmentLine.shipment_id.in_(bindparam("ids", expanding=True)))
    .order_by(ShipmentLine.shipment_id, OrderLine.id)
)
_LAST_MILESTONES = (
    select(ShipmentEvent.shipment_id, func.max(ShipmentEvent.occurred_at))
    .where(
        ShipmentEvent.shipment_id.in_(bindparam("ids", expanding=True)),
        ShipmentEvent.event_type != "eta_updated",
    )
    .group_by(ShipmentEvent.shipment_id)
)


@dataclass
class _Shipments:
    """What the milestones of a batch read: the shipments (locked), their lines, the moment of
    each one's last milestone, and for handoffs the balances (locked) and active reservations."""

    rows: dict[int, Shipment]
    lines: dict[int, list[tuple[int, OrderLine]]]
    last_at: dict[int, datetime]
    reservations: dict[int, Reservation]
    balances: dict[tuple[str, str], InventoryBalance] = field(default_factory=dict)
    released: list[Reservation] = field(default_factory=list)
    """The reservations the handoffs released."""


def record_shipment_events(
    uow: UnitOfWork, actor: Actor, *, events: Sequence[MilestoneRequest], now: datetime
) -> list[ShipmentEventResult | DomainError]:
    """``record_shipment_event`` of every milestone, in order (a shipment may appear more than
    once: packed, then shipped)."""
    if not events:
        return []
    facts = _each(events, lambda e: _parse_milestone(uow, actor, now, e))
    with uow:
        known = _read_shipments(uow, events, facts)
        done: list[tuple[ShipmentEvent, ShipmentEventResult] | DomainError] = []
        for event, fact in zip(events, facts, strict=True):
            try:
                if isinstance(fact, DomainError):
                    raise fact
                done.append(_milestone(uow, actor, now, known, event, fact))
            except DomainError as refused:
                done.append(refused)
        _write_milestone_changes(uow, known)
        rows = [outcome[0] for outcome in done if isinstance(outcome, tuple)]
        uow.assign_ids(rows)
        uow.session.add_all(rows)
        uow.session.flush()
        uow.commit()
    return [
        outcome if isinstance(outcome, DomainError) else replace(outcome[1], event_id=outcome[0].id)
        for outcome in done
    ]


def _write_milestone_changes(uow: UnitOfWork, known: _Shipments) -> None:
    """What the milestones changed on the rows they read (shipments, their lines, the released
    reservations) goes out in one UPDATE per kind, not through the flush's bookkeeping; the
    balances are few and left to the flush."""
    uow.write_changes(known.rows.values(), ("status", "actual_freight_cost"))
    uow.write_changes((line for lines in known.lines.values() for _q, line in lines), ("state",))
    uow.write_changes(known.released, ("released_at", "release_reason"))


def _parse_milestone(
    uow: UnitOfWork, actor: Actor, now: datetime, event: MilestoneRequest
) -> dict[str, Any]:
    """What ``record_shipment_event`` checks before it reads anything."""
    require_aware("now", now)
    require_aware("occurred_at", event.occurred_at)
    if event.occurred_at > now:
        raise InvalidValue("occurred_at", event.occurred_at, f"is after now ({now.isoformat()})")
    if event.event_type not in _MILESTONES:
        raise InvalidValue(
            "event_type",
            event.event_type,
            f"not one of {', '.join(_MILESTONES)} (an ETA goes through record_shipment_event)",
        )
    facts = _parse_details(event.event_type, event.details)
    uow.policy.require(actor, "record_shipment_event")
    return facts


def _read_shipments(
    uow: UnitOfWork,
    events: Sequence[MilestoneRequest],
    facts: Sequence[dict[str, Any] | DomainError],
) -> _Shipments:
    session = uow.session
    ids = [e.shipment_id for e, f in zip(events, facts, strict=True) if isinstance(f, dict)]
    known = _Shipments({}, {}, {}, {})
    for chunk in _chunks(ids):
        for shipment in session.execute(_LOCK_SHIPMENTS, {"ids": chunk}).scalars():
            known.rows[shipment.id] = shipment
            known.lines[shipment.id] = []
            uow.hold(("Shipment", shipment.id), shipment)
        for shipment_id, quantity, line in session.execute(_LINES_OF_SHIPMENTS, {"ids": chunk}):
            known.lines[shipment_id].append((int(quantity), line))
        for shipment_id, last in session.execute(_LAST_MILESTONES, {"ids": chunk}):
            known.last_at[shipment_id] = last
    handed_over = {
        e.shipment_id for e in events if e.event_type == "shipped" and e.shipment_id in known.rows
    }
    pairs = [
        (line.sku, known.rows[s].location_id) for s in handed_over for _q, line in known.lines[s]
    ]
    known.balances = lock_balances(uow, pairs)
    line_ids = [line.id for s in handed_over for _q, line in known.lines[s]]
    for chunk in _chunks(line_ids):
        known.reservations.update(active_reservations(uow, chunk))
    return known


def _milestone(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    known: _Shipments,
    event: MilestoneRequest,
    facts: dict[str, Any],
) -> tuple[ShipmentEvent, ShipmentEventResult]:
    """One milestone as ``_record`` and ``_advance`` make it, every check before any write."""
    shipment = known.rows.get(event.shipment_id)
    if shipment is None:
        raise NotFound("shipment", "shipment_id", event.shipment_id)
    lines = known.lines[shipment.id]
    status, line_state, action = _MILESTONES[event.event_type]
    check_transition("shipment", shipment.status, status)
    previous = known.last_at.get(shipment.id)
    if previous is not None and event.occurred_at < previous:
        raise InvalidValue(
            "occurred_at",
            event.occurred_at,
            f"before the shipment's previous milestone at {previous.isoformat()}",
        )
    if event.event_type == "shipped":
        for quantity, line in lines:
            reservation = known.reservations.get(line.id)
            if reservation is None or reservation.quantity != quantity:
                raise Conflict(
                    f"line {line.id} holds no active reservation of {quantity} to ship",
                    field="line_id",
                    value=line.id,
                )
    for _quantity, line in lines:
        check_transition("order_line", line.state, line_state)
    # Checked: now written, in the order of the single act.
    occurred_at = event.occurred_at
    if event.event_type == "shipped":
        _hand_over(uow, actor, occurred_at, known, shipment, lines)
    if event.event_type == "delivered" and "freight_cost" in facts:
        shipment.actual_freight_cost = Decimal(facts["freight_cost"])
    transition(uow, actor, occurred_at, "shipment", shipment, status, action, recorded_at=now)
    for _quantity, line in lines:
        transition(
            uow,
            actor,
            occurred_at,
            "order_line",
            line,
            line_state,
            action,
            shipment=shipment.id,
            recorded_at=now,
        )
    known.last_at[shipment.id] = max(previous, occurred_at) if previous else occurred_at
    row = ShipmentEvent(
        shipment_id=shipment.id,
        event_type=event.event_type,
        occurred_at=occurred_at,
        recorded_at=now,
        source=actor.name,
        details=facts,
    )
    result = ShipmentEventResult(
        shipment_id=shipment.id,
        event_id=0,
        event_type=event.event_type,
        status=str(shipment.status),
        lines=tuple(LineStatus(line.id, quantity, str(line.state)) for quantity, line in lines),
    )
    return row, result


def _hand_over(
    uow: UnitOfWork,
    actor: Actor,
    occurred_at: datetime,
    known: _Shipments,
    shipment: Shipment,
    lines: Sequence[tuple[int, OrderLine]],
) -> None:
    """Carrier handoff as ``_hand_over_stock`` does it (reservations checked by the caller)."""
    for quantity, line in lines:
        reservation = known.reservations.pop(line.id)
        reservation.released_at = occurred_at
        reservation.release_reason = "shipped"
        known.released.append(reservation)
        balance = known.balances[(line.sku, shipment.location_id)]
        for bucket in ("reserved", "on_hand"):
            post(
                uow,
                balance,
                bucket,
                -quantity,
                kind="shipment",
                actor=actor,
                now=occurred_at,
                reference=("shipment", shipment.id),
            )
