"""Delays between reconnection attempts: exponential backoff with jitter, and when to give up.

The nominal delay before retry *k* is ``min(backoff_max_s, backoff_min_s × 2^(k-1))``;
the delay used is drawn uniformly from ``[nominal × (1 − jitter), nominal]``, so
readers that lost the same server at once do not come back in step. The reader goes
offline when ``give_up_after_attempts`` retries in a row have failed, or when the
source has given no frame for ``give_up_after_s`` (from the start, or from its last
frame); the last retry is moved up so that it comes no later than that deadline.
"""

from __future__ import annotations

import random

from bastion.live.reading.config import StreamReaderConfig

__all__ = ["Backoff"]


class Backoff:
    def __init__(self, config: StreamReaderConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()

    def nominal(self, attempt: int) -> float:
        """Nominal delay before retry ``attempt`` (1 for the first)."""
        config = self.config
        exponent = min(max(attempt, 1) - 1, 64)
        return min(config.backoff_max_s, config.backoff_min_s * 2.0**exponent)

    def delay(self, attempt: int) -> float:
        nominal = self.nominal(attempt)
        return nominal * (1 - self.config.backoff_jitter * self._rng.random())

    def next_delay(self, attempt: int, since_frame_s: float) -> float | None:
        """Seconds to wait before retry ``attempt``, or None: give up now.

        ``since_frame_s``: seconds since the source last gave a frame (or since start).
        """
        config = self.config
        if config.give_up_after_attempts is not None and attempt > config.give_up_after_attempts:
            return None
        delay = self.delay(attempt)
        if config.give_up_after_s is not None:
            left = config.give_up_after_s - since_frame_s
            if left <= 0:
                return None
            delay = min(delay, left)
        return delay
