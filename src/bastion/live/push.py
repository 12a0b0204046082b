"""Frames pushed by the platform (POST /v1/streams/{id}/frames) for apps that sample on
the client. The stream's rules apply exactly as to a stream Bastion reads itself: the
sampling interval (by the frame's timestamp, or the time it arrived), the similarity
skip against the last analysed frame, then the same analysis, rules, alerts and
auto-stop. The sampling state lives in the stream's row, so any API process may take
any frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Literal

from bastion.errors import InputError
from bastion.live.config import LiveConfig
from bastion.live.counters import FRAMES_ANALYZED, stream_counters
from bastion.live.processor import FrameOutcome, FrameProcessor, StreamRef
from bastion.live.reading.similarity import Fingerprinter, HashKind
from bastion.live.session import sampling_for
from bastion.live.streams import StreamService, stream_not_running
from bastion.live.tables import Stream
from bastion.live.thumbnails import LATEST_SUFFIX
from bastion.media.hashing import hamming
from bastion.pipeline.moderation import Moderation

Skip = Literal["interval", "similar"]


@dataclass
class PushedFrame:
    """What became of a pushed frame."""

    stream: Stream
    skipped: Skip | None
    distance: int | None
    outcome: FrameOutcome | None


@dataclass
class PushedFrames:
    moderation: Moderation
    streams: StreamService
    processor: FrameProcessor
    config: LiveConfig
    _hashers: dict[str, Fingerprinter] = field(default_factory=dict)

    def _hasher(self, kind: HashKind) -> Fingerprinter:
        hasher = self._hashers.get(kind)
        if hasher is None:
            hasher = self._hashers[kind] = Fingerprinter(kind)
        return hasher

    def _decide(
        self,
        pk: str,
        at_s: float,
        fingerprint: str | None,
        interval_s: float,
        threshold: int | None,
    ) -> tuple[Stream, Skip | None, int | None]:
        with self.streams.sessions.begin() as s:
            row = s.get(Stream, pk, with_for_update=True)
            if row is None:
                raise InputError("the stream is not running", code="stream_not_running", status=409)
            if row.desired != "running":
                raise stream_not_running(row)
            counters = stream_counters(row.counters)
            counters["frames_received"] = counters.get("frames_received", 0) + 1
            skipped: Skip | None = None
            distance = None
            last = row.last_sample_s
            if last is not None and 0 <= at_s - last < interval_s:
                skipped = "interval"
            else:
                counters["frames_sampled"] = counters.get("frames_sampled", 0) + 1
                row.last_sample_s = at_s
                if (
                    fingerprint is not None
                    and row.last_hash
                    and len(row.last_hash) == len(fingerprint)
                ):
                    distance = hamming(row.last_hash, fingerprint)
                if threshold is not None and distance is not None and distance <= threshold:
                    skipped = "similar"
                    key = "frames_skipped_similar"
                    counters[key] = counters.get(key, 0) + 1
                else:
                    row.last_hash = fingerprint
                    counters[FRAMES_ANALYZED] = counters.get(FRAMES_ANALYZED, 0) + 1
            row.counters = stream_counters(counters)
            now = datetime.now(UTC)
            row.last_frame_at, row.updated_at = now, now
            if row.status not in ("live", "stopped"):
                row.status = "live"
            s.flush()
            s.expunge(row)
            return row, skipped, distance

    async def push(
        self,
        tenant_id: str,
        stream_id: str,
        data: bytes,
        *,
        content_type: str | None,
        timestamp_ms: int | None,
    ) -> PushedFrame:
        received = time.time()
        stream = await asyncio.to_thread(self.streams.get, tenant_id, stream_id)
        if stream.desired != "running":
            raise stream_not_running(stream)
        ref = StreamRef.of(stream)
        decoded = await self.moderation.decode(data, content_type)
        resolved = await self.processor.resolve(ref)
        sampling = sampling_for(resolved, self.config)
        fingerprint = None
        if sampling.similarity_threshold is not None:
            hasher = self._hasher(sampling.hash)
            fingerprint = await asyncio.to_thread(hasher, decoded.frames[0].rgb)
        at_s = timestamp_ms / 1000 if timestamp_ms is not None else received
        row, skipped, distance = await asyncio.to_thread(
            self._decide,
            stream.id,
            at_s,
            fingerprint,
            sampling.interval_s,
            sampling.similarity_threshold,
        )
        if skipped is not None:
            return PushedFrame(row, skipped, distance, None)
        outcome = await self.processor.process(
            ref, resolved, decoded, frame_ms=timestamp_ms, sampled_at=received
        )
        thumbs = self.processor.thumbnails
        latest = outcome.thumbnail
        if latest is None and thumbs is not None:
            latest = await asyncio.to_thread(
                partial(thumbs.save, latest_only=True), stream.id, decoded.frames[0].rgb
            )
        previous = await asyncio.to_thread(
            self._after_analysis, stream.id, len(outcome.alert_ids), latest
        )
        if thumbs is not None and previous is not None and previous != latest:
            with contextlib.suppress(OSError):
                thumbs.path(stream.id, previous).unlink(missing_ok=True)
        fresh = await asyncio.to_thread(self.streams.get_by_pk, stream.id)
        return PushedFrame(fresh or row, None, distance, outcome)

    def _after_analysis(self, pk: str, alerts: int, thumbnail: str | None) -> str | None:
        """Count the frame's alerts and make ``thumbnail`` the stream's latest analysed
        frame (as a session does for streams Bastion reads); the latest frame before it
        to delete when it was kept only as the latest (an alert's frame stays: alerts and
        review items show it)."""
        with self.streams.sessions.begin() as s:
            row = s.get(Stream, pk, with_for_update=True)
            if row is None:
                return None
            if alerts:
                counters = stream_counters(row.counters)
                counters["alerts"] = counters.get("alerts", 0) + alerts
                row.counters = counters
            if thumbnail is None:
                return None
            previous, row.last_thumbnail = row.last_thumbnail, thumbnail
            row.updated_at = datetime.now(UTC)
            if previous is None or not previous.endswith(LATEST_SUFFIX):
                return None
            return previous
