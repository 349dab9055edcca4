"""Every permission of the governance matrix, for every role, through the service that checks it.

Each case builds what the act needs as admin, then performs the act as the role under test: it must
succeed when the default policy grants the permission and be refused (PermissionDenied, nothing
written) when it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest

from erp_core.db.models import AuditEntry, Product, PurchaseOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import PermissionDenied
from erp_core.policy import PERMISSIONS, Actor, load_policy
from erp_core.services import fulfilment, purchasing, returns, transfers
from erp_core.services.exceptions import acknowledge_exception, open_exception
from erp_core.services.inventory import record_cycle_count
from erp_core.services.master_data import MasterData, SupplierSpec, load_master_data
from erp_core.services.order_changes import (
    cancel_order_lines,
    change_promise,
    decide_approval,
    override_allocation,
    release_backorder,
    release_credit_hold,
    request_expedite,
)
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import ADMIN, T0, stock
from tests.erp_core.support import count

POLICY = load_policy()
LATER = T0 + timedelta(hours=1)
Act = Callable[[Actor], object]


def order(uow: UnitOfWork, customer: str = "C-GOLD", quantity: int = 1, **kwargs):
    return capture_order(
        uow,
        ADMIN,
        customer_id=customer,
        lines=[LineRequest("WIDGET", quantity, kwargs.pop("price", None))],
        now=T0,
        **kwargs,
    )


def delivered_line(uow: UnitOfWork) -> int:
    stock(uow, "WIDGET", "WEST", 5)
    captured = order(uow)
    line_id = captured.lines[0].line_id
    shipment = fulfilment.pick(
        uow, ADMIN, order_id=captured.order_id, picks={line_id: 1}, now=T0
    ).shipment_id
    for event in ("packed", "shipped", "delivered"):
        fulfilment.record_shipment_event(
            uow, ADMIN, shipment_id=shipment, event_type=event, occurred_at=T0, now=T0
        )
    return line_id


def scenario(uow: UnitOfWork, permission: str) -> Act:
    """Prepare the world for ``permission`` and return the act that needs it."""
    if permission == "capture_order":
        stock(uow, "WIDGET", "WEST", 5)
        return lambda a: capture_order(
            uow, a, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 1)], now=LATER
        )
    if permission == "cancel_order":
        stock(uow, "WIDGET", "WEST", 5)
        captured = order(uow)
        return lambda a: cancel_order_lines(uow, a, order_id=captured.order_id, now=LATER)
    if permission == "override_allocation":
        stock(uow, "WIDGET", "WEST", 1)
        robbed = order(uow, "C-BRONZE")
        favoured = order(uow, "C-GOLD")
        return lambda a: override_allocation(
            uow,
            a,
            to_line_id=favoured.lines[0].line_id,
            from_line_id=robbed.lines[0].line_id,
            now=LATER,
            reason="launch",
        )
    if permission == "change_delivery_commitment":
        stock(uow, "WIDGET", "WEST", 5)
        line_id = order(uow).lines[0].line_id
        return lambda a: change_promise(
            uow,
            a,
            line_id=line_id,
            promised_ship_date="2026-03-05",
            promised_delivery_date="2026-03-06",
            reason="dock",
            now=LATER,
        )
    if permission == "approve_expedited_freight":
        stock(uow, "WIDGET", "EAST", 5)
        line_id = order(uow).lines[0].line_id
        approval = request_expedite(uow, Actor("rep-9", "sales_rep"), line_id=line_id, now=T0)
        return lambda a: decide_approval(uow, a, approval_id=approval, approve=True, now=LATER)
    if permission == "release_backorder":
        stock(uow, "WIDGET", "WEST", 3)
        line_id = order(uow, quantity=5, allow_split=False).lines[0].line_id
        return lambda a: release_backorder(uow, a, line_id=line_id, now=LATER)
    if permission == "approve_discount":
        stock(uow, "WIDGET", "WEST", 5)
        captured = capture_order(
            uow,
            Actor("rep-9", "sales_rep"),
            customer_id="C-GOLD",
            lines=[LineRequest("WIDGET", 1, "5.00")],
            now=T0,
        )
        return lambda a: decide_approval(
            uow, a, approval_id=captured.approval_ids[0], approve=True, now=LATER
        )
    if permission == "release_credit_hold":
        stock(uow, "WIDGET", "WEST", 50)
        held = order(uow, "C-SMALL", quantity=11)
        return lambda a: release_credit_hold(uow, a, order_id=held.order_id, now=LATER)
    if permission == "place_purchase_order":
        return lambda a: purchasing.place_purchase_order(
            uow,
            a,
            supplier_id="SUP1",
            location_id="WEST",
            lines=[purchasing.PurchaseLineRequest("WIDGET", 10)],
            now=LATER,
        )
    if permission == "receive_goods":
        po_id = purchasing.place_purchase_order(
            uow,
            ADMIN,
            supplier_id="SUP1",
            location_id="WEST",
            lines=[purchasing.PurchaseLineRequest("WIDGET", 10)],
            now=T0,
        )
        with uow:
            po_line_id = uow.session.get(PurchaseOrder, po_id).lines[0].id
        return lambda a: purchasing.receive_purchase_order_line(
            uow, a, purchase_order_line_id=po_line_id, quantity=10, now=LATER
        )
    if permission == "record_shipment_event":
        stock(uow, "WIDGET", "WEST", 5)
        captured = order(uow)
        return lambda a: fulfilment.pick(
            uow, a, order_id=captured.order_id, picks={captured.lines[0].line_id: 1}, now=LATER
        )
    if permission == "transfer_stock":
        stock(uow, "WIDGET", "WEST", 5)
        return lambda a: transfers.send_transfer(
            uow,
            a,
            sku="WIDGET",
            from_location_id="WEST",
            to_location_id="EAST",
            quantity=2,
            now=LATER,
        )
    if permission == "authorise_return":
        line_id = delivered_line(uow)
        return lambda a: returns.authorise_return(
            uow, a, line_id=line_id, quantity=1, reason="damaged", now=LATER
        )
    if permission == "receive_return":
        return_id = returns.authorise_return(
            uow, ADMIN, line_id=delivered_line(uow), quantity=1, reason="damaged", now=T0
        )
        return lambda a: returns.receive_return(uow, a, return_id=return_id, now=LATER)
    if permission == "adjust_inventory":
        return lambda a: record_cycle_count(
            uow, a, sku="WIDGET", location_id="WEST", counted_quantity=4, now=LATER
        )
    if permission == "manage_master_data":
        data = MasterData(suppliers=[SupplierSpec("SUP2", "Second Supply", 5)])
        return lambda a: load_master_data(uow, a, data, LATER)
    raise AssertionError(f"no scenario for {permission}")


GOVERNED = [p for p in PERMISSIONS if p != "work_exceptions"]


@pytest.mark.parametrize("role", POLICY.roles)
@pytest.mark.parametrize("permission", GOVERNED)
def test_each_act_is_allowed_exactly_for_the_roles_the_policy_grants(
    sqlite_world, permission, role
):
    act = scenario(sqlite_world, permission)
    actor = Actor(f"{role}-1", role)
    if POLICY.allows(role, permission):
        act(actor)
        return
    before = count(sqlite_world, AuditEntry)
    with pytest.raises(PermissionDenied) as refused:
        act(actor)
    assert refused.value.role == role
    assert count(sqlite_world, AuditEntry) == before


# Exceptions are worked by the role that owns them (or admin): a type routed to each role.
OWNED_TYPE = {
    "finance": "credit_hold",
    "planner": "shortage",
    "logistics": "expedite_approval",
    "customer_service": "delivery_slip",
}


@pytest.mark.parametrize("role", POLICY.roles)
def test_exceptions_are_worked_only_by_their_owner_role_or_admin(sqlite_world, role):
    exception_type = OWNED_TYPE.get(role, "shortage")
    with sqlite_world:
        case = open_exception(sqlite_world, ADMIN, T0, exception_type)
        sqlite_world.commit()
    may = POLICY.allows(role, "work_exceptions") and role in (case.owner_role, "admin")
    actor = Actor(f"{role}-1", role)
    if may:
        assert acknowledge_exception(sqlite_world, actor, case.id, LATER).status == "acknowledged"
    else:
        with pytest.raises(PermissionDenied):
            acknowledge_exception(sqlite_world, actor, case.id, LATER)


def test_the_matrix_covers_every_permission_the_services_check():
    assert set(GOVERNED) | {"work_exceptions"} == set(POLICY.permissions)
    assert Decimal(0) <= POLICY.discount_approval_pct
    assert Product.__tablename__ == "products"
