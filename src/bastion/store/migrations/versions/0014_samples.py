"""Labelled samples: a tenant's media with the right labels (from decisions, corrections
and imported folders), and the embeddings models made of them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "samples",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("media_sha256", sa.String(64), nullable=True),
        sa.Column("media_kind", sa.String(16), nullable=True),
        sa.Column("media_format", sa.String(16), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("model_labels", sa.JSON(), nullable=True),
        sa.Column("model_decision", sa.String(16), nullable=True),
        sa.Column("corrected", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("taken_by", sa.String(120), nullable=False),
        sa.Column("taken_at", TS, nullable=False),
        sa.Column("origin", sa.String(512), nullable=True),
        sa.Column("review_item_id", sa.String(40), nullable=True),
        sa.Column("review_decision_id", sa.String(40), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "review_item_id", name="uq_samples_review_item"),
        sa.UniqueConstraint("tenant_id", "review_decision_id", name="uq_samples_review_decision"),
    )
    op.create_index("ix_samples_tenant_created", "samples", ["tenant_id", "created_at"])
    op.create_index("ix_samples_tenant_taken", "samples", ["tenant_id", "taken_at"])
    op.create_index("ix_samples_media", "samples", ["media_sha256"])
    op.create_table(
        "sample_embeddings",
        sa.Column("sample_id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("analyzer", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("sample_id", "model", "version", name="pk_sample_embeddings"),
    )
    op.create_index(
        "ix_sample_embeddings_tenant_model",
        "sample_embeddings",
        ["tenant_id", "model", "version"],
    )


def downgrade() -> None:
    op.drop_index("ix_sample_embeddings_tenant_model", table_name="sample_embeddings")
    op.drop_table("sample_embeddings")
    op.drop_index("ix_samples_media", table_name="samples")
    op.drop_index("ix_samples_tenant_taken", table_name="samples")
    op.drop_index("ix_samples_tenant_created", table_name="samples")
    op.drop_table("samples")
