"""The real services the tests use on loopback: PostgreSQL and RabbitMQ.

Each test gets a database schema (or a queue prefix) of its own and removes it after.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest
from sqlalchemy import text

from bastion.store.db import make_engine

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


def free_port() -> int:
    """A TCP port free on loopback now (a test server binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
