"""Result cache by content: identical bytes under the same policy are analysed once.

Concurrent requests for the same key coalesce onto the one analysis in flight, also
with a capacity of 0 (which keeps no finished results). Whatever must not share a
result has to differ in the key: the engine puts the tenant in it, so neither finished
results nor analyses in flight are ever shared between tenants.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class ResultCache(Generic[V]):
    """A bounded LRU of finished results plus the analyses in flight."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._done: OrderedDict[str, V] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[V]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._done)

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """The cached value and True, or the computed value and False."""
        if key in self._done:
            self._done.move_to_end(key)
            self.hits += 1
            return self._done[key], True
        pending = self._inflight.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending), True
        self.misses += 1
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            value = await compute()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(value)
        if self.capacity > 0:
            self._done[key] = value
            if len(self._done) > self.capacity:
                self._done.popitem(last=False)
        return value, False

    def clear(self) -> None:
        self._done.clear()
