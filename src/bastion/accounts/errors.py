"""What can go wrong with accounts, each with a stable code.

Sign-in answers ``invalid_credentials`` for an unknown username and for a wrong password
alike (same message), so an answer never tells which usernames exist.
"""

from __future__ import annotations

from bastion.errors import AuthError, BastionError, Forbidden, InputError, NotFound


class InvalidCredentials(AuthError):
    code = "invalid_credentials"
    status = 401

    def __init__(self) -> None:
        super().__init__("wrong username or password")


class AccountLocked(AuthError):
    """Too many wrong passwords in a row: sign-in is refused until the lock ends."""

    code = "account_locked"
    status = 423


class AccountDisabled(Forbidden):
    code = "account_disabled"
    status = 403


class TooManyAttempts(BastionError):
    """Too many sign-in attempts from one address or for one username in a minute."""

    code = "too_many_attempts"
    status = 429


class CsrfRejected(Forbidden):
    code = "csrf_failed"
    status = 403


class UserNotFound(NotFound):
    code = "user_not_found"
    status = 404


class TenantNotFound(NotFound):
    code = "tenant_not_found"
    status = 404


class SessionNotFound(NotFound):
    code = "session_not_found"
    status = 404


class WrongPassword(Forbidden):
    """The current password given to change one's own password is not the right one."""

    code = "wrong_password"
    status = 403


class UsernameTaken(BastionError):
    code = "username_taken"
    status = 409


class InvalidUsername(InputError):
    code = "invalid_username"
    status = 422


class InvalidRole(InputError):
    code = "invalid_role"
    status = 422


class PasswordRejected(InputError):
    """A new password the policy refuses; the code says which rule
    (``password_too_short``, ``password_too_long``, ``password_is_username``)."""

    code = "password_rejected"
    status = 422
