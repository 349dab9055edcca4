"""Random sequences of business acts, with the books checked after every step.

Hypothesis drives a whole small distributor through the real services on a real SQLite file:
orders, cancellations, counts, picks and milestones, purchase orders and receipts, transfers and
returns. After each act (accepted or refused with a domain error) on hand must equal the ledger
sum, reserved must never exceed on hand, no reservation may exist without a line holding it, and
every line state change must have its audit entry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import timedelta

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select

from erp_core.db.models import OrderLine, PurchaseOrderLine, ReturnOrder, Shipment, Transfer
from erp_core.domain.errors import DomainError
from erp_core.services import fulfilment, purchasing, returns, transfers
from erp_core.services.inventory import record_cycle_count
from erp_core.services.master_data import load_master_data
from erp_core.services.order_changes import cancel_order_lines, release_credit_hold
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import (
    ADMIN,
    FINANCE,
    LOGISTICS,
    PLANNER,
    SALES,
    SERVICE,
    T0,
    make_uow,
    small_world,
)
from tests.erp_core.support import assert_books_balance

SKUS = ("WIDGET", "GADGET")
LOCATIONS = ("WEST", "EAST")
CUSTOMERS = ("C-GOLD", "C-BRONZE", "C-EAST", "C-SMALL")
pick_index = st.integers(min_value=0, max_value=10_000)


class DistributorDay(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="erpx-prop-")
        self.uow = make_uow(f"sqlite:///{self.folder}/erpx.db")
        load_master_data(self.uow, ADMIN, small_world(), T0)
        self.now = T0

    def teardown(self) -> None:
        self.uow.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    def tick(self, minutes: int = 37) -> None:
        self.now += timedelta(minutes=minutes)

    def attempt(self, act, *args, **kwargs) -> object | None:
        """Run a business act; a refusal (domain error) is a legal outcome of a random act."""
        self.tick()
        try:
            outcome = act(self.uow, *args, now=self.now, **kwargs)
        except DomainError as refused:
            event(f"{act.__name__}: refused ({refused.code})")
            return None
        event(f"{act.__name__}: done")
        return outcome

    def ids(self, query) -> list[int]:
        with self.uow:
            return list(self.uow.session.execute(query).scalars())

    def choose(self, query, index: int) -> int | None:
        found = self.ids(query)
        return found[index % len(found)] if found else None

    def lines_in(self, *states: str):
        return select(OrderLine.id).where(OrderLine.state.in_(states)).order_by(OrderLine.id)

    @initialize(
        opening=st.lists(st.integers(0, 20), min_size=4, max_size=4),
        orders=st.lists(
            st.tuples(st.sampled_from(CUSTOMERS), st.sampled_from(SKUS), st.integers(1, 12)),
            max_size=6,
        ),
    )
    def open_the_books(self, opening: list[int], orders: list[tuple[str, str, int]]) -> None:
        """Opening stock and a morning of orders, so later acts find something to act on."""
        places = [(sku, loc) for sku in SKUS for loc in LOCATIONS]
        for (sku, location), quantity in zip(places, opening, strict=True):
            self.attempt(
                record_cycle_count,
                LOGISTICS,
                sku=sku,
                location_id=location,
                counted_quantity=quantity,
            )
        for customer, sku, quantity in orders:
            self.capture(customer, sku, quantity, split=True)

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        sku=st.sampled_from(SKUS),
        quantity=st.integers(1, 12),
        split=st.booleans(),
    )
    def capture(self, customer: str, sku: str, quantity: int, split: bool) -> None:
        self.attempt(
            capture_order,
            SALES,
            customer_id=customer,
            lines=[LineRequest(sku, quantity)],
            allow_split=split,
        )

    @rule(index=pick_index)
    def cancel(self, index: int) -> None:
        line_id = self.choose(self.lines_in("allocated", "backordered", "credit_hold"), index)
        if line_id is not None:
            with self.uow:
                order_id = self.uow.session.get(OrderLine, line_id).order_id
            self.attempt(cancel_order_lines, SERVICE, order_id=order_id, line_ids=[line_id])

    @rule(index=pick_index)
    def release_hold(self, index: int) -> None:
        line_id = self.choose(self.lines_in("credit_hold"), index)
        if line_id is not None:
            with self.uow:
                order_id = self.uow.session.get(OrderLine, line_id).order_id
            self.attempt(release_credit_hold, FINANCE, order_id=order_id)

    @rule(
        sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS), counted=st.integers(0, 30)
    )
    def count(self, sku: str, location: str, counted: int) -> None:
        self.attempt(
            record_cycle_count, LOGISTICS, sku=sku, location_id=location, counted_quantity=counted
        )

    @rule(index=pick_index, short=st.integers(0, 3))
    def pick(self, index: int, short: int) -> None:
        line_id = self.choose(self.lines_in("allocated"), index)
        if line_id is None:
            return
        with self.uow:
            line = self.uow.session.get(OrderLine, line_id)
            order_id, quantity = line.order_id, line.quantity
        picked = max(1, quantity - short)
        self.attempt(fulfilment.pick, LOGISTICS, order_id=order_id, picks={line_id: picked})

    @rule(index=pick_index, event=st.sampled_from(["packed", "shipped", "delivered"]))
    def milestone(self, index: int, event: str) -> None:
        shipment_id = self.choose(select(Shipment.id).order_by(Shipment.id), index)
        if shipment_id is not None:
            self.attempt(
                fulfilment.record_shipment_event,
                LOGISTICS,
                shipment_id=shipment_id,
                event_type=event,
                occurred_at=self.now,
            )

    @rule(
        sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS), quantity=st.integers(1, 25)
    )
    def purchase(self, sku: str, location: str, quantity: int) -> None:
        self.attempt(
            purchasing.place_purchase_order,
            PLANNER,
            supplier_id="SUP1",
            location_id=location,
            lines=[purchasing.PurchaseLineRequest(sku=sku, quantity=quantity)],
        )

    @rule(index=pick_index, part=st.integers(1, 25))
    def receive(self, index: int, part: int) -> None:
        po_line_id = self.choose(
            select(PurchaseOrderLine.id)
            .where(PurchaseOrderLine.received_quantity < PurchaseOrderLine.quantity)
            .order_by(PurchaseOrderLine.id),
            index,
        )
        if po_line_id is not None:
            self.attempt(
                purchasing.receive_purchase_order_line,
                LOGISTICS,
                purchase_order_line_id=po_line_id,
                quantity=part,
            )

    @rule(sku=st.sampled_from(SKUS), west_to_east=st.booleans(), quantity=st.integers(1, 8))
    def send_transfer(self, sku: str, west_to_east: bool, quantity: int) -> None:
        source, target = LOCATIONS if west_to_east else LOCATIONS[::-1]
        self.attempt(
            transfers.send_transfer,
            PLANNER,
            sku=sku,
            from_location_id=source,
            to_location_id=target,
            quantity=quantity,
        )

    @rule(index=pick_index)
    def receive_transfer(self, index: int) -> None:
        transfer_id = self.choose(
            select(Transfer.id).where(Transfer.status == "in_transit").order_by(Transfer.id), index
        )
        if transfer_id is not None:
            self.attempt(transfers.receive_transfer, LOGISTICS, transfer_id=transfer_id)

    @rule(index=pick_index, restock=st.booleans())
    def customer_return(self, index: int, restock: bool) -> None:
        line_id = self.choose(self.lines_in("delivered"), index)
        if line_id is None:
            return
        return_id = self.attempt(
            returns.authorise_return, SERVICE, line_id=line_id, quantity=1, reason="damaged"
        )
        if return_id is None:
            return
        self.attempt(returns.receive_return, LOGISTICS, return_id=return_id)
        self.attempt(
            returns.dispose_return,
            LOGISTICS,
            return_id=return_id,
            disposition="restock" if restock else "scrap",
        )
        with self.uow:
            assert self.uow.session.get(ReturnOrder, return_id).status in ("restocked", "scrapped")

    @invariant()
    def books_balance(self) -> None:
        assert_books_balance(self.uow)


DistributorDay.TestCase.settings = settings(
    max_examples=int(os.environ.get("ERPX_PROPERTY_EXAMPLES", "20")),
    stateful_step_count=40,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow],
)
TestDistributorDayKeepsItsBooks = DistributorDay.TestCase
