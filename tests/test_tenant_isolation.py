"""Tenants never learn what other tenants sent: results are reused only within a tenant.

A result reused from another tenant would say ``cached: true`` (or name the other
tenant's image in ``near_duplicate_of``), carry the other request's timings and come
back several times faster. Every reuse level is checked here with two tenants sending
the same bytes: the stored results (sync API and jobs, on SQLite and PostgreSQL), the
in-process cache and the coalescing of concurrent duplicates, the near-duplicate
index, and the frame cache of videos; and the migration that gave stored results
their tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from bastion.api.services import Services
from bastion.config import Settings
from bastion.dedup.config import DedupConfig
from bastion.dedup.tables import DedupEntry
from bastion.jobs.config import JobsConfig
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import moderate_video
from bastion.policy.loader import parse_policy
from bastion.store.db import alembic_config, make_engine
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.databases import pg_available, pg_schema, unavailable
from tests.support.media import jpeg, sha
from tests.support.settings import make_settings
from tests.support.video import noise_frames, write_video

pytestmark = pytest.mark.models
NEAR = DedupConfig(near_duplicate_max_distance=8)


def settings_for(data_dir: Path, database_url: str | None = None, **kw: Any) -> Settings:
    kw.setdefault("jobs", JobsConfig(poll_s=0.05, lease_s=5))
    kw.setdefault("dedup", NEAR)
    return make_settings(data_dir, database_url=database_url, **kw)


@asynccontextmanager
async def two_tenants(
    settings: Settings, engine: Engine
) -> AsyncIterator[tuple[httpx.AsyncClient, Services, dict[str, str], dict[str, str]]]:
    """The app (its in-memory caches empty), and the headers of two tenants: the admin
    key's own and a new one."""
    async with running(settings, engine) as api:
        c = api.client
        r = await c.post("/v1/tenants", json={"id": "beta", "name": "Beta"}, headers=AUTH)
        assert r.status_code in (201, 409), r.text  # 409: there since an earlier start
        r = await c.post("/v1/keys", json={"name": "app", "tenant_id": "beta"}, headers=AUTH)
        assert r.status_code == 201, r.text
        beta = {"Authorization": f"Bearer {r.json()['key']}"}
        yield c, api.services, AUTH, beta


