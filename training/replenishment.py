"""Replenishment: from a daily demand forecast to what to order now, per SKU x location.

**Lead-time demand.** The forecast is one day ahead; its daily rate ``d`` is held flat over the
horizon ``H = L + R`` (the supplier's mean actual lead time ``L`` measured from receipts, plus the
review period ``R``). Its spread combines the forecast's own daily error ``sigma_d`` (the standard
deviation of actual minus forecast over the pair's recent days) with the supplier's lead-time
variability ``sigma_L`` (the standard deviation of actual lead times of its receipts):
``sigma_H^2 = H sigma_d^2 + d^2 sigma_L^2``.

**Service target** by ABC class as a fill rate (A 98%, B 95%, C 90%). The safety factor ``k``
solves the normal loss equation ``sigma_H G(k) = (1 - fill) d R`` (expected units short per review
cycle = the allowed share of the cycle's demand), ``G(k) = phi(k) - k (1 - Phi(k))``.

**Levels.** Reorder point ``s = d L + k sigma_L_demand`` (demand over the lead time and its spread)
and order-up-to ``S = d H + k sigma_H``. Inventory position (KPIS.md) = on hand + on order (open
POs and inbound transfers) - reserved - backordered, summed from the ledger's buckets. When the
position is at or below ``s``, the recommendation is ``S - position`` rounded up to the product's
pack size (1 without one); otherwise nothing.

**Transfers.** Within a SKU, a location whose position is above its order-up-to has the excess;
a location at or below its reorder point needs ``S - position``. Excess goes to needs, largest
first, and what a transfer covers is not ordered again from the supplier.

Pure functions on plain frames, so the arithmetic is testable by hand; the database reads are
:func:`inventory_positions`, :func:`supplier_lead_times` and :func:`products`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sqlalchemy import func, select

from erp_core.db.engine import make_engine
from erp_core.db.models import (
    InventoryMovement,
    OrderLine,
    Product,
    PurchaseOrder,
    PurchaseOrderLine,
    Receipt,
    Supplier,
)

FILL_TARGET = {"A": 0.98, "B": 0.95, "C": 0.90}
"""Target fill rate by ABC class (a class not listed is treated as C)."""
REVIEW_DAYS = 7
MIN_ERROR_DAYS = 14
"""Days of forecast errors needed to measure a pair's own sigma_d; fewer fall back to Poisson."""


# --- the arithmetic --------------------------------------------------------------------------


def loss_function(k: float) -> float:
    """Standard normal loss G(k) = E[(Z - k)^+] (plain math: it runs inside a bisection)."""
    density = math.exp(-0.5 * k * k) / math.sqrt(2.0 * math.pi)
    upper = 0.5 * math.erfc(k / math.sqrt(2.0))
    return density - k * upper


def safety_factor(fill: float, cycle_demand: float, sigma: float) -> float:
    """The k with sigma G(k) = (1 - fill) x cycle demand, found by bisection in [-4, 6]."""
    if sigma <= 0:
        return 0.0
    target = (1.0 - fill) * cycle_demand / sigma
    low, high = -4.0, 6.0
    if loss_function(high) >= target:
        return high
    if loss_function(low) <= target:
        return low
    for _ in range(60):
        mid = (low + high) / 2
        if loss_function(mid) > target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@dataclass(frozen=True)
class Levels:
    lead_time_demand: float
    horizon_demand: float
    sigma_horizon: float
    safety_factor: float
    reorder_point: float
    order_up_to: float


def policy_levels(
    rate: float,
    sigma_daily: float,
    lead_mean: float,
    lead_std: float,
    fill: float,
    review_days: int = REVIEW_DAYS,
) -> Levels:
    """Reorder point and order-up-to level for a daily rate and its spread (see the module)."""
    horizon = lead_mean + review_days
    sigma_h = math.sqrt(horizon * sigma_daily**2 + rate**2 * lead_std**2)
    sigma_l = math.sqrt(lead_mean * sigma_daily**2 + rate**2 * lead_std**2)
    k = safety_factor(fill, rate * review_days, sigma_h)
    return Levels(
        lead_time_demand=rate * lead_mean,
        horizon_demand=rate * horizon,
        sigma_horizon=sigma_h,
        safety_factor=k,
        reorder_point=max(0.0, rate * lead_mean + k * sigma_l),
        order_up_to=max(0.0, rate * horizon + k * sigma_h),
    )


