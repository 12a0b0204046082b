"""Training runs: a tenant's requests to train a head, their progress and outcome.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "training_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("embedding_model", sa.String(160), nullable=False),
        sa.Column("requested_by", sa.String(120), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("claimed_by", sa.String(120), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("held_out_ids", sa.JSON(), nullable=True),
        sa.Column("baseline_coverage", sa.Float(), nullable=True),
    )
    op.create_index("ix_training_runs_tenant_created", "training_runs", ["tenant_id", "created_at"])
    op.create_index("ix_training_runs_status_created", "training_runs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_training_runs_status_created", table_name="training_runs")
    op.drop_index("ix_training_runs_tenant_created", table_name="training_runs")
    op.drop_table("training_runs")
