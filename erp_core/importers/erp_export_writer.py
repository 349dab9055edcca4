"""``export_erp_export``: write an erpx database out in the ERP export format, version 1
(``docs/import-format.md``), as CSV or Parquet, with its manifest.

Source keys are the erpx ids (master data keeps its own). An order line's moments come from its
state history (``line_state_changes``): the state its creation left it in, its last fall-back to
backorder, its last allocation, its cancellation and return; its first promise from
``line_promises``; its milestones from its shipment's events. Stock movements the import cannot
derive from those events (opening counts, cycle counts, short-pick write-offs, transfers,
restocked returns) become inventory snapshots, one at each such moment with the on-hand quantity
after it, so the imported ledger's on hand follows the original's.
"""

from __future__ import annotations

import json
import time as clock
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Integer, cast, select
from sqlalchemy.engine import Connection

from erp_core.db.engine import make_engine
from erp_core.db.models import (
    AuditEntry,
    Carrier,
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
    Shipment,
    ShipmentEvent,
    ShipmentLine,
    Supplier,
)
from erp_core.domain.errors import InvalidValue
from erp_core.importers.erp_export_schema import (
    ENTITIES,
    ENTITY_BY_NAME,
    ENTRY_STATES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
)

DERIVED_ON_HAND_KINDS = frozenset({"receipt", "shipment"})
"""On-hand movements the import derives from receipts and shipments; every other kind becomes a
snapshot."""
FILE_FORMATS = ("csv", "parquet")

Row = dict[str, Any]


@dataclass
class ExportSummary:
    directory: str
    source_system: str
    exported_at: str
    file_format: str
    rows: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0


def export_erp_export(
    source: Engine | str,
    directory: Path | str,
    *,
    source_system: str = "erpx",
    exported_at: datetime | None = None,
    file_format: str = "csv",
    progress: Callable[[str], None] | None = None,
) -> ExportSummary:
    """Write every entity of the database at ``source`` into ``directory`` (created if needed;
    files of the format already there are replaced). ``exported_at`` defaults to now, or to the
    latest moment in the database when that is later (a simulated world in the future)."""
    if file_format not in FILE_FORMATS:
        raise InvalidValue("file_format", file_format, f"not one of {', '.join(FILE_FORMATS)}")
    started = clock.perf_counter()
    step = progress or (lambda _name: None)
    engine = make_engine(source) if isinstance(source, str) else source
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    try:
        with engine.connect() as connection:
            reader = _Reader(connection)
            tables: dict[str, list[Row]] = {}
            for entity in ENTITIES:
                step(f"reading {entity.name}")
                tables[entity.name] = getattr(reader, entity.name)()
    finally:
        if isinstance(source, str):
            engine.dispose()
    moment = exported_at or datetime.now(UTC)
    latest = _latest_moment(tables)
    if exported_at is None and latest is not None and latest > moment:
        moment = latest
    if moment.tzinfo is None:
        raise InvalidValue("exported_at", moment, "must be a timezone-aware datetime")
    summary = ExportSummary(str(target), source_system, moment.isoformat(), file_format)
    for entity in ENTITIES:
        step(f"writing {entity.name}")
        for stale in (target / f"{entity.name}.csv", target / f"{entity.name}.parquet"):
            stale.unlink(missing_ok=True)
        rows = tables[entity.name]
        _write(target / f"{entity.name}.{file_format}", entity.name, rows, file_format)
        summary.rows[entity.name] = len(rows)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source_system": source_system,
        "exported_at": moment.astimezone(UTC).isoformat(),
        "timestamps_timezone": None,
        "row_counts": summary.rows,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    summary.elapsed_seconds = clock.perf_counter() - started
    return summary


def _latest_moment(tables: dict[str, list[Row]]) -> datetime | None:
    moments = [
        value
        for rows in tables.values()
        for row in rows
        for value in row.values()
        if isinstance(value, datetime)
    ]
    return max(moments, default=None)


# --- writing -------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return str(value)


