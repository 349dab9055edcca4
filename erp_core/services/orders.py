"""Order capture and allocation: validate, price, check credit, promise and reserve, in one
transaction per order (the whole order or nothing).

The fulfilling location is the customer's home location when it has the stock, else the location
with the earliest promised delivery; a line that cannot be filled from stock now is backordered
against the earliest receipt that covers it (or split: what is free now ships, the rest waits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select

from erp_core.db.models import (
    ApprovalRequest,
    Customer,
    InventoryBalance,
    Lane,
    Location,
    OrderLine,
    PriceDecision,
    PriceListEntry,
    Product,
    SalesOrder,
    Supplier,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.atp import Allocation, StockPosition, plan_allocation
from erp_core.domain.credit import exceeds_credit_limit
from erp_core.domain.errors import InvalidValue, NotFound
from erp_core.domain.pricing import PriceBreak, decide_price, parse_money
from erp_core.domain.promise import Promise, promise_for
from erp_core.domain.states import OPEN_LINE_STATES, LineState
from erp_core.policy import Actor
from erp_core.services.approvals import open_approval
from erp_core.services.common import (
    audit,
    get_kept_or_raise,
    lock_row,
    parse_date,
    parse_quantity,
    require_aware,
    transition,
)
from erp_core.services.exceptions import open_exception
from erp_core.services.idempotency import run_idempotent, stored_response, validate_key
from erp_core.services.stock import (
    lock_balances,
    pick_backlog,
    pick_backlogs,
    record_promise,
    reserve,
    stock_positions,
)

DEFAULT_REPLENISH_DAYS = 14


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int
    unit_price: Decimal | str | None = None
    """A negotiated price; None takes the customer's tier price."""


@dataclass(frozen=True)
class CapturedLine:
    line_id: int
    line_no: int
    sku: str
    quantity: int
    state: str
    location_id: str | None
    unit_price: str
    promised_ship_date: str | None
    promised_delivery_date: str | None
    parent_line_id: int | None = None
    price_approval_pending: bool = False


@dataclass(frozen=True)
class CapturedOrder:
    order_id: int
    customer_id: str
    lines: tuple[CapturedLine, ...]
    exception_ids: tuple[int, ...] = ()
    approval_ids: tuple[int, ...] = ()
    credit_hold: bool = False
    replayed: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return stored_response(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, replayed: bool = False) -> CapturedOrder:
        return cls(
            order_id=data["order_id"],
            customer_id=data["customer_id"],
            lines=tuple(CapturedLine(**line) for line in data["lines"]),
            exception_ids=tuple(data["exception_ids"]),
            approval_ids=tuple(data["approval_ids"]),
            credit_hold=data["credit_hold"],
            replayed=replayed,
        )


def capture_order(
    uow: UnitOfWork,
    actor: Actor,
    *,
    customer_id: str,
    lines: Sequence[LineRequest],
    now: datetime,
    requested_date: date | str | None = None,
    channel: str | None = None,
    ship_to_region: str | None = None,
    allow_split: bool = True,
    idempotency_key: str | None = None,
    external_ref: str | None = None,
) -> CapturedOrder:
    """Capture a sales order: every line priced, credit-checked, promised and reserved or
    backordered; or nothing written at all when any value is wrong."""
    require_aware("now", now)
    key = validate_key(idempotency_key)
    request_day = parse_date("requested_date", requested_date)
    if not lines:
        raise InvalidValue("lines", [], "an order needs at least one line")
    payload = {
        "customer_id": customer_id,
        "lines": [asdict(line) for line in lines],
        "requested_date": request_day,
        "channel": channel,
        "ship_to_region": ship_to_region,
        "allow_split": allow_split,
        "external_ref": external_ref,
    }
    with uow:
        uow.policy.require(actor, "capture_order")

        def act() -> dict[str, Any]:
            return _capture(
                uow,
                actor,
                customer_id,
                lines,
                now,
                request_day,
                channel,
                ship_to_region,
                allow_split,
                external_ref,
            ).to_dict()

        response, replayed = run_idempotent(uow, "capture_order", key, payload, act, now)
        return CapturedOrder.from_dict(response, replayed=replayed)


