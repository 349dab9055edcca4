"""Quotes: what ``capture_order`` would decide for a draft order, without a write or a lock.

Order entry asks before it commits: serving scores a draft order's late risk and proposes actions
(ship from another location, go express, offer a substitute) while the customer waits, so it needs
capture's decisions for lines that do not exist yet. A second set of rules would drift from
capture's, so a quote calls the rules capture calls (``decide_price`` on the tier's price breaks,
``exceeds_credit_limit`` on ``open_exposure``, ``plan_allocation``, ``promise_for``) on the same
inputs, and chooses lanes as ``standard_lanes`` does (read with the express lanes in one
query). Only the bookkeeping differs: where capture reserves stock,
backorders a line and lets it join the pick queue in the database, a quote counts the same changes
in memory (``_Stock``, the backlog counts), so a later line of the order sees the stock, backorders
and backlog its earlier lines would have left, as it does in capture.

Reads are per order, not per line (about a dozen for any number of lines): the balances of all
the order's SKUs at all the locations that serve the region in one query, the backorders and
scheduled receipts in one query each (only once a line, or an option at another location, cannot
be filled from the shelf), and so on. A quote takes no row lock (no ``SELECT ... FOR UPDATE``, no
balance row created) and never commits; inside a caller's unit of work it runs in a savepoint that
is rolled back. Given a read-only unit of work (``UnitOfWork(read_only=True)``, as serving does) a
quote on SQLite begins deferred and reads beside a writer; a plain one begins ``IMMEDIATE`` and
waits for, and holds off, writers for its few milliseconds. It is an answer for now: the next
capture may take the stock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Executable, bindparam, func, select, tuple_, union_all

from erp_core.db.models import (
    Customer,
    InventoryBalance,
    Lane,
    Location,
    OrderLine,
    PoLineReceiptForecast,
    Product,
    PurchaseOrder,
    PurchaseOrderLine,
    Supplier,
    Transfer,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.atp import Allocation, ScheduledReceipt, StockPosition, plan_allocation
from erp_core.domain.credit import exceeds_credit_limit
from erp_core.domain.errors import InvalidValue, NotFound
from erp_core.domain.pricing import PriceBreak, PriceDecision, decide_price
from erp_core.domain.promise import Promise, promise_for, promised_delivery_date
from erp_core.domain.states import LineState, PurchaseOrderStatus, TransferStatus
from erp_core.policy import Actor
from erp_core.services.common import parse_date, require_aware
from erp_core.services.inbound import NO_FORECAST, promise_receipt_date
from erp_core.services.orders import (
    DEFAULT_REPLENISH_DAYS,
    LineRequest,
    check_line_request,
    open_exposure,
    tier_price_breaks_by_sku,
)
from erp_core.services.stock import pick_backlogs

MAX_SUBSTITUTES = 3


@dataclass(frozen=True)
class LocationOption:
    """Filling the whole line at another location with a standard lane to the region."""

    location_id: str
    lane_id: int
    carrier_id: str
    transit_days: int
    free_now: int
    ready_on: date | None
    """When the stock would be there (a scheduled receipt, else a new purchase); None when the
    location has it free now."""
    promised_ship_date: date
    promised_delivery_date: date

    @property
    def from_stock(self) -> bool:
        return self.ready_on is None


@dataclass(frozen=True)
class ExpressOption:
    """The fastest (then cheapest) express lane from the fulfilling location to the region, and
    the delivery it would give the line shipped on its promised ship date."""

    lane_id: int
    carrier_id: str
    transit_days: int
    cost_per_shipment: Decimal
    promised_delivery_date: date


@dataclass(frozen=True)
class SubstituteOption:
    """A SKU of the same category with enough free stock at the fulfilling location."""

    sku: str
    free_now: int


@dataclass(frozen=True)
class LineOptions:
    other_locations: tuple[LocationOption, ...] = ()
    """Earliest promised delivery first."""
    express: ExpressOption | None = None
    substitutes: tuple[SubstituteOption, ...] = ()
    """Most free stock first, at most ``MAX_SUBSTITUTES``."""


@dataclass(frozen=True)
class QuotedLine:
    """A line as capture would create it: a requested line, or a part split off one."""

    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    tier_price: Decimal | None
    unit_cost: Decimal
    price_source: str
    """What capture records as the price decision's source: ``price_list``, ``override``, or
    ``split`` for a part split off a line (priced as its parent)."""
    price_approval_pending: bool
    state: str
    """``allocated``, ``backordered`` or ``credit_hold``."""
    location_id: str | None = None
    lane_id: int | None = None
    carrier_id: str | None = None
    transit_days: int | None = None
    promised_ship_date: date | None = None
    promised_delivery_date: date | None = None
    expected_ready_on: date | None = None
    pick_backlog_lines: int | None = None
    """Lines queued ahead of this one at the fulfilling location when it was promised."""
    pick_capacity_per_day: int | None = None
    parent_line_no: int | None = None
    options: LineOptions = LineOptions()


@dataclass(frozen=True)
class OrderQuote:
    customer_id: str
    customer_tier: str
    channel: str
    ship_to_region: str
    credit_hold: bool
    order_value: Decimal
    lines: tuple[QuotedLine, ...]
    """In line number order, split-off parts included."""
    requested_date: date | None = None
    open_exposure: Decimal = Decimal(0)
    """The customer's open lines the credit limit already covers (this order not included)."""
    credit_limit: Decimal = Decimal(0)


