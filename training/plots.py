"""The charts a training run logs beside its numbers: calibration, precision-recall and lift, each
with the model, its baselines and (when known) the oracle on one set of axes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from training.metrics import calibration_table


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.5), dpi=100)


def close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


def calibration_figure(outcomes: np.ndarray, scores: Mapping[str, np.ndarray]) -> Any:
    figure, axes = _figure()
    top = 0.0
    for name, p in scores.items():
        table = calibration_table(outcomes, p)
        axes.plot(table[:, 1], table[:, 2], marker="o", label=name)
        top = max(top, float(table[:, 1].max()), float(table[:, 2].max()))
    axes.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    axes.set_xlabel("mean predicted P(late), by decile")
    axes.set_ylabel("realised late rate")
    axes.set_title("Calibration on the test window")
    axes.legend()
    figure.tight_layout()
    return figure


def precision_recall_figure(outcomes: np.ndarray, scores: Mapping[str, np.ndarray]) -> Any:
    figure, axes = _figure()
    for name, p in scores.items():
        precision, recall, _ = precision_recall_curve(outcomes, p)
        axes.plot(recall, precision, label=name)
    axes.axhline(float(np.mean(outcomes)), color="grey", linestyle="--", linewidth=1, label="base")
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title("Precision-recall on the test window")
    axes.legend()
    figure.tight_layout()
    return figure


def lift_figure(outcomes: np.ndarray, scores: Mapping[str, np.ndarray]) -> Any:
    """Cumulative gains: the share of late lines caught when flagging the riskiest x% of lines."""
    figure, axes = _figure()
    y = np.asarray(outcomes, dtype=np.float64)
    share = np.arange(1, len(y) + 1) / len(y)
    for name, p in scores.items():
        order = np.argsort(-np.asarray(p), kind="mergesort")
        axes.plot(share, np.cumsum(y[order]) / y.sum(), label=name)
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="random")
    axes.axvline(0.10, color="black", linestyle=":", linewidth=1)
    axes.set_xlabel("share of lines flagged (riskiest first)")
    axes.set_ylabel("share of late lines caught")
    axes.set_title("Lift (cumulative gains) on the test window")
    axes.legend()
    figure.tight_layout()
    return figure
