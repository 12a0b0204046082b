"""Hostile animations: many tiny frames on a huge canvas are refused before they are walked.

A GIF of 9,999 one-pixel frames on a 2000×2000 canvas is 230 KB but 40 billion pixels
of compositing. The files are built block by block (:mod:`tests.support.animations`:
frames Pillow encoded, put together in their thousands; Pillow itself would take
minutes to encode them) as GIF, APNG, animated WebP and multi-page TIFF with 2,000 to
20,000 frames on canvases of 500 to 4,000 pixels, plus single-frame files with huge
canvases. Each is sent to ``POST /v1/moderate`` and ``POST /v1/jobs`` while
:func:`tests.support.hostile.responsive` checks that the server keeps answering, and
must be refused with a 4xx and a stable code within about a second; an ordinary
animation is still moderated.
"""

from __future__ import annotations

import asyncio
import io
import struct
import time
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from bastion.jobs.config import JobsConfig
from bastion.pipeline.engine import Engine
from tests.support.animations import (
    BUILDERS,
    apng_animation,
    gif_animation,
    pillow_bytes,
    tiff_pages,
    webp_animation,
)
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.hostile import responsive
from tests.support.settings import make_settings

pytestmark = pytest.mark.models
# each refusal must come this fast (the budgets are checked before any frame is decoded)
REFUSAL_S = 2.0


# ---- the animation builders --------------------------------------------------------------


def test_the_builders_make_animations_pillow_reads() -> None:
    for name, build in BUILDERS.items():
        data = build(40, 64)
        with Image.open(io.BytesIO(data)) as img:
            assert getattr(img, "n_frames", 1) == 40, name
            assert img.size == (64, 64), name
            img.seek(39)
            img.load()
    with Image.open(io.BytesIO(tiff_pages(5, 3))) as img:
        assert getattr(img, "n_frames", 1) == 5
        img.seek(4)
        assert np.asarray(img).shape == (3, 3)


# ---- through the API ---------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("hostile-media"), jobs=JobsConfig(poll_s=0.05, lease_s=5)
    )
    async with running(settings, engine) as api:
        yield api.client


async def refused_sync(c: httpx.AsyncClient, data: bytes, codes: set[str]) -> None:
    started = time.perf_counter()
    r = await c.post("/v1/moderate", content=data, headers={**AUTH, "Content-Type": "image/gif"})
    took = time.perf_counter() - started
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"] in codes, r.text
    assert took < REFUSAL_S, f"refused after {took:.2f} s"


