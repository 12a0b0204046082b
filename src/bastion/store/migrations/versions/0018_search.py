"""Search: the documents found in media (labels, tags, OCR text, codes, URLs,
transcripts, faces), their full-text index and their vectors.

SQLite: two FTS5 tables over ``search_documents`` (external content; ``unicode61``
words and ``trigram`` substrings), kept in step by triggers. PostgreSQL: a generated
``tsvector`` column (``simple``) with a GIN index, and a trigram GIN index on the text
when the ``pg_trgm`` extension can be created. See :mod:`bastion.search.tables`.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_SQLITE_UP = [
    "CREATE VIRTUAL TABLE search_fts_words USING fts5(text, content='search_documents', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE search_fts_trigram USING fts5(text, content='search_documents', "
    "content_rowid='id', tokenize='trigram')",
    """CREATE TRIGGER search_documents_ai AFTER INSERT ON search_documents BEGIN
  INSERT INTO search_fts_words(rowid, text) VALUES (new.id, new.text);
  INSERT INTO search_fts_trigram(rowid, text) VALUES (new.id, new.text);
END""",
    """CREATE TRIGGER search_documents_ad AFTER DELETE ON search_documents BEGIN
  INSERT INTO search_fts_words(search_fts_words, rowid, text) VALUES ('delete', old.id, old.text);
  INSERT INTO search_fts_trigram(search_fts_trigram, rowid, text)
    VALUES ('delete', old.id, old.text);
END""",
    """CREATE TRIGGER search_documents_au AFTER UPDATE OF text ON search_documents BEGIN
  INSERT INTO search_fts_words(search_fts_words, rowid, text) VALUES ('delete', old.id, old.text);
  INSERT INTO search_fts_trigram(search_fts_trigram, rowid, text)
    VALUES ('delete', old.id, old.text);
  INSERT INTO search_fts_words(rowid, text) VALUES (new.id, new.text);
  INSERT INTO search_fts_trigram(rowid, text) VALUES (new.id, new.text);
END""",
]

_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS search_documents_au",
    "DROP TRIGGER IF EXISTS search_documents_ad",
    "DROP TRIGGER IF EXISTS search_documents_ai",
    "DROP TABLE IF EXISTS search_fts_trigram",
    "DROP TABLE IF EXISTS search_fts_words",
]


def _pg_trigram_schema() -> str | None:
    """The schema of ``pg_trgm`` after trying to create it; None when it cannot be."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError:
        pass  # not installed on the server, or not allowed: substring matches scan
    row = bind.exec_driver_sql(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_trgm'"
    ).first()
    return None if row is None else str(row[0])


def _pg_up() -> None:
    op.execute(
        "ALTER TABLE search_documents ADD COLUMN search_vector tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED"
    )
    op.execute(
        "CREATE INDEX ix_search_documents_vector ON search_documents USING gin (search_vector)"
    )
    schema = _pg_trigram_schema()
    if schema is not None:
        quoted = '"' + schema.replace('"', '""') + '"'
        op.execute(
            "CREATE INDEX ix_search_documents_trgm ON search_documents "
            f"USING gin (text {quoted}.gin_trgm_ops)"
        )


def upgrade() -> None:
    op.create_table(
        "search_documents",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("media_kind", sa.String(16), nullable=False),
        sa.Column("media_ref", sa.String(80), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=True),
        sa.Column("end_s", sa.Float(), nullable=True),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index(
        "ix_search_documents_tenant_media", "search_documents", ["tenant_id", "media_ref"]
    )
    op.create_index(
        "ix_search_documents_tenant_created", "search_documents", ["tenant_id", "created_at"]
    )
    op.create_table(
        "search_vectors",
        sa.Column(
            "document_id",
            ID,
            sa.ForeignKey("search_documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("space", sa.String(32), nullable=False),
        sa.Column("model", sa.String(96), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("document_id", "space", name="pk_search_vectors"),
    )
    op.create_index(
        "ix_search_vectors_tenant_space", "search_vectors", ["tenant_id", "space", "model"]
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _SQLITE_UP:
            op.execute(statement)
    elif dialect == "postgresql":
        _pg_up()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_DOWN:
            op.execute(statement)
    op.drop_index("ix_search_vectors_tenant_space", table_name="search_vectors")
    op.drop_table("search_vectors")
    op.drop_index("ix_search_documents_tenant_created", table_name="search_documents")
    op.drop_index("ix_search_documents_tenant_media", table_name="search_documents")
    op.drop_table("search_documents")
