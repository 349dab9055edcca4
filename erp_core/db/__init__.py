"""Persistence: SQLAlchemy 2 typed models, engine and unit of work, Alembic migrations."""
