"""The simulator's carrier service alerts: one per storm, announced at the start of its first
day through the service, covering its days, graded by its strength, and drawing no random
number: the world's orders, fates and truth are the same with and without them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, text

from erp_core.simulate import truth
from erp_core.simulate.engine import Simulation
from erp_core.simulate.profiles import get_profile
from erp_core.simulate.run import simulate
from erp_core.simulate.world import Storm, build_world, storms
from tests.erp_core.simulate.conftest import SEED, settings_for

DAYS = 30
AUDIT_COLUMNS = "occurred_at, actor, role, action, entity_type, entity_id, from_state, to_state"


def test_storms_are_runs_of_stormy_days_with_their_peak() -> None:
    weather = np.zeros((10, 2))
    weather[0:2, 0] = [1.6, 1.6]
    weather[2, 0] = 0.0
    weather[3:5, 0] = [2.1, 4.6]  # two storms overlapping: one run, its peak
    weather[9, 1] = 2.5  # runs to the end of the table
    assert storms(weather) == [
        Storm(0, 0, 1, 1.6),
        Storm(0, 3, 4, 4.6),
        Storm(1, 9, 9, 2.5),
    ]
    assert [Storm(0, 0, 0, s).severity for s in (1.5, 1.99, 2.0, 2.49, 2.5, 6.0)] == [
        1,
        1,
        2,
        2,
        3,
        3,
    ]


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """The same world simulated with and without the announcements: (db, truth) of each."""
    folder = tmp_path_factory.mktemp("alerts")
    with_alerts = simulate(settings_for(folder, "with"), "small", days=DAYS, seed=SEED)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Simulation, "_announce_storms", lambda self, day_number, today: None)
        without = simulate(settings_for(folder, "without"), "small", days=DAYS, seed=SEED)
    return (
        folder / "with.db",
        Path(with_alerts.truth_dir),
        folder / "without.db",
        Path(without.truth_dir),
    )


def _rows(database: Path, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query))]
    finally:
        engine.dispose()


def test_each_storm_begun_in_the_run_is_announced_once_at_its_first_day(twin_runs) -> None:
    database = twin_runs[0]
    world = build_world(get_profile("small"), SEED, DAYS)
    expected = [
        (
            world.regions[s.region],
            None,
            s.severity,
            _midnight(world.day_date(s.first_day)),
            _midnight(world.day_date(s.last_day + 1)),
            _midnight(world.day_date(s.first_day)),
        )
        for s in storms(world.weather)
        if s.first_day < DAYS
    ]
    stored = _rows(
        database,
        "SELECT region, carrier_id, severity, starts_at, ends_at, announced_at"
        " FROM service_alerts ORDER BY id",
    )
    assert expected, "this seed has storms in its first month"
    assert [(*row[:3], *(_utc(v) for v in row[3:])) for row in stored] == expected
    audited = _rows(
        database, "SELECT COUNT(*) FROM audit_entries WHERE action = 'announce_service_alert'"
    )
    assert audited == [(len(expected),)]


def test_the_announcements_change_nothing_else_in_the_world(twin_runs) -> None:
    with_db, with_truth, without_db, without_truth = twin_runs
    for name in (truth.LINES, truth.PRICING, truth.DEMAND):
        pd.testing.assert_frame_equal(
            pd.read_parquet(with_truth / name), pd.read_parquet(without_truth / name)
        )
    engine = create_engine(f"sqlite:///{with_db}")
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    skipped = {"service_alerts", "audit_entries", "sim_runs"}
    assert "order_lines" in tables
    for table in sorted(tables - skipped):
        query = f"SELECT * FROM {table} ORDER BY 1"
        assert _rows(with_db, query) == _rows(without_db, query), table
    # The audit trail is the same but for the announcements (its ids shift past them).
    audit = f"SELECT {AUDIT_COLUMNS} FROM audit_entries WHERE entity_type != 'service_alert'"
    assert _rows(with_db, audit + " ORDER BY id") == _rows(without_db, audit + " ORDER BY id")
    assert _rows(without_db, "SELECT COUNT(*) FROM service_alerts") == [(0,)]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _utc(value: object) -> datetime:
    """SQLite keeps UTC moments as naive text."""
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
