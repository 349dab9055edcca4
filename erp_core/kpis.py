"""The KPIs of KPIS.md, computed once, from ERP events alone, for a period ``[start, end)``.

The API, the page, the notebooks and the tests all read these numbers from ``compute_kpis``, so a
KPI has one definition (``DEFINITIONS``, the text the API shows) and one implementation. Every
KPI states its numerator and denominator; a KPI over zero events has the value ``None``, not 0.
Ratios are shares in [0, 1] (unit ``share``); the page shows them as %.

Conventions where KPIS.md is silent:

* **What the ERP knew at ``end``.** Only events that occurred before ``end`` count (a shipment
  after ``end`` has not happened yet), so a past period gives the same figures tomorrow.
* **An order line is what the customer ordered.** The ERP splits a line when only part of it can
  be served (allocation across locations or from a later receipt, a short pick, a partial
  release): the pieces are child lines whose quantities add up to what was ordered. The
  line-level KPIs judge the *ordered line*, the first line and every line split off it; its due
  quantity is the pieces' quantity less the pieces cancelled before ``end``; a line cancelled
  whole is not judged at all.
* **The first promise.** The promise an ordered line is judged by is the first one made for it
  (capture, or credit release): the latest ship and delivery dates among the promises made for
  its pieces in that first decision. Pieces split off later (a short pick's remainder, a partial
  release) inherit it: their own promise rows are promise changes, which KPIs ignore.
* **Dates.** Promises are dates at the fulfilling location; a shipment or delivery moment is
  turned into that location's local date before it is compared with one. A promise date is in
  the period when its local midnight is in ``[start, end)``.
* **Judged by the first shipment and the first delivery (strict OTIF).** On-time shipment counts
  the lines whose first shipment left in the period; OTIF the lines whose first delivery
  arrived in it. A line is *in full* when its whole due quantity arrived on the day of its first
  delivery: a line delivered in parts is not in full, even if the rest comes before the promise.
* **Order level.** An order is judged once each of its ordered lines has had its first delivery,
  in the period of the last of them; it is OTIF when all its lines are. Order cycle time runs
  from entry to the delivery of the order's last due unit.
* **Backorder aging** counts lines (pieces) that are backordered at ``end``; a line's age runs
  from the moment it last became backordered.
* **Freight variance** compares each shipment's actual freight (set at delivery) with its planned
  freight (the lane's tariff for the shipment's weight, fixed when the shipment is created), for
  shipments delivered in the period with an actual cost; the headline is standard shipments,
  expedited (express lane) shipments are shown apart in ``details``.
* **Inventory turns** values stock at the product's unit cost (the ledger holds quantities only).
  The average inventory value is time-weighted from the ledger: the on-hand value at ``start``
  (every on-hand movement before it) plus each on-hand movement in the period weighted by the
  share of the period left after it, i.e. the integral of the on-hand value over the period
  divided by its length. Annualised by 365 / the period's days.
* **Days of supply** is as of ``end``: on hand from the ledger / units ordered (not cancelled) at
  the location in the 28 days before ``end`` / 28; the value is the median over SKU x location
  pairs with demand, pairs without demand are counted apart.
* **Inventory accuracy**: a count is within tolerance when ``|counted - system| <= 2 %`` of the
  system quantity (so a small bin must count exactly). Counts that load an opening balance
  (reason ``opening balance``) are not checks of the books and are left out.
* **Exceptions** count when resolved in the period (time to resolve is only known then); within
  SLA means resolved at or before ``sla_due_at``. **Alert precision** judges the resolved
  exceptions that carry a model score: an exception was a false alarm when its resolution text,
  trimmed and in lower case, starts with ``false_alarm`` or ``false alarm``.

Groupings: ``location``, ``customer_tier``, ``channel`` and ``carrier`` as KPIS.md asks, plus
``exception_type`` and ``owner_role`` for the two exception KPIs. A KPI appears in a grouped
section only for the dimensions it has (``DIMENSIONS``): order-level KPIs have no location or
carrier (an order may leave from several), the stock KPIs (turns, days of supply, accuracy) only
location, returns no carrier, exceptions no carrier. A group key of ``None`` (an exception with
no location) is reported as ``"(none)"``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Executable, and_, func, or_, select, union
from sqlalchemy.orm import Session

from erp_core.db.models import (
    Customer,
    CycleCount,
    ExceptionCase,
    InventoryMovement,
    Lane,
    LinePromise,
    LineStateChange,
    Location,
    OrderLine,
    Product,
    ReturnOrder,
    SalesOrder,
    Shipment,
    ShipmentEvent,
    ShipmentLine,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.domain.states import LineState, ReturnStatus

GROUPINGS = ("location", "customer_tier", "channel", "carrier", "exception_type", "owner_role")
NO_GROUP = "(none)"
DEMAND_WINDOW_DAYS = 28
COUNT_TOLERANCE_SHARE = 0.02
OPENING_BALANCE_REASON = "opening balance"
FALSE_ALARM_PREFIXES = ("false_alarm", "false alarm")
DAYS_PER_YEAR = 365
AGE_BUCKETS = (("0-7", 7), ("8-14", 14), ("15-30", 30), (">30", None))
"""Backorder age buckets by whole days of age: up to 7, 8 to 14, 15 to 30, over 30."""

DEFINITIONS: Mapping[str, str] = {
    "line_fill_rate": (
        "order lines shipped complete from stock at the promised location in their first "
        "shipment / order lines due in the period (first promised ship date in the period)"
    ),
    "unit_fill_rate": (
        "units shipped by the promised ship date / units ordered for lines due in the period"
    ),
    "on_time_shipment": (
        "lines shipped on or before the first promised ship date / lines shipped "
        "(first shipment in the period)"
    ),
    "otif": (
        "order lines delivered on or before the first promised delivery date AND in full "
        "quantity / order lines delivered (first delivery in the period)"
    ),
    "order_otif": (
        "orders all of whose lines are OTIF / orders delivered (last line's first delivery in "
        "the period)"
    ),
    "order_cycle_time": (
        "order entered -> last line delivered, over orders completed in the period; median "
        "(details: p90)"
    ),
    "backorder_aging": (
        "open backordered lines at the end of the period by age bucket (0-7, 8-14, 15-30, "
        "> 30 days) and median age"
    ),
    "freight_variance": (
        "(actual freight cost - planned freight cost) / planned, summed over shipments "
        "delivered in the period; standard shipments, expedited freight shown apart"
    ),
    "inventory_turns": (
        "cost of goods shipped in the period / average inventory value at cost, annualised"
    ),
    "days_of_supply": (
        "on hand / average daily demand of the last 28 days, per SKU x location; median over "
        "pairs with demand"
    ),
    "inventory_accuracy": "cycle counts with no adjustment beyond tolerance / cycle counts",
    "return_cycle_time": (
        "return authorised -> restocked or scrapped, over returns disposed in the period; "
        "median (details: p90)"
    ),
    "exception_resolution_time": (
        "exception opened -> resolved, over exceptions resolved in the period; median "
        "(details: p90, share resolved within SLA); by type and owner role"
    ),
    "alert_precision": (
        'exceptions from a model score whose resolution was not "false alarm" / such '
        "exceptions (resolved in the period)"
    ),
}

_LINE = frozenset({"location", "customer_tier", "channel", "carrier"})
_ORDER = frozenset({"customer_tier", "channel"})
_STOCK = frozenset({"location"})
_RETURN = frozenset({"location", "customer_tier", "channel"})
_EXCEPTION = frozenset({"location", "customer_tier", "channel", "exception_type", "owner_role"})
DIMENSIONS: Mapping[str, frozenset[str]] = {
    "line_fill_rate": _LINE,
    "unit_fill_rate": _LINE,
    "on_time_shipment": _LINE,
    "otif": _LINE,
    "order_otif": _ORDER,
    "order_cycle_time": _ORDER,
    "backorder_aging": _LINE,
    "freight_variance": _LINE,
    "inventory_turns": _STOCK,
    "days_of_supply": _STOCK,
    "inventory_accuracy": _STOCK,
    "return_cycle_time": _RETURN,
    "exception_resolution_time": _EXCEPTION,
    "alert_precision": _EXCEPTION,
}
"""The groupings each KPI has; a grouped report leaves a KPI out where it lacks the dimension."""

Number = int | float


@dataclass(frozen=True)
class Kpi:
    """One KPI for one period (and group): its value with what it was computed from."""

    name: str
    value: float | None
    unit: str
    numerator: Number | None
    denominator: Number | None
    definition: str
    details: Mapping[str, Number | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "definition": self.definition,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class KpiReport:
    """The KPIs of ``[start, end)`` in total, and per group when grouped."""

    start: datetime
    end: datetime
    group_by: str | None
    kpis: tuple[Kpi, ...]
    groups: Mapping[str, tuple[Kpi, ...]] = field(default_factory=dict)

    def kpi(self, name: str, group: str | None = None) -> Kpi:
        """The KPI of this name, in total or in one group (KeyError when it is not there)."""
        found = self.kpis if group is None else self.groups[group]
        for kpi in found:
            if kpi.name == name:
                return kpi
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "group_by": self.group_by,
            "kpis": [kpi.as_dict() for kpi in self.kpis],
            "groups": {
                group: [kpi.as_dict() for kpi in kpis] for group, kpis in self.groups.items()
            },
        }


def compute_kpis(
    source: UnitOfWork | Session,
    start: datetime,
    end: datetime,
    *,
    group_by: str | None = None,
) -> KpiReport:
    """Every KPI of KPIS.md over ``[start, end)``, in total and (``group_by``) per group.

    Reads narrow columns in a few grouped queries and works out the rest in plain Python, so a
    year of history takes seconds on SQLite and PostgreSQL alike.
    """
    _check_period(start, end)
    if group_by is not None and group_by not in GROUPINGS:
        raise InvalidValue("group_by", group_by, f"not one of {', '.join(GROUPINGS)}")
    if isinstance(source, UnitOfWork):
        with source:
            return _report(source.session, start, end, group_by)
    return _report(source, start, end, group_by)


EARLIEST_YEAR, LATEST_YEAR = 1900, 2199
"""A period within these years: enough for any history, and far from the calendar's edges, where
a day before the start or a change of zone would fall off ``datetime``'s range."""


