"""Fulfilment: pick, pack, ship (carrier handoff) and delivery as shipment milestones, with short
picks, split shipments, idempotent events, permissions and the ledger kept equal to balances."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from erp_core.db.models import (
    AuditEntry,
    ExceptionCase,
    InventoryMovement,
    Lane,
    LinePromise,
    LineStateChange,
    OrderLine,
    Reservation,
    Shipment,
    ShipmentEvent,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import (
    Conflict,
    DomainError,
    IllegalTransition,
    InvalidValue,
    NotFound,
    PermissionDenied,
)
from erp_core.policy import Actor
from erp_core.services.fulfilment import (
    PickResult,
    deliver,
    pack,
    pick,
    record_shipment_event,
    ship,
)
from erp_core.services.orders import CapturedOrder, LineRequest, capture_order
from tests.conftest import ADMIN, LOGISTICS, SALES, SERVICE, T0, stock
from tests.erp_core.support import assert_books_balance, balance, count, line_row

PICKED_AT = T0 + timedelta(hours=1)
PACKED_AT = T0 + timedelta(hours=2)
SHIPPED_AT = T0 + timedelta(hours=3)
DELIVERED_AT = T0 + timedelta(days=1)


# --- helpers -----------------------------------------------------------------------------------


def order(uow: UnitOfWork, *requests: LineRequest, customer_id: str = "C-GOLD") -> CapturedOrder:
    return capture_order(uow, SALES, customer_id=customer_id, lines=list(requests), now=T0)


def pick_all(uow: UnitOfWork, captured: CapturedOrder, actor: Actor = LOGISTICS) -> PickResult:
    picks = {line.line_id: line.quantity for line in captured.lines}
    return pick(uow, actor, order_id=captured.order_id, picks=picks, now=PICKED_AT)


def scalar(uow: UnitOfWork, statement: Any) -> Any:
    with uow:
        return uow.session.execute(statement).scalar_one()


def write_counts(uow: UnitOfWork) -> dict[str, int]:
    """Rows of every table a fulfilment act writes to."""
    tables = (
        ShipmentEvent,
        Shipment,
        InventoryMovement,
        AuditEntry,
        LineStateChange,
        ExceptionCase,
        Reservation,
    )
    return {model.__name__: count(uow, model) for model in tables}


# --- happy path --------------------------------------------------------------------------------


def test_pick_pack_ship_deliver_moves_stock_out_and_records_each_milestone(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 20)
    with world:
        lane = world.session.execute(
            select(Lane).where(
                Lane.origin_location_id == "WEST",
                Lane.dest_region == "west",
                Lane.service_level == "standard",
            )
        ).scalar_one()
        lane.cost_per_kg = Decimal("0.5")
        world.commit()
    captured = order(world, LineRequest("WIDGET", 10))
    (line,) = captured.lines
    assert (line.state, line.location_id) == ("allocated", "WEST")
    assert balance(world, "WIDGET", "WEST") == (20, 10, 0)

    picked = pick_all(world, captured)
    assert picked.status == "picked"
    assert picked.location_id == "WEST"
    assert picked.planned_freight_cost == "60.00"  # 50 per shipment + 0.5/kg * 2 kg * 10
    assert [(s.line_id, s.quantity, s.state) for s in picked.lines] == [
        (line.line_id, 10, "picked")
    ]
    assert picked.short_picks == ()
    assert balance(world, "WIDGET", "WEST") == (20, 10, 0)  # picking moves nothing in the ledger

    sid = picked.shipment_id
    packed = pack(world, LOGISTICS, shipment_id=sid, occurred_at=PACKED_AT, now=PACKED_AT)
    assert (packed.status, packed.lines[0].state) == ("packed", "packed")

    shipped = ship(world, LOGISTICS, shipment_id=sid, occurred_at=SHIPPED_AT, now=SHIPPED_AT)
    assert (shipped.status, shipped.lines[0].state) == ("shipped", "shipped")
    assert balance(world, "WIDGET", "WEST") == (10, 0, 0)
    with world:
        movements = world.session.execute(
            select(InventoryMovement.bucket, InventoryMovement.quantity).where(
                InventoryMovement.kind == "shipment",
                InventoryMovement.reference_type == "shipment",
                InventoryMovement.reference_id == sid,
            )
        ).all()
        reservation = world.session.execute(
            select(Reservation).where(Reservation.line_id == line.line_id)
        ).scalar_one()
    assert sorted(movements) == [("on_hand", -10), ("reserved", -10)]
    assert reservation.release_reason == "shipped"
    assert reservation.released_at == SHIPPED_AT

    late_report = SHIPPED_AT + timedelta(days=2)  # the carrier reports delivery a day late
    delivered = deliver(
        world,
        LOGISTICS,
        shipment_id=sid,
        occurred_at=DELIVERED_AT,
        now=late_report,
        freight_cost="63.50",
    )
    assert (delivered.status, delivered.lines[0].state) == ("delivered", "delivered")
    assert balance(world, "WIDGET", "WEST") == (10, 0, 0)

    with world:
        shipment = world.session.get(Shipment, sid)
        assert shipment is not None
        assert shipment.actual_freight_cost == Decimal("63.50")
        assert shipment.planned_freight_cost == Decimal("60.00")
        assert shipment.expedited is False
        events = world.session.execute(
            select(ShipmentEvent.event_type, ShipmentEvent.occurred_at, ShipmentEvent.recorded_at)
            .where(ShipmentEvent.shipment_id == sid)
            .order_by(ShipmentEvent.id)
        ).all()
        history = world.session.execute(
            select(LineStateChange.to_state, LineStateChange.occurred_at)
            .where(LineStateChange.line_id == line.line_id)
            .order_by(LineStateChange.id)
        ).all()
    assert [tuple(e) for e in events] == [
        ("picked", PICKED_AT, PICKED_AT),
        ("packed", PACKED_AT, PACKED_AT),
        ("shipped", SHIPPED_AT, SHIPPED_AT),
        ("delivered", DELIVERED_AT, late_report),
    ]
    assert [tuple(h) for h in history][-4:] == [
        ("picked", PICKED_AT),
        ("packed", PACKED_AT),
        ("shipped", SHIPPED_AT),
        ("delivered", DELIVERED_AT),
    ]
    assert_books_balance(world)


# --- short picks and split shipments -----------------------------------------------------------


def test_short_pick_ships_what_was_found_and_backorders_the_rest(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 10)
    captured = order(world, LineRequest("WIDGET", 10))
    (line,) = captured.lines

    result = pick(
        world, LOGISTICS, order_id=captured.order_id, picks={line.line_id: 6}, now=PICKED_AT
    )

    assert [(s.line_id, s.quantity, s.state) for s in result.lines] == [(line.line_id, 6, "picked")]
    (short,) = result.short_picks
    assert (short.line_id, short.short_quantity) == (line.line_id, 4)
    # no purchase order is open: the supplier's 10-day lead time from today
    assert short.expected_ready_on == "2026-03-13"
    # The 4 units not found are written off on hand at once, so nobody else is promised them.
    assert balance(world, "WIDGET", "WEST") == (6, 6, 0)

    child = line_row(world, short.backorder_line_id)
    parent = line_row(world, line.line_id)
    assert (parent.quantity, parent.state) == (6, "picked")
    assert child.parent_line_id == line.line_id
    assert (child.line_no, child.quantity, child.state) == (2, 4, "backordered")
    assert (child.location_id, child.lane_id) == (parent.location_id, parent.lane_id)
    assert child.unit_price == parent.unit_price
    assert child.expected_ready_on == date(2026, 3, 13)
    with world:
        active = world.session.execute(
            select(Reservation.quantity).where(
                Reservation.line_id == line.line_id, Reservation.released_at.is_(None)
            )
        ).scalar_one()
        promise = world.session.execute(
            select(LinePromise).where(LinePromise.line_id == child.id)
        ).scalar_one()
        case = world.session.get(ExceptionCase, short.exception_id)
        child_history = world.session.execute(
            select(LineStateChange.to_state)
            .where(LineStateChange.line_id == child.id)
            .order_by(LineStateChange.id)
        ).scalars()
        assert list(child_history) == ["confirmed", "backordered"]
    assert active == 6
    assert promise.reason == "short_pick"
    assert promise.promised_ship_date > date(2026, 3, 13)  # put away, then picked
    assert promise.promised_delivery_date > promise.promised_ship_date
    assert case is not None
    assert (case.type, case.line_id, case.owner_role) == ("shortage", child.id, "planner")
    assert "short_pick" in case.reasons

    ship_all(world, result.shipment_id)
    assert balance(world, "WIDGET", "WEST") == (0, 0, 0)
    assert_books_balance(world)


def ship_all(uow: UnitOfWork, shipment_id: int) -> None:
    pack(uow, LOGISTICS, shipment_id=shipment_id, occurred_at=PACKED_AT, now=PACKED_AT)
    ship(uow, LOGISTICS, shipment_id=shipment_id, occurred_at=SHIPPED_AT, now=SHIPPED_AT)


def test_one_order_leaves_in_two_shipments_from_two_locations(world: UnitOfWork) -> None:
    stock(world, "GADGET", "WEST", 5)
    stock(world, "GADGET", "EAST", 5)
    captured = order(world, LineRequest("GADGET", 8))
    by_location = {line.location_id: line for line in captured.lines}
    assert {loc: line.quantity for loc, line in by_location.items()} == {"WEST": 5, "EAST": 3}
    assert all(line.state == "allocated" for line in captured.lines)

    with pytest.raises(Conflict) as refused:
        pick_all(world, captured)
    assert refused.value.field == "picks"
    assert count(world, Shipment) == 0

    results = [
        pick(
            world,
            LOGISTICS,
            order_id=captured.order_id,
            picks={line.line_id: line.quantity},
            now=PICKED_AT,
        )
        for line in by_location.values()
    ]
    assert len({r.shipment_id for r in results}) == 2
    assert {r.location_id for r in results} == {"WEST", "EAST"}
    for result in results:
        ship_all(world, result.shipment_id)

    with world:
        shipments = (
            world.session.execute(select(Shipment).where(Shipment.order_id == captured.order_id))
            .scalars()
            .all()
        )
        assert sorted(s.status for s in shipments) == ["shipped", "shipped"]
    assert balance(world, "GADGET", "WEST") == (0, 0, 0)
    assert balance(world, "GADGET", "EAST") == (2, 0, 0)
    assert_books_balance(world)


def test_lines_of_one_order_at_one_location_can_be_picked_into_separate_shipments(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 10)
    stock(world, "GADGET", "WEST", 10)
    captured = order(world, LineRequest("WIDGET", 4), LineRequest("GADGET", 2))
    first, second = captured.lines

    a = pick(world, LOGISTICS, order_id=captured.order_id, picks={first.line_id: 4}, now=PICKED_AT)
    ship_all(world, a.shipment_id)
    assert line_row(world, second.line_id).state == "allocated"
    b = pick(world, LOGISTICS, order_id=captured.order_id, picks={second.line_id: 2}, now=PICKED_AT)

    assert a.shipment_id != b.shipment_id
    assert (line_row(world, first.line_id).state, line_row(world, second.line_id).state) == (
        "shipped",
        "picked",
    )
    assert balance(world, "WIDGET", "WEST") == (6, 0, 0)
    assert balance(world, "GADGET", "WEST") == (10, 2, 0)
    assert_books_balance(world)


# --- idempotency and illegal orders ------------------------------------------------------------


def test_shipment_event_retry_with_same_key_returns_first_result_and_writes_nothing(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 20)
    picked = pick_all(world, order(world, LineRequest("WIDGET", 10)))
    sid = picked.shipment_id
    pack(world, LOGISTICS, shipment_id=sid, occurred_at=PACKED_AT, now=PACKED_AT)

    first = ship(
        world,
        LOGISTICS,
        shipment_id=sid,
        occurred_at=SHIPPED_AT,
        now=SHIPPED_AT,
        idempotency_key="carrier-42",
    )
    before = write_counts(world)
    on_hand_reserved = balance(world, "WIDGET", "WEST")
    retry = ship(
        world,
        LOGISTICS,
        shipment_id=sid,
        occurred_at=SHIPPED_AT,
        now=SHIPPED_AT + timedelta(minutes=5),
        idempotency_key="carrier-42",
    )

    assert retry == first
    assert (first.replayed, retry.replayed) == (False, True)
    assert write_counts(world) == before
    assert count(world, ShipmentEvent, ShipmentEvent.event_type == "shipped") == 1
    assert balance(world, "WIDGET", "WEST") == on_hand_reserved == (10, 0, 0)
    assert_books_balance(world)


def test_pick_retry_with_same_key_returns_the_same_shipment(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 20)
    captured = order(world, LineRequest("WIDGET", 10))
    picks = {captured.lines[0].line_id: 7}

    first = pick(
        world,
        LOGISTICS,
        order_id=captured.order_id,
        picks=picks,
        now=PICKED_AT,
        idempotency_key="wave-1",
    )
    before = write_counts(world)
    retry = pick(
        world,
        LOGISTICS,
        order_id=captured.order_id,
        picks=picks,
        now=PICKED_AT,
        idempotency_key="wave-1",
    )

    assert retry == first and retry.replayed
    assert write_counts(world) == before
    assert count(world, OrderLine) == 2  # one backordered remainder, not two


def test_same_key_with_a_different_payload_is_a_conflict(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 20)
    sid = pick_all(world, order(world, LineRequest("WIDGET", 10))).shipment_id
    pack(
        world,
        LOGISTICS,
        shipment_id=sid,
        occurred_at=PACKED_AT,
        now=PACKED_AT,
        idempotency_key="evt-1",
    )
    before = write_counts(world)

    with pytest.raises(Conflict) as reused:
        ship(
            world,
            LOGISTICS,
            shipment_id=sid,
            occurred_at=SHIPPED_AT,
            now=SHIPPED_AT,
            idempotency_key="evt-1",
        )

    assert (reused.value.field, reused.value.value) == ("idempotency_key", "evt-1")
    assert write_counts(world) == before


@pytest.mark.parametrize("event_type", ["delivered", "shipped"])
def test_a_milestone_out_of_order_is_illegal_and_writes_nothing(
    world: UnitOfWork, event_type: str
) -> None:
    stock(world, "WIDGET", "WEST", 20)
    captured = order(world, LineRequest("WIDGET", 10))
    sid = pick_all(world, captured).shipment_id
    before = write_counts(world)

    with pytest.raises(IllegalTransition):
        record_shipment_event(
            world,
            LOGISTICS,
            shipment_id=sid,
            event_type=event_type,
            occurred_at=SHIPPED_AT,
            now=SHIPPED_AT,
            idempotency_key="k-1",
        )

    assert write_counts(world) == before
    assert line_row(world, captured.lines[0].line_id).state == "picked"
    assert scalar(world, select(Shipment.status).where(Shipment.id == sid)) == "picked"
    assert balance(world, "WIDGET", "WEST") == (20, 10, 0)
    # the failed attempt did not burn its key
    pack(
        world,
        LOGISTICS,
        shipment_id=sid,
        occurred_at=PACKED_AT,
        now=PACKED_AT,
        idempotency_key="k-2",
    )


def test_a_milestone_dated_before_the_previous_one_is_refused(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 20)
    sid = pick_all(world, order(world, LineRequest("WIDGET", 10))).shipment_id

    with pytest.raises(InvalidValue) as early:
        pack(world, LOGISTICS, shipment_id=sid, occurred_at=T0, now=PACKED_AT)

    assert early.value.field == "occurred_at"
    assert count(world, ShipmentEvent) == 1


# --- permissions, approvals, bad input ---------------------------------------------------------


@pytest.mark.parametrize("actor", [LOGISTICS, ADMIN])
def test_logistics_and_admin_may_pick_and_record_events(world: UnitOfWork, actor: Actor) -> None:
    stock(world, "WIDGET", "WEST", 20)
    sid = pick_all(world, order(world, LineRequest("WIDGET", 10)), actor=actor).shipment_id

    result = pack(world, actor, shipment_id=sid, occurred_at=PACKED_AT, now=PACKED_AT)

    assert result.status == "packed"


@pytest.mark.parametrize("actor", [SALES, SERVICE])
def test_sales_rep_and_customer_service_may_not_pick_or_record_events(
    world: UnitOfWork, actor: Actor
) -> None:
    stock(world, "WIDGET", "WEST", 20)
    captured = order(world, LineRequest("WIDGET", 10))
    with pytest.raises(PermissionDenied):
        pick_all(world, captured, actor=actor)
    sid = pick_all(world, captured).shipment_id
    before = write_counts(world)

    with pytest.raises(PermissionDenied) as denied:
        pack(world, actor, shipment_id=sid, occurred_at=PACKED_AT, now=PACKED_AT)

    assert denied.value.role == actor.role
    assert write_counts(world) == before


def test_pick_is_refused_while_a_price_approval_is_pending(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 20)
    captured = order(world, LineRequest("WIDGET", 10, unit_price="5.00"))
    (line,) = captured.lines
    assert line.price_approval_pending and line.state == "allocated"

    with pytest.raises(Conflict) as refused:
        pick_all(world, captured)

    assert (refused.value.field, refused.value.value) == ("line_id", line.line_id)
    assert count(world, Shipment) == 0
    assert line_row(world, line.line_id).state == "allocated"


@pytest.mark.parametrize(
    ("picks", "field", "error"),
    [
        ({"LINE": 0}, "picks[LINE]", InvalidValue),
        ({"LINE": -1}, "picks[LINE]", InvalidValue),
        ({"LINE": 11}, "picks[LINE]", InvalidValue),
        ({"LINE": "ten"}, "picks[LINE]", InvalidValue),
        ({999999: 1}, "picks[999999]", NotFound),
        ({}, "picks", InvalidValue),
    ],
)
def test_bad_picks_name_the_field_and_write_nothing(
    world: UnitOfWork, picks: dict[Any, Any], field: str, error: type[DomainError]
) -> None:
    stock(world, "WIDGET", "WEST", 20)
    captured = order(world, LineRequest("WIDGET", 10))
    line_id = captured.lines[0].line_id
    picks = {(line_id if k == "LINE" else k): v for k, v in picks.items()}
    before = write_counts(world)

    with pytest.raises(error) as bad:
        pick(world, LOGISTICS, order_id=captured.order_id, picks=picks, now=PICKED_AT)

    assert bad.value.field == field.replace("LINE", str(line_id))
    assert write_counts(world) == before


def test_a_backordered_line_cannot_be_picked(world: UnitOfWork) -> None:
    captured = order(world, LineRequest("WIDGET", 10))  # no stock anywhere
    (line,) = captured.lines
    assert line.state == "backordered"

    with pytest.raises(IllegalTransition):
        pick_all(world, captured)

    assert count(world, Shipment) == 0


def test_line_of_another_order_cannot_be_picked(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 20)
    first = order(world, LineRequest("WIDGET", 5))
    second = order(world, LineRequest("WIDGET", 5))

    with pytest.raises(NotFound) as missing:
        pick(
            world,
            LOGISTICS,
            order_id=first.order_id,
            picks={second.lines[0].line_id: 5},
            now=PICKED_AT,
        )

    assert missing.value.field == f"picks[{second.lines[0].line_id}]"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"occurred_at": datetime(2026, 3, 3, 12, 0)}, "occurred_at"),
        ({"occurred_at": SHIPPED_AT + timedelta(days=1)}, "occurred_at"),
        ({"event_type": "lost"}, "event_type"),
        ({"event_type": "eta_updated", "details": {}}, "details.eta"),
        ({"event_type": "eta_updated", "details": {"eta": "next week"}}, "details.eta"),
        ({"event_type": "delivered", "details": {"freight_cost": "-1"}}, "details.freight_cost"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
def test_bad_event_values_name_the_field(
    world: UnitOfWork, kwargs: dict[str, Any], field: str
) -> None:
    stock(world, "WIDGET", "WEST", 20)
    sid = pick_all(world, order(world, LineRequest("WIDGET", 10))).shipment_id
    call: dict[str, Any] = {"event_type": "packed", "occurred_at": PACKED_AT, **kwargs}

    with pytest.raises(InvalidValue) as bad:
        record_shipment_event(world, LOGISTICS, shipment_id=sid, now=SHIPPED_AT, **call)

    assert bad.value.field == field
    assert count(world, ShipmentEvent) == 1


def test_unknown_shipment_is_not_found(world: UnitOfWork) -> None:
    with pytest.raises(NotFound) as missing:
        pack(world, LOGISTICS, shipment_id=424242, occurred_at=PACKED_AT, now=PACKED_AT)
    assert (missing.value.field, missing.value.value) == ("shipment_id", 424242)


# --- carrier ETA -------------------------------------------------------------------------------


def test_eta_later_than_the_promise_opens_a_delivery_slip_for_customer_service(
    world: UnitOfWork,
) -> None:
    stock(world, "WIDGET", "WEST", 20)
    captured = order(world, LineRequest("WIDGET", 10))
    (line,) = captured.lines
    promised = date.fromisoformat(line.promised_delivery_date or "")
    sid = pick_all(world, captured).shipment_id
    ship_all(world, sid)

    on_time = record_shipment_event(
        world,
        LOGISTICS,
        shipment_id=sid,
        event_type="eta_updated",
        occurred_at=SHIPPED_AT,
        now=SHIPPED_AT,
        details={"eta": promised.isoformat()},
    )
    assert on_time.exception_ids == ()

    late_eta = promised + timedelta(days=3)
    late = record_shipment_event(
        world,
        LOGISTICS,
        shipment_id=sid,
        event_type="eta_updated",
        occurred_at=SHIPPED_AT,
        now=SHIPPED_AT,
        details={"eta": late_eta.isoformat(), "source": "carrier api"},
    )

    (case_id,) = late.exception_ids
    assert (late.status, late.lines[0].state) == ("shipped", "shipped")
    with world:
        case = world.session.get(ExceptionCase, case_id)
        assert case is not None
        assert (case.type, case.owner_role, case.status) == (
            "delivery_slip",
            "customer_service",
            "open",
        )
        assert (case.line_id, case.order_id) == (line.line_id, captured.order_id)
        assert case.details["days_late"] == 3
        events = (
            world.session.execute(
                select(ShipmentEvent.details)
                .where(ShipmentEvent.shipment_id == sid, ShipmentEvent.event_type == "eta_updated")
                .order_by(ShipmentEvent.id)
            )
            .scalars()
            .all()
        )
    assert events[-1] == {"eta": late_eta.isoformat(), "source": "carrier api"}
    assert line_row(world, line.line_id).state == "shipped"

    # a further slip while the case is open does not open a second one
    again = record_shipment_event(
        world,
        LOGISTICS,
        shipment_id=sid,
        event_type="eta_updated",
        occurred_at=SHIPPED_AT,
        now=SHIPPED_AT,
        details={"eta": (late_eta + timedelta(days=1)).isoformat()},
    )
    assert again.exception_ids == ()
    assert count(world, ExceptionCase, ExceptionCase.type == "delivery_slip") == 1

    deliver(world, LOGISTICS, shipment_id=sid, occurred_at=DELIVERED_AT, now=DELIVERED_AT)
    with pytest.raises(Conflict):
        record_shipment_event(
            world,
            LOGISTICS,
            shipment_id=sid,
            event_type="eta_updated",
            occurred_at=DELIVERED_AT,
            now=DELIVERED_AT,
            details={"eta": late_eta.isoformat()},
        )
    assert_books_balance(world)


def test_short_pick_is_served_from_other_free_stock_at_the_location(world: UnitOfWork) -> None:
    stock(world, "WIDGET", "WEST", 20)
    captured = order(world, LineRequest("WIDGET", 10))
    (line,) = captured.lines
    result = pick(
        world, LOGISTICS, order_id=captured.order_id, picks={line.line_id: 6}, now=PICKED_AT
    )
    (short,) = result.short_picks
    child = line_row(world, short.backorder_line_id)
    assert (child.quantity, child.state) == (4, "allocated")
    # 20 counted - 4 not found = 16 on hand; 6 picked + 4 re-allocated are reserved.
    assert balance(world, "WIDGET", "WEST") == (16, 10, 0)
    assert_books_balance(world)
