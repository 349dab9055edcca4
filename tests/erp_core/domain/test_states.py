"""State machines: every (state, target) pair is allowed exactly when its table lists it."""

from __future__ import annotations

import itertools
from enum import StrEnum

import pytest

from erp_core.domain.errors import IllegalTransition
from erp_core.domain.states import (
    APPROVAL_TRANSITIONS,
    EXCEPTION_TRANSITIONS,
    LINE_TRANSITIONS,
    OPEN_LINE_STATES,
    PURCHASE_ORDER_TRANSITIONS,
    RETURN_TRANSITIONS,
    SHIPMENT_TRANSITIONS,
    TRANSFER_TRANSITIONS,
    TRANSITION_TABLES,
    ApprovalStatus,
    ExceptionStatus,
    LineState,
    PurchaseOrderStatus,
    ReturnStatus,
    ShipmentStatus,
    TransferStatus,
    check_transition,
)

ENUMS: dict[str, type[StrEnum]] = {
    "order_line": LineState,
    "exception_case": ExceptionStatus,
    "approval_request": ApprovalStatus,
    "shipment": ShipmentStatus,
    "purchase_order": PurchaseOrderStatus,
    "transfer": TransferStatus,
    "return_order": ReturnStatus,
}

EVERY_PAIR = [
    pytest.param(
        entity, current, target, target in table[current], id=f"{entity}:{current}>{target}"
    )
    for entity, table in TRANSITION_TABLES.items()
    for current in table
    for target in table
]


def test_every_entity_has_a_table_covering_all_its_states() -> None:
    assert set(TRANSITION_TABLES) == set(ENUMS)
    for entity, states in ENUMS.items():
        table = TRANSITION_TABLES[entity]
        assert set(table) == set(states), entity
        for targets in table.values():
            assert targets <= set(states), entity


@pytest.mark.parametrize(("entity", "current", "target", "allowed"), EVERY_PAIR)
def test_transition_allowed_iff_listed(
    entity: str, current: str, target: str, allowed: bool
) -> None:
    if allowed:
        assert check_transition(entity, current, target) == target
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(entity, current, target)
        assert (info.value.entity, info.value.current, info.value.target) == (
            entity,
            current,
            target,
        )


def test_the_order_line_table_by_hand() -> None:
    L = LineState
    assert {
        L.DRAFT: {L.CONFIRMED, L.CANCELLED},
        L.CONFIRMED: {L.CREDIT_HOLD, L.BACKORDERED, L.ALLOCATED, L.CANCELLED},
        L.CREDIT_HOLD: {L.BACKORDERED, L.ALLOCATED, L.CANCELLED},
        L.BACKORDERED: {L.ALLOCATED, L.CANCELLED},
        L.ALLOCATED: {L.PICKED, L.BACKORDERED, L.CANCELLED},
        L.PICKED: {L.PACKED},
        L.PACKED: {L.SHIPPED},
        L.SHIPPED: {L.DELIVERED},
        L.DELIVERED: {L.RETURNED},
        L.CANCELLED: set(),
        L.RETURNED: set(),
    } == LINE_TRANSITIONS


def test_the_other_tables_by_hand() -> None:
    assert {
        "open": {"acknowledged", "resolved"},
        "acknowledged": {"resolved"},
        "resolved": set(),
    } == EXCEPTION_TRANSITIONS
    assert {
        "pending": {"approved", "rejected"},
        "approved": set(),
        "rejected": set(),
    } == APPROVAL_TRANSITIONS
    assert {
        "picked": {"packed"},
        "packed": {"shipped"},
        "shipped": {"delivered"},
        "delivered": set(),
    } == SHIPMENT_TRANSITIONS
    assert {
        "open": {"partially_received", "received", "cancelled"},
        "partially_received": {"partially_received", "received"},
        "received": set(),
        "cancelled": set(),
    } == PURCHASE_ORDER_TRANSITIONS
    assert {"in_transit": {"received"}, "received": set()} == TRANSFER_TRANSITIONS
    assert {
        "authorised": {"received"},
        "received": {"restocked", "scrapped"},
        "restocked": set(),
        "scrapped": set(),
    } == RETURN_TRANSITIONS


