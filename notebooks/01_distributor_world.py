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
# # 01 The distributor world
#
# What the simulated history looks like before any model reads it: the demand the customers
# place (weekly and yearly rhythm, items asked for every day and items asked for now and then),
# how well the warehouses fill it, which lanes deliver late and when, and the pricing mistakes
# the simulator slipped in.
#
# Two sources, kept apart as the product keeps them: the **ERP database** (what the business
# recorded, read through erp_core and the feature definitions) and the **simulator's truth**
# (`erp_core/simulate/truth.py`: the expected units, the probabilities lateness was drawn from,
# the labels of the injected anomalies), which no feature ever reads.
#
# The world comes from the settings (`ERPX_DATABASE_URL`, `ERPX_VAR_DIR`): by default the demo
# world `make run` builds in `var/erpx.db`. Every number below is computed when the notebook
# runs.

# %%
import json
import os
from datetime import timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sqlalchemy import func, select

from erp_core.db.engine import make_engine
from erp_core.db.models import (
    Carrier,
    Customer,
    Lane,
    Location,
    OrderLine,
    Product,
    SalesOrder,
    ServiceAlert,
)
from erp_core.db.uow import UnitOfWork
from erp_core.kpis import compute_kpis
from erp_core.policy import load_policy
from erp_core.settings import get_settings
from erp_core.simulate import truth
from erp_core.simulate.run import SETTLING_DAYS
from features.build import build_feature_set
from features.demand import ADI_CUT, CV2_CUT
from features.truth_labels import load_pricing_truth
from training import tracking
from training.demand_forecast import LABEL as DEMAND_LABEL
from training.demand_forecast import true_expected_units
from training.frames import entry_span, midnight
from training.oracle import truth_folders

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
        figure.savefig(OUT / f"01_{name}.png", dpi=80)


# %% [markdown]
# ## Which world
#
# The `sim_runs` row marks a database as simulated and says where its truth lives. A database
# without one is a real history: this notebook needs the truth, so it stops there
# (`05_scms_real_history.py` looks at a real one).

# %%
engine = make_engine(URL)
runs = truth.simulated_runs(engine)
if not runs or not truth_folders(URL):
    raise SystemExit(f"{URL} holds no simulation run with its truth: run `make run` first")
with engine.connect() as connection:
    counts = {
        model.__tablename__: connection.execute(select(func.count()).select_from(model)).scalar()
        for model in (Product, Customer, Location, Carrier, Lane, SalesOrder, OrderLine)
    }
first_entry, last_entry = entry_span(URL)
run = runs[-1]
print(
    f"profile {run['profile']}, seed {run['seed']}, {run['days']} days simulated: "
    f"orders entered {first_entry:%Y-%m-%d} .. {last_entry:%Y-%m-%d}"
)
print(pd.Series(counts, name="rows").to_string())
findings |= {"orders": counts["sales_orders"], "lines": counts["order_lines"]}

# %% [markdown]
# ## Demand: the weekly and the yearly rhythm
#
# Demand here is the feature set's definition (`features/demand.py`): the units customers asked
# for per SKU, location and day, at the customer's home location, including lines later
# cancelled. Beside it, the simulator's *expected* units for the same days: the realised line
# wobbles around the expected one by chance alone.

# %%
work = tracking.frames_folder(settings, "erpx-notebook-")
history_end = midnight(last_entry.date()) + timedelta(days=1)
built = build_feature_set("demand", URL, first_entry.date(), history_end, work, calendar)
demand = pd.read_parquet(built.frame_path)
demand["date"] = demand["day"].dt.date
expected = true_expected_units(URL)
demand = demand.merge(
    expected,
    left_on=["date", "sku", "location_id"],
    right_on=["day", "sku", "location_id"],
    how="left",
    suffixes=("", "_truth"),
)
daily = (
    demand.dropna(subset=[DEMAND_LABEL])
    .groupby("day")[[DEMAND_LABEL, "expected_units"]]
    .sum()
    .rename(columns={DEMAND_LABEL: "asked", "expected_units": "expected"})
)
daily.index = daily.index.tz_convert(None)

figure, axes = plt.subplots(figsize=(9, 3.5))
axes.plot(daily.index, daily["asked"], color="lightgrey", label="units asked (ERP)")
axes.plot(daily.index, daily["asked"].rolling(7).mean(), color="black", label="7-day mean")
axes.plot(daily.index, daily["expected"], color="tab:blue", label="expected (simulator)")
axes.set_ylabel("units per day, all SKUs")
axes.set_title("Daily demand")
axes.legend()
keep(figure, "daily_demand")

