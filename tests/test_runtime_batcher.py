"""The dynamic batcher gathers concurrent callers into one model call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from bastion.pipeline.cache import ResultCache
from bastion.runtime.batcher import BatchPolicy, DynamicBatcher
from bastion.runtime.metrics import Metrics


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
