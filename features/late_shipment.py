"""Late-shipment features: one row per order line at its entry moment ``t``, from ERP history.

Point in time, in three kinds of value:

* **The line as captured.** The ERP keeps a line's current state, quantity and lane, which change
  after entry (short picks split it, expedites move it to an express lane, credit release gives it
  a location). The row takes the line as it stood at the end of its capture instead: the last
  state change at ``t``, the quantity before any later split (from the audit of ``split_line``),
  the first price decision, the first promise only if it was decided at ``t``, the lane chosen at
  capture. Lines created after their order's entry (the remainder of a short pick, a partial
  release) are not entry events and get no row.
* **Everything else that happened, strictly before ``t``.** Stock, backlog and trailing rates come
  from event arrays through :mod:`features.asof`: the row's own capture, and any other order
  entered in the same instant, is never counted.
* **Labels**, after ``t`` by nature, in their own ``label_*`` columns: judged against the line's
  first promise whenever it was made (KPIS.md), null while the outcome is unknown.

Rates over few events are shrunk toward the global rate as of ``t`` (over every key, all history
before ``t``) as ``(k + m * g) / (n + m)``: ``m`` = 20 lines for the location's on-time ship rate
and the lane's on-time delivery rate, 5 receipts for the supplier's mean lateness; the lane's
transit variance is shrunk the same way with ``m`` = 10 deliveries. With no history at all before
``t`` the global rate is unknown and the shrunk rate is null.

Dates a line is judged by (entry date, shipped on, delivered on) are the fulfilling location's
local dates, as the ERP's promise is.

Master data (a customer's tier, a product's category and supplier, a lane's transit days) is read
as it is now: the ERP keeps no history of it, so a tier changed after ``t`` would show in rows
before it. Transactions are point in time; master data is as good as the schema allows.

History imported from another system may lack what some features are computed from (no purchase
orders, no inventory counts, no ship dates): those features are null on every row, never 0 or
false, and the build names each with its reason (:mod:`features.availability`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from pandas.api.extensions import take
from sqlalchemy import Engine

from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.states import LineState
from features import calendar as cal
from features.asof import (
    MICROS_PER_DAY,
    WindowTotals,
    key_codes,
    rate_before,
    shrunk_rate,
    trailing_totals,
)
from features.availability import late_shipment_unavailable
from features.history import History, load_history
from features.registry import LATE_SHIPMENT
from features.schema import typed_frame

LOCATION_RATE_STRENGTH = 20
LANE_RATE_STRENGTH = 20
TRANSIT_VARIANCE_STRENGTH = 10
SUPPLIER_LATENESS_STRENGTH = 5
LOCATION_WINDOWS_DAYS = (7, 14, 56)
LANE_WINDOWS_DAYS = (28, 90)
SUPPLIER_WINDOW_DAYS = 56
DUE_RATE_STRENGTH = 20
REGION_DUE_WINDOW_DAYS = 7
CARRIER_DUE_WINDOW_DAYS = 14
HOLIDAY_HORIZON_BUSINESS_DAYS = 2
PROMISED_SHIP_HOLIDAY_DAYS = 2
"""Calendar days after the promised ship date a holiday still weighs on it (the simulator's
``_holiday_within(promised_ship_date, 2)``)."""

Columns = dict[str, Any]


def build_late_shipment_frame(
    source: Engine | str, start: date | datetime, end: date | datetime, calendar: BusinessCalendar
) -> pd.DataFrame:
    """The late-shipment frame of the lines entered in ``[start, end)`` in the ERP database at
    ``source`` (an engine or a URL); dates mean midnight UTC."""
    return late_shipment_frame(load_history(source), start, end, calendar)


def late_shipment_frame(
    history: History, start: date | datetime, end: date | datetime, calendar: BusinessCalendar
) -> pd.DataFrame:
    """The frame from history already in memory (what the benchmark times on its own). The
    features an imported history cannot compute (:func:`late_shipment_unavailable`) are null."""
    rows = entry_rows(history, to_micros(start), to_micros(end))
    holidays = cal.holiday_array(calendar)
    delivered = delivered_lines(history, holidays)
    found = offline_aggregates(rows, event_streams(history, holidays, delivered=delivered))
    columns: Columns = {
        "line_id": rows["line_id"].to_numpy(),
        "order_id": rows["order_id"].to_numpy(),
        "entered_at": rows["entered_at"].to_numpy(),
        **feature_columns(rows, found, LaneTable.of(history.lanes), holidays, history.alerts),
    }
    columns |= labels(rows, history, delivered, columns["lane_transit_days"])
    return typed_frame(columns, LATE_SHIPMENT, late_shipment_unavailable(history, calendar))


def to_micros(moment: date | datetime) -> int:
    """A date as its midnight UTC; a datetime must carry its time zone."""
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(0), tzinfo=UTC)
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r}: a naive datetime; give the time zone")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# --- the line as captured ------------------------------------------------------------------------


def entry_rows(history: History, start: int, end: int) -> pd.DataFrame:
    """Lines entered in ``[start, end)`` that were created by their order's capture, with what
    the ERP knew of each at the end of its capture."""
    rows = captured_lines(history, start, end)
    rows["state_at_entry"] = _state_at_entry(rows, history.state_changes)
    at_location = rows["state_at_entry"].isin((LineState.ALLOCATED, LineState.BACKORDERED))
    rows["location_at_entry"] = rows["location_id"].where(at_location)
    rows = _with_order_context(rows, history)
    rows["lane_at_entry"] = _lane_at_entry(rows, history)
    rows["expedite_asked"] = _expedite_asked_by_entry(rows, history.expedites)
    rows["price_approval_pending"] = _approval_pending_at_entry(rows, history.price_approvals)
    rows["expected_ready_on"] = _ready_on_at_entry(rows, history.backorders)
    rows["receipt_covered"] = covering_receipt_open(
        rows["sku"],
        rows["location_at_entry"],
        rows["expected_ready_on"],
        rows["entered_at"].to_numpy(),
        history.po_lines,
    )
    rows["carrier_at_entry"] = _attach(
        rows["lane_at_entry"], history.lanes["lane_id"], history.lanes["carrier_id"]
    )
    rows["entry_day"] = cal.local_days(rows["entered_at"].to_numpy(), _entry_zone(rows, history))
    return rows


def captured_lines(history: History, start: int, end: int) -> pd.DataFrame:
    """The lines entered in ``[start, end)`` that their order's capture created (the entry
    events), each with ``line_units``: its quantity at entry, later splits added back."""
    lines = history.lines
    entered = lines["entered_at"]
    in_window = (entered >= start) & (entered < end)
    rows = lines.loc[in_window & ~_created_after_entry(lines, history.splits)]
    rows = rows.reset_index(drop=True)
    rows["line_units"] = _units_at_entry(rows, history.splits)
    return rows


def _created_after_entry(lines: pd.DataFrame, splits: pd.DataFrame) -> pd.Series:
    """Lines split off after their order's capture (they carry its ``entered_at`` but did not
    exist then): the only lines created later than their entry moment."""
    entered = lines.set_index("line_id")["entered_at"]
    later = splits.loc[splits["occurred_at"] > splits["line_id"].map(entered), "line_id"]
    return lines["line_id"].isin(later)


def _state_at_entry(rows: pd.DataFrame, changes: pd.DataFrame) -> pd.Series:
    """The line's last state change at or before its entry moment (its state after capture)."""
    position = _positions(rows["line_id"].to_numpy(), changes["line_id"].to_numpy())
    entered = rows["entered_at"].to_numpy()
    own = position >= 0
    own[own] = changes["occurred_at"].to_numpy()[own] <= entered[position[own]]
    last = changes.loc[own].drop_duplicates("line_id", keep="last")
    return _attach(rows["line_id"], last["line_id"], last["to_state"])


