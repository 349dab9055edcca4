"""One simulated world for the training tests, long enough to split by time into train,
validation, calibration and test weeks, and one MLflow store per test session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from erp_core.domain.calendar import BusinessCalendar
from erp_core.policy import load_policy
from erp_core.settings import Settings
from erp_core.simulate.run import SimulationSummary, simulate
from tests.conftest import mlflow_store
from training.frames import SplitPlan

SEED = 7
DAYS = 120
PLAN = SplitPlan(validation_days=14, calibration_days=14, test_days=21, min_train_days=28)
"""The small world's 120 days leave 99 with settled outcomes: 50 to train on, then 14 + 14 + 21."""


@dataclass(frozen=True)
class TrainingWorld:
    url: str
    folder: Path
    summary: SimulationSummary

    def settings(self, tracking_dir: Path) -> Settings:
        return Settings(
            database_url=self.url,
            var_dir=tracking_dir,
            mlflow_tracking_uri=mlflow_store(tracking_dir),
            mlflow_artifact_root=str(tracking_dir / "mlartifacts"),
        )


@pytest.fixture(scope="session")
def training_world(tmp_path_factory: pytest.TempPathFactory) -> TrainingWorld:
    folder = tmp_path_factory.mktemp("training-world")
    settings = Settings(database_url=f"sqlite:///{folder / 'world.db'}", var_dir=folder)
    summary = simulate(settings, "small", days=DAYS, seed=SEED)
    return TrainingWorld(settings.database_url, folder, summary)


@pytest.fixture(scope="session")
def calendar() -> BusinessCalendar:
    return load_policy(None).calendar