async def refused_job(c: httpx.AsyncClient, data: bytes, codes: set[str]) -> None:
    started = time.perf_counter()
    r = await c.post("/v1/jobs", content=data, headers={**AUTH, "Content-Type": "image/gif"})
    if 400 <= r.status_code < 500:  # refused at upload
        assert r.json()["error"]["code"] in codes, r.text
        return
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    while True:
        job = (await c.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
        if job["status"] in {"succeeded", "failed"}:
            break
        assert time.perf_counter() - started < 30, job
        await asyncio.sleep(0.02)
    took = time.perf_counter() - started
    assert job["status"] == "failed" and job["error"]["code"] in codes, job
    assert job["attempts"] == 1  # the input is at fault: not retried
    assert took < REFUSAL_S + 1.0, f"the job failed after {took:.2f} s"


TOO_MUCH = {"animation_too_large", "media_too_large", "image_too_large"}


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
@pytest.mark.parametrize(
    ("frames", "canvas"), [(2_000, 500), (5_000, 1_000), (9_999, 2_000), (20_000, 4_000)]
)
async def test_many_tiny_frames_on_a_large_canvas_are_refused(
    client: httpx.AsyncClient, fmt: str, frames: int, canvas: int
) -> None:
    data = BUILDERS[fmt](frames, canvas)
    assert len(data) < 2_000_000
    expected = {"media_too_large"} if frames > 10_000 else {"animation_too_large"}
    async with responsive(client):
        await refused_sync(client, data, expected)
        await refused_job(client, data, expected)


@pytest.mark.parametrize("pages", [1_500, 5_000, 9_999, 12_000, 20_000])
async def test_tiff_with_thousands_of_pages(client: httpx.AsyncClient, pages: int) -> None:
    data = tiff_pages(pages)
    async with responsive(client):
        if pages > 2_000:  # reaching the last page parses every directory before it
            codes = {"media_too_large" if pages > 10_000 else "animation_too_large"}
            await refused_sync(client, data, codes)
            await refused_job(client, data, codes)
            return
        started = time.perf_counter()  # tiny pages, only the sampled ones decoded
        r = await client.post("/v1/moderate", content=data, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["media"]["frames"] == pages
        assert time.perf_counter() - started < 10


def _huge_canvases() -> list[tuple[str, bytes]]:
    grown = bytearray(gif_animation(1, 10))  # a 10×10 screen whose frame sits at x=60000
    at = grown.index(b"!\xf9\x04\x04\x02\x00\x00\x00,") + 8  # the image descriptor
    grown[at + 1 : at + 3] = struct.pack("<H", 60_000)
    return [
        ("gif-screen", gif_animation(1, (65_535, 65_535))),
        ("gif-frame-past-the-screen", bytes(grown)),
        ("gif-2-frames", gif_animation(2, (20_000, 20_000))),
        ("apng-wide", apng_animation(2, (30_000, 3))),
        ("webp-canvas", webp_animation(2, (16_000, 16_000))),
    ]


@pytest.mark.parametrize(("name", "data"), _huge_canvases(), ids=[n for n, _ in _huge_canvases()])
async def test_huge_canvases_are_refused(client: httpx.AsyncClient, name: str, data: bytes) -> None:
    async with responsive(client):
        await refused_sync(client, data, TOO_MUCH)
        await refused_job(client, data, TOO_MUCH)


@pytest.mark.parametrize(("frames", "canvas"), [(20, 8_000), (4, 8_000), (401, 1_000)])
async def test_large_canvas_times_few_frames_is_refused(
    client: httpx.AsyncClient, frames: int, canvas: int
) -> None:
    """Under the frame limit and the pixel limit per frame, over the work limit."""
    data = gif_animation(frames, canvas)
    async with responsive(client):
        await refused_sync(client, data, {"animation_too_large", "image_too_large"})


async def test_apng_declaring_millions_of_frames_is_refused(client: httpx.AsyncClient) -> None:
    data = apng_animation(3, 100, declared=2_000_000_000)
    async with responsive(client):
        await refused_sync(client, data, {"media_too_large"})


async def test_ordinary_animations_are_still_moderated(client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(7)
    frames = [Image.fromarray(rng.integers(0, 255, (120, 160, 3), np.uint8)) for _ in range(12)]
    for fmt, options in [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})]:
        data = pillow_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
        r = await client.post("/v1/moderate", content=data, headers=AUTH)
        assert r.status_code == 200, (fmt, r.text)
        media = r.json()["media"]
        assert media["frames"] == 12 and media["frames_analyzed"] == 8, fmt


@pytest.mark.parametrize(
    ("fmt", "frames", "canvas"),
    [("gif", 1_500, 200), ("apng", 900, 300), ("webp", 900, 300)],
)
async def test_animations_just_under_the_budget_keep_the_server_responsive(
    client: httpx.AsyncClient, fmt: str, frames: int, canvas: int
) -> None:
    """The most work an animation may cost is done off the event loop (analysed by the
    cheap hashes analyzer alone, so that the walk is what is measured)."""
    policy = "name: hashes-only\nanalyzers: [hashes]\n"
    yaml = {**AUTH, "Content-Type": "application/yaml"}
    assert (await client.put("/v1/policies/hashes-only", content=policy, headers=yaml)).is_success
    data = BUILDERS[fmt](frames, canvas)  # about 50-90 M pixels of work
    async with responsive(client):
        started = time.perf_counter()
        r = await client.post("/v1/moderate?policy=hashes-only", content=data, headers=AUTH)
        took = time.perf_counter() - started
    assert r.status_code == 200, r.text
    assert r.json()["media"]["frames"] == frames
    assert took < 5


def test_builders_stay_small() -> None:
    """The hostile files are small: the attack is work, not bytes."""
    assert len(gif_animation(9_999, 2_000)) < 400_000
    assert len(webp_animation(9_999, 2_000)) < 1_000_000
    assert len(apng_animation(9_999, 2_000)) < 1_000_000
