"""The embedded queue: a table in Bastion's own database (SQLite by default, PostgreSQL too).

Claiming is one conditional UPDATE per message, so any number of workers in any number
of processes can share the table without two of them holding the same message: a row
is taken only while it is ready (or its lease has expired), and whoever's UPDATE
matched owns it under a fresh lease token.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Index,
    Integer,
    String,
    Text,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bastion.jobs.queue import Leased, Queue
from bastion.store.tables import Base
from bastion.store.types import UtcDateTime


def _now() -> datetime:
    return datetime.now(UTC)


class QueueMessage(Base):
    __tablename__ = "queue_messages"
    __table_args__ = (Index("ix_queue_claim", "topic", "state", "available_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="ready")  # ready | leased | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=_now)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=_now)
    dead_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class EmbeddedQueue(Queue):
    """A durable queue in a SQL table, with leases that expire when a worker dies."""

    def __init__(
        self, sessions: sessionmaker[Session], *, max_attempts: int = 5, poll_s: float = 0.1
    ) -> None:
        self.sessions = sessions
        self.max_attempts = max_attempts
        self.poll_s = poll_s

    # publishing ------------------------------------------------------------
    def add(
        self, session: Session, topic: str, body: dict[str, Any], *, delay_s: float = 0.0
    ) -> str:
        """Publish inside the caller's transaction (committed or rolled back with it)."""
        msg_id = uuid.uuid4().hex
        session.add(
            QueueMessage(
                id=msg_id,
                topic=topic,
                body=body,
                state="ready",
                attempts=0,
                available_at=_now() + timedelta(seconds=delay_s),
                created_at=_now(),
            )
        )
        return msg_id

    async def publish(self, topic: str, body: dict[str, Any], *, delay_s: float = 0.0) -> str:
        def run() -> str:
            with self.sessions.begin() as s:
                return self.add(s, topic, body, delay_s=delay_s)

        return await asyncio.to_thread(run)

    # consuming -------------------------------------------------------------
    def _lease_sync(self, topic: str, lease_s: float) -> Leased | None:
        now = _now()
        claimable = or_(
            and_(QueueMessage.state == "ready", QueueMessage.available_at <= now),
            and_(QueueMessage.state == "leased", QueueMessage.lease_until < now),
        )
        for _ in range(5):  # another worker may win the race for a candidate: try the next
            with self.sessions.begin() as s:
                candidates = list(
                    s.scalars(
                        select(QueueMessage.id)
                        .where(QueueMessage.topic == topic, claimable)
                        .order_by(QueueMessage.available_at)
                        .limit(8)
                    )
                )
                if not candidates:
                    return None
                token = uuid.uuid4().hex
                for msg_id in candidates:
                    res = s.execute(
                        update(QueueMessage)
                        .where(QueueMessage.id == msg_id, claimable)
                        .values(
                            state="leased",
                            lease_token=token,
                            lease_until=now + timedelta(seconds=lease_s),
                            attempts=QueueMessage.attempts + 1,
                        )
                        .execution_options(synchronize_session=False)
                    )
                    if res.rowcount == 1:  # type: ignore[attr-defined]
                        row = s.get(QueueMessage, msg_id)
                        assert row is not None
                        s.refresh(row)
                        return Leased(row.id, row.topic, dict(row.body), row.attempts, token)
        return None

    async def lease(self, topic: str, *, lease_s: float, wait_s: float = 0.0) -> Leased | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            msg = await asyncio.to_thread(self._lease_sync, topic, lease_s)
            left = deadline - loop.time()
            if msg is not None or left <= 0:
                return msg
            await asyncio.sleep(min(self.poll_s, left))

    def _owned(self, msg: Leased) -> Any:
        return and_(
            QueueMessage.id == msg.id,
            QueueMessage.lease_token == msg.token,
            QueueMessage.state == "leased",
        )

    async def extend(self, msg: Leased, *, lease_s: float) -> bool:
        def run() -> bool:
            with self.sessions.begin() as s:
                res = s.execute(
                    update(QueueMessage)
                    .where(self._owned(msg))
                    .values(lease_until=_now() + timedelta(seconds=lease_s))
                )
                return bool(res.rowcount == 1)  # type: ignore[attr-defined]

        return await asyncio.to_thread(run)

    def ack_in(self, session: Session, msg: Leased) -> bool:
        """Acknowledge inside the caller's transaction (with the work's results)."""
        row = session.scalars(select(QueueMessage).where(self._owned(msg))).first()
        if row is None:
            return False
        session.delete(row)
        return True

    async def ack(self, msg: Leased) -> bool:
        def run() -> bool:
            with self.sessions.begin() as s:
                return self.ack_in(s, msg)

        return await asyncio.to_thread(run)

    async def defer(self, msg: Leased, *, delay_s: float) -> bool:
        def run() -> bool:
            with self.sessions.begin() as s:
                res = s.execute(
                    update(QueueMessage)
                    .where(self._owned(msg))
                    .values(
                        state="ready",
                        lease_token=None,
                        lease_until=None,
                        attempts=QueueMessage.attempts - 1,
                        available_at=_now() + timedelta(seconds=delay_s),
                    )
                )
                return bool(res.rowcount == 1)  # type: ignore[attr-defined]

        return await asyncio.to_thread(run)

    async def nack(self, msg: Leased, *, delay_s: float, error: str) -> str:
        def run() -> str:
            with self.sessions.begin() as s:
                row = s.scalars(select(QueueMessage).where(self._owned(msg))).first()
                if row is None:
                    return "lost"
                row.last_error = error[:2000]
                row.lease_token, row.lease_until = None, None
                if row.attempts >= self.max_attempts:
                    row.state, row.dead_at = "dead", _now()
                    return "dead"
                row.state = "ready"
                row.available_at = _now() + timedelta(seconds=delay_s)
                return "retry"

        return await asyncio.to_thread(run)

    # dead letters ----------------------------------------------------------
    async def dead(self, topic: str, *, limit: int = 100) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            with self.sessions() as s:
                rows = s.scalars(
                    select(QueueMessage)
                    .where(QueueMessage.topic == topic, QueueMessage.state == "dead")
                    .order_by(QueueMessage.dead_at.desc())
                    .limit(limit)
                )
                return [
                    {
                        "id": r.id,
                        "body": r.body,
                        "attempts": r.attempts,
                        "error": r.last_error,
                        "dead_at": r.dead_at,
                    }
                    for r in rows
                ]

        return await asyncio.to_thread(run)

    async def redrive(self, message_id: str) -> bool:
        def run() -> bool:
            with self.sessions.begin() as s:
                res = s.execute(
                    update(QueueMessage)
                    .where(QueueMessage.id == message_id, QueueMessage.state == "dead")
                    .values(state="ready", attempts=0, available_at=_now(), dead_at=None)
                )
                return bool(res.rowcount == 1)  # type: ignore[attr-defined]

        return await asyncio.to_thread(run)

    async def depth(self, topic: str) -> int:
        def run() -> int:
            with self.sessions() as s:
                return int(
                    s.scalar(
                        select(func.count())
                        .select_from(QueueMessage)
                        .where(QueueMessage.topic == topic, QueueMessage.state != "dead")
                    )
                    or 0
                )

        return await asyncio.to_thread(run)
