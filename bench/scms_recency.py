"""Experiment: does weighting recent training lines more help the SCMS late-delivery model?

    .venv/bin/python bench/scms_recency.py      # ~60 s; writes bench/results/scms_recency.json

The late rate drifts (4% in 2006-09, 23% in 2011, 8% in 2012), so a natural remedy is to weight
each training line by recency: ``0.5 ** (age / half_life)``, the age counted back from the newest
line of the fit. Scored like every other choice, by the rolling validation of ``training.scms``
(fitted on the lines scheduled before 2010, 2011 and 2012, scored on that year); the test years
are not read. The shipped model is the unweighted one (half-life: none).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402

from erp_core.importers.scms import read_scms  # noqa: E402
from features.scms import build_scms_features  # noqa: E402
from training import scms  # noqa: E402

DEFAULT_PATH = (
    _HERE.parent.parent / "shared" / "datasets" / "scms" / "SCMS_Delivery_History_Dataset.csv"
)
HALF_LIVES = (None, 1460, 730, 365, 180)
TREES = (100, 200)


@dataclass(frozen=True)
class RecencyWeighted(scms.LateModel):
    """The shipped model's columns and parameters, each fit line weighted by its recency."""

    scheduled: pd.Series | None = None
    half_life_days: float | None = None

    def fit(
        self,
        frame: pd.DataFrame,
        late: np.ndarray,
        rows: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> lgb.LGBMClassifier:
        if self.half_life_days is not None and self.scheduled is not None:
            dates = self.scheduled[rows]
            age = (dates.max() - dates).dt.days.to_numpy(float)
            sample_weight = np.power(0.5, age / self.half_life_days)
        return super().fit(frame, late, rows, sample_weight)


def main() -> None:
    started = time.perf_counter()
    lines = read_scms(DEFAULT_PATH).lines
    frame = build_scms_features(lines)
    scheduled = lines["scheduled_delivery_date"]
    rows = []
    for half_life in HALF_LIVES:
        for trees in TREES:
            model = RecencyWeighted(scheduled=scheduled, half_life_days=half_life, trees=trees)
            validation = scms.validate(lines, frame, model)
            rows.append(
                {
                    "half_life_days": half_life,
                    "trees": trees,
                    "fold_roc_auc": [round(f.model.roc_auc, 4) for f in validation.folds],
                    "mean_roc_auc": round(validation.mean("model", "roc_auc"), 4),
                }
            )
            Console().print(rows[-1])
    result = {
        "benchmark": "scms_recency",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "validation_years": list(scms.VALIDATION_YEARS),
        "candidates": rows,
        "best": max(rows, key=lambda r: r["mean_roc_auc"]),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = _HERE / "results" / "scms_recency.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    Console().print(f"wrote {out} in {result['wall_seconds']} s")


if __name__ == "__main__":
    main()
