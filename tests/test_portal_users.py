"""People administered in the portal: admins list, create, disable and enable users,
change roles, reset passwords and sign people out everywhere, within their tenant only;
everyone sees their own sessions, ends one, changes their own password (the current one
required) and signs out everywhere. The account service's methods behind it, on SQLite
and PostgreSQL; the pages over HTTP and in a real browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from sqlalchemy.orm import Session, sessionmaker

from bastion.accounts.config import AccountsConfig
from bastion.accounts.errors import (
    InvalidCredentials,
    PasswordRejected,
    SessionNotFound,
    TooManyAttempts,
    UserNotFound,
    WrongPassword,
)
from bastion.accounts.passwords import Passwords
from bastion.accounts.service import AccountService
from bastion.config import Settings
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo
from tests.support.app import Api, running
from tests.support.browser import Credentials, portal, portal_settings
from tests.support.databases import sqlite_url
from tests.support.people import SignedIn, login_form, make_person, sign_in
from tests.support.settings import make_settings

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple paper clip tree"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


# ---- the account service -----------------------------------------------------------


@dataclass
class Clock:
    at: datetime = field(default_factory=lambda: datetime(2026, 12, 2, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(database_url: str | None, tmp_path: Path, clock: Clock) -> Iterator[AccountService]:
    """The service on a migrated database with the tenants ``default`` and ``other``."""
    engine = make_engine(database_url or sqlite_url(tmp_path))
    try:
        migrate(engine)
        sessions: sessionmaker[Session] = session_factory(engine)
        repo = Repo(sessions)
        repo.ensure_tenant("default")
        repo.ensure_tenant("other")
        config = AccountsConfig(attempts_per_minute_per_username=5)
        yield AccountService(sessions, config, passwords=Passwords(FAST), now=clock)
    finally:
        engine.dispose()


def test_changing_ones_own_password_needs_the_current_one(
    accounts: AccountService, clock: Clock
) -> None:
    user = accounts.create_user("default", "alice", PASSWORD, "moderator")
    here = accounts.start_session(user)
    elsewhere = accounts.start_session(user)
    with pytest.raises(WrongPassword):
        accounts.change_password("default", user.id, "not it at all", NEW_PASSWORD)
    with pytest.raises(PasswordRejected) as short:
        accounts.change_password("default", user.id, PASSWORD, "short")
    assert short.value.code == "password_too_short"
    # nothing changed so far: both sessions work, the old password signs in
    assert accounts.resolve_session(elsewhere.token) is not None
    assert accounts.authenticate("default", "alice", PASSWORD).id == user.id
    accounts.change_password(
        "default", user.id, PASSWORD, NEW_PASSWORD, keep_session_id=here.session.id
    )
    assert accounts.resolve_session(here.token) is not None  # the one it was made in
    assert accounts.resolve_session(elsewhere.token) is None
    clock.advance(61)  # four attempts so far: a new minute for the next ones
    with pytest.raises(InvalidCredentials):
        accounts.authenticate("default", "alice", PASSWORD)
    assert accounts.authenticate("default", "alice", NEW_PASSWORD).id == user.id
    # guesses at the current password count against the per-username limit (5 a minute)
    clock.advance(61)
    for _ in range(5):
        with pytest.raises(WrongPassword):
            accounts.change_password("default", user.id, "guess " * 3, PASSWORD)
    with pytest.raises(TooManyAttempts):
        accounts.change_password("default", user.id, NEW_PASSWORD, PASSWORD)
    clock.advance(61)
    # a user of another tenant is not found
    with pytest.raises(UserNotFound):
        accounts.change_password("other", user.id, NEW_PASSWORD, PASSWORD)


def test_one_session_is_revoked_and_only_ones_own(accounts: AccountService) -> None:
    alice = accounts.create_user("default", "alice", PASSWORD, "admin")
    bob = accounts.create_user("default", "bob", PASSWORD, "viewer")
    mine, other = accounts.start_session(alice), accounts.start_session(alice)
    bobs = accounts.start_session(bob)
    for tenant, user_id, session_id in [
        ("default", alice.id, bobs.session.id),  # someone else's
        ("other", alice.id, other.session.id),  # through another tenant
        ("default", alice.id, "ses_" + "0" * 32),  # none such
    ]:
        with pytest.raises(SessionNotFound):
            accounts.revoke_session(tenant, user_id, session_id)
    assert accounts.resolve_session(bobs.token) is not None
    accounts.revoke_session("default", alice.id, other.session.id)
    assert accounts.resolve_session(other.token) is None
    assert accounts.resolve_session(mine.token) is not None
    assert [s.id for s in accounts.list_sessions("default", alice.id)] == [mine.session.id]
    with pytest.raises(SessionNotFound):  # already over
        accounts.revoke_session("default", alice.id, other.session.id)


# ---- the pages ---------------------------------------------------------------------


def settings_in(folder: Path) -> Settings:
    """No models (these pages need none), cookies over plain HTTP, and room for many
    sign-ins from one address."""
    settings = portal_settings(make_settings(folder, preload=False))
    accounts = settings.accounts.model_copy(update={"attempts_per_minute_per_ip": 10_000})
    return settings.model_copy(update={"accounts": accounts})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running(settings_in(tmp_path_factory.mktemp("portal-users"))) as started:
        yield started


@asynccontextmanager
async def person(api: Api, role: str, tenant: str) -> AsyncIterator[SignedIn]:
    who = await sign_in(api, role, tenant)
    try:
        yield who
    finally:
        await who.client.aclose()


@asynccontextmanager
async def browser_client(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bastion") as client:
        yield client


async def post_login(
    client: httpx.AsyncClient, tenant: str, username: str, password: str
) -> httpx.Response:
    token = await login_form(client)
    data = {"tenant": tenant, "username": username, "password": password, "login_csrf": token}
    return await client.post("/portal/login", data=data)


async def signed_in_still(client: httpx.AsyncClient) -> bool:
    r = await client.get("/portal/account")
    return r.status_code == 200


def error_code(html: str) -> str | None:
    found = re.search(r'class="error" role="alert" data-code="([a-z_]+)"', html)
    return found.group(1) if found else None


async def test_only_admins_manage_users(api: Api) -> None:
    tenant = await api.new_tenant()
    target, _, _ = await make_person(api, "viewer", tenant.id)
    async with browser_client(api) as nobody:
        for path in ("/portal/users", f"/portal/users/{target}", "/portal/account"):
            r = await nobody.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")
    for role in ("viewer", "moderator"):
        async with person(api, role, tenant.id) as who:
            r = await who.client.get("/portal/rules")
            assert 'data-nav="users"' not in r.text
            for path in ("/portal/users", f"/portal/users/{target}"):
                r = await who.client.get(path)
                assert r.status_code == 403 and 'data-code="role_forbidden"' in r.text
            for path, data in [
                ("/portal/users", {"username": "sneaky", "password": PASSWORD, "role": "admin"}),
                (f"/portal/users/{target}/role", {"role": "admin"}),
                (f"/portal/users/{target}/disable", {}),
                (f"/portal/users/{target}/password", {"password": NEW_PASSWORD}),
                (f"/portal/users/{target}/sign-out", {}),
            ]:
                r = await who.client.post(path, data={**data, "csrf_token": who.csrf})
                assert r.status_code == 403 and 'data-code="role_forbidden"' in r.text
    names = [u.username for u in api.services.accounts.list_users(tenant.id)]
    assert "sneaky" not in names
    assert api.services.accounts.get(tenant.id, target).role == "viewer"


async def test_an_admin_creates_and_manages_users(api: Api) -> None:
    tenant, elsewhere = await api.new_tenant(), await api.new_tenant()
    stranger, stranger_name, _ = await make_person(api, "moderator", elsewhere.id)
    svc = api.services.accounts
    async with person(api, "admin", tenant.id) as admin:
        r = await admin.client.get("/portal/users")
        assert r.status_code == 200 and 'data-nav="users"' in r.text
        assert f'data-user="{admin.username}"' in r.text and "(you)" in r.text
        assert stranger_name not in r.text  # another tenant's people are not listed

        def create(**fields: str) -> dict[str, str]:
            return {"role": "moderator", "csrf_token": admin.csrf, **fields}

        r = await admin.client.post(
            "/portal/users", data={"username": "sam", "password": PASSWORD, "role": "viewer"}
        )
        assert r.status_code == 403 and 'data-code="csrf_failed"' in r.text
        r = await admin.client.post(
            "/portal/users", data=create(username="sam", password="short", display_name="S")
        )
        assert r.status_code == 422 and error_code(r.text) == "password_too_short"
        assert 'value="sam"' in r.text  # the form keeps what was typed, not the password
        r = await admin.client.post(
            "/portal/users", data=create(username="bad name!", password=PASSWORD)
        )
        assert r.status_code == 422 and error_code(r.text) == "invalid_username"
        r = await admin.client.post(
            "/portal/users", data=create(username="sam", password=PASSWORD, role="owner")
        )
        assert r.status_code == 422 and error_code(r.text) == "invalid_role"
        assert "sam" not in [u.username for u in svc.list_users(tenant.id)]
        r = await admin.client.post(
            "/portal/users",
            data=create(username="sam", password=PASSWORD, display_name="<script>x</script>"),
        )
        assert r.status_code == 303
        sam_id = r.headers["location"].split("/")[-1].split("?")[0]
        assert r.headers["location"] == f"/portal/users/{sam_id}?done=created"
        sam = svc.get(tenant.id, sam_id)
        assert (sam.username, sam.role) == ("sam", "moderator")
        r = await admin.client.post("/portal/users", data=create(username="SAM", password=PASSWORD))
        assert r.status_code == 409 and error_code(r.text) == "username_taken"
        r = await admin.client.get("/portal/users")
        assert "<script>x</script>" not in r.text and "&lt;script&gt;x&lt;/script&gt;" in r.text

        async with browser_client(api) as sams:
            # sam signs in; the admin sees the session and signs sam out everywhere
            assert (await post_login(sams, tenant.id, "sam", PASSWORD)).status_code == 303
            assert await signed_in_still(sams)
            r = await admin.client.get(f"/portal/users/{sam_id}")
            assert r.status_code == 200 and 'id="sessions"' in r.text
            assert "python-httpx" in r.text and "127.0.0.1" in r.text
            r = await admin.client.post(
                f"/portal/users/{sam_id}/sign-out", data={"csrf_token": admin.csrf}
            )
            assert r.headers["location"] == f"/portal/users/{sam_id}?done=signed_out"
            assert not await signed_in_still(sams)
            r = await admin.client.get(r.headers["location"])
            assert 'id="no-sessions"' in r.text and "signed out everywhere" in r.text

            # role
            r = await admin.client.post(
                f"/portal/users/{sam_id}/role", data={"role": "viewer", "csrf_token": admin.csrf}
            )
            assert r.status_code == 303 and svc.get(tenant.id, sam_id).role == "viewer"
            r = await admin.client.post(
                f"/portal/users/{sam_id}/role", data={"role": "boss", "csrf_token": admin.csrf}
            )
            assert r.status_code == 422 and error_code(r.text) == "invalid_role"

            # disable: signed out and cannot sign in; enable again
            assert (await post_login(sams, tenant.id, "sam", PASSWORD)).status_code == 303
            r = await admin.client.post(
                f"/portal/users/{sam_id}/disable", data={"csrf_token": admin.csrf}
            )
            assert r.status_code == 303 and svc.get(tenant.id, sam_id).disabled
            assert not await signed_in_still(sams)
            r = await post_login(sams, tenant.id, "sam", PASSWORD)
            assert r.status_code == 403 and 'data-code="account_disabled"' in r.text
            r = await admin.client.get("/portal/users")
            assert re.search(r'data-user="sam".*?badge bad">disabled', r.text, re.S)
            r = await admin.client.post(
                f"/portal/users/{sam_id}/enable", data={"csrf_token": admin.csrf}
            )
            assert r.status_code == 303 and not svc.get(tenant.id, sam_id).disabled

            # five wrong passwords lock sam out; a reset clears the lock
            for _ in range(5):
                await post_login(sams, tenant.id, "sam", "wrong password here")
            r = await admin.client.get(f"/portal/users/{sam_id}")
            assert 'id="user-state">locked' in r.text
            r = await admin.client.post(
                f"/portal/users/{sam_id}/password",
                data={"password": "sam", "csrf_token": admin.csrf},
            )
            assert r.status_code == 422 and error_code(r.text) == "password_too_short"
            r = await admin.client.post(
                f"/portal/users/{sam_id}/password",
                data={"password": NEW_PASSWORD, "csrf_token": admin.csrf},
            )
            assert r.status_code == 303
            r = await post_login(sams, tenant.id, "sam", PASSWORD)
            assert 'data-code="invalid_credentials"' in r.text
            assert (await post_login(sams, tenant.id, "sam", NEW_PASSWORD)).status_code == 303

        # not on oneself: that could leave the tenant without an admin
        for path, data in [
            (f"/portal/users/{admin.user_id}/disable", {}),
            (f"/portal/users/{admin.user_id}/role", {"role": "viewer"}),
            (f"/portal/users/{admin.user_id}/password", {"password": NEW_PASSWORD}),
        ]:
            r = await admin.client.post(path, data={**data, "csrf_token": admin.csrf})
            assert r.status_code == 409 and error_code(r.text) == "own_account", path
        me = svc.get(tenant.id, admin.user_id)
        assert me.role == "admin" and not me.disabled
        # another tenant's user is not found
        r = await admin.client.get(f"/portal/users/{stranger}")
        assert r.status_code == 404 and 'data-code="user_not_found"' in r.text
        r = await admin.client.post(
            f"/portal/users/{stranger}/disable", data={"csrf_token": admin.csrf}
        )
        assert r.status_code == 404
        assert not svc.get(elsewhere.id, stranger).disabled


async def test_a_person_manages_their_own_sessions_and_password(api: Api) -> None:
    tenant = await api.new_tenant()
    svc = api.services.accounts
    async with person(api, "viewer", tenant.id) as me, browser_client(api) as other:
        assert (await post_login(other, tenant.id, me.username, me.password)).status_code == 303
        r = await me.client.get("/portal/account")
        assert r.status_code == 200
        sessions = svc.list_sessions(tenant.id, me.user_id)
        assert len(sessions) == 2
        assert all(f'data-session="{s.id}"' in r.text for s in sessions)
        assert "this session" in r.text and 'action="/portal/logout-everywhere"' in r.text
        theirs = next(s for s in sessions if s.id != me_session_id(api, me))
        # end the other session: CSRF needed, then it is over
        r = await me.client.post(f"/portal/account/sessions/{theirs.id}/revoke")
        assert r.status_code == 403 and 'data-code="csrf_failed"' in r.text
        assert await signed_in_still(other)
        r = await me.client.post(
            f"/portal/account/sessions/{theirs.id}/revoke", data={"csrf_token": me.csrf}
        )
        assert r.headers["location"] == "/portal/account?done=revoked"
        assert not await signed_in_still(other)
        assert await signed_in_still(me.client)
        # someone else's session is not found, and stays open
        async with person(api, "viewer", tenant.id) as someone:
            theirs_id = me_session_id(api, someone)
            r = await me.client.post(
                f"/portal/account/sessions/{theirs_id}/revoke", data={"csrf_token": me.csrf}
            )
            assert r.status_code == 404 and 'data-code="session_not_found"' in r.text
            assert await signed_in_still(someone.client)

        # the password: the current one is required, the new one twice
        assert (await post_login(other, tenant.id, me.username, me.password)).status_code == 303

        def change(current: str, new: str, repeat: str | None = None) -> dict[str, str]:
            return {
                "current": current,
                "new": new,
                "repeat": new if repeat is None else repeat,
                "csrf_token": me.csrf,
            }

        r = await me.client.post("/portal/account/password", data=change("wrong", NEW_PASSWORD))
        assert r.status_code == 403 and error_code(r.text) == "wrong_password"
        r = await me.client.post(
            "/portal/account/password", data=change(me.password, NEW_PASSWORD, "typo")
        )
        assert r.status_code == 422 and error_code(r.text) == "password_mismatch"
        r = await me.client.post("/portal/account/password", data=change(me.password, "short"))
        assert r.status_code == 422 and error_code(r.text) == "password_too_short"
        assert await signed_in_still(other)  # nothing changed yet
        r = await me.client.post("/portal/account/password", data=change(me.password, NEW_PASSWORD))
        assert r.headers["location"] == "/portal/account?done=password"
        assert await signed_in_still(me.client)  # this session stays
        assert not await signed_in_still(other)  # the others end
        r = await post_login(other, tenant.id, me.username, me.password)
        assert 'data-code="invalid_credentials"' in r.text
        assert (await post_login(other, tenant.id, me.username, NEW_PASSWORD)).status_code == 303


def me_session_id(api: Api, who: SignedIn) -> str:
    """The id of the session ``who``'s client holds."""
    token = who.client.cookies.get("bastion_session")
    assert token
    found = api.services.accounts.resolve_session(token)
    assert found is not None
    return found[1].id


