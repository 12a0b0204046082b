"""Rule sets, policies and word/domain lists edited in the portal: the API's validation
messages shown at their lines, nothing saved when the text does not validate, what is
saved seen through the API, checking without saving, testing a rule set on a real image,
roles (viewers and moderators read, admins write), CSRF, tenant isolation and escaping;
over HTTP in process and in a real browser, with the real models."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml
from playwright.async_api import FilePayload

from bastion.config import Settings
from bastion.pipeline.engine import Engine
from bastion.store.repo import DEFAULT_TENANT
from tests.support.app import Api, Tenant, running
from tests.support.auth import AUTH
from tests.support.browser import Portal, portal, portal_settings
from tests.support.media import photo, qr_on_photo
from tests.support.people import SignedIn, sign_in
from tests.support.rules import BLOCKED_DOMAIN, STREAM_RULES
from tests.support.settings import make_settings

pytestmark = pytest.mark.models

# line 7 holds a regular expression with a '(' that is never closed, at column 25
BAD_REGEX = (
    "name: promo\n"
    "channel_pattern: '.*'\n"
    "rules:\n"
    "  - name: spam\n"
    "    urls: {domains: [" + BLOCKED_DOMAIN + "]}\n"
    "  - name: promo-code\n"
    "    text: {regex: 'promo(\\d+'}\n"
    "    action: alert\n"
)
GOOD = BAD_REGEX.replace("promo(\\d+", "promo\\d+")
BAD_LINE = "    text: {regex: 'promo(\\d+'}"


def settings_in(folder: Path) -> Settings:
    """Portal settings (cookies over plain HTTP) where many sign-ins from one address
    in a minute are fine: the tests sign in many people."""
    settings = portal_settings(make_settings(folder))
    accounts = settings.accounts.model_copy(update={"attempts_per_minute_per_ip": 10_000})
    return settings.model_copy(update={"accounts": accounts})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running(settings_in(tmp_path_factory.mktemp("portal-rules")), engine) as started:
        yield started


@asynccontextmanager
async def person(api: Api, role: str, tenant: str) -> AsyncIterator[SignedIn]:
    """A new person of ``tenant`` signed in, their client closed after."""
    who = await sign_in(api, role, tenant)
    try:
        yield who
    finally:
        await who.client.aclose()


async def api_rule_sets(api: Api, tenant: Tenant) -> list[dict[str, object]]:
    r = await api.client.get("/v1/rules", headers=tenant.headers)
    assert r.status_code == 200, r.text
    rows: list[dict[str, object]] = r.json()
    return rows


def marked_lines(html: str) -> list[int]:
    """The lines the editor's gutter marks as having a problem."""
    return [int(n) for n in re.findall(r'<span class="bad" data-line="(\d+)"', html)]


async def save(who: SignedIn, path: str, text: str, op: str = "save") -> httpx.Response:
    return await who.client.post(path, data={"rules": text, "op": op, "csrf_token": who.csrf})


# ---- rule sets ---------------------------------------------------------------------


async def test_pages_need_a_session(api: Api) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://bastion"
    ) as client:
        for path in ("/portal/rules", "/portal/rules/1", "/portal/policies", "/portal/lists"):
            r = await client.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"] == f"/portal/login?next={path}"
        r = await client.post("/portal/rules/new", data={"rules": GOOD})
        assert r.status_code == 401 and 'data-code="not_signed_in"' in r.text
        # an API key is not a session
        r = await client.get("/portal/rules", headers=AUTH)
        assert r.status_code == 303


