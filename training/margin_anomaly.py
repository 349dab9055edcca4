"""The margin-anomaly model: how unusual a line's price is at entry, as a score in [0, 1] with a
reason in words.

It owns its features (the ``pricing`` set plus whether a discount approval was requested when the
line was captured), its estimator, its metrics against the simulator's labels, its baselines and
the terms of its gate. It never learns from labels: a real ERP records no "this price was a typo",
so the model is unsupervised and the labels only measure it.

How the score is composed (``MarginAnomalyModel``):

1. **Expected price.** A LightGBM regression (Huber loss, robust to the anomalies it trains on)
   of ``log(unit_price / quantity_break_price)`` on context known without the price: channel,
   tier, category, list price, tier and quantity-break discounts, cost, the customer's and the
   tier's recent prices (each relative to the price-list price), how often they bought, the
   quantity and the quantity against the customer's usual. The expected price is the price-list
   price times ``exp(prediction)``.
2. **Robust residual.** ``z = |log(price) - log(expected)| / scale(channel)``, the scale being the
   larger of 1.4826 x the MAD of the residuals in the line's channel, their 95th percentile of
   ``|residual|`` / 1.96 (most lines sit exactly on the price list, so the MAD alone is often 0),
   and a floor of ``scale_floor`` (1% by default). Measured on the calibration weeks (lines the
   regression never saw) when given.
3. **IsolationForest** over the residual-derived features (signed z, and the log ratio of the
   price to the customer's recent median, to the tier's, to the unit cost and to the list price),
   its score turned into a robust z the same way (median and MAD on the calibration weeks).
4. **Statistical score.** Each z becomes ``z^2 / (z^2 + c^2)``, with ``c`` set so that the
   ``1 - alert_rate`` quantile of z on the calibration weeks lands on ``alert_score`` (0.8, the
   policy's margin-anomaly threshold): a score of 0.8 means "as unusual as the rarest
   ``alert_rate`` share of recent lines". The statistical score is the larger of the two.
5. **Hard rules**, each a score in [``alert_score``, 1] growing with its severity: a price below
   unit cost (0.8 at the cost, 1.0 at half the cost), and a discount beyond the policy's approval
   threshold entered without an approval request (0.8 at the threshold, 1.0 thirty points
   beyond it), and a typed price equal to a superseded entry of the line's price list (a stale
   price list; 0.8 plus the gap to the current price on the discount's scale). A rule hit always
   reaches the alert threshold.
6. **Score** = the largest of the rule scores and the statistical score.

The reason of each line names the rules it breaks and the strongest comparison: with the
customer's last prices when the customer bought the SKU before, else with the tier's recent
prices, else with the expected price ("price is 9.8x this customer's last 5 prices (median
12.30)", "price 12% below unit cost 20.00", "discount 35% beyond the 10% approval threshold,
entered without approval").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from erp_core.domain.errors import InvalidValue
from features.registry import FeatureSpec, feature_set
from training.encoding import FrameEncoder
from training.gate import GateDecision
from training.isolation import StackedForest

FEATURE_SET = "pricing"
REGISTERED_NAME = "margin_anomaly"
LABEL = "is_anomaly"
TYPE_COLUMN = "anomaly_type"
APPROVAL_COLUMN = "approval_requested"
"""Whether a discount approval was requested when the line was captured (known at entry; not in
the feature set: the training job reads it beside the frame, serving knows it from the capture)."""

SUPERSEDED_COLUMN = "matches_superseded_price"
"""Whether the typed price equals, to the cent, a price the line's price list (tier, SKU,
quantity break) carried before the entry in force at entry and no longer does (known at entry;
read beside the frame like the approval column; absent: the stale-price rule stays silent)."""

ALERT_RATE = 0.01
"""Metrics are read at an alert queue that takes the 1% most anomalous lines."""
ALERT_SCORE = 0.8
"""The score a rule hit reaches at least; the policy's default margin-anomaly threshold."""
PR_AUC_MARGIN = 0.005
"""A challenger must beat the champion's test PR AUC by this much to replace it."""
RECALL_TOLERANCE = 0.02
"""... and may not catch fewer anomalies at the 1% alert rate than the champion by more."""

