"""Tables of the webhook outbox: signing secrets, deliveries and their attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base, utcnow
from bastion.store.types import UtcDateTime

__all__ = ["DELIVERY_STATES", "Delivery", "DeliveryAttempt", "WebhookSecret"]

PENDING: Final = "pending"
DELIVERING: Final = "delivering"
DELIVERED: Final = "delivered"
DEAD: Final = "dead"
DELIVERY_STATES: Final = (PENDING, DELIVERING, DELIVERED, DEAD)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class WebhookSecret(Base):
    """A tenant's signing secret (``whsec_...``).

    The secret is stored as given, in clear: signing needs it back, so it cannot be
    hashed. Protect the database (and its backups) accordingly. The current secret
    has ``expires_at`` NULL (at most one per tenant, enforced by a partial unique
    index); a rotated-out secret keeps signing until its ``expires_at``.
    """

    __tablename__ = "webhook_secrets"
    __table_args__ = (
        Index(
            "uq_webhook_secrets_current",
            "tenant_id",
            unique=True,
            sqlite_where=text("expires_at IS NULL"),
            postgresql_where=text("expires_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Delivery(Base):
    """One event to POST to one URL, retried until delivered or dead.

    ``webhook_id`` is the Standard Webhooks ``webhook-id``: the same on every attempt
    and after a redrive, so receivers can deduplicate. ``attempts`` counts the
    attempts of the current schedule, which starts at ``schedule_started_at``
    (``created_at``, or the time of the last redrive); every attempt ever made is a
    :class:`DeliveryAttempt` row. ``lease_owner`` and ``lease_until`` are set while a
    dispatcher holds the delivery (state ``delivering``).
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_tenant_id", "tenant_id", "id"),
        Index("ix_deliveries_subject", "tenant_id", "subject_id"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(100))
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    schedule_started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    dead_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)


class DeliveryAttempt(Base):
    """One HTTP attempt (or one refusal before sending) of a delivery."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        _BigId, ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
