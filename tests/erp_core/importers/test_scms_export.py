"""``erpx import scms``: the USAID SCMS file mapped to the ERP export format and loaded by the
erp-export loader. On a 1,500-row slice of the real file (quick) and on the whole file (slow):
rows read, loaded and rejected asserted exactly, a re-import that changes nothing, and the
imported lines' late-delivery label (the late-shipment pipeline's, from the first promise and the
delivery milestone) equal to SCMS's late (delivered after scheduled) line for line."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from erp_core.db.migrate import upgrade_to_head
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.importers.scms import read_scms
from erp_core.importers.scms_export import ScmsImportReport, import_scms, write_scms_export
from erp_core.policy import load_policy
from erp_core.settings import get_settings
from features.late_shipment import build_late_shipment_frame

SLICE_ROWS = 1_500


def slice_of(path: Path, target: Path, rows: int) -> Path:
    """The header and the first ``rows`` data rows of the real file, as published (UTF-8 BOM)."""
    with path.open(encoding="utf-8-sig", newline="") as source:
        reader = csv.reader(source)
        kept = [row for _, row in zip(range(rows + 1), reader, strict=False)]
    with target.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(kept)
    return target


@dataclass(frozen=True)
class Imported:
    path: Path
    url: str
    first: ScmsImportReport
    second: ScmsImportReport
    counts_after_first: dict[str, int]
    counts_after_second: dict[str, int]


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


def import_twice(path: Path, folder: Path) -> Imported:
    url = f"sqlite:///{folder / 'scms.db'}"
    upgrade_to_head(url)
    reports, counts = [], []
    for attempt in ("first", "second"):
        uow = UnitOfWork.from_url(url)
        try:
            reports.append(import_scms(uow, path, folder / f"export-{attempt}"))
        finally:
            uow.engine.dispose()
        counts.append(row_counts(url))
    return Imported(path, url, reports[0], reports[1], counts[0], counts[1])


def late_lines(imported: Imported) -> tuple[pd.Series, pd.Series]:
    """Per SCMS ID: the imported line's label_late_delivery, and SCMS's late."""
    frame = build_late_shipment_frame(
        imported.url, date(2000, 1, 1), date(2030, 1, 1), load_policy().calendar
    )
    engine = create_engine(imported.url)
    try:
        with engine.connect() as connection:
            keys = connection.execute(
                text("SELECT key, response FROM idempotency_records WHERE scope = :s"),
                {"s": "import:order_lines"},
            ).all()
    finally:
        engine.dispose()
    scms_id = {}
    for key, response in keys:
        data = json.loads(response) if isinstance(response, str) else response
        scms_id[int(data["id"])] = int(key.split("|", 1)[1])
    label = pd.Series(
        frame["label_late_delivery"].to_numpy(), index=frame["line_id"].map(scms_id).to_numpy()
    ).sort_index()
    lines = read_scms(imported.path).lines.set_index("line_id")
    return label, lines.loc[label.index, "late"].astype(float)


# --- a slice of the real file (quick) ------------------------------------------------------------


@pytest.fixture(scope="module")
def imported_slice(scms_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Imported:
    folder = tmp_path_factory.mktemp("scms-slice")
    return import_twice(slice_of(scms_path, folder / "scms.csv", SLICE_ROWS), folder)


def test_a_slice_reads_loads_and_rejects_exact_counts(imported_slice: Imported) -> None:
    report = imported_slice.first
    assert (report.rows_read, report.lines_loaded, report.rows_rejected) == (1_500, 1_499, 1)
    [reject] = report.mapping_rejects  # the one line at pack price 0 in the first 1,500
    assert (reject.column, reject.value, reject.rule) == ("Pack Price", "0", "not_positive")
    assert report.load is not None and report.load.rows_rejected == 0
    assert report.export_rows == {
        "suppliers": 45,
        "locations": 56,
        "products": 106,
        "customers": 26,
        "carriers": 3,
        "lanes": 227,
        "orders": 1_029,
        "order_lines": 1_499,
        "shipments": 1_246,
        "purchase_orders": 570,
        "purchase_order_lines": 748,
        "receipts": 748,
    }
    assert report.load.entities["price_lists"].absent
    assert report.load.entities["inventory_snapshots"].absent
    assert report.mapping_repairs["Scheduled Delivery Date"] == {"entry_on_early_delivery_day": 203}
    assert report.mapping_repairs["PO Sent to Vendor Date"] == {"after_delivery_not_carried": 2}
    assert report.scms.repairs["Shipment Mode"] == {"n/a": 171}  # the reader's, carried through


def test_a_re_import_of_the_slice_changes_nothing(imported_slice: Imported) -> None:
    second = imported_slice.second
    assert second.load is not None
    assert second.load.rows_loaded == 0
    assert second.load.rows_present == second.load.rows_read == 6_303
    assert second.lines_loaded == 1_499
    assert imported_slice.counts_after_second == imported_slice.counts_after_first


def test_the_slice_s_late_labels_are_scms_s_late_line_for_line(imported_slice: Imported) -> None:
    label, late = late_lines(imported_slice)
    assert len(label) == 1_499 and label.notna().all()
    assert (label == late).all()
    assert int(label.sum()) == int(late.sum()) == 28


def test_the_mapping_writes_the_same_files_every_time(scms_path: Path, tmp_path: Path) -> None:
    path = slice_of(scms_path, tmp_path / "scms.csv", 300)
    write_scms_export(path, tmp_path / "a")
    write_scms_export(path, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all(
        (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names
    )


def test_the_import_is_one_order_per_po_so_with_promise_delivery_and_po(
    imported_slice: Imported,
) -> None:
    engine = create_engine(imported_slice.url)
    try:
        with engine.connect() as connection:
            po_so = dict(
                connection.execute(
                    text(
                        "SELECT external_ref, count(*) FROM sales_orders so JOIN order_lines l "
                        "ON l.order_id = so.id GROUP BY external_ref"
                    )
                ).all()
            )
            promise_days = (
                connection.execute(
                    text(
                        "SELECT DISTINCT promised_delivery_date = promised_ship_date "
                        "FROM line_promises"
                    )
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    raw = pd.read_csv(imported_slice.path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    priced = raw.loc[pd.to_numeric(raw["Pack Price"]) > 0]
    assert po_so == priced.groupby("PO / SO #").size().to_dict()
    assert promise_days == [1]


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


def test_the_cli_imports_reports_and_fails_on_reject_when_asked(
    scms_path: Path, tmp_path: Path, cli_env: Path
) -> None:
    from serving.cli import app

    path = slice_of(scms_path, tmp_path / "scms.csv", 200)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "import",
            "scms",
            str(path),
            "--out",
            str(tmp_path / "x"),
            "--report-dir",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "import scms" in result.output and "SCMS rows/s" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert (report["rows_read"], report["lines_loaded"], report["rows_rejected"]) == (200, 200, 0)
    assert (tmp_path / "x" / "manifest.json").is_file()
    again = runner.invoke(
        app, ["import", "scms", str(path), "--fail-on-reject", "--report-dir", str(tmp_path / "s")]
    )
    assert again.exit_code == 0, again.output  # nothing rejected in the first 200 rows
    second = json.loads((tmp_path / "s" / "report.json").read_text())
    assert second["lines_loaded"] == 200 and second["load"]["rows_loaded"] == 0
    unpriced = slice_of(scms_path, tmp_path / "u.csv", 1_285)  # data row 1,285: pack price 0
    with unpriced.open(encoding="utf-8-sig", newline="") as handle:
        kept = list(csv.reader(handle))
    with unpriced.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([*kept[:21], kept[-1]])
    result = runner.invoke(app, ["import", "scms", str(unpriced), "--fail-on-reject"])
    assert result.exit_code == 2, result.output
    assert "SCMS rows rejected" in result.output


def test_the_cli_refuses_a_semicolon_file_before_creating_the_database(
    scms_path: Path, tmp_path: Path, cli_env: Path
) -> None:
    from serving.cli import app

    path = slice_of(scms_path, tmp_path / "scms.csv", 5)
    path.write_text(path.read_text(encoding="utf-8-sig").replace(",", ";"), encoding="utf-8")
    result = CliRunner().invoke(app, ["import", "scms", str(path)])
    assert result.exit_code == 2, result.output
    assert "delimiter" in result.output
    assert not cli_env.exists()
    with pytest.raises(InvalidValue):
        write_scms_export(path, tmp_path / "never")


# --- the whole real file (slow: about 25 s for the two imports on 2 shared cores) -------------


@pytest.mark.slow
def test_the_real_file_end_to_end(scms_path: Path, tmp_path: Path) -> None:
    imported = import_twice(scms_path, tmp_path)
    first, second = imported.first, imported.second
    assert (first.rows_read, first.lines_loaded, first.rows_rejected) == (10_324, 10_306, 18)
    assert [r.rule for r in first.mapping_rejects] == ["not_positive"] * 18
    assert first.load is not None and first.load.rows_rejected == 0
    assert first.load.rows_loaded == 36_810
    assert first.mapping_repairs == {
        "PQ First Sent to Client Date": {"not_carried": 7_627},
        "Scheduled Delivery Date": {"entry_on_early_delivery_day": 900},
        "PO / SO #": {"entered_with_an_earlier_line_of_the_order": 240},
        "Delivery Recorded Date": {"before_delivery": 3},
        "Weight (Kilograms)": {"product_weight_unknown_1kg": 192},
        "Freight Cost (USD)": {"booked_on_another_shipment": 14},
        "PO Sent to Vendor Date": {"after_delivery_not_carried": 5},
    }
    assert second.load is not None and second.load.rows_loaded == 0
    assert second.load.rows_present == 36_810
    assert imported.counts_after_second == imported.counts_after_first
    label, late = late_lines(imported)
    assert len(label) == 10_306 and (label == late).all()
    all_lines = read_scms(scms_path).lines
    assert int(all_lines["late"].sum()) == 1_186  # the dataset README's count
    assert int(label.sum()) == int(all_lines.loc[all_lines["pack_price_usd"] > 0, "late"].sum())
