"""The USAID SCMS delivery history (2006-2015), read and repaired into typed columns.

The published file is real and messy: dates in two formats beside text markers (``Pre-PQ
Process``, ``Date Not Captured``, ``N/A - From RDC``), text in numeric columns (``Freight
Included in Commodity Cost``, ``Invoiced Separately``, ``Weight Captured Separately``, ``See
ASN-<n> (ID#:<id>)``), and the literal ``N/A`` as a shipment mode. ``read_scms`` keeps every
value a reader can trust as a number or a date, turns each marker into a missing value plus a
named reason, and counts each repair per column and rule, so the import report says exactly what
was done to the file. A row is rejected only when it cannot be a delivery record at all (no
usable key, no scheduled or delivered date, a negative quantity); rejects name row, column,
value and rule.

``See ASN-... (ID#:<id>)`` means the freight and weight were booked on another line of the same
shipment: the referenced line's id is kept in ``freight_booked_on_id`` rather than guessed into a
number, so per-kg freight is computed only where the line carries its own weight and cost.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from erp_core.domain.errors import InvalidValue

REQUIRED_COLUMNS = (
    "ID",
    "Country",
    "Fulfill Via",
    "Vendor INCO Term",
    "Shipment Mode",
    "PQ First Sent to Client Date",
    "PO Sent to Vendor Date",
    "Scheduled Delivery Date",
    "Delivered to Client Date",
    "Product Group",
    "Sub Classification",
    "Vendor",
    "Item Description",
    "Molecule/Test Type",
    "Unit of Measure (Per Pack)",
    "Line Item Quantity",
    "Line Item Value",
    "Pack Price",
    "Unit Price",
    "Manufacturing Site",
    "Weight (Kilograms)",
    "Freight Cost (USD)",
    "Line Item Insurance (USD)",
)

DELIVERY_DATE_FORMAT = "%d-%b-%y"
"""``2-Jun-06``: the scheduled, delivered and recorded dates."""
QUOTE_DATE_FORMAT = "%m/%d/%y"
"""``6/1/09``: the price-quote and purchase-order dates."""

DATE_MARKERS = {
    "Pre-PQ Process": "pre_pq_process",
    "Date Not Captured": "date_not_captured",
    "N/A - From RDC": "from_rdc",
}
NUMBER_MARKERS = {
    "Freight Included in Commodity Cost": "included_in_commodity_cost",
    "Invoiced Separately": "invoiced_separately",
    "Weight Captured Separately": "captured_separately",
}
BOOKED_ON_OTHER_LINE = re.compile(r"^See (?:ASN|DN)-[^ ]+ \(ID#:(\d+)\)$")

COLUMN_NAMES = {
    "ID": "line_id",
    "Project Code": "project_code",
    "Country": "country",
    "Managed By": "managed_by",
    "Fulfill Via": "fulfill_via",
    "Vendor INCO Term": "inco_term",
    "Shipment Mode": "shipment_mode",
    "Product Group": "product_group",
    "Sub Classification": "sub_classification",
    "Vendor": "vendor",
    "Item Description": "item_description",
    "Molecule/Test Type": "molecule",
    "Manufacturing Site": "manufacturing_site",
    "Unit of Measure (Per Pack)": "units_per_pack",
    "Line Item Quantity": "quantity_packs",
    "Line Item Value": "line_value_usd",
    "Pack Price": "pack_price_usd",
    "Unit Price": "unit_price_usd",
    "Line Item Insurance (USD)": "insurance_usd",
}


@dataclass(frozen=True)
class Reject:
    """A row left out, and why: its 1-based data row number, the column, the value, the rule."""

    row: int
    column: str
    value: str
    rule: str


@dataclass
class ScmsReport:
    """What reading the file did: rows read, kept and rejected, and each repair counted."""

    rows_read: int = 0
    rows_loaded: int = 0
    rejects: list[Reject] = field(default_factory=list)
    repairs: dict[str, dict[str, int]] = field(default_factory=dict)
    """column -> rule -> rows, for every value turned into a missing value with a reason."""

    @property
    def rows_rejected(self) -> int:
        return len({reject.row for reject in self.rejects})

    def count(self, column: str, rule: str, rows: int) -> None:
        if rows:
            self.repairs.setdefault(column, {})[rule] = rows


@dataclass
class ScmsHistory:
    """The delivery lines with typed columns, and the report of how they were read."""

    lines: pd.DataFrame
    report: ScmsReport


def read_scms(path: Path | str) -> ScmsHistory:
    """Read the SCMS CSV (UTF-8 with or without BOM) into typed, repaired delivery lines.

    Refuses the whole file (``InvalidValue`` naming the column) when a required column is missing,
    which is what a wrong delimiter or a different file looks like.
    """
    raw = _read_text_columns(Path(path))
    report = ScmsReport(rows_read=len(raw))
    kept = _reject_unusable_rows(raw, report)
    lines = _typed(kept, report)
    report.rows_loaded = len(lines)
    return ScmsHistory(lines=lines, report=report)


def _read_text_columns(path: Path) -> pd.DataFrame:
    _check_delimiter(path)
    try:
        raw = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8-sig", on_bad_lines="error"
        )
    except UnicodeDecodeError as error:
        raise InvalidValue("encoding", path.name, f"not UTF-8 ({error.reason})") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InvalidValue("file", path.name, f"not a readable CSV ({error})") from error
    missing = [column for column in REQUIRED_COLUMNS if column not in raw.columns]
    if missing:
        raise InvalidValue(
            "columns", ", ".join(missing), f"required SCMS columns missing from {path.name}"
        )
    return raw


def _check_delimiter(path: Path) -> None:
    """The header names the delimiter: a file saved with ``;`` or tabs is refused as such,
    rather than as 33 missing columns."""
    with path.open("rb") as handle:
        header = handle.readline().decode("utf-8-sig", errors="replace")
    counts = {delimiter: header.count(delimiter) for delimiter in (",", ";", "\t", "|")}
    found = max(counts, key=lambda delimiter: counts[delimiter])
    if found != "," and counts[found] > counts[","]:
        raise InvalidValue("delimiter", repr(found), "the SCMS file is comma separated")


def _reject_unusable_rows(raw: pd.DataFrame, report: ScmsReport) -> pd.DataFrame:
    """Drop rows that cannot be delivery records, each reject named; the rest go on."""
    row_numbers = pd.Series(range(1, len(raw) + 1), index=raw.index)
    bad = pd.Series(False, index=raw.index)
    ids = pd.to_numeric(raw["ID"], errors="coerce")
    checks = [
        ("ID", ids.isna() | (ids <= 0), "not a positive integer"),
        ("ID", ids.notna() & ids.duplicated(keep="first"), "duplicated key"),
    ]
    for column in ("Scheduled Delivery Date", "Delivered to Client Date"):
        parsed = pd.to_datetime(raw[column], format=DELIVERY_DATE_FORMAT, errors="coerce")
        checks.append((column, parsed.isna(), f"not a date in {DELIVERY_DATE_FORMAT}"))
    quantity = pd.to_numeric(raw["Line Item Quantity"], errors="coerce")
    checks.append(("Line Item Quantity", quantity.isna() | (quantity < 0), "negative or missing"))
    for column, failed, rule in checks:
        for index in raw.index[failed & ~bad]:
            report.rejects.append(
                Reject(int(row_numbers[index]), column, str(raw.at[index, column]), rule)
            )
        bad |= failed
    return raw.loc[~bad]


def _typed(raw: pd.DataFrame, report: ScmsReport) -> pd.DataFrame:
    lines = raw[list(COLUMN_NAMES)].rename(columns=COLUMN_NAMES).copy()
    lines["line_id"] = lines["line_id"].astype("int64")
    for column in ("units_per_pack", "quantity_packs"):
        lines[column] = pd.to_numeric(lines[column]).astype("int64")
    for column in ("line_value_usd", "pack_price_usd", "unit_price_usd"):
        lines[column] = pd.to_numeric(lines[column]).astype("float64")
    insurance = lines["insurance_usd"].str.strip()
    report.count("Line Item Insurance (USD)", "blank", int((insurance == "").sum()))
    lines["insurance_usd"] = pd.to_numeric(insurance.replace("", None)).astype("float64")
    mode = lines["shipment_mode"].str.strip()
    report.count("Shipment Mode", "n/a", int((mode == "N/A").sum()))
    lines["shipment_mode"] = mode.replace("N/A", "Unknown")
    lines["scheduled_delivery_date"] = pd.to_datetime(
        raw["Scheduled Delivery Date"], format=DELIVERY_DATE_FORMAT
    )
    lines["delivered_date"] = pd.to_datetime(
        raw["Delivered to Client Date"], format=DELIVERY_DATE_FORMAT
    )
    for source, target in (
        ("PQ First Sent to Client Date", "pq_sent_date"),
        ("PO Sent to Vendor Date", "po_sent_date"),
    ):
        lines[target] = _marked_dates(raw[source], source, report)
    weight, weight_booked_on = _marked_numbers(
        raw["Weight (Kilograms)"], "Weight (Kilograms)", report
    )
    freight, freight_booked_on = _marked_numbers(
        raw["Freight Cost (USD)"], "Freight Cost (USD)", report
    )
    lines["weight_kg"] = weight
    lines["freight_usd"] = freight
    lines["freight_booked_on_id"] = freight_booked_on.fillna(weight_booked_on).astype("Int64")
    lines["late"] = lines["delivered_date"] > lines["scheduled_delivery_date"]
    return lines.reset_index(drop=True)


def _marked_dates(values: pd.Series, column: str, report: ScmsReport) -> pd.Series:
    text = values.str.strip()
    for marker, rule in DATE_MARKERS.items():
        report.count(column, rule, int((text == marker).sum()))
    parsed = pd.to_datetime(
        text.where(~text.isin(DATE_MARKERS)), format=QUOTE_DATE_FORMAT, errors="coerce"
    )
    unparsed = parsed.isna() & ~text.isin(DATE_MARKERS)
    report.count(column, "unparseable_date", int(unparsed.sum()))
    return parsed


def _marked_numbers(
    values: pd.Series, column: str, report: ScmsReport
) -> tuple[pd.Series, pd.Series]:
    """Numbers where the cell is one; for a ``See ASN`` reference, the referenced line's id."""
    text = values.str.strip()
    counts: Counter[str] = Counter()
    for marker, rule in NUMBER_MARKERS.items():
        counts[rule] = int((text == marker).sum())
    booked_on = pd.to_numeric(text.str.extract(BOOKED_ON_OTHER_LINE, expand=False), errors="coerce")
    counts["booked_on_other_line"] = int(booked_on.notna().sum())
    numbers = pd.to_numeric(text, errors="coerce")
    explained = text.isin(NUMBER_MARKERS) | booked_on.notna()
    counts["unparseable_number"] = int((numbers.isna() & ~explained).sum())
    for rule, rows in counts.items():
        report.count(column, rule, rows)
    return numbers.astype("float64"), booked_on
