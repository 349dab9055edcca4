"""The exception queue: cases opened by rules and models, each owned by a role of the policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Select, select

from erp_core.db.models import Customer, ExceptionCase
from erp_core.domain.errors import InvalidValue
from erp_core.domain.states import ExceptionStatus
from erp_core.policy import Actor, Policy
from erp_core.services.exceptions import (
    EXCEPTION_TYPES,
    acknowledge_exception,
    resolve_exception,
)
from serving.routes import EntityId
from serving.runtime import Runtime
from serving.schemas import ExceptionOut, ExceptionsOut, ResolutionIn
from serving.security import ANY_ROLE, RuntimeDep, admits

router = APIRouter(prefix="/v1/exceptions", tags=["exceptions"])

OPEN_STATUSES = (ExceptionStatus.OPEN, ExceptionStatus.ACKNOWLEDGED)
MAX_PAGE = 1000
MAX_AGE_HOURS = 24 * 366 * 100
"""A century: older than any case, and within what a time span can hold."""


@router.get("", response_model=ExceptionsOut, summary="The exception queue, by priority")
def list_exceptions(
    runtime: RuntimeDep,
    _actor: Annotated[Actor, Depends(admits(ANY_ROLE))],
    owner_role: str | None = None,
    type: Annotated[str | None, Query(description="One of the exception types.")] = None,
    status: Annotated[
        str, Query(description="open, acknowledged, resolved, or unresolved (both open kinds).")
    ] = "unresolved",
    min_age_hours: Annotated[float | None, Query(ge=0, le=MAX_AGE_HOURS)] = None,
    max_age_hours: Annotated[float | None, Query(ge=0, le=MAX_AGE_HOURS)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> ExceptionsOut:
    """Sorted by priority = risk x value x customer tier weight (highest first): ``risk`` is the
    model score that opened the case (1 for a case a rule opened: a shortage is certain),
    ``value`` the margin at risk, and the tier weight counts down from the policy's highest tier
    (4, 3, 2, 1 for platinum, gold, silver, bronze)."""
    now = runtime.now()
    query = select(ExceptionCase, Customer.tier).outerjoin(
        Customer, Customer.id == ExceptionCase.customer_id
    )
    query = _filtered(query, runtime.policy, owner_role, type, status)
    if min_age_hours is not None:
        query = query.where(ExceptionCase.opened_at <= now - timedelta(hours=min_age_hours))
    if max_age_hours is not None:
        query = query.where(ExceptionCase.opened_at >= now - timedelta(hours=max_age_hours))
    with runtime.reader() as uow:
        rows = uow.session.execute(query).all()
    weights = tier_weights(runtime.policy)
    ranked = sorted(
        (_out(case, priority(case, weights.get(tier, 1)), now) for case, tier in rows),
        key=lambda case: (-case.priority, case.opened_at, case.id),
    )
    return ExceptionsOut(data=ranked[:limit], count=len(ranked))


def _filtered(
    query: Select,
    policy: Policy,
    owner_role: str | None,
    exception_type: str | None,
    status: str,
) -> Select:
    if owner_role is not None:
        if owner_role not in policy.roles:
            raise InvalidValue("owner_role", owner_role, f"not one of {', '.join(policy.roles)}")
        query = query.where(ExceptionCase.owner_role == owner_role)
    if exception_type is not None:
        if exception_type not in EXCEPTION_TYPES:
            known = ", ".join(EXCEPTION_TYPES)
            raise InvalidValue("type", exception_type, f"not one of {known}")
        query = query.where(ExceptionCase.type == exception_type)
    if status == "unresolved":
        return query.where(ExceptionCase.status.in_([str(s) for s in OPEN_STATUSES]))
    if status not in {str(s) for s in ExceptionStatus}:
        raise InvalidValue("status", status, "use open, acknowledged, resolved or unresolved")
    return query.where(ExceptionCase.status == status)


def tier_weights(policy: Policy) -> dict[str | None, int]:
    tiers = policy.customer_tiers
    return {tier: len(tiers) - i for i, tier in enumerate(tiers)}


def priority(case: ExceptionCase, tier_weight: int) -> float:
    risk = case.score if case.score is not None else 1.0
    value = float(case.margin_at_risk) if case.margin_at_risk is not None else 1.0
    return round(risk * value * tier_weight, 4)


def _out(case: ExceptionCase, rank: float, now: datetime) -> ExceptionOut:
    return ExceptionOut(
        id=case.id,
        type=case.type,
        severity=case.severity,
        owner_role=case.owner_role,
        status=case.status,
        opened_at=case.opened_at,
        sla_due_at=case.sla_due_at,
        age_hours=round((now - case.opened_at).total_seconds() / 3600, 2),
        priority=rank,
        order_id=case.order_id,
        line_id=case.line_id,
        customer_id=case.customer_id,
        sku=case.sku,
        location_id=case.location_id,
        margin_at_risk=None if case.margin_at_risk is None else str(case.margin_at_risk),
        score=case.score,
        reasons=list(case.reasons or []),
        details=dict(case.details or {}),
        acknowledged_at=case.acknowledged_at,
        acknowledged_by=case.acknowledged_by,
        resolved_at=case.resolved_at,
        resolved_by=case.resolved_by,
        resolution=case.resolution,
    )


@router.post(
    "/{exception_id}/acknowledge", response_model=ExceptionOut, summary="Take a case in hand"
)
def acknowledge(
    exception_id: EntityId,
    runtime: RuntimeDep,
    actor: Annotated[Actor, Depends(admits("work_exceptions"))],
) -> ExceptionOut:
    """Only the owner role (or an admin) may work a case; anyone else gets a 403."""
    now = runtime.now()
    case = acknowledge_exception(runtime.uow(), actor, exception_id, now)
    return _out(case, _priority_of(runtime, case), now)


@router.post("/{exception_id}/resolve", response_model=ExceptionOut, summary="Close a case")
def resolve(
    exception_id: EntityId,
    body: ResolutionIn,
    runtime: RuntimeDep,
    actor: Annotated[Actor, Depends(admits("work_exceptions"))],
) -> ExceptionOut:
    """The resolution says what was done (``false_alarm`` counts against alert precision)."""
    now = runtime.now()
    text = body.resolution if not body.note else f"{body.resolution}: {body.note.strip()}"
    case = resolve_exception(runtime.uow(), actor, exception_id, text, now)
    return _out(case, _priority_of(runtime, case), now)


def _priority_of(runtime: Runtime, case: ExceptionCase) -> float:
    """The case's priority as the queue ranks it (with its customer's tier weight)."""
    tier = None
    if case.customer_id is not None:
        with runtime.reader() as uow:
            tier = uow.session.scalar(select(Customer.tier).where(Customer.id == case.customer_id))
    return priority(case, tier_weights(runtime.policy).get(tier, 1))
