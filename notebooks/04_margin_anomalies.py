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
# # 04 Margin anomalies
#
# A price typed ten times too high, a discount beyond authority entered without approval, a
# stale price list: each costs margin or a customer's trust, and each is cheapest to fix while
# the order is still a draft. The margin-anomaly model (`training/margin_anomaly.py`) scores
# every priced line in [0, 1] from an expected price (a LightGBM regression on the line's
# context), the robust residual against it, an IsolationForest on the price's shape, and hard
# rules (below cost, discount beyond the threshold, a superseded price). It never reads a label:
# the simulator's labels (`features.truth_labels`) are used here only to judge it.
#
# This notebook takes the served model (the registry's `champion` of `margin_anomaly`, else its
# `challenger`), rebuilds its pricing frame with `training.margin_job.load_pricing_data`, scores
# it with the job's own `scores_on` and `measured`, and shows the score distribution, precision
# and recall by anomaly type against the baselines, and the lines it would flag first.

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
from training import margin_anomaly as ma
from training import margin_job as mj
from training import plots, tracking
from training.frames import SplitPlan, TimeWindow, midnight

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
        figure.savefig(OUT / f"04_{name}.png", dpi=80)


# %% [markdown]
# ## The model in service, and the lines it is judged on
#
# The training run logged its time slices. The regression learned from the training weeks, the
# validation weeks stopped it, and the calibration weeks are where the residual scales and the
# IsolationForest were measured; the test weeks are what the gate judged. A pricing label is
# known when the line is typed, so the window runs to the last entry.

# %%
tracking.configure(settings)
for alias in (tracking.CHAMPION, tracking.CHALLENGER):
    registered = tracking.version_by_alias(ma.REGISTERED_NAME, alias)
    if registered is not None:
        break
else:
    raise SystemExit(
        f"no {ma.REGISTERED_NAME} model in {settings.mlflow_tracking_uri}: run `make run` "
        "or `erpx train margin-anomaly --promote` first"
    )
model = tracking.load_model(ma.REGISTERED_NAME, alias)
run = MlflowClient().get_run(registered.run_id)
params, logged = run.data.params, run.data.metrics
slices = {
    name: [date.fromisoformat(day) for day in params[f"slice.{name}"].split("..")]
    for name in ("train", "validation", "calibration", "test")
}
window = TimeWindow(midnight(slices["train"][0]), midnight(slices["test"][1]))
plan = mj.pricing_plan(
    SplitPlan(
        **{f"{n}_days": (slices[n][1] - slices[n][0]).days for n in ("validation", "calibration")},
        test_days=(slices["test"][1] - slices["test"][0]).days,
        min_train_days=1,
    )
)
data = mj.load_pricing_data(
    URL, window, plan, calendar, tracking.frames_folder(settings, "erpx-notebook-")
)
if not data.labelled:
    raise SystemExit(f"{URL} holds no simulator truth: there are no labels to judge the model by")
counts = pd.DataFrame(
    {
        "lines": {n: len(data.part(n)) for n in slices},
        "anomalies": {n: int(data.part(n)[ma.LABEL].sum()) for n in slices},
    }
)
print(f"{ma.REGISTERED_NAME} v{registered.version} ({alias}), alert rate {ma.ALERT_RATE:.0%}")
print(counts.to_string())

# %% [markdown]
# ## The test weeks, as the gate saw them
#
# The baselines: the hard rules alone, and a z-score of the price against the customer's recent
# median price. The model's two statistical parts are scored alone too (`residual_only`,
# `iforest_only`), to show what each adds. PR AUC is the headline (anomalies are rare, so ROC
# AUC flatters); precision and recall are at the alert rate, the share of lines a finance team
# would review.

# %%
baselines = mj.fit_baselines(data)
test = data.part("test")
detectors = mj.scores_on(model, baselines, test)
test_scores = mj.measured(test, detectors)
columns = ["anomalies", "pr_auc", "roc_auc", "alerts", "precision_at_alert", "recall_at_alert"]
if test_scores:
    table = pd.DataFrame({n: s.as_dict() for n, s in test_scores.items()}).T[columns]
    print(table.round(3).to_string())
    reproduced = abs(test_scores[mj.MODEL].pr_auc - logged[f"{mj.MODEL}_pr_auc"])
    print(f"The run logged the same model PR AUC to within {reproduced:.1e}.")
    findings |= {
        "test_model_pr_auc": test_scores[mj.MODEL].pr_auc,
        "test_pr_auc": {name: s.pr_auc for name, s in test_scores.items()},
        "logged_model_pr_auc": logged[f"{mj.MODEL}_pr_auc"],
    }
else:
    print("No labelled anomaly fell in the test weeks: the gate had nothing to judge by.")
if counts.loc["test", "anomalies"] < 10:
    print(
        f"Only {counts.loc['test', 'anomalies']} labelled anomaly line(s) in the test weeks: "
        "these rates move by a whole anomaly at a time. Every line of the window, below, gives "
        "a wider view."
    )

# %% [markdown]
# ## Every line of the window: more anomalies, no label ever seen
#
# Anomalies are a few in a thousand lines, so the test weeks alone hold too few to say much by
# type. No part of the model ever read a label, so every priced line of the window can be scored
# and judged. The training weeks are not flattering here: the regression learned from them,
# anomalies included, and a price it has fitted scores *lower*, not higher; the same holds for
# the IsolationForest and the calibration weeks. The test table above stays the honest headline.