def _capture(
    uow: UnitOfWork,
    actor: Actor,
    customer_id: str,
    requests: Sequence[LineRequest],
    now: datetime,
    requested_date: date | None,
    channel: str | None,
    ship_to_region: str | None,
    allow_split: bool,
    external_ref: str | None,
    lanes: dict[str, Lane] | None = None,
    batch: CaptureBatch | None = None,
) -> CapturedOrder:
    """The act of ``capture_order``; ``lanes`` are the standard lanes serving the order's region
    when the caller has read them already (``standard_lanes``), ``batch`` what a run of captures
    in one transaction has read already (``CaptureBatch``)."""
    session = uow.session
    customer = lock_row(uow, Customer, customer_id, entity="customer", field="customer_id")
    uow.preload(Product, {request.sku for request in requests})
    parsed = [_parse_line(uow, i, r) for i, r in enumerate(requests)]
    order = SalesOrder(
        customer_id=customer.id,
        channel=channel or customer.channel,
        ship_to_region=ship_to_region or customer.region,
        entered_at=now,
        entered_by=actor.name,
        requested_date=requested_date,
        allow_split=allow_split,
        external_ref=external_ref,
    )
    # The order and its lines are inserted with the next flush (the act's own reads that need
    # them autoflush; a batch of captures mostly flushes once at its end): on SQLite they are
    # given their ids now (``UnitOfWork.assign_ids``), elsewhere the order is flushed for its id.
    uow.assign_ids([order])
    session.add(order)
    if order.id is None:
        session.flush()
    audit(uow, actor, now, "capture_order", "sales_order", order.id, customer_id=customer.id)

    skus = [p.sku for p, _, _ in parsed]
    with session.no_autoflush:  # the price list: nothing the act has pending changes it
        if batch is None:
            breaks = tier_price_breaks_by_sku(uow, customer.tier, skus, now.date())
        else:
            breaks = batch.price_breaks(uow, customer.tier, skus, now.date())
    priced = [
        _priced_line(uow, actor, now, order, product, line_no, quantity, price, breaks[product.sku])
        for line_no, (product, quantity, price) in enumerate(parsed, start=1)
    ]
    _insert_lines(uow, [line for line, _source in priced])
    order_lines: list[OrderLine] = []
    approvals: list[ApprovalRequest] = []
    exceptions: list[int] = []
    for (line, price_source), (product, _quantity, _price) in zip(priced, parsed, strict=True):
        _book_line(
            uow, actor, now, line, "create_line", price_source, sku=line.sku, quantity=line.quantity
        )
        order_lines.append(line)
        if line.price_approval_pending:
            approval = _request_discount_approval(uow, actor, now, order, customer, line, product)
            approvals.append(approval)
            assert approval.exception_id is not None
            exceptions.append(approval.exception_id)

    value = sum((line.unit_price * line.quantity for line in order_lines), Decimal(0))
    if batch is None:
        exposure = open_exposure(uow, customer.id, exclude_order_id=order.id)
    else:
        exposure = batch.exposure(uow, customer, order.id, value)
        batch.captured(customer.id, exposure + value)
    if exceeds_credit_limit(exposure, value, customer.credit_limit):
        for line in order_lines:
            transition(uow, actor, now, "order_line", line, LineState.CREDIT_HOLD, "credit_hold")
        case = open_exception(
            uow,
            actor,
            now,
            "credit_hold",
            order_id=order.id,
            customer=customer,
            margin_at_risk=value,
            reasons=["credit_limit_exceeded"],
            details={
                "open_exposure": str(exposure),
                "order_value": str(value),
                "credit_limit": str(customer.credit_limit),
            },
        )
        exceptions.append(case.id)
        return _describe(order, order_lines, {}, exceptions, approvals, credit_hold=True)

    allocator = Allocator(
        uow, actor, now, order, customer, lanes, None if batch is None else batch.backlogs
    )
    allocator.lock([line.sku for line in order_lines])
    for line in order_lines:
        exceptions.extend(allocator.allocate(line))
    return _describe(
        order,
        order_lines + allocator.split_off,
        allocator.promised,
        exceptions,
        approvals,
        credit_hold=False,
    )


def _parse_line(
    uow: UnitOfWork, index: int, request: LineRequest
) -> tuple[Product, int, Decimal | None]:
    return check_line_request(uow.get(Product, request.sku), index, request)


