"""The daily loop: a whole distributor run through the erp_core services, one transaction a day.

Each simulated day, in the order a real one happens:

00:00  carriers announce the storms beginning today (a service alert per region, until it ends)
06:00  goods arrive (purchase-order receipts, transfers); waiting backorders are released
07:00  customers cancel some lines not yet picked
08:00  finance decides pending discount approvals and credit holds
07:00-19:00  orders come in (captured, priced, promised, reserved); each line's fate is drawn
11:00  carriers deliver what is due
19:30  the warehouses pick, pack and hand over what is planned to ship today
20:00  planners: cycle counts, transfers, purchase orders; the exception queue is worked
20:30  under the ``p80`` promise policy, the open purchase-order lines' receipt forecasts

The simulator never writes ERP rows itself; it only calls services. What it knows beyond the ERP
(the drawn fates, the true demand rates, the labelled pricing anomalies) goes to the truth tables.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import lazyload

from erp_core.db.models import (
    ExceptionCase,
    InventoryBalance,
    Lane,
    LinePromise,
    OrderLine,
    PurchaseOrder,
    Shipment,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import DomainError
from erp_core.policy import Actor
from erp_core.services import fulfilment_batch, purchasing, returns, transfers
from erp_core.services.alerts import announce_service_alert
from erp_core.services.exceptions import resolve_exception
from erp_core.services.inbound import refresh_receipt_forecasts
from erp_core.services.inventory import CountRequest, record_cycle_count, record_cycle_counts
from erp_core.services.master_data import load_master_data
from erp_core.services.order_changes import cancel_order_lines, decide_approval, release_credit_hold
from erp_core.services.orders import CapturedOrder, LineRequest
from erp_core.services.orders_batch import OrderRequest, capture_orders
from erp_core.simulate import hazards
from erp_core.simulate.demand import (
    active_customers,
    customer_odds,
    draw_quantities,
    line_rate,
)
from erp_core.simulate.pricing import PricingDesk
from erp_core.simulate.staffing import Staffing
from erp_core.simulate.world import (
    CHANNEL_QTY_FACTOR,
    DELAY_SUPPORT,
    Storm,
    World,
    master_data,
    peak_season,
    storms,
)

ADMIN = Actor("sim-admin", "admin")
SALES = Actor("sim-sales", "sales_rep")
SERVICE = Actor("sim-service", "customer_service")
FINANCE = Actor("sim-finance", "finance")
LOGISTICS = Actor("sim-logistics", "logistics")
PLANNER = Actor("sim-planner", "planner")

REQUESTED_DAYS = {"edi": (3, 8), "e_commerce": None, "field_sales": (2, 6), "key_account": (5, 11)}
CANCEL_RATE = 0.008
RETURN_RATE = 0.015
COUNT_SHARE = 0.01
REVIEW_DAYS = 5
SAFETY_FACTOR = 1.3
TRANSFER_SHORT_DAYS = 3
TRANSFER_RICH_DAYS = 40
TRANSFER_KEEP_DAYS = 25
TRANSFER_FILL_DAYS = 10


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


@dataclass(slots=True)
class LinePlan:
    """What the simulator decided about one order line (the ERP never sees this)."""

    line_id: int
    order_id: int
    sku: str
    location: str
    lane_id: int
    quantity: int
    entered_day: date
    promised_ship: date
    promised_delivery: date
    hazard: hazards.LineHazard
    handling_late: bool
    handling_delay: int
    transit_late: bool
    transit_delay: int
    cause: str
    planned_ship: date | None = None
    shipped_on: date | None = None
    delivered_on: date | None = None
    cancelled: bool = False


@dataclass
class Counters:
    orders: int = 0
    lines: int = 0
    lines_from_stock: int = 0
    shipments: int = 0
    purchase_orders: int = 0
    receipts: int = 0
    transfers: int = 0
    returns: int = 0
    cancellations: int = 0
    cycle_counts: int = 0
    credit_holds: int = 0
    approvals: int = 0
    exceptions_resolved: int = 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class PendingReceipt:
    po_line_id: int
    quantity: int
    supplier: int
    placed: date
    expected: date
    arrives: date


class Simulation:
    """Runs a world day by day through the services; keeps the truth it drew."""

    def __init__(self, uow: UnitOfWork, world: World, rng: np.random.Generator) -> None:
        self.uow = uow
        self.world = world
        self.rng = rng
        self.calendar: BusinessCalendar = uow.policy.calendar
        self.pricing = PricingDesk(world, rng)
        self.counters = Counters()
        self.plans: dict[int, LinePlan] = {}
        self.order_ids: set[int] = set()
        self.waiting: set[int] = set()
        self.ship_plan: dict[date, list[int]] = defaultdict(list)
        self.deliveries: dict[date, list[int]] = defaultdict(list)
        self.shipment_lines: dict[int, list[int]] = {}
        self.receipts: dict[date, list[PendingReceipt]] = defaultdict(list)
        self.po_by_expected: dict[tuple[str, str, date], PendingReceipt] = {}
        self.po_keys: dict[int, tuple[str, str, date]] = {}
        self.transfers_due: dict[date, list[int]] = defaultdict(list)
        self.cancel_on: dict[date, list[int]] = defaultdict(list)
        self.returns_due: dict[date, list[tuple[str, int]]] = defaultdict(list)
        horizon = world.profile.days + 400
        self.units_ordered = np.zeros((horizon, world.n_skus, len(world.locations)), np.float32)
        self.backlog: dict[str, int] = defaultdict(int)
        self.truth_lines: list[dict[str, Any]] = []
        self.truth_pricing: dict[int, dict[str, Any]] = {}
        self.business_day_index = 0
        self.lanes: dict[int, Lane] = {}
        self.sku_index = {sku: i for i, sku in enumerate(world.skus)}
        self.location_index = {loc: i for i, loc in enumerate(world.locations)}
        self.carrier_index = {c: i for i, c in enumerate(world.carriers)}
        self.region_index = {r: i for i, r in enumerate(world.regions)}
        self.customer_index = {c: i for i, c in enumerate(world.customers)}
        self.staffing = Staffing(world)
        self.storms_starting: dict[int, list[Storm]] = defaultdict(list)
        for storm in storms(world.weather):
            self.storms_starting[storm.first_day].append(storm)

    # --- set-up ----------------------------------------------------------------------------

    def load_world(self) -> None:
        start = at(self.world.start - timedelta(days=1), 8)
        load_master_data(self.uow, ADMIN, master_data(self.world), start)
        with self.uow:
            self.lanes = {
                lane.id: lane for lane in self.uow.session.execute(select(Lane)).scalars()
            }
        self._opening_stock(start)

    def _opening_stock(self, moment: datetime) -> None:
        """Six weeks of expected demand on the shelves on day one (no stock-out to start with)."""
        rate = line_rate(self.world, 0) * 5  # a business week of lines
        units = rate * self.world.qty_mean[:, None] * 6
        counts = []
        for s, sku in enumerate(self.world.skus):
            for loc, location in enumerate(self.world.locations):
                quantity = int(np.rint(units[s, loc] * self.rng.uniform(0.6, 1.4)))
                if quantity > 0:
                    counts.append(CountRequest(sku, location, quantity, moment, "opening balance"))
        with self.uow:
            for outcome in record_cycle_counts(self.uow, ADMIN, counts=counts):
                if isinstance(outcome, DomainError):
                    raise outcome  # the opening balances are the world's: none may be refused
            self.uow.commit()

    # --- the day ---------------------------------------------------------------------------

    def run_day(self, day_number: int) -> None:
        today = self.world.day_date(day_number)
        working = self.calendar.is_business_day(today)
        with self.uow:
            self._announce_storms(day_number, today)
            self._resync_backlog()
            self.staffing.start_day(day_number, self.business_day_index)
            if working:
                self._receive_goods(today)
                self._cancellations(today)
                self._finance_desk(today)
            self._take_orders(day_number, today)
            if working:
                self._deliver(today)
                self._watch_waiting_lines(today)
                self._warehouse(today)
                self._review_staffing()
                self._returns(today)
                self._cycle_counts(today)
                self._rebalance(day_number, today)
                self._purchasing(day_number, today)
                self._work_exceptions(today)
                self.business_day_index += 1
            self._forecast_receipts(today)
            self.uow.commit()

    def _forecast_receipts(self, today: date) -> None:
        """Under the ``p80`` promise policy the planners refresh the receipt forecasts every
        evening, after the day's purchase orders, so the next day's promises read P80 dates
        known tonight. No random number is drawn: the world is the nominal run's, only the
        promises differ."""
        if self.uow.policy.inbound_quantile == "p80":
            self._attempt(refresh_receipt_forecasts, PLANNER, now=at(today, 20, 30))

    def _announce_storms(self, day_number: int, today: date) -> None:
        """At the start of a storm's first day the carriers announce it for every carrier into
        the region, over the storm's days and graded by its strength. The ERP learns of the
        weather this way only; no random number is drawn, so orders and fates stay as they are."""
        for storm in self.storms_starting.get(day_number, ()):
            region = self.world.regions[storm.region]
            until = self.world.day_date(storm.last_day + 1)
            self._attempt(
                announce_service_alert,
                LOGISTICS,
                region=region,
                severity=storm.severity,
                starts_at=at(today, 0),
                ends_at=at(until, 0),
                now=at(today, 0),
                description=f"weather: deliveries into {region} delayed until {until.isoformat()}",
            )

    def _attempt(self, act: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a service; a refusal (domain error) is counted, not fatal: real desks see them."""
        try:
            return act(self.uow, *args, **kwargs)
        except DomainError as refused:
            self.counters.refused[f"{act.__name__}:{refused.code}"] += 1
            return None

    def _resync_backlog(self) -> None:
        self.backlog.clear()
        rows = self.uow.session.execute(
            select(OrderLine.location_id, OrderLine.id).where(OrderLine.state == "allocated")
        ).all()
        for location, _line_id in rows:
            self.backlog[location or ""] += 1

    def _review_staffing(self) -> None:
        """After the evening pick: the lines still queued per location call flex in or off."""
        self.staffing.review(
            self.business_day_index,
            {loc: self.backlog[location] for loc, location in enumerate(self.world.locations)},
        )

    # --- orders ----------------------------------------------------------------------------

    def _take_orders(self, day_number: int, today: date) -> None:
        w = self.world
        rate = line_rate(w, day_number)
        counts = self.rng.poisson(rate)
        active = active_customers(w, self.business_day_index)
        orders: dict[int, dict[int, int]] = defaultdict(dict)
        for loc in range(len(w.locations)):
            skus = np.repeat(np.arange(w.n_skus), counts[:, loc])
            if len(skus) == 0:
                continue
            buyers = self.rng.choice(
                len(w.customers), size=len(skus), p=customer_odds(w, active, loc)
            )
            factors = np.array([CHANNEL_QTY_FACTOR[w.customer_channel[c]] for c in buyers])
            quantities = draw_quantities(w, self.rng, skus, factors)
            np.add.at(self.units_ordered[day_number, :, loc], skus, quantities)
            for sku, buyer, quantity in zip(skus, buyers, quantities, strict=True):
                lines = orders[int(buyer)]
                lines[int(sku)] = lines.get(int(sku), 0) + int(quantity)
        entries = sorted(
            (at(today, 7) + timedelta(seconds=int(self.rng.integers(0, 12 * 3600))), buyer, lines)
            for buyer, lines in orders.items()
        )
        self._place_orders(today, entries)

    def _place_orders(
        self, today: date, entries: list[tuple[datetime, int, dict[int, int]]]
    ) -> None:
        """Price the day's orders, capture them with one batch call in the order they came in,
        then draw the fate of each promised line (from what was known at its entry)."""
        w = self.world
        requests: list[OrderRequest] = []
        prices: list[dict[str, Any]] = []
        actors: list[Actor] = []
        for entered_at, buyer, lines in entries:
            priced = [
                self.pricing.price(buyer, sku, quantity, today) for sku, quantity in lines.items()
            ]
            window = REQUESTED_DAYS[w.customer_channel[buyer]]
            requested = (
                None if window is None else today + timedelta(days=int(self.rng.integers(*window)))
            )
            anomalous = any(p.anomaly == "discount_without_approval" for p in priced)
            actors.append(ADMIN if anomalous else SALES)
            prices.append({w.skus[p.sku]: p for p in priced})
            requests.append(
                OrderRequest(
                    w.customers[buyer],
                    [LineRequest(w.skus[p.sku], p.quantity, p.unit_price) for p in priced],
                    entered_at,
                    requested_date=requested,
                )
            )
        captured: list[CapturedOrder | None] = [None] * len(requests)
        # One batch per run of orders entered by the same role (an approver's orders apart).
        start = 0
        while start < len(requests):
            end = start
            while end < len(requests) and actors[end] == actors[start]:
                end += 1
            captured[start:end] = self._attempt_each(
                capture_orders, actors[start], orders=requests[start:end]
            )
            start = end
        to_plan: list[tuple[int, datetime, int]] = []
        for order, request, by_sku in zip(captured, requests, prices, strict=True):
            if order is None:
                continue
            self.counters.orders += 1
            self.order_ids.add(order.order_id)
            self.counters.lines += len(order.lines)
            for line in order.lines:
                price = by_sku[line.sku]
                self.truth_pricing[line.line_id] = {
                    "line_id": line.line_id,
                    "order_id": order.order_id,
                    "is_anomaly": price.anomaly is not None,
                    "anomaly_type": price.anomaly,
                    "entered_at": request.now,
                }
            if order.credit_hold:
                self.counters.credit_holds += 1
                self.waiting.update(line.line_id for line in order.lines)
                continue
            to_plan.append((order.order_id, request.now, len(request.lines)))
        self._plan_orders(to_plan, today)

    def _plan_order(self, order_id: int, today: date, now: datetime, order_lines: int) -> None:
        self._plan_orders([(order_id, now, order_lines)], today)

    def _plan_orders(self, orders: list[tuple[int, datetime, int]], today: date) -> None:
        """Draw the fate of each newly promised line of the orders, from what is known now."""
        if not orders:
            return
        by_order: dict[int, list[OrderLine]] = defaultdict(list)
        ids = [order_id for order_id, _now, _n in orders]
        for chunk in range(0, len(ids), 500):
            for row in self.uow.session.execute(
                select(OrderLine)
                .where(OrderLine.order_id.in_(ids[chunk : chunk + 500]))
                .order_by(OrderLine.id)
            ).scalars():
                by_order[row.order_id].append(row)
        promises = self._first_promises([row.id for rows in by_order.values() for row in rows])
        for order_id, now, order_lines in orders:
            self._plan_lines(by_order[order_id], promises, today, now, order_lines)

    def _plan_lines(
        self,
        rows: list[OrderLine],
        promises: dict[int, LinePromise],
        today: date,
        now: datetime,
        order_lines: int,
    ) -> None:
        """Draw the fate of each newly promised line of one order."""
        parents = {row.parent_line_id for row in rows if row.parent_line_id}
        for row in rows:
            if row.id not in self.truth_pricing and row.parent_line_id in self.truth_pricing:
                # A line split off later (on credit release) carries its parent's price.
                self.truth_pricing[row.id] = {
                    **self.truth_pricing[row.parent_line_id],
                    "line_id": row.id,
                }
        transit_draws: dict[int, tuple[float, int]] = {}
        for row in rows:
            if row.id in self.plans or row.id not in promises or row.lane_id is None:
                continue
            split = row.parent_line_id is not None or row.id in parents
            # Lines on one lane travel in one truck: one transit draw per lane of the order.
            if row.lane_id not in transit_draws:
                transit_draws[row.lane_id] = (
                    float(self.rng.random()),
                    hazards.draw_delay_days(self.rng),
                )
            self._plan_line(
                row, promises[row.id], today, now, order_lines, split, transit_draws[row.lane_id]
            )

    def _first_promises(self, line_ids: list[int]) -> dict[int, LinePromise]:
        first: dict[int, LinePromise] = {}
        for promise in self.uow.session.execute(
            select(LinePromise).where(LinePromise.line_id.in_(line_ids)).order_by(LinePromise.id)
        ).scalars():
            first.setdefault(promise.line_id, promise)
        return first

    def _plan_line(
        self,
        row: OrderLine,
        promise: LinePromise,
        today: date,
        now: datetime,
        order_lines: int,
        split: bool,
        transit_draw: tuple[float, int],
    ) -> None:
        w = self.world
        day = (today - w.start).days
        assert row.location_id is not None and row.lane_id is not None
        loc = self.location_index[row.location_id]
        lane = self.lanes[row.lane_id]
        p_stock = 0.0
        if row.state == "backordered":
            p_stock = self._stock_late_probability(row, promise.promised_ship_date, today)
        p_handling = hazards.handling_late_probability(
            backlog_lines=self.backlog[row.location_id],
            capacity=int(self.staffing.capacity[loc]),
            holiday_ahead=self._holiday_within(promise.promised_ship_date, 2),
            peak=peak_season(today),
            order_lines=order_lines,
            split_part=split,
            friday=promise.promised_ship_date.weekday() == 4,
            location_quality=float(w.location_quality[day, loc]),
            approval_blocks_today=row.price_approval_pending
            and promise.promised_ship_date <= today,
        )
        carrier = self.carrier_index[lane.carrier_id]
        region = self.region_index[lane.dest_region]
        p_transit = hazards.transit_late_probability(
            float(w.carrier_late_logit[day, carrier]),
            float(w.lane_offset[carrier, loc, region]),
            lane.transit_days,
            float(w.weather[day, region]),
            peak_season(today),
        )
        hazard = hazards.LineHazard(p_stock, p_handling, p_transit)
        handling_late = bool(self.rng.random() < p_handling)
        transit_late = transit_draw[0] < p_transit
        plan = LinePlan(
            line_id=row.id,
            order_id=row.order_id,
            sku=row.sku,
            location=row.location_id,
            lane_id=row.lane_id,
            quantity=row.quantity,
            entered_day=today,
            promised_ship=promise.promised_ship_date,
            promised_delivery=promise.promised_delivery_date,
            hazard=hazard,
            handling_late=handling_late,
            handling_delay=hazards.draw_delay_days(self.rng) if handling_late else 0,
            transit_late=transit_late,
            transit_delay=transit_draw[1] if transit_late else 0,
            cause=_cause(row.state == "backordered", handling_late, transit_late),
        )
        self.plans[row.id] = plan
        if row.state == "allocated":
            self.waiting.discard(row.id)
            self.backlog[row.location_id] += 1
            self.counters.lines_from_stock += row.parent_line_id is None
            self._schedule_ship(plan, plan.promised_ship)
        else:
            self.waiting.add(row.id)
        if self.rng.random() < CANCEL_RATE:
            self.cancel_on[
                self.calendar.add_business_days(today, int(self.rng.integers(0, 2)))
            ].append(row.id)

    def _stock_late_probability(self, row: OrderLine, promised_ship: date, today: date) -> float:
        """P(the receipt this backorder waits for comes too late for its promised ship date),
        given that it has not come yet: summed over the supplier's delay distribution."""
        expected = row.expected_ready_on
        assert row.location_id is not None and expected is not None
        pending = self.po_by_expected.get((row.sku, row.location_id, expected))
        if pending is None:
            # No purchase order covers it yet: tonight's buyer orders it at today's odds.
            supplier_ix = int(self.world.supplier_of[self.sku_index[row.sku]])
            placed = today
        else:
            supplier_ix, placed = pending.supplier, pending.placed
        pmf = self.world.suppliers[supplier_ix].pmf_on((placed - self.world.start).days)
        alive = late = 0.0
        for delay, weight in zip(DELAY_SUPPORT, pmf, strict=True):
            arrives = self._arrival_day(expected, int(delay), placed)
            if arrives <= today:
                continue  # it would have come already
            alive += weight
            if self.calendar.add_business_days(arrives, 1) > promised_ship:
                late += weight
        return 1.0 if alive <= 0 else late / alive

    def _arrival_day(self, expected: date, delay: int, placed: date) -> date:
        """Goods come on business days, never before the day after the order."""
        return self.calendar.next_business_day_on_or_after(
            max(expected + timedelta(days=delay), placed + timedelta(days=1))
        )

    def _holiday_within(self, day: date, days: int) -> bool:
        return any(day + timedelta(days=d) in self.calendar.holidays for d in range(days + 1))

    def _schedule_ship(self, plan: LinePlan, earliest: date) -> None:
        ship = self.calendar.next_business_day_on_or_after(max(earliest, plan.promised_ship))
        if plan.handling_late:
            ship = self.calendar.add_business_days(ship, plan.handling_delay)
        plan.planned_ship = ship
        self.ship_plan[ship].append(plan.line_id)

    # --- supply ----------------------------------------------------------------------------

    def _receive_goods(self, today: date) -> None:
        moment = at(today, 6)
        for receipt in self.receipts.pop(today, []):
            self.po_by_expected.pop(self.po_keys.pop(receipt.po_line_id), None)
            if self._attempt(
                purchasing.receive_purchase_order_line,
                LOGISTICS,
                purchase_order_line_id=receipt.po_line_id,
                quantity=receipt.quantity,
                now=moment,
            ):
                self.counters.receipts += 1
        for transfer_id in self.transfers_due.pop(today, []):
            self._attempt(
                transfers.receive_transfer, LOGISTICS, transfer_id=transfer_id, now=moment
            )

    def _purchasing(self, day_number: int, today: date) -> None:
        """A deliberately imperfect (s, S) policy: a trailing 28-day mean as the forecast,
        nominal lead times, no notion of promotions or seasons; reviewed weekly per supplier,
        plus same-day orders for backorders no purchase covers."""
        w = self.world
        balances = {
            (b.sku, b.location_id): b
            for b in self.uow.session.execute(select(InventoryBalance)).scalars()
        }
        backordered = self._backordered_units()
        moment = at(today, 20)
        for s_index, supplier in enumerate(w.suppliers):
            review = (self.business_day_index + s_index) % REVIEW_DAYS == 0
            for loc, location in enumerate(w.locations):
                lines = []
                for sku_ix in np.flatnonzero(w.supplier_of == s_index):
                    sku = w.skus[sku_ix]
                    balance = balances.get((sku, location))
                    if balance is None:
                        continue
                    waiting = backordered.get((sku, location), 0)
                    position = balance.on_hand + balance.on_order - balance.reserved - waiting
                    daily = self._forecast(int(sku_ix), loc, day_number)
                    cover = supplier.nominal_lead_days + REVIEW_DAYS * 7 / 5
                    reorder_point = daily * cover * SAFETY_FACTOR
                    uncovered = waiting > 0 and position < 0
                    if (review and position < reorder_point) or uncovered:
                        target = reorder_point + daily * REVIEW_DAYS * 2
                        quantity = int(np.ceil(max(target - position, 1)))
                        lines.append((sku, quantity))
                if lines:
                    self._place_po(s_index, location, lines, today, moment)

    def _rebalance(self, day_number: int, today: date) -> None:
        """Wednesdays, planners move stock from a location holding months of it to one about to
        run dry (a transfer arrives in two days)."""
        if today.weekday() != 2:
            return
        w = self.world
        balances = {
            (b.sku, b.location_id): b.on_hand - b.reserved
            for b in self.uow.session.execute(select(InventoryBalance)).scalars()
        }
        for s_ix, sku in enumerate(w.skus):
            daily = [
                max(self._forecast(s_ix, loc, day_number), 1e-6) for loc in range(len(w.locations))
            ]
            cover = [balances.get((sku, loc), 0) / daily[i] for i, loc in enumerate(w.locations)]
            short, rich = int(np.argmin(cover)), int(np.argmax(cover))
            if cover[short] >= TRANSFER_SHORT_DAYS or cover[rich] <= TRANSFER_RICH_DAYS:
                continue
            spare = balances[(sku, w.locations[rich])] - int(daily[rich] * TRANSFER_KEEP_DAYS)
            quantity = min(spare, int(np.ceil(daily[short] * TRANSFER_FILL_DAYS)))
            if quantity <= 0:
                continue
            arrives = self.calendar.add_business_days(today, 2)
            transfer_id = self._attempt(
                transfers.send_transfer,
                PLANNER,
                sku=sku,
                from_location_id=w.locations[rich],
                to_location_id=w.locations[short],
                quantity=quantity,
                now=at(today, 20),
                expected_date=arrives,
            )
            if transfer_id is not None:
                self.counters.transfers += 1
                self.transfers_due[arrives].append(transfer_id)

    def _forecast(self, sku: int, loc: int, day_number: int) -> float:
        """Mean daily units of the last 28 days: blind to trend, season and promotions."""
        window = self.units_ordered[max(0, day_number - 27) : day_number + 1, sku, loc]
        return float(window.mean())

    def _backordered_units(self) -> dict[tuple[str, str], int]:
        rows = self.uow.session.execute(
            select(OrderLine.sku, OrderLine.location_id, OrderLine.quantity).where(
                OrderLine.state == "backordered"
            )
        ).all()
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for sku, location, quantity in rows:
            totals[(sku, location or "")] += quantity
        return totals

    def _place_po(
        self,
        s_index: int,
        location: str,
        lines: list[tuple[str, int]],
        today: date,
        moment: datetime,
    ) -> None:
        w = self.world
        supplier = w.suppliers[s_index]
        po_id = self._attempt(
            purchasing.place_purchase_order,
            PLANNER,
            supplier_id=supplier.id,
            location_id=location,
            lines=[purchasing.PurchaseLineRequest(sku, quantity) for sku, quantity in lines],
            now=moment,
        )
        if po_id is None:
            return
        self.counters.purchase_orders += 1
        pmf = supplier.pmf_on((today - w.start).days)
        po = self.uow.session.get(PurchaseOrder, po_id)
        assert po is not None
        for po_line in po.lines:
            delay = int(self.rng.choice(DELAY_SUPPORT, p=pmf))
            arrives = po_line.expected_date + timedelta(days=delay)
            arrives = self._arrival_day(po_line.expected_date, delay, today)
            receipt = PendingReceipt(
                po_line.id, po_line.quantity, s_index, today, po_line.expected_date, arrives
            )
            self.receipts[arrives].append(receipt)
            key = (po_line.sku, location, po_line.expected_date)
            self.po_keys[po_line.id] = key
            self.po_by_expected[key] = receipt

    # --- fulfilment ------------------------------------------------------------------------

    def _watch_waiting_lines(self, today: date) -> None:
        """Lines that were waiting (backorders, credit holds) and are allocated now get their
        ship date; credit-released lines get their fate drawn now, at their first promise."""
        if not self.waiting:
            return
        ids = list(self.waiting)
        rows: list[OrderLine] = []
        for chunk in range(0, len(ids), 500):
            rows.extend(
                self.uow.session.execute(
                    select(OrderLine).where(OrderLine.id.in_(ids[chunk : chunk + 500]))
                ).scalars()
            )
        for row in rows:
            if row.state in ("cancelled",):
                self.waiting.discard(row.id)
            elif row.state == "allocated":
                self.waiting.discard(row.id)
                plan = self.plans.get(row.id)
                if plan is None:
                    continue
                self.backlog[row.location_id or ""] += 1
                self._schedule_ship(plan, self.calendar.add_business_days(today, 1))

    def _warehouse(self, today: date) -> None:
        due = self.ship_plan.pop(today, [])
        if not due:
            return
        rows = {
            row.id: row
            for row in self.uow.session.execute(
                select(OrderLine).where(OrderLine.id.in_(due))
            ).scalars()
        }
        groups: dict[tuple[int, str, int], list[int]] = defaultdict(list)
        for line_id in due:
            row = rows.get(line_id)
            if row is None or row.state != "allocated" or row.price_approval_pending:
                if row is not None and row.state in ("allocated", "backordered"):
                    # Not pickable today (approval pending, stock taken by a count): tomorrow.
                    self.ship_plan[self.calendar.add_business_days(today, 1)].append(line_id)
                continue
            groups[(row.order_id, row.location_id or "", row.lane_id or 0)].append(line_id)
        self._ship(sorted(groups.items()), today)

    def _ship(self, groups: list[tuple[tuple[int, str, int], list[int]]], today: date) -> None:
        """Pick each group (one order's lines at one location on one lane) into a shipment,
        then pack and hand all of them to the carriers: two batch calls for the evening."""
        if not groups:
            return
        picked = self._attempt_each(
            fulfilment_batch.pick_orders,
            LOGISTICS,
            requests=[
                fulfilment_batch.PickRequest(order_id, {i: self.plans[i].quantity for i in ids})
                for (order_id, _location, _lane), ids in groups
            ],
            now=at(today, 19, 30),
        )
        shipped = [
            (result.shipment_id, line_ids)
            for result, (_key, line_ids) in zip(picked, groups, strict=True)
            if result is not None
        ]
        self._attempt_each(
            fulfilment_batch.record_shipment_events,
            LOGISTICS,
            events=[
                fulfilment_batch.MilestoneRequest(shipment, event, at(today, 19, minute))
                for shipment, _ids in shipped
                for event, minute in (("packed", 45), ("shipped", 59))
            ],
            now=at(today, 20),
        )
        for shipment, line_ids in shipped:
            self.counters.shipments += 1
            self.shipment_lines[shipment] = line_ids
            deliver_on = today
            for line_id in line_ids:
                plan = self.plans[line_id]
                plan.shipped_on = today
                transit = self.lanes[plan.lane_id].transit_days + plan.transit_delay
                deliver_on = max(deliver_on, self.calendar.add_business_days(today, transit))
                self.backlog[plan.location] -= 1
            self.deliveries[deliver_on].append(shipment)

    def _attempt_each(self, act: Callable[..., list[Any]], *args: Any, **kwargs: Any) -> list[Any]:
        """Call a batch service; each refused act in it is counted and stands as None."""
        outcomes = act(self.uow, *args, **kwargs)
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, DomainError):
                self.counters.refused[f"{act.__name__}:{outcome.code}"] += 1
                outcomes[index] = None
        return outcomes

    def _deliver(self, today: date) -> None:
        due = self.deliveries.pop(today, [])
        if not due:
            return
        planned = {
            shipment.id: shipment.planned_freight_cost
            for shipment in self.uow.session.execute(
                select(Shipment).where(Shipment.id.in_(due)).options(lazyload(Shipment.lines))
            ).scalars()
        }
        events = []
        for shipment in due:
            factor = Decimal(str(round(float(self.rng.uniform(0.95, 1.2)), 3)))
            cost = (planned[shipment] * factor).quantize(Decimal("0.01"))
            events.append(
                fulfilment_batch.MilestoneRequest(
                    shipment, "delivered", at(today, 11), {"freight_cost": str(cost)}
                )
            )
        done = self._attempt_each(
            fulfilment_batch.record_shipment_events,
            LOGISTICS,
            events=events,
            now=at(today, 11, 5),
        )
        for shipment, result in zip(due, done, strict=True):
            if result is None:
                continue
            for line_id in self.shipment_lines.pop(shipment, []):
                self.plans[line_id].delivered_on = today
                if self.rng.random() < RETURN_RATE:
                    due_on = self.calendar.add_business_days(today, int(self.rng.integers(3, 15)))
                    self.returns_due[due_on].append(("authorise", line_id))

    def _cancellations(self, today: date) -> None:
        for line_id in self.cancel_on.pop(today, []):
            plan = self.plans.get(line_id)
            if plan is None or plan.shipped_on is not None:
                continue
            if self._attempt(
                cancel_order_lines,
                SERVICE,
                order_id=plan.order_id,
                line_ids=[line_id],
                now=at(today, 7),
                reason="customer request",
            ):
                plan.cancelled = True
                self.counters.cancellations += 1
                self.waiting.discard(line_id)

    def _returns(self, today: date) -> None:
        for step, ref in self.returns_due.pop(today, []):
            moment = at(today, 14)
            if step == "authorise":
                return_id = self._attempt(
                    returns.authorise_return,
                    SERVICE,
                    line_id=ref,
                    quantity=max(1, self.plans[ref].quantity // 3),
                    reason="damaged in transit",
                    now=moment,
                )
                if return_id:
                    self.counters.returns += 1
                    self.returns_due[self.calendar.add_business_days(today, 3)].append(
                        ("receive", return_id)
                    )
            elif step == "receive":
                self._attempt(returns.receive_return, LOGISTICS, return_id=ref, now=moment)
                self.returns_due[self.calendar.add_business_days(today, 1)].append(("dispose", ref))
            else:
                self._attempt(
                    returns.dispose_return,
                    LOGISTICS,
                    return_id=ref,
                    now=moment,
                    disposition="restock" if self.rng.random() < 0.7 else "scrap",
                )

    def _cycle_counts(self, today: date) -> None:
        w = self.world
        picks = self.rng.random((w.n_skus, len(w.locations))) < COUNT_SHARE
        for s, loc in zip(*np.nonzero(picks), strict=True):
            balance = self.uow.session.get(InventoryBalance, (w.skus[s], w.locations[loc]))
            if balance is None:
                continue
            shrink = int(self.rng.poisson(0.4)) if balance.on_hand > 0 else 0
            result = self._attempt(
                record_cycle_count,
                LOGISTICS,
                sku=w.skus[s],
                location_id=w.locations[loc],
                counted_quantity=max(0, balance.on_hand - shrink),
                now=at(today, 20, 30),
            )
            if result is not None:
                self.counters.cycle_counts += 1

    # --- desks -----------------------------------------------------------------------------

    def _finance_desk(self, today: date) -> None:
        moment = at(today, 8)
        decisions = self.pricing.pending_decisions(self.uow.session, self.rng, self.order_ids)
        for approval_id, approve in decisions:
            if self._attempt(
                decide_approval, FINANCE, approval_id=approval_id, approve=approve, now=moment
            ):
                self.counters.approvals += 1
        held = (
            self.uow.session.execute(
                select(OrderLine.order_id).where(OrderLine.state == "credit_hold").distinct()
            )
            .scalars()
            .all()
        )
        for order_id in held:
            if order_id not in self.order_ids:
                continue  # another world's order (an --append run): not this desk's to decide
            if self.rng.random() < 0.85:
                if self._attempt(release_credit_hold, FINANCE, order_id=order_id, now=moment):
                    self._plan_order(order_id, today, moment, 1)
            else:
                self._attempt(
                    cancel_order_lines,
                    SERVICE,
                    order_id=order_id,
                    now=moment,
                    reason="credit refused",
                )

    def _work_exceptions(self, today: date) -> None:
        cases = self.uow.session.execute(
            select(
                ExceptionCase.id,
                ExceptionCase.owner_role,
                ExceptionCase.type,
                ExceptionCase.order_id,
            ).where(ExceptionCase.status != "resolved")
        ).all()
        for case_id, owner, kind, order_id in cases:
            if order_id not in self.order_ids:
                continue
            if kind in ("discount_approval", "credit_hold") or self.rng.random() > 0.55:
                continue
            resolution = "false alarm" if self.rng.random() < 0.2 else "handled"
            if self._attempt(
                resolve_exception, Actor(f"sim-{owner}", owner), case_id, resolution, at(today, 21)
            ):
                self.counters.exceptions_resolved += 1

    # --- truth -----------------------------------------------------------------------------

    def line_truth(self) -> list[dict[str, Any]]:
        """One row per order line: its drawn fate, or nulls for a line never promised (held for
        credit and then cancelled)."""
        rows: list[dict[str, Any]] = []
        for plan in self.plans.values():
            rows.append(
                {
                    "line_id": plan.line_id,
                    "order_id": plan.order_id,
                    "entered_on": plan.entered_day,
                    "promised_ship_date": plan.promised_ship,
                    "promised_delivery_date": plan.promised_delivery,
                    "p_stock_late": plan.hazard.p_stock_late,
                    "p_handling_late": plan.hazard.p_handling_late,
                    "p_transit_late": plan.hazard.p_transit_late,
                    "p_late_ship": plan.hazard.p_ship_late,
                    "p_late_delivery": plan.hazard.p_delivery_late,
                    "drawn_handling_late": plan.handling_late,
                    "drawn_transit_late": plan.transit_late,
                    "cause": plan.cause,
                    "shipped_on": plan.shipped_on,
                    "delivered_on": plan.delivered_on,
                    "cancelled": plan.cancelled,
                    "late_ship": None
                    if plan.shipped_on is None
                    else plan.shipped_on > plan.promised_ship,
                    "late_delivery": None
                    if plan.delivered_on is None
                    else plan.delivered_on > plan.promised_delivery,
                }
            )
        never_promised = [r for r in self.truth_pricing.values() if r["line_id"] not in self.plans]
        if rows and never_promised:
            blank = dict.fromkeys(rows[0])
            rows.extend(
                {
                    **blank,
                    "line_id": r["line_id"],
                    "order_id": r["order_id"],
                    "cause": "never_promised",
                    "cancelled": True,
                }
                for r in never_promised
            )
        return rows


def _cause(backordered: bool, handling_late: bool, transit_late: bool) -> str:
    causes = [
        name
        for name, hit in (
            ("stock", backordered),
            ("handling", handling_late),
            ("transit", transit_late),
        )
        if hit
    ]
    return "+".join(causes) or "none"
