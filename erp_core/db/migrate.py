"""Alembic migrations, run from code: the configuration is built here, no ``alembic.ini`` needed.

``upgrade_to_head`` runs every pending revision in one transaction on a connection made by
``erp_core.db.engine.make_engine``, so SQLite gets its pragmas and ``BEGIN IMMEDIATE`` and
PostgreSQL rolls back a failed upgrade whole. ``python -m erp_core.db.migrate regenerate``
rewrites the initial revision from the current models (see ``migrations/README.md``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, make_url

from erp_core.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
INITIAL_REVISION = "0001"


def alembic_config(url: str | None = None) -> Config:
    """An alembic ``Config`` pointing at the migrations shipped inside ``erp_core``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%': URLs with escapes (?options=-csearch_path%3D...) need %%.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision shipped with this version of erpx."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade_to_head(url: str) -> None:
    """Create or bring the database at ``url`` up to the newest revision, in one transaction."""
    with _migration_connection(url) as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None if it was never initialised.

    A SQLite file that does not exist is reported as None without being created.
    """
    if _is_missing_sqlite_file(url):
        return None
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _is_missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database
    return bool(database) and database != ":memory:" and not Path(str(database)).exists()


@contextmanager
def _migration_connection(url: str) -> Iterator[Connection]:
    """A connection inside one transaction, committed only if every revision applied.

    On SQLite, foreign keys are switched off for the duration (before the transaction starts,
    as SQLite ignores the pragma inside one) so batch migrations can rebuild referenced tables,
    and ``PRAGMA foreign_key_check`` must come back clean before the commit.
    """
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                _sqlite_foreign_keys(connection, enabled=False)
            try:
                with connection.begin():
                    yield connection
                    if sqlite:
                        _check_sqlite_foreign_keys(connection)
            finally:
                if sqlite:
                    _sqlite_foreign_keys(connection, enabled=True)
    finally:
        engine.dispose()


def _sqlite_foreign_keys(connection: Connection, *, enabled: bool) -> None:
    # Straight to the driver: going through SQLAlchemy would autobegin a transaction first.
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(f"PRAGMA foreign_keys={'ON' if enabled else 'OFF'}")


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise RuntimeError(f"migration left foreign key violations: {violations[:5]}")


def regenerate_initial() -> Path:
    """Rewrite ``versions/0001_initial.py`` by autogenerating against an empty SQLite file.

    Only right while there are no deployments: afterwards, add new revisions instead.
    """
    versions = MIGRATIONS_DIR / "versions"
    for old in versions.glob(f"{INITIAL_REVISION}_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'empty.db'}"
        with _migration_connection(url) as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            config.attributes["render_as_batch"] = False
            command.revision(config, message="initial", autogenerate=True, rev_id=INITIAL_REVISION)
    (path,) = versions.glob(f"{INITIAL_REVISION}_*.py")
    lines = path.read_text("utf-8").splitlines(keepends=True)
    path.write_text("".join(line for line in lines if "# ###" not in line), "utf-8")
    for ruff_args in (["format", "--quiet"], ["check", "--fix", "--quiet"]):
        subprocess.run([sys.executable, "-m", "ruff", *ruff_args, str(path)], check=True)
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["regenerate"]:
        sys.exit("usage: python -m erp_core.db.migrate regenerate")
    print(f"wrote {regenerate_initial()}")
