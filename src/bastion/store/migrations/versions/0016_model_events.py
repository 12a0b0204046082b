"""The audit log of tenants' heads (promotions, rollbacks, challengers) and the
tenants' promotion settings (high-severity categories).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_model_events_tenant_created", "model_events", ["tenant_id", "created_at"])
    op.create_index(
        "ix_model_events_tenant_category_created",
        "model_events",
        ["tenant_id", "category", "created_at"],
    )
    op.create_table(
        "model_settings",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("high_severity", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(120), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_settings")
    op.drop_index("ix_model_events_tenant_category_created", table_name="model_events")
    op.drop_index("ix_model_events_tenant_created", table_name="model_events")
    op.drop_table("model_events")
