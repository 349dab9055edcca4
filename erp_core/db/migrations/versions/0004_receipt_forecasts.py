"""receipt forecasts: the P50/P80/P90 receipt dates of open purchase-order lines

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "po_line_receipt_forecasts",
        sa.Column("po_line_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("p50_date", sa.Date(), nullable=False),
        sa.Column("p80_date", sa.Date(), nullable=False),
        sa.Column("p90_date", sa.Date(), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "p50_date <= p80_date AND p80_date <= p90_date",
            name=op.f("ck_po_line_receipt_forecasts_ordered"),
        ),
        sa.ForeignKeyConstraint(
            ["po_line_id"],
            ["purchase_order_lines.id"],
            name=op.f("fk_po_line_receipt_forecasts_po_line_id_purchase_order_lines"),
        ),
        sa.PrimaryKeyConstraint("po_line_id", name=op.f("pk_po_line_receipt_forecasts")),
    )


def downgrade() -> None:
    op.drop_table("po_line_receipt_forecasts")
