"""The erpx ERP export format, version 1 (``docs/import-format.md``): its manifest, its entities
and their typed columns, and the reading of a directory into checked rows.

Reading refuses the whole load (``ExportRefused``, naming file, column and value) when the
directory cannot be this format at all: no manifest, another format version, a required file or
column missing, a file that is not UTF-8 or not comma separated. Otherwise every value is parsed
by its column's type and rules; a row with a bad value is rejected (``Reject``: file, row, column,
value, rule) and the others go on. Cross-file rules (references, chronology, state paths) are the
loader's (``erp_core.importers.erp_export``).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from erp_core.domain.errors import InvalidValue

FORMAT = "erpx-erp-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SOURCE_KEY_LENGTH = 64

Row = dict[str, Any]


class ExportRefused(InvalidValue):
    """The whole load is refused: nothing is written. ``field`` is ``file`` or ``file:column``."""

    def __init__(self, file: str, column: str | None, value: Any, reason: str) -> None:
        where = file if column is None else f"{file}:{column}"
        super().__init__(where, value, reason)
        self.file = file
        self.column = column


@dataclass(frozen=True)
class Reject:
    """A row left out: its file, its 1-based data row, the column and value at fault, the rule
    (a code of docs/import-format.md) and what exactly was wrong."""

    file: str
    row: int
    column: str
    value: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "rule": self.rule,
            "message": self.message,
        }


# --- the manifest --------------------------------------------------------------------------------


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    format: str
    format_version: int
    source_system: str = Field(pattern=r"^[A-Za-z0-9._-]{1,40}$")
    exported_at: datetime
    timestamps_timezone: str | None = None
    row_counts: dict[str, int] | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value != FORMAT:
            raise ValueError(f"not {FORMAT!r}")
        return value

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise ValueError(f"unknown format version (this erpx reads version {FORMAT_VERSION})")
        return value

    @field_validator("exported_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("a timestamp without an offset (give e.g. +00:00)")
        return value.astimezone(UTC)

    @field_validator("timestamps_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as error:
                raise ValueError("not an IANA time zone") from error
        return value

    def zone(self) -> tzinfo | None:
        return None if self.timestamps_timezone is None else ZoneInfo(self.timestamps_timezone)


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ExportRefused(str(directory), None, str(directory), "not a directory")
    if not path.is_file():
        raise ExportRefused(MANIFEST, None, str(path), "the manifest is missing")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ExportRefused(MANIFEST, None, MANIFEST, f"not UTF-8 ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise ExportRefused(MANIFEST, None, MANIFEST, f"not JSON ({error})") from error
    if not isinstance(data, dict):
        raise ExportRefused(MANIFEST, None, type(data).__name__, "not a JSON object")
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        key = ".".join(str(part) for part in problem["loc"])
        cause = problem.get("ctx", {}).get("error")
        reason = str(cause) if cause is not None else problem["msg"]
        raise ExportRefused(MANIFEST, key, data.get(key), reason) from error


# --- columns and entities ------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    """key, key32, text, int, decimal, bool, date, timestamp, time"""
    required: bool = False
    default: Any = None
    minimum: int | None = None
    """The smallest value allowed: below zero breaks rule ``negative``, zero below a minimum of 1
    rule ``not_positive`` (``positive`` says the same of decimals: > 0)."""
    positive: bool = False
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Entity:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    required: bool = False

    @property
    def required_columns(self) -> list[str]:
        return [column.name for column in self.columns if column.required]


def _c(name: str, type_: str, required: bool = False, **rules: Any) -> Column:
    return Column(name, type_, required, **rules)


LINE_STATUSES = (
    "credit_hold",
    "backordered",
    "allocated",
    "picked",
    "packed",
    "shipped",
    "delivered",
    "cancelled",
    "returned",
)
ENTRY_STATES = ("allocated", "backordered", "credit_hold")

ENTITIES: tuple[Entity, ...] = (
    Entity(
        "suppliers",
        (
            _c("supplier_id", "key32", True),
            _c("name", "text", True),
            _c("nominal_lead_days", "int", True, minimum=0),
        ),
        ("supplier_id",),
    ),
    Entity(
        "locations",
        (
            _c("location_id", "key32", True),
            _c("name", "text", True),
            _c("region", "text", True),
            _c("pick_capacity_per_day", "int", True, minimum=1),
            _c("timezone", "text", default="UTC"),
            _c("cutoff_time", "time", default=time(15, 0)),
        ),
        ("location_id",),
        required=True,
    ),
    Entity(
        "products",
        (
            _c("sku", "key", True),
            _c("name", "text", True),
            _c("category", "text", True),
            _c("unit_cost", "decimal", True, minimum=0),
            _c("list_price", "decimal", True, minimum=0),
            _c("weight_kg", "decimal", default=Decimal("1"), minimum=0),
            _c("pack_size", "int", default=1, minimum=1),
            _c("uom", "text", default="EA"),
            _c("preferred_supplier_id", "key32"),
            _c("abc_class", "text", default="C", allowed=("A", "B", "C")),
            _c("active", "bool", default=True),
        ),
        ("sku",),
        required=True,
    ),
    Entity(
        "customers",
        (
            _c("customer_id", "key32", True),
            _c("name", "text", True),
            _c("tier", "text", True),
            _c("credit_limit", "decimal", True, minimum=0),
            _c("channel", "text", True),
            _c("region", "text", True),
            _c("service_level_target", "decimal", default=Decimal("0.95"), minimum=0),
            _c("home_location_id", "key32"),
        ),
        ("customer_id",),
        required=True,
    ),
    Entity(
        "carriers", (_c("carrier_id", "key32", True), _c("name", "text", True)), ("carrier_id",)
    ),
    Entity(
        "lanes",
        (
            _c("lane_id", "key", True),
            _c("carrier_id", "key32", True),
            _c("origin_location_id", "key32", True),
            _c("dest_region", "text", True),
            _c("service_level", "text", default="standard"),
            _c("transit_days", "int", True, minimum=0),
            _c("cost_per_shipment", "decimal", True, minimum=0),
            _c("cost_per_kg", "decimal", default=Decimal(0), minimum=0),
        ),
        ("lane_id",),
    ),
    Entity(
        "price_lists",
        (
            _c("tier", "text", True),
            _c("sku", "key", True),
            _c("unit_price", "decimal", True, positive=True),
            _c("min_quantity", "int", default=1, minimum=1),
            _c("valid_from", "date", default=date(2000, 1, 1)),
        ),
        ("tier", "sku", "min_quantity", "valid_from"),
    ),
    Entity(
        "orders",
        (
            _c("order_id", "key", True),
            _c("customer_id", "key32", True),
            _c("entered_at", "timestamp", True),
            _c("channel", "text"),
            _c("ship_to_region", "text"),
            _c("requested_date", "date"),
            _c("allow_split", "bool", default=True),
            _c("entered_by", "text", default="import"),
            _c("external_ref", "text"),
        ),
        ("order_id",),
        required=True,
    ),
    Entity(
        "order_lines",
        (
            _c("line_id", "key", True),
            _c("order_id", "key", True),
            _c("line_no", "int", True, minimum=1),
            _c("sku", "key", True),
            _c("quantity", "int", True, minimum=1),
            _c("status", "text", True, allowed=LINE_STATUSES),
            _c("list_price", "decimal", True, minimum=0),
            _c("unit_price", "decimal", True, positive=True),
            _c("tier_price", "decimal", positive=True),
            _c("discount_pct", "decimal"),
            _c("price_source", "text", allowed=("price_list", "override", "split")),
            _c("parent_line_id", "key"),
            _c("created_at", "timestamp"),
            _c("state_at_entry", "text", default="allocated", allowed=ENTRY_STATES),
            _c("location_id", "key32"),
            _c("lane_id", "key"),
            _c("requested_date", "date"),
            _c("expected_ready_on", "date"),
            _c("promised_ship_date", "date"),
            _c("promised_delivery_date", "date"),
            _c("promised_at", "timestamp"),
            _c("backordered_at", "timestamp"),
            _c("allocated_at", "timestamp"),
            _c("cancelled_at", "timestamp"),
            _c("returned_at", "timestamp"),
            _c("shipment_id", "key"),
        ),
        ("line_id",),
        required=True,
    ),
    Entity(
        "shipments",
        (
            _c("shipment_id", "key", True),
            _c("order_id", "key", True),
            _c("location_id", "key32", True),
            _c("lane_id", "key"),
            _c("picked_at", "timestamp", True),
            _c("packed_at", "timestamp"),
            _c("shipped_at", "timestamp"),
            _c("delivered_at", "timestamp"),
            _c("picked_recorded_at", "timestamp"),
            _c("packed_recorded_at", "timestamp"),
            _c("shipped_recorded_at", "timestamp"),
            _c("delivered_recorded_at", "timestamp"),
            _c("planned_freight_cost", "decimal", default=Decimal(0), minimum=0),
            _c("actual_freight_cost", "decimal", minimum=0),
            _c("expedited", "bool"),
        ),
        ("shipment_id",),
    ),
    Entity(
        "purchase_orders",
        (
            _c("po_id", "key", True),
            _c("supplier_id", "key32", True),
            _c("location_id", "key32", True),
            _c("placed_at", "timestamp", True),
            _c("placed_by", "text", default="import"),
            _c("cancelled_at", "timestamp"),
        ),
        ("po_id",),
    ),
    Entity(
        "purchase_order_lines",
        (
            _c("po_line_id", "key", True),
            _c("po_id", "key", True),
            _c("sku", "key", True),
            _c("quantity", "int", True, minimum=1),
            _c("unit_cost", "decimal", minimum=0),
            _c("expected_date", "date", True),
        ),
        ("po_line_id",),
    ),
    Entity(
        "receipts",
        (
            _c("receipt_id", "key", True),
            _c("po_line_id", "key", True),
            _c("quantity", "int", True, minimum=1),
            _c("received_at", "timestamp", True),
            _c("received_by", "text", default="import"),
        ),
        ("receipt_id",),
    ),
    Entity(
        "inventory_snapshots",
        (
            _c("sku", "key", True),
            _c("location_id", "key32", True),
            _c("as_of", "timestamp", True),
            _c("on_hand", "int", True, minimum=0),
        ),
        ("sku", "location_id", "as_of"),
    ),
)
ENTITY_BY_NAME: Mapping[str, Entity] = {entity.name: entity for entity in ENTITIES}


# --- values --------------------------------------------------------------------------------------


class BadValue(Exception):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


_OFFSET = re.compile(r"(Z|[+-]\d\d(:?\d\d)?)$", re.IGNORECASE)


def _parse_key(limit: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if len(raw) > limit:
            raise BadValue("type", f"longer than {limit} characters")
        return raw

    return parse


def _parse_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        raise BadValue("type", "not an integer") from None
    if not number.is_integer():
        raise BadValue("type", "not an integer")
    return int(number)


def _parse_decimal(raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BadValue(
            "type", "not a decimal number (use '.' and no thousands separator)"
        ) from None
    if not value.is_finite():
        raise BadValue("type", "not a finite number")
    return value


_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadValue("type", "not a boolean (true or false)")


def _parse_date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadValue("type", "not a date (YYYY-MM-DD)") from None


def _parse_time(raw: str) -> time:
    try:
        return time.fromisoformat(raw)
    except ValueError:
        raise BadValue("type", "not a time of day (HH:MM)") from None


def _timestamp_parser(zone: tzinfo | None) -> Callable[[str], datetime]:
    def parse(raw: str) -> datetime:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise BadValue("type", "not an ISO-8601 timestamp") from None
        if moment.tzinfo is None:
            if zone is None:
                raise BadValue(
                    "naive_timestamp",
                    "a timestamp without an offset; add one (e.g. Z or +01:00) or declare "
                    "timestamps_timezone in the manifest",
                )
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(UTC)

    return parse


def value_parsers(zone: tzinfo | None) -> dict[str, Callable[[str], Any]]:
    return {
        "key": _parse_key(SOURCE_KEY_LENGTH),
        "key32": _parse_key(32),
        "text": str,
        "int": _parse_int,
        "decimal": _parse_decimal,
        "bool": _parse_bool,
        "date": _parse_date,
        "timestamp": _timestamp_parser(zone),
        "time": _parse_time,
    }


def _check_rules(column: Column, value: Any, exported_at: datetime) -> None:
    if column.allowed is not None and value not in column.allowed:
        raise BadValue("not_allowed", f"not one of {', '.join(column.allowed)}")
    if column.positive and value <= 0:
        raise BadValue("negative" if value < 0 else "not_positive", "must be > 0")
    if column.minimum is not None and value < column.minimum:
        if value < 0:
            raise BadValue("negative", f"must not be negative (>= {column.minimum})")
        raise BadValue("not_positive", f"must be >= {column.minimum}")
    if column.type == "timestamp" and value > exported_at:
        raise BadValue(
            "in_the_future", f"after the manifest's exported_at {exported_at.isoformat()}"
        )


# --- reading files -------------------------------------------------------------------------------


@dataclass
class Table:
    """The rows of one entity that passed their column rules; ``_row`` is the data row number."""

    entity: Entity
    file: str | None
    """The file's name, None when the optional entity is absent."""
    rows_read: int = 0
    rows: list[Row] = field(default_factory=list)


