"""The migrations build exactly the schema the models declare, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, inspect, make_url, text

from erp_core.db.engine import make_engine
from erp_core.db.migrate import MIGRATIONS_DIR, current_revision, head_revision, upgrade_to_head
from erp_core.db.models import Base

POSTGRES_URL = os.environ.get("ERPX_TEST_POSTGRES_URL")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'erpx.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema of its own on the test server, reached through the search path."""
    if not POSTGRES_URL:
        pytest.skip("ERPX_TEST_POSTGRES_URL is not set: PostgreSQL migration tests skipped")
    schema = f"erpx_migrations_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


def schema_differences(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def reflected_check_constraints(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        inspector = inspect(engine)
        return {
            str(check["name"])
            for table in inspector.get_table_names()
            for check in inspector.get_check_constraints(table)
        }
    finally:
        engine.dispose()


def declared_check_constraints() -> set[str]:
    return {
        str(constraint.name)
        for table in Base.metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }


def test_upgrade_to_head_builds_exactly_the_models(empty_database_url: str) -> None:
    assert current_revision(empty_database_url) is None

    upgrade_to_head(empty_database_url)

    assert current_revision(empty_database_url) == head_revision()
    assert schema_differences(empty_database_url) == []
    # Autogenerate does not compare CHECK constraints, so look for each one by name.
    assert declared_check_constraints() <= reflected_check_constraints(empty_database_url)


def test_upgrading_twice_changes_nothing(empty_database_url: str) -> None:
    upgrade_to_head(empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO suppliers (id, name, nominal_lead_days) VALUES ('S1', 'Acme', 7)")
            )

        upgrade_to_head(empty_database_url)

        with engine.connect() as connection:
            names = connection.execute(text("SELECT name FROM suppliers")).scalars().all()
    finally:
        engine.dispose()
    assert names == ["Acme"]
    assert current_revision(empty_database_url) == head_revision()
    assert schema_differences(empty_database_url) == []


def test_current_revision_of_a_missing_sqlite_file_is_none_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "absent" / "erpx.db"
    assert current_revision(f"sqlite:///{path}") is None
    assert not path.exists()


def test_revisions_do_not_import_erpx() -> None:
    """A revision must keep working when the models it was generated from have changed."""
    for revision in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"):
        source = revision.read_text("utf-8")
        assert "erp_core" not in source, revision.name
        assert "UtcDateTime" not in source, revision.name
