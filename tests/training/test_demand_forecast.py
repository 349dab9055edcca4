"""The demand forecast on the small world: the model against its baselines and the oracle in one
run, the baselines checked by hand, the gate's terms, a challenger registered in a temporary
MLflow store, the same data and seed giving the same model, and ``erpx train demand-forecast``
and ``erpx report replenishment`` driven through the composed command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from erp_core.settings import get_settings
from serving.cli import app
from training import demand_forecast as df
from training import tracking
from training.demand_forecast import ForecastScores, croston, judge, tsb

from .conftest import PLAN

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


@pytest.fixture(scope="module")
def store(training_world, tmp_path_factory):
    return training_world.settings(tmp_path_factory.mktemp("mlflow-demand"))


@pytest.fixture(scope="module")
def first_run(store, calendar):
    return df.train_demand_forecast(store, calendar, plan=PLAN, seed=7, promote=True)


# --- baselines by hand -------------------------------------------------------------------------


def test_croston_by_hand():
    # day 1 brings 3 after an interval of 2 days; day 4 brings 2 after 3 days (alpha 0.5):
    # size 3 -> 2.5, interval 2 -> 2.5; the forecast is known only from the day after demand
    forecast = croston(np.array([0, 3, 0, 0, 2, 0]), alpha=0.5)
    assert np.isnan(forecast[:2]).all()
    assert forecast[2:].tolist() == pytest.approx([1.5, 1.5, 1.5, 1.0])


def test_tsb_by_hand():
    # first demand 4 sets size 4 and probability 1; each zero day halves the probability
    forecast = tsb(np.array([0, 4, 0, 0, 2]), alpha=0.5, beta=0.5)
    assert np.isnan(forecast[:2]).all()
    assert forecast[2:].tolist() == pytest.approx([4.0, 2.0, 1.0])


# --- the gate ----------------------------------------------------------------------------------


def scores(wrmsse: float, bias: float = 0.0, mase: float = 1.0) -> ForecastScores:
    return ForecastScores(100, 10, 10, mase, wrmsse, bias, 1.0)


def test_the_first_version_must_beat_every_baseline_on_wrmsse():
    assert judge(scores(0.8), None, None, {"ma": scores(0.9), "tsb": scores(0.85)}).promote
    refused = judge(scores(0.8), None, None, {"ma": scores(0.9), "tsb": scores(0.79)})
    assert not refused.promote and "tsb" in refused.reason


def test_a_challenger_must_lower_the_champions_wrmsse_by_the_margin_without_worse_bias():
    champion = scores(0.80, bias=-0.05)
    assert judge(scores(0.78, bias=0.05), champion, "1", {}).promote
    assert not judge(scores(0.797), champion, "1", {}).promote  # less than 1% better
    worse_bias = judge(scores(0.70, bias=-0.10), champion, "1", {})
    assert not worse_bias.promote and "bias" in worse_bias.reason


# --- the job on the small world ----------------------------------------------------------------


def test_the_forecast_beats_the_moving_average_on_wrmsse(first_run):
    """WRMSSE, not MASE, is what the model must win: MASE is an absolute error, minimised by the
    median (0 for an intermittent series), and on this world even the simulator's true expected
    units score a worse MASE than the 28-day average. Both are in the table."""
    model, average = first_run.scores["model"][df.ALL], first_run.scores[df.MOVING_AVERAGE][df.ALL]
    assert model.wrmsse < average.wrmsse
    assert model.rows == average.rows == first_run.rows["test"]
    assert np.isfinite(model.mase) and abs(model.bias) < 0.5


def test_the_run_scores_baselines_and_oracle_per_intermittency_class(first_run, store):
    assert {"model", "moving_average_28d", "croston", "tsb", "oracle"} <= set(first_run.scores)
    assert first_run.oracle_rows == first_run.rows["test"]
    oracle = first_run.scores["oracle"][df.ALL]
    assert oracle.wrmsse <= first_run.scores["model"][df.ALL].wrmsse * 1.05
    by_class = first_run.scores["model"]
    assert sum(s.rows for k, s in by_class.items() if k != df.ALL) == by_class[df.ALL].rows
    tracking.configure(store)
    metrics = tracking.run_metrics(first_run.run_id)
    for scorer in ("model", "moving_average_28d", "croston", "tsb", "oracle"):
        assert f"{scorer}_all_wrmsse" in metrics and f"{scorer}_all_bias" in metrics
    logged = {item.path for item in MlflowClient().list_artifacts(first_run.run_id)}
    assert {"feature_manifest.json", "test_scores.json", "test_daily_totals.png"} <= logged


def test_the_new_version_is_registered_as_challenger_and_gated(first_run, store):
    tracking.configure(store)
    challenger = tracking.version_by_alias(df.REGISTERED_NAME, tracking.CHALLENGER)
    assert challenger is not None and challenger.run_id == first_run.run_id
    assert first_run.gate is not None
    champion = tracking.version_by_alias(df.REGISTERED_NAME, tracking.CHAMPION)
    assert (champion is not None) == first_run.gate.promote


def test_same_data_and_seed_give_the_same_model(training_world, calendar, tmp_path):
    plan = df.demand_plan(PLAN)
    window = df.choose_window(training_world.url, plan)
    data = df.load_demand_frame(training_world.url, window, plan, calendar, tmp_path)
    train, valid = data.part("train"), data.part("validation")
    fitted = [
        df.DemandForecaster(random_state=3, n_estimators=60)
        .fit(train, train[df.LABEL], eval_set=(valid, valid[df.LABEL]))
        .predict(data.part("test"))
        for _ in range(2)
    ]
    np.testing.assert_array_equal(fitted[0], fitted[1])


# --- the commands ------------------------------------------------------------------------------


@pytest.fixture
def in_store(monkeypatch: pytest.MonkeyPatch, store, first_run) -> Iterator[Path]:
    """The CLI pointed at the module's MLflow store, where the first run is the champion."""
    tracking.configure(store)
    tracking.set_alias(df.REGISTERED_NAME, tracking.CHAMPION, first_run.version)
    monkeypatch.setenv("ERPX_VAR_DIR", str(store.var_dir))
    monkeypatch.setenv("ERPX_MLFLOW_TRACKING_URI", store.mlflow_tracking_uri)
    monkeypatch.setenv("ERPX_MLFLOW_ARTIFACT_ROOT", store.mlflow_artifact_root)
    monkeypatch.setenv("ERPX_DATABASE_URL", store.database_url)
    get_settings.cache_clear()
    yield store.var_dir
    get_settings.cache_clear()


