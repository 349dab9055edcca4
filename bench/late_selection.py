"""How the late-shipment estimator was chosen: windows that end before the test weeks.

    .venv/bin/python bench/late_selection.py --database-url sqlite:///var/medium.db

A simulated year ends in its first peak season, so the official test weeks (the newest) hold a
regime no training week saw; choosing the estimator on them would tune it to that one window.
Each candidate is therefore trained and scored, with the job's own split plan, on windows whose
test weeks end at ``--ends`` (before the official window's calibration weeks start), and the
rule is the highest mean oracle-lift ratio (AUC - 0.5) / (oracle AUC - 0.5) over them. The
official window is scored too, and reported apart: it chooses nothing.

Candidates: one booster on the delivery label (the first version) or two hazards (late ship,
late transit), each with or without the linear margin; isotonic or Platt calibration; for the
hazards with a margin, the margin's C (0.1, 1.0) and the trees' size (15 leaves, 300 rows a leaf).
LightGBM's own ``linear_tree`` also extrapolates, but its leaves are linear models that neither
``pred_contrib`` nor the path attribution the reason codes read decomposes, so it is not a
candidate. Writes bench/results/late_selection.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from erp_core.policy import load_policy  # noqa: E402
from training import late_shipment as ls  # noqa: E402
from training.frames import SplitPlan, TrainingFrame, choose_window, load_training_frame  # noqa: E402
from training.jobs import _fit_baselines, _oracle, left_out  # noqa: E402
from training.metrics import oracle_auc_ratio, score_classifier  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ONE_BOOSTER: tuple[str, ...] = ()
HAZARDS = ls.DELIVERY.hazards
MARGIN_C = 0.1
"""The margin's regularisation the candidates were first compared at (``hazards_margin_C1``
won on the staffed medium world and its C became ``LateShipmentModel``'s default)."""
CANDIDATES: dict[str, dict[str, Any]] = {
    "one_booster_isotonic": {
        "hazards": ONE_BOOSTER,
        "linear_margin": False,
        "calibration": "isotonic",
    },
    "one_booster": {"hazards": ONE_BOOSTER, "linear_margin": False},
    "one_booster_margin": {"hazards": ONE_BOOSTER, "linear_margin_C": MARGIN_C},
    "hazards": {"hazards": HAZARDS, "linear_margin": False},
    "hazards_margin_isotonic": {
        "hazards": HAZARDS,
        "calibration": "isotonic",
        "linear_margin_C": MARGIN_C,
    },
    "hazards_margin": {"hazards": HAZARDS, "linear_margin_C": MARGIN_C},
    "hazards_margin_C1": {"hazards": HAZARDS, "linear_margin_C": 1.0},
    "hazards_margin_15_leaves": {
        "hazards": HAZARDS,
        "num_leaves": 15,
        "linear_margin_C": MARGIN_C,
    },
    "hazards_margin_300_per_leaf": {
        "hazards": HAZARDS,
        "min_child_samples": 300,
        "linear_margin_C": MARGIN_C,
    },
}
SHIPPED = "hazards_margin_C1"
"""The configuration ``LateShipmentModel``'s defaults and ``ls.DELIVERY`` make."""
console = Console(stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite:///var/medium.db")
    parser.add_argument("--ends", default="2025-08-04,2025-10-13,2025-11-10")
    parser.add_argument("--out", type=Path, default=RESULTS / "late_selection.json")
    args = parser.parse_args()
    started = time.perf_counter()
    calendar = load_policy(None).calendar
    windows = [*args.ends.split(","), "official"]
    found: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for end in windows:
            console.print(f"window ending {end}: building the frame")
            data = _frame(args.database_url, end, calendar, Path(folder))
            found[end] = _score_window(args.database_url, data)
    selection = [end for end in windows if end != "official"]
    mean = {
        name: round(
            sum(found[end]["candidates"][name]["ratio"] for end in selection) / len(selection), 4
        )
        for name in CANDIDATES
    }
    chosen = max(mean, key=lambda name: mean[name])
    record = {
        "benchmark": "late_selection",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": args.database_url,
        "rule": "highest mean oracle-lift ratio over the selection windows",
        "selection_windows": selection,
        "mean_ratio_on_selection_windows": mean,
        "chosen": chosen,
        "shipped": SHIPPED,
        "chosen_is_shipped": chosen == SHIPPED,
        "windows": found,
        "seconds": round(time.perf_counter() - started, 1),
    }
    _print(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


def _frame(url: str, end: str, calendar: Any, folder: Path) -> TrainingFrame:
    plan = SplitPlan()
    window = choose_window(url, plan, None, None if end == "official" else date.fromisoformat(end))
    return load_training_frame(ls.FEATURE_SET, ls.LABEL, url, window, plan, calendar, folder)


def _score_window(url: str, data: TrainingFrame) -> dict[str, Any]:
    train, valid, calib = data.part("train"), data.part("validation"), data.part("calibration")
    test = data.part("test")
    outcomes = test[ls.LABEL].to_numpy(dtype=bool)
    oracle, lines = _oracle(url, test, outcomes)
    if oracle is None:
        raise SystemExit(f"{url}: no simulator truth for the test lines ({lines} known)")
    row: dict[str, Any] = {
        "slices": data.slices.as_dict(),
        "test_lines": len(test),
        "oracle": _rounded(oracle.as_dict()),
        "baselines": {
            name: _rounded(score_classifier(outcomes, b.predict_proba(test)[:, 1]).as_dict())
            for name, b in _fit_baselines(data, 7).items()
        },
        "candidates": {},
    }
    for name, params in CANDIDATES.items():
        model = ls.LateShipmentModel(random_state=7, left_out=left_out(data), **params)
        model.fit(
            train,
            train[ls.LABEL],
            eval_set=(valid, valid[ls.LABEL]),
            calibration_set=(calib, calib[ls.LABEL]),
        )
        scores = score_classifier(outcomes, model.predict_proba(test)[:, 1])
        row["candidates"][name] = _rounded(scores.as_dict()) | {
            "ratio": round(oracle_auc_ratio(scores.roc_auc, oracle.roc_auc), 4),
            "trees": model.trees_,
        }
        console.print(f"  {name}: ratio {row['candidates'][name]['ratio']:.3f}")
    return row


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in scores.items()}


def _print(record: dict[str, Any]) -> None:
    windows = list(record["windows"])
    table = Table(title="oracle-lift ratio by window (official: reported, not chosen on)")
    table.add_column("candidate", no_wrap=True)
    for end in windows:
        table.add_column(end, justify="right")
    table.add_column("mean (selection)", justify="right")
    for name in CANDIDATES:
        cells = [f"{record['windows'][end]['candidates'][name]['ratio']:.3f}" for end in windows]
        table.add_row(name, *cells, f"{record['mean_ratio_on_selection_windows'][name]:.3f}")
    console.print(table)
    console.print(f"chosen: {record['chosen']} (shipped: {record['shipped']})")


if __name__ == "__main__":
    main()