def check_line_request(
    product: Product | None, index: int, request: LineRequest
) -> tuple[Product, int, Decimal | None]:
    """Capture's checks of one requested line, in their order (a quote runs the same)."""
    prefix = f"lines[{index}]"
    if product is None or not product.active:
        raise NotFound("product", f"{prefix}.sku", request.sku)
    quantity = parse_quantity(f"{prefix}.quantity", request.quantity)
    price = None
    if request.unit_price is not None:
        price = parse_money(f"{prefix}.unit_price", request.unit_price)
        if price <= 0:
            raise InvalidValue(f"{prefix}.unit_price", request.unit_price, "must be > 0")
    return product, quantity, price


def tier_price_breaks(uow: UnitOfWork, tier: str, sku: str, on: date) -> list[PriceBreak]:
    """The tier's price breaks for the SKU valid on ``on`` (the newest entry per quantity)."""
    return tier_price_breaks_by_sku(uow, tier, [sku], on)[sku]


# Built once with bound parameters: building a SELECT costs more than running it on SQLite.
_PRICE_BREAKS = (
    select(PriceListEntry.sku, PriceListEntry.min_quantity, PriceListEntry.unit_price)
    .where(
        PriceListEntry.tier == bindparam("tier"),
        PriceListEntry.sku.in_(bindparam("skus", expanding=True)),
        PriceListEntry.valid_from <= bindparam("on"),
    )
    .order_by(PriceListEntry.sku, PriceListEntry.min_quantity, PriceListEntry.valid_from)
)


def tier_price_breaks_by_sku(
    uow: UnitOfWork, tier: str, skus: Sequence[str], on: date
) -> dict[str, list[PriceBreak]]:
    """``tier_price_breaks`` of several SKUs (an order's) in one query."""
    rows = uow.session.execute(
        _PRICE_BREAKS, {"tier": tier, "skus": sorted(set(skus)), "on": on}
    ).all()
    newest: dict[str, dict[int, Decimal]] = {sku: {} for sku in skus}
    for sku, min_quantity, unit_price in rows:
        newest[sku][min_quantity] = unit_price
    return {
        sku: [PriceBreak(q, p) for q, p in sorted(prices.items())] for sku, prices in newest.items()
    }


def _priced_line(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    order: SalesOrder,
    product: Product,
    line_no: int,
    quantity: int,
    requested_price: Decimal | None,
    breaks: list[PriceBreak],
) -> tuple[OrderLine, str]:
    """A new draft line of the order at its decided price, and where the price came from; the
    line waits for a price approval when the discount is beyond what the actor may give."""
    decision = decide_price(
        list_price=product.list_price,
        breaks=breaks,
        quantity=quantity,
        requested_unit_price=requested_price,
        approval_threshold_pct=uow.policy.discount_approval_pct,
        field=f"lines[{line_no - 1}].unit_price",
    )
    needs_approval = decision.needs_approval and not uow.policy.allows(
        actor.role, "approve_discount"
    )
    line = OrderLine(
        order_id=order.id,
        line_no=line_no,
        sku=product.sku,
        quantity=quantity,
        state=LineState.DRAFT,
        requested_date=order.requested_date,
        entered_at=now,
        list_price=decision.list_price,
        tier_price=decision.tier_price,
        unit_price=decision.unit_price,
        discount_pct=decision.discount_pct,
        price_approval_pending=needs_approval,
    )
    return line, decision.source


def record_price(
    uow: UnitOfWork,
    line: OrderLine,
    source: str,
    actor: Actor,
    now: datetime,
    approval_id: int | None = None,
) -> None:
    uow.append(
        PriceDecision,
        line_id=line.id,
        list_price=line.list_price,
        tier_price=line.tier_price,
        unit_price=line.unit_price,
        discount_pct=line.discount_pct,
        source=source,
        decided_at=now,
        decided_by=actor.name,
        approval_id=approval_id,
    )


