"""People's accounts: argon2id passwords and their policy, sign-in with lockout and rate
limits, sessions (idle and absolute expiry, revocation, CSRF), tenant isolation, the
separation of session tokens from API keys, the migration and the `bastion users`
commands — on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from argon2 import PasswordHasher
from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bastion.accounts.config import AccountsConfig
from bastion.accounts.errors import (
    AccountDisabled,
    AccountLocked,
    CsrfRejected,
    InvalidCredentials,
    InvalidRole,
    InvalidUsername,
    PasswordRejected,
    TenantNotFound,
    TooManyAttempts,
    UsernameTaken,
    UserNotFound,
)
from bastion.accounts.passwords import Passwords, check_policy
from bastion.accounts.service import AccountService
from bastion.accounts.tables import User, UserSession
from bastion.cli import app as cli
from bastion.process.components import Roles, build_components
from bastion.store.db import alembic_config, make_engine, migrate, session_factory
from bastion.store.repo import Repo
from bastion.store.tables import Tenant
from tests.support.app import running
from tests.support.auth import bearer
from tests.support.databases import sqlite_url
from tests.support.settings import make_settings

PASSWORD = "correct horse battery"
OTHER_PASSWORD = "staple paper clip tree"
# cheap argon2id parameters: these tests hash many passwords
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
runner = CliRunner()


@dataclass
class Clock:
    """The service's ``now``, moved by the tests instead of sleeping."""

    at: datetime = field(default_factory=lambda: datetime(2026, 12, 2, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class CountingPasswords(Passwords):
    """Counts verifications, to see that an unknown username costs one too."""

    def __init__(self, hasher: PasswordHasher) -> None:
        super().__init__(hasher)
        self.verified = 0

    def verify(self, stored: str, password: str) -> bool:
        self.verified += 1
        return super().verify(stored, password)


@pytest.fixture
def url(database_url: str | None, tmp_path: Path) -> str:
    return database_url or sqlite_url(tmp_path)


@pytest.fixture
def db(url: str) -> Iterator[sessionmaker[Session]]:
    """A migrated database with the tenants ``default`` and ``other``."""
    engine = make_engine(url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        repo = Repo(sessions)
        repo.ensure_tenant("default")
        repo.ensure_tenant("other")
        yield sessions
    finally:
        engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_service(
    db: sessionmaker[Session], clock: Clock, passwords: Passwords | None = None, **config: Any
) -> AccountService:
    return AccountService(
        db, AccountsConfig(**config), passwords=passwords or Passwords(FAST), now=clock
    )


@pytest.fixture
def svc(db: sessionmaker[Session], clock: Clock) -> AccountService:
    return make_service(db, clock)


def stored_user(db: sessionmaker[Session], user_id: str) -> User:
    with db() as s:
        user = s.get(User, user_id)
        assert user is not None
        return user


def stored_session(db: sessionmaker[Session], session_id: str) -> UserSession:
    with db() as s:
        row = s.get(UserSession, session_id)
        assert row is not None
        return row


# ---- passwords ---------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_never_plain(
    svc: AccountService, db: sessionmaker[Session]
) -> None:
    user = svc.create_user("default", "Alice", PASSWORD, "admin", display_name="Alice A.")
    row = stored_user(db, user.id)
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    assert row.username == "Alice" and row.username_key == "alice"
    assert row.display_name == "Alice A." and row.role == "admin" and not row.disabled
    # the default hasher (no parameters given) is argon2id too
    default = Passwords()
    digest = default.hash(PASSWORD)
    assert digest.startswith("$argon2id$") and default.verify(digest, PASSWORD)
    assert not default.verify(digest, OTHER_PASSWORD)
    assert not default.verify("not a hash", PASSWORD)


def test_a_hash_with_old_parameters_is_upgraded_at_sign_in(
    db: sessionmaker[Session], clock: Clock
) -> None:
    old = make_service(db, clock)
    user = old.create_user("default", "alice", PASSWORD, "viewer")
    stronger = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    assert stronger.needs_rehash(stored_user(db, user.id).password_hash)
    make_service(db, clock, stronger).authenticate("default", "alice", PASSWORD)
    upgraded = stored_user(db, user.id).password_hash
    assert upgraded.startswith("$argon2id$") and not stronger.needs_rehash(upgraded)
    assert stronger.verify(upgraded, PASSWORD)


def test_password_policy_has_stable_codes(svc: AccountService) -> None:
    cases = [
        ("short pass", "password_too_short"),  # 10 characters
        ("é" * 513, "password_too_long"),  # 513 characters, 1026 bytes
        ("Bob.Builder-1", "password_is_username"),
    ]
    for password, code in cases:
        with pytest.raises(PasswordRejected) as info:
            svc.create_user("default", "bob.builder-1", password, "viewer")
        assert info.value.code == code and info.value.status == 422
    check_policy("x" * 12, "bob")  # exactly the minimum
    check_policy("x" * 1024, "bob")  # exactly the maximum in bytes
    assert svc.list_users("default") == []


def test_usernames_roles_and_tenants_are_checked(svc: AccountService) -> None:
    for bad in ("", "has space", "-dash", "ünïcode", "x" * 65):
        with pytest.raises(InvalidUsername):
            svc.create_user("default", bad, PASSWORD, "viewer")
    with pytest.raises(InvalidRole) as role:
        svc.create_user("default", "carol", PASSWORD, "root")
    assert role.value.code == "invalid_role"
    with pytest.raises(TenantNotFound):
        svc.create_user("nope", "carol", PASSWORD, "viewer")
    svc.create_user("default", "Carol", PASSWORD, "viewer")
    with pytest.raises(UsernameTaken) as taken:
        svc.create_user("default", "CAROL", OTHER_PASSWORD, "admin")
    assert taken.value.code == "username_taken" and taken.value.status == 409


# ---- signing in --------------------------------------------------------------


def test_authenticate_right_wrong_and_unknown(db: sessionmaker[Session], clock: Clock) -> None:
    passwords = CountingPasswords(FAST)
    svc = make_service(db, clock, passwords)
    user = svc.create_user("default", "Dave", PASSWORD, "moderator")
    found = svc.authenticate("default", "dave", PASSWORD, ip="10.0.0.1")
    assert found.id == user.id and found.last_login_at == clock.at
    assert stored_user(db, user.id).last_login_at == clock.at
    with pytest.raises(InvalidCredentials) as wrong:
        svc.authenticate("default", "dave", OTHER_PASSWORD, ip="10.0.0.1")
    before = passwords.verified
    with pytest.raises(InvalidCredentials) as unknown:
        svc.authenticate("default", "nobody", PASSWORD, ip="10.0.0.1")
    assert passwords.verified == before + 1  # a dummy hash is verified: about the same time
    assert wrong.value.code == unknown.value.code == "invalid_credentials"
    assert wrong.value.message == unknown.value.message
    assert wrong.value.status == unknown.value.status == 401
    with pytest.raises(InvalidCredentials):  # far too long: refused like a wrong password
        svc.authenticate("default", "dave", "x" * 2000)


def test_lockout_after_n_failures_and_release_after_the_lock_time(
    db: sessionmaker[Session], clock: Clock
) -> None:
    svc = make_service(db, clock, lockout_after=3, lockout_s=600)
    user = svc.create_user("default", "erin", PASSWORD, "viewer")
    # a success in between starts the count again
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            svc.authenticate("default", "erin", OTHER_PASSWORD)
    svc.authenticate("default", "erin", PASSWORD)
    assert stored_user(db, user.id).failed_logins == 0
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            svc.authenticate("default", "erin", OTHER_PASSWORD)
    assert stored_user(db, user.id).locked_until == clock.at + timedelta(seconds=600)
    clock.advance(599)
    with pytest.raises(AccountLocked) as locked:  # even with the right password
        svc.authenticate("default", "erin", PASSWORD)
    assert locked.value.code == "account_locked" and locked.value.details["retry_after_s"] == 1
    clock.advance(1)
    assert svc.authenticate("default", "erin", PASSWORD).id == user.id
    row = stored_user(db, user.id)
    assert row.failed_logins == 0 and row.locked_until is None


def test_rate_limit_per_username_and_per_address(db: sessionmaker[Session], clock: Clock) -> None:
    svc = make_service(db, clock, attempts_per_minute_per_username=3, attempts_per_minute_per_ip=5)
    svc.create_user("default", "frank", PASSWORD, "viewer")
    for i in range(3):
        with pytest.raises(InvalidCredentials):
            svc.authenticate("default", "frank", OTHER_PASSWORD, ip=f"10.0.0.{i}")
    with pytest.raises(TooManyAttempts) as limited:  # even with the right password
        svc.authenticate("default", "FRANK", PASSWORD, ip="10.0.0.9")
    assert limited.value.code == "too_many_attempts" and limited.value.status == 429
    # the same username in another tenant is another key
    with pytest.raises(InvalidCredentials):
        svc.authenticate("other", "frank", PASSWORD, ip="10.0.1.1")
    clock.advance(61)
    svc.authenticate("default", "frank", PASSWORD, ip="10.0.0.9")
    # one address trying many usernames
    clock.advance(61)
    for i in range(5):
        with pytest.raises(InvalidCredentials):
            svc.authenticate("default", f"guess{i}", PASSWORD, ip="192.0.2.7")
    with pytest.raises(TooManyAttempts):
        svc.authenticate("default", "frank", PASSWORD, ip="192.0.2.7")
    assert svc.authenticate("default", "frank", PASSWORD, ip="192.0.2.8").username == "frank"


def test_disabled_users_cannot_sign_in_and_lose_their_sessions(
    svc: AccountService, db: sessionmaker[Session]
) -> None:
    user = svc.create_user("default", "grace", PASSWORD, "moderator")
    signed = svc.start_session(svc.authenticate("default", "grace", PASSWORD))
    svc.disable("default", user.id)
    assert stored_user(db, user.id).disabled
    assert svc.resolve_session(signed.token) is None
    assert stored_session(db, signed.session.id).revoked_at is not None
    with pytest.raises(AccountDisabled) as disabled:
        svc.authenticate("default", "grace", PASSWORD)
    assert disabled.value.code == "account_disabled"
    with pytest.raises(InvalidCredentials):  # a wrong password tells nothing more
        svc.authenticate("default", "grace", OTHER_PASSWORD)
    with pytest.raises(AccountDisabled):
        svc.start_session(user)
    svc.enable("default", user.id)
    again = svc.start_session(svc.authenticate("default", "grace", PASSWORD))
    assert svc.resolve_session(again.token) is not None
    assert svc.resolve_session(signed.token) is None  # old sessions stay revoked


def test_roles_change(svc: AccountService, db: sessionmaker[Session]) -> None:
    user = svc.create_user("default", "heidi", PASSWORD, "viewer")
    svc.set_role("default", user.id, "admin")
    assert stored_user(db, user.id).role == "admin"
    with pytest.raises(InvalidRole):
        svc.set_role("default", user.id, "owner")
    assert svc.find("default", "HEIDI").id == user.id
    with pytest.raises(UserNotFound):
        svc.find("default", "nobody")


# ---- sessions ----------------------------------------------------------------


def test_sessions_resolve_and_store_only_a_hash(
    svc: AccountService, db: sessionmaker[Session], clock: Clock
) -> None:
    user = svc.create_user("default", "ivan", PASSWORD, "viewer")
    token, session = svc.start_session(user, user_agent="Firefox/130", ip="198.51.100.4")
    assert token.startswith("bss_") and len(token) == 4 + 43
    row = stored_session(db, session.id)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, row.csrf_token, row.id)
    assert row.user_agent == "Firefox/130" and row.ip == "198.51.100.4"
    assert row.expires_at == clock.at + timedelta(hours=12)
    found = svc.resolve_session(token)
    assert found is not None
    assert found[0].id == user.id and found[1].id == session.id
    clock.advance(1)
    second = svc.start_session(user)
    assert second.token != token and second.session.csrf_token != session.csrf_token
    assert len(session.csrf_token) >= 43
    listed = svc.list_sessions("default", user.id)
    assert [s.id for s in listed] == [second.session.id, session.id]  # newest first
    assert listed[1].user_agent == "Firefox/130"
    assert svc.resolve_session(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert svc.resolve_session("") is None


def test_idle_sessions_expire_and_touch_writes_are_bounded(
    db: sessionmaker[Session], clock: Clock
) -> None:
    svc = make_service(db, clock, idle_timeout_s=1800, touch_interval_s=60)
    user = svc.create_user("default", "judy", PASSWORD, "viewer")
    token, session = svc.start_session(user)
    started = clock.at
    clock.advance(30)
    svc.touch(session)  # within the touch interval: nothing written
    assert stored_session(db, session.id).last_seen_at == started
    clock.advance(1800 - 31)
    found = svc.resolve_session(token)
    assert found is not None
    svc.touch(found[1])
    assert stored_session(db, session.id).last_seen_at == clock.at
    clock.advance(1799)
    assert svc.resolve_session(token) is not None
    clock.advance(1)
    assert svc.resolve_session(token) is None


def test_sessions_end_at_their_absolute_lifetime(db: sessionmaker[Session], clock: Clock) -> None:
    svc = make_service(db, clock, session_lifetime_s=3600 * 12, idle_timeout_s=1800)
    user = svc.create_user("default", "ken", PASSWORD, "viewer")
    token, _ = svc.start_session(user)
    for _ in range(35):  # busy all day: touched every 20 minutes
        clock.advance(1200)
        found = svc.resolve_session(token)
        assert found is not None
        svc.touch(found[1])
    clock.advance(1199)  # 11 h 59 min 59 s
    assert svc.resolve_session(token) is not None
    clock.advance(1)
    assert svc.resolve_session(token) is None


def test_revoke_and_revoke_all(svc: AccountService, db: sessionmaker[Session]) -> None:
    user = svc.create_user("default", "leo", PASSWORD, "viewer")
    other = svc.create_user("default", "mia", PASSWORD, "viewer")
    first, second, third = (svc.start_session(user) for _ in range(3))
    theirs = svc.start_session(other)
    svc.revoke(first.session)
    assert svc.resolve_session(first.token) is None
    assert svc.resolve_session(second.token) is not None
    assert svc.revoke_all(user) == 2  # logout everywhere
    assert svc.resolve_session(second.token) is None
    assert svc.resolve_session(third.token) is None
    assert svc.resolve_session(theirs.token) is not None
    assert svc.list_sessions("default", user.id) == []


def test_reset_password_revokes_sessions_and_lifts_the_lock(
    db: sessionmaker[Session], clock: Clock
) -> None:
    svc = make_service(db, clock, lockout_after=2)
    user = svc.create_user("default", "nina", PASSWORD, "admin")
    signed = svc.start_session(user)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            svc.authenticate("default", "nina", OTHER_PASSWORD)
    with pytest.raises(PasswordRejected):
        svc.reset_password("default", user.id, "NINA")
    svc.reset_password("default", user.id, OTHER_PASSWORD)
    assert svc.resolve_session(signed.token) is None
    row = stored_user(db, user.id)
    assert row.locked_until is None and row.password_changed_at == clock.at
    with pytest.raises(InvalidCredentials):
        svc.authenticate("default", "nina", PASSWORD)
    assert svc.authenticate("default", "nina", OTHER_PASSWORD).id == user.id


def test_csrf_check(svc: AccountService) -> None:
    user = svc.create_user("default", "oscar", PASSWORD, "moderator")
    _, session = svc.start_session(user)
    _, other = svc.start_session(user)
    svc.check_csrf(session, session.csrf_token)
    for presented in (None, "", other.csrf_token, session.csrf_token[:-1], "é"):
        with pytest.raises(CsrfRejected) as info:
            svc.check_csrf(session, presented)
        assert info.value.code == "csrf_failed" and info.value.status == 403


# ---- tenants -----------------------------------------------------------------


def test_tenants_are_isolated(svc: AccountService, db: sessionmaker[Session]) -> None:
    mine = svc.create_user("default", "pat", PASSWORD, "admin")
    theirs = svc.create_user("other", "PAT", OTHER_PASSWORD, "viewer")
    assert mine.id != theirs.id
    assert [u.id for u in svc.list_users("default")] == [mine.id]
    assert [u.id for u in svc.list_users("other")] == [theirs.id]
    assert svc.authenticate("default", "pat", PASSWORD).id == mine.id
    assert svc.authenticate("other", "pat", OTHER_PASSWORD).id == theirs.id
    with pytest.raises(InvalidCredentials):
        svc.authenticate("other", "pat", PASSWORD)
    for call in (svc.get, svc.disable, svc.enable):
        with pytest.raises(UserNotFound):
            call("other", mine.id)
    with pytest.raises(UserNotFound):
        svc.set_role("other", mine.id, "viewer")
    with pytest.raises(UserNotFound):
        svc.reset_password("other", mine.id, "a brand new password")
    assert stored_user(db, mine.id).role == "admin" and not stored_user(db, mine.id).disabled

    signed = svc.start_session(mine)
    found = svc.resolve_session(signed.token)
    assert found is not None and found[0].tenant_id == "default"
    assert svc.list_sessions("other", mine.id) == []
    svc.revoke_all(theirs)
    assert svc.resolve_session(signed.token) is not None
    # a session row that names a user of another tenant resolves to nobody
    with db.begin() as s:
        s.execute(
            update(UserSession).where(UserSession.id == signed.session.id).values(user_id=theirs.id)
        )
    assert svc.resolve_session(signed.token) is None


def test_a_disabled_tenant_signs_nobody_in(svc: AccountService, db: sessionmaker[Session]) -> None:
    user = svc.create_user("other", "quinn", PASSWORD, "viewer")
    signed = svc.start_session(user)
    with db.begin() as s:
        s.execute(update(Tenant).where(Tenant.id == "other").values(disabled_at=datetime.now(UTC)))
    assert svc.resolve_session(signed.token) is None
    with pytest.raises(InvalidCredentials):
        svc.authenticate("other", "quinn", PASSWORD)


# ---- session tokens are not API keys -----------------------------------------


def test_an_api_key_is_not_a_session(svc: AccountService, db: sessionmaker[Session]) -> None:
    full, _ = Repo(db).create_key("default", "ci", ["admin"])
    assert svc.resolve_session(full) is None
    # nor a key whose hash happened to be stored as a session's
    user = svc.create_user("default", "rita", PASSWORD, "admin")
    _, session = svc.start_session(user)
    with db.begin() as s:
        s.execute(
            update(UserSession)
            .where(UserSession.id == session.id)
            .values(token_hash=hashlib.sha256(full.encode()).hexdigest())
        )
    assert svc.resolve_session(full) is None


async def test_a_session_token_is_not_an_api_key(url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", database_url=url, preload=False)
    async with running(settings) as api:
        accounts = AccountService(
            api.services.db_sessions, settings.accounts, passwords=Passwords(FAST)
        )
        user = accounts.create_user("default", "sam", PASSWORD, "admin")
        token, _ = accounts.start_session(user)
        assert api.services.repo.authenticate(token) is None
        r = await api.client.get("/v1/keys", headers=bearer(token))
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_api_key"


async def test_components_carry_the_account_service(url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", database_url=url, preload=False)
    parts = await build_components(settings, Roles())
    try:
        assert isinstance(parts.accounts, AccountService)
        assert parts.accounts.config == settings.accounts
        assert not parts.accounts.has_users()
    finally:
        await parts.aclose()


# ---- migration ---------------------------------------------------------------


def test_the_migration_adds_and_removes_the_tables(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate(engine)
        assert {"users", "user_sessions"} <= set(inspect(engine).get_table_names())
        indexes = {i["name"]: i for i in inspect(engine).get_indexes("user_sessions")}
        assert indexes["ix_user_sessions_token_hash"]["unique"]
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0009")
        assert not {"users", "user_sessions"} & set(inspect(engine).get_table_names())
        migrate(engine)
        assert {"users", "user_sessions"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# ---- the command line ----------------------------------------------------------


def _users(args: list[str], url: str, tmp_path: Path, stdin: str | None = None) -> Any:
    env = {"BASTION_DATABASE_URL": url, "BASTION_DATA_DIR": str(tmp_path / "data")}
    return runner.invoke(cli, ["users", *args], input=stdin, env=env)


def test_cli_manages_users(url: str, tmp_path: Path, clock: Clock) -> None:
    res = _users(
        ["create", "--username", "Admin", "--role", "admin", "--password-stdin"],
        url,
        tmp_path,
        PASSWORD + "\n",
    )
    assert res.exit_code == 0, res.output
    res = _users(
        [
            *("create", "--tenant", "default", "--username", "viv", "--role", "viewer"),
            *("--display-name", "Viv V.", "--password-stdin"),
        ],
        url,
        tmp_path,
        "too short\n",
    )
    assert res.exit_code == 2 and "password_too_short" in res.output
    res = _users(
        ["create", "--username", "admin", "--role", "viewer", "--password-stdin"],
        url,
        tmp_path,
        OTHER_PASSWORD + "\n",
    )
    assert res.exit_code == 2 and "username_taken" in res.output
    res = _users(
        ["create", "--username", "viv", "--role", "boss", "--password-stdin"],
        url,
        tmp_path,
        OTHER_PASSWORD + "\n",
    )
    assert res.exit_code == 2 and "invalid_role" in res.output

    res = _users(["list", "--json"], url, tmp_path)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["tenant"], r["username"], r["role"], r["disabled"]) for r in rows] == [
        ("default", "Admin", "admin", False)
    ]
    assert PASSWORD not in res.stdout and "argon2" not in res.stdout
    res = _users(["list", "--tenant", "default"], url, tmp_path)
    assert res.exit_code == 0 and "Admin" in res.stdout
    res = _users(["list", "--tenant", "nope", "--json"], url, tmp_path)
    assert res.exit_code == 0 and json.loads(res.stdout) == []

    engine = make_engine(url)
    try:
        accounts = make_service(session_factory(engine), clock)
        user = accounts.authenticate("default", "admin", PASSWORD)
        signed = accounts.start_session(user)

        assert _users(["disable", "ADMIN", "--tenant", "default"], url, tmp_path).exit_code == 0
        assert accounts.resolve_session(signed.token) is None
        with pytest.raises(AccountDisabled):
            accounts.authenticate("default", "admin", PASSWORD)
        assert json.loads(_users(["list", "--json"], url, tmp_path).stdout)[0]["disabled"]
        assert _users(["enable", "admin"], url, tmp_path).exit_code == 0
        signed = accounts.start_session(accounts.authenticate("default", "admin", PASSWORD))

        res = _users(["reset-password", "admin", "--password-stdin"], url, tmp_path, "admin\n")
        assert res.exit_code == 2 and "password_too_short" in res.output
        res = _users(
            ["reset-password", "admin", "--tenant", "default", "--password-stdin"],
            url,
            tmp_path,
            OTHER_PASSWORD + "\r\n",
        )
        assert res.exit_code == 0, res.output
        assert accounts.resolve_session(signed.token) is None
        assert accounts.authenticate("default", "admin", OTHER_PASSWORD).id == user.id

        res = _users(["disable", "ghost"], url, tmp_path)
        assert res.exit_code == 2 and "user_not_found" in res.output
        res = _users(["enable", "admin", "--tenant", "other"], url, tmp_path)
        assert res.exit_code == 2 and "user_not_found" in res.output
        with session_factory(engine)() as s:
            assert s.scalars(select(User.username)).all() == ["Admin"]
    finally:
        engine.dispose()


def test_cli_asks_for_the_password_twice(url: str, tmp_path: Path) -> None:
    res = _users(
        ["create", "--username", "walt", "--role", "moderator"],
        url,
        tmp_path,
        f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert res.exit_code == 0, res.output
    assert PASSWORD not in res.output  # hidden input is not echoed
    res = _users(
        ["reset-password", "walt"],
        url,
        tmp_path,
        f"{PASSWORD}\nsomething else\n{OTHER_PASSWORD}\n{OTHER_PASSWORD}\n",
    )
    assert res.exit_code == 0, res.output
    engine = make_engine(url)
    try:
        accounts = AccountService(session_factory(engine), AccountsConfig())
        assert accounts.authenticate("default", "walt", OTHER_PASSWORD).role == "moderator"
    finally:
        engine.dispose()
