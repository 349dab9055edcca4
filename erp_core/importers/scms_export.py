"""The USAID SCMS delivery history mapped to the ERP export format v1 (``docs/import-format.md``,
section "The SCMS mapping"), then loaded by the erp-export loader like any other export.

``write_scms_export`` reads the file with :func:`erp_core.importers.scms.read_scms` (typed,
repaired columns and its report), maps it entity by entity and writes a directory that
``import_erp_export`` loads; ``import_scms`` does both and returns one report that carries the
reader's repairs and rejects, what the mapping approximated or left out (counted per column and
rule), and the loader's counts. The mapping is deterministic (same file, same directory, byte for
byte), so a second import of the same file loads nothing: every row is already present.

In short: vendors become suppliers, countries customers and ship-to regions, manufacturing sites
the locations Direct Drop lines leave from (one ``RDC`` location for the regional distribution
centres), shipment modes carriers (Air Charter as Air's ``charter`` service level) and their lanes
per origin and country, item descriptions products; one order per ``PO / SO #``, one order line
per SCMS line, one shipment per ASN/DN and location; the scheduled delivery date is the line's
first promise, the delivered-to-client date its delivery, the delivery-recorded date when the ERP
learned of it; the PO sent to the vendor a purchase order placed that day. SCMS records no order
entry, no ship date and no goods receipt, so the mapping takes the moment issue 7's protocol
predicts at (30 days before the scheduled delivery) as the order's entry, the delivery day as the
carrier handoff, and the handoff as the receipt of a Direct Drop purchase order at its site.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time as clock
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from erp_core.db.uow import UnitOfWork
from erp_core.importers.erp_export import ImportReport, import_erp_export
from erp_core.importers.erp_export_schema import FORMAT, FORMAT_VERSION, MANIFEST, read_export
from erp_core.importers.scms import DELIVERY_DATE_FORMAT, Reject, ScmsReport, read_scms

SOURCE_SYSTEM = "usaid-scms"
ENTRY_DAYS_BEFORE_SCHEDULED = 30
"""issue 7's moment of prediction: an SCMS line's order is taken as entered this many days
before its scheduled delivery date (SCMS records no order entry)."""
MILESTONE_HOUR = 12
"""Dates become moments at noon UTC (deliveries, recordings), entries and POs at midnight."""
RDC_LOCATION = "RDC"
TIER = "silver"
CUSTOMER_CHANNEL = "usaid-scms"
UOM = "PACK"
EXTRA_COLUMNS = ("ID", "PO / SO #", "ASN/DN #", "Delivery Recorded Date")

Progress = Callable[[str], None]


# --- the report ----------------------------------------------------------------------------------


@dataclass
class ScmsImportReport:
    """The reader's report, what the mapping added, and the loader's report."""

    path: str
    scms: ScmsReport
    mapping_repairs: dict[str, dict[str, int]] = field(default_factory=dict)
    """column -> rule -> SCMS rows whose value the mapping approximated or left out."""
    mapping_rejects: list[Reject] = field(default_factory=list)
    export_rows: dict[str, int] = field(default_factory=dict)
    export_dir: str = ""
    load: ImportReport | None = None
    map_seconds: float = 0.0
    elapsed_seconds: float = 0.0

    def repair(self, column: str, rule: str, rows: int) -> None:
        if rows:
            self.mapping_repairs.setdefault(column, {})[rule] = int(rows)

    @property
    def rows_read(self) -> int:
        return self.scms.rows_read

    @property
    def rows_rejected(self) -> int:
        """SCMS rows left out: by the reader, by the mapping, and order lines the loader
        rejected (one SCMS row each)."""
        loader = self.load.entities["order_lines"].rejected if self.load is not None else 0
        return self.scms.rows_rejected + len({r.row for r in self.mapping_rejects}) + loader

    @property
    def lines_loaded(self) -> int:
        """SCMS rows now in the database as order lines (loaded now or already present)."""
        if self.load is None:
            return 0
        lines = self.load.entities["order_lines"]
        return lines.loaded + lines.present

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source_system": SOURCE_SYSTEM,
            "rows_read": self.rows_read,
            "lines_loaded": self.lines_loaded,
            "rows_rejected": self.rows_rejected,
            "read": {
                "rows_read": self.scms.rows_read,
                "rows_loaded": self.scms.rows_loaded,
                "rows_rejected": self.scms.rows_rejected,
                "repairs": self.scms.repairs,
            },
            "mapping": {
                "repairs": self.mapping_repairs,
                "rejects": [vars(r) for r in self.mapping_rejects],
                "export_rows": self.export_rows,
                "export_dir": self.export_dir,
                "seconds": round(self.map_seconds, 3),
            },
            "load": self.load.as_dict() if self.load is not None else None,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }

    def write(self, folder: Path | str) -> tuple[Path, Path]:
        """``report.json`` and ``rejects.csv``: the SCMS rows the reader or the mapping left out
        (file = the SCMS file) and the export rows the loader rejected."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        report_path, rejects_path = target / "report.json", target / "rejects.csv"
        report_path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        name = Path(self.path).name
        with rejects_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "row", "column", "value", "rule", "message"])
            for reject in [*self.scms.rejects, *self.mapping_rejects]:
                writer.writerow([name, reject.row, reject.column, reject.value, reject.rule, ""])
            for loaded in self.load.rejects if self.load is not None else []:
                writer.writerow(
                    [
                        loaded.file,
                        loaded.row,
                        loaded.column,
                        loaded.value,
                        loaded.rule,
                        loaded.message,
                    ]
                )
        return report_path, rejects_path


