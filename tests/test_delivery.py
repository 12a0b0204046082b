"""Webhook delivery: outbox, schedule, dispatcher, against real HTTP receivers on loopback.

The database tests run on SQLite and on PostgreSQL (on loopback, in a fresh schema per
run); the PostgreSQL half is skipped only when that server cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as OfficialError

from bastion.delivery import client, signing
from bastion.delivery.config import DeliveryConfig
from bastion.delivery.dispatcher import Dispatcher
from bastion.delivery.outbox import (
    claim_due,
    enqueue,
    finish_attempt,
    get_delivery,
    list_attempts,
    list_deliveries,
    redrive,
)
from bastion.delivery.schedule import (
    next_attempt_at,
    nominal_delays,
    retry_window,
    span_bounds,
)
from bastion.delivery.signing import get_or_create_secret, rotate, signing_secrets
from bastion.delivery.tables import Delivery, DeliveryAttempt, WebhookSecret
from bastion.errors import InputError
from bastion.media.fetch import FetchPolicy
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo
from bastion.store.tables import Base
from tests.support.databases import database_url
from tests.support.loopback import free_port
from tests.support.webhooks import Answer, Received, Receiver, Script

OUR_TABLES = {"webhook_secrets", "deliveries", "delivery_attempts"}
HOUR = 3600.0

# A schedule in milliseconds: retries after 0-10 ms, 10-30 ms, 30-70 ms, then 40 ms windows.
FAST = DeliveryConfig(
    initial_delay_s=0.01,
    backoff_factor=2,
    max_delay_s=0.04,
    max_attempts=6,
    ttl_s=60,
    request_timeout_s=0.5,
    lease_s=2,
    poll_interval_s=0.01,
    concurrency=8,
)
LOOPBACK = FetchPolicy(allow_private=True)


# ---- receivers ----------------------------------------------------------------------


def serve(answers: Script) -> Receiver:
    """A receiver whose URL has a path and a query, as real ones have."""
    return Receiver(answers, path="/hooks/bastion?x=1")


# ---- databases ----------------------------------------------------------------------


@dataclass
class Db:
    url: str
    engine: sa.Engine
    sessions: sessionmaker[Session]

    def other_sessions(self) -> tuple[sa.Engine, sessionmaker[Session]]:
        """A second engine on the same database, as a second process would have."""
        engine = make_engine(self.url)
        return engine, session_factory(engine)

    def delivery(self, webhook_id: str) -> Delivery:
        with self.sessions() as s:
            row = s.scalars(sa.select(Delivery).where(Delivery.webhook_id == webhook_id)).one()
            return row

    def attempts(self, webhook_id: str) -> list[DeliveryAttempt]:
        with self.sessions() as s:
            return list_attempts(s, self.delivery(webhook_id).id)

    def states(self) -> Counter[str]:
        with self.sessions() as s:
            return Counter(s.scalars(sa.select(Delivery.state)))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Db]:
    with database_url(request.param, tmp_path_factory.mktemp("delivery")) as url:
        engine = make_engine(url)
        migrate(engine)
        sessions = session_factory(engine)
        repo = Repo(sessions)
        repo.ensure_tenant("acme")
        repo.ensure_tenant("other")
        try:
            yield Db(url, engine, sessions)
        finally:
            engine.dispose()


@pytest.fixture
def db(database: Db) -> Db:
    with database.sessions.begin() as s:
        for model in (DeliveryAttempt, Delivery, WebhookSecret):
            s.execute(sa.delete(model))
    return database


def add(db: Db, url: str, payload: dict[str, object] | None = None, tenant: str = "acme") -> str:
    with db.sessions.begin() as s:
        return enqueue(s, tenant, "job.completed", url, payload or {"job": "j1"}).webhook_id


async def pump(
    db: Db, dispatcher: Dispatcher, done: Callable[[], bool], timeout: float = 10
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done in {timeout} s: {db.states()}"
        await dispatcher.run_once()
        await asyncio.sleep(0.005)


def in_state(db: Db, webhook_id: str, state: str) -> Callable[[], bool]:
    return lambda: db.delivery(webhook_id).state == state


def secret_of(db: Db, tenant: str = "acme") -> str:
    with db.sessions.begin() as s:
        return get_or_create_secret(s, tenant)


# ---- schema -------------------------------------------------------------------------


def _table_of(diff: Any) -> str:
    item = diff[0] if isinstance(diff, list) else diff
    kind, target = item[0], item[1]
    if kind in ("add_table", "remove_table"):
        return str(target.name)
    if kind.startswith(("add_", "remove_")) and hasattr(target, "table"):
        return str(target.table.name)  # indexes, constraints, foreign keys
    return str(item[2])  # (kind, schema, table, ...) for columns and modifications


def _our_diffs(db: Db, metadata: sa.MetaData) -> list[Any]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
    return [d for d in diffs if _table_of(d) in OUR_TABLES]


def test_migration_matches_the_models(db: Db) -> None:
    assert _our_diffs(db, Base.metadata) == []
    changed = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["deliveries"].append_column(sa.Column("extra", sa.Integer()))
    (diff,) = _our_diffs(db, changed)
    assert diff[0] == "add_column" and diff[3].name == "extra"


# ---- enqueue --------------------------------------------------------------------------


async def test_enqueue_belongs_to_the_callers_transaction(db: Db) -> None:
    with serve(200) as receiver:
        with db.sessions() as s:
            s.begin()
            row = enqueue(s, "acme", "job.completed", receiver.url, {"job": "j1"})
            assert row.id is not None and row.state == "pending"
            assert row.webhook_id.startswith("msg_") and len(row.webhook_id) == 36
            s.rollback()

        with pytest.raises(RuntimeError), db.sessions.begin() as s:
            enqueue(s, "acme", "job.completed", receiver.url, {"job": "j2"})
            raise RuntimeError("the job result could not be stored")

        assert db.states() == Counter()
        async with Dispatcher(db.sessions, FAST, url_policy=LOOPBACK) as dispatcher:
            assert await dispatcher.run_once() == 0
        assert receiver.requests == []

        committed = add(db, receiver.url)
        assert db.states() == Counter({"pending": 1})
        assert db.delivery(committed).attempts == 0

    with db.sessions() as s, pytest.raises(InputError):
        enqueue(s, "acme", "", "http://example.com/", {})
    with db.sessions() as s, pytest.raises(InputError):
        enqueue(s, "acme", "job.completed", "http://example.com/", {"x": float("nan")})


# ---- dispatching ------------------------------------------------------------------------


async def test_retries_until_delivered_with_the_same_webhook_id(db: Db) -> None:
    with serve(lambda call: 500 if call.nth <= 3 else 200) as receiver:
        webhook_id = add(db, receiver.url, {"job": "j1", "verdict": "block"})
        async with Dispatcher(db.sessions, FAST, url_policy=LOOPBACK) as dispatcher:
            await pump(db, dispatcher, in_state(db, webhook_id, "delivered"))
        requests = list(receiver.requests)

    assert len(requests) == 4
    assert {r.headers["webhook-id"] for r in requests} == {webhook_id}
    secret = secret_of(db)
    bodies = {r.body for r in requests}
    assert len(bodies) == 1  # the same body on every attempt; only the signature changes
    for r in requests:
        assert r.headers["content-type"] == "application/json"
        assert r.headers["host"] == f"127.0.0.1:{receiver.port}"
        event = Webhook(secret).verify(r.body, r.headers)
        assert event == client.verify(r.body, r.headers, secret)
        assert event["type"] == "job.completed"
        assert event["data"] == {"job": "j1", "verdict": "block"}
        assert event["timestamp"].endswith("Z")
        assert abs(int(r.headers["webhook-timestamp"]) - time.time()) < 60

    row = db.delivery(webhook_id)
    assert (row.state, row.attempts, row.last_status, row.last_error) == ("delivered", 4, 200, None)
    assert row.delivered_at is not None and row.next_attempt_at is None and row.lease_owner is None
    attempts = db.attempts(webhook_id)
    assert [a.status_code for a in attempts] == [500, 500, 500, 200]
    assert attempts[0].error == "HTTP 500: nope, try again" and attempts[-1].error is None
    assert all(a.latency_ms >= 0 for a in attempts)
    times = [a.attempted_at for a in attempts]
    assert times == sorted(times)


async def test_a_hanging_receiver_times_out_and_is_retried(db: Db) -> None:
    config = FAST.model_copy(update={"request_timeout_s": 0.3})
    with serve(lambda call: Answer(200, delay_s=2.0 if call.nth == 1 else 0.0)) as receiver:
        webhook_id = add(db, receiver.url)
        async with Dispatcher(db.sessions, config, url_policy=LOOPBACK) as dispatcher:
            started = time.monotonic()
            await pump(db, dispatcher, in_state(db, webhook_id, "delivered"))
            elapsed = time.monotonic() - started
    assert len(receiver.requests) == 2
    first, second = db.attempts(webhook_id)
    assert first.status_code is None and first.error == "timed out after 0.3 s"
    assert 300 <= first.latency_ms < 1500
    assert second.status_code == 200
    assert elapsed < 1.5  # the attempt was abandoned, not waited for


async def test_connection_refused_is_retried_until_dead(db: Db) -> None:
    config = FAST.model_copy(update={"max_attempts": 3})
    webhook_id = add(db, f"http://127.0.0.1:{free_port()}/hook")
    async with Dispatcher(db.sessions, config, url_policy=LOOPBACK) as dispatcher:
        await pump(db, dispatcher, in_state(db, webhook_id, "dead"))
        assert dispatcher.stats.retried == 2 and dispatcher.stats.dead == 1
    attempts = db.attempts(webhook_id)
    assert len(attempts) == 3
    assert all(a.status_code is None and "could not connect" in (a.error or "") for a in attempts)
    row = db.delivery(webhook_id)
    assert row.dead_at is not None and row.attempts == 3
    assert (row.last_error or "").startswith("gave up after 3 attempts; last: could not connect")


async def test_dead_after_max_attempts_then_redriven(db: Db) -> None:
    config = FAST.model_copy(update={"max_attempts": 3})
    down = threading.Event()
    down.set()
    with serve(lambda _call: 503 if down.is_set() else 204) as receiver:
        webhook_id = add(db, receiver.url)
        healthy = add(db, receiver.url, tenant="other")
        async with Dispatcher(db.sessions, config, url_policy=LOOPBACK) as dispatcher:
            await pump(db, dispatcher, lambda: db.states() == Counter({"dead": 2}))

            with db.sessions() as s:
                page = list_deliveries(s, "acme", state="dead")
                assert [d.webhook_id for d in page.items] == [webhook_id]
                assert page.items[0].last_status == 503
                assert "gave up after 3 attempts; last: HTTP 503" in (
                    page.items[0].last_error or ""
                )
                assert list_deliveries(s, "acme", state="pending").items == []
            with db.sessions() as s, pytest.raises(InputError):
                redrive(s)

            down.clear()
            with db.sessions.begin() as s:
                assert redrive(s, [db.delivery(webhook_id).id]) == 1
                assert redrive(s, [db.delivery(webhook_id).id]) == 0  # no longer dead
            row = db.delivery(webhook_id)
            assert (row.state, row.attempts, row.dead_at) == ("pending", 0, None)
            await pump(db, dispatcher, in_state(db, webhook_id, "delivered"))
            assert db.delivery(healthy).state == "dead"  # not selected by the redrive

            with db.sessions.begin() as s:
                assert redrive(s, tenant_id="other", event_type="job.completed") == 1
            await pump(db, dispatcher, in_state(db, healthy, "delivered"))

    assert receiver.per_id() == Counter({webhook_id: 4, healthy: 4})
    row = db.delivery(webhook_id)
    assert row.attempts == 1 and row.last_status == 204
    assert [a.status_code for a in db.attempts(webhook_id)] == [503, 503, 503, 204]


async def test_rotation_signs_twice_during_grace_then_once(db: Db) -> None:
    with serve(200) as receiver:
        async with Dispatcher(db.sessions, FAST, url_policy=LOOPBACK) as dispatcher:

            async def send() -> Received:
                webhook_id = add(db, receiver.url)
                await pump(db, dispatcher, in_state(db, webhook_id, "delivered"))
                return receiver.requests[-1]

            first = await send()
            old = secret_of(db)
            assert len(first.headers["webhook-signature"].split(" ")) == 1
            Webhook(old).verify(first.body, first.headers)

            with db.sessions.begin() as s:
                new = rotate(s, "acme", grace_s=FAST.secret_grace_s)
                assert signing_secrets(s, "acme") == [new, old]
                assert signing_secrets(s, "other") == []
            during = await send()
            assert len(during.headers["webhook-signature"].split(" ")) == 2
            Webhook(new).verify(during.body, during.headers)
            Webhook(old).verify(during.body, during.headers)
            client.verify(during.body, during.headers, old)

            with db.sessions.begin() as s:  # the grace period ends
                s.execute(
                    sa.update(WebhookSecret)
                    .where(WebhookSecret.secret == old)
                    .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
                )
            after = await send()
            assert len(after.headers["webhook-signature"].split(" ")) == 1
            Webhook(new).verify(after.body, after.headers)
            with pytest.raises(OfficialError):
                Webhook(old).verify(after.body, after.headers)

    with db.sessions.begin() as s:
        newer = rotate(s, "acme", grace_s=60)
        newest = rotate(s, "acme", grace_s=60)
        assert signing_secrets(s, "acme") == [newest, newer]  # at most one previous
        assert get_or_create_secret(s, "acme") == newest
        signing._insert_current(s, "acme", signing.generate_secret(), datetime.now(UTC))
        assert get_or_create_secret(s, "acme") == newest  # a lost creation race is a no-op
        assert (
            len(s.scalars(sa.select(WebhookSecret).where(WebhookSecret.tenant_id == "acme")).all())
            == 2
        )
        assert signing_secrets(s, "acme", datetime.now(UTC) + timedelta(seconds=61)) == [newest]


async def test_private_callback_urls_are_refused_unless_allowed(db: Db) -> None:
    with serve(200) as receiver:
        refused = add(db, receiver.url)
        async with Dispatcher(db.sessions, FAST) as dispatcher:
            await pump(db, dispatcher, in_state(db, refused, "dead"))
        assert receiver.requests == []
        row = db.delivery(refused)
        assert row.attempts == 1
        assert "refused by the URL policy" in (row.last_error or "")
        assert "loopback" in (row.last_error or "")
        (attempt,) = db.attempts(refused)
        assert attempt.status_code is None and "loopback" in (attempt.error or "")

        for url in ("file:///etc/passwd", "http://169.254.169.254/latest/meta-data/"):
            dead = add(db, url)
            async with Dispatcher(db.sessions, FAST, url_policy=LOOPBACK) as dispatcher:
                await pump(db, dispatcher, in_state(db, dead, "dead"))

        allowed = add(db, receiver.url)
        async with Dispatcher(db.sessions, FAST, url_policy=LOOPBACK) as dispatcher:
            await pump(db, dispatcher, in_state(db, allowed, "delivered"))
        assert receiver.per_id() == Counter({allowed: 1})


async def test_concurrent_dispatchers_never_send_the_same_attempt_twice(db: Db) -> None:
    config = FAST.model_copy(update={"concurrency": 4, "poll_interval_s": 0.005})
    count = 40
    with serve(lambda call: Answer(500 if call.nth == 1 else 200, delay_s=0.02)) as receiver:
        ids = [add(db, receiver.url, {"n": n}) for n in range(count)]
        engine2, sessions2 = db.other_sessions()
        stop = asyncio.Event()
        try:
            async with (
                Dispatcher(db.sessions, config, url_policy=LOOPBACK) as one,
                Dispatcher(sessions2, config, url_policy=LOOPBACK) as two,
            ):
                tasks = [asyncio.create_task(d.run_forever(stop)) for d in (one, two)]
                deadline = time.monotonic() + 20
                while db.states() != Counter({"delivered": count}):
                    assert time.monotonic() < deadline, db.states()
                    await asyncio.sleep(0.02)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 5)
        finally:
            engine2.dispose()
    assert receiver.per_id() == Counter({i: 2 for i in ids})
    assert one.stats.claimed > 0 and two.stats.claimed > 0
    assert one.stats.claimed + two.stats.claimed == 2 * count
    assert one.stats.lost_leases == two.stats.lost_leases == 0
    with db.sessions() as s:
        per_delivery = Counter(s.scalars(sa.select(DeliveryAttempt.delivery_id)))
    assert sorted(per_delivery.values()) == [2] * count


async def test_an_expired_lease_is_taken_over(db: Db) -> None:
    with serve(200) as receiver:
        webhook_id = add(db, receiver.url)
        with db.sessions.begin() as s:  # a dispatcher claims it, then dies
            (crashed,) = claim_due(s, 10, lease_s=60)
            assert claim_due(s, 10, lease_s=60) == []
        async with Dispatcher(db.sessions, FAST, url_policy=LOOPBACK) as dispatcher:
            assert await dispatcher.run_once() == 0
            assert receiver.requests == []
            with db.sessions.begin() as s:
                s.execute(
                    sa.update(Delivery)
                    .where(Delivery.webhook_id == webhook_id)
                    .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
                )
            assert await dispatcher.run_once() == 1
        assert receiver.per_id() == Counter({webhook_id: 1})
    row = db.delivery(webhook_id)
    assert (row.state, row.attempts) == ("delivered", 2)
    with db.sessions.begin() as s:  # the first claimer comes back: its result is not applied
        assert not finish_attempt(
            s, crashed, "dead", attempted_at=datetime.now(UTC), latency_ms=1, error="late"
        )
    assert db.delivery(webhook_id).state == "delivered"
    assert len(db.attempts(webhook_id)) == 2


# ---- waking ----------------------------------------------------------------------------

# Polls so rarely that a delivery sent within seconds was sent because a commit woke it.
SLOW_POLL = FAST.model_copy(update={"poll_interval_s": 30})


class CountingDispatcher(Dispatcher):
    """A dispatcher that counts the calls of :meth:`wake` (from any thread)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.wakes = 0
        super().__init__(*args, **kw)

    def wake(self) -> None:
        self.wakes += 1
        super().wake()