def quote_order(
    uow: UnitOfWork,
    *,
    customer_id: str,
    lines: Sequence[LineRequest],
    now: datetime,
    requested_date: date | str | None = None,
    channel: str | None = None,
    ship_to_region: str | None = None,
    allow_split: bool = True,
    actor: Actor | None = None,
    options_for: Callable[[OrderQuote], Collection[int]] | None = None,
) -> OrderQuote:
    """What ``capture_order`` would decide for these arguments now, refusing what it refuses.

    ``actor`` is who would capture: a role that may approve discounts gives them without an
    approval, as in capture; None judges the order as a role that may not (a sales rep).

    ``options_for`` makes the quote two-phase. Working out a line's alternatives (the other
    locations, express, substitutes) costs more than its promise, and only a line at risk is
    offered them, which is known only once the promise is scored. Given ``options_for``, the
    quote is first made without options and handed to it; it returns the line numbers that need
    options (scoring the lines, say), and those lines, and only those, get them: exactly the
    options a quote without ``options_for`` gives them (each part's alternatives as the stock
    and the pick queues stood when it was placed). Both phases read in one unit of work. None
    gives every line its options."""
    require_aware("now", now)
    request_day = parse_date("requested_date", requested_date)
    if not lines:
        raise InvalidValue("lines", [], "an order needs at least one line")
    with uow:
        customer = _read(uow, _CUSTOMER, {"id": customer_id}).one_or_none()
        if customer is None:
            raise NotFound("customer", "customer_id", customer_id)
        drafts = _priced_drafts(uow, customer, lines, now, actor)
        value = sum((d.decision.unit_price * d.quantity for d in drafts), Decimal(0))
        exposure = open_exposure(uow, customer.id)
        region = ship_to_region or customer.region
        held = exceeds_credit_limit(exposure, value, customer.credit_limit)
        allocator = None
        if held:
            quoted = [_held(draft) for draft in drafts]
        else:
            allocator = _DryAllocator(uow, now, customer, region, allow_split, drafts)
            quoted = allocator.place()
        quote = OrderQuote(
            customer_id=customer.id,
            customer_tier=customer.tier,
            channel=channel or customer.channel,
            ship_to_region=region,
            credit_hold=held,
            order_value=value,
            lines=tuple(sorted(quoted, key=lambda line: line.line_no)),
            requested_date=request_day,
            open_exposure=exposure,
            credit_limit=customer.credit_limit,
        )
        if options_for is None:
            wanted = {line.line_no for line in quote.lines}
        else:
            wanted = set(options_for(quote))
        if allocator is None or not wanted:  # held lines have no options
            return quote
        return replace(quote, lines=allocator.with_options(quote.lines, wanted))


