"""The notebooks run top to bottom against a small world and tell the truth about it: each
exits 0, draws its figures, and the key figures it prints are the world's own (counted in the
database, recorded by the simulator) or the ones the training runs logged to MLflow for the
models it reads. Each is also a jupytext percent notebook that Jupyter can open."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jupytext
import pytest
from sqlalchemy import func, select

from erp_core.db.engine import make_engine
from erp_core.db.models import OrderLine, ServiceAlert
from erp_core.importers.scms import read_scms
from erp_core.simulate import truth
from erp_core.simulate.pricing import ANOMALY_TYPES
from tests.conftest import scms_file
from training import demand_forecast as df
from training import late_shipment as ls
from training import margin_anomaly as ma
from training import replenishment as rp
from training import scms as scms_protocol
from training import tracking
from training.scms_anomaly import scms_anomalies

from .conftest import NOTEBOOKS, NotebookRun, NotebookWorld, run_notebook, run_script

NAMES = (
    "01_distributor_world.py",
    "02_late_shipment.py",
    "03_replenishment.py",
    "04_margin_anomalies.py",
    "05_scms_real_history.py",
)


def figures(run: NotebookRun, prefix: str) -> set[str]:
    """The figures a run wrote, by name; each must hold a real picture (not an empty canvas)."""
    found = sorted(run.out.glob(f"{prefix}_*.png"))
    for path in found:
        assert path.stat().st_size > 5_000, path.name
    return {path.stem.removeprefix(f"{prefix}_") for path in found}


def key_figures(run: NotebookRun, name: str) -> dict:
    return json.loads((run.out / f"{Path(name).stem}.json").read_text())


def logged_metrics(world: NotebookWorld, model: str) -> tuple[str, dict[str, float]]:
    tracking.configure(world.settings)
    champion = tracking.version_by_alias(model, tracking.CHAMPION)
    assert champion is not None
    return champion.version, tracking.run_metrics(champion.run_id)


@pytest.mark.parametrize("name", NAMES)
def test_each_notebook_opens_in_jupyter_as_prose_and_code_cells(name: str) -> None:
    notebook = jupytext.read(NOTEBOOKS / name)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and notebook.cells[0].source.startswith(f"# {name[:2]} ")
    assert kinds.count("markdown") >= 4 and kinds.count("code") >= 4
    assert notebook.metadata["jupytext"]["text_representation"]["format_name"] == "percent"


def test_the_world_notebook_reports_the_database_and_the_simulators_record(
    notebook_world: NotebookWorld, tmp_path: Path
) -> None:
    run = run_notebook(notebook_world, NAMES[0], tmp_path)
    assert figures(run, "01") == {
        "daily_demand",
        "seasonality",
        "intermittency",
        "example_series",
        "fill_rate",
        "late_by_lane",
        "late_by_week",
        "pricing_anomalies",
    }
    found = key_figures(run, NAMES[0])
    engine = make_engine(notebook_world.settings.database_url)
    try:
        with engine.connect() as connection:
            lines = connection.execute(select(func.count()).select_from(OrderLine)).scalar()
            storms = connection.execute(select(func.count()).select_from(ServiceAlert)).scalar()
        summary = truth.simulated_runs(engine)[0]["summary"]
    finally:
        engine.dispose()
    assert found["lines"] == lines
    assert found["orders"] == summary["orders"]
    assert found["storms"] == storms
    assert sum(found["pricing_anomalies"].values()) == summary["pricing_anomalies"]
    # the ERP's late label on settled lines against the simulator's own count of late lines
    assert found["late_delivery_rate"] == pytest.approx(summary["late_delivery_rate"], abs=0.02)
    assert 0 < found["line_fill_rate"] <= 1


def test_the_late_shipment_notebook_reproduces_the_scores_its_training_run_logged(
    notebook_world: NotebookWorld, tmp_path: Path
) -> None:
    run = run_notebook(notebook_world, NAMES[1], tmp_path)
    assert figures(run, "02") == {"feature_signal", "gain", "calibration", "lift"}
    found = key_figures(run, NAMES[1])
    version, logged = logged_metrics(notebook_world, ls.REGISTERED_NAME)
    assert found["version"] == version
    assert found["test_lines"] == logged["rows_test"]
    assert set(found["scores"]) == {"model", "lane_rate", "logistic", "oracle"}
    for scorer, scores in found["scores"].items():
        for name in ("roc_auc", "pr_auc", "brier", "ece", "recall_at_budget"):
            assert scores[name] == pytest.approx(logged[f"{scorer}_{name}"], abs=1e-9), scorer
    assert found["auc_ratio"] == pytest.approx(logged["auc_ratio_to_oracle"], abs=1e-9)
    assert "log-odds" in run.stdout  # reason codes were printed for single lines


def test_the_replenishment_notebook_reproduces_the_forecast_scores_and_backtests_every_policy(
    notebook_world: NotebookWorld, tmp_path: Path
) -> None:
    run = run_notebook(notebook_world, NAMES[2], tmp_path)
    found = key_figures(run, NAMES[2])
    expected = {"accuracy_by_class", "daily_totals", "frontier"}
    assert figures(run, "03") == expected | ({"order_now"} if found["to_order_now"] else set())
    version, logged = logged_metrics(notebook_world, df.REGISTERED_NAME)
    assert found["version"] == version
    assert set(found["wrmsse"]) == {df.MODEL, df.MOVING_AVERAGE, df.CROSTON, df.TSB, df.ORACLE}
    for scorer, wrmsse in found["wrmsse"].items():
        assert wrmsse == pytest.approx(logged[f"{scorer}_{df.ALL}_wrmsse"], abs=1e-9), scorer
    assert set(found["policies"]) == set(rp.POLICIES)
    for policy, score in found["policies"].items():
        assert 0 < score["fill_rate"] <= 1, policy
        assert score["average_inventory_value"] > 0, policy


def test_the_margin_notebook_reproduces_the_test_scores_and_judges_every_anomaly_type(
    notebook_world: NotebookWorld, tmp_path: Path
) -> None:
    run = run_notebook(notebook_world, NAMES[3], tmp_path)
    assert figures(run, "04") == {"score_distribution", "recall_by_type", "precision_recall"}
    found = key_figures(run, NAMES[3])
    _, logged = logged_metrics(notebook_world, ma.REGISTERED_NAME)
    if logged.get("model_pr_auc") is not None:  # the test weeks held a labelled anomaly
        for detector, pr_auc in found["test_pr_auc"].items():
            assert pr_auc == pytest.approx(logged[f"{detector}_pr_auc"], abs=1e-9), detector
    assert found["window_anomalies"] > 0
    assert found["pr_auc_by_type"] and set(found["pr_auc_by_type"]) <= set(ANOMALY_TYPES)
    assert all(0 < v <= 1 for v in found["pr_auc_by_type"].values())
    assert 0 <= found["top10_hits"] <= min(10, found["window_anomalies"])


def test_the_scms_notebook_reads_imports_and_scores_the_real_file_as_the_protocol_does(
    tmp_path: Path,
) -> None:
    path = scms_file()
    out = tmp_path / "out"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ERPX_")}
    environment = inherited | {
        "ERPX_SCMS_PATH": str(path),
        "ERPX_VAR_DIR": str(tmp_path / "var"),
        "ERPX_NOTEBOOK_OUT": str(out),
        "MPLBACKEND": "Agg",
    }
    run = run_script(NAMES[4], tmp_path, environment)
    assert figures(run, "05") == {
        "late_rate_by_year",
        "point_in_time_rate",
        "precision_recall",
        "calibration",
        "kpis_by_year",
        "anomalies_by_kind",
    }
    found = key_figures(run, NAMES[4])
    history = read_scms(path)
    assert (found["rows_read"], found["rows_rejected"]) == (10_324, 0)
    assert found["repaired_values"] == sum(
        rows for rules in history.report.repairs.values() for rows in rules.values()
    )
    # every SCMS line is an order line in erpx but the 18 priced at 0 (rule not_positive)
    assert (found["imported_order_lines"], found["import_rejected"]) == (10_306, 18)
    late = history.lines.assign(year=history.lines["scheduled_delivery_date"].dt.year)
    expected_rates = late.groupby("year")["late"].mean()
    assert {int(y): r for y, r in found["late_rate_by_year"].items()} == pytest.approx(
        {int(y): float(r) for y, r in expected_rates.items()}
    )
    evaluation = scms_protocol.evaluate_scms(history.lines)
    assert found["test_lines"] == evaluation.test_lines
    assert found["test_roc_auc"]["LightGBM, point-in-time features"] == pytest.approx(
        evaluation.model.roc_auc, abs=1e-9
    )
    # the file has no stock counts, ship dates, alerts or approvals: those features are named
    assert {"stock_cover", "lane_transit_spread_28d", "region_alert_severity"} <= set(
        found["unavailable_features"]
    )
    assert all(found["unavailable_features"].values())
    # the anomaly list is the report's own, 20 lines
    expected_report = scms_anomalies(path, top=20)
    assert found["anomaly_top_line_ids"] == [int(v) for v in expected_report.top["line_id"]]
    assert found["anomalies_flagged"] == expected_report.summary()["flagged"]
    # erpx's OTIF of each year, from the imported rows, tells the same story as the file
    for year, otif in found["otif_by_year"].items():
        assert otif == pytest.approx(1 - expected_rates[int(year)], abs=0.03), year
