"""Challengers' shadow counts in the database: what each process counts is written every
few seconds and at shutdown, added up over processes and restarts, never lost when a
write fails (it goes with the next one), never counted twice, and read per tenant.

On SQLite and PostgreSQL: the store directly (two processes are two
:class:`ShadowCounts` with a store each), and ``GET /v1/models`` of a real app with the
``tenant_head`` analyzer before and after a restart, with a head logged to the app's
real local registry (no models loaded: the counts are added as the analyzer adds them).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bastion.analyzers.tenant_head import TenantHeadAnalyzer
from bastion.api.models import shadow_counts
from bastion.config import DEFAULT_ANALYZERS, Settings
from bastion.jobs.config import JobsConfig
from bastion.registry.shadow import ShadowCounts, ShadowKey, ShadowTally
from bastion.registry.shadow_store import ShadowStore
from bastion.registry.tables import HeadShadowCount
from bastion.store.db import make_engine, migrate, session_factory
from tests.support.app import Api, Tenant, running
from tests.support.databases import database
from tests.support.databases import database_url as fresh_database_url
from tests.support.heads import direction_head, random_direction
from tests.support.settings import make_settings

CATEGORY = "Firearms"
A = ShadowKey("t-a", CATEGORY, "v1", "v2")
A_NEW = ShadowKey("t-a", CATEGORY, "v1", "v3")
B = ShadowKey("t-b", CATEGORY, "v1", "v2")


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated database of each kind."""
    with database(request.param, tmp_path) as (made, _):
        yield made


def stored(sessions: sessionmaker[Session]) -> dict[ShadowKey, ShadowTally]:
    """Every row of ``head_shadow_counts``, read straight from the table."""
    with sessions() as s:
        rows = s.scalars(select(HeadShadowCount)).all()
        return {
            ShadowKey(r.tenant_id, r.category, r.champion, r.challenger): ShadowTally(
                r.scored, r.challenger_only, r.champion_only
            )
            for r in rows
        }


# ---- the store ------------------------------------------------------------------------
async def test_two_processes_counts_add_up_over_their_writes(
    sessions: sessionmaker[Session],
) -> None:
    one, other = ShadowCounts(), ShadowCounts()  # two processes scoring one tenant's heads
    first = ShadowStore(sessions, [one])
    second = ShadowStore(sessions, [other])
    one.add(A, 10, 2, 1)
    other.add(A, 5, 1, 0)
    other.add(A_NEW, 4, 0, 4)
    assert first.flush() == 1 and second.flush() == 2
    assert first.flush() == 0  # nothing new: nothing written
    one.add(A, 3, 1, 1)
    assert first.flush() == 1
    assert stored(sessions) == {A: ShadowTally(18, 4, 2), A_NEW: ShadowTally(4, 0, 4)}
    # the API of a process without heads reads the same totals
    assert ShadowStore(sessions).totals("t-a") == stored(sessions)
    # each process's Prometheus counters stay its own, and never go down
    assert one.snapshot() == {A: ShadowTally(13, 3, 2)} and one.pending() == {}
    with sessions() as s:
        row = s.get(HeadShadowCount, ("t-a", CATEGORY, "v1", "v2"))
        assert row is not None and row.first_seen <= row.updated_at

    # the loops write every interval and once more when they stop
    stop = asyncio.Event()
    first.interval_s = second.interval_s = 0.05
    tasks = [asyncio.create_task(x.run_forever(stop)) for x in (first, second)]
    one.add(A, 1, 0, 0)
    other.add(A, 1, 1, 0)
    deadline = asyncio.get_running_loop().time() + 10
    while stored(sessions)[A] != ShadowTally(20, 5, 2):
        assert asyncio.get_running_loop().time() < deadline, stored(sessions)
        await asyncio.sleep(0.05)
    one.add(A, 2, 0, 0)
    stop.set()
    await asyncio.gather(*tasks)
    assert stored(sessions)[A] == ShadowTally(22, 5, 2)
    assert one.pending() == {} and other.pending() == {}


