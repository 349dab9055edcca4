"""What the control tower reads about predictions: the recorded late-risk scores beside what
happened, and the backorders with the date their stock is expected.

Nothing here predicts anew. The late-risk figures come from the scores the API recorded
(``risk_scores``, written by ``erp_core.services.risk.record_scores``) and the promises and
deliveries the ERP holds, so the page shows what the model said at the time and what came of it:

* **A line's score** is its newest ``late_shipment`` score with purpose ``capture`` or
  ``rescore`` (never ``shadow``: a challenger's score is not what the desk acted on). A line the
  API never scored (entered by import or by the simulator) is counted as *unscored*, never given
  a made-up probability.
* **Predicted OTIF** of the coming weeks (KPIS.md): the mean of ``1 - P(late)`` over the open
  lines whose first promised delivery date falls in the week. A line still undelivered after its
  first promised delivery date has missed it for certain; those are counted apart as overdue.
* **Calibration** judges each line's *first* capture score, the prediction made at entry, against
  its outcome: late when its first delivery (local date of its location) came after its first
  promised delivery date, or when it is still undelivered past that date; lines still within
  their promise have no outcome yet and are left out. The scored lines are cut into ten
  equal-count groups by score (fewer when there are fewer than ten lines per group).
* **Predicted fill date** of a backordered line (KPIS.md): the open purchase-order lines and
  inbound transfers of its SKU at its location are taken in expected-date order and handed to the
  waiting backorders in release priority (``erp_core.domain.allocation.release_priority``: tier,
  promise, entry); the receipt that completes a line's cumulative quantity covers it. Its date is
  the receipt's expected date plus the supplier's P80 of days late over its past receipts (a
  transfer: its expected date). A line no scheduled receipt covers has no predicted date, and the
  page says it needs a purchase order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from erp_core.db.models import (
    Customer,
    Lane,
    LinePromise,
    Location,
    OrderLine,
    PurchaseOrder,
    PurchaseOrderLine,
    Receipt,
    RiskScore,
    SalesOrder,
    ShipmentEvent,
    ShipmentLine,
    Transfer,
)
from erp_core.domain.allocation import BackorderClaim, release_priority
from erp_core.domain.states import LineState, PurchaseOrderStatus, TransferStatus

LATE_KIND = "late_shipment"
ACTED_ON = ("capture", "rescore")
OPEN_STATES = (
    LineState.CONFIRMED,
    LineState.CREDIT_HOLD,
    LineState.BACKORDERED,
    LineState.ALLOCATED,
    LineState.PICKED,
    LineState.PACKED,
    LineState.SHIPPED,
)
"""Lines not yet delivered, cancelled or returned: what a late-risk prediction is still about."""
CALIBRATION_GROUPS = 10
RECEIPT_LATENESS_QUANTILE = 0.8
UNSCORED = "unscored"


# --- late risk of the open lines -----------------------------------------------------------------


@dataclass(frozen=True)
class OpenLine:
    line_id: int
    location_id: str
    carrier_id: str
    promised_delivery: date | None
    probability: float | None
    """The line's newest acted-on late-shipment score, or None when it was never scored."""


def open_lines(session: Session) -> list[OpenLine]:
    """Every open line with its first promise, its carrier and its newest acted-on score."""
    rows = session.execute(
        select(OrderLine.id, OrderLine.location_id, Lane.carrier_id)
        .outerjoin(Lane, Lane.id == OrderLine.lane_id)
        .where(OrderLine.state.in_([str(s) for s in OPEN_STATES]))
    ).all()
    ids = [row.id for row in rows]
    promises = _first_promised_delivery(session, ids)
    scores = _newest_scores(session, ids)
    return [
        OpenLine(
            row.id,
            row.location_id or "(none)",
            row.carrier_id or "(none)",
            promises.get(row.id),
            scores.get(row.id),
        )
        for row in rows
    ]


