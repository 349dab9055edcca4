"""The models the API serves: each registered model's ``champion`` (and ``challenger``, scored in
the shadow), loaded once at start and on an admin's reload.

A model that is missing or fails to load is not an error of the API: scoring answers from the
fallback and says so (``"model": "fallback"``, ``/readyz`` degraded). A reload that cannot load a
new champion keeps the one already serving and reports why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from erp_core.settings import Settings
from training import tracking
from training.late_shipment import REGISTERED_NAME as LATE_SHIPMENT
from training.margin_anomaly import REGISTERED_NAME as MARGIN_ANOMALY

log = logging.getLogger("erpx.serving")

SERVED = (LATE_SHIPMENT, MARGIN_ANOMALY)
"""The registered models order scoring uses (the demand forecast serves the report)."""
FALLBACK = "fallback"


@dataclass(frozen=True)
class ServedModel:
    """One loaded version and what a caller of ``GET /v1/models`` wants to know of it."""

    name: str
    alias: str
    version: str
    run_id: str
    estimator: Any = field(repr=False)
    registered_at: datetime
    loaded_at: datetime
    window: str | None
    test_metrics: dict[str, float]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "run_id": self.run_id,
            "registered_at": self.registered_at.isoformat(),
            "loaded_at": self.loaded_at.isoformat(),
            "window": self.window,
            "test_metrics": self.test_metrics,
        }


@dataclass(frozen=True)
class ModelSet:
    """The champions and challengers being served, and why any of them is not."""

    champions: dict[str, ServedModel] = field(default_factory=dict)
    challengers: dict[str, ServedModel] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    """Model name -> why its champion is not served (missing, failed to load)."""

    def champion(self, name: str) -> ServedModel | None:
        return self.champions.get(name)

    @property
    def degraded(self) -> bool:
        return any(name not in self.champions for name in SERVED)


def load_models(settings: Settings, previous: ModelSet | None = None) -> ModelSet:
    """Every served model's champion and challenger from the registry.

    With ``previous`` (a reload), a champion that cannot be loaded now keeps its previous
    version in service, and the problem is reported beside it.
    """
    try:
        tracking.configure(settings)
    except Exception as error:  # an unreachable tracking store must not stop the API
        log.warning("model registry unavailable: %s", error)
        problem = f"model registry unavailable: {_short(error)}"
        kept = previous or ModelSet()
        return replace(kept, problems={name: problem for name in SERVED})
    champions: dict[str, ServedModel] = {}
    challengers: dict[str, ServedModel] = {}
    problems: dict[str, str] = {}
    for name in SERVED:
        champion, problem = _load(name, tracking.CHAMPION)
        if champion is None and previous is not None and name in previous.champions:
            champion = previous.champions[name]
            problem = f"{problem}; version {champion.version} kept in service"
        if champion is not None:
            champions[name] = champion
        if problem:
            problems[name] = problem
        challenger, _ = _load(name, tracking.CHALLENGER)
        if challenger is not None and (champion is None or challenger.version != champion.version):
            challengers[name] = challenger
    return ModelSet(champions, challengers, problems)


def _load(name: str, alias: str) -> tuple[ServedModel | None, str | None]:
    try:
        registered = tracking.version_by_alias(name, alias)
    except Exception as error:
        return None, f"registry lookup failed: {_short(error)}"
    if registered is None:
        return None, f"no {alias} registered"
    started = time.perf_counter()
    try:
        estimator = tracking.load_model(name, alias)
        _check_estimator(name, estimator)
        _warm(name, estimator)
    except Exception as error:
        log.warning("%s@%s v%s failed to load: %s", name, alias, registered.version, error)
        return None, f"version {registered.version} failed to load: {_short(error)}"
    window, metrics = _run_facts(registered.run_id)
    log.info(
        "loaded %s@%s v%s in %.1f s",
        name,
        alias,
        registered.version,
        time.perf_counter() - started,
    )
    return (
        ServedModel(
            name=name,
            alias=alias,
            version=registered.version,
            run_id=registered.run_id,
            estimator=estimator,
            registered_at=datetime.fromtimestamp(registered.created_ms / 1000, tz=UTC),
            loaded_at=datetime.now(UTC),
            window=window,
            test_metrics=metrics,
        ),
        None,
    )


def _check_estimator(name: str, estimator: Any) -> None:
    """Refuse an artefact that unpickled into something the scoring path cannot use."""
    needed = ("encoder_", "probability") if name == LATE_SHIPMENT else ("anomaly_score", "reasons")
    missing = [attribute for attribute in needed if not hasattr(estimator, attribute)]
    if missing:
        raise TypeError(f"{type(estimator).__name__} lacks {', '.join(missing)}")


def _warm(name: str, estimator: Any) -> None:
    """Score one empty row the way a request does, before any request: a champion that cannot
    is refused at load (it would fail every score), and the late-shipment model works out its
    reason-code tables here (~0.1 s) instead of on the first customer's order."""
    if name != LATE_SHIPMENT:
        return
    row = np.full((1, len(estimator.encoder_.names)), np.nan)
    estimator.score_rows(row, num_threads=1)


def _run_facts(run_id: str) -> tuple[str | None, dict[str, float]]:
    """The training window and the model's own test metrics, from its MLflow run."""
    from mlflow import MlflowClient

    try:
        run = MlflowClient().get_run(run_id)
    except Exception:
        return None, {}
    metrics = {
        key.removeprefix("model_"): float(value)
        for key, value in run.data.metrics.items()
        if key.startswith("model_") or key == "auc_ratio_to_oracle"
    }
    return run.data.params.get("window"), metrics


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
