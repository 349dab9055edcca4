"""The best any model could do: the probabilities the simulator itself drew outcomes from.

Only a simulated database has them (its ``sim_runs`` rows say where the truth lives); a real
history has none, and the reports then say the oracle is unavailable instead of inventing one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy.engine import make_url

from erp_core.db.engine import make_engine
from erp_core.simulate import truth


def truth_folders(database_url: str) -> list[Path]:
    """Each finished run's truth folder. A SQLite world simulated with a relative path recorded
    its folder relative to where the simulator ran; it lies beside the database file, so it is
    looked up there when the recorded path does not resolve from here."""
    engine = make_engine(database_url)
    try:
        runs = truth.simulated_runs(engine)
    finally:
        engine.dispose()
    url = make_url(database_url)
    beside = None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        beside = Path(str(url.database)).with_suffix(".truth")
    folders = []
    for run in runs:
        if run.get("finished_at") is None:
            continue
        folder = Path(run["truth_dir"])
        if not folder.is_dir() and beside is not None and not folder.is_absolute():
            folder = beside / folder.name
        folders.append(folder)
    return folders


def true_late_probability(database_url: str, column: str = "p_late_delivery") -> pd.Series | None:
    """The simulator's P(late) per order line id, or None when the database was not simulated
    (or its truth files are gone)."""
    parts = [
        pd.read_parquet(folder / truth.LINES, columns=["line_id", column])
        for folder in truth_folders(database_url)
        if (folder / truth.LINES).is_file()
    ]
    if not parts:
        return None
    lines = pd.concat(parts, ignore_index=True).dropna(subset=[column])
    return lines.drop_duplicates("line_id", keep="last").set_index("line_id")[column]
