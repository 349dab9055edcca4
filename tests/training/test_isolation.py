"""The stacked IsolationForest scores rows exactly as scikit-learn's own ``score_samples``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from training.isolation import StackedForest


@pytest.mark.parametrize(
    ("max_samples", "max_features", "n_estimators"), [(256, 1.0, 100), (64, 0.6, 37), (5, 1.0, 3)]
)
def test_the_stacked_forest_gives_scikit_learns_scores(
    max_samples: int, max_features: float, n_estimators: int
) -> None:
    rng = np.random.default_rng(3)
    train = np.vstack([rng.normal(0, 1, (500, 5)), rng.normal(6, 0.5, (10, 5))])
    forest = IsolationForest(
        n_estimators=n_estimators,
        max_samples=max_samples,
        max_features=max_features,
        random_state=7,
    ).fit(train)
    rows = np.vstack([rng.normal(0, 2, (300, 5)), train[:50], np.zeros((1, 5))])
    expected = forest.score_samples(rows)
    assert np.array_equal(StackedForest.of(forest).score_samples(rows), expected)


def test_one_row_scores_as_in_a_batch() -> None:
    rng = np.random.default_rng(5)
    forest = IsolationForest(n_estimators=50, random_state=1).fit(rng.normal(0, 1, (200, 3)))
    rows = rng.normal(0, 3, (20, 3))
    stacked = StackedForest.of(forest)
    singles = np.concatenate([stacked.score_samples(rows[i : i + 1]) for i in range(20)])
    assert np.array_equal(singles, stacked.score_samples(rows))
