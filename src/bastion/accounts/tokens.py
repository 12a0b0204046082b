"""Session tokens: ``bss_<secret>``, 256 random bits; only their SHA-256 is stored.

The ``bss_`` prefix tells a person's session token from an API key (``bst_…``, see
:mod:`bastion.store.keys`): session lookups refuse anything that is not shaped like a
session token, so neither kind of credential can stand in for the other.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "bss"
_TOKEN_RE = re.compile(r"^bss_[A-Za-z0-9_\-]{43}$")


def new_token() -> str:
    """A fresh session token (shown to the browser only, as a cookie)."""
    return f"{PREFIX}_{secrets.token_urlsafe(32)}"


def is_session_token(value: str) -> bool:
    return _TOKEN_RE.fullmatch(value) is not None


def token_hash(token: str) -> str:
    # tokens are 256-bit random: a fast hash is enough (no stretching needed)
    return hashlib.sha256(token.encode()).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)