async def test_a_bad_regex_is_shown_at_its_line_and_nothing_is_saved(api: Api) -> None:
    tenant = await api.new_tenant()
    async with person(api, "admin", tenant.id) as admin:
        r = await save(admin, "/portal/rules/new", BAD_REGEX)
        assert r.status_code == 422, r.text
        assert 'data-code="invalid_rules"' in r.text
        assert marked_lines(r.text) == [7]
        # the API's own message, with its line and column, and the line itself
        api_answer = await api.client.post(
            "/v1/rules",
            content=BAD_REGEX,
            headers={**tenant.headers, "Content-Type": "application/yaml"},
        )
        message = api_answer.json()["error"]["details"]["errors"][0]["message"]
        assert "line 7, column 25" in r.text
        assert message in html.unescape(r.text)
        assert "rules.1.text.regex.0" in r.text
        excerpt = re.search(r'<pre class="excerpt">(.*?)</pre>', r.text, re.S)
        assert excerpt is not None
        assert "    text: {regex: &#39;promo(\\d+&#39;}" in excerpt.group(1)
        assert "^" in excerpt.group(1)
        # the text sent is kept in the editor, and nothing was saved
        assert "promo(\\d+" in r.text
        assert await api_rule_sets(api, tenant) == []
        # fixed, it saves; the API sees it
        r = await save(admin, "/portal/rules/new", GOOD)
        assert r.status_code == 303, r.text
        assert re.fullmatch(r"/portal/rules/\d+\?saved=1", r.headers["location"])
        stored = await api_rule_sets(api, tenant)
        assert [s["name"] for s in stored] == ["promo"]
        spec = stored[0]["spec"]
        assert isinstance(spec, dict)
        assert spec["rules"][1]["text"]["regex"] == ["promo\\d+"]
        r = await admin.client.get(r.headers["location"])
        assert r.status_code == 200 and "Saved." in r.text
        assert marked_lines(r.text) == []


async def test_check_validates_without_saving(api: Api) -> None:
    tenant = await api.new_tenant()
    async with person(api, "admin", tenant.id) as admin:
        r = await save(admin, "/portal/rules/new", GOOD, op="check")
        assert r.status_code == 200 and "No problems found" in r.text
        r = await save(admin, "/portal/rules/new", BAD_REGEX, op="check")
        assert r.status_code == 422 and marked_lines(r.text) == [7]
        # rules that can never fire under the policy: the API's feasibility check
        hate = (
            "name: hate\nchannel_pattern: '.*'\nrules:\n"
            "  - name: symbols\n    categories: [Hate Symbols]\n"
        )
        r = await save(admin, "/portal/rules/new", hate, op="check")
        assert r.status_code == 422 and "can never fire" in r.text
        assert marked_lines(r.text) == [5]
        # JSON too, with its syntax errors at their line
        r = await save(admin, "/portal/rules/new", '{"name": "j",\n  "rules": [\n}', op="check")
        assert r.status_code == 422 and marked_lines(r.text) == [3]
        r = await save(admin, "/portal/rules/new", "  \n", op="check")
        assert r.status_code == 400 and 'data-code="empty_input"' in r.text
        assert await api_rule_sets(api, tenant) == []


async def test_edit_conflict_and_delete(api: Api) -> None:
    tenant = await api.new_tenant()
    async with person(api, "admin", tenant.id) as admin:
        r = await save(admin, "/portal/rules/new", GOOD)
        first = r.headers["location"].split("?")[0]
        other = GOOD.replace("name: promo\n", "name: other\n").replace("'.*'", "'^x-'")
        r = await save(admin, "/portal/rules/new", other)
        assert r.status_code == 303
        # the editor shows the stored rule set as YAML; saving it back changes nothing
        r = await admin.client.get(first)
        text = re.search(r"<textarea[^>]*>\n(.*?)</textarea>", r.text, re.S)
        assert text is not None
        shown = html.unescape(text.group(1))
        assert yaml.safe_load(shown)["name"] == "promo"
        before = await api_rule_sets(api, tenant)
        assert (await save(admin, first, shown)).status_code == 303
        assert [s["version"] for s in await api_rule_sets(api, tenant)] == [
            s["version"] for s in before
        ]
        # taking another rule set's name: 409 at the name's line
        r = await save(admin, first, GOOD.replace("name: promo\n", "name: other\n"))
        assert r.status_code == 409 and 'data-code="rule_set_conflict"' in r.text
        assert marked_lines(r.text) == [1]
        r = await save(admin, first, GOOD.replace("'.*'", "'^p-'"))
        assert r.status_code == 303
        stored = {s["name"]: s for s in await api_rule_sets(api, tenant)}
        assert stored["promo"]["channel_pattern"] == "^p-"
        # delete needs the CSRF token; then it is gone
        r = await admin.client.post(f"{first}/delete")
        assert r.status_code == 403 and 'data-code="csrf_failed"' in r.text
        r = await admin.client.post(f"{first}/delete", data={"csrf_token": admin.csrf})
        assert r.status_code == 303 and r.headers["location"] == "/portal/rules?deleted=1"
        assert [s["name"] for s in await api_rule_sets(api, tenant)] == ["other"]
        assert (await admin.client.get(first)).status_code == 404