# ---- in a browser ------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.server
async def test_an_admin_creates_a_moderator_who_then_signs_in(tmp_path: Path) -> None:
    async with portal(settings_in(tmp_path)) as shown:
        page = await shown.signed_in("admin", "/portal/rules")
        async with page.expect_navigation():
            await page.click("[data-nav=users]")
        await page.fill("#new-user input[name=username]", "mia")
        await page.fill("#new-user input[name=display_name]", "Mia Moderator")
        await page.select_option("#new-user select[name=role]", "moderator")
        await page.fill("#new-user input[name=password]", "short")
        async with page.expect_navigation():
            await page.click("#create-user")
        assert await page.locator("[data-code=password_too_short]").is_visible()
        await page.fill("#new-user input[name=password]", PASSWORD)
        async with page.expect_navigation():
            await page.click("#create-user")
        assert re.search(r"/portal/users/usr_[0-9a-f]+\?done=created$", page.url)
        assert await page.locator("#user-role").inner_text() == "moderator"
        user_id = page.url.split("/")[-1].split("?")[0]

        mia = Credentials("default", "mia", PASSWORD, "moderator", user_id)
        their_page = await shown.new_page()
        await shown.sign_in(their_page, mia, "/portal/account")
        assert their_page.url.endswith("/portal/account")
        assert await their_page.locator("header .name").inner_text() == "Mia Moderator"
        assert await their_page.locator("header .role").inner_text() == "moderator"
        assert await their_page.locator("[data-nav=users]").count() == 0
        # the admin sees mia's session on her page
        await page.reload()
        assert await page.locator("#sessions tbody tr").count() == 1
