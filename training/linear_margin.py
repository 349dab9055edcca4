"""A logistic regression the boosted trees start from: the part of the risk that keeps rising
past the largest value training saw.

Trees are flat beyond the last split, so a regime the training weeks never reached (the pick
backlog at twice its busiest training day in the first peak season, say) scores as the busiest
day seen. A linear margin keeps rising with it; the trees then learn what the line misses
(``init_score``), and the two add up in log-odds, so the reason codes stay exact: the margin's
share of a feature is its coefficient times the standardised value, the trees' is their path
attribution (:mod:`training.path_attribution`).

Directions the business knows (``signs``) hold here too: a coefficient that comes out the wrong
way round is dropped (set to zero) and the rest refitted, so margin plus monotone trees never
lower the risk when conditions worsen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression


class LinearMargin:
    """Log-odds ``intercept_ + sum_j coef_j * z_j`` over the numeric ``columns`` of an encoded
    matrix, ``z`` standardised on the training rows and 0 (the training mean) where missing.

    ``columns``: indices into the matrix; ``signs``: per column +1 (may only raise the risk),
    -1 (may only lower it) or 0 (either); ``C``: inverse L2 strength, as in scikit-learn.
    """

    def __init__(self, columns: Sequence[int], signs: Sequence[int], C: float = 0.1) -> None:
        self.columns = columns
        self.signs = signs
        self.C = C

    def fit(self, matrix: np.ndarray, y: np.ndarray) -> LinearMargin:
        values = matrix[:, list(self.columns)]
        known = ~np.isnan(values)
        counts = known.sum(axis=0)
        self.mean_ = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), 0.0)
        spread = np.sqrt(np.nansum((values - self.mean_) ** 2, axis=0) / np.maximum(counts, 1)) * (
            counts > 0
        )
        self.scale_ = np.where(spread > 0, spread, 1.0)
        z = self._standardised(matrix)
        signs = np.asarray(self.signs, dtype=np.float64)
        # A constant column (spread 0) carries nothing; leave it out from the start.
        kept = spread > 0
        base_rate = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6))
        base_log_odds = float(np.log(base_rate / (1 - base_rate)))
        # What is left when every coefficient gets dropped: the base rate alone.
        coef, intercept = np.zeros(len(self.columns)), base_log_odds
        while kept.any():
            fitted = LogisticRegression(C=self.C, max_iter=1000).fit(z[:, kept], y)
            candidate = np.zeros(len(self.columns))
            candidate[kept] = fitted.coef_[0]
            wrong = candidate * signs < 0
            if not wrong.any():
                coef, intercept = candidate, float(fitted.intercept_[0])
                break
            kept &= ~wrong
        self.coef_ = coef
        self.intercept_ = intercept
        return self

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """Log-odds per row. The scoring path: the matrix centred whole (the coefficient of a
        column outside the margin is 0) and zero-filled where missing (or not finite) in one
        copy, which costs half of gathering the margin's columns first."""
        width = matrix.shape[1]
        mean, weights = np.zeros(width), np.zeros(width)
        mean[list(self.columns)] = self.mean_
        weights[list(self.columns)] = self.coef_ / self.scale_
        centred = matrix - mean
        np.copyto(centred, 0.0, where=~np.isfinite(centred))
        return centred @ weights + self.intercept_

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Per-feature log-odds, one column per matrix column plus the intercept last (the
        shape of LightGBM's ``pred_contrib``); rows sum to ``margin``."""
        out = np.zeros((len(matrix), matrix.shape[1] + 1))
        out[:, list(self.columns)] = self._standardised(matrix) * self.coef_
        out[:, -1] = self.intercept_
        return out

    def _standardised(self, matrix: np.ndarray) -> np.ndarray:
        z = (matrix[:, list(self.columns)] - self.mean_) / self.scale_
        return np.where(np.isnan(z), 0.0, z)
