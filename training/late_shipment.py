"""The late-shipment model: P(an order line misses its first promised delivery date), known at
order entry.

It owns its label, its features (the ``late_shipment`` feature set, every feature computed as of
the line's entry moment), its estimator, its baselines and the terms of its gate.

The estimator is LightGBM stopped early on the validation weeks, then calibrated on the
calibration weeks: boosted trees rank well but their raw probabilities drift with the number of
trees and the class balance, and the order desk reads the number as a probability.

A late delivery has two causes with different drivers: the warehouse ships after the promised
ship date (backlog, stock, staffing), or the carrier takes longer than the lane's transit
(carrier reliability, weather, peak). The delivery target learns them as two **hazards**, one
booster each on its own label (``label_late_ship``, ``label_late_transit``), and combines them
as P(late) = 1 - (1 - p_ship)(1 - p_transit) before calibrating: on the simulated worlds a line
is late exactly when one of the two happened. One booster on the delivery label alone must find
the union of two unrelated signals in one set of trees and, with few late lines, stops early on
whichever is louder.

Each booster grows from a **linear margin** (``training.linear_margin``): trees are flat past the
largest value training saw, and the first peak season pushes the pick backlog to well beyond
any training day; the margin keeps rising with it. Both choices were made on three windows
that end before the test weeks (``bench/late_selection.py``), not on the test window.

Calibration is Platt's (a logistic on the logit) by default: isotonic regression's flat steps
tie many lines at the same score, which cost up to 0.03 of test ROC AUC when the test weeks
fall in a season the calibration weeks did not see.

Features the history could not compute (``features.availability``: null in the frame, named in
its manifest) are **left out** (``left_out``): the model and its logistic baseline are fitted on
the rest, and the encoder, hence serving, reads only those.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from erp_core.domain.errors import InvalidValue
from features.registry import FeatureSpec, feature_set
from training.encoding import FrameEncoder
from training.linear_margin import LinearMargin
from training.path_attribution import PathAttribution
from training.reasons import Reason, reasons_of_rows

FEATURE_SET = "late_shipment"


@dataclass(frozen=True)
class Target:
    """Which promise the model judges: the delivery date the customer was given (the product's
    main score), or the ship date the warehouse committed to."""

    name: str
    label: str
    registered_name: str
    history_feature: str
    """The on-time rate a planner would read without a model: the history baseline's input."""
    history_baseline: str
    oracle_column: str
    """The simulator's probability of this outcome in its truth files."""
    hazards: tuple[str, ...] = ()
    """Labels of the causes the model learns apart (one booster each, combined as independent
    hazards); empty: one booster on ``label``."""


DELIVERY = Target(
    "delivery",
    "label_late_delivery",
    "late_shipment",
    "lane_ontime_delivery_rate_90d",
    "lane_rate",
    "p_late_delivery",
    ("label_late_ship", "label_late_transit"),
)
SHIP = Target(
    "ship",
    "label_late_ship",
    "late_shipment_ship",
    "location_ontime_ship_rate_56d",
    "location_rate",
    "p_late_ship",
)
TARGETS = {target.name: target for target in (DELIVERY, SHIP)}
LABEL = DELIVERY.label
REGISTERED_NAME = DELIVERY.registered_name
LANE_RATE_FEATURE = DELIVERY.history_feature


def target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        known = ", ".join(TARGETS)
        raise InvalidValue("target", name, f"unknown target (known: {known})") from None


MONOTONE: dict[str, int] = {
    "pick_backlog_lines": 1,
    "pick_backlog_ratio": 1,
    "needs_backorder": 1,
    "location_ontime_ship_rate_14d": -1,
    "location_ontime_ship_rate_56d": -1,
    "lane_ontime_delivery_rate_28d": -1,
    "lane_ontime_delivery_rate_90d": -1,
    "lane_transit_spread_28d": 1,
    "lane_transit_spread_90d": 1,
    "supplier_days_late_56d": 1,
    "region_alert_severity": 1,
}
"""Directions the business knows: more backlog, a backorder, a less punctual location, lane or
supplier, a more severe carrier alert for the ship region never lower the risk. Constraining them
keeps the model from learning noise the wrong way round in thin data, and makes the behaviour a
test can hold it to."""

