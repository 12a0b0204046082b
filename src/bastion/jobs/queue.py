"""The small interface every queue backend implements.

A message is published to a topic and later *leased* by one consumer. The consumer
``ack``s it when done or ``nack``s it to try again after a delay; a message whose lease
runs out (the consumer crashed) becomes available again. After ``max_attempts``
deliveries a message is dead-lettered instead of retried.

Two implementations: :class:`~bastion.jobs.embedded.EmbeddedQueue` (a table in Bastion's
own database) and :class:`~bastion.jobs.rabbitmq.RabbitQueue` (RabbitMQ quorum queues).
``add`` publishes inside the caller's database transaction in both: the embedded queue
writes the message itself, RabbitMQ writes it to an outbox that is relayed to the broker
after the commit, so a job row never exists without its message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class Leased:
    """A message held by one consumer until ``ack``/``nack`` or the lease runs out."""

    id: str
    topic: str
    body: dict[str, Any]
    attempt: int
    token: str


class Queue(ABC):
    """A durable work queue with leases, delayed retries and a dead-letter state."""

    async def start(self) -> None:
        """Connect and start background work (relaying, consuming); idempotent."""
        return None

    async def close(self) -> None:
        """Stop background work and disconnect."""
        return None

    @abstractmethod
    def add(
        self, session: Session, topic: str, body: dict[str, Any], *, delay_s: float = 0.0
    ) -> str:
        """Publish inside the caller's transaction: the message exists iff it commits."""

    @abstractmethod
    async def publish(self, topic: str, body: dict[str, Any], *, delay_s: float = 0.0) -> str:
        """Add a message; returns its id."""

    @abstractmethod
    async def lease(self, topic: str, *, lease_s: float, wait_s: float = 0.0) -> Leased | None:
        """Take the next available message for ``lease_s`` seconds, waiting up to ``wait_s``
        for one to arrive; None when there is none."""

    @abstractmethod
    async def extend(self, msg: Leased, *, lease_s: float) -> bool:
        """Keep holding a message; False when the lease was lost meanwhile."""

    @abstractmethod
    async def ack(self, msg: Leased) -> bool:
        """The work is done: remove the message. False when the lease was lost."""

    def ack_in(self, session: Session, msg: Leased) -> bool:
        """Acknowledge inside the caller's transaction where the backend can (True), so the
        work's results and the acknowledgement commit together; otherwise do nothing and
        return False: the caller then calls :meth:`ack` after its commit."""
        return False

    @abstractmethod
    async def defer(self, msg: Leased, *, delay_s: float) -> bool:
        """Give the message back to be delivered again after ``delay_s`` without counting
        this delivery as an attempt (the work could not start yet, or is being handed over)."""

    @abstractmethod
    async def nack(self, msg: Leased, *, delay_s: float, error: str) -> str:
        """Try again after ``delay_s``, or dead-letter it; returns 'retry' or 'dead'."""

    @abstractmethod
    async def dead(self, topic: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Dead-lettered messages of a topic (newest first)."""

    @abstractmethod
    async def redrive(self, message_id: str) -> bool:
        """Put a dead message back in the queue with its attempts reset."""

    @abstractmethod
    async def depth(self, topic: str) -> int:
        """Messages waiting or leased (not dead) in a topic."""
