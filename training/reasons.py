"""Reason codes: the features that pushed one line's risk up, in a planner's words.

The contributions come from the model itself (the change each split on the row's path through the
trees made, on the log-odds scale: :mod:`training.path_attribution`), so a reason is what the model
used, not a story told beside it. Each feature has a sentence with its value in it; a feature
without one is named as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PHRASES: dict[str, str] = {
    "promised_ship_lead_bdays": "promised to ship in {value:.0f} business days",
    "promised_delivery_lead_bdays": "promised to arrive in {value:.0f} business days",
    "needs_backorder": "part of the line waits for a receipt (backorder)",
    "credit_hold": "the order is on credit hold",
    "transfer": "fulfilled from a location other than the customer's home location",
    "split": "the line is split across locations",
    "stock_cover": "stock cover at the fulfilling location is {value:.2f}x the quantity",
    "pick_backlog_lines": "{value:.0f} lines wait to be picked at the fulfilling location",
    "pick_backlog_ratio": "pick backlog at the location is {value:.1f}x its daily pick capacity",
    "location_ontime_ship_rate_14d": "the location shipped {value:.0%} on time in the last 14 days",
    "location_ontime_ship_rate_56d": "the location shipped {value:.0%} on time in the last 56 days",
    "location_shipped_lines_56d": "the location shipped {value:.0f} lines in the last 56 days",
    "lane_transit_days": "the lane's transit is {value:.0f} business days",
    "lane_ontime_delivery_rate_28d": "the carrier lane delivered {value:.0%} on time in 28 days",
    "lane_ontime_delivery_rate_90d": "the carrier lane delivered {value:.0%} on time in 90 days",
    "lane_transit_spread_28d": "the lane's transit varies by {value:.1f} business days (28 days)",
    "lane_transit_spread_90d": "the lane's transit varies by {value:.1f} business days (90 days)",
    "expedite": "the line travels express",
    "region_alert_severity": (
        "carriers announced a severity-{value:.0f} disruption in the ship region"
    ),
    "supplier_days_late_56d": "the supplier's receipts ran {value:.1f} days late over 56 days",
    "customer_tier": "customer tier {value}",
    "channel": "ordered through {value}",
    "ship_region": "ships to region {value}",
    "order_lines": "the order has {value:.0f} lines",
    "order_units": "the order has {value:.0f} units",
    "order_weight_kg": "the order weighs {value:.0f} kg",
    "order_value": "the order is worth {value:,.0f}",
    "line_units": "the line is for {value:.0f} units",
    "entry_weekday": "entered on weekday {value:.0f} (0 = Monday)",
    "days_to_month_end": "{value:.0f} days to month end",
    "days_to_quarter_end": "{value:.0f} days to quarter end",
    "holiday_within_2bd": "a holiday falls within two business days",
    "peak_season": "peak season",
    "product_category": "product category {value}",
    "abc_class": "ABC class {value}",
    "promised_ship_weekday": "promised to ship on weekday {value:.0f} (0 = Monday)",
    "holiday_near_promised_ship": "a holiday falls on or just after the promised ship date",
    "price_approval_pending": "the price waits for a discount approval",
    "approval_blocks_promise": "a pending discount approval stops the promised ship date",
    "backorder_slack_bdays": (
        "{value:.0f} business days of slack from the expected receipt to the promised ship date"
    ),
    "backorder_receipt_covered": "an open purchase order covers the backorder",
    "covering_receipt_overdue_bdays": (
        "the covering purchase order is {value:.0f} business days past its expected date"
    ),
    "location_ontime_ship_rate_7d": "the location shipped {value:.0%} on time in the last 7 days",
    "region_ontime_due_rate_7d": (
        "{value:.0%} of the lines due in the ship region in 7 days arrived on time"
    ),
    "carrier_ontime_due_rate_14d": (
        "{value:.0%} of the carrier's lines due in 14 days arrived on time"
    ),
    "supplier_late_share_56d": "the supplier delivered {value:.0%} of receipts late in 56 days",
    "fulfilling_location": "fulfilled from {value}",
    "carrier": "carried by {value}",
}


WITH_CONTEXT: dict[str, str] = {
    "pick_backlog_ratio": "pick backlog at {location} is {value:.1f}x its daily pick capacity",
    "pick_backlog_lines": "{value:.0f} lines wait to be picked at {location}",
    "location_ontime_ship_rate_14d": "{location} shipped {value:.0%} on time in the last 14 days",
    "location_ontime_ship_rate_56d": "{location} shipped {value:.0%} on time in the last 56 days",
    "lane_ontime_delivery_rate_28d": "{carrier} on-time {value:.0%} on this lane in 28 days",
    "lane_ontime_delivery_rate_90d": "{carrier} on-time {value:.0%} on this lane in 90 days",
    "stock_cover": "stock cover at {location} is {value:.2f}x the quantity",
}
"""Sentences that name the place or carrier, used when the caller knows them (serving does: the
draft order says where it ships from and with whom; a training frame does not)."""


@dataclass(frozen=True)
class Reason:
    feature: str
    value: Any
    contribution: float
    """Added log-odds of lateness."""
    text: str

    def as_dict(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and np.isnan(value):
            value = None
        return {
            "feature": self.feature,
            "value": value,
            "contribution": round(self.contribution, 4),
            "text": self.text,
        }


def phrase(feature: str, value: Any, context: dict[str, str] | None = None) -> str:
    """The feature's sentence with its value, naming the location or carrier when ``context``
    gives them."""
    template = PHRASES.get(feature)
    if context and feature in WITH_CONTEXT:
        template = WITH_CONTEXT[feature]
    if template is None or value is None or (isinstance(value, float) and np.isnan(value)):
        return f"{feature} = {value}"
    try:
        return template.format(value=value, **(context or {}))
    except (ValueError, TypeError, KeyError):
        return PHRASES.get(feature, "{feature} = {value}").format(feature=feature, value=value)


def top_reasons(
    contributions: np.ndarray, values: list[Any], names: list[str], limit: int = 3
) -> list[Reason]:
    """The ``limit`` features that raised this line's risk the most (positive contributions only;
    the bias column, last in ``pred_contrib``'s output, is not a reason)."""
    columns = {
        name: np.array([value], dtype=object) for name, value in zip(names, values, strict=True)
    }
    return reasons_of_rows(contributions.reshape(1, -1), columns, names, limit)[0]


def reasons_of_rows(
    contributions: np.ndarray,
    columns: dict[str, np.ndarray],
    names: list[str],
    limit: int = 3,
    contexts: list[dict[str, str]] | None = None,
) -> list[list[Reason]]:
    """``top_reasons`` for many rows at once: the ranking is one vectorised sort, and only the
    ``limit`` chosen cells per row are turned into words."""
    per_feature = contributions[:, : len(names)]
    top = np.argsort(-per_feature, axis=1, kind="stable")[:, :limit]
    chosen = np.take_along_axis(per_feature, top, axis=1)
    rows = []
    for i in range(len(per_feature)):
        row = []
        for j, contribution in zip(top[i], chosen[i], strict=True):
            if contribution <= 0:
                break
            name = names[j]
            value = columns[name][i]
            context = contexts[i] if contexts else None
            row.append(Reason(name, value, float(contribution), phrase(name, value, context)))
        rows.append(row)
    return rows
