"""Shared fixtures: one engine with the real models per test session (and the way into
moderation on it), the databases and job backends a test runs on. What they build with
lives in :mod:`tests.support`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from tests.support.databases import postgres_url
from tests.support.settings import JobBackend, make_settings, open_job_backend


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bastion")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(data_root: Path) -> AsyncIterator[Engine]:
    eng = Engine(make_settings(data_root / "engine"))
    errors = eng.load_all()
    assert not errors, errors
    yield eng
    await eng.close()


@pytest.fixture(scope="session")
def moderation(engine: Engine) -> Moderation:
    """Moderation on the session's engine, as `bastion scan` has it: no stored results.
    Its caches last the session, as the engine's models do."""
    return Moderation(engine)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A test runs once on each database: None (SQLite in the data dir), or a PostgreSQL
    URL on a schema of its own."""
    if request.param == "sqlite":
        yield None
        return
    with postgres_url() as url:
        yield url


@pytest.fixture(scope="module", params=["embedded", "rabbitmq+postgres"])
def job_backend(request: pytest.FixtureRequest) -> Iterator[JobBackend]:
    """Runs a module's job tests once per backend; both must pass the same tests."""
    yield from open_job_backend(request.param)


@pytest.fixture(scope="module")
def rabbit_backend() -> Iterator[JobBackend]:
    """RabbitMQ + PostgreSQL only (for what only a broker has, e.g. restarting it)."""
    yield from open_job_backend("rabbitmq+postgres")
