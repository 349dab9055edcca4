"""The margin-anomaly training job the CLI runs and the tests call: pricing frame -> split by time
-> fit (unsupervised) -> score the test window against the simulator's labels beside the
baselines -> log to MLflow -> register a challenger -> (optionally) the gate.

Pricing labels are known at entry (a price is anomalous when typed, not weeks later), so the
window runs to the last entry day: the plan's ``label_horizon_days`` is set to 0.

Labels exist only in a simulated world. A database without the simulator's truth is still
trained on (the model never reads labels) and its challenger registered, but the run says "no
labels: metrics unavailable" and the gate promotes nothing: it has nothing to judge by. The same
holds for a test window without a labelled anomaly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import and_, select

from erp_core.db.engine import make_engine
from erp_core.db.models import ApprovalRequest, OrderLine, PriceListEntry
from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from erp_core.settings import Settings
from features.build import build_feature_set
from features.truth_labels import load_pricing_truth
from training import drift, tracking
from training import margin_anomaly as ma
from training.frames import Slices, SplitPlan, TimeWindow, choose_window, split_window
from training.gate import GateDecision
from training.jobs import Step

MODEL = "model"
CHAMPION = "champion"
RULES = "rules_only"
ZSCORE = "zscore_customer_median"
PARTS = ("residual_only", "iforest_only")
"""The model's own parts scored alone: what each earns in the combination."""
MIN_TRAIN_LINES = 200
MIN_SLICE_LINES = 20
REFERENCE_PROFILE = "reference_profile.json"


@dataclass(frozen=True)
class PricingData:
    """The priced lines of a window with their slices; labels joined when the world has them."""

    frame: pd.DataFrame
    slices: Slices
    manifest_path: Path | None
    labelled: bool

    def part(self, name: str) -> pd.DataFrame:
        window: TimeWindow = getattr(self.slices, name)
        entered = self.frame["entered_at"]
        return self.frame.loc[(entered >= window.start) & (entered < window.end)]


@dataclass
class MarginTrainResult:
    """What one margin-anomaly run produced and where."""

    registered_name: str
    version: str
    run_id: str
    window: str
    slices: dict[str, str]
    rows: dict[str, int]
    labelled: bool
    anomalies: dict[str, int]
    """Labelled anomalies per slice (empty without labels)."""
    best_iteration: int
    scores: dict[str, ma.AnomalyScores]
    """Per scorer on the test window; empty when metrics are unavailable."""
    gate: GateDecision[ma.AnomalyScores] | None
    drift: dict[str, Any] | None
    seconds: dict[str, float] = field(default_factory=dict)
    score_columns: tuple[tuple[str, str], ...] = (
        ("pr_auc", "PR AUC"),
        ("roc_auc", "ROC AUC"),
        ("precision_at_alert", "precision@1%"),
        ("recall_at_alert", "recall@1%"),
    )

    @property
    def metrics_note(self) -> str | None:
        if not self.labelled:
            return "no labels: metrics unavailable (the database holds no simulator truth)"
        if not self.scores:
            return "no labelled anomaly in the test window: metrics unavailable"
        return None

    def score_rows(self) -> list[dict[str, Any]]:
        return [{"scorer": name, **s.as_dict()} for name, s in self.scores.items()]

    def recall_by_type(self) -> dict[str, dict[str, float]]:
        return {name: dict(s.recall_by_type) for name, s in self.scores.items()}


def pricing_plan(plan: SplitPlan | None) -> SplitPlan:
    """The plan with no label horizon: a price's anomaly is known when it is typed."""
    return replace(plan or SplitPlan(), label_horizon_days=0)


