"""How the SCMS late-delivery model was chosen: rolling validation on the training years only.

    .venv/bin/python bench/scms_selection.py        # 291 s measured on 2 busy shared cores

Every candidate is scored by ``training.scms``'s rolling-origin folds (fit on the lines scheduled
before 2010, 2011, 2012; score that year), never on the test years (scheduled from 2013), which
this script does not score at all. It re-runs each comparison around the chosen configuration:

- columns: the first version's set, the line's own attributes, the raw categoricals, monotone
  constraints off, other recent windows, days late, delivery volumes, trends, more keys;
- hyperparameters: leaves x min_child_samples x lambda, each at 50 to 800 trees;
- the trees grown from a linear margin (``LateModel.margin_C``: a sign-constrained logistic
  regression on the numeric columns as the booster's init_score, so the risk keeps rising past
  the late rates the fit years saw): margin C x leaves, each at 50 to 800 trees;
- blends of the model with the logistic regression on the same columns.

The rule: the highest mean ROC AUC over the three years; any candidate within ``TOLERANCE`` of it
counts as a tie, and of tied ones the simplest wins (fewest leaves, then fewest trees, then
fewest columns, then no margin before a margin). A fold's AUC has a standard error of about
0.02 (100-240 late lines), so differences under that are noise, and the best of many candidates
is an optimistic estimate.
Writes bench/results/scms_selection.json, including whether the rule's pick is the configuration
``training.scms`` ships.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from erp_core.importers.scms import read_scms  # noqa: E402
from features.scms import (  # noqa: E402
    ATTRIBUTES,
    CATEGORICAL,
    RATE_KEYS,
    RECENT_DAYS,
    build_scms_features,
    rate_column,
)
from training.scms import (  # noqa: E402
    FEATURES,
    LGBM_PARAMS,
    MODEL_CATEGORICAL,
    RATES,
    TREES,
    LateModel,
    logistic_regression,
    rolling_folds,
)

DEFAULT_PATH = (
    _HERE.parent.parent / "shared" / "datasets" / "scms" / "SCMS_Delivery_History_Dataset.csv"
)
TOLERANCE = 0.005
WINDOWS = (30, 90, 180, 365)
EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "inco": ("inco_term",),
    "country_route": ("country", "fulfill_via"),
    "vendor_country": ("vendor", "country"),
    "item": ("item_description",),
    "project": ("project_code",),
}
TREE_GRID = (50, 100, 200, 400, 800)
MARGIN_C = (0.03, 0.1, 0.3, 1.0)
MARGIN_LEAVES = (4, 8, 16)
FIRST_VERSION = LateModel(
    columns=(
        "global_late_rate",
        "global_late_rate_180d",
        *(rate_column(name) for name in RATE_KEYS),
        "log_quantity",
        "log_line_value",
        "log_pack_price",
        "po_to_schedule_days",
        *CATEGORICAL,
    ),
    params={
        "learning_rate": 0.03,
        "num_leaves": 7,
        "min_child_samples": 80,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "reg_lambda": 5.0,
        "verbose": -1,
        "random_state": 7,
    },
    trees=20,
    monotone_rates=False,
)
"""The first version's model, at the 20 trees its early stopping on 2012 gave."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--out", type=Path, default=_HERE / "results" / "scms_selection.json")
    args = parser.parse_args()
    started = time.perf_counter()
    lines = read_scms(args.path).lines
    frame = build_scms_features(lines, windows=WINDOWS, keys={**RATE_KEYS, **EXTRA_KEYS})
    for name in ("global", *RATE_KEYS):
        frame[f"{name}_late_trend_90d"] = (
            frame[rate_column(name, RECENT_DAYS)] - frame[rate_column(name)]
        )
    late = lines["late"].to_numpy(bool)
    folds = rolling_folds(lines["scheduled_delivery_date"])
    chosen = LateModel()

    columns = _column_candidates(chosen)
    column_rows = [
        _row(name, model, _fold_aucs(frame, late, folds, model)) for name, model in columns
    ]
    grid_rows = _grid(frame, late, folds, chosen)
    margin_rows = _margins(frame, late, folds, chosen)
    blend_rows = _blends(frame, late, folds, chosen)
    candidates = column_rows + grid_rows + margin_rows
    pick = _pick(candidates)
    shipped = {
        "columns": list(FEATURES),
        "num_leaves": LGBM_PARAMS["num_leaves"],
        "min_child_samples": LGBM_PARAMS["min_child_samples"],
        "reg_lambda": LGBM_PARAMS["reg_lambda"],
        "trees": TREES,
        "monotone_rates": True,
        "margin_C": chosen.margin_C,
    }
    agrees = all(pick[key] == value for key, value in shipped.items())
    result = {
        "benchmark": "scms_selection",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "validation": [
            {
                "year": fold.year,
                "fit": f"scheduled before {fold.year}-01-01",
                "lines": int(fold.validation.sum()),
                "late": int(late[fold.validation].sum()),
            }
            for fold in folds
        ],
        "rule": (
            f"highest mean ROC AUC over the validation years; within {TOLERANCE} of it, the "
            "fewest leaves, then trees, then columns, then no linear margin before one"
        ),
        "columns": column_rows,
        "hyperparameters": grid_rows,
        "linear_margin": margin_rows,
        "blends_with_logistic": blend_rows,
        "best_mean_roc_auc": max(row["mean_roc_auc"] for row in candidates),
        "pick": pick,
        "shipped": shipped,
        "pick_is_shipped": agrees,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    _print(column_rows, grid_rows, margin_rows, blend_rows, pick, agrees)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    Console().print(f"wrote {args.out} in {result['wall_seconds']} s")


def _column_candidates(chosen: LateModel) -> list[tuple[str, LateModel]]:
    rates = list(RATES)

    def recent(days: int) -> list[str]:
        return [c.replace(f"_{RECENT_DAYS}d", f"_{days}d") for c in rates]

    def per_key(template: str) -> list[str]:
        return [template.format(name) for name in ("global", *RATE_KEYS)]

    def extra(name: str) -> list[str]:
        return [rate_column(name), rate_column(name, RECENT_DAYS)]

    plus = list(MODEL_CATEGORICAL)
    sets: list[tuple[str, list[str], bool]] = [
        ("chosen", [*rates, *plus], True),
        ("+ line attributes", [*rates, *plus, *ATTRIBUTES], True),
        ("+ raw mode and product categoricals", [*rates, *CATEGORICAL], True),
        ("no monotone constraints", [*rates, *plus], False),
        ("recent window 30 days", [*recent(30), *plus], True),
        ("recent window 180 days", [*recent(180), *plus], True),
        ("recent window 365 days", [*recent(365), *plus], True),
        ("+ 180-day rates", [*rates, *recent(180)[1::2], *plus], True),
        ("+ days late (all, 90 days)", [*rates, *per_key("{}_days_late"), *plus], True),
        (
            "+ days late (90 days)",
            [*rates, *per_key("{}_days_late_" + f"{RECENT_DAYS}d"), *plus],
            True,
        ),
        (
            "+ delivery volumes (all, 90 days)",
            [
                *rates,
                *per_key("{}_history_lines"),
                *per_key("{}_lines_" + f"{RECENT_DAYS}d"),
                *plus,
            ],
            True,
        ),
        (
            "+ trend (90-day minus all-history rate)",
            [*rates, *per_key("{}_late_trend_90d"), *plus],
            True,
        ),
        *((f"+ {name} rates", [*rates, *extra(name), *plus], True) for name in EXTRA_KEYS),
    ]
    models = [
        (name, replace(chosen, columns=tuple(columns), monotone_rates=monotone))
        for name, columns, monotone in sets
    ]
    return [("first version (20 trees, no constraints)", FIRST_VERSION), *models]


def _fold_aucs(
    frame: pd.DataFrame,
    late: np.ndarray,
    folds: tuple[Any, ...],
    model: LateModel,
    trees: tuple[int, ...] | None = None,
) -> dict[int, list[float]]:
    """ROC AUC per fold at each tree count (one fit per fold at the largest)."""
    trees = trees or (model.trees,)
    grown = replace(model, trees=max(trees))
    aucs: dict[int, list[float]] = {t: [] for t in trees}
    for fold in folds:
        fitted = grown.fit(frame, late, fold.fit)
        rows = frame.loc[fold.validation, list(model.columns)]
        for t in trees:
            p = np.asarray(fitted.predict_proba(rows, num_iteration=t))[:, 1]
            aucs[t].append(float(roc_auc_score(late[fold.validation], p)))
    return aucs


def _row(name: str, model: LateModel, aucs: dict[int, list[float]]) -> dict[str, Any]:
    (trees, values), *_ = aucs.items()
    return {
        "candidate": name,
        "columns": list(model.columns),
        "num_leaves": model.params["num_leaves"],
        "min_child_samples": model.params["min_child_samples"],
        "reg_lambda": model.params["reg_lambda"],
        "trees": trees,
        "monotone_rates": model.monotone_rates,
        "margin_C": model.margin_C,
        "fold_roc_auc": [round(v, 4) for v in values],
        "mean_roc_auc": round(float(np.mean(values)), 4),
    }


def _grid(
    frame: pd.DataFrame, late: np.ndarray, folds: tuple[Any, ...], chosen: LateModel
) -> list[dict[str, Any]]:
    rows = []
    for leaves, min_child, lam in itertools.product((4, 8, 16), (25, 50, 100), (0.0, 1.0, 10.0)):
        params = {
            **chosen.params,
            "num_leaves": leaves,
            "min_child_samples": min_child,
            "reg_lambda": lam,
        }
        model = replace(chosen, params=params)
        aucs = _fold_aucs(frame, late, folds, model, TREE_GRID)
        for trees, values in aucs.items():
            name = f"leaves {leaves}, min_child {min_child}, lambda {lam:g}, {trees} trees"
            rows.append(_row(name, replace(model, trees=trees), {trees: values}))
    return rows


def _margins(
    frame: pd.DataFrame, late: np.ndarray, folds: tuple[Any, ...], chosen: LateModel
) -> list[dict[str, Any]]:
    """The chosen columns' trees grown from a linear margin, per margin C and leaf count (at the
    chosen min_child_samples and lambda), each at every tree count of ``TREE_GRID``."""
    rows = []
    for margin_c, leaves in itertools.product(MARGIN_C, MARGIN_LEAVES):
        model = replace(chosen, params={**chosen.params, "num_leaves": leaves}, margin_C=margin_c)
        aucs = _fold_aucs(frame, late, folds, model, TREE_GRID)
        for trees, values in aucs.items():
            name = f"linear margin C {margin_c:g}, leaves {leaves}, {trees} trees"
            rows.append(_row(name, replace(model, trees=trees), {trees: values}))
    return rows


def _blends(
    frame: pd.DataFrame, late: np.ndarray, folds: tuple[Any, ...], chosen: LateModel
) -> list[dict[str, Any]]:
    model_p, linear_p = [], []
    for fold in folds:
        model_p.append(chosen.fit_predict(frame, late, fold.fit, fold.validation))
        linear_p.append(logistic_regression(frame, late, fold.fit, fold.validation, chosen.columns))
    rows = []
    for weight in (0.0, 0.25, 0.5, 0.75, 1.0):
        values = [
            float(roc_auc_score(late[f.validation], weight * m + (1 - weight) * g))
            for f, m, g in zip(folds, model_p, linear_p, strict=True)
        ]
        rows.append(
            {
                "model_weight": weight,
                "fold_roc_auc": [round(v, 4) for v in values],
                "mean_roc_auc": round(float(np.mean(values)), 4),
            }
        )
    return rows


def _pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(row["mean_roc_auc"] for row in rows)
    tied = [row for row in rows if row["mean_roc_auc"] >= best - TOLERANCE]
    return min(
        tied,
        key=lambda r: (
            r["num_leaves"],
            r["trees"],
            len(r["columns"]),
            r.get("margin_C") is not None,
        ),
    )


def _print(
    columns: list[dict[str, Any]],
    grid: list[dict[str, Any]],
    margins: list[dict[str, Any]],
    blends: list[dict[str, Any]],
    pick: dict[str, Any],
    agrees: bool,
) -> None:
    console = Console()
    years = "/".join(str(y) for y in (2010, 2011, 2012))
    for title, rows in (
        ("columns", columns),
        ("hyperparameters (top 10)", grid),
        ("linear margin (top 10)", margins),
    ):
        table = Table(title=f"SCMS model selection: {title}, ROC AUC on {years}")
        for column in ("candidate", "folds", "mean"):
            table.add_column(column)
        shown = sorted(rows, key=lambda r: -r["mean_roc_auc"])[:10] if "top" in title else rows
        for row in shown:
            folds = " ".join(f"{v:.3f}" for v in row["fold_roc_auc"])
            table.add_row(row["candidate"], folds, f"{row['mean_roc_auc']:.4f}")
        console.print(table)
    for row in blends:
        folds = " ".join(f"{v:.3f}" for v in row["fold_roc_auc"])
        console.print(
            f"blend, model weight {row['model_weight']}: {folds} -> {row['mean_roc_auc']}"
        )
    console.print(f"rule's pick: {pick['candidate']} ({pick['mean_roc_auc']}); shipped: {agrees}")


if __name__ == "__main__":
    main()
