"""The databases and broker the tests use: SQLite files, and PostgreSQL and RabbitMQ on loopback.

SQLite lives in a folder of the test's own. On PostgreSQL each test gets a schema of
its own, and on RabbitMQ a queue prefix of its own; both are removed after. A test whose
service (or program: nginx, ffmpeg) is missing is skipped, or fails where the services
are required: CI sets ``REQUIRE_TEST_SERVICES=1`` after starting them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def unavailable(what: str) -> NoReturn:
    """Skip a test whose service is not running here; fail it where the services are
    required (CI sets REQUIRE_TEST_SERVICES=1 after starting them)."""
    message = f"{what} is not reachable on loopback"
    if os.environ.get("REQUIRE_TEST_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def missing_tool(message: str) -> NoReturn:
    """Skip a test whose program (nginx, ffmpeg) is not installed; fail it in CI."""
    if os.environ.get("REQUIRE_TEST_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def pg_available() -> bool:
    try:
        import psycopg  # noqa: F401

        engine = make_engine(PG_URL)
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def rabbit_available() -> bool:
    try:
        import aio_pika  # noqa: F401

        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except (ImportError, OSError):
        return False


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema; yields a database URL whose search_path is that schema."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield PG_URL + f"?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def postgres_url() -> Iterator[str]:
    """:func:`pg_schema`, or :func:`unavailable` when PostgreSQL is not reachable."""
    if not pg_available():
        unavailable("PostgreSQL")
    with pg_schema() as url:
        yield url


def sqlite_url(folder: Path, name: str = "bastion.db") -> str:
    """The URL of a SQLite file in ``folder``."""
    return f"sqlite:///{folder / name}"


@contextmanager
def database_url(kind: str, folder: Path) -> Iterator[str]:
    """A database URL: a SQLite file in ``folder`` (``kind`` "sqlite"), or a PostgreSQL
    schema of its own ("postgres")."""
    if kind == "sqlite":
        yield sqlite_url(folder, "test.db")
        return
    with postgres_url() as url:
        yield url


@contextmanager
def database(kind: str, folder: Path) -> Iterator[tuple[sessionmaker[Session], Repo]]:
    """A migrated database (SQLite or PostgreSQL): its sessions and repository."""
    with database_url(kind, folder) as url:
        db = make_engine(url)
        try:
            migrate(db)
            sessions = session_factory(db)
            yield sessions, Repo(sessions)
        finally:
            db.dispose()


async def delete_rabbit_queues(prefix: str) -> None:
    """Remove every queue and exchange a test declared under ``prefix``."""
    import aio_pika

    conn = await aio_pika.connect(AMQP_URL)
    try:
        names = [f"{prefix}.jobs", f"{prefix}.jobs.dead"]
        names += [f"{prefix}.jobs.retry.{ms}" for ms in (100, 200, 500, 1000, 2000, 5000)]
        for name in names:
            ch = await conn.channel()
            try:
                await ch.queue_delete(name)
            except Exception:
                pass
            finally:
                if not ch.is_closed:
                    await ch.close()
        ch = await conn.channel()
        for ex in (prefix, f"{prefix}.dead"):
            try:
                await ch.exchange_delete(ex)
            except Exception:
                ch = await conn.channel()
    finally:
        await conn.close()
