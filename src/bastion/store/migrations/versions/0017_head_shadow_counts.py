"""Shadow counts of tenants' challengers (items scored beside the champion and the
disagreements each way), added up over every process and restart.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "head_shadow_counts",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("champion", sa.String(32), nullable=False),
        sa.Column("challenger", sa.String(32), nullable=False),
        sa.Column("scored", sa.BigInteger(), nullable=False),
        sa.Column("challenger_only", sa.BigInteger(), nullable=False),
        sa.Column("champion_only", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "category", "champion", "challenger"),
    )


def downgrade() -> None:
    op.drop_table("head_shadow_counts")