def train_margin_anomaly(
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
    step: Step | None = None,
) -> MarginTrainResult:
    announce = step or (lambda _name: None)
    url = database_url or settings.database_url
    plan = pricing_plan(plan)
    clock: dict[str, float] = {}
    window = choose_window(url, plan, start, end)

    announce(f"building pricing features for {window.describe()}")
    started = time.perf_counter()
    frames_dir = tracking.frames_folder(settings, "erpx-frame-")
    data = load_pricing_data(url, window, plan, calendar, frames_dir)
    clock["features"] = time.perf_counter() - started

    announce("fitting the expected-price model, residual scales and IsolationForest")
    started = time.perf_counter()
    model = fit_model(data, seed, model_params or {})
    clock["fit"] = time.perf_counter() - started

    announce("scoring the test window beside the baselines")
    started = time.perf_counter()
    test = data.part("test")
    detectors = scores_on(model, fit_baselines(data), test)
    clock["score"] = time.perf_counter() - started
    scores = measured(test, detectors) if data.labelled else {}

    announce("comparing with the champion and logging to MLflow")
    started = time.perf_counter()
    tracking.configure(settings)
    champion = _champion(test)
    champion_scores = measured(test, {CHAMPION: champion[2]}) if champion and data.labelled else {}
    moved = _drift(champion[1], test, champion[2]) if champion else None
    run_id, version = _log_run(settings, data, model, scores, detectors, window.describe(), seed)
    _log_profile(run_id, _reference_profile(data, detectors[MODEL]), moved)
    decision = None
    if promote:
        decision = _apply_gate(
            scores,
            champion_scores.get(CHAMPION),
            champion[0] if champion else None,
            version,
            run_id,
        )
    scores |= champion_scores
    clock["mlflow"] = time.perf_counter() - started
    return MarginTrainResult(
        registered_name=ma.REGISTERED_NAME,
        version=version,
        run_id=run_id,
        window=window.describe(),
        slices=data.slices.as_dict(),
        rows={name: len(data.part(name)) for name in data.slices.as_dict()},
        labelled=data.labelled,
        anomalies=(
            {name: int(data.part(name)[ma.LABEL].sum()) for name in data.slices.as_dict()}
            if data.labelled
            else {}
        ),
        best_iteration=model.best_iteration_,
        scores=scores,
        gate=decision,
        drift=moved,
        seconds={k: round(v, 2) for k, v in clock.items()},
    )


# --- data ------------------------------------------------------------------------------------


def load_pricing_data(
    url: str, window: TimeWindow, plan: SplitPlan, calendar: BusinessCalendar, folder: Path
) -> PricingData:
    """The pricing frame of the window (built, validated and written with its manifest), with
    each line's approval request at capture and, in a simulated world, its label."""
    built = build_feature_set(ma.FEATURE_SET, url, window.start, window.end, folder, calendar)
    frame = pd.read_parquet(built.frame_path)
    if frame.empty:
        raise InvalidValue("window", window.describe(), "holds no priced order lines")
    frame[ma.APPROVAL_COLUMN] = frame["line_id"].isin(approvals_at_capture(url))
    frame[ma.SUPERSEDED_COLUMN] = frame["line_id"].isin(superseded_price_lines(url, frame))
    truth = pricing_truth(url)
    if truth is not None:
        frame = frame.merge(truth, on="line_id", how="left")
        frame[ma.LABEL] = frame[ma.LABEL].fillna(False).astype(bool)
    frame = frame.sort_values(["entered_at", "line_id"], kind="mergesort").reset_index(drop=True)
    data = PricingData(frame, split_window(window, plan), built.manifest_path, truth is not None)
    _check_slices(data, window)
    return data