def _chunks(ids: Sequence[int], size: int = 900) -> list[Sequence[int]]:
    """Id lists cut under SQLite's bound-parameter limit."""
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _first_promised_delivery(session: Session, ids: Sequence[int]) -> dict[int, date]:
    found: dict[int, date] = {}
    for chunk in _chunks(ids):
        first = (
            select(func.min(LinePromise.id))
            .where(LinePromise.line_id.in_(chunk))
            .group_by(LinePromise.line_id)
        )
        for line_id, promised in session.execute(
            select(LinePromise.line_id, LinePromise.promised_delivery_date).where(
                LinePromise.id.in_(first)
            )
        ):
            found[line_id] = promised
    return found


def _newest_scores(session: Session, ids: Sequence[int]) -> dict[int, float]:
    found: dict[int, float] = {}
    for chunk in _chunks(ids):
        for line_id, score in session.execute(
            select(RiskScore.line_id, RiskScore.score)
            .where(
                RiskScore.line_id.in_(chunk),
                RiskScore.kind == LATE_KIND,
                RiskScore.purpose.in_(ACTED_ON),
            )
            .order_by(RiskScore.scored_at, RiskScore.id)
        ):
            found[line_id] = float(score)  # the newest wins
    return found


@dataclass(frozen=True)
class WeekOutlook:
    """The open lines promised for delivery in one coming week, and their predicted OTIF."""

    week_start: date
    lines: int
    scored: int
    predicted_otif: float | None


def predicted_otif_by_week(
    lines: Sequence[OpenLine], today: date, weeks: int
) -> tuple[list[WeekOutlook], int]:
    """The coming ``weeks`` weeks from ``today`` (week 1 starts today), and the number of open
    lines already past their first promised delivery date (certain misses)."""
    overdue = sum(1 for line in lines if line.promised_delivery and line.promised_delivery < today)
    outlook = []
    for week in range(weeks):
        start = today + timedelta(days=7 * week)
        due = [
            line
            for line in lines
            if line.promised_delivery and start <= line.promised_delivery < start + timedelta(7)
        ]
        scored = [line.probability for line in due if line.probability is not None]
        mean = sum(1 - p for p in scored) / len(scored) if scored else None
        outlook.append(WeekOutlook(start, len(due), len(scored), mean))
    return outlook, overdue


def risk_band(probability: float | None, threshold: float) -> str:
    """``high`` at or over the policy's alert threshold, ``medium`` from half of it, else
    ``low``; ``unscored`` when the line has no recorded score."""
    if probability is None:
        return UNSCORED
    if probability >= threshold:
        return "high"
    if probability >= threshold / 2:
        return "medium"
    return "low"


BANDS = ("high", "medium", "low", UNSCORED)