CATEGORICAL = ("channel", "customer_tier", "product_category")
COST_SEVERITY = 0.5
"""A price this share below cost scores 1.0 (0.8 at the cost)."""
DISCOUNT_SEVERITY = 0.30
"""A discount this far beyond the threshold (in share points) scores 1.0 (0.8 at it)."""
STATISTICAL_REASON = 0.5
"""Below this statistical score the price is said to be in line with expectations."""


def features() -> tuple[FeatureSpec, ...]:
    return feature_set(FEATURE_SET).features


def _categorical_specs() -> list[FeatureSpec]:
    by_name = {spec.name: spec for spec in features()}
    return [by_name[name] for name in CATEGORICAL]


def _log_ratio(numerator: Any, denominator: Any) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)
        out = np.log(ratio)
    return np.where(np.isfinite(out), out, np.nan)


Frame: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray]
"""What scoring reads: a frame, or one array per column (serving's few lines of one order, which
would pay more for building a DataFrame and reading Series back out of it than for the model;
both give the same numbers)."""


def _numbers(frame: Frame, name: str) -> np.ndarray:
    column = frame[name]
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
        # the same numbers, without pandas' detour
        return np.asarray(column, dtype=np.float64)
    return pd.to_numeric(pd.Series(column), errors="raise").astype("float64").to_numpy()


def _text(frame: Frame, name: str, missing: str) -> np.ndarray:
    """A text column as plain str objects, ``missing`` where null (pandas' string reading)."""
    column = frame[name]
    if isinstance(column, np.ndarray) and column.dtype == object:
        if all(type(value) is str for value in column):  # str exactly, as pandas keeps it
            return column
        column = pd.Series(column, dtype=object)
    return pd.Series(column).astype("string").to_numpy(dtype=object, na_value=missing)


def _flags(frame: Frame, name: str) -> np.ndarray:
    """A boolean column, null read as False; a frame without it reads all False."""
    if name not in frame:
        return np.zeros(_length(frame), dtype=bool)
    column = frame[name]
    if isinstance(column, np.ndarray) and column.dtype == bool:
        return column
    return pd.Series(column).fillna(False).astype(bool).to_numpy()


def _length(frame: Frame) -> int:
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    return len(next(iter(frame.values()))) if frame else 0


def check_columns(frame: Frame) -> None:
    """A frame missing a pricing feature the model reads is refused by name."""
    missing = [spec.name for spec in features() if spec.name not in frame]
    if missing:
        raise InvalidValue(
            "frame", ", ".join(missing), "the model needs these features; the frame lacks them"
        )


def context_matrix(frame: Frame, encoder: FrameEncoder) -> tuple[np.ndarray, list[str]]:
    """The expected-price model's inputs: everything known about the line but its price."""
    base = _numbers(frame, "quantity_break_price")
    numeric = {
        "log_list_price": np.log(_numbers(frame, "list_price")),
        "quantity_break_discount": _numbers(frame, "quantity_break_discount"),
        "tier_discount": 1 - _numbers(frame, "tier_price") / _numbers(frame, "list_price"),
        "log_cost_to_price_list": _log_ratio(_numbers(frame, "unit_cost"), base),
        "log_customer_median_to_price_list": _log_ratio(
            _numbers(frame, "customer_median_price_5"), base
        ),
        "log_customer_last_to_price_list": _log_ratio(_numbers(frame, "customer_last_price"), base),
        "customer_price_count": _numbers(frame, "customer_price_count"),
        "log_tier_median_to_price_list": _log_ratio(_numbers(frame, "tier_median_price_90d"), base),
        "tier_price_count_90d": _numbers(frame, "tier_price_count_90d"),
        "log_line_units": np.log(_numbers(frame, "line_units")),
        "log_units_to_customer_usual": _log_ratio(
            _numbers(frame, "line_units"), _numbers(frame, "customer_usual_units")
        ),
    }
    if isinstance(frame, pd.DataFrame):
        codes = encoder.transform(frame)
    else:
        codes = encoder.transform_columns(frame)
    matrix = np.column_stack([*numeric.values(), codes])
    return matrix, [*numeric, *encoder.names]


def approval_requested(frame: Frame) -> np.ndarray:
    """The frame's approval column; a frame without it is read as "no approval requested", so a
    discount beyond the threshold is flagged (the rule errs toward an alert)."""
    return _flags(frame, APPROVAL_COLUMN)