async def test_csrf_is_required_to_save(api: Api) -> None:
    tenant = await api.new_tenant()
    async with person(api, "admin", tenant.id) as admin:
        for path, data in [
            ("/portal/rules/new", {"rules": GOOD, "op": "save"}),
            ("/portal/policies/+new", {"policy": "name: x\n", "op": "save"}),
            ("/portal/lists", {"blocked_words": "casino", "op": "save"}),
        ]:
            r = await admin.client.post(path, data=data)
            assert r.status_code == 403, path
            assert 'data-code="csrf_failed"' in r.text
            r = await admin.client.post(path, data={**data, "csrf_token": "x" * 43})
            assert r.status_code == 403, path
        assert await api_rule_sets(api, tenant) == []
        r = await api.client.get("/v1/lists", headers=tenant.headers)
        assert r.json()["blocked_words"] == []


async def test_viewers_and_moderators_read_only_admins_write(api: Api) -> None:
    tenant = await api.new_tenant()
    async with person(api, "admin", tenant.id) as admin:
        location = (await save(admin, "/portal/rules/new", GOOD)).headers["location"]
    page = location.split("?")[0]
    for role in ("viewer", "moderator"):
        async with person(api, role, tenant.id) as who:
            r = await who.client.get("/portal/rules")
            assert r.status_code == 200 and ">promo</a>" in r.text
            assert "/portal/rules/new" not in r.text
            r = await who.client.get(page)
            assert r.status_code == 200
            assert re.search(r"<textarea[^>]*\breadonly\b", r.text)
            assert 'value="save"' not in r.text and 'value="check"' not in r.text
            assert "/delete" not in r.text
            # moderators may test the rule set on an image; viewers get no forms at all
            assert ('id="test-form"' in r.text) is (role == "moderator")
            for path in ("/portal/policies", "/portal/policies/default", "/portal/lists"):
                r = await who.client.get(path)
                assert r.status_code == 200, path
                assert 'value="save"' not in r.text, path
            r = await who.client.get("/portal/rules/new")
            assert r.status_code == 403 and 'data-code="role_forbidden"' in r.text
            for path, data in [
                ("/portal/rules/new", {"rules": GOOD}),
                (page, {"rules": GOOD}),
                (f"{page}/delete", {}),
                ("/portal/policies/+new", {"policy": "name: x\n"}),
                ("/portal/policies/default/delete", {}),
                ("/portal/lists", {"blocked_words": "casino"}),
            ]:
                r = await who.client.post(path, data={**data, "csrf_token": who.csrf})
                assert r.status_code == 403, (role, path)
                assert 'data-code="role_forbidden"' in r.text
            if role == "viewer":
                r = await who.client.post(
                    "/portal/rules/test",
                    files={"file": ("cat.jpg", photo(), "image/jpeg")},
                    data={"rules": GOOD},
                    headers=who.headers,
                )
                assert r.status_code == 403
    assert len(await api_rule_sets(api, tenant)) == 1


