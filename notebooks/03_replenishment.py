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
# # 03 Replenishment: the demand forecast and the policy
#
# Replenishment is two steps. A **forecast** says how many units each SKU x location will be
# asked for per day (`training/demand_forecast.py`: one LightGBM model over every pair, Tweedie
# loss, one day ahead). A **policy** turns that rate, its error spread and the supplier's lead
# times into a reorder point and an order-up-to level per pair (`training/replenishment.py`).
#
# This notebook takes the served forecast (the registry's `champion` of `demand_forecast`, else
# its `challenger`), scores it on the weeks it was tested on, by intermittency class, beside
# the baselines (28-day average, Croston, TSB) and the oracle (the simulator's true expected
# units); then replays those weeks day by day under our policy, two baseline policies and the
# oracle's policy, and draws the trade-off every planner lives with: fill rate against the
# inventory it costs. Last, what the policy says to order today.

# %%
import json
import os
from dataclasses import replace
from datetime import date
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from erp_core.policy import load_policy
from erp_core.settings import get_settings
from training import demand_forecast as df
from training import replenishment as rp
from training import tracking
from training.frames import SplitPlan, TimeWindow, midnight
from training.report import build_report

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
        figure.savefig(OUT / f"03_{name}.png", dpi=80)


# %% [markdown]
# ## The forecast in service, and its test weeks
#
# The training run logged its time slices; the demand frame of that window is rebuilt with the
# same pipeline (`load_demand_frame`) so every score below is on the rows the run scored.

# %%
tracking.configure(settings)
for alias in (tracking.CHAMPION, tracking.CHALLENGER):
    registered = tracking.version_by_alias(df.REGISTERED_NAME, alias)
    if registered is not None:
        break
else:
    raise SystemExit(
        f"no {df.REGISTERED_NAME} model in {settings.mlflow_tracking_uri}: run `make run` "
        "or `erpx train demand-forecast --promote` first"
    )
model = tracking.load_model(df.REGISTERED_NAME, alias)
run = MlflowClient().get_run(registered.run_id)
params, logged = run.data.params, run.data.metrics
slices = {
    name: [date.fromisoformat(day) for day in params[f"slice.{name}"].split("..")]
    for name in ("train", "validation", "calibration", "test")
}
window = TimeWindow(midnight(slices["train"][0]), midnight(slices["test"][1]))
plan = df.demand_plan(
    SplitPlan(
        **{f"{n}_days": (slices[n][1] - slices[n][0]).days for n in ("validation", "calibration")},
        test_days=(slices["test"][1] - slices["test"][0]).days,
        min_train_days=1,
    )
)
frames = tracking.frames_folder(settings, "erpx-notebook-")
data = df.load_demand_frame(URL, window, plan, calendar, frames)
train, test = data.part("train"), data.part("test")
holdout = pd.concat([data.part("validation"), data.part("calibration")])
print(
    f"{df.REGISTERED_NAME} v{registered.version} ({alias}), best iteration "
    f"{model.best_iteration_}; test weeks {slices['test'][0]} .. {slices['test'][1]}: "
    f"{len(test)} SKU-location days over "
    f"{test.groupby(['sku', 'location_id'], observed=True).ngroups} pairs"
)

# %% [markdown]
# ## Forecast accuracy by intermittency class
#
# Each test series is classed by its demand on the first test day (smooth, erratic,
# intermittent, lumpy). WRMSSE scales each series' error by how hard it is (the naive forecast's
# error on the training weeks) and weights it by revenue: below 1 beats "same as yesterday".
# Bias is the share over-forecast (+) or under-forecast (-). MASE is shown but does not decide:
# it rewards forecasting zero for items that are mostly zero, which a policy cannot use.

# %%
forecasts = {df.MODEL: model.predict(test)} | df.baseline_forecasts(data.frame, test.index)
oracle, oracle_rows = df.oracle_forecast(URL, test)
if oracle is not None:
    forecasts[df.ORACLE] = oracle
scale = df.scaling(train, test)
scores = {name: df.score_forecasts(test, f, scale) for name, f in forecasts.items()}
table = pd.DataFrame(
    [
        {"scorer": name, "class": klass, **s.as_dict()}
        for name, by_class in scores.items()
        for klass, s in by_class.items()
    ]
)
table = table.dropna(subset=["wrmsse"])  # a class with no scalable series has no score
print(table.pivot(index="class", columns="scorer", values="wrmsse").round(3).to_string())
print(table.pivot(index="class", columns="scorer", values="bias").round(3).to_string())
reproduced = abs(scores[df.MODEL][df.ALL].wrmsse - logged[f"{df.MODEL}_{df.ALL}_wrmsse"])
print(f"The run logged the same model WRMSSE to within {reproduced:.1e}.")