def lines_by_band(
    lines: Sequence[OpenLine], threshold: float, dimension: str
) -> list[tuple[str, dict[str, int]]]:
    """Open lines counted per band, per location or carrier (``dimension``), sorted by key."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(BANDS, 0))
    for line in lines:
        key = line.location_id if dimension == "location" else line.carrier_id
        counts[key][risk_band(line.probability, threshold)] += 1
    return sorted(counts.items())


# --- calibration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationGroup:
    lines: int
    low: float
    high: float
    predicted: float
    realised: float


def judged_predictions(session: Session, today: date) -> list[tuple[float, bool]]:
    """(first capture score, was late) for every scored line whose outcome is known."""
    first_scores: dict[int, float] = {}
    for line_id, score in session.execute(
        select(RiskScore.line_id, RiskScore.score)
        .where(RiskScore.kind == LATE_KIND, RiskScore.purpose == "capture")
        .order_by(RiskScore.scored_at.desc(), RiskScore.id.desc())
    ):
        first_scores[line_id] = float(score)  # the earliest is written last
    ids = sorted(first_scores)
    promised = _first_promised_delivery(session, ids)
    delivered = _first_delivered_on(session, ids)
    judged = []
    for line_id in ids:
        due = promised.get(line_id)
        if due is None:
            continue
        arrived = delivered.get(line_id)
        if arrived is not None:
            judged.append((first_scores[line_id], arrived > due))
        elif due < today:
            judged.append((first_scores[line_id], True))
    return judged


def _first_delivered_on(session: Session, ids: Sequence[int]) -> dict[int, date]:
    """Each line's first delivery as a local date of its location (the promise's calendar)."""
    zones = {loc.id: ZoneInfo(loc.timezone) for loc in session.scalars(select(Location))}
    found: dict[int, date] = {}
    for chunk in _chunks(ids):
        for line_id, location_id, occurred in session.execute(
            select(ShipmentLine.line_id, OrderLine.location_id, func.min(ShipmentEvent.occurred_at))
            .join(ShipmentEvent, ShipmentEvent.shipment_id == ShipmentLine.shipment_id)
            .join(OrderLine, OrderLine.id == ShipmentLine.line_id)
            .where(ShipmentLine.line_id.in_(chunk), ShipmentEvent.event_type == "delivered")
            .group_by(ShipmentLine.line_id, OrderLine.location_id)
        ):
            zone = zones.get(location_id, ZoneInfo("UTC"))
            moment = occurred if occurred.tzinfo else occurred.replace(tzinfo=ZoneInfo("UTC"))
            found[line_id] = moment.astimezone(zone).date()
    return found


def calibration(judged: Sequence[tuple[float, bool]]) -> list[CalibrationGroup]:
    """Predicted mean against realised late rate in equal-count groups by score."""
    if not judged:
        return []
    ordered = sorted(judged)
    groups = min(CALIBRATION_GROUPS, len(ordered))
    out = []
    for g in range(groups):
        part = ordered[len(ordered) * g // groups : len(ordered) * (g + 1) // groups]
        scores = [score for score, _ in part]
        out.append(
            CalibrationGroup(
                len(part),
                scores[0],
                scores[-1],
                sum(scores) / len(part),
                sum(late for _, late in part) / len(part),
            )
        )
    return out


# --- backorders and their predicted fill date ----------------------------------------------------


@dataclass(frozen=True)
class Backorder:
    line_id: int
    order_id: int
    sku: str
    location_id: str
    quantity: int
    customer_tier: str
    age_days: float
    covered_by: str | None
    """``PO 12`` or ``transfer 4``, the receipt that completes the line; None when none does."""
    expected: date | None
    predicted_fill: date | None


@dataclass(frozen=True)
class _Supply:
    name: str
    expected: date
    quantity: int
    supplier_id: str | None


def backorders(session: Session, tier_order: Sequence[str], now: datetime) -> list[Backorder]:
    """Every backordered line with the receipt that covers it and its predicted fill date,
    oldest first."""
    rows = session.execute(
        select(
            OrderLine.id,
            OrderLine.order_id,
            OrderLine.sku,
            OrderLine.location_id,
            OrderLine.quantity,
            OrderLine.entered_at,
            Customer.tier,
        )
        .join(SalesOrder, SalesOrder.id == OrderLine.order_id)
        .join(Customer, Customer.id == SalesOrder.customer_id)
        .where(OrderLine.state == LineState.BACKORDERED)
    ).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    promised_ship = _first_promised_ship(session, ids)
    since = _backordered_since(session, ids)
    supply = _scheduled_supply(session)
    lateness = _supplier_lateness(session)
    waiting: dict[tuple[str, str], list[BackorderClaim]] = defaultdict(list)
    for row in rows:
        waiting[(row.sku, row.location_id)].append(
            BackorderClaim(
                row.id, row.quantity, row.tier, promised_ship.get(row.id, date.max), row.entered_at
            )
        )
    covered: dict[int, _Supply] = {}
    for pair, claims in waiting.items():
        covered |= _cover(claims, supply.get(pair, []), tier_order)
    out = []
    for row in rows:
        receipt = covered.get(row.id)
        fill = None
        if receipt is not None:
            late = lateness.get(receipt.supplier_id, 0) if receipt.supplier_id else 0
            fill = receipt.expected + timedelta(days=late)
        became = since.get(row.id, row.entered_at)
        out.append(
            Backorder(
                row.id,
                row.order_id,
                row.sku,
                row.location_id,
                row.quantity,
                row.tier,
                (now - _aware(became)).total_seconds() / 86400,
                receipt.name if receipt else None,
                receipt.expected if receipt else None,
                fill,
            )
        )
    return sorted(out, key=lambda b: (-b.age_days, b.line_id))


def _cover(
    claims: list[BackorderClaim], supply: list[_Supply], tier_order: Sequence[str]
) -> dict[int, _Supply]:
    """Receipts handed out in expected-date order to the claims in release priority."""
    receipts = sorted(supply, key=lambda s: (s.expected, s.name))
    covered: dict[int, _Supply] = {}
    supplied, needed, index = 0, 0, 0
    for claim in sorted(claims, key=lambda c: release_priority(c, tier_order)):
        needed += claim.quantity
        while supplied < needed and index < len(receipts):
            supplied += receipts[index].quantity
            index += 1
        if supplied >= needed and index:
            covered[claim.line_id] = receipts[index - 1]
    return covered


def _first_promised_ship(session: Session, ids: Sequence[int]) -> dict[int, date]:
    found: dict[int, date] = {}
    for chunk in _chunks(ids):
        first = (
            select(func.min(LinePromise.id))
            .where(LinePromise.line_id.in_(chunk))
            .group_by(LinePromise.line_id)
        )
        found |= dict(
            session.execute(
                select(LinePromise.line_id, LinePromise.promised_ship_date).where(
                    LinePromise.id.in_(first)
                )
            ).all()
        )
    return found


def _backordered_since(session: Session, ids: Sequence[int]) -> dict[int, datetime]:
    from erp_core.db.models import LineStateChange

    found: dict[int, datetime] = {}
    for chunk in _chunks(ids):
        found |= dict(
            session.execute(
                select(LineStateChange.line_id, func.max(LineStateChange.occurred_at))
                .where(
                    LineStateChange.line_id.in_(chunk),
                    LineStateChange.to_state == LineState.BACKORDERED,
                )
                .group_by(LineStateChange.line_id)
            ).all()
        )
    return found


def _scheduled_supply(session: Session) -> dict[tuple[str, str], list[_Supply]]:
    """Open purchase-order lines and transfers in transit, per SKU x location (the same
    receipts ``erp_core.services.stock.scheduled_receipts`` counts for ATP)."""
    supply: dict[tuple[str, str], list[_Supply]] = defaultdict(list)
    for po_id, supplier, sku, location, expected, quantity in session.execute(
        select(
            PurchaseOrder.id,
            PurchaseOrder.supplier_id,
            PurchaseOrderLine.sku,
            PurchaseOrder.location_id,
            PurchaseOrderLine.expected_date,
            PurchaseOrderLine.quantity - PurchaseOrderLine.received_quantity,
        )
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(
            PurchaseOrder.status.in_(
                [PurchaseOrderStatus.OPEN, PurchaseOrderStatus.PARTIALLY_RECEIVED]
            ),
            PurchaseOrderLine.received_quantity < PurchaseOrderLine.quantity,
        )
    ):
        supply[(sku, location)].append(_Supply(f"PO {po_id}", expected, int(quantity), supplier))
    for transfer_id, sku, location, expected, quantity in session.execute(
        select(
            Transfer.id,
            Transfer.sku,
            Transfer.to_location_id,
            Transfer.expected_date,
            Transfer.quantity,
        ).where(Transfer.status == TransferStatus.IN_TRANSIT)
    ):
        supply[(sku, location)].append(
            _Supply(f"transfer {transfer_id}", expected, int(quantity), None)
        )
    return supply


def _supplier_lateness(session: Session) -> dict[str, int]:
    """Each supplier's P80 of days late over its past receipts (0 for one without any)."""
    late: dict[str, list[int]] = defaultdict(list)
    for supplier, days_late in session.execute(
        select(PurchaseOrder.supplier_id, Receipt.days_late)
        .join(PurchaseOrderLine, PurchaseOrderLine.id == Receipt.purchase_order_line_id)
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
    ):
        late[supplier].append(int(days_late))
    return {supplier: _quantile(days, RECEIPT_LATENESS_QUANTILE) for supplier, days in late.items()}


def _quantile(values: Sequence[int], share: float) -> int:
    """The smallest value with at least ``share`` of the values at or below it, never below 0
    (an early receipt does not bring a backorder's release forward of its expected date)."""
    ordered = sorted(values)
    return max(0, ordered[max(0, math.ceil(share * len(ordered)) - 1)])


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo("UTC"))