def test_counts_added_while_writing_are_neither_lost_nor_counted_twice(
    sessions: sessionmaker[Session],
) -> None:
    counts = ShadowCounts()
    store = ShadowStore(sessions, [counts])
    threads, per_thread = 4, 3000
    scored = threading.Event()
    readings: list[int] = []

    def score() -> None:  # model threads
        for _ in range(per_thread):
            counts.add(A, 1, 1, 0)

    def write() -> None:  # the loop writing every few seconds, without the wait
        while not scored.is_set():
            store.flush()

    workers = [threading.Thread(target=score) for _ in range(threads)]
    writer = threading.Thread(target=write)
    for t in (*workers, writer):
        t.start()
    while True:  # the API reading meanwhile (at least once, however quick the threads)
        readings.append(store.totals("t-a").get(A, ShadowTally()).scored)
        if not any(w.is_alive() for w in workers):
            break
    for w in workers:
        w.join()
    scored.set()
    writer.join()
    store.flush()
    total = threads * per_thread
    assert stored(sessions) == {A: ShadowTally(total, total, 0)}
    # stored + pending, each count once: a reading never drops while a write is under way
    assert readings == sorted(readings) and readings[-1] <= total
    assert store.totals("t-a") == {A: ShadowTally(total, total, 0)}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_failed_write_keeps_the_counts_for_the_next(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with fresh_database_url(kind, tmp_path) as url:
        db = make_engine(url)  # not migrated yet: no head_shadow_counts table
        try:
            one, other = ShadowCounts(), ShadowCounts()  # two analyzers of one process
            store = ShadowStore(session_factory(db), [one, other])
            one.add(A, 10, 2, 1)
            other.add(B, 3, 0, 3)
            with pytest.raises(SQLAlchemyError):
                store.flush()
            assert one.pending() == {A: ShadowTally(10, 2, 1)}  # each got its own back
            assert other.pending() == {B: ShadowTally(3, 0, 3)}
            one.add(A, 1, 1, 0)  # counted while the database is away
            with caplog.at_level(logging.WARNING, logger="bastion.registry.shadow_store"):
                await store.flush_now()  # logged, not raised
            assert "shadow counts not written" in caplog.text
            assert one.pending() == {A: ShadowTally(11, 3, 1)}

            migrate(db)  # the database is back
            assert store.flush() == 2
            assert stored(store.sessions) == {A: ShadowTally(11, 3, 1), B: ShadowTally(3, 0, 3)}
            assert one.pending() == {} and other.pending() == {}
            assert store.flush() == 0
            assert stored(store.sessions)[A] == ShadowTally(11, 3, 1)  # not written twice
        finally:
            db.dispose()


def test_each_tenant_reads_its_own_counts_only(sessions: sessionmaker[Session]) -> None:
    counts = ShadowCounts()
    store = ShadowStore(sessions, [counts])
    counts.add(A, 5, 1, 1)
    counts.add(B, 7, 7, 0)
    store.flush()
    counts.add(A, 1, 0, 1)  # pending, not written yet
    counts.add(B, 1, 1, 0)
    assert store.totals("t-a") == {A: ShadowTally(6, 1, 2)}
    assert store.totals("t-b") == {B: ShadowTally(8, 8, 0)}
    assert store.totals("t-c") == {}
    assert store.totals("t-%") == {}  # a name, never a pattern


# ---- through the API, over a restart ---------------------------------------------------
def heads_settings(folder: Path, url: str | None) -> Settings:
    """No models loaded (the page needs none; the heads' analyzer is configured so its
    shadow counts exist) and no worker."""
    return make_settings(
        folder,
        database_url=url,
        preload=False,
        analyzers=[*DEFAULT_ANALYZERS, "tenant_head"],
        jobs=JobsConfig(run_worker=False),
    )


def analyzer_of(api: Api) -> TenantHeadAnalyzer:
    (found,) = [
        a for a in api.services.engine.analyzers.values() if isinstance(a, TenantHeadAnalyzer)
    ]
    return found


def log_challenger(api: Api, tenant: str) -> int:
    """A head logged for ``tenant`` and made its challenger (no champion)."""
    onnx = direction_head(random_direction(3), 0.2, CATEGORY)
    version = api.services.heads.registry.log_head(
        tenant, CATEGORY, onnx, {"trainer": "test"}, {}, {"category": CATEGORY}
    ).version
    api.services.promotions.set_challenger(tenant, CATEGORY, version, by="cli:test")
    return version


async def shown(api: Api, tenant: Tenant) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/models", headers=tenant.headers)
    assert r.status_code == 200, r.text
    (head,) = r.json()["heads"]
    found: list[dict[str, Any]] = head["shadow"]
    return found


def counts_of(version: int, scored: int, mine: int, theirs: int) -> dict[str, Any]:
    return {
        "champion": "none",
        "challenger": f"v{version}",
        "scored": scored,
        "challenger_only": mine,
        "champion_only": theirs,
    }


async def test_the_api_shows_every_process_counts_after_a_restart(
    tmp_path: Path, database_url: str | None
) -> None:
    settings = heads_settings(tmp_path, database_url)
    async with running(settings) as api:
        acme, other = await api.new_tenant(), await api.new_tenant()
        version = await asyncio.to_thread(log_challenger, api, acme.id)
        key = ShadowKey(acme.id, CATEGORY, "none", f"v{version}")
        analyzer_of(api).shadow.add(key, 40, 7, 2)  # as the analyzer counts in shadow
        assert await shown(api, acme) == [counts_of(version, 40, 7, 2)]  # at once
        # a worker process scoring the same challenger writes what it counted
        worker = ShadowCounts()
        worker.add(key, 10, 1, 1)
        await asyncio.to_thread(ShadowStore(api.services.db_sessions, [worker]).flush)
        assert await shown(api, acme) == [counts_of(version, 50, 8, 3)]
        assert await asyncio.to_thread(shadow_counts, api.services, other.id) == {}

    async with running(settings) as api:  # a restart: a new engine, counting from zero
        assert analyzer_of(api).shadow.snapshot() == {}
        assert await shown(api, acme) == [counts_of(version, 50, 8, 3)]
        r = await api.client.get("/v1/models", headers=other.headers)
        assert r.status_code == 200 and r.json()["heads"] == [], r.text
        assert await asyncio.to_thread(shadow_counts, api.services, other.id) == {}
        counted = await asyncio.to_thread(shadow_counts, api.services, acme.id)
        assert [s.model_dump() for s in counted[CATEGORY]] == [counts_of(version, 50, 8, 3)]
