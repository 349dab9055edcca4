"""Exception cases: opened by rules and models, routed to an owner role by the governance policy,
worked (acknowledged, resolved) only by that role or an admin."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from erp_core.db.models import Customer, ExceptionCase
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue, PermissionDenied
from erp_core.domain.states import ExceptionStatus
from erp_core.policy import Actor
from erp_core.services.common import audit, get_or_raise, require_aware, transition

EXCEPTION_TYPES = (
    "shortage",
    "late_risk",
    "margin_anomaly",
    "credit_hold",
    "delivery_slip",
    "discount_approval",
    "expedite_approval",
)


def open_exception(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    exception_type: str,
    *,
    order_id: int | None = None,
    line_id: int | None = None,
    customer: Customer | None = None,
    sku: str | None = None,
    location_id: str | None = None,
    margin_at_risk: Decimal | None = None,
    score: float | None = None,
    reasons: Sequence[str] = (),
    details: dict[str, Any] | None = None,
) -> ExceptionCase:
    """Open a case inside the caller's transaction, routed by the policy (owner, severity, SLA)."""
    if exception_type not in EXCEPTION_TYPES:
        raise InvalidValue("type", exception_type, f"not one of {', '.join(EXCEPTION_TYPES)}")
    route = uow.policy.route(
        exception_type,
        margin_at_risk=margin_at_risk,
        customer_tier=customer.tier if customer else None,
        service_level=float(customer.service_level_target) if customer else None,
    )
    case = ExceptionCase(
        type=exception_type,
        severity=route.severity,
        owner_role=route.owner_role,
        status=ExceptionStatus.OPEN,
        opened_at=now,
        sla_due_at=now + timedelta(hours=route.sla_hours),
        order_id=order_id,
        line_id=line_id,
        customer_id=customer.id if customer else None,
        sku=sku,
        location_id=location_id,
        margin_at_risk=margin_at_risk,
        score=score,
        reasons=list(reasons),
        details=details or {},
    )
    # What the case refers to (an order, a line still pending in the session) goes in first:
    # the unit of work does not order the case's INSERT after theirs.
    uow.session.flush()
    uow.session.add(case)
    uow.session.flush()
    audit(
        uow,
        actor,
        now,
        "open_exception",
        "exception_case",
        case.id,
        to_state=case.status,
        type=exception_type,
        owner_role=route.owner_role,
    )
    return case


def acknowledge_exception(
    uow: UnitOfWork, actor: Actor, exception_id: int, now: datetime
) -> ExceptionCase:
    require_aware("now", now)
    with uow:
        case = _owned_case(uow, actor, exception_id)
        transition(
            uow,
            actor,
            now,
            "exception_case",
            case,
            ExceptionStatus.ACKNOWLEDGED,
            "acknowledge_exception",
        )
        case.acknowledged_at = now
        case.acknowledged_by = actor.name
        uow.commit()
        return case


def resolve_exception(
    uow: UnitOfWork, actor: Actor, exception_id: int, resolution: str, now: datetime
) -> ExceptionCase:
    require_aware("now", now)
    if not resolution or not resolution.strip():
        raise InvalidValue("resolution", resolution, "say how the exception was resolved")
    with uow:
        case = _owned_case(uow, actor, exception_id)
        close_case(uow, actor, case, resolution.strip(), now)
        uow.commit()
        return case


def close_case(
    uow: UnitOfWork, actor: Actor, case: ExceptionCase, resolution: str, now: datetime
) -> None:
    """Resolve a case inside the caller's transaction (an approval decided, a hold released)."""
    transition(
        uow,
        actor,
        now,
        "exception_case",
        case,
        ExceptionStatus.RESOLVED,
        "resolve_exception",
        resolution=resolution,
    )
    case.resolved_at = now
    case.resolved_by = actor.name
    case.resolution = resolution


def _owned_case(uow: UnitOfWork, actor: Actor, exception_id: int) -> ExceptionCase:
    uow.policy.require(actor, "work_exceptions")
    case = get_or_raise(
        uow.session,
        ExceptionCase,
        exception_id,
        entity="exception",
        field="exception_id",
        for_update=True,
    )
    if actor.role not in (case.owner_role, "admin"):
        raise PermissionDenied(
            actor.role, f"work {case.type} exceptions owned by {case.owner_role}"
        )
    return case
