"""Alembic environment: erpx's models, erpx's engine, one transaction per upgrade.

Normally driven by ``erp_core.db.migrate``, which opens the connection itself and passes it in
``config.attributes["connection"]`` already inside a transaction (on SQLite that is the engine's
``BEGIN IMMEDIATE``), so alembic neither begins nor commits. Without one (the ``alembic`` command
line, see README.md) an engine is made from ``sqlalchemy.url`` or ``ERPX_DATABASE_URL``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection, make_url

from erp_core.db.engine import make_engine
from erp_core.db.models import Base
from erp_core.db.types import UtcDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render erpx's column types as plain SQLAlchemy so revisions never import erpx."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _options(dialect_name: str) -> dict[str, Any]:
    # Batch mode lets ALTERs work on SQLite; the initial revision only creates, so it opts out.
    render_as_batch = config.attributes.get("render_as_batch", dialect_name == "sqlite")
    return {
        "target_metadata": target_metadata,
        "render_item": render_item,
        "render_as_batch": render_as_batch,
        "compare_type": True,
        "compare_server_default": True,
    }


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from erp_core.settings import get_settings

    return get_settings().database_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection, connection.begin():
            _run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
