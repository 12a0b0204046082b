"""A bounded hand-off of items from a worker thread to an asyncio consumer.

The thread does not wait: when the consumer is slow and the buffer is full, the oldest
item is dropped (and counted), so memory stays bounded and the freshest item wins,
which is what live moderation wants. (A source that loses nothing by waiting, such as
a file read as fast as it decodes, may ask to wait for room instead.) The consumer
awaits items on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["LatestQueue"]

T = TypeVar("T")


class LatestQueue(Generic[T]):
    """Holds at most ``size`` items; :meth:`put` from any thread, :meth:`get` on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._items: deque[T] = deque()
        self._size = size
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def _wake(self) -> None:
        # a closed loop raises RuntimeError: nobody is waiting any more
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._ready.set)

    def put(self, item: T, *, wait: threading.Event | None = None) -> bool:
        """Queue ``item``; False when the oldest item had to be dropped for it.

        With ``wait``, a full queue makes the caller wait for room instead (until that
        event is set): for sources that lose nothing by waiting, such as files.
        """
        with self._lock:
            if self._closed:
                return True
            while wait is not None and len(self._items) >= self._size and not wait.is_set():
                self._room.wait(0.1)
            dropped = len(self._items) >= self._size
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
        self._wake()
        return not dropped

    def close(self) -> None:
        """No more items will come; :meth:`get` returns None once the queue is empty."""
        with self._lock:
            self._closed = True
        self._wake()

    async def get(self) -> T | None:
        """The oldest queued item, waiting for one; None once closed and empty."""
        while True:
            with self._lock:
                if self._items:
                    self._room.notify()
                    return self._items.popleft()
                if self._closed:
                    return None
                self._ready.clear()
            await self._ready.wait()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
