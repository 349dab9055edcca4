"""``import_erp_export``: load a directory in the erpx ERP export format (``docs/import-format.md``)
into the ERP database, through erp_core's rules, idempotently.

The load is one transaction in two phases. **Checking** reads the files
(``erp_export_schema.read_export``: a refusal stops everything, a bad value rejects its row), then
applies the rules between files: references, chronology, each line's path through the state
machine (``check_transition``), over-receipts, and the source keys imported before (a row seen
before with the same content is *present* and skipped; with other content it is rejected). A
rejected row takes the rows referring to it along. **Writing** then records what was accepted:
master data through ``load_master_data``; orders, lines, shipments, purchase orders and receipts
as erpx's own acts record them (``transition`` for every state step with its audit entry and line
history, ``record_price``, ``record_promise``, reservations, shipment events, receipt lead times);
and the stock ledger derived from those events (see ``_Ledger``). Every new transaction row's
source key is remembered as an idempotency record (scope ``import:<entity>``), which is what
makes a second import of the same files change nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time as clock
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import insert, select

from erp_core.db.models import (
    Base,
    Carrier,
    Customer,
    IdempotencyRecord,
    InventoryBalance,
    InventoryMovement,
    Lane,
    Location,
    OrderLine,
    PriceListEntry,
    Product,
    PurchaseOrder,
    PurchaseOrderLine,
    Receipt,
    Reservation,
    SalesOrder,
    Shipment,
    ShipmentEvent,
    ShipmentLine,
    Supplier,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import IllegalTransition, InvalidValue
from erp_core.domain.pricing import CENT
from erp_core.domain.states import LineState, PurchaseOrderStatus, ShipmentStatus, check_transition
from erp_core.importers.erp_export_schema import (
    ENTITIES,
    FORMAT_VERSION,
    ParsedExport,
    Reject,
    Row,
    read_export,
    reject_row,
)
from erp_core.policy import Actor
from erp_core.services.common import audit, transition
from erp_core.services.idempotency import MAX_KEY_LENGTH, request_fingerprint
from erp_core.services.master_data import (
    CarrierSpec,
    CustomerSpec,
    LaneSpec,
    LocationSpec,
    MasterData,
    PriceSpec,
    ProductSpec,
    SupplierSpec,
    load_master_data,
)
from erp_core.services.orders import record_price
from erp_core.services.stock import lock_balances, record_promise

IMPORT_ACTOR = Actor("import", "admin")
"""Who the audit trail says did an import when the caller names nobody."""
SCOPE_PREFIX = "import:"

Progress = Callable[[str], None]


# --- the report ----------------------------------------------------------------------------------


@dataclass
class EntityCounts:
    read: int = 0
    loaded: int = 0
    present: int = 0
    """Rows imported before with the same content (or master data equal to the database's)."""
    rejected: int = 0
    absent: bool = False


@dataclass
class ImportReport:
    directory: str
    source_system: str
    format_version: int
    exported_at: str
    entities: dict[str, EntityCounts] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    ledger: dict[str, int] = field(default_factory=dict)
    """Movements written per kind (``import_opening`` and ``import_snapshot`` among them)."""
    elapsed_seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(counts.read for counts in self.entities.values())

    @property
    def rows_loaded(self) -> int:
        return sum(counts.loaded for counts in self.entities.values())

    @property
    def rows_present(self) -> int:
        return sum(counts.present for counts in self.entities.values())

    @property
    def rows_rejected(self) -> int:
        return sum(counts.rejected for counts in self.entities.values())

    def rejects_by_rule(self) -> dict[str, int]:
        return dict(Counter(reject.rule for reject in self.rejects).most_common())

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "source_system": self.source_system,
            "format_version": self.format_version,
            "exported_at": self.exported_at,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_present": self.rows_present,
            "rows_rejected": self.rows_rejected,
            "entities": {name: vars(counts) for name, counts in self.entities.items()},
            "rejects_by_rule": self.rejects_by_rule(),
            "ledger": self.ledger,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }

    def write(self, folder: Path | str) -> tuple[Path, Path]:
        """Write ``report.json`` and ``rejects.csv`` (file,row,column,value,rule,message)."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        report_path, rejects_path = target / "report.json", target / "rejects.csv"
        report_path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        with rejects_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=["file", "row", "column", "value", "rule", "message"]
            )
            writer.writeheader()
            for reject in self.rejects:
                writer.writerow(reject.as_dict())
        return report_path, rejects_path


# --- the entry point -----------------------------------------------------------------------------


def import_erp_export(
    uow: UnitOfWork,
    directory: Path | str,
    *,
    actor: Actor = IMPORT_ACTOR,
    now: datetime | None = None,
    progress: Progress | None = None,
    parsed: ParsedExport | None = None,
) -> ImportReport:
    """Load the export at ``directory``; refuses it whole (``ExportRefused``, nothing written) or
    loads every row that passes, in one transaction. Returns the report (not yet written).
    ``parsed`` is the directory already read by ``read_export`` (the CLI reads it before it
    creates the database, so a refused load leaves not even an empty database behind)."""
    started = clock.perf_counter()
    step = progress or (lambda _name: None)
    step("reading files")
    if parsed is None:
        parsed = read_export(directory)
    moment = now or datetime.now(UTC)
    loader = _Loader(uow, parsed, actor, moment, step)
    with uow:
        for permission in (
            "manage_master_data",
            "capture_order",
            "record_shipment_event",
            "place_purchase_order",
            "receive_goods",
        ):
            uow.policy.require(actor, permission)
        loader.check()
        loader.write()
        uow.commit()
    report = loader.report()
    report.elapsed_seconds = clock.perf_counter() - started
    return report


# --- line paths ----------------------------------------------------------------------------------

_STEP_RANK = {
    "entry": -1,
    "credit_hold": 0,
    "backordered": 1,
    "allocated": 2,
    "picked": 3,
    "packed": 4,
    "shipped": 5,
    "delivered": 6,
    "returned": 7,
    "cancelled": 8,
}
_LINE_ACTIONS = {
    "credit_hold": "credit_hold",
    "backordered": "backorder",
    "allocated": "allocate",
    "picked": "pick",
    "packed": "pack",
    "shipped": "ship",
    "delivered": "deliver",
    "returned": "return_line",
    "cancelled": "cancel_line",
}
_SHIPMENT_MILESTONES = (
    ("picked_at", "picked"),
    ("packed_at", "packed"),
    ("shipped_at", "shipped"),
    ("delivered_at", "delivered"),
)
RESERVING = {"allocated", "picked", "packed"}


@dataclass(frozen=True)
class Step:
    at: datetime
    state: str
    column: str


def line_path(line: Row, shipment: Row | None) -> list[Step]:
    """The line's states after ``confirmed`` with their moments, in time order (ties in the
    lifecycle's order); a step to the state the line is already in is dropped."""
    created = line["created_at"]
    steps = [Step(created, line["state_at_entry"], "state_at_entry")]
    moments = [("backordered_at", "backordered"), ("allocated_at", "allocated")]
    later = [Step(line[c], s, c) for c, s in moments if line[c] is not None]
    if shipment is not None:
        later += [Step(shipment[c], s, c) for c, s in _SHIPMENT_MILESTONES if shipment[c]]
    for column, state in (("returned_at", "returned"), ("cancelled_at", "cancelled")):
        if line[column] is not None:
            later.append(Step(line[column], state, column))
    later.sort(key=lambda step: (step.at, _STEP_RANK[step.state]))
    path = steps
    for candidate in later:
        if candidate.state != path[-1].state:
            path.append(candidate)
    return path


