"""Scores of a probabilistic classifier, each defined once so the model, its baselines, the oracle
and the champion are compared on the same terms.

Expected calibration error uses ten equal-mass bins of the predicted probability (deciles of the
scored lines): with a rare outcome, equal-width bins leave the upper bins nearly empty and the
error would be judged on a handful of lines. It is the line-weighted mean of |mean predicted -
realised rate| over the bins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

ALERT_BUDGET = 0.10
"""The share of lines an alert queue can take: recall is measured at the riskiest 10%."""
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class ClassifierScores:
    """How well scores rank and how honest they are as probabilities, on one set of lines."""

    lines: int
    positives: int
    roc_auc: float
    pr_auc: float
    brier: float
    ece: float
    recall_at_budget: float

    def as_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


def score_classifier(outcomes: np.ndarray, probabilities: np.ndarray) -> ClassifierScores:
    """All the scores at once; refuses a set that holds only one class (AUC is undefined)."""
    y = np.asarray(outcomes, dtype=bool)
    p = np.asarray(probabilities, dtype=np.float64)
    if len(y) != len(p):
        raise ValueError(f"{len(y)} outcomes but {len(p)} probabilities")
    if y.all() or not y.any():
        raise ValueError(f"outcomes hold one class only ({int(y.sum())} of {len(y)} positive)")
    return ClassifierScores(
        lines=len(y),
        positives=int(y.sum()),
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        brier=float(brier_score_loss(y, p)),
        ece=expected_calibration_error(y, p),
        recall_at_budget=recall_at_budget(y, p, ALERT_BUDGET),
    )


def expected_calibration_error(
    outcomes: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    table = calibration_table(outcomes, probabilities, bins)
    weights = table[:, 0] / table[:, 0].sum()
    return float(np.sum(weights * np.abs(table[:, 1] - table[:, 2])))


def calibration_table(
    outcomes: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS
) -> np.ndarray:
    """Rows of (lines, mean predicted, realised rate) per equal-mass bin, lowest risk first.

    Lines are ordered by probability (a stable sort) and cut into ``bins`` nearly equal groups;
    tied probabilities may land in adjacent groups, which moves group means very little."""
    y = np.asarray(outcomes, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(p, kind="mergesort")
    groups = [g for g in np.array_split(order, bins) if len(g)]
    return np.array([(len(g), p[g].mean(), y[g].mean()) for g in groups])


def recall_at_budget(outcomes: np.ndarray, probabilities: np.ndarray, budget: float) -> float:
    """Share of the positives among the ``budget`` share of lines with the highest scores.

    Ties at the threshold are broken by position (a stable sort of the negated score), so a
    constant score catches positives only in proportion to the budget, as chance would."""
    y = np.asarray(outcomes, dtype=bool)
    flagged = max(1, round(budget * len(y)))
    order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="mergesort")
    return float(y[order[:flagged]].sum() / max(y.sum(), 1))


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) standard error of a ROC AUC measured on this many lines: how far
    two AUCs on one test window may differ by the draw of its lines alone."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def oracle_auc_ratio(model_auc: float, oracle_auc: float) -> float:
    """(AUC_model - 0.5) / (AUC_oracle - 0.5): the share of the learnable signal the model found."""
    if oracle_auc <= 0.5:
        return float("nan")
    return (model_auc - 0.5) / (oracle_auc - 0.5)
