"""Shared fixtures: one engine with the real models per test session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from pydantic import SecretStr

from bastion.config import Settings
from bastion.jobs.config import JobsConfig, RabbitConfig
from bastion.pipeline.engine import Engine
from tests.services import (
    AMQP_URL,
    delete_rabbit_queues,
    pg_available,
    pg_schema,
    rabbit_available,
    unavailable,
)

ADMIN_KEY = "test-admin-key-0123456789abcdef"


def make_settings(data_dir: Path, **kw: object) -> Settings:
    return Settings(data_dir=data_dir, admin_api_key=ADMIN_KEY, **kw)  # type: ignore[arg-type]


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


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A test runs once on each database: None (SQLite in the data dir), or a PostgreSQL
    URL on a schema of its own."""
    if request.param == "sqlite":
        yield None
        return
    if not pg_available():
        unavailable("PostgreSQL")
    with pg_schema() as url:
        yield url


@dataclass
class JobBackend:
    """Where jobs live in a test: the embedded queue on SQLite, or RabbitMQ + PostgreSQL.

    On RabbitMQ + PostgreSQL every app gets a database schema and a queue prefix of its
    own (removed when the module ends), as every data dir gets its own SQLite file.
    """

    name: str
    cleanup: ExitStack = field(default_factory=ExitStack)
    prefixes: list[str] = field(default_factory=list)

    @property
    def external(self) -> bool:
        return self.name != "embedded"

    def jobs(self, prefix: str | None = None, **kw: Any) -> JobsConfig:
        if prefix is None:
            return JobsConfig(**kw)
        rabbit = RabbitConfig(
            url=SecretStr(AMQP_URL),
            prefix=prefix,
            retry_delays_s=[0.1, 0.5, 2.0],
            relay_poll_s=0.2,
        )
        return JobsConfig(queue="rabbitmq", rabbitmq=rabbit, **kw)

    def settings(
        self, data_dir: Path, *, jobs: dict[str, Any] | None = None, **kw: Any
    ) -> Settings:
        """Settings for an app of its own on this backend."""
        prefix = None
        if self.external:
            kw.setdefault("database_url", self.cleanup.enter_context(pg_schema()))
            prefix = f"t{uuid.uuid4().hex[:10]}"
            self.prefixes.append(prefix)
        return make_settings(data_dir, jobs=self.jobs(prefix, **(jobs or {})), **kw)


def _backend(name: str) -> Iterator[JobBackend]:
    if name != "embedded" and not (pg_available() and rabbit_available()):
        unavailable("PostgreSQL or RabbitMQ")
    backend = JobBackend(name)
    with backend.cleanup:
        yield backend
    for prefix in backend.prefixes:
        asyncio.run(delete_rabbit_queues(prefix))


@pytest.fixture(scope="module", params=["embedded", "rabbitmq+postgres"])
def job_backend(request: pytest.FixtureRequest) -> Iterator[JobBackend]:
    """Runs a module's job tests once per backend; both must pass the same tests."""
    yield from _backend(request.param)


@pytest.fixture(scope="module")
def rabbit_backend() -> Iterator[JobBackend]:
    """RabbitMQ + PostgreSQL only (for what only a broker has, e.g. restarting it)."""
    yield from _backend("rabbitmq+postgres")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    return value


def write_config(settings: Settings, path: Path) -> Path:
    """The same settings as a YAML config file, for `bastion worker --config`."""
    path.write_text(yaml.safe_dump(_plain(settings.model_dump())))
    return path
