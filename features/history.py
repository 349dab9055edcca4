"""The ERP history the offline pipelines read, loaded once into column frames.

Each table is read with one query and only the columns the features need. Times arrive as int64
microseconds since the epoch (UTC) and dates as int64 days since the epoch, parsed in bulk by
pandas rather than row by row by the ORM (on SQLite the raw text is read and parsed once per
column, which is what makes a million-line history load in seconds).

Two choices here decide what "known at t" means:

* A shipment milestone counts from the moment the ERP recorded it, ``known_at = max(occurred_at,
  recorded_at)``: a delivery scanned at 11:00 and keyed in at 11:05 was not known at 11:02. The
  dates the milestone is judged by (shipped on, delivered on) still come from ``occurred_at``.
* Everything else in the history is stamped by the act that wrote it (``now``), so its
  ``occurred_at`` is when the ERP knew it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_string_dtype
from sqlalchemy import (
    CompoundSelect,
    Engine,
    Float,
    Integer,
    Select,
    String,
    case,
    cast,
    func,
    inspect,
    select,
    type_coerce,
    union,
)
from sqlalchemy.sql.elements import ColumnElement

from erp_core.db.engine import make_engine
from erp_core.db.models import (
    ApprovalRequest,
    AuditEntry,
    Customer,
    InventoryMovement,
    Lane,
    LinePromise,
    LineStateChange,
    Location,
    OrderLine,
    PriceDecision,
    PriceListEntry,
    Product,
    PurchaseOrder,
    PurchaseOrderLine,
    Receipt,
    SalesOrder,
    ServiceAlert,
    Shipment,
    ShipmentEvent,
    ShipmentLine,
)
from features.availability import Sources, read_sources

MILESTONES = ("shipped", "delivered")
ALERT_COLUMNS = ("region", "carrier_id", "severity", "starts_at", "ends_at", "announced_at")


def no_alerts() -> pd.DataFrame:
    """The alerts table with no rows (a history read without it, or a database without any)."""
    return pd.DataFrame(
        {
            "region": pd.Series(dtype=object),
            "carrier_id": pd.Series(dtype=object),
            **{name: np.zeros(0, dtype=np.int64) for name in ALERT_COLUMNS[2:]},
        }
    )


@dataclass(frozen=True)
class History:
    """ERP tables as frames. Columns named ``*_at`` are int64 microseconds (UTC); columns named
    ``*_date`` are int64 days since 1970-01-01."""

    lines: pd.DataFrame
    """line_id, order_id, parent_line_id, sku, quantity, location_id, lane_id, entered_at"""
    orders: pd.DataFrame
    """order_id, customer_id, channel, ship_region"""
    customers: pd.DataFrame
    """customer_id, tier, home_location_id"""
    products: pd.DataFrame
    """sku, category, abc_class, weight_kg, supplier_id, unit_cost, product_list_price (as now)"""
    locations: pd.DataFrame
    """location_id, pick_capacity_per_day, timezone"""
    lanes: pd.DataFrame
    """lane_id, origin_location_id, carrier_id, dest_region, service_level, transit_days,
    cost_per_shipment"""
    state_changes: pd.DataFrame
    """line_id, from_state, to_state, occurred_at, in the order they were written"""
    first_promises: pd.DataFrame
    """promise_id, line_id, promised_ship_date, promised_delivery_date, decided_at (the line's
    first row)"""
    first_prices: pd.DataFrame
    """line_id, unit_price, list_price, tier_price (after quantity breaks), price_source
    (price_list | override): the line's first price decision, made at its capture"""
    stock_moves: pd.DataFrame
    """sku, location_id, available_delta (+on hand, -reserved), occurred_at"""
    milestones: pd.DataFrame
    """line_id, event_type (shipped | delivered), location_id, lane_id, occurred_at, known_at"""
    receipts: pd.DataFrame
    """supplier_id, received_at, days_late"""
    splits: pd.DataFrame
    """line_id (the new line), parent_line_id, occurred_at, quantity, kept_quantity: the audit of
    ``split_line``, the only way a line is created after its order's capture"""
    expedites: pd.DataFrame
    """line_id, requested_at, approved_at (int64 microseconds, -1 when not approved)"""
    price_list: pd.DataFrame
    """tier, sku, min_quantity, unit_price, valid_from (days): the tier price lists as they are
    now (master data; an entry's ``valid_from`` is what makes it point in time)"""
    price_approvals: pd.DataFrame
    """line_id, requested_at, decided_at (int64 microseconds, -1 while undecided): the discount
    approvals a line's price waits for"""
    backorders: pd.DataFrame
    """line_id, occurred_at, ready_on (days): each ``backorder`` act's expected ready date, from
    its audit (the line keeps only the latest)"""
    po_lines: pd.DataFrame
    """sku, location_id, expected_date (days), placed_at, closed_at (int64 microseconds; the
    receipt that completed the line, -1 while open): purchase-order lines as scheduled receipts"""
    alerts: pd.DataFrame = field(default_factory=no_alerts)
    """region, carrier_id (None: every carrier), severity, starts_at, ends_at, announced_at: the
    carriers' service alerts (read whole: a few per region and month). Defaults to none, for a
    history a pipeline reads without them."""
    sources: Sources | None = None
    """Where the whole history came from and what it lacks (:mod:`features.availability`), read
    once by :func:`load_history`; kept by :meth:`with_tables`, so a part of the history decides
    availability as the whole does. None for a tail or a history built by hand: every feature
    available."""

    def table_sizes(self) -> dict[str, int]:
        return {
            f.name: len(getattr(self, f.name))
            for f in fields(self)
            if isinstance(getattr(self, f.name), pd.DataFrame)
        }

    def with_tables(self, **tables: pd.DataFrame) -> History:
        return replace(self, **tables)