def superseded(frame: Frame) -> np.ndarray:
    return _flags(frame, SUPERSEDED_COLUMN)


def robust_z(values: np.ndarray, center: float, scale: float) -> np.ndarray:
    return np.maximum(values - center, 0.0) / scale


def bounded(z: np.ndarray, half: float) -> np.ndarray:
    """``z^2 / (z^2 + half^2)``: 0 at 0, rising smoothly towards 1, never reaching it."""
    return z * z / (z * z + half * half)


def half_point(z_reference: np.ndarray, alert_rate: float, alert_score: float) -> float:
    """The ``c`` of :func:`bounded` that maps the ``1 - alert_rate`` quantile of the reference
    z onto ``alert_score`` (at least 1, so a reference with no spread is not divided by 0)."""
    z_alert = float(np.quantile(z_reference, 1 - alert_rate)) if len(z_reference) else 0.0
    return max(z_alert * np.sqrt((1 - alert_score) / alert_score), 1.0)


@dataclass(frozen=True)
class ScoreParts:
    """Every part of the score of each line, for reasons, tests and diagnostics."""

    expected_price: np.ndarray
    residual: np.ndarray
    """log(unit price) - log(expected price)."""
    residual_z: np.ndarray
    residual_score: np.ndarray
    iforest_score: np.ndarray
    below_cost_score: np.ndarray
    discount_score: np.ndarray
    stale_score: np.ndarray
    score: np.ndarray

    @property
    def statistical_score(self) -> np.ndarray:
        return np.maximum(self.residual_score, self.iforest_score)

    @property
    def rules_score(self) -> np.ndarray:
        return np.maximum.reduce([self.below_cost_score, self.discount_score, self.stale_score])


