"""Labelled samples: folders imported item by item (bad items reported and left out
whole), decisions that kept their media collected as samples that follow later
corrections, a librarian's filters, training arrays, deletion that removes media only
when nothing of any tenant refers to the bytes, tenant isolation over the API, export
then import, and the `bastion samples` commands. Embeddings come from the real labels
analyzer; the database behaviour runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bastion.cli import app as cli
from bastion.errors import InputError
from bastion.jobs.config import JobsConfig
from bastion.jobs.media_files import MediaStore
from bastion.jobs.retention import MediaRetention
from bastion.jobs.service import JobService
from bastion.jobs.tables import Job
from bastion.live.thumbnails import LiveThumbnails
from bastion.media.image import decode_image
from bastion.pipeline.engine import Engine
from bastion.review.config import ReviewConfig
from bastion.review.service import CorrectionTarget, Reviewer, ReviewService
from bastion.review.tables import ReviewDecision, ReviewItem
from bastion.samples.collector import SampleCollector
from bastion.samples.config import SamplesConfig
from bastion.samples.embedding import Embedder, EmbeddingModel
from bastion.samples.errors import (
    ExportFolderNotEmpty,
    SampleNotFound,
    TrainingConsentRequired,
    UnknownCategory,
)
from bastion.samples.exporter import export_folder
from bastion.samples.importer import SampleImporter
from bastion.samples.service import NewEmbedding, NewSample, SampleFilter, SampleService
from bastion.samples.tables import Sample, SampleEmbedding
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo
from tests.support.animations import gif_animation
from tests.support.app import running
from tests.support.databases import sqlite_url
from tests.support.media import benign_photos, jpeg, photo
from tests.support.settings import make_settings

TENANT = "acme"
OTHER = "globex"
REFUSING = "initech"
MODERATOR = Reviewer("user", "u_mod", admin=True)
PLATFORM = Reviewer("key", "platform")
DIM = 1280
runner = CliRunner()


@dataclass
class Clock:
    at: datetime

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class World:
    """A database with three tenants (two consenting), the media store, the review and
    sample services on a clock of their own."""

    sessions: sessionmaker[Session]
    media: MediaStore
    review: ReviewService
    samples: SampleService
    clock: Clock


@pytest.fixture
def world(database_url: str | None, tmp_path: Path) -> Iterator[World]:
    db = make_engine(database_url or sqlite_url(tmp_path))
    try:
        migrate(db)
        sessions = session_factory(db)
        repo = Repo(sessions)
        for tenant in (TENANT, OTHER, REFUSING):
            repo.ensure_tenant(tenant)
        repo.update_tenant(TENANT, training_consent=True)
        repo.update_tenant(OTHER, training_consent=True)
        clock = Clock(datetime(2026, 12, 3, 9, 0, tzinfo=UTC))
        media = MediaStore(tmp_path / "media")
        review = ReviewService(sessions, ReviewConfig(), now=clock)
        yield World(
            sessions, media, review, SampleService(sessions, media, review, now=clock), clock
        )
    finally:
        db.dispose()


@pytest.fixture
def embedder(engine: Engine) -> Embedder:
    return Embedder(engine)


def _labels_of(engine: Engine, data: bytes) -> np.ndarray:
    """What the labels analyzer itself makes of ``data``'s first frame, called directly."""
    analyzer = engine.analyzers["labels"]
    decoded = decode_image(data, engine.settings.limits)
    (out,) = analyzer.analyze([analyzer.preprocess(decoded.frames[0])])
    assert out.embedding is not None
    return np.asarray(out.embedding, dtype=np.float32)


