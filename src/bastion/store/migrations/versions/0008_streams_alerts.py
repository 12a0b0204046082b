"""Live streams and their alerts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("stream_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(256), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("streamer_id", sa.String(128), nullable=True),
        sa.Column("streamer_tier", sa.String(32), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("desired", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_code", sa.String(64), nullable=True),
        sa.Column("owner", sa.String(80), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.Column("last_frame_at", TS, nullable=True),
        sa.Column("last_frame_ms", sa.Integer(), nullable=True),
        sa.Column("last_thumbnail", sa.String(80), nullable=True),
        sa.Column("last_sample_s", sa.Float(), nullable=True),
        sa.Column("last_hash", sa.String(80), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("stopped_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("tenant_id", "stream_id", name="uq_stream_id"),
    )
    op.create_index("ix_streams_tenant_id", "streams", ["tenant_id"])
    op.create_index("ix_streams_channel", "streams", ["channel"])
    op.create_index("ix_streams_claim", "streams", ["desired", "lease_until"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("stream_pk", sa.String(40), nullable=False),
        sa.Column("stream_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(256), nullable=False),
        sa.Column("rule_set", sa.String(128), nullable=True),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("thumbnail", sa.String(80), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("first_at", TS, nullable=False),
        sa.Column("last_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("handled_by", sa.String(128), nullable=True),
    )
    op.create_index("ix_alerts_tenant_id", "alerts", ["tenant_id"])
    op.create_index("ix_alerts_stream_rule", "alerts", ["stream_pk", "rule", "state"])
    op.create_index("ix_alerts_tenant_updated", "alerts", ["tenant_id", "updated_at"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("streams")
