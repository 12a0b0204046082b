"""Job callbacks against receivers that fail or hang: retried until they arrive, with one
webhook-id per job across retries and every attempt in the job's delivery history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from bastion.delivery.schedule import DeliveryConfig
from bastion.pipeline.engine import Engine
from tests.conftest import JobBackend
from tests.jobs_support import AUTH, running, wait_for
from tests.samples import benign_photos, encode

pytestmark = pytest.mark.models
TIMEOUT_S = 0.5
JOBS = 3


class FaultyReceiver:
    """A webhook receiver that misbehaves on the first calls of each webhook-id.

    The first ``fail_first`` calls of a webhook-id get HTTP 500; the next ``hang_first``
    calls are held for ``hang_s`` seconds (past the sender's timeout) before a 200; later
    calls get a 200 at once. Every request is recorded as it arrives.
    """

    def __init__(self, *, fail_first: int = 0, hang_first: int = 0, hang_s: float = 0.0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.calls: Counter[str] = Counter()
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with lock:
                    receiver.requests.append((headers, body))
                    receiver.calls[headers.get("webhook-id", "")] += 1
                    n = receiver.calls[headers.get("webhook-id", "")]
                status = 200
                if n <= fail_first:
                    status = 500
                elif n <= fail_first + hang_first:
                    time.sleep(hang_s)
                with contextlib.suppress(OSError):  # a hung call's sender has gone
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"no" if status >= 500 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def by_job(self) -> dict[str, list[tuple[dict[str, str], bytes]]]:
        out: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        for headers, body in self.requests:
            out.setdefault(json.loads(body)["data"]["job_id"], []).append((headers, body))
        return out


@pytest.fixture
def failing() -> Iterator[FaultyReceiver]:
    r = FaultyReceiver(fail_first=2)
    yield r
    r.close()


@pytest.fixture
def hanging() -> Iterator[FaultyReceiver]:
    r = FaultyReceiver(hang_first=1, hang_s=TIMEOUT_S + 1.0)
    yield r
    r.close()


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


async def _jobs_called_back(
    client: httpx.AsyncClient, receiver: FaultyReceiver
) -> list[dict[str, Any]]:
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
    client: httpx.AsyncClient, receiver: FaultyReceiver, jobs: list[dict[str, Any]]
) -> dict[str, list[tuple[dict[str, str], bytes]]]:
    secret = (await client.get("/v1/webhooks/secret", headers=AUTH)).json()["secret"]
    arrived = receiver.by_job()
    assert set(arrived) == {j["id"] for j in jobs}
    for job in jobs:
        calls = arrived[job["id"]]
        [delivery] = job["deliveries"]
        # one webhook-id per job, the same on every retry, and it is the delivery's
        assert {h["webhook-id"] for h, _ in calls} == {delivery["webhook_id"]}
        for headers, body in calls:
            event = Webhook(secret).verify(body, headers)
            assert event["type"] == "job.succeeded" and event["data"]["job_id"] == job["id"]
            assert event["data"]["metadata"] == job["metadata"]
    return arrived


async def test_a_receiver_failing_with_500_gets_every_callback(
    engine: Engine, tmp_path: Path, failing: FaultyReceiver, job_backend: JobBackend
) -> None:
    async with running(_settings(tmp_path, job_backend), engine) as (_, client):
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
    engine: Engine, tmp_path: Path, hanging: FaultyReceiver, job_backend: JobBackend
) -> None:
    async with running(_settings(tmp_path, job_backend), engine) as (_, client):
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
