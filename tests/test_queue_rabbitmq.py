"""The RabbitMQ queue against the broker on this machine: confirms, redelivery when a
consumer dies, TTL retry queues, dead letters and redrive, the transactional outbox."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from bastion.jobs.config import RabbitConfig
from bastion.jobs.rabbitmq import RabbitQueue
from bastion.store.db import make_engine, migrate, session_factory
from tests.support.databases import AMQP_URL, delete_rabbit_queues, rabbit_available, unavailable

Factory = Callable[..., RabbitQueue]


@pytest_asyncio.fixture
async def make(tmp_path: Path) -> AsyncIterator[Factory]:
    if not rabbit_available():
        unavailable("RabbitMQ")
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    migrate(engine)
    sessions: sessionmaker[Session] = session_factory(engine)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    made: list[RabbitQueue] = []

    def factory(**kw: object) -> RabbitQueue:
        fields: dict[str, object] = {
            "url": SecretStr(AMQP_URL),
            "prefix": prefix,
            "retry_delays_s": [0.2, 0.5],
            "relay_poll_s": 0.2,
            **kw,
        }
        config = RabbitConfig.model_validate(fields)
        q = RabbitQueue(sessions, config, topics=("jobs",), max_attempts=3, prefetch=8)
        made.append(q)
        return q

    yield factory
    for q in made:
        await q.close()
    await delete_rabbit_queues(prefix)
    engine.dispose()


async def test_publish_lease_ack(make: Factory) -> None:
    q = make()
    await q.start()
    mid = await q.publish("jobs", {"n": 1})
    msg = await q.lease("jobs", lease_s=30, wait_s=5)
    assert msg is not None and msg.id == mid and msg.body == {"n": 1} and msg.attempt == 1
    assert await q.lease("jobs", lease_s=30, wait_s=0.3) is None  # held by us
    assert await q.extend(msg, lease_s=30)
    assert await q.ack(msg)
    assert not await q.ack(msg)
    assert await q.depth("jobs") == 0


async def test_a_dead_consumers_message_is_delivered_again(make: Factory) -> None:
    first, second = make(), make()
    await first.start()
    await second.start()
    mid = await first.publish("jobs", {"n": 2})
    held = await first.lease("jobs", lease_s=30, wait_s=5)
    assert held is not None and held.id == mid
    await first.close()  # the worker "died" holding it: its connection is gone
    again = await second.lease("jobs", lease_s=30, wait_s=10)
    assert again is not None and again.id == mid and again.attempt == 2
    assert not await first.ack(held)
    assert await second.ack(again)


async def test_retry_through_ttl_queues_then_dead_letter_and_redrive(make: Factory) -> None:
    q = make()
    await q.start()
    mid = await q.publish("jobs", {"n": 3})
    for attempt in (1, 2):
        msg = await q.lease("jobs", lease_s=30, wait_s=5)
        assert msg is not None and msg.attempt == attempt and msg.id == mid
        assert await q.nack(msg, delay_s=0.4, error="boom") == "retry"
        assert await q.lease("jobs", lease_s=30, wait_s=0.2) is None  # not before the delay
    msg = await q.lease("jobs", lease_s=30, wait_s=5)
    assert msg is not None and msg.attempt == 3
    assert await q.nack(msg, delay_s=0, error="still broken") == "dead"
    assert await q.lease("jobs", lease_s=30, wait_s=0.5) is None
    dead = await q.dead("jobs")
    assert [d["id"] for d in dead] == [mid] and dead[0]["error"] == "still broken"
    assert dead[0]["body"] == {"n": 3}
    assert await q.dead("jobs") == dead  # listing does not consume
    assert await q.redrive(mid)
    assert not await q.redrive("nope")
    again = await q.lease("jobs", lease_s=30, wait_s=5)
    assert again is not None and again.attempt == 1 and again.id == mid
    assert await q.ack(again)
    assert await q.dead("jobs") == []


async def test_delayed_publish_and_defer_does_not_count(make: Factory) -> None:
    q = make()
    await q.start()
    await q.publish("jobs", {"n": 4}, delay_s=0.3)
    assert await q.lease("jobs", lease_s=30, wait_s=0.1) is None
    msg = await q.lease("jobs", lease_s=30, wait_s=5)
    assert msg is not None and msg.attempt == 1
    assert await q.defer(msg, delay_s=0.2)
    again = await q.lease("jobs", lease_s=30, wait_s=5)
    assert again is not None and again.attempt == 1 and again.id == msg.id
    assert await q.ack(again)


async def test_concurrent_consumers_never_share_a_message(make: Factory) -> None:
    a, b = make(), make()
    await a.start()
    await b.start()
    n = 60
    for i in range(n):
        await a.publish("jobs", {"i": i})
    seen: list[int] = []

    async def consumer(q: RabbitQueue) -> None:
        while True:
            msg = await q.lease("jobs", lease_s=30, wait_s=1.0)
            if msg is None:
                return
            seen.append(msg.body["i"])
            await asyncio.sleep(0.001)
            assert await q.ack(msg)

    await asyncio.gather(*(consumer(q) for q in (a, b, a, b)))
    assert sorted(seen) == list(range(n)), "a message was lost or delivered twice"


async def test_transactional_add_goes_through_the_outbox(make: Factory) -> None:
    q = make()
    await q.start()
    s = q.outbox.sessions()
    try:
        q.add(s, "jobs", {"n": 5})
        s.rollback()
    finally:
        s.close()
    with q.outbox.sessions.begin() as s2:
        mid = q.add(s2, "jobs", {"n": 6})
    msg = await q.lease("jobs", lease_s=30, wait_s=5)
    assert msg is not None and msg.id == mid and msg.body == {"n": 6}
    assert await q.ack(msg)
    assert await q.lease("jobs", lease_s=30, wait_s=0.5) is None  # the rolled back one never went
    assert await q.outbox.depth("rabbitmq.outbox") == 0


async def test_outbox_keeps_messages_until_the_broker_is_back(make: Factory) -> None:
    q = make(url=SecretStr("amqp://guest:guest@127.0.0.1:1/"), connect_timeout_s=1)
    with pytest.raises(Exception):  # noqa: B017 - connection refused, whatever its type
        await q.start()
    with q.outbox.sessions.begin() as s:
        mid = q.add(s, "jobs", {"n": 7})
    assert await q.outbox.depth("rabbitmq.outbox") == 1  # kept, not lost
    good = make()
    await good.start()  # any process with the queue started relays it
    msg = await good.lease("jobs", lease_s=30, wait_s=5)
    assert msg is not None and msg.id == mid
    assert await good.ack(msg)


async def test_a_message_that_kills_every_consumer_is_dead_lettered(make: Factory) -> None:
    mid = None
    for i in range(3):
        q = make(delivery_limit=1)
        await q.start()
        if mid is None:
            mid = await q.publish("jobs", {"n": 8})
        msg = await q.lease("jobs", lease_s=30, wait_s=3)
        if msg is None:
            break
        assert msg.id == mid and i < 2
        await q.close()  # dies each time
    checker = make(delivery_limit=1)
    await checker.start()
    assert await checker.lease("jobs", lease_s=30, wait_s=0.5) is None
    dead = await checker.dead("jobs")
    assert [d["id"] for d in dead] == [mid]
    assert "delivery limit" in (dead[0]["error"] or "")
