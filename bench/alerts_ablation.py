"""Benchmark: what the carriers' service alerts are worth to the late-shipment model, on one
simulated world, by ablation.

    .venv/bin/python bench/alerts_ablation.py --database-url sqlite:///var/alerts-medium.db \
        --validation-days 14 --calibration-days 14 --test-days 21

(a 120-day world holds 99 days of settled lines: too few for the default 28 + 28 + 21 + 28.)

Builds the late-shipment training frame once, exactly as ``erpx train late-shipment`` does (the
window and time split of ``training.jobs.train_late_shipment``), then fits the model twice on the
same rows with the same seed: as is, and with ``region_alert_severity`` blanked to 0 in every
slice (the model as it was before the ERP recorded alerts). Both are scored on the same test rows
beside the oracle (the simulator's true probabilities), so the difference is the feature's and
nothing else's. The baselines are refitted both ways too (the logistic one reads the feature).

Prints the figures and writes them to bench/results/alerts-ablation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402

from erp_core.policy import load_policy  # noqa: E402
from erp_core.simulate.truth import simulated_runs  # noqa: E402
from training import late_shipment as ls  # noqa: E402
from training.frames import SplitPlan, TrainingFrame, choose_window, load_training_frame  # noqa: E402
from training.jobs import _fit_baselines, _fit_model, _oracle  # noqa: E402
from training.metrics import oracle_auc_ratio, score_classifier  # noqa: E402

RESULTS = Path(__file__).parent / "results"
FEATURE = "region_alert_severity"
SEED = 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite:///var/alerts-medium.db")
    parser.add_argument("--out", type=Path, default=RESULTS / "alerts-ablation.json")
    parser.add_argument("--validation-days", type=int, default=SplitPlan.validation_days)
    parser.add_argument("--calibration-days", type=int, default=SplitPlan.calibration_days)
    parser.add_argument("--test-days", type=int, default=SplitPlan.test_days)
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.perf_counter()
    calendar = load_policy(None).calendar
    plan = SplitPlan(
        validation_days=args.validation_days,
        calibration_days=args.calibration_days,
        test_days=args.test_days,
    )
    window = choose_window(args.database_url, plan)
    _say(f"building the late-shipment frame for {window.describe()}")
    with tempfile.TemporaryDirectory(prefix="erpx-alerts-ablation-") as folder:
        data = load_training_frame(
            ls.FEATURE_SET, ls.LABEL, args.database_url, window, plan, calendar, Path(folder)
        )
    blanked = replace(data, frame=data.frame.assign(**{FEATURE: np.int64(0)}))
    with_alerts, p_with = _fit_and_score(data, args.database_url, "with region_alert_severity")
    without, p_without = _fit_and_score(
        blanked, args.database_url, "region_alert_severity blanked to 0"
    )
    test = data.part("test")
    alerted = test[FEATURE].to_numpy() > 0
    late = test[ls.LABEL].to_numpy(dtype=bool)
    record: dict[str, Any] = {
        "benchmark": "alerts-ablation",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/alerts_ablation.py", *sys.argv[1:]]),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": {"start": round(load_before[0], 2), "end": None},
            "note": "shared 2-core machine, other sessions' jobs running",
        },
        "database": args.database_url,
        "world": _world(args.database_url),
        "window": window.describe(),
        "slices": data.slices.as_dict(),
        "rows": {name: len(data.part(name)) for name in data.slices.as_dict()},
        "split_plan": asdict(plan),
        "seed": SEED,
        "test_lines_under_an_alert": {
            "share": round(float(alerted.mean()), 4),
            "late_rate_under_alert": _rate(late[alerted]),
            "late_rate_otherwise": _rate(late[~alerted]),
            "by_severity": {
                str(level): int((test[FEATURE].to_numpy() == level).sum()) for level in (1, 2, 3)
            },
            "mean_p_late_with_feature": _mean(p_with[alerted]),
            "mean_p_late_feature_blanked": _mean(p_without[alerted]),
        },
        "roc_auc_difference_paired_bootstrap": _bootstrap_auc_difference(late, p_with, p_without),
        "with_feature": with_alerts,
        "feature_blanked": without,
        "difference": {
            metric: round(with_alerts["model"][metric] - without["model"][metric], 4)
            for metric in ("roc_auc", "pr_auc", "brier", "ece", "recall_at_budget")
        }
        | {
            "auc_ratio_to_oracle": round(
                with_alerts["auc_ratio_to_oracle"] - without["auc_ratio_to_oracle"], 4
            )
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    record["machine"]["load_average_1m"]["end"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, indent=2, default=str))
    print(f"wrote {args.out}")


def _fit_and_score(data: TrainingFrame, url: str, name: str) -> tuple[dict[str, Any], np.ndarray]:
    """The job's model and baselines fitted on ``data``, scored on its test rows with the
    oracle, and how much of the model's gain the alert feature carries; with the model's test
    probabilities."""
    _say(f"fitting ({name})")
    model = _fit_model(data, SEED, {})
    test = data.part("test")
    outcomes = test[ls.LABEL].to_numpy(dtype=bool)
    probabilities = model.predict_proba(test)[:, 1]
    scores = {"model": score_classifier(outcomes, probabilities)}
    for baseline, fitted in _fit_baselines(data, SEED).items():
        scores[baseline] = score_classifier(outcomes, fitted.predict_proba(test)[:, 1])
    oracle, oracle_lines = _oracle(url, test, outcomes)
    if oracle is None:
        raise SystemExit(f"{url}: no simulator truth for the test lines ({oracle_lines} known)")
    gain = sum(
        booster.feature_importance("gain", iteration=trees)
        for booster, trees in zip(model.boosters_, model.best_iterations_, strict=True)
    )
    share = float(gain[model.encoder_.names.index(FEATURE)] / gain.sum())
    found = {
        "model": _rounded(scores["model"].as_dict()),
        "baselines": {k: _rounded(v.as_dict()) for k, v in scores.items() if k != "model"},
        "oracle": _rounded(oracle.as_dict()),
        "auc_ratio_to_oracle": round(oracle_auc_ratio(scores["model"].roc_auc, oracle.roc_auc), 4),
        "trees": model.trees_,
        "feature_gain_share": round(share, 4),
    }
    return found, probabilities


def _bootstrap_auc_difference(
    late: np.ndarray, first: np.ndarray, second: np.ndarray, resamples: int = 500
) -> dict[str, float]:
    """ROC AUC(first) - AUC(second) over test rows resampled with replacement (the same rows
    for both): how much of the difference a different test sample could undo."""
    rng = np.random.default_rng(SEED)
    found = []
    for _ in range(resamples):
        rows = rng.integers(0, len(late), len(late))
        found.append(
            roc_auc_score(late[rows], first[rows]) - roc_auc_score(late[rows], second[rows])
        )
    low, high = np.percentile(found, [2.5, 97.5])
    return {
        "resamples": resamples,
        "mean": round(float(np.mean(found)), 4),
        "ci95_low": round(float(low), 4),
        "ci95_high": round(float(high), 4),
        "share_above_zero": round(float(np.mean(np.array(found) > 0)), 4),
    }


def _world(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        runs = simulated_runs(engine)
    finally:
        engine.dispose()
    return {
        key: run.get(key) for run in runs[:1] for key in ("profile", "seed", "days", "truth_dir")
    }


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 4) if len(values) else None


def _rate(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 4) if len(values) else None


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def _say(message: str) -> None:
    print(f"[alerts-ablation] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