def split_line(
    uow: UnitOfWork, actor: Actor, now: datetime, line: OrderLine, quantity: int, reason: str
) -> OrderLine:
    """Split ``quantity`` units off ``line`` into a confirmed child line (same prices, location and
    lane, ``parent_line_id`` set), so every line keeps one state; the caller decides the child's
    next state. The family's quantities still add up to what was ordered."""
    if not 0 < quantity < line.quantity:
        raise InvalidValue("quantity", quantity, f"must be between 1 and {line.quantity - 1}")
    last_no = uow.session.execute(
        select(func.max(OrderLine.line_no)).where(OrderLine.order_id == line.order_id)
    ).scalar_one()
    line.quantity -= quantity
    child = OrderLine(
        order_id=line.order_id,
        line_no=last_no + 1,
        parent_line_id=line.id,
        sku=line.sku,
        quantity=quantity,
        state=LineState.DRAFT,
        location_id=line.location_id,
        lane_id=line.lane_id,
        requested_date=line.requested_date,
        entered_at=line.entered_at,
        list_price=line.list_price,
        tier_price=line.tier_price,
        unit_price=line.unit_price,
        discount_pct=line.discount_pct,
        price_approval_pending=line.price_approval_pending,
    )
    _insert_lines(uow, [child])
    _book_line(
        uow,
        actor,
        now,
        child,
        "split_line",
        "split",
        parent_line_id=line.id,
        quantity=quantity,
        kept_quantity=line.quantity,
        reason=reason,
    )
    return child


def _insert_lines(uow: UnitOfWork, lines: Sequence[OrderLine]) -> None:
    """Give new lines their ids: on SQLite assigned beforehand (``UnitOfWork.assign_ids``), so
    they are inserted with the next flush, a batch's lines in one ``executemany``; where the
    dialect returns the ids of a multi-row INSERT in order (PostgreSQL), flushed now."""
    uow.assign_ids(lines)
    uow.session.add_all(lines)
    if any(line.id is None for line in lines):
        uow.session.flush()


def _book_line(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    line: OrderLine,
    action: str,
    price_source: str,
    **details: Any,
) -> None:
    """Put a new (inserted) draft line in the book: audit its creation (``action`` with
    ``details``), record its price decision and confirm it."""
    audit(uow, actor, now, action, "order_line", line.id, to_state=LineState.DRAFT, **details)
    record_price(uow, line, price_source, actor, now)
    transition(uow, actor, now, "order_line", line, LineState.CONFIRMED, "confirm_line")


def _request_discount_approval(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    order: SalesOrder,
    customer: Customer,
    line: OrderLine,
    product: Product,
) -> ApprovalRequest:
    margin_at_risk = (line.tier_price - line.unit_price) * line.quantity
    case = open_exception(
        uow,
        actor,
        now,
        "discount_approval",
        order_id=order.id,
        line_id=line.id,
        customer=customer,
        sku=product.sku,
        margin_at_risk=margin_at_risk,
        reasons=["discount_beyond_threshold"],
        details={
            "discount_pct": str(line.discount_pct),
            "tier_price": str(line.tier_price),
            "unit_price": str(line.unit_price),
        },
    )
    return open_approval(
        uow,
        actor,
        now,
        kind="discount",
        order_id=order.id,
        line_id=line.id,
        exception_id=case.id,
        details={"discount_pct": str(line.discount_pct), "unit_price": str(line.unit_price)},
    )


_OPEN_EXPOSURE = (
    select(func.coalesce(func.sum(OrderLine.quantity * OrderLine.unit_price), 0))
    .join(SalesOrder, SalesOrder.id == OrderLine.order_id)
    .where(
        SalesOrder.customer_id == bindparam("customer_id"),
        OrderLine.state.in_([str(s) for s in OPEN_LINE_STATES]),
    )
)
_OPEN_EXPOSURE_BESIDES_ORDER = _OPEN_EXPOSURE.where(SalesOrder.id != bindparam("order_id"))


_OPEN_EXPOSURES = (
    select(
        SalesOrder.customer_id,
        func.coalesce(func.sum(OrderLine.quantity * OrderLine.unit_price), 0),
    )
    .join(SalesOrder, SalesOrder.id == OrderLine.order_id)
    .where(
        SalesOrder.customer_id.in_(bindparam("customer_ids", expanding=True)),
        OrderLine.state.in_([str(s) for s in OPEN_LINE_STATES]),
    )
    .group_by(SalesOrder.customer_id)
)

