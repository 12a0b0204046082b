"""Access keys for the Rekognition-compatible endpoint (Signature Version 4).

* ``aws_access_keys``: one row per access key id issued to a tenant, with its name,
  scopes, a random salt and its times. The secret is not stored: it is derived from
  the salt and a master secret kept outside the database (see
  :mod:`bastion.aws.credentials`).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "aws_access_keys",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.String(64),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_aws_access_keys_tenant_id", "aws_access_keys", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_aws_access_keys_tenant_id", table_name="aws_access_keys")
    op.drop_table("aws_access_keys")