# --- the entry points ----------------------------------------------------------------------------


def import_scms(
    uow: UnitOfWork, path: Path | str, out_dir: Path | str, *, progress: Progress | None = None
) -> ScmsImportReport:
    """Map the SCMS file into ``out_dir`` (the export format) and load it through the erp-export
    loader into ``uow``'s database."""
    started = clock.perf_counter()
    step = progress or (lambda _name: None)
    report = write_scms_export(path, out_dir, progress=step)
    parsed = read_export(out_dir)
    report.load = import_erp_export(uow, out_dir, progress=step, parsed=parsed)
    report.elapsed_seconds = clock.perf_counter() - started
    return report


def write_scms_export(
    path: Path | str,
    out_dir: Path | str,
    *,
    progress: Progress | None = None,
) -> ScmsImportReport:
    """Read the SCMS file and write it in the ERP export format into ``out_dir``."""
    started = clock.perf_counter()
    step = progress or (lambda _name: None)
    step("reading the SCMS file")
    history = read_scms(path)
    report = ScmsImportReport(str(path), history.report, export_dir=str(out_dir))
    lines = _with_extra_columns(history.lines, Path(path))
    step("mapping SCMS lines to the export format")
    tables = _map(lines, report)
    step("writing the export files")
    report.export_rows = _write(tables, Path(out_dir))
    report.map_seconds = clock.perf_counter() - started
    return report


# --- reading what read_scms does not type --------------------------------------------------------


