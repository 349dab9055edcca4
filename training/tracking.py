"""MLflow, reached one way: the tracking store and artifact root from the settings, an experiment
per registered model, and the registry's ``champion``/``challenger`` aliases.

``mlflow`` is imported only here and only when a function runs (importing it costs about a
second), so commands that never train stay quick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erp_core.domain.errors import InvalidValue
from erp_core.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]
    created_ms: int
    tags: dict[str, str]


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' store (creating the local folders a file-backed store
    needs) and return the tracking URI."""
    import mlflow

    quiet_mlflow()
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def quiet_mlflow() -> None:
    """MLflow narrates table migrations and warns on every pickled model; the commands print
    their own summary, and the pickle is ours (a scikit-learn estimator holding a booster)."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)


def use_experiment(settings: Settings, name: str) -> str:
    """The experiment named after the model, created with its artifacts under the settings'
    artifact root (so a local run never writes into the working directory's ``mlruns``)."""
    import mlflow

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        mlflow.set_experiment(experiment_id=existing.experiment_id)
        return str(existing.experiment_id)
    root = artifact_root(settings)
    experiment_id = mlflow.create_experiment(name, artifact_location=root)
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def artifact_root(settings: Settings) -> str:
    root = settings.mlflow_artifact_root
    if "://" in root:
        return root
    path = Path(root).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def version_by_alias(name: str, alias: str) -> RegisteredVersion | None:
    """The version an alias points at, or None when the model or the alias does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if alias not in ALIASES:
        raise InvalidValue("alias", alias, f"unknown alias (known: {', '.join(ALIASES)})")
    try:
        found = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return _registered(found)


def set_alias(name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, version)


def record_gate(
    name: str,
    version: str,
    run_id: str,
    decision: Any,
    champion_metrics: Mapping[str, float] | None = None,
) -> None:
    """Log a gate's decision on the challenger's run (its tags, ``gate.json`` and, when there
    was one, the champion's scores it was judged against) and move the champion alias to the
    challenger when the gate promotes it: the same record for every model."""
    import mlflow

    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags({"gate.promoted": str(decision.promote), "gate.reason": decision.reason})
        if champion_metrics is not None:
            mlflow.log_metrics(dict(champion_metrics))
        mlflow.log_dict(decision.as_dict(), "gate.json")
    if decision.promote:
        set_alias(name, CHAMPION, version)


def _registered(found: Any) -> RegisteredVersion:
    return RegisteredVersion(
        name=found.name,
        version=str(found.version),
        run_id=str(found.run_id),
        aliases=tuple(found.aliases or ()),
        created_ms=int(found.creation_timestamp or 0),
        tags=dict(found.tags or {}),
    )


def load_model(name: str, alias: str) -> Any:
    """The estimator an alias points at, as it was logged."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(f"models:/{name}@{alias}")


def frames_folder(settings: Settings, prefix: str) -> Path:
    """A fresh folder under the settings' var dir for a run's feature frame and manifest."""
    import tempfile

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=settings.var_dir))


def log_manifest(manifest_path: Path | None) -> None:
    """The feature manifest of the frame the run learned from, into the active run."""
    import json

    import mlflow

    if manifest_path is not None:
        mlflow.log_dict(json.loads(manifest_path.read_text()), "feature_manifest.json")


def log_challenger(model: Any, name: str) -> str:
    """Log the estimator into the active run, register it under ``name`` and point the
    ``challenger`` alias at the new version, which is returned."""
    import mlflow.sklearn

    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=name,
        pip_requirements=pinned_requirements(),
        serialization_format="cloudpickle",
    )
    version = str(info.registered_model_version)
    set_alias(name, CHALLENGER, version)
    return version


def pinned_requirements() -> list[str]:
    """Pinned from this environment, so MLflow does not spend seconds inferring them."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("lightgbm", "scikit-learn", "pandas", "numpy")]


def run_metrics(run_id: str) -> dict[str, float]:
    from mlflow import MlflowClient

    return dict(MlflowClient().get_run(run_id).data.metrics)
