"""One connection to a live source: open it, demux and decode it, hand out frames (blocking).

Runs on the reader's thread. Frames are decoded one packet at a time and only the
frames the sampler wants are converted to RGB (and hashed), so a frame that is not
analysed costs its decoding only.

Keyframes only: at every keyframe packet the decoding mode for the coming GOP is
chosen. In keyframe mode only keyframe packets reach the decoder (which is also told
``skip_frame = NONKEY``), and a keyframe that the sampler would not take is not even
decoded; the mode changes only at a keyframe, so the decoder always restarts from a
complete picture, and each keyframe is drained from the decoder at once, so it comes
out without the decoder's reordering delay. In ``auto`` decoding, keyframe mode needs
a sampling interval of at least ``keyframes_min_interval_s`` and keyframes no further
apart than the interval (measured on the stream: the widest of the last three gaps;
until two keyframes have been seen every frame is decoded), so a stream with long
GOPs is still sampled at its interval.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from threading import Event

import av
import av.error
from av.container import InputContainer
from av.stream import Disposition
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from bastion.live.reading.clock import StreamClock
from bastion.live.reading.config import StreamReaderConfig
from bastion.live.reading.convert import check_size
from bastion.live.reading.egress import SourceGuard
from bastion.live.reading.failures import StreamFailure
from bastion.live.reading.sampler import StreamSampler
from bastion.live.reading.source import StreamSource
from bastion.live.reading.status import LiveFrame, ReaderStats
from bastion.media.digest import frame_sha256
from bastion.media.frames import to_rgb
from bastion.media.types import Frame

__all__ = ["Connection", "Counters"]

log = logging.getLogger(__name__)

# Keyframe spacing this much above the interval still allows keyframe mode (rounding).
_GOP_SLACK_S = 0.05
# Failures after which the next checked address of the source's host is tried.
_NEXT_ADDRESS = frozenset({"connection_refused", "network_error", "timeout"})


def _drop_stashed() -> None:
    """PyAV keeps an exception raised in an I/O callback until its next library call; one
    that FFmpeg got over (a skipped HLS segment) must not surface on a later connection."""
    with contextlib.suppress(Exception):
        av.error.err_check(0)


@dataclass
class Counters:
    """The reader's counters; written by its thread only, read from anywhere."""

    connections: int = 0
    reconnects: int = 0
    packets: int = 0
    bytes_read: int = 0
    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_dropped: int = 0
    frames_similar: int = 0
    frames_delivered: int = 0
    decode_errors: int = 0
    keyframes_only: bool = False
    keyframe_interval_s: float | None = None
    width: int = 0
    height: int = 0
    codec: str | None = None
    last_frame_at: float | None = None
    cpu_s: float = 0.0

    def snapshot(self) -> ReaderStats:
        return ReaderStats(**vars(self))


def _video_stream(container: InputContainer) -> VideoStream | None:
    for stream in container.streams.video:
        if not stream.disposition & (Disposition.attached_pic | Disposition.still_image):
            return stream
    return None


