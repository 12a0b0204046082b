"""Settings of the apps and workers the tests start: a data dir of their own, the test
admin key, and optionally a database URL and a job queue (embedded or RabbitMQ).

:class:`JobBackend` is what the ``job_backend`` fixture hands a test: it builds settings
on the embedded queue with SQLite, or on RabbitMQ with PostgreSQL, each app with a
database schema and a queue prefix of its own. :func:`write_config` writes settings as
the YAML file a ``bastion worker --config`` process reads.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from bastion.config import Settings
from bastion.jobs.config import JobsConfig, RabbitConfig
from tests.support.auth import ADMIN_KEY
from tests.support.databases import (
    AMQP_URL,
    delete_rabbit_queues,
    pg_available,
    pg_schema,
    rabbit_available,
    unavailable,
)


def make_settings(data_dir: Path, **kw: object) -> Settings:
    """Settings with their data in ``data_dir`` and :data:`ADMIN_KEY` as the admin key;
    ``kw`` sets any other field (``database_url``, ``jobs``, ``live``, ...)."""
    return Settings(data_dir=data_dir, admin_api_key=ADMIN_KEY, **kw)  # type: ignore[arg-type]


@dataclass
class JobBackend:
    """Where jobs live in a test: the embedded queue on SQLite, or RabbitMQ + PostgreSQL.

    On RabbitMQ + PostgreSQL every app gets a database schema and a queue prefix of its
    own (removed when :meth:`close` runs), as every data dir gets its own SQLite file.
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

    def close(self) -> None:
        """Drop the schemas and the queues of every app made on this backend."""
        self.cleanup.close()
        for prefix in self.prefixes:
            asyncio.run(delete_rabbit_queues(prefix))


def open_job_backend(name: str) -> Iterator[JobBackend]:
    """A backend by name ("embedded" or "rabbitmq+postgres"), closed after; the external
    one needs PostgreSQL and RabbitMQ (:func:`~tests.support.databases.unavailable`)."""
    if name != "embedded" and not (pg_available() and rabbit_available()):
        unavailable("PostgreSQL or RabbitMQ")
    backend = JobBackend(name)
    try:
        yield backend
    finally:
        backend.close()


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