def load_history(source: Engine | str) -> History:
    """Read every table the offline features need from the ERP database at ``source``."""
    engine = make_engine(source) if isinstance(source, str) else source
    try:
        with engine.connect() as connection:
            reader = _Reader(connection, engine.dialect.name)
            history = History(
                lines=reader.lines(),
                orders=reader.orders(),
                customers=reader.customers(),
                products=reader.products(),
                locations=reader.locations(),
                lanes=reader.lanes(),
                state_changes=reader.state_changes(),
                first_promises=reader.first_promises(),
                first_prices=reader.first_prices(),
                stock_moves=reader.stock_moves(),
                milestones=reader.milestones(),
                receipts=reader.receipts(),
                splits=reader.splits(),
                expedites=reader.expedites(),
                price_list=reader.price_list(),
                price_approvals=reader.price_approvals(),
                backorders=reader.backorders(),
                po_lines=reader.po_lines(),
                alerts=reader.alerts(),
            )
            return replace(history, sources=read_sources(connection, history))
    finally:
        if isinstance(source, str):
            engine.dispose()


TAILED = {
    "stock_moves": InventoryMovement.id,
    "state_changes": LineStateChange.id,
    "milestones": ShipmentEvent.id,
    "receipts": Receipt.id,
    "promises": LinePromise.id,
}
"""The append-only tables an index can tail: rows are only ever added, with growing ids."""


def watermarks(source: Engine) -> dict[str, int]:
    """The last id of each tailed table (0 when empty): where the next tail starts."""
    with source.connect() as connection:
        return {
            name: int(connection.execute(select(func.coalesce(func.max(column), 0))).scalar_one())
            for name, column in TAILED.items()
        }


IdRange = tuple[int, int]
"""Ids ``(after, until]`` of a tailed table: what was written since one read, up to the next."""


def _in_range(column: Any, ids: IdRange) -> ColumnElement[bool]:
    after, until = ids
    return (column > after) & (column <= until)