def inventory_position(on_hand: int, on_order: int, reserved: int, backordered: int) -> int:
    return on_hand + on_order - reserved - backordered


def order_quantity(position: float, reorder_point: float, order_up_to: float, pack: int) -> int:
    """S - position rounded up to the pack when the position is at or below the reorder point
    (and below S); 0 otherwise."""
    if position > reorder_point or position >= order_up_to:
        return 0
    pack = max(1, int(pack or 1))
    return int(math.ceil((order_up_to - position) / pack) * pack)


# --- database reads --------------------------------------------------------------------------


def inventory_positions(database_url: str, as_of: datetime | None = None) -> pd.DataFrame:
    """On hand, reserved and on order per SKU x location summed from the ledger (movements before
    ``as_of`` when given), backordered units of lines in state backordered (as now), and the
    inventory position."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            query = select(
                InventoryMovement.sku,
                InventoryMovement.location_id,
                InventoryMovement.bucket,
                func.sum(InventoryMovement.quantity),
            ).group_by(
                InventoryMovement.sku, InventoryMovement.location_id, InventoryMovement.bucket
            )
            if as_of is not None:
                query = query.where(InventoryMovement.occurred_at < as_of.replace(tzinfo=None))
            moves = pd.DataFrame(
                connection.execute(query).all(), columns=["sku", "location_id", "bucket", "qty"]
            )
            back = pd.DataFrame(
                connection.execute(
                    select(OrderLine.sku, OrderLine.location_id, func.sum(OrderLine.quantity))
                    .where(OrderLine.state == "backordered", OrderLine.location_id.is_not(None))
                    .group_by(OrderLine.sku, OrderLine.location_id)
                ).all(),
                columns=["sku", "location_id", "backordered"],
            )
    finally:
        engine.dispose()
    wide = moves.pivot_table(
        index=["sku", "location_id"], columns="bucket", values="qty", aggfunc="sum", fill_value=0
    )
    for bucket in ("on_hand", "reserved", "on_order"):
        if bucket not in wide.columns:
            wide[bucket] = 0
    table = wide[["on_hand", "reserved", "on_order"]].reset_index()
    table.columns.name = None
    table = table.merge(back, on=["sku", "location_id"], how="left")
    table["backordered"] = table["backordered"].fillna(0).astype(np.int64)
    for column in ("on_hand", "reserved", "on_order"):
        table[column] = table[column].astype(np.int64)
    table["position"] = (
        table["on_hand"] + table["on_order"] - table["reserved"] - table["backordered"]
    )
    return table


def supplier_lead_times(database_url: str) -> pd.DataFrame:
    """Per supplier: receipts counted, mean and standard deviation of the actual lead time (days
    from the PO to its receipt), the mean expected one (actual - days late) and the nominal."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            receipts = pd.DataFrame(
                connection.execute(
                    select(PurchaseOrder.supplier_id, Receipt.lead_time_days, Receipt.days_late)
                    .join(PurchaseOrderLine, PurchaseOrderLine.id == Receipt.purchase_order_line_id)
                    .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
                ).all(),
                columns=["supplier_id", "lead", "late"],
            )
            suppliers = pd.DataFrame(
                connection.execute(select(Supplier.id, Supplier.nominal_lead_days)).all(),
                columns=["supplier_id", "nominal_lead_days"],
            )
    finally:
        engine.dispose()
    receipts["expected"] = receipts["lead"] - receipts["late"]
    stats = receipts.groupby("supplier_id").agg(
        receipts=("lead", "size"),
        lead_mean=("lead", "mean"),
        lead_std=("lead", lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else 0.0),
        expected_mean=("expected", "mean"),
    )
    table = suppliers.merge(stats.reset_index(), on="supplier_id", how="left")
    table["receipts"] = table["receipts"].fillna(0).astype(np.int64)
    no_receipts = table["receipts"] == 0
    table.loc[no_receipts, "lead_mean"] = table.loc[no_receipts, "nominal_lead_days"]
    table.loc[no_receipts, "expected_mean"] = table.loc[no_receipts, "nominal_lead_days"]
    table["lead_std"] = table["lead_std"].fillna(0.0)
    return table


