"""Search indexing as media is analysed: jobs (image, video, audio) through the API and
the worker, live frames pushed through the API, tenant isolation, deletion with the
media (retention), and the bounds on a live stream's indexing.

One app runs for the module, with the session's engine (real models): an image job (a
photo with a sign and a QR code), a video job (a QR code shown from 3 to 6 s), an audio
job (espeak-ng speech with a blocked word) and two frames pushed to a stream; the tests
read what the worker indexed in the background.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import update
from typer.testing import CliRunner

from bastion.cli import app
from bastion.jobs.config import JobsConfig
from bastion.jobs.retention import MediaRetention
from bastion.jobs.tables import Job
from bastion.pipeline.engine import Engine
from bastion.policy.model import Policy
from bastion.runtime.metrics import Metrics
from bastion.search.config import SearchConfig
from bastion.search.feed import SearchFeed, frame_signature, transcript_segments
from bastion.search.indexer import SearchIndexer
from bastion.search.tables import SearchDocument
from bastion.search.text_index import SearchFilters, TextHit
from tests.support.app import Api, running
from tests.support.jobs import wait_for
from tests.support.media import benign_photos, encode
from tests.support.settings import make_settings, write_config
from tests.support.speech import encode as encode_audio
from tests.support.speech import speech_wav
from tests.support.textimages import banner
from tests.support.video import QR_URL, fitted, qr_video, tagged_frame_result, with_qr

SIGN = "HARBOUR FERRY"
PAYLOAD = "https://ferry.example/tickets"
SPOKEN = "The casino is open tonight."

LOOKING = """\
name: looking
analyzers: [labels, ocr, codes]
rules:
  - categories: [Blocked Domain]
    block: 50
lists:
  blocked_domains: [evil.example]
"""
SPOKEN_POLICY = """\
name: spoken
analyzers: [speech]
rules:
  - categories: [Blocked Word]
    block: 50
lists:
  blocked_words: [casino]
"""


def _sign_and_code(photo_name: str = "skimage-coffee") -> bytes:
    photo = banner(benign_photos()[photo_name], "en", SIGN)
    return encode(with_qr(photo, PAYLOAD, side=160), "PNG")


def _qr_frame() -> bytes:
    """A frame like the video's from 3 to 6 s, encoded apart (another JPEG quality)."""
    return encode(with_qr(fitted("skimage-rocket", (480, 360))), "JPEG", quality=70)


async def _documents(api: Api, tenant: str, ref: str, timeout: float = 60) -> list[TextHit]:
    """The documents indexed of ``ref`` once there are some (indexing runs after the job)."""
    search = api.services.search
    assert search is not None
    deadline = time.monotonic() + timeout
    while True:
        ids = await asyncio.to_thread(search.text.media_documents, tenant, ref)
        if ids:
            found = await asyncio.to_thread(search.text.documents, tenant, ids)
            return [found[i] for i in ids]
        assert time.monotonic() < deadline, f"nothing indexed of {ref}"
        await asyncio.sleep(0.1)


async def _job(api: Api, headers: dict[str, str], data: bytes, ctype: str, policy: str) -> str:
    r = await api.client.post(
        "/v1/jobs",
        content=data,
        params={"policy": policy},
        headers={**headers, "Content-Type": ctype},
    )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    done = await wait_for(api.client, job_id, {"succeeded", "failed"}, 300, headers)
    assert done["status"] == "succeeded", done
    return job_id


class World:
    """The module's app, its tenants and the media they analysed."""

    def __init__(self, api: Api, tenant: str, headers: dict[str, str], other: str) -> None:
        self.api = api
        self.config = write_config(api.settings, api.settings.data_dir / "bastion.yaml")
        self.tenant = tenant
        self.headers = headers
        self.other = other
        self.jobs: dict[str, str] = {}

    @property
    def search(self) -> SearchIndexer:
        assert self.api.services.search is not None
        return self.api.services.search


@pytest_asyncio.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("search-feed")
    policies = root / "policies"
    policies.mkdir()
    (policies / "looking.yaml").write_text(LOOKING)
    (policies / "spoken.yaml").write_text(SPOKEN_POLICY)
    settings = make_settings(
        root / "data",
        policies_dir=policies,
        jobs=JobsConfig(poll_s=0.05, lease_s=10),
        search=SearchConfig(semantic=False, stream_min_gap_s=0),
    )
    video = qr_video(root / "qr.mp4")
    async with running(settings, engine) as api:
        owner, other = await api.new_tenant(), await api.new_tenant()
        w = World(api, owner.id, owner.headers, other.id)
        w.jobs["image"] = await _job(api, owner.headers, _sign_and_code(), "image/png", "looking")
        w.jobs["video"] = await _job(api, owner.headers, video.read_bytes(), "video/mp4", "looking")
        spoken = encode_audio(speech_wav(SPOKEN), "mp3")
        w.jobs["audio"] = await _job(api, owner.headers, spoken, "audio/mpeg", "spoken")
        # the other tenant analyses a photo with the same sign: its documents are its own
        theirs = _sign_and_code("skimage-chelsea")
        w.jobs["other"] = await _job(api, other.headers, theirs, "image/png", "looking")
        for ref in w.jobs.values():
            await _documents(api, owner.id if ref != w.jobs["other"] else other.id, ref)
        yield w