def check_path(path: Sequence[Step], status: str) -> str | None:
    """Why the path is not one of the state machine's, or None when it is and ends at status."""
    previous = str(LineState.CONFIRMED)
    for step in path:
        if step.at < path[0].at:
            return f"{step.column} is before the line was created"
        try:
            check_transition("order_line", previous, step.state)
        except IllegalTransition:
            return f"{previous} -> {step.state} at {step.column} is not a transition erpx allows"
        previous = step.state
    if previous != status:
        return f"the moments lead to {previous}, not to status {status}"
    return None


# --- the loader ----------------------------------------------------------------------------------


class _Loader:
    def __init__(
        self, uow: UnitOfWork, parsed: ParsedExport, actor: Actor, now: datetime, step: Progress
    ) -> None:
        self.uow = uow
        self.parsed = parsed
        self.actor = actor
        self.now = now
        self.step = step
        self.source = parsed.manifest.source_system
        self.rejects = parsed.rejects
        self.accepted: dict[str, dict[Any, Row]] = {}
        """entity -> key -> row, for rows that passed every rule so far"""
        self.fresh: dict[str, set[Any]] = defaultdict(set)
        """entity -> keys to write (new rows; master data that differs from the database)"""
        self.present: dict[str, int] = Counter()
        self.records: dict[tuple[str, str], IdempotencyRecord] = {}
        self.ids: dict[str, dict[Any, int]] = defaultdict(dict)
        """entity -> source key -> erpx id (present rows from their records, new ones once
        written)"""
        self.ledger_counts: Counter[str] = Counter()

    # -- helpers ------------------------------------------------------------------------------

    def file(self, entity: str) -> str:
        return self.parsed.file_of(entity)

    def reject(self, entity: str, row: Row, column: str, rule: str, message: str) -> None:
        reject_row(self.rejects, self.file(entity), row, column, rule, message)

    def rows(self, entity: str) -> list[Row]:
        return self.parsed.tables[entity].rows

    def key_of(self, entity: str, row: Row) -> Any:
        names = next(e.key for e in ENTITIES if e.name == entity)
        return row[names[0]] if len(names) == 1 else tuple(row[name] for name in names)

    def record_key(self, entity: str, key: Any) -> tuple[str, str]:
        text = "|".join(str(part) for part in key) if isinstance(key, tuple) else str(key)
        full = f"{self.source}|{text}"
        if len(full) > MAX_KEY_LENGTH or isinstance(key, tuple):
            full = f"{self.source}|#{hashlib.sha256(text.encode()).hexdigest()[:48]}"
        return f"{SCOPE_PREFIX}{entity}", full

    # -- checking -----------------------------------------------------------------------------

    def check(self) -> None:
        self.step("checking master data")
        self._load_records()
        self._check_master_data()
        self.step("checking orders, lines and shipments")
        self._check_orders()
        self._check_shipments()
        self._check_lines()
        self._check_empty_shipments()
        self.step("checking purchase orders and receipts")
        self._check_purchase_orders()
        self._check_po_lines()
        self._check_receipts()
        self._check_snapshots()

    def _load_records(self) -> None:
        query = select(IdempotencyRecord).where(
            IdempotencyRecord.scope.like(f"{SCOPE_PREFIX}%"),
            IdempotencyRecord.key.like(f"{self.source}|%"),
        )
        for record in self.uow.session.execute(query).scalars():
            self.records[(record.scope, record.key)] = record

    def _keep(
        self,
        entity: str,
        checks: Callable[[Row], tuple[str, str, str] | None],
        *,
        mapped: bool,
    ) -> None:
        """Run ``checks`` on every row of ``entity`` (a failure is (column, rule, message)); keep
        the rows that pass, classified as fresh or present by their source-key record."""
        kept: dict[Any, Row] = {}
        for row in self.rows(entity):
            failure = checks(row)
            if failure is not None:
                self.reject(entity, row, *failure)
                continue
            key = self.key_of(entity, row)
            if mapped:
                record = self.records.get(self.record_key(entity, key))
                if record is not None:
                    if record.request_hash != _fingerprint(row):
                        names = next(e.key for e in ENTITIES if e.name == entity)
                        self.reject(
                            entity,
                            row,
                            names[0],
                            "changed_since_import",
                            f"imported before from {self.source} with other content",
                        )
                        continue
                    self.present[entity] += 1
                    self.ids[entity][key] = int(record.response["id"])
                else:
                    self.fresh[entity].add(key)
            kept[key] = row
        self.accepted[entity] = kept

    def known(self, entity: str, model: type[Base]) -> set[Any]:
        """Keys accepted from the file and keys already in the database."""
        keys = set(self.accepted.get(entity, {}))
        return keys | set(self.uow.session.execute(select(_primary(model))).scalars())

    def _check_master_data(self) -> None:
        tiers = set(self.uow.policy.customer_tiers)

        self._keep("suppliers", lambda row: None, mapped=False)
        suppliers = self.known("suppliers", Supplier)

        def location(row: Row) -> tuple[str, str, str] | None:
            try:
                ZoneInfo(row["timezone"])
            except (ZoneInfoNotFoundError, ValueError):
                return "timezone", "not_allowed", "not an IANA time zone"
            return None

        self._keep("locations", location, mapped=False)
        locations = self.known("locations", Location)

        def product(row: Row) -> tuple[str, str, str] | None:
            supplier = row["preferred_supplier_id"]
            if supplier is not None and supplier not in suppliers:
                return "preferred_supplier_id", "unknown_reference", "no such supplier"
            return None

        self._keep("products", product, mapped=False)
        self.products = self.known("products", Product)

        def customer(row: Row) -> tuple[str, str, str] | None:
            if row["tier"] not in tiers:
                return "tier", "not_allowed", f"not one of the policy's tiers {sorted(tiers)}"
            if row["service_level_target"] > 1:
                return "service_level_target", "not_allowed", "a share between 0 and 1"
            home = row["home_location_id"]
            if home is not None and home not in locations:
                return "home_location_id", "unknown_reference", "no such location"
            return None

        self._keep("customers", customer, mapped=False)
        self.customers = self.known("customers", Customer)
        self._keep("carriers", lambda row: None, mapped=False)
        carriers = self.known("carriers", Carrier)

        natural: dict[tuple[str, str, str, str], int] = {}

        def lane(row: Row) -> tuple[str, str, str] | None:
            if row["carrier_id"] not in carriers:
                return "carrier_id", "unknown_reference", "no such carrier"
            if row["origin_location_id"] not in locations:
                return "origin_location_id", "unknown_reference", "no such location"
            key = _lane_key(row)
            if key in natural:
                return (
                    "service_level",
                    "duplicated_key",
                    f"the same carrier, origin, region and service level as row {natural[key]}",
                )
            natural[key] = row["_row"]
            return None

        self._keep("lanes", lane, mapped=False)

        def price(row: Row) -> tuple[str, str, str] | None:
            if row["tier"] not in tiers:
                return "tier", "not_allowed", f"not one of the policy's tiers {sorted(tiers)}"
            if row["sku"] not in self.products:
                return "sku", "unknown_reference", "no such product"
            return None

        self._keep("price_lists", price, mapped=False)
        self.locations = locations
        self._classify_master_data()

    def _classify_master_data(self) -> None:
        """Master data equal to the database's row is present; the rest is written."""
        for entity, model, spec_of in (
            ("suppliers", Supplier, _supplier_spec),
            ("locations", Location, _location_spec),
            ("products", Product, _product_spec),
            ("customers", Customer, _customer_spec),
            ("carriers", Carrier, _carrier_spec),
        ):
            rows = self.accepted[entity]
            existing = {
                _primary_value(row): row
                for row in self.uow.session.execute(
                    select(model).where(_primary(model).in_(list(rows)))
                ).scalars()
            }
            for key, row in rows.items():
                spec = spec_of(row)
                current = existing.get(key)
                if (
                    current is not None
                    and _same(spec, current)
                    and (entity != "products" or getattr(current, "active", True) == row["active"])
                ):
                    self.present[entity] += 1
                else:
                    self.fresh[entity].add(key)
        lanes = {
            _lane_key_of(lane): lane for lane in self.uow.session.execute(select(Lane)).scalars()
        }
        for key, row in self.accepted["lanes"].items():
            current = lanes.get(_lane_key(row))
            record = self.records.get(self.record_key("lanes", key))
            if (
                current is not None
                and _same(_lane_spec(row), current)
                and record is not None
                and record.request_hash == _fingerprint(row)
            ):
                self.present["lanes"] += 1
            else:
                self.fresh["lanes"].add(key)
        prices = {
            (p.tier, p.sku, p.min_quantity, p.valid_from): p.unit_price
            for p in self.uow.session.execute(select(PriceListEntry)).scalars()
        }
        for key, row in self.accepted["price_lists"].items():
            if prices.get(key) == row["unit_price"]:
                self.present["price_lists"] += 1
            else:
                self.fresh["price_lists"].add(key)

    def _check_orders(self) -> None:
        def order(row: Row) -> tuple[str, str, str] | None:
            if row["customer_id"] not in self.customers:
                return "customer_id", "unknown_reference", "no such customer"
            return None

        self._keep("orders", order, mapped=True)

    def _lane_row(self, lane_id: Any) -> Row | None:
        return self.accepted["lanes"].get(lane_id)

    def _check_shipments(self) -> None:
        orders = self.accepted["orders"]

        def shipment(row: Row) -> tuple[str, str, str] | None:
            order = orders.get(row["order_id"])
            if order is None:
                return "order_id", "unknown_reference", "no such order (or it was rejected)"
            if row["location_id"] not in self.locations:
                return "location_id", "unknown_reference", "no such location"
            if row["lane_id"] is not None:
                lane = self._lane_row(row["lane_id"])
                if lane is None:
                    return "lane_id", "unknown_reference", "no such lane"
                if lane["origin_location_id"] != row["location_id"]:
                    return "lane_id", "inconsistent", "the lane leaves from another location"
            if row["packed_at"] is None and row["shipped_at"] is not None:
                row["packed_at"] = row["shipped_at"]
            if row["picked_at"] < order["entered_at"]:
                return "picked_at", "chronology", "before the order was entered"
            previous = "picked_at"
            for column, _state in _SHIPMENT_MILESTONES[1:]:
                if row[column] is None:
                    continue
                if row[previous] is None:
                    return column, "chronology", f"{column} without {previous}"
                if row[column] < row[previous]:
                    return column, "chronology", f"before {previous}"
                previous = column
            for milestone in ("picked", "packed", "shipped", "delivered"):
                recorded = f"{milestone}_recorded_at"
                if row[recorded] is not None and row[f"{milestone}_at"] is None:
                    return recorded, "inconsistent", f"no {milestone}_at to go with it"
            return None

        self._keep("shipments", shipment, mapped=True)

    def _check_lines(self) -> None:
        orders, shipments = self.accepted["orders"], self.accepted["shipments"]
        rows = {row["line_id"]: row for row in self.rows("order_lines")}
        verdict: dict[Any, tuple[str, str, str] | None] = {}
        line_numbers: dict[tuple[Any, int], int] = {}

        def line(row: Row) -> tuple[str, str, str] | None:
            order = orders.get(row["order_id"])
            if order is None:
                return "order_id", "unknown_reference", "no such order (or it was rejected)"
            number = (row["order_id"], row["line_no"])
            if number in line_numbers:
                return (
                    "line_no",
                    "duplicated_key",
                    f"the order's line {row['line_no']} is row {line_numbers[number]}",
                )
            if row["sku"] not in self.products:
                return "sku", "unknown_reference", "no such product"
            if row["location_id"] is not None and row["location_id"] not in self.locations:
                return "location_id", "unknown_reference", "no such location"
            if row["lane_id"] is not None:
                lane = self._lane_row(row["lane_id"])
                if lane is None:
                    return "lane_id", "unknown_reference", "no such lane"
                if lane["origin_location_id"] != row["location_id"]:
                    return "lane_id", "inconsistent", "the lane leaves from another location"
            if (row["promised_ship_date"] is None) != (row["promised_delivery_date"] is None):
                column = (
                    "promised_ship_date"
                    if row["promised_ship_date"] is None
                    else "promised_delivery_date"
                )
                return column, "inconsistent", "give both promise dates or neither"
            if row["created_at"] is None:
                row["created_at"] = order["entered_at"]
            elif row["created_at"] < order["entered_at"]:
                return "created_at", "chronology", "before the order was entered"
            if row["promised_at"] is None:
                row["promised_at"] = row["created_at"]
            elif row["promised_at"] < row["created_at"]:
                return "promised_at", "chronology", "before the line was created"
            parent_id = row["parent_line_id"]
            if parent_id is not None:
                parent = rows.get(parent_id)
                if parent is None or parent is row or verdict_of(parent_id) is not None:
                    return (
                        "parent_line_id",
                        "unknown_reference",
                        "no such line (or it was rejected)",
                    )
                if parent["order_id"] != row["order_id"] or parent["sku"] != row["sku"]:
                    return "parent_line_id", "inconsistent", "the parent is of another order or SKU"
                if parent["created_at"] > row["created_at"]:
                    return "created_at", "chronology", "before its parent line was created"
            shipment = None
            if row["shipment_id"] is not None:
                shipment = shipments.get(row["shipment_id"])
                if shipment is None:
                    return (
                        "shipment_id",
                        "unknown_reference",
                        "no such shipment (or it was rejected)",
                    )
                if shipment["order_id"] != row["order_id"]:
                    return "shipment_id", "inconsistent", "a shipment of another order"
                if shipment["location_id"] != row["location_id"]:
                    return (
                        "shipment_id",
                        "inconsistent",
                        "the shipment leaves from another location",
                    )
            path = line_path(row, shipment)
            problem = check_path(path, row["status"])
            if problem is not None:
                return "status", "illegal_transition", problem
            states = {step.state for step in path}
            if states & {"backordered", "allocated"} and row["location_id"] is None:
                return "location_id", "required", "a line allocated or backordered has a location"
            if shipment is None and states & {"picked", "packed", "shipped", "delivered"}:
                return "shipment_id", "required", "a picked line leaves in a shipment"
            if row["tier_price"] is None:
                row["tier_price"] = row["unit_price"]
            if row["discount_pct"] is None:
                exact = (row["tier_price"] - row["unit_price"]) / row["tier_price"] * 100
                row["discount_pct"] = exact.quantize(CENT, rounding=ROUND_HALF_UP)
            if row["price_source"] is None:
                row["price_source"] = (
                    "price_list" if row["unit_price"] == row["tier_price"] else "override"
                )
            row["_path"] = path
            line_numbers[number] = row["_row"]
            return None

        def verdict_of(line_id: Any) -> tuple[str, str, str] | None:
            if line_id not in verdict:
                verdict[line_id] = ("line_id", "chronology", "a cycle of parent lines")
                verdict[line_id] = line(rows[line_id])
            return verdict[line_id]

        self._keep("order_lines", lambda row: verdict_of(row["line_id"]), mapped=True)

    def _check_empty_shipments(self) -> None:
        used = {row["shipment_id"] for row in self.accepted["order_lines"].values()}
        for key in [key for key in self.accepted["shipments"] if key not in used]:
            row = self.accepted["shipments"].pop(key)
            if key in self.fresh["shipments"]:
                self.fresh["shipments"].discard(key)
            else:
                self.present["shipments"] -= 1
            self.reject("shipments", row, "shipment_id", "inconsistent", "none of its lines loaded")

    def _check_purchase_orders(self) -> None:
        suppliers = self.known("suppliers", Supplier)

        def purchase_order(row: Row) -> tuple[str, str, str] | None:
            if row["supplier_id"] not in suppliers:
                return "supplier_id", "unknown_reference", "no such supplier"
            if row["location_id"] not in self.locations:
                return "location_id", "unknown_reference", "no such location"
            if row["cancelled_at"] is not None and row["cancelled_at"] < row["placed_at"]:
                return "cancelled_at", "chronology", "before the order was placed"
            return None

        self._keep("purchase_orders", purchase_order, mapped=True)

    def _check_po_lines(self) -> None:
        orders = self.accepted["purchase_orders"]
        numbers: Counter[Any] = Counter()

        def po_line(row: Row) -> tuple[str, str, str] | None:
            order = orders.get(row["po_id"])
            if order is None:
                return "po_id", "unknown_reference", "no such purchase order (or it was rejected)"
            if row["sku"] not in self.products:
                return "sku", "unknown_reference", "no such product"
            if row["expected_date"] < order["placed_at"].date():
                return "expected_date", "chronology", "before the day the order was placed"
            numbers[row["po_id"]] += 1
            return None

        self._keep("purchase_order_lines", po_line, mapped=True)
        for key in [k for k in orders if numbers[k] == 0]:
            row = orders.pop(key)
            if key in self.fresh["purchase_orders"]:
                self.fresh["purchase_orders"].discard(key)
            else:
                self.present["purchase_orders"] -= 1
            self.reject("purchase_orders", row, "po_id", "inconsistent", "none of its lines loaded")

    def _check_receipts(self) -> None:
        lines, orders = self.accepted["purchase_order_lines"], self.accepted["purchase_orders"]
        received: Counter[Any] = Counter()
        rows = sorted(self.rows("receipts"), key=lambda r: (r["received_at"], r["_row"]))
        self.parsed.tables["receipts"].rows = rows

        def receipt(row: Row) -> tuple[str, str, str] | None:
            line = lines.get(row["po_line_id"])
            if line is None:
                return (
                    "po_line_id",
                    "unknown_reference",
                    "no such purchase order line (or it was rejected)",
                )
            order = orders[line["po_id"]]
            if row["received_at"] < order["placed_at"]:
                return "received_at", "chronology", "before the purchase order was placed"
            if order["cancelled_at"] is not None:
                return (
                    "po_line_id",
                    "illegal_transition",
                    "its purchase order is cancelled (erpx cancels only orders with nothing "
                    "received)",
                )
            if received[row["po_line_id"]] + row["quantity"] > line["quantity"]:
                open_quantity = line["quantity"] - received[row["po_line_id"]]
                return (
                    "quantity",
                    "inconsistent",
                    f"only {open_quantity} of {line['quantity']} still open (over-receipt)",
                )
            received[row["po_line_id"]] += row["quantity"]
            return None

        self._keep("receipts", receipt, mapped=True)

    def _check_snapshots(self) -> None:
        def snapshot(row: Row) -> tuple[str, str, str] | None:
            if row["sku"] not in self.products:
                return "sku", "unknown_reference", "no such product"
            if row["location_id"] not in self.locations:
                return "location_id", "unknown_reference", "no such location"
            return None

        self._keep("inventory_snapshots", snapshot, mapped=True)

    # -- writing ------------------------------------------------------------------------------

    def fresh_rows(self, entity: str) -> list[Row]:
        keys = self.fresh[entity]
        return [row for key, row in self.accepted[entity].items() if key in keys]

    def write(self) -> None:
        self.step("writing master data")
        self._write_master_data()
        self.ledger = _Ledger()
        self.step("writing orders and lines")
        self._write_orders()
        self._write_shipments()
        self._write_lines()
        self.step("writing purchase orders and receipts")
        self._write_purchasing()
        self.step("writing the stock ledger")
        self._write_ledger()
        self._write_records()
        if not any(self.fresh.values()):
            return  # nothing new: a repeated import leaves no trace, not even its own audit
        audit(
            self.uow,
            self.actor,
            self.now,
            "import_erp_export",
            "import",
            self.source,
            exported_at=self.parsed.manifest.exported_at,
            loaded={name: len(keys) for name, keys in self.fresh.items() if keys},
        )

    def _write_master_data(self) -> None:
        data = MasterData(
            suppliers=[_supplier_spec(r) for r in self.fresh_rows("suppliers")],
            locations=[_location_spec(r) for r in self.fresh_rows("locations")],
            products=[_product_spec(r) for r in self.fresh_rows("products")],
            customers=[_customer_spec(r) for r in self.fresh_rows("customers")],
            carriers=[_carrier_spec(r) for r in self.fresh_rows("carriers")],
            lanes=[_lane_spec(r) for r in self.fresh_rows("lanes")],
            prices=[_price_spec(r) for r in self.fresh_rows("price_lists")],
        )
        if any(
            (
                data.suppliers,
                data.locations,
                data.products,
                data.customers,
                data.carriers,
                data.lanes,
                data.prices,
            )
        ):
            load_master_data(self.uow, self.actor, data, self.now)
        for row in self.fresh_rows("products"):
            product = self.uow.session.get(Product, row["sku"])
            if product is not None and product.active != row["active"]:
                product.active = row["active"]
                audit(
                    self.uow,
                    self.actor,
                    self.now,
                    "update_products",
                    "products",
                    product.sku,
                    active=product.active,
                )
        lanes = {
            _lane_key_of(lane): lane.id for lane in self.uow.session.execute(select(Lane)).scalars()
        }
        for key, row in self.accepted["lanes"].items():
            self.ids["lanes"][key] = lanes[_lane_key(row)]
        session = self.uow.session
        self.customer_rows = {c.id: c for c in session.execute(select(Customer)).scalars()}
        self.product_rows = {p.sku: p for p in session.execute(select(Product)).scalars()}

    def _write_orders(self) -> None:
        rows = sorted(self.fresh_rows("orders"), key=lambda r: (r["entered_at"], r["_row"]))
        orders = []
        for row in rows:
            customer = self.customer_rows[row["customer_id"]]
            orders.append(
                SalesOrder(
                    customer_id=customer.id,
                    channel=row["channel"] or customer.channel,
                    ship_to_region=row["ship_to_region"] or customer.region,
                    entered_at=row["entered_at"],
                    entered_by=row["entered_by"],
                    requested_date=row["requested_date"],
                    allow_split=row["allow_split"],
                    external_ref=row["external_ref"],
                )
            )
        self._insert(orders)
        for row, order in zip(rows, orders, strict=True):
            self.ids["orders"][row["order_id"]] = order.id
            audit(
                self.uow,
                self.actor,
                row["entered_at"],
                "capture_order",
                "sales_order",
                order.id,
                customer_id=order.customer_id,
                source=self.source,
                source_key=row["order_id"],
            )

    def _write_shipments(self) -> None:
        rows = sorted(self.fresh_rows("shipments"), key=lambda r: (r["picked_at"], r["_row"]))
        shipments = []
        for row in rows:
            lane = self._lane_row(row["lane_id"]) if row["lane_id"] is not None else None
            expedited = row["expedited"]
            if expedited is None:
                expedited = lane is not None and lane["service_level"] != "standard"
            shipments.append(
                Shipment(
                    order_id=self.ids["orders"][row["order_id"]],
                    location_id=row["location_id"],
                    lane_id=self.ids["lanes"][row["lane_id"]] if lane is not None else None,
                    status=ShipmentStatus.PICKED,
                    created_at=row["picked_at"],
                    planned_freight_cost=row["planned_freight_cost"],
                    actual_freight_cost=row["actual_freight_cost"],
                    expedited=expedited,
                )
            )
        self._insert(shipments)
        self.new_shipments = {}
        for row, shipment in zip(rows, shipments, strict=True):
            self.ids["shipments"][row["shipment_id"]] = shipment.id
            self.new_shipments[row["shipment_id"]] = (row, shipment)

    def _write_lines(self) -> None:
        rows = self.fresh_rows("order_lines")
        rows.sort(
            key=lambda r: (r["created_at"], self.ids["orders"].get(r["order_id"], 0), r["line_no"])
        )
        by_key = {row["line_id"]: row for row in rows}
        generation: dict[Any, int] = {}

        def depth(row: Row) -> int:
            key = row["line_id"]
            if key not in generation:
                parent = by_key.get(row["parent_line_id"])
                generation[key] = 0 if parent is None else depth(parent) + 1
            return generation[key]

        made: dict[Any, OrderLine] = {}
        for level in range(max((depth(r) for r in rows), default=-1) + 1):
            batch = [row for row in rows if generation[row["line_id"]] == level]
            lines = [self._new_line(row) for row in batch]
            self._insert(lines)
            for row, line in zip(batch, lines, strict=True):
                self.ids["order_lines"][row["line_id"]] = line.id
                made[row["line_id"]] = line
        shipment_lines: dict[Any, list[OrderLine]] = defaultdict(list)
        for row in rows:
            line = made[row["line_id"]]
            self._book_line(row, line)
            if row["shipment_id"] is not None:
                shipment_lines[row["shipment_id"]].append(line)
        self._book_shipments(shipment_lines)

    def _new_line(self, row: Row) -> OrderLine:
        parent = row["parent_line_id"]
        final = row["status"]
        return OrderLine(
            order_id=self.ids["orders"][row["order_id"]],
            line_no=row["line_no"],
            parent_line_id=None if parent is None else self.ids["order_lines"][parent],
            sku=row["sku"],
            quantity=row["quantity"],
            state=LineState.DRAFT,
            location_id=row["location_id"],
            lane_id=None if row["lane_id"] is None else self.ids["lanes"][row["lane_id"]],
            requested_date=row["requested_date"],
            entered_at=self.accepted["orders"][row["order_id"]]["entered_at"],
            expected_ready_on=row["expected_ready_on"] if final == "backordered" else None,
            list_price=row["list_price"],
            tier_price=row["tier_price"],
            unit_price=row["unit_price"],
            discount_pct=row["discount_pct"],
            price_approval_pending=False,
        )

    def _book_line(self, row: Row, line: OrderLine) -> None:
        """The line's history as erpx's acts write it: creation, price, each state step."""
        uow, actor, created = self.uow, self.actor, row["created_at"]
        if line.parent_line_id is None:
            audit(
                uow,
                actor,
                created,
                "create_line",
                "order_line",
                line.id,
                to_state=LineState.DRAFT,
                sku=line.sku,
                quantity=line.quantity,
            )
        else:
            audit(
                uow,
                actor,
                created,
                "split_line",
                "order_line",
                line.id,
                to_state=LineState.DRAFT,
                parent_line_id=line.parent_line_id,
                quantity=line.quantity,
                kept_quantity=self._kept_quantity(row),
                reason="import",
            )
        record_price(uow, line, row["price_source"], actor, created)
        transition(uow, actor, created, "order_line", line, LineState.CONFIRMED, "confirm_line")
        reserved_since: datetime | None = None
        for step in row["_path"]:
            details: dict[str, Any] = {}
            if step.state in ("backordered", "allocated"):
                details["location_id"] = line.location_id
            if step.state == "backordered" and step.column == "state_at_entry":
                details["ready_on"] = row["expected_ready_on"]
            if step.state in ("picked", "packed", "shipped", "delivered"):
                details["shipment"] = self.ids["shipments"][row["shipment_id"]]
            transition(
                uow,
                actor,
                step.at,
                "order_line",
                line,
                step.state,
                _LINE_ACTIONS[step.state],
                **details,
            )
            if step.state == "allocated":
                reserved_since = step.at
                self.ledger.add(
                    step.at,
                    line.sku,
                    line.location_id,
                    "reserved",
                    line.quantity,
                    "reservation",
                    ("order_line", line.id),
                )
                continue
            if reserved_since is None or step.state in RESERVING:
                continue
            reason = {"shipped": "shipped", "cancelled": "cancelled"}.get(step.state, "backorder")
            self._reserve(line, reserved_since, step.at, reason)
            reserved_since = None
            if step.state == "shipped":
                shipment_ref = ("shipment", self.ids["shipments"][row["shipment_id"]])
                self.ledger.add(
                    step.at,
                    line.sku,
                    line.location_id,
                    "reserved",
                    -line.quantity,
                    "shipment",
                    shipment_ref,
                )
                self.ledger.add(
                    step.at,
                    line.sku,
                    line.location_id,
                    "on_hand",
                    -line.quantity,
                    "shipment",
                    shipment_ref,
                )
            else:
                self.ledger.add(
                    step.at,
                    line.sku,
                    line.location_id,
                    "reserved",
                    -line.quantity,
                    f"release_{reason}",
                    ("order_line", line.id),
                )
        if reserved_since is not None:
            self._reserve(line, reserved_since, None, None)
        if row["promised_ship_date"] is not None:
            reason = "capture" if row["promised_at"] == created else "import"
            record_promise(
                uow,
                line.id,
                row["promised_ship_date"],
                row["promised_delivery_date"],
                reason,
                actor,
                row["promised_at"],
            )

    def _kept_quantity(self, row: Row) -> int:
        """What the parent kept right after this split: its quantity now plus the quantities of
        its children split off later."""
        if not hasattr(self, "_children"):
            children: dict[Any, list[Row]] = defaultdict(list)
            for child in self.accepted["order_lines"].values():
                if child["parent_line_id"] is not None:
                    children[child["parent_line_id"]].append(child)
            self._children = children
        parent = self.accepted["order_lines"][row["parent_line_id"]]
        later = sum(
            child["quantity"]
            for child in self._children[row["parent_line_id"]]
            if (child["created_at"], child["line_no"]) > (row["created_at"], row["line_no"])
        )
        return int(parent["quantity"]) + later

    def _reserve(
        self, line: OrderLine, since: datetime, until: datetime | None, reason: str | None
    ) -> None:
        reservation = Reservation(
            line_id=line.id,
            sku=line.sku,
            location_id=line.location_id,
            quantity=line.quantity,
            created_at=since,
            released_at=until,
            release_reason=reason,
        )
        self.uow.assign_ids([reservation])
        self.uow.session.add(reservation)

    def _book_shipments(self, lines_of: Mapping[Any, list[OrderLine]]) -> None:
        events = []
        for key, (row, shipment) in self.new_shipments.items():
            audit(
                self.uow,
                self.actor,
                row["picked_at"],
                "create_shipment",
                "shipment",
                shipment.id,
                to_state=ShipmentStatus.PICKED,
                order_id=shipment.order_id,
            )
            for line in sorted(lines_of[key], key=lambda line: line.id):
                self.uow.append(
                    ShipmentLine, shipment_id=shipment.id, line_id=line.id, quantity=line.quantity
                )
            picked = {str(line.id): line.quantity for line in lines_of[key]}
            events.append(
                self._event(
                    shipment,
                    "picked",
                    row["picked_at"],
                    row["picked_recorded_at"] or row["picked_at"],
                    {"picked": picked},
                )
            )
            for column, state in _SHIPMENT_MILESTONES[1:]:
                moment = row[column]
                if moment is None:
                    continue
                recorded = row.get(f"{state}_recorded_at") or moment
                details = {}
                if state == "delivered" and row["actual_freight_cost"] is not None:
                    details["freight_cost"] = str(row["actual_freight_cost"])
                transition(
                    self.uow,
                    self.actor,
                    moment,
                    "shipment",
                    shipment,
                    state,
                    _LINE_ACTIONS[state],
                    recorded_at=recorded,
                )
                events.append(self._event(shipment, state, moment, recorded, details))
        self._insert(events)

    def _event(
        self,
        shipment: Shipment,
        kind: str,
        moment: datetime,
        recorded: datetime,
        details: dict[str, Any],
    ) -> ShipmentEvent:
        return ShipmentEvent(
            shipment_id=shipment.id,
            event_type=kind,
            occurred_at=moment,
            recorded_at=recorded,
            source=self.actor.name,
            details=details,
        )

    def _write_purchasing(self) -> None:
        rows = sorted(self.fresh_rows("purchase_orders"), key=lambda r: (r["placed_at"], r["_row"]))
        orders = [
            PurchaseOrder(
                supplier_id=row["supplier_id"],
                location_id=row["location_id"],
                status=PurchaseOrderStatus.OPEN,
                placed_at=row["placed_at"],
                placed_by=row["placed_by"],
            )
            for row in rows
        ]
        self._insert(orders)
        po_by_key = {}
        for row, order in zip(rows, orders, strict=True):
            self.ids["purchase_orders"][row["po_id"]] = order.id
            po_by_key[row["po_id"]] = (row, order)
        line_rows = [r for r in self.fresh_rows("purchase_order_lines") if r["po_id"] in po_by_key]
        line_rows.sort(key=lambda r: (self.ids["purchase_orders"][r["po_id"]], r["_row"]))
        po_lines = []
        for row in line_rows:
            cost = row["unit_cost"]
            if cost is None:
                cost = self.product_rows[row["sku"]].unit_cost
            po_lines.append(
                PurchaseOrderLine(
                    purchase_order_id=self.ids["purchase_orders"][row["po_id"]],
                    sku=row["sku"],
                    quantity=row["quantity"],
                    received_quantity=0,
                    unit_cost=cost,
                    expected_date=row["expected_date"],
                )
            )
        self._insert(po_lines)
        lines_of: dict[Any, list[PurchaseOrderLine]] = defaultdict(list)
        line_by_key = {}
        for row, po_line in zip(line_rows, po_lines, strict=True):
            self.ids["purchase_order_lines"][row["po_line_id"]] = po_line.id
            lines_of[row["po_id"]].append(po_line)
            line_by_key[row["po_line_id"]] = (row, po_line)
        for key, (row, order) in po_by_key.items():
            audit(
                self.uow,
                self.actor,
                row["placed_at"],
                "place_purchase_order",
                "purchase_order",
                order.id,
                to_state=PurchaseOrderStatus.OPEN,
                supplier_id=order.supplier_id,
                location_id=order.location_id,
                lines=len(lines_of[key]),
            )
            for po_line in lines_of[key]:
                self.ledger.add(
                    row["placed_at"],
                    po_line.sku,
                    order.location_id,
                    "on_order",
                    po_line.quantity,
                    "po_placed",
                    ("purchase_order_line", po_line.id),
                )
        self._write_receipts(po_by_key, line_by_key, lines_of)
        for key, (row, order) in po_by_key.items():
            if row["cancelled_at"] is None:
                continue
            transition(
                self.uow,
                self.actor,
                row["cancelled_at"],
                "purchase_order",
                order,
                PurchaseOrderStatus.CANCELLED,
                "cancel_purchase_order",
                reason="import",
            )
            for po_line in lines_of[key]:
                self.ledger.add(
                    row["cancelled_at"],
                    po_line.sku,
                    order.location_id,
                    "on_order",
                    -(po_line.quantity - po_line.received_quantity),
                    "po_cancelled",
                    ("purchase_order_line", po_line.id),
                )

    def _write_receipts(
        self,
        po_by_key: Mapping[Any, tuple[Row, PurchaseOrder]],
        line_by_key: Mapping[Any, tuple[Row, PurchaseOrderLine]],
        lines_of: Mapping[Any, list[PurchaseOrderLine]],
    ) -> None:
        rows = [r for r in self.fresh_rows("receipts") if r["po_line_id"] in line_by_key]
        receipts = []
        for row in rows:
            line_row, po_line = line_by_key[row["po_line_id"]]
            _order_row, order = po_by_key[line_row["po_id"]]
            day = row["received_at"].date()
            receipts.append(
                Receipt(
                    purchase_order_line_id=po_line.id,
                    quantity=row["quantity"],
                    received_at=row["received_at"],
                    received_by=row["received_by"],
                    lead_time_days=(day - order.placed_at.astimezone(UTC).date()).days,
                    days_late=(day - po_line.expected_date).days,
                )
            )
        self._insert(receipts)
        for row, receipt in zip(rows, receipts, strict=True):
            line_row, po_line = line_by_key[row["po_line_id"]]
            _order_row, order = po_by_key[line_row["po_id"]]
            self.ids["receipts"][row["receipt_id"]] = receipt.id
            po_line.received_quantity += receipt.quantity
            complete = all(
                line.received_quantity >= line.quantity for line in lines_of[line_row["po_id"]]
            )
            target = (
                PurchaseOrderStatus.RECEIVED if complete else PurchaseOrderStatus.PARTIALLY_RECEIVED
            )
            transition(
                self.uow,
                self.actor,
                receipt.received_at,
                "purchase_order",
                order,
                target,
                "receive_goods",
                receipt_id=receipt.id,
                purchase_order_line_id=po_line.id,
                sku=po_line.sku,
                quantity=receipt.quantity,
                lead_time_days=receipt.lead_time_days,
                days_late=receipt.days_late,
            )
            self.ledger.add(
                receipt.received_at,
                po_line.sku,
                order.location_id,
                "on_order",
                -receipt.quantity,
                "receipt",
                ("receipt", receipt.id),
            )
            self.ledger.add(
                receipt.received_at,
                po_line.sku,
                order.location_id,
                "on_hand",
                receipt.quantity,
                "receipt",
                ("receipt", receipt.id),
            )

    def _write_ledger(self) -> None:
        self.uow.session.flush()
        snapshots = self.fresh_rows("inventory_snapshots")
        pairs = {(m.sku, m.location_id) for m in self.ledger.moves} | {
            (r["sku"], r["location_id"]) for r in snapshots
        }
        balances = lock_balances(self.uow, sorted(pairs))
        moves = self.ledger.settle(balances, snapshots)
        for move in moves:
            self.uow.append(
                InventoryMovement,
                occurred_at=move.at,
                sku=move.sku,
                location_id=move.location_id,
                bucket=move.bucket,
                quantity=move.quantity,
                kind=move.kind,
                reference_type=move.reference[0] if move.reference else None,
                reference_id=_reference_id(move.reference),
                actor=self.actor.name,
            )
            self.ledger_counts[move.kind] += 1
        for (sku, location_id), balance in balances.items():
            if not 0 <= balance.reserved <= balance.on_hand or balance.on_order < 0:
                raise InvalidValue(
                    "inventory_snapshots",
                    f"{sku}@{location_id}",
                    f"the imported events leave on hand {balance.on_hand}, reserved "
                    f"{balance.reserved}, on order {balance.on_order}: a snapshot is below what "
                    "its open reservations hold",
                )

    def _write_records(self) -> None:
        records = []
        for entity in (
            "lanes",
            "orders",
            "shipments",
            "order_lines",
            "purchase_orders",
            "purchase_order_lines",
            "receipts",
            "inventory_snapshots",
        ):
            for key in self.fresh[entity]:
                row = self.accepted[entity][key]
                scope, record_key = self.record_key(entity, key)
                erp_id = self.ids[entity].get(key, 0)
                existing = self.records.get((scope, record_key))
                if existing is not None:  # a lane changed in the source: remember its new content
                    existing.request_hash = _fingerprint(row)
                    existing.response = {"id": erp_id}
                    continue
                records.append(
                    {
                        "scope": scope,
                        "key": record_key,
                        "request_hash": _fingerprint(row),
                        "response": {"id": erp_id},
                        "created_at": self.now,
                    }
                )
        for start in range(0, len(records), 5000):
            self.uow.session.execute(insert(IdempotencyRecord), records[start : start + 5000])

    def _insert(self, rows: Sequence[Base]) -> None:
        if not rows:
            return
        self.uow.assign_ids(rows)
        self.uow.session.add_all(rows)
        self.uow.session.flush()

    # -- the report ---------------------------------------------------------------------------

    def report(self) -> ImportReport:
        manifest = self.parsed.manifest
        report = ImportReport(
            directory=str(self.parsed.directory),
            source_system=self.source,
            format_version=FORMAT_VERSION,
            exported_at=manifest.exported_at.isoformat(),
            rejects=sorted(
                self.rejects, key=lambda r: (_ORDER[r.file.split(".")[0]], r.row, r.column)
            ),
            ledger=dict(sorted(self.ledger_counts.items())),
        )
        rejected_rows = Counter((reject.file, reject.row) for reject in self.rejects)
        rejected_by_file = Counter(file for file, _row in rejected_rows)
        for entity in ENTITIES:
            table = self.parsed.tables[entity.name]
            report.entities[entity.name] = EntityCounts(
                read=table.rows_read,
                loaded=len(self.fresh[entity.name]),
                present=self.present[entity.name],
                rejected=rejected_by_file[table.file] if table.file else 0,
                absent=table.file is None,
            )
        return report


