"""The SCMS anomaly report: an injected x10 pack price or /10 unit price tops a clean history's
report with the right sentence, and is flagged on the real file; each hard rule fires on its
fact and only on it; the real file's top 20 are flagged lines with identifiers and reasons;
the writers and ``erpx report scms-anomalies`` refuse bad input with exit code 2."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from erp_core.domain.errors import InvalidValue
from erp_core.settings import get_settings
from serving.cli import app
from tests.features.test_scms_pricing import priced_lines
from training.scms_anomaly import (
    IDENTIFIERS,
    REPORT_COLUMNS,
    ScmsAnomalyModel,
    ScmsAnomalyReport,
    read_scms_lines,
    scms_anomalies,
    scms_anomaly_report,
)

runner = CliRunner()
PACK_X10 = re.compile(
    r"^pack price [\d,.]+ is (9\.\d|10\.\d)x the median [\d,.]+ of (the last 50 of )?[\d,]+ "
    r"earlier deliveries of this product from this vendor$"
)
UNIT_DIV10 = re.compile(
    r"^unit price [\d.]+ is 1/(9\.\d|10\.\d) of the median [\d.]+ of (the last 50 of )?[\d,]+ "
    r"earlier deliveries of .+ from this vendor, any pack size$"
)


def _with_numbers(lines: pd.DataFrame) -> pd.DataFrame:
    return lines.assign(pq_number="FPQ-1", po_so_number="SCMS-2", asn_dn_number="ASN-3")


def _times_ten_pack(lines: pd.DataFrame, index: int) -> None:
    """A pack price typed ten times too high, the record kept consistent (value, unit price)."""
    lines.loc[index, "pack_price_usd"] *= 10
    lines.loc[index, "line_value_usd"] = (
        lines.at[index, "pack_price_usd"] * lines.at[index, "quantity_packs"]
    )
    lines.loc[index, "unit_price_usd"] = round(
        lines.at[index, "pack_price_usd"] / lines.at[index, "units_per_pack"], 2
    )


def _tenth_unit(lines: pd.DataFrame, index: int) -> None:
    """Ten times the units in the pack at the same pack price: a unit price ten times too low."""
    lines.loc[index, "units_per_pack"] *= 10
    lines.loc[index, "unit_price_usd"] = round(
        lines.at[index, "pack_price_usd"] / lines.at[index, "units_per_pack"], 2
    )


def _row(report: ScmsAnomalyReport, line_id: int) -> pd.Series:
    return report.scored.set_index("line_id").loc[line_id]


def test_an_injected_x10_pack_price_and_a_tenth_unit_price_top_a_clean_history() -> None:
    lines = _with_numbers(priced_lines(count=800))
    late = lines.sort_values("delivered_date").index[-200:]
    pack_line, unit_line = late[10], late[50]
    _times_ten_pack(lines, pack_line)
    _tenth_unit(lines, unit_line)
    # a clean history's freight can exceed tiny lines' value: keep the rules out of this test
    lines["freight_usd"] = np.minimum(lines["freight_usd"], lines["line_value_usd"] / 2)
    report = scms_anomaly_report(lines, top=20)
    top = report.top
    assert len(top) == 20
    first_two = top.head(2).set_index("line_id")
    pack_id, unit_id = lines.at[pack_line, "line_id"], lines.at[unit_line, "line_id"]
    assert set(first_two.index) == {pack_id, unit_id}
    assert first_two.at[pack_id, "kind"] == "pack price"
    assert PACK_X10.match(first_two.at[pack_id, "reason"]), first_two.at[pack_id, "reason"]
    assert first_two.at[unit_id, "kind"] == "unit price"
    assert UNIT_DIV10.match(first_two.at[unit_id, "reason"]), first_two.at[unit_id, "reason"]
    assert (first_two["score"] > 0.99).all()
    assert first_two.at[pack_id, "compared_with"].startswith("median ")
    assert first_two.at[pack_id, "ratio"] == pytest.approx(10, rel=0.1)
    # nothing else in this history is as unusual: the third line scores far lower
    assert top.at[2, "score"] < 0.99


def test_a_line_s_score_parts_are_each_its_own_comparison() -> None:
    lines = _with_numbers(priced_lines(count=400))
    base = scms_anomaly_report(lines, top=5)
    # the same x10 on a line makes its pack-price part the one that sets its score
    index = lines.sort_values("delivered_date").index[-20]
    _times_ten_pack(lines, index)
    injected = _row(scms_anomaly_report(lines, top=5), lines.at[index, "line_id"])
    before = _row(base, lines.at[index, "line_id"])
    assert injected["pack_price_score"] > 0.99 > before["pack_price_score"]
    assert injected["freight_per_kg_score"] == before["freight_per_kg_score"]
    assert injected["weight_per_pack_score"] == before["weight_per_pack_score"]


def _rule_lines() -> pd.DataFrame:
    lines = _with_numbers(priced_lines(count=300))
    lines["freight_usd"] = np.minimum(lines["freight_usd"], lines["line_value_usd"] / 2)
    return lines


def test_a_zero_price_breaks_a_rule_but_a_donated_product_at_zero_does_not() -> None:
    lines = _rule_lines()
    zero, donated = lines.index[-1], lines.index[-2]
    lines.loc[[zero, donated], ["pack_price_usd", "line_value_usd", "unit_price_usd"]] = 0.0
    lines.loc[donated, "item_description"] = "Efavirenz 600mg, [DON] tablets, 30 Tabs"
    report = scms_anomaly_report(lines, top=3)
    hit = _row(report, lines.at[zero, "line_id"])
    assert hit["kind"] == "no price" and hit["score"] == 1.0
    assert hit["rank"] == 1
    assert re.match(
        r"^[\d,]+ packs? at a pack price of 0\.00 \(line value 0\.00\), "
        r"against the median [\d.,]+ of ",
        hit["reason"],
    )
    spared = _row(report, lines.at[donated, "line_id"])
    assert spared["no_price_score"] == 0 and spared["score"] < 0.8
    assert "marked [DON] (donated): no rule broken" in spared["reason"]


def test_a_typed_price_that_disagrees_with_its_own_line_is_a_record_mismatch() -> None:
    lines = _rule_lines()
    index = lines.index[-3]
    lines.loc[index, "unit_price_usd"] = round(lines.at[index, "unit_price_usd"] / 10, 4)
    report = scms_anomaly_report(lines, top=3)
    hit = _row(report, lines.at[index, "line_id"])
    assert hit["kind"] == "record mismatch"
    assert 0.8 <= hit["score"] < 1
    assert "disagree with line value / quantity" in hit["reason"]
    # the file rounds to the cent: a gap of half a cent is no mismatch
    clean = _rule_lines()
    clean.loc[:, "unit_price_usd"] = clean["pack_price_usd"] / clean["units_per_pack"] + 0.005
    assert (scms_anomaly_report(clean, top=1).scored["record_mismatch_score"] == 0).all()


def test_freight_over_value_counts_the_goods_of_every_line_it_pays_for() -> None:
    lines = _rule_lines()
    carrier, booked = lines.index[-1], lines.index[-2]
    lines.loc[carrier, ["line_value_usd", "quantity_packs", "pack_price_usd"]] = [100.0, 10, 10.0]
    lines.loc[carrier, "unit_price_usd"] = round(10.0 / lines.at[carrier, "units_per_pack"], 2)
    lines.loc[carrier, "freight_usd"] = 150.0
    lines.loc[booked, "line_value_usd"] = 100.0 * lines.at[booked, "quantity_packs"]
    lines.loc[booked, "pack_price_usd"] = 100.0
    lines.loc[booked, "unit_price_usd"] = round(100.0 / lines.at[booked, "units_per_pack"], 2)
    alone = scms_anomaly_report(lines, top=1)
    hit = _row(alone, lines.at[carrier, "line_id"])
    assert hit["freight_over_value_score"] == pytest.approx(
        0.8 + 0.2 * np.log(1.5) ** 2 / (np.log(1.5) ** 2 + np.log(10) ** 2)
    )
    assert hit["reason"].startswith("freight 150.00 is 1.5x the value 100.00 of the line")
    lines.loc[booked, ["freight_usd", "weight_kg"]] = np.nan
    lines["freight_booked_on_id"] = lines["freight_booked_on_id"].astype("Int64")
    lines.loc[booked, "freight_booked_on_id"] = lines.at[carrier, "line_id"]
    together = _row(scms_anomaly_report(lines, top=1), lines.at[carrier, "line_id"])
    assert together["freight_over_value_score"] == 0  # 150 of freight for more than 100 of goods


def test_freight_on_a_weight_of_zero_reaches_the_alert_score_and_no_more() -> None:
    lines = _rule_lines()
    index = lines.index[-4]
    lines.loc[index, "weight_kg"] = 0.0
    hit = _row(scms_anomaly_report(lines, top=1), lines.at[index, "line_id"])
    assert hit["weight_missing_score"] == 0.8
    assert "charged on a weight of 0 kg" in hit["reason"]


def test_bad_parameters_are_refused_by_name() -> None:
    lines = _rule_lines()
    with pytest.raises(InvalidValue) as error:
        scms_anomaly_report(lines, top=0)
    assert error.value.field == "top"
    with pytest.raises(InvalidValue) as error:
        scms_anomaly_report(lines, model=ScmsAnomalyModel(alert_rate=0))
    assert error.value.field == "alert_rate"


@pytest.fixture(scope="module")
def real_report(scms_path: Path) -> ScmsAnomalyReport:
    return scms_anomalies(scms_path, top=20)


def test_the_real_file_s_top_20_are_flagged_lines_with_identifiers_and_reasons(
    real_report: ScmsAnomalyReport,
) -> None:
    top = real_report.top
    assert list(top.columns) == list(REPORT_COLUMNS)
    assert len(top) == 20 and top["rank"].tolist() == list(range(1, 21))
    assert top["line_id"].is_unique
    assert (top["score"] >= real_report.alert_score).all()
    assert top["score"].is_monotonic_decreasing
    assert (top["reason"].str.len() > 30).all()
    assert (top["compared_with"].str.len() > 0).all()
    for column in ("project_code", *IDENTIFIERS.values(), "country", "vendor", "item_description"):
        assert top[column].notna().all() and (top[column].astype(str) != "").all(), column
    assert set(top["kind"]) >= {"no price", "pack price", "weight per pack"}
    by_id = top.set_index("line_id")
    # two facts a person can check in the file: 3,781 Determine kits at 0.00, one pack of them
    # "weighing" 1,476 kg
    assert by_id.at[72922, "kind"] == "no price"
    assert by_id.at[72922, "reason"].startswith("3,781 packs at a pack price of 0.00")
    assert "weight per pack 1,476.00 kg is 3,108x the median" in by_id.at[74609, "reason"]
    summary = real_report.summary()
    json.dumps(summary)
    assert summary["lines"] == 10_324
    assert summary["flagged"] == sum(summary["flagged_by_kind"].values())
    assert summary["flagged_by_kind"]["no price"] == 13  # 18 zero prices, 5 marked [DON]
    assert summary["flagged_by_kind"]["record mismatch"] == 0  # every row agrees to the cent
    assert [row["line_id"] for row in summary["top"]] == top["line_id"].tolist()


def test_on_the_real_file_an_injected_x10_and_a_tenth_are_flagged_with_their_reason(
    scms_path: Path,
) -> None:
    lines = read_scms_lines(scms_path)
    by_id = lines.reset_index().set_index("line_id")["index"]
    # a 2014 Efavirenz/Lamivudine/TDF line of SCMS from RDC, and a 2014 Efavirenz/Lamivudine/TDF
    # line, each with 80+ earlier deliveries of its product from its vendor at a steady price
    pack_line, unit_line = by_id[85401], by_id[83256]
    _times_ten_pack(lines, pack_line)
    _tenth_unit(lines, unit_line)
    report = scms_anomaly_report(lines, top=20)
    for line_id, kind, sentence in (
        (85401, "pack price", PACK_X10),
        (83256, "unit price", UNIT_DIV10),
    ):
        row = _row(report, line_id)
        assert row["kind"] == kind
        assert row["score"] >= 0.95
        assert sentence.match(row["reason"]), row["reason"]
        # among the real file's 10,324 lines, only its most extreme 1% rank above it (zero
        # prices, 0.01 placeholders at 1/1,000 of the product, weights typed in grams)
        assert row["rank"] <= 0.01 * len(lines), row["rank"]


def test_the_report_is_written_as_markdown_or_csv_and_nothing_else(
    real_report: ScmsAnomalyReport, tmp_path: Path
) -> None:
    markdown = real_report.write(tmp_path / "top.md").read_text(encoding="utf-8")
    rows = markdown.strip().splitlines()
    assert len(rows) == 22 and rows[0].startswith("| rank | line_id | project_code | pq_number")
    assert all(row.count(" | ") == len(REPORT_COLUMNS) - 1 for row in rows[2:])
    assert "| 72922 |" in rows[2] or "| 72922 |" in markdown
    listed = pd.read_csv(real_report.write(tmp_path / "top.csv"))
    assert listed["line_id"].tolist() == real_report.top["line_id"].tolist()
    assert listed["reason"].tolist() == real_report.top["reason"].tolist()
    with pytest.raises(InvalidValue) as error:
        real_report.write(tmp_path / "top.xlsx")
    assert error.value.field == "out"
    assert not (tmp_path / "top.xlsx").exists()


def test_a_file_without_the_document_numbers_is_refused_naming_them(
    scms_path: Path, tmp_path: Path
) -> None:
    raw = pd.read_csv(scms_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    copy = tmp_path / "no_numbers.csv"
    raw.head(50).drop(columns=["PQ #", "ASN/DN #"]).to_csv(copy, index=False)
    with pytest.raises(InvalidValue) as error:
        read_scms_lines(copy)
    assert error.value.value == "PQ #, ASN/DN #"
    with pytest.raises(InvalidValue) as error:
        read_scms_lines(tmp_path / "absent.csv")
    assert error.value.field == "path"


@pytest.fixture()
def quiet_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("ERPX_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("ERPX_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_erpx_report_scms_anomalies_lists_the_top_and_writes_them(
    scms_path: Path, tmp_path: Path, quiet_settings: None
) -> None:
    out = tmp_path / "top.csv"
    result = runner.invoke(
        app,
        ["report", "scms-anomalies", str(scms_path), "--top", "5", "--out", str(out)],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "ID 72922  no price 1.0000" in result.output
    assert "10,324 scored" in result.output and "flagged" in result.output
    assert len(pd.read_csv(out)) == 5


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}"], "no such SCMS file"),
        (["{folder}"], "no such SCMS file"),
        (["{readme}"], "required SCMS columns missing from README.md"),
        (["{real}", "--out", "{out_txt}"], "the report is written as .md or .csv"),
        (["{real}", "--top", "0"], "--top"),
    ],
)
def test_erpx_report_scms_anomalies_refuses_bad_input_with_exit_code_2(
    arguments: list[str], message: str, scms_path: Path, tmp_path: Path, quiet_settings: None
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# not a CSV\n\n| a | b |\n| - | - | - |\n", encoding="utf-8")
    places = {
        "missing": str(tmp_path / "absent.csv"),
        "folder": str(tmp_path),
        "readme": str(readme),
        "real": str(scms_path),
        "out_txt": str(tmp_path / "top.txt"),
    }
    filled = [argument.format(**places) for argument in arguments]
    result = runner.invoke(app, ["report", "scms-anomalies", *filled], env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "top.txt").exists()
