"""Engine and session factory for SQLite (default) and PostgreSQL.

SQLite serialises writers: every unit of work starts with ``BEGIN IMMEDIATE`` so two reservations
can never read the same balance and both write; PostgreSQL uses ``SELECT ... FOR UPDATE`` on the
balance rows instead (see ``erp_core.services.stock``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 30
SQLITE_CACHE_KIB = 64 * 1024
"""Page cache per connection, in KiB (allocated as pages are read, not up front)."""


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (the ``postgres`` extra), not psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


READ_ONLY_OPTION = "erpx_read_only"
"""Connection execution option of a unit of work that only reads (``UnitOfWork(read_only=...)``)."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, **kwargs)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_engine(url: str, database: str | None, **kwargs: Any) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # How long a writer waits for the lock: the URL's ?timeout= (seconds, pysqlite's own URL
    # parameter), else SQLITE_BUSY_TIMEOUT_S.
    given = make_url(url).query.get("timeout")
    timeout = float(given) if isinstance(given, str) else SQLITE_BUSY_TIMEOUT_S
    engine = create_engine(
        url,
        connect_args={"timeout": timeout, "check_same_thread": False},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={round(timeout * 1000)}")
        if database and database != ":memory:":
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        # A page cache that holds the hot part of a year of history (SQLite's default is 2 MiB),
        # and sorts / GROUP BY temporaries in memory rather than in temporary files.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A writer takes the write lock at BEGIN, so it never fails half-way on a lock upgrade;
        # a unit of work that only reads begins deferred and reads beside the writer (WAL).
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