_ORDER = {entity.name: index for index, entity in enumerate(ENTITIES)}


# --- the ledger ----------------------------------------------------------------------------------


@dataclass
class Move:
    at: datetime
    sku: str
    location_id: str
    bucket: str
    quantity: int
    kind: str
    reference: tuple[str, Any] | None
    order: int = 0


class _Ledger:
    """The stock movements the imported events imply, settled against snapshots.

    Per SKU and location, in time order: an ``import_opening`` movement at the first event holds
    the smallest stock that keeps available stock (on hand - reserved) at zero or above until the
    first snapshot; each snapshot adds an ``import_snapshot`` movement bringing on hand to the
    counted quantity (after every event up to its moment).
    """

    def __init__(self) -> None:
        self.moves: list[Move] = []

    def add(
        self,
        at: datetime,
        sku: str,
        location_id: str | None,
        bucket: str,
        quantity: int,
        kind: str,
        reference: tuple[str, Any] | None,
    ) -> None:
        assert location_id is not None
        if quantity:
            self.moves.append(
                Move(at, sku, location_id, bucket, quantity, kind, reference, len(self.moves))
            )

    def settle(
        self, balances: Mapping[tuple[str, str], InventoryBalance], snapshots: Iterable[Row]
    ) -> list[Move]:
        by_pair: dict[tuple[str, str], list[Move]] = defaultdict(list)
        for move in self.moves:
            by_pair[(move.sku, move.location_id)].append(move)
        counts: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for row in snapshots:
            counts[(row["sku"], row["location_id"])].append(row)
        settled: list[Move] = []
        for pair in sorted(set(by_pair) | set(counts)):
            settled.extend(self._settle_pair(pair, by_pair[pair], counts[pair], balances[pair]))
        settled.sort(key=lambda move: (move.at, move.order))
        return settled

    def _settle_pair(
        self, pair: tuple[str, str], moves: list[Move], counts: list[Row], balance: InventoryBalance
    ) -> list[Move]:
        sku, location_id = pair
        moves = sorted(moves, key=lambda move: (move.at, move.order))
        counts = sorted(counts, key=lambda row: row["as_of"])
        first_count = counts[0]["as_of"] if counts else None
        on_hand, reserved, lowest = (
            balance.on_hand,
            balance.reserved,
            balance.on_hand - balance.reserved,
        )
        for move in moves:
            if first_count is not None and move.at > first_count:
                break
            if move.bucket == "on_hand":
                on_hand += move.quantity
            elif move.bucket == "reserved":
                reserved += move.quantity
            lowest = min(lowest, on_hand - reserved)
        out: list[Move] = []
        start = moves[0].at if moves else None
        if lowest < 0 and start is not None:
            out.append(
                Move(start, sku, location_id, "on_hand", -lowest, "import_opening", None, -1)
            )
        # Walk again with the opening in place, counting at each snapshot.
        on_hand = balance.on_hand + (-lowest if lowest < 0 and start is not None else 0)
        index = 0
        for count in counts:
            while index < len(moves) and moves[index].at <= count["as_of"]:
                if moves[index].bucket == "on_hand":
                    on_hand += moves[index].quantity
                index += 1
            change = count["on_hand"] - on_hand
            if change:
                out.append(
                    Move(
                        count["as_of"],
                        sku,
                        location_id,
                        "on_hand",
                        change,
                        "import_snapshot",
                        None,
                        len(self.moves) + len(out),
                    )
                )
                on_hand = count["on_hand"]
        out.extend(moves)
        for move in out:
            setattr(balance, move.bucket, getattr(balance, move.bucket) + move.quantity)
        return out


