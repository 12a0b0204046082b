"""Media retention: expired job media and thumbnails go, media of active jobs stays."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bastion.jobs.config import JobsConfig
from bastion.jobs.media_files import MediaStore
from bastion.jobs.retention import MediaRetention
from bastion.jobs.service import JobService
from bastion.jobs.tables import Job
from bastion.pipeline.engine import Engine
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.jobs import files_under, wait_for
from tests.support.media import benign_photos, encode
from tests.support.settings import make_settings

HOUR = 3600.0
JPEG = {**AUTH, "Content-Type": "image/jpeg"}


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _backdate(jobs: JobService, job_ids: list[str], seconds: float) -> None:
    """Make jobs and their media look ``seconds`` old."""
    with jobs.sessions.begin() as s:
        s.execute(
            update(Job)
            .where(Job.id.in_(job_ids))
            .values(created_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )
        shas = {s.get(Job, i).media_sha256 for i in job_ids}  # type: ignore[union-attr]
    for sha in shas:
        _age(jobs.media.path(sha), seconds)


def _photo(name: str) -> bytes:
    return encode(benign_photos()[name])


@pytest.mark.models
async def test_sweep_deletes_expired_media_but_never_that_of_active_jobs(
    engine: Engine, tmp_path: Path, database_url: str | None
) -> None:
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        jobs=JobsConfig(run_worker=False, media_retention_s=HOUR),
    )
    async with running(settings, engine) as api:
        client = api.client
        jobs = api.services.jobs

        async def post(data: bytes, key: str | None = None) -> str:
            hdr = {**JPEG, "Idempotency-Key": key} if key else JPEG
            r = await client.post("/v1/jobs", content=data, headers=hdr)
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

        async def act(job_id: str, action: str, status: int = 200) -> dict[str, object]:
            r = await client.post(f"/v1/jobs/{job_id}/{action}", headers=AUTH)
            assert r.status_code == status, r.text
            body: dict[str, object] = r.json()
            return body

        done = await post(_photo("skimage-chelsea"))
        queued = await post(_photo("skimage-coffee"))
        paused = await post(_photo("skimage-rocket"))
        shared = _photo("skimage-astronaut")
        old_twin, new_twin = await post(shared, "a"), await post(shared, "b")
        for job_id in (done, old_twin, new_twin):
            await act(job_id, "cancel")
        await act(paused, "pause")
        _backdate(jobs, [done, queued, paused, old_twin], 2 * HOUR)
        _age(jobs.media.path(jobs.get("default", new_twin).media_sha256), 2 * HOUR)
        orphan = jobs.media.store(b"no job uses this").path
        _age(orphan, 2 * HOUR)
        for job_id in (done, paused):
            folder = jobs.thumbnails.folder(job_id)
            folder.mkdir(parents=True)
            (folder / ("0" * 32 + ".jpg")).write_bytes(b"\xff\xd8\xff")
            _age(folder, 2 * HOUR)
        jobs.media.incoming.mkdir(parents=True, exist_ok=True)
        dead_upload = jobs.media.incoming / "upload-dead"
        dead_upload.write_bytes(b"half")
        _age(dead_upload, 2 * HOUR)
        live_upload = jobs.media.incoming / "upload-live"
        live_upload.write_bytes(b"still arriving")

        retention = MediaRetention(jobs, settings.jobs)
        report = await asyncio.to_thread(retention.sweep)
        assert (report.media_removed, report.jobs_marked) == (2, 1)
        assert (report.thumbnails_removed, report.incoming_removed) == (1, 1)
        assert not orphan.exists() and not dead_upload.exists() and live_upload.exists()
        expired = (await client.get(f"/v1/jobs/{done}", headers=AUTH)).json()
        assert expired["media_purged_at"] is not None
        assert not jobs.media.exists(expired["media_sha256"])
        assert not jobs.thumbnails.folder(done).exists()
        assert jobs.thumbnails.folder(paused).exists()
        for job_id in (queued, paused, old_twin, new_twin):  # active, or shared with a new job
            job = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
            assert job["media_purged_at"] is None and jobs.media.exists(job["media_sha256"])

        r = await client.post(f"/v1/jobs/{done}/retry", headers=AUTH)
        assert r.status_code == 410 and r.json()["error"]["code"] == "media_expired"
        r = await client.get(f"/v1/jobs/{done}/thumbnails/{'0' * 32}.jpg", headers=AUTH)
        assert r.status_code == 410 and r.json()["error"]["code"] == "media_expired"
        assert (await act(paused, "resume"))["status"] == "queued"

        # the queued job's media goes once it is no longer active
        await act(queued, "cancel")
        report = await asyncio.to_thread(retention.sweep)
        assert (report.media_removed, report.jobs_marked) == (1, 1)
        assert (await client.get(f"/v1/jobs/{queued}", headers=AUTH)).json()["media_purged_at"]
        # nothing more is due
        assert not await asyncio.to_thread(retention.sweep)


@pytest.mark.models
async def test_the_app_runs_retention_in_the_background(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, jobs=JobsConfig(poll_s=0.05, media_retention_s=HOUR, media_sweep_s=0.05)
    )
    async with running(settings, engine) as api:
        client = api.client
        r = await client.post("/v1/jobs", content=_photo("skimage-coffee"), headers=JPEG)
        job_id = r.json()["id"]
        done = await wait_for(client, job_id, {"succeeded", "failed"})
        assert done["status"] == "succeeded" and done["media_purged_at"] is None
        jobs = api.services.jobs
        await asyncio.sleep(0.2)  # sweeps meanwhile leave fresh media alone
        assert jobs.media.exists(done["media_sha256"])
        _backdate(jobs, [job_id], 2 * HOUR)
        for _ in range(100):
            body = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
            if body["media_purged_at"]:
                break
            await asyncio.sleep(0.05)
        assert body["media_purged_at"] is not None, body
        assert not jobs.media.exists(done["media_sha256"])
        assert body["result"]["decision"] == "allow"  # the result itself is kept
    assert files_under(tmp_path / "media") == []


def test_removal_gives_way_to_a_concurrent_upload(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media")
    sha = store.store(b"some media").sha256
    _age(store.path(sha), 2 * HOUR)
    # wanted by a job: put back, still old
    assert not store.remove(sha, older_than_s=HOUR, in_use=lambda _: True)
    assert store.exists(sha) and store.path(sha).stat().st_mtime < time.time() - HOUR

    # uploaded again while the sweep looks at it: the new copy stays
    def upload_meanwhile(_: str) -> bool:
        assert not store.exists(sha)  # renamed away: an upload writes a fresh copy
        store.store(b"some media")
        return False

    assert not store.remove(sha, older_than_s=HOUR, in_use=upload_meanwhile)
    assert store.exists(sha) and store.get(sha) == b"some media"
    # refreshed by an upload just before the sweep: fresh, kept
    assert not store.remove(sha, older_than_s=HOUR, in_use=lambda _: False)
    _age(store.path(sha), 2 * HOUR)
    assert store.remove(sha, older_than_s=HOUR, in_use=lambda _: False)
    assert not store.exists(sha) and files_under(tmp_path / "media") == []
