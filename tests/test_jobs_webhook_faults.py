"""Job callbacks against receivers that fail or hang: retried until they arrive, with one
webhook-id per job across retries and every attempt in the job's delivery history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from bastion.delivery.config import DeliveryConfig
from bastion.pipeline.engine import Engine
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.jobs import wait_for
from tests.support.media import benign_photos, encode
from tests.support.settings import JobBackend
from tests.support.webhooks import Answer, Received, Receiver

pytestmark = pytest.mark.models
TIMEOUT_S = 0.5
JOBS = 3
FAILED = Answer(500, body=b"no")


@pytest.fixture
def failing() -> Iterator[Receiver]:
    """A receiver answering the first two calls of each webhook-id with HTTP 500."""
    with Receiver([FAILED, FAILED, 200]) as r:
        yield r


@pytest.fixture
def hanging() -> Iterator[Receiver]:
    """A receiver holding the first call of each webhook-id past the sender's timeout."""
    with Receiver([Answer(200, delay_s=TIMEOUT_S + 1.0), 200]) as r:
        yield r


def _settings(data_dir: Path, backend: JobBackend) -> Any:
    return backend.settings(
        data_dir,
        allow_private_urls=True,
        jobs={"poll_s": 0.05, "lease_s": 5, "retry_delay_s": 0.1},
        delivery=DeliveryConfig(
            initial_delay_s=0.05,
            max_delay_s=0.2,
            poll_interval_s=0.05,
            request_timeout_s=TIMEOUT_S,
            lease_s=2 * TIMEOUT_S,
        ),
    )


async def _jobs_called_back(client: httpx.AsyncClient, receiver: Receiver) -> list[dict[str, Any]]:
    """Submit JOBS image jobs with a callback; their details once every callback landed."""
    photos = ("skimage-chelsea", "skimage-coffee", "skimage-rocket")
    ids = []
    for name in photos[:JOBS]:
        r = await client.post(
            "/v1/jobs",
            content=encode(benign_photos()[name]),
            params={"callback_url": receiver.url, "metadata": json.dumps({"photo": name})},
            headers={**AUTH, "Content-Type": "image/jpeg"},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    out = []
    for job_id in ids:
        done = await wait_for(client, job_id, {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        deadline = asyncio.get_running_loop().time() + 30
        while done["deliveries"] == [] or done["deliveries"][0]["state"] != "delivered":
            assert asyncio.get_running_loop().time() < deadline, done
            await asyncio.sleep(0.05)
            done = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
        out.append(done)
    return out


async def _check_arrivals(
    client: httpx.AsyncClient, receiver: Receiver, jobs: list[dict[str, Any]]
) -> dict[str, list[Received]]:
    secret = (await client.get("/v1/webhooks/secret", headers=AUTH)).json()["secret"]
    arrived = receiver.by_job()
    assert set(arrived) == {j["id"] for j in jobs}
    for job in jobs:
        calls = arrived[job["id"]]
        [delivery] = job["deliveries"]
        # one webhook-id per job, the same on every retry, and it is the delivery's
        assert {call.headers["webhook-id"] for call in calls} == {delivery["webhook_id"]}
        for call in calls:
            event = Webhook(secret).verify(call.body, call.headers)
            assert event["type"] == "job.succeeded" and event["data"]["job_id"] == job["id"]
            assert event["data"]["metadata"] == job["metadata"]
    return arrived


async def test_a_receiver_failing_with_500_gets_every_callback(
    engine: Engine, tmp_path: Path, failing: Receiver, job_backend: JobBackend
) -> None:
    async with running(_settings(tmp_path, job_backend), engine) as api:
        client = api.client
        jobs = await _jobs_called_back(client, failing)
        arrived = await _check_arrivals(client, failing, jobs)
    for job in jobs:
        [delivery] = job["deliveries"]
        history = delivery["history"]
        assert [a["status_code"] for a in history] == [500, 500, 200]
        assert [a["error"] for a in history] == ["HTTP 500: no", "HTTP 500: no", None]
        assert delivery["attempts"] == 3 and delivery["last_status"] == 200
        assert len(arrived[job["id"]]) == 3


async def test_a_receiver_hanging_past_the_timeout_gets_every_callback(
    engine: Engine, tmp_path: Path, hanging: Receiver, job_backend: JobBackend
) -> None:
    async with running(_settings(tmp_path, job_backend), engine) as api:
        client = api.client
        jobs = await _jobs_called_back(client, hanging)
        arrived = await _check_arrivals(client, hanging, jobs)
    for job in jobs:
        [delivery] = job["deliveries"]
        history = delivery["history"]
        assert [a["status_code"] for a in history] == [None, 200]
        assert history[0]["error"] == f"timed out after {TIMEOUT_S:g} s"
        assert history[0]["latency_ms"] >= TIMEOUT_S * 1000
        assert history[1]["error"] is None
        # the hung request reached the receiver too: at least once, never lost
        assert len(arrived[job["id"]]) == 2
