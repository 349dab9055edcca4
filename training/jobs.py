"""The training job the CLI runs and the tests call: frame -> split by time -> fit -> compare with
baselines and oracle -> log to MLflow -> register a challenger -> (optionally) the gate.

Every score in the printed table is measured on the same test rows in the same run, so "better
than the baselines" and "x% of the oracle" are comparisons, not recollections.

Features the history could not compute (imported history without purchase orders, say: the
frame's ``unavailable`` features) are left out of the model and the logistic baseline, and the
history baseline is not fitted when its rate is one of them; the run records which and why
(param ``features.left_out``, a ``feature_unavailable.<name>`` tag each, ``left_out.json``) and
so does the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from erp_core.domain.calendar import BusinessCalendar
from erp_core.settings import Settings
from features.registry import FeatureSpec
from training import drift, tracking
from training import late_shipment as ls
from training.frames import SplitPlan, TrainingFrame, choose_window, load_training_frame
from training.gate import GateDecision, GateTerms, judge
from training.metrics import ClassifierScores, oracle_auc_ratio, score_classifier
from training.oracle import true_late_probability

Step = Callable[[str], None]

MODEL = "model"
ORACLE = "oracle"
CHAMPION = "champion"


@dataclass
class TrainResult:
    """What one training run produced and where."""

    registered_name: str
    version: str
    run_id: str
    window: str
    slices: dict[str, str]
    rows: dict[str, int]
    unlabelled_rows: int
    trees: dict[str, int]
    """Trees kept after early stopping, per booster: the label it learnt (one per hazard)."""
    scores: dict[str, ClassifierScores]
    oracle_lines: int
    auc_ratio: float | None
    gate: GateDecision | None
    drift: dict[str, Any] | None
    """PSI of each feature and of the score on the test window against the champion's
    training profile (None without a champion)."""
    seconds: dict[str, float] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    """Features the model was trained without, because the history could not compute them ->
    why (declared order)."""

    def score_rows(self) -> list[dict[str, Any]]:
        return [{"scorer": name, **s.as_dict()} for name, s in self.scores.items()]


def train_late_shipment(
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
    engine: str = "pandas",
    scheduler: str | None = None,
    target: str = "delivery",
) -> TrainResult:
    """Train, compare, log and register the late-shipment model. ``engine="dask"`` builds the
    frame and grows the trees on the Dask scheduler at ``scheduler`` (a local cluster when
    None); everything after (calibration, scoring, MLflow) is the same."""
    announce = step or (lambda _name: None)
    aim = ls.target(target)
    url = database_url or settings.database_url
    plan = plan or SplitPlan()
    clock: dict[str, float] = {}
    window = choose_window(url, plan, start, end)

    announce(f"building features for {window.describe()}")
    started = time.perf_counter()
    frames_dir = tracking.frames_folder(settings, "erpx-frame-")
    data = load_training_frame(
        ls.FEATURE_SET,
        aim.label,
        url,
        window,
        plan,
        calendar,
        frames_dir=frames_dir,
        engine=engine,
        scheduler=scheduler,
    )
    clock["features"] = time.perf_counter() - started

    announce("fitting LightGBM (early stopping on the validation weeks) and calibrating")
    started = time.perf_counter()
    model = (
        _fit_on_dask(data, seed, model_params or {}, scheduler, aim)
        if engine == "dask"
        else _fit_model(data, seed, model_params or {}, aim)
    )
    clock["fit"] = time.perf_counter() - started

    announce("fitting the baselines")
    started = time.perf_counter()
    baselines = _fit_baselines(data, seed, aim)
    clock["baselines"] = time.perf_counter() - started

    announce("scoring the test window")
    test = data.part("test")
    outcomes = test[aim.label].to_numpy(dtype=bool)
    probabilities = {MODEL: model.predict_proba(test)[:, 1]}
    probabilities |= {name: b.predict_proba(test)[:, 1] for name, b in baselines.items()}
    scores = {name: score_classifier(outcomes, p) for name, p in probabilities.items()}
    oracle_scores, oracle_lines = _oracle(url, test, outcomes, aim.oracle_column)
    if oracle_scores is not None:
        scores[ORACLE] = oracle_scores
    ratio = (
        oracle_auc_ratio(scores[MODEL].roc_auc, oracle_scores.roc_auc) if oracle_scores else None
    )

    announce("comparing with the champion and logging to MLflow")
    started = time.perf_counter()
    tracking.configure(settings)
    reference = _reference_profile(data, probabilities[MODEL], model.used_features())
    champion = _champion(test, outcomes, aim.registered_name)
    moved = _drift(champion, test) if champion else None
    run_id, version = _log_run(
        settings, aim, data, model, scores, probabilities, outcomes, window.describe(), seed
    )
    _log_profiles(run_id, reference, moved)
    decision = None
    if promote:
        decision = _apply_gate(scores, champion, version, run_id, aim.registered_name)
    if champion is not None:
        scores[CHAMPION] = champion.scores
    clock["mlflow"] = time.perf_counter() - started
    return TrainResult(
        registered_name=aim.registered_name,
        version=version,
        run_id=run_id,
        window=window.describe(),
        slices=data.slices.as_dict(),
        rows={name: len(data.part(name)) for name in data.slices.as_dict()},
        unlabelled_rows=data.unlabelled_rows,
        trees=_trees(model, aim),
        scores=scores,
        oracle_lines=oracle_lines,
        auc_ratio=ratio,
        gate=decision,
        drift=moved,
        seconds={k: round(v, 2) for k, v in clock.items()},
        left_out=dict(data.unavailable),
    )


def _fit_model(
    data: TrainingFrame, seed: int, params: dict[str, Any], aim: ls.Target = ls.DELIVERY
) -> ls.LateShipmentModel:
    """The target's model: one booster per hazard (or one on its label), calibrated on the
    target's own label."""
    train, valid, calib = data.part("train"), data.part("validation"), data.part("calibration")
    label = aim.label
    model = ls.LateShipmentModel(
        random_state=seed, left_out=left_out(data), hazards=aim.hazards, **params
    )
    return model.fit(
        train,
        train[label],
        eval_set=(valid, valid[label]),
        calibration_set=(calib, calib[label]),
    )


