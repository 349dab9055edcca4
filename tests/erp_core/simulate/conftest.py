"""One small simulated world per test session: the runs are the expensive part."""

from __future__ import annotations

from pathlib import Path

import pytest

from erp_core.settings import Settings
from erp_core.simulate.run import SimulationSummary, simulate

SEED = 7


def settings_for(folder: Path, name: str = "world") -> Settings:
    return Settings(database_url=f"sqlite:///{folder / f'{name}.db'}", var_dir=folder)


@pytest.fixture(scope="session")
def simulated_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SimulationSummary]:
    folder = tmp_path_factory.mktemp("small-world")
    settings = settings_for(folder)
    return settings, simulate(settings, "small", seed=SEED)
