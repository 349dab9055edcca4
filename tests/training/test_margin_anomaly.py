"""The margin-anomaly model on the small simulated world: behaviour (a 10x price raises the score,
a price below cost and an unapproved deep discount are flagged with their reasons), the estimator
contract, determinism, the metrics and gate, the job against a real MLflow store, and bad input.

The small world holds only a handful of labelled anomalies (a few per thousand lines), so the
tests assert what stays true with few of them: rules catch every below-cost line, a repriced
line scores at the top; ranking metrics are computed but not held to targets here (the medium
world's figures are in bench/results/train-margin_anomaly.json)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.base import clone
from typer.testing import CliRunner

from erp_core.domain.errors import InvalidValue
from erp_core.settings import get_settings
from serving.cli import app
from training import margin_anomaly as ma
from training import margin_job, tracking
from training.frames import choose_window
from training.margin_job import load_pricing_data, pricing_plan, train_margin_anomaly

from .conftest import PLAN

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
SMALL_SPLIT = ["--validation-days", "14", "--calibration-days", "14", "--test-days", "21"]


@pytest.fixture(scope="module")
def data(training_world, calendar, tmp_path_factory):
    plan = pricing_plan(PLAN)
    window = choose_window(training_world.url, plan)
    folder = tmp_path_factory.mktemp("pricing-frame")
    return load_pricing_data(training_world.url, window, plan, calendar, folder)


@pytest.fixture(scope="module")
def model(data):
    return margin_job.fit_model(data, seed=7, params={})


def repriced(frame: pd.DataFrame, price: np.ndarray | pd.Series) -> pd.DataFrame:
    """The lines as if entered at ``price``: every column that reads the price follows it."""
    out = frame.copy()
    price = np.asarray(price, dtype=np.float64)
    out["unit_price"] = price
    out["discount_vs_tier"] = 1 - price / out["quantity_break_price"]
    out["price_to_list"] = price / out["list_price"]
    out["price_cost_ratio"] = price / out["unit_cost"]
    out["price_to_customer_median"] = price / out["customer_median_price_5"]
    out["price_to_tier_median"] = price / out["tier_median_price_90d"]
    out["discount_beyond_threshold"] = out["discount_vs_tier"] > 0.10
    out["price_overridden"] = True
    return out


def usual_lines(data, model) -> pd.DataFrame:
    """Test lines at the price list, not flagged, whose customer bought the SKU before."""
    test = data.part("test")
    ordinary = (
        (model.anomaly_score(test) < 0.5)
        & test["customer_median_price_5"].notna().to_numpy()
        & (test["discount_vs_tier"].abs() < 1e-9).to_numpy()
    )
    return test.loc[ordinary].head(50)


def test_a_price_ten_times_the_usual_raises_the_score_to_the_alert_and_says_so(data, model):
    lines = usual_lines(data, model)
    assert len(lines) >= 20
    before = model.anomaly_score(lines)
    tenfold = repriced(lines, lines["unit_price"] * 10)
    after = model.anomaly_score(tenfold)
    assert (after > before).all()
    assert (after >= ma.ALERT_SCORE).all()
    # above every ordinary line of the test window
    assert after.min() > np.quantile(model.anomaly_score(data.part("test")), 0.99)
    reasons = model.reasons(tenfold)
    assert all("x this customer's last" in r for r in reasons)
    assert any("price is 10.0x this customer's last" in r for r in reasons)


def test_a_price_below_cost_is_flagged_by_the_rule_with_its_reason(data, model):
    lines = usual_lines(data, model).head(10)
    below = repriced(lines, (lines["unit_cost"] * 0.88).round(2))
    parts = model.score_parts(below)
    assert (parts.below_cost_score >= ma.ALERT_SCORE).all()
    assert (parts.score >= ma.ALERT_SCORE).all()
    assert all("12% below unit cost" in r for r in model.reasons(below, parts))


def test_an_unapproved_deep_discount_is_flagged_and_an_approved_one_is_not_by_the_rule(data, model):
    lines = usual_lines(data, model).head(10)
    deep = repriced(lines, (lines["quantity_break_price"] * 0.65).round(2))
    deep[ma.APPROVAL_COLUMN] = False
    parts = model.score_parts(deep)
    assert (parts.discount_score >= ma.ALERT_SCORE).all()
    assert all(
        "beyond the 10% approval threshold, entered without approval" in r
        for r in model.reasons(deep, parts)
    )
    deep[ma.APPROVAL_COLUMN] = True
    assert (model.score_parts(deep).discount_score == 0).all()


def test_a_price_from_a_superseded_price_list_is_flagged_as_stale(data, model):
    lines = usual_lines(data, model).head(10)
    stale = repriced(lines, (lines["quantity_break_price"] / 1.04).round(2))
    stale[ma.SUPERSEDED_COLUMN] = True
    parts = model.score_parts(stale)
    assert (parts.stale_score >= ma.ALERT_SCORE).all()
    assert all("stale price list" in r for r in model.reasons(stale, parts))
    assert (model.score_parts(stale.drop(columns=[ma.SUPERSEDED_COLUMN])).stale_score == 0).all()


def test_every_below_cost_line_of_the_world_reaches_the_alert_score(data, model):
    frame = data.frame
    below = frame.loc[frame["price_cost_ratio"] < 1]
    if below.empty:
        pytest.skip("the small world drew no price below cost")
    assert (model.anomaly_score(below) >= ma.ALERT_SCORE).all()


def test_labelled_tenfold_and_unit_of_measure_errors_score_at_the_alert(data, model):
    frame = data.frame
    gross = frame.loc[frame[ma.TYPE_COLUMN].isin(["price_x10", "price_div10", "uom_mixup"])]
    if gross.empty:
        pytest.skip("the small world drew no gross price error")
    assert (model.anomaly_score(gross) >= ma.ALERT_SCORE).all()


def test_scores_lie_in_the_unit_interval_and_most_lines_are_quiet(data, model):
    score = model.anomaly_score(data.part("test"))
    assert ((score >= 0) & (score <= 1)).all()
    assert (score >= ma.ALERT_SCORE).mean() < 0.03
    proba = model.predict_proba(data.part("test"))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(data.part("test")), score >= ma.ALERT_SCORE)


def test_the_estimator_follows_the_scikit_learn_contract(data):
    fresh = ma.MarginAnomalyModel(n_estimators=30, random_state=3)
    assert not [name for name in vars(fresh) if name.endswith("_")]
    assert fresh.get_params()["random_state"] == 3
    twin = clone(fresh)
    assert twin.get_params() == fresh.get_params()
    assert fresh.fit(data.part("train")) is fresh
    assert {"booster_", "scales_", "iforest_", "residual_half_"} <= set(vars(fresh))
    with pytest.raises(InvalidValue, match="alert_rate"):
        ma.MarginAnomalyModel(alert_rate=1.5).fit(data.part("train"))


def test_same_data_and_seed_give_the_same_model_and_labels_are_never_read(data):
    train, valid, calib = data.part("train"), data.part("validation"), data.part("calibration")
    test = data.part("test")

    def fitted(y=None):
        model = ma.MarginAnomalyModel(random_state=11)
        return model.fit(train, y, eval_set=valid, calibration_set=calib).anomaly_score(test)

    first = fitted()
    np.testing.assert_array_equal(first, fitted())
    shuffled = np.random.default_rng(0).permutation(train[ma.LABEL].to_numpy())
    np.testing.assert_array_equal(first, fitted(shuffled))


def test_a_frame_missing_a_feature_is_refused_by_name(data, model):
    with pytest.raises(InvalidValue, match="unit_cost"):
        model.anomaly_score(data.part("test").drop(columns=["unit_cost"]))


def test_one_array_per_column_scores_and_explains_as_the_frame_does(data, model):
    """Serving hands the model a mapping of arrays (one order's lines); every part of the score
    and every reason equals the frame's, also with a missing channel and tier and the approval
    column given as plain booleans or as a column with nulls."""
    frame = data.part("test").head(300).reset_index(drop=True)
    frame[ma.APPROVAL_COLUMN] = np.arange(len(frame)) % 3 == 0
    frame.loc[:4, "channel"] = None
    frame.loc[5:9, "customer_tier"] = None
    columns = {
        name: frame[name].to_numpy(dtype=object)
        if frame[name].dtype == object or isinstance(frame[name].dtype, pd.StringDtype)
        else frame[name].to_numpy()
        for name in frame.columns
    }
    expected = model.score_parts(frame)
    found = model.score_parts(columns)
    for name in expected.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(found, name), getattr(expected, name), err_msg=name)
    assert model.reasons(columns, found) == model.reasons(frame, expected)
    with_nulls = dict(columns)
    with_nulls[ma.APPROVAL_COLUMN] = np.where(frame[ma.APPROVAL_COLUMN], True, None)
    np.testing.assert_array_equal(model.score_parts(with_nulls).score, expected.score)
    del columns["unit_cost"]
    with pytest.raises(InvalidValue, match="unit_cost"):
        model.score_parts(columns)


def test_metrics_count_recall_per_type_at_the_alert_rate():
    labels = np.zeros(200, dtype=bool)
    labels[[3, 7]] = True
    types = np.array([None] * 200, dtype=object)
    types[3], types[7] = "price_x10", "below_cost"
    scores = np.zeros(200)
    scores[3], scores[50] = 0.99, 0.95  # one anomaly on top, one missed
    found = ma.score_detector(labels, types, scores)
    assert found is not None
    assert found.alerts == 2
    assert found.recall_at_alert == 0.5 and found.precision_at_alert == 0.5
    assert found.recall_by_type == {"below_cost": 0.0, "price_x10": 1.0}
    assert found.anomalies_by_type == {"below_cost": 1, "price_x10": 1}
    assert ma.score_detector(np.zeros(5, dtype=bool), [None] * 5, np.zeros(5)) is None


def _scores(pr_auc: float, recall: float) -> ma.AnomalyScores:
    return ma.AnomalyScores(100, 5, pr_auc, 0.9, 1, 1.0, recall)


def test_the_gate_judges_on_pr_auc_and_refuses_without_labels():
    baselines = {"rules_only": _scores(0.6, 0.6)}
    assert ma.judge(_scores(0.9, 0.9), None, None, baselines).promote
    assert not ma.judge(_scores(0.5, 0.9), None, None, baselines).promote
    assert not ma.judge(_scores(0.9, 0.9), _scores(0.9, 0.9), "1", baselines).promote
    assert ma.judge(_scores(0.95, 0.9), _scores(0.9, 0.9), "1", baselines).promote
    fewer = ma.judge(_scores(0.95, 0.5), _scores(0.9, 0.9), "1", baselines)
    assert not fewer.promote and "recall" in fewer.reason
    unjudged = ma.judge(None, None, None, baselines)
    assert not unjudged.promote and "no labelled anomaly" in unjudged.reason


# --- the job against a real MLflow store ----------------------------------------------------


@pytest.fixture(scope="module")
def store(training_world, tmp_path_factory):
    return training_world.settings(tmp_path_factory.mktemp("mlflow-margin"))


@pytest.fixture(scope="module")
def first_run(store, calendar):
    return train_margin_anomaly(store, calendar, plan=PLAN, seed=7, promote=True)


def test_the_job_registers_a_challenger_with_its_run(first_run, store):
    tracking.configure(store)
    challenger = tracking.version_by_alias(ma.REGISTERED_NAME, tracking.CHALLENGER)
    assert challenger is not None
    assert challenger.version == first_run.version == "1"
    assert challenger.run_id == first_run.run_id
    logged = {item.path for item in MlflowClient().list_artifacts(first_run.run_id)}
    assert {"feature_manifest.json", "test_scores.json", "gate.json"} <= logged
    metrics = tracking.run_metrics(first_run.run_id)
    assert metrics["rows_test"] == first_run.rows["test"]
    assert first_run.labelled
    for scorer, scores in first_run.scores.items():
        assert metrics[f"{scorer}_pr_auc"] == pytest.approx(scores.pr_auc)
    loaded = tracking.load_model(ma.REGISTERED_NAME, tracking.CHALLENGER)
    assert isinstance(loaded, ma.MarginAnomalyModel)


def test_the_gate_promotes_a_first_version_only_if_it_beats_the_baselines(first_run, store):
    tracking.configure(store)
    assert first_run.gate is not None
    if first_run.scores:
        model = first_run.scores["model"].pr_auc
        beats = all(
            model > first_run.scores[b].pr_auc
            for b in (margin_job.RULES, margin_job.ZSCORE)
            if b in first_run.scores
        )
        assert first_run.gate.promote == beats
    else:
        assert not first_run.gate.promote
    champion = tracking.version_by_alias(ma.REGISTERED_NAME, tracking.CHAMPION)
    assert (champion is not None) == first_run.gate.promote


def test_without_simulator_truth_it_trains_but_promotes_nothing(
    first_run, store, calendar, monkeypatch
):
    monkeypatch.setattr(margin_job, "pricing_truth", lambda url: None)
    unlabelled = train_margin_anomaly(store, calendar, plan=PLAN, seed=7, promote=True)
    assert not unlabelled.labelled and unlabelled.scores == {}
    assert unlabelled.metrics_note is not None and "no labels" in unlabelled.metrics_note
    assert unlabelled.gate is not None and not unlabelled.gate.promote
    assert unlabelled.version == "2"
    tracking.configure(store)
    champion = tracking.version_by_alias(ma.REGISTERED_NAME, tracking.CHAMPION)
    assert champion is None or champion.version == first_run.version


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def tracking_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("ERPX_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("ERPX_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ERPX_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.delenv("ERPX_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_the_command_prints_scores_and_registers_a_challenger(training_world, tracking_in):
    arguments = ["train", "margin-anomaly", *SMALL_SPLIT, "--database-url", training_world.url]
    result = runner.invoke(app, arguments, env=WIDE)
    assert result.exit_code == 0, result.output
    assert "margin_anomaly v1 as challenger" in result.output
    assert ("test window scores" in result.output) or ("metrics unavailable" in result.output)
    assert (tracking_in / "mlflow.db").is_file()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--start", "2025-01-06", "--end", "2025-02-01"], "window"),
        (["--end", "2030-01-01"], "end"),
        (["--test-days", "0"], "test_days"),
    ],
)
def test_bad_input_is_refused_with_exit_code_2_and_nothing_registered(
    training_world, tracking_in, arguments, named
):
    command = ["train", "margin-anomaly", *SMALL_SPLIT, *arguments]
    result = runner.invoke(app, [*command, "--database-url", training_world.url], env=WIDE)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "Traceback" not in result.output
    assert not (tracking_in / "mlflow.db").exists()


def test_a_typed_price_from_a_superseded_price_list_entry_is_found_in_the_database(
    training_world, data, tmp_path
):
    import shutil
    import sqlite3

    copy = tmp_path / "world.db"
    shutil.copy(training_world.url.removeprefix("sqlite:///"), copy)
    line = data.part("test").query("line_units < 50").iloc[0]
    with sqlite3.connect(copy) as connection:
        (sku,) = connection.execute(
            "SELECT sku FROM order_lines WHERE id = ?", (int(line["line_id"]),)
        ).fetchone()
        (base,) = connection.execute(
            "SELECT unit_price FROM price_list_entries WHERE tier = ? AND sku = ? "
            "AND min_quantity = 1 ORDER BY valid_from LIMIT 1",
            (str(line["customer_tier"]), sku),
        ).fetchone()
        new_price = round(float(base) * 1.05, 2)
        day = line["entered_at"].date().isoformat()  # in force from the entry day on
        connection.execute(
            "INSERT OR REPLACE INTO price_list_entries "
            "(tier, sku, min_quantity, unit_price, valid_from) VALUES (?, ?, 1, ?, ?)",
            (str(line["customer_tier"]), sku, new_price, day),
        )
    typed = pd.DataFrame(
        {
            "line_id": [int(line["line_id"])] * 2,
            "entered_at": [line["entered_at"]] * 2,
            "customer_tier": [str(line["customer_tier"])] * 2,
            "line_units": [int(line["line_units"])] * 2,
            "unit_price": [float(base), new_price],
            "price_overridden": [True, True],
        }
    )
    url = f"sqlite:///{copy}"
    assert margin_job.superseded_price_lines(url, typed.iloc[:1]) == {int(line["line_id"])}
    assert margin_job.superseded_price_lines(url, typed.iloc[1:]) == set()
    assert (
        margin_job.superseded_price_lines(url, typed.iloc[:1].assign(price_overridden=False))
        == set()
    )
