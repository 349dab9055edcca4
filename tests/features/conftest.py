"""One simulated world per test session, with a snapshot of its database taken part-way through.

The snapshot is the world as it stood at the end of day ``SNAPSHOT_DAYS``; the full database is the
same world after ``DAYS - SNAPSHOT_DAYS`` more days of history. Together they are the leakage
guard's experiment: rows entered before the cut must be identical built from either.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from erp_core.settings import Settings
from erp_core.simulate.profiles import get_profile
from erp_core.simulate.run import SimulationSummary, simulate

SEED = 7
DAYS = 45
SNAPSHOT_DAYS = 15
"""The next 30 days are appended after the snapshot, as the issue's leakage guard asks."""


@dataclass(frozen=True)
class SimulatedHistory:
    url: str
    """The whole world, ``DAYS`` days."""
    snapshot_url: str
    """The same world after its first ``SNAPSHOT_DAYS`` days."""
    start: datetime
    cut: datetime
    """Midnight UTC after the snapshot's last day."""
    end: datetime
    summary: SimulationSummary

    @property
    def truth_dir(self) -> Path:
        return Path(self.summary.truth_dir)


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API, not a file copy)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


@pytest.fixture(scope="session")
def simulated_history(tmp_path_factory: pytest.TempPathFactory) -> SimulatedHistory:
    folder = tmp_path_factory.mktemp("features-world")
    database, snapshot = folder / "world.db", folder / "snapshot.db"
    settings = Settings(database_url=f"sqlite:///{database}", var_dir=folder)

    def snapshot_when_due(done: int, _total: int, _lines: int) -> None:
        if done == SNAPSHOT_DAYS:
            copy_sqlite(database, snapshot)

    summary = simulate(settings, "small", days=DAYS, seed=SEED, progress=snapshot_when_due)
    start = datetime.combine(get_profile("small").start, time(0), tzinfo=UTC)
    return SimulatedHistory(
        url=settings.database_url,
        snapshot_url=f"sqlite:///{snapshot}",
        start=start,
        cut=start + timedelta(days=SNAPSHOT_DAYS),
        end=start + timedelta(days=DAYS),
        summary=summary,
    )
