"""Point-in-time features of SCMS delivery lines, for the late-delivery protocol of issue 7.

The moment of prediction of a line is ``LEAD_DAYS`` before its scheduled delivery date (the
purchase-order dates are mostly not captured, so order entry is unknown). What is known then:
the line's own planned attributes (vendor, route, mode, product, quantity, value) and the
outcomes of the lines DELIVERED strictly before that moment. Late rates per vendor, country,
mode, vendor x mode, route and manufacturing site are counted over that history only and shrunk
toward the global late rate of the same history, so a vendor seen twice does not read 0% or
100%. The late rate drifts (under 4% in 2006-09, 23% in 2011), which is why these are rolling,
as-of rates and not encodings fitted once on the training years.

Freight cost and weight are booked when the goods ship, after the moment: they are not features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LEAD_DAYS = 30
PRIOR_WEIGHT = 20.0
"""Pseudo-lines of the global rate added to each key's history (empirical-Bayes shrinkage)."""
RECENT_DAYS = 180

RATE_KEYS: dict[str, tuple[str, ...]] = {
    "vendor": ("vendor",),
    "country": ("country",),
    "mode": ("shipment_mode",),
    "vendor_mode": ("vendor", "shipment_mode"),
    "country_mode": ("country", "shipment_mode"),
    "route": ("fulfill_via",),
    "site": ("manufacturing_site",),
    "product": ("product_group", "sub_classification"),
}
CATEGORICAL = ("shipment_mode", "fulfill_via", "inco_term", "product_group", "sub_classification")


def moments(lines: pd.DataFrame) -> pd.Series:
    return lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)


def build_scms_features(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per line (same index), every value known at its moment of prediction."""
    moment = moments(lines)
    frame = pd.DataFrame(index=lines.index)
    history_n, history_late = _as_of_counts(lines, moment, ())
    global_rate = _shrunk(history_late, history_n, pd.Series(0.1, index=lines.index), 10.0)
    frame["history_lines"] = history_n
    frame["global_late_rate"] = global_rate
    recent_n, recent_late = _recent_counts(lines, moment)
    frame["recent_late_rate"] = _shrunk(recent_late, recent_n, global_rate, PRIOR_WEIGHT)
    for name, keys in RATE_KEYS.items():
        n, late = _as_of_counts(lines, moment, keys)
        frame[f"{name}_late_rate"] = _shrunk(late, n, global_rate, PRIOR_WEIGHT)
        frame[f"{name}_history_lines"] = n
    for column in CATEGORICAL:
        frame[column] = lines[column].astype("category")
    frame["log_quantity"] = np.log1p(lines["quantity_packs"].astype(float))
    frame["log_line_value"] = np.log1p(lines["line_value_usd"].astype(float))
    frame["log_pack_price"] = np.log1p(lines["pack_price_usd"].astype(float))
    frame["units_per_pack"] = lines["units_per_pack"].astype(float)
    po_known = lines["po_sent_date"].notna() & (lines["po_sent_date"] < moment)
    frame["po_to_schedule_days"] = (
        (lines["scheduled_delivery_date"] - lines["po_sent_date"]).dt.days.where(po_known)
    ).astype(float)
    frame["scheduled_month"] = lines["scheduled_delivery_date"].dt.month.astype(float)
    return frame


def _shrunk(late: pd.Series, n: pd.Series, prior: pd.Series, weight: float) -> pd.Series:
    return (late + weight * prior) / (n + weight)


def _as_of_counts(
    lines: pd.DataFrame, moment: pd.Series, keys: tuple[str, ...]
) -> tuple[pd.Series, pd.Series]:
    """Lines (and late lines) with the same keys delivered strictly before each line's moment."""
    events = lines[[*keys, "delivered_date", "late"]].sort_values("delivered_date", kind="stable")
    group = events.groupby(list(keys), sort=False) if keys else None
    events = events.assign(
        seen=(group.cumcount() + 1) if group is not None else np.arange(1, len(events) + 1),
        seen_late=(group["late"].cumsum() if group is not None else events["late"].cumsum()),
    )
    # one row per (keys, delivered_date): the counts after that day's last delivery
    events = events.drop_duplicates([*keys, "delivered_date"], keep="last")
    left = lines[list(keys)].assign(moment=moment, position=np.arange(len(lines)))
    merged = pd.merge_asof(
        left.sort_values("moment", kind="stable"),
        events[[*keys, "delivered_date", "seen", "seen_late"]],
        left_on="moment",
        right_on="delivered_date",
        by=list(keys) or None,
        allow_exact_matches=False,
    ).sort_values("position")
    n = pd.Series(merged["seen"].fillna(0).to_numpy(float), index=lines.index)
    late = pd.Series(merged["seen_late"].fillna(0).to_numpy(float), index=lines.index)
    return n, late


def _recent_counts(lines: pd.DataFrame, moment: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Deliveries in the ``RECENT_DAYS`` before the moment: all before it minus all before the
    window's start."""
    n_now, late_now = _as_of_counts(lines, moment, ())
    n_then, late_then = _as_of_counts(lines, moment - pd.Timedelta(days=RECENT_DAYS), ())
    return n_now - n_then, late_now - late_then
