"""The SCMS protocol: the split is by scheduled date, every choice and the calibration rest on
the training years (rolling folds that never reach 2013; the test lines' outcomes do not move the
test probabilities), the static baseline learns from the training years only, the late-rate
columns may only raise the risk (with or without a linear margin under the trees), a margin
model's probabilities are the sigmoid of its trees' raw score plus the margin, and on the real
file the scorers rank far better than chance."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from erp_core.importers.scms import read_scms
from features.scms import build_scms_features
from tests.features.test_scms import _lines
from training.linear_margin import LinearMargin
from training.scms import (
    FEATURES,
    LGBM_PARAMS,
    MODEL_CATEGORICAL,
    TEST_FROM,
    TREES,
    VALIDATION_YEARS,
    LateModel,
    PlattCalibration,
    evaluate_scms,
    holdout_probabilities,
    rolling_folds,
    validate,
    vendor_mode_rate,
)


def _years(count: int = 2_400) -> pd.DataFrame:
    """Lines scheduled from 2009 to 2014, late more often from the RDC, so every rolling fold
    and the test years hold both outcomes."""
    lines = _lines(count, seed=11, days=6 * 365, start="2009-01-01")
    rng = np.random.default_rng(5)
    risk = np.where(lines["fulfill_via"] == "From RDC", 0.35, 0.08)
    late = rng.random(len(lines)) < risk
    delay = np.where(late, rng.integers(1, 40, len(lines)), -rng.integers(0, 30, len(lines)))
    lines["delivered_date"] = lines["scheduled_delivery_date"] + pd.to_timedelta(delay, "D")
    lines["late"] = late
    return lines


def test_the_vendor_mode_baseline_never_reads_a_test_line_s_outcome() -> None:
    lines = _lines(600)
    train = (lines["scheduled_delivery_date"] < pd.Timestamp("2011-06-01")).to_numpy()
    before = vendor_mode_rate(lines, train, ~train)
    flipped = lines.copy()
    flipped.loc[~train, "late"] = ~flipped.loc[~train, "late"]
    np.testing.assert_array_equal(before, vendor_mode_rate(flipped, train, ~train))
    flipped.loc[train, "late"] = ~flipped.loc[train, "late"]
    assert not np.array_equal(before, vendor_mode_rate(flipped, train, ~train))


def test_each_rolling_fold_fits_on_the_years_before_it_and_none_reaches_the_test_years() -> None:
    scheduled = _years()["scheduled_delivery_date"]
    folds = rolling_folds(scheduled)
    assert [fold.year for fold in folds] == list(VALIDATION_YEARS)
    for fold in folds:
        start = pd.Timestamp(fold.year, 1, 1)
        assert (scheduled[fold.fit] < start).all()
        assert fold.fit.sum() == (scheduled < start).sum()
        assert (scheduled[fold.validation].dt.year == fold.year).all()
        assert fold.validation.sum() == (scheduled.dt.year == fold.year).sum()
        assert (scheduled[fold.fit | fold.validation] < TEST_FROM).all()
    with pytest.raises(ValueError, match="2013"):
        rolling_folds(scheduled, (2011, 2013))


def test_the_test_probabilities_never_read_a_test_line_s_outcome() -> None:
    lines = _years()
    frame = build_scms_features(lines)
    test = (lines["scheduled_delivery_date"] >= TEST_FROM).to_numpy()
    before, _, _ = holdout_probabilities(lines, frame)
    flipped = lines.copy()
    flipped.loc[test, "late"] = ~flipped.loc[test, "late"]
    after, _, _ = holdout_probabilities(flipped, frame)
    np.testing.assert_array_equal(before, after)
    # the outcomes of a validation year move both the calibration and the final fit
    year_2012 = (lines["scheduled_delivery_date"].dt.year == 2012).to_numpy()
    flipped.loc[year_2012, "late"] = ~flipped.loc[year_2012, "late"]
    moved, _, _ = holdout_probabilities(flipped, frame)
    assert not np.allclose(before, moved)


def test_the_calibration_recovers_a_known_distortion_and_keeps_the_ranking() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.02, 0.9, 40_000)
    truth = 1 / (1 + np.exp(-(0.5 * np.log(p / (1 - p)) - 1.0)))
    calibration = PlattCalibration.fit(p, rng.random(len(p)) < truth)
    assert calibration.slope == pytest.approx(0.5, abs=0.05)
    assert calibration.intercept == pytest.approx(-1.0, abs=0.05)
    order = np.argsort(p)
    assert np.all(np.diff(calibration.apply(p)[order]) >= 0)


@pytest.mark.parametrize("margin_C", [None, 1.0])
def test_a_higher_late_rate_never_lowers_the_model_s_risk(margin_C: float | None) -> None:
    lines = _years()
    frame = build_scms_features(lines)
    late = lines["late"].to_numpy(bool)
    fitted = LateModel(margin_C=margin_C).fit(frame, late, np.ones(len(lines), dtype=bool))
    rows = frame.loc[frame.index[:200], list(FEATURES)]
    for column in ("route_late_rate_90d", "vendor_late_rate", "country_mode_late_rate"):
        grid = np.linspace(0.0, 0.8, 9)
        risks = np.array(
            [fitted.predict_proba(rows.assign(**{column: value}))[:, 1] for value in grid]
        )
        assert np.all(np.diff(risks, axis=0) >= -1e-12), column
    if margin_C is not None:
        assert fitted.margin_ is not None
        assert np.all(fitted.margin_.coef_ >= 0)  # every margin column is a late rate
        return
    unconstrained = LateModel(monotone_rates=False).fit(frame, late, np.ones(len(lines), bool))
    assert unconstrained.get_params()["monotone_constraints"] == [0] * len(FEATURES)
    assert fitted.get_params()["monotone_constraints"] == [
        1 if "_late_rate" in column else 0 for column in FEATURES
    ]


def test_on_the_real_file_the_split_is_by_scheduled_date_and_every_scorer_ranks(
    scms_path: Path,
) -> None:
    lines = read_scms(scms_path).lines
    evaluation = evaluate_scms(lines)
    assert evaluation.train_lines == int((lines["scheduled_delivery_date"] < TEST_FROM).sum())
    assert evaluation.train_lines + evaluation.test_lines == len(lines) == 10_324
    assert evaluation.model.positives == int(
        lines.loc[lines["scheduled_delivery_date"] >= TEST_FROM, "late"].sum()
    )
    for scores in (evaluation.model, evaluation.vendor_mode_rate, evaluation.logistic):
        assert 0.70 < scores.roc_auc < 0.95
    assert len(evaluation.test_probabilities) == evaluation.test_lines
    folds = evaluation.validation.folds
    assert [fold.year for fold in folds] == list(VALIDATION_YEARS)
    for fold in folds:
        in_year = lines["scheduled_delivery_date"].dt.year == fold.year
        assert fold.model.lines == int(in_year.sum())
        assert fold.model.positives == int(lines.loc[in_year, "late"].sum())
        assert 0.60 < fold.model.roc_auc < 0.95
    # recalibrating on earlier years' out-of-fold predictions helps the later validation years
    for fold in folds[1:]:
        assert fold.calibrated_brier is not None
        assert fold.calibrated_brier < fold.model.brier
    assert evaluate_scms(lines).model.roc_auc == evaluation.model.roc_auc


def _margin_matrix(frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    numeric = [c for c in FEATURES if c not in MODEL_CATEGORICAL]
    return frame.loc[rows, numeric].to_numpy(np.float64)


def test_a_margin_model_s_probabilities_are_the_sigmoid_of_its_trees_plus_its_margin() -> None:
    lines = _years()
    frame = build_scms_features(lines)
    late = lines["late"].to_numpy(bool)
    fit = (lines["scheduled_delivery_date"] < TEST_FROM).to_numpy()
    fitted = LateModel(margin_C=0.3).fit(frame, late, fit)
    assert fitted.margin_ is not None
    assert fitted.margin_columns_ == tuple(c for c in FEATURES if c not in MODEL_CATEGORICAL)
    assert np.any(fitted.margin_.coef_ != 0)
    # the margin is the sign-constrained logistic regression of the fit lines' numeric columns
    signs = [1] * len(fitted.margin_columns_)
    alone = LinearMargin(range(len(signs)), signs, 0.3).fit(_margin_matrix(frame, fit), late[fit])
    np.testing.assert_allclose(fitted.margin_.coef_, alone.coef_)
    rows = frame.loc[~fit, list(FEATURES)]
    margin = alone.margin(_margin_matrix(frame, ~fit))
    np.testing.assert_allclose(fitted.margin(rows), margin)
    for trees in (None, 10):
        raw = fitted.booster_.predict(rows, raw_score=True, num_iteration=trees)
        p = fitted.predict_proba(rows, num_iteration=trees)
        np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-(raw + margin))))
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        log_odds = fitted.predict_proba(rows, raw_score=True, num_iteration=trees)
        np.testing.assert_allclose(log_odds, raw + margin)
    np.testing.assert_array_equal(fitted.predict(rows), fitted.predict_proba(rows)[:, 1] >= 0.5)
    with pytest.raises(ValueError, match="margin"):
        fitted.predict_proba(rows, pred_contrib=True)


def test_the_trees_grow_from_the_margin_and_no_margin_is_the_plain_classifier() -> None:
    lines = _years()
    frame = build_scms_features(lines)
    late = lines["late"].to_numpy(bool)
    fit = (lines["scheduled_delivery_date"] < TEST_FROM).to_numpy()
    rows = frame.loc[~fit, list(FEATURES)]
    # trees that barely move: the model's log-odds are the margin's (init_score), not the base rate
    still = LateModel(margin_C=0.3, trees=1, params={**LGBM_PARAMS, "learning_rate": 1e-9})
    fitted = still.fit(frame, late, fit)
    np.testing.assert_allclose(
        fitted.predict_proba(rows, raw_score=True), fitted.margin(rows), atol=1e-6
    )
    assert np.std(fitted.margin(rows)) > 0.05
    # off by default: the same classifier as LightGBM's own, with no margin
    assert LateModel().margin_C is None
    plain = LateModel().fit(frame, late, fit)
    assert plain.margin_ is None
    np.testing.assert_array_equal(plain.margin(rows), np.zeros(len(rows)))
    constraints = [1 if "_late_rate" in c else 0 for c in FEATURES]
    reference = lgb.LGBMClassifier(
        n_estimators=TREES, monotone_constraints=constraints, **LGBM_PARAMS
    )
    reference.fit(frame.loc[fit, list(FEATURES)], late[fit])
    np.testing.assert_array_equal(plain.predict_proba(rows), reference.predict_proba(rows))


def test_the_rolling_validation_fits_and_scores_a_margin_model() -> None:
    lines = _years()
    frame = build_scms_features(lines)
    validation = validate(lines, frame, LateModel(margin_C=0.1, trees=30))
    assert [fold.year for fold in validation.folds] == list(VALIDATION_YEARS)
    for fold, p in zip(validation.folds, validation.out_of_fold, strict=True):
        assert len(p) == fold.model.lines
        assert np.all((p > 0) & (p < 1))
        assert fold.model.roc_auc > 0.6  # the route drives the synthetic risk