class Connection:
    """Opens ``source`` once and yields its decoded frames: a :class:`LiveFrame` for a frame
    the sampler took (all frames without a sampler), None for one it did not.

    Raises :class:`StreamFailure` when the connection fails or is lost; returns when
    the source ends or ``stop`` is set. ``finite`` tells, once opened, whether the
    source has an end (a file, a playlist with a duration). Where it may connect is
    ``guard``'s to decide (:mod:`bastion.live.reading.egress`).
    """

    def __init__(
        self,
        source: StreamSource,
        config: StreamReaderConfig,
        *,
        guard: SourceGuard,
        number: int,
        sampler: StreamSampler | None,
        clock: StreamClock,
        counters: Counters,
        stop: Event,
    ) -> None:
        self.source = source
        self.config = config
        self.guard = guard
        self.number = number
        self.sampler = sampler
        self.clock = clock
        self.counters = counters
        self.stop = stop
        self.finite = source.is_file
        self.frames_out = 0
        self._keyframe_times: deque[float] = deque(maxlen=4)
        self._pace: tuple[float, float] | None = None  # (monotonic, stream time) of 1st frame
        self._sample_aspect: Fraction | None = None
        self._time_base = Fraction(1, 1000)

    # ---- opening -------------------------------------------------------------
    def _failure(self, exc: BaseException) -> StreamFailure:
        return self.guard.explain(exc, opened=self.frames_out > 0)

    def _open(self) -> InputContainer:
        config = self.config
        options = self.source.container_options(config)
        attempts = self.guard.attempts()
        # reads that FFmpeg's protocol times out itself need no interrupt timeout
        read_timeout = None if self.source.times_out_reads else config.read_timeout_s
        for number, attempt in enumerate(attempts, 1):
            try:
                return av.open(
                    attempt.url,
                    mode="r",
                    format=attempt.format,
                    container_options={**options, **attempt.options},
                    timeout=(config.open_timeout_s, read_timeout),
                    metadata_errors="replace",
                    io_open=attempt.io_open,
                )
            except (av.error.FFmpegError, OSError, StreamFailure) as exc:
                failure = self._failure(exc)
                if number < len(attempts) and failure.code in _NEXT_ADDRESS:
                    log.info("live source %s: %s", self.source.display, failure.message)
                    continue
                if failure is exc:
                    raise
                raise failure from exc
        raise StreamFailure("the source's host has no address to connect to", code="network_error")

    def _setup(self, container: InputContainer) -> VideoStream:
        stream = _video_stream(container)
        if stream is None:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise StreamFailure(
                f"the source has no video stream (streams: {kinds})",
                code="no_video_stream",
                permanent=True,
            )
        ctx = stream.codec_context
        if ctx is None:
            raise StreamFailure(
                "no decoder for the stream's video codec", code="unsupported_codec", permanent=True
            )
        if ctx.width and ctx.height:
            check_size(ctx.width, ctx.height, self.config)
        self._sample_aspect = ctx.sample_aspect_ratio
        self._time_base = stream.time_base or Fraction(1, 1000)
        ctx.thread_count = self.config.decoder_threads
        ctx.options = {"max_pixels": str(self.config.max_source_pixels)}
        duration = container.duration
        self.finite = self.source.is_file or (duration is not None and duration > 0)
        counters = self.counters
        counters.connections += 1
        counters.width, counters.height, counters.codec = ctx.width, ctx.height, ctx.name
        counters.keyframe_interval_s = None
        return stream

    def frames(self) -> Iterator[LiveFrame | None]:
        try:
            container = self._open()
            try:
                stream = self._setup(container)
                self.clock.new_connection()
                yield from self._decode(container, stream)
            finally:
                container.close()
        finally:
            self.guard.finish()
            _drop_stashed()

    # ---- decoding --------------------------------------------------------------
    def _want_keyframes(self) -> bool:
        config, sampler = self.config, self.sampler
        if config.decode != "auto":
            return config.decode == "keyframes"
        if sampler is None or sampler.interval_s < config.keyframes_min_interval_s:
            return False
        gop = self.counters.keyframe_interval_s
        return gop is not None and gop <= sampler.interval_s + _GOP_SLACK_S

    def _note_keyframe(self, packet_s: float | None) -> None:
        if packet_s is None:
            return
        times = self._keyframe_times
        if times and packet_s <= times[-1]:
            times.clear()  # the source restarted its clock
        times.append(packet_s)
        if len(times) >= 2:
            gaps = [b - a for a, b in zip(times, list(times)[1:], strict=False)]
            self.counters.keyframe_interval_s = max(gaps)

    def _decode(self, container: InputContainer, stream: VideoStream) -> Iterator[LiveFrame | None]:
        ctx = stream.codec_context
        counters, config = self.counters, self.config
        time_base = self._time_base
        keyframes_only = False
        errors_in_row = 0
        last_video = time.monotonic()
        packets = container.demux()
        while not self.stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                self.guard.ended()
                break
            except (av.error.FFmpegError, OSError, StreamFailure) as exc:
                # bad data before any frame: the source is not a video, not a dropped one
                failure = self._failure(exc)
                if failure is exc:
                    raise
                raise failure from exc
            self.guard.check()  # a URL the source led to was refused: stop at once
            counters.packets += 1
            counters.bytes_read += packet.size
            now = time.monotonic()
            if packet.stream_index != stream.index:
                if now - last_video > config.read_timeout_s:
                    raise StreamFailure(
                        f"no video for {config.read_timeout_s:g} s while other data arrives",
                        code="no_video_data",
                    )
                continue
            last_video = now
            flush = packet.dts is None and packet.size == 0
            packet_s = float(packet.pts * time_base) if packet.pts is not None else None
            if packet.is_keyframe:
                self._note_keyframe(packet_s)
                was_keyframes_only, keyframes_only = keyframes_only, self._want_keyframes()
                if keyframes_only and not was_keyframes_only:
                    # the last frames of the previous GOP wait in the decoder: out with them
                    for vf in self._drain(ctx):
                        yield self._frame(vf)
                counters.keyframes_only = keyframes_only
                ctx.skip_frame = "NONKEY" if keyframes_only else "DEFAULT"
                if keyframes_only and not self._due_soon(packet_s):
                    continue  # a keyframe the sampler would not take: not even decoded
            elif keyframes_only and not flush:
                continue
            try:
                decoded = ctx.decode(None if flush else packet)
                if keyframes_only and not flush:
                    # a keyframe stands alone: drain it now rather than after the decoder's
                    # reordering delay (two or more keyframes later with B-frames)
                    decoded += self._drain(ctx)
            except av.error.FFmpegError as exc:
                counters.decode_errors += 1
                errors_in_row += 1
                if errors_in_row >= config.max_decode_errors:
                    raise self._undecodable(exc) from exc
                continue
            for vf in decoded:
                errors_in_row = 0
                yield self._frame(vf)

    def _drain(self, ctx: VideoCodecContext) -> list[VideoFrame]:
        """The frames the decoder still holds; it is ready for new packets after."""
        try:
            frames = ctx.decode(None)
        except av.error.FFmpegError:
            frames = []
        ctx.flush_buffers()
        return frames

    def _due_soon(self, packet_s: float | None) -> bool:
        sampler = self.sampler
        return sampler is None or sampler.is_due(self.clock.peek(packet_s))

    def _undecodable(self, exc: av.error.FFmpegError) -> StreamFailure:
        reason = exc.strerror or str(exc)
        if self.frames_out == 0:
            return StreamFailure(
                f"the video stream cannot be decoded: {reason}",
                code="corrupt_media",
                permanent=True,
            )
        return StreamFailure(f"decoding failed repeatedly: {reason}", code="decode_failed")

    def _frame(self, vf: VideoFrame) -> LiveFrame | None:
        counters, config = self.counters, self.config
        counters.frames_decoded += 1
        counters.last_frame_at = time.time()
        self.frames_out += 1
        check_size(vf.width, vf.height, config)
        # from the stream's time base: frames drained by a flush carry none of their own
        pts_s = float(vf.pts * self._time_base) if vf.pts is not None else None
        stream_time = self.clock.time(pts_s)
        if self.source.is_file and config.pace_files:
            self._wait_until(stream_time)
        sampler = self.sampler
        if sampler is not None and not sampler.due(stream_time):
            return None
        rgb = to_rgb(vf, config.max_side, self._sample_aspect)
        fingerprint = sampler.fingerprint(rgb) if sampler is not None else None
        counters.frames_sampled += 1
        received_at = time.time()
        return LiveFrame(
            frame=Frame(
                rgb=rgb, index=counters.frames_decoded - 1, timestamp_ms=round(stream_time * 1000)
            ),
            stream_time_s=stream_time,
            pts_s=pts_s,
            received_at=received_at,
            keyframe=vf.key_frame,
            connection=self.number,
            fingerprint=fingerprint,
            source_width=vf.width,
            source_height=vf.height,
            sha256=frame_sha256(rgb),
        )

    def _wait_until(self, stream_time: float) -> None:
        """Hold a file's frame until its time has come, as if it were live."""
        now = time.monotonic()
        if self._pace is None:
            self._pace = (now, stream_time)
            return
        started, first = self._pace
        delay = started + (stream_time - first) - now
        if delay > 0:
            self.stop.wait(delay)