async def test_tenants_do_not_see_each_others_rule_sets(api: Api) -> None:
    mine, theirs = await api.new_tenant(), await api.new_tenant()
    async with person(api, "admin", mine.id) as me, person(api, "admin", theirs.id) as them:
        location = (await save(me, "/portal/rules/new", GOOD)).headers["location"]
        page = location.split("?")[0]
        r = await them.client.get("/portal/rules")
        assert r.status_code == 200 and "promo" not in r.text
        r = await them.client.get(page)
        assert r.status_code == 404 and 'data-code="rule_set_not_found"' in r.text
        r = await save(them, page, GOOD.replace("'.*'", "'^mine-'"))
        assert r.status_code == 404
        r = await them.client.post(f"{page}/delete", data={"csrf_token": them.csrf})
        assert r.status_code == 404
        # same name in the other tenant is no conflict
        assert (await save(them, "/portal/rules/new", GOOD)).status_code == 303
    assert [s["channel_pattern"] for s in await api_rule_sets(api, mine)] == [".*"]
    assert len(await api_rule_sets(api, theirs)) == 1


async def test_what_people_wrote_is_shown_as_text(api: Api) -> None:
    tenant = await api.new_tenant()
    hostile = GOOD.replace(
        "channel_pattern", 'description: "<script>alert(1)</script><img src=x>"\nchannel_pattern'
    )
    async with person(api, "admin", tenant.id) as admin:
        r = await save(admin, "/portal/rules/new", hostile)
        assert r.status_code == 303, r.text
        for path in ("/portal/rules", r.headers["location"]):
            page = await admin.client.get(path)
            assert "<script>alert(1)" not in page.text and "<img src=x>" not in page.text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        # a problem's message and line are escaped too
        r = await save(admin, "/portal/rules/new", "name: <b>x</b>\nrules: []\n", op="check")
        assert r.status_code == 422 and "<b>x</b>" not in r.text
        assert "name: &lt;b&gt;x&lt;/b&gt;" in r.text


async def test_a_rule_set_is_tested_on_an_image(api: Api) -> None:
    tenant = await api.new_tenant()
    image = qr_on_photo(f"https://www.{BLOCKED_DOMAIN}/deal?id=9")
    async with person(api, "moderator", tenant.id) as mod:
        r = await mod.client.post(
            "/portal/rules/test",
            files={"file": ("qr.png", image, "image/png")},
            data={"rules": STREAM_RULES, "tier": "new"},
            headers={**mod.headers, "HX-Request": "true"},
        )
        assert r.status_code == 200, r.text
        assert "<html" not in r.text  # a fragment for htmx
        # what the API answers for the same image and rules
        api_answer = await api.client.post(
            "/v1/rules/test?tier=new",
            files={"file": ("qr.png", image, "image/png")},
            data={"rules": STREAM_RULES},
            headers=tenant.headers,
        )
        body = api_answer.json()
        assert body["action"] == "auto_stop"
        assert 'data-action="auto_stop"' in r.text
        matches = re.findall(r'<tr data-rule="([^"]+)">', r.text)
        assert matches == [m["rule"] for m in body["matches"]]
        assert "spam-domain" in matches
        assert f"https://www.{BLOCKED_DOMAIN}/deal?id=9" in r.text
        for outcome in body["not_fired"]:
            assert f'data-rule="{outcome["rule"]}"' in r.text
        assert 'data-label="QR Code Link"' in r.text
        # an inline rule set that does not validate: the problems, with their lines
        r = await mod.client.post(
            "/portal/rules/test",
            files={"file": ("qr.png", image, "image/png")},
            data={"rules": BAD_REGEX, "csrf_token": mod.csrf},
        )
        assert r.status_code == 422
        assert "<html" in r.text  # without htmx, a page
        assert 'data-line="7"' in r.text and "line 7, column 25" in r.text


# ---- policies ----------------------------------------------------------------------

BAD_POLICY = (
    "name: strict\n"
    "analyzers: [nsfw, codes]\n"
    "rules:\n"
    "  - name: explicit\n"
    "    categories: [Explicit Nudity]\n"
    "    review: 90\n"
    "    block: 50\n"
)


