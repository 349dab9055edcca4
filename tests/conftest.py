"""Shared fixtures: a real database per test (SQLite file always; PostgreSQL in its own schema
when ERPX_TEST_POSTGRES_URL is set) and a small, fully known distributor world."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path

# pytest-xdist starts each worker with COLUMNS=80, and rich's console (erp_core.cli, built at
# import) would freeze that width, wrapping the CLI tests' tables; a test asks for the width it
# means through CliRunner's env instead.
os.environ.pop("COLUMNS", None)

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
SHARED_WORLDS = (
    "tests/training/",
    "tests/features/",
    "tests/erp_core/simulate/",
    "tests/notebooks/",
)
"""Folders whose files share a session-scoped simulated world: `make test` runs each folder on
one xdist worker (``--dist loadgroup``) so the world is built once, not once per worker; every
other file is a group of its own."""
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put each test in its xdist group (see SHARED_WORLDS); without xdist the mark is inert."""
    root = config.rootpath
    for item in items:
        path = item.path.relative_to(root).as_posix()
        group = next((folder for folder in SHARED_WORLDS if path.startswith(folder)), path)
        item.add_marker(pytest.mark.xdist_group(group))


_MLFLOW_TEMPLATE: list[Path] = []


def mlflow_store(folder: Path) -> str:
    """The tracking URI of a new, empty MLflow SQLite store at ``folder/mlflow.db``.

    MLflow migrates a new SQLite store through its whole Alembic history on first use (3-6 s on
    a busy 2-core machine), and dozens of tests each want a store of their own; so the store is
    migrated once per test process and copied. The copy is a real store of the installed MLflow,
    empty but for the default experiment, which erpx never uses (each model has its own
    experiment with its artifacts under the settings' artifact root)."""
    if not _MLFLOW_TEMPLATE:
        from mlflow import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="erpx-mlflow-template-")) / "mlflow.db"
        uri = f"sqlite:///{template}"
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
        _MLFLOW_TEMPLATE.append(template)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MLFLOW_TEMPLATE[0], folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


SCMS_FILE = "SCMS_Delivery_History_Dataset.csv"


def scms_file() -> Path:
    """The real USAID SCMS delivery history: ERPX_SCMS_PATH, else the project's shared datasets
    folder beside the checkout; the calling test is skipped, saying how to point at it, when the
    file is not on this machine."""
    repo = Path(__file__).resolve().parents[1]
    candidates = (
        os.environ.get("ERPX_SCMS_PATH", ""),
        str(repo.parent / "shared" / "datasets" / "scms" / SCMS_FILE),
        f"/work/shared/datasets/scms/{SCMS_FILE}",
    )
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.skip(f"the SCMS file is not here: set ERPX_SCMS_PATH to {SCMS_FILE}")


@pytest.fixture(scope="session")
def scms_path() -> Path:
    return scms_file()
