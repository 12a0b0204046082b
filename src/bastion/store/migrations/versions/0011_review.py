"""The review queue: items waiting for a person, and the decisions people took.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_id", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(128), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("model_decision", sa.String(16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("policy", sa.String(64), nullable=True),
        sa.Column("policy_version", sa.String(64), nullable=True),
        sa.Column("media", sa.JSON(), nullable=True),
        sa.Column("media_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("claimed_by", sa.String(80), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.UniqueConstraint("tenant_id", "source", "source_id", name="uq_review_items_source"),
    )
    op.create_index(
        "ix_review_items_claim",
        "review_items",
        ["tenant_id", "queue", "status", "priority", "created_at"],
    )
    op.create_index("ix_review_items_tenant_created", "review_items", ["tenant_id", "created_at"])
    op.create_index("ix_review_items_media", "review_items", ["media_sha256", "status"])
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("item_id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("actor_kind", sa.String(8), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("escalated_to", sa.String(64), nullable=True),
        sa.Column("labels_before", sa.JSON(), nullable=False),
        sa.Column("labels_after", sa.JSON(), nullable=False),
        sa.Column("added_labels", sa.JSON(), nullable=False),
        sa.Column("removed_labels", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("model_decision", sa.String(16), nullable=False),
        sa.Column("model_versions", sa.JSON(), nullable=False),
        sa.Column("policy", sa.String(64), nullable=True),
        sa.Column("policy_version", sa.String(64), nullable=True),
        sa.Column("decided_at", TS, nullable=False),
    )
    op.create_index(
        "ix_review_decisions_item", "review_decisions", ["tenant_id", "item_id", "decided_at"]
    )


def downgrade() -> None:
    op.drop_table("review_decisions")
    op.drop_table("review_items")