wrmsse = table.pivot(index="class", columns="scorer", values="wrmsse").drop(index=df.ALL)
figure, axes = plt.subplots(figsize=(8, 3.5))
wrmsse.plot.bar(ax=axes, rot=0)
axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
axes.set_ylabel("WRMSSE (lower is better)")
axes.set_title("Forecast error on the test weeks, by intermittency class")
keep(figure, "accuracy_by_class")
keep(df.daily_totals_figure(test, forecasts), "daily_totals")

overall = {name: by_class[df.ALL] for name, by_class in scores.items()}
best_baseline = min(
    (n for n in overall if n not in (df.MODEL, df.ORACLE)), key=lambda n: overall[n].wrmsse
)
print(
    f"Over all series the model's WRMSSE is {overall[df.MODEL].wrmsse:.3f} (bias "
    f"{overall[df.MODEL].bias:+.1%}); the best baseline, {best_baseline}, "
    f"{overall[best_baseline].wrmsse:.3f}"
    + (f"; the oracle {overall[df.ORACLE].wrmsse:.3f}." if df.ORACLE in overall else ".")
)
for klass, row in wrmsse.iterrows():
    baselines = row.drop([df.MODEL, df.ORACLE], errors="ignore")
    print(
        f"  {klass}: model {row[df.MODEL]:.3f} vs best baseline {baselines.min():.3f} "
        f"({baselines.idxmin()})" + (f", oracle {row[df.ORACLE]:.3f}" if df.ORACLE in row else "")
    )
findings |= {
    "version": registered.version,
    "model_wrmsse": overall[df.MODEL].wrmsse,
    "wrmsse": {name: s.wrmsse for name, s in overall.items()},
    "logged_model_wrmsse": logged[f"{df.MODEL}_{df.ALL}_wrmsse"],
    "wrmsse_by_class": {k: {n: float(v) for n, v in r.items()} for k, r in wrmsse.iterrows()},
}

# %% [markdown]
# ## The backtest: fill rate against inventory
#
# `run_backtest` replays the test weeks day by day for every pair: receipts arrive, demand is
# served from stock (what cannot be served is lost), and every review period the policy orders up to
# its level when the position is at or below its reorder point, each order taking the supplier's
# next real lead time. The policies:
#
# * **model**: ours, from the forecast's rate and its error spread, at the ABC class's fill
#   target (`FILL_TARGET`, printed below);
# * **min_max_30d**: the classic ERP rule, min = 30-day average x (lead time + a week), max = min
#   + a review period;
# * **moving_average_base_stock**: base stock from the 28-day average and its spread;
# * **oracle**: our policy planning with the simulator's true expected units.

# %%
result = rp.run_backtest(URL, calendar, model, plan, frames)
policies = pd.DataFrame(result["policies"]).T
print(
    f"backtest window {result['window']}, {result['pairs']} pairs, "
    f"review every {result['review_days']} days"
)
print(policies.round(3).to_string())
print("fill targets by ABC class: " + ", ".join(f"{k} {v:.0%}" for k, v in rp.FILL_TARGET.items()))

# %% [markdown]
# One point per policy says little: a policy that holds more stock fills more. To compare like
# with like, the same replay is run with every pair's fill target moved together (the same
# `replay_pairs` and `backtest` the function above calls, with the target replaced); the curve
# each policy traces is its efficient frontier. A frontier further up and to the left fills more
# for the same stock. The min-max rule has no target to move: it stays a point. The stars are the
# policies as configured (the table above).

# %%
rates = {df.MODEL: model.predict(test)}
held = {df.MODEL: model.predict(holdout)}
held_oracle, _ = df.oracle_forecast(URL, holdout)
if oracle is not None and held_oracle is not None:
    rates[df.ORACLE] = oracle
    held[df.ORACLE] = held_oracle
