"""The decision trail of an order: per line, every score it was given (model and version, or
the fallback; reasons; the feature values used), the exception cases opened, who worked them and
how they were resolved, the approvals linked to them, and the realised outcome once known.

This is the loop the models learn from: a score, what people did about it, and what happened.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from erp_core.db.models import (
    ApprovalRequest,
    ExceptionCase,
    LinePromise,
    Location,
    OrderLine,
    RiskScore,
    SalesOrder,
    ShipmentEvent,
    ShipmentLine,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import NotFound
from erp_core.services.stock import first_promises


@dataclass(frozen=True)
class Outcome:
    """What happened to the line against its first promise (what KPIs and labels judge)."""

    first_promised_delivery_date: date | None
    delivered_on: date | None
    """The local date at the fulfilling location of the first delivery of the line."""
    on_time: bool | None
    """None while the line is not delivered (and its promise not yet passed)."""
    state: str


def decision_trail(uow: UnitOfWork, order_id: int, *, with_features: bool = True) -> dict[str, Any]:
    with uow:
        session = uow.session
        order = session.get(SalesOrder, order_id)
        if order is None:
            raise NotFound("order", "order_id", order_id)
        lines = list(
            session.scalars(
                select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.line_no)
            )
        )
        scores = _by_line(
            session.scalars(
                select(RiskScore).where(RiskScore.order_id == order_id).order_by(RiskScore.id)
            )
        )
        cases = list(
            session.scalars(
                select(ExceptionCase)
                .where(ExceptionCase.order_id == order_id)
                .order_by(ExceptionCase.id)
            )
        )
        approvals = _approvals_by_case(uow, [case.id for case in cases])
        outcomes = _outcomes(uow, lines)
        return {
            "order_id": order.id,
            "customer_id": order.customer_id,
            "entered_at": order.entered_at.isoformat(),
            "entered_by": order.entered_by,
            "lines": [
                {
                    "line_id": line.id,
                    "line_no": line.line_no,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "state": line.state,
                    "scores": [_score(s, with_features) for s in scores.get(line.id, [])],
                    "exceptions": [
                        _case(case, approvals.get(case.id, []))
                        for case in cases
                        if case.line_id == line.id
                    ],
                    "outcome": _outcome(outcomes[line.id]),
                }
                for line in lines
            ],
            "order_exceptions": [
                _case(case, approvals.get(case.id, [])) for case in cases if case.line_id is None
            ],
        }


def _by_line(scores: Any) -> dict[int, list[RiskScore]]:
    found: dict[int, list[RiskScore]] = defaultdict(list)
    for score in scores:
        found[score.line_id].append(score)
    return found


def _approvals_by_case(uow: UnitOfWork, case_ids: list[int]) -> dict[int, list[ApprovalRequest]]:
    found: dict[int, list[ApprovalRequest]] = defaultdict(list)
    if not case_ids:
        return found
    rows = uow.session.scalars(
        select(ApprovalRequest).where(ApprovalRequest.exception_id.in_(case_ids))
    )
    for approval in rows:
        if approval.exception_id is not None:
            found[approval.exception_id].append(approval)
    return found


def _outcomes(uow: UnitOfWork, lines: list[OrderLine]) -> dict[int, Outcome]:
    session = uow.session
    ids = [line.id for line in lines]
    first = first_promises(uow, ids)
    delivered: dict[int, datetime] = {}
    rows = session.execute(
        select(ShipmentLine.line_id, ShipmentEvent.occurred_at)
        .join(ShipmentEvent, ShipmentEvent.shipment_id == ShipmentLine.shipment_id)
        .where(ShipmentLine.line_id.in_(ids), ShipmentEvent.event_type == "delivered")
        .order_by(ShipmentEvent.occurred_at)
    )
    for line_id, occurred_at in rows:
        delivered.setdefault(line_id, occurred_at)
    zones = {
        location.id: location.timezone
        for location in session.scalars(
            select(Location).where(Location.id.in_({line.location_id for line in lines}))
        )
    }
    return {
        line.id: _judge(line, first.get(line.id), delivered.get(line.id), zones) for line in lines
    }


def _judge(
    line: OrderLine,
    promise: LinePromise | None,
    delivered_at: datetime | None,
    zones: dict[str, str],
) -> Outcome:
    promised = promise.promised_delivery_date if promise else None
    zone = ZoneInfo(zones.get(line.location_id or "", "UTC"))
    delivered_on = delivered_at.astimezone(zone).date() if delivered_at else None
    on_time = None
    if promised is not None and delivered_on is not None:
        on_time = delivered_on <= promised
    return Outcome(promised, delivered_on, on_time, line.state)


def _score(score: RiskScore, with_features: bool) -> dict[str, Any]:
    out = {
        "id": score.id,
        "scored_at": score.scored_at.isoformat(),
        "purpose": score.purpose,
        "kind": score.kind,
        "model": score.model_name,
        "version": score.model_version,
        "score": score.score,
        "reasons": list(score.reasons or []),
        "exception_id": score.exception_id,
    }
    if with_features:
        out["features"] = dict(score.features or {})
    return out


def _case(case: ExceptionCase, approvals: list[ApprovalRequest]) -> dict[str, Any]:
    return {
        "id": case.id,
        "type": case.type,
        "owner_role": case.owner_role,
        "status": case.status,
        "opened_at": case.opened_at.isoformat(),
        "score": case.score,
        "reasons": list(case.reasons or []),
        "acknowledged_by": case.acknowledged_by,
        "resolved_at": case.resolved_at.isoformat() if case.resolved_at else None,
        "resolved_by": case.resolved_by,
        "resolution": case.resolution,
        "approvals": [
            {
                "id": approval.id,
                "kind": approval.kind,
                "status": approval.status,
                "requested_by": approval.requested_by,
                "decided_by": approval.decided_by,
                "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
            }
            for approval in approvals
        ],
    }


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "state": outcome.state,
        "first_promised_delivery_date": (
            outcome.first_promised_delivery_date.isoformat()
            if outcome.first_promised_delivery_date
            else None
        ),
        "delivered_on": outcome.delivered_on.isoformat() if outcome.delivered_on else None,
        "on_time": outcome.on_time,
    }