# --- pricing ------------------------------------------------------------------------------------

# Built once: ``session.get`` and ``uow.preload`` build their SELECT per call, which costs more
# than running it, and a quote is on the order-entry clock. Master data is read as rows of its
# columns (on the connection: see ``_read``), never as ORM entities: a quote only reads their
# attributes, which the rows have under the same names, and building entities costs more than
# the reads.
_CUSTOMER = select(Customer).where(Customer.id == bindparam("id"))
_PRODUCTS = (
    select(Product, Supplier.nominal_lead_days)
    .outerjoin(Supplier, Supplier.id == Product.preferred_supplier_id)
    .where(Product.sku.in_(bindparam("skus", expanding=True)))
)


@dataclass(frozen=True)
class _Draft:
    """A requested line priced as capture's ``_priced_line`` prices it."""

    line_no: int
    product: Product
    quantity: int
    decision: PriceDecision
    approval_pending: bool
    supplier_lead_days: int | None
    """The preferred supplier's nominal lead time (None: no preferred supplier)."""


def _priced_drafts(
    uow: UnitOfWork,
    customer: Customer,
    requests: Sequence[LineRequest],
    now: datetime,
    actor: Actor | None,
) -> list[_Draft]:
    rows = _read(uow, _PRODUCTS, {"skus": sorted({r.sku for r in requests})})
    products: dict[str, tuple[Product, int | None]] = {
        row.sku: (row, row.nominal_lead_days) for row in rows
    }
    parsed = [_parse_line(products, index, request) for index, request in enumerate(requests)]
    breaks = tier_price_breaks_by_sku(uow, customer.tier, [p.sku for p, _, _ in parsed], now.date())
    may_approve = actor is not None and uow.policy.allows(actor.role, "approve_discount")
    return [
        _price(
            uow,
            line_no,
            product,
            quantity,
            price,
            breaks[product.sku],
            may_approve,
            products[product.sku][1],
        )
        for line_no, (product, quantity, price) in enumerate(parsed, start=1)
    ]


def _parse_line(
    products: dict[str, tuple[Product, int | None]], index: int, request: LineRequest
) -> tuple[Product, int, Decimal | None]:
    return check_line_request(products.get(request.sku, (None, None))[0], index, request)


def _price(
    uow: UnitOfWork,
    line_no: int,
    product: Product,
    quantity: int,
    requested_price: Decimal | None,
    breaks: list[PriceBreak],
    may_approve: bool,
    supplier_lead_days: int | None,
) -> _Draft:
    decision = decide_price(
        list_price=product.list_price,
        breaks=breaks,
        quantity=quantity,
        requested_unit_price=requested_price,
        approval_threshold_pct=uow.policy.discount_approval_pct,
        field=f"lines[{line_no - 1}].unit_price",
    )
    pending = decision.needs_approval and not may_approve
    return _Draft(line_no, product, quantity, decision, pending, supplier_lead_days)


def _held(draft: _Draft) -> QuotedLine:
    return _line(draft, draft.line_no, draft.quantity, LineState.CREDIT_HOLD)


def _line(draft: _Draft, line_no: int, quantity: int, state: str, **placed: Any) -> QuotedLine:
    return QuotedLine(
        line_no=line_no,
        sku=draft.product.sku,
        quantity=quantity,
        unit_price=draft.decision.unit_price,
        tier_price=draft.decision.tier_price,
        unit_cost=draft.product.unit_cost,
        price_source=draft.decision.source if line_no == draft.line_no else "split",
        price_approval_pending=draft.approval_pending,
        state=str(state),
        parent_line_no=None if line_no == draft.line_no else draft.line_no,
        **placed,
    )


# --- stock, counted in memory -------------------------------------------------------------------