def _check_period(start: datetime, end: datetime) -> None:
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None:
            raise InvalidValue(name, moment, "must be timezone-aware")
        if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
            raise InvalidValue(
                name, moment.isoformat(), f"must fall in the years {EARLIEST_YEAR}-{LATEST_YEAR}"
            )
    if start >= end:
        raise InvalidValue("start", start.isoformat(), f"must be before end ({end.isoformat()})")


def _report(session: Session, start: datetime, end: datetime, group_by: str | None) -> KpiReport:
    measures = _measures(_Period(session, start, end))
    kpis = tuple(measure.compute(measure.facts) for measure in measures)
    groups: dict[str, tuple[Kpi, ...]] = {}
    if group_by is not None:
        groups = _grouped(measures, group_by)
    return KpiReport(start, end, group_by, kpis, groups)


# --- grouping ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Measure:
    """One KPI: the facts it is computed from and how."""

    name: str
    facts: Sequence[Any]
    compute: Callable[[Sequence[Any]], Kpi]


def _grouped(measures: Sequence[_Measure], group_by: str) -> dict[str, tuple[Kpi, ...]]:
    """Each KPI with the dimension, computed over each group's facts; a group lacking a KPI's
    events gets that KPI over zero events (value None)."""
    grouped = [m for m in measures if group_by in DIMENSIONS[m.name]]
    parts = [_partition(m.facts, group_by) for m in grouped]
    keys = sorted({key for part in parts for key in part})
    return {
        key: tuple(m.compute(part.get(key, [])) for m, part in zip(grouped, parts, strict=True))
        for key in keys
    }