def _write(path: Path, data: bytes | str | Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    elif isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(json.dumps(data))


@dataclass
class Folder:
    root: Path
    good: dict[str, bytes]
    """The files that must be imported, by their path in the folder."""
    bad: dict[str, str]
    """The files that must be skipped, with the code of why."""


def _folder(root: Path) -> Folder:
    """A folder in LINE's layout with good items and every kind of bad one."""
    cat, coffee, astronaut = (
        jpeg("skimage-chelsea"),
        photo("skimage-coffee", "PNG"),
        jpeg("skimage-astronaut"),
    )
    _write(root / "cat.jpg", cat)
    _write(root / "cat.json", {"labels": ["Firearms"], "decision": "block", "other": 1})
    _write(root / "drinks" / "coffee.png", coffee)
    _write(root / "drinks" / "coffee.json", ["Alcoholic Beverages"])  # a plain list
    _write(root / "astronaut.jpg", astronaut)
    _write(
        root / "astronaut.json",
        {"labels": [], "decision": "allow", "taken_at": "2026-01-02T03:04:05Z"},
    )
    whole = jpeg("skimage-rocket")
    _write(root / "truncated.jpg", whole[: len(whole) // 3])
    _write(root / "truncated.json", ["Firearms"])
    _write(root / "letter.jpg", "Dear reviewer, this is not a picture.\n")
    _write(root / "letter.json", ["Firearms"])
    _write(root / "unparsed.jpg", jpeg("skimage-camera"))
    _write(root / "unparsed.json", '{"labels": ["Firearms"')
    _write(root / "dragon.jpg", jpeg("skimage-motorcycle"))
    _write(root / "dragon.json", {"labels": ["Dragons", "Firearms"]})
    _write(root / "wrong-shape.jpg", jpeg("sklearn-china"))
    _write(root / "wrong-shape.json", {"labels": "Firearms"})
    _write(root / "bomb.gif", gif_animation(1, (65_535, 65_535)))
    _write(root / "bomb.json", ["Firearms"])
    _write(root / "unlabelled.jpg", jpeg("sklearn-flower"))
    _write(root / "orphan.json", ["Firearms"])
    _write(root / "copy-of-cat.jpg", cat)  # the same bytes as cat.jpg
    _write(root / "copy-of-cat.json", ["Firearms"])
    _write(root / ".hidden.jpg", jpeg("skimage-chelsea"))
    return Folder(
        root,
        good={"cat.jpg": cat, "drinks/coffee.png": coffee, "astronaut.jpg": astronaut},
        bad={
            "truncated.jpg": "corrupt_media",
            "letter.jpg": "unsupported_media_type",
            "unparsed.jpg": "invalid_json",
            "dragon.jpg": "unknown_label",
            "wrong-shape.jpg": "invalid_labels_file",
            "bomb.gif": "image_too_large",
            "unlabelled.jpg": "missing_labels",
            "orphan.json": "missing_media",
            "copy-of-cat.jpg": "duplicate",
        },
    )


def _importer(world: World, embedder: Embedder) -> SampleImporter:
    return SampleImporter(world.samples, embedder, SamplesConfig(import_concurrency=4))


def _all(world: World, tenant: str, filters: SampleFilter | None = None) -> list[Sample]:
    return [v.sample for v in world.samples.iterate(tenant, filters)]


# ---- importing -------------------------------------------------------------------------


@pytest.mark.models
async def test_an_imported_folder_keeps_the_good_items_whole_and_reports_the_others(
    world: World, embedder: Embedder, engine: Engine, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "in")
    seen: list[str] = []
    totals: list[int] = []
    report = await _importer(world, embedder).import_folder(
        folder.root,
        TENANT,
        taken_by="cli:tester",
        on_total=totals.append,
        on_item=lambda o: seen.append(o.file),
    )
    assert totals == [len(folder.good) + len(folder.bad)]
    assert sorted(seen) == sorted([*folder.good, *folder.bad])
    assert report.imported == 3
    outcomes = {i.file: i for i in report.items}
    assert {f: o.code for f, o in outcomes.items() if not o.imported} == folder.bad
    assert all(outcomes[f].message for f in folder.bad)
    assert report.skipped == {code: 1 for code in folder.bad.values()}

    # only the good items are in the database and the media store; nothing of the bad
    samples = {s.origin: s for s in _all(world, TENANT)}
    assert set(samples) == set(folder.good)
    stored = {sha for sha, _ in world.media.stored()}
    assert stored == {hashlib.sha256(d).hexdigest() for d in folder.good.values()}
    with world.sessions() as s:
        assert (
            s.scalar(
                select(SampleEmbedding.sample_id).where(
                    SampleEmbedding.sample_id.not_in([x.id for x in samples.values()])
                )
            )
            is None
        )

    cat = samples["cat.jpg"]
    assert (cat.labels, cat.categories, cat.decision) == (
        ["Firearms"],
        ["Firearms", "Weapons"],
        "block",
    )
    assert (cat.source, cat.taken_by, cat.media_kind, cat.media_format) == (
        "import",
        "cli:tester",
        "image",
        "JPEG",
    )
    assert cat.model_labels is None and cat.model_decision is None and cat.corrected is False
    coffee = samples["drinks/coffee.png"]
    assert (coffee.labels, coffee.decision, coffee.media_format) == (
        ["Alcoholic Beverages"],
        None,
        "PNG",
    )
    astronaut = samples["astronaut.jpg"]
    assert (astronaut.labels, astronaut.decision) == ([], "allow")
    assert astronaut.taken_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    # every embedding is the labels analyzer's 1280-d vector of that image
    model = embedder.model
    assert model.name == "efficientnet-lite0" and model.version != "unavailable"
    for name, data in folder.good.items():
        sample = samples[name]
        assert sample.media_sha256 == hashlib.sha256(data).hexdigest()
        assert world.media.get(sample.media_sha256) == data
        vector = world.samples.embedding(TENANT, sample.id, model)
        assert vector is not None and vector.shape == (DIM,) and vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
        expected = await asyncio.to_thread(_labels_of, engine, data)
        np.testing.assert_allclose(vector, expected, atol=1e-4)
    a, b = (
        world.samples.embedding(TENANT, samples[n].id, model) for n in ("cat.jpg", "astronaut.jpg")
    )
    assert a is not None and b is not None and float(a @ b) < 0.95  # different photos differ

    # importing the folder again adds nothing: every good item is a duplicate now
    again = await _importer(world, embedder).import_folder(folder.root, TENANT, taken_by="cli:x")
    assert again.imported == 0 and again.skipped["duplicate"] == 4
    assert len(_all(world, TENANT)) == 3
    # another tenant's samples are its own
    other = await _importer(world, embedder).import_folder(folder.root, OTHER, taken_by="cli:x")
    assert other.imported == 3 and len(_all(world, OTHER)) == 3


@pytest.mark.models
async def test_an_import_is_refused_without_training_consent(
    world: World, embedder: Embedder, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "in")
    importer = _importer(world, embedder)
    with pytest.raises(TrainingConsentRequired) as refused:
        await importer.import_folder(folder.root, REFUSING, taken_by="cli:x")
    assert refused.value.code == "training_consent_required" and refused.value.status == 403
    assert "training_consent" in refused.value.message
    assert _all(world, REFUSING) == [] and list(world.media.stored()) == []
    with pytest.raises(InputError) as missing:
        await importer.import_folder(tmp_path / "nowhere", TENANT, taken_by="cli:x")
    assert missing.value.code == "not_a_folder"


# ---- decisions become samples -----------------------------------------------------------


def _job_item(world: World, tenant: str, data: bytes | None, labels: list[str]) -> ReviewItem:
    """A finished image job whose result is ``review``, queued for review; its media is
    in the store unless ``data`` is None (gone)."""
    sha = hashlib.sha256(data if data is not None else uuid.uuid4().bytes).hexdigest()
    if data is not None:
        world.media.store(data)
    job = Job(
        id="job_" + uuid.uuid4().hex,
        tenant_id=tenant,
        status="succeeded",
        kind="image",
        media_sha256=sha,
        media_bytes=len(data or b""),
        result={
            "decision": "review",
            "labels": [{"name": n, "confidence": 60.0} for n in labels],
            "reasons": [{"rule": "r", "label": n, "action": "review"} for n in labels],
            "policy": "default",
            "policy_version": "1",
            "versions": {"labels": "x"},
        },
    )
    with world.sessions.begin() as s:
        s.add(job)
        s.flush()
        item = world.review.enqueue_job(s, job)
    assert item is not None
    return item


@pytest.mark.models
async def test_kept_decisions_become_samples_that_follow_corrections(
    world: World, embedder: Embedder, engine: Engine
) -> None:
    data = jpeg("skimage-coffee")
    item = _job_item(world, TENANT, data, ["Weapons"])
    gone = _job_item(world, TENANT, None, ["Weapons"])
    refused = _job_item(world, REFUSING, jpeg("skimage-rocket"), ["Weapons"])
    _, first = world.review.decide(
        TENANT, item.id, MODERATOR, "reject", add_labels=["Firearms"], remove_labels=["Weapons"]
    )
    world.review.decide(TENANT, gone.id, MODERATOR, "approve")
    world.review.decide(REFUSING, refused.id, MODERATOR, "reject")
    assert first.media_kept is True
    collector = SampleCollector(world.samples, embedder, SamplesConfig())

    report = await collector.collect()
    assert (report.created, report.followed, report.without_media) == (2, 0, 1)
    assert _all(world, REFUSING) == []  # no consent: no media kept, no sample
    (sample,) = _all(world, TENANT, SampleFilter(source="moderator", category="Firearms"))
    assert (sample.review_item_id, sample.review_decision_id) == (item.id, first.id)
    assert (sample.labels, sample.decision, sample.source) == (["Firearms"], "block", "moderator")
    assert (sample.model_labels, sample.model_decision, sample.corrected) == (
        ["Weapons"],
        "review",
        True,
    )
    assert sample.taken_by == "user:u_mod" and sample.taken_at == first.decided_at
    assert (sample.media_sha256, sample.media_kind) == (hashlib.sha256(data).hexdigest(), "image")
    vector = world.samples.embedding(TENANT, sample.id, embedder.model)
    assert vector is not None and vector.shape == (DIM,)
    np.testing.assert_allclose(vector, await asyncio.to_thread(_labels_of, engine, data), atol=1e-4)
    (without,) = [s for s in _all(world, TENANT) if s.review_item_id == gone.id]
    assert without.media_sha256 is None and without.decision == "allow"
    assert world.samples.get(TENANT, without.id).embeddings == []
    assert not await collector.collect()  # nothing new

    # a correction moves the sample on: the same sample, the corrected labels
    world.clock.advance(60)
    fixed = world.review.correct(
        TENANT, CorrectionTarget(review_id=item.id), PLATFORM, "allow", labels=[]
    )
    report = await collector.collect(TENANT)
    assert (report.created, report.followed) == (0, 1)
    moved = world.samples.get(TENANT, sample.id)
    again = moved.sample
    assert (again.labels, again.categories, again.decision, again.source) == (
        [],
        [],
        "allow",
        "api",
    )
    assert (again.review_decision_id, again.taken_by) == (fixed.decision.id, "key:platform")
    assert again.taken_at == fixed.decision.decided_at and again.corrected is True
    assert [e.model for e in moved.embeddings] == [embedder.model]
    assert _all(world, TENANT, SampleFilter(category="Firearms")) == []
    assert not await collector.collect()

    # deleting the sample releases the item's kept media: it is not made again, and
    # the job still refers to the bytes, so they stay until retention
    deleted = world.samples.delete(TENANT, sample.id)
    assert deleted.media_deleted is False and world.media.exists(str(sample.media_sha256))
    with world.sessions() as s:
        kept = s.scalars(
            select(ReviewDecision.media_kept).where(ReviewDecision.item_id == item.id)
        ).all()
    assert kept and not any(kept)
    assert not await collector.collect()
    assert [s.id for s in _all(world, TENANT)] == [without.id]


@pytest.mark.models
async def test_an_alerts_kept_frame_is_copied_into_the_media_store(
    world: World, embedder: Embedder, engine: Engine, tmp_path: Path
) -> None:
    thumbnails = LiveThumbnails(tmp_path / "live-thumbnails")
    stream_pk = "str_" + uuid.uuid4().hex
    name = thumbnails.save(stream_pk, benign_photos()["skimage-astronaut"])
    frame = thumbnails.path(stream_pk, name).read_bytes()
    media = {"kind": "alert_thumbnail", "alert_id": "alr_1", "stream_pk": stream_pk, "name": name}
    with world.sessions.begin() as s:
        item, _ = world.review.enqueue(
            s, tenant_id=TENANT, source="alert", source_id="alr_1", labels=["Weapons"], media=media
        )
    _, decision = world.review.decide(TENANT, item.id, MODERATOR, "reject")
    assert decision.media_kept is True
    report = await SampleCollector(
        world.samples, embedder, SamplesConfig(), thumbnails=thumbnails
    ).collect()
    assert report.created == 1 and report.without_embedding == 0
    (sample,) = _all(world, TENANT)
    assert sample.media_sha256 == hashlib.sha256(frame).hexdigest()
    assert world.media.get(sample.media_sha256) == frame  # its own copy, outliving the frame
    assert (sample.media_kind, sample.media_format, sample.labels) == ("image", "JPEG", ["Weapons"])
    vector = world.samples.embedding(TENANT, sample.id, embedder.model)
    assert vector is not None
    np.testing.assert_allclose(
        vector, await asyncio.to_thread(_labels_of, engine, frame), atol=1e-4
    )
    # with no sample of another tenant, job or item referring to the copy, deleting the
    # sample deletes it
    _old(world.media, sample.media_sha256)
    assert world.samples.delete(TENANT, sample.id).media_deleted is True
    assert not world.media.exists(sample.media_sha256)


# ---- filters and training arrays ----------------------------------------------------------


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


V1 = EmbeddingModel("efficientnet-lite0", "v1")
V2 = EmbeddingModel("efficientnet-lite0", "v2")


def _add(world: World, tenant: str, day: int, labels: list[str], **kw: Any) -> Sample:
    seed = kw.pop("seed", day)
    models = kw.pop("models", (V1,))
    world.clock.advance(1)
    new = NewSample(
        tenant_id=tenant,
        labels=labels,
        decision=kw.pop("decision", None),
        source=kw.pop("source", "import"),
        taken_by="cli:test",
        taken_at=datetime(2026, day, 1, tzinfo=UTC),
        embeddings=[NewEmbedding(m, "labels", _vector(seed + i)) for i, m in enumerate(models)],
        **kw,
    )
    return world.samples.add(new)


async def test_filters_and_training_arrays(world: World) -> None:
    a = _add(world, TENANT, 1, ["Firearms"], decision="block")
    b = _add(
        world,
        TENANT,
        2,
        ["Knives and Blades"],
        source="moderator",
        decision="block",
        model_labels=[],
        model_decision="review",
    )
    c = _add(
        world,
        TENANT,
        3,
        [],
        source="api",
        decision="allow",
        model_labels=["Firearms"],
        model_decision="block",
    )
    d = _add(world, TENANT, 4, ["Weapons"], models=(V1, V2))
    e = _add(
        world,
        TENANT,
        5,
        ["Alcoholic Beverages"],
        source="moderator",
        decision="block",
        model_labels=["Alcoholic Beverages"],
        model_decision="block",
        models=(),
    )
    f = _add(world, OTHER, 1, ["Firearms"])
    assert [x.corrected for x in (a, b, c, d, e)] == [False, True, True, False, False]

    def ids(filters: SampleFilter | None = None) -> list[str]:
        return [s.id for s in _all(world, TENANT, filters)]

    assert ids() == [e.id, d.id, c.id, b.id, a.id]  # newest first
    assert ids(SampleFilter(category="Weapons")) == [d.id, b.id, a.id]  # L1 covers its L2s
    assert ids(SampleFilter(category="Firearms")) == [a.id]
    assert ids(SampleFilter(category="Drugs & Tobacco")) == []
    assert ids(SampleFilter(corrected_only=True)) == [c.id, b.id]
    assert ids(SampleFilter(source="import")) == [d.id, a.id]
    period = SampleFilter(since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 4, 1))
    assert ids(period) == [c.id, b.id]
    assert ids(SampleFilter(category="Weapons", corrected_only=True)) == [b.id]
    assert world.samples.count(TENANT, SampleFilter(category="Weapons")) == 3
    for bad, code in (
        (SampleFilter(category="Dragons"), "unknown_label"),
        (SampleFilter(source="scraped"), "invalid_source"),
    ):
        with pytest.raises(InputError) as refused:
            ids(bad)
        assert refused.value.code == code

    # pages of two, newest first, through the cursor
    seen: list[str] = []
    cursor = None
    while True:
        page = world.samples.list_samples(TENANT, limit=2, cursor=cursor)
        seen += [v.sample.id for v in page.samples]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids() and f.id not in seen

    # the training arrays of a category, oldest first, one embedding model
    data = world.samples.dataset(TENANT, "Weapons", "efficientnet-lite0@v1")
    assert data.ids == [a.id, b.id, c.id, d.id] and data.missing == 1  # e has no v1 vector
    assert data.X.shape == (4, DIM) and data.X.dtype == np.float32
    np.testing.assert_array_equal(data.X[1], _vector(2))
    assert data.y.tolist() == [1, 1, 0, 1] and data.model == V1
    assert data.taken_at.dtype == np.dtype("datetime64[us]")
    assert data.taken_at.tolist() == [datetime(2026, m, 1) for m in (1, 2, 3, 4)]
    assert world.samples.dataset(TENANT, "Firearms", V1).y.tolist() == [1, 0, 0, 0]
    only_v2 = world.samples.dataset(TENANT, "Weapons", V2)
    assert only_v2.ids == [d.id] and only_v2.missing == 4
    np.testing.assert_array_equal(only_v2.X[0], _vector(5))
    corrected = world.samples.dataset(TENANT, "Weapons", V1, SampleFilter(corrected_only=True))
    assert corrected.ids == [b.id, c.id] and corrected.y.tolist() == [1, 0]
    assert world.samples.embedding_models(TENANT) == [(V1, 4), (V2, 1)]
    assert world.samples.dataset(OTHER, "Weapons", V1).ids == [f.id]
    empty = world.samples.dataset(REFUSING, "Weapons", V1)
    assert empty.X.shape[0] == 0 and empty.y.shape == (0,)
    with pytest.raises(UnknownCategory):
        world.samples.dataset(TENANT, "Dragons", V1)
    with pytest.raises(InputError) as bad_model:
        world.samples.dataset(TENANT, "Weapons", "efficientnet-lite0")
    assert bad_model.value.code == "invalid_embedding_model"


# ---- deleting ------------------------------------------------------------------------------


def _old(media: MediaStore, sha: str) -> None:
    """Make stored media look last wanted two hours ago."""
    then = time.time() - 7200
    os.utime(media.path(sha), (then, then))


async def test_deleting_a_sample_removes_its_media_only_when_nothing_else_refers_to_it(
    world: World, tmp_path: Path
) -> None:
    def stored(data: bytes) -> str:
        sha = world.media.store(data).sha256
        _old(world.media, sha)
        return sha

    shared = stored(b"shared" + jpeg("skimage-chelsea"))
    mine = _add(world, TENANT, 1, ["Firearms"], media_sha256=shared, media_kind="image")
    theirs = _add(world, OTHER, 1, ["Firearms"], media_sha256=shared, media_kind="image")
    with pytest.raises(SampleNotFound):  # another tenant's sample is not found
        world.samples.delete(TENANT, theirs.id)
    assert world.samples.get(OTHER, theirs.id).sample.id == theirs.id
    done = world.samples.delete(TENANT, mine.id)
    assert (done.id, done.media_sha256, done.media_deleted) == (mine.id, shared, False)
    assert world.media.exists(shared)  # the other tenant's sample still refers to it
    with pytest.raises(SampleNotFound):
        world.samples.get(TENANT, mine.id)
    with world.sessions() as s:
        assert s.scalar(select(SampleEmbedding).where(SampleEmbedding.sample_id == mine.id)) is None
    assert world.samples.delete(OTHER, theirs.id).media_deleted is True
    assert not world.media.exists(shared)
    with pytest.raises(SampleNotFound):
        world.samples.delete(OTHER, theirs.id)

    # a job (of any tenant) or a review item refers to the bytes: they stay
    of_job = stored(b"job" + jpeg("skimage-coffee"))
    with world.sessions.begin() as s:
        s.add(
            Job(
                id="job_" + uuid.uuid4().hex,
                tenant_id=OTHER,
                status="succeeded",
                kind="image",
                media_sha256=of_job,
                media_bytes=1,
            )
        )
    sample = _add(world, TENANT, 2, [], media_sha256=of_job, media_kind="image")
    assert world.samples.delete(TENANT, sample.id).media_deleted is False
    assert world.media.exists(of_job)
    with world.sessions.begin() as s:  # the job's media purged: nothing wants the bytes
        s.execute(
            update(Job).where(Job.media_sha256 == of_job).values(media_purged_at=world.clock())
        )
    sample = _add(world, TENANT, 2, [], media_sha256=of_job, media_kind="image")
    assert world.samples.delete(TENANT, sample.id).media_deleted is True

    of_item = stored(b"item" + jpeg("skimage-rocket"))
    with world.sessions.begin() as s:
        world.review.enqueue(
            s,
            tenant_id=OTHER,
            source="api",
            source_id="upload:x",
            media={"kind": "upload", "sha256": of_item},
            media_sha256=of_item,
        )
    sample = _add(world, TENANT, 3, [], media_sha256=of_item, media_kind="image")
    assert world.samples.delete(TENANT, sample.id).media_deleted is False
    assert world.media.exists(of_item)

    # bytes stored again moments ago may be on their way to a row: left to retention
    fresh = world.media.store(b"fresh" + jpeg("skimage-camera")).sha256
    sample = _add(world, TENANT, 4, [], media_sha256=fresh, media_kind="image")
    assert world.samples.delete(TENANT, sample.id).media_deleted is False
    assert world.media.exists(fresh)

    # retention keeps the media of samples, and removes it once no sample is left
    kept = stored(b"kept" + jpeg("sklearn-china"))
    sample = _add(world, TENANT, 5, [], media_sha256=kept, media_kind="image")
    jobs = JobService(world.sessions, None, world.media)  # type: ignore[arg-type]
    retention = MediaRetention(jobs, JobsConfig(media_retention_s=3600.0))
    await asyncio.to_thread(retention.sweep)
    assert world.media.exists(kept) and world.media.exists(fresh)
    _old(world.media, fresh)
    await asyncio.to_thread(retention.sweep)
    assert world.media.exists(kept) and not world.media.exists(fresh)


# ---- the API ---------------------------------------------------------------------------------


@pytest.mark.models
async def test_the_api_lists_reads_and_deletes_a_tenants_samples_only(
    engine: Engine, database_url: str | None, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "data", database_url=database_url)
    folder = _folder(tmp_path / "in")
    async with running(settings, engine) as api:
        c = api.client
        owner, stranger = await api.new_tenant(), await api.new_tenant()
        reader = await api.reader(owner.headers)
        for t in (owner, stranger):
            r = await c.patch("/v1/tenant", json={"training_consent": True}, headers=t.headers)
            assert r.status_code == 200, r.text
        importer = SampleImporter(api.services.samples, Embedder(engine), SamplesConfig())
        report = await importer.import_folder(folder.root, owner.id, taken_by="cli:t")
        assert report.imported == 3

        r = await c.get("/v1/samples", headers=reader)
        assert r.status_code == 200, r.text
        listed = r.json()["samples"]
        assert sorted(s["origin"] for s in listed) == sorted(folder.good)
        cat = next(s for s in listed if s["origin"] == "cat.jpg")
        assert (cat["labels"], cat["decision"], cat["source"], cat["corrected"]) == (
            ["Firearms"],
            "block",
            "import",
            False,
        )
        (emb,) = cat["embeddings"]
        assert (emb["model"], emb["dim"], emb["analyzer"]) == ("efficientnet-lite0", DIM, "labels")
        r = await c.get("/v1/samples", params={"category": "Weapons"}, headers=reader)
        assert [s["id"] for s in r.json()["samples"]] == [cat["id"]]
        r = await c.get("/v1/samples", params={"source": "moderator"}, headers=reader)
        assert r.json()["samples"] == []
        r = await c.get("/v1/samples", params={"category": "Dragons"}, headers=reader)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_label")
        r = await c.get("/v1/samples", params={"source": "scraped"}, headers=reader)
        assert r.status_code == 422
        first = (await c.get("/v1/samples", params={"limit": 2}, headers=reader)).json()
        rest = await c.get(
            "/v1/samples", params={"limit": 2, "cursor": first["next_cursor"]}, headers=reader
        )
        paged = [s["id"] for s in first["samples"] + rest.json()["samples"]]
        assert paged == [s["id"] for s in listed] and rest.json()["next_cursor"] is None

        r = await c.get(f"/v1/samples/{cat['id']}", headers=reader)
        assert r.status_code == 200 and r.json() == cat
        media = await c.get(cat["media"]["url"], headers=reader)
        assert media.status_code == 200 and media.content == folder.good["cat.jpg"]
        assert media.headers["content-type"] == "image/jpeg"

        # another tenant: not found, never listed, cannot delete
        assert (await c.get("/v1/samples", headers=stranger.headers)).json()["samples"] == []
        for path in (f"/v1/samples/{cat['id']}", f"/v1/samples/{cat['id']}/media"):
            r = await c.get(path, headers=stranger.headers)
            assert (r.status_code, r.json()["error"]["code"]) == (404, "sample_not_found")
        r = await c.delete(f"/v1/samples/{cat['id']}", headers=stranger.headers)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "sample_not_found")
        r = await c.delete(f"/v1/samples/{cat['id']}", headers=reader)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")

        _old(api.services.jobs.media, cat["media"]["sha256"])
        r = await c.delete(f"/v1/samples/{cat['id']}", headers=owner.headers)
        assert r.status_code == 200 and r.json() == {"id": cat["id"], "media_deleted": True}
        assert not api.services.jobs.media.exists(cat["media"]["sha256"])
        r = await c.get(f"/v1/samples/{cat['id']}", headers=reader)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "sample_not_found")
        assert len((await c.get("/v1/samples", headers=reader)).json()["samples"]) == 2

        doc = (await c.get("/openapi.json")).json()
        assert {"get"} <= set(doc["paths"]["/v1/samples"])
        assert {"get", "delete"} <= set(doc["paths"]["/v1/samples/{sample_id}"])
        for name in (
            "LabelledSample",
            "SampleMedia",
            "SampleEmbeddingOut",
            "LabelledSampleList",
            "SampleDeleted",
        ):
            fields = doc["components"]["schemas"][name]["properties"]
            undescribed = [n for n, f in fields.items() if not f.get("description")]
            assert not undescribed, (name, undescribed)


