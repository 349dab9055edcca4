"""Ground truth, kept apart from the ERP: Parquet files in a folder beside the database, plus one
``sim_runs`` row in the database (in its own metadata, not the ERP schema) that marks the
database as simulated and says where the truth lives."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    select,
)
from sqlalchemy.engine import make_url

truth_metadata = MetaData()
sim_runs = Table(
    "sim_runs",
    truth_metadata,
    Column("id", Integer, primary_key=True),
    Column("profile", String(16), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("days", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("truth_dir", String(500), nullable=False),
    Column("summary", JSON),
)

LINES = "lines.parquet"
DEMAND = "demand.parquet"
PRICING = "pricing.parquet"


def truth_dir_for(database_url: str, var_dir: Path) -> Path:
    """SQLite: ``<db file>.truth/`` beside the file; otherwise ``<var_dir>/sim_truth/<db>/``."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).with_suffix(".truth")
    return var_dir / "sim_truth" / f"{url.host or 'local'}-{url.database or 'db'}"


def record_run(engine: Engine, **values: Any) -> int:
    truth_metadata.create_all(engine)
    with engine.begin() as conn:
        result = conn.execute(sim_runs.insert().values(**values))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def finish_run(
    engine: Engine, run_id: int, finished_at: datetime, summary: dict[str, Any], folder: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sim_runs.update()
            .where(sim_runs.c.id == run_id)
            .values(
                finished_at=finished_at,
                truth_dir=str(folder),
                summary=json.loads(json.dumps(summary, default=str)),
            )
        )


def simulated_runs(engine: Engine) -> list[dict[str, Any]]:
    """The simulation runs recorded in a database (none when it was never simulated into)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(sim_runs.name):
            return []
        return [dict(row._mapping) for row in conn.execute(select(sim_runs))]
