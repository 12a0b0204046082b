"""Hostile animations: many tiny frames on a huge canvas are refused before they are walked.

A GIF of 9,999 one-pixel frames on a 2000×2000 canvas is 230 KB but 40 billion pixels
of compositing. The files here are built block by block (frames Pillow encoded, put
together in their thousands; Pillow itself would take minutes to encode them) as GIF,
APNG, animated WebP and multi-page TIFF with 2,000 to 20,000 frames on canvases of 500
to 4,000 pixels, plus single-frame files with huge canvases. Each is sent to
``POST /v1/moderate`` and ``POST /v1/jobs`` while :func:`tests.hostile.responsive`
checks that the server keeps answering, and must be refused with a 4xx and a stable
code within about a second; an ordinary animation is still moderated.
"""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from bastion.api.app import create_app
from bastion.jobs.config import JobsConfig
from bastion.pipeline.engine import Engine
from tests.conftest import ADMIN_KEY, make_settings
from tests.hostile import responsive

pytestmark = pytest.mark.models
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
# each refusal must come this fast (the budgets are checked before any frame is decoded)
REFUSAL_S = 2.0


# ---- building animations block by block ------------------------------------------------


def _pillow_bytes(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _tile_positions(count: int, canvas: int, tile: int, step: int = 1) -> list[tuple[int, int]]:
    span = max(1, (canvas - tile) // step + 1)
    return [(((i * 7) % span) * step, ((i * 13) % span) * step) for i in range(count)]


def gif_animation(
    count: int, canvas: int | tuple[int, int], tile: int = 1, *, local_palettes: bool = True
) -> bytes:
    """A GIF of ``count`` frames of ``tile`` pixels on a side, spread over the canvas.

    With ``local_palettes`` every frame brings a colour table of its own (as the GIFs
    of many tools do), which makes Pillow composite in RGB: its slowest path.
    """
    width, height = (canvas, canvas) if isinstance(canvas, int) else canvas
    one = _pillow_bytes(Image.new("L", (tile, tile), 1), "GIF")
    pos = 13 + ((3 << ((one[10] & 7) + 1)) if one[10] & 0x80 else 0)
    while one[pos] == 0x21:  # skip extensions up to the image descriptor
        pos += 2
        while one[pos]:
            pos += one[pos] + 1
        pos += 1
    flags = one[pos + 9]
    local = one[pos + 10 : pos + 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)]
    image_data = one[pos + 10 + len(local) : -1]  # LZW code size and sub-blocks
    palette = bytes(range(256)) * 3 if not local else b""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7 if palette else 0, 0, 0))
    out += bytes(b for i in range(256) for b in (i, i, i)) if palette else b""
    out += b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    if local_palettes and not local:  # two colours: black, and green for the tile
        flags, local = flags | 0x80, b"\x00\x00\x00\x00\xff\x00"
    for x, y in _tile_positions(count, min(width, height), tile):
        out += b"!\xf9\x04\x04\x02\x00\x00\x00"  # keep the frame, 20 ms
        out += b"," + struct.pack("<HHHHB", x, y, tile, tile, flags) + local + image_data
    return bytes(out + b";")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def apng_animation(count: int, canvas: int | tuple[int, int], declared: int | None = None) -> bytes:
    """An APNG: a blank grey canvas, then ``count - 1`` one-pixel frames drawn over it."""
    width, height = (canvas, canvas) if isinstance(canvas, int) else canvas
    rows = zlib.compressobj(9)
    blank = b"".join(rows.compress(bytes(width + 1)) for _ in range(height)) + rows.flush()

    def fctl(seq: int, w: int, h: int, x: int, y: int) -> bytes:
        return _png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, w, h, x, y, 2, 100, 0, 0))

    out = bytearray(b"\x89PNG\r\n\x1a\n")
    out += _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    out += _png_chunk(b"acTL", struct.pack(">II", declared or count, 0))
    out += fctl(0, width, height, 0, 0) + _png_chunk(b"IDAT", blank)
    pixel = zlib.compress(b"\x00\xff")
    seq = 1
    for x, y in _tile_positions(count - 1, min(width, height), 1):
        out += fctl(seq, 1, 1, x, y) + _png_chunk(b"fdAT", struct.pack(">I", seq + 1) + pixel)
        seq += 2
    return bytes(out + _png_chunk(b"IEND", b""))


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def webp_animation(count: int, canvas: int | tuple[int, int]) -> bytes:
    """An animated WebP of ``count`` 2×2 lossless frames spread over the canvas."""
    width, height = (canvas, canvas) if isinstance(canvas, int) else canvas
    still = _pillow_bytes(Image.new("RGB", (2, 2), (255, 0, 0)), "WEBP", lossless=True)
    bitstream = still[12:]  # the VP8L chunk
    assert bitstream[:4] == b"VP8L"

    def u24(value: int) -> bytes:
        return value.to_bytes(3, "little")

    body = _riff_chunk(b"VP8X", bytes([0x02, 0, 0, 0]) + u24(width - 1) + u24(height - 1))
    body += _riff_chunk(b"ANIM", b"\xff\xff\xff\xff\x00\x00")
    frames = []
    for x, y in _tile_positions(count, min(width, height), 2, step=2):
        header = u24(x // 2) + u24(y // 2) + u24(1) + u24(1) + u24(20) + b"\x00"
        frames.append(_riff_chunk(b"ANMF", header + bitstream))
    body += b"".join(frames)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def tiff_pages(count: int, side: int = 1) -> bytes:
    """A little-endian TIFF of ``count`` uncompressed grey pages of ``side`` pixels."""
    pixels = bytes(side * side)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for i in range(count):
        ifd_at = len(out)
        data_at = ifd_at + 2 + 8 * 12 + 4
        entries = [
            (256, 4, side),  # width
            (257, 4, side),  # length
            (258, 3, 8),  # bits per sample
            (259, 3, 1),  # no compression
            (262, 3, 1),  # black is zero
            (273, 4, data_at),  # strip offset
            (278, 4, side),  # rows per strip
            (279, 4, len(pixels)),  # strip byte count
        ]
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            out += struct.pack("<HHII", tag, kind, 1, value)
        following = data_at + len(pixels) if i + 1 < count else 0
        out += struct.pack("<I", following) + pixels
    return bytes(out)


Builder = Callable[[int, int], bytes]
BUILDERS: dict[str, Builder] = {
    "gif": gif_animation,
    "apng": apng_animation,
    "webp": webp_animation,
}


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
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bastion") as c:
            yield c


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
        data = _pillow_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
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
