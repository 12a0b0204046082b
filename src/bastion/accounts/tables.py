"""The users and user sessions tables: people who sign in to the portal, and their sessions.

A user belongs to one tenant; the username is unique within it, compared without regard
to case (``username_key`` holds the normalised form the constraint is on). Only an
argon2id hash of the password is stored. A session row holds a SHA-256 hash of its
token, never the token, so a copy of the database cannot be used to sign in.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime

ROLES = ("admin", "moderator", "viewer")
"""What a person may do in the portal: everything, handle content and alerts, or look."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "username_key", name="uq_users_tenant_username"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    username: Mapped[str] = mapped_column(String(64))
    """As the person typed it when the account was made."""
    username_key: Mapped[str] = mapped_column(String(64))
    """The normalised username (case-folded) that sign-in and uniqueness use."""
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    """Wrong passwords in a row since the last sign-in or lock."""
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    password_changed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class UserSession(Base):
    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_token_hash", "token_hash", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 (hex) of the session token; the token itself is only ever in the cookie."""
    csrf_token: Mapped[str] = mapped_column(String(64))
    """Random per session: forms and state-changing requests must send it back."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