pairs = rp.replay_pairs(test, rates, holdout, held, URL)
targets = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.995)
sweep = pd.DataFrame(
    [
        {"target": target, "policy": policy, **score}
        for target in targets
        for policy, score in rp.backtest([replace(p, fill=target) for p in pairs]).items()
    ]
)
figure, axes = plt.subplots(figsize=(7, 4.5))
for policy, group in sweep.groupby("policy"):
    style = dict(marker="o") if policy != "min_max_30d" else dict(marker="s", linestyle="none")
    (line,) = axes.plot(group["average_inventory_value"], group["fill_rate"], label=policy, **style)
    if policy in policies.index:
        axes.scatter(
            policies.loc[policy, "average_inventory_value"],
            policies.loc[policy, "fill_rate"],
            marker="*",
            s=220,
            color=line.get_color(),
            edgecolor="black",
            zorder=4,
        )
axes.set_xlabel("average inventory value at cost")
axes.set_ylabel("fill rate (units served from stock / asked)")
axes.set_title(f"Fill rate vs inventory, test weeks ({len(pairs)} pairs)")
axes.legend()
keep(figure, "frontier")

configured = policies.loc[df.MODEL]
print(
    f"As configured, our policy filled {configured['fill_rate']:.1%} of units with "
    f"{configured['average_inventory_value']:,.0f} of stock on average; "
    + "; ".join(
        f"{name} {row['fill_rate']:.1%} with {row['average_inventory_value']:,.0f}"
        for name, row in policies.drop(index=df.MODEL).iterrows()
    )
    + "."
)
curves = {
    policy: group.sort_values("fill_rate")
    for policy, group in sweep.groupby("policy")
    if policy != "min_max_30d"
}
ours = curves[df.MODEL]
for policy, curve in curves.items():
    low = max(curve["fill_rate"].min(), ours["fill_rate"].min())
    high = min(curve["fill_rate"].max(), ours["fill_rate"].max())
    if policy == df.MODEL or low >= high:
        continue
    fill = (low + high) / 2
    theirs = float(np.interp(fill, curve["fill_rate"], curve["average_inventory_value"]))
    mine = float(np.interp(fill, ours["fill_rate"], ours["average_inventory_value"]))
    print(
        f"Like for like at {fill:.1%} fill (both frontiers reach it): {policy} needs "
        f"{theirs:,.0f} of stock, our policy {mine:,.0f} ({mine / theirs:.2f}x)."
    )
    findings[f"stock_ratio_vs_{policy}"] = mine / theirs
findings |= {
    "backtest_pairs": result["pairs"],
    "policies": {k: {m: float(v) for m, v in r.items()} for k, r in policies.iterrows()},
}

# %% [markdown]
# ## What to order today
#
# The report a planner reads (`erpx report replenishment`, `training/report.py`): the forecast
# for "now" (the day after the last order entry), the inventory position from the ledger, and
# the order quantities. The chart shows the pair with the largest order: its daily units, the
# forecast, and where its position stands against the reorder point and the order-up-to level.

# %%
report = build_report(settings, calendar)
recs = report.recommendations
to_order = recs.loc[recs["order_qty"] > 0]
print(
    f"As of {report.as_of:%Y-%m-%d}: {len(to_order)} of {len(recs)} pairs to order now, value "
    f"{to_order['value'].sum():,.2f}; {len(report.transfers)} transfers suggested."
)
print(
    to_order[
        [
            "sku",
            "location_id",
            "abc_class",
            "position",
            "reorder_point",
            "order_up_to",
            "order_qty",
            "days_of_cover",
        ]
    ]
    .head(10)
    .round(1)
    .to_string(index=False)
)
if len(to_order):
    top = to_order.iloc[0]
    past = report.history.loc[
        (report.history["sku"] == top["sku"])
        & (report.history["location_id"] == top["location_id"])
    ].sort_values("day")
    figure, (history, levels) = plt.subplots(1, 2, figsize=(10, 3), width_ratios=[3, 1])
    history.bar(past["day"], past["actual"], color="lightgrey", width=1.0, label="units asked")
    history.plot(past["day"], past["forecast"], color="tab:blue", label="forecast")
    history.set_title(f"{top['sku']} @ {top['location_id']}: last {len(past)} days", fontsize=10)
    history.legend()
    levels.bar(["position"], [top["position"]], color="tab:blue")
    levels.axhline(top["reorder_point"], color="tab:red", label="reorder point")
    levels.axhline(top["order_up_to"], color="tab:green", label="order-up-to")
    levels.set_title(f"order {top['order_qty']}", fontsize=10)
    levels.legend(fontsize=8)
    figure.autofmt_xdate()
    keep(figure, "order_now")
findings["to_order_now"] = len(to_order)

# %%
print(json.dumps(findings, indent=1, default=str))
if OUT is not None:
    (OUT / "03_replenishment.json").write_text(json.dumps(findings, indent=1, default=str))