def _units_at_entry(rows: pd.DataFrame, splits: pd.DataFrame) -> pd.Series:
    """The current quantity, plus what the first split after entry took off (kept + split)."""
    entered = rows.set_index("line_id")["entered_at"]
    own = splits.loc[splits["parent_line_id"].isin(entered.index)]
    later = own.loc[own["occurred_at"] > own["parent_line_id"].map(entered)]
    first = later.drop_duplicates("parent_line_id", keep="first").set_index("parent_line_id")
    before_split = first["kept_quantity"] + first["quantity"]
    return rows["line_id"].map(before_split).fillna(rows["quantity"]).astype(np.int64)


def _with_order_context(rows: pd.DataFrame, history: History) -> pd.DataFrame:
    """Order, customer, product, location and first price/promise columns beside each row."""
    context = {
        **_lookup(rows["order_id"], history.orders, "order_id"),
        **_lookup(rows["line_id"], history.first_prices, "line_id"),
        **_lookup(rows["line_id"], history.first_promises, "line_id"),
        **_lookup(rows["sku"], history.products, "sku"),
    }
    customer = _lookup(context["customer_id"], history.customers, "customer_id")
    location = _lookup(rows["location_at_entry"], history.locations, "location_id")
    return rows.assign(**context, **customer, pick_capacity=location["pick_capacity_per_day"])


def _lookup(keys: pd.Series, table: pd.DataFrame, key: str) -> dict[str, pd.Series]:
    """The other columns of ``table`` for each key (null where the key is missing or unknown)."""
    position = pd.Index(table[key]).get_indexer(keys)
    return {
        name: pd.Series(
            take(table[name].array, position, allow_fill=True), index=keys.index, name=name
        )
        for name in table.columns
        if name != key
    }


