"""Jobs: per-job options (video sampling overrides) and media retention.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("options", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("media_purged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_media_sha256", "jobs", ["media_sha256"])


def downgrade() -> None:
    op.drop_index("ix_jobs_media_sha256", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("media_purged_at")
        batch.drop_column("options")
