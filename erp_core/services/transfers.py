"""Transfers between locations: free stock leaves the source at once and is on order at the
destination while in transit (a scheduled receipt for available-to-promise there); on receipt it
becomes on hand at the destination and waiting backorders are released by priority."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from erp_core.db.models import Location, Product, Transfer
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue
from erp_core.domain.states import TransferStatus
from erp_core.policy import Actor
from erp_core.services.common import (
    audit,
    get_or_raise,
    not_before,
    parse_date,
    parse_quantity,
    require_aware,
    transition,
)
from erp_core.services.stock import (
    lock_balance,
    lock_balances,
    post,
    receive_scheduled,
    release_backorders,
)

DEFAULT_TRANSIT_DAYS = 2


def send_transfer(
    uow: UnitOfWork,
    actor: Actor,
    *,
    sku: str,
    from_location_id: str,
    to_location_id: str,
    quantity: int,
    now: datetime,
    expected_date: date | str | None = None,
) -> int:
    """Send free stock of a SKU from one location to another; returns the transfer id."""
    require_aware("now", now)
    units = parse_quantity("quantity", quantity)
    today = now.astimezone(UTC).date()
    expected = parse_date("expected_date", expected_date) or today + timedelta(
        days=DEFAULT_TRANSIT_DAYS
    )
    if expected < today:
        raise InvalidValue("expected_date", expected_date, "must not be before the send date")
    if from_location_id == to_location_id:
        raise InvalidValue("to_location_id", to_location_id, "must differ from from_location_id")
    with uow:
        uow.policy.require(actor, "transfer_stock")
        get_or_raise(uow.session, Product, sku, entity="product", field="sku")
        for field, location_id in (
            ("from_location_id", from_location_id),
            ("to_location_id", to_location_id),
        ):
            get_or_raise(uow.session, Location, location_id, entity="location", field=field)
        balances = lock_balances(uow, [(sku, from_location_id), (sku, to_location_id)])
        source, destination = balances[(sku, from_location_id)], balances[(sku, to_location_id)]
        free = source.on_hand - source.reserved
        if free < units:
            raise Conflict(
                f"only {free} of {sku} free at {from_location_id}; cannot transfer {units}",
                field="quantity",
                value=units,
            )
        transfer = Transfer(
            sku=sku,
            from_location_id=from_location_id,
            to_location_id=to_location_id,
            quantity=units,
            status=TransferStatus.IN_TRANSIT,
            sent_at=now,
            expected_date=expected,
            requested_by=actor.name,
        )
        uow.session.add(transfer)
        uow.session.flush()
        reference = ("transfer", transfer.id)
        post(
            uow,
            source,
            "on_hand",
            -units,
            kind="transfer_out",
            actor=actor,
            now=now,
            reference=reference,
        )
        post(
            uow,
            destination,
            "on_order",
            units,
            kind="transfer_in_transit",
            actor=actor,
            now=now,
            reference=reference,
        )
        audit(
            uow,
            actor,
            now,
            "send_transfer",
            "transfer",
            transfer.id,
            to_state=TransferStatus.IN_TRANSIT,
            sku=sku,
            from_location_id=from_location_id,
            to_location_id=to_location_id,
            quantity=units,
            expected_date=expected,
        )
        uow.commit()
        return transfer.id


def receive_transfer(
    uow: UnitOfWork, actor: Actor, *, transfer_id: int, now: datetime
) -> list[int]:
    """Receive an in-transit transfer at its destination; returns the backordered lines released."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "receive_goods")
        transfer = get_or_raise(
            uow.session,
            Transfer,
            transfer_id,
            entity="transfer",
            field="transfer_id",
            for_update=True,
        )
        not_before("now", now, transfer.sent_at, f"transfer {transfer.id} was sent")
        transition(
            uow,
            actor,
            now,
            "transfer",
            transfer,
            TransferStatus.RECEIVED,
            "receive_transfer",
            sku=transfer.sku,
            quantity=transfer.quantity,
            to_location_id=transfer.to_location_id,
        )
        transfer.received_at = now
        destination = lock_balance(uow, transfer.sku, transfer.to_location_id)
        receive_scheduled(
            uow,
            destination,
            transfer.quantity,
            kind="transfer_in",
            actor=actor,
            now=now,
            reference=("transfer", transfer.id),
        )
        released = release_backorders(uow, destination, actor, now)
        uow.commit()
        return released
