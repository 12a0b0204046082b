"""The API keys the tests start their apps with, and the headers that carry them."""

from __future__ import annotations

# The bootstrap admin key of every app a test starts (settings.admin_api_key).
ADMIN_KEY = "test-admin-key-0123456789abcdef"


def bearer(key: str) -> dict[str, str]:
    """The ``Authorization`` header that presents ``key``."""
    return {"Authorization": f"Bearer {key}"}


AUTH = bearer(ADMIN_KEY)