# %%
window_lines = data.frame
window_scores = mj.scores_on(model, baselines, window_lines)
window_lines = window_lines.assign(score=window_scores[mj.MODEL])
is_anomaly = window_lines[ma.LABEL].to_numpy(dtype=bool)
kinds = window_lines[ma.TYPE_COLUMN].where(window_lines[ma.LABEL]).astype("object")
threshold = window_lines["score"].to_numpy()[ma.alerted(window_lines["score"].to_numpy())].min()

figure, axes = plt.subplots(figsize=(8, 4))
bins = np.linspace(0, 1, 41)
axes.hist(
    window_lines.loc[~is_anomaly, "score"], bins=bins, color="lightgrey", label="normal lines"
)
for kind in sorted(kinds.dropna().unique()):
    axes.hist(window_lines.loc[kinds == kind, "score"], bins=bins, label=kind, alpha=0.8)
axes.axvline(threshold, color="black", linestyle=":", label=f"top {ma.ALERT_RATE:.0%} alert line")
axes.set_yscale("log")
axes.set_xlabel("anomaly score")
axes.set_ylabel("lines (log)")
axes.set_title("Score distribution, every priced line of the window")
axes.legend(fontsize=8)
keep(figure, "score_distribution")
print(
    f"{len(window_lines)} priced lines, {is_anomaly.sum()} anomalies. Normal lines score a median "
    f"{window_lines.loc[~is_anomaly, 'score'].median():.2f} (99th percentile "
    f"{window_lines.loc[~is_anomaly, 'score'].quantile(0.99):.2f}); anomalies a median "
    f"{window_lines.loc[is_anomaly, 'score'].median():.2f}. The alert line sits at {threshold:.2f}."
)

# %% [markdown]
# ## Precision and recall by anomaly type
#
# Each kind is judged alone: its lines against the normal lines (the other kinds left out), as if
# it were the only mistake people made. A typed x10 price should be easy for any detector; a
# discount without approval or a stale price is invisible to a price-shape detector and needs
# the rules. Then every detector's precision-recall curve over all kinds at once.

# %%
rows = []
for kind in sorted(kinds.dropna().unique()):
    keep_rows = (~is_anomaly) | (kinds == kind).to_numpy()
    for name, scores in window_scores.items():
        found = ma.score_detector(
            is_anomaly[keep_rows], kinds.to_numpy()[keep_rows], scores[keep_rows]
        )
        if found is not None:
            rows.append(
                {
                    "type": kind,
                    "detector": name,
                    "anomalies": found.anomalies,
                    "pr_auc": found.pr_auc,
                    "precision_at_alert": found.precision_at_alert,
                    "recall_at_alert": found.recall_at_alert,
                }
            )
by_type = pd.DataFrame(rows)
print(by_type.pivot(index="type", columns="detector", values="pr_auc").round(2).to_string())
recall = by_type.pivot(index="type", columns="detector", values="recall_at_alert")
figure, axes = plt.subplots(figsize=(9, 3.5))
recall.plot.bar(ax=axes, rot=0)
axes.set_ylim(0, 1.05)
axes.set_ylabel(f"recall at the top {ma.ALERT_RATE:.0%}")
axes.set_title("Anomalies caught by type, each judged alone against normal lines")
axes.legend(fontsize=7, ncol=3)
keep(figure, "recall_by_type")
for kind, row in by_type.loc[by_type["detector"] == mj.MODEL].set_index("type").iterrows():
    best = by_type.loc[by_type["type"] == kind].sort_values("pr_auc").iloc[-1]
    print(
        f"  {kind} ({row['anomalies']}): model PR AUC {row['pr_auc']:.2f}, recall "
        f"{row['recall_at_alert']:.0%}; best detector {best['detector']} ({best['pr_auc']:.2f})"
    )
keep(plots.precision_recall_figure(is_anomaly, window_scores), "precision_recall")
overall = mj.measured(window_lines, window_scores)
findings |= {
    "window_anomalies": int(is_anomaly.sum()),
    "window_pr_auc": {n: s.pr_auc for n, s in overall.items()},
    "pr_auc_by_type": {
        k: float(v)
        for k, v in by_type.loc[by_type["detector"] == mj.MODEL].set_index("type")["pr_auc"].items()
    },
}

# %% [markdown]
# ## The lines it would flag first
#
# The ten highest-scoring lines of the window with the model's own reasons (the words the API
# puts on an exception case) and what the simulator says they really were.

# %%
top = window_lines.sort_values("score", ascending=False).head(10)
top_parts = model.score_parts(top)
flagged = pd.DataFrame(
    {
        "line": top["line_id"].to_numpy(),
        "tier": top["customer_tier"].astype(str).to_numpy(),
        "price": top["unit_price"].astype(float).round(2).to_numpy(),
        "list": top["quantity_break_price"].astype(float).round(2).to_numpy(),
        "cost": top["unit_cost"].astype(float).round(2).to_numpy(),
        "score": top["score"].round(3).to_numpy(),
        "truth": top[ma.TYPE_COLUMN].where(top[ma.LABEL], "normal").to_numpy(),
        "reason": model.reasons(top, top_parts),
    }
)
with pd.option_context("display.max_colwidth", 90, "display.width", 200):
    print(flagged.to_string(index=False))
hits = int((flagged["truth"] != "normal").sum())
print(
    f"{hits} of the top 10 are labelled anomalies; "
    f"{is_anomaly.sum() - hits} of the {is_anomaly.sum()} anomalies are not among them."
)
findings["top10_hits"] = hits

# %%
print(json.dumps(findings, indent=1, default=str))
if OUT is not None:
    (OUT / "04_margin_anomalies.json").write_text(json.dumps(findings, indent=1, default=str))
