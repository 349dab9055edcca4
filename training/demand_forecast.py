"""The demand forecast: expected units of a SKU at a location on a day, known at the day's start.

It owns its label (``label_demand_units`` of the ``demand`` feature set: units asked for by the
customers whose home location it is), its estimator, its baselines, its error metrics and its gate.

**Estimator.** One LightGBM model over every SKU x location (a global model), with a Tweedie
objective: daily demand is a count with many zeros and a long right tail, which a squared loss
fits badly. The features are as of the day's midnight, so the model forecasts one day ahead; the
replenishment policy holds that daily rate flat over lead time plus review (see
``training/replenishment.py``), like every baseline here.

**Baselines** (numpy, one step ahead, each day's forecast from the days before it): the 28-day
moving average (the ``demand_mean_28d`` feature itself), Croston (smoothed size / smoothed
interval) and TSB (smoothed size x smoothed probability of demand, which decays on zero days).

**Metrics** on the test window, per series (a SKU x location pair) and pooled by the series'
intermittency class at the start of the test window:

* MASE: the series' test MAE divided by the in-sample MAE of the one-step naive forecast
  (yesterday's units) over the *training* slice, averaged over the series whose training slice
  has a non-zero naive error (series never asked for in training are counted, not scored);
* WRMSSE (M5 style): the root of the test MSE over the naive in-sample MSE, weighted by the
  series' training revenue (units x list price);
* bias: (sum of forecasts - sum of actual units) / sum of actual units (0 is unbiased, +0.1 is
  10% over-forecast).

The ORACLE is the simulator's true expected units on the same rows (a simulated world only).

**Gate.** A challenger replaces the champion only if it lowers the champion's WRMSSE on the same
newest test window by ``WRMSSE_MARGIN`` (relative) and its absolute bias is not worse than the
champion's by more than ``BIAS_TOLERANCE``. Without a champion the first version must beat every
baseline on WRMSSE. MASE is reported but does not gate: an absolute error is minimised by the
median, which for an intermittent series is 0, so MASE prefers forecasts biased towards zero (on
the small world the simulator's own expected units score a worse MASE than the 28-day average,
and a better WRMSSE); the policy needs the mean.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from erp_core.settings import Settings
from erp_core.simulate import truth
from features.build import build_feature_set
from features.registry import FeatureSpec, feature_set
from training import plots, tracking
from training.encoding import FrameEncoder
from training.frames import Slices, SplitPlan, TimeWindow, choose_window, split_window
from training.gate import GateDecision
from training.oracle import truth_folders

FEATURE_SET = "demand"
LABEL = "label_demand_units"
REGISTERED_NAME = "demand_forecast"
KEYS = ("sku", "location_id")
CLASSES = ("smooth", "erratic", "intermittent", "lumpy", "none")
ALL = "all"

WRMSSE_MARGIN = 0.01
"""Relative WRMSSE the challenger must take off the champion's (1%)."""
BIAS_TOLERANCE = 0.02
"""How much larger the challenger's absolute bias may be than the champion's."""

MODEL = "model"
MOVING_AVERAGE = "moving_average_28d"
CROSTON = "croston"
TSB = "tsb"
ORACLE = "oracle"
CHAMPION = "champion"


def features() -> tuple[FeatureSpec, ...]:
    return feature_set(FEATURE_SET).features


# --- the model -------------------------------------------------------------------------------


class DemandForecaster(RegressorMixin, BaseEstimator):
    """LightGBM (Tweedie) on the demand features, stopped early on the validation weeks.

    ``predict`` returns expected units per row (never negative)."""

    def __init__(
        self,
        n_estimators: int = 1000,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        tweedie_variance_power: float = 1.2,
        early_stopping_rounds: int = 50,
        random_state: int = 7,
        n_jobs: int = 2,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.tweedie_variance_power = tweedie_variance_power
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(
        self,
        X: pd.DataFrame,
        y: Sequence[float] | np.ndarray,
        *,
        eval_set: tuple[pd.DataFrame, Any],
    ) -> DemandForecaster:
        self.encoder_ = FrameEncoder(features()).fit(X)
        train = self._dataset(X, y)
        valid = self._dataset(eval_set[0], eval_set[1], reference=train)
        self.booster_ = lgb.train(
            self._params(),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.n_estimators)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        matrix = self.encoder_.transform(X)
        raw = self.booster_.predict(matrix, num_iteration=self.best_iteration_)
        return np.clip(np.asarray(raw, dtype=np.float64), 0.0, None)

    def _dataset(self, X: pd.DataFrame, y: Any, reference: lgb.Dataset | None = None) -> Any:
        return lgb.Dataset(
            self.encoder_.transform(X),
            label=np.asarray(y, dtype=np.float64),
            feature_name=self.encoder_.names,
            categorical_feature=self.encoder_.categorical_indices,
            reference=reference,
            free_raw_data=True,
        )

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "tweedie",
            "tweedie_variance_power": self.tweedie_variance_power,
            "metric": "tweedie",
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
        }


