"""People's accounts: users of a tenant, signing in, and the sessions that keep them in.

:class:`AccountService` is the one way to read or change accounts. Every lookup is
scoped to a tenant: a username, a user id or a session of one tenant never finds
anything of another. Sign-in (:meth:`AccountService.authenticate`) checks the per-minute
attempt limits, the lock and the password, in that order, and answers an unknown
username exactly like a wrong password (a dummy hash is verified, so it takes about as
long). Sessions are started with a random ``bss_`` token that only the browser keeps;
:meth:`AccountService.resolve_session` takes it back to the user while the session is
neither revoked, past its absolute lifetime, idle too long, nor its user disabled.

Times come from the ``now`` callable, so tests move the clock instead of sleeping.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bastion.accounts import tokens
from bastion.accounts.config import AccountsConfig
from bastion.accounts.errors import (
    AccountDisabled,
    AccountLocked,
    CsrfRejected,
    InvalidCredentials,
    InvalidRole,
    InvalidUsername,
    SessionNotFound,
    TenantNotFound,
    TooManyAttempts,
    UsernameTaken,
    UserNotFound,
    WrongPassword,
)
from bastion.accounts.passwords import MAX_BYTES, Passwords, check_policy
from bastion.accounts.ratelimit import AttemptWindow
from bastion.accounts.tables import ROLES, User, UserSession
from bastion.store.tables import Tenant

_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@\-]{0,63}$")
MAX_USER_AGENT = 512
MAX_IP = 64


def _utcnow() -> datetime:
    return datetime.now(UTC)


def normalise_username(username: str) -> str:
    """The form usernames are compared in (ASCII only, so case-folding is lower-casing)."""
    return username.strip().lower()


class SignedIn(NamedTuple):
    """A session just started: the token (for the cookie, never stored) and its row."""

    token: str
    session: UserSession


class AccountService:
    """Users, sign-in and sessions on the database of ``sessions``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: AccountsConfig,
        *,
        passwords: Passwords | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.passwords = passwords or Passwords()
        self.now = now
        self._per_ip = AttemptWindow(config.attempts_per_minute_per_ip)
        self._per_username = AttemptWindow(config.attempts_per_minute_per_username)

    @cached_property
    def _dummy_hash(self) -> str:
        """Verified for unknown usernames so they cost what a wrong password costs."""
        return self.passwords.hash(tokens.new_csrf_token())

    # ---- users -----------------------------------------------------------
    def create_user(
        self,
        tenant_id: str,
        username: str,
        password: str,
        role: str,
        *,
        display_name: str = "",
    ) -> User:
        """A new user of ``tenant_id``; the password must pass the policy."""
        username = username.strip()
        if not _USERNAME_RE.fullmatch(username):
            raise InvalidUsername(
                "a username has 1 to 64 characters: ASCII letters, digits and . _ @ -, "
                "starting with a letter or digit"
            )
        _check_role(role)
        check_policy(password, username)
        now = self.now()
        user = User(
            id="usr_" + uuid.uuid4().hex,
            tenant_id=tenant_id,
            username=username,
            username_key=normalise_username(username),
            display_name=display_name.strip()[:200],
            role=role,
            password_hash=self.passwords.hash(password),
            disabled=False,
            failed_logins=0,
            password_changed_at=now,
            created_at=now,
        )
        try:
            with self.sessions.begin() as s:
                if s.get(Tenant, tenant_id) is None:
                    raise TenantNotFound(f"no tenant '{tenant_id}'")
                s.add(user)
        except IntegrityError as exc:
            raise UsernameTaken(f"the username '{username}' is taken in this tenant") from exc
        return user

    def list_users(self, tenant_id: str) -> list[User]:
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(User).where(User.tenant_id == tenant_id).order_by(User.username_key)
                )
            )

    def all_users(self) -> list[User]:
        """Every tenant's users, for the operator's command line only."""
        with self.sessions() as s:
            return list(s.scalars(select(User).order_by(User.tenant_id, User.username_key)))

    def has_users(self) -> bool:
        with self.sessions() as s:
            return s.scalars(select(User.id).limit(1)).first() is not None

    def get(self, tenant_id: str, user_id: str) -> User:
        with self.sessions() as s:
            return _user_in(s, tenant_id, user_id)

    def find(self, tenant_id: str, username: str) -> User:
        """The user of ``tenant_id`` with ``username`` (any case)."""
        with self.sessions() as s:
            user = _by_username(s, tenant_id, username)
        if user is None:
            raise UserNotFound(f"no user '{username}' in tenant '{tenant_id}'")
        return user

    def disable(self, tenant_id: str, user_id: str) -> User:
        """The user can no longer sign in; their sessions are revoked."""
        with self.sessions.begin() as s:
            user = _user_in(s, tenant_id, user_id)
            user.disabled = True
            self._revoke_all_in(s, user)
        return user

    def enable(self, tenant_id: str, user_id: str) -> User:
        with self.sessions.begin() as s:
            user = _user_in(s, tenant_id, user_id)
            user.disabled = False
        return user

    def set_role(self, tenant_id: str, user_id: str, role: str) -> User:
        _check_role(role)
        with self.sessions.begin() as s:
            user = _user_in(s, tenant_id, user_id)
            user.role = role
        return user

    def reset_password(self, tenant_id: str, user_id: str, password: str) -> User:
        """A new password (policy-checked); clears the lock and revokes every session."""
        with self.sessions.begin() as s:
            user = _user_in(s, tenant_id, user_id)
            check_policy(password, user.username)
            user.password_hash = self.passwords.hash(password)
            user.password_changed_at = self.now()
            user.failed_logins, user.locked_until = 0, None
            self._revoke_all_in(s, user)
        return user

    def change_password(
        self,
        tenant_id: str,
        user_id: str,
        current: str,
        new: str,
        *,
        keep_session_id: str | None = None,
    ) -> User:
        """A person changes their own password: ``current`` must be right (attempts
        count against the per-username sign-in limit, so this is no faster way to guess
        it), ``new`` must pass the policy. Every session but ``keep_session_id`` (the one
        the change was made in) is revoked."""
        now = self.now()
        user = self.get(tenant_id, user_id)
        key = f"{tenant_id}\x00{user.username_key}"
        if not self._per_username.hit(key, now):
            raise TooManyAttempts(
                "too many password attempts: wait a minute", details={"retry_after_s": 60}
            )
        too_long = len(current.encode("utf-8", "surrogatepass")) > MAX_BYTES
        if too_long or not self.passwords.verify(user.password_hash, current):
            raise WrongPassword("the current password is not right")
        check_policy(new, user.username)
        with self.sessions.begin() as s:
            row = _user_in(s, tenant_id, user_id)
            row.password_hash = self.passwords.hash(new)
            row.password_changed_at = now
            s.execute(
                update(UserSession)
                .where(
                    UserSession.user_id == row.id,
                    UserSession.tenant_id == tenant_id,
                    UserSession.revoked_at.is_(None),
                    UserSession.id != (keep_session_id or ""),
                )
                .values(revoked_at=now)
            )
        return row

    # ---- signing in ------------------------------------------------------
    def authenticate(
        self, tenant_id: str, username: str, password: str, ip: str | None = None
    ) -> User:
        """The user whose username and password these are, or an error:
        ``too_many_attempts``, ``invalid_credentials`` (unknown user or wrong password),
        ``account_locked``, ``account_disabled`` (only told with the right password)."""
        now = self.now()
        key = normalise_username(username)
        allowed = self._per_username.hit(f"{tenant_id}\x00{key}", now)
        if ip is not None:
            allowed = self._per_ip.hit(ip, now) and allowed
        if not allowed:
            raise TooManyAttempts(
                "too many sign-in attempts: wait a minute", details={"retry_after_s": 60}
            )
        too_long = len(password.encode("utf-8", "surrogatepass")) > MAX_BYTES
        with self.sessions() as s:
            user = _by_username(s, tenant_id, username)
            tenant = s.get(Tenant, tenant_id)
        if user is None or tenant is None or tenant.disabled_at is not None or too_long:
            self.passwords.verify(self._dummy_hash, "" if too_long else password)
            raise InvalidCredentials()
        if user.locked_until is not None and user.locked_until > now:
            self.passwords.verify(self._dummy_hash, password)
            wait = max(1, round((user.locked_until - now).total_seconds()))
            raise AccountLocked(
                f"too many wrong passwords: try again in {wait} s",
                details={"retry_after_s": wait},
            )
        if not self.passwords.verify(user.password_hash, password):
            self._count_failure(user, now)
            raise InvalidCredentials()
        if user.disabled:
            raise AccountDisabled("this account is disabled")
        with self.sessions.begin() as s:
            row = _user_in(s, tenant_id, user.id)
            row.failed_logins, row.locked_until, row.last_login_at = 0, None, now
            if self.passwords.needs_rehash(row.password_hash):
                row.password_hash = self.passwords.hash(password)
        return row

    def _count_failure(self, user: User, now: datetime) -> None:
        """One more wrong password, counted in the database (concurrent attempts add
        up); the ``lockout_after``-th locks the account for ``lockout_s``."""
        with self.sessions.begin() as s:
            failures = s.execute(
                update(User)
                .where(User.id == user.id, User.tenant_id == user.tenant_id)
                .values(failed_logins=User.failed_logins + 1)
                .returning(User.failed_logins)
            ).scalar_one()
            if failures >= self.config.lockout_after:
                s.execute(
                    update(User)
                    .where(User.id == user.id)
                    .values(
                        failed_logins=0,
                        locked_until=now + timedelta(seconds=self.config.lockout_s),
                    )
                )

    # ---- sessions --------------------------------------------------------
    def start_session(self, user: User, *, user_agent: str = "", ip: str | None = None) -> SignedIn:
        """A new session for ``user`` (who must still be enabled)."""
        now = self.now()
        token = tokens.new_token()
        row = UserSession(
            id="ses_" + uuid.uuid4().hex,
            user_id=user.id,
            tenant_id=user.tenant_id,
            token_hash=tokens.token_hash(token),
            csrf_token=tokens.new_csrf_token(),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=self.config.session_lifetime_s),
            user_agent=user_agent[:MAX_USER_AGENT],
            ip=ip[:MAX_IP] if ip else None,
        )
        with self.sessions.begin() as s:
            current = _user_in(s, user.tenant_id, user.id)
            if current.disabled:
                raise AccountDisabled("this account is disabled")
            s.add(row)
        return SignedIn(token, row)

    def resolve_session(self, token: str) -> tuple[User, UserSession] | None:
        """The user and session of a session token, or None: not a session token (an
        API key included), unknown, revoked, past its lifetime, idle too long, or its
        user disabled (or of a disabled tenant)."""
        if not tokens.is_session_token(token):
            return None
        now = self.now()
        idle = timedelta(seconds=self.config.idle_timeout_s)
        with self.sessions() as s:
            row = s.scalars(
                select(UserSession).where(UserSession.token_hash == tokens.token_hash(token))
            ).first()
            if row is None or row.revoked_at is not None:
                return None
            if row.expires_at <= now or row.last_seen_at + idle <= now:
                return None
            user = s.get(User, row.user_id)
            if user is None or user.tenant_id != row.tenant_id or user.disabled:
                return None
            tenant = s.get(Tenant, row.tenant_id)
            if tenant is None or tenant.disabled_at is not None:
                return None
            return user, row

    def touch(self, session: UserSession) -> None:
        """Note that ``session`` was used now; written at most every
        ``touch_interval_s``, so a busy portal does not write on every request."""
        now = self.now()
        if now - session.last_seen_at < timedelta(seconds=self.config.touch_interval_s):
            return
        with self.sessions.begin() as s:
            s.execute(
                update(UserSession)
                .where(UserSession.id == session.id, UserSession.tenant_id == session.tenant_id)
                .values(last_seen_at=now)
            )
        session.last_seen_at = now

    def list_sessions(self, tenant_id: str, user_id: str) -> list[UserSession]:
        """A user's sessions that are still open, newest first (when, where, which
        browser)."""
        now = self.now()
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(UserSession)
                    .where(
                        UserSession.tenant_id == tenant_id,
                        UserSession.user_id == user_id,
                        UserSession.revoked_at.is_(None),
                        UserSession.expires_at > now,
                    )
                    .order_by(UserSession.created_at.desc())
                )
            )

    def revoke(self, session: UserSession) -> None:
        """Sign out: the session's token stops working."""
        now = self.now()
        with self.sessions.begin() as s:
            s.execute(
                update(UserSession)
                .where(
                    UserSession.id == session.id,
                    UserSession.tenant_id == session.tenant_id,
                    UserSession.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
        session.revoked_at = now

    def revoke_session(self, tenant_id: str, user_id: str, session_id: str) -> None:
        """Sign out one open session of a user (``session_not_found`` when it is not
        theirs or already over)."""
        now = self.now()
        with self.sessions.begin() as s:
            result = s.execute(
                update(UserSession)
                .where(
                    UserSession.id == session_id,
                    UserSession.user_id == user_id,
                    UserSession.tenant_id == tenant_id,
                    UserSession.revoked_at.is_(None),
                    UserSession.expires_at > now,
                )
                .values(revoked_at=now)
            )
            if int(result.rowcount) == 0:  # type: ignore[attr-defined]
                raise SessionNotFound("no such open session")

    def revoke_all(self, user: User) -> int:
        """Sign out everywhere: every open session of ``user``; how many were open."""
        with self.sessions.begin() as s:
            return self._revoke_all_in(s, user)

    def _revoke_all_in(self, s: Session, user: User) -> int:
        result = s.execute(
            update(UserSession)
            .where(
                UserSession.user_id == user.id,
                UserSession.tenant_id == user.tenant_id,
                UserSession.revoked_at.is_(None),
            )
            .values(revoked_at=self.now())
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def check_csrf(self, session: UserSession, presented: str | None) -> None:
        """Refuse a state-changing request whose CSRF token is not the session's."""
        if not presented or not hmac.compare_digest(
            session.csrf_token.encode(), presented.encode("utf-8", "surrogatepass")
        ):
            raise CsrfRejected("missing or wrong CSRF token")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRole(f"unknown role '{role}'; roles: {', '.join(ROLES)}")


def _by_username(s: Session, tenant_id: str, username: str) -> User | None:
    return s.scalars(
        select(User).where(
            User.tenant_id == tenant_id, User.username_key == normalise_username(username)
        )
    ).first()


def _user_in(s: Session, tenant_id: str, user_id: str) -> User:
    user = s.get(User, user_id)
    if user is None or user.tenant_id != tenant_id:
        raise UserNotFound(f"no user '{user_id}' in tenant '{tenant_id}'")
    return user
