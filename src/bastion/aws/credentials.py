"""Access keys for the Rekognition-compatible endpoint: a credential beside API keys.

A tenant's access key is an id shaped like AWS's (``BKIA`` and 16 of ``A-Z2-7``, 20
characters), a name, scopes (those of API keys: the Rekognition operations need
``moderate``), its creation, last use and revocation times, and a 40-character secret
access key shown once, when the key is made.

Why the secret is derived, not stored hashed or encrypted: Signature Version 4 is an
HMAC keyed by the secret, so the server needs the secret itself to check a request; a
hash (as API keys keep) cannot be used. Two ways keep it out of the database: encrypt
it there under a master key, or derive it from a master secret. Bastion derives it:

    secret = base64(HMAC-SHA256(master, "bastion-aws-secret:" + key id + ":" + salt)[:30])

where ``salt`` is 32 random bytes of the key's own row. Nothing secret is stored, so a
copy of the database (a backup, a replica) reveals no secret; there is no ciphertext to
rotate or lose, and a revoked key cannot come back (a new key gets a new id and salt).
The master secret is ``aws.secret_seed`` when set (needed when processes on more than
one host serve one database), otherwise a random one kept in the data dir in
``aws-secret-seed``, created once with mode 0600 (atomically: two processes starting
together agree on one). Changing the master secret invalidates every issued secret.

A revoked key, a key of a disabled tenant and a key that does not exist all read as
unknown; lookups are cached for :data:`CACHE_TTL_S` seconds, so a revocation takes
effect within that time in every process (at once in the process that revoked it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bastion.aws.tables import AwsAccessKey
from bastion.config import Settings
from bastion.errors import InputError, NotFound
from bastion.store import keys as keyfmt
from bastion.store.repo import Principal
from bastion.store.tables import Tenant

log = logging.getLogger(__name__)

KEY_PREFIX = "BKIA"
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
KEY_ID_RE = re.compile(r"^BKIA[A-Z2-7]{16}$")
SEED_FILE = "aws-secret-seed"
CACHE_TTL_S = 5.0
"""How long a lookup is reused: a revocation elsewhere takes effect within this time."""
LAST_USED_EVERY = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per key."""
_MAX_CACHED = 10_000
_DERIVATION = b"bastion-aws-secret:"


@dataclass(frozen=True, slots=True)
class AwsIdentity:
    """A known, active access key: who it acts for and the secret requests are signed with."""

    principal: Principal
    secret: str


@dataclass(frozen=True, slots=True)
class AwsKeyInfo:
    """An access key as listed: never its secret."""

    id: str
    tenant_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: AwsAccessKey) -> AwsKeyInfo:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            scopes=tuple(row.scopes),
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


def new_key_id() -> str:
    """A fresh access key id: ``BKIA`` and 16 random characters of ``A-Z2-7`` (80 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(KEY_ALPHABET) for _ in range(16))


def derive_secret(master: bytes, key_id: str, salt: str) -> str:
    """The secret access key of ``key_id`` (40 characters of base64, like AWS's)."""
    digest = hmac.new(
        master, _DERIVATION + key_id.encode() + b":" + salt.encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest[:30]).decode()


def master_secret(settings: Settings) -> bytes:
    """``aws.secret_seed``, or the data dir's seed file (made once, mode 0600)."""
    configured = settings.aws.secret_seed
    if configured is not None:
        return configured.get_secret_value().encode()
    return _seed_file(settings.data_dir / SEED_FILE)


def _seed_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # written whole under another name, then linked: whoever links first wins, and
        # no process ever reads a half-written seed
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o): make it 0600", path, mode & 0o777)
    seed = path.read_text().strip()
    if len(seed) < 32:
        raise ValueError(f"{path} holds no usable seed (at least 32 characters)")
    return seed.encode()