def _reference_id(reference: tuple[str, Any] | None) -> int | None:
    if reference is None:
        return None
    return int(reference[1])


# --- specs and comparisons -----------------------------------------------------------------------


def _fingerprint(row: Row) -> str:
    return request_fingerprint({k: v for k, v in row.items() if not k.startswith("_")})


def _primary(model: type[Base]) -> Any:
    return Product.sku if model is Product else model.__table__.c.id


def _primary_value(row: Any) -> Any:
    return row.sku if isinstance(row, Product) else row.id


def _same(spec: Any, row: Any) -> bool:
    return all(getattr(row, name) == value for name, value in vars(spec).items())


def _lane_key(row: Row) -> tuple[str, str, str, str]:
    return (row["carrier_id"], row["origin_location_id"], row["dest_region"], row["service_level"])


def _lane_key_of(lane: Lane) -> tuple[str, str, str, str]:
    return (lane.carrier_id, lane.origin_location_id, lane.dest_region, lane.service_level)


def _supplier_spec(row: Row) -> SupplierSpec:
    return SupplierSpec(row["supplier_id"], row["name"], row["nominal_lead_days"])


def _location_spec(row: Row) -> LocationSpec:
    return LocationSpec(
        row["location_id"],
        row["name"],
        row["region"],
        row["pick_capacity_per_day"],
        cutoff_time=row["cutoff_time"],
        timezone=row["timezone"],
    )