_BALANCES = select(
    InventoryBalance.sku,
    InventoryBalance.location_id,
    InventoryBalance.on_hand,
    InventoryBalance.reserved,
).where(
    InventoryBalance.sku.in_(bindparam("skus", expanding=True)),
    InventoryBalance.location_id.in_(bindparam("location_ids", expanding=True)),
)

# ``stock.backordered_by_location`` and ``stock.scheduled_receipts_by_location`` for several SKUs.
_BACKORDERED = (
    select(OrderLine.sku, OrderLine.location_id, func.sum(OrderLine.quantity))
    .where(
        OrderLine.sku.in_(bindparam("skus", expanding=True)),
        OrderLine.location_id.in_(bindparam("location_ids", expanding=True)),
        OrderLine.state == LineState.BACKORDERED,
    )
    .group_by(OrderLine.sku, OrderLine.location_id)
)
_SCHEDULED_RECEIPTS = union_all(
    select(
        PurchaseOrderLine.sku.label("sku"),
        PurchaseOrder.location_id.label("location_id"),
        PurchaseOrderLine.expected_date.label("expected_date"),
        (PurchaseOrderLine.quantity - PurchaseOrderLine.received_quantity).label("quantity"),
        PoLineReceiptForecast.p80_date.label("p80_date"),
    )
    .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
    .outerjoin(PoLineReceiptForecast, PoLineReceiptForecast.po_line_id == PurchaseOrderLine.id)
    .where(
        PurchaseOrderLine.sku.in_(bindparam("skus", expanding=True)),
        PurchaseOrder.location_id.in_(bindparam("location_ids", expanding=True)),
        PurchaseOrder.status.in_(
            [PurchaseOrderStatus.OPEN, PurchaseOrderStatus.PARTIALLY_RECEIVED]
        ),
        PurchaseOrderLine.received_quantity < PurchaseOrderLine.quantity,
    ),
    select(
        Transfer.sku,
        Transfer.to_location_id,
        Transfer.expected_date,
        Transfer.quantity,
        NO_FORECAST,
    ).where(
        Transfer.sku.in_(bindparam("skus", expanding=True)),
        Transfer.to_location_id.in_(bindparam("location_ids", expanding=True)),
        Transfer.status == TransferStatus.IN_TRANSIT,
    ),
)

Pair = tuple[str, str]
"""(sku, location id)"""


def _read(uow: UnitOfWork, statement: Executable, params: dict[str, Any]) -> Any:
    """Rows of a plain column SELECT, run on the unit of work's connection: the session's own
    ``execute`` adds the ORM's bookkeeping (tens of microseconds a statement) to rows that are
    no entities. A quote writes nothing, and the savepoint a nested quote runs in flushed the
    session's pending changes when it began, so the connection reads what the session would."""
    return uow.session.connection().execute(statement, params)


