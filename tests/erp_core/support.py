"""Helpers the erp_core service tests share: read a balance, count rows, fetch a row, check
the books with the production integrity checks, and compare a batch with a loop of single acts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import func, select

from erp_core.db.models import Base, InventoryBalance, OrderLine
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import DomainError
from erp_core.services.integrity import all_violations

T = TypeVar("T")


class Balance(NamedTuple):
    """One balance row's buckets; compares equal to a plain (on hand, reserved, on order) tuple."""

    on_hand: int
    reserved: int
    on_order: int


def balance(uow: UnitOfWork, sku: str = "WIDGET", location: str = "WEST") -> Balance:
    """(on hand, reserved, on order) of a SKU at a location; all zero where there is no row."""
    with uow:
        row = uow.session.get(InventoryBalance, (sku, location))
        return Balance(row.on_hand, row.reserved, row.on_order) if row else Balance(0, 0, 0)


def count(uow: UnitOfWork, model: Any, *where: Any) -> int:
    """Rows of a model, optionally only those matching the where clauses."""
    with uow:
        return int(
            uow.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
        )


def row(uow: UnitOfWork, model: type[T], key: Any) -> T:
    """The row of a model with this primary key; fails the test where there is none."""
    with uow:
        found = uow.session.get(model, key)
        assert found is not None, (model.__name__, key)
        return found


def line_row(uow: UnitOfWork, line_id: int) -> OrderLine:
    return row(uow, OrderLine, line_id)


def assert_books_balance(uow: UnitOfWork) -> None:
    """The production integrity checks find nothing: ledger equals balances, no oversell,
    reservations match their lines, on order matches open POs and transfers in transit, and
    every line change is audited."""
    with uow:
        assert all_violations(uow.session) == []


def dump(uow: UnitOfWork) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary key order."""
    with uow:
        return {
            table.name: [
                tuple(row)
                for row in uow.session.execute(
                    select(table).order_by(*table.primary_key.columns)
                ).all()
            ]
            for table in Base.metadata.sorted_tables
        }


def one_by_one(act: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """The single act per item, each in its own transaction; a refusal is kept, not raised."""
    outcomes: list[Any] = []
    for item in items:
        try:
            outcomes.append(act(item))
        except DomainError as refused:
            outcomes.append(refused)
    return outcomes


def same_outcomes(loop: list[Any], batch: list[Any]) -> None:
    assert len(loop) == len(batch)
    for single, batched in zip(loop, batch, strict=True):
        if isinstance(single, DomainError):
            assert type(batched) is type(single)
            assert batched.as_dict() == single.as_dict()
        else:
            assert batched == single
