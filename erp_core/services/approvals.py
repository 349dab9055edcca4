"""Approval requests: a governed decision (a discount beyond the threshold, expedited freight)
waits as a pending request, tied to the exception case that routes it to its owner."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from erp_core.db.models import ApprovalRequest
from erp_core.db.uow import UnitOfWork
from erp_core.domain.states import ApprovalStatus
from erp_core.policy import Actor
from erp_core.services.common import audit


def open_approval(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    *,
    kind: str,
    order_id: int,
    line_id: int,
    exception_id: int,
    details: dict[str, Any],
) -> ApprovalRequest:
    """A pending approval request of ``kind`` for one order line, with its audit entry."""
    approval = ApprovalRequest(
        kind=kind,
        status=ApprovalStatus.PENDING,
        order_id=order_id,
        line_id=line_id,
        requested_at=now,
        requested_by=actor.name,
        exception_id=exception_id,
        details=details,
    )
    uow.session.flush()  # its order and line first (see ``open_exception``)
    uow.session.add(approval)
    uow.session.flush()
    audit(
        uow,
        actor,
        now,
        "request_approval",
        "approval_request",
        approval.id,
        to_state=ApprovalStatus.PENDING,
        kind=kind,
        line_id=line_id,
    )
    return approval
