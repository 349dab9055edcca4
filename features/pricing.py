"""Pricing features: one row per order line priced at its capture, as known at its entry ``t``.

The line as priced comes from its first price decision (made at capture): the list price, the
tier price after quantity breaks and the unit price charged. The customer's one-unit tier price
is read from the price list in force on the entry date (UTC), as the ERP prices.

What others paid comes from the lines captured before ``t``, each at its first price:

* the customer's last 5 lines of the SKU (last price, median, median quantity) and their count
  over all history;
* the last 11 lines of the SKU by customers of the same tier within ``[t-90d, t)``, and their count.

Both are as-of searches on lines sorted by (key, entry moment, line id) (:func:`features.asof.
events_before`): a line never sees its own price, nor that of a line entered in the same instant
(another line of its own order), and a line entered later cannot shift any earlier row. Lines
split off after capture carry their parent's price and are not counted again.

The pricing anomalies are labelled only in the simulator's truth, which this frame never reads:
:func:`features.truth_labels.load_pricing_truth` gives them by ``line_id`` for the training job.

Master data is as it is now (a customer's tier, a product's cost and category), as in
:mod:`features.late_shipment`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from erp_core.domain.calendar import BusinessCalendar
from erp_core.policy import load_policy
from features.asof import MICROS_PER_DAY, events_before, key_codes, trailing_totals
from features.history import History
from features.late_shipment import _lookup, captured_lines, to_micros
from features.registry import PRICING
from features.schema import typed_frame

CUSTOMER_DEPTH = 5
TIER_DEPTH = 11
TIER_WINDOW_DAYS = 90
EVERY_MOMENT = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)

Columns = dict[str, Any]


def pricing_frame(
    history: History,
    start: date | datetime,
    end: date | datetime,
    calendar: BusinessCalendar,
    approval_threshold_pct: float | None = None,
) -> pd.DataFrame:
    """The frame from history in memory. ``approval_threshold_pct`` defaults to the shipped
    policy's discount threshold (the calendar is not used: prices know no business days)."""
    del calendar
    threshold = (
        float(load_policy().discount_approval_pct)
        if approval_threshold_pct is None
        else approval_threshold_pct
    )
    paid = priced_lines(history, *EVERY_MOMENT)
    entered = paid["entered_at"].to_numpy()
    in_window = (entered >= to_micros(start)) & (entered < to_micros(end))
    rows = paid.loc[in_window].reset_index(drop=True)
    columns: Columns = {
        "line_id": rows["line_id"].to_numpy(),
        "order_id": rows["order_id"].to_numpy(),
        "entered_at": rows["entered_at"].to_numpy(),
        **price_columns(rows, history.price_list, threshold),
        **customer_history_columns(rows, paid),
        **tier_history_columns(rows, paid),
        "channel": rows["channel"],
        "customer_tier": rows["tier"],
        "product_category": rows["category"],
    }
    return typed_frame(columns, PRICING)


def priced_lines(history: History, start: int, end: int) -> pd.DataFrame:
    """Lines captured in ``[start, end)`` that carry a price decision, with their first price,
    customer, tier, channel, product category and cost."""
    rows = captured_lines(history, start, end)
    rows = rows.assign(**_lookup(rows["line_id"], history.first_prices, "line_id"))
    rows = rows.loc[rows["unit_price"].notna()].reset_index(drop=True)
    order = _lookup(rows["order_id"], history.orders, "order_id")
    customer = _lookup(order["customer_id"], history.customers, "customer_id")
    product = _lookup(rows["sku"], history.products, "sku")
    return rows.assign(
        customer_id=order["customer_id"],
        channel=order["channel"],
        tier=customer["tier"],
        category=product["category"],
        unit_cost=product["unit_cost"],
    )