@pytest.mark.models
async def test_an_image_job_is_found_by_its_sign_and_its_qr_code(world: World) -> None:
    job = world.jobs["image"]
    docs = await _documents(world.api, world.tenant, job)
    fields = {(d.field, d.text) for d in docs}
    assert ("code", PAYLOAD) in fields and ("url", PAYLOAD) in fields, fields
    assert any(d.field == "media" for d in docs)  # its embedding, made by the analysis
    for query in ("ferry", "harbour", "ferry.example/tickets"):
        page = await asyncio.to_thread(world.search.search, world.tenant, query)
        assert [m.media_ref for m in page.moments] == [job], (query, page.moments)
        moment = page.moments[0]
        assert moment.media_kind == "image" and moment.start_s is None
    assert {d.field for d in docs if "FERRY" in d.text.upper()} >= {"ocr"}
    # its thumbnail: a small JPEG of the image, served with the job's
    thumb = page.moments[0].thumbnail
    assert thumb is not None and thumb.startswith(f"/v1/jobs/{job}/thumbnails/"), thumb
    r = await world.api.client.get(thumb, headers=world.headers)
    assert r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff"
    assert max(_jpeg_size(r.content)) <= 320


def _jpeg_size(data: bytes) -> tuple[int, int]:
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(data)) as img:
        return img.size


@pytest.mark.models
async def test_a_video_frame_is_found_at_its_time_and_by_a_frame_like_it(
    world: World, engine: Engine
) -> None:
    job = world.jobs["video"]
    page = await asyncio.to_thread(world.search.search, world.tenant, "evil.example promo")
    found = [m for m in page.moments if m.media_ref == job]
    assert len(found) == 1, page.moments
    moment = found[0]
    assert moment.media_kind == "video" and (moment.start_s, moment.end_s) == (3.0, 5.0)
    assert {h.text for h in moment.hits} >= {QR_URL}
    assert moment.thumbnail is not None and moment.thumbnail.startswith(f"/v1/jobs/{job}/")
    assert moment.decision == "block"

    # find-similar with a near-identical frame, analysed apart: the video's QR frames
    policy = Policy.model_validate(
        {
            "name": "embed",
            "analyzers": ["labels"],
            "rules": [{"categories": ["Blocked Domain"], "block": 50}],
        }
    )
    from bastion.pipeline.moderation import Moderation

    analysed = await Moderation(engine).moderate_bytes(_qr_frame(), policy)
    assert analysed.embedding is not None and analysed.embedding.shape == (1280,)
    assert "embedding" not in analysed.model_dump()  # never serialised
    similar = await asyncio.to_thread(world.search.similar, world.tenant, analysed.embedding, 3)
    assert similar[0].media_ref == job, similar
    assert similar[0].start_s is not None and 3.0 <= similar[0].start_s <= 5.0, similar[0]
    assert similar[0].score > 0.9
    # by the job itself: the image job is the only other media
    like = await asyncio.to_thread(world.search.similar, world.tenant, job, 5)
    assert job not in {m.media_ref for m in like}


@pytest.mark.models
async def test_an_audio_jobs_transcript_is_indexed_with_its_labels(world: World) -> None:
    job = world.jobs["audio"]
    docs = await _documents(world.api, world.tenant, job)
    assert docs and {d.field for d in docs} == {"transcript"}
    assert all(d.media_kind == "audio" and d.start_s is not None for d in docs)
    page = await asyncio.to_thread(world.search.search, world.tenant, "casino")
    (moment,) = [m for m in page.moments if m.media_ref == job]
    assert "Blocked Word" in moment.labels and moment.decision == "block"
    assert moment.start_s is not None and moment.end_s is not None and moment.end_s > moment.start_s


@pytest.mark.models
async def test_tenants_never_see_each_others_documents(world: World) -> None:
    ours, theirs = world.jobs["image"], world.jobs["other"]
    for tenant, mine, not_mine in ((world.tenant, ours, theirs), (world.other, theirs, ours)):
        page = await asyncio.to_thread(world.search.search, tenant, "ferry")
        assert [m.media_ref for m in page.moments] == [mine]
        page = await asyncio.to_thread(
            world.search.search,
            tenant,
            "ferry",
            SearchFilters(media_refs=[not_mine]),
        )
        assert page.moments == []
    # the other tenant analysed no video: nothing like its frames
    assert (await asyncio.to_thread(world.search.search, world.other, "casino")).moments == []
    image = await _documents(world.api, world.tenant, ours)
    vectors = [h for h in image if h.field == "media"]
    assert vectors
    assert await asyncio.to_thread(world.search.text.documents, world.other, [vectors[0].id]) == {}