async def test_policies_are_edited_with_the_apis_messages(api: Api) -> None:
    tenant = await api.new_tenant()
    async with person(api, "admin", tenant.id) as admin:
        r = await admin.client.get("/portal/policies")
        assert r.status_code == 200 and 'data-policy="default"' in r.text
        r = await admin.client.get("/portal/policies/default")
        assert r.status_code == 200 and "name: default" in r.text

        async def post(path: str, text: str, op: str = "save") -> httpx.Response:
            data = {"policy": text, "op": op, "csrf_token": admin.csrf}
            return await admin.client.post(path, data=data)

        r = await post("/portal/policies/+new", BAD_POLICY)
        assert r.status_code == 422 and 'data-code="invalid_policy"' in r.text
        api_answer = await api.client.post(
            "/v1/policies/validate",
            content=BAD_POLICY,
            headers={**tenant.headers, "Content-Type": "application/yaml"},
        )
        error = api_answer.json()["error"]["details"]["errors"][0]
        assert marked_lines(r.text) == [error["line"]] == [4]
        assert f"line {error['line']}, column {error['column']}" in r.text
        assert "review threshold 90" in r.text
        r = await api.client.get("/v1/policies/strict", headers=tenant.headers)
        assert r.status_code == 404

        good = BAD_POLICY.replace("block: 50", "block: 95")
        r = await post("/portal/policies/+new", good, "check")
        assert r.status_code == 200 and "No problems found" in r.text
        assert (
            await api.client.get("/v1/policies/strict", headers=tenant.headers)
        ).status_code == 404
        r = await post("/portal/policies/+new", good)
        assert r.status_code == 303 and r.headers["location"] == "/portal/policies/strict?saved=1"
        r = await api.client.get("/v1/policies/strict", headers=tenant.headers)
        assert r.status_code == 200 and r.json()["yaml"] == good
        # a new policy may not overwrite one; the page of one may not rename it
        r = await post("/portal/policies/+new", good)
        assert r.status_code == 409 and 'data-code="policy_exists"' in r.text
        r = await post("/portal/policies/strict", good.replace("strict", "lax"))
        assert r.status_code == 400 and 'data-code="policy_name_mismatch"' in r.text
        r = await post("/portal/policies/strict", good.replace("95", "99"))
        assert r.status_code == 303
        r = await api.client.get("/v1/policies/strict", headers=tenant.headers)
        assert "block: 99" in r.json()["yaml"]
        r = await admin.client.post(
            "/portal/policies/strict/delete", data={"csrf_token": admin.csrf}
        )
        assert r.status_code == 303
        assert (
            await api.client.get("/v1/policies/strict", headers=tenant.headers)
        ).status_code == 404
    # another tenant's admin never sees it
    other = await api.new_tenant()
    async with person(api, "admin", other.id) as them:
        assert (await them.client.get("/portal/policies/strict")).status_code == 404


# ---- lists -------------------------------------------------------------------------


async def test_lists_are_edited_one_entry_per_line(api: Api) -> None:
    tenant = await api.new_tenant()
    async with person(api, "admin", tenant.id) as admin:
        words = "casino\n\n  free money  \n" + "x" * 201 + "\n<script>alert(1)</script>\n"
        data = {
            "blocked_words": words,
            "blocked_domains": f"{BLOCKED_DOMAIN}\r\nads.example\r\n",
            "allowed_domains": "",
            "op": "save",
            "csrf_token": admin.csrf,
        }
        r = await admin.client.post("/portal/lists", data=data)
        assert r.status_code == 422, r.text
        assert marked_lines(r.text) == [4]  # the over-long word is on line 4
        assert "blocked_words.2" in r.text and "line 4" in r.text
        assert "at most 200 characters" in r.text
        assert "<script>alert(1)" not in r.text and "&lt;script&gt;alert(1)" in r.text
        r = await api.client.get("/v1/lists", headers=tenant.headers)
        assert r.json()["blocked_words"] == []
        data["blocked_words"] = words.replace("x" * 201 + "\n", "")
        r = await admin.client.post("/portal/lists", data={**data, "op": "check"})
        assert r.status_code == 200 and "No problems found" in r.text
        assert (await api.client.get("/v1/lists", headers=tenant.headers)).json()[
            "blocked_words"
        ] == []
        r = await admin.client.post("/portal/lists", data=data)
        assert r.status_code == 303 and r.headers["location"] == "/portal/lists?saved=1"
        r = await api.client.get("/v1/lists", headers=tenant.headers)
        assert r.json() == {
            "blocked_words": ["casino", "free money", "<script>alert(1)</script>"],
            "blocked_domains": [BLOCKED_DOMAIN, "ads.example"],
            "allowed_domains": [],
        }
        r = await admin.client.get("/portal/lists?saved=1")
        assert "Saved." in r.text and "free money\n&lt;script&gt;" in r.text
    async with person(api, "viewer", tenant.id) as viewer:
        r = await viewer.client.get("/portal/lists")
        assert r.status_code == 200 and "casino" in r.text and 'value="save"' not in r.text


