"""Demand features: one row per SKU x location x day, as known at the day's start ``t`` (midnight
UTC), zero-demand days included.

**What counts as demand.** The units the customers asked for: every line created by an order's
capture, at its quantity at entry (a later split added back), on the UTC day it was entered,
including lines later cancelled and lines held for credit. What shipped, and from where, is the
supply side's answer to demand, censored by stock-outs; a forecaster wants the request.

**Where.** At the customer's home location (the location that serves it by default), not the
fulfilling one: a line sent from another warehouse because the home one was out of stock is
still demand at home, and a credit-held line (no fulfilling location yet) still counts. A
customer without a home location falls back to the line's own location; a line with neither is
left out.

**Which pairs.** A SKU x location pair gets rows from the day after it was first seen in the ERP
(its first stock movement at the location, or its first demand there), for every day while it had
demand or a stock movement in the 91 days before: a pair whose SKU was never stocked nor asked for
at a location gets no rows, one left untouched for 91 days (a product run out and no longer asked
for) stops until its next event, and whether a row exists depends only on events before its
``t``. The windows count only the days since the pair was first seen (a pair seen 10 days ago
averages over 10 days, not 91).

**Point in time.** Daily totals are events at the day's midnight; :func:`features.asof.
trailing_totals` sums them over ``[t - W, t)``, so the day itself (the label) is never an input.
Lags are differences of two windows (``[t-k, t-k+1)``).

**Intermittency** (Syntetos and Boylan) over the last 91 days seen: ADI = days / days with demand,
CV2 = population variance / mean^2 of the non-zero daily units; smooth (ADI < 1.32 and CV2 <
0.49), erratic (ADI < 1.32), intermittent (CV2 < 0.49), lumpy otherwise, and ``none`` without
any demand. One day of demand has CV2 = 0.

**Promotions** are recorded by the ERP only as price-list entries: a one-unit tier price that
cuts the entry before it and is raised again by a later entry is a promotion, known in advance
from its ``valid_from``. The price list is master data as it is now (an entry edited in place
loses its old price); nothing else about promotions is recorded, so nothing else is used. Prices
and promotions are averaged over the tiers of the customers and the price list (master data as
now, like a product's category and ABC class), a tier without an entry at the product's list
price.

**Label**: the units of the day itself, null while the day is not over by the history's last
event (the last, partial day of a history; a day after it).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from erp_core.domain.calendar import BusinessCalendar
from features import calendar as cal
from features.asof import MICROS_PER_DAY, WindowTotals, key_codes, trailing_totals
from features.history import History
from features.late_shipment import _lookup, captured_lines, to_micros, window_micros
from features.pricing import EVERY_MOMENT, price_in_force, priced_lines
from features.registry import DEMAND, DEMAND_LAGS_DAYS, DEMAND_WINDOWS_DAYS
from features.schema import typed_frame

STD_WINDOW_DAYS = 28
INTERMITTENCY_WINDOW_DAYS = 91
ADI_CUT = 1.32
CV2_CUT = 0.49
PRICE_WINDOW_DAYS = 91
PROMO_LEAD_DAYS = 7
DORMANT_AFTER_DAYS = 91

Columns = dict[str, Any]


def demand_frame(
    history: History, start: date | datetime, end: date | datetime, calendar: BusinessCalendar
) -> pd.DataFrame:
    """The frame from history in memory: rows for the days whose midnight is in
    ``[start, end)``."""
    demand = demand_lines(history)
    pairs = seen_pairs(history, demand)
    rows = day_rows(pairs, _first_day_from(to_micros(start)), _first_day_from(to_micros(end)))
    daily = daily_units(demand, pairs)
    rows = rows.loc[active(rows, pairs, daily, history.stock_moves)].reset_index(drop=True)
    t = rows["day"].to_numpy() * MICROS_PER_DAY
    found = daily_totals(daily, rows["pair"].to_numpy(), t)
    products = _lookup(rows["sku"], history.products, "sku")
    columns: Columns = {
        "sku": rows["sku"],
        "location_id": rows["location_id"],
        "day": t,
        **history_columns(rows, found),
        **per_sku_and_day(rows, history, demand),
        **calendar_columns(rows["day"].to_numpy(), cal.holiday_array(calendar)),
        "location": rows["location_id"],
        "product_category": products["category"],
        "abc_class": products["abc_class"],
        "label_demand_units": label(rows, daily, history),
    }
    return typed_frame(columns, DEMAND)


def per_sku_and_day(rows: pd.DataFrame, history: History, demand: pd.DataFrame) -> Columns:
    """The columns that depend on the SKU and the day only (item age, promotions, price level),
    computed once per (SKU, day) and spread to the rows of every location."""
    sku = pd.Categorical(rows["sku"])
    key = sku.codes.astype(np.int64) * _DAY_SPAN + rows["day"].to_numpy()
    unique, inverse = np.unique(key, return_inverse=True)
    once = pd.DataFrame(
        {
            "sku": pd.Categorical.from_codes(unique // _DAY_SPAN, sku.categories),
            "day": unique % _DAY_SPAN,
        }
    )
    columns = {
        "item_age_days": item_age(once, demand),
        **promotion_columns(once, history),
        **price_level_columns(once, history),
    }
    return {name: np.asarray(values)[inverse] for name, values in columns.items()}


def _first_day_from(moment: int) -> int:
    """The first day whose midnight is at or after ``moment``."""
    return -(-moment // MICROS_PER_DAY)


# --- demand and the pairs it happens at ---------------------------------------------------------


def demand_lines(history: History) -> pd.DataFrame:
    """Every line created by a capture: sku, location_id (the customer's home location, else the
    line's), entered_at and line_units (its quantity at entry)."""
    lines = captured_lines(history, *EVERY_MOMENT)
    customer = _lookup(lines["order_id"], history.orders, "order_id")["customer_id"]
    home = _lookup(customer, history.customers, "customer_id")["home_location_id"]
    location = home.astype(object).where(home.notna(), lines["location_id"].astype(object))
    demand = pd.DataFrame(
        {
            "sku": lines["sku"].astype(object),
            "location_id": location,
            "entered_at": lines["entered_at"],
            "line_units": lines["line_units"],
        }
    )
    return demand.loc[demand["location_id"].notna()].reset_index(drop=True)


def seen_pairs(history: History, demand: pd.DataFrame) -> pd.DataFrame:
    """Each SKU x location pair with the moment the ERP first saw it there: its first stock
    movement or its first demand, whichever came first; sorted by (sku, location)."""
    moves = history.stock_moves
    firsts = [
        _first_seen(moves["sku"], moves["location_id"], moves["occurred_at"]),
        _first_seen(demand["sku"], demand["location_id"], demand["entered_at"]),
    ]
    first = pd.concat(firsts).groupby(level=[0, 1]).min()
    pairs = first.rename("first_seen").reset_index().sort_values(["sku", "location_id"])
    return pairs.reset_index(drop=True)


def _first_seen(skus: pd.Series, locations: pd.Series, moments: pd.Series) -> pd.Series:
    frame = pd.DataFrame(
        {"sku": skus.astype(object), "location_id": locations.astype(object), "at": moments}
    )
    return frame.groupby(["sku", "location_id"], sort=False)["at"].min()


def day_rows(pairs: pd.DataFrame, first_day: int, end_day: int) -> pd.DataFrame:
    """One row per pair and day in ``[first_day, end_day)`` from the day after the pair was
    first seen: pair (its position in ``pairs``), sku, location_id, day, origin (the day it was
    first seen)."""
    origin = pairs["first_seen"].to_numpy() // MICROS_PER_DAY
    begin = np.maximum(origin + 1, first_day)
    counts = np.maximum(end_day - begin, 0)
    pair = np.repeat(np.arange(len(pairs)), counts)
    offsets = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
    return pd.DataFrame(
        {
            "pair": pair,
            "sku": pairs["sku"].to_numpy()[pair],
            "location_id": pairs["location_id"].to_numpy()[pair],
            "day": begin[pair] + offsets,
            "origin": origin[pair],
        }
    )


def active(
    rows: pd.DataFrame, pairs: pd.DataFrame, daily: pd.DataFrame, moves: pd.DataFrame
) -> np.ndarray:
    """Rows whose pair had demand or a stock movement in the :data:`DORMANT_AFTER_DAYS` days
    before ``t``."""
    t = rows["day"].to_numpy() * MICROS_PER_DAY
    window = DORMANT_AFTER_DAYS * MICROS_PER_DAY
    pair = rows["pair"].to_numpy()
    days = daily["day"].to_numpy() * MICROS_PER_DAY
    asked = trailing_totals(daily["pair"].to_numpy(), days, {}, pair, t, [window])[window]
    move_keys, pair_keys = key_codes(
        [moves["sku"], moves["location_id"]], [pairs["sku"], pairs["location_id"]]
    )
    at = moves["occurred_at"].to_numpy()
    moved = trailing_totals(move_keys, at, {}, pair_keys[pair], t, [window])[window]
    return (asked.count + moved.count) > 0


def daily_units(demand: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Units per pair and UTC day with any demand: pair, day, units."""
    index = pd.MultiIndex.from_frame(pairs[["sku", "location_id"]])
    pair = index.get_indexer(pd.MultiIndex.from_frame(demand[["sku", "location_id"]]))
    day = demand["entered_at"].to_numpy() // MICROS_PER_DAY
    totals = (
        pd.DataFrame({"pair": pair, "day": day, "units": demand["line_units"].to_numpy()})
        .groupby(["pair", "day"], sort=True)["units"]
        .sum()
    )
    return totals.reset_index()


# --- totals over trailing windows ---------------------------------------------------------------


def _windows() -> list[int]:
    """Every window in days the features need: the rolling ones, and k and k-1 for each lag."""
    lags = {days for k in DEMAND_LAGS_DAYS for days in (k, k - 1) if days > 0}
    return sorted({*DEMAND_WINDOWS_DAYS, STD_WINDOW_DAYS, INTERMITTENCY_WINDOW_DAYS, *lags})


def daily_totals(daily: pd.DataFrame, pairs: np.ndarray, t: np.ndarray) -> dict[int, WindowTotals]:
    """Per row and window in days: days with demand (count), units and units^2 in [t-W, t)."""
    units = daily["units"].to_numpy().astype(np.int64)
    windows = _windows()
    found = trailing_totals(
        daily["pair"].to_numpy(),
        daily["day"].to_numpy() * MICROS_PER_DAY,
        {"units": units, "units_sq": units * units},
        pairs,
        t,
        window_micros(windows),
    )
    return dict(zip(windows, found.values(), strict=True))


def _days_seen(rows: pd.DataFrame, window: int) -> np.ndarray:
    """Days of the window since the pair was first seen (at least 1 for every row)."""
    return np.minimum(window, rows["day"].to_numpy() - rows["origin"].to_numpy())


def history_columns(rows: pd.DataFrame, found: dict[int, WindowTotals]) -> Columns:
    columns: Columns = {}
    for k in DEMAND_LAGS_DAYS:
        before = found[k - 1].sums["units"] if k > 1 else 0
        columns[f"demand_lag_{k}d"] = found[k].sums["units"] - before
    for days in DEMAND_WINDOWS_DAYS:
        seen = _days_seen(rows, days)
        columns[f"demand_mean_{days}d"] = found[days].sums["units"] / seen
        columns[f"demand_zero_share_{days}d"] = 1 - found[days].count / seen
    spread = found[STD_WINDOW_DAYS]
    seen = _days_seen(rows, STD_WINDOW_DAYS)
    s1, s2 = spread.sums["units"], spread.sums["units_sq"]
    columns["demand_std_28d"] = np.sqrt(np.maximum(seen * s2 - s1 * s1, 0)) / seen
    columns["days_seen_91d"] = _days_seen(rows, INTERMITTENCY_WINDOW_DAYS)
    columns.update(intermittency_columns(rows, found[INTERMITTENCY_WINDOW_DAYS]))
    return columns


def intermittency_columns(rows: pd.DataFrame, window: WindowTotals) -> Columns:
    """ADI, CV2 and the Syntetos-Boylan class over the window's days since first seen."""
    seen = _days_seen(rows, INTERMITTENCY_WINDOW_DAYS)
    k = window.count
    s1, s2 = window.sums["units"], window.sums["units_sq"]
    some = k > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        adi = np.where(some, seen / np.maximum(k, 1), np.nan)
        # population variance / mean^2 of the k non-zero days = k * S2 / S1^2 - 1
        cv2 = np.where(some, np.maximum(k * s2 / np.maximum(s1, 1) ** 2 - 1, 0.0), np.nan)
    frequent, steady = adi < ADI_CUT, cv2 < CV2_CUT
    kind = np.select(
        [~some, frequent & steady, frequent, steady],
        ["none", "smooth", "erratic", "intermittent"],
        default="lumpy",
    )
    return {"adi_91d": adi, "cv2_91d": cv2, "intermittency_class": kind}


def item_age(rows: pd.DataFrame, demand: pd.DataFrame) -> np.ndarray:
    """Days from the day of the SKU's first order line anywhere to the row's day; null while
    that first line was not entered before ``t``."""
    first = demand.groupby("sku")["entered_at"].min() // MICROS_PER_DAY
    first_day = rows["sku"].map(first).to_numpy(dtype=np.float64)
    day = rows["day"].to_numpy()
    return np.where(first_day < day, day - first_day, np.nan)


def calendar_columns(day: np.ndarray, holidays: np.ndarray) -> Columns:
    dates = cal.as_dates(day)
    return {
        "weekday": cal.weekday(day),
        "month": dates.astype("datetime64[M]").astype(np.int64) % 12 + 1,
        "days_to_month_end": cal.days_to_month_end(day),
        "holiday": np.isin(dates, holidays),
        "peak_season": cal.in_peak_season(day),
    }


# --- prices and promotions ----------------------------------------------------------------------


def promotion_cuts(price_list: pd.DataFrame) -> np.ndarray:
    """Per price-list entry: the cut it makes as a promotion (1 - price / the price before it,
    when its one-unit price is below the (tier, sku) entry before it and a later entry raises it
    again), else 0."""
    ordered = price_list.loc[price_list["min_quantity"] == 1].sort_values(
        ["tier", "sku", "valid_from"], kind="stable"
    )
    grouped = ordered.groupby(["tier", "sku"], observed=True, sort=False)["unit_price"]
    price = ordered["unit_price"]
    before, after = grouped.shift(1), grouped.shift(-1)
    promotion = (price < before) & (after > price)
    cuts = np.zeros(len(price_list))
    position = price_list.index.get_indexer(ordered.index)
    cuts[position] = np.where(promotion, 1 - price / before, 0.0)
    return cuts


def tiers_of(history: History) -> list[str]:
    """The tiers customers can be in: those of the customers and of the price list."""
    found = {*history.customers["tier"].astype(object), *history.price_list["tier"].astype(object)}
    return sorted(str(tier) for tier in found if pd.notna(tier))


def _over_tiers(
    history: History, rows: pd.DataFrame, days: np.ndarray, per_entry: np.ndarray | None
) -> np.ndarray:
    """Mean over the tiers of the one-unit price in force on the day (a tier without an entry
    pays the product's list price, as the ERP prices), or with ``per_entry`` of that value of
    the entry in force (0 without one); NaN when there are no tiers."""
    if per_entry is None:
        fallback = _lookup(rows["sku"], history.products, "sku")["product_list_price"]
        otherwise = fallback.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        otherwise = np.zeros(len(rows))
    tiers = tiers_of(history)
    total = np.zeros(len(rows))
    for tier in tiers:
        tier_of_rows = np.full(len(rows), tier, dtype=object)
        position, price = price_in_force(history.price_list, tier_of_rows, rows["sku"], days)
        value = price if per_entry is None else per_entry[np.maximum(position, 0)]
        total += np.where(position >= 0, value, otherwise)
    return total / len(tiers) if tiers else np.full(len(rows), np.nan)


def promotion_columns(rows: pd.DataFrame, history: History) -> Columns:
    """The promotion in force on the day and the one scheduled a week later."""
    cuts = promotion_cuts(history.price_list)
    day = rows["day"].to_numpy()
    return {
        "promo_discount": _over_tiers(history, rows, day, cuts),
        "promo_discount_in_7d": _over_tiers(history, rows, day + PROMO_LEAD_DAYS, cuts),
    }


def price_level_columns(rows: pd.DataFrame, history: History) -> Columns:
    """The one-unit list price in force, against what was paid for the SKU in the last 91 days
    (units-weighted, in whole cents so the window sums are exact)."""
    list_price = _over_tiers(history, rows, rows["day"].to_numpy(), None)
    paid = priced_lines(history, *EVERY_MOMENT)
    cents = np.rint(paid["unit_price"].to_numpy(dtype=np.float64) * 100).astype(np.int64)
    units = paid["line_units"].to_numpy().astype(np.int64)
    event_keys, query_keys = key_codes([paid["sku"]], [rows["sku"]])
    window = PRICE_WINDOW_DAYS * MICROS_PER_DAY
    found = trailing_totals(
        event_keys,
        paid["entered_at"].to_numpy(),
        {"cents": cents * units, "units": units},
        query_keys,
        rows["day"].to_numpy() * MICROS_PER_DAY,
        [window],
    )[window]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_paid = np.where(
            found.sums["units"] > 0, found.sums["cents"] / 100 / found.sums["units"], np.nan
        )
    return {"list_price": list_price, "price_level_91d": list_price / mean_paid}


# --- label --------------------------------------------------------------------------------------


def label(rows: pd.DataFrame, daily: pd.DataFrame, history: History) -> np.ndarray:
    """Units of the pair on the row's day; null for a day not over by the history's last
    recorded event."""
    day = rows["day"].to_numpy()
    known = daily["pair"].to_numpy() * _DAY_SPAN + daily["day"].to_numpy()  # sorted
    wanted = rows["pair"].to_numpy() * _DAY_SPAN + day
    position = np.minimum(np.searchsorted(known, wanted), max(len(known) - 1, 0))
    units = daily["units"].to_numpy(dtype=np.float64)
    hit = (known[position] == wanted) if len(known) else np.zeros(len(rows), dtype=bool)
    on_day = np.where(hit, units[position] if len(known) else 0.0, 0.0)
    return np.where((day + 1) * MICROS_PER_DAY <= _last_event(history), on_day, np.nan)


_DAY_SPAN = 1 << 32
"""Days since 1970 fit far below this: (pair, day) as one sortable int64."""


def _last_event(history: History) -> int:
    """The latest moment the history records (entries, state changes, stock movements)."""
    moments = [
        history.lines["entered_at"],
        history.state_changes["occurred_at"],
        history.stock_moves["occurred_at"],
    ]
    return max((int(m.max()) for m in moments if len(m)), default=0)
