"""The ``aws_access_keys`` table: access key ids issued to tenants for Signature Version 4.

A row never holds the secret: the secret is derived from a master secret that lives
outside the database and the row's ``salt`` (see :mod:`bastion.aws.credentials`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


class AwsAccessKey(Base):
    __tablename__ = "aws_access_keys"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    """The access key id (``BKIA`` and 16 of A-Z, 2-7), as clients send it."""
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    salt: Mapped[str] = mapped_column(String(64))
    """Random per key (hex); with the master secret, it derives the key's secret."""
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
