"""The late-shipment estimator on a simulated world: it learns something real, says why, keeps the
directions the business knows, and the same data and seed give the same model."""

import copy
import pickle
from dataclasses import replace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from erp_core.domain.errors import InvalidValue
from training import late_shipment as ls
from training.frames import choose_window, load_training_frame
from training.jobs import _fit_baselines, _fit_model
from training.metrics import score_classifier

from .conftest import PLAN


@pytest.fixture(scope="module")
def data(training_world, calendar, tmp_path_factory):
    window = choose_window(training_world.url, PLAN)
    folder = tmp_path_factory.mktemp("frame")
    return load_training_frame(
        ls.FEATURE_SET, ls.LABEL, training_world.url, window, PLAN, calendar, folder
    )


@pytest.fixture(scope="module")
def model(data):
    return _fit_model(data, seed=7, params={})


def test_the_model_ranks_late_lines_better_than_its_weakest_baseline(data, model):
    test = data.part("test")
    outcomes = test[ls.LABEL].to_numpy(dtype=bool)
    ours = score_classifier(outcomes, model.predict_proba(test)[:, 1])
    baselines = {
        name: score_classifier(outcomes, baseline.predict_proba(test)[:, 1])
        for name, baseline in _fit_baselines(data, seed=7).items()
    }
    weakest = min(baselines.values(), key=lambda s: s.roc_auc)
    assert ours.roc_auc > weakest.roc_auc
    assert ours.roc_auc > 0.55


def test_the_same_data_and_seed_give_the_same_model(data, model):
    again = _fit_model(data, seed=7, params={})
    test = data.part("test")
    assert again.trees_ == model.trees_
    np.testing.assert_array_equal(again.predict_proba(test), model.predict_proba(test))


def test_the_delivery_model_combines_a_ship_and_a_transit_hazard(data, model):
    assert model.hazards == ("label_late_ship", "label_late_transit")
    assert len(model.boosters_) == 2 and all(trees > 0 for trees in model.trees_)
    matrix = model.encoder_.transform(data.part("test"))
    hazards = model.hazard_probabilities(matrix)
    np.testing.assert_allclose(
        model.raw_probability(matrix), 1 - (1 - hazards[:, 0]) * (1 - hazards[:, 1])
    )


@pytest.mark.parametrize("method", ["path", "treeshap"])
def test_contributions_add_up_to_the_combined_log_odds(data, model, method):
    matrix = model.encoder_.transform(data.part("test"))
    raw = np.clip(model.raw_probability(matrix), 1e-6, 1 - 1e-6)
    contributions = model.contributions(matrix, method=method)
    assert contributions.shape == (len(matrix), len(model.encoder_.names) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), np.log(raw / (1 - raw)), atol=1e-6)


def test_path_contributions_mostly_name_the_same_top_reason_as_treeshap(data, model):
    matrix = model.encoder_.transform(data.part("test"))
    path = model.contributions(matrix)[:, :-1]
    exact = model.contributions(matrix, method="treeshap")[:, :-1]
    agree = np.mean(path.argmax(axis=1) == exact.argmax(axis=1))
    print(f"top reason agreement {agree:.3f} over {len(matrix)} rows")
    assert agree >= 0.7


def test_an_unknown_contribution_method_is_refused_by_name(data, model):
    matrix = model.encoder_.transform(data.part("test").head(3))
    with pytest.raises(InvalidValue, match="method"):
        model.contributions(matrix, method="saabas")


def test_a_hazard_label_missing_from_the_frame_is_refused_by_name(data):
    train = data.part("train").drop(columns="label_late_transit")
    with pytest.raises(InvalidValue, match="label_late_transit"):
        ls.LateShipmentModel(hazards=ls.DELIVERY.hazards).fit(
            train,
            train[ls.LABEL],
            eval_set=(train, train[ls.LABEL]),
            calibration_set=(train, train[ls.LABEL]),
        )


def test_a_model_pickled_with_one_booster_before_hazards_still_scores(data, model):
    test = data.part("test")
    old = copy.deepcopy(model)
    old.booster_, old.best_iteration_ = old.boosters_[0], old.best_iterations_[0]
    del old.boosters_, old.best_iterations_, old.margins_
    matrix = old.encoder_.transform(test)
    expected = model.boosters_[0].predict(matrix, num_iteration=model.best_iterations_[0])
    np.testing.assert_allclose(old.raw_probability(matrix), expected)
    assert old.trees_ == model.trees_[:1]
    assert old.contributions(matrix).shape == (len(matrix), len(old.encoder_.names) + 1)


