"""API key format and hashing: ``bst_<id>_<secret>``, only a hash of the secret is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "bst"
_KEY_RE = re.compile(r"^bst_([A-Za-z0-9]{12})_([A-Za-z0-9_\-]{20,128})$")
SCOPES = ("moderate", "read", "admin")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: str


def new_key() -> tuple[str, str, str]:
    """A fresh key: (full key shown once, key id, stored hash)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}_{key_id}_{secret}", key_id, hash_secret(key_id, secret)


def hash_secret(key_id: str, secret: str) -> str:
    # keys are 256-bit random: a salted fast hash is enough (no password stretching needed)
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


def parse(key: str) -> ParsedKey | None:
    m = _KEY_RE.match(key.strip())
    return ParsedKey(m.group(1), m.group(2)) if m else None


def from_fixed(key: str) -> tuple[str, str]:
    """Key id and hash for an operator-chosen admin key (BASTION_ADMIN_API_KEY).

    A key in Bastion's own format keeps its id; any other string (at least 16
    characters) gets an id derived from it.
    """
    parsed = parse(key)
    if parsed:
        return parsed.key_id, hash_secret(parsed.key_id, parsed.secret)
    if len(key) < 16:
        raise ValueError("BASTION_ADMIN_API_KEY must be at least 16 characters")
    key_id = "x" + hashlib.sha256(key.encode()).hexdigest()[:11]
    return key_id, hash_secret(key_id, key)


def lookup_id(key: str) -> tuple[str, str] | None:
    """(key id, hash) for a presented key, in either format."""
    parsed = parse(key)
    if parsed:
        return parsed.key_id, hash_secret(parsed.key_id, parsed.secret)
    if len(key) >= 16:
        return from_fixed(key)
    return None


def verify(stored_hash: str, presented_hash: str) -> bool:
    return hmac.compare_digest(stored_hash, presented_hash)