class _Stock:
    """The balances of the order's SKUs at the order's locations, changed as capture would change
    them line by line: a reservation raises ``reserved``, a backorder adds to what waits on the
    location's receipts. Backorders and receipts are read (for all the SKUs at once) only when a
    line first needs them, as capture reads them only for a line no location can fill from the
    shelf."""

    def __init__(self, uow: UnitOfWork, skus: Sequence[str], location_ids: Sequence[str]) -> None:
        self.uow = uow
        self.skus = list(skus)
        self.location_ids = list(location_ids)
        self.shelf: dict[Pair, tuple[int, int]] = {
            (sku, location_id): (0, 0) for sku in skus for location_id in location_ids
        }
        params = {"skus": self.skus, "location_ids": self.location_ids}
        for sku, location_id, on_hand, reserved in _read(uow, _BALANCES, params):
            self.shelf[(sku, location_id)] = (on_hand, reserved)
        self.reserved_by_order: Counter[Pair] = Counter()
        self.backordered_by_order: Counter[Pair] = Counter()
        self._waiting: Counter[Pair] | None = None
        self._receipts: dict[Pair, list[ScheduledReceipt]] = {}

    def on_shelf(self, sku: str, location_id: str, taken: _Taken | None = None) -> StockPosition:
        """The shelf less what the order has reserved so far (``taken``: had reserved when an
        earlier part was placed)."""
        pair = (sku, location_id)
        on_hand, reserved = self.shelf[pair]
        by_order = self.reserved_by_order[pair] if taken is None else taken.reserved
        return StockPosition(location_id, on_hand, reserved + by_order)

    def position(self, sku: str, location_id: str, taken: _Taken | None = None) -> StockPosition:
        """The whole position: the shelf, what waits on backorder and what is on its way."""
        pair = (sku, location_id)
        on_hand, reserved = self.shelf[pair]
        if taken is None:
            taken = self.taken(sku, location_id)
        return StockPosition(
            location_id,
            on_hand,
            reserved + taken.reserved,
            self._read_pipeline()[pair] + taken.backordered,
            tuple(self._receipts.get(pair, ())),
        )

    def taken(self, sku: str, location_id: str) -> _Taken:
        pair = (sku, location_id)
        return _Taken(self.reserved_by_order.get(pair, 0), self.backordered_by_order.get(pair, 0))

    def positions(self, sku: str, quantity: int) -> list[StockPosition]:
        """Capture's ``Allocator._positions``: the shelf alone when some location can fill the
        line from it (the plan is the same), else the whole positions; in location order, as
        capture's locked balances are."""
        on_shelf = [self.on_shelf(sku, location_id) for location_id in self.location_ids]
        if any(position.free_now >= quantity for position in on_shelf):
            return on_shelf
        return [self.position(sku, location_id) for location_id in self.location_ids]

    def reserve(self, sku: str, location_id: str, quantity: int) -> None:
        self.reserved_by_order[(sku, location_id)] += quantity

    def backorder(self, sku: str, location_id: str, quantity: int) -> None:
        self.backordered_by_order[(sku, location_id)] += quantity

    def _read_pipeline(self) -> Counter[Pair]:
        if self._waiting is None:
            params = {"skus": self.skus, "location_ids": self.location_ids}
            waiting: Counter[Pair] = Counter()
            for sku, location_id, quantity in _read(self.uow, _BACKORDERED, params):
                waiting[(sku, str(location_id))] = int(quantity)
            self._waiting = waiting
            for sku, location_id, expected, quantity, p80 in _read(
                self.uow, _SCHEDULED_RECEIPTS, params
            ):
                dated = promise_receipt_date(self.uow.policy, expected, p80)
                self._receipts.setdefault((sku, location_id), []).append(
                    ScheduledReceipt(dated, int(quantity))
                )
        return self._waiting


@dataclass(frozen=True)
class _Taken:
    """What the order's lines so far reserved and backordered of a SKU at a location."""

    reserved: int
    backordered: int


# --- allocation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placed:
    """A part as it was placed, with what its alternatives are worked out from: the only state
    a quote changes as it goes (the order's reservations and backorders of the SKU, each
    location's pick queue) as it stood at every location just before the part took its own
    stock. Kept so that the alternatives can be worked out later, for the lines that need them,
    exactly as they would have been then."""

    sku: str
    quantity: int
    location_id: str
    replenish_date: date
    taken: tuple[_Taken, ...]
    """Per location, in ``_Stock.location_ids`` order."""
    backlogs: tuple[int, ...]
    """Per location, in ``_Stock.location_ids`` order."""


