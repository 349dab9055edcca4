"""The receipt-delay job: pinball loss and coverage defined once, the choice between LightGBM and
the supplier history, the gate, the whole run on the small world logged to MLflow, and the
forecasts it writes for the ERP's promises."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from erp_core.db.models import PoLineReceiptForecast
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from features.inbound import LABEL, as_moment, load_inbound_history, open_line_rows
from tests.training.conftest import TrainingWorld
from training import tracking
from training.receipt_delay import (
    EMPIRICAL,
    MODEL,
    REGISTERED_NAME,
    DelayScores,
    DelaySplit,
    ReceiptDelayModel,
    as_quantiles,
    choose,
    delay_frame,
    features,
    judge,
    pinball,
    score_quantiles,
    train_receipt_delay,
    write_receipt_forecasts,
)


def scores(pinball_mean: float, coverage_p80: float) -> DelayScores:
    return DelayScores(100, 10, 1.0, 1.0, 1.0, pinball_mean, 0.5, coverage_p80, 0.9, 3.0)


def test_pinball_loss_weighs_a_miss_below_by_the_level_and_above_by_the_rest() -> None:
    # label 0 under a prediction of 5: 0.2 x 5; label 10 over it: 0.8 x 5
    assert pinball(np.array([0, 10]), np.array([5, 5]), 0.8) == pytest.approx(2.5)
    assert pinball(np.array([3]), np.array([3]), 0.9) == 0.0


def test_coverage_is_the_share_received_by_the_quantile() -> None:
    label = np.array([0.0, 1.0, 2.0, 8.0])
    quantiles = np.array([[0, 1, 2]] * 4, dtype=np.float64)
    found = score_quantiles(label, quantiles, np.array([1, 1, 2, 3]))
    assert (found.coverage_p50, found.coverage_p80, found.coverage_p90) == (0.25, 0.5, 0.75)
    assert (found.rows, found.lines, found.mean_p80_days) == (4, 3, 1.0)


def test_quantiles_are_whole_days_in_order_and_never_before_today() -> None:
    frame = pd.DataFrame({"days_to_expected": [-4, 3]})
    raw = np.array([[3.4, 2.6, 5.5], [-1.2, 0.4, 0.6]])
    assert as_quantiles(raw, frame).tolist() == [[4, 4, 6], [-1, 0, 1]]


def test_the_choice_prefers_an_honest_p80_then_the_lower_loss() -> None:
    honest, tight_but_optimistic = scores(1.5, 0.79), scores(1.2, 0.60)
    assert choose({MODEL: tight_but_optimistic, EMPIRICAL: honest})[0] == EMPIRICAL
    assert choose({MODEL: scores(1.2, 0.82), EMPIRICAL: honest})[0] == MODEL
    # neither honest: the loss decides
    assert choose({MODEL: scores(1.2, 0.6), EMPIRICAL: scores(1.5, 0.6)})[0] == MODEL


def test_the_gate_refuses_a_first_version_the_supplier_history_beats() -> None:
    refused = judge(scores(1.6, 0.8), None, None, scores(1.5, 0.8))
    assert not refused.promote and "no champion yet" in refused.reason
    assert judge(scores(1.4, 0.8), None, None, scores(1.5, 0.8)).promote


def test_the_gate_asks_a_later_version_for_the_margin_and_an_honest_p80() -> None:
    champion = scores(1.5, 0.8)
    assert not judge(scores(1.495, 0.8), champion, "1", scores(2.0, 0.8)).promote
    assert not judge(scores(1.3, 0.6), champion, "1", scores(2.0, 0.8)).promote
    assert judge(scores(1.3, 0.81), champion, "1", scores(2.0, 0.8)).promote


def test_the_label_is_never_a_feature() -> None:
    names = [spec.name for spec in features()]
    assert LABEL not in names and not any(name.startswith("label_") for name in names)


@pytest.fixture(scope="module")
def fitted(training_world: TrainingWorld):
    data = delay_frame(load_inbound_history(training_world.url), DelaySplit())
    train, valid = data.part("train"), data.part("validation")
    model = ReceiptDelayModel().fit(train, train[LABEL], eval_set=(valid, valid[LABEL]))
    return data, model


def test_same_data_and_seed_give_the_same_model(fitted) -> None:
    data, model = fitted
    train, valid, test = data.part("train"), data.part("validation"), data.part("test")
    again = ReceiptDelayModel().fit(train, train[LABEL], eval_set=(valid, valid[LABEL]))
    assert np.array_equal(model.predict_quantiles(test), again.predict_quantiles(test))


def test_a_line_falls_in_one_slice_only(fitted) -> None:
    data, _model = fitted
    slices = [set(data.part(name)["po_line_id"]) for name in ("train", "validation", "test")]
    assert all(slices) and not (
        slices[0] & slices[1] or slices[1] & slices[2] or slices[0] & slices[2]
    )


def test_predictions_before_a_moment_ignore_the_receipts_after_it(
    fitted, training_world: TrainingWorld
) -> None:
    _data, model = fitted
    history = load_inbound_history(training_world.url)
    lines = history.po_lines
    moment = as_moment(int(lines["placed_at"].quantile(0.6)))
    later = lines["closed_at"].to_numpy() > int(moment.timestamp() * 1_000_000)
    closed = lines["closed_at"].to_numpy()
    moved = history.with_lines(
        lines.assign(closed_at=np.where(later, closed + 86_400_000_000 * 11, closed))
    )
    before = model.predict_quantiles(open_line_rows(history, moment))
    after = model.predict_quantiles(open_line_rows(moved, moment))
    assert len(before) > 5 and np.array_equal(before, after)


def test_too_short_a_history_is_refused_saying_what_the_split_needs(
    training_world: TrainingWorld,
) -> None:
    with pytest.raises(InvalidValue) as refused:
        delay_frame(load_inbound_history(training_world.url), DelaySplit(test_days=80))
    assert refused.value.field == "window"
    assert "needs at least 115" in refused.value.message


def _copy(url: str, target: Path) -> str:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return f"sqlite:///{target}"


def test_the_run_scores_both_candidates_registers_and_gates(
    training_world: TrainingWorld, tmp_path: Path
) -> None:
    settings = training_world.settings(tmp_path)
    result = train_receipt_delay(settings, promote=True)
    model, empirical = result.scores[MODEL], result.scores[EMPIRICAL]
    assert model.rows == empirical.rows == result.rows["test"] > 100
    assert result.chosen == choose({MODEL: model, EMPIRICAL: empirical})[0]
    assert result.version == "1"
    assert result.gate is not None and result.gate.promote == (result.chosen == MODEL)
    tracking.configure(settings)
    champion = tracking.version_by_alias(REGISTERED_NAME, tracking.CHAMPION)
    assert (champion is not None) == result.gate.promote
    metrics = tracking.run_metrics(result.run_id)
    assert metrics["empirical_pinball_mean"] == pytest.approx(empirical.pinball_mean)
    assert metrics["lightgbm_coverage_p80"] == pytest.approx(model.coverage_p80)

    # The forecasts for the ERP: the supplier history's without a champion, the model's with one.
    url = _copy(training_world.url, tmp_path / "erp.db")
    now = as_moment(load_inbound_history(url).last_moment) + timedelta(hours=1)
    open_now = len(open_line_rows(load_inbound_history(url), now))
    tracking.set_alias(REGISTERED_NAME, tracking.CHAMPION, result.version)
    written, method = write_receipt_forecasts(settings, now=now, database_url=url)
    assert (written, method) == (open_now, "receipt_delay v1")
    uow = UnitOfWork.from_url(url)
    with uow:
        rows = list(uow.session.execute(select(PoLineReceiptForecast)).scalars())
    uow.engine.dispose()
    assert len(rows) == open_now > 0
    assert all(r.p50_date <= r.p80_date <= r.p90_date and r.method == method for r in rows)


def test_the_command_prints_both_candidates_and_refuses_a_short_window(
    training_world: TrainingWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from erp_core.settings import get_settings
    from serving.cli import app

    monkeypatch.setenv("ERPX_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("ERPX_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ERPX_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        arguments = ["train", "receipt-delay", "--database-url", training_world.url]
        done = runner.invoke(app, arguments, env={"COLUMNS": "250"})
        assert done.exit_code == 0, done.output
        for text in ("lightgbm", "empirical", "coverage P80", "receipt_delay v1 as challenger"):
            assert text in done.output
        refused = runner.invoke(app, [*arguments, "--test-days", "80"], env={"COLUMNS": "250"})
        assert refused.exit_code == 2
        assert "needs at least 115" in refused.output
    finally:
        get_settings.cache_clear()
