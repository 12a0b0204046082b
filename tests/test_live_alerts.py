"""Alerts of live streams end to end, on SQLite and PostgreSQL, through a real server.

A real uvicorn server on loopback runs the app (its lifespan runs the delivery
dispatcher and the alert feed); alerts are raised the way stream sessions raise them
(``AlertService.raise_in`` in a transaction of their own), webhooks go to a real HTTP
receiver and are verified with the Standard Webhooks library, and the WebSocket feed
is read with a real WebSocket client.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from sqlalchemy import select
from standardwebhooks import Webhook
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bastion.delivery.config import DeliveryConfig
from bastion.delivery.tables import Delivery
from bastion.errors import NotFound
from bastion.live.alerts.feed import CLOSE_TOO_SLOW, AlertFeed, FeedConfig
from bastion.live.alerts.service import AlertService
from bastion.live.spec import StreamSpec
from bastion.live.tables import Stream
from bastion.live.thumbnails import LiveThumbnails
from bastion.rules import RuleMatch
from tests.support.app import ServedApi, serving
from tests.support.auth import AUTH, bearer
from tests.support.databases import database_url
from tests.support.media import benign_photos
from tests.support.settings import make_settings
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@dataclass
class Tenant:
    id: str
    headers: dict[str, str]
    key: str


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["sqlite", "postgres"])
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> AsyncIterator[ServedApi]:
    folder = tmp_path_factory.mktemp(f"alerts-{request.param}")
    with database_url(request.param, folder) as url:
        settings = make_settings(
            folder,
            database_url=url,
            preload=False,
            allow_private_urls=True,
            live={
                "alert_webhook_url": receiver.base + "/alerts",
                "stop_hook_url": receiver.base + "/stop",
            },
            delivery=DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05),
        )
        async with serving(settings, timeout=10) as served:
            yield served


async def new_tenant(server: ServedApi) -> Tenant:
    tid = f"t{uuid.uuid4().hex[:10]}"
    r = await server.client.post("/v1/tenants", json={"id": tid, "name": tid}, headers=AUTH)
    assert r.status_code == 201, r.text
    key = r.json()["admin_key"]["key"]
    return Tenant(tid, bearer(key), key)


def push_stream(server: ServedApi, tenant: Tenant, stream_id: str = "live-1") -> str:
    """A stream whose frames the platform pushes (no reader); returns its key."""
    row, created = server.services.streams.register(
        tenant.id,
        StreamSpec(id=stream_id, channel="gaming", metadata={"room": 7}),
    )
    assert created
    return row.id


def match(rule: str, labels: list[tuple[str, float]], **kw: Any) -> RuleMatch:
    return RuleMatch(
        rule_set="live-default",
        rule=rule,
        action=kw.pop("action", "alert"),
        labels=labels,
        reason=kw.pop("reason", f"{rule} fired"),
        **kw,
    )


def raise_alert(
    alerts: AlertService,
    stream_pk: str,
    m: RuleMatch,
    *,
    thumbnail: str | None = None,
    frame_ms: int | None = None,
) -> tuple[str, bool]:
    """What a stream session does when a rule fires: raise in a transaction of its own."""
    with alerts.sessions.begin() as s:
        row = s.get(Stream, stream_pk, with_for_update=True)
        assert row is not None
        alert, created = alerts.raise_in(
            s, row, m, rule_set="live-default", thumbnail=thumbnail, frame_ms=frame_ms
        )
        return alert.id, created


async def raise_async(server: ServedApi, stream_pk: str, m: RuleMatch, **kw: Any) -> str:
    alert_id, _ = await asyncio.to_thread(raise_alert, server.services.alerts, stream_pk, m, **kw)
    return alert_id


def verify(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    event: dict[str, Any] = Webhook(secret).verify(body, headers)
    return event


async def secret_of(server: ServedApi, tenant: Tenant) -> str:
    r = await server.client.get("/v1/webhooks/secret", headers=tenant.headers)
    assert r.status_code == 200, r.text
    secret: str = r.json()["secret"]
    return secret


# ---- raising ----------------------------------------------------------------------


async def test_repeated_violations_count_on_one_alert(server: ServedApi) -> None:
    t = await new_tenant(server)
    pk = push_stream(server, t)
    alerts = server.services.alerts
    first, created = await asyncio.to_thread(
        raise_alert,
        alerts,
        pk,
        match("weapons", [("Weapons", 82.0), ("Rifle", 75.0)], urls=["http://a.example"]),
        thumbnail="a" * 32 + ".jpg",
        frame_ms=1000,
    )
    assert created
    again, created = await asyncio.to_thread(
        raise_alert,
        alerts,
        pk,
        match("weapons", [("Weapons", 71.5), ("Knife", 90.0)], text=["knife"]),
        thumbnail="b" * 32 + ".jpg",
        frame_ms=11000,
    )
    assert again == first and not created
    body = (await server.client.get(f"/v1/alerts/{first}", headers=t.headers)).json()
    assert body["count"] == 2 and body["version"] == 2 and body["state"] == "open"
    assert body["labels"] == [
        {"name": "Knife", "confidence": 90.0},
        {"name": "Weapons", "confidence": 82.0},
        {"name": "Rifle", "confidence": 75.0},
    ]
    assert body["evidence"] == {
        "text": ["knife"],
        "urls": [],
        "frame_ms": 11000,
        "sampled_at": None,
    }
    assert body["thumbnail_url"] == f"/v1/alerts/{first}/thumbnail"
    assert body["last_at"] > body["first_at"] and body["updated_at"] > body["created_at"]
    assert body["stream_id"] == "live-1" and body["channel"] == "gaming"
    assert body["rule_set"] == "live-default" and body["rule"] == "weapons"

    other = await raise_async(server, pk, match("drugs", [("Drugs", 88.0)]))
    assert other != first
    r = await server.client.post(f"/v1/alerts/{first}/dismiss", headers=t.headers)
    assert r.status_code == 200 and r.json()["state"] == "dismissed"
    fresh, created = await asyncio.to_thread(
        raise_alert, alerts, pk, match("weapons", [("Weapons", 99.0)])
    )
    assert created and fresh != first  # a closed alert is not counted again
    listed = (await server.client.get("/v1/alerts", headers=t.headers)).json()["alerts"]
    assert [a["id"] for a in listed] == [fresh, other, first]


async def test_transitions_conflicts_and_listing(server: ServedApi) -> None:
    t, stranger = await new_tenant(server), await new_tenant(server)
    pk = push_stream(server, t)
    ids = [await raise_async(server, pk, match(f"rule-{i}", [("Weapons", 80.0)])) for i in range(5)]
    a = ids[0]
    c = server.client

    r = await c.post(f"/v1/alerts/{a}/acknowledge", headers=t.headers)
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["state"] == "acknowledged" and acked["version"] == 2
    assert acked["handled_by"].startswith("key:")
    r = await c.post(f"/v1/alerts/{a}/acknowledge", headers=t.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"
    r = await c.post(f"/v1/alerts/{a}/dismiss", headers=t.headers)
    assert r.json()["state"] == "dismissed" and r.json()["version"] == 3
    assert r.json()["updated_at"] > acked["updated_at"]
    for verb in ("acknowledge", "dismiss", "stop"):
        r = await c.post(f"/v1/alerts/{a}/{verb}", headers=t.headers)
        assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"

    for path in (f"/v1/alerts/{a}", f"/v1/alerts/{a}/thumbnail"):  # another tenant's alert
        r = await c.get(path, headers=stranger.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "alert_not_found"
    r = await c.post(f"/v1/alerts/{ids[1]}/dismiss", headers=stranger.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "alert_not_found"
    r = await c.post("/v1/alerts/alr_nope/acknowledge", headers=t.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "alert_not_found"
    assert (await c.get("/v1/alerts", headers=stranger.headers)).json()["alerts"] == []
    assert (await c.get("/v1/alerts")).status_code == 401

    r = await c.get("/v1/alerts", params={"state": "closed"}, headers=t.headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_state"
    r = await c.get("/v1/alerts", params={"cursor": "not-a-cursor"}, headers=t.headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor"
    r = await c.get("/v1/alerts", params={"state": "dismissed"}, headers=t.headers)
    assert [x["id"] for x in r.json()["alerts"]] == [a]
    r = await c.get("/v1/alerts", params={"stream_id": "other"}, headers=t.headers)
    assert r.json()["alerts"] == []
    since = acked["updated_at"]
    r = await c.get("/v1/alerts", params={"since": since}, headers=t.headers)
    assert [x["id"] for x in r.json()["alerts"]] == [a]  # changed since the acknowledgement

    pages: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "channel": "gaming"}
        if cursor:
            params["cursor"] = cursor
        body = (await c.get("/v1/alerts", params=params, headers=t.headers)).json()
        pages += [x["id"] for x in body["alerts"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == list(reversed(ids))


async def test_stop_from_an_alert_stops_the_stream_and_calls_its_hook(
    server: ServedApi, receiver: Receiver
) -> None:
    t = await new_tenant(server)
    pk = push_stream(server, t, "show-9")
    a = await raise_async(server, pk, match("explicit", [("Explicit Nudity", 97.0)]))
    b = await raise_async(server, pk, match("weapons", [("Weapons", 80.0)]))
    c = server.client
    assert (await c.post(f"/v1/alerts/{b}/acknowledge", headers=t.headers)).status_code == 200

    r = await c.post(f"/v1/alerts/{a}/stop", headers=t.headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "stream_stopped" and r.json()["handled_by"].startswith("key:")
    other = (await c.get(f"/v1/alerts/{b}", headers=t.headers)).json()
    assert other["state"] == "stream_stopped" and other["version"] == 3
    stream = await asyncio.to_thread(server.services.streams.get, t.id, "show-9")
    assert stream.status == "stopped" and stream.desired == "stopped"
    r = await c.post(f"/v1/alerts/{a}/stop", headers=t.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"

    secret = await secret_of(server, t)
    call = await receiver.wait("/stop", lambda e: e["data"]["alert_id"] == a)
    event = verify(secret, call.headers, call.body)
    assert event["type"] == "stream.stop"
    assert event["data"]["stream_id"] == "show-9" and event["data"]["metadata"] == {"room": 7}
    assert event["data"]["stopped_by"].startswith("key:")
    for alert_id in (a, b):  # both closed alerts were announced
        call = await receiver.wait(
            "/alerts",
            lambda e, i=alert_id: (
                e["type"] == "alert.updated"
                and e["data"]["alert"]["id"] == i
                and e["data"]["alert"]["state"] == "stream_stopped"
            ),
        )
        verify(secret, call.headers, call.body)
    with pytest.raises(Exception, match="signature"):
        verify(secret, {**call.headers, "webhook-id": "msg_forged"}, call.body)

    # a rule firing on a stopped stream is recorded closed, not as an open alert
    late, _ = await asyncio.to_thread(
        raise_alert, server.services.alerts, pk, match("explicit", [("Explicit Nudity", 99.0)])
    )
    assert late != a
    late_body = (await c.get(f"/v1/alerts/{late}", headers=t.headers)).json()
    assert late_body["state"] == "stream_stopped"


async def test_alert_webhooks_are_delivered_signed_without_flooding(
    server: ServedApi, receiver: Receiver
) -> None:
    t = await new_tenant(server)
    pk = push_stream(server, t)
    a = await raise_async(server, pk, match("drugs", [("Drugs & Tobacco", 85.0)]))
    secret = await secret_of(server, t)
    call = await receiver.wait("/alerts", lambda e: e["data"]["alert"]["id"] == a)
    event = verify(secret, call.headers, call.body)
    assert event["type"] == "alert.created"
    got = (await server.client.get(f"/v1/alerts/{a}", headers=t.headers)).json()
    assert event["data"]["alert"] == got  # the same JSON as GET
    assert event["data"]["stream"] == {
        "id": "live-1",
        "channel": "gaming",
        "streamer_id": None,
        "metadata": {"room": 7},
    }
    for _ in range(3):  # repeated violations: counted, no event each
        await raise_async(server, pk, match("drugs", [("Drugs & Tobacco", 86.0)]))
    r = await server.client.post(f"/v1/alerts/{a}/acknowledge", headers=t.headers)
    assert r.status_code == 200
    call = await receiver.wait(
        "/alerts", lambda e: e["data"]["alert"]["id"] == a and e["type"] == "alert.updated"
    )
    event = verify(secret, call.headers, call.body)
    assert event["data"]["alert"]["state"] == "acknowledged"
    assert event["data"]["alert"]["count"] == 4 and event["data"]["alert"]["version"] == 5
    sent = [e for e in receiver.events("/alerts") if e["data"]["alert"]["id"] == a]
    assert [e["type"] for e in sent] == ["alert.created", "alert.updated"]


async def test_counter_updates_are_rate_limited(server: ServedApi) -> None:
    """A counter going up sends alert.updated only once the last event is old enough."""
    t = await new_tenant(server)
    pk = push_stream(server, t)
    svc = server.services
    quiet = AlertService(svc.db_sessions, svc.settings.live, svc.streams)  # 60 s
    eager = AlertService(svc.db_sessions, svc.settings.live, svc.streams, bump_event_interval_s=0)

    def events(alert_id: str) -> list[str]:
        with svc.db_sessions() as s:
            return list(
                s.scalars(
                    select(Delivery.event_type)
                    .where(Delivery.subject_id == alert_id)
                    .order_by(Delivery.id)
                )
            )

    m = match("qr-link", [("QR Code Link", 60.0)])
    a, _ = await asyncio.to_thread(raise_alert, quiet, pk, m)
    await asyncio.to_thread(raise_alert, quiet, pk, m)
    assert await asyncio.to_thread(events, a) == ["alert.created"]
    await asyncio.to_thread(raise_alert, eager, pk, m)
    assert await asyncio.to_thread(events, a) == ["alert.created", "alert.updated"]


# ---- the WebSocket feed ---------------------------------------------------------


async def next_alert(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    """The next alert message (pings skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] != "ping":
            return dict(message)