@contextlib.asynccontextmanager
async def dispatching(dispatcher: Dispatcher) -> AsyncIterator[None]:
    """``dispatcher`` running, past its first look: it then waits for the poll or a wake."""
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run_forever(stop))
    await asyncio.sleep(0.5)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_delivery_committed_anywhere_in_the_process_is_sent_at_once(db: Db) -> None:
    with serve(200) as receiver:
        async with (
            CountingDispatcher(db.sessions, SLOW_POLL, url_policy=LOOPBACK) as dispatcher,
            dispatching(dispatcher),
        ):
            # a producer that knows nothing of the dispatcher, committing in a thread of its own
            started = time.time()
            webhook_id = await asyncio.to_thread(add, db, receiver.url, {"n": 1})
            call = await receiver.wait(timeout=5)
            assert call.webhook_id == webhook_id and call.at - started < 3
            assert dispatcher.wakes == 1

            def dead_one() -> int:
                with db.sessions.begin() as s:
                    row = enqueue(s, "acme", "job.completed", receiver.url, {"n": 2})
                    row.state, row.next_attempt_at = "dead", None
                    row.dead_at = datetime.now(UTC)
                    return row.id

            def redrive_it(delivery_id: int) -> None:
                with db.sessions.begin() as s:
                    assert redrive(s, [delivery_id]) == 1

            dead = await asyncio.to_thread(dead_one)
            started = time.time()
            await asyncio.to_thread(redrive_it, dead)  # a redrive wakes it too
            call = await receiver.wait(where=lambda body: body["data"] == {"n": 2}, timeout=5)
            assert call.at - started < 3
    assert db.states() == Counter({"delivered": 2})
    assert receiver.per_id() == Counter({webhook_id: 1, db.delivery(call.webhook_id).webhook_id: 1})


