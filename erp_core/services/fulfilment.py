"""Fulfilment: the warehouse and carrier milestones of a shipment.

``pick`` takes allocated lines of one order at one location off the shelf into a new shipment;
``record_shipment_event`` moves the shipment and its lines on (packed, shipped at the carrier
handoff, delivered) or records a new carrier ETA. An order may leave in several shipments (separate
picks, or lines at different locations).

A short pick (fewer units found than the line needs) keeps the picked units on the line, reduces its
reservation to them, and backorders the remainder as a child line at the same location with its own
promise and a ``shortage`` exception. The child's promise is the earliest open receipt at the
location that covers it after the backorders already waiting there (stock on hand is not counted:
the pick has just shown it is not on the shelf), else today plus the supplier's lead time.
On-hand is not adjusted by a short pick; a cycle count settles what is really there.

Milestones are recorded with the moment they happened (``occurred_at``: line history, ledger,
reservation release) beside the moment the system learned of them (``now``: the event's
``recorded_at``, exceptions opened, idempotency record).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import lazyload

from erp_core.db.models import (
    Customer,
    ExceptionCase,
    InventoryBalance,
    Lane,
    Location,
    OrderLine,
    Product,
    SalesOrder,
    Shipment,
    ShipmentEvent,
    ShipmentLine,
    Supplier,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.atp import StockPosition
from erp_core.domain.errors import Conflict, IllegalTransition, InvalidValue, NotFound
from erp_core.domain.pricing import CENT, parse_money
from erp_core.domain.promise import Promise, promise_for
from erp_core.domain.states import ExceptionStatus, LineState, ShipmentStatus, check_transition
from erp_core.policy import Actor
from erp_core.services.common import (
    audit,
    get_kept_or_raise,
    get_or_raise,
    lock_row,
    parse_date,
    parse_quantity,
    require_aware,
    transition,
)
from erp_core.services.exceptions import open_exception
from erp_core.services.idempotency import run_idempotent, stored_response, validate_key
from erp_core.services.orders import DEFAULT_REPLENISH_DAYS, split_line
from erp_core.services.stock import (
    active_reservations,
    backordered_quantity,
    current_promise,
    lock_balances,
    pick_backlog,
    post,
    record_promise,
    release_backorders,
    reserve,
    scheduled_receipts,
    unreserve,
)

SHIPMENT_EVENTS = ("packed", "shipped", "delivered", "eta_updated")
"""The events ``record_shipment_event`` accepts (``picked`` is written by ``pick``)."""

_MILESTONES: Mapping[str, tuple[ShipmentStatus, LineState, str]] = {
    "packed": (ShipmentStatus.PACKED, LineState.PACKED, "pack"),
    "shipped": (ShipmentStatus.SHIPPED, LineState.SHIPPED, "ship"),
    "delivered": (ShipmentStatus.DELIVERED, LineState.DELIVERED, "deliver"),
}


@dataclass(frozen=True)
class LineStatus:
    line_id: int
    quantity: int
    state: str


@dataclass(frozen=True)
class ShortPick:
    line_id: int
    backorder_line_id: int
    short_quantity: int
    expected_ready_on: str
    exception_id: int


@dataclass(frozen=True)
class PickResult:
    shipment_id: int
    order_id: int
    location_id: str
    status: str
    planned_freight_cost: str
    lines: tuple[LineStatus, ...]
    short_picks: tuple[ShortPick, ...] = ()
    replayed: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return stored_response(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, replayed: bool = False) -> PickResult:
        return cls(
            shipment_id=data["shipment_id"],
            order_id=data["order_id"],
            location_id=data["location_id"],
            status=data["status"],
            planned_freight_cost=data["planned_freight_cost"],
            lines=tuple(LineStatus(**line) for line in data["lines"]),
            short_picks=tuple(ShortPick(**short) for short in data["short_picks"]),
            replayed=replayed,
        )


@dataclass(frozen=True)
class ShipmentEventResult:
    shipment_id: int
    event_id: int
    event_type: str
    status: str
    lines: tuple[LineStatus, ...]
    exception_ids: tuple[int, ...] = ()
    replayed: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return stored_response(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, replayed: bool = False) -> ShipmentEventResult:
        return cls(
            shipment_id=data["shipment_id"],
            event_id=data["event_id"],
            event_type=data["event_type"],
            status=data["status"],
            lines=tuple(LineStatus(**line) for line in data["lines"]),
            exception_ids=tuple(data["exception_ids"]),
            replayed=replayed,
        )


# --- pick --------------------------------------------------------------------------------------


def pick(
    uow: UnitOfWork,
    actor: Actor,
    *,
    order_id: int,
    picks: Mapping[int, int],
    now: datetime,
    idempotency_key: str | None = None,
) -> PickResult:
    """Pick allocated lines of one order at one location into a new shipment (``picks`` maps
    line id -> quantity found); a quantity below the line's is a short pick."""
    require_aware("now", now)
    key = validate_key(idempotency_key)
    quantities = _parse_picks(picks)
    payload = {"order_id": order_id, "picks": {str(i): q for i, q in sorted(quantities.items())}}
    with uow:
        uow.policy.require(actor, "record_shipment_event")

        def act() -> dict[str, Any]:
            return _pick(uow, actor, order_id, quantities, now).to_dict()

        response, replayed = run_idempotent(uow, "pick", key, payload, act, now)
        return PickResult.from_dict(response, replayed=replayed)