CREDIT_MARGIN = Decimal("1.00")
"""How far below the credit limit a batch's running exposure must stay for its credit check to
go without a query. The running sum is exact; SQLite sums the stored prices as floats, a few
millionths off at most: an order within the margin of the limit is checked by ``open_exposure``
itself, so every decision (and the exposure written into a hold's case) is the query's."""


@dataclass
class CaptureBatch:
    """What a run of captures in one transaction (``orders_batch.capture_orders``) reads once
    instead of once per order: each customer's open exposure before the batch, and the pick
    backlogs of the locations, both kept up to date as the batch's orders are captured.

    Nothing but the batch's own captures changes either within the transaction: each captured
    order adds its value to its customer's exposure (its lines stay open: held, allocated or
    backordered) and each line allocated joins its location's queue. Not reading them per order
    spares a query and the flush before it (the order's lines and the earlier orders' changes
    go out in fewer, larger flushes)."""

    exposures: dict[str, Decimal] = field(default_factory=dict)
    backlogs: dict[str, int] = field(default_factory=dict)
    skus: set[str] = field(default_factory=set)
    """The SKUs the batch's orders ask for: the price breaks of a tier are read for all of them
    at once (the price list does not change within the transaction's captures)."""
    breaks: dict[tuple[str, date], dict[str, list[PriceBreak]]] = field(default_factory=dict)

    def price_breaks(
        self, uow: UnitOfWork, tier: str, skus: Sequence[str], on: date
    ) -> dict[str, list[PriceBreak]]:
        """``tier_price_breaks_by_sku``, read once per tier and day for the batch's SKUs."""
        known = self.breaks.setdefault((tier, on), {})
        missing = {sku for sku in skus if sku not in known}
        if missing:
            wanted = missing if len(known) else missing | self.skus
            known.update(tier_price_breaks_by_sku(uow, tier, sorted(wanted), on))
        return {sku: known[sku] for sku in skus}

    def read_exposures(self, uow: UnitOfWork, customer_ids: Sequence[str]) -> None:
        """The open exposure of each customer, read in grouped queries before any is captured."""
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found = dict(uow.session.execute(_OPEN_EXPOSURES, {"customer_ids": chunk}).all())
            for customer_id in chunk:
                self.exposures[customer_id] = Decimal(str(found.get(customer_id, 0)))

    def exposure(
        self, uow: UnitOfWork, customer: Customer, order_id: int, value: Decimal
    ) -> Decimal:
        """The customer's open exposure besides the order: the running sum when the order stays
        clear of the limit by ``CREDIT_MARGIN``, else ``open_exposure``."""
        known = self.exposures.get(customer.id)
        if known is not None and known + value <= customer.credit_limit - CREDIT_MARGIN:
            return known
        return open_exposure(uow, customer.id, exclude_order_id=order_id)

    def captured(self, customer_id: str, exposure: Decimal) -> None:
        """The customer's exposure after an order of the batch."""
        self.exposures[customer_id] = exposure


def open_exposure(
    uow: UnitOfWork, customer_id: str, exclude_order_id: int | None = None
) -> Decimal:
    """Value of the customer's lines not yet shipped (what the credit limit must cover)."""
    if exclude_order_id is None:
        exposure = uow.session.execute(_OPEN_EXPOSURE, {"customer_id": customer_id})
    else:
        exposure = uow.session.execute(
            _OPEN_EXPOSURE_BESIDES_ORDER, {"customer_id": customer_id, "order_id": exclude_order_id}
        )
    return Decimal(str(exposure.scalar_one()))


_FASTEST_LANES = (
    select(Lane)
    .where(Lane.dest_region == bindparam("region"), Lane.service_level == bindparam("level"))
    .order_by(Lane.transit_days, Lane.cost_per_shipment, Lane.id)
)


def fastest_lanes(uow: UnitOfWork, region: str, service_level: str) -> dict[str, Lane]:
    """The fastest (then cheapest) lane of the service level from each location to the region."""
    lanes: dict[str, Lane] = {}
    params = {"region": region, "level": service_level}
    for lane in uow.session.execute(_FASTEST_LANES, params).scalars():
        lanes.setdefault(lane.origin_location_id, lane)
    return lanes