class _DryAllocator:
    """Capture's ``Allocator`` for lines that are never written: the same choice of location(s),
    split and promise per line, in line order, with reservations, backorders and the pick queue
    counted in memory."""

    def __init__(
        self,
        uow: UnitOfWork,
        now: datetime,
        customer: Customer,
        region: str,
        allow_split: bool,
        drafts: Sequence[_Draft],
    ) -> None:
        self.uow = uow
        self.now = now
        self.customer = customer
        self.region = region
        self.allow_split = allow_split
        self.drafts = drafts
        self.calendar = uow.policy.calendar
        self.lanes, self.express = _fastest_lanes(uow, region)
        if not self.lanes:
            raise InvalidValue("ship_to_region", region, "no carrier lane serves this region")
        self.locations = {
            location.id: location
            for location in _read(uow, _LOCATIONS, {"ids": sorted(self.lanes)})
        }
        skus = sorted({draft.product.sku for draft in drafts})
        self.stock = _Stock(uow, skus, sorted(self.lanes))
        self.backlogs = pick_backlogs(uow, list(self.lanes))
        self.next_line_no = len(drafts) + 1
        self._promises: dict[tuple[str, date | None, int], Promise] = {}
        self._placed: dict[int, _Placed] = {}

    def place(self) -> list[QuotedLine]:
        """Every line placed and promised, in line order, without options."""
        return [line for draft in self.drafts for line in self.allocate(draft)]

    def with_options(
        self, lines: Sequence[QuotedLine], line_nos: Collection[int]
    ) -> tuple[QuotedLine, ...]:
        """The placed lines, those numbered in ``line_nos`` with their options: other locations
        as the stock stood when each was placed, express and substitutes as the whole order
        leaves the stock (free stock the order's own lines took is not offered)."""
        chosen = [line for line in lines if line.line_no in line_nos]
        substitutes = _Substitutes.read(self.uow, self.stock, chosen, self.drafts)
        return tuple(
            replace(
                line,
                options=LineOptions(
                    other_locations=self._other_locations(self._placed[line.line_no]),
                    express=self._express(line, self.express),
                    substitutes=substitutes.of(line),
                ),
            )
            if line.line_no in line_nos
            else line
            for line in lines
        )

    def allocate(self, draft: _Draft) -> list[QuotedLine]:
        sku = draft.product.sku
        replenish_date = self._replenish_date(draft)
        plan = plan_allocation(
            quantity=draft.quantity,
            home_location=self.customer.home_location_id,
            positions=self.stock.positions(sku, draft.quantity),
            replenish_date=replenish_date,
            estimate_delivery=lambda location_id, ready: (
                self.promise(location_id, ready).delivery_date
            ),
            allow_split=self.allow_split,
        )
        numbers = [draft.line_no, *self._split_numbers(len(plan) - 1)]
        lines = []
        for part, line_no in zip(plan, numbers, strict=True):
            # Each part's alternatives as they stand once the parts before it took their stock:
            # a backordered remainder is never told to ship what a sibling part already holds.
            self._placed[line_no] = self._as_placed(sku, part, replenish_date)
            lines.append(self._apply(draft, part, line_no))
        return lines

    def _as_placed(self, sku: str, part: Allocation, replenish_date: date) -> _Placed:
        location_ids = self.stock.location_ids
        return _Placed(
            sku=sku,
            quantity=part.quantity,
            location_id=part.location,
            replenish_date=replenish_date,
            taken=tuple(self.stock.taken(sku, location_id) for location_id in location_ids),
            backlogs=tuple(self.backlogs[location_id] for location_id in location_ids),
        )

    def promise(
        self, location_id: str, ready_on: date | None, backlog: int | None = None
    ) -> Promise:
        """``promise_for`` the location's queue as it stands (``backlog``: as it stood when an
        earlier part was placed); a quote asks the same question many times (each line's plan
        and its options), so answers are kept per queue length."""
        if backlog is None:
            backlog = self.backlogs[location_id]
        key = (location_id, ready_on, backlog)
        promise = self._promises.get(key)
        if promise is None:
            location = self.locations[location_id]
            promise = promise_for(
                entered_at=self.now,
                stock_ready_on=ready_on,
                cutoff=location.cutoff_time,
                timezone=location.timezone,
                pick_backlog_lines=backlog,
                pick_capacity_per_day=location.pick_capacity_per_day,
                transit_days=self.lanes[location_id].transit_days,
                calendar=self.calendar,
            )
            self._promises[key] = promise
        return promise

    def _split_numbers(self, count: int) -> list[int]:
        """Capture numbers a part split off a line after the order's last line so far."""
        numbers = list(range(self.next_line_no, self.next_line_no + count))
        self.next_line_no += count
        return numbers

    def _apply(self, draft: _Draft, part: Allocation, line_no: int) -> QuotedLine:
        lane = self.lanes[part.location]
        backlog = self.backlogs[part.location]
        promise = self.promise(part.location, part.ready_on)
        if part.from_stock:
            self.stock.reserve(draft.product.sku, part.location, part.quantity)
            self.backlogs[part.location] += 1
        else:
            self.stock.backorder(draft.product.sku, part.location, part.quantity)
        return _line(
            draft,
            line_no,
            part.quantity,
            LineState.ALLOCATED if part.from_stock else LineState.BACKORDERED,
            location_id=part.location,
            lane_id=lane.id,
            carrier_id=lane.carrier_id,
            transit_days=lane.transit_days,
            promised_ship_date=promise.ship_date,
            promised_delivery_date=promise.delivery_date,
            expected_ready_on=part.ready_on,
            pick_backlog_lines=backlog,
            pick_capacity_per_day=self.locations[part.location].pick_capacity_per_day,
        )

    def _other_locations(self, placed: _Placed) -> tuple[LocationOption, ...]:
        options = [
            self._fill_whole_at(placed, location_id, taken, backlog)
            for location_id, taken, backlog in zip(
                self.stock.location_ids, placed.taken, placed.backlogs, strict=True
            )
            if location_id != placed.location_id
        ]
        return tuple(sorted(options, key=lambda o: (o.promised_delivery_date, o.location_id)))

    def _fill_whole_at(
        self, placed: _Placed, location_id: str, taken: _Taken, backlog: int
    ) -> LocationOption:
        """The plan (``plan_allocation`` on this one location, unsplit) and promise the part
        would have got there when it was placed: from its shelf, else from the receipt that
        covers it, else from a new purchase."""
        sku, quantity = placed.sku, placed.quantity
        shelf = self.stock.on_shelf(sku, location_id, taken)
        position = (
            shelf if shelf.free_now >= quantity else self.stock.position(sku, location_id, taken)
        )
        (part,) = plan_allocation(
            quantity=quantity,
            home_location=location_id,
            positions=[position],
            replenish_date=placed.replenish_date,
            estimate_delivery=lambda loc, ready: self.promise(loc, ready, backlog).delivery_date,
            allow_split=False,
        )
        promise = self.promise(location_id, part.ready_on, backlog)
        lane = self.lanes[location_id]
        return LocationOption(
            location_id=location_id,
            lane_id=lane.id,
            carrier_id=lane.carrier_id,
            transit_days=lane.transit_days,
            free_now=shelf.free_now,
            ready_on=part.ready_on,
            promised_ship_date=promise.ship_date,
            promised_delivery_date=promise.delivery_date,
        )

    def _express(self, line: QuotedLine, express: dict[str, Lane]) -> ExpressOption | None:
        lane = express.get(line.location_id or "")
        if lane is None or line.promised_ship_date is None:
            return None
        return ExpressOption(
            lane_id=lane.id,
            carrier_id=lane.carrier_id,
            transit_days=lane.transit_days,
            cost_per_shipment=lane.cost_per_shipment,
            promised_delivery_date=promised_delivery_date(
                line.promised_ship_date, lane.transit_days, self.calendar
            ),
        )

    def _replenish_date(self, draft: _Draft) -> date:
        """Capture's ``Allocator._replenish_date``: a new purchase from the preferred supplier."""
        days = draft.supplier_lead_days
        return self.now.date() + timedelta(days=DEFAULT_REPLENISH_DAYS if days is None else days)