by_weekday = daily.groupby(daily.index.day_of_week).mean()
by_month = daily.groupby(daily.index.to_period("M")).mean()
weekend = daily.index.day_of_week >= 5
print(
    f"{len(daily)} days; a weekday averages {daily['asked'][~weekend].mean():.0f} units, a "
    f"weekend day {daily['asked'][weekend].mean():.0f} "
    f"(expected {daily['expected'][~weekend].mean():.0f} and "
    f"{daily['expected'][weekend].mean():.0f}): the week, not chance, sets the daily level."
)
month_span = by_month["expected"].max() / by_month["expected"].min()
print(
    f"Expected units per day by month run from {by_month['expected'].min():.0f} to "
    f"{by_month['expected'].max():.0f} ({month_span:.2f}x) over the {len(by_month)} months "
    f"covered{'' if len(daily) >= 365 else ': less than a year, so only part of the yearly cycle'}."
)
figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
by_weekday.plot.bar(ax=left, color=["grey", "tab:blue"], rot=0)
left.set_xticklabels(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
left.set_title("mean units per day, by weekday")
by_month.plot.bar(ax=right, color=["grey", "tab:blue"], rot=0)
right.set_title("mean units per day, by month")
keep(figure, "seasonality")
findings["weekday_to_weekend"] = float(
    daily["asked"][~weekend].mean() / max(daily["asked"][weekend].mean(), 1e-9)
)

# %% [markdown]
# ## Items asked for every day, and items asked for now and then
#
# Each SKU x location is classed as the demand features class it on the last day (Syntetos and
# Boylan, over the last 91 days): ADI is the mean interval between days with demand, CV² the
# spread of the non-zero days. Smooth and erratic items are asked for most days; intermittent and
# lumpy ones on a few, the lumpy ones in very different sizes. These are the items a moving
# average forecasts worst and a safety stock protects least.

# %%
last_day = demand.sort_values("day").groupby(["sku", "location_id"], observed=True).tail(1)
last_day = last_day.loc[last_day["intermittency_class"].astype(str) != "none"]
classes = last_day["intermittency_class"].astype(str).value_counts()
figure, axes = plt.subplots(figsize=(6, 4.5))
for name, group in last_day.groupby(last_day["intermittency_class"].astype(str)):
    axes.scatter(group["adi_91d"], group["cv2_91d"], label=f"{name} ({len(group)})", alpha=0.7)
axes.axvline(ADI_CUT, color="grey", linestyle="--", linewidth=1)
axes.axhline(CV2_CUT, color="grey", linestyle="--", linewidth=1)
axes.set_xlabel("ADI: days per day with demand")
axes.set_ylabel("CV² of the non-zero days")
axes.set_title("SKU x location demand classes, last day")
axes.legend()
keep(figure, "intermittency")
mix = run["summary"]["item_mix"]
print(f"Pairs by class on the last day: {classes.to_dict()}.")
print(
    "The simulator drew its SKUs as "
    + ", ".join(f"{share:.0%} {name}" for name, share in mix.items())
    + "; the ERP only sees the orders, and a slow item with a run of orders can look smooth."
)
findings["intermittency_classes"] = {k: int(v) for k, v in classes.items()}

examples = (
    last_day.sort_values("adi_91d").groupby(last_day["intermittency_class"].astype(str)).head(1)
)
figure, panels = plt.subplots(len(examples), 1, figsize=(9, 1.6 * len(examples)), sharex=True)
for panel, row in zip(np.atleast_1d(panels), examples.itertuples(), strict=True):
    series = demand.loc[(demand["sku"] == row.sku) & (demand["location_id"] == row.location_id)]
    panel.bar(series["day"], series[DEMAND_LABEL], color="grey", width=1.0)
    panel.plot(series["day"], series["expected_units"], color="tab:blue", linewidth=1)
    panel.set_title(f"{row.sku} @ {row.location_id}: {row.intermittency_class}", fontsize=9)
keep(figure, "example_series")

# %% [markdown]
# ## Fill rate, week by week
#
# The KPIs come from `erp_core.kpis.compute_kpis`, the one definition the API and the control
# tower use (KPIS.md): line fill rate is the share of due lines shipped complete from stock at the
# promised location in their first shipment; OTIF the share of delivered lines on time and in
# full against the first promise.

# %%
uow = UnitOfWork.from_url(URL, load_policy(settings.policy_path))
week_start = midnight(first_entry.date() - timedelta(days=first_entry.weekday()))
weeks = []
while week_start + timedelta(days=7) <= midnight(last_entry.date()):
    report = compute_kpis(uow, week_start, week_start + timedelta(days=7))
    weeks.append(
        {
            "week": week_start.date(),
            **{
                name: report.kpi(name).value
                for name in ("line_fill_rate", "unit_fill_rate", "on_time_shipment", "otif")
            },
            "due_lines": report.kpi("line_fill_rate").denominator,
        }
    )
    week_start += timedelta(days=7)
weekly = pd.DataFrame(weeks).set_index("week")
whole = compute_kpis(uow, midnight(first_entry.date()), midnight(last_entry.date()))
uow.engine.dispose()
figure, axes = plt.subplots(figsize=(9, 3.5))
for name in ("line_fill_rate", "unit_fill_rate", "otif"):
    axes.plot(weekly.index, weekly[name], marker=".", label=name)
axes.set_ylim(0, 1.02)
axes.set_ylabel("share")
axes.set_title("Fill rate and OTIF by week (compute_kpis)")
axes.legend()
keep(figure, "fill_rate")
fill = whole.kpi("line_fill_rate")
worst = weekly["line_fill_rate"].idxmin()
print(
    f"Over the whole history {fill.numerator} of {fill.denominator} due lines filled from stock "
    f"({fill.value:.1%}); OTIF {whole.kpi('otif').value:.1%}. The worst week starts {worst} "
    f"({weekly.loc[worst, 'line_fill_rate']:.1%} of {weekly.loc[worst, 'due_lines']} lines): "
    "weeks where a supplier slipped or demand ran ahead of the purchasing policy."
)
findings |= {"line_fill_rate": fill.value, "otif": whole.kpi("otif").value}

# %% [markdown]
# ## Late deliveries by lane and by season
#
# A lane is a carrier from a location to a region at a service level. The outcome is the late-
# shipment feature set's label (delivered after the first promised delivery date), for lines
# entered at least the settling days before the end, so every line had time to arrive. The dots
# are the simulator's own mean P(late delivery) on the same lines: where bar and dot agree, the
# realised rate is the lane's real hazard and not a streak of luck.

# %%
settled_end = midnight(last_entry.date()) - timedelta(days=SETTLING_DAYS)
built = build_feature_set("late_shipment", URL, first_entry.date(), settled_end, work, calendar)
lines = pd.read_parquet(built.frame_path).dropna(subset=["label_late_delivery"])
line_truth = pd.concat(
    [pd.read_parquet(folder / truth.LINES) for folder in truth_folders(URL)], ignore_index=True
).drop_duplicates("line_id", keep="last")
lines = lines.merge(line_truth[["line_id", "p_late_delivery", "cause"]], on="line_id", how="left")
lines["late"] = lines["label_late_delivery"].astype(bool)
lines["lane"] = (
    lines["carrier"].astype(str)
    + " "
    + lines["fulfilling_location"].astype(str)
    + "→"
    + lines["ship_region"].astype(str)
    + np.where(lines["expedite"].astype(bool), " express", "")
)
lanes = (
    lines.groupby("lane")
    .agg(lines=("late", "size"), late_rate=("late", "mean"), p_late=("p_late_delivery", "mean"))
    .query("lines >= 30")
    .sort_values("late_rate")
)
figure, axes = plt.subplots(figsize=(8, 0.3 * len(lanes) + 1.2))
axes.barh(lanes.index, lanes["late_rate"], color="lightgrey", label="realised late rate")
axes.scatter(
    lanes["p_late"], lanes.index, color="tab:red", zorder=3, label="simulator mean P(late)"
)
axes.set_xlabel("share of lines delivered late")
axes.set_title("Late delivery by lane (lanes with at least 30 settled lines)")
axes.legend(loc="lower right")
keep(figure, "late_by_lane")
overall = lines["late"].mean()
print(
    f"{len(lines)} settled lines, {overall:.1%} delivered late. Across the {len(lanes)} lanes "
    f"with 30+ lines the late rate runs from {lanes['late_rate'].min():.1%} "
    f"({lanes.index[0]}) to {lanes['late_rate'].max():.1%} ({lanes.index[-1]}); the simulator's "
    f"mean P(late) on them differs from the realised rate by "
    f"{(lanes['late_rate'] - lanes['p_late']).abs().mean():.1%} on average."
)
causes = lines.loc[lines["late"], "cause"].value_counts(normalize=True)
print(
    "What made the late lines late (simulator truth): "
    + ", ".join(f"{c} {s:.0%}" for c, s in causes.items())
)
findings |= {"late_delivery_rate": float(overall), "lanes_shown": len(lanes)}

# %% [markdown]
# Season: the late rate by week of entry, per ship region, with the storms the carriers
# announced (the `service_alerts` the late-shipment features read at entry) shaded in the
# region's colour. Lines entered during a storm into its region are the ones that go late
# together.

# %%
with engine.connect() as connection:
    alerts = pd.read_sql(
        select(
            ServiceAlert.region, ServiceAlert.severity, ServiceAlert.starts_at, ServiceAlert.ends_at
        ),
        connection,
    )
alerts["starts_at"] = pd.to_datetime(alerts["starts_at"], utc=True)
alerts["ends_at"] = pd.to_datetime(alerts["ends_at"], utc=True)
lines["week"] = lines["entered_at"].dt.tz_convert(None).dt.to_period("W").dt.start_time
weekly_late = lines.pivot_table(
    index="week", columns="ship_region", values="late", aggfunc="mean", observed=True
)
figure, axes = plt.subplots(figsize=(9, 3.5))
colours = {}
for region in weekly_late.columns:
    (drawn,) = axes.plot(weekly_late.index, weekly_late[region], marker=".", label=str(region))
    colours[str(region)] = drawn.get_color()
for alert in alerts.itertuples():
    axes.axvspan(
        alert.starts_at.tz_convert(None),
        alert.ends_at.tz_convert(None),
        color=colours.get(alert.region, "grey"),
        alpha=0.1 * alert.severity,
    )
axes.set_ylabel("late delivery rate")
axes.set_title("Late rate by week of entry and ship region; shaded: announced storms")
axes.legend()
keep(figure, "late_by_week")
in_storm = np.zeros(len(lines), dtype=bool)
entered = lines["entered_at"]
for alert in alerts.itertuples():
    in_storm |= (
        (lines["ship_region"].astype(str) == alert.region)
        & (entered >= alert.starts_at)
        & (entered < alert.ends_at)
    ).to_numpy()
if in_storm.any():
    print(
        f"{len(alerts)} storms announced; the {in_storm.sum()} lines entered into a region under "
        f"one went late {lines['late'][in_storm].mean():.0%} of the time, the others "
        f"{lines['late'][~in_storm].mean():.0%}."
    )
else:
    print(f"{len(alerts)} storms announced; no settled line was entered into a region under one.")
findings["storms"] = len(alerts)

# %% [markdown]
# ## The pricing anomalies the simulator slipped in
#
# A few lines in every thousand carry a price typed wrong: ten times or a tenth of the list
# price, a unit-of-measure mix-up, a discount beyond authority without approval, a price below
# cost, an old price list. Their labels exist only in the truth; the margin-anomaly model never
# reads them (notebook 04 scores it against them). Below, every priced line by its price against
# the list price and against cost: the typos sit far out, the subtle kinds sit among the normal
# lines.

# %%
built = build_feature_set("pricing", URL, first_entry.date(), history_end, work, calendar)
priced = pd.read_parquet(built.frame_path).merge(load_pricing_truth(URL), on="line_id")
anomalies = priced.loc[priced["is_anomaly"]]
figure, axes = plt.subplots(figsize=(7, 4.5))
normal = priced.loc[~priced["is_anomaly"]]
axes.scatter(
    normal["price_to_list"], normal["price_cost_ratio"], s=6, color="lightgrey", label="normal"
)
for kind, group in anomalies.groupby("anomaly_type"):
    axes.scatter(
        group["price_to_list"], group["price_cost_ratio"], s=40, label=f"{kind} ({len(group)})"
    )
axes.set_xscale("log")
axes.set_yscale("log")
axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
axes.set_xlabel("unit price / list price (log)")
axes.set_ylabel("unit price / unit cost (log)")
axes.set_title("Every priced line; injected anomalies coloured")
axes.legend(fontsize=8)
keep(figure, "pricing_anomalies")
kinds = anomalies["anomaly_type"].value_counts()
print(
    f"{len(anomalies)} anomalies among {len(priced)} priced lines "
    f"({len(anomalies) / len(priced):.2%}): "
    + ", ".join(f"{k} {v}" for k, v in kinds.items())
    + "."
)
print(
    "Median price / list price by kind: "
    + ", ".join(
        f"{k} {v:.2f}"
        for k, v in anomalies.groupby("anomaly_type")["price_to_list"].median().items()
    )
    + f"; normal lines {normal['price_to_list'].median():.2f}."
)
findings["pricing_anomalies"] = {k: int(v) for k, v in kinds.items()}
engine.dispose()

# %%
print(json.dumps(findings, indent=1, default=str))
if OUT is not None:
    (OUT / "01_distributor_world.json").write_text(json.dumps(findings, indent=1, default=str))
