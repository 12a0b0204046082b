"""Tables of stored results and of their PDQ band codes (the near-duplicate index).

Both are keyed by tenant first: a stored result is reused only for the tenant whose
request produced it (see :mod:`bastion.pipeline.moderation`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime

# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY
_ID = BigInteger().with_variant(Integer(), "sqlite")


class DedupEntry(Base):
    """One analysis result, reusable for the same tenant's same bytes under the same scope.

    ``scope`` fingerprints the effective policy, its compiled lists and the models
    (``model_fp``), so a result is only ever reused where it would be reproduced;
    ``tenant_id`` keeps it to the tenant that sent the bytes.
    """

    __tablename__ = "dedup_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "scope", "sha256", name="uq_dedup_tenant_scope_sha256"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(32))
    model_fp: Mapped[str] = mapped_column(String(32), index=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    used_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class DedupBand(Base):
    """One band of an entry's PDQ hash (see :mod:`bastion.dedup.pdqindex`)."""

    __tablename__ = "dedup_bands"
    __table_args__ = (Index("ix_dedup_bands_lookup", "tenant_id", "scope", "code"),)

    entry_id: Mapped[int] = mapped_column(
        _ID, ForeignKey("dedup_entries.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(32))
