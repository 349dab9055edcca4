"""Helpers the erp_core service tests share: read a balance, count rows, fetch a row, and check
the books with the production integrity checks."""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

from sqlalchemy import func, select

from erp_core.db.models import InventoryBalance, OrderLine
from erp_core.db.uow import UnitOfWork
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
