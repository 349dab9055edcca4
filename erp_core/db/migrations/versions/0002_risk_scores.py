"""risk scores: the decision trail of the API's scores

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("exception_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["exception_id"],
            ["exception_cases.id"],
            name=op.f("fk_risk_scores_exception_id_exception_cases"),
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["order_lines.id"], name=op.f("fk_risk_scores_line_id_order_lines")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["sales_orders.id"], name=op.f("fk_risk_scores_order_id_sales_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_scores")),
    )
    op.create_index(op.f("ix_risk_scores_line_id"), "risk_scores", ["line_id"], unique=False)
    op.create_index(op.f("ix_risk_scores_order_id"), "risk_scores", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_risk_scores_order_id"), table_name="risk_scores")
    op.drop_index(op.f("ix_risk_scores_line_id"), table_name="risk_scores")
    op.drop_table("risk_scores")