# ---- in a browser ------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shown(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Portal]:
    async with portal(settings_in(tmp_path_factory.mktemp("portal-rules-browser")), engine) as p:
        yield p


@pytest.mark.browser
@pytest.mark.server
async def test_an_admin_fixes_a_bad_regex_and_tests_the_rules_on_an_image(
    shown: Portal,
) -> None:
    page = await shown.signed_in("admin", "/portal/rules/new")
    assert page.url.endswith("/portal/rules/new")
    await page.fill("textarea[name=rules]", BAD_REGEX)
    async with page.expect_navigation():
        await page.click("#save")
    # the error at its line: the gutter marks the regex's line, the list names it
    marked = page.locator(".gutter span.bad")
    assert await marked.count() == 1
    assert await marked.get_attribute("data-line") == "7"
    problem = page.locator(".problems .problem").first
    assert "line 7, column 25" in await problem.inner_text()
    assert BAD_LINE in await problem.locator(".excerpt").inner_text()
    # the editor's caret was taken to that line
    selected = await page.evaluate(
        "(() => { const t = document.querySelector('textarea[name=rules]');"
        " return t.value.slice(t.selectionStart, t.selectionEnd); })()"
    )
    assert selected == BAD_LINE
    r = await shown.api.client.get("/v1/rules", headers=AUTH)
    assert r.json() == []  # nothing saved
    # fix it where it is, and save
    text = await page.input_value("textarea[name=rules]")
    await page.fill("textarea[name=rules]", text.replace("promo(\\d+", "promo\\d+"))
    async with page.expect_navigation():
        await page.click("#save")
    assert re.search(r"/portal/rules/\d+\?saved=1$", page.url)
    assert await page.locator(".gutter span.bad").count() == 0
    r = await shown.api.client.get("/v1/rules", headers=AUTH)
    assert [s["name"] for s in r.json()] == ["promo"]
    # test the saved rules on a real image with a QR code to the blocked domain
    upload: FilePayload = {
        "name": "qr.png",
        "mimeType": "image/png",
        "buffer": qr_on_photo(f"https://{BLOCKED_DOMAIN}/promo"),
    }
    await page.set_input_files("#test-form input[type=file]", files=upload)
    await page.click("#run-test")
    result = page.locator("#test-result .test-out")
    await result.wait_for(timeout=60_000)
    assert await result.get_attribute("data-action") == "alert"
    assert await page.locator('#test-matches tr[data-rule="spam"]').count() == 1
    assert f"https://{BLOCKED_DOMAIN}/promo" in await result.inner_text()
    assert page.url.endswith("?saved=1")  # no navigation


@pytest.mark.browser
@pytest.mark.server
async def test_a_viewer_sees_no_save_button(shown: Portal) -> None:
    r = await shown.api.client.post(
        "/v1/rules",
        content=GOOD.replace("name: promo", "name: seen").replace("'.*'", "'^seen-'"),
        headers={**AUTH, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    page = await shown.signed_in("viewer", f"/portal/rules/{r.json()['id']}", tenant=DEFAULT_TENANT)
    assert await page.locator("textarea[name=rules]").is_visible()
    assert await page.locator("textarea[name=rules]").get_attribute("readonly") is not None
    assert await page.locator("button", has_text="Save").count() == 0
    assert await page.locator("#save, #check, #delete, #test-form").count() == 0
    await page.goto(f"{shown.url}/rules")
    assert await page.locator("text=New rule set").count() == 0
    await page.goto(f"{shown.url}/lists")
    assert await page.locator("button", has_text="Save").count() == 0
