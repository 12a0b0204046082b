"""Faults with real processes: a worker killed with SIGKILL in the middle of a video job,
RabbitMQ restarted under load. After each, every accepted job finishes, every callback
arrives (at least once, one webhook-id per event) and nothing is left half done.

Workers run as separate `bastion worker` processes with the real models (nsfw + hashes to
keep start-up short), on both backends: embedded (SQLite) and RabbitMQ + PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.config import Settings
from bastion.delivery.config import DeliveryConfig
from bastion.jobs.rabbitmq import RabbitQueue
from bastion.pipeline.engine import Engine
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.jobs import wait_for
from tests.support.media import benign_photos, encode
from tests.support.settings import JobBackend, write_config
from tests.support.video import cut_frames, write_video
from tests.support.webhooks import Receiver

pytestmark = [pytest.mark.models, pytest.mark.slow, pytest.mark.server]


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bastion.cli", "worker", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def fault_settings(backend: JobBackend, data_dir: Path, **jobs: Any) -> Settings:
    return backend.settings(
        data_dir,
        allow_private_urls=True,
        analyzers=["nsfw", "hashes"],
        jobs={"run_worker": False, "lease_s": 3, "poll_s": 0.1, **jobs},
        delivery=DeliveryConfig(initial_delay_s=0.1, max_delay_s=0.5, poll_interval_s=0.1),
    )


def events(receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    """Callbacks received, by job id: each with its webhook-id and type."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in receiver.received():
        event = call.json()
        out[event["data"]["job_id"]].append(
            {"id": call.headers["webhook-id"], "type": event["type"]}
        )
    return out


async def wait_callbacks(receiver: Receiver, job_ids: set[str], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not job_ids <= set(events(receiver)):
        missing = job_ids - set(events(receiver))
        assert asyncio.get_running_loop().time() < deadline, f"no callback for {missing}"
        await asyncio.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(
                "the worker did not stop on SIGTERM:\n" + log.read_text()
            ) from None


async def test_worker_killed_mid_video_another_finishes_it(
    engine: Engine, tmp_path: Path, job_backend: JobBackend
) -> None:
    receiver = Receiver()
    settings = fault_settings(job_backend, tmp_path / "data", concurrency=1)
    config = write_config(settings, tmp_path / "bastion.yaml")
    video = write_video(tmp_path / "long.mp4", cut_frames(seconds=40.0))
    log = tmp_path / "workers.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with running(settings, engine) as api:
            c = api.client
            workers.append(start_worker(config, log))
            r = await c.post(
                "/v1/jobs",
                content=video.read_bytes(),
                params={"callback_url": receiver.url, "sample_every": 0.2},
                headers={**AUTH, "Content-Type": "video/mp4"},
            )
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            deadline = asyncio.get_running_loop().time() + 180
            while True:  # the first worker is well into the video
                job = (await c.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
                assert job["status"] in {"queued", "processing"}, (job, log.read_text())
                if job["status"] == "processing" and job["progress"] >= 0.05:
                    break
                assert asyncio.get_running_loop().time() < deadline, log.read_text()
                await asyncio.sleep(0.1)
            workers[0].kill()  # SIGKILL: no clean-up of any kind
            workers[0].wait()
            job = (await c.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
            assert job["status"] == "processing" and job["progress"] < 1.0

            workers.append(start_worker(config, log))
            done = await wait_for(c, job_id, {"succeeded", "failed"}, timeout=240)
            assert done["status"] == "succeeded", (done, log.read_text())
            assert done["attempts"] == 2  # started twice, finished once
            assert len(done["result"]["frames"]) >= 150
            await wait_callbacks(receiver, {job_id})
            got = events(receiver)[job_id]
            assert {e["type"] for e in got} == {"job.succeeded"}
            assert len({e["id"] for e in got}) == 1  # one event, however many deliveries
            for _ in range(100):  # the receiver got it; the dispatcher records it just after
                detail = (await c.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
                if [d["state"] for d in detail["deliveries"]] == ["delivered"]:
                    break
                await asyncio.sleep(0.1)
            assert [d["state"] for d in detail["deliveries"]] == ["delivered"], detail
            stop(workers[1], log)
            assert workers[1].returncode == 0, log.read_text()
            assert await api.services.jobs.queue.depth("jobs") == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        receiver.close()


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


async def test_rabbitmq_restart_under_load_loses_nothing(
    engine: Engine, tmp_path: Path, rabbit_backend: JobBackend
) -> None:
    receiver = Receiver()
    settings = fault_settings(rabbit_backend, tmp_path / "data", concurrency=2)
    config = write_config(settings, tmp_path / "bastion.yaml")
    log = tmp_path / "workers.log"
    photos = list(benign_photos().values())
    workers: list[subprocess.Popen[bytes]] = []
    job_ids: set[str] = set()
    try:
        async with running(settings, engine) as api:
            c = api.client
            workers += [start_worker(config, log), start_worker(config, log)]

            async def submit(n: int, c: httpx.AsyncClient = c) -> None:
                for i in range(n):
                    data = encode(photos[len(job_ids) % len(photos)]) + len(job_ids).to_bytes(4)
                    r = await c.post(
                        "/v1/jobs",
                        content=data,
                        params={"callback_url": receiver.url},
                        headers={**AUTH, "Content-Type": "image/jpeg"},
                    )
                    assert r.status_code == 202, r.text
                    job_ids.add(r.json()["id"])
                    await asyncio.sleep(0.05 * (i % 2))

            await submit(30)
            # wait until the workers are busy, then restart the broker under them
            deadline = asyncio.get_running_loop().time() + 180
            while True:
                page = (await c.get("/v1/jobs?status=succeeded&limit=100", headers=AUTH)).json()
                if page["jobs"]:
                    break
                assert asyncio.get_running_loop().time() < deadline, log.read_text()
                await asyncio.sleep(0.2)
            await asyncio.to_thread(_rabbitmqctl, "stop_app")
            await submit(10)  # accepted while the broker is down: kept in the outbox
            await asyncio.to_thread(_rabbitmqctl, "start_app")
            await asyncio.to_thread(_rabbitmqctl, "await_startup")
            await submit(10)

            for job_id in job_ids:
                done = await wait_for(c, job_id, {"succeeded", "failed"}, timeout=240)
                assert done["status"] == "succeeded", (done, log.read_text()[-3000:])
            await wait_callbacks(receiver, job_ids)
            for job_id, got in events(receiver).items():
                assert {e["type"] for e in got} == {"job.succeeded"}, job_id
                assert len({e["id"] for e in got}) == 1, job_id
            for proc in workers:
                stop(proc, log)
                assert proc.returncode == 0, log.read_text()[-3000:]
            queue = api.services.jobs.queue
            assert isinstance(queue, RabbitQueue)
            assert await queue.depth("jobs") == 0
            assert await queue.outbox.depth("rabbitmq.outbox") == 0
            assert await queue.dead("jobs") == []
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        receiver.close()