# ---- export and import -------------------------------------------------------------------------


@pytest.mark.models
async def test_an_export_imports_back_as_the_same_samples(
    world: World, embedder: Embedder, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "in")
    await _importer(world, embedder).import_folder(folder.root, TENANT, taken_by="cli:a")
    _add(world, TENANT, 6, ["Pills"], models=())  # no media: not exported
    out = tmp_path / "out"
    report = await asyncio.to_thread(export_folder, world.samples, out, TENANT)
    assert report.exported == 3 and report.skipped == {"no_media": 1}
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 6 and all(n.startswith("smp_") for n in files)
    with pytest.raises(ExportFolderNotEmpty):
        await asyncio.to_thread(export_folder, world.samples, out, TENANT)
    weapons = await asyncio.to_thread(
        export_folder, world.samples, tmp_path / "weapons", TENANT, SampleFilter(category="Weapons")
    )
    assert weapons.exported == 1

    back = await _importer(world, embedder).import_folder(out, OTHER, taken_by="cli:b")
    assert back.imported == 3 and back.skipped == {}

    def by_media(tenant: str) -> dict[str | None, Sample]:
        return {s.media_sha256: s for s in _all(world, tenant) if s.media_sha256}

    mine, theirs = by_media(TENANT), by_media(OTHER)
    assert set(mine) == set(theirs)
    for sha, s in mine.items():
        t = theirs[sha]
        assert (t.labels, t.decision, t.taken_at, t.media_format) == (
            s.labels,
            s.decision,
            s.taken_at,
            s.media_format,
        )
        assert t.origin == f"{s.id}{'.png' if s.media_format == 'PNG' else '.jpg'}"
        v1 = world.samples.embedding(TENANT, s.id, embedder.model)
        v2 = world.samples.embedding(OTHER, t.id, embedder.model)
        assert v1 is not None and v2 is not None
        np.testing.assert_allclose(v1, v2, atol=1e-4)


