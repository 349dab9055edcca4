"""Batch cycle counts (``record_cycle_counts``) leave the database exactly as calling
``record_cycle_count`` once per count would: the same counts, ledger, audit trail, lines taken
back or released and exceptions, with the same ids, the same results and the same refusals, on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import DomainError, InvalidValue, NotFound, PermissionDenied
from erp_core.policy import Actor
from erp_core.services.inventory import CountRequest, record_cycle_count, record_cycle_counts
from erp_core.services.orders import LineRequest, capture_order
from tests.conftest import ADMIN, SALES, T0
from tests.erp_core.support import assert_books_balance, dump, one_by_one, same_outcomes


def single(uow: UnitOfWork, actor: Actor = ADMIN):  # type: ignore[no-untyped-def]
    return lambda c: record_cycle_count(
        uow,
        actor,
        sku=c.sku,
        location_id=c.location_id,
        counted_quantity=c.counted_quantity,
        now=c.now,
        reason=c.reason,
    )


def with_orders(uow: UnitOfWork) -> None:
    """WIDGET at WEST mostly reserved, GADGET at WEST short (a backorder waits)."""
    for customer, sku, quantity, minute in (
        ("C-GOLD", "WIDGET", 60, 0),
        ("C-BRONZE", "GADGET", 45, 1),
    ):
        capture_order(
            uow,
            SALES,
            customer_id=customer,
            lines=[LineRequest(sku, quantity)],
            now=T0 + timedelta(minutes=minute),
            allow_split=False,
        )


def counts() -> list[CountRequest]:
    at = T0 + timedelta(hours=2)
    return [
        CountRequest("WIDGET", "WEST", 40, at),  # below what is reserved: a line goes back
        CountRequest("GADGET", "WEST", 80, at),  # above: the waiting backorder is released
        CountRequest("NOPE", "WEST", 3, at),
        CountRequest("WIDGET", "NOWHERE", -1, at),
        CountRequest("GADGET", "EAST", 5, at),  # no balance row yet
        CountRequest("WIDGET", "EAST", 38, at, reason="recount"),
    ]


def test_counting_a_batch_writes_what_counting_one_by_one_writes(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins
    for uow in twins:
        with_orders(uow)

    singles = one_by_one(single(loop), counts())
    batched = record_cycle_counts(batch, ADMIN, counts=counts())

    same_outcomes(singles, batched)
    assert len({(c.sku, c.location_id) for c in counts()}) == len(counts())  # the batch path
    assert [type(o) for o in batched if isinstance(o, DomainError)] == [NotFound, InvalidValue]
    recorded = [o for o in batched if not isinstance(o, DomainError)]
    assert recorded[0].deallocated_line_ids and recorded[1].released_line_ids
    assert dump(batch) == dump(loop)
    assert_books_balance(batch)


def test_a_batch_counting_one_place_twice_is_recorded_count_by_count(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins
    at = T0 + timedelta(hours=1)
    twice = [CountRequest("WIDGET", "WEST", 90, at), CountRequest("WIDGET", "WEST", 95, at)]

    singles = one_by_one(single(loop), twice)
    batched = record_cycle_counts(batch, ADMIN, counts=twice)

    same_outcomes(singles, batched)
    assert [o.adjustment for o in batched if not isinstance(o, DomainError)] == [-10, 5]
    assert dump(batch) == dump(loop)


def test_a_batch_by_a_role_without_the_permission_refuses_every_count(
    twins: tuple[UnitOfWork, UnitOfWork],
) -> None:
    loop, batch = twins

    singles = one_by_one(single(loop, SALES), counts())
    batched = record_cycle_counts(batch, SALES, counts=counts())

    same_outcomes(singles, batched)
    refused = [type(o) for o in batched]
    assert refused == [PermissionDenied] * 3 + [InvalidValue] + [PermissionDenied] * 2
    assert dump(batch) == dump(loop)