AUC_MARGIN = 0.002
"""A challenger must beat the champion's test ROC AUC by this much to replace it."""
ECE_TOLERANCE = 0.005
"""... and may not be worse calibrated than the champion by more than this (noise on ECE)."""


def features(left_out: Collection[str] = ()) -> tuple[FeatureSpec, ...]:
    """The declared features, less those ``left_out`` (each must be one of them)."""
    declared = feature_set(FEATURE_SET).features
    unknown = sorted(set(left_out) - {spec.name for spec in declared})
    if unknown:
        raise InvalidValue("left_out", ", ".join(unknown), f"not a feature of {FEATURE_SET}")
    return tuple(spec for spec in declared if spec.name not in left_out)


_ATTRIBUTIONS = "_path_attributions"
"""Where a model keeps its boosters' path-attribution tables (a cache, not a fitted value)."""


class LateShipmentModel(ClassifierMixin, BaseEstimator):
    """LightGBM on the late-shipment features, with early stopping and a probability calibrator.

    ``fit`` takes the training rows, plus the validation rows that stop the boosting and the
    calibration rows the calibrator is fitted on (both later in time than the training rows).
    ``hazards``: labels (columns of the frames ``fit`` is given) of causes learnt apart, one
    booster each on the rows where its label is known, combined as independent hazards; empty:
    one booster on ``y``. The calibrator always maps onto ``y``, the outcome the score promises.
    ``left_out``: features the model does not read (unavailable in the history it learns from).
    """

    def __init__(
        self,
        n_estimators: int = 2000,
        learning_rate: float = 0.03,
        num_leaves: int = 31,
        min_child_samples: int = 100,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 100,
        calibration: str = "sigmoid",
        monotone: bool = True,
        random_state: int = 7,
        n_jobs: int = 2,
        left_out: tuple[str, ...] = (),
        hazards: tuple[str, ...] = (),
        linear_margin: bool = True,
        linear_margin_C: float = 1.0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.calibration = calibration
        self.monotone = monotone
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.left_out = left_out
        self.hazards = hazards
        self.linear_margin = linear_margin
        self.linear_margin_C = linear_margin_C

    def used_features(self) -> tuple[FeatureSpec, ...]:
        """The features the model reads: the declared ones less ``left_out`` (a model pickled
        before ``left_out`` existed reads them all)."""
        return features(getattr(self, "left_out", ()))

    def fit(
        self,
        X: pd.DataFrame,
        y: Sequence[float] | np.ndarray,
        *,
        eval_set: tuple[pd.DataFrame, Any],
        calibration_set: tuple[pd.DataFrame, Any],
    ) -> LateShipmentModel:
        if self.calibration not in ("isotonic", "sigmoid", "none"):
            raise InvalidValue("calibration", self.calibration, "use isotonic, sigmoid or none")
        for frame in (X, eval_set[0]):
            missing = [h for h in self.hazards if h not in frame.columns]
            if missing:
                raise InvalidValue("hazards", ", ".join(missing), "not a column of the frame")
        self.encoder_ = FrameEncoder(self.used_features()).fit(X)
        self.classes_ = np.array([0, 1])
        targets = [(X[h], eval_set[0][h]) for h in self.hazards] or [(y, eval_set[1])]
        grown = [self._grow(X, train_y, eval_set[0], valid_y) for train_y, valid_y in targets]
        self.boosters_ = [booster for booster, _, _ in grown]
        self.best_iterations_ = [best for _, best, _ in grown]
        self.margins_ = [margin for _, _, margin in grown]
        self.__dict__.pop(_ATTRIBUTIONS, None)
        self.calibrator_ = self._fit_calibrator(*calibration_set)
        return self

    def adopt(
        self,
        encoder: FrameEncoder,
        boosters: Sequence[lgb.Booster],
        best_iterations: Sequence[int],
        calibration_set: tuple[pd.DataFrame, Any],
        margins: Sequence[LinearMargin | None] | None = None,
    ) -> LateShipmentModel:
        """Finish a model whose trees were grown elsewhere (on a Dask cluster): one booster per
        hazard (or one), each with the linear margin it was grown from (``margins``), the same
        calibration and the same scoring path as ``fit``, so serving cannot tell them apart."""
        if len(boosters) != max(1, len(self.hazards)) or len(boosters) != len(best_iterations):
            raise InvalidValue(
                "boosters", str(len(boosters)), "one per hazard, each with its trees"
            )
        self.encoder_ = encoder
        self.classes_ = np.array([0, 1])
        self.boosters_ = list(boosters)
        self.best_iterations_ = [int(best) for best in best_iterations]
        self.margins_ = list(margins) if margins is not None else [None] * len(boosters)
        self.__dict__.pop(_ATTRIBUTIONS, None)
        self.calibrator_ = self._fit_calibrator(*calibration_set)
        return self

    @property
    def trees_(self) -> list[int]:
        """Trees kept after early stopping, per booster (per hazard)."""
        return [best for _, best, _ in self._grown()]

    def lightgbm_params(self) -> dict[str, Any]:
        """The booster's parameters for the features the encoder was fitted on."""
        return self._params()

    def new_margin(self) -> LinearMargin:
        """The (unfitted) linear margin over the encoder's numeric features, with the
        business's directions (``MONOTONE``) as the signs it must keep."""
        categorical = set(self.encoder_.categorical_indices)
        columns = [i for i in range(len(self.encoder_.names)) if i not in categorical]
        signs = [MONOTONE.get(self.encoder_.names[i], 0) if self.monotone else 0 for i in columns]
        return LinearMargin(columns, signs, self.linear_margin_C)

    def _grow(
        self, X: pd.DataFrame, y: Any, valid_X: pd.DataFrame, valid_y: Any
    ) -> tuple[lgb.Booster, int, LinearMargin | None]:
        """One booster stopped early on the validation rows, each on the rows whose label is
        known (a hazard's label is null where its milestone has not happened), grown from its
        linear margin when there is one."""
        train_y, valid_yy = _as_label(y), _as_label(valid_y)
        train_known, valid_known = ~np.isnan(train_y), ~np.isnan(valid_yy)
        train_matrix = self.encoder_.transform(X.loc[train_known])
        valid_matrix = self.encoder_.transform(valid_X.loc[valid_known])
        margin = (
            self.new_margin().fit(train_matrix, train_y[train_known])
            if self.linear_margin
            else None
        )
        train = self._dataset(train_matrix, train_y[train_known], margin)
        valid = self._dataset(valid_matrix, valid_yy[valid_known], margin, reference=train)
        booster = lgb.train(
            self._params(),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        return booster, int(booster.best_iteration or self.n_estimators), margin

    def _grown(self) -> list[tuple[lgb.Booster, int, LinearMargin | None]]:
        """(booster, trees, linear margin) per hazard; a model pickled before hazards held one
        booster and no margin."""
        if hasattr(self, "boosters_"):
            margins = getattr(self, "margins_", [None] * len(self.boosters_))
            return list(zip(self.boosters_, self.best_iterations_, margins, strict=True))
        return [(self.booster_, self.best_iteration_, None)]

    def _dataset(
        self,
        matrix: np.ndarray,
        y: Any,
        margin: LinearMargin | None,
        reference: lgb.Dataset | None = None,
    ) -> Any:
        return lgb.Dataset(
            matrix,
            label=np.asarray(y, dtype=np.float64),
            init_score=None if margin is None else margin.margin(matrix),
            feature_name=self.encoder_.names,
            categorical_feature=self.encoder_.categorical_indices,
            reference=reference,
            free_raw_data=True,
        )

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_jobs,
            "verbosity": -1,
            "monotone_constraints": [
                MONOTONE.get(name, 0) if self.monotone else 0 for name in self.encoder_.names
            ],
        }

    def _fit_calibrator(self, X: pd.DataFrame, y: Any) -> Any:
        raw = self.raw_probability(self.encoder_.transform(X))
        outcome = np.asarray(y, dtype=np.float64)
        if self.calibration == "isotonic":
            return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, outcome)
        if self.calibration == "sigmoid":
            return LogisticRegression(C=1e6).fit(_logit(raw).reshape(-1, 1), outcome)
        return None

    # --- applying -------------------------------------------------------------------------

    def hazard_probabilities(
        self, matrix: np.ndarray, num_threads: int | None = None
    ) -> np.ndarray:
        """Each booster's P(its cause) for an encoded matrix, one column per hazard: the
        trees' log-odds on top of the linear margin they were grown from."""
        params = {} if num_threads is None else {"num_threads": num_threads}
        return np.column_stack(
            [
                expit(
                    booster.predict(matrix, num_iteration=best, raw_score=True, **params)
                    + (0.0 if margin is None else margin.margin(matrix))
                )
                for booster, best, margin in self._grown()
            ]
        )

    def raw_probability(self, matrix: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """P(late) before calibration: the hazards combined as independent causes."""
        hazards = self.hazard_probabilities(matrix, num_threads)
        return 1.0 - np.prod(1.0 - hazards, axis=1)

    def probability(self, matrix: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Calibrated P(late) for an encoded matrix (batch scoring; the few lines of one order
        take :meth:`score_rows`, which gives the same numbers and their reasons' inputs)."""
        return self._calibrated(self.raw_probability(matrix, num_threads))

    def score_rows(
        self, matrix: np.ndarray, explain_from: float = 0.0, num_threads: int | None = None
    ) -> RowScores:
        """Calibrated P(late) of a few rows (an order's lines), bit for bit ``probability``'s,
        and the contributions of the rows whose P reaches ``explain_from``, from one
        ``pred_leaf`` per booster: the leaves give both the trees' raw scores and their path
        attributions, where ``probability`` then ``contributions`` would ask LightGBM twice per
        booster (each call ~0.1 ms of fixed cost on the order-entry clock). Not for big
        matrices: the leaves are a (rows x trees) array."""
        read = [
            (margin, attribution, attribution.leaves(booster, matrix, num_threads))
            for (booster, _, margin), attribution in zip(
                self._grown(), self._attributions(), strict=True
            )
        ]
        hazards = np.column_stack(
            [
                expit(
                    attribution.raw_score(found)
                    + (0.0 if margin is None else margin.margin(matrix))
                )
                for margin, attribution, found in read
            ]
        )
        probability = self._calibrated(1.0 - np.prod(1.0 - hazards, axis=1))
        explained = np.flatnonzero(probability >= explain_from)
        rows = matrix[explained]
        per_booster = [
            attribution.contributions_of(found[explained])
            + (0.0 if margin is None else margin.contributions(rows))
            for margin, attribution, found in read
        ]
        return RowScores(probability, explained, _combined(per_booster))

    def _calibrated(self, raw: np.ndarray) -> np.ndarray:
        if self.calibrator_ is None:
            return raw
        if isinstance(self.calibrator_, IsotonicRegression):
            return np.asarray(self.calibrator_.predict(raw))
        # Platt: what the logistic regression's predict_proba computes (the same dot and
        # expit, so the same bits) without its input validation, a tenth of a millisecond
        # of a 10-line order's score.
        platt = self.calibrator_
        decision = _logit(raw).reshape(-1, 1) @ platt.coef_.T + platt.intercept_
        return expit(decision.ravel())

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.probability(self.encoder_.transform(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def contributions(
        self, matrix: np.ndarray, num_threads: int | None = None, method: str = "path"
    ) -> np.ndarray:
        """Per-feature log-odds contributions to the uncalibrated P(late), bias in the last
        column; each row sums to logit(raw P).

        ``method``: ``path`` (the default, the reason codes' source) credits each split on the
        row's path with the change it made (:mod:`training.path_attribution`: a gather per row;
        a 10-line order 0.36 ms against TreeSHAP's 8.6 ms on the bench champion); ``treeshap``
        gives LightGBM's exact TreeSHAP values (``pred_contrib``), for analysis.

        With one booster these are its trees' values plus its linear margin's share of each
        feature (coefficient x standardised value; the intercept joins the bias). With hazards,
        each booster's values (in its own log-odds) are carried to the combined log-odds by the
        chain rule: d logit(P) / d logit(p_i) = p_i / P for P = 1 - prod(1 - p_i), so a
        feature counts in proportion to how much of the risk its hazard carries on that line;
        the bias column takes the remainder, keeping the rows' sums exact.
        """
        if method not in ("path", "treeshap"):
            raise InvalidValue("method", method, "use path or treeshap")
        params = {} if num_threads is None else {"num_threads": num_threads}
        per_booster = []
        grown = self._grown()
        attributions = self._attributions() if method == "path" else [None] * len(grown)
        for (booster, best, margin), attribution in zip(grown, attributions, strict=True):
            if attribution is None:
                trees = booster.predict(matrix, num_iteration=best, pred_contrib=True, **params)
            else:
                trees = attribution.contributions(booster, matrix, num_threads)
            per_booster.append(trees if margin is None else trees + margin.contributions(matrix))
        return _combined(per_booster)

    def _attributions(self) -> list[PathAttribution]:
        """Each booster's path-attribution tables, worked out on first use from the trees
        alone (so a model pickled before they existed gets them too) and kept until the next
        fit; never pickled (``__getstate__``): a copy works them out again from its own trees."""
        cached = self.__dict__.get(_ATTRIBUTIONS)
        if cached is None:
            cached = [PathAttribution(best).fit(booster) for booster, best, _ in self._grown()]
            self.__dict__[_ATTRIBUTIONS] = cached
        return cached

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop(_ATTRIBUTIONS, None)
        return state

    def reasons(
        self, X: pd.DataFrame, limit: int = 3, contexts: list[dict[str, str]] | None = None
    ) -> list[list[Reason]]:
        """The features that pushed each row's risk up the most, in words; ``contexts`` (one
        per row: ``location``, ``carrier``) lets the words name the place and the carrier."""
        matrix = self.encoder_.transform(X)
        names = self.encoder_.names
        columns = {name: X[name].to_numpy(dtype=object) for name in names}
        return reasons_of_rows(self.contributions(matrix), columns, names, limit, contexts)


@dataclass(frozen=True)
class RowScores:
    """:meth:`LateShipmentModel.score_rows`' answer."""

    probability: np.ndarray
    """Calibrated P(late) per row."""
    explained: np.ndarray
    """Positions of the rows whose contributions were worked out."""
    contributions: np.ndarray
    """One row per explained row, as :meth:`LateShipmentModel.contributions` gives it."""


def _combined(per_booster: list[np.ndarray]) -> np.ndarray:
    """Each hazard's contributions (in its own log-odds) carried to the combined log-odds of
    ``1 - prod(1 - p_i)`` (see :meth:`LateShipmentModel.contributions`)."""
    if len(per_booster) == 1:
        return per_booster[0]
    hazards = np.column_stack([expit(values.sum(axis=1)) for values in per_booster])
    combined = 1.0 - np.prod(1.0 - hazards, axis=1)
    weights = hazards / np.maximum(combined, 1e-12)[:, None]
    out = np.einsum("rh,hrc->rc", weights, np.stack(per_booster))
    out[:, -1] = _logit(combined) - out[:, :-1].sum(axis=1)
    return out


def _as_label(y: Any) -> np.ndarray:
    """A label column as float64, NaN where unknown (nullable dtypes carry pd.NA)."""
    return pd.Series(y, copy=False).astype("float64").to_numpy()


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


# --- baselines ----------------------------------------------------------------------------------


class LaneRateBaseline(ClassifierMixin, BaseEstimator):
    """History without a model: P(late) = 1 - an on-time rate known at entry (by default the
    lane's shrunk 90-day delivery rate; the location's ship rate for the ship-date target).
    Nothing is learned."""

    def __init__(self, feature: str = LANE_RATE_FEATURE) -> None:
        self.feature = feature

    def fit(self, X: pd.DataFrame, y: Any = None) -> LaneRateBaseline:
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        on_time = pd.to_numeric(X[self.feature]).astype("float64").to_numpy()
        p = np.clip(1.0 - np.nan_to_num(on_time, nan=np.nanmean(on_time)), 0.0, 1.0)
        return np.column_stack([1 - p, p])


def logistic_baseline(random_state: int = 7, left_out: Collection[str] = ()) -> Pipeline:
    """Logistic regression on the same features (less those ``left_out``): numbers imputed
    (with a missing flag) and standardised, categories and booleans one-hot."""
    specs = features(left_out)
    numeric = [s.name for s in specs if s.dtype in ("float64", "int64")]
    discrete = [s.name for s in specs if s.dtype in ("category", "bool")]
    columns = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                ),
                numeric,
            ),
            ("discrete", OneHotEncoder(handle_unknown="ignore"), discrete),
        ]
    )
    return Pipeline(
        [
            ("as_text", FunctionTransformer(discrete_as_text)),
            ("columns", columns),
            ("model", LogisticRegression(max_iter=2000, random_state=random_state)),
        ]
    )


def discrete_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Booleans and categories as strings, so the one-hot encoder sees one kind of value."""
    out = frame.copy()
    for spec in features():
        if spec.dtype in ("category", "bool"):
            out[spec.name] = out[spec.name].astype("string").fillna("missing").astype(object)
    return out
