"""Alembic revisions, applied in order by ``erp_core.db.migrate.upgrade_to_head``."""
