"""Benchmark of the ``ray`` runtime backend against the in-process one, side by side.

One run, the ``nsfw`` analyzer only (open_nsfw + image-safety-classifier-s), N distinct
JPEGs moderated JPEG-in → labels-out through the engine (decode, preprocess, model,
policy; no result cache), on one local Ray (loopback, ``--cpus`` CPUs):
  (a) in process (``runtime.backend: local``), 1 client: the baseline;
  (b) Ray Serve, 1 replica with every CPU, 1 client: (b) − (a) per image is what the
      backend costs a lone request;
  (c) in process, C concurrent clients;
  (d) Ray Serve, 1 replica with every CPU, C clients;
  (e) Ray Serve, 2 replicas with half the CPUs each, C clients;
and the bare round trip of one preprocessed item through each runner (the in-process
batcher vs the deployment handle), sequentially, for the handle's own overhead.
Batch sizes are what the replicas report (``AnalyzerReplica.stats``) and, in process,
the engine's batch-size histogram.

    .venv/bin/python -m bench.bench_ray [--images 64] [--concurrency 16] [--cpus 2] [--wait-ms 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.settings import make_settings

from bastion.analyzers.nsfw import NsfwConfig
from bastion.media.types import Frame
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.policy.model import Policy
from bastion.runtime.config import RayConfig, RayDeployment, RuntimeConfig
from bench.common import HEADER, Stats, images, machine

POLICY = Policy(name="bench", analyzers=["nsfw"])


def ray_runtime(prefix: str, replicas: int, cpus: int, batch: int, wait_ms: float) -> RuntimeConfig:
    deployment = RayDeployment(
        num_replicas=replicas,
        num_cpus=cpus / replicas,
        max_batch_size=batch,
        batch_wait_timeout_s=wait_ms / 1000,
        max_ongoing_requests=2 * batch,
    )
    return RuntimeConfig(
        backend="ray", ray=RayConfig(app_prefix=prefix, default=deployment, request_timeout_s=120)
    )


async def moderate(engine: Engine, datas: list[bytes], concurrency: int, name: str) -> Stats:
    """Every image through a fresh Moderation (no cached results) with ``concurrency``
    clients."""
    moderation = Moderation(engine)
    queue = list(datas)
    lat: list[float] = []

    async def client() -> None:
        while queue:
            data = queue.pop()
            t0 = time.perf_counter()
            result = await moderation.moderate_bytes(data, POLICY)
            assert not result.errors, result.errors
            lat.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Stats(name, len(datas), time.perf_counter() - t0, lat)


async def round_trip_ms(engine: Engine, frame: Frame, n: int = 50) -> float:
    """Median ms of one preprocessed item through the engine's nsfw runner, sequentially."""
    analyzer = engine.analyzers["nsfw"]
    prepared = analyzer.preprocess(frame)
    runner = engine.batchers()["nsfw"]
    for _ in range(3):
        await runner.submit(prepared)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await runner.submit(prepared)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def sizes_text(sizes: list[int]) -> str:
    if not sizes:
        return "—"
    counts = Counter(sizes)
    top = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[0])[:4])
    return f"mean {statistics.fmean(sizes):.1f}, max {max(sizes)} ({top})"


async def replica_sizes(engine: Engine) -> tuple[list[int], int]:
    models = engine._ray
    assert models is not None
    stats = await models.replica_stats("nsfw", calls=12)
    return [s for r in stats.values() for s in r["batch_sizes"]], len(stats)


async def reset(engine: Engine) -> None:
    models = engine._ray
    assert models is not None
    await models.reset_stats("nsfw", calls=12)


def local_sizes(engine: Engine) -> list[int]:
    """Batch sizes from the in-process histogram, as (upper bucket) counts."""
    out: list[int] = []
    for metric in engine.metrics.batch_size.collect():
        prev = 0.0
        for sample in metric.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("model") == "nsfw":
                le = sample.labels["le"]
                if le == "+Inf":
                    continue
                out += [int(float(le))] * int(sample.value - prev)
                prev = sample.value
    return out


