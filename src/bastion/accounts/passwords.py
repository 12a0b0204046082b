"""Password hashing (argon2id) and the password policy.

Hashes are argon2id in the PHC string format, made by ``argon2-cffi`` with its default
parameters (RFC 9106's low-memory profile) unless a hasher is given. A stored hash made
with other parameters still verifies and is flagged for rehashing, so raising the cost
upgrades each account at its next sign-in.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bastion.accounts.errors import PasswordRejected

MIN_LENGTH = 12
"""Fewest characters in a password."""
MAX_BYTES = 1024
"""Most bytes (UTF-8) in a password: longer ones are refused before hashing."""


class Passwords:
    """Hashes and verifies passwords with one argon2id hasher."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher(type=Type.ID)
        if self._hasher.type is not Type.ID:
            raise ValueError("passwords are hashed with argon2id only")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        """Whether ``password`` matches ``stored``; a malformed hash never matches."""
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made with other parameters than this hasher's."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True


def check_policy(password: str, username: str) -> None:
    """Refuse a new password that is too short, too long or the username itself."""
    if len(password.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise PasswordRejected(
            f"a password may have at most {MAX_BYTES} bytes", code="password_too_long"
        )
    if len(password) < MIN_LENGTH:
        raise PasswordRejected(
            f"a password needs at least {MIN_LENGTH} characters", code="password_too_short"
        )
    if password.strip().casefold() == username.strip().casefold():
        raise PasswordRejected("the password must not be the username", code="password_is_username")
