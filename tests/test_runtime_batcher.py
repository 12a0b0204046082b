"""The dynamic batcher gathers concurrent callers into one model call."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bastion.pipeline.cache import ResultCache
from bastion.pipeline.engine import Engine
from bastion.runtime.batcher import BatchPolicy, DynamicBatcher
from bastion.runtime.config import RuntimeConfig
from bastion.runtime.metrics import Metrics
from tests.support.settings import make_settings


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, batch: Sequence[int]) -> list[int]:
        with self.lock:
            self.calls.append(list(batch))
        time.sleep(self.delay)
        return [x * 10 for x in batch]


async def test_concurrent_callers_share_batches_and_get_their_own_answers() -> None:
    rec = Recorder(delay=0.02)
    b = DynamicBatcher("m", rec, BatchPolicy(max_batch_size=8, max_wait_ms=20), metrics=Metrics())
    results = await asyncio.gather(*(b.submit(i) for i in range(32)))
    assert results == [i * 10 for i in range(32)]
    assert max(len(c) for c in rec.calls) == 8
    assert len(rec.calls) <= 6  # 32 items in batches of up to 8, not 32 calls
    await b.close()


class Overlap:
    """A batch function that records how many of its calls ran at the same time."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.calls = 0

    def __call__(self, batch: Sequence[int]) -> list[int]:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        return [x + 1 for x in batch]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
async def test_at_most_concurrency_batches_run_at_once(concurrency: int) -> None:
    fn = Overlap(delay=0.05)
    pool = ThreadPoolExecutor(4)
    b = DynamicBatcher(
        "m", fn, BatchPolicy(max_batch_size=2, max_wait_ms=0, concurrency=concurrency), pool
    )
    results = await asyncio.gather(*(b.submit(i) for i in range(24)))
    assert results == [i + 1 for i in range(24)]
    assert fn.most == concurrency  # enough waiting work to fill every slot, never more
    assert fn.calls >= 24 // 2
    await b.close()
    pool.shutdown()


async def test_items_keep_joining_the_next_batch_while_every_slot_is_busy() -> None:
    rec = Recorder(delay=0.1)
    b = DynamicBatcher("m", rec, BatchPolicy(max_batch_size=16, max_wait_ms=0, concurrency=1))
    first = asyncio.ensure_future(b.submit(0))
    await asyncio.sleep(0.03)  # the first batch ([0]) is running
    rest = await asyncio.gather(*(b.submit(i) for i in range(1, 9)))
    assert await first == 0 and rest == [i * 10 for i in range(1, 9)]
    assert rec.calls == [[0], list(range(1, 9))]
    await b.close()


async def test_close_cancels_the_batches_in_flight() -> None:
    fn = Overlap(delay=0.2)
    b = DynamicBatcher("m", fn, BatchPolicy(max_batch_size=1, max_wait_ms=0, concurrency=2))
    calls = [asyncio.ensure_future(b.submit(i)) for i in range(2)]
    await asyncio.sleep(0.05)
    await b.close()
    assert not b._running
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)


async def test_single_caller_waits_at_most_max_wait() -> None:
    rec = Recorder()
    b = DynamicBatcher("m", rec, BatchPolicy(max_batch_size=64, max_wait_ms=30))
    t0 = time.perf_counter()
    assert await b.submit(3) == 30
    assert time.perf_counter() - t0 < 0.5
    assert rec.calls == [[3]]
    await b.close()


async def test_a_failing_batch_fails_its_callers_and_the_batcher_survives() -> None:
    def boom(batch: Sequence[int]) -> list[int]:
        if 13 in batch:
            raise ValueError("bad item")
        return list(batch)

    b = DynamicBatcher("m", boom, BatchPolicy(max_batch_size=1, max_wait_ms=0))
    with pytest.raises(ValueError, match="bad item"):
        await b.submit(13)
    assert await b.submit(1) == 1
    await b.close()


async def test_wrong_result_count_is_an_error() -> None:
    b: DynamicBatcher[int, int] = DynamicBatcher("m", lambda batch: [], BatchPolicy())
    with pytest.raises(RuntimeError, match="returned 0 results"):
        await b.submit(1)
    await b.close()


async def test_batch_size_metric_is_recorded() -> None:
    metrics = Metrics()
    b = DynamicBatcher(
        "mm", Recorder(), BatchPolicy(max_batch_size=4, max_wait_ms=10), metrics=metrics
    )
    await asyncio.gather(*(b.submit(i) for i in range(4)))
    count = metrics.registry.get_sample_value("bastion_batch_size_count", {"model": "mm"})
    assert count is not None and count >= 1
    await b.close()


async def test_cache_coalesces_concurrent_duplicates() -> None:
    cache: ResultCache[int] = ResultCache(8)
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    got = await asyncio.gather(*(cache.get_or_compute("k", compute) for _ in range(10)))
    assert calls == 1
    assert [v for v, _ in got] == [42] * 10
    assert sum(1 for _, cached in got if not cached) == 1
    assert (await cache.get_or_compute("k", compute)) == (42, True)


async def test_cache_is_bounded_and_does_not_keep_errors() -> None:
    cache: ResultCache[int] = ResultCache(2)

    async def fail() -> int:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await cache.get_or_compute("bad", fail)
    for k in "abc":
        await cache.get_or_compute(k, lambda: asyncio.sleep(0, 1))
    assert len(cache) == 2
    assert (await cache.get_or_compute("bad", lambda: asyncio.sleep(0, 7))) == (7, False)


@pytest.mark.parametrize(
    ("threads", "concurrency", "expected"),
    [(0, 0, 1), (1, 0, 4), (2, 0, 2), (3, 0, 1), (1, 3, 3), (0, 2, 2)],
)
def test_batch_concurrency_follows_the_thread_layout(
    monkeypatch: pytest.MonkeyPatch, threads: int, concurrency: int, expected: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    runtime = RuntimeConfig(intra_op_threads=threads, batch_concurrency=concurrency)
    assert runtime.concurrency() == expected


async def test_only_analyzers_that_allow_it_get_parallel_batches(tmp_path: Path) -> None:
    engine = Engine(make_settings(tmp_path, runtime={"batch_concurrency": 3}))
    try:
        slots = {
            name: loaded.batcher._policy.concurrency  # type: ignore[attr-defined]
            for name, loaded in engine._loaded.items()
        }
        parallel = {n for n, a in engine.analyzers.items() if a.parallel_batches}
        assert {"ocr", "nsfw", "labels", "codes", "faces", "hashes"} <= parallel
        assert parallel != set(engine.analyzers)  # some keep one batch at a time
        assert slots == {n: 3 if n in parallel else 1 for n in engine.analyzers}
    finally:
        await engine.close()