def _attach(keys: pd.Series, table_keys: pd.Series, values: pd.Series) -> pd.Series:
    position = pd.Index(table_keys).get_indexer(keys)
    return pd.Series(take(values.array, position, allow_fill=True), index=keys.index)


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Where each id sits in ``sorted_ids``, -1 where it is absent."""
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    found = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.where(sorted_ids[found] == ids, found, -1).astype(np.int64)


def _lane_at_entry(rows: pd.DataFrame, history: History) -> pd.Series:
    """The lane chosen at capture: the line's lane, unless an approved expedite moved it (or its
    parent's family) after entry; then the standard lane capture chooses (fastest, cheapest,
    lowest id from the location to the ship-to region)."""
    approved = history.expedites.groupby("line_id")["approved_at"].max()
    moved_at = np.maximum(
        rows["line_id"].map(approved).fillna(-1).to_numpy(),
        rows["parent_line_id"].map(approved).fillna(-1).to_numpy(),
    )
    moved = moved_at > rows["entered_at"].to_numpy()
    lane = rows["lane_id"].astype("Int64")
    if moved.any():
        standard = _standard_lanes(history.lanes)
        keys = pd.MultiIndex.from_arrays(
            [rows["location_at_entry"].astype(object), rows["ship_region"].astype(object)]
        )
        position = pd.MultiIndex.from_arrays(
            [standard["origin_location_id"].astype(object), standard["dest_region"].astype(object)]
        ).get_indexer(keys)
        chosen = take(standard["lane_id"].astype("Int64").array, position, allow_fill=True)
        lane = lane.where(~moved, pd.Series(chosen, index=rows.index))
    return lane.where(rows["location_at_entry"].notna())


def _standard_lanes(lanes: pd.DataFrame) -> pd.DataFrame:
    standard = lanes.loc[lanes["service_level"] == "standard"].sort_values(
        ["transit_days", "cost_per_shipment", "lane_id"], kind="stable"
    )
    first = standard.drop_duplicates(["origin_location_id", "dest_region"])
    return first[["origin_location_id", "dest_region", "lane_id"]]


def _expedite_asked_by_entry(rows: pd.DataFrame, expedites: pd.DataFrame) -> np.ndarray:
    """An expedite was requested for the line (or the line it was split from) by ``t``."""
    first_asked = expedites.groupby("line_id")["requested_at"].min()
    never = np.iinfo(np.int64).max
    asked = np.minimum(
        rows["line_id"].map(first_asked).fillna(never).to_numpy(),
        rows["parent_line_id"].map(first_asked).fillna(never).to_numpy(),
    )
    return asked <= rows["entered_at"].to_numpy()


def _approval_pending_at_entry(rows: pd.DataFrame, approvals: pd.DataFrame) -> np.ndarray:
    """A discount approval for the line (or the line it was split from) was requested by ``t``
    and not decided by then: its price awaits finance, so it cannot be picked before that."""
    t = rows["entered_at"].to_numpy()
    pending = np.zeros(len(rows), dtype=bool)
    for column in ("line_id", "parent_line_id"):
        found = (
            rows[[column]]
            .reset_index()
            .merge(approvals, left_on=column, right_on="line_id", suffixes=("", "_approval"))
        )
        at = t[found["index"].to_numpy()]
        open_at_t = (found["requested_at"].to_numpy() <= at) & (
            (found["decided_at"].to_numpy() < 0) | (found["decided_at"].to_numpy() > at)
        )
        pending[found["index"].to_numpy()[open_at_t]] = True
    return pending


def _ready_on_at_entry(rows: pd.DataFrame, backorders: pd.DataFrame) -> np.ndarray:
    """The expected ready date of the line's last backorder act at or before ``t`` (epoch days,
    NaN when it was not backordered by then)."""
    found = rows[["line_id"]].reset_index().merge(backorders, on="line_id")
    entered = rows["entered_at"].to_numpy()[found["index"].to_numpy()]
    found = found.loc[found["occurred_at"].to_numpy() <= entered]
    last = found.drop_duplicates("index", keep="last")
    ready = np.full(len(rows), np.nan)
    ready[last["index"].to_numpy()] = last["ready_on"].to_numpy(dtype=np.float64)
    return ready


def covering_receipt_open(
    sku: Any, location: Any, ready_on: Any, t: np.ndarray, po_lines: pd.DataFrame
) -> np.ndarray:
    """Per row, an open purchase-order line covers its backorder at ``t``: same SKU and
    location, expected on the line's ready date, placed before ``t`` and not completely
    received before it (the scheduled receipt available-to-promise waited for)."""
    queries = pd.DataFrame(
        {
            "row": np.arange(len(t)),
            "sku": np.asarray(sku, dtype=object),
            "location_id": np.asarray(location, dtype=object),
            "expected_date": _floats(ready_on),
        }
    ).dropna()
    if queries.empty or po_lines.empty:
        return np.zeros(len(t), dtype=bool)
    candidates = po_lines.astype(
        {"sku": object, "location_id": object, "expected_date": np.float64}
    )
    found = queries.merge(candidates, on=["sku", "location_id", "expected_date"])
    at = np.asarray(t, dtype=np.int64)[found["row"].to_numpy()]
    closed = found["closed_at"].to_numpy()
    open_at_t = (found["placed_at"].to_numpy() < at) & ((closed < 0) | (closed >= at))
    covered = np.zeros(len(t), dtype=bool)
    covered[found["row"].to_numpy()[open_at_t]] = True
    return covered


def _entry_zone(rows: pd.DataFrame, history: History) -> pd.Series:
    """The fulfilling location's time zone, else the customer's home location's, else UTC."""
    zones = history.locations.set_index("location_id")["timezone"]
    fulfilling = rows["location_at_entry"].map(zones).astype(object)
    home = rows["home_location_id"].map(zones).astype(object)
    return fulfilling.fillna(home).fillna("UTC")


# --- what happened before t: event streams and their totals -------------------------------------


@dataclass(frozen=True)
class EventStream:
    """Events of one kind, each with its key (one or more columns), the moment the ERP knew of it
    (int64 microseconds) and integer values to total (exact as int64).

    Declared once here and totalled two ways: over whole frames by :func:`offline_aggregates`
    (as-of searches on sorted arrays) and per order by ``features.online`` (an index kept in
    memory); both count an event strictly before ``t`` and within ``[t - W, t)``.
    """

    keys: tuple[pd.Series, ...]
    times: np.ndarray
    values: dict[str, np.ndarray]


@dataclass(frozen=True)
class Aggregates:
    """Per row, everything before its ``t`` the features summarise; a row without a key (no
    location, no lane, not backordered) has ``has_key`` false and nulls in what depends on it."""

    available: np.ndarray
    """Free stock (on hand - reserved) of the SKU at the fulfilling location just before t."""
    backlog: np.ndarray
    """Lines allocated at the fulfilling location and not yet picked just before t."""
    location: dict[int, WindowTotals]
    """Shipped lines of the location per window in days (sum ``on_time``)."""
    location_everywhere: WindowTotals
    """Shipped lines of every location, all history before t (the rate's prior)."""
    lane: dict[int, WindowTotals]
    """Delivered lines of the lane per window in days (sums ``on_time``, ``transit``,
    ``transit_sq``)."""
    lane_everywhere: WindowTotals
    supplier: WindowTotals
    """Receipts of a backordered line's preferred supplier in the last 56 days (sum ``late``)."""
    supplier_everywhere: WindowTotals
    region_due: WindowTotals
    """Lines to the ship region due in the last 7 days (sums ``due``, ``on_time``)."""
    carrier_due: WindowTotals
    """Lines on the carrier's lanes due in the last 14 days (sums ``due``, ``on_time``)."""
    due_everywhere: WindowTotals


