"""The small interface every queue backend implements.

A message is published to a topic and later *leased* by one consumer. The consumer
``ack``s it when done or ``nack``s it to try again after a delay; a message whose lease
runs out (the consumer crashed) becomes available again. After ``max_attempts``
deliveries a message is dead-lettered instead of retried.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


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

    @abstractmethod
    async def publish(self, topic: str, body: dict[str, Any], *, delay_s: float = 0.0) -> str:
        """Add a message; returns its id."""

    @abstractmethod
    async def lease(self, topic: str, *, lease_s: float) -> Leased | None:
        """Take the next available message for ``lease_s`` seconds, or None."""

    @abstractmethod
    async def extend(self, msg: Leased, *, lease_s: float) -> bool:
        """Keep holding a message; False when the lease was lost meanwhile."""

    @abstractmethod
    async def ack(self, msg: Leased) -> bool:
        """The work is done: remove the message. False when the lease was lost."""

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
