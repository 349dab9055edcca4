# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 The late-shipment model
#
# P(an order line misses its first promised delivery date), known at order entry. This
# notebook takes the model erpx serves (the registry's `champion` of `late_shipment`, else its
# `challenger`), rebuilds the frame it was trained on with the same feature pipeline and the
# same split by time, and shows what it learned: the features, the training run, how honest its
# probabilities are (calibration), how many late lines it finds when only the riskiest are
# flagged (lift), the reasons it gives for single orders, and where it stands between the simple
# baselines and the oracle (the simulator's own probabilities, the best any model could do).
#
# Nothing is re-implemented here: the frame comes from `training.frames.load_training_frame`
# (which calls `features.build.build_feature_set`), the estimator and baselines from
# `training/late_shipment.py`, the scores and plots from `training.metrics` and
# `training.plots`, which is what `training/jobs.py` runs. The world and the registry come from
# the settings (`ERPX_DATABASE_URL`, `ERPX_MLFLOW_TRACKING_URI`); `make run` builds both.

# %%
import json
import os
from datetime import date
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from erp_core.policy import load_policy
from erp_core.settings import get_settings
from features.registry import feature_set
from training import late_shipment as ls
from training import plots, tracking
from training.frames import SplitPlan, TimeWindow, load_training_frame, midnight
from training.jobs import MODEL, ORACLE
from training.metrics import (
    ALERT_BUDGET,
    auc_standard_error,
    calibration_table,
    oracle_auc_ratio,
    score_classifier,
)
from training.oracle import true_late_probability

if Path.cwd().name == "notebooks" and (Path.cwd().parent / "pyproject.toml").is_file():
    os.chdir(Path.cwd().parent)  # the settings' relative paths (var/...) start at the repo root

settings = get_settings()
URL = settings.database_url
calendar = load_policy(settings.policy_path).calendar
OUT = Path(os.environ["ERPX_NOTEBOOK_OUT"]) if os.environ.get("ERPX_NOTEBOOK_OUT") else None
findings: dict[str, object] = {}


def keep(figure, name):
    """Shown inline in Jupyter; also written as a PNG when ERPX_NOTEBOOK_OUT names a folder."""
    figure.tight_layout()
    if OUT is not None:
        OUT.mkdir(parents=True, exist_ok=True)
        figure.savefig(OUT / f"02_{name}.png", dpi=80)


# %% [markdown]
# ## The model in service, and the run that trained it
#
# The MLflow run logged the time slices (train | validation | calibration | test), the seed and
# the target. They are read back so the frame below is the one the model was trained and tested
# on.

# %%
tracking.configure(settings)
for alias in (tracking.CHAMPION, tracking.CHALLENGER):
    registered = tracking.version_by_alias(ls.REGISTERED_NAME, alias)
    if registered is not None:
        break
else:
    raise SystemExit(
        f"no {ls.REGISTERED_NAME} model in {settings.mlflow_tracking_uri}: run `make run` "
        "or `erpx train late-shipment --promote` first"
    )
model = tracking.load_model(ls.REGISTERED_NAME, alias)
run = MlflowClient().get_run(registered.run_id)
params, logged = run.data.params, run.data.metrics
aim = ls.target(params.get("target", ls.DELIVERY.name))
slices = {
    name: [date.fromisoformat(day) for day in params[f"slice.{name}"].split("..")]
    for name in ("train", "validation", "calibration", "test")
}
window = TimeWindow(midnight(slices["train"][0]), midnight(slices["test"][1]))
plan = SplitPlan(
    **{f"{n}_days": (slices[n][1] - slices[n][0]).days for n in ("validation", "calibration")},
    test_days=(slices["test"][1] - slices["test"][0]).days,
    min_train_days=1,
)
print(
    f"{ls.REGISTERED_NAME} v{registered.version} ({alias}), run {registered.run_id[:8]}, "
    f"target {aim.name}: label {aim.label}"
)
for name, (start, end) in slices.items():
    print(f"  {name:<12} {start} .. {end}")
gate_note = registered.tags.get("erpx.promotion")
if gate_note:
    print(f"  note: {gate_note}")

# %% [markdown]
# ## Features
#
# Every feature is declared once (`features/registry.py`) with a sentence saying how it is
# computed as of the line's entry; the same definitions compute a draft order's row online.
# Arrows mark the directions the business knows and the model is held to (more backlog, a
# backorder, a less punctual lane never lower the risk).

# %%
declared = feature_set(ls.FEATURE_SET)
catalogue = pd.DataFrame(
    {
        "feature": [s.name for s in declared.features],
        "group": [s.group for s in declared.features],
        "dtype": [s.dtype for s in declared.features],
        "constraint": [
            {1: "↑ risk", -1: "↓ risk"}.get(ls.MONOTONE.get(s.name, 0), "")
            for s in declared.features
        ],
        "description": [s.description[:70] for s in declared.features],
    }
)
print(f"{len(catalogue)} features in {catalogue['group'].nunique()} groups")
print(catalogue.to_string(index=False))