async def test_a_rolled_back_delivery_neither_wakes_the_dispatcher_nor_is_sent(db: Db) -> None:
    with serve(200) as receiver:
        async with (
            CountingDispatcher(db.sessions, SLOW_POLL, url_policy=LOOPBACK) as dispatcher,
            dispatching(dispatcher),
        ):

            def not_committed() -> None:
                with pytest.raises(RuntimeError), db.sessions.begin() as s:
                    enqueue(s, "acme", "job.completed", receiver.url, {"n": 1})
                    raise RuntimeError("the rest of the transaction failed")
                with db.sessions() as s:  # closed without a commit
                    enqueue(s, "acme", "job.completed", receiver.url, {"n": 2})
                with db.sessions() as s:
                    s.begin()
                    enqueue(s, "acme", "job.completed", receiver.url, {"n": 3})
                    s.rollback()
                    s.begin()  # the same session commits, with no delivery this time
                    get_or_create_secret(s, "acme")
                    s.commit()

            await asyncio.to_thread(not_committed)
            await asyncio.sleep(0.5)
            assert dispatcher.wakes == 0
            assert receiver.requests == [] and db.states() == Counter()

            webhook_id = await asyncio.to_thread(add, db, receiver.url)
            call = await receiver.wait(timeout=5)
            assert call.webhook_id == webhook_id and dispatcher.wakes == 1
    assert receiver.per_id() == Counter({webhook_id: 1})