# ---- the commands -------------------------------------------------------------------------------


@pytest.mark.models
def test_the_samples_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = _folder(tmp_path / "in")
    env = {"BASTION_DATA_DIR": str(data), "COLUMNS": "200"}
    res = runner.invoke(cli, ["samples", "list", "--tenant", "default"], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        cli, ["samples", "import", str(folder.root), "--tenant", "default"], env=env
    )
    assert res.exit_code == 2 and "training_consent_required" in res.output, res.output

    db = make_engine(sqlite_url(data))
    try:
        Repo(session_factory(db)).update_tenant("default", training_consent=True)
    finally:
        db.dispose()
    res = runner.invoke(
        cli,
        ["samples", "import", str(folder.root), "--tenant", "default", "--by", "line", "--json"],
        env=env,
    )
    assert res.exit_code == 1, res.output  # some files were skipped
    report = json.loads(res.stdout)
    assert report["imported"] == 3 and report["skipped"]["corrupt_media"] == 1
    assert "skipped" in res.output and "letter.jpg" in res.output

    res = runner.invoke(
        cli, ["samples", "list", "--tenant", "default", "--category", "Weapons", "--json"], env=env
    )
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    assert listed["total"] == 1 and listed["samples"][0]["taken_by"] == "cli:line"
    res = runner.invoke(cli, ["samples", "list", "--tenant", "default", "--category", "x"], env=env)
    assert res.exit_code == 2 and "unknown_label" in res.output
    res = runner.invoke(
        cli, ["samples", "export", str(tmp_path / "out"), "--tenant", "default"], env=env
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("*.json"))) == 3
    res = runner.invoke(cli, ["samples", "collect"], env=env)
    assert res.exit_code == 0 and "0 made" in res.output, res.output
