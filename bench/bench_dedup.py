"""Benchmark of result de-duplication through the API on this machine.

One `bastion up` server with near-duplicate reuse on (PDQ distance ≤ 8) and the
in-memory result cache off, so every reuse below is answered from the database.
One run measures, side by side:
  (a) fresh analysis: N distinct JPEGs (default policy), C concurrent clients;
  (b) exact duplicates: the same N byte strings again (stored results);
  (c) near duplicates: each image resized to 90% and re-encoded at quality 75.
(b)/(a) and (c)/(a) are the speed-ups of reuse over analysis.

    .venv/bin/python -m bench.bench_dedup [--images 48] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from tests.support.media import encode

from bench.common import BENCH_KEY, HEADER, Stats, images, machine, server


async def post_all(
    base: str, datas: list[bytes], concurrency: int, name: str
) -> tuple[Stats, list[dict[str, Any]]]:
    """POST every image to /v1/moderate with ``concurrency`` clients; stats and bodies."""
    headers = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "image/jpeg"}
    lat: list[float] = []
    bodies: list[dict[str, Any]] = []
    queue = list(datas)
    async with httpx.AsyncClient(
        base_url=base, timeout=300, limits=httpx.Limits(max_connections=concurrency)
    ) as c:

        async def worker() -> None:
            while queue:
                d = queue.pop()
                t0 = time.perf_counter()
                r = await c.post("/v1/moderate", content=d, headers=headers)
                r.raise_for_status()
                lat.append((time.perf_counter() - t0) * 1000)
                bodies.append({**r.json(), "_ms": lat[-1]})

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Stats(name, len(datas), time.perf_counter() - t0, lat), bodies


def near_copy(data: bytes, scale: float = 0.9, quality: int = 75) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        return encode(
            np.asarray(rgb.resize(size, Image.Resampling.LANCZOS)), "JPEG", quality=quality
        )


def noise(count: int, side: int) -> list[bytes]:
    """Warm-up images that are no near duplicate of any photo."""
    rng = np.random.default_rng(11)
    return [
        encode(rng.integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8), "JPEG")
        for _ in range(count)
    ]


def reused(bodies: list[dict[str, Any]]) -> tuple[int, int]:
    """(results marked cached, of which reused from a near duplicate)."""
    cached = sum(1 for b in bodies if b["cached"])
    near = sum(1 for b in bodies if b.get("near_duplicate_of"))
    return cached, near


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--side", type=int, default=640, help="image size (longest side)")
    args = ap.parse_args()
    datas = images(args.images, args.side)
    nears = [near_copy(d) for d in datas]
    env = {"BASTION_DEDUP__NEAR_DUPLICATE_MAX_DISTANCE": "8"}
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp) / "data", env) as base:

        def run(batch: list[bytes], name: str) -> tuple[Stats, list[dict[str, Any]]]:
            return asyncio.run(post_all(base, batch, args.concurrency, name))

        run(noise(8, args.side), "warm-up")
        fresh, fresh_bodies = run(datas, f"(a) fresh analysis, {args.concurrency} clients")
        exact, exact_bodies = run(datas, "(b) exact duplicates (stored results)")
        near, near_bodies = run(nears, "(c) near duplicates: 90% size, JPEG q75")
    print(f"machine: {machine()}")
    print(
        f"images: {args.images} distinct JPEGs, longest side {args.side}px, default policy, "
        "in-memory result cache off (reuse comes from the database), "
        "near-duplicate distance ≤ 8\n"
    )
    print(HEADER)
    for stats in (fresh, exact, near):
        print(stats.row(fresh))
    print()
    for label, bodies in (("(a)", fresh_bodies), ("(b)", exact_bodies), ("(c)", near_bodies)):
        cached, from_near = reused(bodies)
        print(f"{label}: {cached}/{len(bodies)} cached, {from_near} of them near duplicates")
    hits = [b for b in near_bodies if b.get("near_duplicate_of")]
    if hits:
        distances = sorted(b["near_duplicate_of"]["distance"] for b in hits)
        ms = [b["_ms"] for b in hits]
        print(
            f"(c) the {len(hits)} hits alone: p50 {np.percentile(ms, 50):.0f} ms, "
            f"p95 {np.percentile(ms, 95):.0f} ms; PDQ distance median "
            f"{distances[len(distances) // 2]}, max {distances[-1]}"
        )
    print(f"\n(b)/(a) = {exact.rate / fresh.rate:.1f}×; (c)/(a) = {near.rate / fresh.rate:.1f}×")


if __name__ == "__main__":
    main()
