"""The linear margin the late-shipment trees grow from: it keeps the business's directions,
keeps rising past the training range, and splits its log-odds exactly by feature."""

import numpy as np

from training.linear_margin import LinearMargin


def _world(rows: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, 3))
    log_odds = -1.0 + 1.5 * matrix[:, 0] - 1.0 * matrix[:, 1]
    late = (rng.random(rows) < 1 / (1 + np.exp(-log_odds))).astype(float)
    return matrix, late


def test_the_margin_keeps_rising_past_the_largest_value_training_saw():
    matrix, late = _world()
    margin = LinearMargin([0, 1, 2], [1, -1, 0]).fit(matrix, late)
    beyond = np.array([[matrix[:, 0].max() + k, 0.0, 0.0] for k in (0.0, 1.0, 2.0)])
    assert np.all(np.diff(margin.margin(beyond)) > 0)


def test_a_coefficient_against_the_business_direction_is_dropped_and_the_rest_refitted():
    matrix, late = _world()
    # Column 1 lowers the risk in this world; declared as one that may only raise it.
    margin = LinearMargin([0, 1, 2], [1, 1, 0]).fit(matrix, late)
    assert margin.coef_[1] == 0.0
    assert margin.coef_[0] > 0


def test_contributions_sum_to_the_margin_with_the_intercept_last():
    matrix, late = _world()
    margin = LinearMargin([0, 2], [1, 0]).fit(matrix, late)
    contributions = margin.contributions(matrix[:50])
    assert contributions.shape == (50, 4)
    assert np.all(contributions[:, 1] == 0.0)  # not a margin column
    np.testing.assert_allclose(contributions.sum(axis=1), margin.margin(matrix[:50]))
    assert np.all(contributions[:, -1] == margin.intercept_)


def test_a_missing_value_scores_as_the_training_mean():
    matrix, late = _world()
    with_gaps = matrix.copy()
    with_gaps[::7, 0] = np.nan
    margin = LinearMargin([0, 1], [1, -1]).fit(with_gaps, late)
    row = np.array([[np.nan, 0.5, 0.0]])
    assert margin.contributions(row)[0, 0] == 0.0
    assert np.isfinite(margin.margin(row)).all()


def test_a_constant_column_carries_nothing():
    matrix, late = _world()
    matrix[:, 2] = 4.0
    margin = LinearMargin([0, 1, 2], [0, 0, 0]).fit(matrix, late)
    assert margin.coef_[2] == 0.0
