"""Corrections and training consent: where a decision came from, whether it kept the
item's media as a training sample, whose claim a correction overrode, and the tenant's
consent to keep such media.

Decisions taken before this revision came from moderators and kept no media; tenants
have not consented. Columns are added and dropped in place (``ALTER TABLE``; SQLite
3.35 or newer drops them too): a batch copy of ``tenants`` on SQLite would drop the
table that keys and policies refer to.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tenants",
        sa.Column("training_consent", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "review_decisions",
        sa.Column("source", sa.String(16), nullable=False, server_default="moderator"),
    )
    op.add_column(
        "review_decisions",
        sa.Column("media_kept", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("review_decisions", sa.Column("overrode_claim", sa.String(80), nullable=True))
    op.create_index(
        "ix_review_decisions_tenant_decided", "review_decisions", ["tenant_id", "decided_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_review_decisions_tenant_decided", table_name="review_decisions")
    op.drop_column("review_decisions", "overrode_claim")
    op.drop_column("review_decisions", "media_kept")
    op.drop_column("review_decisions", "source")
    op.drop_column("tenants", "training_consent")