def standard_lanes(uow: UnitOfWork, region: str) -> dict[str, Lane]:
    """The lanes capture promises by: the fastest standard lane from each location."""
    return fastest_lanes(uow, region, "standard")


class Allocator:
    """Allocates the lines of one order: chooses location(s), reserves, promises, splits."""

    def __init__(
        self,
        uow: UnitOfWork,
        actor: Actor,
        now: datetime,
        order: SalesOrder,
        customer: Customer,
        lanes: dict[str, Lane] | None = None,
        backlogs: dict[str, int] | None = None,
    ) -> None:
        """``backlogs``: pick backlogs shared by the orders of a batch (``CaptureBatch``)."""
        self.uow = uow
        self.actor = actor
        self.now = now
        self.order = order
        self.customer = customer
        self.calendar = uow.policy.calendar
        self.lanes = standard_lanes(uow, order.ship_to_region) if lanes is None else dict(lanes)
        if not self.lanes:
            raise InvalidValue(
                "ship_to_region", order.ship_to_region, "no carrier lane serves this region"
            )
        self.locations = {
            location_id: get_kept_or_raise(
                uow, Location, location_id, entity="location", field="origin_location_id"
            )
            for location_id in self.lanes
        }
        self.backlogs = _Backlogs(uow, list(self.lanes), backlogs)
        self.split_off: list[OrderLine] = []
        """Lines split off the order's lines while allocating them."""
        self.promised: dict[int, Promise] = {}
        """The promise made to each line allocated or backordered."""

    def lock(self, skus: Sequence[str]) -> None:
        """Lock the balances of the SKUs at the order's locations (and read their products,
        which each line's replenishment date needs, with one query)."""
        lock_balances(self.uow, [(s, loc) for s in skus for loc in self.lanes])
        self.uow.preload(Product, skus)

    def promise(
        self, location_id: str, ready_on: date | None, backlog: int | None = None
    ) -> Promise:
        location = self.locations[location_id]
        return promise_for(
            entered_at=self.now,
            stock_ready_on=ready_on,
            cutoff=location.cutoff_time,
            timezone=location.timezone,
            pick_backlog_lines=pick_backlog(self.uow, location_id) if backlog is None else backlog,
            pick_capacity_per_day=location.pick_capacity_per_day,
            transit_days=self.lanes[location_id].transit_days,
            calendar=self.calendar,
        )

    def allocate(self, line: OrderLine) -> list[int]:
        """Allocate one confirmed (or credit-released) line; returns exception ids opened."""
        balances = lock_balances(self.uow, [(line.sku, loc) for loc in self.lanes])
        plan = plan_allocation(
            quantity=line.quantity,
            home_location=self.customer.home_location_id,
            positions=self._positions(line, list(balances.values())),
            replenish_date=self._replenish_date(line.sku),
            estimate_delivery=lambda loc, ready: (
                self.promise(loc, ready, self.backlogs[loc]).delivery_date
            ),
            allow_split=self.order.allow_split,
        )
        exceptions: list[int] = []
        for part_line, part in zip(self._split(line, plan), plan, strict=True):
            balance = balances[(line.sku, part.location)]
            exceptions.extend(self._apply(part_line, part, balance))
        return exceptions

    def _positions(
        self, line: OrderLine, balances: Sequence[InventoryBalance]
    ) -> list[StockPosition]:
        """The line's stock positions at the order's locations.

        ``plan_allocation`` looks at backorders and scheduled receipts only when no location can
        fill the whole line from free stock; when one can (the common case), positions from the
        locked balances alone give the same plan without the two queries.
        """
        on_shelf = [StockPosition(b.location_id, b.on_hand, b.reserved) for b in balances]
        if any(position.free_now >= line.quantity for position in on_shelf):
            return on_shelf
        return stock_positions(self.uow, balances)

    def _split(self, line: OrderLine, plan: Sequence[Allocation]) -> list[OrderLine]:
        """The first part stays on the line; each further part becomes a child line."""
        children = [
            split_line(self.uow, self.actor, self.now, line, part.quantity, "allocation")
            for part in plan[1:]
        ]
        self.split_off.extend(children)
        return [line, *children]

    def _apply(self, line: OrderLine, part: Allocation, balance: InventoryBalance) -> list[int]:
        line.location_id = part.location
        line.lane_id = self.lanes[part.location].id
        promise = self.promise(part.location, part.ready_on, self.backlogs[part.location])
        if part.from_stock:
            reserve(self.uow, balance, line, self.actor, self.now)
            transition(
                self.uow,
                self.actor,
                self.now,
                "order_line",
                line,
                LineState.ALLOCATED,
                "allocate",
                location_id=part.location,
            )
            self.backlogs.joined(part.location)
        else:
            line.expected_ready_on = part.ready_on
            transition(
                self.uow,
                self.actor,
                self.now,
                "order_line",
                line,
                LineState.BACKORDERED,
                "backorder",
                location_id=part.location,
                ready_on=part.ready_on,
            )
        record_promise(
            self.uow,
            line.id,
            promise.ship_date,
            promise.delivery_date,
            "capture",
            self.actor,
            self.now,
        )
        self.promised[line.id] = promise
        if part.from_stock:
            return []
        case = open_exception(
            self.uow,
            self.actor,
            self.now,
            "shortage",
            order_id=line.order_id,
            line_id=line.id,
            customer=self.customer,
            sku=line.sku,
            location_id=part.location,
            margin_at_risk=line.unit_price * line.quantity,
            reasons=["no_stock_at_entry"],
            details={"expected_ready_on": str(part.ready_on)},
        )
        return [case.id]

    def _replenish_date(self, sku: str) -> date:
        product = self.uow.get(Product, sku)
        supplier = (
            self.uow.get(Supplier, product.preferred_supplier_id)
            if product is not None and product.preferred_supplier_id
            else None
        )
        days = supplier.nominal_lead_days if supplier else DEFAULT_REPLENISH_DAYS
        return self.now.date() + timedelta(days=days)


