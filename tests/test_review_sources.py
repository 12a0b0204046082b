"""What feeds the review queue besides jobs: alerts of live rules whose action is
``review`` (frames pushed through the API) and ``POST /v1/moderate?review=true``; what
``POST /v1/rules/test`` says of such rules; and that the media of undecided items
outlives retention (live thumbnails and the job media store) until they are decided.
On SQLite and PostgreSQL, with the real models."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bastion.delivery.client import verify
from bastion.delivery.config import DeliveryConfig
from bastion.jobs.config import JobsConfig
from bastion.jobs.retention import MediaRetention
from bastion.pipeline.engine import Engine
from bastion.rules.errors import RulesError
from bastion.rules.loader import parse_rule_set
from bastion.rules.spec import ACTIONS, action_strength
from tests.support.app import Api, running
from tests.support.auth import bearer
from tests.support.jobs import CODES_POLICY
from tests.support.media import jpeg, qr_on_photo
from tests.support.settings import make_settings
from tests.support.webhooks import Receiver

REVIEW_POLICY = CODES_POLICY.replace("name: codes-only", "name: codes-review").replace(
    "block: 50", "review: 50"
)
BLOCKED_URL = "https://evil.example/win"
LIVE_RULES = """\
name: reviewed-live
channel_pattern: "^review-"
sample_interval_s: 1
policy: codes-review
rules:
  - name: spam-review
    urls: {domains: [evil.example]}
    action: review
"""
ALL_ACTIONS = """\
name: every-action
channel: tester
policy: codes-review
rules:
  - name: any-link
    urls: {}
  - name: spam-review
    urls: {domains: [evil.example]}
    action: review
  - name: spam-stop
    urls: {regex: 'evil\\.example/win'}
    action: auto_stop
