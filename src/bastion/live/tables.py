"""The streams and alerts tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime

STREAM_STATES = ("starting", "live", "reconnecting", "offline", "stopped", "error")
"""What a stream is doing: its reader's state, or ``stopped`` (ended by the API, a
moderator or an auto-stop rule)."""
ALERT_STATES = ("open", "acknowledged", "dismissed", "stream_stopped")
OPEN_ALERT_STATES = ("open", "acknowledged")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Stream(Base):
    __tablename__ = "streams"
    __table_args__ = (
        UniqueConstraint("tenant_id", "stream_id", name="uq_stream_id"),
        Index("ix_streams_claim", "desired", "lease_until"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    stream_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(256), index=True)
    source_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    """None: the platform pushes frames itself (POST /v1/streams/{id}/frames)."""
    streamer_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    streamer_tier: Mapped[str] = mapped_column(String(32), default="standard")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    desired: Mapped[str] = mapped_column(String(16), default="running")  # running | stopped
    status: Mapped[str] = mapped_column(String(16), default="starting")
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    status_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    counters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_frame_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_frame_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_thumbnail: Mapped[str | None] = mapped_column(String(80), nullable=True)
    last_sample_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_hash: Mapped[str | None] = mapped_column(String(80), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    stopped_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_stream_rule", "stream_pk", "rule", "state"),
        Index("ix_alerts_tenant_updated", "tenant_id", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    stream_pk: Mapped[str] = mapped_column(String(40))
    stream_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(256))
    rule_set: Mapped[str | None] = mapped_column(String(128), nullable=True)
    rule: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))  # alert | review | auto_stop
    state: Mapped[str] = mapped_column(String(16), default="open")
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What matched: text, URLs, the frame's time in the stream."""
    thumbnail: Mapped[str | None] = mapped_column(String(80), nullable=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    version: Mapped[int] = mapped_column(Integer, default=1)
    """Raised on every change; the alert feed sends each (id, version) once."""
    first_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    handled_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
