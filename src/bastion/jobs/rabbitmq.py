"""The RabbitMQ queue backend (aio-pika), for workers on several machines.

Topology, per topic ``T`` under the configured prefix ``P``:

- ``P.T``: durable quorum queue fed by the direct exchange ``P``. Messages are consumed
  with manual acknowledgement; a consumer that dies (connection lost) gives its messages
  back. ``x-delivery-limit`` dead-letters a message that keeps killing its consumers.
- ``P.T.retry.<ms>``: one durable quorum queue per retry delay (a small fixed ladder), with
  ``x-message-ttl`` and the work exchange as its dead-letter exchange: a message parked there
  expires back into ``P.T`` after the delay.
- ``P.T.dead``: the final dead-letter queue, fed by the exchange ``P.dead``; listed and
  redriven through the API.

Every publish waits for the broker's confirm (publisher confirms) and is ``mandatory``: an
unroutable message is an error, not a silent drop. Dead-lettering between queues uses the
at-least-once strategy.

Publishing from a database transaction (``add``) goes through a transactional outbox: the
message is written to the embedded queue table in the caller's transaction and relayed to
RabbitMQ after the commit, by every process that has the queue started. A crash between the
commit and the relay only delays the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from bastion.jobs.config import RabbitConfig
from bastion.jobs.embedded import EmbeddedQueue
from bastion.jobs.queue import Leased, Queue

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractExchange,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
    )

log = logging.getLogger(__name__)

OUTBOX_TOPIC = "rabbitmq.outbox"
ATTEMPT_HEADER = "x-bastion-attempt"
ERROR_HEADER = "x-bastion-error"
DEAD_AT_HEADER = "x-bastion-dead-at"


def _import_aio_pika() -> Any:
    try:
        import aio_pika
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the RabbitMQ queue needs aio-pika: pip install 'bastion[rabbitmq]'"
        ) from exc
    return aio_pika


class RabbitQueue(Queue):
    """Durable quorum queues with confirms, per-delay retry queues and a dead-letter queue."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: RabbitConfig,
        *,
        topics: tuple[str, ...],
        max_attempts: int = 5,
        prefetch: int = 2,
        poll_s: float = 0.2,
    ) -> None:
        self.config = config
        self.topics = topics
        self.max_attempts = max_attempts
        self.prefetch = max(1, prefetch)
        self.poll_s = poll_s
        self.outbox = EmbeddedQueue(sessions, max_attempts=1_000_000, poll_s=poll_s)
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractChannel | None = None
        self._consume: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dead_exchange: AbstractExchange | None = None
        self._queues: dict[str, AbstractQueue] = {}
        self._retry_declared: set[str] = set()
        self._buffers: dict[str, asyncio.Queue[AbstractIncomingMessage]] = {}
        self._held: dict[str, AbstractIncomingMessage] = {}
        self._consuming: set[str] = set()
        self._relay: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()

    # names -----------------------------------------------------------------
    def queue_name(self, topic: str) -> str:
        return f"{self.config.prefix}.{topic}"

    def dead_name(self, topic: str) -> str:
        return f"{self.config.prefix}.{topic}.dead"

    def retry_name(self, topic: str, delay_ms: int) -> str:
        return f"{self.config.prefix}.{topic}.retry.{delay_ms}"

    def _retry_delay_ms(self, delay_s: float) -> int:
        """The smallest rung of the delay ladder that is at least ``delay_s`` (or the top)."""
        ladder = sorted(self.config.retry_delays_s)
        for rung in ladder:
            if rung >= delay_s:
                return int(rung * 1000)
        return int(ladder[-1] * 1000)

    # connection ------------------------------------------------------------
    async def start(self) -> None:
        async with self._lock:
            if self._conn is not None:
                return
            aio_pika = _import_aio_pika()
            self._loop = asyncio.get_running_loop()
            self._stop.clear()
            conn: AbstractRobustConnection = await aio_pika.connect_robust(
                self.config.url.get_secret_value(),
                timeout=self.config.connect_timeout_s,
                reconnect_interval=self.config.reconnect_interval_s,
                client_properties={"connection_name": "bastion"},
            )
            self._conn = conn
            self._pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
            self._consume = await conn.channel(publisher_confirms=True, on_return_raises=True)
            await self._consume.set_qos(prefetch_count=self.prefetch)
            self._exchange = await self._pub.declare_exchange(
                self.config.prefix, aio_pika.ExchangeType.DIRECT, durable=True
            )
            self._dead_exchange = await self._pub.declare_exchange(
                f"{self.config.prefix}.dead", aio_pika.ExchangeType.DIRECT, durable=True
            )
            for topic in self.topics:
                await self._declare_topic(topic)
            self._relay = asyncio.create_task(self._relay_forever(), name="rabbitmq-relay")

    async def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._relay
            self._relay = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = self._pub = self._consume = None
        self._queues.clear()
        self._retry_declared.clear()
        self._consuming.clear()
        self._buffers.clear()
        self._held.clear()

    def _quorum_args(self, **extra: Any) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            **extra,
        }

    async def _declare_topic(self, topic: str) -> AbstractQueue:
        if topic in self._queues:
            return self._queues[topic]
        assert self._pub is not None and self._consume is not None
        assert self._exchange is not None and self._dead_exchange is not None
        dead = await self._pub.declare_queue(
            self.dead_name(topic), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(self._dead_exchange, routing_key=topic)
        args = self._quorum_args(
            **{
                "x-delivery-limit": self.config.delivery_limit,
                "x-dead-letter-exchange": self._dead_exchange.name,
                "x-dead-letter-routing-key": topic,
            }
        )
        queue = await self._consume.declare_queue(
            self.queue_name(topic), durable=True, arguments=args
        )
        await queue.bind(self._exchange, routing_key=topic)
        self._queues[topic] = queue
        return queue

    async def _declare_retry(self, topic: str, delay_ms: int) -> str:
        name = self.retry_name(topic, delay_ms)
        if name not in self._retry_declared:
            assert self._pub is not None and self._exchange is not None
            args = self._quorum_args(
                **{
                    "x-message-ttl": delay_ms,
                    "x-dead-letter-exchange": self._exchange.name,
                    "x-dead-letter-routing-key": topic,
                }
            )
            await self._pub.declare_queue(name, durable=True, arguments=args)
            self._retry_declared.add(name)
        return name

    async def _connection(self) -> AbstractRobustConnection:
        """The connection, once it is up: after a drop, wait for the reconnection (at most
        one reconnect interval plus a connect timeout) rather than fail at once."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the RabbitMQ queue is not started")
        wait = self.config.reconnect_interval_s + self.config.connect_timeout_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.ready(), wait)
        return conn

    def _require(self) -> AbstractChannel:
        if self._pub is None:
            raise RuntimeError("the RabbitMQ queue is not started")
        return self._pub

    # publishing ------------------------------------------------------------
    async def _send(
        self,
        topic: str,
        body: dict[str, Any],
        *,
        msg_id: str,
        attempt: int = 0,
        delay_s: float = 0.0,
        extra_headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish with a confirm: now into the work queue, or into a retry queue."""
        aio_pika = _import_aio_pika()
        channel = self._require()
        await self._declare_topic(topic)
        message = aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=msg_id,
            headers={ATTEMPT_HEADER: attempt, **(extra_headers or {})},
            timestamp=datetime.now(UTC),
        )
        timeout = self.config.publish_timeout_s
        if delay_s > 0:
            name = await self._declare_retry(topic, self._retry_delay_ms(delay_s))
            await channel.default_exchange.publish(message, routing_key=name, timeout=timeout)
        else:
            assert self._exchange is not None
            await self._exchange.publish(message, routing_key=topic, timeout=timeout)

    def add(
        self, session: Session, topic: str, body: dict[str, Any], *, delay_s: float = 0.0
    ) -> str:
        msg_id = uuid.uuid4().hex
        self.outbox.add(
            session, OUTBOX_TOPIC, {"id": msg_id, "topic": topic, "body": body, "delay_s": delay_s}
        )
        loop = self._loop

        def wake(_: Session) -> None:
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._wake.set)

        event.listen(session, "after_commit", wake, once=True)
        return msg_id

    async def publish(self, topic: str, body: dict[str, Any], *, delay_s: float = 0.0) -> str:
        msg_id = uuid.uuid4().hex
        await self._send(topic, body, msg_id=msg_id, delay_s=delay_s)
        return msg_id

    async def relay_once(self) -> int:
        """Move committed outbox messages to RabbitMQ; returns how many went."""
        sent = 0
        while not self._stop.is_set():
            item = await self.outbox.lease(OUTBOX_TOPIC, lease_s=self.config.publish_timeout_s * 3)
            if item is None:
                return sent
            b = item.body
            try:
                await self._send(
                    str(b["topic"]), dict(b["body"]), msg_id=str(b["id"]), delay_s=b["delay_s"]
                )
            except Exception as exc:
                await self.outbox.nack(item, delay_s=1.0, error=f"{type(exc).__name__}: {exc}")
                raise
            await self.outbox.ack(item)
            sent += 1
        return sent

    async def _relay_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.relay_once()
            except Exception as exc:
                log.warning("relaying queued messages to RabbitMQ failed: %s", exc)
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.relay_poll_s)

    # consuming -------------------------------------------------------------
    async def _ensure_consumer(self, topic: str) -> asyncio.Queue[AbstractIncomingMessage]:
        buffer = self._buffers.get(topic)
        if buffer is None:
            buffer = self._buffers[topic] = asyncio.Queue()
        if topic not in self._consuming:
            self._require()
            queue = await self._declare_topic(topic)

            async def on_message(message: AbstractIncomingMessage) -> None:
                await buffer.put(message)

            await queue.consume(on_message, no_ack=False)
            self._consuming.add(topic)
        return buffer

    @staticmethod
    def _attempt(message: AbstractIncomingMessage) -> int:
        headers = message.headers or {}
        prior = headers.get(ATTEMPT_HEADER, 0)
        redeliveries = headers.get("x-delivery-count", 0)
        return (
            int(prior if isinstance(prior, int) else 0)
            + int(redeliveries if isinstance(redeliveries, int) else 0)
            + 1
        )

    async def lease(self, topic: str, *, lease_s: float, wait_s: float = 0.0) -> Leased | None:
        buffer = await self._ensure_consumer(topic)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                left = deadline - time.monotonic()
                if left > 0:
                    message = await asyncio.wait_for(buffer.get(), left)
                else:
                    message = buffer.get_nowait()
            except (TimeoutError, asyncio.QueueEmpty):
                return None
            if message.channel.is_closed:
                continue  # delivered on a channel that is gone: the broker delivers it again
            try:
                body = json.loads(message.body)
            except ValueError:
                log.error("dropping a malformed message on %s", topic)
                await self._to_dead(topic, message, {}, 1, "malformed message body")
                continue
            token = uuid.uuid4().hex
            self._held[token] = message
            return Leased(
                id=message.message_id or token,
                topic=topic,
                body=body if isinstance(body, dict) else {"value": body},
                attempt=self._attempt(message),
                token=token,
            )

    async def extend(self, msg: Leased, *, lease_s: float) -> bool:
        # the broker holds an unacknowledged message for as long as its channel lives
        message = self._held.get(msg.token)
        return message is not None and not message.channel.is_closed

    async def ack(self, msg: Leased) -> bool:
        message = self._held.pop(msg.token, None)
        if message is None:
            return False
        try:
            await message.ack()
        except Exception as exc:  # channel closed: the broker will deliver it again
            log.info("ack of %s lost (%s); it will be delivered again", msg.id, exc)
            return False
        return True

    async def defer(self, msg: Leased, *, delay_s: float) -> bool:
        return await self._republish(msg, attempt=msg.attempt - 1, delay_s=delay_s)

    async def _republish(self, msg: Leased, *, attempt: int, delay_s: float) -> bool:
        message = self._held.get(msg.token)
        if message is None:
            return False
        await self._send(msg.topic, msg.body, msg_id=msg.id, attempt=attempt, delay_s=delay_s)
        return await self.ack(msg)

    async def _to_dead(
        self,
        topic: str,
        message: AbstractIncomingMessage,
        body: dict[str, Any],
        attempt: int,
        error: str,
    ) -> None:
        aio_pika = _import_aio_pika()
        assert self._dead_exchange is not None
        await self._declare_topic(topic)
        dead = aio_pika.Message(
            message.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id or uuid.uuid4().hex,
            headers={
                ATTEMPT_HEADER: attempt,
                ERROR_HEADER: error[:2000],
                DEAD_AT_HEADER: datetime.now(UTC).isoformat(),
            },
        )
        await self._dead_exchange.publish(
            dead, routing_key=topic, timeout=self.config.publish_timeout_s
        )
        with contextlib.suppress(Exception):
            await message.ack()

    async def nack(self, msg: Leased, *, delay_s: float, error: str) -> str:
        message = self._held.get(msg.token)
        if message is None:
            return "lost"
        if msg.attempt >= self.max_attempts:
            self._held.pop(msg.token, None)
            await self._to_dead(msg.topic, message, msg.body, msg.attempt, error)
            return "dead"
        await self._send(
            msg.topic,
            msg.body,
            msg_id=msg.id,
            attempt=msg.attempt,
            delay_s=delay_s,
            extra_headers={ERROR_HEADER: error[:2000]},
        )
        await self.ack(msg)
        return "retry"

    # dead letters ----------------------------------------------------------
    async def _drain(self, topic: str) -> tuple[AbstractChannel, list[AbstractIncomingMessage]]:
        """All messages of the dead queue, held unacknowledged on a channel of their own:
        closing that channel puts every one not acknowledged back."""
        conn = await self._connection()
        await self._declare_topic(topic)
        channel = await conn.channel(publisher_confirms=True)
        queue = await channel.declare_queue(self.dead_name(topic), passive=True)
        held: list[AbstractIncomingMessage] = []
        while len(held) < self.config.max_dead_listed:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(message)
        return channel, held

    @staticmethod
    def _dead_row(message: AbstractIncomingMessage) -> dict[str, Any]:
        headers = message.headers or {}
        try:
            body = json.loads(message.body)
        except ValueError:
            body = {"raw": message.body[:200].decode("utf-8", "replace")}
        dead_at = headers.get(DEAD_AT_HEADER)
        death = headers.get("x-death")
        error = headers.get(ERROR_HEADER)
        if error is None and death:
            error = "dead-lettered by the broker (delivery limit reached)"
        return {
            "id": message.message_id,
            "body": body,
            "attempts": headers.get(ATTEMPT_HEADER, 0),
            "error": str(error) if error is not None else None,
            "dead_at": datetime.fromisoformat(str(dead_at)) if dead_at else None,
        }

    async def dead(self, topic: str, *, limit: int = 100) -> list[dict[str, Any]]:
        self._require()
        channel, held = await self._drain(topic)
        try:
            rows = [self._dead_row(m) for m in held]
        finally:
            await channel.close()
        rows.sort(key=lambda r: r["dead_at"] or datetime.min.replace(tzinfo=UTC), reverse=True)
        return rows[:limit]

    async def redrive(self, message_id: str) -> bool:
        self._require()
        for topic in self.topics:
            channel, held = await self._drain(topic)
            try:
                for message in held:
                    if message.message_id == message_id:
                        body = json.loads(message.body)
                        await self._send(topic, body, msg_id=message_id, attempt=0)
                        await message.ack()
                        return True
            finally:
                await channel.close()
        return False

    async def depth(self, topic: str) -> int:
        """Messages ready in the work queue and waiting in its retry queues (messages held
        unacknowledged by consumers are not counted: AMQP does not report them)."""
        conn = await self._connection()
        channel = await conn.channel()
        try:
            names = [self.queue_name(topic)]
            names += [self.retry_name(topic, int(d * 1000)) for d in self.config.retry_delays_s]
            total = 0
            for name in names:
                try:
                    q = await channel.declare_queue(name, passive=True)
                except Exception:  # a retry queue not declared yet closes the channel
                    channel = await conn.channel()
                    continue
                total += int(q.declaration_result.message_count or 0)
            return total
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