_LOCATIONS = select(Location).where(Location.id.in_(bindparam("ids", expanding=True)))
_LANES = (
    select(Lane)
    .where(Lane.dest_region == bindparam("region"), Lane.service_level.in_(("standard", "express")))
    .order_by(Lane.transit_days, Lane.cost_per_shipment, Lane.id)
)


def _fastest_lanes(uow: UnitOfWork, region: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``standard_lanes`` and ``fastest_lanes(..., "express")`` of the region in one read: the
    fastest, then cheapest, lane of each service level from each location (the order of
    ``fastest_lanes``' query, kept within each level)."""
    standard: dict[str, Any] = {}
    express: dict[str, Any] = {}
    for lane in _read(uow, _LANES, {"region": region}):
        by_level = standard if lane.service_level == "standard" else express
        by_level.setdefault(lane.origin_location_id, lane)
    return standard, express


_FREE = InventoryBalance.on_hand - InventoryBalance.reserved
_CANDIDATES = (
    select(
        Product.sku.label("sku"),
        Product.category.label("category"),
        InventoryBalance.location_id.label("location_id"),
        _FREE.label("free"),
        func.rank()
        .over(partition_by=(Product.category, InventoryBalance.location_id), order_by=_FREE.desc())
        .label("rank"),
    )
    .join(InventoryBalance, InventoryBalance.sku == Product.sku)
    .where(
        # The categories and the locations on their own let the database search by index;
        # the pairs then keep only the places some line is filled at.
        Product.category.in_(bindparam("categories", expanding=True)),
        InventoryBalance.location_id.in_(bindparam("location_ids", expanding=True)),
        tuple_(Product.category, InventoryBalance.location_id).in_(
            bindparam("places", expanding=True)
        ),
        Product.active.is_(True),
        InventoryBalance.on_hand - InventoryBalance.reserved >= bindparam("at_least"),
    )
    .subquery()
)
_SUBSTITUTES = select(
    _CANDIDATES.c.sku, _CANDIDATES.c.category, _CANDIDATES.c.location_id, _CANDIDATES.c.free
).where(_CANDIDATES.c.rank <= bindparam("ranks"))
"""Free stock of the categories at the locations where the order's lines of them are filled,
each (category, location)'s most free only: a line is offered at most ``MAX_SUBSTITUTES``, and
only the order's own SKUs can lose free stock to the order (and a line's own SKU is no
substitute for it), so the top ``MAX_SUBSTITUTES`` + (the order's SKUs of the category) by free
stock, ties at the last rank included (``rank``, not a collation-dependent order), hold every
substitute any of its lines is offered."""


@dataclass
class _Substitutes:
    """Free stock of the order's categories at its fulfilling locations, read in one query; free
    stock is what the whole order leaves (its own lines may take some of a substitute)."""

    free: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)
    """(category, location) -> [(sku, free now)]"""
    categories: dict[str, str] = field(default_factory=dict)
    """sku -> category of the order's SKUs"""

    @classmethod
    def read(
        cls, uow: UnitOfWork, stock: _Stock, lines: Sequence[QuotedLine], drafts: Sequence[_Draft]
    ) -> _Substitutes:
        found = cls(categories={d.product.sku: d.product.category for d in drafts})
        located = [line for line in lines if line.location_id is not None]
        if not located:
            return found
        own = Counter(found.categories.values())
        places = sorted(
            {
                (found.categories[line.sku], line.location_id)
                for line in located
                if line.location_id is not None
            }
        )
        params = {
            "categories": sorted({category for category, _ in places}),
            "location_ids": sorted({location_id for _, location_id in places}),
            "places": places,
            "at_least": min(line.quantity for line in located),
            "ranks": MAX_SUBSTITUTES + max(own.values()),
        }
        for sku, category, location_id, free in _read(uow, _SUBSTITUTES, params):
            left = int(free) - stock.reserved_by_order[(sku, location_id)]
            found.free.setdefault((category, location_id), []).append((sku, left))
        return found

    def of(self, line: QuotedLine) -> tuple[SubstituteOption, ...]:
        if line.location_id is None:
            return ()
        candidates = self.free.get((self.categories[line.sku], line.location_id), [])
        enough = sorted(
            ((sku, free) for sku, free in candidates if sku != line.sku and free >= line.quantity),
            key=lambda candidate: (-candidate[1], candidate[0]),
        )
        return tuple(SubstituteOption(sku, free) for sku, free in enough[:MAX_SUBSTITUTES])
