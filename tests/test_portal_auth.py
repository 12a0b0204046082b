"""Signing in to the portal and what guards it: the session cookie's attributes, the
sign-in form's own CSRF token, wrong passwords and lockout shown on the form, CSRF on
every state-changing request, sign-out (here and everywhere), session tokens and API
keys never standing in for each other, security headers, open redirects refused, and
errors answered as pages; plus signing in with a real browser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from bastion.pipeline.engine import Engine
from bastion.portal.headers import CSP
from tests.support.app import Api, running
from tests.support.auth import AUTH, bearer
from tests.support.browser import portal, portal_settings
from tests.support.people import login_form, make_person, sign_in
from tests.support.settings import make_settings


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running(portal_settings(make_settings(tmp_path))) as started:
        yield started


def fresh_client(api: Api, base_url: str = "http://bastion") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url=base_url)


async def post_login(
    client: httpx.AsyncClient, username: str, password: str, *, next_url: str = "/portal"
) -> httpx.Response:
    token = await login_form(client)
    return await client.post(
        "/portal/login",
        data={
            "tenant": "default",
            "username": username,
            "password": password,
            "login_csrf": token,
            "next": next_url,
        },
    )


async def test_sign_in_sets_a_hardened_session_cookie(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as api:  # cookie_secure on: the default
        _, username, password = await make_person(api)
        # Secure cookies travel over HTTPS only
        async with fresh_client(api, "https://bastion") as client:
            r = await post_login(client, username, password, next_url="/portal/review")
    assert r.status_code == 303
    assert r.headers["location"] == "/portal/review"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("bastion_session="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "path=/portal" in cookie.lower()
    assert "bss_" in cookie


async def test_the_form_says_when_the_cookie_cannot_work(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as api:  # Secure cookie, the default
        for base, blocked in [
            ("http://bastion.example", True),
            ("https://bastion.example", False),
            ("http://127.0.0.1:8000", False),
            ("http://localhost:8000", False),
        ]:
            async with fresh_client(api, base) as client:
                r = await client.get("/portal/login")
            assert ('data-code="https_required"' in r.text) is blocked, base
    async with running(portal_settings(make_settings(tmp_path / "plain"))) as api:
        async with fresh_client(api, "http://bastion.example") as client:
            r = await client.get("/portal/login")
        assert 'data-code="https_required"' not in r.text


async def test_wrong_password_is_shown_on_the_form_and_locks_after_five(api: Api) -> None:
    _, username, password = await make_person(api)
    async with fresh_client(api) as client:
        for _ in range(api.settings.accounts.lockout_after):
            r = await post_login(client, username, "not-the-password-1")
            assert r.status_code == 401
            assert 'data-code="invalid_credentials"' in r.text
            assert "bastion_session" not in r.headers.get("set-cookie", "")
        r = await post_login(client, username, password)
        assert r.status_code == 423
        assert 'data-code="account_locked"' in r.text


async def test_the_sign_in_form_needs_its_own_token(api: Api) -> None:
    _, username, password = await make_person(api)
    async with fresh_client(api) as client:
        await login_form(client)
        r = await client.post(
            "/portal/login",
            data={"tenant": "default", "username": username, "password": password},
        )
        assert r.status_code == 403
        assert 'data-code="csrf_failed"' in r.text
        r = await client.post(
            "/portal/login",
            data={
                "tenant": "default",
                "username": username,
                "password": password,
                "login_csrf": "forged-value",
            },
        )
        assert r.status_code == 403


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/portal", "//evil.example/portal", "/v1/keys", "/portal/login"],
)
async def test_next_never_leaves_the_portal(api: Api, target: str) -> None:
    _, username, password = await make_person(api)
    async with fresh_client(api) as client:
        r = await post_login(client, username, password, next_url=target)
    assert r.status_code == 303
    assert r.headers["location"] == "/portal"


async def test_pages_send_people_to_sign_in(api: Api) -> None:
    r = await api.client.get("/portal", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/portal/login?next=/portal"
    r = await api.client.get("/portal", headers={"HX-Request": "true"})
    assert r.status_code == 401
    assert r.headers["HX-Redirect"].startswith("/portal/login")


async def test_state_changing_requests_need_the_csrf_token(api: Api) -> None:
    person = await sign_in(api)
    async with aclosing(person.client) as client:
        r = await client.post("/portal/logout")
        assert r.status_code == 403
        assert 'data-code="csrf_failed"' in r.text
        r = await client.post("/portal/logout", headers={"X-CSRF-Token": "x" * 43})
        assert r.status_code == 403
        # still signed in: the refused sign-out changed nothing
        r = await client.get("/portal", follow_redirects=False)
        assert r.headers["location"] == "/portal/live"
        r = await client.post("/portal/logout", data={"csrf_token": person.csrf})
        assert r.status_code == 303
        r = await client.get("/portal", follow_redirects=False)
        assert r.headers["location"].startswith("/portal/login")


async def test_sign_out_everywhere_ends_every_session(api: Api) -> None:
    first = await sign_in(api)
    async with fresh_client(api) as second:
        r = await post_login(second, first.username, first.password)
        assert r.status_code == 303
        assert (await second.get("/portal", follow_redirects=False)).headers[
            "location"
        ] == "/portal/live"
        async with aclosing(first.client) as client:
            r = await client.post("/portal/logout-everywhere", headers=first.headers)
            assert r.status_code == 303
        r = await second.get("/portal", follow_redirects=False)
        assert r.headers["location"].startswith("/portal/login")


async def test_session_tokens_and_api_keys_never_stand_in_for_each_other(api: Api) -> None:
    person = await sign_in(api)
    token = person.client.cookies["bastion_session"]
    await person.client.aclose()
    r = await api.client.get("/v1/reviews", headers=bearer(token))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    admin_key = AUTH["Authorization"].removeprefix("Bearer ")
    async with fresh_client(api) as client:
        client.cookies.set("bastion_session", admin_key, path="/portal")
        r = await client.get("/portal", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/portal/login")
        r = await client.get("/portal", headers=AUTH, follow_redirects=False)
        assert r.headers["location"].startswith("/portal/login")


async def test_portal_responses_carry_security_headers(api: Api) -> None:
    r = await api.client.get("/portal/login")
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "eval" not in CSP
    assert "frame-ancestors 'none'" in CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert "<script>" not in r.text  # scripts come from files only
    assert " on" + "click=" not in r.text
    static = await api.client.get("/portal/static/portal.js")
    assert static.status_code == 200
    assert static.headers["content-security-policy"] == CSP
    assert "no-store" not in static.headers.get("cache-control", "")
    htmx = await api.client.get("/portal/static/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and len(htmx.content) > 40_000
    # the API keeps answering JSON without the portal's headers
    r = await api.client.get("/v1/reviews", headers=AUTH)
    assert "content-security-policy" not in r.headers


async def test_portal_errors_are_pages_and_api_errors_stay_json(api: Api) -> None:
    person = await sign_in(api)
    async with aclosing(person.client) as client:
        r = await client.get("/portal/no-such-page")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/html")
        r = await client.get("/portal/no-such-page", headers={"HX-Request": "true"})
        assert r.status_code == 404
        assert r.headers["HX-Retarget"] == "#flash"
    r = await api.client.get("/v1/no-such-thing", headers=AUTH)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


async def test_sign_in_attempts_are_rate_limited_per_address(tmp_path: Path) -> None:
    settings = portal_settings(make_settings(tmp_path))
    accounts = settings.accounts.model_copy(update={"attempts_per_minute_per_ip": 3})
    limited = settings.model_copy(update={"accounts": accounts})
    async with running(limited) as api, fresh_client(api) as client:
        codes = [
            (await post_login(client, f"nobody{i}", "wrong-password-x")).status_code
            for i in range(4)
        ]
    assert codes == [401, 401, 401, 429]


@pytest.mark.browser
@pytest.mark.server
async def test_a_person_signs_in_and_out_in_a_browser(tmp_path: Path, engine: Engine) -> None:
    async with portal(make_settings(tmp_path), engine) as shown:
        who = await shown.person("viewer")
        page = await shown.new_page()
        await page.goto(shown.url)
        assert "/portal/login" in page.url
        await page.fill("input[name=username]", who.username)
        await page.fill("input[name=password]", "wrong-password-123")
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        assert await page.locator("[data-code=invalid_credentials]").is_visible()
        await shown.sign_in(page, who, "/portal/review")
        assert page.url.endswith("/portal/review")
        cookies = await page.context.cookies()
        session = next(c for c in cookies if c["name"] == "bastion_session")
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert await page.evaluate("document.cookie") == ""  # not readable by scripts
        async with page.expect_navigation():
            await page.click("text=Sign out")
        assert "/portal/login" in page.url
        await asyncio.sleep(0)