class _Backlogs:
    """The pick backlogs of an order's locations while its lines are allocated: read in one
    query when first needed, then counted on as the order's own lines join the queues (nothing
    else allocates or picks at those locations within the act), so allocating a line asks the
    database nothing when its stock is on the shelf.

    With ``shared`` (the counts of a ``CaptureBatch``) only locations no earlier order of the
    batch has read are asked for, and the counts go on into the next order."""

    def __init__(
        self, uow: UnitOfWork, location_ids: list[str], shared: dict[str, int] | None = None
    ) -> None:
        self.uow = uow
        self.location_ids = location_ids
        self._shared = shared
        self._counts: dict[str, int] | None = None

    def __getitem__(self, location_id: str) -> int:
        if self._counts is None:
            if self._shared is None:
                # The query's autoflush brings in any line of this order allocated before it.
                self._counts = pick_backlogs(self.uow, self.location_ids)
            else:
                unread = [loc for loc in self.location_ids if loc not in self._shared]
                if unread:
                    self._shared.update(pick_backlogs(self.uow, unread))
                self._counts = self._shared
        return self._counts[location_id]

    def joined(self, location_id: str) -> None:
        """A line of the order was allocated at the location: the queue is one longer."""
        if self._counts is not None:
            self._counts[location_id] += 1


def _describe(
    order: SalesOrder,
    lines: Sequence[OrderLine],
    promised: dict[int, Promise],
    exception_ids: Sequence[int],
    approvals: Sequence[ApprovalRequest],
    *,
    credit_hold: bool,
) -> CapturedOrder:
    """The captured order as the act left it: every line it created (the requested ones and
    those split off them), in line number order, with the one promise each was given."""
    described = []
    for line in sorted(lines, key=lambda line: line.line_no):
        promise = promised.get(line.id)
        described.append(
            CapturedLine(
                line_id=line.id,
                line_no=line.line_no,
                sku=line.sku,
                quantity=line.quantity,
                state=str(line.state),
                location_id=line.location_id,
                unit_price=str(line.unit_price),
                promised_ship_date=promise.ship_date.isoformat() if promise else None,
                promised_delivery_date=promise.delivery_date.isoformat() if promise else None,
                parent_line_id=line.parent_line_id,
                price_approval_pending=line.price_approval_pending,
            )
        )
    return CapturedOrder(
        order_id=order.id,
        customer_id=order.customer_id,
        lines=tuple(described),
        exception_ids=tuple(exception_ids),
        approval_ids=tuple(a.id for a in approvals),
        credit_hold=credit_hold,
    )