async def test_websocket_pushes_alerts_of_its_tenant_only(server: ServedApi) -> None:
    t, other = await new_tenant(server), await new_tenant(server)
    pk, other_pk = push_stream(server, t), push_stream(server, other)
    url = server.ws + "/v1/alerts/ws"
    async with (
        connect(url, additional_headers=t.headers) as ws,
        connect(f"{url}?token={other.key}") as ws_other,
    ):
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["tenant_id"] == t.id
        assert json.loads(await ws_other.recv())["tenant_id"] == other.id

        foreign = await raise_async(server, other_pk, match("weapons", [("Weapons", 80.0)]))
        a = await raise_async(server, pk, match("weapons", [("Weapons", 81.0)]))
        committed = time.monotonic()
        message = await next_alert(ws)
        latency = time.monotonic() - committed
        assert message["type"] == "alert.created" and message["alert"]["id"] == a, message
        assert latency < 1.0, latency
        got = (await server.client.get(f"/v1/alerts/{a}", headers=t.headers)).json()
        assert message["alert"] == got

        r = await server.client.post(f"/v1/alerts/{a}/acknowledge", headers=t.headers)
        assert r.status_code == 200
        message = await next_alert(ws)
        assert message["type"] == "alert.updated"
        assert message["alert"]["id"] == a and message["alert"]["version"] == 2
        assert message["alert"]["state"] == "acknowledged"

        theirs = await next_alert(ws_other)
        assert theirs["alert"]["id"] == foreign
        await asyncio.sleep(0.5)  # a few polls more: nothing is sent twice or across
        with pytest.raises(TimeoutError):
            await next_alert(ws, timeout=0.3)
        with pytest.raises(TimeoutError):
            await next_alert(ws_other, timeout=0.3)
        assert server.services.feed.subscribers(t.id) == 1
    for _ in range(50):  # clients gone: their subscriptions go too
        if server.services.feed.subscribers(t.id) + server.services.feed.subscribers(other.id):
            await asyncio.sleep(0.02)
    assert server.services.feed.subscribers(t.id) == 0
    assert server.services.feed.subscribers(other.id) == 0


