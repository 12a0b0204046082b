"""The composition root: what each kind of process runs, and a worker process that does
the jobs an API without a worker accepted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bastion.config import Settings
from bastion.pipeline.engine import Engine
from bastion.process.components import Roles, build_components
from bastion.process.worker import run_worker_process
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.media import photo
from tests.support.settings import make_settings


async def _loops(settings: Settings, roles: Roles, engine: Engine) -> set[str]:
    parts = await build_components(settings, roles, engine=engine)
    stop = asyncio.Event()
    try:
        return {t.get_name() for t in parts.run(stop)}
    finally:
        stop.set()
        await parts.aclose()


async def test_each_kind_of_process_runs_its_loops(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jobs={"poll_s": 0.05})
    worker = await _loops(settings, Roles.worker(settings), engine)
    assert worker == {
        "dedup-purge",
        "daily-counts",  # every process writes what it counted for the statistics
        "worker",
        "retention",
        "live-thumbnails",  # a worker process purges old live thumbnails too
        "samples-collect",  # and makes samples of decisions that kept their media
        "training-runs",  # and runs training runs, each in a child process
        "dispatcher",
        "stream-sessions",
    }
    quiet = await _loops(settings, Roles.worker(settings, dispatch=False), engine)
    assert quiet == worker - {"dispatcher"}
    server = await _loops(settings, Roles.server(settings), engine)
    assert server == worker | {"alert-feed", "stream-feed"}
    no_jobs = make_settings(tmp_path, jobs={"run_worker": False}, live={"run_sessions": False})
    api_only = await _loops(no_jobs, Roles.server(no_jobs), engine)
    assert api_only == {"dedup-purge", "daily-counts", "alert-feed", "stream-feed"}


async def test_only_the_api_creates_the_first_admin_key(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)  # no fixed admin key
    parts = await build_components(settings, Roles.worker(settings), engine=engine)
    try:
        assert parts.boot.new_admin_key is None and not parts.repo.has_keys()
    finally:
        await parts.aclose()
    parts = await build_components(settings, Roles.server(settings), engine=engine)
    try:
        assert parts.boot.new_admin_key is not None and parts.repo.has_keys()
    finally:
        await parts.aclose()


async def test_a_worker_process_runs_the_jobs_an_api_without_worker_accepted(
    engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, jobs={"run_worker": False, "poll_s": 0.05}, live={"run_sessions": False}
    )
    async with running(settings, engine) as api:
        headers = {**AUTH, "Content-Type": "image/jpeg"}
        r = await api.client.post("/v1/jobs", content=photo(), headers=headers)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        await asyncio.sleep(0.5)
        waiting = (await api.client.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
        assert waiting["status"] == "queued", waiting  # nobody runs jobs in this process

        stop = asyncio.Event()
        ready = asyncio.Event()
        worker_settings = settings.model_copy(
            update={"jobs": settings.jobs.model_copy(update={"run_worker": True})}
        )
        process = asyncio.create_task(
            run_worker_process(worker_settings, stop, engine=engine, on_ready=lambda _: ready.set())
        )
        try:
            await asyncio.wait_for(ready.wait(), 60)
            for _ in range(600):
                body = (await api.client.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
                if body["status"] not in {"queued", "processing"}:
                    break
                await asyncio.sleep(0.1)
            assert body["status"] == "succeeded", body
            assert body["result"]["decision"] == "allow"
        finally:
            stop.set()
            await asyncio.wait_for(process, 60)
