"""The portal's live view, stream page and alerts inbox.

Over plain HTTP (the app in process, on SQLite and PostgreSQL): pages need a session;
tiles show a tenant's streams with their counters, open alerts and latest frame, and
never another tenant's; a stream's timeline shows its alerts with the rule, labels,
reason and evidence, escaped; moderators acknowledge, dismiss and stop (the stop hook
is called, through the same services as the API), viewers cannot, and a POST without
the CSRF token is refused; explicit or gory media is marked to be blurred; the stream
feed sends tile changes once each; the portal's WebSocket forwards both feeds.

In Chromium against a real server with the real models: a pushed frame whose QR code
points to a blocked domain makes its alert appear in the inbox and the stream's tile
change without a reload; the stream is stopped from its page and the platform's stop
hook is called; an image whose text is ``<script>`` shows that text and runs nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect
from websockets.asyncio.client import connect

from bastion.delivery.config import DeliveryConfig
from bastion.live.alerts.feed import FeedConfig
from bastion.live.spec import StreamSpec
from bastion.live.stream_feed import StreamFeed
from bastion.live.streams import StreamReport
from bastion.live.tables import Stream
from bastion.pipeline.engine import Engine
from bastion.rules import RuleMatch
from tests.support.app import Api, Tenant, running, serving
from tests.support.auth import AUTH
from tests.support.browser import portal, portal_settings, screenshot
from tests.support.databases import database_url
from tests.support.media import benign_photos, qr_on_photo, text_on_photo
from tests.support.people import SignedIn, sign_in
from tests.support.rules import BLOCKED_DOMAIN
from tests.support.settings import make_settings
from tests.support.webhooks import Receiver

SCRIPT = "<script>window.pwned=1</script>"
FAST_DELIVERY = DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["sqlite", "postgres"])
async def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp(f"portal-live-{request.param}")
    with database_url(request.param, folder) as url:
        settings = make_settings(
            folder,
            database_url=url,
            preload=False,
            allow_private_urls=True,
            live={"stop_hook_url": receiver.base + "/stop"},
            delivery=FAST_DELIVERY,
        )
        async with running(portal_settings(settings)) as started:
            yield started


# ---- helpers -------------------------------------------------------------------------


async def register(api: Api, tenant: Tenant, stream_id: str, channel: str = "gaming") -> str:
    """A stream whose frames the platform pushes; its key."""
    spec = StreamSpec(id=stream_id, channel=channel, metadata={"room": 7})
    row, created = await asyncio.to_thread(api.services.streams.register, tenant.id, spec)
    assert created
    return row.id


def save_frame(api: Api, pk: str, photo: str = "skimage-coffee") -> str:
    return api.services.live_thumbnails.save(pk, benign_photos()[photo])


def _raise(api: Api, pk: str, match: RuleMatch, thumbnail: str | None) -> str:
    alerts = api.services.alerts
    with alerts.sessions.begin() as s:
        row = s.get(Stream, pk, with_for_update=True)
        assert row is not None
        alert, _ = alerts.raise_in(
            s, row, match, rule_set="live-default", thumbnail=thumbnail, frame_ms=4200
        )
        return alert.id


async def raise_alert(
    api: Api,
    pk: str,
    rule: str,
    labels: list[tuple[str, float]],
    *,
    reason: str | None = None,
    text: list[str] | None = None,
    urls: list[str] | None = None,
    frame: bool = True,
) -> str:
    """Raise an alert the way a stream session does, with a real frame as its thumbnail."""
    thumbnail = await asyncio.to_thread(save_frame, api, pk) if frame else None
    match = RuleMatch(
        rule_set="live-default",
        rule=rule,
        action="alert",
        labels=labels,
        text=text or [],
        urls=urls or [],
        reason=reason or f"{rule} fired",
    )
    return await asyncio.to_thread(_raise, api, pk, match, thumbnail)


async def state_of(api: Api, tenant: Tenant, alert_id: str) -> str:
    alert = await asyncio.to_thread(api.services.alerts.get, tenant.id, alert_id)
    return alert.state


@asynccontextmanager
async def person(api: Api, tenant: Tenant, role: str = "moderator") -> AsyncIterator[SignedIn]:
    """A new person of ``tenant`` signed in; their client is closed after."""
    signed = await sign_in(api, role, tenant.id)
    try:
        yield signed
    finally:
        await signed.client.aclose()


def row_html(html: str, alert_id: str) -> str:
    """The inbox row (or timeline entry) of one alert."""
    found = re.search(rf'<(tr|li) [^>]*data-alert="{alert_id}".*?</\1>', html, re.S)
    assert found, f"no row of {alert_id}"
    return found.group(0)


# ---- sessions, roles, CSRF, tenants --------------------------------------------------


async def test_pages_need_a_session(api: Api) -> None:
    for path in (
        "/portal/live",
        "/portal/live/tiles",
        "/portal/alerts",
        "/portal/alerts/rows",
        "/portal/streams/show-1",
        "/portal/streams/show-1/thumbnail",
    ):
        r = await api.client.get(path, follow_redirects=False)
        assert r.status_code == 303, (path, r.status_code)
        assert r.headers["location"].startswith("/portal/login?next="), path
    r = await api.client.post("/portal/streams/show-1/stop")
    assert r.status_code == 401
    r = await api.client.post("/portal/alerts/alr_x/dismiss", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/portal/login")


async def test_viewers_see_but_cannot_stop_or_act(api: Api) -> None:
    t = await api.new_tenant()
    pk = await register(api, t, "show-v")
    alert = await raise_alert(api, pk, "weapons", [("Weapons", 81.0)])
    async with person(api, t, "viewer") as viewer:
        c = viewer.client
        page = await c.get("/portal/streams/show-v")
        assert page.status_code == 200
        assert "show-v" in page.text
        assert 'id="stop-stream"' not in page.text and "data-confirm" not in page.text
        inbox = await c.get("/portal/alerts")
        assert alert in inbox.text
        assert "/acknowledge" not in row_html(inbox.text, alert)  # no buttons for viewers
        r = await c.post("/portal/streams/show-v/stop", data={"csrf_token": viewer.csrf})
        assert r.status_code == 403 and 'data-code="role_forbidden"' in r.text
        for action in ("acknowledge", "dismiss", "stop"):
            r = await c.post(f"/portal/alerts/{alert}/{action}", headers=viewer.headers)
            assert r.status_code == 403, (action, r.text)
    stream = await asyncio.to_thread(api.services.streams.get, t.id, "show-v")
    assert stream.status == "live" and stream.desired == "running"
    assert await state_of(api, t, alert) == "open"


async def test_posts_without_the_csrf_token_are_refused(api: Api) -> None:
    t = await api.new_tenant()
    pk = await register(api, t, "show-c")
    alert = await raise_alert(api, pk, "weapons", [("Weapons", 81.0)])
    async with person(api, t) as moderator:
        c = moderator.client
        r = await c.post("/portal/streams/show-c/stop")
        assert r.status_code == 403 and 'data-code="csrf_failed"' in r.text
        r = await c.post("/portal/streams/show-c/stop", data={"csrf_token": "forged"})
        assert r.status_code == 403 and 'data-code="csrf_failed"' in r.text
        for action in ("acknowledge", "dismiss", "stop"):
            r = await c.post(f"/portal/alerts/{alert}/{action}", headers={"HX-Request": "true"})
            assert r.status_code == 403 and 'data-code="csrf_failed"' in r.text, action
    stream = await asyncio.to_thread(api.services.streams.get, t.id, "show-c")
    assert stream.status == "live"
    assert await state_of(api, t, alert) == "open"


async def test_another_tenants_streams_and_alerts_are_not_found(api: Api) -> None:
    mine, theirs = await api.new_tenant(), await api.new_tenant()
    await register(api, mine, "show-mine")
    pk = await register(api, theirs, "show-theirs")
    alert = await raise_alert(api, pk, "weapons", [("Weapons", 81.0)])
    async with person(api, mine) as moderator:
        c = moderator.client
        live = await c.get("/portal/live")
        assert "show-mine" in live.text and "show-theirs" not in live.text
        inbox = await c.get("/portal/alerts", params={"state": "all"})
        assert alert not in inbox.text
        for path in (
            "/portal/streams/show-theirs",
            "/portal/streams/show-theirs/thumbnail",
            "/portal/live/tiles/show-theirs",
            f"/portal/alerts/{alert}/row",
            f"/portal/alerts/{alert}/thumbnail",
        ):
            r = await c.get(path)
            assert r.status_code == 404, (path, r.status_code)
        r = await c.post("/portal/streams/show-theirs/stop", data={"csrf_token": moderator.csrf})
        assert r.status_code == 404 and 'data-code="stream_not_found"' in r.text
        for action in ("acknowledge", "dismiss", "stop"):
            r = await c.post(f"/portal/alerts/{alert}/{action}", headers=moderator.headers)
            assert r.status_code == 404 and 'data-code="alert_not_found"' in r.text
    assert await state_of(api, theirs, alert) == "open"
    stream = await asyncio.to_thread(api.services.streams.get, theirs.id, "show-theirs")
    assert stream.status == "live"


# ---- the live view and the stream page ------------------------------------------------


async def test_tiles_show_status_counters_open_alerts_and_the_latest_frame(api: Api) -> None:
    t = await api.new_tenant()
    read_pk = await register(api, t, "cam-1", channel="cooking")
    pushed_pk = await register(api, t, "push-1", channel="gaming")
    await register(api, t, "quiet-1", channel="gaming")
    frame = await asyncio.to_thread(save_frame, api, read_pk, "skimage-astronaut")
    report = StreamReport(
        status="reconnecting",
        reason="the source dropped",
        counters={"frames_received": 900, "frames_analyzed": 30, "alerts": 0},
        last_frame_at=None,
        last_thumbnail=frame,
    )
    assert await asyncio.to_thread(api.services.streams.report, read_pk, None, report)
    alert = await raise_alert(api, pushed_pk, "qr-link", [("QR Code Link", 90.0)])
    second = await raise_alert(api, pushed_pk, "weapons", [("Weapons", 75.0)])
    await asyncio.to_thread(api.services.alerts.dismiss, t.id, second, "test")
    async with person(api, t, "viewer") as viewer:
        c = viewer.client
        page = await c.get("/portal/live")
        assert page.status_code == 200
        tiles = {
            m.group(1): m.group(0)
            for m in re.finditer(
                r'<article [^>]*data-stream-tile="([^"]+)".*?</article>', page.text, re.S
            )
        }
        assert set(tiles) == {"cam-1", "push-1", "quiet-1"}
        cam = tiles["cam-1"]
        assert 'data-status="reconnecting"' in cam and "the source dropped" in cam
        assert '<dd data-counter="frames_analyzed">30</dd>' in cam
        assert '<dd data-counter="frames_received">900</dd>' in cam
        assert f'src="/portal/streams/cam-1/thumbnail?v={frame[:12]}"' in cam
        pushed = tiles["push-1"]
        assert re.search(r'data-field="open_alerts" class="has-open">1</dd>', pushed), pushed
        assert "/portal/streams/push-1/thumbnail?v=" in pushed  # the newest alert frame
        assert "No analysed frame yet" in tiles["quiet-1"]

        r = await c.get("/portal/streams/cam-1/thumbnail")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        stored = api.services.live_thumbnails.path(read_pk, frame)
        assert r.content == stored.read_bytes()
        r = await c.get("/portal/streams/quiet-1/thumbnail")
        assert r.status_code == 404

        only = await c.get("/portal/live", params={"channel": "gaming"})
        assert "push-1" in only.text and "quiet-1" in only.text and "cam-1" not in only.text
        only = await c.get("/portal/live", params={"status": "reconnecting"})
        assert "cam-1" in only.text and "push-1" not in only.text
        r = await c.get("/portal/live", params={"status": "sleeping"})
        assert r.status_code == 400 and 'data-code="invalid_status"' in r.text
        one = await c.get("/portal/live/tiles/push-1")
        assert one.status_code == 200 and one.text.lstrip().startswith("<article")
        assert alert not in one.text
    await asyncio.to_thread(api.services.alerts.stop_stream, t.id, "quiet-1", by="test", reason="x")
    async with person(api, t, "viewer") as again:
        c = again.client
        running_only = await c.get("/portal/live")
        assert "quiet-1" not in running_only.text
        every = await c.get("/portal/live", params={"status": "all"})
        assert "quiet-1" in every.text


async def test_the_stream_page_shows_its_alerts_and_why_escaped(api: Api) -> None:
    t = await api.new_tenant()
    pk = await register(api, t, "show-x")
    alert = await raise_alert(
        api,
        pk,
        "casino-ad",
        [("Blocked Word", 99.0)],
        reason=f"word 'casino' in {SCRIPT!r}",
        text=[SCRIPT, "<img src=x onerror=alert(1)>"],
        urls=[f"https://{BLOCKED_DOMAIN}/?q=<b>win</b>"],
    )
    async with person(api, t) as moderator:
        c = moderator.client
        page = await c.get("/portal/streams/show-x")
    assert page.status_code == 200
    html = page.text
    assert "<script>window" not in html and "<img src=x" not in html and "<b>win" not in html
    entry = row_html(html, alert)
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in entry
    assert "&lt;img src=x onerror=alert(1)&gt;" in entry
    assert f"https://{BLOCKED_DOMAIN}/?q=&lt;b&gt;win&lt;/b&gt;" in entry
    assert "casino-ad" in entry and "Blocked Word" in entry and "live-default" in entry
    assert f'src="/portal/alerts/{alert}/thumbnail?v=' in entry
    assert "4200 ms" in entry  # where in the stream the frame was
    stop = re.search(r'<form method="post" action="/portal/streams/show-x/stop"[^>]*>', html, re.S)
    assert stop is not None and "data-confirm=" in stop.group(0)
    assert f'name="csrf_token" value="{moderator.csrf}"' in html
    assert "registered on channel gaming" in html
    assert "<script" not in html.replace('<script src="/portal/static/', "")  # files only


async def test_a_moderator_stops_a_stream_and_the_stop_hook_is_called(
    api: Api, receiver: Receiver
) -> None:
    t = await api.new_tenant()
    pk = await register(api, t, "show-stop")
    alert = await raise_alert(api, pk, "weapons", [("Weapons", 81.0)])
    async with person(api, t) as moderator:
        c = moderator.client
        r = await c.post("/portal/streams/show-stop/stop", data={"csrf_token": moderator.csrf})
        assert r.status_code == 303 and r.headers["location"] == "/portal/streams/show-stop"
        page = await c.get("/portal/streams/show-stop")
        assert 'data-status="stopped"' in page.text
        assert 'id="stop-stream"' not in page.text  # nothing left to stop
        assert f"user:{moderator.user_id}" in page.text
    stream = await asyncio.to_thread(api.services.streams.get, t.id, "show-stop")
    assert (stream.status, stream.desired) == ("stopped", "stopped")
    assert stream.stopped_by == f"user:{moderator.user_id}"
    assert await state_of(api, t, alert) == "stream_stopped"
    by = f"user:{moderator.user_id}"  # this test's own: the receiver serves both databases
    call = await receiver.wait("/stop", lambda e: e["data"]["stopped_by"] == by)
    secret = (await api.client.get("/v1/webhooks/secret", headers=t.headers)).json()["secret"]
    event = call.verify(secret)
    assert event["type"] == "stream.stop"
    assert event["data"]["stream_id"] == "show-stop" and event["data"]["metadata"] == {"room": 7}


# ---- the inbox -----------------------------------------------------------------------


async def test_the_inbox_lists_filters_and_works_alerts(api: Api, receiver: Receiver) -> None:
    t = await api.new_tenant()
    a_pk = await register(api, t, "show-a", channel="cooking")
    b_pk = await register(api, t, "show-b", channel="gaming")
    first = await raise_alert(api, a_pk, "qr-link", [("QR Code Link", 90.0)])
    second = await raise_alert(api, b_pk, "weapons", [("Weapons", 81.0)])
    third = await raise_alert(api, b_pk, "drugs", [("Pills", 88.0)])
    async with person(api, t) as moderator:
        c = moderator.client
        page = await c.get("/portal/alerts")
        assert page.status_code == 200
        order = [m.group(1) for m in re.finditer(r'data-alert="(alr_[0-9a-f]+)"', page.text)]
        assert order == [third, second, first]  # newest first
        assert 'data-states="open,acknowledged"' in page.text
        for query, shown in (
            ({"rule": "weapons"}, [second]),
            ({"channel": "cooking"}, [first]),
            ({"stream": "show-b"}, [third, second]),
            ({"stream": "show-b", "rule": "drugs"}, [third]),
        ):
            r = await c.get("/portal/alerts", params=query)
            found = [m.group(1) for m in re.finditer(r'data-alert="(alr_[0-9a-f]+)"', r.text)]
            assert found == shown, (query, found)
        r = await c.get("/portal/alerts", params={"state": "everything"})
        assert r.status_code == 400 and 'data-code="invalid_state"' in r.text

        htmx = {**moderator.headers, "HX-Request": "true"}
        r = await c.post(f"/portal/alerts/{first}/acknowledge", headers=htmx)
        assert r.status_code == 200, r.text
        assert r.text.lstrip().startswith("<tr") and 'data-state="acknowledged"' in r.text
        assert f"user:{moderator.user_id}" in r.text
        r = await c.post(f"/portal/alerts/{first}/acknowledge", headers=htmx)
        assert r.status_code == 409 and r.headers["HX-Retarget"] == "#flash"
        r = await c.post(f"/portal/alerts/{second}/dismiss?view=item", headers=htmx)
        assert r.status_code == 200 and r.text.lstrip().startswith("<li")
        assert 'data-state="dismissed"' in r.text and "/dismiss" not in r.text

        open_now = await c.get("/portal/alerts")
        assert second not in open_now.text and first in open_now.text
        dismissed = await c.get("/portal/alerts", params={"state": "dismissed"})
        assert second in dismissed.text and first not in dismissed.text
        rows = await c.get("/portal/alerts/rows", params={"state": "acknowledged"})
        assert rows.status_code == 200 and first in rows.text and "<html" not in rows.text

        r = await c.post(f"/portal/alerts/{third}/stop", headers=htmx)
        assert r.status_code == 200 and 'data-state="stream_stopped"' in r.text
    assert await state_of(api, t, first) == "acknowledged"
    assert await state_of(api, t, second) == "dismissed"
    assert await state_of(api, t, third) == "stream_stopped"
    by = f"user:{moderator.user_id}"  # this test's own: the receiver serves both databases
    call = await receiver.wait("/stop", lambda e: e["data"]["stopped_by"] == by)
    event = call.json()
    assert event["data"]["alert_id"] == third and event["data"]["stream_id"] == "show-b"


async def test_explicit_and_gory_media_is_marked_to_blur(api: Api) -> None:
    t = await api.new_tenant()
    pk = await register(api, t, "show-s")
    calm_pk = await register(api, t, "show-calm")
    explicit = await raise_alert(api, pk, "explicit", [("Exposed Male Genitalia", 92.0)])
    gore = await raise_alert(api, pk, "gore", [("Graphic Violence or Gore", 85.0)])
    weapons = await raise_alert(api, calm_pk, "weapons", [("Weapons", 81.0)])
    async with person(api, t, "viewer") as viewer:
        c = viewer.client
        inbox = (await c.get("/portal/alerts")).text
        live = (await c.get("/portal/live")).text
    for alert in (explicit, gore):
        assert 'class="thumb sensitive"' in row_html(inbox, alert), alert
    assert 'class="thumb "' in row_html(inbox, weapons)
    sensitive_tile = re.search(r'data-stream-tile="show-s".*?</article>', live, re.S)
    calm_tile = re.search(r'data-stream-tile="show-calm".*?</article>', live, re.S)
    assert sensitive_tile and 'class="sensitive"' in sensitive_tile.group(0)
    assert calm_tile and "sensitive" not in calm_tile.group(0)


# ---- the stream feed and the portal's WebSocket ---------------------------------------


async def test_the_stream_feed_sends_each_tile_change_once(api: Api) -> None:
    t, other = await api.new_tenant(), await api.new_tenant()
    feed = StreamFeed(api.services.db_sessions, FeedConfig(poll_s=0.05))
    sub = feed.subscribe(t.id)

    async def drain() -> list[dict[str, Any]]:
        await feed.poll_once()
        return [json.loads(m) for m in await sub.next(0)]

    await drain()  # the watermark starts now
    pk = await register(api, t, "feed-1", channel="news")
    await register(api, other, "feed-other")
    got = await drain()
    assert [m["type"] for m in got] == ["stream.updated"]
    shown = got[0]["stream"]
    assert (shown["stream_id"], shown["channel"], shown["status"]) == ("feed-1", "news", "live")
    assert shown["open_alerts"] == 0 and shown["thumbnail_url"] is None
    assert await drain() == []  # the overlap sends nothing twice

    counters = {"frames_received": 3, "frames_analyzed": 2, "alerts": 0}
    report = StreamReport(status=None, counters=counters)
    await asyncio.to_thread(api.services.streams.report, pk, None, report)
    (msg,) = await drain()
    assert msg["stream"]["counters"]["frames_analyzed"] == 2

    alert = await raise_alert(api, pk, "explicit", [("Exposed Female Nipple", 91.0)])
    (msg,) = await drain()
    first_url = msg["stream"]["thumbnail_url"]
    assert msg["stream"]["open_alerts"] == 1 and msg["stream"]["sensitive"] is True
    assert re.fullmatch(r"/portal/streams/feed-1/thumbnail\?v=[0-9a-f]{12}", first_url)
    assert await drain() == []

    frame = await asyncio.to_thread(save_frame, api, pk, "skimage-rocket")  # counted again
    match = RuleMatch(
        rule_set="live-default",
        rule="explicit",
        action="alert",
        labels=[("Exposed Female Nipple", 93.0)],
        reason="again",
    )
    assert await asyncio.to_thread(_raise, api, pk, match, frame) == alert
    (msg,) = await drain()
    assert msg["stream"]["thumbnail_url"] != first_url  # a new version: the browser reloads

    await asyncio.to_thread(api.services.alerts.dismiss, t.id, alert, "test")
    (msg,) = await drain()
    assert msg["stream"]["open_alerts"] == 0 and msg["stream"]["sensitive"] is False
    await asyncio.to_thread(api.services.alerts.stop_stream, t.id, "feed-1", by="api", reason="x")
    (msg,) = await drain()
    assert msg["stream"]["status"] == "stopped" and msg["stream"]["stopped_by"] == "api"
    assert await drain() == []
    assert feed.stats.sent == 6
    feed.unsubscribe(sub)
    assert feed.subscribers() == 0


@pytest.mark.server
async def test_the_portal_socket_forwards_alerts_and_stream_changes(tmp_path: Path) -> None:
    settings = portal_settings(make_settings(tmp_path, preload=False))
    async with serving(settings) as served:
        svc = served.services
        t = await served.new_tenant()
        user = await asyncio.to_thread(
            svc.accounts.create_user, t.id, "ws-viewer", "pw-" + "x" * 20, "viewer"
        )
        signed = await asyncio.to_thread(svc.accounts.start_session, user)
        origin = served.base
        headers = {"Cookie": f"bastion_session={signed.token}", "Origin": origin}
        async with connect(served.ws + "/portal/ws", additional_headers=headers) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert hello["type"] == "hello" and hello["tenant_id"] == t.id
            assert svc.stream_feed.subscribers(t.id) == 1 and svc.feed.subscribers(t.id) == 1
            pk = await register(served, t, "ws-1")
            alert = await raise_alert(served, pk, "weapons", [("Weapons", 80.0)])
            seen: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + 5
            while not (
                "alert.created" in seen and seen.get("stream.updated", {}).get("open_alerts")
            ):
                assert time.monotonic() < deadline, seen
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if message["type"] == "alert.created":
                    seen["alert.created"] = message["alert"]
                elif message["type"] == "stream.updated":
                    seen["stream.updated"] = message["stream"]
            assert seen["alert.created"]["id"] == alert
            assert seen["stream.updated"]["stream_id"] == "ws-1"
        for _ in range(100):  # the page went away: both subscriptions go
            if svc.stream_feed.subscribers(t.id) + svc.feed.subscribers(t.id) == 0:
                break
            await asyncio.sleep(0.02)
        assert svc.stream_feed.subscribers(t.id) == 0 and svc.feed.subscribers(t.id) == 0


# ---- in a browser, with the real models ------------------------------------------------

CODES_AND_TEXT = """\
name: portal-live
description: QR codes and text, so a frame costs little
analyzers: [codes, ocr]
rules: []
"""
PORTAL_RULES = f"""\
name: portal-live
channel_pattern: "^portal-"
sample_interval_s: 1
policy: portal-live
rules:
  - name: spam-domain
    urls: {{domains: [{BLOCKED_DOMAIN}]}}
  - name: markup-text
    text: {{regex: '<script>.*</script>'}}