@pytest.mark.models
async def test_pushed_live_frames_are_appended_to_the_streams_documents(world: World) -> None:
    api, headers = world.api, world.headers
    r = await api.client.post(
        "/v1/streams", json={"id": "harbour-cam", "channel": "cams"}, headers=headers
    )
    assert r.status_code == 201, r.text
    frames = [
        encode(banner(benign_photos()["skimage-chelsea"], "en", "GATE SEVEN"), "JPEG"),
        encode(banner(benign_photos()["skimage-astronaut"], "en", "PIER NINE"), "JPEG"),
    ]
    for i, frame in enumerate(frames):
        r = await api.client.post(
            "/v1/streams/harbour-cam/frames",
            content=frame,
            params={"timestamp_ms": i * 60_000},
            headers={**headers, "Content-Type": "image/jpeg"},
        )
        assert r.status_code == 200 and r.json()["analyzed"], r.text
    deadline = time.monotonic() + 60
    while True:
        docs = await _documents(api, world.tenant, "harbour-cam")
        media = [d for d in docs if d.field == "media"]
        if len(media) == 2:
            break
        assert time.monotonic() < deadline, docs
        await asyncio.sleep(0.1)
    assert {d.media_kind for d in docs} == {"stream"}
    times = sorted({d.start_s for d in media if d.start_s is not None})
    assert len(times) == 2 and abs(times[0] - time.time()) < 300  # capture times
    for word in ("seven", "nine"):
        page = await asyncio.to_thread(world.search.search, world.tenant, word)
        (moment,) = [m for m in page.moments if m.media_ref == "harbour-cam"]
        assert moment.media_kind == "stream" and moment.thumbnail is not None
        r = await api.client.get(moment.thumbnail, headers=headers)
        assert r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff", moment.thumbnail
        other = await api.client.get(moment.thumbnail, headers=await api.tenant())
        assert other.status_code == 404


@pytest.mark.models
async def test_retention_deletes_the_documents_with_the_media(world: World) -> None:
    api = world.api
    jobs = api.services.jobs
    job = world.jobs["other"]
    assert await _documents(api, world.other, job)
    ago = datetime.now(UTC) - timedelta(hours=3)
    with jobs.sessions.begin() as s:
        row = s.get(Job, job)
        assert row is not None
        sha = row.media_sha256
        s.execute(update(Job).where(Job.media_sha256 == sha).values(created_at=ago))
        # a stream's frames past the retention go too
        s.execute(
            update(SearchDocument)
            .where(SearchDocument.media_ref == "harbour-cam")
            .values(created_at=ago)
        )
    old = time.time() - 3 * 3600
    os.utime(jobs.media.path(sha), (old, old))
    retention = MediaRetention(jobs, JobsConfig(media_retention_s=3600.0), search=world.search)
    report = await asyncio.to_thread(retention.sweep)
    assert report.jobs_marked >= 1 and report.search_documents_removed > 0, report
    for tenant, ref in ((world.other, job), (world.tenant, "harbour-cam")):
        assert await asyncio.to_thread(world.search.text.media_documents, tenant, ref) == []
    page = await asyncio.to_thread(world.search.search, world.other, "ferry")
    assert page.moments == []
    # media still wanted keeps its documents
    assert await _documents(api, world.tenant, world.jobs["image"])


@pytest.mark.models
async def test_reindex_walks_stored_results_and_purge_deletes_a_tenants_index(
    world: World,
) -> None:
    search, tenant = world.search, world.tenant
    video = world.jobs["video"]
    before = await _documents(world.api, tenant, video)
    await asyncio.to_thread(search.delete_tenant, tenant)
    assert await asyncio.to_thread(search.text.media_documents, tenant, video) == []
    res = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["search", "reindex", "--tenant", tenant, "--config", str(world.config)],
    )
    assert res.exit_code == 0, res.output
    assert "indexed 3 jobs" in res.output  # image, video, audio
    after = await _documents(world.api, tenant, video)
    # the same documents from the stored result, less the frames' embeddings
    key = [(d.field, d.text, d.start_s, d.end_s, d.thumbnail) for d in before if d.field != "media"]
    assert sorted(key, key=str) == sorted(
        [(d.field, d.text, d.start_s, d.end_s, d.thumbnail) for d in after], key=str
    )
    page = await asyncio.to_thread(search.search, tenant, "casino")
    assert [m.media_ref for m in page.moments] == [world.jobs["audio"]]
    # the other tenant's job went with its media (retention): not indexed again
    assert (
        await asyncio.to_thread(search.text.media_documents, world.other, world.jobs["other"]) == []
    )

    res = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["search", "purge", "--tenant", tenant, "--config", str(world.config)],
    )
    assert res.exit_code == 0, res.output
    assert f"of tenant {tenant}" in res.output
    for ref in world.jobs.values():
        assert await asyncio.to_thread(search.text.media_documents, tenant, ref) == []