def approvals_at_capture(url: str) -> set[int]:
    """Lines whose discount approval was requested when they were captured (the request and the
    line share the capture's moment): known at entry, unlike the approval's decision."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(ApprovalRequest.line_id)
                .join(OrderLine, OrderLine.id == ApprovalRequest.line_id)
                .where(
                    and_(
                        ApprovalRequest.kind == "discount",
                        ApprovalRequest.requested_at <= OrderLine.entered_at,
                    )
                )
            ).scalars()
            return {int(line_id) for line_id in rows}
    finally:
        engine.dispose()


def superseded_price_lines(url: str, frame: pd.DataFrame) -> set[int]:
    """Lines typed at exactly a price their price list carried for the line's tier, SKU and
    quantity break before the entry now in force, and no longer does (a stale price list).

    Read from the price-list entries with ``valid_from`` on or before the entry day, so what the
    line is compared with was known at its entry."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            entries = pd.read_sql(
                select(
                    PriceListEntry.tier,
                    PriceListEntry.sku,
                    PriceListEntry.min_quantity,
                    PriceListEntry.unit_price,
                    PriceListEntry.valid_from,
                ),
                connection,
            )
            skus = pd.read_sql(select(OrderLine.id.label("line_id"), OrderLine.sku), connection)
    finally:
        engine.dispose()
    typed = frame.loc[
        frame["price_overridden"].astype(bool),
        ["line_id", "entered_at", "customer_tier", "line_units", "unit_price"],
    ]
    lines = typed.merge(skus, on="line_id").rename(columns={"customer_tier": "tier"})
    if lines.empty or entries.empty:
        return set()
    lines["tier"] = lines["tier"].astype(str)
    lines["day"] = pd.to_datetime(lines["entered_at"]).dt.tz_localize(None).dt.normalize()
    entries["valid_from"] = pd.to_datetime(entries["valid_from"])
    entries["unit_price"] = entries["unit_price"].astype("float64")
    known = lines.merge(entries, on=["tier", "sku"])
    known = known.loc[
        (known["min_quantity"] <= known["line_units"]) & (known["valid_from"] <= known["day"])
    ]
    if known.empty:
        return set()
    # the line's quantity break, and the entry of that break in force on the entry day
    known = known.loc[
        known["min_quantity"] == known.groupby("line_id")["min_quantity"].transform("max")
    ]
    newest = known.groupby("line_id")["valid_from"].transform("max")
    current = known.loc[known["valid_from"] == newest, ["line_id", "unit_price_y"]].rename(
        columns={"unit_price_y": "current_price"}
    )
    earlier = known.loc[known["valid_from"] < newest].merge(current, on="line_id")
    stale = (cents(earlier["unit_price_x"]) == cents(earlier["unit_price_y"])) & (
        cents(earlier["unit_price_y"]) != cents(earlier["current_price"])
    )
    return {int(line_id) for line_id in earlier.loc[stale, "line_id"]}


def cents(values: pd.Series) -> np.ndarray:
    return np.round(values.to_numpy(dtype=np.float64) * 100)


def pricing_truth(url: str) -> pd.DataFrame | None:
    """The simulator's labels, or None for a database that was never simulated into."""
    try:
        return load_pricing_truth(url)
    except InvalidValue:
        return None


def _check_slices(data: PricingData, window: TimeWindow) -> None:
    for name in ("train", "validation", "calibration", "test"):
        needed = MIN_TRAIN_LINES if name == "train" else MIN_SLICE_LINES
        lines = len(data.part(name))
        if lines < needed:
            raise InvalidValue(
                "window",
                window.describe(),
                f"its {name} slice {getattr(data.slices, name).describe()} holds {lines} priced "
                f"lines; at least {needed} are needed: widen the window",
            )


# --- fitting and scoring ---------------------------------------------------------------------


def fit_model(data: PricingData, seed: int, params: dict[str, Any]) -> ma.MarginAnomalyModel:
    model = ma.MarginAnomalyModel(random_state=seed, **params)
    return model.fit(
        data.part("train"),
        eval_set=data.part("validation"),
        calibration_set=data.part("calibration"),
    )


def fit_baselines(data: PricingData) -> dict[str, Any]:
    train = data.part("train")
    return {RULES: ma.RulesOnly().fit(train), ZSCORE: ma.CustomerMedianZ().fit(train)}


