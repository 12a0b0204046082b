"""The review queue: routing, claims under leases, decisions, the audit log, the
``review.decided`` webhook, jobs that land in the queue, tenant isolation and the API's
answers; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bastion.delivery.client import verify
from bastion.delivery.config import DeliveryConfig
from bastion.delivery.tables import Delivery
from bastion.errors import InputError
from bastion.jobs.config import JobsConfig
from bastion.jobs.retention import MediaRetention
from bastion.jobs.tables import Job
from bastion.pipeline.engine import Engine
from bastion.review.config import QueueRoute, ReviewConfig
from bastion.review.errors import (
    ConflictingLabels,
    NoteTooLong,
    NothingToReview,
    ReviewAlreadyDecided,
    ReviewLeaseLost,
    ReviewNotFound,
    UnknownLabel,
    UnknownQueue,
)
from bastion.review.service import Reviewer, ReviewService
from bastion.review.tables import ReviewItem
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo
from tests.support.app import Api, running
from tests.support.auth import bearer
from tests.support.databases import sqlite_url
from tests.support.jobs import CODES_POLICY, wait_for
from tests.support.media import qr_on_photo
from tests.support.settings import make_settings
from tests.support.webhooks import Receiver

ROUTES = [
    QueueRoute(name="ads", categories=["Illegal Ads"], priority=5),
    QueueRoute(name="nudity", categories=["Explicit Nudity"], priority=50),
    QueueRoute(name="gambling-live", rules=["casino-ad"], priority=10),
    QueueRoute(name="domains", categories=["Blocked Domain"], priority=20),
]
ALICE = Reviewer("key", "alice")
BOB = Reviewer("key", "bob")
ADMIN = Reviewer("user", "root", admin=True)
TENANT = "acme"
OTHER = "globex"


@dataclass
class Clock:
    at: datetime

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def sessions(database_url: str | None, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    db = make_engine(database_url or sqlite_url(tmp_path))
    try:
        migrate(db)
        factory = session_factory(db)
        repo = Repo(factory)
        repo.ensure_tenant(TENANT)
        repo.ensure_tenant(OTHER)
        yield factory
    finally:
        db.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 3, 12, 0, tzinfo=UTC))


def service(
    sessions: sessionmaker[Session], clock: Clock | None = None, **config: Any
) -> ReviewService:
    cfg = ReviewConfig(queues=ROUTES, lease_s=60, **config)
    if clock is None:
        return ReviewService(sessions, cfg)
    return ReviewService(sessions, cfg, now=clock)


def put(
    svc: ReviewService,
    source_id: str,
    categories: list[str] | None = None,
    *,
    tenant: str = TENANT,
    rule: str | None = None,
    clock: Clock | None = None,
) -> ReviewItem:
    with svc.sessions.begin() as s:
        item, _ = svc.enqueue(
            s,
            tenant_id=tenant,
            source="api",
            source_id=source_id,
            categories=categories or [],
            labels=categories or [],
            rule=rule,
            result={"decision": "review", "versions": {"codes": "1"}},
            policy="p",
            policy_version="v1",
        )
    if clock is not None:
        clock.advance(1)  # the next item is younger
    return item


# ---- the service ---------------------------------------------------------------------


def test_routing_by_category_and_rule_with_priorities(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    svc = service(sessions, clock)
    assert put(svc, "a", ["Blocked Domain"]).queue == "domains"  # L2 route beats its L1's
    assert put(svc, "b", ["Blocked Word"]).queue == "ads"  # the L1 route covers it
    nudity = put(svc, "c", ["Exposed Male Genitalia", "Blocked Word"])
    assert (nudity.queue, nudity.priority) == ("nudity", 50)  # highest priority wins
    assert put(svc, "d", [], rule="casino-ad").queue == "gambling-live"
    plain = put(svc, "e", ["Firearms"])
    assert (plain.queue, plain.priority) == ("default", 0)
    assert plain.categories == ["Firearms", "Weapons"]


def test_the_same_source_is_queued_once(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions)
    first = put(svc, "job_1", ["Firearms"])
    again = put(svc, "job_1", ["Explicit Nudity"])
    assert again.id == first.id and again.queue == "default"
    other_tenant = put(svc, "job_1", tenant=OTHER)
    assert other_tenant.id != first.id
    assert len(svc.list_items(TENANT).items) == 1


def test_claims_go_by_priority_then_age(sessions: sessionmaker[Session], clock: Clock) -> None:
    svc = service(sessions, clock, default_priority=0)
    with svc.sessions.begin() as s:
        for name in ("old", "urgent", "young"):
            item, _ = svc.enqueue(s, tenant_id=TENANT, source="api", source_id=name)
            if name == "urgent":
                item.priority = 9
            clock.advance(1)
    order = [svc.claim_next(TENANT, "default", ALICE).source_id for _ in range(3)]
    assert order == ["urgent", "old", "young"]
    with pytest.raises(NothingToReview):
        svc.claim_next(TENANT, "default", ALICE)
    with pytest.raises(UnknownQueue):
        svc.claim_next(TENANT, "no-such-queue", ALICE)


def test_two_claimers_never_get_the_same_item(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions)
    put(svc, "one")
    put(svc, "two")
    a = svc.claim_next(TENANT, "default", ALICE)
    b = svc.claim_next(TENANT, "default", BOB)
    assert a.id != b.id
    assert (a.claimed_by, b.claimed_by) == ("key:alice", "key:bob")
    assert a.lease_expires_at is not None and a.claims == 1
    with pytest.raises(NothingToReview):
        svc.claim_next(TENANT, "default", ALICE)


def test_many_concurrent_claimers_take_every_item_once(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions)
    ids = {put(svc, f"item-{i}").id for i in range(30)}
    taken: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def claimer(n: int) -> None:
        who = Reviewer("key", f"k{n}")
        mine: list[str] = []
        try:
            start.wait()
            while True:
                try:
                    mine.append(svc.claim_next(TENANT, "default", who).id)
                except NothingToReview:
                    break
        except BaseException as exc:
            errors.append(exc)
        taken[who.id] = mine

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    claimed = [i for mine in taken.values() for i in mine]
    assert len(claimed) == len(set(claimed)) == 30
    assert set(claimed) == ids
    items = {i.id: i for i in svc.list_items(TENANT, limit=100).items}
    for who, mine in taken.items():
        assert all(items[i].claimed_by == f"key:{who}" for i in mine)


def test_an_expired_lease_returns_the_item_to_the_queue(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    svc = service(sessions, clock)
    item = put(svc, "x")
    assert svc.claim_next(TENANT, "default", ALICE).id == item.id
    with pytest.raises(NothingToReview):
        svc.claim_next(TENANT, "default", BOB)
    clock.advance(61)
    again = svc.claim_next(TENANT, "default", BOB)
    assert (again.id, again.claimed_by, again.claims) == (item.id, "key:bob", 2)
    with pytest.raises(ReviewLeaseLost):  # alice's lease ran out and bob holds it now
        svc.decide(TENANT, item.id, ALICE, "approve")
    with pytest.raises(ReviewLeaseLost):
        svc.release(TENANT, item.id, ALICE)
    decided, _ = svc.decide(TENANT, item.id, BOB, "approve")
    assert decided.decision == "allow"


def test_deciding_needs_the_lease_unless_admin(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    svc = service(sessions, clock)
    item = put(svc, "x")
    with pytest.raises(ReviewLeaseLost):  # never claimed
        svc.decide(TENANT, item.id, ALICE, "reject")
    svc.claim_next(TENANT, "default", ALICE)
    with pytest.raises(ReviewLeaseLost):  # alice holds it
        svc.decide(TENANT, item.id, BOB, "reject")
    clock.advance(61)
    with pytest.raises(ReviewLeaseLost):  # her own lease ran out
        svc.decide(TENANT, item.id, ALICE, "reject")
    decided, decision = svc.decide(TENANT, item.id, ADMIN, "reject", note="admin override")
    assert (decided.status, decided.decision) == ("decided", "block")
    assert (decision.actor_kind, decision.actor_id) == ("user", "root")
    with pytest.raises(ReviewAlreadyDecided):
        svc.decide(TENANT, item.id, ADMIN, "approve")
    with pytest.raises(ReviewAlreadyDecided):
        svc.release(TENANT, item.id, ADMIN)


def test_approve_reject_and_escalate(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions)
    for name in ("a", "r", "e"):
        put(svc, name, ["Blocked Word"])
    outcome = {}
    for _ in range(3):
        item = svc.claim_next(TENANT, "ads", ALICE)
        action = {"a": "approve", "r": "reject", "e": "escalate"}[item.source_id]
        outcome[item.source_id] = svc.decide(TENANT, item.id, ALICE, action)
    approved, a = outcome["a"]
    assert (approved.status, approved.decision, a.decision) == ("decided", "allow", "allow")
    assert approved.lease_expires_at is None and approved.decided_at is not None
    rejected, r = outcome["r"]
    assert (rejected.status, rejected.decision, r.decision) == ("decided", "block", "block")
    escalated, e = outcome["e"]
    assert (escalated.status, escalated.queue, escalated.priority) == ("open", "escalated", 105)
    assert escalated.decision is None and escalated.claimed_by is None
    assert (e.decision, e.queue, e.escalated_to) == (None, "ads", "escalated")
    with pytest.raises(NothingToReview):
        svc.claim_next(TENANT, "ads", BOB)
    senior = svc.claim_next(TENANT, "escalated", BOB)
    assert senior.id == escalated.id and senior.escalations == 1
    final, _ = svc.decide(TENANT, senior.id, BOB, "approve")
    assert final.decision == "allow"


def test_label_corrections_are_validated_and_logged(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions, max_note_chars=20)
    item = put(svc, "x", ["Blocked Word", "QR Code Link"])
    svc.claim_next(TENANT, "ads", ALICE)
    with pytest.raises(UnknownLabel):
        svc.decide(TENANT, item.id, ALICE, "reject", add_labels=["Not A Label"])
    with pytest.raises(ConflictingLabels):
        svc.decide(TENANT, item.id, ALICE, "reject", add_labels=["Pills"], remove_labels=["Pills"])
    with pytest.raises(NoteTooLong):
        svc.decide(TENANT, item.id, ALICE, "reject", note="x" * 21)
    assert svc.decisions(TENANT, item.id) == []  # refused decisions leave nothing
    decided, decision = svc.decide(
        TENANT,
        item.id,
        ALICE,
        "reject",
        add_labels=["Blocked Domain", "Blocked Word"],
        remove_labels=["QR Code Link", "Pills"],
        note="spam shop",
    )
    assert decided.labels == ["Blocked Word", "Blocked Domain"]
    assert decision.labels_before == ["Blocked Word", "QR Code Link"]
    assert decision.labels_after == ["Blocked Word", "Blocked Domain"]
    assert (decision.added_labels, decision.removed_labels) == (
        ["Blocked Domain"],
        ["QR Code Link"],
    )
    assert (decision.policy, decision.policy_version) == ("p", "v1")
    assert decision.model_decision == "review" and decision.model_versions == {"codes": "1"}


def test_the_audit_log_keeps_every_decision(sessions: sessionmaker[Session], clock: Clock) -> None:
    svc = service(sessions, clock)
    item = put(svc, "x")
    svc.claim_next(TENANT, "default", ALICE)
    clock.advance(1)
    svc.decide(TENANT, item.id, ALICE, "escalate", note="not sure")
    clock.advance(1)
    svc.claim_next(TENANT, "escalated", BOB)
    svc.release(TENANT, item.id, BOB)
    svc.claim_next(TENANT, "escalated", BOB)
    clock.advance(1)
    svc.decide(TENANT, item.id, BOB, "reject", add_labels=["Pills"])
    log = svc.decisions(TENANT, item.id)
    assert [(d.action, d.actor_id, d.queue) for d in log] == [
        ("escalate", "alice", "default"),
        ("reject", "bob", "escalated"),
    ]
    assert log[0].note == "not sure" and log[1].labels_after == ["Pills"]
    assert log[0].decided_at < log[1].decided_at


def test_release_hands_the_item_back(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions)
    item = put(svc, "x")
    svc.claim_next(TENANT, "default", ALICE)
    with pytest.raises(ReviewLeaseLost):
        svc.release(TENANT, item.id, BOB)
    released = svc.release(TENANT, item.id, ALICE)
    assert (released.status, released.claimed_by, released.lease_expires_at) == ("open", None, None)
    assert svc.claim_next(TENANT, "default", BOB).id == item.id


def test_a_page_holds_1_to_500_items(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions)
    put(svc, "x")
    for limit in (0, 501):
        with pytest.raises(InputError) as err:
            svc.list_items(TENANT, limit=limit)
        assert err.value.code == "invalid_limit"
    assert len(svc.list_items(TENANT, limit=500).items) == 1


def test_tenants_never_see_each_others_items(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions)
    item = put(svc, "x")
    assert svc.list_items(OTHER).items == []
    with pytest.raises(ReviewNotFound):
        svc.get(OTHER, item.id)
    with pytest.raises(NothingToReview):
        svc.claim_next(OTHER, "default", ADMIN)
    with pytest.raises(ReviewNotFound):
        svc.decide(OTHER, item.id, ADMIN, "approve")
    with pytest.raises(ReviewNotFound):
        svc.release(OTHER, item.id, ADMIN)
    with pytest.raises(ReviewNotFound):
        svc.decisions(OTHER, item.id)
    assert svc.get(TENANT, item.id).status == "open"


def test_a_decision_and_its_webhook_commit_together(sessions: sessionmaker[Session]) -> None:
    svc = service(sessions, webhook_url="https://hooks.example/review")
    item = put(svc, "x")
    svc.claim_next(TENANT, "default", ALICE)
    with pytest.raises(UnknownLabel):
        svc.decide(TENANT, item.id, ALICE, "reject", add_labels=["nope"])
    svc.decide(TENANT, item.id, ALICE, "reject")
    with sessions() as s:
        rows = list(s.scalars(select(Delivery).where(Delivery.subject_id == item.id)))
    assert [(d.event_type, d.tenant_id) for d in rows] == [("review.decided", TENANT)]
    assert rows[0].payload["decision"]["decision"] == "block"


# ---- through the API, with jobs and the real models -----------------------------------

REVIEW_POLICY = CODES_POLICY.replace("name: codes-only", "name: codes-review").replace(
    "block: 50", "review: 50"
)
BLOCKED_URL = "https://evil.example/win"


@dataclass
class Reviewers:
    api: Api
    receiver: Receiver
    admin: dict[str, str]
    alice: dict[str, str]
    bob: dict[str, str]
    reader: dict[str, str]


async def _key(client: httpx.AsyncClient, admin: dict[str, str], *scopes: str) -> dict[str, str]:
    r = await client.post("/v1/keys", json={"scopes": list(scopes)}, headers=admin)
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


@pytest_asyncio.fixture(loop_scope="session")
async def reviewers(
    engine: Engine, tmp_path: Path, database_url: str | None
) -> AsyncIterator[Reviewers]:
    with Receiver() as receiver:
        settings = make_settings(
            tmp_path,
            database_url=database_url,
            allow_private_urls=True,
            jobs={"poll_s": 0.05, "lease_s": 5, "retry_delay_s": 0.1},
            delivery=DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05),
            review={"webhook_url": receiver.url, "queues": [r.model_dump() for r in ROUTES]},
        )
        async with running(settings, engine) as api:
            tenant = await api.new_tenant()
            c = api.client
            r = await c.put(
                "/v1/policies/codes-review",
                content=REVIEW_POLICY,
                headers={**tenant.headers, "Content-Type": "application/yaml"},
            )
            assert r.status_code == 200, r.text
            yield Reviewers(
                api,
                receiver,
                tenant.headers,
                await _key(c, tenant.headers, "moderate", "read"),
                await _key(c, tenant.headers, "moderate", "read"),
                await _key(c, tenant.headers, "read"),
            )


async def _review_job(rv: Reviewers) -> tuple[dict[str, Any], bytes]:
    data = qr_on_photo(BLOCKED_URL)
    r = await rv.api.client.post(
        "/v1/jobs",
        params={"policy": "codes-review"},
        content=data,
        headers={**rv.admin, "Content-Type": "image/png"},
    )
    assert r.status_code == 202, r.text
    job = await wait_for(rv.api.client, r.json()["id"], {"succeeded", "failed"}, headers=rv.admin)
    assert job["status"] == "succeeded" and job["result"]["decision"] == "review", job
    return job, data


@pytest.mark.models
async def test_a_review_job_is_queued_once_decided_and_sent_signed(reviewers: Reviewers) -> None:
    rv = reviewers
    c = rv.api.client
    job, data = await _review_job(rv)
    listed = (await c.get("/v1/reviews", headers=rv.reader)).json()["items"]
    assert [(i["source"], i["source_id"]) for i in listed] == [("job", job["id"])]
    item = listed[0]
    assert (item["queue"], item["priority"], item["status"]) == ("domains", 20, "open")
    assert "Blocked Domain" in item["categories"] and "Illegal Ads" in item["categories"]
    assert item["policy"] == "codes-review" and item["policy_version"]
    assert item["result"] is None  # lists leave the snapshot out
    full = (await c.get(f"/v1/reviews/{item['id']}", headers=rv.reader)).json()
    assert full["result"]["decision"] == "review" and BLOCKED_URL in str(full["result"]["urls"])
    media = await c.get(full["media_url"], headers=rv.reader)
    assert media.status_code == 200 and media.content == data
    assert media.headers["content-type"] == "image/png"

    # the reader may look but not claim; bob finds nothing once alice holds the item
    r = await c.post("/v1/reviews/claim", json={"queue": "domains"}, headers=rv.reader)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")
    r = await c.post("/v1/reviews/claim", json={"queue": "domains"}, headers=rv.alice)
    assert r.status_code == 200, r.text
    claimed = r.json()
    assert claimed["id"] == item["id"] and claimed["status"] == "claimed"
    assert claimed["lease_expires_at"] and claimed["claimed_by"].startswith("key:")
    r = await c.post("/v1/reviews/claim", json={"queue": "domains"}, headers=rv.bob)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "nothing_to_review")

    decide = f"/v1/reviews/{item['id']}/decide"
    body = {"action": "reject", "add_labels": ["Contact Information"], "note": "scam"}
    r = await c.post(decide, json=body, headers=rv.bob)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "review_lease_lost")
    r = await c.post(decide, json={**body, "add_labels": ["Nope"]}, headers=rv.alice)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_label")
    r = await c.post(decide, json={**body, "action": "ban"}, headers=rv.alice)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    r = await c.post(decide, json=body, headers=rv.alice)
    assert r.status_code == 200, r.text
    decided = r.json()
    assert (decided["item"]["status"], decided["item"]["decision"]) == ("decided", "block")
    assert decided["decision"]["added_labels"] == ["Contact Information"]
    r = await c.post(decide, json=body, headers=rv.alice)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "review_already_decided")

    log = (await c.get(f"/v1/reviews/{item['id']}/decisions", headers=rv.reader)).json()
    assert [d["action"] for d in log["decisions"]] == ["reject"]
    assert log["decisions"][0]["by"]["kind"] == "key"

    call = await rv.receiver.wait(where=lambda e: e["type"] == "review.decided")
    secret = (await c.get("/v1/webhooks/secret", headers=rv.admin)).json()["secret"]
    event = verify(call.body, call.headers, secret)
    data_ = event["data"]
    assert data_["item"]["id"] == item["id"] and data_["item"]["source_id"] == job["id"]
    assert data_["decision"]["action"] == "reject" and data_["decision"]["decision"] == "block"
    assert data_["decision"]["note"] == "scam"
    assert "Contact Information" not in data_["decision"]["labels_before"]
    assert "Contact Information" in data_["decision"]["labels_after"]
    assert data_["by"] == decided["decision"]["by"]
    assert data_["policy"] == {"name": "codes-review", "version": item["policy_version"]}
    # still one item for the job
    listed = (await c.get("/v1/reviews", headers=rv.reader)).json()["items"]
    assert [i["source_id"] for i in listed] == [job["id"]]


@pytest.mark.models
async def test_open_review_items_keep_their_media(reviewers: Reviewers) -> None:
    rv = reviewers
    c = rv.api.client
    job, _ = await _review_job(rv)
    item = (await c.get("/v1/reviews", headers=rv.reader)).json()["items"][0]
    svc = rv.api.services
    hour = 3600.0
    media = svc.jobs.media.path(job["media_sha256"])
    old = datetime.now(UTC) - timedelta(hours=2)
    with svc.jobs.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job["id"]).values(created_at=old))
    os.utime(media, (old.timestamp(), old.timestamp()))
    retention = MediaRetention(svc.jobs, JobsConfig(media_retention_s=hour))
    assert (await asyncio.to_thread(retention.sweep)).media_removed == 0
    assert media.is_file()
    r = await c.post(
        f"/v1/reviews/{item['id']}/decide", json={"action": "approve"}, headers=rv.admin
    )
    assert r.status_code == 200, r.text  # an admin key decides without claiming
    assert (await asyncio.to_thread(retention.sweep)).media_removed == 1
    r = await c.get(f"/v1/reviews/{item['id']}/media", headers=rv.reader)
    assert (r.status_code, r.json()["error"]["code"]) == (410, "media_expired")


@pytest.mark.models
async def test_other_tenants_see_nothing_and_cannot_act(reviewers: Reviewers) -> None:
    rv = reviewers
    c = rv.api.client
    await _review_job(rv)
    item = (await c.get("/v1/reviews", headers=rv.reader)).json()["items"][0]
    stranger = (await rv.api.new_tenant()).headers
    assert (await c.get("/v1/reviews", headers=stranger)).json()["items"] == []
    for method, path, body in (
        ("GET", f"/v1/reviews/{item['id']}", None),
        ("GET", f"/v1/reviews/{item['id']}/decisions", None),
        ("GET", f"/v1/reviews/{item['id']}/media", None),
        ("POST", f"/v1/reviews/{item['id']}/decide", {"action": "approve"}),
        ("POST", f"/v1/reviews/{item['id']}/release", None),
    ):
        r = await c.request(method, path, json=body, headers=stranger)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "review_not_found"), path
    r = await c.post("/v1/reviews/claim", json={"queue": "domains"}, headers=stranger)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "nothing_to_review")
    r = await c.post("/v1/reviews/claim", json={"queue": "nowhere"}, headers=stranger)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_queue")
    r = await c.get("/v1/reviews", params={"status": "weird"}, headers=rv.reader)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_status")
    r = await c.post("/v1/reviews/claim", json={"queue": "domains"}, headers=rv.alice)
    assert r.status_code == 200 and r.json()["id"] == item["id"]
    r = await c.post(f"/v1/reviews/{item['id']}/release", headers=rv.bob)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "review_lease_lost")
    r = await c.post(f"/v1/reviews/{item['id']}/release", headers=rv.alice)
    assert r.status_code == 200 and r.json()["status"] == "open"