def _write(path: Path, entity: str, rows: list[Row], file_format: str) -> None:
    columns = [column.name for column in ENTITY_BY_NAME[entity].columns]
    if file_format == "csv":
        frame = pd.DataFrame(
            {name: [_text(row.get(name)) for row in rows] for name in columns}, dtype=object
        )
        frame.to_csv(path, index=False, encoding="utf-8")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {column.name: column.type for column in ENTITY_BY_NAME[entity].columns}
    arrays = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        kind = types[name]
        if kind == "timestamp":
            arrays[name] = pa.array(
                [None if v is None else v.astimezone(UTC) for v in values],
                type=pa.timestamp("us", tz="UTC"),
            )
        elif kind == "date":
            arrays[name] = pa.array(values, type=pa.date32())
        elif kind == "int":
            arrays[name] = pa.array(values, type=pa.int64())
        elif kind == "bool":
            arrays[name] = pa.array(values, type=pa.bool_())
        else:  # keys, text, decimals (exact, as text) and times
            arrays[name] = pa.array([None if v is None else _text(v) for v in values], pa.string())
    pq.write_table(pa.table(arrays), path)


# --- reading -------------------------------------------------------------------------------------


def _key(value: Any) -> str | None:
    return None if value is None else str(value)


def _aware(value: Any) -> Any:
    """Moments read through Core without the ORM's type on SQLite arrive naive UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class _Reader:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def all(self, query: Any) -> list[Row]:
        return [
            {k: _aware(v) for k, v in row._mapping.items()}
            for row in self.connection.execute(query)
        ]

    def suppliers(self) -> list[Row]:
        return self.all(
            select(
                Supplier.id.label("supplier_id"), Supplier.name, Supplier.nominal_lead_days
            ).order_by(Supplier.id)
        )

    def locations(self) -> list[Row]:
        return self.all(
            select(
                Location.id.label("location_id"),
                Location.name,
                Location.region,
                Location.pick_capacity_per_day,
                Location.timezone,
                Location.cutoff_time,
            ).order_by(Location.id)
        )

    def products(self) -> list[Row]:
        return self.all(
            select(
                Product.sku,
                Product.name,
                Product.category,
                Product.unit_cost,
                Product.list_price,
                Product.weight_kg,
                Product.pack_size,
                Product.uom,
                Product.preferred_supplier_id,
                Product.abc_class,
                Product.active,
            ).order_by(Product.sku)
        )

    def customers(self) -> list[Row]:
        return self.all(
            select(
                Customer.id.label("customer_id"),
                Customer.name,
                Customer.tier,
                Customer.credit_limit,
                Customer.channel,
                Customer.region,
                Customer.service_level_target,
                Customer.home_location_id,
            ).order_by(Customer.id)
        )

    def carriers(self) -> list[Row]:
        return self.all(select(Carrier.id.label("carrier_id"), Carrier.name).order_by(Carrier.id))

    def lanes(self) -> list[Row]:
        rows = self.all(
            select(
                Lane.id.label("lane_id"),
                Lane.carrier_id,
                Lane.origin_location_id,
                Lane.dest_region,
                Lane.service_level,
                Lane.transit_days,
                Lane.cost_per_shipment,
                Lane.cost_per_kg,
            ).order_by(Lane.id)
        )
        for row in rows:
            row["lane_id"] = _key(row["lane_id"])
        return rows

    def price_lists(self) -> list[Row]:
        return self.all(
            select(
                PriceListEntry.tier,
                PriceListEntry.sku,
                PriceListEntry.unit_price,
                PriceListEntry.min_quantity,
                PriceListEntry.valid_from,
            ).order_by(PriceListEntry.id)
        )

    def orders(self) -> list[Row]:
        rows = self.all(
            select(
                SalesOrder.id.label("order_id"),
                SalesOrder.customer_id,
                SalesOrder.entered_at,
                SalesOrder.channel,
                SalesOrder.ship_to_region,
                SalesOrder.requested_date,
                SalesOrder.allow_split,
                SalesOrder.entered_by,
                SalesOrder.external_ref,
            ).order_by(SalesOrder.id)
        )
        for row in rows:
            row["order_id"] = _key(row["order_id"])
        return rows

    def order_lines(self) -> list[Row]:
        lines = self.all(
            select(
                OrderLine.id.label("line_id"),
                OrderLine.order_id,
                OrderLine.line_no,
                OrderLine.sku,
                OrderLine.quantity,
                OrderLine.state.label("status"),
                OrderLine.list_price,
                OrderLine.unit_price,
                OrderLine.tier_price,
                OrderLine.discount_pct,
                OrderLine.parent_line_id,
                OrderLine.location_id,
                OrderLine.lane_id,
                OrderLine.requested_date,
            ).order_by(OrderLine.id)
        )
        changes: dict[int, list[Row]] = defaultdict(list)
        for change in self.all(
            select(
                LineStateChange.line_id,
                LineStateChange.to_state,
                LineStateChange.occurred_at,
            ).order_by(LineStateChange.id)
        ):
            changes[change["line_id"]].append(change)
        promises: dict[int, Row] = {}
        for promise in self.all(select(LinePromise).order_by(LinePromise.id)):
            promises.setdefault(promise["line_id"], promise)
        sources: dict[int, str] = {}
        for decision in self.all(
            select(PriceDecision.line_id, PriceDecision.source).order_by(PriceDecision.id)
        ):
            sources.setdefault(decision["line_id"], decision["source"])
        ready: dict[int, list[tuple[datetime, str | None]]] = defaultdict(list)
        for entry in self.all(
            select(
                cast(AuditEntry.entity_id, Integer).label("line_id"),
                AuditEntry.occurred_at,
                AuditEntry.details["ready_on"].as_string().label("ready_on"),
            )
            .where(AuditEntry.action == "backorder", AuditEntry.entity_type == "order_line")
            .order_by(AuditEntry.id)
        ):
            ready[entry["line_id"]].append((_moment(entry["occurred_at"]), entry["ready_on"]))
        shipped_in = {
            row["line_id"]: row["shipment_id"]
            for row in self.all(select(ShipmentLine.line_id, ShipmentLine.shipment_id))
        }
        for line in lines:
            line_id = line["line_id"]
            _with_moments(line, changes[line_id], ready[line_id])
            first = promises.get(line_id)
            line["promised_ship_date"] = first["promised_ship_date"] if first else None
            line["promised_delivery_date"] = first["promised_delivery_date"] if first else None
            line["promised_at"] = first["decided_at"] if first else None
            line["price_source"] = sources.get(line_id)
            line["shipment_id"] = _key(shipped_in.get(line_id))
            for name in ("line_id", "order_id", "parent_line_id", "lane_id"):
                line[name] = _key(line[name])
        return lines

    def shipments(self) -> list[Row]:
        rows = self.all(
            select(
                Shipment.id.label("shipment_id"),
                Shipment.order_id,
                Shipment.location_id,
                Shipment.lane_id,
                Shipment.created_at,
                Shipment.planned_freight_cost,
                Shipment.actual_freight_cost,
                Shipment.expedited,
            ).order_by(Shipment.id)
        )
        events: dict[int, dict[str, Row]] = defaultdict(dict)
        for event in self.all(
            select(
                ShipmentEvent.shipment_id,
                ShipmentEvent.event_type,
                ShipmentEvent.occurred_at,
                ShipmentEvent.recorded_at,
            ).order_by(ShipmentEvent.id)
        ):
            events[event["shipment_id"]].setdefault(event["event_type"], event)
        for row in rows:
            found = events[row["shipment_id"]]
            picked = found.get("picked")
            row["picked_at"] = picked["occurred_at"] if picked else row.pop("created_at")
            row.pop("created_at", None)
            for milestone in ("packed", "shipped", "delivered"):
                seen = found.get(milestone)
                row[f"{milestone}_at"] = seen["occurred_at"] if seen else None
            for milestone in ("picked", "packed", "shipped", "delivered"):
                seen = found.get(milestone)
                recorded = seen["recorded_at"] if seen else None
                row[f"{milestone}_recorded_at"] = (
                    recorded if seen and recorded != seen["occurred_at"] else None
                )
            for name in ("shipment_id", "order_id", "lane_id"):
                row[name] = _key(row[name])
        return rows

    def purchase_orders(self) -> list[Row]:
        rows = self.all(
            select(
                PurchaseOrder.id.label("po_id"),
                PurchaseOrder.supplier_id,
                PurchaseOrder.location_id,
                PurchaseOrder.placed_at,
                PurchaseOrder.placed_by,
            ).order_by(PurchaseOrder.id)
        )
        cancelled = {
            int(row["entity_id"]): _moment(row["occurred_at"])
            for row in self.all(
                select(AuditEntry.entity_id, AuditEntry.occurred_at).where(
                    AuditEntry.action == "cancel_purchase_order",
                    AuditEntry.entity_type == "purchase_order",
                )
            )
        }
        for row in rows:
            row["cancelled_at"] = cancelled.get(row["po_id"])
            row["po_id"] = _key(row["po_id"])
        return rows

    def purchase_order_lines(self) -> list[Row]:
        rows = self.all(
            select(
                PurchaseOrderLine.id.label("po_line_id"),
                PurchaseOrderLine.purchase_order_id.label("po_id"),
                PurchaseOrderLine.sku,
                PurchaseOrderLine.quantity,
                PurchaseOrderLine.unit_cost,
                PurchaseOrderLine.expected_date,
            ).order_by(PurchaseOrderLine.id)
        )
        for row in rows:
            row["po_line_id"], row["po_id"] = _key(row["po_line_id"]), _key(row["po_id"])
        return rows

    def receipts(self) -> list[Row]:
        rows = self.all(
            select(
                Receipt.id.label("receipt_id"),
                Receipt.purchase_order_line_id.label("po_line_id"),
                Receipt.quantity,
                Receipt.received_at,
                Receipt.received_by,
            ).order_by(Receipt.id)
        )
        for row in rows:
            row["receipt_id"], row["po_line_id"] = _key(row["receipt_id"]), _key(row["po_line_id"])
        return rows

    def inventory_snapshots(self) -> list[Row]:
        """On hand after each movement the import cannot derive (see the module docstring)."""
        moves = self.all(
            select(
                InventoryMovement.sku,
                InventoryMovement.location_id,
                InventoryMovement.occurred_at,
                InventoryMovement.quantity,
                InventoryMovement.kind,
            )
            .where(InventoryMovement.bucket == "on_hand")
            .order_by(InventoryMovement.occurred_at, InventoryMovement.id)
        )
        on_hand: dict[tuple[str, str], int] = defaultdict(int)
        counted: dict[tuple[str, str, datetime], int] = {}
        for move in moves:
            pair = (move["sku"], move["location_id"])
            on_hand[pair] += move["quantity"]
            due = move["kind"] not in DERIVED_ON_HAND_KINDS
            key = (*pair, move["occurred_at"])
            if due or key in counted:
                # The snapshot is the stock after every movement at that moment.
                counted[key] = on_hand[pair]
        return [
            {"sku": sku, "location_id": location_id, "as_of": at, "on_hand": quantity}
            for (sku, location_id, at), quantity in sorted(counted.items())
        ]


def _moment(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _with_moments(
    line: Row, changes: Iterable[Row], backorders: list[tuple[datetime, str | None]]
) -> None:
    """The line's creation, state at entry and later moments, from its state history."""
    history = list(changes)
    line["created_at"] = history[0]["occurred_at"] if history else None
    entry = history[1] if len(history) > 1 else None
    state = entry["to_state"] if entry is not None else None
    line["state_at_entry"] = state if state in ENTRY_STATES else None
    later = history[2:] if entry is not None and state in ENTRY_STATES else history[1:]
    for name, target in (
        ("backordered_at", "backordered"),
        ("allocated_at", "allocated"),
        ("cancelled_at", "cancelled"),
        ("returned_at", "returned"),
    ):
        moments = [change["occurred_at"] for change in later if change["to_state"] == target]
        line[name] = moments[-1] if moments else None
    ready_on = None
    if state == "backordered" and entry is not None:
        for moment, ready in backorders:
            if moment == entry["occurred_at"]:
                ready_on = date.fromisoformat(ready) if ready else None
                break
    line["expected_ready_on"] = ready_on
