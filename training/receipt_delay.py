"""The receipt-delay model: for an open purchase-order line, the 50th, 80th and 90th percentiles
of ``receipt day - expected day``, so the ERP can promise a backorder on the P80 receipt date
instead of the nominal one.

Two candidates are scored on the same test rows:

* **LightGBM quantile regression** (one booster per level, alpha 0.5/0.8/0.9, stopped early on
  the validation lines) on the ``receipt_delay`` features of :mod:`features.inbound`;
* **the supplier history** (``empirical``): the shrunk supplier x location -> supplier -> global
  empirical quantiles of :mod:`erp_core.domain.receipt_delay`, which the ERP computes itself at
  promise time and needs no model.

The split is by **line**, on its placement moment: train | validation | test (the newest lines
placed ``label_horizon_days`` or more before the history's last event, so they had time to be
received). All the rows of a line (its placement and every midnight while open, which share one
label) fall in one slice: rows of a line on both sides of a boundary would let the model read a
test label off its training rows. Lines still open at the end (no label) are dropped and counted.

Predictions are whole days (rounded), sorted so P50 <= P80 <= P90, and never earlier than the
earliest delay still possible at the row's moment (an open line overdue by 5 days is at least 5
days late). Scores: pinball loss at each level (the loss a quantile minimises) and its mean, the
coverage of each quantile (share of lines received by it: 0.80 is an honest P80) and the mean
P80 (how much later a P80 promise is). **The choice**: a candidate is *calibrated* when its P80
coverage is within 0.05 of 0.80; the lower mean pinball loss wins among the calibrated ones (or
among both, when neither is). The gate promotes a first LightGBM version only when it is the
choice; a later one only when it lowers the champion's mean pinball loss by ``PINBALL_MARGIN``
and stays calibrated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.policy import Actor, load_policy
from erp_core.services.inbound import (
    SUPPLIER_HISTORY,
    ReceiptForecast,
    record_receipt_forecasts,
    refresh_receipt_forecasts,
)
from erp_core.settings import Settings
from features.inbound import (
    DAY_US,
    LABEL,
    RECEIPT_DELAY,
    InboundHistory,
    as_moment,
    load_inbound_history,
    micros,
    open_line_rows,
    receipt_delay_frame,
)
from features.registry import FeatureSpec
from training import tracking
from training.encoding import FrameEncoder
from training.gate import GateDecision

REGISTERED_NAME = "receipt_delay"
LEVELS = (0.5, 0.8, 0.9)
MODEL = "lightgbm"
EMPIRICAL = "empirical"
COVERAGE_TOLERANCE = 0.05
"""A P80 whose coverage is within this of 0.80 is honest enough to promise by."""
PINBALL_MARGIN = 0.01
"""Days of mean pinball loss a challenger must take off the champion's to replace it."""
EMPIRICAL_COLUMNS = ("empirical_p50", "empirical_p80", "empirical_p90")

Step = Callable[[str], None]


def features() -> tuple[FeatureSpec, ...]:
    return RECEIPT_DELAY.features


# --- the estimator -----------------------------------------------------------------------------


def earliest_delay(frame: pd.DataFrame) -> np.ndarray:
    """The smallest delay still possible at each row's moment: its UTC day minus the expected
    day (``-days_to_expected``)."""
    return -frame["days_to_expected"].to_numpy(dtype=np.float64)


