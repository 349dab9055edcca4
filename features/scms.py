"""Point-in-time features of SCMS delivery lines, for the late-delivery protocol of issue 7.

The moment of prediction of a line is ``LEAD_DAYS`` before its scheduled delivery date (the
purchase-order dates are mostly not captured, so order entry is unknown). What is known then:
the line's own planned attributes (vendor, route, mode, product, quantity, value) and the
outcomes of the lines DELIVERED strictly before that moment. For each key of ``RATE_KEYS``
(vendor, country, mode, vendor x mode, country x mode, route, manufacturing site, product) the
late rate is counted over that history, and over the deliveries of the last ``days`` of it for
each window asked for, each shrunk toward the global rate of the same span of history, so a
vendor seen twice does not read 0% or 100%. The late rate drifts (under 4% in 2006-09, 23% in
2011, in quarters of 2011 over 60% for the regional distribution centres), which is why these
are rolling, as-of rates and not encodings fitted once on the training years; the recent
windows follow the episodes, the whole history says where a key usually sits.

Beside the rates: the mean days late of the same deliveries (a late line counts its delay, an
on-time or early one 0), shrunk the same way, and the number of deliveries each rate rests on.
Freight cost and weight are booked when the goods ship, after the moment: they are not features.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

LEAD_DAYS = 30
PRIOR_WEIGHT = 20.0
"""Pseudo-lines of the global rate added to each key's history (empirical-Bayes shrinkage)."""
GLOBAL_PRIOR_RATE = 0.1
GLOBAL_PRIOR_DAYS = 1.0
GLOBAL_PRIOR_WEIGHT = 10.0
"""The global rate itself is shrunk toward 10% late (1 day late on average) by 10 pseudo-lines,
which only matters in the first weeks of the file, when almost nothing has been delivered."""
RECENT_DAYS = 90
"""The recent window of the model's features; ``bench/scms_selection.py`` compared 30, 90, 180
and 365 days by rolling validation on the training years, and 90 ranked best."""

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
ATTRIBUTES = (
    "log_quantity",
    "log_line_value",
    "log_pack_price",
    "units_per_pack",
    "po_to_schedule_days",
    "scheduled_month",
)
"""The line's own planned attributes (known when the line is ordered)."""


def moments(lines: pd.DataFrame) -> pd.Series:
    return lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)


def rate_column(name: str, days: int | None = None) -> str:
    """``vendor_late_rate`` over the whole history, ``vendor_late_rate_90d`` over a window."""
    return f"{name}_late_rate" if days is None else f"{name}_late_rate_{days}d"


def build_scms_features(
    lines: pd.DataFrame,
    windows: tuple[int, ...] = (RECENT_DAYS,),
    keys: Mapping[str, tuple[str, ...]] = RATE_KEYS,
) -> pd.DataFrame:
    """One row per line (same index), every value known at its moment of prediction.

    Per span of history (the whole of it, then each window of ``windows`` days before the
    moment) and per key of ``keys`` (plus ``global``): ``{key}_late_rate[_{d}d]``,
    ``{key}_days_late[_{d}d]`` and ``{key}_history_lines`` / ``{key}_lines_{d}d``."""
    for window in windows:
        if not isinstance(window, int) or window <= 0:
            raise ValueError(f"windows: {window!r} is not a positive number of days")
    outcomes = _outcomes(lines)
    moment = moments(lines)
    columns: dict[str, pd.Series] = {}
    for days in (None, *windows):
        suffix = "" if days is None else f"_{days}d"
        total = _history(outcomes, lines, moment, (), days)
        global_rate = _shrunk(total.late, total.n, GLOBAL_PRIOR_RATE, GLOBAL_PRIOR_WEIGHT)
        global_days = _shrunk(total.days_late, total.n, GLOBAL_PRIOR_DAYS, GLOBAL_PRIOR_WEIGHT)
        columns[rate_column("global", days)] = global_rate
        columns[f"global_days_late{suffix}"] = global_days
        columns["global_history_lines" if days is None else f"global_lines{suffix}"] = total.n
        for name, key in keys.items():
            same = _history(outcomes, lines, moment, key, days)
            columns[rate_column(name, days)] = _shrunk(same.late, same.n, global_rate)
            columns[f"{name}_days_late{suffix}"] = _shrunk(same.days_late, same.n, global_days)
            columns[f"{name}_history_lines" if days is None else f"{name}_lines{suffix}"] = same.n
    frame = pd.DataFrame(columns, index=lines.index)
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


class _Sums:
    """Deliveries (``n``), late ones and their days late over some span of each line's history."""

    def __init__(self, n: pd.Series, late: pd.Series, days_late: pd.Series) -> None:
        self.n, self.late, self.days_late = n, late, days_late

    def __sub__(self, other: _Sums) -> _Sums:
        return _Sums(self.n - other.n, self.late - other.late, self.days_late - other.days_late)


def _outcomes(lines: pd.DataFrame) -> pd.DataFrame:
    delay = (lines["delivered_date"] - lines["scheduled_delivery_date"]).dt.days
    return pd.DataFrame(
        {"late": lines["late"].astype(float), "days_late": delay.clip(lower=0).astype(float)},
        index=lines.index,
    )


def _shrunk(
    total: pd.Series, n: pd.Series, prior: pd.Series | float, weight: float = PRIOR_WEIGHT
) -> pd.Series:
    return (total + weight * prior) / (n + weight)


def _history(
    outcomes: pd.DataFrame,
    lines: pd.DataFrame,
    moment: pd.Series,
    keys: tuple[str, ...],
    days: int | None,
) -> _Sums:
    """Sums over the lines with the same keys delivered in ``[moment - days, moment)`` (the whole
    history before the moment when ``days`` is None): all before the moment minus all before the
    window's start."""
    now = _as_of(outcomes, lines, moment, keys)
    if days is None:
        return now
    return now - _as_of(outcomes, lines, moment - pd.Timedelta(days=days), keys)


def _as_of(
    outcomes: pd.DataFrame, lines: pd.DataFrame, moment: pd.Series, keys: tuple[str, ...]
) -> _Sums:
    """Lines (late lines, days late) with the same keys delivered strictly before each moment."""
    events = pd.concat([lines[[*keys, "delivered_date"]], outcomes], axis=1).sort_values(
        "delivered_date", kind="stable"
    )
    if keys:
        group = events.groupby(list(keys), sort=False)
        seen = group.cumcount() + 1
        sums = group[["late", "days_late"]].cumsum()
    else:
        seen = pd.Series(np.arange(1, len(events) + 1), index=events.index)
        sums = events[["late", "days_late"]].cumsum()
    events = events.assign(seen=seen, seen_late=sums["late"], seen_days=sums["days_late"])
    # one row per (keys, delivered_date): the sums after that day's last delivery
    events = events.drop_duplicates([*keys, "delivered_date"], keep="last")
    left = lines[list(keys)].assign(moment=moment.to_numpy(), position=np.arange(len(lines)))
    merged = pd.merge_asof(
        left.sort_values("moment", kind="stable"),
        events[[*keys, "delivered_date", "seen", "seen_late", "seen_days"]],
        left_on="moment",
        right_on="delivered_date",
        by=list(keys) or None,
        allow_exact_matches=False,
    ).sort_values("position")

    def column(name: str) -> pd.Series:
        return pd.Series(merged[name].fillna(0).to_numpy(float), index=lines.index)

    return _Sums(column("seen"), column("seen_late"), column("seen_days"))
