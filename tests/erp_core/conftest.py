"""Fixtures of the erp_core service tests beyond the shared world of ``tests/conftest.py``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from erp_core.db.engine import normalise_url
from erp_core.db.uow import UnitOfWork
from erp_core.services.master_data import load_master_data
from tests.conftest import ADMIN, T0, make_uow, postgres_url_or_skip, small_world, stock


@contextmanager
def _postgres_schemas(count: int) -> Iterator[list[str]]:
    base = normalise_url(postgres_url_or_skip())
    admin = create_engine(base)
    schemas = [f"erpx_test_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    with admin.begin() as conn:
        for schema in schemas:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield [
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
            for schema in schemas
        ]
    finally:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def twins(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[UnitOfWork, UnitOfWork]]:
    """Two databases holding the same world, stock and orders: one for the loop of single acts,
    one for the batch."""

    @contextmanager
    def urls() -> Iterator[list[str]]:
        if request.param == "sqlite":
            yield [f"sqlite:///{tmp_path / name}.db" for name in ("loop", "batch")]
        else:
            with _postgres_schemas(2) as found:
                yield found

    with urls() as (loop_url, batch_url):
        pair = (make_uow(loop_url), make_uow(batch_url))
        for uow in pair:
            load_master_data(uow, ADMIN, small_world(), T0)
            stock(uow, "WIDGET", "WEST", 100)
            stock(uow, "GADGET", "WEST", 30)
            stock(uow, "WIDGET", "EAST", 40)
        try:
            yield pair
        finally:
            for uow in pair:
                uow.engine.dispose()