def event_streams(
    history: History,
    holidays: np.ndarray,
    milestones: tuple[int, int] | None = None,
    promises: tuple[int, int] | None = None,
    delivered: pd.DataFrame | None = None,
) -> dict[str, EventStream]:
    """Every stream the late-shipment features total, by name. ``milestones`` keeps only the
    shipped and delivered lines whose milestone event id is in ``(after, until]``, ``promises``
    only the due lines whose first promise id is in its range (a tail of the history, which
    reads older milestones and promises of the same lines as context). ``delivered``: the
    history's :func:`delivered_lines` when the caller already has them (the offline frame's
    labels read them too)."""
    due = due_lines(history, milestones, promises)
    shipped = _milestones_in(shipped_lines(history), milestones)
    if delivered is None:
        delivered = delivered_lines(history, holidays)
    delivered = _milestones_in(delivered, milestones)
    receipts = history.receipts
    moves = history.stock_moves
    transit = delivered["transit"].to_numpy()
    return {
        "stock": EventStream(
            (moves["sku"], moves["location_id"]),
            moves["occurred_at"].to_numpy(),
            {"level": moves["available_delta"].to_numpy()},
        ),
        "backlog": backlog_stream(history),
        "shipped": EventStream(
            (shipped["location_id"],),
            shipped["known_at"].to_numpy(),
            {"on_time": shipped["on_time"].to_numpy()},
        ),
        "delivered": EventStream(
            (delivered["lane_id"],),
            delivered["known_at"].to_numpy(),
            {
                "on_time": delivered["on_time"].to_numpy(),
                "transit": transit,
                "transit_sq": transit**2,
            },
        ),
        "receipts": EventStream(
            (receipts["supplier_id"],),
            receipts["received_at"].to_numpy(),
            {
                "late": receipts["days_late"].to_numpy(),
                "came_late": (receipts["days_late"].to_numpy() > 0).astype(np.int64),
            },
        ),
        "due_region": EventStream(
            (due["ship_region"],),
            due["due_at"].to_numpy(),
            {"due": due["due"].to_numpy(), "on_time": due["on_time"].to_numpy()},
        ),
        "due_carrier": EventStream(
            (due["carrier_id"],),
            due["due_at"].to_numpy(),
            {"due": due["due"].to_numpy(), "on_time": due["on_time"].to_numpy()},
        ),
    }


