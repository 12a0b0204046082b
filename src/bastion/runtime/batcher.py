"""Dynamic batching: concurrent callers' items are gathered and run as one model call.

A :class:`DynamicBatcher` owns one queue per model. Callers ``await submit(item)``;
a single collector task takes the first waiting item, then keeps taking items until
``max_batch_size`` is reached or ``max_wait_ms`` has passed, runs the batch function
in a worker thread (the model releases the GIL) and answers each caller with its own
result. At most ``concurrency`` batches per model run at a time (one by default), so the
next batch fills while the running ones compute, which is what makes batching pay off
under load. More than one suits sessions on one thread each: two single-threaded batches
side by side do the work of one two-threaded batch without the cost of keeping its
threads in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from bastion.runtime.metrics import Metrics

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch_size: int = 16
    max_wait_ms: float = 4.0
    max_queue: int = 4096
    concurrency: int = 1


class DynamicBatcher(Generic[T, R]):
    """Gathers items from concurrent callers into batches for ``fn``."""

    def __init__(
        self,
        name: str,
        fn: Callable[[Sequence[T]], list[R]],
        policy: BatchPolicy,
        executor: Executor | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self._fn = fn
        self._policy = policy
        self._executor = executor
        self._metrics = metrics
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue else 0

    def _ensure_started(self) -> asyncio.Queue[tuple[T, asyncio.Future[R]]]:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue(self._policy.max_queue)
            self._task = asyncio.get_running_loop().create_task(
                self._collect(self._queue), name=f"batcher-{self.name}"
            )
        return self._queue

    async def submit(self, item: T) -> R:
        queue = self._ensure_started()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await queue.put((item, fut))
        self._gauge()
        return await fut

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        return list(await asyncio.gather(*(self.submit(i) for i in items)))

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.name).set(self.depth)

    async def _collect(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(max(1, self._policy.concurrency))
        while True:
            await slots.acquire()  # a free slot first: items keep joining the next batch
            try:
                first = await queue.get()
            except BaseException:
                slots.release()
                raise
            batch = [first]
            deadline = loop.time() + self._policy.max_wait_ms / 1000.0
            while len(batch) < self._policy.max_batch_size:
                # take whatever is already waiting without yielding first
                with contextlib.suppress(asyncio.QueueEmpty):
                    while len(batch) < self._policy.max_batch_size:
                        batch.append(queue.get_nowait())
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            self._gauge()
            task = loop.create_task(self._run(batch), name=f"batch-{self.name}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        live = [(item, fut) for item, fut in batch if not fut.done()]
        if not live:
            return
        items = [item for item, _ in live]
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._fn, items
            )
            if len(results) != len(items):
                raise RuntimeError(
                    f"{self.name}: batch function returned {len(results)} results "
                    f"for {len(items)} inputs"
                )
        except Exception as exc:  # every caller of a failed batch gets the error
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            if self._metrics is not None:
                self._metrics.batch_size.labels(self.name).observe(len(items))
                self._metrics.batch_latency.labels(self.name).observe(time.perf_counter() - started)
        for (_, fut), res in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(res)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
