"""The simulator's labels for the pricing set, kept out of the feature frame.

A real ERP records no "this price was a typing error"; only a simulated database has such labels,
in the truth Parquet its ``sim_runs`` rows point to. The pricing frame never reads them (so a
frame of a real database and of a simulated one are built the same way); a training job joins
them by ``line_id``:

    frame = pd.read_parquet("var/frames/pricing/pricing.parquet")
    labelled = frame.merge(load_pricing_truth(url), on="line_id", how="left")
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from erp_core.db.engine import make_engine
from erp_core.domain.errors import InvalidValue
from erp_core.simulate.truth import PRICING, simulated_runs

PRICING_TRUTH_COLUMNS = ["line_id", "is_anomaly", "anomaly_type"]


def load_pricing_truth(source: Engine | str) -> pd.DataFrame:
    """``line_id``, ``is_anomaly`` (bool), ``anomaly_type`` (null when none) of every line the
    simulation runs recorded in the database at ``source`` priced, from each run's
    ``<truth_dir>/pricing.parquet``. A database never simulated into is refused by name."""
    engine = make_engine(source) if isinstance(source, str) else source
    try:
        runs = simulated_runs(engine)
    finally:
        if isinstance(source, str):
            engine.dispose()
    if not runs:
        raise InvalidValue("database_url", str(source), "not a simulated database: no sim_runs")
    parts = [_run_truth(Path(run["truth_dir"])) for run in runs]
    truth = pd.concat(parts, ignore_index=True).drop_duplicates("line_id", keep="last")
    return truth.sort_values("line_id", kind="stable").reset_index(drop=True)


def _run_truth(folder: Path) -> pd.DataFrame:
    path = folder / PRICING
    if not path.is_file():
        raise InvalidValue("truth_dir", str(folder), f"no {PRICING} in it")
    frame = pd.read_parquet(path, columns=PRICING_TRUTH_COLUMNS)
    return frame.astype({"line_id": "int64", "is_anomaly": "bool"})
