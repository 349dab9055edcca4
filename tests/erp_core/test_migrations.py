"""The migrations build exactly the schema the models declare, on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, inspect, text

from erp_core.db import migrate
from erp_core.db.engine import make_engine
from erp_core.db.migrate import MIGRATIONS_DIR, current_revision, head_revision, upgrade_to_head
from erp_core.db.models import Base

# ``db_url`` (tests/conftest.py) is an empty SQLite file, then, when ERPX_TEST_POSTGRES_URL is
# set, a fresh PostgreSQL schema reached through ``?options=-csearch_path=...`` and dropped after.


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


def test_upgrade_to_head_builds_exactly_the_models(db_url: str) -> None:
    assert current_revision(db_url) is None

    upgrade_to_head(db_url)

    assert current_revision(db_url) == head_revision()
    assert schema_differences(db_url) == []
    # Autogenerate does not compare CHECK constraints, so look for each one by name.
    assert declared_check_constraints() <= reflected_check_constraints(db_url)


def test_upgrading_twice_changes_nothing(db_url: str) -> None:
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO suppliers (id, name, nominal_lead_days) VALUES ('S1', 'Acme', 7)")
            )

        upgrade_to_head(db_url)

        with engine.connect() as connection:
            names = connection.execute(text("SELECT name FROM suppliers")).scalars().all()
    finally:
        engine.dispose()
    assert names == ["Acme"]
    assert current_revision(db_url) == head_revision()
    assert schema_differences(db_url) == []


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


REBUILD_SUPPLIERS = """
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = {head!r}


def upgrade() -> None:
    with op.batch_alter_table("suppliers", recreate="always") as batch_op:
        batch_op.add_column(sa.Column("note", sa.String(20), nullable=True))
"""


def test_a_sqlite_batch_migration_can_rebuild_a_table_other_rows_reference(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite alters by rebuilding; with foreign keys on, dropping the old table would fail."""
    upgrade_to_head(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO suppliers VALUES ('S1', 'Acme', 7)"))
            connection.execute(
                text(
                    "INSERT INTO products (sku, name, category, unit_cost, list_price, weight_kg,"
                    " pack_size, uom, preferred_supplier_id, abc_class, active)"
                    " VALUES ('P1', 'Widget', 'hw', 1, 2, 1, 1, 'EA', 'S1', 'A', 1)"
                )
            )
        migrations = tmp_path / "migrations"
        shutil.copytree(MIGRATIONS_DIR, migrations)
        (migrations / "versions" / "9999_rebuild.py").write_text(
            REBUILD_SUPPLIERS.format(head=head_revision()), "utf-8"
        )
        monkeypatch.setattr(migrate, "MIGRATIONS_DIR", migrations)

        upgrade_to_head(sqlite_url)

        assert current_revision(sqlite_url) == "9999"
        with engine.connect() as connection:
            supplier = connection.execute(
                text(
                    "SELECT p.preferred_supplier_id, s.note FROM products p JOIN suppliers s"
                    " ON s.id = p.preferred_supplier_id"
                )
            ).one()
            assert tuple(supplier) == ("S1", None)
    finally:
        engine.dispose()