def _with_extra_columns(lines: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The order, shipment and recording columns beside each line, and its 1-based file row."""
    raw = pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        encoding="utf-8-sig",
        usecols=list(EXTRA_COLUMNS),
    )
    raw["row"] = np.arange(1, len(raw) + 1)
    ids = pd.to_numeric(raw["ID"], errors="coerce")
    raw = raw.loc[ids.notna()].assign(line_id=ids.dropna().astype("int64"))
    raw = raw.drop_duplicates("line_id", keep="first")
    extra = raw.rename(
        columns={
            "PO / SO #": "po_so",
            "ASN/DN #": "asn",
            "Delivery Recorded Date": "recorded_text",
        }
    )[["line_id", "row", "po_so", "asn", "recorded_text"]]
    merged = lines.merge(extra, on="line_id", how="left", validate="one_to_one")
    merged["recorded_date"] = pd.to_datetime(
        merged["recorded_text"].str.strip(), format=DELIVERY_DATE_FORMAT, errors="coerce"
    )
    return merged


# --- keys ----------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Z0-9]+", "-", plain.upper()).strip("-")


def _hashed_key(prefix: str, name: str, limit: int) -> str:
    """``PREFIX-SLUG-abc123``: readable, and unique by a hash of the full name."""
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:6]
    room = limit - len(prefix) - len(digest) - 2
    return f"{prefix}-{_slug(name)[:room].strip('-')}-{digest}"


def _keys(names: pd.Series, make: Callable[[str], str]) -> dict[str, str]:
    keys = {name: make(name) for name in sorted(pd.unique(names))}
    if len(set(keys.values())) != len(keys):  # pragma: no cover - the hash makes this unlikely
        raise ValueError("two SCMS names map to the same erpx key")
    return keys


# --- the mapping ---------------------------------------------------------------------------------


def _map(lines: pd.DataFrame, report: ScmsImportReport) -> dict[str, pd.DataFrame]:
    lines = _reject_unpriced(lines, report)
    report.repair(
        "PQ First Sent to Client Date",
        "not_carried",
        int(lines["pq_sent_date"].notna().sum()),
    )
    lines = _moments(lines, report)
    suppliers, supplier_of = _suppliers(lines)
    lines["supplier_id"] = lines["vendor"].map(supplier_of)
    locations, location_of = _locations(lines)
    lines["location_id"] = location_of
    customers, customer_of = _customers(lines)
    lines["customer_id"] = lines["country"].map(customer_of)
    products, sku_of = _products(lines, report)
    lines["sku"] = lines["item_description"].map(sku_of)
    carriers = _carriers(lines)
    shipments = _shipments(lines, report)
    lanes = _lanes(lines, shipments)
    orders = _orders(lines)
    order_lines = _order_lines(lines)
    purchase_orders, po_lines, receipts = _purchasing(lines, report)
    return {
        "suppliers": suppliers,
        "locations": locations,
        "products": products,
        "customers": customers,
        "carriers": carriers,
        "lanes": lanes,
        "orders": orders,
        "order_lines": order_lines,
        "shipments": shipments.drop(columns=["weight_kg"]),
        "purchase_orders": purchase_orders,
        "purchase_order_lines": po_lines,
        "receipts": receipts,
    }


def _reject_unpriced(lines: pd.DataFrame, report: ScmsImportReport) -> pd.DataFrame:
    """An erpx order line is sold at a price above zero: a line at pack price 0 is left out."""
    unpriced = lines["pack_price_usd"] <= 0
    for _, line in lines.loc[unpriced].iterrows():
        report.mapping_rejects.append(
            Reject(int(line["row"]), "Pack Price", f"{line['pack_price_usd']:g}", "not_positive")
        )
    return lines.loc[~unpriced].reset_index(drop=True)


def _moments(lines: pd.DataFrame, report: ScmsImportReport) -> pd.DataFrame:
    """Entry, delivery and recording moments. A line delivered more than 30 days before its
    scheduled date is entered on its delivery day (nothing is delivered before its order); an
    order is entered at the earliest entry of its lines."""
    noon = pd.Timedelta(hours=MILESTONE_HOUR)
    protocol = lines["scheduled_delivery_date"] - pd.Timedelta(days=ENTRY_DAYS_BEFORE_SCHEDULED)
    early = lines["delivered_date"] < protocol
    report.repair("Scheduled Delivery Date", "entry_on_early_delivery_day", int(early.sum()))
    own_entry = protocol.where(~early, lines["delivered_date"])
    order_entry = own_entry.groupby(lines["po_so"]).transform("min")
    report.repair(
        "PO / SO #",
        "entered_with_an_earlier_line_of_the_order",
        int((order_entry < own_entry).sum()),
    )
    delivered = lines["delivered_date"] + noon
    recorded = lines["recorded_date"] + noon
    unknown = recorded.isna()
    before = recorded < delivered
    report.repair("Delivery Recorded Date", "not_a_date", int(unknown.sum()))
    report.repair("Delivery Recorded Date", "before_delivery", int(before.sum()))
    recorded = recorded.where(~(unknown | before), delivered)
    return lines.assign(entered_at=order_entry, delivered_at=delivered, recorded_at=recorded)


def _suppliers(lines: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """One supplier per vendor; its nominal lead time the median days from the PO sent to it to
    the scheduled delivery (the median over all vendors where it never got a dated PO)."""
    keys = _keys(lines["vendor"], lambda name: _hashed_key("V", name, 32))
    lead = (lines["scheduled_delivery_date"] - lines["po_sent_date"]).dt.days
    dated = lead.notna() & (lead >= 0)
    overall = round(float(lead[dated].median())) if dated.any() else 0
    per_vendor = lead[dated].groupby(lines.loc[dated, "vendor"]).median()
    rows = [
        {
            "supplier_id": key,
            "name": name,
            "nominal_lead_days": round(float(per_vendor.get(name, overall))),
        }
        for name, key in keys.items()
    ]
    return pd.DataFrame(rows), keys


def _locations(lines: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """A Direct Drop line leaves from its manufacturing site; a From RDC line from the RDC. Pick
    capacity: the most lines the location delivered on one day."""
    direct = lines["fulfill_via"] == "Direct Drop"
    sites = _keys(lines.loc[direct, "manufacturing_site"], lambda n: _hashed_key("S", n, 32))
    location_of = lines["manufacturing_site"].map(sites).where(direct, RDC_LOCATION)
    daily = lines.groupby([location_of, lines["delivered_date"]]).size()
    capacity = daily.groupby(level=0).max()
    rows = []
    if (~direct).any():
        rows.append(
            {
                "location_id": RDC_LOCATION,
                "name": "SCMS regional distribution centres (From RDC)",
                "region": "RDC",
            }
        )
    rows += [
        {"location_id": key, "name": name, "region": "manufacturing site"}
        for name, key in sites.items()
    ]
    frame = pd.DataFrame(rows, columns=["location_id", "name", "region"])
    frame["pick_capacity_per_day"] = frame["location_id"].map(capacity).fillna(1).astype(int)
    frame["timezone"] = "UTC"
    return frame, location_of


def _customers(lines: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    keys = _keys(lines["country"], lambda name: f"C-{_slug(name)[:30]}")
    rows = [
        {
            "customer_id": key,
            "name": name,
            "tier": TIER,
            "credit_limit": "0",
            "channel": CUSTOMER_CHANNEL,
            "region": name,
        }
        for name, key in keys.items()
    ]
    return pd.DataFrame(rows), keys


def _products(lines: pd.DataFrame, report: ScmsImportReport) -> tuple[pd.DataFrame, dict[str, str]]:
    """One product per item description (its molecule, brand and dosage are in the description);
    category the product group; cost and list price the median pack price; weight the median kg
    per pack over lines that carry their own weight; ABC by share of line value (A: the top
    80 %, B: the next 15 %); preferred supplier the vendor of most of its lines."""
    keys = _keys(lines["item_description"], lambda name: _hashed_key("P", name, 64))
    by_item = lines.groupby("item_description")
    price = by_item["pack_price_usd"].median()
    per_pack = (lines["weight_kg"] / lines["quantity_packs"]).where(lines["weight_kg"] > 0)
    weight = per_pack.groupby(lines["item_description"]).median()
    value = by_item["line_value_usd"].sum().sort_values(ascending=False, kind="stable")
    share = value.cumsum() / value.sum()
    abc = pd.Series(np.where(share <= 0.80, "A", np.where(share <= 0.95, "B", "C")), share.index)
    abc.iloc[0] = "A"
    vendor = by_item["vendor"].agg(lambda v: v.value_counts().index[0])
    supplier = _keys(lines["vendor"], lambda name: _hashed_key("V", name, 32))
    unknown_weight = 0
    rows = []
    for name, key in keys.items():
        kg = weight.get(name)
        if kg is None or np.isnan(kg):
            unknown_weight += int((lines["item_description"] == name).sum())
            kg = 1.0
        rows.append(
            {
                "sku": key,
                "name": name[:200],
                "category": str(by_item["product_group"].first()[name]),
                "unit_cost": _money(price[name]),
                "list_price": _money(price[name]),
                "weight_kg": f"{kg:.3f}",
                "pack_size": int(by_item["units_per_pack"].first()[name]),
                "uom": UOM,
                "preferred_supplier_id": supplier[vendor[name]],
                "abc_class": abc[name],
            }
        )
    report.repair("Weight (Kilograms)", "product_weight_unknown_1kg", unknown_weight)
    return pd.DataFrame(rows), keys


CARRIER_OF_MODE = {
    "Air": ("AIR", "standard"),
    "Air Charter": ("AIR", "charter"),
    "Truck": ("TRUCK", "standard"),
    "Ocean": ("OCEAN", "standard"),
    "Unknown": ("UNKNOWN", "standard"),
}
CARRIER_NAMES = {
    "AIR": "Air freight (scheduled and charter)",
    "TRUCK": "Truck",
    "OCEAN": "Ocean freight",
    "UNKNOWN": "Shipment mode not recorded (N/A)",
}


def _carrier_columns(lines: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    known = lines["shipment_mode"].where(lines["shipment_mode"].isin(CARRIER_OF_MODE), "Unknown")
    return (
        known.map(lambda mode: CARRIER_OF_MODE[mode][0]),
        known.map(lambda mode: CARRIER_OF_MODE[mode][1]),
    )


def _carriers(lines: pd.DataFrame) -> pd.DataFrame:
    carrier, _service = _carrier_columns(lines)
    used = sorted(pd.unique(carrier))
    return pd.DataFrame({"carrier_id": used, "name": [CARRIER_NAMES[c] for c in used]})


def _lane_ids(lines: pd.DataFrame) -> pd.Series:
    carrier, service = _carrier_columns(lines)
    natural = carrier + "|" + service + "|" + lines["location_id"] + "|" + lines["country"]
    digest = natural.map(lambda text: hashlib.sha1(text.encode()).hexdigest()[:10])
    return "L-" + carrier + "-" + service.str[:4].str.upper() + "-" + digest


def _shipments(lines: pd.DataFrame, report: ScmsImportReport) -> pd.DataFrame:
    """One shipment per ASN/DN of an order and location: picked, packed, handed over and
    delivered on the delivery day (SCMS records no ship date), the delivery known from the
    delivery-recorded date; the freight the sum of its lines' numeric freight (null when none
    is a number: included in the commodity cost, invoiced separately, or booked elsewhere)."""
    lines["lane_id"] = _lane_ids(lines)
    lines["shipment_id"] = lines["asn"].str.strip() + "@" + lines["location_id"]
    groups = lines.groupby("shipment_id", sort=True)
    first = groups.first()
    several = groups["delivered_at"].nunique() > 1
    if several.any():  # pragma: no cover - not in the published file (one date per ASN)
        raise ValueError(f"ASN with several delivery dates: {list(several.index[several])[:3]}")
    freight = groups["freight_usd"].sum(min_count=1)
    weight = groups["weight_kg"].sum(min_count=1)
    booked_on = lines["freight_booked_on_id"]
    shipment_of = lines.set_index("line_id")["shipment_id"]
    target = booked_on.dropna().astype("int64").map(shipment_of)
    elsewhere = target.notna() & (target != lines.loc[target.index, "shipment_id"])
    report.repair("Freight Cost (USD)", "booked_on_another_shipment", int(elsewhere.sum()))
    report.repair(
        "Freight Cost (USD)",
        "booked_on_a_line_not_imported",
        int((booked_on.notna() & ~booked_on.isin(shipment_of.index)).sum()),
    )
    return pd.DataFrame(
        {
            "shipment_id": first.index,
            "order_id": first["po_so"].to_numpy(),
            "location_id": first["location_id"].to_numpy(),
            "lane_id": first["lane_id"].to_numpy(),
            "picked_at": _stamps(first["delivered_at"]),
            "shipped_at": _stamps(first["delivered_at"]),
            "delivered_at": _stamps(first["delivered_at"]),
            "delivered_recorded_at": _stamps(groups["recorded_at"].max()),
            "actual_freight_cost": [_money(v) if pd.notna(v) else "" for v in freight],
            "weight_kg": weight.to_numpy(),
        }
    )


def _lanes(lines: pd.DataFrame, shipments: pd.DataFrame) -> pd.DataFrame:
    """A carrier's service from a location to a country, for each one used. SCMS records no
    transit time (no ship date): ``transit_days`` is 0. Cost per shipment: the median freight of
    its shipments with a numeric freight; per kg the median freight / weight (0 when none)."""
    carrier, service = _carrier_columns(lines)
    lanes = (
        pd.DataFrame(
            {
                "lane_id": lines["lane_id"],
                "carrier_id": carrier,
                "origin_location_id": lines["location_id"],
                "dest_region": lines["country"],
                "service_level": service,
            }
        )
        .drop_duplicates("lane_id")
        .sort_values("lane_id")
    )
    freight = pd.to_numeric(shipments["actual_freight_cost"].replace("", None))
    per_kg = (freight / shipments["weight_kg"]).where(shipments["weight_kg"] > 0)
    cost = freight.groupby(shipments["lane_id"]).median().fillna(0.0)
    cost_kg = per_kg.groupby(shipments["lane_id"]).median().fillna(0.0)
    lanes["transit_days"] = 0
    lanes["cost_per_shipment"] = [_money(cost.get(lane, 0.0)) for lane in lanes["lane_id"]]
    lanes["cost_per_kg"] = [_money(cost_kg.get(lane, 0.0)) for lane in lanes["lane_id"]]
    return lanes.reset_index(drop=True)


def _orders(lines: pd.DataFrame) -> pd.DataFrame:
    first = lines.sort_values("line_id").groupby("po_so", sort=True).first()
    return pd.DataFrame(
        {
            "order_id": first.index,
            "customer_id": first["customer_id"].to_numpy(),
            "entered_at": _stamps(first["entered_at"]),
            "channel": first["managed_by"].str[:32].to_numpy(),
            "ship_to_region": first["country"].to_numpy(),
            "external_ref": first.index,
        }
    )


def _order_lines(lines: pd.DataFrame) -> pd.DataFrame:
    ordered = lines.sort_values(["po_so", "line_id"], kind="stable")
    scheduled = ordered["scheduled_delivery_date"].dt.strftime("%Y-%m-%d")
    prices = [_money(v) for v in ordered["pack_price_usd"]]
    return pd.DataFrame(
        {
            "line_id": ordered["line_id"].astype(str).to_numpy(),
            "order_id": ordered["po_so"].to_numpy(),
            "line_no": ordered.groupby("po_so").cumcount().to_numpy() + 1,
            "sku": ordered["sku"].to_numpy(),
            "quantity": ordered["quantity_packs"].to_numpy(),
            "status": "delivered",
            "list_price": prices,
            "unit_price": prices,
            "state_at_entry": "allocated",
            "location_id": ordered["location_id"].to_numpy(),
            "lane_id": ordered["lane_id"].to_numpy(),
            "promised_ship_date": scheduled.to_numpy(),
            "promised_delivery_date": scheduled.to_numpy(),
            "shipment_id": ordered["shipment_id"].to_numpy(),
        }
    )


def _purchasing(
    lines: pd.DataFrame, report: ScmsImportReport
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A dated ``PO Sent to Vendor Date`` (Direct Drop lines) is a purchase order to the vendor,
    placed that day, for the location the line leaves from, one PO line per SCMS line expected on
    the scheduled delivery date and received whole as the shipment leaves (SCMS records no goods
    receipt: a Direct Drop vendor ships straight to the client). A PO date after the delivery or
    after the scheduled date cannot be a PO for it: left out and counted."""
    dated = lines["po_sent_date"].notna()
    after_delivery = dated & (lines["po_sent_date"] > lines["delivered_date"])
    after_scheduled = (
        dated & ~after_delivery & (lines["po_sent_date"] > lines["scheduled_delivery_date"])
    )
    report.repair("PO Sent to Vendor Date", "after_delivery_not_carried", int(after_delivery.sum()))
    report.repair(
        "PO Sent to Vendor Date", "after_scheduled_not_carried", int(after_scheduled.sum())
    )
    kept = lines.loc[dated & ~after_delivery & ~after_scheduled].sort_values("line_id")
    kept = kept.assign(po_id=kept["po_so"] + "@" + kept["location_id"])
    first = kept.groupby("po_id", sort=True).first()
    orders = pd.DataFrame(
        {
            "po_id": first.index,
            "supplier_id": first["supplier_id"].to_numpy(),
            "location_id": first["location_id"].to_numpy(),
            "placed_at": _stamps(first["po_sent_date"]),
        }
    )
    po_lines = pd.DataFrame(
        {
            "po_line_id": kept["line_id"].astype(str).to_numpy(),
            "po_id": kept["po_id"].to_numpy(),
            "sku": kept["sku"].to_numpy(),
            "quantity": kept["quantity_packs"].to_numpy(),
            "unit_cost": [_money(v) for v in kept["pack_price_usd"]],
            "expected_date": kept["scheduled_delivery_date"].dt.strftime("%Y-%m-%d").to_numpy(),
        }
    )
    receipts = pd.DataFrame(
        {
            "receipt_id": kept["line_id"].astype(str).to_numpy(),
            "po_line_id": kept["line_id"].astype(str).to_numpy(),
            "quantity": kept["quantity_packs"].to_numpy(),
            "received_at": _stamps(kept["delivered_at"]),
        }
    )
    return orders, po_lines, receipts


# --- writing -------------------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"{float(value):.4f}"


def _stamps(values: pd.Series) -> list[str]:
    return [moment.strftime("%Y-%m-%dT%H:%M:%SZ") for moment in pd.to_datetime(values)]


def _write(tables: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, int]:
    """The entity files and a manifest with their row counts; ``exported_at`` is the day after
    the latest moment in the files (the same file always gives the same directory)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    moments = [
        *tables["shipments"]["delivered_recorded_at"],
        *tables["shipments"]["delivered_at"],
        *tables["orders"]["entered_at"],
    ]
    latest = max(datetime.fromisoformat(m) for m in moments) if moments else datetime.now(UTC)
    exported = (latest + timedelta(days=1)).replace(hour=0, minute=0, second=0)
    rows = {name: len(frame) for name, frame in tables.items()}
    for name, frame in tables.items():
        frame.to_csv(out_dir / f"{name}.csv", index=False, lineterminator="\n")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source_system": SOURCE_SYSTEM,
        "exported_at": exported.isoformat(),
        "timestamps_timezone": None,
        "row_counts": rows,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return rows