def scores_on(
    model: ma.MarginAnomalyModel, baselines: dict[str, Any], test: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Each detector's scores on the test lines: the model, its parts alone, the baselines."""
    parts = model.score_parts(test)
    return {
        MODEL: parts.score,
        PARTS[0]: parts.residual_score,
        PARTS[1]: parts.iforest_score,
        **{name: b.anomaly_score(test) for name, b in baselines.items()},
    }


def measured(test: pd.DataFrame, detectors: dict[str, np.ndarray]) -> dict[str, ma.AnomalyScores]:
    """The scores of each detector against the labels (empty when the test window has none)."""
    found = {
        name: ma.score_detector(test[ma.LABEL], test[ma.TYPE_COLUMN], s)
        for name, s in detectors.items()
    }
    return {name: s for name, s in found.items() if s is not None}


def _champion(test: pd.DataFrame) -> tuple[str, str, np.ndarray] | None:
    """The champion's version, run and scores on the challenger's test lines."""
    current = tracking.version_by_alias(ma.REGISTERED_NAME, tracking.CHAMPION)
    if current is None:
        return None
    model = tracking.load_model(ma.REGISTERED_NAME, tracking.CHAMPION)
    return current.version, current.run_id, model.anomaly_score(test)


# --- drift -----------------------------------------------------------------------------------


def _reference_profile(data: PricingData, test_scores: np.ndarray) -> dict[str, Any]:
    return {
        "features": {
            name: p.as_dict()
            for name, p in drift.profile_frame(data.part("train"), ma.features()).items()
        },
        "score": drift.profile_column("score", test_scores, categorical=False).as_dict(),
    }


def _drift(run_id: str, test: pd.DataFrame, champion_scores: np.ndarray) -> dict[str, Any] | None:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        reference = mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_PROFILE}")
    except (MlflowException, OSError):
        return None
    profiles = {name: drift.ColumnProfile.from_dict(p) for name, p in reference["features"].items()}
    features = {name: drift.psi(p, test[name]) for name, p in profiles.items() if name in test}
    return {
        "against_champion_run": run_id,
        "features": features,
        "score": drift.psi(drift.ColumnProfile.from_dict(reference["score"]), champion_scores),
        "moved": {name: drift.verdict(v) for name, v in features.items() if v >= drift.MODERATE},
    }


def _log_profile(run_id: str, reference: dict[str, Any], found: dict[str, Any] | None) -> None:
    import mlflow

    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(reference, REFERENCE_PROFILE)
        if found is not None:
            mlflow.log_dict(found, "drift.json")
            mlflow.log_metric("psi_score", found["score"])


# --- gate and MLflow -------------------------------------------------------------------------


def _apply_gate(
    scores: dict[str, ma.AnomalyScores],
    champion: ma.AnomalyScores | None,
    champion_version: str | None,
    version: str,
    run_id: str,
) -> GateDecision[ma.AnomalyScores]:

    baselines = {k: v for k, v in scores.items() if k in (RULES, ZSCORE)}
    decision = ma.judge(scores.get(MODEL), champion, champion_version, baselines)
    champion_metrics = (
        None if champion is None else {f"champion_{k}": v for k, v in champion.as_dict().items()}
    )
    tracking.record_gate(ma.REGISTERED_NAME, version, run_id, decision, champion_metrics)
    return decision


def _log_run(
    settings: Settings,
    data: PricingData,
    model: ma.MarginAnomalyModel,
    scores: dict[str, ma.AnomalyScores],
    detectors: dict[str, np.ndarray],
    window: str,
    seed: int,
) -> tuple[str, str]:
    import mlflow

    from training import plots

    tracking.use_experiment(settings, ma.REGISTERED_NAME)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {f"model.{k}": v for k, v in model.get_params().items()}
            | {"seed": seed, "window": window, "alert_rate": ma.ALERT_RATE}
            | {"labelled": data.labelled}
            | {f"slice.{k}": v for k, v in data.slices.as_dict().items()}
        )
        mlflow.log_metrics(
            {f"{name}_{k}": v for name, s in scores.items() for k, v in s.as_dict().items()}
            | {"best_iteration": float(model.best_iteration_)}
            | {f"rows_{name}": float(len(data.part(name))) for name in ("train", "test")}
            | {f"scale_{k}": v for k, v in model.scales_.items()}
        )
        if not scores:
            mlflow.set_tag("metrics", "unavailable: no labelled anomaly in the test window")
        tracking.log_manifest(data.manifest_path)
        mlflow.log_dict({name: s.as_json() for name, s in scores.items()}, "test_scores.json")
        if scores:
            outcomes = data.part("test")[ma.LABEL].to_numpy(dtype=bool)
            figure = plots.precision_recall_figure(outcomes, detectors)
            mlflow.log_figure(figure, "precision_recall.png")
            plots.close(figure)
        version = tracking.log_challenger(model, ma.REGISTERED_NAME)
    return run.info.run_id, version
