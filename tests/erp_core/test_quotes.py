"""Quotes: a draft order gets the decisions capture would make (parity), nothing is written, bad
input is refused as capture refuses it, and each line's options (another location, express, a
substitute) say what they would give."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from sqlalchemy import event, select

from erp_core.db.models import Lane, OrderLine, PriceDecision, Product, SalesOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import DomainError, InvalidValue, NotFound
from erp_core.policy import Actor
from erp_core.services.master_data import (
    CustomerSpec,
    MasterData,
    ProductSpec,
    load_master_data,
)
from erp_core.services.orders import CapturedOrder, LineRequest, capture_order
from erp_core.services.purchasing import PurchaseLineRequest, place_purchase_order
from erp_core.services.quotes import LocationOption, OrderQuote, QuotedLine, quote_order
from erp_core.services.transfers import send_transfer
from tests.conftest import ADMIN, PLANNER, SALES, T0, stock
from tests.erp_core.support import balance, dump

D0 = T0.date()  # Tuesday 2026-03-03


class Decided(NamedTuple):
    """What capture decides for one line, as both a quote and the captured rows tell it."""

    line_no: int
    parent_line_no: int | None
    sku: str
    quantity: int
    state: str
    location_id: str | None
    lane_id: int | None
    unit_price: Decimal
    tier_price: Decimal | None
    price_source: str
    price_approval_pending: bool
    promised_ship_date: date | None
    promised_delivery_date: date | None
    expected_ready_on: date | None


def quote(uow: UnitOfWork, customer: str = "C-GOLD", *lines: LineRequest, **kwargs) -> OrderQuote:
    return quote_order(
        uow, customer_id=customer, lines=list(lines), now=kwargs.pop("now", T0), **kwargs
    )


def capture(
    uow: UnitOfWork, customer: str, *lines: LineRequest, actor: Actor = SALES, **kwargs
) -> CapturedOrder:
    return capture_order(
        uow, actor, customer_id=customer, lines=list(lines), now=kwargs.pop("now", T0), **kwargs
    )


def quoted_decisions(quoted: OrderQuote) -> list[Decided]:
    return [Decided(*(getattr(line, name) for name in Decided._fields)) for line in quoted.lines]


def captured_decisions(uow: UnitOfWork, captured: CapturedOrder) -> list[Decided]:
    with uow:
        ids = [line.line_id for line in captured.lines]
        rows = {
            row.id: row
            for row in uow.session.execute(select(OrderLine).where(OrderLine.id.in_(ids))).scalars()
        }
        sources = dict(
            uow.session.execute(
                select(PriceDecision.line_id, PriceDecision.source).where(
                    PriceDecision.line_id.in_(ids)
                )
            ).all()
        )
    return [
        Decided(
            line_no=line.line_no,
            parent_line_no=rows[line.parent_line_id].line_no if line.parent_line_id else None,
            sku=line.sku,
            quantity=line.quantity,
            state=line.state,
            location_id=line.location_id,
            lane_id=rows[line.line_id].lane_id,
            unit_price=Decimal(line.unit_price),
            tier_price=rows[line.line_id].tier_price,
            price_source=sources[line.line_id],
            price_approval_pending=line.price_approval_pending,
            promised_ship_date=_day(line.promised_ship_date),
            promised_delivery_date=_day(line.promised_delivery_date),
            expected_ready_on=rows[line.line_id].expected_ready_on,
        )
        for line in captured.lines
    ]


def _day(iso: str | None) -> date | None:
    return date.fromisoformat(iso) if iso else None


def quote_then_capture(
    uow: UnitOfWork, customer: str, *lines: LineRequest, actor: Actor = SALES, **kwargs: Any
) -> OrderQuote:
    """Quote the order, capture it in the same state, and fail on any decision that differs."""
    quoted = quote(uow, customer, *lines, actor=actor, **kwargs)
    captured = capture(uow, customer, *lines, actor=actor, **kwargs)
    assert quoted_decisions(quoted) == captured_decisions(uow, captured)
    assert quoted.credit_hold == captured.credit_hold
    with uow:
        order = uow.session.get(SalesOrder, captured.order_id)
        assert order is not None
        assert (quoted.channel, quoted.ship_to_region) == (order.channel, order.ship_to_region)
        assert quoted.order_value == sum(
            (line.unit_price * line.quantity for line in order.lines), Decimal(0)
        )
    return quoted


def place_po(uow: UnitOfWork, sku: str, quantity: int, expected: date, location: str = "WEST"):
    place_purchase_order(
        uow,
        PLANNER,
        supplier_id="SUP1",
        location_id=location,
        lines=[PurchaseLineRequest(sku, quantity, expected_date=expected)],
        now=T0,
    )


def layout(pairs: dict[tuple[str, str], int]) -> Callable[[UnitOfWork], None]:
    def put(uow: UnitOfWork) -> None:
        for (sku, location), quantity in pairs.items():
            stock(uow, sku, location, quantity)

    return put


def po_at_west(uow: UnitOfWork) -> None:
    place_po(uow, "GADGET", 20, D0 + timedelta(days=5))


def transfer_on_its_way(uow: UnitOfWork) -> None:
    stock(uow, "WIDGET", "EAST", 30)
    send_transfer(
        uow,
        PLANNER,
        sku="WIDGET",
        from_location_id="EAST",
        to_location_id="WEST",
        quantity=10,
        now=T0,
        expected_date=D0 + timedelta(days=2),
    )


def small_po(uow: UnitOfWork) -> None:
    place_po(uow, "GADGET", 10, D0 + timedelta(days=4))


def customer_without_home(uow: UnitOfWork) -> None:
    walk_in = CustomerSpec(
        "C-WALKIN", "Walk-in", "bronze", Decimal("100000"), "field_sales", "west"
    )
    load_master_data(uow, ADMIN, MasterData(customers=[walk_in]), T0)


def walk_in_with_stock_at_both(uow: UnitOfWork) -> None:
    customer_without_home(uow)
    stock(uow, "WIDGET", "WEST", 9)
    stock(uow, "WIDGET", "EAST", 9)


def queue_ahead(uow: UnitOfWork) -> None:
    stock(uow, "WIDGET", "WEST", 50)
    for _ in range(3):
        capture(uow, "C-BRONZE", LineRequest("WIDGET", 1))


FRIDAY_AFTER_CUTOFF = datetime(2026, 3, 6, 15, 30, tzinfo=UTC)
W = "WIDGET"
G = "GADGET"

SCENARIOS: dict[str, tuple[Callable[[UnitOfWork], None], str, list[LineRequest], dict]] = {
    "stock_at_home": (
        layout({(W, "WEST"): 50, (W, "EAST"): 50}),
        "C-GOLD",
        [LineRequest(W, 5)],
        {},
    ),
    "stock_only_elsewhere": (layout({(W, "EAST"): 50}), "C-GOLD", [LineRequest(W, 5)], {}),
    "partial_stock_split": (
        layout({(W, "WEST"): 5, (W, "EAST"): 3}),
        "C-GOLD",
        [LineRequest(W, 10)],
        {},
    ),
    "no_split_waits_whole": (
        layout({(W, "WEST"): 5}),
        "C-GOLD",
        [LineRequest(W, 10)],
        {"allow_split": False},
    ),
    "backorder_on_open_po": (po_at_west, "C-GOLD", [LineRequest(G, 3)], {}),
    "backorder_on_transfer_in_transit": (transfer_on_its_way, "C-GOLD", [LineRequest(W, 25)], {}),
    "backorder_on_replenish_date": (layout({}), "C-GOLD", [LineRequest(G, 3)], {}),
    "earlier_line_uses_up_the_po": (small_po, "C-GOLD", [LineRequest(G, 8), LineRequest(G, 5)], {}),
    "backorder_without_a_home_location": (
        customer_without_home,
        "C-WALKIN",
        [LineRequest(G, 3)],
        {},
    ),
    "no_home_location_takes_the_earliest_delivery": (
        walk_in_with_stock_at_both,
        "C-WALKIN",
        [LineRequest(W, 3), LineRequest(W, 4)],
        {"ship_to_region": "east"},
    ),
    "credit_hold": (layout({(W, "WEST"): 50}), "C-SMALL", [LineRequest(W, 11)], {}),
    "credit_hold_needs_no_lane": (
        layout({}),
        "C-SMALL",
        [LineRequest(W, 11)],
        {"ship_to_region": "north"},
    ),
    "discount_beyond_threshold": (
        layout({(W, "WEST"): 10}),
        "C-GOLD",
        [LineRequest(W, 2, unit_price="7.00")],
        {},
    ),
    "discount_given_by_a_role_that_may_approve": (
        layout({(W, "WEST"): 10}),
        "C-GOLD",
        [LineRequest(W, 2, unit_price="7.00")],
        {"actor": ADMIN},
    ),
    "same_sku_lines_take_stock_and_join_the_queue": (
        layout({(W, "WEST"): 5, (W, "EAST"): 4}),
        "C-GOLD",
        [LineRequest(W, 3), LineRequest(W, 3), LineRequest(W, 4), LineRequest(W, 2)],
        {},
    ),
    "backlog_ahead_pushes_ship_dates": (
        queue_ahead,
        "C-GOLD",
        [LineRequest(W, 1), LineRequest(W, 2), LineRequest(W, 3)],
        {},
    ),
    "after_cutoff_on_friday": (
        layout({(W, "WEST"): 5}),
        "C-GOLD",
        [LineRequest(W, 1)],
        {"now": FRIDAY_AFTER_CUTOFF},
    ),
    "shipped_to_another_region": (
        layout({(W, "WEST"): 5, (W, "EAST"): 5}),
        "C-GOLD",
        [LineRequest(W, 2)],
        {"ship_to_region": "east", "channel": "edi"},
    ),
    "quantity_break_and_two_skus": (
        layout({(W, "WEST"): 200, (G, "EAST"): 5}),
        "C-GOLD",
        [LineRequest(W, 100), LineRequest(G, 2), LineRequest(W, 99)],
        {"requested_date": "2026-03-10"},
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_capture_does_what_the_quote_said(world, scenario):
    setup, customer, lines, kwargs = SCENARIOS[scenario]
    setup(world)
    quote_then_capture(world, customer, *lines, **kwargs)


def test_split_remainders_are_numbered_after_the_order_and_name_their_parent(world):
    stock(world, "WIDGET", "WEST", 5)
    stock(world, "WIDGET", "EAST", 3)
    quoted = quote_then_capture(
        world, "C-GOLD", LineRequest("WIDGET", 10), LineRequest("GADGET", 1)
    )
    parts = [(ln.line_no, ln.parent_line_no, ln.location_id, ln.quantity) for ln in quoted.lines]
    assert parts == [
        (1, None, "WEST", 5),
        (2, None, "WEST", 1),
        (3, 1, "EAST", 3),
        (4, 1, "WEST", 2),
    ]
    assert [line.price_source for line in quoted.lines] == [
        "price_list",
        "price_list",
        "split",
        "split",
    ]


def test_earlier_lines_of_the_order_take_stock_and_queue_ahead_of_later_ones(world):
    stock(world, "WIDGET", "WEST", 5)
    stock(world, "WIDGET", "EAST", 4)
    quoted = quote_then_capture(
        world,
        "C-GOLD",
        LineRequest("WIDGET", 3),
        LineRequest("WIDGET", 3),
        LineRequest("WIDGET", 3),
    )
    placed = [
        (ln.line_no, ln.location_id, ln.quantity, ln.state, ln.pick_backlog_lines)
        for ln in quoted.lines
    ]
    assert placed == [
        (1, "WEST", 3, "allocated", 0),
        (2, "EAST", 3, "allocated", 0),
        (3, "WEST", 2, "allocated", 1),
        (4, "EAST", 1, "allocated", 1),
    ]


def test_a_backorder_waits_for_the_po_and_the_next_line_for_a_new_purchase(world):
    small_po(world)
    quoted = quote_then_capture(world, "C-GOLD", LineRequest("GADGET", 8), LineRequest("GADGET", 5))
    first, second = quoted.lines
    assert first.expected_ready_on == D0 + timedelta(days=4)
    # The PO's 10 units cover 8; the 5 wait for SUP1's 10-day lead time.
    assert second.expected_ready_on == D0 + timedelta(days=10)


def test_credit_hold_quotes_every_line_held_without_a_location(world):
    quoted = quote(world, "C-SMALL", LineRequest("WIDGET", 11))
    assert quoted.credit_hold
    assert quoted.order_value == Decimal("110.00") and quoted.credit_limit == Decimal("100")
    (line,) = quoted.lines
    assert (line.state, line.location_id, line.promised_ship_date) == ("credit_hold", None, None)


def test_randomised_orders_are_captured_as_quoted(world):
    rng = random.Random(20260303)
    customers = ["C-GOLD", "C-BRONZE", "C-EAST", "C-SMALL"]
    prices = [None, None, None, "8.50", "7.00", "12"]
    for (sku, location), quantity in {
        ("WIDGET", "WEST"): 120,
        ("WIDGET", "EAST"): 60,
        ("GADGET", "EAST"): 40,
    }.items():
        stock(world, sku, location, quantity)
    now = T0
    for _ in range(40):
        now += timedelta(hours=rng.choice([0, 1, 3, 7, 20]))
        roll = rng.random()
        if roll < 0.4:
            sku, location = rng.choice(["WIDGET", "GADGET"]), rng.choice(["WEST", "EAST"])
            on_hand = balance(world, sku, location).on_hand
            stock(world, sku, location, on_hand + rng.randint(5, 60), at=now)
        elif roll < 0.5:
            place_po(
                world,
                rng.choice(["WIDGET", "GADGET"]),
                rng.randint(5, 30),
                now.date() + timedelta(days=rng.randint(1, 12)),
                location=rng.choice(["WEST", "EAST"]),
            )
        lines = [
            LineRequest(
                rng.choice(["WIDGET", "GADGET"]), rng.randint(1, 15), unit_price=rng.choice(prices)
            )
            for _ in range(rng.randint(1, 5))
        ]
        quote_then_capture(
            world,
            rng.choice(customers),
            *lines,
            now=now,
            actor=rng.choice([SALES, SALES, ADMIN]),
            allow_split=rng.random() < 0.8,
            ship_to_region=rng.choice([None, None, "west", "east"]),
        )


# --- nothing written ----------------------------------------------------------------------------


@contextmanager
def statements(uow: UnitOfWork) -> Iterator[list[str]]:
    """The SQL statements run on the uow's engine while the block runs."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(" ".join(statement.split()).upper())

    event.listen(uow.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(uow.engine, "before_cursor_execute", record)


def busy_world(uow: UnitOfWork) -> list[LineRequest]:
    """Stock, a PO, a queue and an order that takes every path: split, backorder, options."""
    stock(uow, "WIDGET", "WEST", 5)
    stock(uow, "WIDGET", "EAST", 3)
    place_po(uow, "GADGET", 4, D0 + timedelta(days=3))
    capture(uow, "C-BRONZE", LineRequest("WIDGET", 1))
    return [
        LineRequest("WIDGET", 10),
        LineRequest("GADGET", 6, unit_price="20"),
        LineRequest("WIDGET", 1),
    ]


def test_quote_writes_nothing_locks_no_row_and_never_commits(world, monkeypatch):
    lines = busy_world(world)
    before = dump(world)

    def refuse() -> None:
        raise AssertionError("a quote committed")

    monkeypatch.setattr(world, "commit", refuse)
    with statements(world) as seen:
        alone = quote(world, "C-GOLD", *lines)
        with world:  # a read-only flow that holds the unit of work open around the quote
            inside = quote(world, "C-GOLD", *lines)
            assert not (world.session.new or world.session.dirty or world.session.deleted)
    monkeypatch.undo()
    assert alone == inside
    assert {line.state for line in alone.lines} == {"allocated", "backordered"}
    assert dump(world) == before  # every table, the audit trail and the ledger included
    writes = [s for s in seen if s.startswith(("INSERT", "UPDATE", "DELETE")) or "FOR UPDATE" in s]
    assert writes == []


def test_reads_per_order_do_not_grow_with_its_lines(world):
    busy_world(world)
    counts = []
    for size in (2, 10):
        lines = [LineRequest(("WIDGET", "GADGET")[i % 2], 1 + i % 3) for i in range(size)]
        with statements(world) as seen:
            quote(world, "C-GOLD", *lines)
        counts.append(sum(1 for s in seen if s.startswith(("SELECT", "WITH"))))
    assert counts[0] == counts[1] <= 12


# --- bad input ----------------------------------------------------------------------------------


def deactivate(uow: UnitOfWork, sku: str) -> None:
    with uow:
        product = uow.session.get(Product, sku)
        assert product is not None
        product.active = False
        uow.commit()


@pytest.mark.parametrize(
    ("customer", "line", "kwargs", "field", "value", "error"),
    [
        ("C-NOPE", LineRequest("WIDGET", 1), {}, "customer_id", "C-NOPE", NotFound),
        ("C-GOLD", LineRequest("NOPE", 1), {}, "lines[1].sku", "NOPE", NotFound),
        ("C-GOLD", LineRequest("OLD", 1), {}, "lines[1].sku", "OLD", NotFound),
        ("C-GOLD", LineRequest("WIDGET", 0), {}, "lines[1].quantity", "0", InvalidValue),
        ("C-GOLD", LineRequest("WIDGET", -3), {}, "lines[1].quantity", "-3", InvalidValue),
        ("C-GOLD", LineRequest("WIDGET", "2.5"), {}, "lines[1].quantity", "2.5", InvalidValue),  # type: ignore[arg-type]
        (
            "C-GOLD",
            LineRequest("WIDGET", 1, unit_price="abc"),
            {},
            "lines[1].unit_price",
            "abc",
            InvalidValue,
        ),
        (
            "C-GOLD",
            LineRequest("WIDGET", 1, unit_price="0"),
            {},
            "lines[1].unit_price",
            "0",
            InvalidValue,
        ),
        (
            "C-GOLD",
            LineRequest("WIDGET", 1),
            {"ship_to_region": "north"},
            "ship_to_region",
            "north",
            InvalidValue,
        ),
        (
            "C-GOLD",
            LineRequest("WIDGET", 1),
            {"requested_date": "2026-13-01"},
            "requested_date",
            "2026-13-01",
            InvalidValue,
        ),
        (
            "C-GOLD",
            LineRequest("WIDGET", 1),
            {"now": datetime(2026, 3, 3, 9)},
            "now",
            "2026-03-03 09:00:00",
            InvalidValue,
        ),
    ],
)
def test_bad_input_is_refused_as_capture_refuses_it(
    world, customer, line, kwargs, field, value, error
):
    load_master_data(
        world,
        ADMIN,
        MasterData(products=[ProductSpec("OLD", "Old", "hardware", Decimal(1), Decimal(2))]),
        T0,
    )
    deactivate(world, "OLD")
    stock(world, "WIDGET", "WEST", 5)
    before = dump(world)
    with pytest.raises(error) as quoted:
        quote(world, customer, LineRequest("WIDGET", 1), line, **kwargs)
    assert (quoted.value.field, quoted.value.as_dict()["value"]) == (field, value)
    assert dump(world) == before
    with pytest.raises(DomainError) as captured:
        capture(world, customer, LineRequest("WIDGET", 1), line, **kwargs)
    assert quoted.value.as_dict() == captured.value.as_dict()


def test_order_without_lines_is_refused(world):
    with pytest.raises(InvalidValue) as raised:
        quote(world, "C-GOLD")
    assert (raised.value.field, raised.value.value) == ("lines", [])


# --- options ------------------------------------------------------------------------------------


def lane_id(uow: UnitOfWork, origin: str, region: str, service_level: str = "standard") -> int:
    with uow:
        return uow.session.execute(
            select(Lane.id).where(
                Lane.origin_location_id == origin,
                Lane.dest_region == region,
                Lane.service_level == service_level,
            )
        ).scalar_one()


def test_other_location_option_says_what_it_would_promise(world):
    stock(world, "WIDGET", "WEST", 50)
    stock(world, "WIDGET", "EAST", 40)
    (line,) = quote(world, "C-GOLD", LineRequest("WIDGET", 5)).lines
    assert line.location_id == "WEST"
    # EAST -> west by truck is 4 business days: Tuesday 3 March + 4 = Monday 9 March.
    assert line.options.other_locations == (
        LocationOption(
            location_id="EAST",
            lane_id=lane_id(world, "EAST", "west"),
            carrier_id="TRUCK",
            transit_days=4,
            free_now=40,
            ready_on=None,
            promised_ship_date=date(2026, 3, 3),
            promised_delivery_date=date(2026, 3, 9),
        ),
    )


def test_a_backordered_remainder_is_not_offered_the_stock_its_sibling_part_took(world):
    """WEST 5 and EAST 3 of 10: the remainder waits at WEST, and EAST shows 0 free (its 3 went
    to the sibling part), so no action can tell the desk to ship them twice."""
    stock(world, "WIDGET", "WEST", 5)
    stock(world, "WIDGET", "EAST", 3)
    quoted = quote(world, "C-GOLD", LineRequest("WIDGET", 10))
    west, east, remainder = quoted.lines
    assert (east.location_id, east.quantity, remainder.state) == ("EAST", 3, "backordered")
    assert [o.free_now for o in west.options.other_locations] == [3]
    (offered,) = remainder.options.other_locations
    assert (offered.location_id, offered.free_now, offered.from_stock) == ("EAST", 0, False)


def test_other_location_without_stock_promises_from_its_receipt(world):
    stock(world, "WIDGET", "WEST", 50)
    place_po(world, "WIDGET", 20, D0 + timedelta(days=2), location="EAST")
    (line,) = quote(world, "C-GOLD", LineRequest("WIDGET", 5)).lines
    (east,) = line.options.other_locations
    # Received Thursday 5 March, picked Friday 6 March, four business days to the west.
    assert (east.free_now, east.ready_on, east.from_stock) == (0, date(2026, 3, 5), False)
    assert (east.promised_ship_date, east.promised_delivery_date) == (
        date(2026, 3, 6),
        date(2026, 3, 12),
    )


def test_express_option_gives_its_carrier_cost_and_earlier_delivery(world):
    stock(world, "WIDGET", "EAST", 50)
    (line,) = quote(world, "C-GOLD", LineRequest("WIDGET", 5)).lines
    assert (line.location_id, line.promised_delivery_date) == ("EAST", date(2026, 3, 9))
    express = line.options.express
    assert express is not None
    assert (express.carrier_id, express.transit_days, express.cost_per_shipment) == (
        "AIR",
        1,
        Decimal("400"),
    )
    assert express.lane_id == lane_id(world, "EAST", "west", "express")
    assert express.promised_delivery_date == date(2026, 3, 4)


def test_no_express_option_where_no_express_lane_leaves_the_location(world):
    stock(world, "WIDGET", "WEST", 50)
    (line,) = quote(world, "C-GOLD", LineRequest("WIDGET", 5)).lines
    assert line.location_id == "WEST" and line.options.express is None


def with_substitutes(uow: UnitOfWork) -> None:
    hardware = [
        ProductSpec(sku, sku.title(), "hardware", Decimal(1), Decimal(2))
        for sku in ("BOLT", "NUT", "SCREW", "WASHER", "RIVET", "PIN")
    ]
    electronics = [ProductSpec("CHIP", "Chip", "electronics", Decimal(1), Decimal(2))]
    load_master_data(uow, ADMIN, MasterData(products=hardware + electronics), T0)
    for sku, quantity in [
        ("BOLT", 50),
        ("NUT", 20),
        ("SCREW", 10),
        ("WASHER", 8),
        ("RIVET", 3),
        ("CHIP", 100),
    ]:
        stock(uow, sku, "WEST", quantity)
    stock(uow, "PIN", "EAST", 500)


def test_substitutes_are_of_the_same_category_with_enough_free_stock_here(world):
    with_substitutes(world)
    (line,) = quote(world, "C-GOLD", LineRequest("WIDGET", 5)).lines
    assert (line.state, line.location_id) == ("backordered", "WEST")
    # CHIP is electronics, RIVET has too few, PIN is elsewhere, WASHER is the fourth.
    assert [(s.sku, s.free_now) for s in line.options.substitutes] == [
        ("BOLT", 50),
        ("NUT", 20),
        ("SCREW", 10),
    ]


def test_substitute_stock_taken_by_the_same_order_is_not_offered(world):
    with_substitutes(world)
    quoted = quote(world, "C-GOLD", LineRequest("WIDGET", 5), LineRequest("BOLT", 48))
    widget = next(line for line in quoted.lines if line.sku == "WIDGET")
    assert [(s.sku, s.free_now) for s in widget.options.substitutes] == [
        ("NUT", 20),
        ("SCREW", 10),
        ("WASHER", 8),
    ]


def test_held_lines_have_no_options(world):
    stock(world, "WIDGET", "WEST", 50)
    (line,) = quote(world, "C-SMALL", LineRequest("WIDGET", 11)).lines
    assert line.options == QuotedLine.__dataclass_fields__["options"].default


# --- options only for the lines that need them -------------------------------------------------


def no_options(line: QuotedLine) -> QuotedLine:
    return replace(line, options=QuotedLine.__dataclass_fields__["options"].default)


def two_phase(
    uow: UnitOfWork, customer: str, lines: list[LineRequest], pick: Callable[[OrderQuote], set[int]]
) -> tuple[OrderQuote, OrderQuote]:
    """The quote with every line's options, and the two-phase one whose ``options_for`` saw
    the first phase (checked to carry no options and the same decisions)."""
    full = quote(uow, customer, *lines)
    seen: list[OrderQuote] = []

    def options_for(first: OrderQuote) -> set[int]:
        seen.append(first)
        return pick(first)

    partial = quote(uow, customer, *lines, options_for=options_for)
    (first,) = seen
    assert first == replace(full, lines=tuple(no_options(line) for line in full.lines))
    return full, partial


def test_a_remainder_asked_for_alone_is_offered_what_it_was_offered_beside_its_sibling(world):
    """Only the backordered remainder gets options: EAST still shows the 0 free its sibling
    part left, worked out as the stock stood when the remainder was placed."""
    stock(world, "WIDGET", "WEST", 5)
    stock(world, "WIDGET", "EAST", 3)
    full, partial = two_phase(
        world,
        "C-GOLD",
        [LineRequest("WIDGET", 10)],
        lambda q: {line.line_no for line in q.lines if line.state == "backordered"},
    )
    west, east, remainder = partial.lines
    assert remainder == full.lines[2]
    (offered,) = remainder.options.other_locations
    assert (offered.location_id, offered.free_now, offered.from_stock) == ("EAST", 0, False)
    assert [west, east] == [no_options(line) for line in full.lines[:2]]


def test_options_for_some_lines_are_exactly_those_of_the_full_quote(world):
    """Random orders over stock at both locations, receipts and substitutes: the lines picked
    get the full quote's options to the last field, the others none."""
    with_substitutes(world)
    rng = random.Random(6)
    skus = ["WIDGET", "GADGET", "BOLT", "NUT", "SCREW", "WASHER", "RIVET", "PIN"]
    for sku in ("WIDGET", "GADGET"):
        stock(world, sku, "WEST", rng.randint(0, 12))
        stock(world, sku, "EAST", rng.randint(0, 12))
    place_po(world, "WIDGET", 15, D0 + timedelta(days=3), location="EAST")
    place_po(world, "GADGET", 10, D0 + timedelta(days=5))
    picked_any = 0
    for _ in range(30):
        lines = [
            LineRequest(rng.choice(skus), rng.randint(1, 12)) for _ in range(rng.randint(1, 6))
        ]
        share = rng.choice([0.0, 0.3, 0.7, 1.0])
        choice: set[int] = set()

        def pick(first: OrderQuote, share: float = share, choice: set[int] = choice) -> set[int]:
            choice.update(line.line_no for line in first.lines if rng.random() < share)
            return choice

        full, partial = two_phase(world, rng.choice(["C-GOLD", "C-EAST"]), lines, pick)
        assert len(partial.lines) == len(full.lines)
        for whole, part in zip(full.lines, partial.lines, strict=True):
            assert part == (whole if whole.line_no in choice else no_options(whole))
        picked_any += len(choice)
    assert picked_any > 0


def test_no_line_needing_options_reads_no_substitutes(world):
    with_substitutes(world)
    lines = [LineRequest("WIDGET", 5), LineRequest("BOLT", 2)]
    with statements(world) as all_options:
        quote(world, "C-GOLD", *lines)
    with statements(world) as none:
        quoted = quote(world, "C-GOLD", *lines, options_for=lambda _: [])
    assert all(line.options == no_options(line).options for line in quoted.lines)
    assert len(none) == len(all_options) - 1