def as_quantiles(raw: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """Raw quantile estimates (rows x levels) as the whole-day delays a promise uses: sorted
    across levels, rounded, and cut at the earliest delay still possible."""
    ordered = np.sort(np.asarray(raw, dtype=np.float64), axis=1)
    return np.maximum(np.rint(ordered), earliest_delay(frame)[:, None])


class ReceiptDelayModel(BaseEstimator):
    """One LightGBM quantile booster per level over the encoded ``receipt_delay`` features.

    scikit-learn's contract: ``__init__`` stores, ``fit`` learns (``encoder_``, ``boosters_``,
    ``best_iterations_``) and returns ``self``; the whole thing is logged as one artefact."""

    def __init__(
        self,
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 40,
        random_state: int = 7,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state

    def fit(
        self, frame: pd.DataFrame, label: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series]
    ) -> ReceiptDelayModel:
        y = np.asarray(label, dtype=np.float64)
        if len(y) == 0 or np.isnan(y).any():
            raise InvalidValue(LABEL, "null", "every training row needs a received line's delay")
        self.encoder_ = FrameEncoder(features()).fit(frame)
        x = self.encoder_.transform(frame)
        valid_x = self.encoder_.transform(eval_set[0])
        valid_y = np.asarray(eval_set[1], dtype=np.float64)
        self.boosters_: list[lgb.Booster] = []
        self.best_iterations_: list[int] = []
        for level in LEVELS:
            params = {
                "objective": "quantile",
                "alpha": level,
                "metric": "quantile",
                "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples,
                "lambda_l2": self.reg_lambda,
                "seed": self.random_state,
                "deterministic": True,
                "force_row_wise": True,
                "num_threads": 1,
                "verbose": -1,
            }
            train_set = lgb.Dataset(
                x, y, categorical_feature=self.encoder_.categorical_indices, free_raw_data=False
            )
            valid = lgb.Dataset(valid_x, valid_y, reference=train_set)
            booster = lgb.train(
                params,
                train_set,
                num_boost_round=self.n_estimators,
                valid_sets=[valid],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
            self.boosters_.append(booster)
            self.best_iterations_.append(int(booster.best_iteration or self.n_estimators))
        return self

    def predict_quantiles(self, frame: pd.DataFrame) -> np.ndarray:
        """Whole-day delays (rows x (P50, P80, P90)); see :func:`as_quantiles`."""
        x = self.encoder_.transform(frame)
        raw = np.column_stack(
            [
                booster.predict(x, num_iteration=best)
                for booster, best in zip(self.boosters_, self.best_iterations_, strict=True)
            ]
        )
        return as_quantiles(raw, frame)


def empirical_quantiles(frame: pd.DataFrame) -> np.ndarray:
    """The supplier-history candidate: the frame's ``empirical_p*`` columns, the nominal date
    (delay 0, or the earliest still possible) where no history existed, as the ERP falls back."""
    raw = frame[list(EMPIRICAL_COLUMNS)].to_numpy(dtype=np.float64)
    return as_quantiles(np.nan_to_num(raw, nan=0.0), frame)


# --- scores --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DelayScores:
    """How good a set of quantile predictions is on one set of rows (days)."""

    rows: int
    lines: int
    pinball_p50: float
    pinball_p80: float
    pinball_p90: float
    pinball_mean: float
    coverage_p50: float
    coverage_p80: float
    coverage_p90: float
    mean_p80_days: float
    """Mean predicted P80 delay: how many days after the nominal date a P80 promise waits."""

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @property
    def calibrated(self) -> bool:
        return abs(self.coverage_p80 - 0.8) <= COVERAGE_TOLERANCE


def pinball(label: np.ndarray, predicted: np.ndarray, level: float) -> float:
    """Mean quantile loss: level x under-prediction + (1 - level) x over-prediction."""
    gap = np.asarray(label, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    return float(np.mean(np.maximum(level * gap, (level - 1) * gap)))


def score_quantiles(label: np.ndarray, quantiles: np.ndarray, line_ids: np.ndarray) -> DelayScores:
    y = np.asarray(label, dtype=np.float64)
    if len(y) == 0:
        raise InvalidValue("rows", 0, "no rows to score")
    losses = [pinball(y, quantiles[:, i], level) for i, level in enumerate(LEVELS)]
    coverage = [float(np.mean(y <= quantiles[:, i])) for i in range(len(LEVELS))]
    return DelayScores(
        rows=len(y),
        lines=len(np.unique(line_ids)),
        pinball_p50=losses[0],
        pinball_p80=losses[1],
        pinball_p90=losses[2],
        pinball_mean=float(np.mean(losses)),
        coverage_p50=coverage[0],
        coverage_p80=coverage[1],
        coverage_p90=coverage[2],
        mean_p80_days=float(np.mean(quantiles[:, 1])),
    )


def choose(scores: dict[str, DelayScores]) -> tuple[str, str]:
    """The candidate to promise by, and why (see the module docstring)."""
    calibrated = [name for name, s in scores.items() if s.calibrated]
    pool = calibrated or list(scores)
    best = min(pool, key=lambda name: (scores[name].pinball_mean, name))
    s = scores[best]
    others = ", ".join(
        f"{name} {scores[name].pinball_mean:.4f} (P80 coverage {scores[name].coverage_p80:.3f})"
        for name in scores
        if name != best
    )
    basis = (
        "the lowest mean pinball loss among the calibrated candidates"
        if calibrated
        else "no candidate is calibrated (P80 coverage within 0.05 of 0.80): the lowest mean "
        "pinball loss"
    )
    reason = (
        f"{best}: mean pinball loss {s.pinball_mean:.4f} days, P80 coverage {s.coverage_p80:.3f}; "
        f"{basis}; against {others}"
    )
    return best, reason


# --- the split --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DelaySplit:
    """Days of placements in each slice, newest last: train | validation | test."""

    validation_days: int = 14
    test_days: int = 21
    min_train_days: int = 21
    label_horizon_days: int = 42
    """Days a line placed last in the test slice is given to be received."""

    def check(self) -> None:
        for name in ("validation_days", "test_days", "min_train_days", "label_horizon_days"):
            if getattr(self, name) < 1:
                raise InvalidValue(name, getattr(self, name), "must be at least 1 day")


@dataclass(frozen=True)
class Slices:
    train: tuple[datetime, datetime]
    validation: tuple[datetime, datetime]
    test: tuple[datetime, datetime]

    def as_dict(self) -> dict[str, str]:
        return {
            name: f"{window[0].date()}..{window[1].date()}"
            for name, window in (
                ("train", self.train),
                ("validation", self.validation),
                ("test", self.test),
            )
        }


def split_slices(history: InboundHistory, split: DelaySplit) -> Slices:
    """The placement windows, or a clear error saying how much history the split needs."""
    split.check()
    lines = history.po_lines
    if lines.empty:
        raise InvalidValue("database_url", "no purchase-order lines", "nothing to learn from")
    first = _midnight(int(lines["placed_at"].min()))
    end = _midnight(history.last_moment) - timedelta(days=split.label_horizon_days - 1)
    test_start = end - timedelta(days=split.test_days)
    validation_start = test_start - timedelta(days=split.validation_days)
    needed = split.min_train_days + split.validation_days + split.test_days
    if (validation_start - first).days < split.min_train_days:
        span = (end - first).days
        raise InvalidValue(
            "window",
            f"{first.date()}..{end.date()}",
            f"spans {span} days of placements with {split.label_horizon_days} days to be "
            f"received; the split needs at least {needed} ({split.min_train_days} train + "
            f"{split.validation_days} validation + {split.test_days} test)",
        )
    return Slices((first, validation_start), (validation_start, test_start), (test_start, end))


def _midnight(us: int) -> datetime:
    return as_moment(us // DAY_US * DAY_US)


@dataclass(frozen=True)
class DelayFrame:
    frame: pd.DataFrame
    slices: Slices
    unlabelled_rows: int

    def part(self, name: str) -> pd.DataFrame:
        lo, hi = getattr(self.slices, name)
        placed = self.frame["placed_at"]
        return self.frame.loc[(placed >= lo) & (placed < hi)]


def delay_frame(history: InboundHistory, split: DelaySplit) -> DelayFrame:
    """The labelled rows of the lines placed in the split's window, with their slices."""
    slices = split_slices(history, split)
    frame = receipt_delay_frame(history, slices.train[0], as_moment(history.last_moment + 1))
    in_window = (frame["placed_at"] >= slices.train[0]) & (frame["placed_at"] < slices.test[1])
    frame = frame.loc[in_window]
    known = frame[LABEL].notna()
    result = DelayFrame(frame.loc[known].reset_index(drop=True), slices, int((~known).sum()))
    for name in ("train", "validation", "test"):
        part = result.part(name)
        if part["po_line_id"].nunique() < 5:
            raise InvalidValue(
                "window",
                Slices.as_dict(slices)[name],
                f"its {name} slice holds {part['po_line_id'].nunique()} received lines; at least "
                "5 are needed: widen the window",
            )
    return result


# --- the job -----------------------------------------------------------------------------------


@dataclass
class ReceiptDelayResult:
    """What one training run produced and where."""

    registered_name: str
    version: str
    run_id: str
    window: str
    slices: dict[str, str]
    rows: dict[str, int]
    unlabelled_rows: int
    best_iterations: list[int]
    scores: dict[str, DelayScores]
    placement_scores: dict[str, DelayScores]
    """The same scores on the placement rows alone (a line's forecast when it is ordered)."""
    chosen: str
    choice_reason: str
    gate: GateDecision | None
    seconds: dict[str, float] = field(default_factory=dict)

    def score_rows(self) -> list[dict[str, Any]]:
        return [
            {"scorer": name, "rows_at": at, **s.as_dict()}
            for at, table in (("open days", self.scores), ("placement", self.placement_scores))
            for name, s in table.items()
        ]


def train_receipt_delay(
    settings: Settings,
    *,
    database_url: str | None = None,
    split: DelaySplit | None = None,
    seed: int = 7,
    promote: bool = False,
    model_params: dict[str, Any] | None = None,
    step: Step | None = None,
) -> ReceiptDelayResult:
    """Build the frame, fit LightGBM, score it beside the supplier history on the test lines,
    log both to MLflow, register the model as the challenger and (``promote``) apply the gate."""
    announce = step or (lambda _name: None)
    url = database_url or settings.database_url
    split = split or DelaySplit()
    clock: dict[str, float] = {}

    announce("reading purchase-order history and building the receipt-delay frame")
    started = time.perf_counter()
    history = load_inbound_history(url)
    data = delay_frame(history, split)
    clock["features"] = time.perf_counter() - started

    announce("fitting LightGBM quantile boosters (P50, P80, P90)")
    started = time.perf_counter()
    train, valid, test = data.part("train"), data.part("validation"), data.part("test")
    model = ReceiptDelayModel(random_state=seed, **(model_params or {}))
    model.fit(train, train[LABEL], eval_set=(valid, valid[LABEL]))
    clock["fit"] = time.perf_counter() - started

    announce("scoring the test lines")
    predictions = {MODEL: model.predict_quantiles(test), EMPIRICAL: empirical_quantiles(test)}
    scores = _scores(test, predictions)
    at_placement = (test["as_of"] == test["placed_at"]).to_numpy()
    placement = _scores(
        test.loc[at_placement], {name: q[at_placement] for name, q in predictions.items()}
    )
    chosen, reason = choose(scores)

    announce("comparing with the champion and logging to MLflow")
    started = time.perf_counter()
    tracking.configure(settings)
    champion = _champion(test)
    run_id, version = _log_run(settings, data, model, scores, placement, chosen, reason, seed)
    decision = _apply_gate(scores, champion, version, run_id) if promote else None
    if champion is not None:
        scores["champion"] = champion[1]
    clock["mlflow"] = time.perf_counter() - started
    return ReceiptDelayResult(
        registered_name=REGISTERED_NAME,
        version=version,
        run_id=run_id,
        window=f"{data.slices.train[0].date()}..{data.slices.test[1].date()}",
        slices=data.slices.as_dict(),
        rows={name: len(data.part(name)) for name in ("train", "validation", "test")},
        unlabelled_rows=data.unlabelled_rows,
        best_iterations=list(model.best_iterations_),
        scores=scores,
        placement_scores=placement,
        chosen=chosen,
        choice_reason=reason,
        gate=decision,
        seconds={k: round(v, 2) for k, v in clock.items()},
    )


def _scores(rows: pd.DataFrame, predictions: dict[str, np.ndarray]) -> dict[str, DelayScores]:
    label = rows[LABEL].to_numpy()
    ids = rows["po_line_id"].to_numpy()
    return {name: score_quantiles(label, q, ids) for name, q in predictions.items()}


def _champion(test: pd.DataFrame) -> tuple[str, DelayScores] | None:
    current = tracking.version_by_alias(REGISTERED_NAME, tracking.CHAMPION)
    if current is None:
        return None
    model = tracking.load_model(REGISTERED_NAME, tracking.CHAMPION)
    quantiles = model.predict_quantiles(test)
    return current.version, score_quantiles(
        test[LABEL].to_numpy(), quantiles, test["po_line_id"].to_numpy()
    )


def judge(
    challenger: DelayScores,
    champion: DelayScores | None,
    champion_version: str | None,
    empirical: DelayScores,
) -> GateDecision:
    """First version: it must be the choice over the supplier history. Later: it must take
    ``PINBALL_MARGIN`` off the champion's mean pinball loss and keep an honest P80."""
    if champion is None:
        best, reason = choose({MODEL: challenger, EMPIRICAL: empirical})
        promote = best == MODEL
        prefix = "no champion yet; " + ("the model is the choice: " if promote else "")
        return GateDecision(promote, prefix + reason, challenger, None, None)
    needed = champion.pinball_mean - PINBALL_MARGIN
    if challenger.pinball_mean > needed:
        reason = (
            f"mean pinball loss {challenger.pinball_mean:.4f} does not beat champion "
            f"v{champion_version}'s {champion.pinball_mean:.4f} by {PINBALL_MARGIN} "
            f"(needs <= {needed:.4f})"
        )
        return GateDecision(False, reason, challenger, champion, champion_version)
    if not challenger.calibrated:
        reason = (
            f"P80 coverage {challenger.coverage_p80:.3f} is not within {COVERAGE_TOLERANCE} of 0.80"
        )
        return GateDecision(False, reason, challenger, champion, champion_version)
    reason = (
        f"mean pinball loss {challenger.pinball_mean:.4f} beats champion v{champion_version}'s "
        f"{champion.pinball_mean:.4f} by {champion.pinball_mean - challenger.pinball_mean:.4f}, "
        f"P80 coverage {challenger.coverage_p80:.3f}"
    )
    return GateDecision(True, reason, challenger, champion, champion_version)


def _apply_gate(
    scores: dict[str, DelayScores],
    champion: tuple[str, DelayScores] | None,
    version: str,
    run_id: str,
) -> GateDecision:

    decision = judge(
        scores[MODEL],
        champion[1] if champion else None,
        champion[0] if champion else None,
        scores[EMPIRICAL],
    )
    tracking.record_gate(REGISTERED_NAME, version, run_id, decision)
    return decision


def _log_run(
    settings: Settings,
    data: DelayFrame,
    model: ReceiptDelayModel,
    scores: dict[str, DelayScores],
    placement: dict[str, DelayScores],
    chosen: str,
    reason: str,
    seed: int,
) -> tuple[str, str]:
    import mlflow

    tracking.use_experiment(settings, REGISTERED_NAME)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {f"model.{k}": v for k, v in model.get_params().items()}
            | {"seed": seed, "label": LABEL, "levels": ",".join(str(x) for x in LEVELS)}
            | {f"slice.{k}": v for k, v in data.slices.as_dict().items()}
            | {"features.used": len(features())}
        )
        mlflow.log_metrics(
            {f"{name}_{k}": v for name, s in scores.items() for k, v in s.as_dict().items()}
            | {
                f"placement_{name}_{k}": v
                for name, s in placement.items()
                for k, v in s.as_dict().items()
            }
            | {
                f"best_iteration_p{int(level * 100)}": float(it)
                for level, it in zip(LEVELS, model.best_iterations_, strict=True)
            }
            | {f"rows_{name}": float(len(data.part(name))) for name in ("train", "test")}
        )
        mlflow.set_tags({"choice": chosen, "choice.reason": reason})
        mlflow.log_dict(
            {
                "every_day_open": {k: s.as_dict() for k, s in scores.items()},
                "placement": {k: s.as_dict() for k, s in placement.items()},
                "choice": {"chosen": chosen, "reason": reason},
            },
            "test_scores.json",
        )
        mlflow.log_dict(
            {"features": [s.name for s in features()], "label": LABEL, "set": RECEIPT_DELAY.name},
            "feature_manifest.json",
        )
        version = tracking.log_challenger(model, REGISTERED_NAME)
    return run.info.run_id, version


# --- forecasts for the ERP -----------------------------------------------------------------------


FORECASTER = Actor("erpx-receipt-forecasts", "planner")
"""Who records the forecasts: a buyer's job, the role that places purchase orders."""


def write_receipt_forecasts(
    settings: Settings, *, now: datetime, database_url: str | None = None
) -> tuple[int, str]:
    """Record the receipt forecasts of the lines open at ``now``: the ``receipt_delay``
    champion's when one exists (it passed the gate, so it beat the supplier history), else the
    supplier history's own (``erp_core.services.inbound.refresh_receipt_forecasts``). Returns how
    many were written and by which method."""
    url = database_url or settings.database_url
    uow = UnitOfWork.from_url(url, load_policy(settings.policy_path))
    try:
        tracking.configure(settings)
        champion = tracking.version_by_alias(REGISTERED_NAME, tracking.CHAMPION)
        if champion is None:
            return refresh_receipt_forecasts(uow, FORECASTER, now=now), SUPPLIER_HISTORY
        model = tracking.load_model(REGISTERED_NAME, tracking.CHAMPION)
        method = f"{REGISTERED_NAME} v{champion.version}"
        forecasts = model_forecasts(model, load_inbound_history(uow.engine), now)
        written = record_receipt_forecasts(
            uow, FORECASTER, forecasts=forecasts, now=now, method=method
        )
        return written, method
    finally:
        uow.engine.dispose()


def model_forecasts(
    model: ReceiptDelayModel, history: InboundHistory, now: datetime
) -> list[ReceiptForecast]:
    """The model's P50/P80/P90 receipt dates of the lines open at ``now``."""
    rows = open_line_rows(history, now)
    if rows.empty:
        return []
    quantiles = model.predict_quantiles(rows).astype(np.int64)
    expected = micros(now) // DAY_US + rows["days_to_expected"].to_numpy()
    return [
        ReceiptForecast(int(line_id), *(_EPOCH + timedelta(days=int(day + q)) for q in delays))
        for line_id, day, delays in zip(rows["po_line_id"], expected, quantiles, strict=True)
    ]


_EPOCH = date(1970, 1, 1)
