"""The sample tables: a tenant's labelled media, and the embeddings models made of it.

A :class:`Sample` is one piece of media with the right labels: the media's sha256 in
the job media store (:mod:`bastion.jobs.media_files`, shared by every tenant and kept
by retention while a sample refers to it), the taxonomy labels people gave it (and
their L1 parents, for filtering by category), the decision (``allow`` / ``block``) when
known, and where it came from: ``moderator`` (a decision in the portal or the review
API), ``api`` (a correction) or ``import`` (a labelled folder). A sample of a decision
names the review item and the decision it follows; each is unique per tenant, so an
item is at most one sample, and a later decision of the item (a correction) moves the
sample's labels and decision on. ``model_labels`` / ``model_decision`` are what the
models said (none for imports); ``corrected`` says whether people changed either.

A :class:`SampleEmbedding` is the vector one model made of a sample's media, stored as
little-endian float32 bytes and keyed by the model's name and version, so a sample may
carry the embeddings of several models (another embedding is added beside, never in
place of, the first).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime

MODERATOR: Final = "moderator"
API: Final = "api"
IMPORT: Final = "import"
SOURCES: Final = (MODERATOR, API, IMPORT)
"""Where a sample came from: a moderator's decision, a correction through the API, or an
imported folder."""
DECISIONS: Final = ("allow", "block")
IMAGE: Final = "image"
VIDEO: Final = "video"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("tenant_id", "review_item_id", name="uq_samples_review_item"),
        UniqueConstraint("tenant_id", "review_decision_id", name="uq_samples_review_decision"),
        Index("ix_samples_tenant_created", "tenant_id", "created_at"),
        Index("ix_samples_tenant_taken", "tenant_id", "taken_at"),
        Index("ix_samples_media", "media_sha256"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    media_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The media in the job media store; None when a decision's media was gone."""
    media_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """``image`` or ``video`` (what the bytes are); None without media."""
    media_format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The image format the bytes are (``JPEG``, ``PNG``, ...), when an image."""
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """The right taxonomy labels (empty: none applies)."""
    categories: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """The labels and their L1 parents, sorted (what a category filter matches)."""
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """``allow`` or ``block`` when known."""
    model_labels: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    """The labels the models gave (None: imported, no models' opinion)."""
    model_decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """What Bastion decided (``review`` for queued items); None for imports."""
    corrected: Mapped[bool] = mapped_column(Boolean, default=False)
    """The labels differ from the models' labels, or the decision from theirs."""
    source: Mapped[str] = mapped_column(String(16))
    """``moderator``, ``api`` or ``import``."""
    taken_by: Mapped[str] = mapped_column(String(120))
    """Who labelled it: ``user:<id>``, ``key:<id>``, or ``cli:<name>`` for an import."""
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime())
    """When the labels were given: the decision's time, or the import's (or the time
    the imported labels file states)."""
    origin: Mapped[str | None] = mapped_column(String(512), nullable=True)
    """The file's path inside the imported folder (imports only)."""
    review_item_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    review_decision_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    """The latest decision of the item, whose labels and decision the sample has."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class SampleEmbedding(Base):
    __tablename__ = "sample_embeddings"
    __table_args__ = (
        PrimaryKeyConstraint("sample_id", "model", "version", name="pk_sample_embeddings"),
        Index("ix_sample_embeddings_tenant_model", "tenant_id", "model", "version"),
    )

    sample_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    """The embedding model's name (``efficientnet-lite0``)."""
    version: Mapped[str] = mapped_column(String(64))
    """Its version (the weights' digest): vectors of other versions do not mix."""
    analyzer: Mapped[str] = mapped_column(String(64))
    """The analyzer instance that computed it."""
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    """``dim`` little-endian float32 values."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