async def main(args: argparse.Namespace) -> None:
    import ray

    try:
        await run(args)
    finally:
        ray.shutdown()  # the local Ray this benchmark started


async def run(args: argparse.Namespace) -> None:
    from bastion.runtime.ray_serve import start_local_ray

    datas = images(args.images)
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    t0 = time.perf_counter()
    local_ray = start_local_ray(num_cpus=args.cpus)
    print(f"local Ray at {local_ray.gcs_address} in {time.perf_counter() - t0:.1f} s")
    analyzers = [NsfwConfig(max_batch_size=args.batch, max_wait_ms=args.wait_ms)]

    local = Engine(make_settings(root / "local", analyzers=analyzers))
    assert not local.load_all()
    frame = (await Moderation(local).decode(datas[0])).frames[0]
    notes: list[str] = []

    await moderate(local, datas[:4], 1, "warm-up")
    a = await moderate(local, datas, 1, "(a) in process, 1 client (baseline)")
    rt_local = await round_trip_ms(local, frame)
    before = local_sizes(local)
    c = await moderate(
        local, datas, args.concurrency, f"(c) in process, {args.concurrency} clients"
    )
    c_sizes = local_sizes(local)[len(before) :]
    await local.close()

    async def deployed(replicas: int) -> Engine:
        t0 = time.perf_counter()
        runtime = ray_runtime(f"bench{replicas}-", replicas, args.cpus, args.batch, args.wait_ms)
        settings = make_settings(root / f"ray{replicas}", analyzers=analyzers, runtime=runtime)
        engine = Engine(settings)
        errors = await asyncio.to_thread(engine.load_all)
        assert not errors, errors
        notes.append(f"deploy {replicas} replica(s): {time.perf_counter() - t0:.1f} s")
        await moderate(engine, datas[:4], 1, "warm-up")
        return engine

    async def removed(engine: Engine) -> None:
        models: Any = engine._ray
        await asyncio.to_thread(models.delete, "nsfw")
        await engine.close()

    one = await deployed(1)
    b = await moderate(one, datas, 1, "(b) Ray Serve, 1 replica, 1 client")
    rt_ray = await round_trip_ms(one, frame)
    await reset(one)
    d = await moderate(
        one, datas, args.concurrency, f"(d) Ray Serve, 1 replica, {args.concurrency} clients"
    )
    d_sizes, _ = await replica_sizes(one)
    await removed(one)  # its CPUs go to the two replicas next
    two = await deployed(2)
    await reset(two)
    e = await moderate(
        two, datas, args.concurrency, f"(e) Ray Serve, 2 replicas, {args.concurrency} clients"
    )
    e_sizes, e_replicas = await replica_sizes(two)
    await removed(two)
    rows = [a, b, c, d, e]

    print(f"\nMachine: {machine()}; local Ray with {args.cpus} CPUs; {args.images} JPEGs\n")
    print(HEADER)
    for row in rows:
        print(row.row(a))
    print()
    per_image = b.pct(50) - a.pct(50)
    print(f"- per-request overhead (p50 (b) − (a)): {per_image:.1f} ms")
    print(
        f"- round trip of one preprocessed item: in-process batcher {rt_local:.1f} ms, "
        f"Ray Serve handle {rt_ray:.1f} ms (+{rt_ray - rt_local:.1f} ms)"
    )
    print(f"- batch sizes (c) in process: {sizes_text(c_sizes)} (histogram bucket bounds)")
    print(f"- batch sizes (d) 1 replica: {sizes_text(d_sizes)}")
    print(f"- batch sizes (e) {e_replicas} replicas: {sizes_text(e_sizes)}")
    print(f"- ratios: (d)/(c) {d.rate / c.rate:.2f}×, (e)/(d) {e.rate / d.rate:.2f}×")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--wait-ms", type=float, default=4.0, help="replicas' batch wait")
    asyncio.run(main(parser.parse_args()))
