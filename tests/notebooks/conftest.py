"""One small world for the notebooks, built the way ``make run`` builds the demo world: the
small profile simulated for the fewest days the three training jobs accept, and a champion of
each model (promoted by its gate, or anyway as the demo does), in one folder per test session.

Each notebook runs as a script in its own process, pointed at this world by the ``ERPX_*``
variables the settings read, as a user points Jupyter at a world."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from erp_core.settings import Settings
from serving import demo
from tests.conftest import mlflow_store

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SEED = 7


@dataclass(frozen=True)
class NotebookWorld:
    settings: Settings
    models: list[demo.ModelOutcome]

    def environment(self, out: Path) -> dict[str, str]:
        """The process environment of a notebook run: this world's settings, figures and key
        figures written to ``out``, a plotting backend without a display."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("ERPX_")}
        return inherited | {
            "ERPX_DATABASE_URL": self.settings.database_url,
            "ERPX_VAR_DIR": str(self.settings.var_dir),
            "ERPX_MLFLOW_TRACKING_URI": self.settings.mlflow_tracking_uri,
            "ERPX_MLFLOW_ARTIFACT_ROOT": self.settings.mlflow_artifact_root,
            "ERPX_NOTEBOOK_OUT": str(out),
            "MPLBACKEND": "Agg",
        }


@pytest.fixture(scope="session")
def notebook_world(tmp_path_factory: pytest.TempPathFactory) -> NotebookWorld:
    folder = tmp_path_factory.mktemp("notebook-world")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'erpx.db'}",
        var_dir=folder / "var",
        mlflow_tracking_uri=mlflow_store(folder),
        mlflow_artifact_root=str(folder / "mlartifacts"),
    )
    demo.prepare_world(settings, "small", demo.MIN_DAYS, SEED, lambda _what: None)
    models = demo.ensure_champions(settings, SEED, lambda _what: None)
    return NotebookWorld(settings, models)


@dataclass(frozen=True)
class NotebookRun:
    out: Path
    stdout: str


def run_notebook(world: NotebookWorld, name: str, folder: Path) -> NotebookRun:
    """Execute ``notebooks/<name>`` top to bottom as a script in ``folder`` over the world."""
    out = folder / "out"
    return run_script(name, folder, world.environment(out))


def run_script(name: str, folder: Path, environment: dict[str, str]) -> NotebookRun:
    """Execute ``notebooks/<name>`` as a script in ``folder`` with ``environment`` (which names
    its output folder as ERPX_NOTEBOOK_OUT); it must exit 0."""
    out = Path(environment["ERPX_NOTEBOOK_OUT"])
    done = subprocess.run(
        [sys.executable, str(NOTEBOOKS / name)],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return NotebookRun(out, done.stdout)