def test_the_report_writes_html_and_csv(in_store, tmp_path):
    html_out, csv_out = tmp_path / "report.html", tmp_path / "report.csv"
    result = runner.invoke(app, ["report", "replenishment", "--out", str(html_out)], env=WIDE)
    assert result.exit_code == 0, result.output
    page = html_out.read_text()
    assert "<svg" in page and "<table" in page and "order qty" in page and "http" not in page
    result = runner.invoke(
        app,
        ["report", "replenishment", "--out", str(csv_out), "--location", "DC-NORTH"],
        env=WIDE,
    )
    assert result.exit_code == 0, result.output
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("sku,location_id,abc_class,order_qty")
    assert len(lines) > 1 and all(",DC-NORTH," in line for line in lines[1:])


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--out", "{dir}/report.txt"], "out"),
        (["--out", "{dir}/report.csv", "--location", "NOWHERE"], "location"),
        (["--out", "{dir}/missing/report.csv"], "out"),
    ],
)
def test_the_report_refuses_bad_input_with_exit_2_and_writes_nothing(
    in_store, tmp_path, arguments, named
):
    command = [a.replace("{dir}", str(tmp_path)) for a in arguments]
    result = runner.invoke(app, ["report", "replenishment", *command], env=WIDE)
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_report_refuses_without_a_champion(monkeypatch, training_world, tmp_path):
    monkeypatch.setenv("ERPX_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ERPX_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("ERPX_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "art"))
    monkeypatch.setenv("ERPX_DATABASE_URL", training_world.url)
    get_settings.cache_clear()
    out = tmp_path / "report.csv"
    result = runner.invoke(app, ["report", "replenishment", "--out", str(out)], env=WIDE)
    get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "no champion" in result.output
    assert not out.exists()


def test_the_backtest_replays_every_policy_on_the_test_window(first_run, store, calendar, tmp_path):
    from training import replenishment as rp

    tracking.configure(store)
    model = tracking.load_model(df.REGISTERED_NAME, tracking.CHALLENGER)
    found = rp.run_backtest(store.database_url, calendar, model, PLAN, tmp_path)
    assert found["pairs"] > 0
    assert set(found["policies"]) == set(rp.POLICIES)
    for scores in found["policies"].values():
        assert 0.0 <= scores["fill_rate"] <= 1.0
        assert scores["average_inventory_value"] > 0 and scores["orders"] >= 0


@pytest.mark.parametrize(
    ("arguments", "named"),
    [(["--test-days", "0"], "test_days"), (["--end", "2030-01-01"], "end")],
)
def test_training_refuses_a_bad_window_with_exit_2_and_registers_nothing(
    monkeypatch, training_world, tmp_path, arguments, named
):
    monkeypatch.setenv("ERPX_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("ERPX_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ERPX_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "art"))
    get_settings.cache_clear()
    command = ["train", "demand-forecast", "--database-url", training_world.url, *arguments]
    result = runner.invoke(app, command, env=WIDE)
    get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
    assert not (tmp_path / "mlflow.db").exists()