def _product_spec(row: Row) -> ProductSpec:
    return ProductSpec(
        row["sku"],
        row["name"],
        row["category"],
        row["unit_cost"],
        row["list_price"],
        weight_kg=row["weight_kg"],
        pack_size=row["pack_size"],
        preferred_supplier_id=row["preferred_supplier_id"],
        abc_class=row["abc_class"],
        uom=row["uom"],
    )


def _customer_spec(row: Row) -> CustomerSpec:
    return CustomerSpec(
        row["customer_id"],
        row["name"],
        row["tier"],
        row["credit_limit"],
        row["channel"],
        row["region"],
        service_level_target=row["service_level_target"],
        home_location_id=row["home_location_id"],
    )


def _carrier_spec(row: Row) -> CarrierSpec:
    return CarrierSpec(row["carrier_id"], row["name"])


def _lane_spec(row: Row) -> LaneSpec:
    return LaneSpec(
        row["carrier_id"],
        row["origin_location_id"],
        row["dest_region"],
        row["transit_days"],
        row["cost_per_shipment"],
        service_level=row["service_level"],
        cost_per_kg=row["cost_per_kg"],
    )


def _price_spec(row: Row) -> PriceSpec:
    return PriceSpec(
        row["tier"], row["sku"], row["unit_price"], row["min_quantity"], row["valid_from"]
    )