# --- baselines (one step ahead: the forecast of day i uses days before i) ----------------------


def croston(units: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Croston's forecast before each day: smoothed non-zero size / smoothed interval between
    non-zero days, both updated only on a day with demand. NaN before the first demand."""
    out = np.full(len(units), np.nan)
    size = interval = np.nan
    since = 1
    for i, y in enumerate(np.asarray(units, dtype=np.float64)):
        out[i] = size / interval
        if y > 0:
            if np.isnan(size):
                size, interval = y, float(since)
            else:
                size += alpha * (y - size)
                interval += alpha * (since - interval)
            since = 1
        else:
            since += 1
    return out


def tsb(units: np.ndarray, alpha: float = 0.1, beta: float = 0.1) -> np.ndarray:
    """Teunter-Syntetos-Babai before each day: smoothed probability of demand (updated every
    day, so it decays through a run of zeros) x smoothed non-zero size (updated on demand days).
    NaN before the first demand."""
    out = np.full(len(units), np.nan)
    size = probability = np.nan
    for i, y in enumerate(np.asarray(units, dtype=np.float64)):
        out[i] = probability * size
        if np.isnan(size):
            if y > 0:
                size, probability = y, 1.0
            continue
        probability += beta * ((y > 0) - probability)
        if y > 0:
            size += alpha * (y - size)
    return out


SeriesMethod = Callable[[np.ndarray], np.ndarray]


def per_series(frame: pd.DataFrame, method: SeriesMethod, fallback: str) -> np.ndarray:
    """``method`` run over each pair's label series in day order (``frame`` sorted by pair and
    day), with the ``fallback`` column where it has no forecast yet (before the first demand)."""
    units = frame[LABEL].to_numpy(dtype=np.float64)
    starts = _series_starts(frame)
    out = np.empty(len(frame))
    for begin, end in itertools.pairwise(starts):
        out[begin:end] = method(units[begin:end])
    backup = frame[fallback].to_numpy(dtype=np.float64)
    return np.where(np.isnan(out), np.nan_to_num(backup), out)


def _series_starts(frame: pd.DataFrame) -> np.ndarray:
    sku = frame["sku"].astype(str).to_numpy()
    loc = frame["location_id"].astype(str).to_numpy()
    new = np.ones(len(frame), dtype=bool)
    new[1:] = (sku[1:] != sku[:-1]) | (loc[1:] != loc[:-1])
    return np.append(np.flatnonzero(new), len(frame))


def sort_series(frame: pd.DataFrame) -> pd.DataFrame:
    keyed = frame.assign(_sku=frame["sku"].astype(str), _loc=frame["location_id"].astype(str))
    ordered = keyed.sort_values(["_sku", "_loc", "day"], kind="mergesort")
    return ordered.drop(columns=["_sku", "_loc"]).reset_index(drop=True)


# --- error metrics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastScores:
    rows: int
    series: int
    scored_series: int
    """Series with a non-zero in-sample naive error (the others cannot be scaled)."""
    mase: float
    wrmsse: float
    bias: float
    mae: float

    def as_dict(self) -> dict[str, float]:
        return {
            "rows": float(self.rows),
            "series": float(self.series),
            "scored_series": float(self.scored_series),
            "mase": self.mase,
            "wrmsse": self.wrmsse,
            "bias": self.bias,
            "mae": self.mae,
        }


@dataclass(frozen=True)
class Scaling:
    """Per series: the in-sample naive errors and weight from the training slice, and its class."""

    scale_mae: pd.Series
    scale_mse: pd.Series
    weight: pd.Series
    klass: pd.Series


def series_key(frame: pd.DataFrame) -> pd.Series:
    return frame["sku"].astype(str) + "@" + frame["location_id"].astype(str)


def scaling(train: pd.DataFrame, test: pd.DataFrame) -> Scaling:
    """In-sample one-step naive errors (yesterday's units, within the training slice) and
    training revenue per series; each test series' intermittency class on its first test day."""
    ordered = sort_series(train)
    key = series_key(ordered)
    units = ordered[LABEL].to_numpy(dtype=np.float64)
    diff = np.diff(units, prepend=np.nan)
    diff[np.r_[True, key.to_numpy()[1:] != key.to_numpy()[:-1]]] = np.nan
    naive = pd.DataFrame({"key": key, "abs": np.abs(diff), "sq": diff**2})
    grouped = naive.groupby("key", sort=False)
    revenue = pd.Series(units * ordered["list_price"].to_numpy(dtype=np.float64)).groupby(
        key.to_numpy()
    )
    first = sort_series(test).drop_duplicates(["sku", "location_id"], keep="first")
    klass = pd.Series(
        first["intermittency_class"].astype(str).to_numpy(), index=series_key(first).to_numpy()
    )
    return Scaling(grouped["abs"].mean(), grouped["sq"].mean(), revenue.sum(), klass)


def score_forecasts(test: pd.DataFrame, forecast: np.ndarray, scale: Scaling) -> dict[str, Any]:
    """The scores over all test rows and per intermittency class (``ALL`` first)."""
    key = series_key(test).to_numpy()
    klass = scale.klass.reindex(key).fillna("none").to_numpy()
    table = pd.DataFrame(
        {
            "key": key,
            "klass": klass,
            "actual": test[LABEL].to_numpy(dtype=np.float64),
            "forecast": np.asarray(forecast, dtype=np.float64),
        }
    )
    table["abs"] = (table["forecast"] - table["actual"]).abs()
    table["sq"] = (table["forecast"] - table["actual"]) ** 2
    scores = {ALL: _scores(table, scale)}
    for name in CLASSES:
        part = table.loc[table["klass"] == name]
        if len(part):
            scores[name] = _scores(part, scale)
    return scores


def _scores(table: pd.DataFrame, scale: Scaling) -> ForecastScores:
    per = table.groupby("key", sort=False).agg(mae=("abs", "mean"), mse=("sq", "mean"))
    s_mae = scale.scale_mae.reindex(per.index)
    s_mse = scale.scale_mse.reindex(per.index)
    ok = (s_mae > 0).to_numpy() & s_mae.notna().to_numpy()
    mase = float((per["mae"][ok] / s_mae[ok]).mean()) if ok.any() else float("nan")
    rmsse = np.sqrt(per["mse"][ok] / s_mse[ok])
    weight = scale.weight.reindex(per.index[ok]).fillna(0.0)
    wrmsse = (
        float((rmsse * weight).sum() / weight.sum()) if weight.sum() > 0 else float(rmsse.mean())
    )
    actual = float(table["actual"].sum())
    bias = (float(table["forecast"].sum()) - actual) / actual if actual > 0 else float("nan")
    return ForecastScores(
        rows=len(table),
        series=len(per),
        scored_series=int(ok.sum()),
        mase=mase,
        wrmsse=wrmsse if ok.any() else float("nan"),
        bias=bias,
        mae=float(table["abs"].mean()),
    )


# --- the gate --------------------------------------------------------------------------------


def judge(
    challenger: ForecastScores,
    champion: ForecastScores | None,
    champion_version: str | None,
    baselines: dict[str, ForecastScores],
    margin: float = WRMSSE_MARGIN,
    bias_tolerance: float = BIAS_TOLERANCE,
) -> GateDecision[ForecastScores]:
    if champion is None:
        for name, base in baselines.items():
            if not challenger.wrmsse < base.wrmsse:
                reason = (
                    f"no champion yet, and the model does not beat baseline {name} "
                    f"(WRMSSE {challenger.wrmsse:.4f} vs {base.wrmsse:.4f}, "
                    f"MASE {challenger.mase:.4f} vs {base.mase:.4f})"
                )
                return GateDecision(False, reason, challenger, None, None)
        names = ", ".join(baselines)
        reason = f"no champion yet; the model beats every baseline ({names}) on WRMSSE"
        return GateDecision(True, reason, challenger, None, None)
    needed = champion.wrmsse * (1 - margin)
    if not challenger.wrmsse < needed:
        reason = (
            f"WRMSSE {challenger.wrmsse:.4f} does not lower champion v{champion_version}'s "
            f"{champion.wrmsse:.4f} by {margin:.0%} (needs < {needed:.4f})"
        )
        return GateDecision(False, reason, challenger, champion, champion_version)
    if abs(challenger.bias) > abs(champion.bias) + bias_tolerance:
        reason = (
            f"bias {challenger.bias:+.4f} is worse than champion v{champion_version}'s "
            f"{champion.bias:+.4f} beyond the tolerance {bias_tolerance}"
        )
        return GateDecision(False, reason, challenger, champion, champion_version)
    reason = (
        f"WRMSSE {challenger.wrmsse:.4f} lowers champion v{champion_version}'s "
        f"{champion.wrmsse:.4f} by more than {margin:.0%}, and bias {challenger.bias:+.4f} is "
        f"within {bias_tolerance} of its {champion.bias:+.4f}"
    )
    return GateDecision(True, reason, challenger, champion, champion_version)


# --- the training job ------------------------------------------------------------------------

SCORE_COLUMNS = (("mase", "MASE"), ("wrmsse", "WRMSSE"), ("bias", "bias"), ("mae", "MAE"))


@dataclass
class DemandTrainResult:
    """What one demand-forecast run produced and where."""

    registered_name: str
    version: str
    run_id: str
    window: str
    slices: dict[str, str]
    rows: dict[str, int]
    unlabelled_rows: int
    best_iteration: int
    scores: dict[str, dict[str, ForecastScores]]
    """scorer -> ``ALL`` or an intermittency class -> scores on the test window."""
    oracle_rows: int
    gate: GateDecision[ForecastScores] | None
    drift: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    score_columns: tuple[tuple[str, str], ...] = SCORE_COLUMNS

    def score_rows(self) -> list[dict[str, Any]]:
        return [
            {"scorer": name, "lines": by_class[ALL].rows, **by_class[ALL].as_dict()}
            for name, by_class in self.scores.items()
        ]

    def class_rows(self) -> list[dict[str, Any]]:
        return [
            {"scorer": name, "class": klass, **s.as_dict()}
            for name, by_class in self.scores.items()
            for klass, s in by_class.items()
        ]


@dataclass(frozen=True)
class DemandFrame:
    frame: pd.DataFrame
    """Labelled rows sorted by pair and day."""
    slices: Slices
    manifest_path: Path | None
    unlabelled_rows: int

    def part(self, name: str) -> pd.DataFrame:
        window: TimeWindow = getattr(self.slices, name)
        day = self.frame["day"]
        return self.frame.loc[(day >= window.start) & (day < window.end)]


def demand_plan(plan: SplitPlan | None) -> SplitPlan:
    """A day's demand is known once the day is over: one day of label horizon, not 21."""
    return replace(plan or SplitPlan(), label_horizon_days=1)


def load_demand_frame(
    database_url: str,
    window: TimeWindow,
    plan: SplitPlan,
    calendar: BusinessCalendar,
    frames_dir: Path,
) -> DemandFrame:
    """The demand frame of the window with known labels, sorted by pair and day, split by time;
    every slice must hold rows with demand."""
    built = build_feature_set(
        FEATURE_SET, database_url, window.start, window.end, frames_dir, calendar
    )
    frame = pd.read_parquet(built.frame_path)
    known = frame[LABEL].notna()
    data = DemandFrame(
        frame=sort_series(frame.loc[known]),
        slices=split_window(window, plan),
        manifest_path=built.manifest_path,
        unlabelled_rows=int((~known).sum()),
    )
    for name in ("train", "validation", "calibration", "test"):
        part = data.part(name)
        if part.empty or float(part[LABEL].sum()) <= 0:
            raise InvalidValue(
                "window",
                window.describe(),
                f"its {name} slice {getattr(data.slices, name).describe()} holds {len(part)} "
                "SKU-location days and no demand; widen the window",
            )
    return data


def train_demand_forecast(
    settings: Settings,
    calendar: BusinessCalendar,
    *,
    database_url: str | None = None,
    start: date | None = None,
    end: date | None = None,
    plan: SplitPlan | None = None,
    seed: int = 7,
    promote: bool = False,
    model_params: dict[str, Any] | None = None,
    step: Callable[[str], None] | None = None,
) -> DemandTrainResult:
    """Train, compare with the baselines and the oracle, log, register a challenger and (with
    ``promote``) apply the gate. The validation and calibration weeks together stop the
    boosting (the forecast has no calibrator); the test weeks are scored."""
    announce = step or (lambda _name: None)
    url = database_url or settings.database_url
    plan = demand_plan(plan)
    clock: dict[str, float] = {}
    window = choose_window(url, plan, start, end)

    announce(f"building demand features for {window.describe()}")
    started = time.perf_counter()
    frames_dir = tracking.frames_folder(settings, "erpx-demand-")
    data = load_demand_frame(url, window, plan, calendar, frames_dir)
    clock["features"] = time.perf_counter() - started

    announce("fitting LightGBM (Tweedie, early stopping on the validation weeks)")
    started = time.perf_counter()
    train = data.part("train")
    stop = pd.concat([data.part("validation"), data.part("calibration")])
    model = DemandForecaster(random_state=seed, **(model_params or {}))
    model.fit(train, train[LABEL], eval_set=(stop, stop[LABEL]))
    clock["fit"] = time.perf_counter() - started

    announce("scoring the test window: model, baselines, oracle")
    started = time.perf_counter()
    test = data.part("test")
    forecasts = {MODEL: model.predict(test)} | baseline_forecasts(data.frame, test.index)
    scale = scaling(train, test)
    oracle, oracle_rows = oracle_forecast(url, test)
    if oracle is not None:
        forecasts[ORACLE] = oracle
    scores = {name: score_forecasts(test, f, scale) for name, f in forecasts.items()}
    clock["baselines"] = time.perf_counter() - started

    announce("comparing with the champion and logging to MLflow")
    started = time.perf_counter()
    tracking.configure(settings)
    champion = _champion(test, scale)
    run_id, version = _log_run(settings, data, model, scores, forecasts, test, window, seed)
    decision = _apply_gate(scores, champion, version, run_id) if promote else None
    if champion is not None:
        scores[CHAMPION] = champion[1]
    clock["mlflow"] = time.perf_counter() - started
    return DemandTrainResult(
        registered_name=REGISTERED_NAME,
        version=version,
        run_id=run_id,
        window=window.describe(),
        slices=data.slices.as_dict(),
        rows={name: len(data.part(name)) for name in data.slices.as_dict()},
        unlabelled_rows=data.unlabelled_rows,
        best_iteration=model.best_iteration_,
        scores=scores,
        oracle_rows=oracle_rows,
        gate=decision,
        seconds={k: round(v, 2) for k, v in clock.items()},
    )


def baseline_forecasts(frame: pd.DataFrame, rows: pd.Index) -> dict[str, np.ndarray]:
    """The baselines' one-step forecasts for ``rows`` of the sorted frame, each series run
    from its first row (so the test days' smoothing has the whole history behind it)."""
    fallback = "demand_mean_28d"
    return {
        MOVING_AVERAGE: frame.loc[rows, fallback].to_numpy(dtype=np.float64),
        CROSTON: per_series(frame, croston, fallback)[rows],
        TSB: per_series(frame, tsb, fallback)[rows],
    }


def true_expected_units(database_url: str) -> pd.DataFrame | None:
    """The simulator's expected units per day, SKU and location (None for a real history)."""
    parts = [
        pd.read_parquet(folder / truth.DEMAND)
        for folder in truth_folders(database_url)
        if (folder / truth.DEMAND).is_file()
    ]
    if not parts:
        return None
    found = pd.concat(parts, ignore_index=True)
    found["day"] = pd.to_datetime(found["day"]).dt.date
    return found.drop_duplicates(["day", "sku", "location_id"], keep="last")


def oracle_forecast(database_url: str, rows: pd.DataFrame) -> tuple[np.ndarray | None, int]:
    """The true expected units of each row, when the truth covers (nearly) all of them."""
    found = true_expected_units(database_url)
    if found is None:
        return None, 0
    keys = pd.DataFrame(
        {
            "day": rows["day"].dt.date.to_numpy(),
            "sku": rows["sku"].astype(str).to_numpy(),
            "location_id": rows["location_id"].astype(str).to_numpy(),
        }
    )
    joined = keys.merge(found, on=["day", "sku", "location_id"], how="left")
    values = joined["expected_units"].to_numpy(dtype=np.float64)
    known = int((~np.isnan(values)).sum())
    if known < len(values) * 0.99:
        return None, known
    return np.nan_to_num(values), known


def _champion(test: pd.DataFrame, scale: Scaling) -> tuple[str, dict[str, ForecastScores]] | None:
    current = tracking.version_by_alias(REGISTERED_NAME, tracking.CHAMPION)
    if current is None:
        return None
    model = tracking.load_model(REGISTERED_NAME, tracking.CHAMPION)
    return current.version, score_forecasts(test, model.predict(test), scale)


def _apply_gate(
    scores: dict[str, dict[str, ForecastScores]],
    champion: tuple[str, dict[str, ForecastScores]] | None,
    version: str,
    run_id: str,
) -> GateDecision[ForecastScores]:

    baselines = {k: v[ALL] for k, v in scores.items() if k in (MOVING_AVERAGE, CROSTON, TSB)}
    decision = judge(
        scores[MODEL][ALL],
        champion[1][ALL] if champion else None,
        champion[0] if champion else None,
        baselines,
    )
    champion_metrics = (
        None
        if champion is None
        else {f"champion_{k}": v for k, v in champion[1][ALL].as_dict().items()}
        | {"champion_version": float(champion[0])}
    )
    tracking.record_gate(REGISTERED_NAME, version, run_id, decision, champion_metrics)
    return decision


def _log_run(
    settings: Settings,
    data: DemandFrame,
    model: DemandForecaster,
    scores: dict[str, dict[str, ForecastScores]],
    forecasts: dict[str, np.ndarray],
    test: pd.DataFrame,
    window: TimeWindow,
    seed: int,
) -> tuple[str, str]:
    import mlflow

    tracking.use_experiment(settings, REGISTERED_NAME)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {f"model.{k}": v for k, v in model.get_params().items()}
            | {"seed": seed, "window": window.describe(), "label": LABEL}
            | {"mase_scale": "in-sample one-step naive MAE over the training slice"}
            | {f"slice.{k}": v for k, v in data.slices.as_dict().items()}
        )
        mlflow.log_metrics(
            {
                f"{name}_{klass}_{k}": v
                for name, by_class in scores.items()
                for klass, s in by_class.items()
                for k, v in s.as_dict().items()
                if np.isfinite(v)
            }
            | {"best_iteration": float(model.best_iteration_)}
            | {f"rows_{name}": float(len(data.part(name))) for name in ("train", "test")}
        )
        tracking.log_manifest(data.manifest_path)
        mlflow.log_dict(
            {n: {c: s.as_dict() for c, s in b.items()} for n, b in scores.items()},
            "test_scores.json",
        )
        figure = daily_totals_figure(test, forecasts)
        mlflow.log_figure(figure, "test_daily_totals.png")
        plots.close(figure)
        version = tracking.log_challenger(model, REGISTERED_NAME)
    return run.info.run_id, version


def daily_totals_figure(test: pd.DataFrame, forecasts: dict[str, np.ndarray]) -> Any:
    """Units per day over the test window, all pairs summed: actual and every forecast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    day = test["day"].to_numpy()
    totals = pd.DataFrame({"day": day, "actual": test[LABEL].to_numpy(dtype=np.float64)})
    for name, values in forecasts.items():
        totals[name] = values
    daily = totals.groupby("day").sum()
    axes.plot(daily.index, daily["actual"], color="black", linewidth=2, label="actual")
    for name in forecasts:
        axes.plot(daily.index, daily[name], linewidth=1, label=name)
    axes.set_ylabel("units per day (all SKU x location)")
    axes.set_title("test window: demand and one-day-ahead forecasts")
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    return figure
