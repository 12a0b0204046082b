"""One way into moderation: every part of a process that moderates (the API, the job
worker, live frames, pushed frames) holds the one :class:`Moderation` the process built,
with stored results as its level when they are on; so a tenant's sync call, job and
pushed frame of the same bytes share one analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.api.services import Services
from bastion.pipeline.engine import Engine
from bastion.process.components import Roles, build_components
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.jobs import wait_for
from tests.support.media import jpeg
from tests.support.settings import make_settings

JPEG = {**AUTH, "Content-Type": "image/jpeg"}


def without_cached(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "cached"}


@pytest.mark.parametrize("stored", [True, False])
async def test_every_part_of_a_process_moderates_through_one_entry(
    engine: Engine, tmp_path: Path, stored: bool
) -> None:
    settings = make_settings(tmp_path, dedup={"enabled": stored}, live={"run_sessions": False})
    parts = await build_components(settings, Roles.server(settings), engine=engine)
    try:
        moderation = parts.moderation
        assert parts.worker is not None and parts.worker.moderation is moderation
        assert parts.live.processor.moderation is moderation
        assert parts.live.pushed.moderation is moderation
        assert Services.from_components(parts).moderation is moderation
        assert moderation.engine is parts.engine
        assert moderation.stored is (parts.dedup if stored else None)
    finally:
        await parts.aclose()


@pytest.mark.models
async def test_a_sync_call_a_job_and_a_pushed_frame_share_one_analysis(
    engine: Engine, tmp_path: Path
) -> None:
    # stored results off: only the in-memory cache of the one entry can connect them
    settings = make_settings(
        tmp_path,
        dedup={"enabled": False},
        jobs={"poll_s": 0.05, "lease_s": 5},
        live={"run_sessions": False},
    )
    data = jpeg("skimage-chelsea")
    async with running(settings, engine) as api:
        c, svc = api.client, api.services
        r = await c.post("/v1/moderate", content=data, headers=JPEG)
        assert r.status_code == 200, r.text
        sync = r.json()
        assert sync["cached"] is False
        r = await c.post("/v1/jobs", content=data, headers=JPEG)
        assert r.status_code == 202, r.text
        job = await wait_for(c, r.json()["id"], {"succeeded", "failed"})
        assert job["status"] == "succeeded", job
        assert job["result"]["cached"] is True
        assert without_cached(job["result"]) == without_cached(sync)
        r = await c.post("/v1/streams", json={"id": "pushed", "channel": "c"}, headers=AUTH)
        assert r.status_code == 201, r.text
        r = await c.post(
            "/v1/streams/pushed/frames", content=data, headers=JPEG, params={"timestamp_ms": 0}
        )
        assert r.status_code == 200, r.text
        frame = r.json()["result"]
        assert frame["cached"] is True
        assert without_cached(frame) == without_cached(sync)
        assert (svc.moderation.cache.misses, svc.moderation.cache.hits) == (1, 2)
        assert svc.dedup.stats.analyzed == 0  # the stored level was never asked