@dataclass
class ParsedExport:
    directory: Path
    manifest: Manifest
    tables: dict[str, Table]
    rejects: list[Reject] = field(default_factory=list)

    def file_of(self, entity: str) -> str:
        return self.tables[entity].file or f"{entity}.csv"


def read_export(directory: Path | str) -> ParsedExport:
    """Read and check every file of an export directory (refusing it whole, or rejecting rows)."""
    folder = Path(directory)
    manifest = read_manifest(folder)
    texts = {entity.name: _read_entity_text(folder, entity, manifest) for entity in ENTITIES}
    parsed = ParsedExport(folder, manifest, {})
    parsers = value_parsers(manifest.zone())
    for entity in ENTITIES:
        file, frame = texts[entity.name]
        table = Table(entity, file)
        parsed.tables[entity.name] = table
        if frame is None or file is None:
            continue
        table.rows_read = len(frame)
        table.rows = _parse_rows(entity, file, frame, parsers, manifest, parsed.rejects)
    return parsed


def _read_entity_text(
    folder: Path, entity: Entity, manifest: Manifest
) -> tuple[str | None, pd.DataFrame | None]:
    """The entity's file as text columns (every cell a str, '' when missing), or (None, None)."""
    csv_path, parquet_path = folder / f"{entity.name}.csv", folder / f"{entity.name}.parquet"
    if csv_path.exists() and parquet_path.exists():
        raise ExportRefused(
            entity.name, None, f"{csv_path.name}, {parquet_path.name}", "give one file, not both"
        )
    if csv_path.exists():
        path, frame = csv_path, _read_csv(csv_path)
    elif parquet_path.exists():
        path, frame = parquet_path, _read_parquet(parquet_path)
    elif entity.required:
        raise ExportRefused(f"{entity.name}.csv", None, str(csv_path), "a required file is missing")
    else:
        return None, None
    missing = [name for name in entity.required_columns if name not in frame.columns]
    if missing:
        raise ExportRefused(path.name, missing[0], ", ".join(missing), "required column missing")
    expected = (manifest.row_counts or {}).get(entity.name)
    if expected is not None and expected != len(frame):
        raise ExportRefused(
            path.name, None, len(frame), f"the manifest counts {expected} rows (a truncated copy?)"
        )
    return path.name, frame


