"""The search tables: what can be found in a tenant's media, and the vectors made of it.

A :class:`SearchDocument` is one thing seen or said in one piece of media, with where:

* ``media_kind`` (``image``, ``video``, ``stream``, ``audio``) and ``media_ref`` (the job
  id of an uploaded image or video, the stream id of a live stream, or the media's
  sha256 for a scan), so deleting the media deletes its documents
  (:meth:`bastion.search.text_index.TextIndex.delete_media`);
* ``start_s`` / ``end_s``: the time range in the media (None for an image);
* ``field``: what the text is (:data:`FIELDS`): a taxonomy ``label``, a ``tag`` (an
  object or scene the models named), ``ocr`` text read in a frame, a ``code`` payload
  (QR, barcode), a ``url``, a ``transcript`` segment, ``faces`` (a count, as text), or
  ``media``: the media itself, with no text, which anchors its image embedding;
* ``text`` (what is searched), its ``language`` when known, the ``labels`` and the
  ``decision`` the moderation gave that moment (for filters and display), and the API
  path of a ``thumbnail`` of it when there is one (migration 0019).

The id is an integer: it is the full-text index's rowid and the vector index's id. It
is never reused, so a vector index another process holds can never take a new
document's id for a deleted one's: PostgreSQL's sequence never goes back, and on SQLite
(where a rowid table without ``AUTOINCREMENT`` reuses the largest id once it is
deleted) :class:`SearchIdMark` keeps the highest id ever given, and
:meth:`~bastion.search.text_index.TextIndex.add_in` gives ids above it.

The full-text index is not modelled here, because it differs by database
(:mod:`bastion.store.migrations.versions` 0018 creates it; :data:`UNMODELLED` names its
parts so the schema comparison skips them):

* SQLite: two FTS5 tables with external content (``content='search_documents'``), one
  with the ``unicode61`` tokenizer (words, diacritics folded: ranks whole words of
  spaced languages) and one with ``trigram`` (substrings of three characters or more:
  Chinese, Japanese, Thai and Korean, whose words are not split by spaces or carry
  particles). External content keeps the text once, in ``search_documents``; triggers
  on that table keep both indexes in step in the same transaction, whatever writes the
  rows. (A contentless table could not delete rows on SQLite before 3.43.) A future
  migration that rebuilds ``search_documents`` in batch mode must recreate the triggers.
* PostgreSQL: a generated ``search_vector tsvector`` column (``simple`` configuration:
  words lowercased, no stemming, so every language is treated alike) with a GIN index,
  and, when the ``pg_trgm`` extension can be created, a trigram GIN index on ``text``
  that serves substring matches (``ILIKE``) for the languages without spaces. Without
  ``pg_trgm`` substring matches still work, by scanning the tenant's rows.

A :class:`SearchVector` is a document's embedding in one vector space (``text``: the
sentence encoder's vector of a transcript segment or tag; ``image``: the image
embedding of a ``media`` document), stored as little-endian float32 bytes with the
model's ``name@version``. The in-process vector indexes are rebuilt from these rows
(:mod:`bastion.search.vectors`); the rows go with their document (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime

MEDIA_KINDS: Final = ("image", "video", "stream", "audio")
"""What a document's media is."""
FIELDS: Final = ("label", "tag", "ocr", "code", "url", "transcript", "faces", "media")
"""What a document's text is."""

FTS_WORDS: Final = "search_fts_words"
"""SQLite: the FTS5 table of words (``unicode61``)."""
FTS_TRIGRAM: Final = "search_fts_trigram"
"""SQLite: the FTS5 table of trigrams."""
_FTS5_SHADOW = ("data", "idx", "docsize", "config")
PG_VECTOR_COLUMN: Final = "search_vector"
"""PostgreSQL: the generated ``tsvector`` column."""
UNMODELLED: Final = frozenset(
    {
        FTS_WORDS,
        FTS_TRIGRAM,
        *(f"{t}_{part}" for t in (FTS_WORDS, FTS_TRIGRAM) for part in _FTS5_SHADOW),
        PG_VECTOR_COLUMN,
        "ix_search_documents_vector",
        "ix_search_documents_trgm",
    }
)
"""Names of the database-specific parts of the full-text index that the models do not
describe (the schema comparison of the tests skips them)."""

MediaRef = String(160).with_variant(String(80), "sqlite")
"""Up to 160 characters (a stream id has up to 128). SQLite keeps the declared 80 of
migration 0018 (it never enforces a length, and widening would rebuild the table and
drop its full-text triggers)."""
DocumentId = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids; on SQLite an INTEGER primary key (the rowid, which FTS5 refers to)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class SearchDocument(Base):
    __tablename__ = "search_documents"
    __table_args__ = (
        Index("ix_search_documents_tenant_media", "tenant_id", "media_ref"),
        Index("ix_search_documents_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(DocumentId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    media_kind: Mapped[str] = mapped_column(String(16))
    """``image``, ``video``, ``stream`` or ``audio``."""
    media_ref: Mapped[str] = mapped_column(MediaRef)
    """The job id, stream id or sha256 of the media."""
    start_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The time range in the media, in seconds (None for an image)."""
    field: Mapped[str] = mapped_column(String(16))
    """One of :data:`FIELDS`."""
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """ISO 639-1 code when known."""
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """The taxonomy labels of that moment."""
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """``allow``, ``review`` or ``block`` when known."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    thumbnail: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The API path of a small JPEG of that moment (a video frame, an image job, a
    stream frame), None when there is none."""


class SearchIdMark(Base):
    """The highest document id ever given (SQLite only: ids are taken above it)."""

    __tablename__ = "search_id_marks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger)


class SearchVector(Base):
    __tablename__ = "search_vectors"
    __table_args__ = (
        PrimaryKeyConstraint("document_id", "space", name="pk_search_vectors"),
        Index("ix_search_vectors_tenant_space", "tenant_id", "space", "model"),
    )

    document_id: Mapped[int] = mapped_column(
        DocumentId, ForeignKey("search_documents.id", ondelete="CASCADE")
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    space: Mapped[str] = mapped_column(String(32))
    """The vector space: ``text`` or ``image``."""
    model: Mapped[str] = mapped_column(String(96))
    """The model's ``name@version``: vectors of another version do not mix."""
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    """``dim`` little-endian float32 values."""