def _fit_on_dask(
    data: TrainingFrame,
    seed: int,
    params: dict[str, Any],
    scheduler: str | None,
    aim: ls.Target,
) -> ls.LateShipmentModel:
    from training.dask_training import dask_client, fit_on_dask

    with dask_client(scheduler) as client:
        return fit_on_dask(data, seed, {"left_out": left_out(data), **params}, client, aim)


def _trees(model: ls.LateShipmentModel, aim: ls.Target) -> dict[str, int]:
    return dict(zip(aim.hazards or (aim.label,), model.trees_, strict=True))


def left_out(data: TrainingFrame) -> tuple[str, ...]:
    """The features the model is fitted without: those the frame's history could not compute."""
    return tuple(data.unavailable)


def _fit_baselines(data: TrainingFrame, seed: int, aim: ls.Target = ls.DELIVERY) -> dict[str, Any]:
    """The history baseline (unless its rate is unavailable: null on every line, it would score
    nothing) and the logistic regression on the features the model reads."""
    train = data.part("train")
    fitted: dict[str, Any] = {}
    if aim.history_feature not in data.unavailable:
        fitted[aim.history_baseline] = ls.LaneRateBaseline(aim.history_feature).fit(train)
    fitted["logistic"] = ls.logistic_baseline(seed, left_out(data)).fit(
        train, train[aim.label].astype(int)
    )
    return fitted


def _oracle(
    url: str, test: pd.DataFrame, outcomes: np.ndarray, column: str = ls.DELIVERY.oracle_column
) -> tuple[ClassifierScores | None, int]:
    """The simulator's own probabilities on the test lines that have them (all of them, for a
    simulated world; none for a real history)."""
    truth = true_late_probability(url, column)
    if truth is None:
        return None, 0
    p = test["line_id"].map(truth).to_numpy(dtype=np.float64)
    known = ~np.isnan(p)
    if known.sum() < len(p) * 0.99:
        return None, int(known.sum())
    return score_classifier(outcomes[known], p[known]), int(known.sum())


@dataclass(frozen=True)
class Champion:
    """The current champion, scored on the challenger's test rows."""

    version: str
    run_id: str
    scores: ClassifierScores
    probabilities: np.ndarray


def _champion(test: pd.DataFrame, outcomes: np.ndarray, name: str) -> Champion | None:
    current = tracking.version_by_alias(name, tracking.CHAMPION)
    if current is None:
        return None
    model = tracking.load_model(name, tracking.CHAMPION)
    p = model.predict_proba(test)[:, 1]
    return Champion(current.version, current.run_id, score_classifier(outcomes, p), p)


REFERENCE_PROFILE = "reference_profile.json"


