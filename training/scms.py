"""Issue 7's late-delivery protocol on the SCMS history, so figures are comparable.

Late = delivered to the client after the scheduled delivery date. Train on lines scheduled before
``TEST_FROM``, test on the rest; features come from ``features.scms`` (the moment of prediction is
30 days before the scheduled date). Early stopping uses the last training year (``VALIDATION_FROM``
onwards), never the test years; the model is then refitted on all training years with the number
of trees that validation chose. Two baselines on the same test lines: the vendor x shipment-mode
late rate of the whole training period shrunk toward its global rate (a static encoding, what
the point-in-time rates exist to beat), and logistic regression on the same columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.scms import CATEGORICAL, RATE_KEYS, build_scms_features
from training.metrics import ClassifierScores, score_classifier

TEST_FROM = pd.Timestamp("2013-01-01")
VALIDATION_FROM = pd.Timestamp("2012-01-01")
BASELINE_PRIOR_WEIGHT = 20.0
NUMERIC = (
    "global_late_rate",
    "recent_late_rate",
    *(f"{name}_late_rate" for name in RATE_KEYS),
    "log_quantity",
    "log_line_value",
    "log_pack_price",
    "po_to_schedule_days",
)
FEATURES = (*NUMERIC, *CATEGORICAL)
LGBM_PARAMS = {
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 80,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 5.0,
    "verbose": -1,
    "random_state": 7,
}


@dataclass(frozen=True)
class ScmsEvaluation:
    """Test-year scores of the model and both baselines, with the split's sizes."""

    train_lines: int
    test_lines: int
    trees: int
    model: ClassifierScores
    vendor_mode_rate: ClassifierScores
    logistic: ClassifierScores
    test_probabilities: np.ndarray


def evaluate_scms(lines: pd.DataFrame) -> ScmsEvaluation:
    frame = build_scms_features(lines)[list(FEATURES)]
    late = lines["late"].to_numpy(bool)
    scheduled = lines["scheduled_delivery_date"]
    train = (scheduled < TEST_FROM).to_numpy()
    validation = train & (scheduled >= VALIDATION_FROM).to_numpy()
    trees = _trees_by_validation(frame, late, train & ~validation, validation)
    model = lgb.LGBMClassifier(n_estimators=trees, **LGBM_PARAMS)
    model.fit(frame[train], late[train])
    test = ~train
    p_model = model.predict_proba(frame[test])[:, 1]
    return ScmsEvaluation(
        train_lines=int(train.sum()),
        test_lines=int(test.sum()),
        trees=trees,
        model=score_classifier(late[test], p_model),
        vendor_mode_rate=score_classifier(late[test], vendor_mode_rate(lines, train, test)),
        logistic=score_classifier(late[test], _logistic(frame, late, train, test)),
        test_probabilities=p_model,
    )


def _trees_by_validation(
    frame: pd.DataFrame, late: np.ndarray, fit: np.ndarray, validation: np.ndarray
) -> int:
    probe = lgb.LGBMClassifier(n_estimators=2000, **LGBM_PARAMS)
    probe.fit(
        frame[fit],
        late[fit],
        eval_X=(frame[validation],),
        eval_y=(late[validation],),
        eval_metric="auc",
        callbacks=[lgb.early_stopping(100, verbose=False)],
    )
    return max(int(probe.best_iteration_ or 0), 20)


def vendor_mode_rate(lines: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Each test line's vendor x mode late rate over the whole training period, shrunk toward
    the training period's global rate (an unseen pair gets the global rate)."""
    seen = lines.loc[train, ["vendor", "shipment_mode", "late"]]
    global_rate = float(seen["late"].mean())
    counts = seen.groupby(["vendor", "shipment_mode"], observed=True)["late"].agg(["sum", "count"])
    rate = (counts["sum"] + BASELINE_PRIOR_WEIGHT * global_rate) / (
        counts["count"] + BASELINE_PRIOR_WEIGHT
    )
    keys = pd.MultiIndex.from_frame(lines.loc[test, ["vendor", "shipment_mode"]])
    return rate.reindex(keys).fillna(global_rate).to_numpy(float)


def _logistic(
    frame: pd.DataFrame, late: np.ndarray, train: np.ndarray, test: np.ndarray
) -> np.ndarray:
    columns = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                list(NUMERIC),
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
        ]
    )
    model = make_pipeline(columns, LogisticRegression(max_iter=2000, C=1.0))
    as_text = frame.astype({column: str for column in CATEGORICAL})
    model.fit(as_text[train], late[train])
    return model.predict_proba(as_text[test])[:, 1]