def _partition(facts: Iterable[Any], dimension: str) -> dict[str, list[Any]]:
    parts: dict[str, list[Any]] = defaultdict(list)
    for fact in facts:
        key = fact.dims.get(dimension)
        parts[NO_GROUP if key is None else str(key)].append(fact)
    return parts


def _measures(period: _Period) -> list[_Measure]:
    lines = _ordered_lines(period)
    orders = _orders(lines)
    exceptions = _exceptions(period)
    return [
        _Measure("line_fill_rate", lines, lambda f: _line_fill_rate(f, period)),
        _Measure("unit_fill_rate", lines, lambda f: _unit_fill_rate(f, period)),
        _Measure("on_time_shipment", lines, lambda f: _on_time_shipment(f, period)),
        _Measure("otif", lines, lambda f: _otif(f, period)),
        _Measure("order_otif", orders, lambda f: _order_otif(f, period)),
        _Measure("order_cycle_time", orders, lambda f: _order_cycle_time(f, period)),
        _Measure("backorder_aging", _backorders(period), _backorder_aging),
        _Measure("freight_variance", _shipments(period), _freight_variance),
        _Measure("inventory_turns", _stock_values(period), lambda f: _turns(f, period)),
        _Measure("days_of_supply", _supplies(period), _days_of_supply),
        _Measure("inventory_accuracy", _counts(period), _accuracy),
        _Measure("return_cycle_time", _returns(period), _return_cycle_time),
        _Measure("exception_resolution_time", exceptions, _resolution_time),
        _Measure("alert_precision", [e for e in exceptions if e.scored], _alert_precision),
    ]


# --- the period and its clock ------------------------------------------------------------------


