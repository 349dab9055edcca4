"""Batch fulfilment (``pick_orders``, ``record_shipment_events``) leaves the database exactly as
calling ``pick`` / ``record_shipment_event`` once per act would: the same rows in every table
(shipments, events, lines, balances, ledger, reservations, line history, audit trail) with the
same ids, the same results, and the same refusals, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import DomainError, IllegalTransition, InvalidValue, NotFound
from erp_core.policy import Actor
from erp_core.services.fulfilment import pick, record_shipment_event
from erp_core.services.fulfilment_batch import (
    MilestoneRequest,
    PickRequest,
    pick_orders,
    record_shipment_events,
)
from erp_core.services.orders import CapturedOrder, LineRequest, capture_order
from tests.conftest import (
    LOGISTICS,
    SALES,
    T0,
    stock,
)
from tests.erp_core.support import assert_books_balance, dump, one_by_one, same_outcomes

PICKED_AT = T0 + timedelta(hours=1)
PACKED_AT = T0 + timedelta(hours=2)
SHIPPED_AT = T0 + timedelta(hours=3)
DELIVERED_AT = T0 + timedelta(days=1)
LATER = T0 + timedelta(days=2)


def capture(uow: UnitOfWork, *requests: LineRequest, customer: str = "C-GOLD") -> CapturedOrder:
    return capture_order(uow, SALES, customer_id=customer, lines=list(requests), now=T0)


def orders(uow: UnitOfWork) -> list[CapturedOrder]:
    """The same four orders in either twin: two lines at WEST, one line, one at EAST, and one
    that waits on backorder."""
    return [
        capture(uow, LineRequest("WIDGET", 5), LineRequest("GADGET", 2)),
        capture(uow, LineRequest("WIDGET", 7), customer="C-BRONZE"),
        capture(uow, LineRequest("WIDGET", 3), customer="C-EAST"),
        capture(uow, LineRequest("GADGET", 50), customer="C-BRONZE"),
    ]


def pick_requests(captured: list[CapturedOrder]) -> list[PickRequest]:
    first, second, east, waiting = captured
    (backordered,) = [line for line in waiting.lines if line.state == "backordered"]
    return [
        PickRequest(first.order_id, {line.line_id: line.quantity for line in first.lines}),
        PickRequest(999_999, {first.lines[0].line_id: 1}),  # unknown order
        PickRequest(second.order_id, {second.lines[0].line_id: 99}),  # more than the line holds
        PickRequest(east.order_id, {east.lines[0].line_id: east.lines[0].quantity}),
        PickRequest(waiting.order_id, {backordered.line_id: backordered.quantity}),
        PickRequest(second.order_id, {first.lines[0].line_id: 5}),  # another order's line
        PickRequest(first.order_id, {first.lines[0].line_id: 5}),  # picked a moment ago
        PickRequest(second.order_id, {second.lines[0].line_id: second.lines[0].quantity}),
    ]


def single_pick(uow: UnitOfWork, actor: Actor = LOGISTICS) -> Callable[[PickRequest], Any]:
    return lambda r: pick(uow, actor, order_id=r.order_id, picks=r.picks, now=PICKED_AT)


# --- picks -------------------------------------------------------------------------------------


def test_picking_a_batch_writes_what_picking_one_by_one_writes(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins
    requests = pick_requests(orders(loop))
    assert pick_requests(orders(batch)) == requests

    singles = one_by_one(single_pick(loop), requests)
    batched = pick_orders(batch, LOGISTICS, requests=requests, now=PICKED_AT)

    same_outcomes(singles, batched)
    assert [type(o) for o in batched] == [
        type(singles[0]),
        NotFound,
        InvalidValue,
        type(singles[0]),
        IllegalTransition,
        NotFound,
        IllegalTransition,
        type(singles[0]),
    ]
    assert dump(batch) == dump(loop)
    assert_books_balance(batch)


def test_a_batch_holding_a_short_pick_is_picked_act_by_act_with_the_same_result(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins
    requests = pick_requests(orders(loop))
    orders(batch)
    first = requests[0]
    short = PickRequest(first.order_id, {i: q - 1 for i, q in first.picks.items()})
    requests = [short, *requests[1:]]

    singles = one_by_one(single_pick(loop), requests)
    batched = pick_orders(batch, LOGISTICS, requests=requests, now=PICKED_AT)

    same_outcomes(singles, batched)
    assert batched[0].short_picks  # type: ignore[union-attr]
    assert dump(batch) == dump(loop)
    assert_books_balance(batch)


def test_a_batch_pick_by_a_role_without_the_permission_is_refused_act_by_act(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins
    requests = pick_requests(orders(loop))[:1]
    orders(batch)
    sales = Actor("rep-2", "sales_rep")

    singles = one_by_one(single_pick(loop, sales), requests)
    batched = pick_orders(batch, sales, requests=requests, now=PICKED_AT)

    same_outcomes(singles, batched)
    assert dump(batch) == dump(loop)


# --- milestones --------------------------------------------------------------------------------


def picked_shipments(uow: UnitOfWork) -> list[int]:
    results = pick_orders(uow, LOGISTICS, requests=pick_requests(orders(uow)), now=PICKED_AT)
    return [r.shipment_id for r in results if not isinstance(r, DomainError)]


def single_event(uow: UnitOfWork, now: Any) -> Callable[[MilestoneRequest], Any]:
    return lambda e: record_shipment_event(
        uow,
        LOGISTICS,
        shipment_id=e.shipment_id,
        event_type=e.event_type,
        occurred_at=e.occurred_at,
        now=now,
        details=e.details,
    )


def test_milestones_in_a_batch_write_what_recording_them_one_by_one_writes(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins
    shipments = picked_shipments(loop)
    assert picked_shipments(batch) == shipments
    a, b, c = shipments
    evening = [
        MilestoneRequest(a, "packed", PACKED_AT),
        MilestoneRequest(a, "shipped", SHIPPED_AT),
        MilestoneRequest(b, "shipped", SHIPPED_AT),  # not packed yet
        MilestoneRequest(b, "packed", PACKED_AT),
        MilestoneRequest(b, "shipped", PACKED_AT - timedelta(minutes=5)),  # before its packing
        MilestoneRequest(c, "packed", PACKED_AT),
        MilestoneRequest(c, "shipped", SHIPPED_AT),
        MilestoneRequest(424_242, "packed", PACKED_AT),  # unknown shipment
        MilestoneRequest(c, "eta_updated", SHIPPED_AT),  # not a milestone
    ]
    morning = [
        MilestoneRequest(a, "delivered", DELIVERED_AT, {"freight_cost": "61.25"}),
        MilestoneRequest(b, "delivered", DELIVERED_AT),  # still packed
        MilestoneRequest(c, "delivered", DELIVERED_AT, {"freight_cost": "-1"}),
        MilestoneRequest(c, "delivered", DELIVERED_AT),
        MilestoneRequest(c, "delivered", DELIVERED_AT),  # twice
    ]

    for events, now in ((evening, SHIPPED_AT), (morning, LATER)):
        singles = one_by_one(single_event(loop, now), events)
        batched = record_shipment_events(batch, LOGISTICS, events=events, now=now)
        same_outcomes(
            [s for s, e in zip(singles, events, strict=True) if e.event_type != "eta_updated"],
            [o for o, e in zip(batched, events, strict=True) if e.event_type != "eta_updated"],
        )
        assert dump(batch) == dump(loop)
    assert isinstance(batched[-1], IllegalTransition)
    assert_books_balance(batch)


def test_an_eta_update_is_refused_by_the_batch_and_left_to_the_single_act(
    sqlite_world: UnitOfWork,
) -> None:
    stock(sqlite_world, "WIDGET", "WEST", 10)
    (shipment,) = [
        r.shipment_id
        for r in pick_orders(
            sqlite_world,
            LOGISTICS,
            requests=[
                PickRequest(o.order_id, {line.line_id: line.quantity for line in o.lines})
                for o in [capture(sqlite_world, LineRequest("WIDGET", 2))]
            ],
            now=PICKED_AT,
        )
        if not isinstance(r, DomainError)
    ]
    (refused,) = record_shipment_events(
        sqlite_world,
        LOGISTICS,
        events=[MilestoneRequest(shipment, "eta_updated", PACKED_AT, {"eta": "2026-03-20"})],
        now=PACKED_AT,
    )
    assert isinstance(refused, InvalidValue)
    assert refused.field == "event_type"