def load_history_since(source: Engine, since: Mapping[str, IdRange]) -> History:
    """What was written in ``since`` (an id range per :data:`TAILED` table), with the context the
    event streams need: master data whole; the lines with a new state change, promise or
    milestone (their location, lane, first promise and order); every milestone of lines with a
    new one; the service alerts whole (few, and a feature reads them as of each ``t``). Tables
    the streams do not read (prices, splits, expedites) come back empty.

    Ids grow in commit order on SQLite (one writer at a time). On PostgreSQL a transaction may
    commit a lower id after a higher one was read; a tail there would miss it.
    """
    with source.connect() as connection:
        reader = _Reader(connection, source.dialect.name, since)
        return History(
            lines=reader.lines(),
            orders=reader.orders(),
            customers=reader.customers(),
            products=reader.products(),
            locations=reader.locations(),
            lanes=reader.lanes(),
            state_changes=reader.state_changes(),
            first_promises=reader.first_promises(),
            first_prices=_empty(["line_id", "unit_price"]),
            stock_moves=reader.stock_moves(),
            milestones=reader.milestones(),
            receipts=reader.receipts(),
            splits=_empty(
                ["line_id", "parent_line_id", "occurred_at", "quantity", "kept_quantity"]
            ),
            expedites=_empty(["line_id", "requested_at", "approved_at"]),
            price_list=reader.price_list(),
            price_approvals=_empty(["line_id", "requested_at", "decided_at"]),
            backorders=_empty(["line_id", "occurred_at", "ready_on"]),
            po_lines=reader.po_lines(),
            alerts=reader.alerts(),
        )


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({name: np.zeros(0, dtype=np.int64) for name in columns})


