"""The ERP export format (docs/import-format.md) end to end: a simulated small world exported,
imported into an empty database and compared row by row; a second import that changes nothing;
every bad-input case refused (database untouched) or rejected by file, row, column, value and rule;
the CLI's exit code 2.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from erp_core.db.migrate import upgrade_to_head
from erp_core.db.uow import UnitOfWork
from erp_core.importers.erp_export import ImportReport, import_erp_export
from erp_core.importers.erp_export_schema import ExportRefused
from erp_core.importers.erp_export_writer import export_erp_export
from erp_core.settings import Settings, get_settings
from erp_core.simulate.run import simulate
from tests.conftest import postgres_url_or_skip

DAYS = 20
SEED = 7


@dataclass(frozen=True)
class Exported:
    source_url: str
    directory: Path
    """The CSV export of the world (never modified: cases copy it)."""


@dataclass(frozen=True)
class Imported:
    url: str
    report: ImportReport
    second: ImportReport
    counts_after_first: dict[str, int]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    folder = tmp_path_factory.mktemp("erp-export-world")
    url = f"sqlite:///{folder / 'world.db'}"
    simulate(Settings(database_url=url, var_dir=folder), "small", days=DAYS, seed=SEED)
    export_erp_export(url, folder / "export", source_system="sim-small")
    return Exported(url, folder / "export")


def fresh_database(folder: Path, name: str = "imported.db") -> str:
    url = f"sqlite:///{folder / name}"
    upgrade_to_head(url)
    return url


def load(url: str, directory: Path) -> ImportReport:
    uow = UnitOfWork.from_url(url)
    try:
        return import_erp_export(uow, directory)
    finally:
        uow.engine.dispose()


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            names = inspect(connection).get_table_names()
            return {
                name: connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
                for name in sorted(names)
                if name != "alembic_version"
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def imported(exported: Exported, tmp_path_factory: pytest.TempPathFactory) -> Imported:
    url = fresh_database(tmp_path_factory.mktemp("erp-export-imported"))
    first = load(url, exported.directory)
    counts = row_counts(url)
    second = load(url, exported.directory)
    return Imported(url, first, second, counts)


# --- round trip ----------------------------------------------------------------------------------


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def id_maps(url: str) -> dict[str, dict[int, int]]:
    """entity -> imported erpx id -> source key (the exported world's id)."""
    maps: dict[str, dict[int, int]] = {}
    for scope, key, response in query(
        url, "SELECT scope, key, response FROM idempotency_records WHERE key NOT LIKE '%#%'"
    ):
        data = json.loads(response) if isinstance(response, str) else response
        maps.setdefault(scope.split(":", 1)[1], {})[int(data["id"])] = int(key.split("|", 1)[1])
    return maps


COMPARED = {
    "orders": (
        "SELECT id, customer_id, entered_at, channel, ship_to_region, requested_date, allow_split"
        " FROM sales_orders",
        {0: "orders"},
    ),
    "order lines": (
        "SELECT id, order_id, line_no, parent_line_id, sku, quantity, state, location_id, lane_id,"
        " requested_date, entered_at, expected_ready_on, list_price, tier_price, unit_price,"
        " discount_pct FROM order_lines",
        {0: "order_lines", 1: "orders", 3: "order_lines", 8: "lanes"},
    ),
    "first promises": (
        "SELECT line_id, promised_ship_date, promised_delivery_date, decided_at FROM line_promises"
        " WHERE id IN (SELECT min(id) FROM line_promises GROUP BY line_id)",
        {0: "order_lines"},
    ),
    "line state history": (
        "SELECT line_id, from_state, to_state, occurred_at FROM line_state_changes",
        {0: "order_lines"},
    ),
    "shipments": (
        "SELECT id, order_id, location_id, lane_id, status, created_at, planned_freight_cost,"
        " actual_freight_cost, expedited FROM shipments",
        {0: "shipments", 1: "orders", 3: "lanes"},
    ),
    "shipment milestones": (
        "SELECT shipment_id, event_type, occurred_at, recorded_at FROM shipment_events"
        " WHERE event_type != 'eta_updated'",
        {0: "shipments"},
    ),
    "shipment lines": (
        "SELECT shipment_id, line_id, quantity FROM shipment_lines",
        {0: "shipments", 1: "order_lines"},
    ),
    "purchase orders": (
        "SELECT id, supplier_id, location_id, status, placed_at FROM purchase_orders",
        {0: "purchase_orders"},
    ),
    "purchase order lines": (
        "SELECT id, purchase_order_id, sku, quantity, received_quantity, unit_cost, expected_date"
        " FROM purchase_order_lines",
        {0: "purchase_order_lines", 1: "purchase_orders"},
    ),
    "receipts": (
        "SELECT id, purchase_order_line_id, quantity, received_at, lead_time_days, days_late"
        " FROM receipts",
        {0: "receipts", 1: "purchase_order_lines"},
    ),
    "stock balances": (
        "SELECT sku, location_id, on_hand, reserved, on_order FROM inventory_balances",
        {},
    ),
    "open reservations": (
        "SELECT line_id, quantity FROM reservations WHERE released_at IS NULL",
        {0: "order_lines"},
    ),
}


def plain(value: Any) -> Any:
    """One spelling per value on SQLite and PostgreSQL (text or native moments, numbers)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal | float):
        return round(float(value), 6)
    return value


def comparable(url: str, name: str, maps: dict[str, dict[int, int]] | None) -> list[tuple]:
    sql, id_columns = COMPARED[name]
    rows = []
    for row in query(url, sql):
        values = [plain(value) for value in row]
        if maps is not None:
            for index, entity in id_columns.items():
                if values[index] is not None:
                    values[index] = maps[entity][values[index]]
        rows.append(tuple(values))
    return sorted(rows, key=repr)


@pytest.mark.parametrize("name", list(COMPARED))
def test_round_trip_gives_the_same_history(
    exported: Exported, imported: Imported, name: str
) -> None:
    original = comparable(exported.source_url, name, None)
    again = comparable(imported.url, name, id_maps(imported.url))
    assert len(original) > 0
    assert again == original


def test_round_trip_loads_every_row_and_derives_the_ledger(imported: Imported) -> None:
    report = imported.report
    assert report.rows_rejected == 0, report.rejects[:5]
    assert report.rows_loaded == report.rows_read
    lines = report.entities["order_lines"]
    assert lines.read == lines.loaded > 300
    assert report.ledger["shipment"] > 0 and report.ledger["receipt"] > 0
    assert report.ledger["import_snapshot"] == report.entities["inventory_snapshots"].loaded


def test_the_late_shipment_labels_of_the_imported_history_are_the_original_ones(
    exported: Exported, imported: Imported
) -> None:
    from erp_core.policy import load_policy
    from features.late_shipment import build_late_shipment_frame

    calendar = load_policy().calendar
    window = (date(2025, 1, 1), date(2026, 1, 1))
    original = build_late_shipment_frame(exported.source_url, *window, calendar)
    again = build_late_shipment_frame(imported.url, *window, calendar)
    again["line_id"] = again["line_id"].map(id_maps(imported.url)["order_lines"])
    columns = ["line_id", "label_late_ship", "label_late_delivery", "stock_cover", "carrier"]
    left = original[columns].sort_values("line_id").reset_index(drop=True)
    right = again[columns].sort_values("line_id").reset_index(drop=True)
    assert len(left) > 300
    pd.testing.assert_frame_equal(left, right, check_categorical=False)


# --- idempotency ---------------------------------------------------------------------------------


def test_a_second_import_of_the_same_files_changes_nothing(
    imported: Imported, exported: Exported
) -> None:
    second = imported.second
    assert second.rows_loaded == 0
    assert second.rows_rejected == 0
    assert second.rows_present == imported.report.rows_read
    assert second.ledger == {}
    assert row_counts(imported.url) == imported.counts_after_first
    # Content, not only counts: a third import leaves every compared table as it was.
    maps = id_maps(imported.url)
    before = {name: comparable(imported.url, name, maps) for name in COMPARED}
    load(imported.url, exported.directory)
    assert {name: comparable(imported.url, name, maps) for name in COMPARED} == before


def test_the_parquet_export_imports_the_same_rows(exported: Exported, tmp_path: Path) -> None:
    export_erp_export(
        exported.source_url, tmp_path / "parquet", source_system="sim-small", file_format="parquet"
    )
    assert (tmp_path / "parquet" / "order_lines.parquet").exists()
    url = fresh_database(tmp_path)
    report = load(url, tmp_path / "parquet")
    assert report.rows_rejected == 0
    maps = id_maps(url)
    for name in ("order lines", "shipment milestones", "receipts", "stock balances"):
        assert comparable(url, name, maps) == comparable(exported.source_url, name, None)


# --- bad input: refusals -------------------------------------------------------------------------


def copy_export(exported: Exported, tmp_path: Path) -> Path:
    target = tmp_path / "export"
    shutil.copytree(exported.directory, target)
    return target


def read_csv(directory: Path, entity: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{entity}.csv", dtype=str, keep_default_na=False)


def write_csv(directory: Path, entity: str, frame: pd.DataFrame, **options: Any) -> None:
    frame.to_csv(directory / f"{entity}.csv", index=False, **options)
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["row_counts"][entity] = len(frame)
    manifest_path.write_text(json.dumps(manifest))


def drop_column(directory: Path) -> None:
    write_csv(directory, "order_lines", read_csv(directory, "order_lines").drop(columns="quantity"))


def semicolons(directory: Path) -> None:
    write_csv(directory, "orders", read_csv(directory, "orders"), sep=";")


def latin1(directory: Path) -> None:
    customers = read_csv(directory, "customers")
    customers.loc[0, "name"] = "Société Générale d'Électricité"
    write_csv(directory, "customers", customers, encoding="latin-1")


def version_two(directory: Path) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 2
    path.write_text(json.dumps(manifest))


def naive_exported_at(directory: Path) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["exported_at"] = "2025-03-01T00:00:00"
    path.write_text(json.dumps(manifest))


def truncated(directory: Path) -> None:
    lines = read_csv(directory, "order_lines")
    lines.iloc[:-5].to_csv(directory / "order_lines.csv", index=False)


REFUSALS: dict[str, tuple[Callable[[Path], None], str, str | None, str]] = {
    "missing required column": (drop_column, "order_lines.csv", "quantity", "required column"),
    "wrong delimiter": (semicolons, "orders.csv", None, "delimiter must be a comma"),
    "not UTF-8": (latin1, "customers.csv", None, "not UTF-8"),
    "unknown format version": (version_two, "manifest.json", "format_version", "unknown format"),
    "naive exported_at": (naive_exported_at, "manifest.json", "exported_at", "without an offset"),
    "truncated file": (truncated, "order_lines.csv", None, "the manifest counts"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_load_names_the_problem_and_leaves_the_database_unchanged(
    exported: Exported, imported: Imported, tmp_path: Path, case: str
) -> None:
    spoil, file, column, reason = REFUSALS[case]
    directory = copy_export(exported, tmp_path)
    spoil(directory)
    url = fresh_database(tmp_path)
    before = row_counts(url)
    with pytest.raises(ExportRefused) as refused:
        load(url, directory)
    assert refused.value.file == file
    assert refused.value.column == column
    assert reason in refused.value.message
    assert row_counts(url) == before
    # Nor does a refused re-export touch a database that holds the first import.
    with pytest.raises(ExportRefused):
        load(imported.url, directory)
    assert row_counts(imported.url) == imported.counts_after_first


# --- bad input: rejected rows --------------------------------------------------------------------


@dataclass(frozen=True)
class Spoiled:
    entity: str
    row: int
    """1-based data row of the spoiled value."""
    column: str
    value: str
    rule: str


def spoil_value(directory: Path, entity: str, index: int, column: str, value: str) -> Spoiled:
    frame = read_csv(directory, entity)
    frame.loc[index, column] = value
    write_csv(directory, entity, frame)
    return Spoiled(entity, index + 1, column, value, "")


def duplicated_key(directory: Path) -> Spoiled:
    lines = read_csv(directory, "order_lines")
    copy = lines.iloc[[10]].copy()
    copy["line_no"] = "999"
    write_csv(directory, "order_lines", pd.concat([lines, copy], ignore_index=True))
    return Spoiled(
        "order_lines", len(lines) + 1, "line_id", lines.loc[10, "line_id"], "duplicated_key"
    )


def order_in_the_future(directory: Path) -> Spoiled:
    spoiled = spoil_value(directory, "orders", 20, "entered_at", "2099-01-01T09:00:00+00:00")
    return Spoiled(
        "orders", spoiled.row, "entered_at", "2099-01-01T09:00:00+00:00", "in_the_future"
    )


def negative_quantity(directory: Path) -> Spoiled:
    spoil_value(directory, "order_lines", 30, "quantity", "-3")
    return Spoiled("order_lines", 31, "quantity", "-3", "negative")


def negative_receipt(directory: Path) -> Spoiled:
    spoil_value(directory, "receipts", 2, "quantity", "-10")
    return Spoiled("receipts", 3, "quantity", "-10", "negative")


def unknown_sku(directory: Path) -> Spoiled:
    spoil_value(directory, "order_lines", 40, "sku", "NO-SUCH-SKU")
    return Spoiled("order_lines", 41, "sku", "NO-SUCH-SKU", "unknown_reference")


def naive_timestamp(directory: Path) -> Spoiled:
    spoil_value(directory, "shipments", 5, "picked_at", "2025-01-08T10:00:00")
    return Spoiled("shipments", 6, "picked_at", "2025-01-08T10:00:00", "naive_timestamp")


def delivered_without_delivery(directory: Path) -> Spoiled:
    lines = read_csv(directory, "order_lines")
    index = (
        int(lines.index[lines["status"] == "shipped"][0])
        if (lines["status"] == "shipped").any()
        else None
    )
    if index is None:  # no line on its way: pretend a delivered line is still only allocated
        index = int(lines.index[lines["status"] == "delivered"][0])
        spoil_value(directory, "order_lines", index, "status", "allocated")
        return Spoiled("order_lines", index + 1, "status", "allocated", "illegal_transition")
    spoil_value(directory, "order_lines", index, "status", "delivered")
    return Spoiled("order_lines", index + 1, "status", "delivered", "illegal_transition")


REJECTS: dict[str, Callable[[Path], Spoiled]] = {
    "duplicated key": duplicated_key,
    "date in the future": order_in_the_future,
    "negative line quantity": negative_quantity,
    "negative receipt quantity": negative_receipt,
    "unknown foreign key": unknown_sku,
    "naive timestamp": naive_timestamp,
    "status the moments do not lead to": delivered_without_delivery,
}


@pytest.mark.parametrize("case", list(REJECTS))
def test_a_bad_row_is_rejected_by_file_row_column_value_and_rule(
    exported: Exported, imported: Imported, tmp_path: Path, case: str
) -> None:
    directory = copy_export(exported, tmp_path)
    spoiled = REJECTS[case](directory)
    url = fresh_database(tmp_path)
    report = load(url, directory)

    named = [
        reject
        for reject in report.rejects
        if (reject.file, reject.row, reject.column)
        == (f"{spoiled.entity}.csv", spoiled.row, spoiled.column)
    ]
    assert len(named) == 1, report.rejects[:5]
    assert named[0].value == spoiled.value
    assert named[0].rule == spoiled.rule
    assert report.entities[spoiled.entity].rejected >= 1
    # The rows that refer to it go with it, and nothing else is left out.
    others = [r for r in report.rejects if r is not named[0]]
    assert all(r.rule == "unknown_reference" or r.rule == "inconsistent" for r in others), others[
        :5
    ]
    loaded = report.rows_loaded
    assert loaded == imported.report.rows_loaded - len(report.rejects) + (
        1 if case == "duplicated key" else 0
    )
    # The rejects file beside the report lists every reject with its rule.
    _report_path, rejects_path = report.write(tmp_path / "report")
    listed = pd.read_csv(rejects_path, dtype=str, keep_default_na=False)
    assert list(listed.columns) == ["file", "row", "column", "value", "rule", "message"]
    assert len(listed) == len(report.rejects)
    assert spoiled.rule in set(listed["rule"])


def test_an_order_rejected_takes_its_lines_and_shipments_along(
    exported: Exported, tmp_path: Path
) -> None:
    directory = copy_export(exported, tmp_path)
    spoiled = order_in_the_future(directory)
    order_id = read_csv(directory, "orders").loc[spoiled.row - 1, "order_id"]
    lines = read_csv(directory, "order_lines")
    own_lines = set(lines.index[lines["order_id"] == order_id] + 1)
    report = load(fresh_database(tmp_path), directory)
    rejected_lines = {r.row for r in report.rejects if r.file == "order_lines.csv"}
    assert own_lines and rejected_lines == own_lines
    assert {r.rule for r in report.rejects if r.file != "orders.csv"} <= {
        "unknown_reference",
        "inconsistent",
    }


def test_a_changed_row_of_an_imported_order_is_rejected_not_rewritten(
    exported: Exported, imported: Imported, tmp_path: Path
) -> None:
    directory = copy_export(exported, tmp_path)
    spoil_value(directory, "orders", 3, "external_ref", "PO-CHANGED")
    url = fresh_database(tmp_path)
    load(url, exported.directory)
    counts = row_counts(url)
    report = load(url, directory)
    assert [(r.file, r.row, r.rule) for r in report.rejects if r.file == "orders.csv"] == [
        ("orders.csv", 4, "changed_since_import")
    ]
    assert report.rows_loaded == 0
    assert row_counts(url) == counts


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("ERPX_DATABASE_URL", "ERPX_POLICY_PATH", "ERPX_VAR_DIR"):
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "cli.db"
    monkeypatch.setenv("ERPX_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("ERPX_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


def test_the_cli_refuses_bad_input_with_exit_code_2(
    exported: Exported, tmp_path: Path, cli_env: Path
) -> None:
    from serving.cli import app

    directory = copy_export(exported, tmp_path)
    drop_column(directory)
    result = CliRunner().invoke(app, ["import", "erp-export", str(directory)])
    assert result.exit_code == 2, result.output
    assert "order_lines.csv:quantity" in result.output
    assert "required column missing" in result.output
    assert not cli_env.exists(), "a refused load must not even create the database"


def test_the_cli_imports_reports_and_fails_on_reject_when_asked(
    exported: Exported, tmp_path: Path, cli_env: Path
) -> None:
    from serving.cli import app

    directory = copy_export(exported, tmp_path)
    negative_quantity(directory)
    runner = CliRunner()
    result = runner.invoke(
        app, ["import", "erp-export", str(directory), "--report-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert "rows per entity" in result.output and "rows/s" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["rejects_by_rule"]["negative"] == 1
    again = runner.invoke(app, ["import", "erp-export", str(directory), "--fail-on-reject"])
    assert again.exit_code == 2
    assert "rejected" in again.output
    exported_again = runner.invoke(app, ["export", "erp-export", str(tmp_path / "out")])
    assert exported_again.exit_code == 0, exported_again.output
    assert (tmp_path / "out" / "manifest.json").exists()


# --- PostgreSQL ----------------------------------------------------------------------------------


def test_the_import_on_postgresql_matches_sqlite(
    exported: Exported, imported: Imported, postgres_schema_url: str
) -> None:
    postgres_url_or_skip()
    upgrade_to_head(postgres_schema_url)
    report = load(postgres_schema_url, exported.directory)
    assert report.rows_rejected == 0
    assert report.rows_loaded == imported.report.rows_loaded
    maps = id_maps(postgres_schema_url)
    for name in ("order lines", "first promises", "shipment milestones", "stock balances"):
        assert comparable(postgres_schema_url, name, maps) == comparable(
            exported.source_url, name, None
        )
    assert load(postgres_schema_url, exported.directory).rows_loaded == 0
