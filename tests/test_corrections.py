"""Corrections and training consent: a correction decides a job's, a stored result's or a
review item's item like a moderator (over a claim, creating the item decided when there
is none, correcting a decided one), every correction is in the audit log and sent as a
signed ``review.decided`` webhook with source ``api``, decisions and corrections are
listed as labelled samples, and the tenant's consent decides whether their media
outlives retention. On SQLite and PostgreSQL; through the API with the real models."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bastion.dedup.tables import DedupEntry
from bastion.delivery.client import verify
from bastion.delivery.config import DeliveryConfig
from bastion.delivery.tables import Delivery
from bastion.errors import InputError
from bastion.jobs.config import JobsConfig
from bastion.jobs.retention import MediaRetention
from bastion.jobs.tables import Job
from bastion.live.thumbnails import LiveThumbnails
from bastion.pipeline.engine import Engine
from bastion.review.config import ReviewConfig
from bastion.review.errors import (
    CorrectionTargetNotFound,
    CorrectionTargetNotReady,
    InvalidCorrectionLabels,
    InvalidCorrectionTarget,
    NoteTooLong,
    ReviewAlreadyDecided,
    UnknownLabel,
)
from bastion.review.service import CorrectionTarget, Reviewer, ReviewService, upload_key
from bastion.review.tables import ReviewDecision, ReviewItem
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo
from tests.support.app import Api, running
from tests.support.auth import bearer
from tests.support.databases import sqlite_url
from tests.support.jobs import CODES_POLICY, wait_for
from tests.support.media import qr_on_photo
from tests.support.settings import make_settings
from tests.support.webhooks import Receiver

TENANT = "acme"
OTHER = "globex"
ALICE = Reviewer("key", "alice")
BOB = Reviewer("key", "bob")
PLATFORM = Reviewer("key", "platform")
WEBHOOK = "https://hooks.example/review"


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
    return Clock(datetime(2026, 12, 4, 12, 0, tzinfo=UTC))


@pytest.fixture
def svc(sessions: sessionmaker[Session], clock: Clock) -> ReviewService:
    return ReviewService(sessions, ReviewConfig(lease_s=60, webhook_url=WEBHOOK), now=clock)


def _result(decision: str, labels: list[str], *, policy: str = "p", version: str = "v1") -> Any:
    """A moderation result as jobs and stored results keep it (JSON)."""
    return {
        "decision": decision,
        "labels": [{"name": n, "confidence": 0.9} for n in labels],
        "reasons": [{"rule": "r", "label": n, "action": decision} for n in labels[:1]],
        "policy": policy,
        "policy_version": version,
        "versions": {"codes": "1"},
    }


def _job(
    sessions: sessionmaker[Session],
    result: dict[str, Any] | None,
    *,
    tenant: str = TENANT,
    status: str = "succeeded",
) -> Job:
    sha = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    job = Job(
        id="job_" + uuid.uuid4().hex,
        tenant_id=tenant,
        status=status,
        kind="image",
        media_sha256=sha,
        media_bytes=10,
        result=result,
    )
    with sessions.begin() as s:
        s.add(job)
    return job


def _stored(
    sessions: sessionmaker[Session],
    sha: str,
    result: dict[str, Any],
    at: datetime,
    *,
    tenant: str = TENANT,
) -> None:
    with sessions.begin() as s:
        s.add(
            DedupEntry(
                tenant_id=tenant,
                sha256=sha,
                scope=uuid.uuid4().hex[:32],
                model_fp="m",
                result=result,
                hits=0,
                created_at=at,
                used_at=at,
            )
        )


def _deliveries(sessions: sessionmaker[Session], item_id: str) -> list[Delivery]:
    with sessions() as s:
        return list(
            s.scalars(select(Delivery).where(Delivery.subject_id == item_id).order_by(Delivery.id))
        )


# ---- the service ---------------------------------------------------------------------


def test_a_correction_decides_an_open_item_over_a_claim(
    svc: ReviewService, sessions: sessionmaker[Session], clock: Clock
) -> None:
    job = _job(sessions, _result("review", ["Blocked Domain"]))
    with sessions.begin() as s:
        queued = svc.enqueue_job(s, job)
    assert queued is not None
    svc.claim_next(TENANT, "default", ALICE)
    clock.advance(5)
    done = svc.correct(
        TENANT,
        CorrectionTarget(job_id=job.id),
        PLATFORM,
        "block",
        add_labels=["Illegal Ads"],
        note="known spam shop",
    )
    assert done.item_created is False and done.item.id == queued.id
    item, d = done.item, done.decision
    assert (item.status, item.decision, item.decided_at) == ("decided", "block", clock.at)
    assert item.labels == ["Blocked Domain", "Illegal Ads"]
    assert (d.source, d.action, d.decision, d.actor_kind, d.actor_id) == (
        "api",
        "correct",
        "block",
        "key",
        "platform",
    )
    assert d.overrode_claim == "key:alice"  # the claim the correction went over
    assert (d.labels_before, d.labels_after) == (["Blocked Domain"], item.labels)
    assert (d.added_labels, d.removed_labels, d.model_decision) == (["Illegal Ads"], [], "review")
    assert (d.policy, d.policy_version, d.model_versions) == ("p", "v1", {"codes": "1"})
    with pytest.raises(ReviewAlreadyDecided):  # alice's lease does not decide it again
        svc.decide(TENANT, item.id, ALICE, "approve")
    assert [x.id for x in svc.decisions(TENANT, item.id)] == [d.id]
    (sent,) = _deliveries(sessions, item.id)
    assert (sent.event_type, sent.tenant_id, sent.url) == ("review.decided", TENANT, WEBHOOK)
    assert sent.payload["decision"]["source"] == "api"
    assert sent.payload["decision"]["action"] == "correct"
    assert sent.payload["decision"]["overrode_claim"] == "key:alice"
    assert sent.payload["item"]["decision"] == "block"


def test_a_moderators_decision_is_marked_as_such(
    svc: ReviewService, sessions: sessionmaker[Session]
) -> None:
    job = _job(sessions, _result("review", ["Pills"]))
    with sessions.begin() as s:
        item = svc.enqueue_job(s, job)
    assert item is not None
    svc.claim_next(TENANT, "default", ALICE)
    _, d = svc.decide(TENANT, item.id, ALICE, "approve")
    assert (d.source, d.media_kept, d.overrode_claim) == ("moderator", False, None)
    (sent,) = _deliveries(sessions, item.id)
    assert sent.payload["decision"]["source"] == "moderator"


def test_a_correction_without_an_item_creates_it_decided(
    svc: ReviewService, sessions: sessionmaker[Session], clock: Clock
) -> None:
    job = _job(sessions, _result("allow", ["Firearms"]))  # the models allowed it: no item
    assert svc.list_items(TENANT).items == []
    done = svc.correct(TENANT, CorrectionTarget(job_id=job.id), PLATFORM, "block")
    item = done.item
    assert done.item_created is True
    assert (item.source, item.source_id, item.status, item.decision) == (
        "job",
        job.id,
        "decided",
        "block",
    )
    assert item.model_decision == "allow" and item.labels == ["Firearms"]
    assert item.media == {"kind": "job", "job_id": job.id, "sha256": job.media_sha256}
    assert item.media_sha256 == job.media_sha256 and item.lease_expires_at is None
    assert [i.id for i in svc.list_items(TENANT).items] == [item.id]
    # the same correction again: one item, one more decision, nothing broken
    clock.advance(1)
    again = svc.correct(TENANT, CorrectionTarget(job_id=job.id), PLATFORM, "block")
    assert again.item_created is False and again.item.id == item.id
    assert [d.action for d in svc.decisions(TENANT, item.id)] == ["correct", "correct"]
    assert len(_deliveries(sessions, item.id)) == 2


def test_a_correction_of_a_decided_item_adds_a_decision(
    svc: ReviewService, sessions: sessionmaker[Session], clock: Clock
) -> None:
    job = _job(sessions, _result("review", ["Blocked Word", "QR Code Link"]))
    with sessions.begin() as s:
        queued = svc.enqueue_job(s, job)
    assert queued is not None
    svc.claim_next(TENANT, "default", ALICE)
    first, _ = svc.decide(TENANT, queued.id, ALICE, "approve", remove_labels=["Blocked Word"])
    decided_at = first.decided_at
    clock.advance(60)
    done = svc.correct(
        TENANT,
        CorrectionTarget(review_id=queued.id),
        PLATFORM,
        "block",
        labels=["Blocked Domain", "QR Code Link"],
    )
    item, d = done.item, done.decision
    assert (item.decision, item.labels) == ("block", ["QR Code Link", "Blocked Domain"])
    assert item.decided_at == decided_at  # when it was first decided
    assert (d.labels_before, d.labels_after) == (["QR Code Link"], item.labels)
    assert (d.added_labels, d.removed_labels, d.overrode_claim) == (["Blocked Domain"], [], None)
    log = svc.decisions(TENANT, queued.id)
    assert [(x.source, x.action, x.decision) for x in log] == [
        ("moderator", "approve", "allow"),
        ("api", "correct", "block"),
    ]
    # the full set of labels may also be empty: every label removed
    cleared = svc.correct(
        TENANT, CorrectionTarget(review_id=queued.id), PLATFORM, "allow", labels=[]
    )
    assert cleared.item.labels == [] and cleared.decision.removed_labels == item.labels


def test_bad_corrections_are_refused_and_leave_nothing(
    svc: ReviewService, sessions: sessionmaker[Session]
) -> None:
    job = _job(sessions, _result("review", ["Pills"]))
    target = CorrectionTarget(job_id=job.id)
    refused: list[tuple[type[Exception], dict[str, Any]]] = [
        (UnknownLabel, {"add_labels": ["Not A Label"]}),
        (UnknownLabel, {"labels": ["Pills", "Nope"]}),
        (InvalidCorrectionLabels, {"labels": ["Pills"], "remove_labels": ["Pills"]}),
        (NoteTooLong, {"note": "x" * 2001}),
    ]
    for error, kwargs in refused:
        with pytest.raises(error):
            svc.correct(TENANT, target, PLATFORM, "block", **kwargs)
    with pytest.raises(InputError) as bad:
        svc.correct(TENANT, target, PLATFORM, "review")
    assert (bad.value.code, bad.value.status) == ("invalid_decision", 422)
    for wrong in (
        CorrectionTarget(),
        CorrectionTarget(job_id=job.id, review_id="rev_x"),
        CorrectionTarget(job_id=job.id, policy="p"),
    ):
        with pytest.raises(InvalidCorrectionTarget):
            svc.correct(TENANT, wrong, PLATFORM, "block")
    for missing in (
        CorrectionTarget(job_id="job_nope"),
        CorrectionTarget(review_id="rev_nope"),
        CorrectionTarget(media_sha256="0" * 64),
    ):
        with pytest.raises(CorrectionTargetNotFound) as err:
            svc.correct(TENANT, missing, PLATFORM, "block")
        assert (err.value.code, err.value.status) == ("correction_target_not_found", 404)
    queued = _job(sessions, None, status="queued")
    with pytest.raises(CorrectionTargetNotReady) as err2:
        svc.correct(TENANT, CorrectionTarget(job_id=queued.id), PLATFORM, "block")
    assert (err2.value.code, err2.value.status) == ("correction_target_not_ready", 409)
    assert svc.list_items(TENANT).items == []
    with sessions() as s:
        assert s.scalars(select(ReviewDecision)).all() == []


def test_another_tenants_targets_cannot_be_corrected(
    svc: ReviewService, sessions: sessionmaker[Session], clock: Clock
) -> None:
    job = _job(sessions, _result("review", ["Pills"]), tenant=OTHER)
    with sessions.begin() as s:
        item = svc.enqueue_job(s, job)
    assert item is not None
    sha = hashlib.sha256(b"theirs").hexdigest()
    _stored(sessions, sha, _result("allow", []), clock.at, tenant=OTHER)
    for target in (
        CorrectionTarget(job_id=job.id),
        CorrectionTarget(review_id=item.id),
        CorrectionTarget(media_sha256=sha),
    ):
        with pytest.raises(CorrectionTargetNotFound):
            svc.correct(TENANT, target, PLATFORM, "block")
    assert svc.get(OTHER, item.id).status == "open"
    svc.correct(OTHER, CorrectionTarget(job_id=job.id), PLATFORM, "block")
    assert [s.item.id for s in svc.samples(OTHER).samples] == [item.id]
    assert svc.samples(TENANT).samples == []


def test_stored_results_are_corrected_by_their_media(
    svc: ReviewService, sessions: sessionmaker[Session], clock: Clock
) -> None:
    sha = hashlib.sha256(b"bytes").hexdigest()
    older = _result("allow", ["Smoking"], policy="plain", version="v1")
    newer = _result("review", ["Pills"], policy="strict", version="v7")
    _stored(sessions, sha, older, clock.at - timedelta(hours=1))
    _stored(sessions, sha, newer, clock.at)
    newest = svc.correct(TENANT, CorrectionTarget(media_sha256=sha), PLATFORM, "block")
    item = newest.item
    assert newest.item_created and item.source == "api"
    assert item.source_id == upload_key(sha, "strict", "v7")
    assert (item.policy, item.model_decision, item.labels) == ("strict", "review", ["Pills"])
    assert item.media is None and item.media_sha256 == sha  # the bytes were not kept
    chosen = svc.correct(
        TENANT,
        CorrectionTarget(media_sha256=sha, policy="plain"),
        PLATFORM,
        "block",
        add_labels=["Pills"],
        media_stored=lambda digest: digest == sha,
    )
    assert chosen.item_created and chosen.item.id != item.id
    assert chosen.item.source_id == upload_key(sha, "plain", "v1")
    assert chosen.item.media == {"kind": "upload", "sha256": sha}
    with pytest.raises(CorrectionTargetNotFound):
        svc.correct(TENANT, CorrectionTarget(media_sha256=sha, policy="other"), PLATFORM, "allow")

    # a synchronous call's item is found by its media once its stored result is gone
    kept = hashlib.sha256(b"kept for review").hexdigest()
    queued = svc.enqueue_upload(TENANT, _result("review", ["Pills"]), kept)
    assert queued is not None
    done = svc.correct(TENANT, CorrectionTarget(media_sha256=kept), PLATFORM, "allow")
    assert done.item.id == queued[0].id and not done.item_created
    assert done.item.media == {"kind": "upload", "sha256": kept}


def test_concurrent_identical_corrections_make_one_item(
    svc: ReviewService, sessions: sessionmaker[Session]
) -> None:
    job = _job(sessions, _result("allow", ["Pills"]))
    errors: list[BaseException] = []
    created: list[bool] = []
    start = threading.Barrier(6)

    def correct() -> None:
        try:
            start.wait()
            done = svc.correct(TENANT, CorrectionTarget(job_id=job.id), PLATFORM, "block")
            created.append(done.item_created)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=correct) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(created) == [False] * 5 + [True]
    (item,) = svc.list_items(TENANT).items
    assert (item.status, item.decision) == ("decided", "block")
    assert len(svc.decisions(TENANT, item.id)) == 6


def test_consent_decides_whether_media_is_kept(
    svc: ReviewService, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    repo = Repo(sessions)
    assert repo.get_tenant(TENANT).training_consent is False
    without = svc.correct(
        TENANT, CorrectionTarget(job_id=_job(sessions, _result("allow", [])).id), PLATFORM, "block"
    )
    assert without.decision.media_kept is False
    assert repo.update_tenant(TENANT, training_consent=True).training_consent is True
    with_consent = svc.correct(
        TENANT, CorrectionTarget(job_id=_job(sessions, _result("allow", [])).id), PLATFORM, "block"
    )
    assert with_consent.decision.media_kept is True
    no_media = svc.correct(
        TENANT, CorrectionTarget(media_sha256=_stored_sha(sessions)), PLATFORM, "allow"
    )
    assert no_media.item.media is None and no_media.decision.media_kept is False
    # escalating decides nothing: it keeps nothing (the open item keeps its media anyway)
    job = _job(sessions, _result("review", ["Pills"]))
    with sessions.begin() as s:
        item = svc.enqueue_job(s, job)
    assert item is not None
    svc.claim_next(TENANT, "default", ALICE)
    _, escalated = svc.decide(TENANT, item.id, ALICE, "escalate")
    assert escalated.media_kept is False
    svc.claim_next(TENANT, "escalated", BOB)
    _, decided = svc.decide(TENANT, item.id, BOB, "reject")
    assert decided.media_kept is True

    # live thumbnails: the purge keeps undecided items' frames and kept samples' frames
    thumbnails = LiveThumbnails(tmp_path / "thumbs", retention_s=60, keep=svc.kept_thumbnails)
    stream = "str_" + uuid.uuid4().hex
    frames = {}
    for name in ("open", "kept", "gone"):
        frame = thumbnails.folder(stream) / f"{uuid.uuid4().hex}.jpg"
        frame.parent.mkdir(parents=True, exist_ok=True)
        frame.write_bytes(b"jpeg")
        frames[name] = frame
        media = {"kind": "alert_thumbnail", "alert_id": name, "stream_pk": stream}
        with sessions.begin() as s:
            svc.enqueue(
                s,
                tenant_id=TENANT,
                source="alert",
                source_id=f"alt_{name}",
                media={**media, "name": frame.name},
            )
    items = {i.source_id: i for i in svc.list_items(TENANT, limit=500).items}
    repo.update_tenant(TENANT, training_consent=False)
    svc.correct(TENANT, CorrectionTarget(review_id=items["alt_gone"].id), PLATFORM, "allow")
    repo.update_tenant(TENANT, training_consent=True)
    svc.correct(TENANT, CorrectionTarget(review_id=items["alt_kept"].id), PLATFORM, "block")
    assert thumbnails.purge(time.time() + 3600) == 1
    assert frames["open"].is_file() and frames["kept"].is_file()
    assert not frames["gone"].exists()


def _stored_sha(sessions: sessionmaker[Session]) -> str:
    sha = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    _stored(sessions, sha, _result("review", ["Pills"]), datetime.now(UTC))
    return sha


def test_samples_are_listed_newest_first_with_filters_and_pages(
    svc: ReviewService, sessions: sessionmaker[Session], clock: Clock
) -> None:
    start = clock.at
    jobs = [_job(sessions, _result("review", ["Pills"])) for _ in range(3)]
    items = []
    for job in jobs:
        with sessions.begin() as s:
            item = svc.enqueue_job(s, job)
        assert item is not None
        items.append(item)
        clock.advance(1)  # claimed oldest first
    # a moderator approves as the models' labels say, and escalates another (no sample)
    svc.claim_next(TENANT, "default", ALICE)
    clock.advance(1)
    svc.decide(TENANT, items[0].id, ALICE, "approve")
    svc.claim_next(TENANT, "default", ALICE)
    clock.advance(1)
    svc.decide(TENANT, items[1].id, ALICE, "escalate")
    # corrections: the same labels and the models' decision, then real corrections
    clock.advance(1)
    allowed = _job(sessions, _result("allow", ["Smoking"]))
    svc.correct(TENANT, CorrectionTarget(job_id=allowed.id), PLATFORM, "allow")
    clock.advance(1)
    svc.correct(
        TENANT, CorrectionTarget(job_id=allowed.id), PLATFORM, "allow", add_labels=["Pills"]
    )
    clock.advance(1)
    svc.correct(TENANT, CorrectionTarget(review_id=items[2].id), PLATFORM, "block")
    clock.advance(1)
    svc.correct(TENANT, CorrectionTarget(review_id=items[1].id), PLATFORM, "allow")

    everything = svc.samples(TENANT)
    rows = [(s.decision.source, s.decision.action, s.item.id) for s in everything.samples]
    assert rows == [
        ("api", "correct", items[1].id),
        ("api", "correct", items[2].id),
        ("api", "correct", everything.samples[2].item.id),
        ("api", "correct", everything.samples[2].item.id),
        ("moderator", "approve", items[0].id),
    ]
    assert everything.next_cursor is None
    times = [s.decision.decided_at for s in everything.samples]
    assert times == sorted(times, reverse=True)

    by_moderators = svc.samples(TENANT, source="moderator").samples
    assert [s.decision.action for s in by_moderators] == ["approve"]
    assert len(svc.samples(TENANT, source="api").samples) == 4
    # corrected: a decision other than the models' (review: every decision of a queued
    # item) or labels changed; the correction that agreed with the models is left out
    corrected = svc.samples(TENANT, corrected_only=True).samples
    assert len(corrected) == 4
    assert all(
        s.decision.decision != s.decision.model_decision
        or s.decision.labels_before != s.decision.labels_after
        for s in corrected
    )
    smoking = svc.samples(TENANT, label="Smoking").samples
    assert len(smoking) == 2 and {s.item.source_id for s in smoking} == {allowed.id}
    pills_added = svc.samples(TENANT, label="Pills", source="api", corrected_only=True).samples
    assert len(pills_added) == 3
    assert svc.samples(TENANT, label="Firearms").samples == []
    window = svc.samples(
        TENANT, since=start + timedelta(seconds=6), until=start + timedelta(seconds=8)
    )
    assert [s.decision.decided_at - start for s in window.samples] == [
        timedelta(seconds=7),
        timedelta(seconds=6),
    ]

    seen: list[str] = []
    cursor = None
    while True:
        page = svc.samples(TENANT, limit=2, cursor=cursor)
        assert len(page.samples) <= 2
        seen += [s.decision.id for s in page.samples]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [s.decision.id for s in everything.samples]

    with pytest.raises(InputError) as bad:
        svc.samples(TENANT, source="robot")
    assert bad.value.code == "invalid_source"
    with pytest.raises(UnknownLabel):
        svc.samples(TENANT, label="Not A Label")
    for limit in (0, 501):
        with pytest.raises(InputError) as err:
            svc.samples(TENANT, limit=limit)
        assert err.value.code == "invalid_limit"
    with pytest.raises(InputError) as err:
        svc.samples(TENANT, cursor="not a cursor")
    assert err.value.code == "invalid_cursor"
    assert svc.samples(OTHER).samples == []


# ---- through the API, with jobs and the real models -----------------------------------

REVIEW_POLICY = CODES_POLICY.replace("name: codes-only", "name: codes-review").replace(
    "block: 50", "review: 50"
)
BLOCKED_URL = "https://evil.example/win"


@dataclass
class Platform:
    api: Api
    receiver: Receiver
    admin: dict[str, str]
    moderator: dict[str, str]
    reader: dict[str, str]


async def _key(api: Api, admin: dict[str, str], *scopes: str) -> dict[str, str]:
    r = await api.client.post("/v1/keys", json={"scopes": list(scopes)}, headers=admin)
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def _tenant(api: Api) -> dict[str, str]:
    admin = await api.tenant()
    for policy in (REVIEW_POLICY, CODES_POLICY):
        r = await api.client.put(
            f"/v1/policies/{policy.split()[1]}",
            content=policy,
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
            jobs={"poll_s": 0.05, "lease_s": 5, "retry_delay_s": 0.1},
            delivery=DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05),
            review={"webhook_url": receiver.url},
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


async def _job_of(p: Platform, admin: dict[str, str], data: bytes, policy: str) -> dict[str, Any]:
    r = await p.api.client.post(
        "/v1/jobs",
        params={"policy": policy},
        content=data,
        headers={**admin, "Content-Type": "image/png"},
    )
    assert r.status_code == 202, r.text
    job = await wait_for(p.api.client, r.json()["id"], {"succeeded", "failed"}, headers=admin)
    assert job["status"] == "succeeded", job
    return job


@pytest.mark.models
async def test_a_correction_through_the_api_decides_and_is_sent_signed(
    platform: Platform,
) -> None:
    p = platform
    c = p.api.client
    job = await _job_of(p, p.admin, qr_on_photo(BLOCKED_URL), "codes-review")
    assert job["result"]["decision"] == "review"
    (item,) = (await c.get("/v1/reviews", headers=p.reader)).json()["items"]
    r = await c.post("/v1/reviews/claim", json={}, headers=p.moderator)
    assert r.status_code == 200 and r.json()["id"] == item["id"], r.text

    body = {"job_id": job["id"], "decision": "block", "add_labels": ["Illegal Ads"]}
    r = await c.post("/v1/corrections", json=body, headers=p.reader)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")
    for bad, code in (
        ({**body, "add_labels": ["Nope"]}, "unknown_label"),
        ({**body, "labels": ["Pills"]}, "invalid_correction_labels"),
        ({**body, "review_id": item["id"]}, "invalid_correction_target"),
        ({**body, "decision": "review"}, "invalid_request"),
        ({**body, "media_sha256": "XYZ"}, "invalid_request"),
    ):
        r = await c.post("/v1/corrections", json=bad, headers=p.admin)
        assert (r.status_code, r.json()["error"]["code"]) == (422, code), bad
    r = await c.post("/v1/corrections", json={**body, "job_id": "job_nope"}, headers=p.admin)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "correction_target_not_found")

    r = await c.post("/v1/corrections", json={**body, "note": "spam shop"}, headers=p.admin)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["item_created"] is False and out["item"]["id"] == item["id"]
    assert (out["item"]["status"], out["item"]["decision"]) == ("decided", "block")
    decision = out["decision"]
    assert (decision["source"], decision["action"], decision["media_kept"]) == (
        "api",
        "correct",
        False,
    )
    assert decision["overrode_claim"].startswith("key:")
    assert "Illegal Ads" in decision["labels_after"] and decision["added_labels"] == ["Illegal Ads"]
    log = (await c.get(f"/v1/reviews/{item['id']}/decisions", headers=p.reader)).json()
    assert [(d["source"], d["action"]) for d in log["decisions"]] == [("api", "correct")]
    r = await c.post(
        f"/v1/reviews/{item['id']}/decide", json={"action": "approve"}, headers=p.moderator
    )
    assert (r.status_code, r.json()["error"]["code"]) == (409, "review_already_decided")

    call = await p.receiver.wait(where=lambda e: e["type"] == "review.decided")
    secret = (await c.get("/v1/webhooks/secret", headers=p.admin)).json()["secret"]
    event = verify(call.body, call.headers, secret)["data"]
    assert event["item"]["id"] == item["id"] and event["item"]["source_id"] == job["id"]
    assert (event["decision"]["source"], event["decision"]["action"]) == ("api", "correct")
    assert event["decision"]["decision"] == "block" and event["decision"]["note"] == "spam shop"

    samples = (await c.get("/v1/corrections", headers=p.reader)).json()
    (sample,) = samples["samples"]
    assert samples["next_cursor"] is None
    assert sample["id"] == decision["id"] and sample["source"] == "api"
    assert sample["media"]["review_id"] == item["id"] and sample["media"]["kind"] == "job"
    assert sample["media"]["kept"] is False and sample["media"]["sha256"] == job["media_sha256"]
    assert (sample["decision"], sample["model_decision"], sample["corrected"]) == (
        "block",
        "review",
        True,
    )
    assert sample["policy"] == "codes-review" and sample["policy_version"]
    media = await c.get(sample["media"]["url"], headers=p.reader)
    assert media.status_code == 200 and media.content == qr_on_photo(BLOCKED_URL)
    r = await c.get("/v1/corrections", params={"source": "moderator"}, headers=p.reader)
    assert r.status_code == 200 and r.json()["samples"] == []
    r = await c.get("/v1/corrections", params={"label": "Nope"}, headers=p.reader)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_label")

    # another tenant neither corrects nor sees it
    stranger = await p.api.tenant()
    for target in ({"job_id": job["id"]}, {"review_id": item["id"]}):
        r = await c.post("/v1/corrections", json={**target, "decision": "allow"}, headers=stranger)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "correction_target_not_found")
    assert (await c.get("/v1/corrections", headers=stranger)).json()["samples"] == []

    # the document says what a correction answers
    doc = (await c.get("/openapi.json")).json()
    post = doc["paths"]["/v1/corrections"]["post"]
    assert {"201", "404", "409", "422"} <= set(post["responses"])
    schemas = {
        name: doc["components"]["schemas"][name]
        for name in ("Corrected", "SampleOut", "MediaRef", "SampleList")
    }
    schemas["body"] = post["requestBody"]["content"]["application/json"]["schema"]
    for model, schema in schemas.items():
        fields = schema["properties"]
        undescribed = [name for name, field in fields.items() if not field.get("description")]
        assert not undescribed, (model, undescribed)


@pytest.mark.models
async def test_a_stored_result_is_corrected_by_its_media(platform: Platform) -> None:
    p = platform
    c = p.api.client
    data = qr_on_photo(BLOCKED_URL, "skimage-chelsea")
    sha = hashlib.sha256(data).hexdigest()
    r = await c.post(
        "/v1/moderate",
        params={"policy": "codes-only"},
        content=data,
        headers={**p.moderator, "Content-Type": "image/png"},
    )
    assert r.status_code == 200 and r.json()["decision"] == "block", r.text
    body = {"media_sha256": sha, "policy": "codes-only", "decision": "allow"}
    r = await c.post(
        "/v1/corrections", json={**body, "remove_labels": ["Blocked Domain"]}, headers=p.moderator
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["item_created"] is True
    item = out["item"]
    assert (item["source"], item["status"], item["decision"]) == ("api", "decided", "allow")
    assert item["source_id"].startswith(f"upload:{sha}:") and item["model_decision"] == "block"
    assert "Blocked Domain" not in item["labels"]
    assert item["media"] is None and item["media_url"] is None  # the call kept no bytes
    (sample,) = (await c.get("/v1/corrections", headers=p.reader)).json()["samples"]
    assert sample["media"] == {
        "review_id": item["id"],
        "kind": None,
        "sha256": sha,
        "kept": False,
        "url": None,
    }
    r = await c.post(
        "/v1/corrections", json={**body, "policy": "codes-review"}, headers=p.moderator
    )
    assert (r.status_code, r.json()["error"]["code"]) == (404, "correction_target_not_found")


@pytest.mark.models
async def test_consent_keeps_the_media_of_decided_items_through_retention(
    platform: Platform,
) -> None:
    p = platform
    c = p.api.client
    tenant = (await c.get("/v1/tenant", headers=p.reader)).json()
    assert tenant["training_consent"] is False
    r = await c.patch("/v1/tenant", json={"training_consent": True}, headers=p.moderator)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")
    r = await c.patch("/v1/tenant", json={"training_consent": "perhaps"}, headers=p.admin)
    assert r.status_code == 422, r.text
    r = await c.patch("/v1/tenant", json={"training_consent": True}, headers=p.admin)
    assert r.status_code == 200 and r.json()["training_consent"] is True, r.text
    assert (await c.get("/v1/tenant", headers=p.reader)).json()["training_consent"] is True

    consenting = await _job_of(p, p.admin, qr_on_photo(BLOCKED_URL), "codes-only")
    other_admin = await _tenant(p.api)
    refusing = await _job_of(
        p, other_admin, qr_on_photo(BLOCKED_URL, "skimage-chelsea"), "codes-only"
    )
    assert consenting["result"]["decision"] == refusing["result"]["decision"] == "block"
    for admin, job in ((p.admin, consenting), (other_admin, refusing)):
        r = await c.post(
            "/v1/corrections", json={"job_id": job["id"], "decision": "allow"}, headers=admin
        )
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["item_created"] is True and out["item"]["source"] == "job"
        assert out["decision"]["media_kept"] is (job is consenting)

    svc = p.api.services
    old = datetime.now(UTC) - timedelta(hours=2)
    for job in (consenting, refusing):
        with svc.jobs.sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job["id"]).values(created_at=old))
        os.utime(svc.jobs.media.path(job["media_sha256"]), (old.timestamp(), old.timestamp()))
    retention = MediaRetention(svc.jobs, JobsConfig(media_retention_s=3600.0))
    assert (await asyncio.to_thread(retention.sweep)).media_removed == 1
    assert svc.jobs.media.path(consenting["media_sha256"]).is_file()
    assert not svc.jobs.media.path(refusing["media_sha256"]).exists()
    (kept,) = (await c.get("/v1/corrections", headers=p.reader)).json()["samples"]
    assert kept["media"]["kept"] is True
    media = await c.get(kept["media"]["url"], headers=p.reader)
    assert media.status_code == 200 and media.content == qr_on_photo(BLOCKED_URL)
    (gone,) = (await c.get("/v1/corrections", headers=other_admin)).json()["samples"]
    assert gone["media"]["kept"] is False
    r = await c.get(gone["media"]["url"], headers=other_admin)
    assert (r.status_code, r.json()["error"]["code"]) == (410, "media_expired")

    # consent withdrawn: later decisions keep nothing; what was kept stays kept
    r = await c.patch("/v1/tenant", json={"training_consent": False}, headers=p.admin)
    assert r.status_code == 200 and r.json()["training_consent"] is False
    r = await c.post(
        "/v1/corrections", json={"job_id": consenting["id"], "decision": "block"}, headers=p.admin
    )
    assert r.status_code == 201 and r.json()["decision"]["media_kept"] is False
    assert (await asyncio.to_thread(retention.sweep)).media_removed == 0
    with svc.jobs.sessions() as s:
        kept_rows = s.scalars(
            select(ReviewDecision.media_kept)
            .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
            .where(ReviewItem.source_id == consenting["id"])
            .order_by(ReviewDecision.decided_at)
        ).all()
    assert kept_rows == [True, False]
