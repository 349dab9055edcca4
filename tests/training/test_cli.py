"""``erpx train late-shipment``: the scores table and run summary, and bad input refused in one
line with exit code 2 and nothing registered. Driven through the composed ``erpx`` command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erp_core.settings import get_settings
from serving.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
SMALL_SPLIT = ["--validation-days", "14", "--calibration-days", "14", "--test-days", "21"]


@pytest.fixture(autouse=True)
def tracking_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("ERPX_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("ERPX_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ERPX_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.delenv("ERPX_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_training_prints_scores_beside_baselines_and_oracle_and_registers_a_challenger(
    training_world, tracking_in
):
    arguments = ["train", "late-shipment", *SMALL_SPLIT, "--database-url", training_world.url]
    result = runner.invoke(app, arguments, env=WIDE)
    assert result.exit_code == 0, result.output
    for text in ("test window scores", "lane_rate", "logistic", "oracle", "recall@10%"):
        assert text in result.output
    assert "late_shipment v1 as challenger" in result.output
    assert "(AUC - 0.5) / (oracle AUC - 0.5)" in result.output
    assert "none: every feature was available" in result.output
    assert (tracking_in / "mlflow.db").is_file()


def test_the_summary_names_the_features_left_out_grouped_by_reason():
    from training.cli import left_out_text

    shown = left_out_text(
        {
            "backorder_receipt_covered": "no purchase orders were imported",
            "stock_cover": "no inventory snapshots were imported",
            "covering_receipt_overdue_bdays": "no purchase orders were imported",
        }
    )
    assert shown == (
        "3 unavailable in the history: backorder_receipt_covered, covering_receipt_overdue_bdays "
        "(no purchase orders were imported); stock_cover (no inventory snapshots were imported)"
    )


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--start", "2025-01-06", "--end", "2025-02-01"], "window"),
        (["--end", "2030-01-01"], "end"),
        (["--test-days", "0"], "test_days"),
    ],
)
def test_bad_windows_are_refused_in_one_line_with_exit_code_2_and_nothing_registered(
    training_world, tracking_in, arguments, named
):
    command = ["train", "late-shipment", *SMALL_SPLIT, *arguments]
    result = runner.invoke(app, [*command, "--database-url", training_world.url], env=WIDE)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "Traceback" not in result.output
    assert not (tracking_in / "mlflow.db").exists()