@pytest.mark.parametrize(
    ("query", "headers", "reason"),
    [
        ("", {}, "missing API key"),
        ("?token=bst_wrong", {}, "invalid or revoked API key"),
        ("", {"Authorization": "Bearer nope"}, "invalid or revoked API key"),
    ],
)
async def test_websocket_refuses_missing_or_bad_keys(
    server: ServedApi, query: str, headers: dict[str, str], reason: str
) -> None:
    async with connect(server.ws + "/v1/alerts/ws" + query, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401 and closed.value.rcvd.reason == reason


async def test_a_slow_subscriber_is_dropped_without_holding_up_others(server: ServedApi) -> None:
    t = await new_tenant(server)
    pk = push_stream(server, t)
    feed = AlertFeed(server.services.db_sessions, FeedConfig(queue_size=3))
    slow, fast = feed.subscribe(t.id), feed.subscribe(t.id)
    assert await feed.poll_once() == 0
    ids: list[str] = []
    got: list[str] = []
    for round_ in range(3):  # two changes a round; only ``fast`` reads its queue
        for i in range(2):
            ids.append(await raise_async(server, pk, match(f"r{round_}{i}", [("Weapons", 80.0)])))
        assert await feed.poll_once() == 2
        got += [json.loads(m)["alert"]["id"] for m in await fast.next(0.01)]
        assert await feed.poll_once() == 0  # read again: nothing is sent twice
    assert got == ids
    assert slow.closed.is_set() and slow.close_code == CLOSE_TOO_SLOW
    assert not fast.closed.is_set()
    assert feed.subscribers(t.id) == 1 and feed.stats.dropped == 1
    assert await feed.poll_once() == 0  # nothing new: nothing sent again


# ---- thumbnails -----------------------------------------------------------------


def test_thumbnails_are_small_jpegs_saved_once_and_purged(tmp_path: Path) -> None:
    store = LiveThumbnails(tmp_path, retention_s=60)
    photo = benign_photos()["skimage-astronaut"]
    pk = "str_" + uuid.uuid4().hex
    name = store.save(pk, photo)
    assert store.save(pk, photo) == name  # the same frame: the same file
    path = store.path(pk, name)
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        assert image.format == "JPEG" and max(image.size) <= 480
    for bad in ("../../etc/passwd", "x.jpg", name.replace(".jpg", ".png")):
        with pytest.raises(NotFound):
            store.path(pk, bad)
    with pytest.raises(NotFound):
        store.path("../" + pk, name)
    with pytest.raises(ValueError):
        store.save(pk, photo[..., :2])
    assert store.purge() == 0
    assert store.purge(now=time.time() + 61) == 1
    assert not path.exists() and not path.parent.exists()


async def test_alert_thumbnail_is_served_to_its_tenant(server: ServedApi) -> None:
    t, stranger = await new_tenant(server), await new_tenant(server)
    pk = push_stream(server, t)
    photo = benign_photos()["skimage-chelsea"]
    name = await asyncio.to_thread(server.services.live_thumbnails.save, pk, photo)
    a = await raise_async(server, pk, match("suggestive", [("Suggestive", 90.0)]), thumbnail=name)
    b = await raise_async(server, pk, match("weapons", [("Weapons", 80.0)]))
    r = await server.client.get(f"/v1/alerts/{a}/thumbnail", headers=t.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(r.content)) as image:
        assert image.size[0] <= 480 and image.size[1] <= 480
    r = await server.client.get(f"/v1/alerts/{a}/thumbnail", headers=stranger.headers)
    assert r.status_code == 404
    r = await server.client.get(f"/v1/alerts/{b}/thumbnail", headers=t.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "thumbnail_not_found"
    server.services.live_thumbnails.path(pk, name).unlink()
    r = await server.client.get(f"/v1/alerts/{a}/thumbnail", headers=t.headers)
    assert r.status_code == 410 and r.json()["error"]["code"] == "thumbnail_expired"
