"""People in the portal over plain HTTP (no browser): make a user and sign them in on an
:class:`tests.support.app.Api`, getting a client that carries their session cookie and
knows their CSRF token."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass

import httpx

from bastion.store.repo import DEFAULT_TENANT
from tests.support.app import Api

_LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')


@dataclass
class SignedIn:
    """A person's portal client: ``client`` has the session cookie; ``csrf`` is the
    token state-changing requests must send (``headers`` carries it as htmx does)."""

    client: httpx.AsyncClient
    user_id: str
    username: str
    password: str
    role: str
    tenant: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


async def make_person(
    api: Api, role: str = "moderator", tenant: str = DEFAULT_TENANT
) -> tuple[str, str, str]:
    """A new user: (user id, username, password)."""
    username = f"{role}-{secrets.token_hex(4)}"
    password = "pw-" + secrets.token_urlsafe(18)
    user = await asyncio.to_thread(
        api.services.accounts.create_user, tenant, username, password, role
    )
    return user.id, username, password


async def login_form(client: httpx.AsyncClient) -> str:
    """Open the sign-in page; its double-submit token."""
    r = await client.get("/portal/login")
    assert r.status_code == 200, r.text
    found = _LOGIN_CSRF.search(r.text)
    assert found, "no login_csrf field on the sign-in page"
    return found.group(1)


async def sign_in(api: Api, role: str = "moderator", tenant: str = DEFAULT_TENANT) -> SignedIn:
    """A new person with ``role`` in ``tenant``, signed in with a client of their own
    (the same app, a cookie jar of its own)."""
    user_id, username, password = await make_person(api, role, tenant)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app),
        base_url=str(api.client.base_url),
        timeout=api.client.timeout,
    )
    token = await login_form(client)
    r = await client.post(
        "/portal/login",
        data={"tenant": tenant, "username": username, "password": password, "login_csrf": token},
    )
    assert r.status_code == 303, r.text
    cookie = client.cookies.get("bastion_session")
    assert cookie, "no session cookie after signing in"
    found = await asyncio.to_thread(api.services.accounts.resolve_session, cookie)
    assert found is not None
    return SignedIn(client, user_id, username, password, role, tenant, found[1].csrf_token)