# %%
data = load_training_frame(
    ls.FEATURE_SET,
    aim.label,
    URL,
    window,
    plan,
    calendar,
    frames_dir=tracking.frames_folder(settings, "erpx-notebook-"),
)
parts = {name: data.part(name) for name in slices}
print(
    pd.DataFrame(
        {
            "lines": {n: len(p) for n, p in parts.items()},
            "late share": {n: round(float(p[aim.label].mean()), 3) for n, p in parts.items()},
        }
    ).to_string()
)
print(f"{data.unlabelled_rows} lines in the window had no outcome yet and were left out.")

# %% [markdown]
# What a few features say on their own, on the training weeks: the late rate by decile (or by
# value) of each. A feature whose line climbs is one the model can use; a flat one carries
# little by itself (it may still matter in combination).

# %%
train = parts["train"]
shown = [
    "needs_backorder",
    "pick_backlog_ratio",
    aim.history_feature,
    "promised_delivery_lead_bdays",
]
figure, panels = plt.subplots(1, len(shown), figsize=(12, 3), sharey=True)
for panel, name in zip(panels, shown, strict=True):
    values = pd.to_numeric(train[name].astype("float64"), errors="coerce")
    if values.nunique() > 10:
        values = pd.qcut(values, 10, duplicates="drop").cat.codes
    rate = train[aim.label].astype(float).groupby(values).mean()
    panel.plot(rate.index.astype(float), rate.to_numpy(), marker="o")
    panel.set_title(name, fontsize=9)
    panel.set_xlabel("decile or value")
panels[0].set_ylabel("late share (train)")
keep(figure, "feature_signal")

# %% [markdown]
# ## Training
#
# A late delivery has two causes: the warehouse ships after the promised ship date, or the
# carrier takes longer than the lane's transit. The model learns them as two hazards, one
# LightGBM booster each (on `label_late_ship` and `label_late_transit`), each stopped early on
# the validation weeks, and combines them as P(late) = 1 - (1 - p_ship)(1 - p_transit); a
# Platt calibrator fitted on the calibration weeks then maps that onto the delivery label
# (boosted trees rank well but their raw probabilities drift with the number of trees; the
# order desk reads the number as a probability). The gain chart shows which features the trees
# split on most, both boosters together.

# %%
hazards = model.hazards or (ls.DELIVERY.label,)
print(
    ", ".join(
        f"{trees} trees on {label}" for label, trees in zip(hazards, model.trees_, strict=True)
    )
    + f" (at most {model.n_estimators} each; learning rate {model.learning_rate}, "
    f"{model.num_leaves} leaves, at least {model.min_child_samples} lines a leaf), "
    f"calibration: {model.calibration}"
)
gain = pd.Series(
    sum(
        booster.feature_importance(importance_type="gain", iteration=trees)
        for booster, trees in zip(model.boosters_, model.best_iterations_, strict=True)
    ),
    index=model.encoder_.names,
).sort_values()
gain = gain / gain.sum()
figure, axes = plt.subplots(figsize=(6, 4.5))
gain.tail(12).plot.barh(ax=axes, color="tab:blue")
axes.set_xlabel("share of the total split gain")
axes.set_title("What the trees use most (top 12)")
keep(figure, "gain")
print(
    f"The top 5 features carry {gain.tail(5).sum():.0%} of the gain: "
    f"{', '.join(gain.tail(5).index[::-1])}."
)

# %% [markdown]
# ## The test weeks: model, baselines and oracle on the same lines
#
# The baselines are what a planner would do without a model: the lane's own on-time rate of the
# last 90 days (nothing learned), and a logistic regression on the same features. The oracle is
# the simulator's P(late) for each line. `ratio` is (AUC - 0.5) / (oracle AUC - 0.5): the share
# of the learnable signal found. The scores are recomputed here and compared with the ones the
# training run logged.

# %%
test = parts["test"]
outcomes = test[aim.label].to_numpy(dtype=bool)
seed = int(params.get("seed", 7))
probabilities = {
    MODEL: model.predict_proba(test)[:, 1],
    aim.history_baseline: ls.LaneRateBaseline(aim.history_feature)
    .fit(train)
    .predict_proba(test)[:, 1],
    "logistic": ls.logistic_baseline(seed)
    .fit(train, train[aim.label].astype(int))
    .predict_proba(test)[:, 1],
}
oracle = true_late_probability(URL, aim.oracle_column)
if oracle is not None:
    p = test["line_id"].map(oracle).to_numpy(dtype=np.float64)
    if not np.isnan(p).any():
        probabilities[ORACLE] = p
scores = {name: score_classifier(outcomes, p) for name, p in probabilities.items()}
table = pd.DataFrame({name: s.as_dict() for name, s in scores.items()}).T
if ORACLE in scores:
    table["ratio"] = [oracle_auc_ratio(s.roc_auc, scores[ORACLE].roc_auc) for s in scores.values()]