class MarginAnomalyModel(BaseEstimator):
    """Expected price + robust residual + IsolationForest + hard rules -> a score in [0, 1].

    ``fit(X)`` learns from the training rows only (``y`` is accepted and ignored: the model is
    unsupervised); ``eval_set`` (later rows) stops the boosting, ``calibration_set`` (later
    still) is where residual scales, the IsolationForest and the score's scale are measured, so
    they describe lines the regression never saw. ``approval_threshold_pct`` defaults to the
    shipped policy's discount threshold. One thread by default: the regression sees tens of
    thousands of rows, and LightGBM's threads spin against any other work on a small machine
    (2 threads beside a busy core took six times as long as one)."""

    def __init__(
        self,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        early_stopping_rounds: int = 50,
        huber_delta: float = 0.05,
        scale_floor: float = 0.01,
        alert_rate: float = 0.005,
        alert_score: float = ALERT_SCORE,
        iforest_estimators: int = 200,
        approval_threshold_pct: float | None = None,
        random_state: int = 7,
        n_jobs: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.huber_delta = huber_delta
        self.scale_floor = scale_floor
        self.alert_rate = alert_rate
        self.alert_score = alert_score
        self.iforest_estimators = iforest_estimators
        self.approval_threshold_pct = approval_threshold_pct
        self.random_state = random_state
        self.n_jobs = n_jobs

    # --- learning -------------------------------------------------------------------------

    def fit(
        self,
        X: pd.DataFrame,
        y: Any = None,
        *,
        eval_set: pd.DataFrame | None = None,
        calibration_set: pd.DataFrame | None = None,
    ) -> MarginAnomalyModel:
        del y  # unsupervised: labels measure the model, never train it
        self._check_params()
        check_columns(X)
        if len(X) < 2:
            raise InvalidValue("X", len(X), "needs at least 2 priced lines to learn from")
        self.threshold_pct_ = self._threshold()
        self.encoder_ = FrameEncoder(_categorical_specs()).fit(X)
        self.booster_ = self._fit_regression(X, eval_set)
        self.best_iteration_ = int(
            self.booster_.best_iteration or self.booster_.current_iteration()
        )
        reference = calibration_set if calibration_set is not None and len(calibration_set) else X
        residual = self._residual(reference)
        channels = reference["channel"].astype("string").to_numpy(dtype=object, na_value="")
        self.scales_ = {
            str(name): self._scale(residual[channels == name]) for name in np.unique(channels)
        }
        self.default_scale_ = self._scale(residual)
        z = residual / self._scales_of(reference)
        self.residual_half_ = half_point(np.abs(z), self.alert_rate, self.alert_score)
        shape = self._shape_features(reference, z)
        self.iforest_ = IsolationForest(
            n_estimators=self.iforest_estimators, random_state=self.random_state, n_jobs=1
        ).fit(shape)
        isolation = -self.iforest_.score_samples(shape)
        self.iforest_center_ = float(np.median(isolation))
        mad = float(np.median(np.abs(isolation - self.iforest_center_)))
        self.iforest_scale_ = max(1.4826 * mad, 1e-6)
        self.iforest_half_ = half_point(
            robust_z(isolation, self.iforest_center_, self.iforest_scale_),
            self.alert_rate,
            self.alert_score,
        )
        return self

    def _check_params(self) -> None:
        if not 0 < self.alert_rate < 1:
            raise InvalidValue("alert_rate", self.alert_rate, "must be between 0 and 1")
        if not 0 < self.alert_score < 1:
            raise InvalidValue("alert_score", self.alert_score, "must be between 0 and 1")
        if self.scale_floor <= 0:
            raise InvalidValue("scale_floor", self.scale_floor, "must be > 0")

    def _threshold(self) -> float:
        if self.approval_threshold_pct is not None:
            return float(self.approval_threshold_pct)
        from erp_core.policy import load_policy

        return float(load_policy().discount_approval_pct)

    def _fit_regression(self, X: pd.DataFrame, eval_set: pd.DataFrame | None) -> lgb.Booster:
        train = self._dataset(X)
        params = {
            "objective": "huber",
            "alpha": self.huber_delta,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.random_state,
            "deterministic": True,
            "num_threads": self.n_jobs,
            "verbose": -1,
        }
        if eval_set is None or not len(eval_set):
            return lgb.train(params, train, num_boost_round=self.n_estimators)
        valid = self._dataset(eval_set, reference=train)
        return lgb.train(
            params,
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )

    def _dataset(self, frame: pd.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        matrix, names = context_matrix(frame, self.encoder_)
        categorical = [names.index(name) for name in CATEGORICAL]
        return lgb.Dataset(
            matrix,
            label=_target(frame),
            feature_name=names,
            categorical_feature=categorical,
            reference=reference,
            free_raw_data=True,
        )

    def _scale(self, residual: np.ndarray) -> float:
        if not len(residual):
            return self.scale_floor
        mad = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
        tail = float(np.quantile(np.abs(residual), 0.95)) / 1.96
        return max(mad, tail, self.scale_floor)

    # --- scoring --------------------------------------------------------------------------

    def expected_log_ratio(self, X: Frame) -> np.ndarray:
        matrix, _ = context_matrix(X, self.encoder_)
        return np.asarray(self.booster_.predict(matrix, num_iteration=self.best_iteration_))

    def _residual(self, X: Frame) -> np.ndarray:
        return _target(X) - self.expected_log_ratio(X)

    def _stacked_forest(self) -> StackedForest:
        """The fitted forest stacked for scoring many trees at once (built on first use, also
        in a model unpickled from the registry)."""
        stacked = self.__dict__.get("_stacked")
        if stacked is None or stacked[0] is not self.iforest_:
            stacked = (self.iforest_, StackedForest.of(self.iforest_))
            self.__dict__["_stacked"] = stacked
        return stacked[1]

    def _scales_of(self, X: Frame) -> np.ndarray:
        channels = _text(X, "channel", "")
        return np.array([self.scales_.get(str(c), self.default_scale_) for c in channels])

    @staticmethod
    def _shape_features(X: Frame, signed_z: np.ndarray) -> np.ndarray:
        price = _numbers(X, "unit_price")
        columns = [
            signed_z,
            _log_ratio(price, _numbers(X, "customer_median_price_5")),
            _log_ratio(price, _numbers(X, "tier_median_price_90d")),
            _log_ratio(price, _numbers(X, "unit_cost")),
            _log_ratio(price, _numbers(X, "list_price")),
        ]
        return np.nan_to_num(np.column_stack(columns), nan=0.0)

    def score_parts(self, X: Frame) -> ScoreParts:
        check_columns(X)
        expected_log = self.expected_log_ratio(X)
        residual = _target(X) - expected_log
        signed_z = residual / self._scales_of(X)
        z = np.abs(signed_z)
        residual_score = bounded(z, self.residual_half_)
        isolation = -self._stacked_forest().score_samples(self._shape_features(X, signed_z))
        iforest_z = robust_z(isolation, self.iforest_center_, self.iforest_scale_)
        iforest_score = bounded(iforest_z, self.iforest_half_)
        below, discount, stale = self._rule_scores(X)
        score = np.maximum.reduce([residual_score, iforest_score, below, discount, stale])
        return ScoreParts(
            expected_price=_numbers(X, "quantity_break_price") * np.exp(expected_log),
            residual=residual,
            residual_z=z,
            residual_score=residual_score,
            iforest_score=iforest_score,
            below_cost_score=below,
            discount_score=discount,
            stale_score=stale,
            score=np.clip(score, 0.0, 1.0),
        )

    def _rule_scores(self, X: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = self.alert_score
        shortfall = 1 - _numbers(X, "unit_price") / _numbers(X, "unit_cost")
        below = np.where(shortfall > 0, a + (1 - a) * np.minimum(shortfall / COST_SEVERITY, 1), 0)
        excess = _numbers(X, "discount_vs_tier") - self.threshold_pct_ / 100
        unapproved = (excess > 0) & ~approval_requested(X)
        discount = np.where(
            unapproved, a + (1 - a) * np.minimum(excess / DISCOUNT_SEVERITY, 1), 0.0
        )
        gap = np.abs(1 - _numbers(X, "unit_price") / _numbers(X, "quantity_break_price"))
        stale = np.where(superseded(X), a + (1 - a) * np.minimum(gap / DISCOUNT_SEVERITY, 1), 0.0)
        return below, discount, stale

    def anomaly_score(self, X: Frame) -> np.ndarray:
        """The score in [0, 1] of each line (higher: more anomalous)."""
        return self.score_parts(X).score

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``[1 - score, score]`` per line, the shape the registry's other models answer in. The
        score ranks lines and places the alert threshold; it is not a calibrated probability."""
        score = self.anomaly_score(X)
        return np.column_stack([1 - score, score])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """True where the line reaches the alert score."""
        return self.anomaly_score(X) >= self.alert_score

    def reasons(self, X: Frame, parts: ScoreParts | None = None) -> list[str]:
        """One sentence per line: the rules it breaks, then its strongest price comparison."""
        parts = parts or self.score_parts(X)
        return line_reasons(X, parts, self.threshold_pct_)


def _target(frame: Frame) -> np.ndarray:
    return _log_ratio(_numbers(frame, "unit_price"), _numbers(frame, "quantity_break_price"))


# --- reasons ---------------------------------------------------------------------------------


def compare(ratio: float, what: str) -> str:
    if ratio >= 1.5:
        return f"price is {ratio:.1f}x {what}"
    if ratio <= 0.5:
        return f"price is 1/{1 / ratio:.1f} of {what}"
    if ratio >= 1:
        return f"price is {ratio - 1:.0%} above {what}"
    return f"price is {1 - ratio:.0%} below {what}"


def line_reasons(X: Frame, parts: ScoreParts, threshold_pct: float) -> list[str]:
    price = _numbers(X, "unit_price")
    cost = _numbers(X, "unit_cost")
    list_price = _numbers(X, "quantity_break_price")
    discount = _numbers(X, "discount_vs_tier")
    customer = _numbers(X, "customer_median_price_5")
    seen = np.minimum(_numbers(X, "customer_price_count"), 5)
    tier = _numbers(X, "tier_median_price_90d")
    tiers = _text(X, "customer_tier", "?")
    statistical = parts.statistical_score
    reasons = []
    for i in range(_length(X)):
        said = []
        if parts.below_cost_score[i] > 0:
            said.append(f"price {1 - price[i] / cost[i]:.0%} below unit cost {cost[i]:.2f}")
        if parts.discount_score[i] > 0:
            said.append(
                f"discount {discount[i]:.0%}, beyond the {threshold_pct:g}% approval threshold, "
                "entered without approval"
            )
        if parts.stale_score[i] > 0:
            said.append(
                f"price {price[i]:.2f} is a superseded price-list price (the list now says "
                f"{list_price[i]:.2f}): stale price list"
            )
        expected = parts.expected_price[i]
        if statistical[i] >= STATISTICAL_REASON or not said:
            if not np.isnan(customer[i]):
                what = (
                    f"this customer's last price {customer[i]:.2f}"
                    if seen[i] == 1
                    else f"this customer's last {int(seen[i])} prices (median {customer[i]:.2f})"
                )
                said.append(compare(price[i] / customer[i], what))
            elif not np.isnan(tier[i]):
                what = f"the {tiers[i]} tier's recent median {tier[i]:.2f}"
                said.append(compare(price[i] / tier[i], what))
            else:
                said.append(compare(price[i] / expected, f"the expected {expected:.2f}"))
            if statistical[i] < STATISTICAL_REASON and not parts.rules_score[i]:
                said[-1] = f"price in line with expectations (expected {expected:.2f}; {said[-1]})"
        reasons.append("; ".join(said))
    return reasons


# --- baselines -------------------------------------------------------------------------------


class RulesOnly(BaseEstimator):
    """The hard rules alone (below cost; discount beyond the threshold without approval; a
    superseded price-list price), each scored by its severity; every other line scores 0."""

    def __init__(self, approval_threshold_pct: float | None = None) -> None:
        self.approval_threshold_pct = approval_threshold_pct

    def fit(self, X: pd.DataFrame, y: Any = None) -> RulesOnly:
        del X, y
        self.model_ = MarginAnomalyModel(approval_threshold_pct=self.approval_threshold_pct)
        self.model_.threshold_pct_ = self.model_._threshold()
        return self

    def anomaly_score(self, X: Frame) -> np.ndarray:
        return np.maximum.reduce(self.model_._rule_scores(X))


class CustomerMedianZ(BaseEstimator):
    """A z-score of the price against the customer's recent median (the tier's, else the
    price-list price, when the customer never bought the SKU): |log ratio| over its robust
    spread on the training rows."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> CustomerMedianZ:
        del y
        deviation = self._log_deviation(X)
        mad = 1.4826 * float(np.median(np.abs(deviation - np.median(deviation))))
        self.scale_ = max(mad, float(np.std(deviation)), 1e-6)
        return self

    @staticmethod
    def _log_deviation(X: pd.DataFrame) -> np.ndarray:
        reference = (
            X["customer_median_price_5"]
            .fillna(X["tier_median_price_90d"])
            .fillna(X["quantity_break_price"])
        )
        return _log_ratio(_numbers(X, "unit_price"), reference.astype("float64").to_numpy())

    def anomaly_score(self, X: Frame) -> np.ndarray:
        return np.nan_to_num(np.abs(self._log_deviation(X)) / self.scale_)


# --- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnomalyScores:
    """How well a detector ranks the labelled anomalies of one set of lines."""

    lines: int
    anomalies: int
    pr_auc: float
    roc_auc: float
    alerts: int
    precision_at_alert: float
    recall_at_alert: float
    recall_by_type: dict[str, float] = field(default_factory=dict)
    anomalies_by_type: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Flat, numeric: what MLflow logs and the gate compares."""
        flat = {
            "lines": float(self.lines),
            "anomalies": float(self.anomalies),
            "pr_auc": self.pr_auc,
            "roc_auc": self.roc_auc,
            "alerts": float(self.alerts),
            "precision_at_alert": self.precision_at_alert,
            "recall_at_alert": self.recall_at_alert,
        }
        return flat | {f"recall_{kind}": v for kind, v in self.recall_by_type.items()}

    def as_json(self) -> dict[str, Any]:
        return self.as_dict() | {
            "recall_by_type": dict(self.recall_by_type),
            "anomalies_by_type": dict(self.anomalies_by_type),
        }

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> AnomalyScores:
        return cls(
            lines=int(values["lines"]),
            anomalies=int(values["anomalies"]),
            pr_auc=float(values["pr_auc"]),
            roc_auc=float(values["roc_auc"]),
            alerts=int(values["alerts"]),
            precision_at_alert=float(values["precision_at_alert"]),
            recall_at_alert=float(values["recall_at_alert"]),
            recall_by_type=dict(values.get("recall_by_type", {})),
            anomalies_by_type=dict(values.get("anomalies_by_type", {})),
        )


def alerted(scores: np.ndarray, alert_rate: float = ALERT_RATE) -> np.ndarray:
    """The ``alert_rate`` share of lines with the highest scores (ties by position)."""
    flagged = max(1, round(alert_rate * len(scores)))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[:flagged]] = True
    return mask


def score_detector(
    is_anomaly: Sequence[bool] | np.ndarray,
    anomaly_type: Sequence[Any] | np.ndarray,
    scores: np.ndarray,
    alert_rate: float = ALERT_RATE,
) -> AnomalyScores | None:
    """The scores of a detector, or None when the lines hold no labelled anomaly (or only
    anomalies): ranking metrics are undefined then."""
    y = np.asarray(is_anomaly, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if len(y) != len(s):
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if not y.any() or y.all():
        return None
    flags = alerted(s, alert_rate)
    types = pd.Series(np.asarray(anomaly_type, dtype=object)).where(y, None)
    by_type = {
        str(kind): (int((types == kind).sum()), float(flags[(types == kind).to_numpy()].mean()))
        for kind in sorted(types.dropna().unique())
    }
    return AnomalyScores(
        lines=len(y),
        anomalies=int(y.sum()),
        pr_auc=float(average_precision_score(y, s)),
        roc_auc=float(roc_auc_score(y, s)),
        alerts=int(flags.sum()),
        precision_at_alert=float(y[flags].mean()),
        recall_at_alert=float(flags[y].mean()),
        recall_by_type={kind: recall for kind, (_, recall) in by_type.items()},
        anomalies_by_type={kind: count for kind, (count, _) in by_type.items()},
    )


# --- gate ------------------------------------------------------------------------------------


def judge(
    challenger: AnomalyScores | None,
    champion: AnomalyScores | None,
    champion_version: str | None,
    baselines: dict[str, AnomalyScores],
    margin: float = PR_AUC_MARGIN,
    recall_tolerance: float = RECALL_TOLERANCE,
) -> GateDecision[AnomalyScores]:
    """A challenger replaces the champion only when it beats its PR AUC on the same test lines by
    ``margin`` without catching fewer anomalies at the alert rate (beyond ``recall_tolerance``);
    a first version must beat every baseline's PR AUC. Without labelled anomalies in the test
    window nothing can be judged, so nothing is promoted."""
    if challenger is None:
        reason = "no labelled anomaly in the test window: the gate cannot judge, nothing promoted"
        return GateDecision(False, reason, None, champion, champion_version)
    if champion_version is not None and champion is not None:
        return _against_champion(challenger, champion, champion_version, margin, recall_tolerance)
    for name, baseline in baselines.items():
        if challenger.pr_auc <= baseline.pr_auc:
            reason = (
                f"no champion yet, and the model does not beat baseline {name} "
                f"(PR AUC {challenger.pr_auc:.4f} vs {baseline.pr_auc:.4f})"
            )
            return GateDecision(False, reason, challenger, None, None)
    names = ", ".join(baselines)
    reason = f"no champion yet; the model beats every baseline ({names}) on PR AUC"
    return GateDecision(True, reason, challenger, None, None)


def _against_champion(
    challenger: AnomalyScores,
    champion: AnomalyScores,
    version: str,
    margin: float,
    recall_tolerance: float,
) -> GateDecision[AnomalyScores]:
    needed = champion.pr_auc + margin
    if challenger.pr_auc < needed:
        reason = (
            f"PR AUC {challenger.pr_auc:.4f} does not beat champion v{version}'s "
            f"{champion.pr_auc:.4f} by the margin {margin} (needs {needed:.4f})"
        )
        return GateDecision(False, reason, challenger, champion, version)
    if challenger.recall_at_alert < champion.recall_at_alert - recall_tolerance:
        reason = (
            f"recall at {ALERT_RATE:.0%} {challenger.recall_at_alert:.4f} is below champion "
            f"v{version}'s {champion.recall_at_alert:.4f} beyond the tolerance {recall_tolerance}"
        )
        return GateDecision(False, reason, challenger, champion, version)
    reason = (
        f"PR AUC {challenger.pr_auc:.4f} beats champion v{version}'s {champion.pr_auc:.4f} by "
        f"{challenger.pr_auc - champion.pr_auc:.4f}, recall at {ALERT_RATE:.0%} "
        f"{challenger.recall_at_alert:.4f} vs {champion.recall_at_alert:.4f}"
    )
    return GateDecision(True, reason, challenger, champion, version)
