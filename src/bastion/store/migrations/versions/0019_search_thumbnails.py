"""Search: a thumbnail per document (the API path of a small JPEG of that moment), media
refs as long as stream ids, and ids never reused on SQLite.

* ``thumbnail``: a nullable column added in place: on SQLite ``ALTER TABLE ... ADD
  COLUMN`` keeps the table (and so the FTS5 triggers of 0018, which a batch rebuild
  would drop); PostgreSQL adds it without rewriting the table.
* ``media_ref`` widened to 160 characters (stream ids may have 128) on PostgreSQL;
  SQLite does not enforce the length of a ``VARCHAR``, and rebuilding the table there
  would drop the triggers.
* ``search_id_marks``: the highest document id ever given, so that SQLite, which reuses
  the largest rowid once it is deleted, never gives a new document a deleted one's id
  (a vector index in another process would keep the deleted document's vector for it).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-16
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("search_documents", sa.Column("thumbnail", sa.String(200), nullable=True))
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "search_documents",
            "media_ref",
            type_=sa.String(160),
            existing_type=sa.String(80),
            existing_nullable=False,
        )
    op.create_table(
        "search_id_marks",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("last", sa.BigInteger(), nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        # the ids given so far, so the next ones are above them
        op.execute(
            "INSERT INTO search_id_marks (name, last) "
            "SELECT 'documents', coalesce(max(id), 0) FROM search_documents"
        )


def downgrade() -> None:
    op.drop_table("search_id_marks")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "search_documents",
            "media_ref",
            type_=sa.String(80),
            existing_type=sa.String(160),
            existing_nullable=False,
        )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite (3.35+) drops a column in place, keeping the FTS5 triggers
        op.execute("ALTER TABLE search_documents DROP COLUMN thumbnail")
    else:
        op.drop_column("search_documents", "thumbnail")
