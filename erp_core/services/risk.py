"""The decision trail of scores: each score kept with its model version, reasons and feature
values, and an exception case opened for a line whose score passes the policy's threshold.

The scores come from above (serving computes them); this service only records them and applies
the policy, in one transaction. Recording the scores of an order's capture is done once per
order: a retry (the client resent the request after a crash between capture and scoring) finds
them and returns the cases they opened rather than opening a second set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from erp_core.db.models import Customer, OrderLine, RiskScore, SalesOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.policy import Actor
from erp_core.services.common import get_or_raise, require_aware
from erp_core.services.exceptions import open_exception

KINDS = {"late_shipment": "late_risk", "margin_anomaly": "margin_anomaly"}
"""Score kind -> the exception type a score over its threshold opens."""
PURPOSES = ("capture", "rescore", "shadow")


@dataclass(frozen=True)
class LineScore:
    line_id: int
    kind: str
    model_name: str
    model_version: str
    score: float
    reasons: Sequence[str] = ()
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedScores:
    score_ids: tuple[int, ...]
    exception_ids: tuple[int, ...]
    already_recorded: bool = False


def record_scores(
    uow: UnitOfWork,
    actor: Actor,
    *,
    order_id: int,
    scores: Sequence[LineScore],
    purpose: str,
    now: datetime,
) -> RecordedScores:
    """Keep ``scores`` for the order's lines; with ``purpose="capture"`` also open a case for
    each line over its threshold (``late_risk_probability``, ``margin_anomaly_score``), routed
    by the policy, and link the score to it. Shadow scores never open a case."""
    require_aware("now", now)
    if purpose not in PURPOSES:
        raise InvalidValue("purpose", purpose, f"not one of {', '.join(PURPOSES)}")
    for score in scores:
        _check(score)
    with uow:
        order = get_or_raise(
            uow.session, SalesOrder, order_id, entity="order", field="order_id", for_update=True
        )
        if purpose == "capture":
            earlier = _recorded(uow, order_id)
            if earlier is not None:
                return earlier
        lines = _lines(uow, order_id, {score.line_id for score in scores})
        customer = uow.session.get(Customer, order.customer_id)
        rows, cases = [], []
        for score in scores:
            line = lines[score.line_id]
            case_id = None
            if purpose == "capture" and score.score >= _threshold(uow, score.kind):
                case_id = _open_case(uow, actor, now, order, line, customer, score)
                cases.append(case_id)
            rows.append(_row(score, order_id, purpose, now, case_id))
        uow.session.add_all(rows)
        uow.session.flush()
        uow.commit()
        return RecordedScores(tuple(row.id for row in rows), tuple(cases))


def _check(score: LineScore) -> None:
    if score.kind not in KINDS:
        raise InvalidValue("kind", score.kind, f"not one of {', '.join(KINDS)}")
    if not 0.0 <= score.score <= 1.0:
        raise InvalidValue("score", score.score, "must be within [0, 1]")


def _recorded(uow: UnitOfWork, order_id: int) -> RecordedScores | None:
    found = uow.session.execute(
        select(RiskScore.id, RiskScore.exception_id).where(
            RiskScore.order_id == order_id, RiskScore.purpose == "capture"
        )
    ).all()
    if not found:
        return None
    return RecordedScores(
        tuple(row.id for row in found),
        tuple(row.exception_id for row in found if row.exception_id is not None),
        already_recorded=True,
    )


def _lines(uow: UnitOfWork, order_id: int, line_ids: set[int]) -> dict[int, OrderLine]:
    lines = {
        line.id: line
        for line in uow.session.scalars(
            select(OrderLine).where(OrderLine.order_id == order_id, OrderLine.id.in_(line_ids))
        )
    }
    missing = sorted(line_ids - lines.keys())
    if missing:
        raise InvalidValue("line_id", missing[0], f"not a line of order {order_id}")
    return lines


def _threshold(uow: UnitOfWork, kind: str) -> float:
    policy = uow.policy
    return policy.late_risk_probability if kind == "late_shipment" else policy.margin_anomaly_score


def _open_case(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    order: SalesOrder,
    line: OrderLine,
    customer: Customer | None,
    score: LineScore,
) -> int:
    case = open_exception(
        uow,
        actor,
        now,
        KINDS[score.kind],
        order_id=order.id,
        line_id=line.id,
        customer=customer,
        sku=line.sku,
        location_id=line.location_id,
        margin_at_risk=line.unit_price * line.quantity,
        score=score.score,
        reasons=list(score.reasons),
        details={"model": score.model_name, "model_version": score.model_version},
    )
    return case.id


def _row(
    score: LineScore, order_id: int, purpose: str, now: datetime, case_id: int | None
) -> RiskScore:
    return RiskScore(
        scored_at=now,
        order_id=order_id,
        line_id=score.line_id,
        purpose=purpose,
        kind=score.kind,
        model_name=score.model_name,
        model_version=score.model_version,
        score=float(score.score),
        reasons=list(score.reasons),
        features=dict(score.features),
        exception_id=case_id,
    )
