"""Stored analysis results belong to a tenant: reuse and near-duplicate lookups stay in it.

Results stored before this revision were shared by every tenant and cannot be told
apart by tenant; they are a cache (every one can be computed again), so the two
tables are emptied and rebuilt with ``tenant_id`` leading their key and band index
rather than altered in place (which SQLite could not do without copying them anyway).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _create(*, tenant: bool) -> None:
    """The two tables, with (``tenant``) or without (revision 0005) a tenant column."""
    key = ["tenant_id", "scope", "sha256"] if tenant else ["scope", "sha256"]
    owner = [sa.Column("tenant_id", sa.String(64), nullable=False)] if tenant else []
    op.create_table(
        "dedup_entries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        *owner,
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("model_fp", sa.String(32), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("pdq", sa.String(64), nullable=True),
        sa.Column("pdq_quality", sa.Integer(), nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=False),
        sa.UniqueConstraint(
            *key, name="uq_dedup_tenant_scope_sha256" if tenant else "uq_dedup_scope_sha256"
        ),
    )
    op.create_index("ix_dedup_entries_model_fp", "dedup_entries", ["model_fp"])
    op.create_index("ix_dedup_entries_created_at", "dedup_entries", ["created_at"])
    op.create_index("ix_dedup_entries_used_at", "dedup_entries", ["used_at"])
    band_owner = [sa.Column("tenant_id", sa.String(64), nullable=False)] if tenant else []
    op.create_table(
        "dedup_bands",
        sa.Column(
            "entry_id",
            _ID,
            sa.ForeignKey("dedup_entries.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("code", sa.Integer(), primary_key=True),
        *band_owner,
        sa.Column("scope", sa.String(32), nullable=False),
    )
    lookup = ["tenant_id", "scope", "code"] if tenant else ["scope", "code"]
    op.create_index("ix_dedup_bands_lookup", "dedup_bands", lookup)


def upgrade() -> None:
    op.drop_table("dedup_bands")
    op.drop_table("dedup_entries")
    _create(tenant=True)


def downgrade() -> None:
    op.drop_table("dedup_bands")
    op.drop_table("dedup_entries")
    _create(tenant=False)