class _Reader:
    """One query per table; moments and dates converted in bulk."""

    def __init__(
        self, connection: Any, dialect: str, since: Mapping[str, IdRange] | None = None
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self.since = since
        """When given, the append-only tables are read only in these id ranges (:data:`TAILED`)."""

    def lines_with_new_milestones(self) -> Select:
        """Lines with a milestone after the watermark: all their milestones are read again, so
        a delivery finds its shipment and duplicates resolve as in a full read."""
        assert self.since is not None
        return (
            select(ShipmentLine.line_id)
            .join(ShipmentEvent, ShipmentEvent.shipment_id == ShipmentLine.shipment_id)
            .where(_in_range(ShipmentEvent.id, self.since["milestones"]))
        )

    def lines_touched(self) -> CompoundSelect:
        """Lines with a new milestone, a new promise or a new state change since the watermark:
        the lines whose events a tail emits."""
        assert self.since is not None
        return union(
            self.lines_with_new_milestones(),
            select(LinePromise.line_id).where(_in_range(LinePromise.id, self.since["promises"])),
            select(LineStateChange.line_id).where(
                _in_range(LineStateChange.id, self.since["state_changes"])
            ),
        )

    def orders(self) -> pd.DataFrame:
        query = select(
            SalesOrder.id.label("order_id"),
            SalesOrder.customer_id,
            SalesOrder.channel,
            SalesOrder.ship_to_region.label("ship_region"),
        )
        if self.since is not None:
            query = query.where(
                SalesOrder.id.in_(
                    select(OrderLine.order_id).where(OrderLine.id.in_(self.lines_touched()))
                )
            )
        return self.frame(query)

    def after(self, query: Select, table: str, column: Any) -> Select:
        """The query limited to rows written after the watermark of ``table``, if any."""
        return query if self.since is None else query.where(_in_range(column, self.since[table]))

    # -- conversions --------------------------------------------------------------------------

    def raw(self, column: Any) -> ColumnElement[Any]:
        """The column as the driver gives it: text on SQLite (parsed in bulk later), a native
        value elsewhere; never through the ORM's per-value result processing."""
        if self.dialect == "sqlite":
            return type_coerce(column, String)
        return column

    def frame(
        self,
        query: Select,
        micros: tuple[str, ...] = (),
        days: tuple[str, ...] = (),
    ) -> pd.DataFrame:
        """The query's rows. Text columns (states, SKUs, locations, tiers) become categoricals:
        they repeat a few values millions of times, and lookups then touch small codes."""
        frame = self.rows(query)
        for name in frame.columns if len(frame) else ():  # an empty result carries no dtypes
            if name not in micros and name not in days and is_string_dtype(frame[name]):
                frame[name] = frame[name].astype("category")
        for name in micros:
            frame[name] = to_micros(frame[name])
        for name in days:
            frame[name] = to_epoch_days(frame[name])
        return frame

    def rows(self, query: Select) -> pd.DataFrame:
        """The driver's tuples straight into a frame: the columns are already the types we want
        (raw text, floats, integers), so SQLAlchemy's per-row objects would only cost time
        (about half the load)."""
        result = self.connection.execute(query)
        try:
            names = list(result.keys())
            rows = result.cursor.fetchall() if result.cursor is not None else []
        finally:
            result.close()
        return pd.DataFrame.from_records(rows, columns=names)

    # -- tables -------------------------------------------------------------------------------

    def lines(self) -> pd.DataFrame:
        query = select(
            OrderLine.id.label("line_id"),
            OrderLine.order_id,
            OrderLine.parent_line_id,
            OrderLine.sku,
            OrderLine.quantity,
            OrderLine.location_id,
            OrderLine.lane_id,
            self.raw(OrderLine.entered_at).label("entered_at"),
        ).order_by(OrderLine.id)
        if self.since is not None:
            query = query.where(OrderLine.id.in_(self.lines_touched()))
        frame = self.frame(query, micros=("entered_at",))
        frame["parent_line_id"] = frame["parent_line_id"].astype("Int64")
        frame["lane_id"] = frame["lane_id"].astype("Int64")
        return frame

    def customers(self) -> pd.DataFrame:
        return self.frame(
            select(Customer.id.label("customer_id"), Customer.tier, Customer.home_location_id)
        )

    def products(self) -> pd.DataFrame:
        return self.frame(
            select(
                Product.sku,
                Product.category,
                Product.abc_class,
                cast(Product.weight_kg, Float).label("weight_kg"),
                Product.preferred_supplier_id.label("supplier_id"),
                cast(Product.unit_cost, Float).label("unit_cost"),
                cast(Product.list_price, Float).label("product_list_price"),
            )
        )

    def locations(self) -> pd.DataFrame:
        return self.frame(
            select(
                Location.id.label("location_id"),
                Location.pick_capacity_per_day,
                Location.timezone,
            )
        )

    def lanes(self) -> pd.DataFrame:
        return self.frame(
            select(
                Lane.id.label("lane_id"),
                Lane.origin_location_id,
                Lane.carrier_id,
                Lane.dest_region,
                Lane.service_level,
                Lane.transit_days,
                cast(Lane.cost_per_shipment, Float).label("cost_per_shipment"),
            ).order_by(Lane.id)
        )

    def state_changes(self) -> pd.DataFrame:
        query = select(
            LineStateChange.line_id,
            LineStateChange.from_state,
            LineStateChange.to_state,
            self.raw(LineStateChange.occurred_at).label("occurred_at"),
        ).order_by(LineStateChange.id)
        return self.frame(
            self.after(query, "state_changes", LineStateChange.id), micros=("occurred_at",)
        )

    def first_promises(self) -> pd.DataFrame:
        first = select(func.min(LinePromise.id)).group_by(LinePromise.line_id)
        if self.since is not None:
            first = first.where(LinePromise.line_id.in_(self.lines_touched()))
        return self.frame(
            select(
                LinePromise.id.label("promise_id"),
                LinePromise.line_id,
                self.raw(LinePromise.promised_ship_date).label("promised_ship_date"),
                self.raw(LinePromise.promised_delivery_date).label("promised_delivery_date"),
                self.raw(LinePromise.decided_at).label("decided_at"),
            ).where(LinePromise.id.in_(first)),
            micros=("decided_at",),
            days=("promised_ship_date", "promised_delivery_date"),
        )

    def first_prices(self) -> pd.DataFrame:
        first = select(func.min(PriceDecision.id)).group_by(PriceDecision.line_id)
        return self.frame(
            select(
                PriceDecision.line_id,
                cast(PriceDecision.unit_price, Float).label("unit_price"),
                cast(PriceDecision.list_price, Float).label("list_price"),
                cast(PriceDecision.tier_price, Float).label("tier_price"),
                PriceDecision.source.label("price_source"),
            ).where(PriceDecision.id.in_(first))
        )

    def price_list(self) -> pd.DataFrame:
        return self.frame(
            select(
                PriceListEntry.tier,
                PriceListEntry.sku,
                PriceListEntry.min_quantity,
                cast(PriceListEntry.unit_price, Float).label("unit_price"),
                self.raw(PriceListEntry.valid_from).label("valid_from"),
            ).order_by(PriceListEntry.id),
            days=("valid_from",),
        )

    def price_approvals(self) -> pd.DataFrame:
        frame = self.frame(
            select(
                ApprovalRequest.line_id,
                self.raw(ApprovalRequest.requested_at).label("requested_at"),
                self.raw(ApprovalRequest.decided_at).label("decided_at"),
            )
            .where(ApprovalRequest.kind == "discount", ApprovalRequest.line_id.is_not(None))
            .order_by(ApprovalRequest.id),
            micros=("requested_at",),
        )
        decided = _nullable_micros(frame["decided_at"])
        frame["decided_at"] = decided.where(decided != NO_MOMENT, -1)
        return frame.astype({"line_id": "int64"})

    def backorders(self) -> pd.DataFrame:
        frame = self.frame(
            select(
                cast(AuditEntry.entity_id, Integer).label("line_id"),
                self.raw(AuditEntry.occurred_at).label("occurred_at"),
                AuditEntry.details["ready_on"].as_string().label("ready_on"),
            )
            .where(AuditEntry.action == "backorder", AuditEntry.entity_type == "order_line")
            .order_by(AuditEntry.id),
            micros=("occurred_at",),
            days=("ready_on",),
        )
        return frame.astype({"line_id": "int64"})

    def po_lines(self) -> pd.DataFrame:
        lines = self.frame(
            select(
                PurchaseOrderLine.id.label("po_line_id"),
                PurchaseOrderLine.sku,
                PurchaseOrder.location_id,
                self.raw(PurchaseOrderLine.expected_date).label("expected_date"),
                self.raw(PurchaseOrder.placed_at).label("placed_at"),
                PurchaseOrderLine.quantity,
            )
            .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
            .order_by(PurchaseOrderLine.id),
            micros=("placed_at",),
            days=("expected_date",),
        )
        receipts = self.frame(
            select(
                Receipt.purchase_order_line_id.label("po_line_id"),
                Receipt.quantity,
                self.raw(Receipt.received_at).label("received_at"),
            ).order_by(Receipt.received_at, Receipt.id),
            micros=("received_at",),
        )
        return _with_closing_receipt(lines, receipts)

    def stock_moves(self) -> pd.DataFrame:
        signed = case(
            (InventoryMovement.bucket == "on_hand", InventoryMovement.quantity),
            else_=-InventoryMovement.quantity,
        )
        query = select(
            InventoryMovement.sku,
            InventoryMovement.location_id,
            signed.label("available_delta"),
            self.raw(InventoryMovement.occurred_at).label("occurred_at"),
        ).where(InventoryMovement.bucket.in_(("on_hand", "reserved")))
        return self.frame(
            self.after(query, "stock_moves", InventoryMovement.id), micros=("occurred_at",)
        )

    def milestones(self) -> pd.DataFrame:
        query = (
            select(
                ShipmentLine.line_id,
                ShipmentEvent.event_type,
                Shipment.location_id,
                Shipment.lane_id,
                self.raw(ShipmentEvent.occurred_at).label("occurred_at"),
                self.raw(ShipmentEvent.recorded_at).label("recorded_at"),
                ShipmentEvent.id.label("event_id"),
            )
            .join(Shipment, Shipment.id == ShipmentEvent.shipment_id)
            .join(ShipmentLine, ShipmentLine.shipment_id == Shipment.id)
            .where(ShipmentEvent.event_type.in_(MILESTONES))
            .order_by(ShipmentEvent.id, ShipmentLine.line_id)
        )
        if self.since is not None:
            query = query.where(
                _in_range(ShipmentEvent.id, self.since["milestones"])
                | ShipmentLine.line_id.in_(self.lines_with_new_milestones())
            )
        frame = self.frame(query, micros=("occurred_at", "recorded_at"))
        frame["known_at"] = np.maximum(frame["occurred_at"], frame["recorded_at"])
        frame["lane_id"] = frame["lane_id"].astype("Int64")
        # A line leaves in one shipment; keep its first milestone of each kind all the same.
        return frame.drop(columns="recorded_at").drop_duplicates(["line_id", "event_type"])

    def alerts(self) -> pd.DataFrame:
        """The service alerts; none from a database not yet migrated to hold them (revision
        0002 or older), so features of an older database still build, without alerts."""
        if not inspect(self.connection).has_table(ServiceAlert.__tablename__):
            return no_alerts()
        frame = self.frame(
            select(
                ServiceAlert.region,
                ServiceAlert.carrier_id,
                ServiceAlert.severity,
                self.raw(ServiceAlert.starts_at).label("starts_at"),
                self.raw(ServiceAlert.ends_at).label("ends_at"),
                self.raw(ServiceAlert.announced_at).label("announced_at"),
            ).order_by(ServiceAlert.id),
            micros=("starts_at", "ends_at", "announced_at"),
        )
        if frame.empty:
            return no_alerts()
        return frame.astype({"region": object, "carrier_id": object, "severity": np.int64})

    def receipts(self) -> pd.DataFrame:
        query = (
            select(
                PurchaseOrder.supplier_id,
                self.raw(Receipt.received_at).label("received_at"),
                Receipt.days_late,
            )
            .join(PurchaseOrderLine, PurchaseOrderLine.id == Receipt.purchase_order_line_id)
            .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        )
        return self.frame(self.after(query, "receipts", Receipt.id), micros=("received_at",))

    def splits(self) -> pd.DataFrame:
        details = AuditEntry.details
        frame = self.frame(
            select(
                cast(AuditEntry.entity_id, Integer).label("line_id"),
                details["parent_line_id"].as_integer().label("parent_line_id"),
                self.raw(AuditEntry.occurred_at).label("occurred_at"),
                details["quantity"].as_integer().label("quantity"),
                details["kept_quantity"].as_integer().label("kept_quantity"),
            )
            .where(AuditEntry.action == "split_line", AuditEntry.entity_type == "order_line")
            .order_by(AuditEntry.id),
            micros=("occurred_at",),
        )
        return frame.astype(
            {
                "line_id": "int64",
                "parent_line_id": "int64",
                "quantity": "int64",
                "kept_quantity": "int64",
            }
        )

    def expedites(self) -> pd.DataFrame:
        approved = case((ApprovalRequest.status == "approved", ApprovalRequest.decided_at))
        frame = self.frame(
            select(
                ApprovalRequest.line_id,
                self.raw(ApprovalRequest.requested_at).label("requested_at"),
                self.raw(approved).label("approved_at"),
            ).where(ApprovalRequest.kind == "expedite", ApprovalRequest.line_id.is_not(None)),
            micros=("requested_at",),
        )
        approved_at = _nullable_micros(frame["approved_at"])
        frame["approved_at"] = approved_at.where(approved_at != NO_MOMENT, -1)
        return frame


def _with_closing_receipt(lines: pd.DataFrame, receipts: pd.DataFrame) -> pd.DataFrame:
    """Each purchase-order line with ``closed_at``: the moment of the receipt that brought its
    received quantity to the ordered one (-1 while open)."""
    receipts = receipts.astype({"po_line_id": np.int64, "quantity": np.int64})
    lines = lines.astype({"po_line_id": np.int64, "quantity": np.int64})
    received = receipts.groupby("po_line_id")["quantity"].cumsum()
    ordered = receipts["po_line_id"].map(lines.set_index("po_line_id")["quantity"])
    closing = receipts.loc[received.to_numpy() >= ordered.to_numpy()]
    closed = closing.drop_duplicates("po_line_id").set_index("po_line_id")["received_at"]
    closed_at = lines["po_line_id"].map(closed).fillna(-1).astype(np.int64)
    return lines.drop(columns="quantity").assign(closed_at=closed_at.to_numpy())


def to_micros(values: pd.Series) -> pd.Series:
    """Timestamps (ISO text or datetimes) as int64 microseconds since the epoch, UTC."""
    micros = _nullable_micros(values)
    if (micros == NO_MOMENT).any():
        raise ValueError(f"{values.name}: a moment is missing in the ERP history")
    return micros


NO_MOMENT = np.iinfo(np.int64).min
"""How a missing moment reads after :func:`_nullable_micros` (pandas' NaT as an integer)."""


def _nullable_micros(values: pd.Series) -> pd.Series:
    if len(values) == 0:
        return pd.Series(np.zeros(0, dtype=np.int64), index=values.index)
    parsed = pd.to_datetime(values, utc=True, format="ISO8601").dt.as_unit("us")
    return pd.Series(parsed.array.asi8, index=values.index)


def to_epoch_days(values: pd.Series) -> pd.Series:
    """Dates (ISO text or date objects) as int64 days since 1970-01-01."""
    if len(values) == 0:
        return pd.Series(np.zeros(0, dtype=np.int64), index=values.index)
    parsed = pd.to_datetime(values, format="ISO8601")
    days = parsed.to_numpy().astype("datetime64[D]").astype(np.int64)
    return pd.Series(days, index=values.index)