async def test_closing_a_dispatcher_removes_its_listeners(db: Db) -> None:
    def listeners() -> tuple[int, int, int]:
        with db.sessions() as s:
            events = s.dispatch
            return (
                len(events.after_flush),
                len(events.after_commit),
                len(events.after_transaction_end),
            )

    before = listeners()
    dispatchers = [CountingDispatcher(db.sessions, SLOW_POLL) for _ in range(3)]
    assert listeners() == tuple(n + 3 for n in before)
    add(db, "http://example.com/hook")
    assert [d.wakes for d in dispatchers] == [1, 1, 1]  # not running: nothing to wake
    for dispatcher in dispatchers:
        await dispatcher.aclose()
    await dispatchers[0].aclose()  # closing twice is harmless
    assert listeners() == before
    add(db, "http://example.com/hook")
    assert [d.wakes for d in dispatchers] == [1, 1, 1]


def test_list_deliveries_pages_newest_first(db: Db) -> None:
    ids = [add(db, "http://example.com/hook", {"n": n}) for n in range(5)]
    other = add(db, "http://example.com/hook", tenant="other")
    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    with db.sessions() as s:
        while True:
            page = list_deliveries(s, "acme", limit=2, cursor=cursor)
            sizes.append(len(page.items))
            seen += [d.webhook_id for d in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sizes == [2, 2, 1] and seen == ids[::-1]
        assert len(list_deliveries(s, "acme", state="pending").items) == 5
        assert list_deliveries(s, "acme", state="delivered").items == []
        future = datetime.now(UTC) + timedelta(minutes=1)
        assert list_deliveries(s, "acme", since=future).items == []
        past = datetime.now(UTC) - timedelta(minutes=1)
        assert len(list_deliveries(s, "acme", since=past).items) == 5
        assert [d.webhook_id for d in list_deliveries(s, "other").items] == [other]
        found = get_delivery(s, "acme", ids[0])
        assert found is not None and found.payload == {"n": 0}
        assert get_delivery(s, "other", ids[0]) is None
        for bad in ({"state": "lost"}, {"limit": 0}, {"cursor": "abc"}):
            with pytest.raises(InputError):
                list_deliveries(s, "acme", **bad)


# ---- schedule and settings ---------------------------------------------------------------


def test_default_schedule_spans_more_than_a_day() -> None:
    config = DeliveryConfig()
    assert nominal_delays(config) == [5, 15, 45, 135, 405, 1215, 3645, 10935] + [28800] * 4
    earliest, latest = span_bounds(config)
    assert (earliest, latest) == (102800, 131600)  # 28.6 h to 36.6 h
    assert earliest >= 24 * HOUR
    assert config.ttl_s > latest


def test_jittered_attempts_stay_in_their_windows() -> None:
    config = DeliveryConfig()
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lasts = []
    for _ in range(300):
        at = start
        for failed in range(1, config.max_attempts):
            following = next_attempt_at(config, started_at=start, attempts=failed, now=at, rng=rng)
            assert following is not None and following >= at
            low, high = retry_window(config, failed)
            assert low <= (following - start).total_seconds() <= high
            at = following
        assert (
            next_attempt_at(config, started_at=start, attempts=config.max_attempts, now=at) is None
        )
        lasts.append((at - start).total_seconds())
    assert min(lasts) >= 24 * HOUR
    low, high = retry_window(config, config.max_attempts - 1)
    assert min(lasts) < low + 0.1 * (high - low) and max(lasts) > high - 0.1 * (high - low)


def test_a_late_retry_is_jittered_from_now_and_the_ttl_gives_up() -> None:
    config = DeliveryConfig()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    late = start + timedelta(hours=3)  # the window of retry 2 (5-20 s) is long gone
    draws = [
        next_attempt_at(config, started_at=start, attempts=2, now=late, rng=random.Random(seed))
        for seed in range(50)
    ]
    offsets = [(d - late).total_seconds() for d in draws if d is not None]
    assert len(offsets) == 50 and all(0 <= o <= 15 for o in offsets) and max(offsets) > 5
    expiring = DeliveryConfig(ttl_s=60)
    assert next_attempt_at(expiring, started_at=start, attempts=4, now=start) is None
    assert next_attempt_at(expiring, started_at=start, attempts=1, now=start) is not None


def test_delivery_config_is_strict_and_described() -> None:
    with pytest.raises(ValidationError):
        DeliveryConfig(retries=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="lease_s"):
        DeliveryConfig(request_timeout_s=40, lease_s=60)
    with pytest.raises(ValidationError):
        DeliveryConfig(max_attempts=0)
    assert all(f.description for f in DeliveryConfig.model_fields.values())
    assert span_bounds(DeliveryConfig(max_attempts=1)) == (0.0, 0.0)
    assert json.loads(DeliveryConfig().model_dump_json())["max_attempts"] == 13
