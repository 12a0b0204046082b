"""Runs stream sessions in a worker process: claims streams nobody runs, renews the
claims of its own, ends sessions whose stream was stopped or taken over, and hands its
streams back when the process stops. Streams spread over every process running one
(``bastion up`` and each ``bastion worker``), and a dead worker's streams move to the
others once its claims lapse (``live.lease_s``).

The supervisor also runs what its sessions share: one
:class:`~bastion.live.status_writer.StatusWriter` that writes every session's status in
one transaction a tick, and one :class:`~bastion.live.rules_cache.RulesCache` that looks
up every session's rules and policy once a tick. Its own database work (claims,
renewals, releases) runs, like theirs, on the frame processor's executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from bastion.live.config import LiveConfig
from bastion.live.processor import FrameProcessor
from bastion.live.rules_cache import RulesCache
from bastion.live.session import StreamSession
from bastion.live.status_writer import StatusWriter
from bastion.live.streams import StreamService

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class StreamSupervisor:
    def __init__(
        self,
        streams: StreamService,
        processor: FrameProcessor,
        config: LiveConfig,
        *,
        owner: str | None = None,
    ) -> None:
        self.streams = streams
        self.processor = processor
        self.config = config
        self.owner = owner or worker_name()
        self.sessions: dict[str, tuple[StreamSession, asyncio.Task[None]]] = {}
        self.status = StatusWriter(streams, processor.executor)
        """Writes the sessions' status, all in one transaction a tick."""
        self.rules = RulesCache(processor.rules, processor.policies, processor.executor)
        """The sessions' rules and policies, looked up once a tick."""

    def _start(self, session: StreamSession) -> None:
        pk = session.ref.pk

        async def run() -> None:
            try:
                await session.run()
            except Exception:
                log.exception("stream session %s failed", session.ref.stream_id)
            finally:
                self.sessions.pop(pk, None)
                with contextlib.suppress(Exception):
                    await self.processor.in_executor(self.streams.release, self.owner, pk)

        task = asyncio.create_task(run(), name=f"stream {session.ref.stream_id}")
        self.sessions[pk] = (session, task)

    async def tick(self) -> None:
        """Renew our claims, drop sessions that are no longer ours, claim new streams."""
        held = list(self.sessions)
        if held:
            ours = await self.processor.in_executor(self.streams.renew, self.owner, held)
            for pk in held:
                if pk not in ours and pk in self.sessions:
                    session, _ = self.sessions[pk]
                    await session.close()
        room = self.config.max_streams - len(self.sessions)
        for row in await self.processor.in_executor(self.streams.claim, self.owner, room):
            log.info("stream %s (%s) taken by %s", row.stream_id, row.channel, self.owner)
            self._start(
                StreamSession(
                    row,
                    owner=self.owner,
                    processor=self.processor,
                    streams=self.streams,
                    config=self.config,
                    status=self.status,
                    rules=self.rules,
                )
            )

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Run sessions until ``stop`` is set, then end them (their final status is
        written before the status writer stops)."""
        shared = asyncio.Event()
        loops = [
            asyncio.create_task(self.status.run_forever(shared), name="stream-status"),
            asyncio.create_task(self.rules.run_forever(shared), name="stream-rules"),
        ]
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:
                    log.exception("stream supervisor tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.claim_interval_s)
        finally:
            try:
                await self.close()
            finally:
                shared.set()
                await asyncio.gather(*loops, return_exceptions=True)

    async def close(self) -> None:
        """End every session and give its stream back for another worker to take now."""
        running = list(self.sessions.values())
        for session, _ in running:
            await session.close()
        for _, task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 30)