def _parse_picks(picks: Mapping[int, int]) -> dict[int, int]:
    if not isinstance(picks, Mapping) or not picks:
        raise InvalidValue("picks", picks, "give at least one line id -> picked quantity")
    parsed: dict[int, int] = {}
    for line_id, quantity in picks.items():
        if isinstance(line_id, bool) or not isinstance(line_id, int):
            raise InvalidValue(f"picks[{line_id!r}]", line_id, "not an order line id")
        parsed[line_id] = parse_quantity(f"picks[{line_id}]", quantity)
    return parsed


def _pick(
    uow: UnitOfWork, actor: Actor, order_id: int, quantities: dict[int, int], now: datetime
) -> PickResult:
    order = get_or_raise(
        uow.session,
        SalesOrder,
        order_id,
        entity="sales order",
        field="order_id",
        options=[lazyload(SalesOrder.lines)],  # the lines to pick are read (and locked) below
    )
    lines, balances = _lock_pickable_lines(uow, order, quantities)
    location_id = _only(lines, "location_id", "location")
    lane_id = _only(lines, "lane_id", "lane")
    lane = uow.get(Lane, lane_id) if lane_id is not None else None
    shipment = _open_shipment(uow, actor, now, order, location_id, lane, lines, quantities)
    short_picks: list[ShortPick] = []
    for line in lines:
        balance = balances[(line.sku, location_id)]
        short = _pick_line(uow, actor, now, order, shipment, line, quantities[line.id], balance)
        if short is not None:
            short_picks.append(short)
    _add_event(uow, actor, shipment, "picked", now, now, {"picked": _by_line(quantities)})
    return PickResult(
        shipment_id=shipment.id,
        order_id=order.id,
        location_id=location_id,
        status=str(shipment.status),
        planned_freight_cost=str(shipment.planned_freight_cost),
        lines=tuple(LineStatus(line.id, line.quantity, str(line.state)) for line in lines),
        short_picks=tuple(short_picks),
    )