def test_probabilities_are_probabilities(data, model):
    p = model.predict_proba(data.part("test"))
    assert p.shape[1] == 2
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("feature", "change"),
    [
        ("pick_backlog_ratio", lambda v: v + 3.0),
        ("lane_ontime_delivery_rate_28d", lambda v: v * 0.5),
        ("needs_backorder", lambda v: np.ones_like(v, dtype=bool)),
        ("region_alert_severity", lambda v: np.minimum(v + 1, 3)),
    ],
)
def test_worse_conditions_never_lower_the_risk(data, model, feature, change):
    test = data.part("test").copy()
    before = model.predict_proba(test)[:, 1]
    test[feature] = change(test[feature].to_numpy())
    after = model.predict_proba(test)[:, 1]
    assert np.all(after >= before - 1e-12)


def test_reasons_name_features_that_raised_the_risk_in_words(data, model):
    test = data.part("test")
    risky = test.iloc[np.argsort(-model.predict_proba(test)[:, 1])[:20]]
    reasons = model.reasons(risky)
    assert len(reasons) == 20
    assert all(row for row in reasons)
    for row in reasons:
        assert all(reason.contribution > 0 for reason in row)
        assert all(reason.text and reason.feature in model.encoder_.names for reason in row)
        assert [r.contribution for r in row] == sorted((r.contribution for r in row), reverse=True)


def test_a_frame_missing_a_feature_is_refused_by_name(data, model):
    with pytest.raises(InvalidValue, match="stock_cover"):
        model.predict_proba(data.part("test").drop(columns="stock_cover"))


def test_an_unknown_calibration_method_is_refused(data):
    train = data.part("train")
    with pytest.raises(InvalidValue, match="calibration"):
        ls.LateShipmentModel(calibration="magic").fit(
            train,
            train[ls.LABEL],
            eval_set=(train, train[ls.LABEL]),
            calibration_set=(train, train[ls.LABEL]),
        )


UNAVAILABLE = {
    "stock_cover": "no inventory snapshots were imported",
    "region_alert_severity": "service alerts are not carried",
    ls.DELIVERY.history_feature: "no lane on any line",
}
"""As the build hands them over for an imported history (their columns null in the frame)."""


@pytest.fixture(scope="module")
def without_some(data):
    nulled = data.frame.assign(**{name: np.nan for name in UNAVAILABLE})
    return replace(data, frame=nulled, unavailable=dict(UNAVAILABLE))


def test_unavailable_features_are_left_out_of_the_model_and_the_logistic_baseline(without_some):
    model = _fit_model(without_some, seed=7, params={})
    read = [spec.name for spec in ls.features() if spec.name not in UNAVAILABLE]
    assert model.left_out == tuple(UNAVAILABLE)
    assert model.encoder_.names == read
    assert all(booster.feature_name() == read for booster in model.boosters_)
    # The model never reads them: a frame without those columns at all scores the same.
    test = without_some.part("test")
    np.testing.assert_array_equal(
        model.predict_proba(test.drop(columns=list(UNAVAILABLE))), model.predict_proba(test)
    )
    baselines = _fit_baselines(without_some, seed=7)
    assert set(baselines) == {"logistic"}  # the lane-rate baseline's rate is unavailable
    used = {
        name
        for part, _, columns in baselines["logistic"].named_steps["columns"].transformers_
        if part != "remainder"
        for name in columns
    }
    assert used == set(read)


def test_only_declared_features_can_be_left_out():
    with pytest.raises(InvalidValue, match="left_out='promotion_depth'"):
        ls.features(left_out=("stock_cover", "promotion_depth"))


def test_a_pickled_model_explains_as_the_original_without_carrying_its_tables(data, model):
    matrix = model.encoder_.transform(data.part("test").head(50))
    expected = model.contributions(matrix)
    payload = pickle.dumps(model)
    assert b"_path_attributions" not in payload
    np.testing.assert_allclose(pickle.loads(payload).contributions(matrix), expected)


def test_score_rows_gives_probabilitys_numbers_and_the_contributions_of_the_risky_rows(data, model):
    matrix = model.encoder_.transform(data.part("test").head(40))
    expected = model.probability(matrix)
    threshold = float(np.median(expected))
    scored = model.score_rows(matrix, explain_from=threshold)
    np.testing.assert_array_equal(scored.probability, expected)
    np.testing.assert_array_equal(scored.explained, np.flatnonzero(expected >= threshold))
    np.testing.assert_allclose(
        scored.contributions, model.contributions(matrix[scored.explained]), atol=1e-12
    )
    assert len(model.score_rows(matrix, explain_from=1.1).contributions) == 0


def test_the_platt_calibration_is_the_logistic_regressions_own_probability(data, model):
    assert isinstance(model.calibrator_, LogisticRegression)
    matrix = model.encoder_.transform(data.part("test"))
    raw = model.raw_probability(matrix)
    logit = np.log(np.clip(raw, 1e-6, 1 - 1e-6) / (1 - np.clip(raw, 1e-6, 1 - 1e-6)))
    np.testing.assert_array_equal(
        model.probability(matrix), model.calibrator_.predict_proba(logit.reshape(-1, 1))[:, 1]
    )
