"""The SCMS reader on the real published file (counts asserted exactly, and cross-checked by
the standard library's csv module) and on small broken copies of it (each refusal or reject
names the column, the value and the rule)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from erp_core.domain.errors import InvalidValue
from erp_core.importers.scms import read_scms


@pytest.fixture(scope="module")
def rows(scms_path: Path) -> list[dict[str, str]]:
    with scms_path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_row_of_the_real_file_loads_and_none_is_rejected(scms_path: Path) -> None:
    history = read_scms(scms_path)
    assert history.report.rows_read == 10_324
    assert history.report.rows_loaded == 10_324
    assert history.report.rows_rejected == 0
    assert history.lines["line_id"].is_unique


def test_each_repair_of_the_real_file_is_counted_per_column_and_rule(scms_path: Path) -> None:
    assert read_scms(scms_path).report.repairs == {
        "Line Item Insurance (USD)": {"blank": 287},
        "Shipment Mode": {"n/a": 360},
        "PQ First Sent to Client Date": {"pre_pq_process": 2_476, "date_not_captured": 205},
        "PO Sent to Vendor Date": {"date_not_captured": 328, "from_rdc": 5_404},
        "Weight (Kilograms)": {"captured_separately": 1_507, "booked_on_other_line": 2_445},
        "Freight Cost (USD)": {
            "included_in_commodity_cost": 1_442,
            "invoiced_separately": 239,
            "booked_on_other_line": 2_445,
        },
    }


def test_the_counts_agree_with_an_independent_reading_by_the_csv_module(
    scms_path: Path, rows: list[dict[str, str]]
) -> None:
    lines = read_scms(scms_path).lines
    freight_text = Counter(
        "see" if row["Freight Cost (USD)"].startswith("See ") else row["Freight Cost (USD)"]
        for row in rows
        if not row["Freight Cost (USD)"].replace(".", "", 1).isdigit()
    )
    assert lines["freight_usd"].isna().sum() == sum(freight_text.values())
    assert lines["freight_booked_on_id"].notna().sum() == freight_text["see"]
    referenced = {
        int(row["Freight Cost (USD)"].split("ID#:")[1].rstrip(")"))
        for row in rows
        if row["Freight Cost (USD)"].startswith("See ")
    }
    assert referenced <= set(lines["line_id"])
    assert int(lines["late"].sum()) == 1_186
    assert lines["weight_kg"].notna().sum() == 6_372
    assert lines["freight_usd"].notna().sum() == 6_198


def test_scheduled_and_delivered_dates_parse_in_the_file_s_range(scms_path: Path) -> None:
    lines = read_scms(scms_path).lines
    assert str(lines["scheduled_delivery_date"].min().date()) == "2006-05-02"
    assert str(lines["scheduled_delivery_date"].max().date()) == "2015-12-31"
    assert str(lines["delivered_date"].max().date()) == "2015-09-14"
    assert lines["po_sent_date"].notna().sum() == 4_592


def _copy(
    rows: list[dict[str, str]], path: Path, count: int = 5, **changes: dict[int, str]
) -> Path:
    header = list(rows[0])
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for number, row in enumerate(rows[:count]):
            edited = dict(row)
            for column, by_row in changes.items():
                if number in by_row:
                    edited[column.replace("_", " ")] = by_row[number]
            writer.writerow(edited)
    return path


def test_a_missing_required_column_refuses_the_file_naming_it(rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "scms.csv"
    header = [c for c in rows[0] if c != "Vendor"]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows[:3])
    with pytest.raises(InvalidValue) as refused:
        read_scms(path)
    assert refused.value.field == "columns" and refused.value.value == "Vendor"


def test_a_semicolon_file_is_refused_naming_the_delimiter(rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "scms.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(rows[:3])
    with pytest.raises(InvalidValue) as refused:
        read_scms(path)
    assert refused.value.field == "delimiter" and refused.value.value == "';'"


def test_a_latin_1_file_is_refused_naming_the_encoding(rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "scms.csv"
    with path.open("w", encoding="latin-1", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:3])  # the first row is Côte d'Ivoire
    with pytest.raises(InvalidValue) as refused:
        read_scms(path)
    assert refused.value.field == "encoding"


def test_unusable_rows_are_rejected_by_row_column_value_and_rule(rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first_id = rows[0]["ID"]
    path = _copy(
        rows,
        tmp_path / "scms.csv",
        ID={1: first_id},
        Line_Item_Quantity={2: "-5"},
        Scheduled_Delivery_Date={3: "2015-13-40"},
    )
    history = read_scms(path)
    rejects = {(r.row, r.column, r.value, r.rule) for r in history.report.rejects}
    assert rejects == {
        (2, "ID", first_id, "duplicated key"),
        (3, "Line Item Quantity", "-5", "negative or missing"),
        (4, "Scheduled Delivery Date", "2015-13-40", "not a date in %d-%b-%y"),
    }
    assert history.report.rows_read == 5 and history.report.rows_loaded == 2
    assert history.report.rows_rejected == 3