def products(database_url: str) -> pd.DataFrame:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    Product.sku,
                    Product.name,
                    Product.pack_size,
                    Product.unit_cost,
                    Product.abc_class,
                    Product.preferred_supplier_id,
                )
            ).all()
    finally:
        engine.dispose()
    table = pd.DataFrame(
        rows, columns=["sku", "name", "pack_size", "unit_cost", "abc_class", "supplier_id"]
    )
    table["unit_cost"] = table["unit_cost"].astype(float)
    table["pack_size"] = table["pack_size"].fillna(1).clip(lower=1).astype(np.int64)
    return table


# --- recommendations -------------------------------------------------------------------------

RECOMMENDATION_COLUMNS = (
    "sku",
    "location_id",
    "abc_class",
    "rate",
    "sigma_daily",
    "lead_mean",
    "lead_std",
    "reorder_point",
    "order_up_to",
    "on_hand",
    "on_order",
    "reserved",
    "backordered",
    "position",
    "transfer_in",
    "order_qty",
    "pack_size",
    "value",
    "days_of_cover",
    "stockout_in_days",
    "reason",
)


def recommend(
    forecast: pd.DataFrame,
    positions: pd.DataFrame,
    lead_times: pd.DataFrame,
    catalogue: pd.DataFrame,
    review_days: int = REVIEW_DAYS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recommendations per SKU x location and transfer suggestions.

    ``forecast``: sku, location_id, rate (units/day), sigma_daily. ``positions``: from
    :func:`inventory_positions`; ``lead_times``: :func:`supplier_lead_times`; ``catalogue``:
    :func:`products`. A pair with a forecast but no ledger rows has position 0."""
    table = forecast.merge(positions, on=["sku", "location_id"], how="left")
    for column in ("on_hand", "reserved", "on_order", "backordered", "position"):
        table[column] = table[column].fillna(0).astype(np.int64)
    table = table.merge(catalogue, on="sku", how="left")
    table = table.merge(
        lead_times[["supplier_id", "lead_mean", "lead_std", "receipts"]],
        on="supplier_id",
        how="left",
    )
    table["lead_mean"] = table["lead_mean"].fillna(lead_times["lead_mean"].mean())
    table["lead_std"] = table["lead_std"].fillna(0.0)
    table["pack_size"] = table["pack_size"].fillna(1).astype(np.int64)
    table["abc_class"] = table["abc_class"].fillna("C")
    levels = [
        policy_levels(
            r.rate,
            r.sigma_daily,
            r.lead_mean,
            r.lead_std,
            FILL_TARGET.get(r.abc_class, FILL_TARGET["C"]),
            review_days,
        )
        for r in table.itertuples()
    ]
    table["reorder_point"] = [lv.reorder_point for lv in levels]
    table["order_up_to"] = [lv.order_up_to for lv in levels]
    moves = transfer_suggestions(table)
    inbound = moves.groupby(["sku", "to_location_id"])["quantity"].sum() if len(moves) else None
    table["transfer_in"] = [
        int(inbound.get((s, loc), 0)) if inbound is not None else 0
        for s, loc in zip(table["sku"], table["location_id"], strict=True)
    ]
    table["order_qty"] = [
        order_quantity(p + t, rp, s, pack)
        for p, t, rp, s, pack in zip(
            table["position"],
            table["transfer_in"],
            table["reorder_point"],
            table["order_up_to"],
            table["pack_size"],
            strict=True,
        )
    ]
    table["value"] = table["order_qty"] * table["unit_cost"].fillna(0.0)
    available = (table["on_hand"] - table["reserved"] - table["backordered"]).clip(lower=0)
    rate = table["rate"].where(table["rate"] > 0)
    table["days_of_cover"] = available / rate
    table["stockout_in_days"] = np.floor(table["days_of_cover"])
    table["reason"] = [_reason(r) for r in table.to_dict("records")]
    return table[list(RECOMMENDATION_COLUMNS)], moves


def transfer_suggestions(table: pd.DataFrame) -> pd.DataFrame:
    """Per SKU, excess (position above order-up-to) moved to locations at or below their
    reorder point, the largest need first, whole units."""
    rows = []
    for sku, group in table.groupby("sku", sort=True):
        excess = {
            r.location_id: math.floor(r.position - r.order_up_to)
            for r in group.itertuples()
            if r.position - r.order_up_to >= 1
        }
        needs = sorted(
            (
                (math.ceil(r.order_up_to - r.position), r.location_id)
                for r in group.itertuples()
                if r.position <= r.reorder_point and r.order_up_to > r.position
            ),
            reverse=True,
        )
        for need, to_location in needs:
            for from_location in sorted(excess, key=lambda loc: -excess[loc]):
                if need <= 0:
                    break
                moved = min(need, excess[from_location])
                if moved <= 0:
                    continue
                rows.append((sku, from_location, to_location, moved))
                excess[from_location] -= moved
                need -= moved
    return pd.DataFrame(rows, columns=["sku", "from_location_id", "to_location_id", "quantity"])


def _reason(row: dict[str, Any]) -> str:
    covered = row["position"] + row["transfer_in"]
    context = (
        f"forecast {row['rate']:.2f}/day, lead time {row['lead_mean']:.1f}±{row['lead_std']:.1f} d"
    )
    if row["order_qty"] > 0:
        transfer = f" after {row['transfer_in']} by transfer" if row["transfer_in"] else ""
        return (
            f"position {covered}{transfer} at or below reorder point {row['reorder_point']:.0f} "
            f"({context}); order up to {row['order_up_to']:.0f}"
        )
    if row["transfer_in"]:
        return f"covered by a transfer of {row['transfer_in']} units ({context})"
    return f"position {row['position']} above reorder point {row['reorder_point']:.0f} ({context})"


# --- backtest --------------------------------------------------------------------------------

POLICIES = ("model", "min_max_30d", "moving_average_base_stock", "oracle")


@dataclass(frozen=True)
class PairReplay:
    """One SKU x location over the backtest days: actual units, and per policy the daily rate it
    plans with (``rates``) and its daily error spread."""

    sku: str
    location_id: str
    actual: np.ndarray
    rates: dict[str, np.ndarray]
    sigma: dict[str, float]
    lead_times: np.ndarray
    """Actual lead times (days) of the supplier's receipts, replayed in turn by the orders."""
    lead_mean: float
    lead_std: float
    fill: float
    pack: int
    unit_cost: float


@dataclass
class ReplayScore:
    demand: float = 0.0
    served: float = 0.0
    stockout_days: int = 0
    inventory_value_days: float = 0.0
    days: int = 0
    orders: int = 0

    def add(self, other: ReplayScore) -> None:
        self.demand += other.demand
        self.served += other.served
        self.stockout_days += other.stockout_days
        self.inventory_value_days += other.inventory_value_days
        self.days = max(self.days, other.days)
        self.orders += other.orders

    def as_dict(self) -> dict[str, float]:
        return {
            "fill_rate": self.served / self.demand if self.demand else float("nan"),
            "stockout_days": float(self.stockout_days),
            "average_inventory_value": self.inventory_value_days / self.days if self.days else 0.0,
            "orders": float(self.orders),
        }


def policy_targets(
    pair: PairReplay, policy: str, day: int, review_days: int, scale: float = 1.0
) -> tuple[float, float]:
    """(reorder point, order-up-to) a policy sets on a review day from what it knows then, both
    times ``scale`` (1: the policy as it is; see :func:`service_matched`)."""
    low, high = _policy_targets(pair, policy, day, review_days)
    return low * scale, high * scale


def _policy_targets(
    pair: PairReplay, policy: str, day: int, review_days: int
) -> tuple[float, float]:
    rate = float(pair.rates[policy][day])
    if policy == "min_max_30d":
        # the ERP rule: min = 30-day average x (lead time + a week of safety), max = min + review
        low = rate * (pair.lead_mean + 7)
        return low, low + rate * review_days
    if policy == "moving_average_base_stock":
        # base stock from the 28-day average and its spread, ordered up to at every review
        horizon = pair.lead_mean + review_days
        level = rate * horizon + norm.ppf(pair.fill) * pair.sigma[policy] * math.sqrt(horizon)
        return level, level
    levels = policy_levels(
        rate, pair.sigma[policy], pair.lead_mean, pair.lead_std, pair.fill, review_days
    )
    return levels.reorder_point, levels.order_up_to


def replay(
    pair: PairReplay, policy: str, review_days: int = REVIEW_DAYS, scale: float = 1.0
) -> ReplayScore:
    """Day by day: receipts arrive, demand is served from stock (unmet units are lost), and on
    a review day the policy orders up to its level when the position is at or below its reorder
    point; each order takes the next actual lead time of the supplier. Starts at the policy's
    own order-up-to level with nothing on order."""
    score = ReplayScore(days=len(pair.actual))
    on_hand = policy_targets(pair, policy, 0, review_days, scale)[1]
    pipeline: list[tuple[int, float]] = []
    next_lead = 0
    for day, demand in enumerate(pair.actual):
        on_hand += sum(q for due, q in pipeline if due == day)
        pipeline = [(due, q) for due, q in pipeline if due > day]
        served = min(on_hand, float(demand))
        on_hand -= served
        score.demand += float(demand)
        score.served += served
        score.stockout_days += int(served < demand)
        if day % review_days == 0:
            reorder, up_to = policy_targets(pair, policy, day, review_days, scale)
            position = on_hand + sum(q for _, q in pipeline)
            quantity = order_quantity(position, reorder, up_to, pair.pack)
            if quantity > 0:
                lead = int(pair.lead_times[next_lead % len(pair.lead_times)])
                next_lead += 1
                pipeline.append((day + max(1, lead), float(quantity)))
                score.orders += 1
        score.inventory_value_days += on_hand * pair.unit_cost
    return score


def backtest(
    pairs: list[PairReplay], review_days: int = REVIEW_DAYS
) -> dict[str, dict[str, float]]:
    """Every policy over every pair, summed: fill rate (units served from stock / units asked),
    stock-out days (pair-days with unmet demand), average inventory value at cost, orders."""
    totals = {policy: ReplayScore() for policy in POLICIES}
    for pair in pairs:
        for policy in POLICIES:
            if policy in pair.rates:
                totals[policy].add(replay(pair, policy, review_days))
    return {policy: score.as_dict() for policy, score in totals.items() if score.days}


SCALE_RANGE = (0.25, 6.0)
"""The level multipliers :func:`service_matched` searches."""


def service_matched(
    pairs: list[PairReplay], review_days: int = REVIEW_DAYS, iterations: int = 12
) -> dict[str, dict[str, Any]]:
    """The least inventory each policy needs to meet the service targets, so policies that
    miss them and policies that overshoot compare at the same fill rate.

    Per ABC class (its pairs do not interact with the others' in the replay) the smallest
    multiplier of the policy's two levels whose replayed fill rate reaches the class's target,
    by bisection on :data:`SCALE_RANGE`; the policy's inventory is the sum over classes at
    those multipliers. A class the largest multiplier cannot bring to target is reported
    ``reached: False`` at that multiplier."""
    by_class: dict[float, list[PairReplay]] = {}
    for pair in pairs:
        by_class.setdefault(pair.fill, []).append(pair)
    found: dict[str, dict[str, Any]] = {}
    for policy in POLICIES:
        classes = {}
        total = ReplayScore()
        for target, members in sorted(by_class.items()):
            members = [pair for pair in members if policy in pair.rates]
            if not members:
                continue
            scale, score = _smallest_scale(members, policy, review_days, target, iterations)
            total.add(score)
            classes[_class_of(target)] = {
                "target_fill": target,
                "scale": round(scale, 4),
                "reached": bool(score.served >= target * score.demand),
                **score.as_dict(),
            }
        if classes:
            found[policy] = {"classes": classes, **total.as_dict()}
    return found


def _smallest_scale(
    pairs: list[PairReplay], policy: str, review_days: int, target: float, iterations: int
) -> tuple[float, ReplayScore]:
    def run(scale: float) -> ReplayScore:
        total = ReplayScore()
        for pair in pairs:
            total.add(replay(pair, policy, review_days, scale))
        return total

    def fill(score: ReplayScore) -> float:
        return score.served / score.demand if score.demand else 1.0

    low, high = SCALE_RANGE
    best = run(high)
    if fill(best) < target:
        return high, best
    for _ in range(iterations):
        middle = math.sqrt(low * high)
        score = run(middle)
        if fill(score) >= target:
            high, best = middle, score
        else:
            low = middle
    return high, best


def _class_of(target: float) -> str:
    return next((name for name, fill in FILL_TARGET.items() if fill == target), f"{target:.2f}")


def receipt_lead_times(database_url: str) -> dict[str, np.ndarray]:
    """Each supplier's actual lead times (days), in the order its receipts arrived."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(PurchaseOrder.supplier_id, Receipt.lead_time_days)
                .join(PurchaseOrderLine, PurchaseOrderLine.id == Receipt.purchase_order_line_id)
                .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
                .order_by(Receipt.received_at, Receipt.id)
            ).all()
    finally:
        engine.dispose()
    found: dict[str, list[int]] = {}
    for supplier, lead in rows:
        found.setdefault(str(supplier), []).append(int(lead))
    return {supplier: np.array(leads) for supplier, leads in found.items()}


def replay_pairs(
    test: pd.DataFrame,
    forecasts: dict[str, np.ndarray],
    holdout: pd.DataFrame,
    holdout_forecasts: dict[str, np.ndarray],
    database_url: str,
) -> list[PairReplay]:
    """The pairs of the test window (``test`` sorted by pair and day) with what each policy plans
    from: the model's and the oracle's daily rates (their spread measured on the ``holdout``
    days before the test window), and for both baselines the 28-day average of the day (the
    frame's ``demand_mean_28d``; the 30-day rule reads it too) with its 28-day spread."""
    from training.demand_forecast import LABEL, series_key

    catalogue = products(database_url).set_index("sku")
    leads = supplier_lead_times(database_url).set_index("supplier_id")
    replayed = receipt_lead_times(database_url)
    key = series_key(test).to_numpy()
    held_key = series_key(holdout).to_numpy()
    held_actual = holdout[LABEL].to_numpy(dtype=np.float64)
    spreads = {
        name: pd.Series(held_actual - values).groupby(held_key).std(ddof=1)
        for name, values in holdout_forecasts.items()
    }
    pairs = []
    groups = pd.Series(np.arange(len(key))).groupby(key, sort=False).indices
    for name, rows in groups.items():
        first = test.iloc[rows[0]]
        sku = str(first["sku"])
        product = catalogue.loc[sku]
        supplier = product["supplier_id"]
        average = test["demand_mean_28d"].to_numpy(dtype=np.float64)[rows]
        rates = {p: np.asarray(f, dtype=np.float64)[rows] for p, f in forecasts.items()}
        rates |= {"min_max_30d": average, "moving_average_base_stock": average}
        sigma = {p: float(spreads[p].get(name, np.nan)) if p in spreads else np.nan for p in rates}
        sigma["moving_average_base_stock"] = float(first["demand_std_28d"])
        sigma = {
            p: s if np.isfinite(s) else math.sqrt(max(rates[p][0], 0.0)) for p, s in sigma.items()
        }
        known = supplier in leads.index
        pairs.append(
            PairReplay(
                sku=sku,
                location_id=str(first["location_id"]),
                actual=test[LABEL].to_numpy(dtype=np.float64)[rows],
                rates=rates,
                sigma=sigma,
                lead_times=replayed.get(
                    str(supplier), np.array([leads["lead_mean"].mean() if len(leads) else 7])
                ),
                lead_mean=float(leads.loc[supplier, "lead_mean"]) if known else 7.0,
                lead_std=float(leads.loc[supplier, "lead_std"]) if known else 0.0,
                fill=FILL_TARGET.get(str(product["abc_class"]), FILL_TARGET["C"]),
                pack=int(product["pack_size"]),
                unit_cost=float(product["unit_cost"]),
            )
        )
    return pairs


def run_backtest(
    database_url: str,
    calendar: Any,
    model: Any,
    plan: Any,
    frames_dir: Any,
    review_days: int = REVIEW_DAYS,
) -> dict[str, Any]:
    """Replay the test window of the demand split (the newest ``plan.test_days``) under every
    policy: the recommended one with ``model``'s forecasts, the two baselines, and the oracle
    policy planning with the simulator's true expected units (when the world has a truth)."""
    from training import demand_forecast as df

    plan = df.demand_plan(plan)
    window = df.choose_window(database_url, plan)
    data = df.load_demand_frame(database_url, window, plan, calendar, frames_dir)
    test = data.part("test")
    holdout = pd.concat([data.part("validation"), data.part("calibration")])
    forecasts = {"model": model.predict(test)}
    held = {"model": model.predict(holdout)}
    oracle, _ = df.oracle_forecast(database_url, test)
    held_oracle, _ = df.oracle_forecast(database_url, holdout)
    if oracle is not None and held_oracle is not None:
        forecasts["oracle"] = oracle
        held["oracle"] = held_oracle
    pairs = replay_pairs(test, forecasts, holdout, held, database_url)
    return {
        "window": data.slices.test.describe(),
        "pairs": len(pairs),
        "review_days": review_days,
        "policies": backtest(pairs, review_days),
        "service_matched": service_matched(pairs, review_days),
    }