class AwsKeys:
    """Access keys of tenants: issue, list, revoke, and look up (cached) for requests."""

    def __init__(self, sessions: sessionmaker[Session], master: bytes) -> None:
        self.sessions = sessions
        self._master = master
        self._cache: dict[str, tuple[float, AwsIdentity | None]] = {}
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session]) -> AwsKeys:
        """Keys on ``sessions`` with the master secret of ``settings`` (reads a file)."""
        return cls(sessions, master_secret(settings))

    def create(self, tenant_id: str, name: str, scopes: list[str]) -> tuple[AwsKeyInfo, str]:
        """A new key of ``tenant_id``: its listing and its secret (shown only now)."""
        bad = [sc for sc in scopes if sc not in keyfmt.SCOPES]
        if bad or not scopes:
            raise InputError(
                f"scopes must be a non-empty subset of {list(keyfmt.SCOPES)}", code="invalid_scope"
            )
        salt = secrets.token_hex(32)
        with self.sessions.begin() as s:
            if s.get(Tenant, tenant_id) is None:
                raise NotFound(f"tenant {tenant_id!r} not found")
            key_id = new_key_id()
            while s.get(AwsAccessKey, key_id) is not None:  # 80 random bits: never, in practice
                key_id = new_key_id()
            row = AwsAccessKey(
                id=key_id,
                tenant_id=tenant_id,
                name=name,
                salt=salt,
                scopes=list(dict.fromkeys(scopes)),
                created_at=datetime.now(UTC),
            )
            s.add(row)
            s.flush()
            info = AwsKeyInfo.of(row)
        return info, derive_secret(self._master, key_id, salt)

    def list(self, tenant_id: str) -> list[AwsKeyInfo]:
        """The tenant's keys, oldest first (revoked ones included)."""
        with self.sessions() as s:
            rows = s.scalars(
                select(AwsAccessKey)
                .where(AwsAccessKey.tenant_id == tenant_id)
                .order_by(AwsAccessKey.created_at, AwsAccessKey.id)
            )
            return [AwsKeyInfo.of(r) for r in rows]

    def revoke(self, tenant_id: str, key_id: str) -> AwsKeyInfo:
        """Revoke the tenant's key ``key_id`` (404 when the tenant has no such key)."""
        with self.sessions.begin() as s:
            row = s.get(AwsAccessKey, key_id) if KEY_ID_RE.fullmatch(key_id) else None
            if row is None or row.tenant_id != tenant_id:
                raise NotFound(f"access key {key_id!r} not found", code="not_found")
            row.revoked_at = row.revoked_at or datetime.now(UTC)
            info = AwsKeyInfo.of(row)
        with self._lock:
            self._cache.pop(key_id, None)
        return info

    def lookup(self, key_id: str) -> AwsIdentity | None:
        """The active key ``key_id`` and its secret; None when it is unknown, revoked or
        its tenant disabled. Blocking (database): call it off the event loop."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        found = self._load(key_id) if KEY_ID_RE.fullmatch(key_id) else None
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key_id] = (now, found)
        return found

    def forget(self) -> None:
        """Drop every cached lookup: the next request of each key reads the database."""
        with self._lock:
            self._cache.clear()

    def used(self, key_id: str) -> None:
        """Record that a request signed with ``key_id`` was verified: ``last_used_at``,
        written at most every :data:`LAST_USED_EVERY` by this process. Blocking."""
        now = time.monotonic()
        with self._lock:
            last = self._written.get(key_id)
            if last is not None and now - last < LAST_USED_EVERY.total_seconds():
                return
            if len(self._written) >= _MAX_CACHED:
                self._written.clear()
            self._written[key_id] = now
        with self.sessions.begin() as s:
            row = s.get(AwsAccessKey, key_id)
            if row is not None:
                row.last_used_at = datetime.now(UTC)

    def _load(self, key_id: str) -> AwsIdentity | None:
        with self.sessions() as s:
            row = s.get(AwsAccessKey, key_id)
            if row is None or row.revoked_at is not None:
                return None
            tenant = s.get(Tenant, row.tenant_id)
            if tenant is None or tenant.disabled_at is not None:
                return None
            principal = Principal(row.tenant_id, row.id, tuple(row.scopes))
            return AwsIdentity(principal, derive_secret(self._master, row.id, row.salt))