def price_in_force(
    price_list: pd.DataFrame, tiers: Any, skus: Any, days: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the position in ``price_list`` of the one-unit entry of (tier, sku) in force on
    the day (the newest ``valid_from`` on or before it; -1 when none), and its price (NaN)."""
    entries = price_list.loc[price_list["min_quantity"] == 1]
    event_keys, query_keys = key_codes([entries["tier"], entries["sku"]], [tiers, skus])
    found = events_before(
        event_keys,
        entries["valid_from"].to_numpy() * MICROS_PER_DAY,
        query_keys,
        (np.asarray(days, dtype=np.int64) + 1) * MICROS_PER_DAY,
        1,
    )[:, 0]
    prices = _taken(entries["unit_price"].to_numpy(dtype=np.float64), found)
    positions = np.where(found >= 0, entries.index.to_numpy()[np.maximum(found, 0)], -1)
    return positions, prices


def price_columns(rows: pd.DataFrame, price_list: pd.DataFrame, threshold_pct: float) -> Columns:
    """The line as priced at entry against the price list, the policy and its cost."""
    days = rows["entered_at"].to_numpy() // MICROS_PER_DAY
    _, in_force = price_in_force(price_list, rows["tier"], rows["sku"], days)
    return priced_at_entry(rows, in_force, threshold_pct)


def priced_at_entry(rows: Mapping[str, Any], in_force: np.ndarray, threshold_pct: float) -> Columns:
    """:func:`price_columns` once the one-unit tier price in force is known (NaN: no entry):
    apart so the online path, which finds that price in its own index, computes the same row.
    ``rows`` holds list_price, tier_price (after breaks), unit_price, unit_cost, price_source."""
    list_price = np.asarray(rows["list_price"], dtype=np.float64)
    tier_price = np.where(np.isnan(in_force), list_price, in_force)
    break_price = np.asarray(rows["tier_price"], dtype=np.float64)
    unit_price = np.asarray(rows["unit_price"], dtype=np.float64)
    unit_cost = np.asarray(rows["unit_cost"], dtype=np.float64)
    discount = 1 - unit_price / break_price
    return {
        "list_price": list_price,
        "tier_price": tier_price,
        "quantity_break_price": break_price,
        "quantity_break_discount": 1 - break_price / tier_price,
        "unit_price": unit_price,
        "discount_vs_tier": discount,
        "price_to_list": unit_price / list_price,
        "discount_beyond_threshold": discount * 100 > threshold_pct,
        "price_overridden": np.asarray(rows["price_source"], dtype=object) == "override",
        "unit_cost": unit_cost,
        "price_cost_ratio": unit_price / unit_cost,
    }


def customer_history_columns(rows: pd.DataFrame, paid: pd.DataFrame) -> Columns:
    """The customer's own recent prices and quantities of the SKU, strictly before ``t``."""
    keys = ([paid["customer_id"], paid["sku"]], [rows["customer_id"], rows["sku"]])
    event_keys, query_keys = key_codes(*keys)
    times, t = paid["entered_at"].to_numpy(), rows["entered_at"].to_numpy()
    last = events_before(event_keys, times, query_keys, t, CUSTOMER_DEPTH)
    prices = _taken(paid["unit_price"].to_numpy(dtype=np.float64), last)
    units = _taken(paid["line_units"].to_numpy(dtype=np.float64), last)
    count = trailing_totals(event_keys, times, {}, query_keys, t, [None])[None].count
    return customer_history_values(rows, prices, units, count)


def customer_history_values(
    rows: Mapping[str, Any], last_prices: np.ndarray, last_units: np.ndarray, count: np.ndarray
) -> Columns:
    """:func:`customer_history_columns` once the customer's last lines of the SKU before ``t``
    are found (``(n, CUSTOMER_DEPTH)`` prices and units, newest first, NaN past the first line)
    and counted: apart so the online path's index lookup feeds the same arithmetic."""
    unit_price = np.asarray(rows["unit_price"], dtype=np.float64)
    line_units = np.asarray(rows["line_units"], dtype=np.float64)
    median_price, usual_units = row_median(last_prices), row_median(last_units)
    return {
        "customer_last_price": last_prices[:, 0],
        "customer_median_price_5": median_price,
        "customer_price_count": count,
        "price_to_customer_median": unit_price / median_price,
        "line_units": np.asarray(rows["line_units"]),
        "customer_usual_units": usual_units,
        "units_to_customer_usual": line_units / usual_units,
    }


def tier_history_columns(rows: pd.DataFrame, paid: pd.DataFrame) -> Columns:
    """Recent prices of the SKU paid by customers of the same tier in ``[t-90d, t)``."""
    event_keys, query_keys = key_codes([paid["tier"], paid["sku"]], [rows["tier"], rows["sku"]])
    times, t = paid["entered_at"].to_numpy(), rows["entered_at"].to_numpy()
    window = TIER_WINDOW_DAYS * MICROS_PER_DAY
    last = events_before(event_keys, times, query_keys, t, TIER_DEPTH)
    too_old = times[np.maximum(last, 0)] < (t - window)[:, None]
    last = np.where(too_old, -1, last)
    prices = _taken(paid["unit_price"].to_numpy(dtype=np.float64), last)
    count = trailing_totals(event_keys, times, {}, query_keys, t, [window])[window].count
    return tier_history_values(rows, prices, count)


def tier_history_values(
    rows: Mapping[str, Any], recent_prices: np.ndarray, count: np.ndarray
) -> Columns:
    """:func:`tier_history_columns` once the tier's last lines of the SKU in the window are
    found (``(n, TIER_DEPTH)`` prices, NaN where none) and counted, for the online path too."""
    median = row_median(recent_prices)
    return {
        "tier_median_price_90d": median,
        "tier_price_count_90d": count,
        "price_to_tier_median": np.asarray(rows["unit_price"], dtype=np.float64) / median,
    }


def _taken(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``values`` at ``positions`` (any shape), NaN where the position is -1."""
    if len(values) == 0:
        return np.full(positions.shape, np.nan)
    return np.where(positions >= 0, values[np.maximum(positions, 0)], np.nan)


def row_median(values: np.ndarray) -> np.ndarray:
    """The median of each row's non-NaN values (NaN for a row without any), without the
    all-NaN warnings of ``np.nanmedian``."""
    ordered = np.sort(values, axis=1)  # NaN sorts last
    present = (~np.isnan(values)).sum(axis=1)
    rows = np.arange(len(values))
    low = ordered[rows, np.maximum((present - 1) // 2, 0)]
    high = ordered[rows, np.minimum(present // 2, values.shape[1] - 1)]
    return np.where(present > 0, (low + high) / 2, np.nan)