"""
ROUTES = [
    {"name": "domains", "categories": ["Blocked Domain"], "priority": 20},
    {"name": "live-spam", "rules": ["spam-review"], "priority": 30},
]


# ---- the rules' format ---------------------------------------------------------------


def test_review_is_an_action_between_alert_and_auto_stop() -> None:
    parsed = parse_rule_set(LIVE_RULES).value
    assert parsed.rules[0].action == "review"
    assert ACTIONS == ("alert", "review", "auto_stop")
    assert action_strength("alert") < action_strength("review") < action_strength("auto_stop")
    with pytest.raises(RulesError) as refused:
        parse_rule_set(LIVE_RULES.replace("action: review", "action: queue"))
    assert "'alert', 'review' or 'auto_stop'" in str(refused.value)


# ---- through the API -----------------------------------------------------------------


@dataclass
class Platform:
    api: Api
    receiver: Receiver
    admin: dict[str, str]
    moderator: dict[str, str]
    reader: dict[str, str]

    @property
    def client(self) -> Any:
        return self.api.client


async def _key(api: Api, admin: dict[str, str], *scopes: str) -> dict[str, str]:
    r = await api.client.post("/v1/keys", json={"scopes": list(scopes)}, headers=admin)
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def _tenant(api: Api) -> dict[str, str]:
    """A new tenant's admin headers, with the policy that sends blocked domains to review."""
    admin = await api.tenant()
    r = await api.client.put(
        "/v1/policies/codes-review",
        content=REVIEW_POLICY,
        headers={**admin, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    return admin


@pytest_asyncio.fixture(loop_scope="session")
async def platform(
    engine: Engine, tmp_path: Path, database_url: str | None
) -> AsyncIterator[Platform]:
    with Receiver() as receiver:
        settings = make_settings(
            tmp_path,
            database_url=database_url,
            allow_private_urls=True,
            delivery=DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05),
            review={"webhook_url": receiver.url, "queues": ROUTES},
        )
        async with running(settings, engine) as api:
            admin = await _tenant(api)
            yield Platform(
                api,
                receiver,
                admin,
                await _key(api, admin, "moderate", "read"),
                await _key(api, admin, "read"),
            )


async def _push(p: Platform, data: bytes, timestamp_ms: int) -> dict[str, Any]:
    r = await p.client.post(
        "/v1/streams/push-r/frames",
        content=data,
        headers={**p.admin, "Content-Type": "image/png"},
        params={"timestamp_ms": timestamp_ms},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["analyzed"], body
    return body


async def _reviewed_stream(p: Platform) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pushed stream whose ``review`` rule fired on two different frames: its one alert
    and its one review item."""
    c = p.client
    r = await c.post(
        "/v1/rules", content=LIVE_RULES, headers={**p.admin, "Content-Type": "application/yaml"}
    )
    assert r.status_code in (200, 201), r.text
    r = await c.post(
        "/v1/streams", json={"id": "push-r", "channel": "review-push"}, headers=p.admin
    )
    assert r.status_code == 201, r.text
    first = await _push(p, qr_on_photo(BLOCKED_URL), 0)
    second = await _push(p, qr_on_photo(BLOCKED_URL, "skimage-chelsea"), 2000)
    for fired in (first, second):
        assert [(m["rule"], m["action"]) for m in fired["matches"]] == [("spam-review", "review")]
        assert fired["stopped"] is False
    assert first["alert_ids"] == second["alert_ids"] and len(first["alert_ids"]) == 1
    alerts = (await c.get("/v1/alerts", params={"stream_id": "push-r"}, headers=p.reader)).json()
    assert len(alerts["alerts"]) == 1, alerts
    alert = alerts["alerts"][0]
    assert (alert["rule"], alert["action"], alert["count"]) == ("spam-review", "review", 2)
    items = (await c.get("/v1/reviews", headers=p.reader)).json()["items"]
    assert len(items) == 1, items  # once per alert, not per frame
    return alert, items[0]


@pytest.mark.models
async def test_a_review_rule_raises_an_alert_and_queues_it_once(platform: Platform) -> None:
    p = platform
    c = p.client
    alert, item = await _reviewed_stream(p)
    assert (item["source"], item["source_id"], item["rule"]) == (
        "alert",
        alert["id"],
        "spam-review",
    )
    assert (item["queue"], item["priority"], item["status"]) == ("live-spam", 30, "open")
    full = (await c.get(f"/v1/reviews/{item['id']}", headers=p.reader)).json()
    assert full["result"]["id"] == alert["id"] and full["result"]["action"] == "review"
    media = full["media"]
    assert media["kind"] == "alert_thumbnail" and media["alert_id"] == alert["id"]

    # the item shows the frame the alert was raised on, as stored
    frame = p.api.services.live_thumbnails.path(media["stream_pk"], media["name"])
    r = await c.get(full["media_url"], headers=p.reader)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and r.content == frame.read_bytes()

    r = await c.post(
        f"/v1/reviews/{item['id']}/decide",
        json={"action": "reject", "note": "spam"},
        headers=p.admin,
    )
    assert r.status_code == 200, r.text
    call = await p.receiver.wait(where=lambda e: e["type"] == "review.decided")
    secret = (await c.get("/v1/webhooks/secret", headers=p.admin)).json()["secret"]
    event = verify(call.body, call.headers, secret)["data"]
    assert (event["item"]["source"], event["item"]["source_id"]) == ("alert", alert["id"])
    assert event["item"]["rule"] == "spam-review"
    assert event["decision"]["decision"] == "block" and event["decision"]["note"] == "spam"

    # the rule firing again counts the same alert; its decided item is not queued again
    await _push(p, qr_on_photo(BLOCKED_URL), 4000)
    items = (await c.get("/v1/reviews", headers=p.reader)).json()["items"]
    assert [i["id"] for i in items] == [item["id"]] and items[0]["status"] == "decided"


@pytest.mark.models
async def test_deciding_an_alerts_item_moves_the_alert_and_may_stop_its_stream(
    engine: Engine, tmp_path: Path, database_url: str | None
) -> None:
    with Receiver() as receiver:
        settings = make_settings(
            tmp_path,
            database_url=database_url,
            allow_private_urls=True,
            delivery=DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05),
            review={"queues": ROUTES},
            live={"stop_hook_url": receiver.base + "/stop"},
        )
        async with running(settings, engine) as api:
            admin = await _tenant(api)
            p = Platform(
                api,
                receiver,
                admin,
                await _key(api, admin, "moderate", "read"),
                await _key(api, admin, "read"),
            )
            c = p.client
            alert, item = await _reviewed_stream(p)

            async def decide(item_id: str, **body: Any) -> Any:
                return await c.post(f"/v1/reviews/{item_id}/decide", json=body, headers=p.admin)

            async def alert_state(alert_id: str) -> str:
                r = await c.get(f"/v1/alerts/{alert_id}", headers=p.reader)
                state: str = r.json()["state"]
                return state

            # stop_stream goes with reject only
            r = await decide(item["id"], action="approve", stop_stream=True)
            assert (r.status_code, r.json()["error"]["code"]) == (
                422,
                "stop_stream_not_applicable",
            )
            # approve: not a violation, the alert is dismissed and the stream runs on
            r = await decide(item["id"], action="approve")
            assert r.status_code == 200, r.text
            assert await alert_state(alert["id"]) == "dismissed"
            stream = (await c.get("/v1/streams/push-r", headers=p.reader)).json()
            assert stream["status"] == "live"

            # the rule fires again: a new alert, a new item; reject and stop the stream
            await _push(p, qr_on_photo(BLOCKED_URL), 4000)
            items = (await c.get("/v1/reviews", headers=p.reader)).json()["items"]
            [second] = [i for i in items if i["status"] == "open"]
            assert second["source_id"] != alert["id"]
            r = await decide(second["id"], action="reject", stop_stream=True, note="spam")
            assert r.status_code == 200, r.text
            assert await alert_state(second["source_id"]) == "stream_stopped"
            stream = (await c.get("/v1/streams/push-r", headers=p.reader)).json()
            assert stream["status"] == "stopped", stream
            call = await receiver.wait("/stop")
            secret = (await c.get("/v1/webhooks/secret", headers=p.admin)).json()["secret"]
            event = call.verify(secret)
            assert event["type"] == "stream.stop"
            assert event["data"]["stopped_by"].startswith("key:")

            # a sync call's item has no stream to stop
            data = qr_on_photo(BLOCKED_URL + "?sync=1")
            r = await c.post(
                "/v1/moderate",
                params={"policy": "codes-review", "review": "true"},
                content=data,
                headers={**p.moderator, "Content-Type": "image/png"},
            )
            upload_item = r.headers["bastion-review-id"]
            r = await decide(upload_item, action="reject", stop_stream=True)
            assert (r.status_code, r.json()["error"]["code"]) == (
                422,
                "stop_stream_not_applicable",
            )
            r = await decide(upload_item, action="reject")
            assert r.status_code == 200, r.text


@pytest.mark.models
async def test_an_open_item_keeps_its_frame_through_the_thumbnail_purge(
    platform: Platform,
) -> None:
    p = platform
    _, item = await _reviewed_stream(p)
    thumbnails = p.api.services.live_thumbnails
    media = item["media"]
    kept = thumbnails.path(media["stream_pk"], media["name"])
    frames = set(kept.parent.iterdir())
    assert kept in frames and len(frames) == 2  # the alert's first frame and its latest
    (latest,) = frames - {kept}
    later = time.time() + thumbnails.retention_s + 60  # both frames are past retention
    assert await asyncio.to_thread(thumbnails.purge, later) == 1
    assert kept.is_file() and not latest.exists()

    r = await p.client.post(
        f"/v1/reviews/{item['id']}/decide", json={"action": "approve"}, headers=p.admin
    )
    assert r.status_code == 200, r.text
    assert await asyncio.to_thread(thumbnails.purge, later) == 1
    assert not kept.exists()
    r = await p.client.get(f"/v1/reviews/{item['id']}/media", headers=p.reader)
    assert (r.status_code, r.json()["error"]["code"]) == (410, "media_expired")


@pytest.mark.models
async def test_the_rule_tester_reports_the_review_action(platform: Platform) -> None:
    p = platform
    c = p.client
    data = qr_on_photo(BLOCKED_URL)
    r = await c.post(
        "/v1/rules", content=LIVE_RULES, headers={**p.admin, "Content-Type": "application/yaml"}
    )
    assert r.status_code in (200, 201), r.text
    r = await c.post(
        "/v1/rules/test",
        params={"channel": "review-tester"},
        content=data,
        headers={**p.reader, "Content-Type": "image/png"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] == "review"
    assert [(m["rule"], m["action"]) for m in body["matches"]] == [("spam-review", "review")]
    assert [o["action"] for o in body["fired"]] == ["review"]

    # strongest first: auto_stop, review, alert
    r = await c.post(
        "/v1/rules/test",
        files={"file": ("frame.png", data, "image/png")},
        data={"rules": ALL_ACTIONS},
        headers=p.reader,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] == "auto_stop"
    assert [(m["rule"], m["action"]) for m in body["matches"]] == [
        ("spam-stop", "auto_stop"),
        ("spam-review", "review"),
        ("any-link", "alert"),
    ]
    assert "review" in str(
        (await c.get("/openapi.json")).json()["components"]["schemas"]["RuleMatch"]
    )


@pytest.mark.models
async def test_a_sync_call_with_the_flag_queues_a_review_result_once(platform: Platform) -> None:
    p = platform
    c = p.client
    data = qr_on_photo(BLOCKED_URL)
    sha = hashlib.sha256(data).hexdigest()
    png = {"Content-Type": "image/png"}

    async def moderate(headers: dict[str, str], body: bytes = data, **params: Any) -> Any:
        r = await c.post(
            "/v1/moderate",
            params={"policy": "codes-review", **params},
            content=body,
            headers={**headers, **png},
        )
        return r

    # without the flag nothing is kept
    r = await moderate(p.moderator)
    assert r.status_code == 200 and r.json()["decision"] == "review", r.text
    assert "bastion-review-id" not in r.headers
    assert (await c.get("/v1/reviews", headers=p.reader)).json()["items"] == []
    assert not p.api.services.jobs.media.exists(sha)
    r = await moderate(p.moderator, review="perhaps")
    assert r.status_code in (400, 422) and r.json()["error"]["code"], r.text
    # the flag needs the moderate scope, as the call does
    r = await moderate(p.reader, review="true")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")
    # an image allowed is not queued
    r = await moderate(p.moderator, jpeg("skimage-astronaut"), review="true")
    assert r.status_code == 200 and r.json()["decision"] == "allow", r.text
    assert "bastion-review-id" not in r.headers

    r = await moderate(p.moderator, review="true")
    assert r.status_code == 200 and r.json()["decision"] == "review", r.text
    item_id = r.headers["bastion-review-id"]
    items = (await c.get("/v1/reviews", headers=p.reader)).json()["items"]
    assert [(i["id"], i["source"]) for i in items] == [(item_id, "api")]
    item = (await c.get(f"/v1/reviews/{item_id}", headers=p.reader)).json()
    assert item["source_id"].startswith(f"upload:{sha}:")
    assert (item["queue"], item["priority"]) == ("domains", 20)
    assert item["media"] == {"kind": "upload", "sha256": sha}
    assert item["policy"] == "codes-review" and item["result"]["decision"] == "review"
    media = await c.get(item["media_url"], headers=p.reader)
    assert media.status_code == 200 and media.content == data
    assert media.headers["content-type"] == "image/png"

    # the same bytes again under the same policy: the same item
    again = await moderate(p.moderator, review="true")
    assert again.status_code == 200 and again.headers["bastion-review-id"] == item_id
    assert len((await c.get("/v1/reviews", headers=p.reader)).json()["items"]) == 1

    # another tenant never sees it, and the same bytes are an item of its own there
    stranger = await _tenant(p.api)
    assert (await c.get("/v1/reviews", headers=stranger)).json()["items"] == []
    for path in (f"/v1/reviews/{item_id}", f"/v1/reviews/{item_id}/media"):
        r = await c.get(path, headers=stranger)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "review_not_found"), path
    theirs = await moderate(stranger, review="true")
    assert theirs.headers["bastion-review-id"] != item_id
    assert [i["id"] for i in (await c.get("/v1/reviews", headers=p.reader)).json()["items"]] == [
        item_id
    ]
    r = await c.post(
        f"/v1/reviews/{theirs.headers['bastion-review-id']}/decide",
        json={"action": "approve"},
        headers=stranger,
    )
    assert r.status_code == 200, r.text  # one tenant's decision keeps the other's media

    # retention keeps the bytes while the item is undecided, then lets them go
    svc = p.api.services
    stored = svc.jobs.media.path(sha)
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(stored, (old, old))
    retention = MediaRetention(svc.jobs, JobsConfig(media_retention_s=3600.0))
    assert (await asyncio.to_thread(retention.sweep)).media_removed == 0
    assert stored.is_file()
    r = await c.post(f"/v1/reviews/{item_id}/decide", json={"action": "approve"}, headers=p.admin)
    assert r.status_code == 200, r.text
    assert (await asyncio.to_thread(retention.sweep)).media_removed == 1
    r = await c.get(f"/v1/reviews/{item_id}/media", headers=p.reader)
    assert (r.status_code, r.json()["error"]["code"]) == (410, "media_expired")


@pytest.mark.models
async def test_a_batch_with_the_flag_queues_each_review_result(platform: Platform) -> None:
    p = platform
    c = p.client
    flagged = qr_on_photo(BLOCKED_URL + "?batch=1")
    allowed = jpeg("skimage-astronaut")
    items = [
        {"id": "qr", "base64": base64.b64encode(flagged).decode()},
        {"id": "photo", "base64": base64.b64encode(allowed).decode()},
        {"id": "broken", "base64": base64.b64encode(b"not an image").decode()},
    ]
    body = {"items": items, "policy": "codes-review"}
    r = await c.post("/v1/moderate/batch", json=body, headers=p.moderator)
    assert r.status_code == 200, r.text
    assert [x["review_id"] for x in r.json()["results"]] == [None, None, None]
    assert (await c.get("/v1/reviews", headers=p.reader)).json()["items"] == []

    r = await c.post("/v1/moderate/batch", json={**body, "review": True}, headers=p.moderator)
    assert r.status_code == 200, r.text
    qr, photo, broken = r.json()["results"]
    assert qr["result"]["decision"] == "review" and qr["review_id"]
    assert photo["result"]["decision"] == "allow" and photo["review_id"] is None
    assert broken["error"]["code"] and broken["review_id"] is None
    listed = (await c.get("/v1/reviews", headers=p.reader)).json()["items"]
    assert [(i["id"], i["source"]) for i in listed] == [(qr["review_id"], "api")]
    media = await c.get(listed[0]["media_url"], headers=p.reader)
    assert media.status_code == 200 and media.content == flagged
    r = await c.post("/v1/moderate/batch", json={**body, "review": "yes"}, headers=p.moderator)
    assert r.status_code == 422, r.text


@pytest.mark.models
async def test_no_alert_is_kept_when_its_review_item_cannot_be_written(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = platform
    c = p.client
    r = await c.post(
        "/v1/rules", content=LIVE_RULES, headers={**p.admin, "Content-Type": "application/yaml"}
    )
    assert r.status_code in (200, 201), r.text
    r = await c.post(
        "/v1/streams", json={"id": "push-r", "channel": "review-push"}, headers=p.admin
    )
    assert r.status_code == 201, r.text

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the review queue is unavailable")

    monkeypatch.setattr(p.api.services.review, "enqueue_alert", broken)
    with pytest.raises(RuntimeError, match="review queue is unavailable"):
        await _push(p, qr_on_photo(BLOCKED_URL), 0)
    alerts = (await c.get("/v1/alerts", params={"stream_id": "push-r"}, headers=p.reader)).json()
    assert alerts["alerts"] == []  # the alert and its item commit together or not at all
    monkeypatch.undo()
    fired = await _push(p, qr_on_photo(BLOCKED_URL), 2000)
    assert len(fired["alert_ids"]) == 1
    items = (await c.get("/v1/reviews", headers=p.reader)).json()["items"]
    assert [i["source_id"] for i in items] == fired["alert_ids"]