"""


async def _platform(api: Api) -> None:
    """The default tenant's policy and rule set for the ``portal-`` channels."""
    r = await api.client.put(
        "/v1/policies/portal-live",
        content=CODES_AND_TEXT,
        headers={**AUTH, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    r = await api.client.post(
        "/v1/rules", content=PORTAL_RULES, headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert r.status_code in (200, 201), r.text


async def _stream(api: Api, stream_id: str) -> None:
    r = await api.client.post(
        "/v1/streams", json={"id": stream_id, "channel": "portal-shows"}, headers=AUTH
    )
    assert r.status_code == 201, r.text


async def _push(api: Api, stream_id: str, data: bytes) -> dict[str, Any]:
    r = await api.client.post(
        f"/v1/streams/{stream_id}/frames",
        content=data,
        headers={**AUTH, "Content-Type": "image/png"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["analyzed"] and body["alert_ids"], body
    return body


async def _pushed_on(page: Page) -> None:
    """The page's push channel is connected."""
    await expect(page.locator("#push-state.on")).to_be_attached(timeout=10_000)


async def _mark(page: Page) -> None:
    """A flag a reload would wipe out."""
    await page.evaluate("window.__sameDocument = true")


async def _not_reloaded(page: Page) -> None:
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"


@pytest.mark.browser
@pytest.mark.models
@pytest.mark.server
async def test_pushed_alerts_appear_live_and_a_stream_is_stopped_from_the_portal(
    tmp_path: Path, engine: Engine
) -> None:
    with Receiver() as hooks:
        settings = make_settings(
            tmp_path,
            allow_private_urls=True,
            live={"stop_hook_url": hooks.base + "/stop"},
            delivery=FAST_DELIVERY,
        )
        async with portal(settings, engine) as shown:
            await _platform(shown.api)
            await _stream(shown.api, "portal-1")
            who = await shown.person("moderator")
            live = await shown.new_page()
            await shown.sign_in(live, who, "/portal/live")
            inbox = await shown.new_page()
            await shown.sign_in(inbox, who, "/portal/alerts")
            for page in (live, inbox):
                await _pushed_on(page)
                await _mark(page)
            tile = live.locator('[data-stream-tile="portal-1"]')
            await expect(tile.locator('[data-field="no-frame"]')).to_be_visible()
            await expect(inbox.locator("#alerts-empty")).to_be_visible()

            body = await _push(shown.api, "portal-1", qr_on_photo(f"https://{BLOCKED_DOMAIN}/deal"))
            (alert_id,) = body["alert_ids"]
            row = inbox.locator(f'[data-alert="{alert_id}"]')
            await expect(row).to_be_visible(timeout=5_000)
            await expect(row.locator(".rule")).to_have_text("spam-domain")
            await expect(row.locator(".evidence-url")).to_have_text(
                f"https://{BLOCKED_DOMAIN}/deal"
            )
            await expect(row.locator("img.thumb")).to_have_js_property("complete", True)
            assert await row.locator("img.thumb").evaluate("img => img.naturalWidth") > 0
            await expect(inbox.locator("#alerts-empty")).to_be_hidden()
            await expect(row).to_have_class(re.compile(r"\bselected\b"))  # the keys act on it
            await expect(tile.locator('[data-field="open_alerts"]')).to_have_text("1")
            await expect(tile.locator('[data-counter="frames_analyzed"]')).to_have_text("1")
            await expect(tile.locator('img[data-field="thumbnail"]')).to_be_visible()
            await expect(tile.locator('img[data-field="thumbnail"]')).to_have_attribute(
                "src", re.compile(r"^/portal/streams/portal-1/thumbnail\?v=[0-9a-f]{12}$")
            )
            for page in (live, inbox):
                await _not_reloaded(page)
            await screenshot(live, "live-view")
            await screenshot(inbox, "alerts")

            # acknowledge with the keyboard: the row stays (still unresolved), changed
            await inbox.keyboard.press("a")
            await expect(row.locator('[data-field="state"]')).to_have_text("acknowledged")

            stream_page = await shown.new_page()
            await shown.sign_in(stream_page, who, "/portal/streams/portal-1")
            await expect(stream_page.locator(f'[data-alert="{alert_id}"]')).to_be_visible()
            stream_page.once("dialog", lambda dialog: dialog.dismiss())
            await stream_page.click("#stop-stream")  # asked, and said no
            await asyncio.sleep(0.3)
            stream = await asyncio.to_thread(shown.api.services.streams.get, "default", "portal-1")
            assert stream.status == "live"
            stream_page.once("dialog", lambda dialog: dialog.accept())
            async with stream_page.expect_navigation():
                await stream_page.click("#stop-stream")
            await expect(stream_page.locator('[data-field="status"]').first).to_have_text("stopped")
            call = await hooks.wait("/stop", lambda e: e["data"]["stream_id"] == "portal-1")
            assert call.json()["data"]["stopped_by"] == f"user:{who.user_id}"
            # the other pages follow without a reload
            await expect(tile.locator('[data-field="status"]')).to_have_text("stopped")
            await expect(row).to_be_hidden()  # stream_stopped leaves the unresolved inbox
            await _not_reloaded(inbox)


@pytest.mark.browser
@pytest.mark.models
@pytest.mark.server
async def test_script_in_an_image_is_shown_as_text_and_never_runs(
    tmp_path: Path, engine: Engine
) -> None:
    async with portal(make_settings(tmp_path), engine) as shown:
        await _platform(shown.api)
        await _stream(shown.api, "portal-x")
        who = await shown.person("moderator")
        inbox = await shown.new_page()
        await shown.sign_in(inbox, who, "/portal/alerts")
        await _pushed_on(inbox)
        await _mark(inbox)
        body = await _push(shown.api, "portal-x", text_on_photo(SCRIPT))
        (alert_id,) = body["alert_ids"]
        alert = (await shown.api.client.get(f"/v1/alerts/{alert_id}", headers=AUTH)).json()
        assert alert["rule"] == "markup-text"
        assert alert["evidence"]["text"] == [SCRIPT]  # what the OCR read

        row = inbox.locator(f'[data-alert="{alert_id}"]')
        await expect(row).to_be_visible(timeout=5_000)  # pushed, then fetched as a fragment
        await expect(row.locator(".evidence-text")).to_have_text(SCRIPT)
        await expect(row.locator('[data-field="reason"]')).to_contain_text(SCRIPT)
        await _not_reloaded(inbox)
        stream_page = await shown.new_page()
        await shown.sign_in(stream_page, who, "/portal/streams/portal-x")
        entry = stream_page.locator(f'[data-alert="{alert_id}"]')
        await expect(entry.locator(".evidence-text")).to_have_text(SCRIPT)
        await inbox.reload()  # rendered with the page this time
        reloaded = inbox.locator(f'[data-alert="{alert_id}"] .evidence-text')
        await expect(reloaded).to_have_text(SCRIPT)
        for page in (inbox, stream_page):
            assert await page.evaluate("window.pwned") is None
            scripts = await page.evaluate(
                "Array.from(document.scripts).map(s => s.src || s.textContent)"
            )
            assert all("pwned" not in s for s in scripts), scripts