print(table.drop(columns=["lines", "positives"]).round(4).to_string())
reproduced = max(
    abs(scores[MODEL].as_dict()[k] - logged[f"model_{k}"])
    for k in ("roc_auc", "pr_auc", "brier", "ece")
)
print(
    f"{len(test)} test lines, {outcomes.sum()} late. The run logged the same scores to within "
    f"{reproduced:.1e}."
)
findings |= {
    "version": registered.version,
    "test_lines": len(test),
    "model_roc_auc": scores[MODEL].roc_auc,
    "logged_model_roc_auc": logged["model_roc_auc"],
    "scores": {name: s.as_dict() for name, s in scores.items()},
}

# %%
model_auc = scores[MODEL].roc_auc
noise = auc_standard_error(model_auc, int(outcomes.sum()), int((~outcomes).sum()))
for name in (aim.history_baseline, "logistic"):
    gap = model_auc - scores[name].roc_auc
    verdict = "within" if abs(gap) < 2 * noise else "beyond"
    print(
        f"model vs {name}: ROC AUC {model_auc:.3f} vs {scores[name].roc_auc:.3f} "
        f"({gap:+.3f}; {verdict} two standard errors, ±{2 * noise:.3f}, of a window this size)"
    )
if ORACLE in scores:
    ratio = oracle_auc_ratio(model_auc, scores[ORACLE].roc_auc)
    print(
        f"The oracle reaches {scores[ORACLE].roc_auc:.3f}: the model finds {ratio:.0%} of the "
        "signal that is there to be found at entry."
    )
    findings["auc_ratio"] = ratio

# %% [markdown]
# ## Calibration: is a 30% line late 30% of the time?
#
# The test lines are cut into ten equal-size groups by predicted P(late); each point is a
# group's mean prediction against its realised late share. On the dashed diagonal the
# probabilities are honest. ECE is the line-weighted mean distance from it.

# %%
figure = plots.calibration_figure(outcomes, probabilities)
keep(figure, "calibration")
deciles = pd.DataFrame(
    calibration_table(outcomes, probabilities[MODEL]),
    columns=["lines", "mean predicted", "realised"],
)
print(deciles.round(3).to_string())
print(
    f"Model ECE {scores[MODEL].ece:.3f}: its riskiest tenth is predicted "
    f"{deciles['mean predicted'].iloc[-1]:.0%} late and was {deciles['realised'].iloc[-1]:.0%} "
    "late."
)
shift = parts["calibration"][aim.label].mean() - parts["test"][aim.label].mean()
if abs(shift) >= 0.03:
    print(
        f"The calibration weeks were {parts['calibration'][aim.label].mean():.0%} late and the "
        f"test weeks {parts['test'][aim.label].mean():.0%}: a calibrator fitted on a stretch with "
        f"{'more' if shift > 0 else 'fewer'} late lines {'over' if shift > 0 else 'under'}-"
        "predicts the next one by about that much."
    )

# %% [markdown]
# ## Lift: how many late lines a short alert queue catches
#
# Flag the riskiest x% of lines and count the share of all late lines among them. The dotted line
# is the alert budget the gate judges (`ALERT_BUDGET`); random flagging catches that share.

# %%
figure = plots.lift_figure(outcomes, probabilities)
keep(figure, "lift")
caught = {name: s.recall_at_budget for name, s in scores.items()}
print(
    f"Flagging the riskiest {ALERT_BUDGET:.0%} of lines catches "
    + ", ".join(f"{v:.0%} ({k})" for k, v in caught.items())
    + " of the late lines."
)

# %% [markdown]
# ## Reasons for single orders
#
# The reasons are the model's own contributions (log-odds added by each split on the line's
# path through the trees, see `training.path_attribution`) in a planner's words, the same ones
# the API returns when an order is scored. Below: the three riskiest test lines and one typical
# one, with what really happened.

# %%
order = np.argsort(-probabilities[MODEL], kind="mergesort")
picked = [*order[:3], order[len(order) // 2]]
rows = test.iloc[picked]
for (_, row), reasons, p in zip(
    rows.iterrows(), model.reasons(rows), probabilities[MODEL][picked], strict=True
):
    truth_p = (
        f", simulator P {probabilities[ORACLE][test.index.get_loc(row.name)]:.0%}"
        if ORACLE in probabilities
        else ""
    )
    outcome = "late" if row[aim.label] else "on time"
    print(
        f"line {row['line_id']} (order {row['order_id']}): P(late) {p:.0%}{truth_p}; "
        f"it was {outcome}"
    )
    for reason in reasons:
        print(f"   +{reason.contribution:.2f} log-odds  {reason.text}")
    if not reasons:
        print("   no feature raised its risk above the average line")
if ORACLE in probabilities:
    riskiest = order[: max(1, round(ALERT_BUDGET * len(order)))]
    print(
        f"The simulator's own P(late) of the model's riskiest {ALERT_BUDGET:.0%} of test lines "
        f"averages {probabilities[ORACLE][riskiest].mean():.0%}, against "
        f"{probabilities[ORACLE].mean():.0%} over all test lines: the reasons name what moved "
        "the model, and this says how much of it was real risk."
    )

# %%
print(json.dumps(findings, indent=1, default=str))
if OUT is not None:
    (OUT / "02_late_shipment.json").write_text(json.dumps(findings, indent=1, default=str))
