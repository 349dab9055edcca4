"""Shared fixtures: a real database per test (SQLite file always; PostgreSQL in its own schema
when ERPX_TEST_POSTGRES_URL is set) and a small, fully known distributor world."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from erp_core.db.engine import make_engine, make_session_factory, normalise_url
from erp_core.db.models import Base
from erp_core.db.uow import UnitOfWork
from erp_core.policy import Actor, load_policy
from erp_core.services.inventory import record_cycle_count
from erp_core.services.master_data import (
    CarrierSpec,
    CustomerSpec,
    LaneSpec,
    LocationSpec,
    MasterData,
    PriceSpec,
    ProductSpec,
    SupplierSpec,
    load_master_data,
)

POSTGRES_ENV = "ERPX_TEST_POSTGRES_URL"
ADMIN = Actor("admin-1", "admin")
SALES = Actor("rep-1", "sales_rep")
LOGISTICS = Actor("log-1", "logistics")
PLANNER = Actor("plan-1", "planner")
FINANCE = Actor("fin-1", "finance")
SERVICE = Actor("cs-1", "customer_service")

# Tuesday 2026-03-03, 09:00 UTC: before the 15:00 cut-off of both locations.
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def postgres_url_or_skip() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL tests skipped")
    return url


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, private PostgreSQL schema."""
    base = normalise_url(postgres_url_or_skip())
    schema = f"erpx_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'erpx.db'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'erpx.db'}"


def make_uow(url: str) -> UnitOfWork:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    return UnitOfWork(make_session_factory(engine), load_policy())


@pytest.fixture
def uow(db_url: str) -> Iterator[UnitOfWork]:
    unit = make_uow(db_url)
    yield unit
    unit.engine.dispose()


@pytest.fixture
def sqlite_uow(sqlite_url: str) -> Iterator[UnitOfWork]:
    unit = make_uow(sqlite_url)
    yield unit
    unit.engine.dispose()


def small_world() -> MasterData:
    """Two warehouses (WEST, EAST), two SKUs, four customers; every number chosen by hand."""
    return MasterData(
        suppliers=[SupplierSpec("SUP1", "Acme Supply", 10)],
        locations=[
            LocationSpec(
                "WEST", "West DC", "west", pick_capacity_per_day=2, cutoff_time=time(15, 0)
            ),
            LocationSpec(
                "EAST", "East DC", "east", pick_capacity_per_day=2, cutoff_time=time(15, 0)
            ),
        ],
        products=[
            ProductSpec(
                "WIDGET",
                "Widget",
                "hardware",
                Decimal("5.00"),
                Decimal("10.00"),
                Decimal("2.0"),
                preferred_supplier_id="SUP1",
                abc_class="A",
            ),
            ProductSpec(
                "GADGET",
                "Gadget",
                "electronics",
                Decimal("20.00"),
                Decimal("40.00"),
                Decimal("1.5"),
                preferred_supplier_id="SUP1",
                abc_class="B",
            ),
        ],
        customers=[
            CustomerSpec(
                "C-GOLD",
                "Gold Co",
                "gold",
                Decimal("100000"),
                "key_account",
                "west",
                Decimal("0.98"),
                home_location_id="WEST",
            ),
            CustomerSpec(
                "C-BRONZE",
                "Bronze Co",
                "bronze",
                Decimal("100000"),
                "e_commerce",
                "west",
                Decimal("0.90"),
                home_location_id="WEST",
            ),
            CustomerSpec(
                "C-EAST",
                "East Co",
                "silver",
                Decimal("100000"),
                "field_sales",
                "east",
                Decimal("0.95"),
                home_location_id="EAST",
            ),
            CustomerSpec(
                "C-SMALL",
                "Small Co",
                "bronze",
                Decimal("100"),
                "edi",
                "west",
                Decimal("0.90"),
                home_location_id="WEST",
            ),
        ],
        carriers=[CarrierSpec("TRUCK", "Truck Co"), CarrierSpec("AIR", "Air Co")],
        lanes=[
            LaneSpec("TRUCK", "WEST", "west", 1, Decimal("50")),
            LaneSpec("TRUCK", "WEST", "east", 4, Decimal("120")),
            LaneSpec("TRUCK", "EAST", "east", 1, Decimal("50")),
            LaneSpec("TRUCK", "EAST", "west", 4, Decimal("120")),
            LaneSpec("AIR", "WEST", "east", 1, Decimal("400"), service_level="express"),
            LaneSpec("AIR", "EAST", "west", 1, Decimal("400"), service_level="express"),
        ],
        prices=[
            PriceSpec("gold", "WIDGET", Decimal("9.00")),
            PriceSpec("gold", "WIDGET", Decimal("8.00"), min_quantity=100),
            PriceSpec("bronze", "WIDGET", Decimal("10.00")),
            PriceSpec("silver", "WIDGET", Decimal("9.50")),
        ],
    )


def stock(uow: UnitOfWork, sku: str, location: str, quantity: int, at: datetime = T0) -> None:
    """Set the on-hand quantity by a cycle count (the governed way stock appears from nowhere)."""
    record_cycle_count(
        uow,
        ADMIN,
        sku=sku,
        location_id=location,
        counted_quantity=quantity,
        now=at,
        reason="opening balance",
    )


@pytest.fixture
def world(uow: UnitOfWork) -> UnitOfWork:
    load_master_data(uow, ADMIN, small_world(), T0)
    return uow


@pytest.fixture
def sqlite_world(sqlite_uow: UnitOfWork) -> UnitOfWork:
    load_master_data(sqlite_uow, ADMIN, small_world(), T0)
    return sqlite_uow
