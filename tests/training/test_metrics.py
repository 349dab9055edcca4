import numpy as np
import pytest

from training.metrics import (
    auc_standard_error,
    calibration_table,
    expected_calibration_error,
    oracle_auc_ratio,
    recall_at_budget,
    score_classifier,
)


def test_perfectly_calibrated_probabilities_have_near_zero_ece():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.6, 200_000)
    y = rng.uniform(size=p.size) < p
    assert expected_calibration_error(y, p) < 0.005


def test_probabilities_twice_the_truth_show_their_error_in_ece():
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 0.4, 200_000)
    y = rng.uniform(size=p.size) < p
    assert expected_calibration_error(y, 2 * p) == pytest.approx(p.mean(), abs=0.01)


def test_calibration_table_has_equal_mass_bins_lowest_risk_first():
    p = np.linspace(0, 1, 1000)
    table = calibration_table(np.zeros(1000), p, bins=10)
    assert list(table[:, 0]) == [100] * 10
    assert np.all(np.diff(table[:, 1]) > 0)


def test_recall_at_budget_counts_positives_among_the_riskiest_share():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    p = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1, 0.7])
    assert recall_at_budget(y, p, 0.2) == pytest.approx(1 / 3)
    assert recall_at_budget(y, p, 0.3) == pytest.approx(2 / 3)


def test_a_constant_score_catches_positives_only_by_chance():
    rng = np.random.default_rng(3)
    y = rng.uniform(size=100_000) < 0.2
    assert recall_at_budget(y, np.full(y.size, 0.2), 0.1) == pytest.approx(0.1, abs=0.01)


def test_scores_refuse_outcomes_of_one_class():
    with pytest.raises(ValueError, match="one class"):
        score_classifier(np.zeros(10), np.linspace(0, 1, 10))


def test_scores_of_a_perfect_ranking():
    y = np.array([0, 0, 0, 1, 1])
    scores = score_classifier(y, np.array([0.1, 0.2, 0.3, 0.8, 0.9]))
    assert scores.roc_auc == 1.0
    assert scores.pr_auc == 1.0
    assert scores.positives == 2


def test_oracle_ratio_is_the_share_of_learnable_signal_found():
    assert oracle_auc_ratio(0.7, 0.8) == pytest.approx(2 / 3)
    assert oracle_auc_ratio(0.8, 0.8) == 1.0
    assert np.isnan(oracle_auc_ratio(0.7, 0.5))


def test_the_auc_standard_error_shrinks_with_more_lines():
    small = auc_standard_error(0.7, 70, 450)
    assert 0.02 < small < 0.05
    assert auc_standard_error(0.7, 7000, 45000) < small / 5
