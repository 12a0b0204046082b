"""A sliding one-minute window of sign-in attempts per key (an address, a username).

Kept in the memory of the process that signs people in (the API process), so it slows
down guessing without a database write per attempt; the per-account lockout, which is
stored, is what holds across processes and restarts.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=1)
MAX_KEYS = 100_000
"""Keys tracked at once; beyond, keys with no attempt in the window are forgotten."""


class AttemptWindow:
    """Counts attempts per key over the last minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._attempts: dict[str, deque[datetime]] = {}

    def hit(self, key: str, now: datetime) -> bool:
        """Record an attempt for ``key``; False when it is over the limit (not recorded)."""
        start = now - WINDOW
        seen = self._attempts.get(key)
        if seen is None:
            if len(self._attempts) >= MAX_KEYS:
                self._forget_idle(start)
            seen = self._attempts[key] = deque()
        while seen and seen[0] <= start:
            seen.popleft()
        if len(seen) >= self.per_minute:
            return False
        seen.append(now)
        return True

    def _forget_idle(self, start: datetime) -> None:
        for key in [k for k, v in self._attempts.items() if not v or v[-1] <= start]:
            del self._attempts[key]
        if len(self._attempts) >= MAX_KEYS:  # all busy: start afresh rather than grow
            self._attempts.clear()
