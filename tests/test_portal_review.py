"""The review queue in the portal: the queues page, the work view's claims (never the
same item to two people, skipped items left out), decisions and hand-backs, an item's
page with its audit log and the tenant's audit log; sessions, CSRF and roles guarding
every action; another tenant's item not found; text from media and people escaped.
Over HTTP on SQLite and PostgreSQL, and in Chromium against a real server with the real
models: two moderators working through one queue with the keyboard, the signed
``review.decided`` webhook, sensitive media blurred until ``u``, a viewer without
controls."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page

from bastion.api.services import Services
from bastion.delivery.client import verify
from bastion.delivery.config import DeliveryConfig
from bastion.pipeline.engine import Engine
from bastion.portal.pages.review_view import is_sensitive
from bastion.review.config import QueueRoute
from bastion.review.service import Reviewer
from bastion.review.tables import ReviewItem
from bastion.store.repo import DEFAULT_TENANT
from tests.support.app import Api, running
from tests.support.browser import Credentials, Portal, portal, portal_settings, screenshot
from tests.support.jobs import CODES_POLICY
from tests.support.media import photo, qr_on_photo, unique
from tests.support.people import sign_in
from tests.support.settings import make_settings
from tests.support.video import noise_frames, write_video
from tests.support.webhooks import Receiver

ROUTES = [
    QueueRoute(name="nudity", categories=["Explicit Nudity"], priority=50),
    QueueRoute(name="domains", categories=["Blocked Domain"], priority=20),
]
REVIEW_POLICY = CODES_POLICY.replace("name: codes-only", "name: codes-review").replace(
    "block: 50", "review: 50"
)
SCRIPT = "<script>alert('owned')</script>"


def put(
    svc: Services,
    tenant: str,
    key: str,
    categories: list[str] | None = None,
    *,
    data: bytes | None = None,
    result: dict[str, Any] | None = None,
) -> ReviewItem:
    """Queue an item directly (its media in the job media store when ``data``)."""
    sha = svc.jobs.media.store(data).sha256 if data is not None else None
    with svc.review.sessions.begin() as s:
        item, _ = svc.review.enqueue(
            s,
            tenant_id=tenant,
            source="api",
            source_id=key,
            categories=categories or [],
            labels=categories or [],
            result=result or {"decision": "review", "versions": {"codes": "1"}},
            policy="p",
            policy_version="v7",
            media={"kind": "upload", "sha256": sha} if sha else None,
            media_sha256=sha,
        )
    return item


async def aput(api: Api, tenant: str, key: str, *args: Any, **kw: Any) -> ReviewItem:
    return await asyncio.to_thread(put, api.services, tenant, key, *args, **kw)


def code_of(response: httpx.Response) -> str | None:
    """The error code an error page or fragment shows."""
    found = re.search(r'data-code="([a-z_]+)"', response.text)
    return found.group(1) if found else None


# ---- the service reads the pages use --------------------------------------------------


@pytest_asyncio.fixture
async def api(tmp_path: Path, database_url: str | None) -> AsyncIterator[Api]:
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        preload=False,
        review={"queues": [r.model_dump() for r in ROUTES], "lease_s": 60},
    )
    async with running(portal_settings(settings)) as started:
        yield started


async def test_queue_counts_and_claims_that_leave_skipped_items_out(api: Api) -> None:
    svc = api.services.review
    for n in range(3):
        await aput(api, DEFAULT_TENANT, f"d{n}")
    await aput(api, DEFAULT_TENANT, "n0", ["Exposed Female Nipple"])
    alice, bob = Reviewer("user", "alice"), Reviewer("user", "bob")
    first = await asyncio.to_thread(svc.claim_next, DEFAULT_TENANT, "default", alice)
    counts = {q.name: q for q in await asyncio.to_thread(svc.queue_counts, DEFAULT_TENANT)}
    assert list(counts) == ["nudity", "domains", "default", "escalated"]  # the settings' order
    assert (counts["default"].open, counts["default"].claimed) == (2, 1)
    assert (counts["nudity"].open, counts["nudity"].top_priority) == (1, 50)
    assert counts["domains"].open == 0 and counts["domains"].top_priority is None
    await asyncio.to_thread(svc.release, DEFAULT_TENANT, first.id, alice)
    # alice skipped `first`: her claims leave it out; bob's do not
    second = await asyncio.to_thread(
        lambda: svc.claim_next(DEFAULT_TENANT, "default", alice, exclude=[first.id])
    )
    assert second.id != first.id
    assert (await asyncio.to_thread(svc.claim_next, DEFAULT_TENANT, "default", bob)).id == first.id
    await asyncio.to_thread(svc.decide, DEFAULT_TENANT, second.id, alice, "approve")
    (default,) = await asyncio.to_thread(svc.queue_counts, DEFAULT_TENANT, "default")
    assert (default.open, default.claimed, default.decided) == (1, 1, 1)


async def test_the_tenant_audit_log_pages_newest_first(api: Api) -> None:
    svc = api.services.review
    admin = Reviewer("user", "root", admin=True)
    items = [await aput(api, DEFAULT_TENANT, f"a{n}") for n in range(5)]
    for item in items:
        await asyncio.to_thread(svc.decide, DEFAULT_TENANT, item.id, admin, "reject")
    seen: list[str] = []
    cursor = None
    while True:
        page = await asyncio.to_thread(svc.decision_log, DEFAULT_TENANT, limit=2, cursor=cursor)
        seen += [d.item_id for d in page.decisions]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [i.id for i in reversed(items)]
    assert (await asyncio.to_thread(svc.decision_log, "someone-else")).decisions == []


def test_explicit_and_gory_labels_are_sensitive() -> None:
    assert is_sensitive(["Exposed Male Genitalia"]) and is_sensitive(["Explicit Nudity"])
    assert is_sensitive(["Graphic Violence or Gore"]) and is_sensitive(["Corpses"])
    assert not is_sensitive(["Blocked Domain", "Firearms", "Female Swimwear or Underwear"])
    assert not is_sensitive(["not a label"])


# ---- over HTTP: sessions, CSRF, roles, tenants, escaping -----------------------------


async def test_the_pages_need_a_session(api: Api) -> None:
    item = await aput(api, DEFAULT_TENANT, "x")
    c = api.client
    for path in (
        "/portal/review",
        "/portal/review/default/work",
        f"/portal/review/items/{item.id}",
    ):
        r = await c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/portal/login"), path
    r = await c.get(f"/portal/review/items/{item.id}/media", follow_redirects=False)
    assert r.status_code == 303
    r = await c.post("/portal/review/default/claim", json={})
    assert (r.status_code, code_of(r)) == (401, "not_signed_in")


async def test_posts_without_the_csrf_token_are_refused(api: Api) -> None:
    item = await aput(api, DEFAULT_TENANT, "x")
    person = await sign_in(api, "moderator")
    async with aclosing(person.client) as c:
        for path, body in (
            ("/portal/review/default/claim", {}),
            (f"/portal/review/items/{item.id}/decide", {"action": "approve"}),
            (f"/portal/review/items/{item.id}/release", None),
        ):
            r = await c.post(path, json=body)
            assert (r.status_code, code_of(r)) == (403, "csrf_failed"), path
        r = await c.post("/portal/review/release", data={"ids": item.id})
        assert (r.status_code, code_of(r)) == (403, "csrf_failed")
        r = await c.post("/portal/review/default/claim", json={}, headers={"X-CSRF-Token": "no"})
        assert (r.status_code, code_of(r)) == (403, "csrf_failed")
    assert (await asyncio.to_thread(api.services.review.get, DEFAULT_TENANT, item.id)).status == (
        "open"
    )


async def test_a_moderator_claims_decides_and_hands_back(api: Api) -> None:
    svc = api.services
    items = [await aput(api, DEFAULT_TENANT, f"m{n}", data=unique(photo())) for n in range(3)]
    alice = await sign_in(api, "moderator")
    bob = await sign_in(api, "moderator")
    async with aclosing(alice.client) as a, aclosing(bob.client) as b:
        claim = "/portal/review/default/claim"
        r = await a.post(claim, json={}, headers=alice.headers)
        assert r.status_code == 200, r.text
        mine = re.search(r'data-item-id="(rev_[0-9a-f]+)"', r.text)
        assert mine and mine.group(1) == items[0].id
        assert f'src="/portal/review/items/{items[0].id}/media"' in r.text
        r = await b.post(claim, json={}, headers=bob.headers)
        assert f'data-item-id="{items[1].id}"' in r.text  # never alice's item
        # the media, through the session, with its sniffed type
        r = await b.get(f"/portal/review/items/{items[0].id}/media")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert items[0].media_sha256 is not None
        assert r.content == await asyncio.to_thread(svc.jobs.media.get, items[0].media_sha256)

        # bob may not decide alice's item; alice decides it with corrections and a note
        decide = f"/portal/review/items/{items[0].id}/decide"
        r = await b.post(decide, json={"action": "approve"}, headers=bob.headers)
        assert (r.status_code, code_of(r)) == (409, "review_lease_lost")
        body = {"action": "reject", "add_labels": ["Pills"], "note": "pills shop"}
        r = await a.post(decide, json={**body, "add_labels": ["Nope"]}, headers=alice.headers)
        assert (r.status_code, code_of(r)) == (422, "unknown_label")
        r = await a.post(decide, json=body, headers=alice.headers)
        assert r.status_code == 200, r.text
        assert r.json()["item"] == {
            "id": items[0].id,
            "status": "decided",
            "decision": "block",
            "queue": "default",
            "labels": ["Pills"],
        }
        # bob skips his item, leaves it out of his next claim and gets the third
        r = await b.post(f"/portal/review/items/{items[1].id}/release", headers=bob.headers)
        assert r.status_code == 204
        r = await b.post(claim, json={"exclude": [items[1].id]}, headers=bob.headers)
        assert f'data-item-id="{items[2].id}"' in r.text
        r = await b.post(claim, json={"exclude": [items[1].id]}, headers=bob.headers)
        assert r.status_code == 204  # nothing left for him
        r = await a.get("/portal/review/default/waiting")
        assert r.json() == {"open": 1, "claimed": 1, "decided": 1}
        # leaving the page hands back what it held (as navigator.sendBeacon sends it)
        r = await b.post(
            "/portal/review/release",
            data={"csrf_token": bob.csrf, "ids": [items[2].id, items[0].id]},
        )
        assert r.status_code == 204
        states = {
            i.id: i.status
            for i in (await asyncio.to_thread(svc.review.list_items, DEFAULT_TENANT)).items
        }
        assert states == {items[0].id: "decided", items[1].id: "open", items[2].id: "open"}

        # the queues page, the item's audit log and the tenant's
        r = await a.get("/portal/review")
        assert r.status_code == 200
        row = re.search(r'<tr data-queue="default">(.*?)</tr>', r.text, re.S)
        assert row and '<td class="count-open">2</td>' in row.group(1)
        assert '<td class="count-decided">1</td>' in row.group(1)
        assert 'href="/portal/review/default/work"' in r.text and "Start reviewing" in r.text
        r = await a.get(f"/portal/review/items/{items[0].id}")
        log = re.search(
            r'<table class="grid audit" id="item-decisions">(.*?)</table>', r.text, re.S
        )
        assert log, r.text
        assert alice.username in log.group(1) and "pills shop" in log.group(1)
        assert "reject" in log.group(1) and "v7" in log.group(1)
        assert 'data-action="approve"' not in r.text  # decided: no controls
        r = await a.get("/portal/review/decisions")
        assert r.status_code == 200 and f"/portal/review/items/{items[0].id}" in r.text
        r = await a.get("/portal/review/no-such-queue/work")
        assert (r.status_code, code_of(r)) == (422, "unknown_queue")


async def test_admins_decide_items_they_do_not_hold(api: Api) -> None:
    item = await aput(api, DEFAULT_TENANT, "held")
    alice = await sign_in(api, "moderator")
    bob = await sign_in(api, "moderator")
    root = await sign_in(api, "admin")
    async with aclosing(alice.client) as a, aclosing(bob.client) as b, aclosing(root.client) as r_:
        r = await a.post("/portal/review/default/claim", json={}, headers=alice.headers)
        assert r.status_code == 200
        page = f"/portal/review/items/{item.id}"
        assert 'data-action="approve"' in (await a.get(page)).text  # she holds it
        assert 'data-action="approve"' not in (await b.get(page)).text
        assert 'data-action="approve"' in (await r_.get(page)).text
        r = await r_.post(f"{page}/decide", json={"action": "escalate"}, headers=root.headers)
        assert r.status_code == 200, r.text
        assert r.json()["item"]["status"] == "open" and r.json()["item"]["queue"] == "escalated"
        text = (await r_.get(page)).text
        assert root.username in text and "escalated" in text


async def test_viewers_look_but_never_act(api: Api) -> None:
    item = await aput(api, DEFAULT_TENANT, "v", data=unique(photo()))
    viewer = await sign_in(api, "viewer")
    async with aclosing(viewer.client) as c:
        r = await c.get("/portal/review")
        assert r.status_code == 200 and item.id in r.text
        assert "Start reviewing" not in r.text
        r = await c.get("/portal/review/default/work")
        assert r.status_code == 200 and item.id in r.text
        assert "data-action=" not in r.text and 'id="review-actions"' not in r.text
        r = await c.get(f"/portal/review/items/{item.id}")
        assert r.status_code == 200 and "data-action=" not in r.text
        assert (await c.get(f"/portal/review/items/{item.id}/media")).status_code == 200
        for path, body in (
            ("/portal/review/default/claim", {}),
            (f"/portal/review/items/{item.id}/decide", {"action": "approve"}),
            (f"/portal/review/items/{item.id}/release", None),
        ):
            r = await c.post(path, json=body, headers=viewer.headers)
            assert (r.status_code, code_of(r)) == (403, "role_forbidden"), path
        r = await c.post("/portal/review/release", data={"csrf_token": viewer.csrf, "ids": item.id})
        assert (r.status_code, code_of(r)) == (403, "role_forbidden")
    assert (await asyncio.to_thread(api.services.review.get, DEFAULT_TENANT, item.id)).status == (
        "open"
    )


async def test_another_tenants_item_is_not_found(api: Api) -> None:
    item = await aput(api, DEFAULT_TENANT, "ours", data=unique(photo()))
    other = await api.new_tenant()
    stranger = await sign_in(api, "admin", other.id)
    async with aclosing(stranger.client) as c:
        for path in (f"/portal/review/items/{item.id}", f"/portal/review/items/{item.id}/media"):
            r = await c.get(path)
            assert (r.status_code, code_of(r)) == (404, "review_not_found"), path
        for path, body in (
            (f"/portal/review/items/{item.id}/decide", {"action": "approve"}),
            (f"/portal/review/items/{item.id}/release", None),
        ):
            r = await c.post(path, json=body, headers=stranger.headers)
            assert (r.status_code, code_of(r)) == (404, "review_not_found"), path
        r = await c.post("/portal/review/default/claim", json={}, headers=stranger.headers)
        assert r.status_code == 204  # nothing of theirs to claim
        r = await c.get("/portal/review")
        assert item.id not in r.text
        r = await c.get("/portal/review/decisions")
        assert item.id not in r.text
    assert (await asyncio.to_thread(api.services.review.get, DEFAULT_TENANT, item.id)).status == (
        "open"
    )


async def test_videos_play_and_expired_media_says_so(api: Api, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", noise_frames(10))
    video = await aput(api, DEFAULT_TENANT, "video", data=clip.read_bytes())
    gone = await aput(api, DEFAULT_TENANT, "gone", data=unique(photo()))
    assert gone.media_sha256 is not None
    api.services.jobs.media.path(gone.media_sha256).unlink()
    viewer = await sign_in(api, "viewer")
    async with aclosing(viewer.client) as c:
        html = (await c.get(f"/portal/review/items/{video.id}")).text
        assert f'<video class="media" src="/portal/review/items/{video.id}/media"' in html
        r = await c.get(f"/portal/review/items/{video.id}/media")
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        html = (await c.get(f"/portal/review/items/{gone.id}")).text
        assert "deleted after the retention period" in html and "<img" not in html
        r = await c.get(f"/portal/review/items/{gone.id}/media")
        assert (r.status_code, code_of(r)) == (410, "media_expired")


async def test_text_from_media_and_people_is_escaped(api: Api) -> None:
    result = {
        "decision": "review",
        "labels": [{"name": "Blocked Domain", "confidence": 97.5, "analyzer": "codes"}],
        "text": [{"text": SCRIPT, "confidence": 88.0, "language": "en"}],
        "codes": [{"format": "QRCODE", "text": f'https://evil.example/"><img src=x>{SCRIPT}'}],
        "urls": ["https://evil.example/<b>win</b>"],
        "versions": {"codes": "1"},
    }
    item = await aput(api, DEFAULT_TENANT, "xss", ["Blocked Domain"], result=result)
    person = await sign_in(api, "moderator")
    async with aclosing(person.client) as c:
        r = await c.post("/portal/review/domains/claim", json={}, headers=person.headers)
        assert r.status_code == 200
        html = r.text
        assert "<script>" not in html and "<img src=x>" not in html and "<b>win" not in html
        assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html
        assert "97.5" in html and "Blocked Domain" in html
        r = await c.post(
            f"/portal/review/items/{item.id}/decide",
            json={"action": "approve", "note": SCRIPT},
            headers=person.headers,
        )
        assert r.status_code == 200
        for path in (f"/portal/review/items/{item.id}", "/portal/review/decisions"):
            html = (await c.get(path)).text
            assert SCRIPT not in html and "<img src=x>" not in html, path
            assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html, path


# ---- in the browser, against a real server with the real models ------------------------


@dataclass
class Shown:
    portal: Portal
    receiver: Receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shown(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> AsyncIterator[Shown]:
    settings = make_settings(
        tmp_path_factory.mktemp("portal-review"),
        allow_private_urls=True,
        delivery=DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05),
        review={"webhook_url": receiver.url, "queues": [r.model_dump() for r in ROUTES]},
    )
    async with portal(settings, engine) as started:
        yield Shown(started, receiver)


@dataclass
class Team:
    tenant: str
    admin: dict[str, str]


async def team(shown: Shown) -> Team:
    """A tenant of its own with the policy that sends QR codes to a blocked domain to
    review."""
    api = shown.portal.api
    tenant = await api.new_tenant()
    r = await api.client.put(
        "/v1/policies/codes-review",
        content=REVIEW_POLICY,
        headers={**tenant.headers, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    return Team(tenant.id, tenant.headers)


async def queue_by_moderation(shown: Shown, t: Team, count: int, first: int = 0) -> list[str]:
    """``count`` images with QR codes to a blocked domain (offers ``first``, ``first +
    1``, ...), moderated with ``review=true``: the policy sends each to review (queue
    ``domains``)."""
    ids = []
    for n in range(first, first + count):
        r = await shown.portal.api.client.post(
            "/v1/moderate",
            params={"policy": "codes-review", "review": "true"},
            content=qr_on_photo(f"https://evil.example/offer/{n}"),
            headers={**t.admin, "Content-Type": "image/png"},
        )
        assert r.status_code == 200 and r.json()["decision"] == "review", r.text
        ids.append(r.headers["bastion-review-id"])
    assert len(set(ids)) == count
    return ids


async def shown_item(page: Page, previous: str | None = None, timeout: float = 10_000) -> str:
    """The id of the item the work view shows once it shows one other than
    ``previous`` ("" when it says there is nothing to review)."""
    await page.wait_for_function(
        """(previous) => {
            const root = document.getElementById("review-work");
            const shown = root.dataset.shown;
            return shown !== undefined && shown !== previous;
        }""",
        arg=previous,
        timeout=timeout,
    )
    return str(await page.evaluate("document.getElementById('review-work').dataset.shown"))


async def wait_shown(page: Page, item_id: str, timeout: float = 10_000) -> None:
    """Wait until the work view shows ``item_id``."""
    await page.wait_for_function(
        "(id) => document.getElementById('review-work').dataset.shown === id",
        arg=item_id,
        timeout=timeout,
    )


async def sign_in_as(shown: Shown, who: Credentials, path: str) -> Page:
    page = await shown.portal.new_page()
    await shown.portal.sign_in(page, who, path)
    return page


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.models
async def test_two_moderators_work_through_one_queue_and_never_share_an_item(
    shown: Shown,
) -> None:
    t = await team(shown)
    queued = await queue_by_moderation(shown, t, 6)
    alice = await shown.portal.person("moderator", tenant=t.tenant)
    bob = await shown.portal.person("moderator", tenant=t.tenant)
    pages = {
        "alice": await sign_in_as(shown, alice, "/portal/review/domains/work"),
        "bob": await sign_in_as(shown, bob, "/portal/review/domains/work"),
    }
    decided: dict[str, list[str]] = {"alice": [], "bob": []}
    current = {name: await shown_item(page) for name, page in pages.items()}
    assert current["alice"] and current["bob"] and current["alice"] != current["bob"]
    await screenshot(pages["alice"], "review-queue")

    async def work(name: str, key: str) -> None:
        page = pages[name]
        while current[name]:
            decided[name].append(current[name])
            await page.keyboard.press(key)
            current[name] = await shown_item(page, current[name])

    await asyncio.gather(work("alice", "a"), work("bob", "r"))
    everything = decided["alice"] + decided["bob"]
    assert sorted(everything) == sorted(queued)  # every item, none decided twice
    assert decided["alice"] and decided["bob"]
    for page in pages.values():
        assert await page.locator("#review-empty").is_visible()
        assert await page.locator("#review-empty").inner_text() != ""

    log = (await shown.portal.api.client.get("/v1/reviews", headers=t.admin)).json()["items"]
    outcome = {i["id"]: i["decision"] for i in log}
    assert {outcome[i] for i in decided["alice"]} == {"allow"}
    assert {outcome[i] for i in decided["bob"]} == {"block"}
    for item_id in queued:
        r = await shown.portal.api.client.get(f"/v1/reviews/{item_id}/decisions", headers=t.admin)
        by = [(d["by"]["kind"], d["by"]["id"]) for d in r.json()["decisions"]]
        expected = alice.user_id if item_id in decided["alice"] else bob.user_id
        assert by == [("user", expected)], item_id

    # a new item reaches a moderator waiting on the empty queue, without a reload
    await pages["bob"].close()
    (late,) = await queue_by_moderation(shown, t, 1, first=6)
    assert await shown_item(pages["alice"], "") == late


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.models
async def test_a_keyboard_decision_with_corrections_is_sent_signed(shown: Shown) -> None:
    t = await team(shown)
    (item_id,) = await queue_by_moderation(shown, t, 1)
    who = await shown.portal.person("moderator", tenant=t.tenant)
    page = await sign_in_as(shown, who, "/portal/review/domains/work")
    assert await shown_item(page) == item_id
    card = page.locator(f'.review-card[data-item-id="{item_id}"]')
    assert "evil.example/offer/0" in await card.locator(".codes").inner_text()
    # correct the labels with the keyboard: l focuses the picker, Enter adds, Esc leaves
    await page.keyboard.press("l")
    await page.keyboard.type("Contact Information")
    await page.keyboard.press("Enter")
    await page.keyboard.press("Escape")
    await card.locator('.chip[data-label="QR Code Link"] .chip-toggle').click()
    await page.keyboard.press("n")
    await page.keyboard.type("spam shop <b>")
    await page.keyboard.press("Escape")
    await page.keyboard.press("r")
    assert await shown_item(page, item_id) == ""
    timings = await page.evaluate("window.BastionReview.timings")
    assert len(timings) == 1 and timings[0] > 0

    secret = (await shown.portal.api.client.get("/v1/webhooks/secret", headers=t.admin)).json()
    call = await shown.receiver.wait(
        where=lambda e: e["type"] == "review.decided" and e["data"]["item"]["id"] == item_id
    )
    event = verify(call.body, call.headers, secret["secret"])["data"]
    assert event["decision"]["action"] == "reject" and event["decision"]["decision"] == "block"
    assert event["decision"]["note"] == "spam shop <b>"
    assert event["decision"]["added_labels"] == ["Contact Information"]
    assert event["decision"]["removed_labels"] == ["QR Code Link"]
    assert event["by"] == {"kind": "user", "id": who.user_id}
    assert event["policy"]["name"] == "codes-review" and event["policy"]["version"]

    # k (previous) opens the item just decided, with its audit log
    async with page.expect_navigation():
        await page.keyboard.press("k")
    assert page.url.endswith(f"/portal/review/items/{item_id}")
    assert "spam shop <b>" in await page.locator("main").inner_text()


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.models
async def test_sensitive_media_is_blurred_until_asked(shown: Shown) -> None:
    t = await team(shown)
    svc = shown.portal.api.services
    explicit = await asyncio.to_thread(
        put, svc, t.tenant, "explicit", ["Exposed Female Nipple"], data=unique(photo())
    )
    who = await shown.portal.person("moderator", tenant=t.tenant)
    page = await sign_in_as(shown, who, "/portal/review/nudity/work")
    assert await shown_item(page) == explicit.id
    media = page.locator(f'.review-card[data-item-id="{explicit.id}"] img.media')
    await media.wait_for()
    await page.mouse.move(0, 0)

    def filter_of() -> Any:
        return media.evaluate("el => getComputedStyle(el).filter")

    assert "blur" in await filter_of()
    await page.keyboard.press("u")
    await page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.review-current img.media')).filter"
        " === 'none'"
    )
    await page.keyboard.press("u")
    await page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.review-current img.media'))"
        ".filter.includes('blur')"
    )
    # the per-user default: blur off is kept for this user (in this browser)
    await page.locator("#pref-blur").uncheck()
    await page.reload()
    # the reload handed the item back and claimed it again
    await wait_shown(page, explicit.id)
    await page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.review-current img.media')).filter"
        " === 'none'"
    )
    assert not await page.locator("#pref-blur").is_checked()


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.models
async def test_a_viewer_sees_no_decide_controls(shown: Shown) -> None:
    t = await team(shown)
    (item_id,) = await queue_by_moderation(shown, t, 1)
    viewer = await shown.portal.person("viewer", tenant=t.tenant)
    page = await sign_in_as(shown, viewer, "/portal/review")
    assert await page.locator(f'#review-items tr[data-item="{item_id}"]').is_visible()
    assert await page.locator("text=Start reviewing").count() == 0
    await page.goto(f"{shown.portal.url}/review/domains/work")
    assert await page.locator(f'tr[data-item="{item_id}"]').is_visible()
    assert await page.locator("[data-action]").count() == 0
    await page.keyboard.press("a")  # the key does nothing for a viewer
    await page.goto(f"{shown.portal.url}/review/items/{item_id}")
    assert await page.locator(".review-card").is_visible()
    assert await page.locator("[data-action], .chip-toggle, textarea.note").count() == 0
    r = await shown.portal.api.client.get(f"/v1/reviews/{item_id}", headers=t.admin)
    assert r.json()["status"] == "open"


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.models
async def test_leaving_the_work_view_hands_its_items_back(shown: Shown) -> None:
    t = await team(shown)
    queued = await queue_by_moderation(shown, t, 3, first=20)
    who = await shown.portal.person("moderator", tenant=t.tenant)
    page = await sign_in_as(shown, who, "/portal/review/domains/work")
    assert await shown_item(page) == queued[0]
    client = shown.portal.api.client

    async def states() -> dict[str, str]:
        items = (await client.get("/v1/reviews", headers=t.admin)).json()["items"]
        return {i["id"]: i["status"] for i in items}

    # the item shown and the next one, claimed in the background, are held
    await page.wait_for_function("() => window.BastionReview.state.next !== null")
    assert await states() == {queued[0]: "claimed", queued[1]: "claimed", queued[2]: "open"}
    await page.goto(f"{shown.portal.url}/review")
    for _ in range(100):
        if set((await states()).values()) == {"open"}:
            break
        await asyncio.sleep(0.05)
    assert set((await states()).values()) == {"open"}
