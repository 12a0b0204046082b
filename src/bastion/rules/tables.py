"""Tables of tenants' rule sets and of each tenant's rules revision."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base, utcnow
from bastion.store.types import UtcDateTime


class RuleSetRow(Base):
    """One rule set; ``spec`` holds it as validated data, the other columns copy the
    parts that are listed and searched."""

    __tablename__ = "rule_sets"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_rule_sets_tenant_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(256), nullable=True)
    channel_pattern: Mapped[str | None] = mapped_column(Text, nullable=True)
    priority: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class RuleRevision(Base):
    """A counter raised by every change to a tenant's rule sets, in the same transaction:
    readers compare it to notice changes, and writers serialise on its row."""

    __tablename__ = "rule_revisions"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
