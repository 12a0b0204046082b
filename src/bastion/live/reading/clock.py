"""Stream time of a live source: its presentation times, made monotonic across reconnections.

Within a connection, stream time advances with the frames' presentation timestamps.
A new connection (or a source that restarts its clock, or jumps far ahead) continues
from the last stream time plus the wall-clock time that passed meanwhile, so stream
time never goes backwards and a gap in the stream is a gap in stream time too.
Frames without a timestamp advance with the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["StreamClock"]

# A forward jump of the source's timestamps larger than this is a discontinuity.
MAX_JUMP_S = 60.0


class StreamClock:
    """Maps presentation times (seconds) to stream time; used by one thread."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._base = 0.0  # stream time of the connection's first timestamp
        self._origin: float | None = None  # the connection's first timestamp
        self._last: float | None = None  # last stream time handed out
        self._last_wall = 0.0

    def new_connection(self) -> None:
        """The next timestamp starts a new timeline."""
        self._origin = None

    def _map(self, pts_s: float | None, now: float) -> tuple[float, float, float | None]:
        """``(stream time, base, origin)`` for ``pts_s``, without changing the clock."""
        last = self._last
        gap = max(0.0, now - self._last_wall)
        if pts_s is None:
            return (0.0 if last is None else last + gap), self._base, self._origin
        base, origin = self._base, self._origin
        if origin is None:
            base, origin = (0.0 if last is None else last + gap), pts_s
        t = base + (pts_s - origin)
        if last is not None and (t < last or t - last > MAX_JUMP_S + gap):
            base, origin = last + gap, pts_s  # discontinuity: continue from here
            t = base
        return t, base, origin

    def peek(self, pts_s: float | None) -> float:
        """The stream time ``pts_s`` would get."""
        return self._map(pts_s, self._now())[0]

    def time(self, pts_s: float | None) -> float:
        """The stream time of a frame presented at ``pts_s`` (None: unknown)."""
        now = self._now()
        t, self._base, self._origin = self._map(pts_s, now)
        self._last, self._last_wall = t, now
        return t
