"""Benchmark: issue 7's late-delivery protocol on the real USAID SCMS history.

    .venv/bin/python bench/scms.py [--path .../SCMS_Delivery_History_Dataset.csv]

Reads and repairs the file (``erp_core.importers.scms``), builds the point-in-time features
(``features.scms``), scores the LightGBM model and the two baselines of ``training.scms`` on the
rolling validation years (fitted on the lines scheduled before 2010, 2011, 2012, scored on that
year: where the model's columns, hyperparameters, tree count and calibration were chosen, by
``bench/scms_selection.py``), then fits on every line scheduled before 2013-01-01 and scores the
test years. Then the price and freight anomaly report (``training.scms_anomaly``: lines flagged by
kind, the top 20 with reasons) and, unless ``--skip-database-import``, ``erpx import scms`` into a
fresh SQLite database (rows loaded and rejected, seconds) with the late-shipment features that
history cannot compute. Prints the tables and writes bench/results/scms.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from erp_core.db.engine import make_engine, make_session_factory  # noqa: E402
from erp_core.db.migrate import upgrade_to_head  # noqa: E402
from erp_core.db.uow import UnitOfWork  # noqa: E402
from erp_core.importers.scms import read_scms  # noqa: E402
from erp_core.importers.scms_export import import_scms  # noqa: E402
from erp_core.policy import load_policy  # noqa: E402
from erp_core.settings import get_settings  # noqa: E402
from features.availability import unavailable_features  # noqa: E402
from features.history import load_history  # noqa: E402
from training.metrics import auc_standard_error  # noqa: E402
from training.scms import (  # noqa: E402
    LGBM_PARAMS,
    MODEL_CATEGORICAL,
    TEST_FROM,
    LateModel,
    evaluate_scms,
)
from training.scms_anomaly import scms_anomalies  # noqa: E402

DEFAULT_PATH = (
    _HERE.parent.parent / "shared" / "datasets" / "scms" / "SCMS_Delivery_History_Dataset.csv"
)
TARGET_ROC_AUC = 0.78


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--out", type=Path, default=_HERE / "results" / "scms.json")
    parser.add_argument(
        "--skip-database-import",
        action="store_true",
        help="leave out erpx import scms into a temporary SQLite database (15-40 s)",
    )
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    history = read_scms(args.path)
    read_seconds = time.perf_counter() - started
    evaluation = evaluate_scms(history.lines)
    wall = time.perf_counter() - started
    scorers = {
        "model_lightgbm": evaluation.model,
        "baseline_vendor_mode_rate": evaluation.vendor_mode_rate,
        "baseline_logistic": evaluation.logistic,
    }
    table = Table(title=f"SCMS test years (scheduled from {TEST_FROM.date()})")
    for column in ("scorer", "ROC AUC", "PR AUC", "Brier", "recall@10%"):
        table.add_column(column)
    for name, scores in scorers.items():
        table.add_row(
            name,
            f"{scores.roc_auc:.3f}",
            f"{scores.pr_auc:.3f}",
            f"{scores.brier:.4f}",
            f"{scores.recall_at_budget:.3f}",
        )
    console.print(table)
    validation = evaluation.validation
    folds = Table(title="SCMS rolling validation (fitted on the years before each), ROC AUC")
    for column in ("year", "fit lines", "lines", "late", "LightGBM", "vendor x mode", "logistic"):
        folds.add_column(column)
    for fold in validation.folds:
        folds.add_row(
            str(fold.year),
            f"{fold.fit_lines:,}",
            f"{fold.model.lines:,}",
            f"{fold.model.positives:,}",
            f"{fold.model.roc_auc:.3f}",
            f"{fold.vendor_mode_rate.roc_auc:.3f}",
            f"{fold.logistic.roc_auc:.3f}",
        )
    folds.add_row(
        "mean",
        "",
        "",
        "",
        *(
            f"{validation.mean(scorer, 'roc_auc'):.3f}"
            for scorer in ("model", "vendor_mode_rate", "logistic")
        ),
    )
    console.print(folds)
    model = LateModel()
    test_se = auc_standard_error(
        evaluation.model.roc_auc,
        evaluation.model.positives,
        evaluation.model.lines - evaluation.model.positives,
    )
    report = history.report
    result = {
        "benchmark": "scms",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "file": str(args.path.name),
        "import": {
            "rows_read": report.rows_read,
            "rows_loaded": report.rows_loaded,
            "rows_rejected": report.rows_rejected,
            "repairs": report.repairs,
            "seconds": round(read_seconds, 3),
        },
        "protocol": {
            "label": "delivered to client after the scheduled delivery date",
            "moment_of_prediction": "30 days before the scheduled delivery date",
            "history": "lines delivered strictly before the moment",
            "train": f"scheduled before {TEST_FROM.date()}",
            "test": f"scheduled from {TEST_FROM.date()}",
        },
        "validation": {
            "scheme": (
                "rolling origin (expanding window) on the training years: for each year, fit "
                "on the lines scheduled before it and score the lines scheduled in it; the test "
                "years choose nothing"
            ),
            "selection": (
                "bench/scms_selection.py: highest mean validation ROC AUC, ties within 0.005 "
                "to the simplest (bench/results/scms_selection.json)"
            ),
            "folds": [fold.as_dict() for fold in validation.folds],
            "mean_roc_auc": {
                name: validation.mean(scorer, "roc_auc")
                for name, scorer in (
                    ("model_lightgbm", "model"),
                    ("baseline_vendor_mode_rate", "vendor_mode_rate"),
                    ("baseline_logistic", "logistic"),
                )
            },
        },
        "model": {
            "features": list(model.columns),
            "categorical": list(MODEL_CATEGORICAL),
            "monotone_increasing": [c for c in model.columns if "_late_rate" in c],
            "trees": evaluation.trees,
            "params": LGBM_PARAMS,
            "calibration": {
                "method": (
                    "Platt scaling of the log-odds, fitted on the pooled out-of-fold "
                    "predictions of the validation years"
                ),
                "slope": evaluation.calibration.slope,
                "intercept": evaluation.calibration.intercept,
                "test_brier_uncalibrated": evaluation.uncalibrated_brier,
            },
        },
        "train_lines": evaluation.train_lines,
        "test_lines": evaluation.test_lines,
        "scores": {name: scores.as_dict() for name, scores in scorers.items()},
        "model_test_roc_auc_standard_error": test_se,
        "target_roc_auc": TARGET_ROC_AUC,
        "model_meets_target": evaluation.model.roc_auc >= TARGET_ROC_AUC,
        "wall_seconds": round(wall, 2),
        "anomalies": _anomalies(args.path, console),
        "database_import": None if args.skip_database_import else _database_import(args.path),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out} in {wall:.1f} s")


def _anomalies(path: Path, console: Console) -> dict:
    """The anomaly report's summary, with the top lines cut to what a reader of the JSON needs."""
    report = scms_anomalies(path, top=20)
    summary = report.summary()
    summary["top"] = [
        {
            "rank": int(line.rank),
            "line_id": int(line.line_id),
            "kind": line.kind,
            "score": round(float(line.score), 4),
            "reason": line.reason,
        }
        for line in report.top.itertuples()
    ]
    console.print(
        f"anomalies: {summary['lines']:,} lines scored, {summary['flagged']:,} flagged in "
        f"{summary['seconds']['total']:.2f} s; top: {summary['top'][0]['reason']}"
    )
    return summary


def _database_import(path: Path) -> dict:
    """``erpx import scms``'s work into a fresh SQLite file: what it loaded and how fast, and the
    late-shipment features the imported history cannot compute."""
    folder = Path(tempfile.mkdtemp(prefix="erpx-bench-scms-"))
    url = f"sqlite:///{folder / 'erpx.db'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    policy = load_policy(get_settings().policy_path)
    try:
        report = import_scms(UnitOfWork(make_session_factory(engine), policy), path, folder / "x")
    finally:
        engine.dispose()
    load = report.load
    return {
        "database": "SQLite (temporary file)",
        "scms_rows_read": report.rows_read,
        "order_lines_loaded": report.lines_loaded,
        "scms_rows_rejected": report.rows_rejected,
        "export_rows_loaded": load.rows_loaded,
        "seconds": round(report.elapsed_seconds, 2),
        "mapping_seconds": round(report.map_seconds, 2),
        "unavailable_late_shipment_features": sorted(
            unavailable_features("late_shipment", load_history(url), policy.calendar)
        ),
    }


def _commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=_HERE, text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
