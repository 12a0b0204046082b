"""Picks the queue backend the settings ask for."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bastion.jobs.config import JobsConfig
from bastion.jobs.embedded import EmbeddedQueue
from bastion.jobs.queue import Queue
from bastion.jobs.service import TOPIC

TOPICS = (TOPIC,)


def make_queue(config: JobsConfig, sessions: sessionmaker[Session]) -> Queue:
    """The configured queue (not started: call ``await queue.start()``)."""
    if config.queue == "rabbitmq":
        from bastion.jobs.rabbitmq import RabbitQueue

        return RabbitQueue(
            sessions,
            config.rabbitmq,
            topics=TOPICS,
            max_attempts=config.max_attempts,
            prefetch=config.concurrency,
            poll_s=config.poll_s,
        )
    return EmbeddedQueue(sessions, max_attempts=config.max_attempts, poll_s=config.poll_s)
