"""What could still save a line at risk, from the options a quote found for it.

Each action is something the order desk can do now, with the facts to decide it: where else the
stock is and the date it would give, what express freight costs on the lane, which substitute has
stock, or, when nothing makes the date, a later promise the customer can rely on.
"""

from __future__ import annotations

import math
from typing import Any

from erp_core.domain.calendar import BusinessCalendar
from erp_core.services.quotes import LineOptions
from serving.late_risk import TRANSIT_SPREAD_FEATURE, LateRisk
from serving.lines import Action, LineView

SPREAD_FEATURE = TRANSIT_SPREAD_FEATURE
MIN_SLACK_BDAYS = 1


def actions_for(line: LineView, risk: LateRisk | None, calendar: BusinessCalendar) -> list[Action]:
    options = line.options if isinstance(line.options, LineOptions) else None
    actions: list[Action] = []
    if options is not None:
        actions.extend(_elsewhere(line, options))
        actions.extend(_split(line, options))
        actions.extend(_express(line, options))
        actions.extend(_substitute(line, options))
    honest = _later_promise(line, risk, calendar)
    if honest is not None:
        actions.append(honest)
    return actions


def _elsewhere(line: LineView, options: LineOptions) -> list[Action]:
    """The earliest other location that has the whole line on the shelf and delivers no later
    than the current promise."""
    for option in options.other_locations:
        if not option.from_stock:
            continue
        if (
            line.promised_delivery_date
            and option.promised_delivery_date > line.promised_delivery_date
        ):
            continue
        return [
            Action(
                "alternative_location",
                f"ship from {option.location_id} with {option.carrier_id}: "
                f"delivery {option.promised_delivery_date.isoformat()}",
                {
                    "location_id": option.location_id,
                    "carrier_id": option.carrier_id,
                    "free_now": option.free_now,
                    "promised_ship_date": option.promised_ship_date.isoformat(),
                    "promised_delivery_date": option.promised_delivery_date.isoformat(),
                },
            )
        ]
    return []


def _split(line: LineView, options: LineOptions) -> list[Action]:
    """A backordered line whose units are partly free somewhere: ship those now."""
    if line.state != "backordered":
        return []
    partial = [o for o in options.other_locations if 0 < o.free_now < line.quantity]
    if not partial:
        return []
    best = max(partial, key=lambda option: option.free_now)
    return [
        Action(
            "split",
            f"ship {best.free_now} of {line.quantity} now from {best.location_id} "
            f"(delivery {best.promised_delivery_date.isoformat()}), the rest when stock arrives",
            {
                "location_id": best.location_id,
                "quantity_now": best.free_now,
                "quantity_later": line.quantity - best.free_now,
            },
        )
    ]


def _express(line: LineView, options: LineOptions) -> list[Action]:
    express = options.express
    if express is None or line.promised_delivery_date is None:
        return []
    if express.promised_delivery_date >= line.promised_delivery_date:
        return []
    return [
        Action(
            "expedite",
            f"express with {express.carrier_id}: delivery "
            f"{express.promised_delivery_date.isoformat()}, freight {express.cost_per_shipment}",
            {
                "lane_id": express.lane_id,
                "carrier_id": express.carrier_id,
                "transit_days": express.transit_days,
                "freight_cost": str(express.cost_per_shipment),
                "promised_delivery_date": express.promised_delivery_date.isoformat(),
            },
        )
    ]


def _substitute(line: LineView, options: LineOptions) -> list[Action]:
    if not options.substitutes:
        return []
    best = options.substitutes[0]
    return [
        Action(
            "substitute",
            f"offer {best.sku} (same category, {best.free_now} free at {line.location_id})",
            {"sku": best.sku, "free_now": best.free_now, "location_id": line.location_id},
        )
    ]


def _later_promise(
    line: LineView, risk: LateRisk | None, calendar: BusinessCalendar
) -> Action | None:
    """The promise plus the lane's recent transit spread (at least one business day): a date the
    lane's own variability says it keeps."""
    if line.promised_delivery_date is None:
        return None
    spread = _number((risk.features if risk else {}).get(SPREAD_FEATURE))
    slack = max(MIN_SLACK_BDAYS, math.ceil(spread)) if spread is not None else MIN_SLACK_BDAYS
    later = calendar.add_business_days(line.promised_delivery_date, slack)
    return Action(
        "later_promise",
        f"promise {later.isoformat()} instead of {line.promised_delivery_date.isoformat()} "
        f"({slack} business day{'s' if slack > 1 else ''} of the lane's transit spread)",
        {"promised_delivery_date": later.isoformat(), "slack_business_days": slack},
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
