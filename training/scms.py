"""Issue 7's late-delivery protocol on the SCMS history, so figures are comparable.

Late = delivered to the client after the scheduled delivery date. Train on lines scheduled before
``TEST_FROM``, test on the rest; features come from ``features.scms`` (the moment of prediction is
30 days before the scheduled date). Two baselines on the same test lines: the vendor x shipment-
mode late rate of the whole training period shrunk toward its global rate (a static encoding,
what the point-in-time rates exist to beat), and logistic regression on the model's columns.

Every choice is made on the training years alone, by rolling-origin (expanding-window)
validation: for each year of ``VALIDATION_YEARS`` the model is fitted on the lines scheduled
before that year and scored on the lines scheduled in it. A single validation year would not do:
the late rate is 15.9% in 2010, 23.5% in 2011 and 7.9% in 2012, and 2012 alone stopped an
early-stopped model at its 20-tree floor. ``bench/scms_selection.py`` compares the candidate
columns, constraints and hyperparameters this way; the winner is fixed here (``FEATURES``,
``LGBM_PARAMS``, ``TREES``), so the test years choose nothing.

The model's probabilities are recalibrated (Platt scaling of their log-odds) on the pooled
out-of-fold predictions of the validation years: the late rate moves from year to year, so a
model's in-sample probabilities say little about the next year, while its predictions on years
it had not seen say how far to trust them. The calibration is monotone, so it changes no ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.scms import RATE_KEYS, RECENT_DAYS, build_scms_features, rate_column
from training.linear_margin import LinearMargin
from training.metrics import ClassifierScores, score_classifier

TEST_FROM = pd.Timestamp("2013-01-01")
VALIDATION_YEARS = (2010, 2011, 2012)
BASELINE_PRIOR_WEIGHT = 20.0
RATES = tuple(
    rate_column(name, days) for name in ("global", *RATE_KEYS) for days in (None, RECENT_DAYS)
)
MODEL_CATEGORICAL = ("fulfill_via", "inco_term")
FEATURES = (*RATES, *MODEL_CATEGORICAL)
"""Late rates over the whole history and the last 90 days per key, the route and the incoterm.
Rolling validation preferred these to the wider set of the first version (which added the line's
quantity, value, pack price and PO lead time, and the raw mode and product categoricals), and to
adding days-late, delivery volumes or more keys (``bench/scms_selection.py``)."""
TREES = 100
LGBM_PARAMS: dict[str, Any] = {
    "learning_rate": 0.03,
    "num_leaves": 8,
    "min_child_samples": 50,
    "reg_lambda": 1.0,
    "verbose": -1,
    "random_state": 7,
    "deterministic": True,
    "force_col_wise": True,
}
"""No row or column subsampling: the fit is deterministic, and subsampling did not validate
better."""


@dataclass(frozen=True)
class LateModel:
    """A LightGBM late-delivery classifier: its columns, hyperparameters and tree count, whether
    late-rate columns may only raise the risk (monotone constraints), and whether the trees grow
    from a linear margin (``margin_C``, the margin's inverse L2 strength; None: no margin).

    With a margin, a ``LinearMargin`` over the numeric columns (standardised, the late-rate
    columns' coefficients kept >= 0 when ``monotone_rates``) is fitted on the fit lines first and
    its log-odds are the booster's ``init_score``: the trees learn what the line misses, and the
    risk keeps rising past the largest late rate the fit years saw instead of flattening at the
    last split. The margin ignores ``sample_weight`` (it is fitted unweighted). Off in the
    shipped model: rolling validation preferred the trees alone (mean ROC AUC 0.719; the best
    margin variant, C 1 with 4 leaves and 800 trees, 0.678; ``bench/scms_selection.py``)."""

    columns: tuple[str, ...] = FEATURES
    params: dict[str, Any] = field(default_factory=lambda: dict(LGBM_PARAMS))
    trees: int = TREES
    monotone_rates: bool = True
    margin_C: float | None = None

    def fit(
        self,
        frame: pd.DataFrame,
        late: np.ndarray,
        rows: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> MarginClassifier:
        constraints = [
            1 if self.monotone_rates and _is_rate(column) else 0 for column in self.columns
        ]
        model = MarginClassifier(
            n_estimators=self.trees, monotone_constraints=constraints, **self.params
        )
        margin: LinearMargin | None = None
        numeric: tuple[str, ...] = ()
        init_score: np.ndarray | None = None
        if self.margin_C is not None:
            numeric = tuple(
                c for c in self.columns if not isinstance(frame[c].dtype, pd.CategoricalDtype)
            )
            direction = dict(zip(self.columns, constraints, strict=True))
            signs = [direction[column] for column in numeric]
            matrix = frame.loc[rows, list(numeric)].to_numpy(np.float64)
            margin = LinearMargin(range(len(numeric)), signs, self.margin_C).fit(matrix, late[rows])
            init_score = margin.margin(matrix)
        model.fit(
            frame.loc[rows, list(self.columns)],
            late[rows],
            sample_weight=sample_weight,
            init_score=init_score,
        )
        model.margin_, model.margin_columns_ = margin, numeric
        return model

    def fit_predict(
        self, frame: pd.DataFrame, late: np.ndarray, fit: np.ndarray, predict: np.ndarray
    ) -> np.ndarray:
        model = self.fit(frame, late, fit)
        return np.asarray(model.predict_proba(frame.loc[predict, list(self.columns)]))[:, 1]


class MarginClassifier(lgb.LGBMClassifier):
    """An ``LGBMClassifier`` that may have been grown from a linear margin (``margin_``, over the
    frame's ``margin_columns_``): its log-odds are the trees' raw score plus the margin, its
    probabilities their sigmoid. Without a margin it is the plain classifier."""

    margin_: LinearMargin | None = None
    margin_columns_: tuple[str, ...] = ()

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """The linear margin's log-odds per row (zeros without a margin)."""
        if self.margin_ is None:
            return np.zeros(len(X))
        return np.asarray(self.margin_.margin(X[list(self.margin_columns_)].to_numpy(np.float64)))

    def predict_proba(
        self,
        X: pd.DataFrame,
        raw_score: bool = False,
        start_iteration: int = 0,
        num_iteration: int | None = None,
        pred_leaf: bool = False,
        pred_contrib: bool = False,
        validate_features: bool = False,
        **kwargs: Any,
    ) -> Any:
        if self.margin_ is None:
            return super().predict_proba(
                X,
                raw_score=raw_score,
                start_iteration=start_iteration,
                num_iteration=num_iteration,
                pred_leaf=pred_leaf,
                pred_contrib=pred_contrib,
                validate_features=validate_features,
                **kwargs,
            )
        if pred_leaf or pred_contrib:
            raise ValueError("leaves and contributions of a margin model are not supported")
        # LGBMModel.predict: the trees' raw score (LGBMClassifier.predict would come back here)
        trees = lgb.LGBMModel.predict(
            self,
            X,
            raw_score=True,
            start_iteration=start_iteration,
            num_iteration=num_iteration,
            validate_features=validate_features,
            **kwargs,
        )
        log_odds = np.asarray(trees, dtype=np.float64) + self.margin(X)
        if raw_score:
            return log_odds
        p = expit(log_odds)
        return np.column_stack([1 - p, p])


def _is_rate(column: str) -> bool:
    return "_late_rate" in column


@dataclass(frozen=True)
class Fold:
    """One validation year: fitted on the lines scheduled before it, scored on its lines."""

    year: int
    fit: np.ndarray
    validation: np.ndarray


def rolling_folds(
    scheduled: pd.Series, years: tuple[int, ...] = VALIDATION_YEARS
) -> tuple[Fold, ...]:
    """Expanding-window folds, all before ``TEST_FROM``."""
    folds = []
    for year in years:
        start, end = pd.Timestamp(year, 1, 1), pd.Timestamp(year + 1, 1, 1)
        if end > TEST_FROM:
            raise ValueError(f"validation year {year} reaches the test years ({TEST_FROM.date()})")
        folds.append(
            Fold(
                year=year,
                fit=(scheduled < start).to_numpy(),
                validation=((scheduled >= start) & (scheduled < end)).to_numpy(),
            )
        )
    return tuple(folds)


@dataclass(frozen=True)
class PlattCalibration:
    """p' = sigmoid(slope * logit(p) + intercept), fitted on out-of-fold predictions."""

    slope: float
    intercept: float

    @classmethod
    def fit(cls, probabilities: np.ndarray, outcomes: np.ndarray) -> PlattCalibration:
        model = LogisticRegression(C=1e6, max_iter=1000)
        model.fit(_logit(probabilities)[:, None], np.asarray(outcomes, dtype=bool))
        return cls(slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        return np.asarray(1 / (1 + np.exp(-(self.slope * _logit(probabilities) + self.intercept))))


def _logit(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)))


@dataclass(frozen=True)
class FoldScores:
    """A validation year's scores for the model and both baselines. ``calibrated_brier`` is the
    model's Brier score after a calibration fitted on the earlier validation years only (None for
    the first year, which has none before it): the check that recalibrating on out-of-fold
    predictions helps on a year it has not seen."""

    year: int
    fit_lines: int
    model: ClassifierScores
    vendor_mode_rate: ClassifierScores
    logistic: ClassifierScores
    calibrated_brier: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "year": self.year,
            "fit_lines": self.fit_lines,
            "model_lightgbm": self.model.as_dict(),
            "baseline_vendor_mode_rate": self.vendor_mode_rate.as_dict(),
            "baseline_logistic": self.logistic.as_dict(),
            "model_brier_calibrated_on_earlier_years": self.calibrated_brier,
        }


@dataclass(frozen=True)
class Validation:
    """Per-year scores, and the model's out-of-fold predictions with their outcomes."""

    folds: tuple[FoldScores, ...]
    out_of_fold: tuple[np.ndarray, ...]
    outcomes: tuple[np.ndarray, ...]

    def mean(self, scorer: str, metric: str) -> float:
        """The mean over the validation years of one scorer's metric (``model``, ``logistic``,
        ``vendor_mode_rate``; ``roc_auc``, ``brier``, ...): the selection criterion."""
        return float(np.mean([getattr(getattr(f, scorer), metric) for f in self.folds]))

    def calibration(self) -> PlattCalibration:
        return PlattCalibration.fit(np.concatenate(self.out_of_fold), np.concatenate(self.outcomes))


def validate(
    lines: pd.DataFrame,
    frame: pd.DataFrame,
    model: LateModel | None = None,
    years: tuple[int, ...] = VALIDATION_YEARS,
) -> Validation:
    """The model and both baselines on each rolling fold (the training years only)."""
    model = model or LateModel()
    late = lines["late"].to_numpy(bool)
    scores: list[FoldScores] = []
    predictions: list[np.ndarray] = []
    outcomes_so_far: list[np.ndarray] = []
    for fold in rolling_folds(lines["scheduled_delivery_date"], years):
        p = model.fit_predict(frame, late, fold.fit, fold.validation)
        y = late[fold.validation]
        calibrated = None
        if predictions:
            earlier = PlattCalibration.fit(
                np.concatenate(predictions), np.concatenate(outcomes_so_far)
            )
            calibrated = float(np.mean((earlier.apply(p) - y) ** 2))
        scores.append(
            FoldScores(
                year=fold.year,
                fit_lines=int(fold.fit.sum()),
                model=score_classifier(y, p),
                vendor_mode_rate=score_classifier(
                    y, vendor_mode_rate(lines, fold.fit, fold.validation)
                ),
                logistic=score_classifier(
                    y, logistic_regression(frame, late, fold.fit, fold.validation, model.columns)
                ),
                calibrated_brier=calibrated,
            )
        )
        predictions.append(p)
        outcomes_so_far.append(y)
    return Validation(
        folds=tuple(scores),
        out_of_fold=tuple(predictions),
        outcomes=tuple(outcomes_so_far),
    )


@dataclass(frozen=True)
class ScmsEvaluation:
    """Test-year scores of the model and both baselines, with the split's sizes, the rolling
    validation the choices rest on and the calibration fitted on it."""

    train_lines: int
    test_lines: int
    trees: int
    model: ClassifierScores
    vendor_mode_rate: ClassifierScores
    logistic: ClassifierScores
    test_probabilities: np.ndarray
    validation: Validation
    calibration: PlattCalibration
    uncalibrated_brier: float
    """The model's test-year Brier score before the calibration (reported, not used to choose)."""


def evaluate_scms(lines: pd.DataFrame, model: LateModel | None = None) -> ScmsEvaluation:
    model = model or LateModel()
    frame = build_scms_features(lines)
    late = lines["late"].to_numpy(bool)
    train = (lines["scheduled_delivery_date"] < TEST_FROM).to_numpy()
    test = ~train
    p_model, validation, calibration = holdout_probabilities(lines, frame, model)
    raw = model.fit_predict(frame, late, train, test)
    return ScmsEvaluation(
        train_lines=int(train.sum()),
        test_lines=int(test.sum()),
        trees=model.trees,
        model=score_classifier(late[test], p_model),
        vendor_mode_rate=score_classifier(late[test], vendor_mode_rate(lines, train, test)),
        logistic=score_classifier(
            late[test], logistic_regression(frame, late, train, test, model.columns)
        ),
        test_probabilities=p_model,
        validation=validation,
        calibration=calibration,
        uncalibrated_brier=float(np.mean((raw - late[test]) ** 2)),
    )


def holdout_probabilities(
    lines: pd.DataFrame, frame: pd.DataFrame, model: LateModel | None = None
) -> tuple[np.ndarray, Validation, PlattCalibration]:
    """The shipped pipeline: rolling validation on the training years, a calibration fitted on
    its out-of-fold predictions, the model refitted on every training line, its calibrated
    probabilities for the test lines. Only the outcomes of lines scheduled before ``TEST_FROM``
    are read here (the features in ``frame`` are point-in-time on their own)."""
    model = model or LateModel()
    late = lines["late"].to_numpy(bool)
    train = (lines["scheduled_delivery_date"] < TEST_FROM).to_numpy()
    validation = validate(lines, frame, model)
    calibration = validation.calibration()
    raw = model.fit_predict(frame, late, train, ~train)
    return calibration.apply(raw), validation, calibration


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


def logistic_regression(
    frame: pd.DataFrame,
    late: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    columns: tuple[str, ...] = FEATURES,
) -> np.ndarray:
    """The linear baseline on the same columns: numeric ones imputed and standardised,
    categorical ones one-hot (an unseen level is all zeros)."""
    categorical = [c for c in columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in columns if c not in categorical]
    transformers: list[tuple[str, Any, list[str]]] = [
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric)
    ]
    if categorical:
        transformers.append(("categorical", OneHotEncoder(handle_unknown="ignore"), categorical))
    model = make_pipeline(ColumnTransformer(transformers), LogisticRegression(max_iter=2000, C=1.0))
    as_text = frame[list(columns)].astype({column: str for column in categorical})
    model.fit(as_text[train], late[train])
    return np.asarray(model.predict_proba(as_text[test])[:, 1])
