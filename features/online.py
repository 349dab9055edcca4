"""Late-shipment features for one order at entry, from the current database state: the online
twin of :mod:`features.late_shipment`.

Offline and online cannot drift because they share everything but the way totals are looked up:

* **The same definitions.** The event streams (what a shipped line, a delivered line, a pick
  backlog move, a stock move, a receipt is, and when the ERP knew it) come from
  :func:`features.late_shipment.event_streams`, and every feature value from
  :func:`features.late_shipment.feature_columns`, with the same shrinkage strengths, windows and
  calendar helpers. Only the per-key totals before ``t`` are found differently: offline by as-of
  searches over whole frames, online by :class:`features.stream_index.StreamIndex` (events kept
  sorted by key in memory), which returns the same exact integer totals.
* **The same line as captured.** A draft order carries what capture decided (state, fulfilling
  location, lane, promise, price), which serving takes from erp_core's ATP. An existing line "as
  of its entry" is the offline path's reconstruction of it (:func:`drafts_from_entry_rows`), so
  the parity test compares the feature computation and nothing else.

Why an index in memory rather than SQL point queries: the on-time rates need each shipment's
local date in its location's time zone and the first promise it is judged by, and the priors need
every event before ``t``; in SQL on SQLite that is a scan per feature, far from the 5 ms budget
for a 10-line order. The index answers each (key, window) in two binary searches. Its cost is
memory (the streams: a few int64 arrays per event) and freshness: :meth:`OnlineFeatures.refresh`
reads what the append-only tables gained since the last read (by id) and merges it in; between
refreshes, events written since are not counted. Ids grow in commit order on SQLite; on
PostgreSQL a transaction can commit a lower id after a higher one was read, which a tail by id
would miss (see :func:`features.history.load_history_since`).

Master data is read as it is now, as offline; so are the carriers' service alerts (few: read whole
on every refresh), each counted only from its announcement on, as offline.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from erp_core.db.engine import make_engine
from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue, NotFound
from erp_core.domain.states import LineState
from features import calendar as cal
from features.asof import WindowTotals
from features.history import History, load_history_since, watermarks
from features.late_shipment import (
    GLOBAL_PRIORS,
    WINDOWS_DAYS,
    Aggregates,
    EventStream,
    LaneTable,
    Rows,
    assemble_aggregates,
    event_streams,
    feature_columns,
    row_keys,
    to_micros,
    window_micros,
)
from features.registry import LATE_SHIPMENT
from features.stream_index import Key, StreamIndex

AT_LOCATION_STATES = (LineState.ALLOCATED, LineState.BACKORDERED)
"""States in which capture gave the line a fulfilling location (credit hold gives none)."""


@dataclass(frozen=True)
class DraftLine:
    """One line as capture decided it (ATP's answer), before anything else happened to it."""

    line_no: int
    sku: str
    quantity: int
    unit_price: float
    state: str
    """``allocated``, ``backordered`` or ``credit_hold``."""
    location_id: str | None = None
    lane_id: int | None = None
    promised_ship_date: date | None = None
    promised_delivery_date: date | None = None
    parent_line_no: int | None = None
    """The line this one was split from at capture (its remainder), else None."""
    expedite_asked: bool = False
    price_approval_pending: bool = False
    """Capture opened a discount approval for the line's price (finance decides it later)."""
    expected_ready_on: date | None = None
    """A backordered line's expected ready date, as available-to-promise gave it."""


@dataclass(frozen=True)
class DraftOrder:
    """An order at its entry moment: who orders, where it ships, and its lines as captured."""

    customer_id: str
    channel: str
    ship_region: str
    entered_at: datetime | int
    """A time-zone aware datetime, or int64 microseconds since the epoch (UTC)."""
    lines: tuple[DraftLine, ...]
    order_id: int = 0


@dataclass(frozen=True)
class _Master:
    """Master data as it is now, as dictionaries: a draft's lookups are a few dict reads."""

    customers: dict[Hashable, dict[str, Any]]
    products: dict[Hashable, dict[str, Any]]
    locations: dict[Hashable, dict[str, Any]]
    lanes: LaneTable
    """As :func:`features.late_shipment.feature_columns` reads it."""
    po_lines: pd.DataFrame
    """Purchase-order lines as scheduled receipts (read whole: their receipts change them)."""
    alerts: pd.DataFrame
    """The carriers' service alerts (read whole on every refresh: a few per region and month)."""
    po_lines_of_sku: dict[Hashable, np.ndarray]
    """Positions in ``po_lines`` of each SKU's lines: a draft's lookups read only its SKUs'."""
    alerts_of_region: dict[Hashable, np.ndarray]
    """Positions in ``alerts`` of each ship region's: an alert counts only in its own region."""
    carrier_of_lane: dict[Hashable, Any]
    """``lanes``' carrier of each lane id (a dict read per draft line, not a Series lookup)."""
    no_alerts: pd.DataFrame
    """``alerts`` without a row (what a draft with no alert in force is handed)."""
    alert_spans: tuple[np.ndarray, np.ndarray]
    """When each alert counts: from its start (and strictly after its announcement) to its end,
    as :func:`features.late_shipment.alert_features` reads it; int64 micros, NaT-free."""
    receipts: _Receipts
    """``po_lines``' columns a backorder's covering receipt is matched on, as arrays."""

    @classmethod
    def of(cls, history: History) -> _Master:
        po_lines, alerts = history.po_lines, history.alerts
        lanes = history.lanes
        return cls(
            customers=_records(history.customers, "customer_id"),
            products=_records(history.products, "sku"),
            locations=_records(history.locations, "location_id"),
            lanes=LaneTable.of(lanes),
            po_lines=po_lines,
            alerts=alerts,
            po_lines_of_sku=_positions_by(po_lines, "sku"),
            alerts_of_region={
                region: np.sort(at) for region, at in _positions_by(alerts, "region").items()
            },
            carrier_of_lane=dict(zip(lanes["lane_id"], lanes["carrier_id"], strict=True)),
            no_alerts=alerts.iloc[:0],
            alert_spans=_alert_spans(alerts),
            receipts=_Receipts.of(po_lines),
        )

    def alerts_for(self, regions: np.ndarray, t: np.ndarray) -> pd.DataFrame:
        """The alerts that can count for rows of one ship region entered at ``t``: the region's
        own that are in force at some of those moments (an alert elsewhere or at another time
        counts for none of them). Rows of several regions get them all."""
        distinct = set(regions.tolist())
        if len(distinct) != 1 or not len(t):
            return self.alerts
        (region,) = distinct
        if not isinstance(region, str):
            return self.alerts
        at = self.alerts_of_region.get(region, np.zeros(0, dtype=np.intp))
        lo, hi = self.alert_spans
        at = at[(lo[at] <= t.max()) & (hi[at] > t.min())]
        return self.alerts.iloc[at] if len(at) else self.no_alerts


@dataclass(frozen=True)
class _Receipts:
    """The purchase-order lines' columns :func:`features.late_shipment.covering_receipt_open`
    matches and compares, as plain arrays (positions as in ``po_lines``), so that one draft's
    few backorders are matched without building and merging frames."""

    location_id: np.ndarray
    expected_date: np.ndarray
    placed_at: np.ndarray
    closed_at: np.ndarray

    @classmethod
    def of(cls, po_lines: pd.DataFrame) -> _Receipts:
        if po_lines.empty:
            empty = np.zeros(0, dtype=np.int64)
            return cls(np.zeros(0, dtype=object), empty.astype(np.float64), empty, empty)
        return cls(
            location_id=po_lines["location_id"].to_numpy(dtype=object),
            expected_date=po_lines["expected_date"].to_numpy(dtype=np.float64),
            placed_at=po_lines["placed_at"].to_numpy(),
            closed_at=po_lines["closed_at"].to_numpy(),
        )


def _alert_spans(alerts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if alerts.empty:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = alerts["starts_at"].to_numpy(np.int64)
    announced = alerts["announced_at"].to_numpy(np.int64)
    return np.maximum(starts, announced + 1), alerts["ends_at"].to_numpy(np.int64)


def _positions_by(table: pd.DataFrame, key: str) -> dict[Hashable, np.ndarray]:
    """Row positions of ``table`` per non-null value of ``key`` (none for an empty table)."""
    if table.empty or key not in table.columns:
        return {}
    return dict(table.groupby(key, sort=False, observed=True, dropna=True).indices)


@dataclass(frozen=True)
class IndexUpdate:
    """The events written between two sets of watermarks, as streams, and master data as read
    then: what :meth:`OnlineFeatures.refresh` merges in."""

    since: dict[str, int]
    marks: dict[str, int]
    streams: dict[str, EventStream]
    master: _Master


def _records(table: pd.DataFrame, key: str) -> dict[Hashable, dict[str, Any]]:
    plain = table.astype(object).where(table.notna(), None)
    return {record.pop(key): record for record in plain.to_dict("records")}


class OnlineFeatures:
    """The late-shipment features of draft orders, from an index of the ERP's history.

    Build it once per process (serving: at start) with :meth:`from_database`, call
    :meth:`refresh` to take in what was written since (a tail of the append-only tables, not a
    reload), and :meth:`features` per order.
    """

    def __init__(self, history: History, calendar: BusinessCalendar) -> None:
        """Index ``history`` already loaded (a benchmark's, a test's): it cannot refresh."""
        self.calendar = calendar
        self.holidays = cal.holiday_array(calendar)
        self.engine: Engine | None = None
        self.marks: dict[str, int] = {}
        streams = event_streams(history, self.holidays)
        self.indexes = {name: StreamIndex(stream) for name, stream in streams.items()}
        self.master = _Master.of(history)

    @classmethod
    def from_database(
        cls, source: Engine | Session | str, calendar: BusinessCalendar
    ) -> OnlineFeatures:
        """Index the history of the ERP database behind ``source`` (an engine, a session or a
        URL) up to its current last ids, which the next :meth:`refresh` starts after."""
        engine = _engine(source)
        marks = watermarks(engine)
        history = load_history_since(engine, {name: (0, mark) for name, mark in marks.items()})
        online = cls(history, calendar)
        online.engine, online.marks = engine, marks
        return online

    def refresh(self) -> None:
        """Take in the events written since the last read (ids above the last watermarks, up
        to the current ones) and master data as it is now: afterwards every total equals an
        index built from scratch."""
        self.apply(self.read_update())

    def read_update(self) -> IndexUpdate:
        """What :meth:`refresh` reads, without changing the index: the database reads and the
        event streams (nearly all of a refresh's cost), so a server can do them on another
        thread while the index keeps answering, and :meth:`apply` them between two requests."""
        if self.engine is None:
            raise ValueError("this index was built from loaded history: no database to refresh")
        since = dict(self.marks)
        marks = watermarks(self.engine)
        ranges = {name: (since[name], marks[name]) for name in marks}
        new = load_history_since(self.engine, ranges)
        streams = event_streams(
            new, self.holidays, milestones=ranges["milestones"], promises=ranges["promises"]
        )
        return IndexUpdate(since, marks, streams, _Master.of(new))

    def apply(self, update: IndexUpdate) -> bool:
        """Merge in an update read since this index's current watermarks; one read from other
        watermarks (the index was refreshed meanwhile) is refused (False), never counted twice."""
        if update.since != self.marks:
            return False
        for name, stream in update.streams.items():
            self.indexes[name].extend(stream)
        self.master = update.master
        self.marks = update.marks
        return True

    # -- one order ---------------------------------------------------------------------------

    def features(self, order: DraftOrder) -> pd.DataFrame:
        """One row per line of the order (indexed by line number), the registry's feature
        columns in declared order."""
        values = self.feature_values(order)
        index = pd.Index([line.line_no for line in order.lines], name="line_id")
        return pd.DataFrame(values, index=index)

    def feature_values(self, order: DraftOrder) -> dict[str, np.ndarray]:
        """The order's features as one array per feature (what a model's preprocessing takes
        without a DataFrame in between)."""
        return self.features_of_rows(draft_rows(order, self.master))

    def features_of_rows(self, rows: Rows) -> dict[str, np.ndarray]:
        """Features of rows shaped like :func:`features.late_shipment.entry_rows` (several
        orders may share them; order totals are per ``order_id``)."""
        found = self.aggregates(rows)
        alerts = self.master.alerts_for(
            np.asarray(rows["ship_region"], dtype=object),
            np.asarray(rows["entered_at"], dtype=np.int64),
        )
        columns = feature_columns(rows, found, self.master.lanes, self.holidays, alerts)
        return {name: np.asarray(columns[name]) for name in LATE_SHIPMENT.feature_names}

    def aggregates(self, rows: Rows) -> Aggregates:
        """What happened before each row's ``t``, from the index: the offline aggregates'
        numbers, looked up per key."""
        t = np.asarray(rows["entered_at"], dtype=np.int64)
        keys = _row_keys(rows)
        totals = {name: self._totals_by_days(name, keys[name], t) for name in self.indexes}
        everywhere = {name: self.indexes[name].everywhere_before(t) for name in GLOBAL_PRIORS}
        return assemble_aggregates(totals, everywhere)

    def _totals_by_days(
        self, stream: str, keys: list[Key | None], t: np.ndarray
    ) -> dict[int | None, WindowTotals]:
        """The stream's totals for each of its windows, keyed by the window in days."""
        windows = WINDOWS_DAYS[stream]
        found = self.indexes[stream].totals(keys, t, window_micros(windows))
        return dict(zip(windows, found.values(), strict=True))


def _engine(source: Engine | Session | str) -> Engine:
    if isinstance(source, Session):
        bind = source.get_bind()
        return bind if isinstance(bind, Engine) else bind.engine
    if isinstance(source, str):
        return make_engine(source)
    return source


def _row_keys(rows: Rows) -> dict[str, list[Key | None]]:
    """Each row's key in each stream, as in :func:`features.late_shipment.row_keys`."""
    return {name: _tuples(parts) for name, parts in row_keys(rows).items()}


def _tuples(parts: tuple[Any, ...]) -> list[Key | None]:
    """One key tuple per row, None where any part is null (NaN, None or pd.NA)."""
    missing = np.zeros(len(parts[0]), dtype=bool)
    for part in parts:
        missing |= np.asarray(pd.isna(part), dtype=bool)
    columns = [np.asarray(part, dtype=object) for part in parts]
    keys = list(zip(*columns, strict=True))
    return [None if gap else key for key, gap in zip(keys, missing, strict=True)]


# --- a draft as the rows the definitions read -----------------------------------------------


def draft_rows(order: DraftOrder, master: _Master) -> dict[str, np.ndarray]:
    """The order's lines as the columns :func:`features.late_shipment.entry_rows` gives a
    feature group (plain arrays: one order pays no DataFrame overhead): what capture decided,
    and master data read as it is now."""
    entered = order.entered_at if isinstance(order.entered_at, int) else to_micros(order.entered_at)
    _check(order, master)
    customer = master.customers[order.customer_id]
    lines = order.lines
    located = [line.location_id if line.state in AT_LOCATION_STATES else None for line in lines]
    places = [master.locations[where] if where is not None else None for where in located]
    products = [master.products[line.sku] for line in lines]
    promised = np.array([line.promised_ship_date is not None for line in lines])
    n = len(lines)
    lanes = [line.lane_id if where else None for line, where in zip(lines, located, strict=True)]
    carriers = master.carrier_of_lane
    ready_on = _epoch_days([line.expected_ready_on for line in lines])
    zones = [place["timezone"] if place else _home_zone(customer, master) for place in places]
    entered_at = np.full(n, entered, dtype=np.int64)

    def text(values: list[Any]) -> np.ndarray:
        return np.array(values, dtype=object)

    return {
        "line_id": np.array([line.line_no for line in lines], dtype=np.int64),
        "order_id": np.full(n, order.order_id, dtype=np.int64),
        "parent_line_id": _optional([line.parent_line_no for line in lines]),
        "sku": text([line.sku for line in lines]),
        "entered_at": entered_at,
        "state_at_entry": text([str(line.state) for line in lines]),
        "location_at_entry": text(located),
        "lane_at_entry": text(lanes),
        "carrier_at_entry": text(
            [carriers.get(lane) if lane is not None else None for lane in lanes]
        ),
        "price_approval_pending": np.array(
            [line.price_approval_pending for line in lines], dtype=bool
        ),
        "expected_ready_on": ready_on,
        "receipt_covered": _receipt_covered(
            [line.sku for line in lines], located, ready_on, entered_at, master
        ),
        "line_units": np.array([line.quantity for line in lines], dtype=np.int64),
        "channel": text([order.channel] * n),
        "ship_region": text([order.ship_region] * n),
        "unit_price": np.array([line.unit_price for line in lines], dtype=np.float64),
        "promised_ship_date": _epoch_days([line.promised_ship_date for line in lines]),
        "promised_delivery_date": _epoch_days([line.promised_delivery_date for line in lines]),
        "decided_at": np.where(promised, entered_at.astype(np.float64), np.nan),
        "category": text([product["category"] for product in products]),
        "abc_class": text([product["abc_class"] for product in products]),
        "weight_kg": np.array([product["weight_kg"] for product in products], dtype=np.float64),
        "supplier_id": text([product["supplier_id"] for product in products]),
        "tier": text([customer["tier"]] * n),
        "home_location_id": text([customer["home_location_id"]] * n),
        "pick_capacity": _optional(
            [place["pick_capacity_per_day"] if place else None for place in places]
        ),
        "expedite_asked": np.array([line.expedite_asked for line in lines], dtype=bool),
        "entry_day": cal.local_days(entered_at, pd.Series(zones, dtype=object)),
    }


def _receipt_covered(
    skus: list[str],
    located: list[str | None],
    ready_on: np.ndarray,
    entered_at: np.ndarray,
    master: _Master,
) -> np.ndarray:
    """:func:`features.late_shipment.covering_receipt_open` for one draft, row by row: a line at
    a location with an expected ready date (a backorder) is covered when one of its SKU's
    purchase-order lines is at that location, expected on that date, placed before the line's
    ``t`` and not completely received before it. The same matches as its merge on (SKU,
    location, expected date), without building and merging frames for a few lines."""
    covered = np.zeros(len(skus), dtype=bool)
    receipts = master.receipts
    for row, (sku, where, day) in enumerate(zip(skus, located, ready_on, strict=True)):
        if where is None or np.isnan(day):
            continue
        at = master.po_lines_of_sku.get(sku)
        if at is None:
            continue
        t = entered_at[row]
        closed = receipts.closed_at[at]
        covered[row] = bool(
            np.any(
                (receipts.location_id[at] == where)
                & (receipts.expected_date[at] == day)
                & (receipts.placed_at[at] < t)
                & ((closed < 0) | (closed >= t))
            )
        )
    return covered


def _check(order: DraftOrder, master: _Master) -> None:
    """A draft serving was handed wrongly fails here with the field and the value, before any
    number is computed from it."""
    if not order.lines:
        raise InvalidValue("lines", [], "a draft order needs at least one line")
    if order.customer_id not in master.customers:
        raise NotFound("customer", "customer_id", order.customer_id)
    for line in order.lines:
        if line.sku not in master.products:
            raise NotFound("product", "sku", line.sku)
        if line.quantity <= 0:
            raise InvalidValue("quantity", line.quantity, f"line {line.line_no}: must be positive")
        if line.state in AT_LOCATION_STATES and line.location_id not in master.locations:
            raise NotFound("location", "location_id", line.location_id)


def _optional(values: list[Any]) -> np.ndarray:
    """Numbers as float64, NaN for None (as a nullable column reads offline)."""
    return np.array([np.nan if value is None else value for value in values], dtype=np.float64)


def _home_zone(customer: dict[str, Any], master: _Master) -> str:
    """Where a line without a location is dated: the customer's home location's zone."""
    home = master.locations.get(customer["home_location_id"])
    return str(home["timezone"]) if home else "UTC"


def _epoch_days(days: Sequence[date | None]) -> np.ndarray:
    return np.array([_epoch_day(day) for day in days], dtype=np.float64)


def _epoch_day(day: date | None) -> float:
    return float((day - date(1970, 1, 1)).days) if day is not None else np.nan


# --- existing lines as of their entry (parity) ----------------------------------------------


def drafts_from_entry_rows(rows: pd.DataFrame) -> Iterable[DraftOrder]:
    """Each order of offline entry rows as the draft capture would have handed to serving: the
    lines as captured, a promise only if it was made at entry."""
    for order_id, lines in rows.groupby("order_id", sort=False):
        first = lines.iloc[0]
        yield DraftOrder(
            customer_id=str(first["customer_id"]),
            channel=str(first["channel"]),
            ship_region=str(first["ship_region"]),
            entered_at=int(first["entered_at"]),
            lines=tuple(_draft_line(line) for line in lines.itertuples(index=False)),
            order_id=int(order_id),
        )


def _draft_line(line: Any) -> DraftLine:
    promised_at_entry = not pd.isna(line.decided_at) and line.decided_at <= line.entered_at
    return DraftLine(
        line_no=int(line.line_id),
        sku=str(line.sku),
        quantity=int(line.line_units),
        unit_price=float(line.unit_price),
        state=str(line.state_at_entry),
        location_id=None if pd.isna(line.location_at_entry) else str(line.location_at_entry),
        lane_id=None if pd.isna(line.lane_at_entry) else int(line.lane_at_entry),
        promised_ship_date=_date(line.promised_ship_date) if promised_at_entry else None,
        promised_delivery_date=_date(line.promised_delivery_date) if promised_at_entry else None,
        parent_line_no=None if pd.isna(line.parent_line_id) else int(line.parent_line_id),
        expedite_asked=bool(line.expedite_asked),
        price_approval_pending=bool(line.price_approval_pending),
        expected_ready_on=_date(line.expected_ready_on),
    )


def _date(epoch_day: Any) -> date | None:
    if pd.isna(epoch_day):
        return None
    return date.fromordinal(date(1970, 1, 1).toordinal() + int(epoch_day))