async def moderate(c: httpx.AsyncClient, who: dict[str, str], data: bytes) -> dict[str, Any]:
    r = await c.post("/v1/moderate", content=data, headers={**who, "Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def job(c: httpx.AsyncClient, who: dict[str, str], data: bytes) -> dict[str, Any]:
    """The result of an image job, once it has run."""
    r = await c.post("/v1/jobs", content=data, headers={**who, "Content-Type": "image/jpeg"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    for _ in range(600):
        found = (await c.get(f"/v1/jobs/{job_id}", headers=who)).json()
        if found["status"] in {"succeeded", "failed"}:
            break
        await asyncio.sleep(0.05)
    assert found["status"] == "succeeded", found
    result: dict[str, Any] = found["result"]
    return result


def owners(svc: Services, sha256: str) -> list[str]:
    with svc.db_sessions() as s:
        q = select(DedupEntry.tenant_id).where(DedupEntry.sha256 == sha256)
        return sorted(s.execute(q).scalars())


def fresh(body: dict[str, Any]) -> bool:
    return body["cached"] is False and body["near_duplicate_of"] is None


async def test_same_bytes_from_another_tenant_are_analysed_afresh(
    engine: Engine, tmp_path: Path, database_url: str | None
) -> None:
    data = jpeg("skimage-chelsea")
    settings = settings_for(tmp_path / "data", database_url)
    async with two_tenants(settings, engine) as (c, svc, alpha, beta):
        first = await moderate(c, alpha, data)
        assert fresh(first)
        assert (await moderate(c, alpha, data))["cached"] is True
        analyzed = svc.dedup.stats.analyzed
        other = await moderate(c, beta, data)
        assert fresh(other)  # not cached: beta is not told that alpha sent these bytes
        assert svc.dedup.stats.analyzed == analyzed + 1  # analysed again, at full cost
        assert svc.dedup.stats.stored_hits == 0
        assert (await moderate(c, beta, data))["cached"] is True  # beta's own result
        assert owners(svc, sha(data)) == ["beta", "default"]
    # a restart (a new app, its caches empty): from the store, each tenant finds its own
    async with two_tenants(settings_for(tmp_path / "data", database_url), engine) as (
        c,
        svc,
        alpha,
        beta,
    ):
        assert (await moderate(c, beta, data))["cached"] is True
        assert (await moderate(c, alpha, data))["cached"] is True
        assert svc.dedup.stats.stored_hits == 2 and svc.dedup.stats.analyzed == 0


async def test_near_duplicates_of_another_tenant_are_not_reused(
    engine: Engine, tmp_path: Path
) -> None:
    original = jpeg("skimage-astronaut", 90)
    resized = jpeg("skimage-astronaut", 75, scale=0.8)
    smaller = jpeg("skimage-astronaut", 80, scale=0.9)
    async with two_tenants(settings_for(tmp_path / "data"), engine) as (c, svc, alpha, beta):
        assert fresh(await moderate(c, alpha, original))
        near = await moderate(c, alpha, resized)  # alpha's own near duplicate is reused
        assert near["near_duplicate_of"]["sha256"] == sha(original)
        # beta: neither the bytes alpha sent nor a near duplicate of them is reused
        assert fresh(await moderate(c, beta, resized))
        assert (await moderate(c, beta, resized))["cached"] is True  # beta's own result
        # beta's near duplicates name beta's own images only, never alpha's original
        for image in (original, smaller):
            own = await moderate(c, beta, image)
            assert own["cached"] is True
            assert own["near_duplicate_of"]["sha256"] == sha(resized)
        assert owners(svc, sha(original)) == ["default"]
        assert owners(svc, sha(resized)) == ["beta"]  # alpha's near hit was not stored
        assert svc.dedup.stats.near_hits == 3


async def test_jobs_do_not_reuse_another_tenants_results(engine: Engine, tmp_path: Path) -> None:
    data = jpeg("skimage-motorcycle")
    also = jpeg("skimage-rocket")
    async with two_tenants(settings_for(tmp_path / "data"), engine) as (c, svc, alpha, beta):
        assert fresh(await moderate(c, alpha, data))
        svc.moderation.cache.clear()  # only the store could connect them
        assert fresh(await job(c, beta, data))
        assert (await job(c, beta, data))["cached"] is True
        # and the other way round: a job's result is not shown to another tenant's sync call
        assert fresh(await job(c, alpha, also))
        assert fresh(await moderate(c, beta, also))
        assert (await moderate(c, beta, also))["cached"] is True
        assert owners(svc, sha(data)) == ["beta", "default"]


async def test_concurrent_sends_of_two_tenants_are_not_coalesced(
    engine: Engine, tmp_path: Path
) -> None:
    data = jpeg("sklearn-flower")
    async with two_tenants(settings_for(tmp_path / "data"), engine) as (c, svc, alpha, beta):
        who = [alpha, beta] * 3
        bodies = await asyncio.gather(*(moderate(c, w, data) for w in who))
        for tenant in (alpha, beta):  # within a tenant, duplicates still share one analysis
            mine = [b["cached"] for w, b in zip(who, bodies, strict=True) if w is tenant]
            assert sorted(mine) == [False, True, True]
        assert svc.dedup.stats.analyzed == 2 and svc.dedup.stats.stored == 2
        assert owners(svc, sha(data)) == ["beta", "default"]
        assert all(b["near_duplicate_of"] is None for b in bodies)


async def test_engine_cache_and_video_frames_are_per_tenant(
    moderation: Moderation, tmp_path: Path
) -> None:
    policy = parse_policy("name: codes-only\nanalyzers: [codes]\n")
    data = jpeg("skimage-coffee")
    assert (await moderation.moderate_bytes(data, policy, tenant="a")).cached is False
    assert (await moderation.moderate_bytes(data, policy, tenant="b")).cached is False
    assert (await moderation.moderate_bytes(data, policy, tenant="b")).cached is True
    assert (await moderation.moderate_bytes(data, policy)).cached is False  # no tenant: apart too
    video = write_video(tmp_path / "noise.mp4", noise_frames(10), fps=5)
    first = await moderate_video(moderation, video, policy, tenant="a")
    assert first.frames and not any(f.cached for f in first.frames)
    other = await moderate_video(moderation, video, policy, tenant="b")
    assert not any(f.cached for f in other.frames)
    again = await moderate_video(moderation, video, policy, tenant="b")
    assert all(f.cached for f in again.frames)


def _migration_round_trip(url: str) -> None:
    db = make_engine(url)
    cfg = alembic_config(url)
    try:
        with db.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0008")
            conn.execute(
                text(
                    "INSERT INTO dedup_entries (sha256, scope, model_fp, result, hits, "
                    "created_at, used_at) VALUES ('a', 's', 'm', '{}', 0, "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                )
            )
            command.upgrade(cfg, "head")
            columns = {c["name"] for c in inspect(conn).get_columns("dedup_bands")}
            assert "tenant_id" in columns
            # results stored for all tenants together cannot be told apart: dropped
            assert conn.execute(text("SELECT count(*) FROM dedup_entries")).scalar() == 0
            command.downgrade(cfg, "0008")
            columns = {c["name"] for c in inspect(conn).get_columns("dedup_entries")}
            assert "tenant_id" not in columns
            command.upgrade(cfg, "head")
    finally:
        db.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_migration_gives_stored_results_a_tenant(tmp_path: Path, database: str) -> None:
    """0009 drops the results stored for all tenants together, and goes back and forth."""
    if database == "sqlite":
        _migration_round_trip(f"sqlite:///{tmp_path / 'm.db'}")
        return
    if not pg_available():
        unavailable("PostgreSQL")
    with pg_schema() as url:
        _migration_round_trip(url)