class _Period:
    """The session, the period's bounds and the locations' clocks."""

    def __init__(self, session: Session, start: datetime, end: datetime) -> None:
        self.session = session
        self.start = start.astimezone(UTC)
        self.end = end.astimezone(UTC)
        self.days = (self.end - self.start).total_seconds() / 86400
        zones = session.execute(select(Location.id, Location.timezone)).all()
        self._zones = {loc: ZoneInfo(zone or "UTC") for loc, zone in zones}

    def contains(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= moment < self.end

    def known(self, moment: datetime | None) -> bool:
        """The moment had happened by the end of the period."""
        return moment is not None and moment < self.end

    def local_day(self, moment: datetime, location_id: str | None) -> date:
        zone = self._zones.get(location_id) if location_id else None
        return moment.astimezone(zone).date() if zone is not None else moment.date()

    def day_in_period(self, day: date, location_id: str | None) -> bool:
        zone = self._zones.get(location_id) if location_id else None
        return self.contains(datetime.combine(day, time(0), zone or UTC))

    def rows(self, statement: Executable) -> Sequence[Any]:
        return self.session.execute(statement).all()


# --- ordered lines: what the line-level and order-level KPIs judge ------------------------------


@dataclass(frozen=True)
class _Piece:
    """One order_lines row of an ordered line, with its shipment milestones."""

    line_id: int
    quantity: int
    location_id: str | None
    shipment_id: int | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class _OrderedLine:
    order_id: int
    entered_at: datetime
    location_id: str | None
    due_quantity: int
    promised_ship: date | None
    promised_delivery: date | None
    ever_backordered: bool
    pieces: tuple[_Piece, ...]
    dims: Mapping[str, str | None]

    def first(self, when: Callable[[_Piece], datetime | None]) -> datetime | None:
        moments = [moment for piece in self.pieces if (moment := when(piece)) is not None]
        return min(moments, default=None)

    @property
    def first_shipped_at(self) -> datetime | None:
        return self.first(lambda piece: piece.shipped_at)

    @property
    def first_delivered_at(self) -> datetime | None:
        return self.first(lambda piece: piece.delivered_at)

    @property
    def fully_delivered_at(self) -> datetime | None:
        """When the last due unit was delivered; None while any is not."""
        moments = [piece.delivered_at for piece in self.pieces]
        if not moments or any(moment is None for moment in moments):
            return None
        return max(moment for moment in moments if moment is not None)


def _candidate_orders(period: _Period) -> Any:
    """Orders with a promise date near the period or a shipment milestone in it: every order a
    line-level or order-level KPI of the period can judge (a superset; Python decides)."""
    first_day = period.start.date() - timedelta(days=1)
    last_day = period.end.date() + timedelta(days=1)
    due = (
        select(OrderLine.order_id)
        .join(LinePromise, LinePromise.line_id == OrderLine.id)
        .where(LinePromise.promised_ship_date.between(first_day, last_day))
    )
    moved = (
        select(Shipment.order_id)
        .join(ShipmentEvent, ShipmentEvent.shipment_id == Shipment.id)
        .where(
            ShipmentEvent.event_type.in_(("shipped", "delivered")),
            ShipmentEvent.occurred_at >= period.start,
            ShipmentEvent.occurred_at < period.end,
        )
    )
    return union(due, moved).subquery()


def _ordered_lines(period: _Period) -> list[_OrderedLine]:
    orders = select(_candidate_orders(period).c.order_id)
    rows = period.rows(
        select(
            OrderLine.id,
            OrderLine.order_id,
            OrderLine.parent_line_id,
            OrderLine.quantity,
            OrderLine.location_id,
            SalesOrder.entered_at,
            SalesOrder.channel,
            Customer.tier,
            Lane.carrier_id,
        )
        .join(SalesOrder, SalesOrder.id == OrderLine.order_id)
        .join(Customer, Customer.id == SalesOrder.customer_id)
        .outerjoin(Lane, Lane.id == OrderLine.lane_id)
        .where(OrderLine.order_id.in_(orders))
    )
    promises = _first_promises(period, orders)
    milestones = _milestones(period, orders)
    changes = _line_changes(period, orders)
    parent = {row.id: row.parent_line_id for row in rows}
    families: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        families[_root(row.id, parent)].append(row)
    lines = []
    for root_id, members in families.items():
        line = _ordered_line(root_id, members, promises, milestones, changes)
        if line is not None:
            lines.append(line)
    return lines


def _root(line_id: int, parent: Mapping[int, int | None]) -> int:
    while (up := parent.get(line_id)) is not None:
        line_id = up
    return line_id


def _first_promises(period: _Period, orders: Any) -> dict[int, tuple[date, date, datetime]]:
    """Each line's own first promise: (ship, delivery, decided at)."""
    first: dict[int, tuple[date, date, datetime]] = {}
    for line_id, ship, delivery, decided in period.rows(
        select(
            LinePromise.line_id,
            LinePromise.promised_ship_date,
            LinePromise.promised_delivery_date,
            LinePromise.decided_at,
        )
        .join(OrderLine, OrderLine.id == LinePromise.line_id)
        .where(OrderLine.order_id.in_(orders))
        .order_by(LinePromise.id)
    ):
        first.setdefault(line_id, (ship, delivery, decided))
    return first


def _milestones(period: _Period, orders: Any) -> dict[int, dict[str, Any]]:
    """line id -> its shipment, and the moments it was shipped and delivered (before end)."""
    found: dict[int, dict[str, Any]] = defaultdict(dict)
    for line_id, shipment_id, event_type, occurred in period.rows(
        select(
            ShipmentLine.line_id,
            ShipmentLine.shipment_id,
            ShipmentEvent.event_type,
            ShipmentEvent.occurred_at,
        )
        .join(Shipment, Shipment.id == ShipmentLine.shipment_id)
        .join(ShipmentEvent, ShipmentEvent.shipment_id == ShipmentLine.shipment_id)
        .where(
            Shipment.order_id.in_(orders),
            ShipmentEvent.event_type.in_(("shipped", "delivered")),
            ShipmentEvent.occurred_at < period.end,
        )
    ):
        found[line_id]["shipment_id"] = shipment_id
        found[line_id][f"{event_type}_at"] = occurred
    return found


def _line_changes(period: _Period, orders: Any) -> dict[int, set[str]]:
    """line id -> the states among backordered and cancelled it entered before end."""
    entered: dict[int, set[str]] = defaultdict(set)
    for line_id, state in period.rows(
        select(LineStateChange.line_id, LineStateChange.to_state)
        .join(OrderLine, OrderLine.id == LineStateChange.line_id)
        .where(
            OrderLine.order_id.in_(orders),
            LineStateChange.to_state.in_((LineState.BACKORDERED, LineState.CANCELLED)),
            LineStateChange.occurred_at < period.end,
        )
    ):
        entered[line_id].add(str(state))
    return entered


def _ordered_line(
    root_id: int,
    members: Sequence[Any],
    promises: Mapping[int, tuple[date, date, datetime]],
    milestones: Mapping[int, Mapping[str, Any]],
    changes: Mapping[int, set[str]],
) -> _OrderedLine | None:
    """The ordered line of a family of pieces; None when it was cancelled whole."""
    due = [m for m in members if LineState.CANCELLED not in changes.get(m.id, ())]
    if not due:
        return None
    root = next(m for m in members if m.id == root_id)
    ship, delivery = _judged_promise(root_id, members, promises)
    pieces = tuple(_Piece(m.id, m.quantity, m.location_id, **milestones.get(m.id, {})) for m in due)
    return _OrderedLine(
        order_id=root.order_id,
        entered_at=root.entered_at,
        location_id=root.location_id,
        due_quantity=sum(piece.quantity for piece in pieces),
        promised_ship=ship,
        promised_delivery=delivery,
        ever_backordered=any(LineState.BACKORDERED in changes.get(m.id, ()) for m in members),
        pieces=pieces,
        dims={
            "location": root.location_id,
            "customer_tier": root.tier,
            "channel": root.channel,
            "carrier": root.carrier_id,
        },
    )


def _judged_promise(
    root_id: int, members: Sequence[Any], promises: Mapping[int, tuple[date, date, datetime]]
) -> tuple[date | None, date | None]:
    """The latest ship and delivery dates promised for the pieces in the ordered line's first
    promise decision (the root's first promise and any piece promised in the same act)."""
    first = promises.get(root_id)
    if first is None:
        return None, None
    decided = first[2]
    same_act = [p for m in members if (p := promises.get(m.id)) is not None and p[2] == decided]
    return max(p[0] for p in same_act), max(p[1] for p in same_act)


def _due(lines: Sequence[_OrderedLine], period: _Period) -> list[_OrderedLine]:
    return [
        line
        for line in lines
        if line.promised_ship is not None
        and period.day_in_period(line.promised_ship, line.location_id)
    ]


def _filled_from_stock(line: _OrderedLine) -> bool:
    """Shipped complete from stock at the promised location in its first shipment."""
    first_at = line.first_shipped_at
    if line.ever_backordered or first_at is None:
        return False
    first = [piece for piece in line.pieces if piece.shipped_at == first_at]
    at_promised = all(piece.location_id == line.location_id for piece in first)
    return at_promised and sum(piece.quantity for piece in first) == line.due_quantity


def _line_fill_rate(lines: Sequence[_OrderedLine], period: _Period) -> Kpi:
    due = _due(lines, period)
    return _share("line_fill_rate", sum(_filled_from_stock(line) for line in due), len(due))


def _unit_fill_rate(lines: Sequence[_OrderedLine], period: _Period) -> Kpi:
    due = _due(lines, period)
    shipped = sum(
        piece.quantity
        for line in due
        for piece in line.pieces
        if piece.shipped_at is not None
        and line.promised_ship is not None
        and period.local_day(piece.shipped_at, piece.location_id) <= line.promised_ship
    )
    return _share("unit_fill_rate", shipped, sum(line.due_quantity for line in due))


def _on_time_shipment(lines: Sequence[_OrderedLine], period: _Period) -> Kpi:
    shipped = [
        line
        for line in lines
        if line.promised_ship is not None and period.contains(line.first_shipped_at)
    ]
    on_time = sum(_first_on_time(line, period, "shipped") for line in shipped)
    return _share("on_time_shipment", on_time, len(shipped))


def _first_on_time(line: _OrderedLine, period: _Period, milestone: str) -> bool:
    """The line's first shipment (or delivery) happened on or before its promised date."""
    attribute = f"{milestone}_at"
    promised = line.promised_ship if milestone == "shipped" else line.promised_delivery
    first_at = line.first(lambda piece: getattr(piece, attribute))
    if first_at is None or promised is None:
        return False
    first = next(piece for piece in line.pieces if getattr(piece, attribute) == first_at)
    return period.local_day(first_at, first.location_id) <= promised


def _in_full(line: _OrderedLine, period: _Period) -> bool:
    """The whole due quantity arrived on the local day of the line's first delivery."""
    first_at = line.first_delivered_at
    if first_at is None:
        return False
    first = next(piece for piece in line.pieces if piece.delivered_at == first_at)
    day = period.local_day(first_at, first.location_id)
    arrived = sum(
        piece.quantity
        for piece in line.pieces
        if piece.delivered_at is not None
        and period.local_day(piece.delivered_at, piece.location_id) <= day
    )
    return arrived == line.due_quantity


def _is_otif(line: _OrderedLine, period: _Period) -> bool:
    return _first_on_time(line, period, "delivered") and _in_full(line, period)


def _otif(lines: Sequence[_OrderedLine], period: _Period) -> Kpi:
    delivered = [
        line
        for line in lines
        if line.promised_delivery is not None and period.contains(line.first_delivered_at)
    ]
    judged = [
        (_first_on_time(line, period, "delivered"), _in_full(line, period)) for line in delivered
    ]
    otif = sum(on_time and in_full for on_time, in_full in judged)
    on_time, in_full = sum(j[0] for j in judged), sum(j[1] for j in judged)
    return _share("otif", otif, len(delivered), on_time=on_time, in_full=in_full)


# --- orders --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Order:
    entered_at: datetime
    lines: tuple[_OrderedLine, ...]
    dims: Mapping[str, str | None]

    @property
    def judged_at(self) -> datetime | None:
        """The last of its lines' first deliveries; None while a line has not arrived."""
        firsts = [line.first_delivered_at for line in self.lines]
        if any(
            moment is None or line.promised_delivery is None
            for moment, line in zip(firsts, self.lines, strict=True)
        ):
            return None
        return max(moment for moment in firsts if moment is not None)

    @property
    def completed_at(self) -> datetime | None:
        """When its last due unit was delivered; None while any is not."""
        moments = [line.fully_delivered_at for line in self.lines]
        if any(moment is None for moment in moments):
            return None
        return max(moment for moment in moments if moment is not None)


def _orders(lines: Sequence[_OrderedLine]) -> list[_Order]:
    by_order: dict[int, list[_OrderedLine]] = defaultdict(list)
    for line in lines:
        by_order[line.order_id].append(line)
    return [
        _Order(
            entered_at=own[0].entered_at,
            lines=tuple(own),
            dims={key: own[0].dims[key] for key in _ORDER},
        )
        for own in by_order.values()
    ]


def _order_otif(orders: Sequence[_Order], period: _Period) -> Kpi:
    judged = [order for order in orders if period.contains(order.judged_at)]
    otif = sum(all(_is_otif(line, period) for line in order.lines) for order in judged)
    return _share("order_otif", otif, len(judged))


def _order_cycle_time(orders: Sequence[_Order], period: _Period) -> Kpi:
    days = [
        (done - order.entered_at).total_seconds() / 86400
        for order in orders
        if (done := order.completed_at) is not None and period.contains(done)
    ]
    return _distribution("order_cycle_time", days, "days")


# --- backorders ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Backorder:
    age_days: float
    dims: Mapping[str, str | None]


def _backorders(period: _Period) -> list[_Backorder]:
    """Lines backordered at end: their last state change before end went to backordered."""
    end = period.end
    ever = select(LineStateChange.line_id).where(
        LineStateChange.to_state == LineState.BACKORDERED, LineStateChange.occurred_at < end
    )
    last = (
        select(LineStateChange.line_id, func.max(LineStateChange.id).label("last_id"))
        .where(LineStateChange.occurred_at < end, LineStateChange.line_id.in_(ever))
        .group_by(LineStateChange.line_id)
        .subquery()
    )
    rows = period.rows(
        select(
            LineStateChange.occurred_at,
            OrderLine.location_id,
            Customer.tier,
            SalesOrder.channel,
            Lane.carrier_id,
        )
        .join(last, last.c.last_id == LineStateChange.id)
        .join(OrderLine, OrderLine.id == LineStateChange.line_id)
        .join(SalesOrder, SalesOrder.id == OrderLine.order_id)
        .join(Customer, Customer.id == SalesOrder.customer_id)
        .outerjoin(Lane, Lane.id == OrderLine.lane_id)
        .where(LineStateChange.to_state == LineState.BACKORDERED)
    )
    return [
        _Backorder(
            (end - row.occurred_at).total_seconds() / 86400,
            {
                "location": row.location_id,
                "customer_tier": row.tier,
                "channel": row.channel,
                "carrier": row.carrier_id,
            },
        )
        for row in rows
    ]


def _backorder_aging(backorders: Sequence[_Backorder]) -> Kpi:
    ages = [backorder.age_days for backorder in backorders]
    buckets = {f"lines_{label}_days": 0 for label, _ in AGE_BUCKETS}
    for age in ages:
        buckets[f"lines_{_bucket(age)}_days"] += 1
    return Kpi(
        name="backorder_aging",
        value=_median(ages),
        unit="days",
        numerator=None,
        denominator=len(ages),
        definition=DEFINITIONS["backorder_aging"],
        details={**buckets, "p90_days": _percentile(ages, 0.9)},
    )


def _bucket(age_days: float) -> str:
    whole = math.floor(age_days)
    for label, upper in AGE_BUCKETS:
        if upper is None or whole <= upper:
            return label
    raise AssertionError("the last bucket is open")


# --- freight -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Freight:
    planned: Decimal
    actual: Decimal | None
    expedited: bool
    dims: Mapping[str, str | None]


def _shipments(period: _Period) -> list[_Freight]:
    rows = period.rows(
        select(
            Shipment.planned_freight_cost,
            Shipment.actual_freight_cost,
            Shipment.expedited,
            Shipment.location_id,
            Customer.tier,
            SalesOrder.channel,
            Lane.carrier_id,
        )
        .join(ShipmentEvent, ShipmentEvent.shipment_id == Shipment.id)
        .join(SalesOrder, SalesOrder.id == Shipment.order_id)
        .join(Customer, Customer.id == SalesOrder.customer_id)
        .outerjoin(Lane, Lane.id == Shipment.lane_id)
        .where(
            ShipmentEvent.event_type == "delivered",
            ShipmentEvent.occurred_at >= period.start,
            ShipmentEvent.occurred_at < period.end,
        )
    )
    return [
        _Freight(
            Decimal(row.planned_freight_cost),
            None if row.actual_freight_cost is None else Decimal(row.actual_freight_cost),
            bool(row.expedited),
            {
                "location": row.location_id,
                "customer_tier": row.tier,
                "channel": row.channel,
                "carrier": row.carrier_id,
            },
        )
        for row in rows
    ]


def _freight_variance(shipments: Sequence[_Freight]) -> Kpi:
    costed = [s for s in shipments if s.actual is not None]
    standard = _freight_sums([s for s in costed if not s.expedited])
    expedited = _freight_sums([s for s in costed if s.expedited])
    variance = standard["actual"] - standard["planned"]
    express_variance = expedited["actual"] - expedited["planned"]
    return Kpi(
        name="freight_variance",
        value=_ratio(variance, standard["planned"]) if standard["count"] else None,
        unit="share",
        numerator=float(variance),
        denominator=float(standard["planned"]),
        definition=DEFINITIONS["freight_variance"],
        details={
            "shipments": int(standard["count"]),
            "planned_cost": float(standard["planned"]),
            "actual_cost": float(standard["actual"]),
            "expedited_shipments": int(expedited["count"]),
            "expedited_planned_cost": float(expedited["planned"]),
            "expedited_actual_cost": float(expedited["actual"]),
            "expedited_variance_cost": float(express_variance),
            "expedited_variance": (
                _ratio(express_variance, expedited["planned"]) if expedited["count"] else None
            ),
            "shipments_without_actual_cost": len(shipments) - len(costed),
        },
    )


def _freight_sums(shipments: Sequence[_Freight]) -> dict[str, Decimal]:
    return {
        "count": Decimal(len(shipments)),
        "planned": sum((s.planned for s in shipments), Decimal(0)),
        "actual": sum((s.actual or Decimal(0) for s in shipments), Decimal(0)),
    }


# --- stock ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StockValue:
    """One location's cost of goods shipped in the period and its time-weighted stock value."""

    cost_of_goods_shipped: float
    average_value: float
    dims: Mapping[str, str | None]


_ON_HAND_VALUE = InventoryMovement.quantity * Product.unit_cost


def _stock_values(period: _Period) -> list[_StockValue]:
    on_hand = (
        select(InventoryMovement.location_id)
        .join(Product, Product.sku == InventoryMovement.sku)
        .where(InventoryMovement.bucket == "on_hand")
    )
    opening = dict(
        period.rows(
            on_hand.add_columns(func.sum(_ON_HAND_VALUE))
            .where(InventoryMovement.occurred_at < period.start)
            .group_by(InventoryMovement.location_id)
        )
    )
    in_period = on_hand.where(
        InventoryMovement.occurred_at >= period.start, InventoryMovement.occurred_at < period.end
    )
    shipped = dict(
        period.rows(
            in_period.add_columns(-func.sum(_ON_HAND_VALUE))
            .where(InventoryMovement.kind == "shipment")
            .group_by(InventoryMovement.location_id)
        )
    )
    weighted: dict[str, float] = defaultdict(float)
    length = period.end - period.start
    for location_id, occurred, value in period.rows(
        in_period.add_columns(InventoryMovement.occurred_at, _ON_HAND_VALUE)
    ):
        weighted[location_id] += float(value) * ((period.end - occurred) / length)
    locations = set(opening) | set(shipped) | set(weighted)
    return [
        _StockValue(
            float(shipped.get(loc) or 0),
            float(opening.get(loc) or 0) + weighted.get(loc, 0.0),
            {"location": loc},
        )
        for loc in sorted(locations)
    ]


def _turns(values: Sequence[_StockValue], period: _Period) -> Kpi:
    annualised = sum(v.cost_of_goods_shipped for v in values) * DAYS_PER_YEAR / period.days
    average = sum(v.average_value for v in values)
    return Kpi(
        name="inventory_turns",
        value=_ratio(annualised, average) if average > 0 else None,
        unit="turns/year",
        numerator=annualised,
        denominator=average,
        definition=DEFINITIONS["inventory_turns"],
        details={
            "cost_of_goods_shipped": sum(v.cost_of_goods_shipped for v in values),
            "period_days": period.days,
        },
    )


@dataclass(frozen=True)
class _Supply:
    on_hand: int
    daily_demand: float
    dims: Mapping[str, str | None]


def _supplies(period: _Period) -> list[_Supply]:
    """Every SKU x location with stock or demand at end."""
    on_hand = dict(
        ((sku, loc), int(units))
        for sku, loc, units in period.rows(
            select(
                InventoryMovement.sku,
                InventoryMovement.location_id,
                func.sum(InventoryMovement.quantity),
            )
            .where(
                InventoryMovement.bucket == "on_hand", InventoryMovement.occurred_at < period.end
            )
            .group_by(InventoryMovement.sku, InventoryMovement.location_id)
        )
    )
    since = period.end - timedelta(days=DEMAND_WINDOW_DAYS)
    demand = dict(
        ((sku, loc), int(units))
        for sku, loc, units in period.rows(
            select(OrderLine.sku, OrderLine.location_id, func.sum(OrderLine.quantity))
            .where(
                OrderLine.entered_at >= since,
                OrderLine.entered_at < period.end,
                OrderLine.location_id.is_not(None),
                OrderLine.state != LineState.CANCELLED,
            )
            .group_by(OrderLine.sku, OrderLine.location_id)
        )
    )
    pairs = {pair for pair, units in on_hand.items() if units > 0} | set(demand)
    return [
        _Supply(
            on_hand.get(pair, 0),
            demand.get(pair, 0) / DEMAND_WINDOW_DAYS,
            {"location": pair[1]},
        )
        for pair in sorted(pairs)
    ]


def _days_of_supply(supplies: Sequence[_Supply]) -> Kpi:
    days = [max(s.on_hand, 0) / s.daily_demand for s in supplies if s.daily_demand > 0]
    return Kpi(
        name="days_of_supply",
        value=_median(days),
        unit="days",
        numerator=None,
        denominator=len(days),
        definition=DEFINITIONS["days_of_supply"],
        details={
            "p10_days": _percentile(days, 0.1),
            "p90_days": _percentile(days, 0.9),
            "pairs_with_demand": len(days),
            "pairs_stocked_out": sum(1 for d in days if d == 0),
            "pairs_without_demand": sum(1 for s in supplies if s.daily_demand == 0),
        },
    )


@dataclass(frozen=True)
class _Count:
    within_tolerance: bool
    dims: Mapping[str, str | None]


def _counts(period: _Period) -> list[_Count]:
    rows = period.rows(
        select(
            CycleCount.location_id, CycleCount.system_quantity, CycleCount.counted_quantity
        ).where(
            CycleCount.counted_at >= period.start,
            CycleCount.counted_at < period.end,
            or_(CycleCount.reason.is_(None), CycleCount.reason != OPENING_BALANCE_REASON),
        )
    )
    return [
        _Count(
            abs(counted - system) <= COUNT_TOLERANCE_SHARE * max(system, 0),
            {"location": location_id},
        )
        for location_id, system, counted in rows
    ]


def _accuracy(counts: Sequence[_Count]) -> Kpi:
    return _share("inventory_accuracy", sum(c.within_tolerance for c in counts), len(counts))


# --- returns and exceptions ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Duration:
    amount: float
    dims: Mapping[str, str | None]


def _returns(period: _Period) -> list[_Duration]:
    rows = period.rows(
        select(
            ReturnOrder.authorised_at,
            ReturnOrder.disposed_at,
            ReturnOrder.location_id,
            Customer.tier,
            SalesOrder.channel,
        )
        .join(OrderLine, OrderLine.id == ReturnOrder.line_id)
        .join(SalesOrder, SalesOrder.id == OrderLine.order_id)
        .join(Customer, Customer.id == SalesOrder.customer_id)
        .where(
            ReturnOrder.status.in_((ReturnStatus.RESTOCKED, ReturnStatus.SCRAPPED)),
            ReturnOrder.disposed_at >= period.start,
            ReturnOrder.disposed_at < period.end,
        )
    )
    return [
        _Duration(
            (row.disposed_at - row.authorised_at).total_seconds() / 86400,
            {"location": row.location_id, "customer_tier": row.tier, "channel": row.channel},
        )
        for row in rows
    ]


def _return_cycle_time(returns: Sequence[_Duration]) -> Kpi:
    return _distribution("return_cycle_time", [r.amount for r in returns], "days")


@dataclass(frozen=True)
class _Resolved:
    hours: float
    within_sla: bool
    scored: bool
    false_alarm: bool
    dims: Mapping[str, str | None]


def _exceptions(period: _Period) -> list[_Resolved]:
    rows = period.rows(
        select(
            ExceptionCase.opened_at,
            ExceptionCase.resolved_at,
            ExceptionCase.sla_due_at,
            ExceptionCase.score,
            ExceptionCase.resolution,
            ExceptionCase.type,
            ExceptionCase.owner_role,
            ExceptionCase.location_id,
            Customer.tier,
            SalesOrder.channel,
        )
        .outerjoin(Customer, Customer.id == ExceptionCase.customer_id)
        .outerjoin(SalesOrder, SalesOrder.id == ExceptionCase.order_id)
        .where(
            and_(ExceptionCase.resolved_at >= period.start, ExceptionCase.resolved_at < period.end)
        )
    )
    return [
        _Resolved(
            hours=(row.resolved_at - row.opened_at).total_seconds() / 3600,
            within_sla=row.resolved_at <= row.sla_due_at,
            scored=row.score is not None,
            false_alarm=is_false_alarm(row.resolution),
            dims={
                "location": row.location_id,
                "customer_tier": row.tier,
                "channel": row.channel,
                "exception_type": row.type,
                "owner_role": row.owner_role,
            },
        )
        for row in rows
    ]


def is_false_alarm(resolution: str | None) -> bool:
    """The resolution convention alert precision relies on: the text starts with
    ``false_alarm`` or ``false alarm`` (any case, leading spaces ignored)."""
    return (resolution or "").strip().lower().startswith(FALSE_ALARM_PREFIXES)


def _resolution_time(cases: Sequence[_Resolved]) -> Kpi:
    kpi = _distribution("exception_resolution_time", [c.hours for c in cases], "hours")
    within = sum(c.within_sla for c in cases)
    details = {**kpi.details, "resolved_within_sla": within, "within_sla_share": None}
    if cases:
        details["within_sla_share"] = within / len(cases)
    return replace(kpi, details=details)


def _alert_precision(cases: Sequence[_Resolved]) -> Kpi:
    return _share("alert_precision", sum(not c.false_alarm for c in cases), len(cases))


# --- arithmetic ----------------------------------------------------------------------------------


def _share(name: str, numerator: int, denominator: int, **details: Number | None) -> Kpi:
    return Kpi(
        name=name,
        value=numerator / denominator if denominator else None,
        unit="share",
        numerator=numerator,
        denominator=denominator,
        definition=DEFINITIONS[name],
        details=details,
    )


def _distribution(name: str, amounts: Sequence[float], unit: str) -> Kpi:
    """A duration KPI: the median as value, the p90 beside it, over ``len(amounts)`` events."""
    return Kpi(
        name=name,
        value=_median(amounts),
        unit=unit,
        numerator=None,
        denominator=len(amounts),
        definition=DEFINITIONS[name],
        details={f"p90_{unit}": _percentile(amounts, 0.9)},
    )


def _ratio(numerator: Decimal | float, denominator: Decimal | float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _median(values: Sequence[float]) -> float | None:
    return _percentile(values, 0.5)


def _percentile(values: Sequence[float], share: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
