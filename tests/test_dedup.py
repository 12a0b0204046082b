"""De-duplication: stored results reused across requests, workers and restarts; near duplicates.

Runs the API with the real models on SQLite and, when reachable, on the PostgreSQL
server on this machine (a schema per test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bastion.dedup.config import DedupConfig
from bastion.dedup.pdqindex import BANDS, MAX_DISTANCE, PdqHash, band_codes, probe_codes
from bastion.dedup.repo import NearMatch, ResultStore
from bastion.dedup.tables import DedupBand, DedupEntry
from bastion.jobs.config import JobsConfig
from bastion.media.hashing import hamming
from bastion.pipeline.cache import ResultCache
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import moderate_video
from bastion.policy.loader import default_policy, parse_policy
from bastion.results import ModerationResult
from bastion.store.db import make_engine, migrate, session_factory
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.dedup import rows, settings_for
from tests.support.media import encode, jpeg, sha, unique
from tests.support.video import noise_frames, write_video

pytestmark = pytest.mark.models
JPEG = {**AUTH, "Content-Type": "image/jpeg"}
NSFW_ONLY = """name: nsfw-only
description: the nsfw analyzer alone
analyzers: [nsfw, hashes]
rules:
  - categories: [Explicit Nudity]
    block: 85
"""


def without_cached(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "cached"}


async def moderate(c: httpx.AsyncClient, data: bytes, **params: str) -> dict[str, Any]:
    r = await c.post("/v1/moderate", content=data, headers=JPEG, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# ---- through the API --------------------------------------------------------------------


async def test_duplicate_is_reused_and_survives_a_restart(
    engine: Engine, tmp_path: Path, database_url: str | None
) -> None:
    settings = settings_for(tmp_path / "data", database_url)
    data = jpeg("skimage-chelsea")
    async with running(settings, engine) as api:
        c, svc = api.client, api.services
        first = await moderate(c, data)
        second = await moderate(c, data)
        assert first["cached"] is False and second["cached"] is True
        assert without_cached(second) == without_cached(first)
        stored = rows(svc, sha(data))
        assert len(stored) == 1 and stored[0].pdq == first["hashes"]["pdq"]
    # a new app is what a new process starts with: empty in-memory caches
    async with running(settings, engine) as api:
        c, svc = api.client, api.services
        third = await moderate(c, data)
        assert third["cached"] is True and third["decision"] == first["decision"]
        assert without_cached(third) == without_cached(first)
        assert svc.dedup.stats.stored_hits == 1 and svc.dedup.stats.analyzed == 0
        assert rows(svc, sha(data))[0].hits == 1


async def test_other_policy_or_lists_miss(engine: Engine, tmp_path: Path) -> None:
    data = jpeg("skimage-coffee")
    async with running(settings_for(tmp_path / "data"), engine) as api:
        c, svc = api.client, api.services
        r = await c.put(
            "/v1/policies/nsfw-only",
            content=NSFW_ONLY,
            headers={**AUTH, "Content-Type": "application/yaml"},
        )
        assert r.status_code == 200, r.text
        assert (await moderate(c, data))["cached"] is False
        own = await moderate(c, data, policy="nsfw-only")
        assert own["cached"] is False and own["policy"] == "nsfw-only"
        assert (await moderate(c, data, policy="nsfw-only"))["cached"] is True
        r = await c.put("/v1/lists", json={"blocked_words": ["espresso"]}, headers=AUTH)
        assert r.status_code == 200
        assert (await moderate(c, data, policy="nsfw-only"))["cached"] is False
        assert len(rows(svc, sha(data))) == 3
        svc.moderation.cache.clear()
        assert (await moderate(c, data, policy="nsfw-only"))["cached"] is True


async def test_model_change_misses_and_purges_old_results(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path / "data")
    data = jpeg("skimage-rocket")
    async with running(settings, engine) as api:
        c, svc = api.client, api.services
        assert (await moderate(c, data))["cached"] is False
        old_fp = svc.dedup.model_fingerprint
        assert [r.model_fp for r in rows(svc)] == [old_fp]
    monkeypatch.setattr(engine.analyzers["hashes"], "_version", "pdqhash-0.0.0+other")
    async with running(settings, engine) as api:
        c, svc = api.client, api.services
        assert svc.dedup.model_fingerprint != old_fp
        assert rows(svc) == [] and svc.dedup.stats.purged == 1  # purged at start-up
        again = await moderate(c, data)
        assert again["cached"] is False
        assert again["versions"]["hashes"] == "pdqhash-0.0.0+other"
        assert [r.model_fp for r in rows(svc)] == [svc.dedup.model_fingerprint]


async def test_concurrent_duplicates_are_analysed_once(engine: Engine, tmp_path: Path) -> None:
    data = jpeg("sklearn-flower")
    async with running(settings_for(tmp_path / "data"), engine) as api:
        c, svc = api.client, api.services
        bodies = await asyncio.gather(*(moderate(c, data) for _ in range(6)))
        assert sorted(b["cached"] for b in bodies) == [False] + [True] * 5
        assert svc.dedup.stats.analyzed == 1 and svc.dedup.stats.stored == 1
        assert len(rows(svc, sha(data))) == 1
        assert len({b["decision"] for b in bodies}) == 1


async def test_memory_cache_of_size_zero_still_coalesces_duplicates() -> None:
    cache: ResultCache[int] = ResultCache(0)
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 7

    got = await asyncio.gather(*(cache.get_or_compute("k", compute) for _ in range(5)))
    assert calls == 1 and sorted(cached for _, cached in got) == [False] + [True] * 4
    assert await cache.get_or_compute("k", compute) == (7, False)  # nothing kept
    assert calls == 2 and len(cache) == 0


async def test_near_duplicate_reuse(engine: Engine, tmp_path: Path) -> None:
    original = jpeg("skimage-astronaut", 90)
    resized = jpeg("skimage-astronaut", 75, scale=0.8)  # 410 px wide, re-encoded
    other = jpeg("sklearn-china", 90)
    dedup = DedupConfig(near_duplicate_max_distance=8)
    async with running(settings_for(tmp_path / "on", dedup=dedup), engine) as api:
        c, svc = api.client, api.services
        first = await moderate(c, original)
        assert first["cached"] is False and first["near_duplicate_of"] is None
        near = await moderate(c, resized)
        assert near["cached"] is True
        assert near["near_duplicate_of"]["sha256"] == sha(original)
        assert 0 < near["near_duplicate_of"]["distance"] <= 8
        assert near["near_duplicate_of"]["distance"] == hamming(
            near["hashes"]["pdq"], first["hashes"]["pdq"]
        )
        assert near["hashes"]["sha256"] == sha(resized)
        assert near["media"]["width"] == 410 and near["media"]["bytes"] == len(resized)
        assert near["decision"] == first["decision"]
        assert [lab["name"] for lab in near["labels"]] == [lab["name"] for lab in first["labels"]]
        assert first["faces"]
        scale = 410 / first["media"]["width"]
        for a, b in zip(first["faces"], near["faces"], strict=True):  # boxes follow the size
            assert b["box"]["width"] == pytest.approx(a["box"]["width"] * scale, abs=0.01)
        assert svc.dedup.stats.near_hits == 1
        far = await moderate(c, other)
        assert far["cached"] is False and far["near_duplicate_of"] is None
        assert hamming(far["hashes"]["pdq"], first["hashes"]["pdq"]) > 8

    # off (the default): the resized copy is analysed
    async with running(settings_for(tmp_path / "off"), engine) as api:
        c, svc = api.client, api.services
        assert (await moderate(c, unique(original)))["cached"] is False
        off = await moderate(c, unique(resized))
        assert off["cached"] is False and off["near_duplicate_of"] is None
        assert svc.dedup.stats.near_hits == 0


async def test_flat_images_never_match_as_near_duplicates(engine: Engine, tmp_path: Path) -> None:
    flat = np.full((240, 320, 3), 127, np.uint8)
    a, b = encode(flat, "PNG", compress_level=1), encode(flat, "PNG", compress_level=9)
    assert a != b
    dedup = DedupConfig(near_duplicate_max_distance=MAX_DISTANCE)
    async with running(settings_for(tmp_path / "data", dedup=dedup), engine) as api:
        c, svc = api.client, api.services
        first, second = await moderate(c, a), await moderate(c, b)
        assert first["hashes"]["pdq"] == second["hashes"]["pdq"]  # same pixels, same hash
        assert first["hashes"]["pdq_quality"] < 50
        assert second["cached"] is False and second["near_duplicate_of"] is None
        assert svc.dedup.stats.near_hits == 0


async def test_job_reuses_the_sync_result(engine: Engine, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data", jobs=JobsConfig(poll_s=0.05, lease_s=5))
    data = jpeg("skimage-motorcycle")
    async with running(settings, engine) as api:
        c, svc = api.client, api.services
        sync = await moderate(c, data)
        svc.moderation.cache.clear()  # the worker must find it in the store
        r = await c.post("/v1/jobs", content=data, headers=JPEG)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        for _ in range(300):
            job = (await c.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
            if job["status"] in {"succeeded", "failed"}:
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "succeeded", job
        assert job["result"]["cached"] is True
        assert without_cached(job["result"]) == without_cached(sync)
        assert svc.dedup.stats.stored_hits == 1


async def test_video_frames_do_not_evict_images(moderation: Moderation, tmp_path: Path) -> None:
    policy = parse_policy("name: codes-only\nanalyzers: [codes]\n")
    video = write_video(tmp_path / "noise.mp4", noise_frames(15), fps=5)
    images, frames = len(moderation.cache), len(moderation.frame_cache)
    res = await moderate_video(moderation, video, policy)
    assert len(res.frames) == 3
    assert len(moderation.cache) == images
    assert len(moderation.frame_cache) == frames + 3


# ---- the store on its own ---------------------------------------------------------------


@pytest.fixture
def store_sessions(tmp_path: Path, database_url: str | None) -> Iterator[sessionmaker[Session]]:
    db = make_engine(database_url or f"sqlite:///{tmp_path / 'dedup.db'}")
    migrate(db)
    yield session_factory(db)
    db.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stored_result(moderation: Moderation) -> ModerationResult:
    """A real result to store (the store tests need only some result)."""
    return await moderation.moderate_bytes(jpeg("skimage-camera"), parse_policy(NSFW_ONLY))


def flipped(pdq_hex: str, bits: list[int]) -> str:
    value = int(pdq_hex, 16)
    for b in bits:
        value ^= 1 << b
    return f"{value:064x}"


def test_probe_codes_cover_the_pigeonhole() -> None:
    base = "f" * 16 + "0" * 16 + "a5" * 16
    assert len(band_codes(base)) == BANDS
    assert len(probe_codes(base, 8)) == BANDS  # exact band values below BANDS bits
    assert len(probe_codes(base, MAX_DISTANCE)) == BANDS * 17  # and one bit off each
    with pytest.raises(ValueError):
        probe_codes(base, MAX_DISTANCE + 1)
    with pytest.raises(ValueError):
        band_codes("abc")


async def test_store_near_lookup_uses_the_band_index(
    store_sessions: sessionmaker[Session], stored_result: ModerationResult
) -> None:
    store = ResultStore(store_sessions, DedupConfig(near_duplicate_max_distance=8))
    rng = np.random.default_rng(3)
    base = "".join(f"{b:02x}" for b in rng.integers(0, 256, 32))

    def put(sha256: str, scope: str, pdq: PdqHash | None, index_pdq: bool) -> bool:
        return store.put(sha256, scope, "m1", stored_result, pdq, tenant="t1", index_pdq=index_pdq)

    def near(pdq_hex: str, scope: str, distance: int, quality: int = 90) -> NearMatch | None:
        return store.nearest(PdqHash(pdq_hex, quality), scope, distance, tenant="t1")

    assert put("a" * 64, "scope1", PdqHash(base, 90), index_pdq=True)
    assert not put("a" * 64, "scope1", None, index_pdq=False)
    eight = flipped(base, [0, 17, 40, 70, 100, 130, 200, 255])
    found = near(eight, "scope1", 8)
    assert found is not None and found.sha256 == "a" * 64 and found.distance == 8
    nine = flipped(base, [0, 17, 40, 70, 100, 130, 200, 250, 255])
    assert near(nine, "scope1", 8) is None
    assert near(eight, "scope2", 8) is None  # other policy or models
    assert near(base, "scope1", 8, quality=30) is None  # low quality query
    # 16 bands each one bit off, plus 4: found only by probing one-bit neighbours
    spread = flipped(base, [i * 16 + 3 for i in range(16)] + [1, 2, 4, 5])
    assert near(spread, "scope1", 20) is not None
    assert near(spread, "scope1", 19) is None
    # no band rows, no match: the lookup goes by the index, never by scanning hashes
    assert put("b" * 64, "scope3", PdqHash(base, 90), index_pdq=False)
    assert put("c" * 64, "scope4", PdqHash(base, 20), index_pdq=True)
    assert near(base, "scope3", 8) is None
    assert near(base, "scope4", 8) is None  # low quality not indexed
    assert store.get("b" * 64, "scope3", tenant="t1") is not None


async def test_store_keeps_each_tenant_to_its_own_results(
    store_sessions: sessionmaker[Session], stored_result: ModerationResult
) -> None:
    store = ResultStore(store_sessions, DedupConfig(near_duplicate_max_distance=8))
    base = "".join(f"{b:02x}" for b in np.random.default_rng(5).integers(0, 256, 32))
    pdq = PdqHash(base, 90)
    assert store.put("e" * 64, "s", "m", stored_result, pdq, tenant="a", index_pdq=True)
    # same bytes, same scope, other tenant: nothing to reuse, near or exact
    assert store.get("e" * 64, "s", tenant="b") is None
    assert store.nearest(pdq, "s", 8, tenant="b") is None
    assert store.nearest(PdqHash(flipped(base, [3]), 90), "s", 8, tenant="b") is None
    # b stores its own copy under the same key without a conflict; each finds its own
    assert store.put("e" * 64, "s", "m", stored_result, pdq, tenant="b", index_pdq=True)
    with store_sessions() as s:
        owners = sorted(s.execute(select(DedupEntry.tenant_id)).scalars())
        band_owners = set(s.execute(select(DedupBand.tenant_id)).scalars())
    assert owners == ["a", "b"] and band_owners == {"a", "b"}
    assert store.get("e" * 64, "s", tenant="b") is not None
    found = store.nearest(PdqHash(flipped(base, [3]), 90), "s", 8, tenant="a")
    assert found is not None and found.sha256 == "e" * 64


async def test_store_purges_other_models_old_and_surplus(
    store_sessions: sessionmaker[Session], stored_result: ModerationResult
) -> None:
    config = DedupConfig(max_entries=3, max_age_s=3600, near_duplicate_max_distance=8)
    store = ResultStore(store_sessions, config)
    pdq = PdqHash("0f" * 32, 90)
    for i in range(6):
        tenant = "t1" if i % 2 else "t2"  # the bound is for all tenants together
        model = "m1" if i else "m0"
        store.put(f"{i:064x}", "s", model, stored_result, pdq, tenant=tenant, index_pdq=True)
    with store_sessions.begin() as s:  # entry 1 is two hours old, entry 2 recently used
        s.execute(
            update(DedupEntry)
            .where(DedupEntry.sha256 == f"{1:064x}")
            .values(created_at=datetime.now(UTC) - timedelta(hours=2))
        )
    assert store.get(f"{2:064x}", "s", tenant="t2") is not None
    assert store.get(f"{1:064x}", "s", tenant="t1") is None  # too old to be used
    stats = store.purge("m1")
    assert (stats.other_model, stats.expired, stats.evicted) == (1, 0, 1)
    with store_sessions() as s:
        left = sorted(s.execute(select(DedupEntry.sha256)).scalars())
        bands = s.execute(select(func.count()).select_from(DedupBand)).scalar_one()
    assert left == [f"{i:064x}" for i in (2, 4, 5)]  # 3 was the least recently used
    assert bands == 3 * BANDS  # band rows went with their entries


def test_store_drops_results_that_no_longer_validate(
    store_sessions: sessionmaker[Session], stored_result: ModerationResult
) -> None:
    store = ResultStore(store_sessions, DedupConfig())
    assert store.put("d" * 64, "s", "m", stored_result, None, tenant="t1", index_pdq=False)
    with store_sessions.begin() as s:
        s.execute(update(DedupEntry).values(result={"decision": "maybe"}))
    assert store.get("d" * 64, "s", tenant="t1") is None
    assert store.count() == 0


def test_scope_is_the_policy_content_lists_and_models() -> None:
    """The scope fingerprints what a result depends on; whose it is (the tenant) is a
    key of its own next to it, see test_tenant_isolation."""
    from bastion.dedup import fingerprint
    from bastion.policy.lists import CompiledLists
    from bastion.policy.model import Lists

    lists = CompiledLists(Lists(), "none")
    one, two = default_policy(), default_policy()
    assert fingerprint.scope(one, lists, "m") == fingerprint.scope(two, lists, "m")
    other = parse_policy(NSFW_ONLY)
    assert fingerprint.scope(one, lists, "m") != fingerprint.scope(other, lists, "m")
    assert fingerprint.scope(one, lists, "m") != fingerprint.scope(one, lists, "n")
