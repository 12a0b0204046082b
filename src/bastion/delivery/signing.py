"""Standard Webhooks signatures and the per-tenant secrets that make them.

Format (https://www.standardwebhooks.com): a secret is ``whsec_`` followed by the
base64 of 24 to 64 random bytes; the HMAC key is those bytes. Each request carries

* ``webhook-id``: the delivery's id, the same on every retry;
* ``webhook-timestamp``: the attempt's time in integer Unix seconds;
* ``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
  one per valid secret, separated by spaces.

Secrets are stored in clear (see :class:`~bastion.delivery.tables.WebhookSecret`):
signing needs them back. Rotation keeps the previous secret signing for a grace
period, so during it every request carries two signatures and a receiver verifies
with either secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bastion.delivery.tables import WebhookSecret

__all__ = [
    "SECRET_PREFIX",
    "decode_secret",
    "generate_secret",
    "get_or_create_secret",
    "rotate",
    "sign",
    "signature_header",
    "signing_secrets",
    "webhook_headers",
]

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def generate_secret(nbytes: int = 32) -> str:
    """A new random secret: ``whsec_`` + base64 of ``nbytes`` (24 to 64) bytes."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise ValueError(f"a secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(nbytes)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``ValueError`` when it is malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is base64 after its prefix") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"a webhook secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` for this id and timestamp."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    return " ".join(sign(s, webhook_id, timestamp, body) for s in secrets)


def webhook_headers(
    secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, webhook_id, timestamp, body),
    }


# ---- per-tenant secrets ---------------------------------------------------------


def _current(session: Session, tenant_id: str) -> WebhookSecret | None:
    return session.scalars(
        select(WebhookSecret).where(
            WebhookSecret.tenant_id == tenant_id, WebhookSecret.expires_at.is_(None)
        )
    ).first()


def _insert_current(session: Session, tenant_id: str, secret: str, now: datetime) -> None:
    """Insert a current secret unless one exists (concurrent callers do not fail)."""
    values = {"tenant_id": tenant_id, "secret": secret, "created_at": now, "expires_at": None}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(
            pg_insert(WebhookSecret)
            .values(values)
            .on_conflict_do_nothing(
                index_elements=["tenant_id"], index_where=WebhookSecret.expires_at.is_(None)
            )
        )
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(
            sqlite_insert(WebhookSecret)
            .values(values)
            .on_conflict_do_nothing(
                index_elements=["tenant_id"], index_where=WebhookSecret.expires_at.is_(None)
            )
        )
    else:
        session.add(WebhookSecret(**values))
        session.flush()


def get_or_create_secret(session: Session, tenant_id: str) -> str:
    """The tenant's current secret, created on first use (in the caller's transaction)."""
    row = _current(session, tenant_id)
    if row is not None:
        return row.secret
    _insert_current(session, tenant_id, generate_secret(), datetime.now(UTC))
    row = _current(session, tenant_id)
    if row is None:  # pragma: no cover - the insert above or a concurrent one made it
        raise RuntimeError(f"no webhook secret for tenant {tenant_id!r}")
    return row.secret


def rotate(session: Session, tenant_id: str, grace_s: float) -> str:
    """Make a new current secret; the old one keeps signing for ``grace_s`` seconds.

    At most one previous secret stays valid: older ones (expired, or still in the
    grace of an earlier rotation) are deleted. Returns the new secret.
    """
    if grace_s < 0:
        raise ValueError("grace_s must not be negative")
    now = datetime.now(UTC)
    session.execute(
        delete(WebhookSecret)
        .where(WebhookSecret.tenant_id == tenant_id, WebhookSecret.expires_at.is_not(None))
        .execution_options(synchronize_session="fetch")
    )
    session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.tenant_id == tenant_id, WebhookSecret.expires_at.is_(None))
        .values(expires_at=now + timedelta(seconds=grace_s))
        .execution_options(synchronize_session="fetch")
    )
    secret = generate_secret()
    session.add(WebhookSecret(tenant_id=tenant_id, secret=secret, created_at=now))
    session.flush()
    return secret


def signing_secrets(session: Session, tenant_id: str, now: datetime | None = None) -> list[str]:
    """Secrets that sign at ``now``: the current one, then the previous one in its grace.

    Empty when the tenant has no secret yet (see :func:`get_or_create_secret`).
    """
    at = now or datetime.now(UTC)
    rows = session.scalars(
        select(WebhookSecret)
        .where(WebhookSecret.tenant_id == tenant_id)
        .order_by(WebhookSecret.id.desc())
    ).all()
    current = [r.secret for r in rows if r.expires_at is None]
    previous = [r.secret for r in rows if r.expires_at is not None and r.expires_at > at]
    return current[:1] + previous[:1]