def _reference_profile(
    data: TrainingFrame,
    test_probabilities: np.ndarray,
    specs: tuple[FeatureSpec, ...] | None = None,
) -> dict[str, Any]:
    """What the model was trained on (its features, ``specs``: by default every declared one,
    over the train slice) and the scores it gave on its test window: the reference later
    windows are compared with."""
    read = ls.features() if specs is None else specs
    return {
        "features": {
            name: p.as_dict() for name, p in drift.profile_frame(data.part("train"), read).items()
        },
        "score": drift.profile_column("p_late", test_probabilities, categorical=False).as_dict(),
    }


def _drift(champion: Champion, test: pd.DataFrame) -> dict[str, Any] | None:
    """PSI of the newest window against the champion's reference (None when the champion was
    logged without one)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        reference = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/{REFERENCE_PROFILE}")
    except (MlflowException, OSError):  # a run logged without a profile: drift is unknown
        return None
    profiles = {name: drift.ColumnProfile.from_dict(p) for name, p in reference["features"].items()}
    score = drift.ColumnProfile.from_dict(reference["score"])
    features = {
        name: drift.psi(profile, test[name]) for name, profile in profiles.items() if name in test
    }
    return {
        "against_champion_version": champion.version,
        "features": features,
        "score": drift.psi(score, champion.probabilities),
        "moved": {name: drift.verdict(v) for name, v in features.items() if v >= drift.MODERATE},
    }


def _log_profiles(run_id: str, reference: dict[str, Any], found: dict[str, Any] | None) -> None:
    import mlflow

    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(reference, REFERENCE_PROFILE)
        if found is not None:
            mlflow.log_dict(found, "drift.json")
            mlflow.log_metrics(
                {"psi_score": found["score"], "psi_max_feature": max(found["features"].values())}
            )


def _apply_gate(
    scores: dict[str, ClassifierScores],
    champion: Champion | None,
    version: str,
    run_id: str,
    name: str,
) -> GateDecision:

    baselines = {k: v for k, v in scores.items() if k not in (MODEL, ORACLE, CHAMPION)}
    terms = GateTerms(ls.AUC_MARGIN, ls.ECE_TOLERANCE)
    decision = judge(
        scores[MODEL],
        champion.scores if champion else None,
        champion.version if champion else None,
        baselines,
        terms,
    )
    champion_metrics = (
        None
        if champion is None
        else {f"champion_{k}": v for k, v in champion.scores.as_dict().items()}
        | {"champion_version": float(champion.version)}
    )
    tracking.record_gate(name, version, run_id, decision, champion_metrics)
    return decision


def _log_run(
    settings: Settings,
    aim: ls.Target,
    data: TrainingFrame,
    model: ls.LateShipmentModel,
    scores: dict[str, ClassifierScores],
    probabilities: dict[str, np.ndarray],
    outcomes: np.ndarray,
    window: str,
    seed: int,
) -> tuple[str, str]:
    import mlflow

    from training import plots

    tracking.use_experiment(settings, aim.registered_name)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {f"model.{k}": v for k, v in model.get_params().items() if k != "left_out"}
            | {"seed": seed, "window": window, "label": aim.label, "target": aim.name}
            | {f"slice.{k}": v for k, v in data.slices.as_dict().items()}
            | {
                "features.used": len(model.used_features()),
                "features.left_out": ",".join(data.unavailable) or "none",
            }
        )
        mlflow.set_tags(
            {f"feature_unavailable.{name}": reason for name, reason in data.unavailable.items()}
        )
        mlflow.log_dict(dict(data.unavailable), "left_out.json")
        mlflow.log_metrics(
            {f"{name}_{k}": v for name, s in scores.items() for k, v in s.as_dict().items()}
            | {f"trees.{label}": float(n) for label, n in _trees(model, aim).items()}
            | {f"rows_{name}": float(len(data.part(name))) for name in ("train", "test")}
        )
        if ORACLE in scores:
            mlflow.log_metric(
                "auc_ratio_to_oracle",
                oracle_auc_ratio(scores[MODEL].roc_auc, scores[ORACLE].roc_auc),
            )
        tracking.log_manifest(data.manifest_path)
        mlflow.log_dict({name: s.as_dict() for name, s in scores.items()}, "test_scores.json")
        drawn = {k: v for k, v in probabilities.items()}
        for name, figure in (
            ("calibration.png", plots.calibration_figure(outcomes, drawn)),
            ("precision_recall.png", plots.precision_recall_figure(outcomes, drawn)),
            ("lift.png", plots.lift_figure(outcomes, drawn)),
        ):
            mlflow.log_figure(figure, name)
            plots.close(figure)
        version = tracking.log_challenger(model, aim.registered_name)
    return run.info.run_id, version
