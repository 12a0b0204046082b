"""Stored analysis results for de-duplication, and their PDQ band index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dedup_entries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("model_fp", sa.String(32), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("pdq", sa.String(64), nullable=True),
        sa.Column("pdq_quality", sa.Integer(), nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("scope", "sha256", name="uq_dedup_scope_sha256"),
    )
    op.create_index("ix_dedup_entries_model_fp", "dedup_entries", ["model_fp"])
    op.create_index("ix_dedup_entries_created_at", "dedup_entries", ["created_at"])
    op.create_index("ix_dedup_entries_used_at", "dedup_entries", ["used_at"])
    op.create_table(
        "dedup_bands",
        sa.Column(
            "entry_id",
            _ID,
            sa.ForeignKey("dedup_entries.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("code", sa.Integer(), primary_key=True),
        sa.Column("scope", sa.String(32), nullable=False),
    )
    op.create_index("ix_dedup_bands_lookup", "dedup_bands", ["scope", "code"])


def downgrade() -> None:
    op.drop_table("dedup_bands")
    op.drop_table("dedup_entries")
