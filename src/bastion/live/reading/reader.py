"""Reads a live stream: connects, decodes in a thread, reconnects, reports its status.

::

    sampler = StreamSampler(LiveSampling(interval_s=2, similarity_threshold=20))
    async with StreamReader(url, config, sampler=sampler, on_status=print) as reader:
        async for live in reader:  # LiveFrame: live.frame is an RGB Frame to analyse
            ...
    reader.status  # the final StreamStatus: ended, offline, error (with a code) or stopped

Decoding runs on a thread of the reader's own (FFmpeg calls block), one connection
at a time (:mod:`bastion.live.reading.connection`). Between that thread and the consumer
sits a small queue (``queue_size``): when the consumer is slow the oldest frame is
dropped, never buffered without bound (a local file read without pacing waits for the
consumer instead, since nothing is lost by waiting). With a sampler, only the frames due by
stream time are converted to RGB and queued, and a queued frame similar to the last
analysed one is skipped as it is taken from the queue (counted in ``frames_similar``);
without one every decoded frame is handed out.

Status changes go to ``on_status`` on the event loop's thread, in order:
``starting`` → ``live`` at the first decoded frame; when the source drops or cannot be
reached, ``reconnecting`` once per failed attempt (attempt number, the failure's code
and message, the delay before the next try), back to ``live`` at the next frame; and
one final state: ``offline`` (given up, see :mod:`bastion.live.reading.backoff`), ``error``
(the source cannot be read, e.g. ``corrupt_media``, ``no_video_stream``,
``unsupported_codec``, or leads somewhere the URL policy refuses, ``url_rejected``:
no retry), ``ended`` (a file or a playlist with an end) or
``stopped`` (:meth:`StreamReader.close`). Iteration ends after the final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from types import TracebackType
from typing import Self

from bastion.live.reading.backoff import Backoff
from bastion.live.reading.clock import StreamClock
from bastion.live.reading.config import StreamReaderConfig
from bastion.live.reading.connection import Connection, Counters
from bastion.live.reading.egress import SourceGuard
from bastion.live.reading.failures import StreamFailure
from bastion.live.reading.handoff import LatestQueue
from bastion.live.reading.sampler import StreamSampler
from bastion.live.reading.source import StreamSource, parse_source
from bastion.live.reading.status import (
    LiveFrame,
    ReaderStats,
    StatusCallback,
    StreamState,
    StreamStatus,
)
from bastion.media.fetch import FetchPolicy

__all__ = ["StreamReader"]

log = logging.getLogger(__name__)


class StreamReader:
    """A live source read into frames; see the module documentation.

    The source is validated here: a URL this reader does not accept raises
    :class:`~bastion.errors.UrlRejected` (400 ``url_rejected``). Every connection it
    makes (redirects, HLS playlists, segments and keys, reconnections) obeys
    ``url_policy``, the policy of URL inputs (default: public addresses only); a refused
    one ends the reader in ``error`` with the code ``url_rejected``
    (:mod:`bastion.live.reading.egress`).
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        config: StreamReaderConfig | None = None,
        *,
        sampler: StreamSampler | None = None,
        on_status: StatusCallback | None = None,
        rng: random.Random | None = None,
        url_policy: FetchPolicy | None = None,
    ) -> None:
        self.config = config or StreamReaderConfig()
        self.source: StreamSource = parse_source(source, allow_files=self.config.allow_files)
        self.url_policy = url_policy or FetchPolicy()
        self.sampler = sampler
        self._on_status = on_status
        self._backoff = Backoff(self.config, rng)
        self._counters = Counters()
        self._stop = threading.Event()
        self._status = StreamStatus(state=StreamState.STARTING, at=time.time())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: LatestQueue[LiveFrame] | None = None
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future[None] | None = None

    # ---- public API ------------------------------------------------------------
    @property
    def status(self) -> StreamStatus:
        """The latest status (as last reported to ``on_status``)."""
        return self._status

    @property
    def stats(self) -> ReaderStats:
        counters = self._counters
        if self._queue is not None:
            counters.frames_dropped = self._queue.dropped
        thread = self._thread
        if thread is not None and thread.is_alive() and thread.ident is not None:
            with contextlib.suppress(OSError, AttributeError):  # ended meanwhile; not Unix
                counters.cpu_s = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        return counters.snapshot()

    @property
    def running(self) -> bool:
        """Started and not yet in a final state."""
        return self._done is not None and not self._done.done()

    def start(self) -> None:
        """Start reading (on the running event loop); the first status is ``starting``."""
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._queue = LatestQueue(loop, self.config.queue_size)
        self._done = loop.create_future()
        self._publish(self._status)
        self._thread = threading.Thread(
            target=self._run, name=f"live-reader {self.source.display}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Stop reading and wait for the reader's thread (at most about ``read_timeout_s``:
        a blocking network read is only interrupted by its timeout)."""
        self._stop.set()
        if self._done is None:
            self._status = StreamStatus(state=StreamState.STOPPED, at=time.time())
            return
        wait = self.config.read_timeout_s + self.config.open_timeout_s + 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._done), wait)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LiveFrame:
        self.start()
        assert self._queue is not None
        while True:
            live = None if self._stop.is_set() else await self._queue.get()
            if live is None:
                raise StopAsyncIteration
            sampler = self.sampler
            if sampler is not None and not sampler.accept(live.fingerprint):
                self._counters.frames_similar += 1
                continue
            self._counters.frames_delivered += 1
            return live

    # ---- status reporting --------------------------------------------------------
    def _publish(self, status: StreamStatus) -> None:
        """On the loop's thread: record ``status`` and tell the owner."""
        self._status = status
        if self._on_status is None:
            return
        try:
            self._on_status(status)
        except Exception:
            log.exception("live stream status callback failed (%s)", self.source.display)

    def _report(self, state: StreamState, **fields: object) -> None:
        """From the reader's thread."""
        status = StreamStatus.model_validate(
            {"state": state, "at": time.time(), "reconnects": self._counters.reconnects, **fields}
        )
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._publish, status)
        except RuntimeError:  # the loop is gone
            self._status = status

    def _finish(self) -> None:
        assert self._loop is not None and self._queue is not None
        self._queue.close()
        done = self._done
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(
                lambda: None if done is None or done.done() else done.set_result(None)
            )

    # ---- the reader's thread -------------------------------------------------------
    def _run(self) -> None:
        try:
            final = self._connect_until_done()
            if self._stop.is_set():
                final = (StreamState.STOPPED, {})
            state, fields = final
            self._report(state, **fields)
        except Exception as exc:  # a bug, not the source: never leave the owner waiting
            log.exception("live stream reader failed (%s)", self.source.display)
            self._report(StreamState.ERROR, code="internal_error", message=str(exc))
        finally:
            self._counters.cpu_s = time.thread_time()
            self._finish()

    def _connect_until_done(self) -> tuple[StreamState, dict[str, object]]:
        guard = SourceGuard(self.source, self.config, self.url_policy)
        try:
            return self._connect(guard)
        finally:
            guard.close()

    def _connect(self, guard: SourceGuard) -> tuple[StreamState, dict[str, object]]:
        clock = StreamClock()
        counters, queue = self._counters, self._queue
        assert queue is not None
        # a file read as fast as it decodes waits for the consumer; live sources drop
        hold = self._stop if self.source.is_file and not self.config.pace_files else None
        attempt = 0
        last_frame = time.monotonic()
        number = 0
        while not self._stop.is_set():
            number += 1
            connection = Connection(
                self.source,
                self.config,
                guard=guard,
                number=number,
                sampler=self.sampler,
                clock=clock,
                counters=counters,
                stop=self._stop,
            )
            announced = False
            try:
                for live in connection.frames():
                    if not announced:  # the first frame of this connection
                        announced, attempt = True, 0
                        self._report(StreamState.LIVE)
                    if live is not None:
                        queue.put(live, wait=hold)
                failure = None
            except StreamFailure as exc:
                failure = exc
            if connection.frames_out:
                last_frame = time.monotonic()
            if self._stop.is_set():
                break
            if failure is None:
                if connection.finite:
                    return StreamState.ENDED, {}
                failure = StreamFailure("the source ended the stream", code="source_ended")
            fields: dict[str, object] = {"code": failure.code, "message": failure.message}
            if failure.permanent:
                return StreamState.ERROR, fields
            attempt += 1
            delay = self._backoff.next_delay(attempt, time.monotonic() - last_frame)
            if delay is None:
                return StreamState.OFFLINE, {**fields, "attempt": attempt}
            log.info(
                "live stream %s: %s (%s); retry %d in %.1f s",
                self.source.display,
                failure.message,
                failure.code,
                attempt,
                delay,
            )
            self._report(StreamState.RECONNECTING, attempt=attempt, retry_in_s=delay, **fields)
            if self._stop.wait(delay):
                break
            counters.reconnects += 1
        return StreamState.STOPPED, {}
