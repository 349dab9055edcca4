"""Alembic migration environment of the ERP database (see README.md in this folder)."""