@pytest.mark.models
def test_scan_indexes_a_file_under_a_tenant(tmp_path: Path) -> None:
    config = tmp_path / "bastion.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nsearch: {{semantic: false}}\n")
    policy = tmp_path / "codes.yaml"
    policy.write_text(LOOKING.replace("[labels, ocr, codes]", "[codes]"))
    image = tmp_path / "sign.png"
    image.write_bytes(_sign_and_code())
    runner = CliRunner()
    args = ["scan", str(image), "--policy", str(policy), "--config", str(config)]
    assert runner.invoke(app, [*args, "--index"]).exit_code == 2  # needs --tenant
    res = runner.invoke(app, [*args, "--index", "--tenant", "acme"])
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert row["indexed"] is True and row["result"]["urls"] == [PAYLOAD]
    res = runner.invoke(app, ["search", "purge", "--tenant", "acme", "--config", str(config)])
    # the QR code's label and its parent, the code and the URL
    assert res.exit_code == 0 and "deleted 4 search documents" in res.output, res.output


# --- without models: the bounds and the transcript's labels -------------------------------


def test_a_stream_is_indexed_when_it_changes_and_at_most_so_often() -> None:
    class _Indexer:
        config = SearchConfig(stream_min_gap_s=2.0, stream_every_s=60.0)

    feed = SearchFeed(_Indexer())  # type: ignore[arg-type]
    cat, dog = tagged_frame_result(["cat"]), tagged_frame_result(["dog"])
    assert frame_signature(cat) != frame_signature(dog)
    assert feed.wants_frame("t", "s", cat, 100.0)  # the first frame
    assert not feed.wants_frame("t", "s", cat, 110.0)  # the same picture
    assert not feed.wants_frame("t", "s", dog, 101.0)  # changed, but too soon
    assert feed.wants_frame("t", "s", dog, 103.0)  # changed
    assert feed.wants_frame("t2", "s", dog, 103.5)  # another tenant's stream
    assert not feed.wants_frame("t", "s", dog, 150.0)
    assert feed.wants_frame("t", "s", dog, 163.5)  # the same, once a minute


def test_transcript_segments_take_the_labels_and_decisions_of_their_time() -> None:
    audio: dict[str, Any] = {
        "language": "en",
        "transcript": [
            {"start_s": 0.5, "end_s": 2.0, "text": "hello there", "language": None},
            {"start_s": 8.0, "end_s": 9.5, "text": "the casino is open", "language": "en"},
        ],
        "labels": [
            {"name": "Blocked Word", "parent": "Word Lists", "start_s": 8.4, "end_s": 8.9},
        ],
        "windows": [
            {"start_s": 0.0, "end_s": 5.0, "decision": "allow"},
            {"start_s": 5.0, "end_s": 10.0, "decision": "block"},
        ],
    }
    first, second = transcript_segments(audio)
    assert (first.labels, first.decision, first.language) == ((), "allow", "en")
    assert second.labels == ("Blocked Word", "Word Lists") and second.decision == "block"
    assert np.isclose(second.start_s, 8.0) and second.text == "the casino is open"


async def test_a_failure_to_index_is_logged_and_counted_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class _Broken:
        config = SearchConfig(max_pending=1)

        def index_image(self, *args: object, **kw: object) -> list[int]:
            raise RuntimeError("database gone")

    metrics = Metrics()
    feed = SearchFeed(_Broken(), metrics=metrics)  # type: ignore[arg-type]
    assert await feed.image("t", "job_x", tagged_frame_result(["cat"])) is False
    assert "indexing image job_x for search failed" in caplog.text
    failed = metrics.registry.get_sample_value(
        "bastion_search_index_total", {"source": "job", "outcome": "failed"}
    )
    assert failed == 1.0
    # bounded: with one indexing waiting, the next is dropped (and counted)
    assert feed.submit(feed.image("t", "a", tagged_frame_result(["cat"])), "job") is True
    assert feed.submit(feed.image("t", "b", tagged_frame_result(["cat"])), "job") is False
    await feed.drain()
    assert feed.pending == 0
    dropped = metrics.registry.get_sample_value(
        "bastion_search_index_total", {"source": "job", "outcome": "dropped"}
    )
    assert dropped == 1.0
