"""When to retry: exponential backoff with full jitter.

The nominal delays grow exponentially, ``d_k = min(max_delay, initial × factor^(k-1))``,
and add up to a ladder of offsets from the start of the schedule,
``T_k = d_1 + … + d_k`` (``T_0 = 0``). Retry *k* (the attempt after the *k*-th
failure) is drawn uniformly over its own window ``[T_(k-1), T_k]`` ("full jitter":
deliveries that failed together spread over the whole window instead of retrying
in step). Drawing within windows of the ladder, rather than adding jittered delays,
keeps a guaranteed span: the last attempt never comes before ``T_(max_attempts-2)``.
A dispatcher running behind (the window already passed) retries after a fresh
jittered delay ``U × d_k`` from now instead of at once.

A delivery is given up (dead) after ``max_attempts`` attempts, or when its next
attempt would fall after ``ttl_s`` from the start of its schedule.

The default schedule (5 s, factor 3, delays capped at 8 h, 13 attempts) puts the
retries in these windows after the delivery was enqueued: 0–5 s, 5–20 s,
20 s–1 min 5 s, 1 min 5 s–3 min 20 s, 3 min 20 s–10 min 5 s, 10 min 5 s–30 min 20 s,
30 min 20 s–1 h 31 min, 1 h 31 min–4 h 33 min, then four 8-hour windows ending at
12 h 33 min, 20 h 33 min, 28 h 33 min and 36 h 33 min. The thirteenth and last
attempt therefore comes 28.6 to 36.6 hours after the delivery was enqueued
(:func:`span_bounds`); the TTL (48 h) only cuts in when a dispatcher falls far
behind.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from bastion.delivery.config import DeliveryConfig

__all__ = ["next_attempt_at", "nominal_delays", "retry_window", "span_bounds"]


def nominal_delays(config: DeliveryConfig) -> list[float]:
    """``d_1 … d_(max_attempts-1)``: the nominal delay of each retry."""
    return [
        min(config.max_delay_s, config.initial_delay_s * config.backoff_factor ** (k - 1))
        for k in range(1, config.max_attempts)
    ]


def retry_window(config: DeliveryConfig, retry: int) -> tuple[float, float]:
    """``(T_(retry-1), T_retry)``: offsets from the schedule start where retry ``retry`` falls."""
    if not 1 <= retry < config.max_attempts:
        raise ValueError(f"retry must be between 1 and {config.max_attempts - 1}")
    delays = nominal_delays(config)
    start = sum(delays[: retry - 1])
    return start, start + delays[retry - 1]


def span_bounds(config: DeliveryConfig) -> tuple[float, float]:
    """Earliest and latest offset of the last attempt, when every attempt fails.

    Ignores the TTL; ``(0, 0)`` when there are no retries.
    """
    if config.max_attempts < 2:
        return 0.0, 0.0
    return retry_window(config, config.max_attempts - 1)


def next_attempt_at(
    config: DeliveryConfig,
    *,
    started_at: datetime,
    attempts: int,
    now: datetime,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after ``attempts`` failed attempts, or ``None``: give up."""
    if attempts >= config.max_attempts:
        return None
    draw = (rng or random).random()
    low, high = retry_window(config, attempts)
    when = started_at + timedelta(seconds=low + draw * (high - low))
    if when < now:
        when = now + timedelta(seconds=draw * (high - low))
    if when > started_at + timedelta(seconds=config.ttl_s):
        return None
    return when
