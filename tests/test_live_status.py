"""What stream sessions share in a process: one writer of their status, batched in one
transaction a tick, and one cache of their rules and policies, looked up once a tick.

No stream is read here: the sessions are stand-ins that hand the writer their reports
and take their rules from the cache, against a real database (SQLite, and PostgreSQL
when it runs on loopback).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bastion.live.config import LiveConfig
from bastion.live.rules_cache import RulesCache, RulesKey, StreamRules
from bastion.live.status_writer import StatusWriter
from bastion.live.streams import StreamReport, StreamService
from bastion.live.tables import Stream
from bastion.media.fetch import FetchPolicy
from bastion.pipeline.policies import PolicyBook
from bastion.rules.book import RuleBook
from bastion.rules.loader import parse_rule_set
from bastion.rules.repo import RuleStore
from bastion.rules.spec import RuleSetSpec
from bastion.store.repo import Repo
from tests.support.databases import database

OWNER = "host:1:worker"
RULE = "  - name: r\n    text: {}\n"


@dataclass
class Db:
    sessions: sessionmaker[Session]
    repo: Repo
    tenant: str


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    with database(request.param, tmp_path) as (sessions, repo):
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        repo.ensure_tenant(tenant)
        yield Db(sessions, repo, tenant)


def streams_of(db: Db) -> StreamService:
    return StreamService(db.sessions, LiveConfig(), FetchPolicy())


def add_streams(db: Db, count: int, owner: str = OWNER) -> list[str]:
    """``count`` running streams claimed by ``owner``; their keys."""
    pks = []
    now = datetime.now(UTC)
    with db.sessions.begin() as s:
        for i in range(count):
            pk = "str_" + uuid.uuid4().hex
            s.add(
                Stream(
                    id=pk,
                    tenant_id=db.tenant,
                    stream_id=f"s-{pk[4:12]}",
                    channel=f"game-{i}",
                    source_url="rtmp://127.0.0.1/live/x",
                    desired="running",
                    status="starting",
                    owner=owner,
                    counters={},
                    created_at=now,
                    updated_at=now,
                )
            )
            pks.append(pk)
    return pks


def rows(db: Db) -> dict[str, Stream]:
    with db.sessions() as s:
        return {row.id: row for row in s.scalars(select(Stream))}


@dataclass
class FakeSession:
    """What the writer needs of a session: its report now, and a way to end it."""

    pk: str
    status: str = "live"
    decoded: int = 0
    closed: int = 0

    def report(self) -> StreamReport:
        return StreamReport(status=self.status, counters={"frames_decoded": self.decoded})

    async def close(self) -> None:
        self.closed += 1


@dataclass
class Transactions:
    """Transactions committed on an engine while counting."""

    commits: int = 0

    def reset(self) -> None:
        self.commits = 0


def count_transactions(db: Db) -> Transactions:
    bind = db.sessions.kw["bind"]
    assert isinstance(bind, Engine)
    seen = Transactions()

    def on_commit(*_: Any) -> None:
        seen.commits += 1

    event.listen(bind, "commit", on_commit)
    return seen


@dataclass
class Handed:
    """The rules the cache handed each stream at its last lookup."""

    rules: dict[str, StreamRules] = field(default_factory=dict)

    def to(self, pk: str) -> Callable[[StreamRules], None]:
        def take(rules: StreamRules) -> None:
            self.rules[pk] = rules

        return take


# ---- the status writer -----------------------------------------------------------------


async def test_many_sessions_are_written_in_one_transaction_a_tick(db: Db) -> None:
    pks = add_streams(db, 40)
    writer = StatusWriter(streams_of(db))
    fakes = [FakeSession(pk) for pk in pks]
    for fake in fakes:
        writer.add(fake.pk, OWNER, fake.report, fake.close)
    seen = count_transactions(db)

    assert await writer.flush()
    assert seen.commits == 1
    assert all(
        r.status == "live" and r.counters == {"frames_decoded": 0} for r in rows(db).values()
    )

    seen.reset()
    assert await writer.flush()  # nothing changed: nothing written
    assert seen.commits == 0

    for fake in fakes[:25]:
        fake.decoded = 30
    fakes[0].status = "reconnecting"
    seen.reset()
    assert await writer.flush()
    assert seen.commits == 1 and writer.stats.flushes == 2 and writer.stats.rows == 65
    found = rows(db)
    assert found[pks[0]].status == "reconnecting"
    assert [found[pk].counters["frames_decoded"] for pk in pks].count(30) == 25
    assert found[pks[-1]].counters["frames_decoded"] == 0
    assert not any(f.closed for f in fakes)


async def test_the_writer_ticks_and_wakes_early_on_a_change(db: Db) -> None:
    pks = add_streams(db, 5)
    writer = StatusWriter(streams_of(db), every_s=5.0, gather_s=0.01)
    fakes = [FakeSession(pk) for pk in pks]
    for fake in fakes:
        writer.add(fake.pk, OWNER, fake.report, fake.close)
    stop = asyncio.Event()
    loop = asyncio.create_task(writer.run_forever(stop))
    try:
        await until(lambda: all(r.status == "live" for r in rows(db).values()))
        fakes[3].status = "reconnecting"
        writer.changed()  # a status change does not wait for the 5 s tick
        await until(lambda: rows(db)[pks[3]].status == "reconnecting", timeout=2.0)
    finally:
        stop.set()
        await loop
    assert writer.stats.failures == 0


async def test_a_failed_write_is_retried_and_reporting_goes_on(
    db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    pks = add_streams(db, 3)
    streams = streams_of(db)
    failures = [2]  # the next two writes fail as SQLite does under another writer
    real = streams.report_many

    def flaky(reports: Any) -> set[str]:
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("UPDATE streams", {}, Exception("database is locked"))
        return real(reports)

    streams.report_many = flaky  # type: ignore[method-assign]
    writer = StatusWriter(streams, every_s=0.05, gather_s=0.0)
    fakes = [FakeSession(pk) for pk in pks]
    for fake in fakes:
        writer.add(fake.pk, OWNER, fake.report, fake.close)

    assert not await writer.flush()
    assert all(r.status == "starting" for r in rows(db).values())
    assert "not written; retrying" in caplog.text

    stop = asyncio.Event()
    loop = asyncio.create_task(writer.run_forever(stop))
    try:
        await until(lambda: all(r.status == "live" for r in rows(db).values()))
        fakes[1].decoded = 7  # still reported after the failures
        await until(lambda: rows(db)[pks[1]].counters.get("frames_decoded") == 7)
    finally:
        stop.set()
        await loop
    assert writer.stats.failures == 2
    assert writer.pending == 3 and not any(f.closed for f in fakes)


async def test_the_final_status_is_written_at_once(db: Db) -> None:
    pks = add_streams(db, 2)
    writer = StatusWriter(streams_of(db), every_s=60.0)
    fakes = [FakeSession(pk) for pk in pks]
    for fake in fakes:
        writer.add(fake.pk, OWNER, fake.report, fake.close)
    assert await writer.flush()

    final = StreamReport(status="offline", reason="gave up", code="timeout", counters={"x": 1})
    assert await writer.finish(pks[0], OWNER, final)  # no tick to wait for
    found = rows(db)[pks[0]]
    assert (found.status, found.status_reason, found.status_code) == (
        "offline",
        "gave up",
        "timeout",
    )
    assert found.counters == {"x": 1}
    assert writer.pending == 1  # the other session goes on


async def test_a_final_status_that_failed_is_written_by_the_next_tick(db: Db) -> None:
    pks = add_streams(db, 1)
    streams = streams_of(db)
    real = streams.report_many
    failing = [True]

    def flaky(reports: Any) -> set[str]:
        if failing[0]:
            failing[0] = False
            raise OperationalError("UPDATE streams", {}, Exception("database is locked"))
        return real(reports)

    streams.report_many = flaky  # type: ignore[method-assign]
    writer = StatusWriter(streams, every_s=0.05, gather_s=0.0)
    final = StreamReport(status="error", reason="bad data", code="corrupt_media")
    assert not await writer.finish(pks[0], OWNER, final)
    stop = asyncio.Event()
    loop = asyncio.create_task(writer.run_forever(stop))
    try:
        await until(lambda: rows(db)[pks[0]].status == "error")
    finally:
        stop.set()
        await loop
    assert writer.pending == 0


async def test_a_row_no_longer_ours_ends_its_session_only(db: Db) -> None:
    mine = add_streams(db, 2)
    taken = add_streams(db, 1, owner="another:2:worker")
    writer = StatusWriter(streams_of(db))
    fakes = [FakeSession(pk) for pk in [*mine, *taken]]
    for fake in fakes:
        writer.add(fake.pk, OWNER, fake.report, fake.close)
    assert await writer.flush()
    await asyncio.sleep(0)  # the session is closed in a task of its own
    assert [f.closed for f in fakes] == [0, 0, 1]
    found = rows(db)
    assert found[taken[0]].status == "starting"  # not written over
    assert found[mine[0]].status == "live"


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(check):
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.02)


# ---- the rules cache -------------------------------------------------------------------


def spec(name: str, interval: float, policy: str | None = None) -> RuleSetSpec:
    extra = f"policy: {policy}\n" if policy else ""
    text = f"name: {name}\nchannel_pattern: '^game-'\nsample_interval_s: {interval}\n{extra}"
    return parse_rule_set(text + f"rules:\n{RULE}").value


async def test_the_rules_cache_looks_up_once_a_tick_and_sees_a_change(db: Db) -> None:
    store = RuleStore(db.sessions)
    saved = store.create(db.tenant, spec("games", 10))
    book = RuleBook(db.sessions, refresh_s=0.0)
    cache = RulesCache(book, PolicyBook(db.repo))
    keys: list[RulesKey] = [(db.tenant, f"game-{i % 5}", "standard") for i in range(30)]
    handed = Handed()
    got = handed.rules

    first = await cache.get(keys[0])
    assert first.resolved is not None and first.resolved.sample_interval_s == 10
    assert first.policy is not None and first.policy[0].name == "default"
    for i, key in enumerate(keys):
        cache.watch(f"s{i}", key, handed.to(f"s{i}"))
    before = cache.lookups
    await cache.refresh()
    assert cache.lookups == before + 1  # one trip for 30 streams
    assert len(got) == 30
    assert {r.resolved.sample_interval_s for r in got.values() if r.resolved} == {10}

    store.update(db.tenant, saved.id, spec("games", 4))  # as the API saves it
    await cache.refresh()
    assert {r.resolved.sample_interval_s for r in got.values() if r.resolved} == {4}

    cache.forget("s0")
    got.clear()
    await cache.refresh()
    assert "s0" not in got and len(got) == 29


async def test_a_policy_the_cache_cannot_resolve_is_left_to_the_frame(db: Db) -> None:
    RuleStore(db.sessions).create(db.tenant, spec("games", 10, policy="missing"))
    cache = RulesCache(RuleBook(db.sessions, refresh_s=0.0), PolicyBook(db.repo))
    found = await cache.get((db.tenant, "game-1", "standard"))
    assert found.resolved is not None and found.resolved.policy == "missing"
    assert found.policy is None