def _pick_line(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    order: SalesOrder,
    shipment: Shipment,
    line: OrderLine,
    picked: int,
    balance: InventoryBalance,
) -> ShortPick | None:
    """Put ``picked`` units of the line into the shipment; a shortfall is backordered."""
    short = line.quantity - picked
    child = _split_short_pick(uow, actor, now, line, short, balance) if short else None
    uow.append(ShipmentLine, shipment_id=shipment.id, line_id=line.id, quantity=picked)
    transition(uow, actor, now, "order_line", line, LineState.PICKED, "pick", shipment=shipment.id)
    if child is None:
        return None
    shortfall = _backorder_shortfall(uow, actor, now, order, line, child)
    # Stock elsewhere in the location (another bin, a later receipt) serves the shortfall first.
    release_backorders(uow, balance, actor, now)
    return shortfall


# The queries run for every pick and milestone are built once, with bound parameters: building a
# SELECT costs SQLAlchemy more than running it on SQLite.
_LINES_OF_ORDER = select(OrderLine).where(
    OrderLine.id.in_(bindparam("line_ids", expanding=True)),
    OrderLine.order_id == bindparam("order_id"),
)
_LOCK_LINES_OF_ORDER = (
    _LINES_OF_ORDER.order_by(OrderLine.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


def _lock_pickable_lines(
    uow: UnitOfWork, order: SalesOrder, quantities: dict[int, int]
) -> tuple[list[OrderLine], dict[tuple[str, str], InventoryBalance]]:
    """The order's lines to pick, locked after their balances (the lock order every service
    keeps) and checked: allocated, price settled, picked quantity within the line."""
    ids = sorted(quantities)
    params = {"line_ids": ids, "order_id": order.id}
    found = {line.id: line for line in uow.session.execute(_LINES_OF_ORDER, params).scalars()}
    for line_id in ids:
        if line_id not in found:
            raise NotFound(f"line of order {order.id}", f"picks[{line_id}]", line_id)
    balances = lock_balances(
        uow, [(line.sku, line.location_id) for line in found.values() if line.location_id]
    )
    lines = list(uow.session.execute(_LOCK_LINES_OF_ORDER, params).scalars())
    for line in lines:
        _check_pickable(line, quantities[line.id])
    return lines, balances


def _check_pickable(line: OrderLine, picked: int) -> None:
    if line.state != LineState.ALLOCATED:
        raise IllegalTransition(f"order_line {line.id}", str(line.state), LineState.PICKED)
    if line.price_approval_pending:
        raise Conflict(
            f"line {line.id} waits for a price approval and cannot be picked",
            field="line_id",
            value=line.id,
        )
    if picked > line.quantity:
        raise InvalidValue(
            f"picks[{line.id}]", picked, f"more than the line's quantity {line.quantity}"
        )


def _only(lines: Sequence[OrderLine], attribute: str, what: str) -> Any:
    """The one value of ``attribute`` the lines share; one shipment leaves from one place."""
    values = {getattr(line, attribute) for line in lines}
    if len(values) != 1:
        raise Conflict(
            f"lines of one pick must share one {what}; got {sorted(map(str, values))}",
            field="picks",
            value=[line.id for line in lines],
        )
    return values.pop()


def planned_freight_cost(lane: Lane | None, weight_kg: Decimal) -> Decimal:
    """What the lane charges for a shipment of ``weight_kg``: per shipment plus per kg."""
    if lane is None:
        return Decimal("0.00")
    cost = lane.cost_per_shipment + lane.cost_per_kg * weight_kg
    return cost.quantize(CENT, rounding=ROUND_HALF_UP)


def _open_shipment(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    order: SalesOrder,
    location_id: str,
    lane: Lane | None,
    lines: Sequence[OrderLine],
    quantities: dict[int, int],
) -> Shipment:
    weight = sum((_weight_kg(uow, line.sku) * quantities[line.id] for line in lines), Decimal(0))
    shipment = Shipment(
        order_id=order.id,
        location_id=location_id,
        lane_id=lane.id if lane else None,
        status=ShipmentStatus.PICKED,
        created_at=now,
        planned_freight_cost=planned_freight_cost(lane, weight),
        expedited=lane is not None and lane.service_level != "standard",
    )
    uow.assign_ids([shipment])
    uow.session.add(shipment)
    uow.session.flush()
    audit(
        uow,
        actor,
        now,
        "create_shipment",
        "shipment",
        shipment.id,
        to_state=ShipmentStatus.PICKED,
        order_id=order.id,
        weight_kg=weight,
        planned_freight_cost=shipment.planned_freight_cost,
    )
    return shipment


def _weight_kg(uow: UnitOfWork, sku: str) -> Decimal:
    product = get_kept_or_raise(uow, Product, sku, entity="product", field="sku")
    return product.weight_kg


def _split_short_pick(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    line: OrderLine,
    short: int,
    balance: InventoryBalance,
) -> OrderLine:
    """Shrink a short-picked line to what was found (its reservation with it) and split the
    shortfall off as a child line.

    The units not found are written off on hand at once (kind ``pick_shortage``): left in the
    books they would look free and a receipt could promise them to the next backorder before a
    count corrects them.
    """
    original = line.quantity
    unreserve(uow, balance, line, "short_pick", actor, now)
    child = split_line(uow, actor, now, line, short, "short_pick")
    reserve(uow, balance, line, actor, now)
    post(
        uow,
        balance,
        "on_hand",
        -short,
        kind="pick_shortage",
        actor=actor,
        now=now,
        reference=("order_line", line.id),
    )
    audit(
        uow,
        actor,
        now,
        "short_pick",
        "order_line",
        line.id,
        original_quantity=original,
        picked_quantity=line.quantity,
    )
    return child


def _backorder_shortfall(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    order: SalesOrder,
    line: OrderLine,
    child: OrderLine,
) -> ShortPick:
    """The units a pick did not find, as a backordered child line with a promise and a shortage
    exception."""
    assert line.location_id is not None
    short = child.quantity
    ready_on = _shortfall_ready_on(uow, line.sku, line.location_id, short, now)
    child.expected_ready_on = ready_on
    transition(
        uow,
        actor,
        now,
        "order_line",
        child,
        LineState.BACKORDERED,
        "backorder",
        location_id=child.location_id,
        ready_on=ready_on,
        reason="short_pick",
    )
    promise = _promise(uow, child, ready_on, now)
    record_promise(
        uow, child.id, promise.ship_date, promise.delivery_date, "short_pick", actor, now
    )
    case = open_exception(
        uow,
        actor,
        now,
        "shortage",
        order_id=order.id,
        line_id=child.id,
        customer=uow.session.get(Customer, order.customer_id),
        sku=line.sku,
        location_id=line.location_id,
        margin_at_risk=child.unit_price * short,
        reasons=["short_pick"],
        details={
            "picked_line_id": line.id,
            "picked_quantity": line.quantity,
            "short_quantity": short,
            "expected_ready_on": ready_on.isoformat(),
        },
    )
    return ShortPick(line.id, child.id, short, ready_on.isoformat(), case.id)


def _shortfall_ready_on(
    uow: UnitOfWork, sku: str, location_id: str, quantity: int, now: datetime
) -> date:
    """The open receipt at the location that covers ``quantity`` after the backorders already
    waiting there (on hand not counted), else today plus the supplier's lead time."""
    waiting = StockPosition(
        location=location_id,
        on_hand=0,
        reserved=0,
        backordered=backordered_quantity(uow, sku, location_id),
        receipts=scheduled_receipts(uow, sku, location_id),
    )
    covered = waiting.earliest_date_for(quantity)
    if covered is not None:
        return covered
    return now.date() + timedelta(days=_supplier_lead_days(uow, sku))


def _supplier_lead_days(uow: UnitOfWork, sku: str) -> int:
    product = uow.get(Product, sku)
    supplier_id = product.preferred_supplier_id if product else None
    supplier = uow.get(Supplier, supplier_id) if supplier_id else None
    return supplier.nominal_lead_days if supplier else DEFAULT_REPLENISH_DAYS


def _promise(uow: UnitOfWork, line: OrderLine, ready_on: date, now: datetime) -> Promise:
    """Ship and delivery promise at the line's location and lane, as order capture makes it."""
    location = get_kept_or_raise(
        uow, Location, line.location_id, entity="location", field="location_id"
    )
    lane = uow.get(Lane, line.lane_id) if line.lane_id is not None else None
    return promise_for(
        entered_at=now,
        stock_ready_on=ready_on,
        cutoff=location.cutoff_time,
        timezone=location.timezone,
        pick_backlog_lines=pick_backlog(uow, location.id),
        pick_capacity_per_day=location.pick_capacity_per_day,
        transit_days=lane.transit_days if lane else 0,
        calendar=uow.policy.calendar,
    )


# --- shipment events ---------------------------------------------------------------------------


def record_shipment_event(
    uow: UnitOfWork,
    actor: Actor,
    *,
    shipment_id: int,
    event_type: str,
    occurred_at: datetime,
    now: datetime,
    idempotency_key: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> ShipmentEventResult:
    """Record a milestone of a shipment: ``packed``, ``shipped`` (carrier handoff: stock leaves
    the ledger), ``delivered`` (``details["freight_cost"]`` sets the actual freight), or
    ``eta_updated`` (``details["eta"]``; a delivery_slip exception per line it makes late)."""
    require_aware("now", now)
    require_aware("occurred_at", occurred_at)
    if occurred_at > now:
        raise InvalidValue("occurred_at", occurred_at, f"is after now ({now.isoformat()})")
    key = validate_key(idempotency_key)
    if event_type not in SHIPMENT_EVENTS:
        raise InvalidValue("event_type", event_type, f"not one of {', '.join(SHIPMENT_EVENTS)}")
    facts = _parse_details(event_type, details)
    payload = {
        "shipment_id": shipment_id,
        "event_type": event_type,
        "occurred_at": occurred_at.astimezone(UTC).isoformat(),
        "details": facts,
    }
    with uow:
        uow.policy.require(actor, "record_shipment_event")

        def act() -> dict[str, Any]:
            return _record(uow, actor, shipment_id, event_type, occurred_at, now, facts).to_dict()

        response, replayed = run_idempotent(uow, "shipment_event", key, payload, act, now)
        return ShipmentEventResult.from_dict(response, replayed=replayed)


def pack(
    uow: UnitOfWork,
    actor: Actor,
    *,
    shipment_id: int,
    occurred_at: datetime,
    now: datetime,
    idempotency_key: str | None = None,
) -> ShipmentEventResult:
    return record_shipment_event(
        uow,
        actor,
        shipment_id=shipment_id,
        event_type="packed",
        occurred_at=occurred_at,
        now=now,
        idempotency_key=idempotency_key,
    )


def ship(
    uow: UnitOfWork,
    actor: Actor,
    *,
    shipment_id: int,
    occurred_at: datetime,
    now: datetime,
    idempotency_key: str | None = None,
) -> ShipmentEventResult:
    return record_shipment_event(
        uow,
        actor,
        shipment_id=shipment_id,
        event_type="shipped",
        occurred_at=occurred_at,
        now=now,
        idempotency_key=idempotency_key,
    )


def deliver(
    uow: UnitOfWork,
    actor: Actor,
    *,
    shipment_id: int,
    occurred_at: datetime,
    now: datetime,
    freight_cost: Decimal | str | None = None,
    idempotency_key: str | None = None,
) -> ShipmentEventResult:
    return record_shipment_event(
        uow,
        actor,
        shipment_id=shipment_id,
        event_type="delivered",
        occurred_at=occurred_at,
        now=now,
        idempotency_key=idempotency_key,
        details=None if freight_cost is None else {"freight_cost": str(freight_cost)},
    )


def _parse_details(event_type: str, details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The event's details as plain JSON values, with ``eta`` and ``freight_cost`` checked."""
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise InvalidValue("details", details, "must be a mapping")
    facts = {str(k): v if _is_plain(v) else str(v) for k, v in details.items()}
    if event_type == "eta_updated":
        eta = parse_date("details.eta", details.get("eta"))
        if eta is None:
            raise InvalidValue("details.eta", None, "eta_updated needs the new ETA (YYYY-MM-DD)")
        facts["eta"] = eta.isoformat()
    if event_type == "delivered" and details.get("freight_cost") is not None:
        cost = parse_money("details.freight_cost", details["freight_cost"])
        if cost < 0:
            raise InvalidValue("details.freight_cost", details["freight_cost"], "must be >= 0")
        facts["freight_cost"] = str(cost)
    return facts


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _record(
    uow: UnitOfWork,
    actor: Actor,
    shipment_id: int,
    event_type: str,
    occurred_at: datetime,
    now: datetime,
    facts: dict[str, Any],
) -> ShipmentEventResult:
    shipment = lock_row(
        uow,
        Shipment,
        shipment_id,
        entity="shipment",
        field="shipment_id",
        options=[lazyload(Shipment.lines)],  # read with their order lines just below
    )
    lines = _shipment_lines(uow, shipment)
    exception_ids: list[int] = []
    if event_type == "eta_updated":
        exception_ids = _update_eta(
            uow, actor, now, shipment, lines, date.fromisoformat(facts["eta"])
        )
    else:
        _advance(uow, actor, occurred_at, now, shipment, lines, event_type, facts)
    event = _add_event(uow, actor, shipment, event_type, occurred_at, now, facts)
    return ShipmentEventResult(
        shipment_id=shipment.id,
        event_id=event.id,
        event_type=event_type,
        status=str(shipment.status),
        lines=tuple(LineStatus(line.id, quantity, str(line.state)) for quantity, line in lines),
        exception_ids=tuple(exception_ids),
    )


_SHIPMENT_LINES = (
    select(ShipmentLine.quantity, OrderLine)
    .join(OrderLine, OrderLine.id == ShipmentLine.line_id)
    .where(ShipmentLine.shipment_id == bindparam("shipment_id"))
    .order_by(OrderLine.id)
)


def _shipment_lines(uow: UnitOfWork, shipment: Shipment) -> list[tuple[int, OrderLine]]:
    """(shipped quantity, order line) for every line of the shipment, in line id order."""
    rows = uow.session.execute(_SHIPMENT_LINES, {"shipment_id": shipment.id}).all()
    return [(int(quantity), line) for quantity, line in rows]


def _advance(
    uow: UnitOfWork,
    actor: Actor,
    occurred_at: datetime,
    now: datetime,
    shipment: Shipment,
    lines: Sequence[tuple[int, OrderLine]],
    event_type: str,
    facts: dict[str, Any],
) -> None:
    """Move the shipment and its lines to the milestone's state (checked before any write)."""
    status, line_state, action = _MILESTONES[event_type]
    check_transition("shipment", shipment.status, status)
    _check_chronology(uow, shipment, occurred_at)
    if event_type == "shipped":
        _hand_over_stock(uow, actor, occurred_at, shipment, lines)
    if event_type == "delivered" and "freight_cost" in facts:
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


_LAST_MILESTONE_AT = (
    select(ShipmentEvent.occurred_at)
    .where(
        ShipmentEvent.shipment_id == bindparam("shipment_id"),
        ShipmentEvent.event_type != "eta_updated",
    )
    .order_by(ShipmentEvent.occurred_at.desc())
    .limit(1)
)


def _check_chronology(uow: UnitOfWork, shipment: Shipment, occurred_at: datetime) -> None:
    """A milestone cannot have happened before the one it follows."""
    previous = uow.session.execute(
        _LAST_MILESTONE_AT, {"shipment_id": shipment.id}
    ).scalar_one_or_none()
    if previous is not None and occurred_at < previous:
        raise InvalidValue(
            "occurred_at",
            occurred_at,
            f"before the shipment's previous milestone at {previous.isoformat()}",
        )


def _hand_over_stock(
    uow: UnitOfWork,
    actor: Actor,
    occurred_at: datetime,
    shipment: Shipment,
    lines: Sequence[tuple[int, OrderLine]],
) -> None:
    """Carrier handoff: the units leave on hand and their reservations are released, each
    movement in the ledger as a ``shipment``."""
    balances = lock_balances(uow, [(line.sku, shipment.location_id) for _q, line in lines])
    reservations = active_reservations(uow, [line.id for _q, line in lines])
    for quantity, line in lines:
        reservation = reservations.get(line.id)
        if reservation is None or reservation.quantity != quantity:
            raise Conflict(
                f"line {line.id} holds no active reservation of {quantity} to ship",
                field="line_id",
                value=line.id,
            )
        reservation.released_at = occurred_at
        reservation.release_reason = "shipped"
        balance = balances[(line.sku, shipment.location_id)]
        for bucket in ("reserved", "on_hand"):  # reserved first: reserved <= on_hand throughout
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


def _update_eta(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    shipment: Shipment,
    lines: Sequence[tuple[int, OrderLine]],
    eta: date,
) -> list[int]:
    """Open a delivery_slip exception for each line the new ETA delivers after its current
    promise (unless one is already open for the line); line states do not change."""
    if shipment.status == ShipmentStatus.DELIVERED:
        raise Conflict(
            f"shipment {shipment.id} is already delivered; its ETA cannot change",
            field="event_type",
            value="eta_updated",
        )
    order = get_or_raise(
        uow.session, SalesOrder, shipment.order_id, entity="sales order", field="order_id"
    )
    customer = uow.session.get(Customer, order.customer_id)
    opened: list[int] = []
    for quantity, line in lines:
        promise = current_promise(uow, line.id)
        if promise is None or eta <= promise.promised_delivery_date or _slip_open(uow, line.id):
            continue
        case = open_exception(
            uow,
            actor,
            now,
            "delivery_slip",
            order_id=order.id,
            line_id=line.id,
            customer=customer,
            sku=line.sku,
            location_id=shipment.location_id,
            margin_at_risk=line.unit_price * quantity,
            reasons=["eta_after_promise"],
            details={
                "shipment_id": shipment.id,
                "eta": eta.isoformat(),
                "promised_delivery_date": promise.promised_delivery_date.isoformat(),
                "days_late": (eta - promise.promised_delivery_date).days,
            },
        )
        opened.append(case.id)
    audit(uow, actor, now, "eta_updated", "shipment", shipment.id, eta=eta, late_lines=len(opened))
    return opened


def _slip_open(uow: UnitOfWork, line_id: int) -> bool:
    return (
        uow.session.execute(
            select(ExceptionCase.id)
            .where(
                ExceptionCase.line_id == line_id,
                ExceptionCase.type == "delivery_slip",
                ExceptionCase.status != ExceptionStatus.RESOLVED,
            )
            .limit(1)
        ).scalar_one_or_none()
        is not None
    )


def _add_event(
    uow: UnitOfWork,
    actor: Actor,
    shipment: Shipment,
    event_type: str,
    occurred_at: datetime,
    now: datetime,
    details: dict[str, Any],
) -> ShipmentEvent:
    event = ShipmentEvent(
        shipment_id=shipment.id,
        event_type=event_type,
        occurred_at=occurred_at,
        recorded_at=now,
        source=actor.name,
        details=details,
    )
    uow.assign_ids([event])
    uow.session.add(event)
    uow.session.flush()
    return event


def _by_line(quantities: Mapping[int, int]) -> dict[str, int]:
    return {str(line_id): quantity for line_id, quantity in sorted(quantities.items())}
