"""Score an order's lines as capture decides them: P(late) with reasons, the margin-anomaly
score with its reason, and the actions that could save a risky line.

A line reaches the scorer as a :class:`serving.lines.LineView` (from a quote of a draft, or from
the rows of a captured order), so a draft and the order it becomes are scored by one path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from erp_core.domain.calendar import BusinessCalendar
from erp_core.policy import Policy
from features.online import OnlineFeatures
from features.online_pricing import OnlinePricing
from serving.actions import actions_for
from serving.late_risk import LateRisk, score_late_risk
from serving.lines import Action, LineView, OrderView, draft_of
from serving.margin import MarginScore, score_margin
from serving.models import LATE_SHIPMENT, MARGIN_ANOMALY, ModelSet


@dataclass(frozen=True)
class ScoredLine:
    line: LineView
    late: LateRisk | None
    margin: MarginScore | None
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class ScoredOrder:
    order: OrderView
    lines: tuple[ScoredLine, ...]
    models: dict[str, str]

    @property
    def late_probabilities(self) -> list[float]:
        return [line.late.probability for line in self.lines if line.late is not None]

    def order_risk(self) -> dict[str, Any]:
        p = self.late_probabilities
        value = sum((line.line.unit_price * line.line.quantity for line in self.lines), Decimal(0))
        return {
            "p_any_line_late": round(1 - math.prod(1 - x for x in p), 6) if p else None,
            "expected_late_lines": round(sum(p), 6) if p else None,
            "predicted_otif": round(sum(1 - x for x in p) / len(p), 6) if p else None,
            "order_value": str(value),
            "credit_hold": self.order.credit_hold,
        }


EXPLAIN_SHARE = 0.5
"""Lines from this share of the alert threshold up get their reasons by default."""


def score_order(
    order: OrderView,
    online: OnlineFeatures | None,
    models: ModelSet,
    policy: Policy,
    pricing: OnlinePricing | None = None,
    explain_all: bool = False,
    keep_features: bool = True,
    actions: bool = True,
) -> ScoredOrder:
    """Score every line; reasons for each line at least half as risky as the policy's alert
    threshold (every line with ``explain_all``). Without ``actions`` no line gets any yet:
    :func:`with_actions` adds them once the lines that need them (:func:`needing_actions`) have
    their options."""
    late_champion = models.champion(LATE_SHIPMENT)
    scorable = [line for line in order.lines if line.location_id is not None]
    contexts = [
        {"location": line.location_id or "", "carrier": line.carrier_id or ""} for line in scorable
    ]
    explain_from = 0.0 if explain_all else policy.late_risk_probability * EXPLAIN_SHARE
    risks = score_late_risk(
        online,
        late_champion,
        draft_of(_with_lines(order, scorable)),
        contexts,
        explain_from,
        keep_features,
    )
    late_by_line = {line.line_no: risk for line, risk in zip(scorable, risks, strict=True)}
    margins = score_margin(order, pricing, models.champion(MARGIN_ANOMALY), policy)
    threshold = policy.late_risk_probability
    scored = tuple(
        ScoredLine(
            line=line,
            late=late_by_line.get(line.line_no),
            margin=margin,
            actions=tuple(
                recommend(line, late_by_line.get(line.line_no), threshold, policy.calendar)
            )
            if actions
            else (),
        )
        for line, margin in zip(order.lines, margins, strict=True)
    )
    return ScoredOrder(order, scored, _versions(models, scored))


def needing_actions(scored: ScoredOrder, policy: Policy) -> list[int]:
    """The numbers of the lines :func:`recommend` gives actions: the lines at risk."""
    threshold = policy.late_risk_probability
    return [line.line.line_no for line in scored.lines if at_risk(line.line, line.late, threshold)]


def with_actions(scored: ScoredOrder, order: OrderView, policy: Policy) -> ScoredOrder:
    """The order scored without actions, its lines now as ``order`` has them (the same lines
    and promises, with the options a quote found for the lines at risk) and with their actions,
    as ``score_order`` would have given them."""
    views = {line.line_no: line for line in order.lines}
    threshold = policy.late_risk_probability
    lines = tuple(
        replace(
            line,
            line=views[line.line.line_no],
            actions=tuple(
                recommend(views[line.line.line_no], line.late, threshold, policy.calendar)
            ),
        )
        for line in scored.lines
    )
    return ScoredOrder(order, lines, scored.models)


def _with_lines(order: OrderView, lines: list[LineView]) -> OrderView:
    return OrderView(
        order.customer_id,
        order.channel,
        order.ship_to_region,
        order.entered_at,
        order.credit_hold,
        tuple(lines),
        order.order_id,
    )


def _versions(models: ModelSet, lines: tuple[ScoredLine, ...]) -> dict[str, str]:
    """Which version scored each kind: the champion's, or the fallback that stood in for it."""
    out = {}
    champion = models.champion(LATE_SHIPMENT)
    late = [line.late for line in lines if line.late is not None]
    if late:
        out[LATE_SHIPMENT] = late[0].version or late[0].model
    else:
        out[LATE_SHIPMENT] = champion.version if champion is not None else "fallback"
    margins = [line.margin for line in lines if line.margin is not None]
    out[MARGIN_ANOMALY] = (margins[0].version or margins[0].model) if margins else "rules"
    return out


def recommend(
    line: LineView, risk: LateRisk | None, threshold: float, calendar: BusinessCalendar
) -> list[Action]:
    """What could still save a line at risk (P(late) over the policy threshold, or waiting for
    stock); nothing for a line that is not."""
    if not at_risk(line, risk, threshold):
        return []
    return actions_for(line, risk, calendar)


def at_risk(line: LineView, risk: LateRisk | None, threshold: float) -> bool:
    """Waiting for stock, or P(late) at or over the policy's threshold."""
    return line.state == "backordered" or (risk is not None and risk.probability >= threshold)
