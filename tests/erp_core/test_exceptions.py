"""Exception cases: routing by the policy, and only the owner role (or admin) works them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from erp_core.domain.errors import IllegalTransition, InvalidValue, PermissionDenied
from erp_core.services.exceptions import acknowledge_exception, resolve_exception
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import ADMIN, FINANCE, PLANNER, SALES, SERVICE, T0

LATER = T0 + timedelta(hours=5)


def shortage_case(uow, customer="C-GOLD") -> int:
    captured = capture_order(
        uow, SALES, customer_id=customer, lines=[LineRequest("GADGET", 1)], now=T0
    )
    return captured.exception_ids[0]


def test_shortage_for_a_gold_customer_is_routed_to_planning_with_a_short_sla(world):
    case = acknowledge_exception(world, PLANNER, shortage_case(world), LATER)
    assert (case.owner_role, case.severity) == ("planner", "high")
    assert case.sla_due_at - case.opened_at == timedelta(hours=8)
    assert (case.status, case.acknowledged_by) == ("acknowledged", PLANNER.name)


def test_shortage_for_a_bronze_customer_gets_the_default_route(world):
    case = acknowledge_exception(world, PLANNER, shortage_case(world, "C-BRONZE"), LATER)
    assert (case.severity, case.sla_due_at - case.opened_at) == ("medium", timedelta(hours=24))


def test_only_the_owner_role_or_admin_works_a_case(world):
    case_id = shortage_case(world)
    for outsider in (SERVICE, FINANCE):
        with pytest.raises(PermissionDenied):
            acknowledge_exception(world, outsider, case_id, LATER)
    with pytest.raises(PermissionDenied):
        resolve_exception(world, SALES, case_id, "expedited PO", LATER)
    resolved = resolve_exception(world, ADMIN, case_id, "expedited PO", LATER)
    assert (resolved.status, resolved.resolution) == ("resolved", "expedited PO")


def test_resolved_case_cannot_be_acknowledged(world):
    case_id = shortage_case(world)
    resolve_exception(world, PLANNER, case_id, "stock found", LATER)
    with pytest.raises(IllegalTransition):
        acknowledge_exception(world, PLANNER, case_id, LATER)


def test_resolution_must_say_something(world):
    with pytest.raises(InvalidValue) as raised:
        resolve_exception(world, PLANNER, shortage_case(world), "  ", LATER)
    assert raised.value.field == "resolution"
