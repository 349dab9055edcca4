"""The margin-anomaly score of an order's priced lines, in [0, 1], with one reason.

The champion scores from the line's online pricing features (the customer's and the tier's
recent prices, the price list, the cost: :mod:`features.online_pricing`, the same definitions as
its training frame) with the reason it gives itself. Without a champion, or without the pricing
index, the score is the rules a planner would apply by hand, reported as ``"model": "rules"``: a
price below unit cost, a price a factor of five or more off the customer's tier price (a price
typed x10 or /10, a unit-of-measure mix-up), and a discount beyond the policy's approval
threshold (which capture sends to finance). The stale-price-list rule of the model needs the
superseded price-list entries, which only the training job reads today: online it stays silent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from erp_core.policy import Policy
from features.online_pricing import OnlinePricing
from serving.lines import LineView, OrderView, draft_of
from serving.models import ServedModel
from training.margin_anomaly import APPROVAL_COLUMN

RULES = "rules"
FACTOR_OFF = 5.0
"""A price this many times above or below the tier price is taken for a typing error."""
SCORE_BELOW_COST = 1.0
SCORE_FACTOR_OFF = 0.95
SCORE_DISCOUNT_UNAPPROVED = 0.85


@dataclass(frozen=True)
class MarginScore:
    score: float
    model: str
    version: str | None
    reason: str | None


def score_margin(
    order: OrderView,
    pricing: OnlinePricing | None,
    champion: ServedModel | None,
    policy: Policy,
) -> list[MarginScore]:
    """One score per line of the order, in its line order."""
    if pricing is None or champion is None or not order.lines:
        return [_rules(line, policy) for line in order.lines]
    # One array per column straight into the model: a DataFrame of a few lines costs more to
    # build and read back (Series per column, Arrow-backed text) than the model's own work, and
    # the model reads a mapping of arrays to the same numbers.
    columns = dict(pricing.feature_values(draft_of(order)))
    columns[APPROVAL_COLUMN] = np.array(
        [line.price_approval_pending for line in order.lines], dtype=bool
    )
    model = champion.estimator
    parts = model.score_parts(columns)
    reasons = model.reasons(columns, parts)
    return [
        MarginScore(round(float(score), 6), champion.name, champion.version, reason or None)
        for score, reason in zip(parts.score, reasons, strict=True)
    ]


def _rules(line: LineView, policy: Policy) -> MarginScore:
    price = line.unit_price
    if line.unit_cost is not None and price < line.unit_cost:
        return MarginScore(
            SCORE_BELOW_COST, RULES, None, f"price {price} is below the unit cost {line.unit_cost}"
        )
    tier = line.tier_price
    if tier is not None and tier > 0:
        ratio = float(price / tier)
        if ratio >= FACTOR_OFF or ratio <= 1 / FACTOR_OFF:
            return MarginScore(
                SCORE_FACTOR_OFF,
                RULES,
                None,
                f"price {price} is {_times(ratio)} the customer's tier price {tier}",
            )
        discount = (1 - ratio) * 100
        if line.price_approval_pending:
            return MarginScore(
                SCORE_DISCOUNT_UNAPPROVED,
                RULES,
                None,
                f"a {discount:.0f}% discount beyond the {policy.discount_approval_pct}% "
                "threshold waits for finance approval",
            )
        return MarginScore(_mild(ratio), RULES, None, None)
    return MarginScore(0.0, RULES, None, None)


def _mild(ratio: float) -> float:
    """A small score growing with the distance from the tier price, below any alert: a quarter
    off scores about 0.14, double about 0.35."""
    return round(min(0.5, abs(math.log(ratio)) / 2), 4)


def _times(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 1 else f"1/{1 / ratio:.1f} of"
