"""service alerts: carriers' announced disruptions by region

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("carrier_id", sa.String(length=32), nullable=True),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("announced_by", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.CheckConstraint(
            "severity >= 1 AND severity <= 3", name=op.f("ck_service_alerts_severity_range")
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_service_alerts_ends_after_start")),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name=op.f("fk_service_alerts_carrier_id_carriers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_alerts")),
    )
    op.create_index(op.f("ix_service_alerts_region"), "service_alerts", ["region"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_service_alerts_region"), table_name="service_alerts")
    op.drop_table("service_alerts")
