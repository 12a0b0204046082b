"""A stream session: reads one stream in a worker, samples it as its rules say, sends the
sampled frames down the image path and acts on the rules that fire.

The rule set and its policy come from the process's
:class:`~bastion.live.rules_cache.RulesCache`, which looks them up for every session once
a tick: a changed interval or similarity threshold applies to the running reader within
seconds. Status and counters stay in memory; the process's
:class:`~bastion.live.status_writer.StatusWriter` writes them back to the stream's row,
with every other session's, once a tick and soon after a status change;
a row that is no longer ours (stopped, deleted, taken over) ends the session. The
final status is written as the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from bastion.live.config import LiveConfig
from bastion.live.counters import FRAMES_ANALYZED, stream_counters
from bastion.live.processor import FrameProcessor, StreamRef
from bastion.live.reading.config import LiveSampling
from bastion.live.reading.reader import StreamReader
from bastion.live.reading.sampler import StreamSampler
from bastion.live.reading.status import LiveFrame, StreamState, StreamStatus
from bastion.live.rules_cache import RulesCache, RulesKey, StreamRules
from bastion.live.status_writer import StatusWriter
from bastion.live.streams import StreamReport, StreamService
from bastion.live.tables import Stream
from bastion.pipeline.video import frame_image
from bastion.rules import ResolvedRules

log = logging.getLogger(__name__)

# reader states → what the stream shows; ``ended`` (a finite source ran out) is offline
_SHOWN: dict[StreamState, str] = {
    StreamState.STARTING: "starting",
    StreamState.LIVE: "live",
    StreamState.RECONNECTING: "reconnecting",
    StreamState.OFFLINE: "offline",
    StreamState.ERROR: "error",
    StreamState.ENDED: "offline",
}


def sampling_for(resolved: ResolvedRules | None, config: LiveConfig) -> LiveSampling:
    if resolved is None:
        return LiveSampling(interval_s=config.default_interval_s)
    hash_kind = "dhash" if resolved.similarity_hash == "dhash" else "pdq"
    return LiveSampling(
        interval_s=resolved.sample_interval_s,
        similarity_threshold=resolved.similarity_threshold,
        hash=hash_kind,
    )


class StreamSession:
    def __init__(
        self,
        stream: Stream,
        *,
        owner: str,
        processor: FrameProcessor,
        streams: StreamService,
        config: LiveConfig,
        status: StatusWriter,
        rules: RulesCache,
    ) -> None:
        self.ref = StreamRef.of(stream)
        self.source = stream.source_url or ""
        self.owner = owner
        self.processor = processor
        self.streams = streams
        self.config = config
        self.writer = status
        self.rules_cache = rules
        self.counters: dict[str, int] = {
            "frames_decoded": 0,
            "frames_sampled": 0,
            "frames_skipped_similar": 0,
            FRAMES_ANALYZED: 0,
            "alerts": 0,
            "frames_dropped": 0,
            "reconnects": 0,
            "analysis_errors": 0,
        }
        self.status = StreamStatus(state=StreamState.STARTING, at=datetime.now(UTC).timestamp())
        self.last_frame: tuple[datetime, int, str | None] | None = None
        self._ended = asyncio.Event()
        self._reader: StreamReader | None = None
        self._sampler: StreamSampler | None = None
        self.rules: StreamRules | None = None
        self._latest: str | None = None
        self._kept: set[str] = set()  # thumbnails alerts point at: never deleted here

    # ---- status ---------------------------------------------------------------
    @property
    def resolved(self) -> ResolvedRules | None:
        """The rule set that applies to the stream now (None: none does)."""
        return self.rules.resolved if self.rules is not None else None

    @property
    def rules_key(self) -> RulesKey:
        return (self.ref.tenant_id, self.ref.channel, self.ref.tier)

    def _on_status(self, status: StreamStatus) -> None:
        self.status = status
        self.writer.changed()

    def report(self) -> StreamReport:
        """The stream's status and counters now, as its row should show them."""
        reader = self._reader
        if reader is not None:
            stats = reader.stats
            self.counters["frames_decoded"] = stats.frames_decoded
            self.counters["frames_sampled"] = stats.frames_sampled
            self.counters["frames_skipped_similar"] = stats.frames_similar
            self.counters["frames_dropped"] = stats.frames_dropped
            self.counters["reconnects"] = stats.reconnects
        # closed by us (the worker stops, or the stream was stopped): say nothing of it
        state = None if self.status.state == StreamState.STOPPED else _SHOWN[self.status.state]
        reason = self.status.message
        if self.status.state == StreamState.ENDED:
            reason = "the source ended"
        last = self.last_frame
        return StreamReport(
            status=state,
            reason=reason,
            code=self.status.code,
            counters=stream_counters(self.counters),
            last_frame_at=last[0] if last else None,
            last_frame_ms=last[1] if last else None,
            last_thumbnail=last[2] if last else None,
        )

    def _on_rules(self, rules: StreamRules) -> None:
        self.rules = rules
        sampler = self._sampler
        if sampler is not None:
            wanted = sampling_for(rules.resolved, self.config)
            if wanted != sampler.sampling:
                sampler.update(wanted)

    # ---- running --------------------------------------------------------------
    async def close(self) -> None:
        self._ended.set()
        if self._reader is not None:
            await self._reader.close()

    async def run(self) -> None:
        """Read until the stream stops, is taken from us, or its reader gives up."""
        self.rules = await self.rules_cache.get(self.rules_key)
        sampler = StreamSampler(sampling_for(self.resolved, self.config))
        reader = StreamReader(
            self.source,
            self.config.reader,
            sampler=sampler,
            on_status=self._on_status,
            url_policy=self.streams.url_policy,
        )
        self._reader, self._sampler = reader, sampler
        self.rules_cache.watch(self.ref.pk, self.rules_key, self._on_rules)
        self.writer.add(self.ref.pk, self.owner, self.report, self.close)
        try:
            async with reader:
                async for live in reader:
                    if self._ended.is_set():
                        break
                    if await self._analyze(live):
                        break  # auto-stopped
        finally:
            self._ended.set()
            self.rules_cache.forget(self.ref.pk)
            try:
                await reader.close()
            finally:
                # final counters, and the final state (offline, error) unless we closed it
                await self.writer.finish(self.ref.pk, self.owner, self.report())

    def _save_thumbnail(self, live: LiveFrame) -> asyncio.Task[str] | None:
        """Start saving a JPEG of ``live``'s frame in a worker thread, while the frame is
        analysed (None: no thumbnails). Every analysed frame is kept as the stream's
        latest, and an alert or search keeps the same file."""
        thumbs = self.processor.thumbnails
        if thumbs is None:
            return None
        return asyncio.ensure_future(asyncio.to_thread(thumbs.save, self.ref.pk, live.frame.rgb))

    async def _latest_thumbnail(
        self, saving: asyncio.Task[str] | None, kept: str | None
    ) -> str | None:
        """The JPEG of the last analysed frame; the one before goes unless an alert or
        search shows it (``kept``: the frame's thumbnail when they do)."""
        thumbs = self.processor.thumbnails
        if thumbs is None or saving is None:
            return None
        if kept is not None:
            self._kept.add(kept)
        name = kept if kept is not None else await saving
        previous, self._latest = self._latest, name
        if previous is not None and previous != name and previous not in self._kept:
            with contextlib.suppress(OSError):
                thumbs.path(self.ref.pk, previous).unlink(missing_ok=True)
        return name

    async def _drop_thumbnail(self, saving: asyncio.Task[str] | None) -> None:
        """The thumbnail of a frame that could not be analysed: not kept."""
        thumbs = self.processor.thumbnails
        if thumbs is None or saving is None:
            return
        try:
            name = await saving
        except Exception:
            log.exception("saving a thumbnail of stream %s failed", self.ref.stream_id)
            return
        if name != self._latest and name not in self._kept:
            with contextlib.suppress(OSError):
                thumbs.path(self.ref.pk, name).unlink(missing_ok=True)

    async def _analyze(self, live: LiveFrame) -> bool:
        """One sampled frame; True when the stream was stopped by a rule."""
        frame_ms = live.frame.timestamp_ms
        rules = self.rules
        saving = self._save_thumbnail(live)
        try:
            outcome = await self.processor.process(
                self.ref,
                rules.resolved if rules is not None else None,
                frame_image(live.frame, None, live.sha256),
                frame_ms=frame_ms,
                sampled_at=live.received_at,
                policy=rules.policy if rules is not None else None,
                thumbnail=saving,
            )
        except Exception:
            self.counters["analysis_errors"] += 1
            log.exception("a frame of stream %s could not be analysed", self.ref.stream_id)
            await self._drop_thumbnail(saving)
            return False
        self.counters[FRAMES_ANALYZED] += 1
        self.counters["alerts"] += len(outcome.alert_ids)
        self.last_frame = (
            datetime.fromtimestamp(live.received_at, UTC),
            int(frame_ms or 0),
            await self._latest_thumbnail(saving, outcome.thumbnail),
        )
        if outcome.alert_ids:
            self.writer.changed()
        return outcome.stopped
