"""The embedded queue: leases, crash recovery, delayed retries, dead letters, no double delivery.

Runs against SQLite and, when reachable, the PostgreSQL server on this machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.jobs.embedded import EmbeddedQueue
from bastion.store.db import make_engine, migrate, session_factory
from tests.support.databases import pg_available, pg_schema, unavailable


@pytest.fixture(params=["sqlite", "postgres"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedQueue]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
        migrate(engine)
        yield EmbeddedQueue(session_factory(engine), max_attempts=3)
        engine.dispose()
        return
    if not pg_available():
        unavailable("PostgreSQL")
    with pg_schema() as url:
        engine = make_engine(url)
        migrate(engine)
        yield EmbeddedQueue(session_factory(engine), max_attempts=3)
        engine.dispose()


async def test_publish_lease_ack(queue: EmbeddedQueue) -> None:
    mid = await queue.publish("jobs", {"n": 1})
    msg = await queue.lease("jobs", lease_s=30)
    assert msg is not None and msg.id == mid and msg.body == {"n": 1} and msg.attempt == 1
    assert await queue.lease("jobs", lease_s=30) is None  # held by us
    assert await queue.lease("other", lease_s=30) is None
    assert await queue.ack(msg)
    assert await queue.depth("jobs") == 0


async def test_expired_lease_is_delivered_again(queue: EmbeddedQueue) -> None:
    await queue.publish("jobs", {"n": 2})
    first = await queue.lease("jobs", lease_s=0.2)
    assert first is not None
    await asyncio.sleep(0.3)  # the worker "died": its lease runs out
    second = await queue.lease("jobs", lease_s=30)
    assert second is not None and second.id == first.id and second.attempt == 2
    assert not await queue.ack(first)  # the old holder lost it
    assert not await queue.extend(first, lease_s=30)
    assert await queue.extend(second, lease_s=30)
    assert await queue.ack(second)


async def test_nack_delays_then_dead_letters_and_redrive(queue: EmbeddedQueue) -> None:
    mid = await queue.publish("jobs", {"n": 3})
    for attempt in (1, 2):
        msg = await queue.lease("jobs", lease_s=30)
        assert msg is not None and msg.attempt == attempt
        assert await queue.nack(msg, delay_s=0.2, error="boom") == "retry"
        assert await queue.lease("jobs", lease_s=30) is None  # not before the delay
        await asyncio.sleep(0.25)
    msg = await queue.lease("jobs", lease_s=30)
    assert msg is not None and msg.attempt == 3
    assert await queue.nack(msg, delay_s=0, error="still broken") == "dead"
    assert await queue.lease("jobs", lease_s=30) is None
    dead = await queue.dead("jobs")
    assert [d["id"] for d in dead] == [mid] and dead[0]["error"] == "still broken"
    assert await queue.redrive(mid)
    again = await queue.lease("jobs", lease_s=30)
    assert again is not None and again.attempt == 1


async def test_delayed_publish(queue: EmbeddedQueue) -> None:
    await queue.publish("jobs", {"n": 4}, delay_s=0.3)
    assert await queue.lease("jobs", lease_s=30) is None
    await asyncio.sleep(0.35)
    assert await queue.lease("jobs", lease_s=30) is not None


async def test_concurrent_consumers_never_share_a_message(queue: EmbeddedQueue) -> None:
    n = 40
    for i in range(n):
        await queue.publish("jobs", {"i": i})
    seen: list[int] = []

    async def consumer() -> None:
        while True:
            msg = await queue.lease("jobs", lease_s=30)
            if msg is None:
                return
            seen.append(msg.body["i"])
            assert await queue.ack(msg)

    t0 = time.monotonic()
    await asyncio.gather(*(consumer() for _ in range(6)))
    assert sorted(seen) == list(range(n)), "a message was lost or delivered twice"
    assert time.monotonic() - t0 < 60


async def test_publish_in_a_transaction_rolls_back_with_it(queue: EmbeddedQueue) -> None:
    s = queue.sessions()
    try:
        queue.add(s, "jobs", {"n": 5})
        s.rollback()
    finally:
        s.close()
    assert await queue.depth("jobs") == 0
    with queue.sessions.begin() as s2:
        queue.add(s2, "jobs", {"n": 6})
    assert await queue.depth("jobs") == 1