def test_happy_path_of_an_order_line() -> None:
    path = ["draft", "confirmed", "allocated", "picked", "packed", "shipped", "delivered"]
    for current, target in itertools.pairwise(path):
        assert check_transition("order_line", current, target) == target
    assert check_transition("order_line", "delivered", "returned") == "returned"


def test_backorder_and_credit_hold_paths() -> None:
    for current, target in [
        ("confirmed", "credit_hold"),
        ("credit_hold", "backordered"),
        ("backordered", "allocated"),
        ("allocated", "backordered"),  # a cycle count takes the stock away
        ("credit_hold", "allocated"),
    ]:
        assert check_transition("order_line", current, target) == target


@pytest.mark.parametrize(
    ("entity", "current", "target"),
    [
        ("order_line", "draft", "shipped"),
        ("order_line", "confirmed", "picked"),
        ("order_line", "backordered", "picked"),
        ("order_line", "credit_hold", "picked"),
        ("order_line", "shipped", "cancelled"),
        ("order_line", "delivered", "cancelled"),
        ("order_line", "shipped", "returned"),
        ("order_line", "cancelled", "confirmed"),
        ("order_line", "returned", "delivered"),
        ("order_line", "allocated", "allocated"),
        ("exception_case", "resolved", "open"),
        ("exception_case", "acknowledged", "open"),
        ("approval_request", "approved", "rejected"),
        ("approval_request", "rejected", "pending"),
        ("shipment", "delivered", "shipped"),
        ("shipment", "picked", "shipped"),
        ("purchase_order", "received", "open"),
        ("purchase_order", "partially_received", "cancelled"),
        ("transfer", "received", "in_transit"),
        ("return_order", "authorised", "restocked"),
        ("return_order", "scrapped", "restocked"),
    ],
)
def test_illegal_transition_names_entity_current_and_target(
    entity: str, current: str, target: str
) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(entity, current, target)
    error = info.value
    assert (error.entity, error.current, error.target) == (entity, current, target)
    assert error.field == "state"
    assert error.value == target
    assert error.code == "illegal_transition"
    assert str(error) == f"{entity} cannot go from {current!r} to {target!r}"


def test_unknown_states_are_illegal() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition("order_line", "teleported", "shipped")
    assert info.value.current == "teleported"
    with pytest.raises(IllegalTransition):
        check_transition("order_line", "draft", "teleported")


def test_enum_members_and_plain_strings_are_interchangeable() -> None:
    assert check_transition("order_line", LineState.DRAFT, LineState.CONFIRMED) == "confirmed"
    assert check_transition("shipment", "packed", ShipmentStatus.SHIPPED) == "shipped"


def test_terminal_states() -> None:
    terminal = {
        (entity, state)
        for entity, table in TRANSITION_TABLES.items()
        for state, targets in table.items()
        if not targets
    }
    assert terminal == {
        ("order_line", "cancelled"),
        ("order_line", "returned"),
        ("exception_case", "resolved"),
        ("approval_request", "approved"),
        ("approval_request", "rejected"),
        ("shipment", "delivered"),
        ("purchase_order", "received"),
        ("purchase_order", "cancelled"),
        ("transfer", "received"),
        ("return_order", "restocked"),
        ("return_order", "scrapped"),
    }


def test_open_line_states_are_the_ones_still_counting_against_credit() -> None:
    assert {
        "confirmed",
        "credit_hold",
        "backordered",
        "allocated",
        "picked",
        "packed",
    } == OPEN_LINE_STATES
    assert not OPEN_LINE_STATES & {"draft", "shipped", "delivered", "cancelled", "returned"}