def due_lines(
    history: History,
    milestones: tuple[int, int] | None = None,
    promises: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Each promised line's promised delivery day as an event at the moment it ends (local
    midnight after it, in the line's location), keyed by the order's ship region and the
    carrier of the line's lane, in three kinds of rows whose sums per line are its outcome:

    * its first promise: ``due`` +1;
    * its delivery, when the ERP knew of it before the day ended: ``on_time`` +1;
    * its cancellation before the day ended: ``due`` -1 (no longer expected).

    A line still on its way when its day ends is late as of then, whatever comes later; so
    lateness shows the day it happens, not only when the late delivery is scanned. Each row
    comes from one event the ERP recorded (a promise, a milestone, a state change), so a tail
    of the history emits exactly the rows of what it read (``milestones``, ``promises``: id
    ranges; the state changes given are the tail's). The lane is the line's as it is now: an
    expedite approved after the day ended would move a line to another carrier (the simulator
    expedites none)."""
    promised = history.first_promises
    if promises is not None:
        after, until = promises
        own = (promised["promise_id"] > after) & (promised["promise_id"] <= until)
    else:
        own = np.ones(len(promised), dtype=bool)
    lines = history.lines.set_index("line_id")
    context = promised[["line_id", "promised_delivery_date"]].assign(
        order_id=promised["line_id"].map(lines["order_id"]),
        location_id=promised["line_id"].map(lines["location_id"]).astype(object),
        lane_id=promised["line_id"].map(lines["lane_id"]),
    )
    zones = context["location_id"].map(history.locations.set_index("location_id")["timezone"])
    context = context.assign(
        ship_region=context["order_id"]
        .map(history.orders.set_index("order_id")["ship_region"])
        .astype(object),
        carrier_id=context["lane_id"]
        .map(history.lanes.set_index("lane_id")["carrier_id"])
        .astype(object),
        due_at=_day_end_micros(context["promised_delivery_date"].to_numpy(), zones),
    ).set_index("line_id")
    rows = [context.loc[np.asarray(own)].assign(due=1, on_time=0)]
    events = history.milestones
    delivered = _milestones_in(events.loc[events["event_type"] == "delivered"], milestones)
    delivered = delivered.loc[delivered["line_id"].isin(context.index)]
    known = context.loc[delivered["line_id"]]
    in_time = delivered["known_at"].to_numpy() < known["due_at"].to_numpy()
    rows.append(known.loc[in_time].assign(due=0, on_time=1))
    changes = history.state_changes
    cancelled = changes.loc[
        (changes["to_state"] == LineState.CANCELLED) & changes["line_id"].isin(context.index)
    ]
    known = context.loc[cancelled["line_id"]]
    before_due = cancelled["occurred_at"].to_numpy() < known["due_at"].to_numpy()
    rows.append(known.loc[before_due].assign(due=-1, on_time=0))
    columns = ["ship_region", "carrier_id", "due_at", "due", "on_time"]
    return pd.concat([part[columns] for part in rows], ignore_index=True).astype(
        {"due_at": np.int64, "due": np.int64, "on_time": np.int64}
    )


def _day_end_micros(days: np.ndarray, zones: pd.Series) -> np.ndarray:
    """The moment each local day ends (midnight after it) in its row's zone, as int64
    microseconds UTC."""
    days = np.asarray(days, dtype=np.int64)
    result = (days + 1) * MICROS_PER_DAY
    names = zones.fillna("UTC").to_numpy()
    for zone in pd.unique(names):
        if zone == "UTC":
            continue
        mask = names == zone
        wall = pd.to_datetime(result[mask], unit="us")
        local = wall.tz_localize(str(zone), ambiguous=False, nonexistent="shift_forward")
        result[mask] = local.tz_convert("UTC").as_unit("us").asi8
    return result


def _milestones_in(frame: pd.DataFrame, ids: tuple[int, int] | None) -> pd.DataFrame:
    if ids is None:
        return frame
    after, until = ids
    return frame.loc[(frame["event_id"] > after) & (frame["event_id"] <= until)]


def row_keys(rows: Rows) -> dict[str, tuple[Any, ...]]:
    """Which key of each stream a row asks about (null: the row has none)."""
    location = rows["location_at_entry"]
    backordered = _text(rows["state_at_entry"]) == LineState.BACKORDERED.value
    return {
        "stock": (rows["sku"], location),
        "backlog": (location,),
        "shipped": (location,),
        "delivered": (rows["lane_at_entry"],),
        "receipts": (np.where(backordered, _text(rows["supplier_id"]), _text([None])),),
        "due_region": (rows["ship_region"],),
        "due_carrier": (rows["carrier_at_entry"],),
    }


WINDOWS_DAYS: dict[str, tuple[int | None, ...]] = {
    "stock": (None,),
    "backlog": (None,),
    "shipped": LOCATION_WINDOWS_DAYS,
    "delivered": LANE_WINDOWS_DAYS,
    "receipts": (SUPPLIER_WINDOW_DAYS,),
    "due_region": (REGION_DUE_WINDOW_DAYS,),
    "due_carrier": (CARRIER_DUE_WINDOW_DAYS,),
}
"""The windows each stream is totalled over, in days (``None``: all history before t)."""
GLOBAL_PRIORS = ("shipped", "delivered", "receipts", "due_region")
"""Streams whose rates are shrunk toward their total over every key and all history."""


def offline_aggregates(rows: pd.DataFrame, streams: dict[str, EventStream]) -> Aggregates:
    """The aggregates of every row at once: one sort per stream and as-of searches."""
    t = rows["entered_at"].to_numpy()
    keys = row_keys(rows)
    totals: dict[str, dict[int | None, WindowTotals]] = {}
    everywhere: dict[str, WindowTotals] = {}
    for name, stream in streams.items():
        event_keys, query_keys = key_codes(list(stream.keys), list(keys[name]))
        windows = WINDOWS_DAYS[name]
        found = trailing_totals(
            event_keys, stream.times, stream.values, query_keys, t, window_micros(windows)
        )
        totals[name] = dict(zip(windows, found.values(), strict=True))
        if name in GLOBAL_PRIORS:
            everywhere[name] = _everywhere(stream, t)
    return assemble_aggregates(totals, everywhere)


def assemble_aggregates(
    totals: Mapping[str, Mapping[int | None, WindowTotals]],
    everywhere: Mapping[str, WindowTotals],
) -> Aggregates:
    """The aggregates from each stream's totals per window in days (``None``: all history) and
    the global priors' totals, however they were found: which stream feeds which aggregate is
    decided here only."""
    return Aggregates(
        available=_level(totals["stock"][None]),
        backlog=_level(totals["backlog"][None]),
        location=_by_days(totals["shipped"]),
        location_everywhere=everywhere["shipped"],
        lane=_by_days(totals["delivered"]),
        lane_everywhere=everywhere["delivered"],
        supplier=totals["receipts"][SUPPLIER_WINDOW_DAYS],
        supplier_everywhere=everywhere["receipts"],
        region_due=totals["due_region"][REGION_DUE_WINDOW_DAYS],
        carrier_due=totals["due_carrier"][CARRIER_DUE_WINDOW_DAYS],
        due_everywhere=everywhere["due_region"],
    )


def window_micros(windows: Sequence[int | None]) -> list[int | None]:
    """Windows in days as microseconds (``None``, all history, stays ``None``)."""
    return [None if days is None else days * MICROS_PER_DAY for days in windows]


def _by_days(totals: Mapping[int | None, WindowTotals]) -> dict[int, WindowTotals]:
    return {days: found for days, found in totals.items() if days is not None}


def _level(totals: WindowTotals) -> np.ndarray:
    """A running sum of signed deltas as float64, NaN for a row without a key (as
    :func:`features.asof.level_before`)."""
    return np.where(totals.has_key, totals.sums["level"], np.nan).astype(np.float64)


def _everywhere(stream: EventStream, t: np.ndarray) -> WindowTotals:
    """The stream's totals over every key and all history before each ``t``."""
    return trailing_totals(
        np.zeros(len(stream.times), dtype=np.int64),
        stream.times,
        stream.values,
        np.zeros(len(t), dtype=np.int64),
        t,
        [None],
    )[None]


def backlog_stream(history: History) -> EventStream:
    """Lines at the location in state ``allocated``: +1 on entering the state, -1 on leaving it
    (picked, cancelled, backordered by a count), from the line history."""
    changes = history.state_changes
    delta = (changes["to_state"] == LineState.ALLOCATED).astype(np.int64) - (
        changes["from_state"] == LineState.ALLOCATED
    ).astype(np.int64)
    moved = changes.loc[delta != 0]
    where = moved["line_id"].map(history.lines.set_index("line_id")["location_id"])
    return EventStream(
        (where,), moved["occurred_at"].to_numpy(), {"level": delta.loc[moved.index].to_numpy()}
    )


def shipped_lines(history: History) -> pd.DataFrame:
    """Every shipped line with a promise: where from, when the ERP knew, on time or not."""
    shipped = history.milestones.loc[history.milestones["event_type"] == "shipped"]
    shipped = shipped.merge(history.first_promises, on="line_id", how="inner")
    day = _milestone_days(shipped, history)
    on_time = (day <= shipped["promised_ship_date"].to_numpy()).astype(np.int64)
    return shipped.assign(on_time=on_time)


def _milestone_days(milestones: pd.DataFrame, history: History) -> np.ndarray:
    zones = milestones["location_id"].map(history.locations.set_index("location_id")["timezone"])
    return cal.local_days(milestones["occurred_at"].to_numpy(), zones)


def delivered_lines(history: History, holidays: np.ndarray) -> pd.DataFrame:
    """Every delivered line with a promise: lane, when the ERP knew, on time or not, and its
    transit in business days (shipped on -> delivered on)."""
    events = history.milestones
    shipped = events.loc[events["event_type"] == "shipped"]
    delivered = events.loc[events["event_type"] == "delivered"]
    both = delivered.merge(
        shipped[["line_id", "occurred_at"]].rename(columns={"occurred_at": "shipped_at"}),
        on="line_id",
        how="inner",
    ).merge(history.first_promises, on="line_id", how="inner")
    delivered_day = _milestone_days(both, history)
    shipped_day = _milestone_days(both.assign(occurred_at=both["shipped_at"]), history)
    return both.assign(
        on_time=(delivered_day <= both["promised_delivery_date"].to_numpy()).astype(np.int64),
        transit=cal.business_days_between(shipped_day, delivered_day, holidays),
    )


# --- feature groups: the definitions both paths share ------------------------------------------


Rows: TypeAlias = pd.DataFrame | Mapping[str, Any]
"""Lines as captured, one column per name: :func:`entry_rows`' frame offline, plain arrays for one
order online. The feature groups read columns only through ``np.asarray``-like helpers, so both
give the same values and one order pays no DataFrame overhead."""


@dataclass(frozen=True)
class LaneTable:
    """The lane master as the lane features read it, built once per history (offline) or per
    refresh (online): a few hundred lanes, looked up by position for every row."""

    index: pd.Index
    """lane_id"""
    transit_days: np.ndarray
    """float64, the nominal business days in transit"""
    express: np.ndarray
    """bool, a service level other than standard"""

    @classmethod
    def of(cls, lanes: pd.DataFrame) -> LaneTable:
        """From the lane master's rows (``History.lanes``)."""
        return cls(
            index=pd.Index(lanes["lane_id"]),
            transit_days=lanes["transit_days"].to_numpy(dtype=np.float64),
            express=_text(lanes["service_level"]) != "standard",
        )


def feature_columns(
    rows: Rows,
    found: Aggregates,
    lanes: LaneTable,
    holidays: np.ndarray,
    alerts: pd.DataFrame,
) -> Columns:
    """Every feature of the rows from the lines as captured and what happened before ``t``:
    the one definition of the late-shipment features, offline and online (``alerts``: the
    carriers' service alerts as :attr:`features.history.History.alerts`)."""
    columns: Columns = {}
    for group in (
        promise_features(rows, holidays),
        promised_ship_day_features(rows, holidays),
        fulfilment_features(rows, found),
        backorder_features(rows, holidays),
        location_features(rows, found),
        lane_features(rows, found, lanes),
        due_features(found),
        alert_features(rows, alerts),
        supplier_features(found),
        customer_and_order_features(rows),
        calendar_features(rows, holidays),
    ):
        columns.update(group)
    return columns


def _floats(values: Any) -> np.ndarray:
    """A column as float64, NaN where null (nullable integers included)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(values, dtype=np.float64)


def _missing(values: Any) -> np.ndarray:
    return np.asarray(pd.isna(values), dtype=bool)


def promise_features(rows: Rows, holidays: np.ndarray) -> Columns:
    """Business days to the first promise, when that promise was made at entry."""
    at_entry = _floats(rows["decided_at"]) <= np.asarray(rows["entered_at"])
    day = np.asarray(rows["entry_day"])

    def lead(promised: str) -> np.ndarray:
        target = np.nan_to_num(_floats(rows[promised]), nan=0.0).astype(np.int64)
        days = cal.business_days_between(day, target, holidays).astype(np.float64)
        return np.where(at_entry, days, np.nan)

    return {
        "promised_ship_lead_bdays": lead("promised_ship_date"),
        "promised_delivery_lead_bdays": lead("promised_delivery_date"),
    }


def _promised_at_entry(rows: Rows) -> np.ndarray:
    return _floats(rows["decided_at"]) <= np.asarray(rows["entered_at"])


def promised_ship_day_features(rows: Rows, holidays: np.ndarray) -> Columns:
    """The promised ship day as the warehouse will meet it: its weekday, a holiday on it or
    within the two calendar days after it, and a price approval that keeps the line off the
    floor until finance decides (the next morning) on a line promised to ship on its entry day."""
    promised = _promised_at_entry(rows)
    ship_day = np.nan_to_num(_floats(rows["promised_ship_date"]), nan=0.0).astype(np.int64)
    pending = np.asarray(rows["price_approval_pending"], dtype=bool)
    return {
        "promised_ship_weekday": np.where(promised, cal.weekday(ship_day), np.nan),
        "holiday_near_promised_ship": promised
        & _holiday_within_days(ship_day, PROMISED_SHIP_HOLIDAY_DAYS, holidays),
        "price_approval_pending": pending,
        "approval_blocks_promise": pending
        & promised
        & (ship_day <= np.asarray(rows["entry_day"], dtype=np.int64)),
    }


def _holiday_within_days(days: np.ndarray, calendar_days: int, holidays: np.ndarray) -> np.ndarray:
    """A holiday falls on a date from ``days`` through ``calendar_days`` calendar days later."""
    dates = cal.as_dates(days)
    first = np.searchsorted(holidays, dates, side="left")
    last = np.searchsorted(holidays, dates + calendar_days, side="right")
    return last > first


def backorder_features(rows: Rows, holidays: np.ndarray) -> Columns:
    """For a line backordered at capture: the business days between the receipt it waits for
    and its promised ship date, and how overdue the purchase-order line covering it already was
    at entry (null for other lines; the overdue count also when no open purchase covers it)."""
    backordered = _text(rows["state_at_entry"]) == LineState.BACKORDERED.value
    ready = _floats(rows["expected_ready_on"])
    known = backordered & ~np.isnan(ready)
    ready_day = np.nan_to_num(ready, nan=0.0).astype(np.int64)
    ship = _floats(rows["promised_ship_date"])
    promised = known & _promised_at_entry(rows) & ~np.isnan(ship)
    ship_day = np.nan_to_num(ship, nan=0.0).astype(np.int64)
    entry_day = np.asarray(rows["entry_day"], dtype=np.int64)
    covered = known & np.asarray(rows["receipt_covered"], dtype=bool)
    slack = cal.business_days_between(ready_day, ship_day, holidays).astype(np.float64)
    overdue = cal.business_days_between(ready_day, entry_day, holidays).astype(np.float64)
    return {
        "backorder_slack_bdays": np.where(promised, slack, np.nan),
        "backorder_receipt_covered": covered,
        "covering_receipt_overdue_bdays": np.where(covered, overdue, np.nan),
    }


def fulfilment_features(rows: Rows, found: Aggregates) -> Columns:
    """What capture decided (backorder, credit hold, transfer, split) and the stock cover."""
    state = _text(rows["state_at_entry"])
    location = rows["location_at_entry"]
    parents = _floats(rows["parent_line_id"])
    has_parent = ~np.isnan(parents)
    return {
        "needs_backorder": state == LineState.BACKORDERED.value,
        "credit_hold": state == LineState.CREDIT_HOLD.value,
        "transfer": ~_missing(location) & (_text(location) != _text(rows["home_location_id"])),
        "split": has_parent
        | np.isin(np.asarray(rows["line_id"]), parents[has_parent].astype(np.int64)),
        "stock_cover": found.available / np.asarray(rows["line_units"]),
    }


def location_features(rows: Rows, found: Aggregates) -> Columns:
    """The pick queue at the location just before ``t`` and its recent on-time shipping."""
    everywhere = found.location_everywhere
    prior = rate_before(everywhere.sums["on_time"], everywhere.count)
    columns: Columns = {
        "pick_backlog_lines": found.backlog,
        "pick_backlog_ratio": found.backlog / _floats(rows["pick_capacity"]),
    }
    for days in LOCATION_WINDOWS_DAYS:
        window = found.location[days]
        rate = shrunk_rate(window.sums["on_time"], window.count, prior, LOCATION_RATE_STRENGTH)
        columns[f"location_ontime_ship_rate_{days}d"] = np.where(window.has_key, rate, np.nan)
    widest = found.location[LOCATION_WINDOWS_DAYS[-1]]
    columns["location_shipped_lines_56d"] = np.where(
        widest.has_key, widest.count.astype(np.float64), np.nan
    )
    return columns


def lane_features(rows: Rows, found: Aggregates, lanes: LaneTable) -> Columns:
    """The lane's nominal transit, its recent on-time delivery and transit-time spread."""
    everywhere = found.lane_everywhere
    prior_rate = rate_before(everywhere.sums["on_time"], everywhere.count)
    prior_variance = _squared_deviation(everywhere) / np.where(
        everywhere.count > 0, everywhere.count, np.nan
    )
    position = lanes.index.get_indexer(rows["lane_at_entry"])
    known = position >= 0
    transit_days = lanes.transit_days[position]
    columns: Columns = {"lane_transit_days": np.where(known, transit_days, np.nan)}
    for days in LANE_WINDOWS_DAYS:
        window = found.lane[days]
        rate = shrunk_rate(window.sums["on_time"], window.count, prior_rate, LANE_RATE_STRENGTH)
        variance = (_squared_deviation(window) + TRANSIT_VARIANCE_STRENGTH * prior_variance) / (
            window.count + TRANSIT_VARIANCE_STRENGTH
        )
        columns[f"lane_ontime_delivery_rate_{days}d"] = np.where(window.has_key, rate, np.nan)
        columns[f"lane_transit_spread_{days}d"] = np.where(
            window.has_key, np.sqrt(variance), np.nan
        )
    express = lanes.express[position]
    columns["expedite"] = (known & express) | np.asarray(rows["expedite_asked"], dtype=bool)
    return columns


def due_features(found: Aggregates) -> Columns:
    """How many of the lines due lately to the ship region, and on the lane's carrier, arrived
    by their promised day (a line still travelling when its day ended counts late), shrunk to
    the share over every line due before ``t`` (m = 20 lines)."""
    everywhere = found.due_everywhere
    prior = rate_before(everywhere.sums["on_time"], everywhere.sums["due"])
    columns: Columns = {}
    for name, window in (
        (f"region_ontime_due_rate_{REGION_DUE_WINDOW_DAYS}d", found.region_due),
        (f"carrier_ontime_due_rate_{CARRIER_DUE_WINDOW_DAYS}d", found.carrier_due),
    ):
        rate = shrunk_rate(window.sums["on_time"], window.sums["due"], prior, DUE_RATE_STRENGTH)
        columns[name] = np.where(window.has_key, rate, np.nan)
    return columns


def alert_features(rows: Rows, alerts: pd.DataFrame) -> Columns:
    """The highest severity of the carriers' service alerts in force at ``t`` for the ship
    region (one for every carrier, or one for the line's carrier) and announced strictly before
    ``t``; 0 when none. The simulator's storms raise transit lateness from the day they begin,
    long before the late deliveries they cause are judged: an alert is how the ERP knows."""
    t = np.asarray(rows["entered_at"], dtype=np.int64)
    severity = np.zeros(len(t), dtype=np.int64)
    if len(alerts) == 0 or len(t) == 0:
        return {"region_alert_severity": severity}
    # Announced strictly before t and in force at t: t in [max(starts, announced + 1), ends).
    lo = np.maximum(
        alerts["starts_at"].to_numpy(np.int64), alerts["announced_at"].to_numpy(np.int64) + 1
    )
    hi = alerts["ends_at"].to_numpy(np.int64)
    level = alerts["severity"].to_numpy(np.int64)
    regions = pd.Index(pd.unique(alerts["region"].astype(object)))
    carriers = pd.Index(pd.unique(alerts["carrier_id"].dropna().astype(object)))
    region_of_alert = regions.get_indexer(alerts["region"].astype(object))
    carrier_of_alert = carriers.get_indexer(alerts["carrier_id"].astype(object))
    region_of_row = _codes_in(regions, rows["ship_region"])
    carrier_of_row = _codes_in(carriers, rows["carrier_at_entry"])
    general = carrier_of_alert < 0
    # Keys: a region for alerts to every carrier; (region, carrier) for a carrier's own.
    width = len(carriers) + 1
    for own, events, queries in (
        (general, region_of_alert, region_of_row),
        (
            ~general,
            region_of_alert * width + carrier_of_alert,
            np.where(carrier_of_row >= 0, region_of_row * width + carrier_of_row, -1),
        ),
    ):
        if own.any():
            found = _max_level_in_force(events[own], lo[own], hi[own], level[own], queries, t)
            severity = np.maximum(severity, found)
    return {"region_alert_severity": severity}


def _codes_in(known: pd.Index, values: Any) -> np.ndarray:
    """Each value's position in ``known`` (-1: null or not there), matching only the distinct
    values (a categorical column of a million rows is factorised by its codes, not compared)."""
    codes, distinct = pd.factorize(values if isinstance(values, pd.Series) else _text(values))
    lookup = np.append(known.get_indexer(np.asarray(distinct, dtype=object)), -1)
    return lookup[np.where(codes >= 0, codes, len(lookup) - 1)].astype(np.int64)


def _max_level_in_force(
    events: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    level: np.ndarray,
    queries: np.ndarray,
    t: np.ndarray,
) -> np.ndarray:
    """Per query, the highest ``level`` of the intervals ``[lo, hi)`` of its key covering its
    ``t`` (0: none): per key and level, the intervals begun by t minus those ended by t, found
    by binary search (a handful of keys and levels; no loop over rows)."""
    found = np.zeros(len(t), dtype=np.int64)
    valid = lo < hi
    for key in np.unique(events[valid]):
        rows = np.flatnonzero(queries == key)
        if len(rows) == 0:
            continue
        at = t[rows]
        for value in np.unique(level[valid & (events == key)]):
            own = valid & (events == key) & (level == value)
            begun = np.searchsorted(np.sort(lo[own]), at, side="right")
            ended = np.searchsorted(np.sort(hi[own]), at, side="right")
            covered = begun > ended
            found[rows[covered]] = np.maximum(found[rows[covered]], value)
    return found


def _squared_deviation(totals: WindowTotals) -> np.ndarray:
    """Sum of squared deviations from the mean, from exact integer sums: (n*S2 - S1^2) / n."""
    n = totals.count
    s1, s2 = totals.sums["transit"], totals.sums["transit_sq"]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (n * s2 - s1 * s1) / np.maximum(n, 1), 0.0)


def supplier_features(found: Aggregates) -> Columns:
    """For a backordered line, how late its preferred supplier's recent receipts came: the mean
    days late and the share that came after their expected day."""
    window, everywhere = found.supplier, found.supplier_everywhere
    columns: Columns = {}
    for name, value in (
        ("supplier_days_late_56d", "late"),
        ("supplier_late_share_56d", "came_late"),
    ):
        prior = rate_before(everywhere.sums[value], everywhere.count)
        mean = shrunk_rate(window.sums[value], window.count, prior, SUPPLIER_LATENESS_STRENGTH)
        columns[name] = np.where(window.has_key, mean, np.nan)
    return columns


def _text(values: Any) -> np.ndarray:
    """Values as plain objects, comparable across categoricals with different categories."""
    return np.asarray(values, dtype=object)


def customer_and_order_features(rows: Rows) -> Columns:
    """Who ordered, and how big the whole order was at entry."""
    codes, _ = pd.factorize(np.asarray(rows["order_id"]))
    units = np.asarray(rows["line_units"])
    requested = np.isnan(_floats(rows["parent_line_id"])).astype(np.int64)
    return {
        "customer_tier": rows["tier"],
        "channel": rows["channel"],
        "ship_region": rows["ship_region"],
        "order_lines": _count_per_order(requested, codes),
        "order_units": _count_per_order(units, codes),
        "order_weight_kg": _total_per_order(units * _floats(rows["weight_kg"]), codes),
        "order_value": _total_per_order(units * _floats(rows["unit_price"]), codes),
        "line_units": units,
        "product_category": rows["category"],
        "fulfilling_location": _text(rows["location_at_entry"]),
        "carrier": _text(rows["carrier_at_entry"]),
        "abc_class": rows["abc_class"],
    }


def _count_per_order(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """An integer total over each row's order, on every row of it (exact: integers far below
    2**53 add exactly in float64)."""
    return np.bincount(codes, weights=values).astype(np.int64)[codes]


def _total_per_order(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """A float total over each row's order (missing values left out), on every row of it.
    ``bincount`` adds each order's values one by one in row order, so an order's total has the
    same bits whether it is summed alone (online) or among a million others (offline); pandas'
    grouped sum does not promise that (pandas 3 sums sorted groups with ``reduceat``, pairwise,
    and unsorted ones with compensation), and costs ~0.25 ms per call on one order."""
    return np.bincount(codes, weights=np.where(np.isnan(values), 0.0, values))[codes]


def calendar_features(rows: Rows, holidays: np.ndarray) -> Columns:
    day = np.asarray(rows["entry_day"])
    return {
        "entry_weekday": cal.weekday(day),
        "days_to_month_end": cal.days_to_month_end(day),
        "days_to_quarter_end": cal.days_to_quarter_end(day),
        "holiday_within_2bd": cal.holiday_within(day, HOLIDAY_HORIZON_BUSINESS_DAYS, holidays),
        "peak_season": cal.in_peak_season(day),
    }


# --- labels ------------------------------------------------------------------------------------


def labels(
    rows: pd.DataFrame, history: History, delivered: pd.DataFrame, lane_transit_days: np.ndarray
) -> Columns:
    """Late against the first promise, judged on the location's local dates; null while the
    milestone has not happened (or the line was never promised). ``label_late_transit`` is the
    carrier's half of a late delivery, judged against the lane, not the promise: a line that
    shipped late can still have travelled on time, and the late-shipment model learns the two
    hazards apart (``training.late_shipment``)."""
    return {
        "label_late_delivery": _late(rows, history, "delivered", "promised_delivery_date"),
        "label_late_ship": _late(rows, history, "shipped", "promised_ship_date"),
        "label_late_transit": _late_transit(rows, delivered, lane_transit_days),
    }


def _late_transit(
    rows: pd.DataFrame, delivered: pd.DataFrame, lane_transit_days: np.ndarray
) -> np.ndarray:
    """1 when shipped -> delivered (:func:`delivered_lines`) took more business days than the
    lane's nominal transit."""
    transit_of = delivered.drop_duplicates("line_id").set_index("line_id")["transit"]
    transit = rows["line_id"].map(transit_of).to_numpy(np.float64)
    nominal = np.asarray(lane_transit_days, dtype=np.float64)
    late = (transit > nominal).astype(np.float64)
    return np.where(np.isnan(transit) | np.isnan(nominal), np.nan, late)


def _late(rows: pd.DataFrame, history: History, event: str, promised: str) -> np.ndarray:
    events = history.milestones.loc[history.milestones["event_type"] == event]
    events = events.loc[events["line_id"].isin(rows["line_id"])]
    day = pd.Series(_milestone_days(events, history), index=events["line_id"].to_numpy())
    happened = rows["line_id"].map(day)
    late = (happened > rows[promised]).astype(np.float64)
    return late.where(happened.notna() & rows[promised].notna()).to_numpy(dtype=np.float64)