def _read_csv(path: Path) -> pd.DataFrame:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ExportRefused(
            path.name,
            None,
            repr(data[error.start : error.start + 4]),
            f"not UTF-8 (line {line}, byte {error.start}: {error.reason})",
        ) from error
    header = text.split("\n", 1)[0]
    counts = {delimiter: header.count(delimiter) for delimiter in (",", ";", "\t", "|")}
    found = max(counts, key=lambda delimiter: counts[delimiter])
    if found != "," and counts[found] > counts[","]:
        raise ExportRefused(path.name, None, repr(found), "the delimiter must be a comma")
    if not header.strip():
        raise ExportRefused(path.name, None, "", "no header row")
    try:
        frame = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, on_bad_lines="error"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ExportRefused(path.name, None, path.name, f"not a readable CSV ({error})") from error
    frame.columns = [str(name).strip() for name in frame.columns]
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        reason = f"not a readable Parquet file ({error})"
        raise ExportRefused(path.name, None, path.name, reason) from error
    columns = {
        name: [_as_text(v) for v in table.column(name).to_pylist()] for name in table.column_names
    }
    return pd.DataFrame(columns, dtype=object)


def _as_text(value: Any) -> str:
    """A Parquet value in its CSV text form, so one parser reads both."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return str(value)


def _parse_rows(
    entity: Entity,
    file: str,
    frame: pd.DataFrame,
    parsers: Mapping[str, Callable[[str], Any]],
    manifest: Manifest,
    rejects: list[Reject],
) -> list[Row]:
    present = [column for column in entity.columns if column.name in frame.columns]
    absent = [column for column in entity.columns if column.name not in frame.columns]
    values = {column.name: frame[column.name].tolist() for column in present}
    rows: list[Row] = []
    seen: dict[tuple[Any, ...], int] = {}
    for index in range(len(frame)):
        number = index + 1
        row: Row = {"_row": number}
        problems: list[Reject] = []
        for column in present:
            raw = str(values[column.name][index]).strip()
            if raw == "":
                if column.required:
                    problems.append(Reject(file, number, column.name, "", "required", "empty"))
                row[column.name] = column.default
                continue
            try:
                value = parsers[column.type](raw)
                _check_rules(column, value, manifest.exported_at)
            except BadValue as bad:
                problems.append(Reject(file, number, column.name, raw, bad.rule, bad.message))
                continue
            row[column.name] = value
        for column in absent:
            row[column.name] = column.default
        if problems:
            rejects.extend(problems)
            continue
        key = tuple(row[name] for name in entity.key)
        first = seen.get(key)
        if first is not None:
            rejects.append(
                Reject(
                    file,
                    number,
                    ",".join(entity.key),
                    ",".join(str(part) for part in key),
                    "duplicated_key",
                    f"first seen at row {first}",
                )
            )
            continue
        seen[key] = number
        rows.append(row)
    return rows


def reject_row(
    rejects: list[Reject], file: str, row: Row, column: str, rule: str, message: str
) -> None:
    """Reject an already parsed row by one of its columns (the loader's cross-file rules)."""
    value = row.get(column)
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    rejects.append(Reject(file, int(row["_row"]), column, text, rule, message))


def entity_names() -> Sequence[str]:
    return [entity.name for entity in ENTITIES]
