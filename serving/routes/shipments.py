"""Milestones of a shipment, posted by the warehouse and the carriers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header

from erp_core.policy import Actor
from erp_core.services.fulfilment import record_shipment_event
from serving.routes import EntityId
from serving.schemas import ShipmentEventIn, ShipmentEventOut
from serving.security import RuntimeDep, admits

router = APIRouter(prefix="/v1/shipments", tags=["shipments"])


@router.post(
    "/{shipment_id}/events",
    response_model=ShipmentEventOut,
    summary="Record a milestone (packed, shipped, delivered, eta_updated)",
)
def post_event(
    shipment_id: EntityId,
    body: ShipmentEventIn,
    runtime: RuntimeDep,
    actor: Annotated[Actor, Depends(admits("record_shipment_event"))],
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> ShipmentEventOut:
    """With an ``Idempotency-Key`` header a carrier may resend an event: the retry returns the
    first answer (``replayed: true``) and records nothing twice."""
    result = record_shipment_event(
        runtime.uow(),
        actor,
        shipment_id=shipment_id,
        event_type=body.event_type,
        occurred_at=body.occurred_at,
        now=runtime.now(),
        idempotency_key=idempotency_key,
        details=body.details,
    )
    return ShipmentEventOut(
        shipment_id=result.shipment_id,
        event_id=result.event_id,
        event_type=result.event_type,
        status=result.status,
        exception_ids=list(result.exception_ids),
        replayed=result.replayed,
    )
