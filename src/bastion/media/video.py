"""Safe, streaming video probing and frame sampling with PyAV (FFmpeg).

The container format is sniffed from the leading bytes and FFmpeg is told to use that
one demuxer, the way images are opened with one Pillow plugin: playlists, concat
scripts and other formats that open further files or URLs are never reached. Sizes
are checked before any frame is decoded (bytes, then width × height and each side
from the stream header), and again on every decoded frame, since a stream may change
resolution half-way; the decoder itself is also given the pixel limit.

Nothing the header says about time is trusted. Before decoding, one pass reads the
packets (no decoding, cheap next to it) through a *content clock*: timestamps are
followed while they move forward by less than ``max_timestamp_gap_s``; a reset (two
clips joined end to end, a looped recording) or a longer jump is a discontinuity
that the clock bridges, carrying on one frame later. That pass measures the length
of the content (checked against ``max_duration_s``; reported as ``duration_s``), the
keyframes and the discontinuities; the decoding pass runs the same clock and hands
every packet to the decoder with its content time, so decoded frames carry content
times whatever the container says. Frames whose times are missing, repeated or out
of order are timed one frame after the previous one. Sampling follows that clock to
the end of the data: a wrong, short or missing declared duration, B-frame reordering
or a variable frame rate do not make it stop early or drop frames.

Frames are decoded one at a time and only the frames that are returned are turned
into RGB, so memory does not depend on the length of the video. Three ways to pick
frames (:class:`VideoSampling`):

``interval``
    The first frame at or after every N seconds. When the keyframe before the next
    wanted time lies well ahead, the packets up to it are read but not decoded (the
    position is always known, so a hostile index cannot make it skip content; this
    only happens while the timestamps are in an order that makes it safe);
    otherwise decoding simply continues.
``keyframes``
    Only keyframe packets reach the decoder, which is also told to drop everything
    else (``skip_frame = NONKEY``). Cheapest, but the spacing is the encoder's GOP;
    when keyframes lie more than ``keyframe_max_gap_s`` apart anywhere, the video
    is sampled by interval instead.
``scene``
    Every frame is decoded and compared with the previous one on a small grey
    thumbnail; a frame is kept where the picture changes abruptly (a cut), with a
    minimum gap between kept frames and, optionally, at least one every N seconds.

Returned frames are upright (the display matrix is applied), have square pixels
(the sample aspect ratio is applied) and their longest side is at most
``max_side``. ``Frame.timestamp_ms`` is the content time from the start of the
stream and ``Frame.index`` the frame number that time corresponds to at the stream's
frame rate. What could not be analysed (damaged data, undecodable packets, a file
that ends before its declared end, ``max_frames`` reached) is listed in
``FrameSampler.unanalyzed`` as well as in the warnings.

Every function here opens its own containers: nothing is shared between calls, so
different threads may sample different videos at the same time.
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from types import TracebackType
from typing import Any, Literal

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import (
    BastionError,
    CorruptMedia,
    EmptyInput,
    ImageTooLarge,
    MediaError,
    MediaTooLarge,
    UnsupportedMediaType,
)
from bastion.media.frames import quarter_turns, to_rgb
from bastion.media.image import Sniffed, sniff
from bastion.media.types import Frame

__all__ = [
    "FrameSampler",
    "StreamInfo",
    "TimestampDiscontinuity",
    "VideoInfo",
    "VideoLimits",
    "VideoSampling",
    "VideoSource",
    "is_video",
    "probe",
    "sample_frames",
]

VideoSource = str | os.PathLike[str] | bytes

_SNIFF_BYTES = 8192
# Decode errors in a row after which the stream is given up.
_MAX_ERRORS_IN_A_ROW = 64
# Side of the grey thumbnails compared in scene mode.
_SCENE_SIDE = 64
_SCENE_BINS = 32
# Timestamp discontinuities listed one by one (the rest are only counted).
_MAX_REPORTED_JUMPS = 20
# Packets of all streams read per video frame allowed, at most (see max_decoded_frames).
_PACKETS_PER_FRAME = 4
# How close to a timestamp discontinuity a packet flagged damaged counts as a seam.
_SEAM_PACKETS = 8
# Bytes an FLV may hold after its last packet (the size of that last tag, metadata).
_FLV_TAIL_BYTES = 1024
# Top-level MP4 boxes walked at most, looking for a second movie.
_MAX_BOXES = 4096
# How much later than the keyframe skipped to the first picture after it may be.
_LANDING_SLACK_MS = 500.0
# MPEG-TS packet sizes and where their sync byte is: plain, with a 4-byte timestamp
# before it (M2TS), with 16 Reed-Solomon bytes after it.
_TS_PACKETS = ((188, 0), (192, 4), (204, 0))


class VideoLimits(BaseModel):
    """Limits checked before and while decoding a video; they keep memory and time bounded."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(
        4 * 1024**3, ge=1, description="Largest accepted video file or upload, in bytes."
    )
    max_side: int = Field(8192, ge=1, description="Largest accepted frame width or height.")
    max_pixels: int = Field(
        40_000_000, ge=1, description="Largest accepted width × height of one frame."
    )
    max_duration_s: float = Field(
        4 * 3600.0, gt=0, description="Longest accepted video, in seconds (declared or decoded)."
    )
    max_decoded_frames: int = Field(
        2_000_000,
        ge=1,
        description="Most frames decoded (or video packets read) from one video; four "
        "times as many packets of all its streams may be read (bounds the time a video "
        "with very many tiny frames or packets can take).",
    )
    max_timestamp_gap_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Largest forward step of the timestamps from one frame to the next that "
        "is taken as real time. A larger jump, or any step backwards (a timestamp reset, "
        "e.g. two clips joined end to end), is a discontinuity: the content clock carries "
        "on one frame later, so the frames after it are analysed like any other, and the "
        "discontinuity is reported.",
    )


class VideoSampling(BaseModel):
    """Which frames of a video are analysed."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["interval", "keyframes", "scene"] = Field(
        "interval",
        description="interval: one frame every `interval_s`; keyframes: only keyframes "
        "(fastest, spacing set by the encoder); scene: frames where the picture changes.",
    )
    interval_s: float = Field(
        1.0, gt=0, le=3600, description="interval mode: seconds between analysed frames."
    )
    scene_threshold: float = Field(
        0.3,
        gt=0,
        le=1,
        description="scene mode: change score (0–1) from one frame to the next that "
        "counts as a cut; 0.3 catches hard cuts and ignores camera motion.",
    )
    min_gap_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="keyframes and scene modes: least time between analysed frames.",
    )
    scene_max_gap_s: float | None = Field(
        10.0,
        gt=0,
        description="scene mode: also analyse a frame when nothing has changed for this "
        "long (None: only at cuts).",
    )
    keyframe_max_gap_s: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="keyframes mode: when keyframes lie further apart than this anywhere in "
        "the video (or the video starts or ends that far from one), the video is sampled "
        "every `interval_s` instead, so that no stretch of it goes unseen.",
    )
    max_frames: int = Field(
        7200,
        ge=1,
        le=100_000,
        description="Most frames analysed. In interval mode a video longer than "
        "max_frames × interval_s is sampled at a wider interval to cover all of it; "
        "the other modes stop at the limit (with a warning).",
    )
    max_side: int = Field(
        1280, ge=16, le=8192, description="Longest side of the frames handed to analyzers."
    )
    seek_min_gap_s: float = Field(
        0.5,
        ge=0,
        description="interval mode: skip ahead to the keyframe before the next wanted time "
        "(leaving the packets in between undecoded) instead of decoding forward when that "
        "keyframe is at least this far ahead.",
    )
    threads: int = Field(
        1,
        ge=0,
        le=64,
        description="Decoder threads per video (0: FFmpeg picks, one per core). One leaves "
        "the cores to the models, which are the slower part.",
    )


class StreamInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    type: str = Field(description="video, audio, subtitle, data or attachment.")
    codec: str | None
    language: str | None = None


class VideoInfo(BaseModel):
    """What the container and its video stream declare."""

    model_config = ConfigDict(extra="forbid")

    format: str = Field(description="What the leading bytes say, e.g. 'MP4 video'.")
    container: str = Field(description="FFmpeg demuxer, e.g. 'mov,mp4,m4a,3gp,3g2,mj2'.")
    byte_size: int
    duration_s: float | None = Field(description="Declared duration; None when unknown.")
    bit_rate: int | None
    has_video: bool
    has_audio: bool
    codec: str | None = Field(description="Video codec, e.g. 'h264'.")
    width: int
    height: int
    fps: float | None = Field(description="Average frame rate; None when unknown.")
    frames: int | None = Field(description="Declared frame count; None when unknown.")
    streams: list[StreamInfo]


class TimestampDiscontinuity(BaseModel):
    """A point where a video's timestamps stop following its content."""

    model_config = ConfigDict(extra="forbid")

    at_ms: int = Field(description="Content time at which the video carries on after it.")
    kind: Literal["backwards", "forward"] = Field(
        description="backwards: the timestamps went back (a reset, e.g. clips joined end to "
        "end or a looped recording); forward: they jumped further ahead than "
        "max_timestamp_gap_s."
    )
    jump_ms: int = Field(description="How far the timestamps jumped (negative: backwards).")


def _is_theora(head: bytes) -> bool:
    return b"\x80theora" in head[:4096]


def _demuxer(found: Sniffed, head: bytes) -> str | None:
    """The one FFmpeg demuxer allowed for what the bytes look like."""
    name = found.name
    if name in ("MP4 video", "QuickTime video", "3GPP video", "MPEG-4 audio"):
        return "mov"
    if name == "MPEG video":
        return "mpeg" if head[3:4] == b"\xba" else "mpegvideo"
    return {
        "WebM/Matroska video": "matroska",
        "AVI video": "avi",
        "FLV video": "flv",
        "ASF/WMV video": "asf",
        "MPEG transport stream video": "mpegts",
        "Ogg media": "ogg",
    }.get(name)


def is_video(head: bytes) -> bool:
    """True when the leading bytes are a video container this module opens."""
    found = sniff(head[:_SNIFF_BYTES])
    return found.kind == "video" or (found.name == "Ogg media" and _is_theora(head))


def _read_head(source: VideoSource) -> tuple[bytes, int]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source[:_SNIFF_BYTES])
        return data, len(source)
    with open(source, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return fh.read(_SNIFF_BYTES), size


def _refuse(found: Sniffed) -> MediaError:
    if found.kind == "audio":
        return MediaError(
            f"the input is {found.name}; it has no video stream",
            code="no_video_stream",
            details={"detected": found.name},
        )
    if found.kind == "unknown":
        what = f"not a recognised video format ({found.name})"
    else:
        article = "an" if found.name[:1].lower() in "aeiou" else "a"
        what = f"{article} {found.name}"
        if found.kind == "image":
            what += " (images go through the image path)"
    return UnsupportedMediaType(
        f"unsupported media type: the input is {what}; send an MP4, QuickTime, "
        "WebM/Matroska, AVI, FLV, MPEG, WMV or Ogg video",
        details={"detected": found.name},
    )


def _fraction(value: Fraction | None) -> Fraction | None:
    if value is None or value.denominator == 0 or value <= 0:
        return None
    return value


def _videos(container: InputContainer) -> list[VideoStream]:
    """The video streams, cover art left out."""
    return [
        stream
        for stream in container.streams.video
        if not stream.disposition & (Disposition.attached_pic | Disposition.still_image)
    ]


def _video_stream(container: InputContainer) -> VideoStream | None:
    videos = _videos(container)
    return videos[0] if videos else None


def _duration_s(container: InputContainer, stream: VideoStream | None) -> float | None:
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _info(
    container: InputContainer, stream: VideoStream | None, found: Sniffed, size: int
) -> VideoInfo:
    streams = [
        StreamInfo(
            index=s.index,
            type=s.type,
            codec=s.codec_context.name if s.codec_context is not None else None,
            language=s.language,
        )
        for s in container.streams
    ]
    fps = _fraction(stream.average_rate or stream.guessed_rate) if stream else None
    return VideoInfo(
        format=found.name,
        container=container.format.name,
        byte_size=size,
        duration_s=_duration_s(container, stream),
        bit_rate=container.bit_rate or None,
        has_video=stream is not None,
        has_audio=bool(container.streams.audio),
        codec=stream.codec_context.name if stream is not None else None,
        width=stream.codec_context.width if stream is not None else 0,
        height=stream.codec_context.height if stream is not None else 0,
        fps=float(fps) if fps else None,
        frames=(stream.frames or None) if stream is not None else None,
        streams=streams,
    )


def _check_size(width: int, height: int, limits: VideoLimits, what: str) -> None:
    details = {"width": width, "height": height}
    if max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"{what} is {width}×{height}; the longest side may be at most {limits.max_side}",
            code="video_too_large",
            details={**details, "max_side": limits.max_side},
        )
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{what} is {width}×{height} = {width * height} pixels; at most "
            f"{limits.max_pixels} are accepted",
            code="video_too_large",
            details={**details, "max_pixels": limits.max_pixels},
        )


def _check(info: VideoInfo, limits: VideoLimits, *, duration: bool = True) -> None:
    if not info.has_video:
        kinds = sorted({s.type for s in info.streams}) or ["no"]
        raise MediaError(
            f"the input ({info.format}) has no video stream (streams: {', '.join(kinds)})",
            code="no_video_stream",
            details={"streams": [s.model_dump() for s in info.streams]},
        )
    if info.width <= 0 or info.height <= 0:
        raise CorruptMedia(f"the video stream has an invalid size {info.width}×{info.height}")
    _check_size(info.width, info.height, limits, "the video")
    if duration and info.duration_s is not None:
        _check_duration(info.duration_s, limits)


def _check_duration(duration_s: float, limits: VideoLimits) -> None:
    if duration_s > limits.max_duration_s:
        raise MediaTooLarge(
            f"the video lasts {duration_s:.0f} s; at most {limits.max_duration_s:.0f} s "
            "are accepted",
            details={"duration_s": duration_s, "max_duration_s": limits.max_duration_s},
        )


@dataclass
class _Opened:
    container: InputContainer
    stream: VideoStream | None
    info: VideoInfo
    reopen: Callable[[], InputContainer]
    head: bytes


def _top_level_boxes(source: VideoSource, kind: str) -> int:
    """How many top-level boxes of ``kind`` an MP4/QuickTime file has (stops at junk)."""
    want = kind.encode("latin-1")
    found = 0

    def walk(read: Callable[[int, int], bytes], size: int) -> int:
        nonlocal found
        at = 0
        for _ in range(_MAX_BOXES):
            if at + 8 > size:
                break
            header = read(at, 16)
            length, name = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:
                length = size - at
            if length < 8:
                break
            found += name == want
            at += length
        return found

    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        return walk(lambda at, n: bytes(view[at : at + n]), len(view))
    with open(source, "rb") as fh:

        def read(at: int, n: int) -> bytes:
            fh.seek(at)
            return fh.read(n)

        return walk(read, os.fstat(fh.fileno()).st_size)


def _ts_packet_size(head: bytes) -> int | None:
    """The MPEG-TS packet size that the leading bytes show (sync bytes in step)."""
    for size, sync in _TS_PACKETS:
        if len(head) > sync + 2 * size and all(head[sync + k * size] == 0x47 for k in range(3)):
            return size
    return None


def _av_open(source: VideoSource, demuxer: str, name: str) -> InputContainer:
    target: str | io.BytesIO = (
        io.BytesIO(bytes(source))
        if isinstance(source, bytes | bytearray | memoryview)
        else os.fspath(source)
    )
    try:
        return av.open(
            target,
            mode="r",
            format=demuxer,
            container_options={"protocol_whitelist": "file"},
            metadata_errors="replace",
        )
    except av.error.FFmpegError as exc:
        raise CorruptMedia(
            f"corrupt or truncated {name}: {exc.strerror or exc}",
            details={"detected": name},
        ) from exc


def _open(
    source: VideoSource,
    limits: VideoLimits,
    *,
    check: bool = True,
    check_duration: bool = True,
) -> _Opened:
    """Sniff, open with the one matching demuxer and read the stream headers.

    ``check_duration=False`` leaves the declared duration unchecked, for callers that
    measure the content itself.
    """
    head, size = _read_head(source)
    if size == 0:
        raise EmptyInput("the input is empty (0 bytes)")
    if size > limits.max_bytes:
        raise MediaTooLarge(
            f"the input is {size} bytes; at most {limits.max_bytes} are accepted",
            details={"byte_size": size, "max_bytes": limits.max_bytes},
        )
    found = sniff(head)
    demuxer = _demuxer(found, head)
    if demuxer is None:
        raise _refuse(found)
    name = found.name
    container = _av_open(source, demuxer, name)
    try:
        stream = _video_stream(container)
        info = _info(container, stream, found, size)
        if check:
            _check(info, limits, duration=check_duration)
    except BaseException:
        container.close()
        raise
    return _Opened(container, stream, info, lambda: _av_open(source, demuxer, name), head)


def probe(
    source: VideoSource, limits: VideoLimits | None = None, *, check: bool = True
) -> VideoInfo:
    """Read a video's container and stream headers without decoding any frame.

    ``source`` is a file path (preferred for large videos) or the bytes of the file.
    With ``check`` (the default) the limits are applied and a file without a video
    stream is refused.

    Raises :class:`EmptyInput`, :class:`MediaTooLarge` (bytes or duration),
    :class:`UnsupportedMediaType`, :class:`CorruptMedia`, :class:`ImageTooLarge` with
    code ``video_too_large``, or :class:`MediaError` with code ``no_video_stream``;
    :class:`OSError` when a path cannot be read.
    """
    opened = _open(source, limits or VideoLimits(), check=check)
    opened.container.close()
    return opened.info


def _grey_thumbnail(frame: VideoFrame) -> np.ndarray:
    scale = _SCENE_SIDE / max(frame.width, frame.height)
    width = max(2, round(frame.width * scale))
    height = max(2, round(frame.height * scale))
    small = frame.reformat(width=width, height=height, format="gray", interpolation="AREA")
    return np.asarray(small.to_ndarray(), dtype=np.float32)


class _SceneScore:
    """Abrupt-change score of consecutive frames, 0–1.

    Two cues on a grey thumbnail: the mean absolute difference from the previous
    frame, counted only as far as it jumps above the previous difference (the way
    FFmpeg's scene filter does, so steady camera motion does not count), and the
    change of the grey-level histogram (which ignores motion within a shot).
    The score is the larger of the two.
    """

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._prev_hist: np.ndarray | None = None
        self._prev_diff = 0.0

    def __call__(self, grey: np.ndarray) -> float:
        hist = np.histogram(grey, bins=_SCENE_BINS, range=(0, 256))[0].astype(np.float32)
        hist /= max(float(hist.sum()), 1.0)
        prev, prev_hist = self._prev, self._prev_hist
        self._prev, self._prev_hist = grey, hist
        if prev is None or prev_hist is None or prev.shape != grey.shape:
            self._prev_diff = 0.0
            return 1.0
        diff = float(np.mean(np.abs(grey - prev)))
        jump = min(diff, abs(diff - self._prev_diff)) / 100.0
        self._prev_diff = diff
        hist_change = 0.5 * float(np.abs(hist - prev_hist).sum())
        return min(1.0, max(jump, hist_change))


# ---- the content clock ------------------------------------------------------------------
class _Timeline:
    """The content clock of a video stream, run over its packets in decode order.

    Timestamps may restart (clips joined end to end, a looped recording), jump far
    ahead, repeat, stall or be missing, and the declared duration may be anything.
    The clock follows the decode timestamps while they move forward by at most
    ``gap_us`` from one packet to the next. A step back behind the previous packet's
    own timestamp, or a longer jump forward, is a discontinuity: the clock carries on
    one frame (``step_us``) past the furthest time reached and keeps that offset for
    the packets after it. A packet that repeats (or stalls between) the timestamps of
    the packet before is put one frame after it, for itself only, so the clock falls
    back in step once the timestamps move on. A presentation time that is implausible
    next to its decode time (before it, or more than ``gap_us`` after it) is dropped;
    the frame is then timed from the one before it when decoded.

    :meth:`admit` rewrites each packet's timestamps to the clock, in microseconds,
    before the packet reaches the decoder, so decoded frames carry content times. The
    scan before decoding and the decoding pass run the same clock over the same
    packets, so they agree on every time.

    ``regular`` stays true while presentation times come in an order that lets whole
    groups of pictures be skipped without decoding them: each keyframe later than
    everything before it, each other picture later than everything before its
    keyframe, no repeated decode time.
    """

    def __init__(self, time_base: Fraction, start: int | None, step_us: int, gap_us: int):
        # exact integer microseconds: timestamps may be anywhere in 64 bits
        self._num = time_base.numerator * 1_000_000
        self._den = time_base.denominator
        self._start = start
        self._step = step_us
        self._gap = gap_us
        self._offset = 0
        self._last_dts: int | None = None  # content decode time of the packet before
        self._last_own: int | None = None  # and what its own timestamp said
        self._max_pts: int | None = None
        self._floor: int | None = None  # the furthest presentation time before the keyframe
        self.head: int | None = None  # the furthest content time reached, µs
        self.raw_end: int | None = None  # the furthest timestamp as written, µs
        self.pts_us: int | None = None  # content presentation time of the last packet
        self.last_step: int | None = None  # the last ordinary step between decode times
        self.regular = True
        self.count = 0
        self.repeated = 0
        self.found: list[TimestampDiscontinuity] = []

    def admit(self, packet: av.Packet[Any]) -> None:
        raw_dts, raw_pts = packet.dts, packet.pts
        key = packet.is_keyframe
        if self._start is None:
            self._start = raw_pts if raw_pts is not None else raw_dts
        start = self._start or 0
        dts = None if raw_dts is None else (raw_dts - start) * self._num // self._den
        pts = None if raw_pts is None else (raw_pts - start) * self._num // self._den
        for value in (dts, pts):
            if value is not None and (self.raw_end is None or value > self.raw_end):
                self.raw_end = value
        dts = None if dts is None else dts + self._offset
        pts = None if pts is None else pts + self._offset
        if dts is not None:
            own = dts
            bump = self._follow(dts, pts, decode=True)
            if bump:
                own += bump
                dts += bump
                pts = None if pts is None else pts + bump
            elif self._last_dts is not None and dts <= self._last_dts:
                # repeats or stalls behind the packet before: a frame after it, alone
                self.repeated += 1
                self.regular = False
                lag = self._last_dts + self._step - dts
                dts += lag
                pts = None if pts is None else pts + lag
            elif self._last_dts is not None:
                self.last_step = dts - self._last_dts
            self._last_own = own
        elif key and pts is not None:  # no decode time: a keyframe must follow everything
            pts += self._follow(pts, pts, decode=False)
        if pts is not None:
            if dts is not None:
                plausible = dts <= pts <= dts + self._gap
            else:
                near = self.head if self.head is not None else pts
                plausible = near - self._gap <= pts <= near + self._gap
            if not plausible:
                pts = None
        self._order(pts, dts, key)
        packet.dts = dts
        packet.pts = pts
        self.pts_us = pts

    def _follow(self, ref: int, pts: int | None, *, decode: bool) -> int:
        """How far the clock moves (for good) so that this packet follows the ones before.

        ``ref`` is the decode time, or the presentation time of a keyframe without one.
        After a discontinuity the packet's picture is presented one frame after the
        furthest time reached, its decode time staying after the previous one.
        """
        head = self.head
        if head is None:  # the first timestamp: the content starts at 0
            shift = -ref if abs(ref) > self._gap else 0
            self._offset += shift
            return shift
        if decode and self._last_own is not None:
            prev = self._last_own
            back = ref < prev
        elif decode:  # the first decode time after packets that had none
            prev = head
            back = ref + self._gap < head
        else:
            prev = self._max_pts if self._max_pts is not None else head
            back = ref <= prev
        if not back and ref <= head + self._gap:
            return 0
        shown = pts if pts is not None and ref <= pts <= ref + self._gap else ref
        shift = head + self._step - shown
        if decode and self._last_dts is not None:
            shift = max(shift, self._last_dts + self._step - ref)
        self._offset += shift
        self.count += 1
        if len(self.found) < _MAX_REPORTED_JUMPS:
            self.found.append(
                TimestampDiscontinuity(
                    at_ms=round((shown + shift) / 1000),
                    kind="backwards" if back else "forward",
                    jump_ms=round((ref - prev) / 1000),
                )
            )
        return shift

    def _order(self, pts: int | None, dts: int | None, key: bool) -> None:
        if pts is None:
            self.regular = False
        else:
            if key:
                if self._max_pts is not None and pts <= self._max_pts:
                    self.regular = False
                self._floor = self._max_pts
            elif self._floor is not None and pts <= self._floor:
                self.regular = False
            self._max_pts = pts if self._max_pts is None else max(self._max_pts, pts)
        if dts is not None:
            if self._last_dts is not None and dts <= self._last_dts:
                self.regular = False
            self._last_dts = dts
        for value in (dts, pts):
            if value is not None and (self.head is None or value > self.head):
                self.head = value


@dataclass
class _Scan:
    """What one pass over the packets, without decoding, tells about the content."""

    packets: int = 0
    keys_ms: list[float] = field(default_factory=list)  # content time of each keyframe
    keys_at: list[int] = field(default_factory=list)  # and its packet number
    last_ms: float = 0.0  # the latest presentation time of any packet
    end_ms: float = 0.0  # the length of the content: last_ms and one frame
    data_end_ms: float = 0.0  # where the data of the video or audio ends, at the latest
    regular: bool = True
    discontinuities: int = 0
    repeated: int = 0
    damaged: int = 0  # packets the container flags as damaged (seams of joined files aside)
    read_to: int = 0  # the byte offset where the last packet read ends
    new_streams: bool = False  # streams appear part-way; reading stopped there
    found: list[TimestampDiscontinuity] = field(default_factory=list)
    error: str | None = None

    def key_gap_ms(self) -> float:
        """The longest stretch without a keyframe, the start and end included."""
        points = [0.0, *sorted(self.keys_ms), self.end_ms]
        return max(b - a for a, b in itertools.pairwise(points))


class FrameSampler(Iterator[Frame]):
    """The sampled frames of one video, decoded lazily; see :func:`sample_frames`.

    Before any frame is decoded, one pass reads the packets (no decoding) to measure
    the content: its length on the content clock (see :class:`_Timeline`), its
    keyframes and any timestamp discontinuities. Sampling, frame times and the
    reported ``duration_s`` follow that clock, never the declared duration.

    Besides iterating, it tells what it found: ``info`` (from the headers),
    ``duration_s`` (measured), ``discontinuities`` (the first few; their count in
    ``discontinuity_count``), ``warnings``, ``unanalyzed`` (why part of the video was
    not analysed: damage, truncation, ``max_frames``; empty when all of it was),
    ``frames_decoded``, ``frames_sampled``, ``seeks`` (skips past undecoded groups of
    pictures), ``decode_seconds`` (time spent reading, decoding and converting),
    ``rotation`` and ``complete`` (sampling reached the end, not cut short by
    ``max_frames``). Use it from one thread at a time; :meth:`close` (or the context
    manager) releases the decoder early.
    """

    def __init__(
        self,
        source: VideoSource,
        sampling: VideoSampling | None = None,
        limits: VideoLimits | None = None,
    ) -> None:
        started = time.perf_counter()
        self.sampling = sampling or VideoSampling()
        self.limits = limits or VideoLimits()
        opened = _open(source, self.limits, check_duration=False)
        assert opened.stream is not None  # _check refuses files without one
        self.info = opened.info
        self.warnings: list[str] = []
        self.unanalyzed: list[str] = []
        self.frames_decoded = 0
        self.frames_sampled = 0
        self.seeks = 0
        self.decode_errors = 0
        self.damaged_frames = 0
        self.retimed_frames = 0
        self.decode_seconds = 0.0
        self.rotation = 0
        self.complete = False
        self.duration_s = 0.0
        self.discontinuities: list[TimestampDiscontinuity] = []
        self.discontinuity_count = 0
        self._container = opened.container
        self._stream = opened.stream
        self._head = opened.head
        self._source = source
        self._time_base = self._stream.time_base or Fraction(1, 1000)
        fps = self.info.fps
        # a frame whose time is not known lasts this long (1–100 fps, whatever is declared)
        self._step_ms = min(1000.0, max(10.0, 1000.0 / fps)) if fps else 40.0
        self._mode = self.sampling.mode
        self._regular = False
        self._skip_to: int | None = None
        self._skip_ms = 0.0  # the time of the keyframe skipped to
        self._landing: float | None = None  # set from the skip until the next picture
        self._fed = -1
        self._last_ms: float | None = None
        self._pts_faults = 0
        self._dts_faults = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._closed = False
        self._iter = self._run()
        try:
            self._scan = self._read_packets(opened.reopen)
            self._measured()
            self._setup_decoder()
        except BaseException:
            self._container.close()
            raise
        finally:
            self.decode_seconds += time.perf_counter() - started

    # ---- iteration -------------------------------------------------------
    def __iter__(self) -> FrameSampler:
        return self

    def __next__(self) -> Frame:
        started = time.perf_counter()
        try:
            return next(self._iter)
        finally:
            self.decode_seconds += time.perf_counter() - started

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._iter.close()
        self._container.close()

    def __enter__(self) -> FrameSampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- measuring the content -------------------------------------------
    def _timeline(self) -> _Timeline:
        return _Timeline(
            self._time_base,
            self._stream.start_time,
            round(self._step_ms * 1000),
            round(self.limits.max_timestamp_gap_s * 1_000_000),
        )

    def _read_packets(self, reopen: Callable[[], InputContainer]) -> _Scan:
        """Run the content clock over every packet of the video, decoding nothing.

        The other streams' packets are read too, only to see where their data ends.
        """
        scan = _Scan()
        timeline = self._timeline()
        limits = self.limits
        max_us = limits.max_duration_s * 1_000_000
        max_packets = _PACKETS_PER_FRAME * limits.max_decoded_frames
        start_s = float((self._stream.start_time or 0) * self._time_base)
        other_end = -math.inf
        packets = 0
        damaged: list[int] = []
        joins: list[int] = []
        container = reopen()
        try:
            video = container.streams[self._stream.index]
            try:
                for packet in container.demux():
                    packets += 1
                    if packets > max_packets:
                        raise MediaTooLarge(
                            f"the file has more than {max_packets} packets",
                            details={"max_packets": max_packets},
                        )
                    if packet.size and packet.pos is not None and packet.pos >= 0:
                        scan.read_to = max(scan.read_to, packet.pos + packet.size)
                    if packet.stream_index != video.index:
                        if packet.pts is not None and packet.time_base is not None:
                            end = (packet.pts + (packet.duration or 0)) * float(packet.time_base)
                            other_end = max(other_end, (end - start_s) * 1000)
                        continue
                    if not packet.size:
                        continue
                    at = scan.packets
                    scan.packets += 1
                    if scan.packets > limits.max_decoded_frames:
                        raise MediaTooLarge(
                            f"the video has more than {limits.max_decoded_frames} frames",
                            details={"max_decoded_frames": limits.max_decoded_frames},
                        )
                    if packet.is_corrupt:
                        damaged.append(at)
                    count = timeline.count
                    timeline.admit(packet)
                    if timeline.count > count:
                        joins.append(at)
                    if packet.is_keyframe and timeline.pts_us is not None:
                        scan.keys_ms.append(timeline.pts_us / 1000)
                        scan.keys_at.append(at)
                    if timeline.head is not None and timeline.head > max_us:
                        self._too_long(timeline.head / 1_000_000)
            except av.error.FFmpegError as exc:
                scan.error = str(exc.strerror or exc)
            except IndexError:  # PyAV meets a stream that was not there at the start
                scan.new_streams = True
        finally:
            container.close()
        # A packet that the container flags as damaged right at a discontinuity is the
        # seam of files joined byte for byte (MPEG-TS continuity counters restart there);
        # anywhere else, data was lost.
        scan.damaged = sum(
            1 for at in damaged if not any(abs(at - j) <= _SEAM_PACKETS for j in joins)
        )
        scan.last_ms = max(0.0, (timeline.head or 0) / 1000)
        # the last frame lasts as long as the step before it, or a frame at the declared rate
        last_frame_ms = (timeline.last_step or round(self._step_ms * 1000)) / 1000
        scan.end_ms = scan.last_ms + last_frame_ms if scan.packets else 0.0
        # as the file's own timestamps count it (a jump forward is not missing data)
        written_ms = (timeline.raw_end or 0) / 1000 + last_frame_ms
        scan.data_end_ms = max(scan.end_ms, written_ms, other_end)
        scan.regular = timeline.regular
        scan.discontinuities = timeline.count
        scan.repeated = timeline.repeated
        scan.found = timeline.found
        return scan

    def _too_long(self, reached_s: float) -> None:
        """Refuse a video found to run past max_duration_s (the scan stops there)."""
        declared = self.info.duration_s
        if declared is not None and declared >= reached_s:
            _check_duration(declared, self.limits)  # it said so: say how long it is
        limit = self.limits.max_duration_s
        raise MediaTooLarge(
            f"the video lasts more than {limit:.0f} s; at most {limit:.0f} s are accepted",
            details={"duration_s": round(reached_s, 3), "max_duration_s": limit},
        )

    def _measured(self) -> None:
        """Take the measured content as the truth, and say where it differs from the header."""
        scan = self._scan
        self.duration_s = scan.end_ms / 1000
        _check_duration(self.duration_s, self.limits)
        self.discontinuities = scan.found
        self.discontinuity_count = scan.discontinuities
        self._regular = scan.regular
        if scan.discontinuities:
            first = scan.found[0]
            self.warnings.append(
                f"the timestamps are discontinuous at {scan.discontinuities} point(s) (first "
                f"at {first.at_ms / 1000:.1f} s, {first.kind} by {abs(first.jump_ms) / 1000:.1f} "
                "s); the content clock carries on across them, so what follows is analysed too"
            )
        if scan.repeated:
            self.warnings.append(
                f"{scan.repeated} frame(s) repeat (or fall behind) the timestamp of the frame "
                "before; each is timed one frame after it"
            )
        others = len(_videos(self._container)) - 1
        if others > 0:
            self._not_analyzed(
                f"the file has {others + 1} video streams (clips joined with other stream "
                "ids, or other views); only the first was analysed"
            )
        if scan.new_streams:
            self._not_analyzed(
                f"new streams start after {scan.end_ms / 1000:.1f} s (another file joined "
                "after this one?); what follows was not analysed"
            )
        tail = self.info.byte_size - scan.read_to
        if self.info.container == "flv" and scan.error is None and tail > _FLV_TAIL_BYTES:
            self._not_analyzed(
                f"the video data stops after {scan.read_to} of {self.info.byte_size} bytes "
                "(another file joined after this one?); the rest was not read"
            )
        if self.info.container.startswith("mov") and _top_level_boxes(self._source, "moov") > 1:
            self._not_analyzed(
                "the file holds more than one MP4 movie (files joined end to end?); only "
                "the first was analysed"
            )
        if scan.damaged:
            self._not_analyzed(
                f"{scan.damaged} packet(s) of the video are damaged (the container's checks "
                "failed); what they held may not have been analysed"
            )
        packet_size = _ts_packet_size(self._head) if self.info.container == "mpegts" else None
        if packet_size and self.info.byte_size % packet_size:
            self._not_analyzed(
                "the MPEG-TS stops in the middle of a packet; the file looks truncated"
            )
        declared = self.info.duration_s
        tolerance = max(1.0, 0.02 * (declared or 0.0))
        if declared is not None and scan.error is None:
            if scan.data_end_ms / 1000 < declared - tolerance:
                self._not_analyzed(
                    f"the video data ends at {scan.data_end_ms / 1000:.1f} s but {declared:.1f} "
                    "s are declared; the file looks truncated"
                )
            elif self.duration_s > declared + tolerance:
                self.warnings.append(
                    f"the header declares {declared:.1f} s but the video runs "
                    f"{self.duration_s:.1f} s; it is analysed to its end"
                )
        if self._mode == "keyframes":
            gap = scan.key_gap_ms() / 1000
            if gap > self.sampling.keyframe_max_gap_s:
                self._mode = "interval"
                self.warnings.append(
                    f"keyframes are up to {gap:.1f} s apart (more than keyframe_max_gap_s, "
                    f"{self.sampling.keyframe_max_gap_s:g} s); sampled every "
                    f"{self.sampling.interval_s:g} s instead"
                )

    def _not_analyzed(self, why: str) -> None:
        self.warnings.append(why)
        self.unanalyzed.append(why)

    # ---- decoding --------------------------------------------------------
    def _setup_decoder(self) -> None:
        ctx = self._stream.codec_context
        ctx.thread_count = self.sampling.threads
        ctx.options = {"max_pixels": str(self.limits.max_pixels)}
        if self._mode == "keyframes":
            ctx.skip_frame = "NONKEY"

    def _decode_packet(
        self, packet: av.Packet[VideoStream] | None, errors: list[int]
    ) -> list[VideoFrame]:
        try:
            frames = self._stream.decode(packet)
        except av.error.FFmpegError as exc:
            errors[0] += 1
            self.decode_errors += 1
            if errors[0] >= _MAX_ERRORS_IN_A_ROW:
                if self.frames_decoded == 0:
                    raise CorruptMedia(
                        f"the video stream cannot be decoded: {exc.strerror or exc}"
                    ) from exc
                raise _StreamEnded(
                    f"decoding stopped after repeated errors ({exc.strerror or exc}) at "
                    f"{(self._last_ms or 0.0) / 1000:.1f} s; the rest of the video was not "
                    "analysed"
                ) from exc
            return []
        if frames:
            errors[0] = 0
        return frames

    def _frame_ms(self, vf: VideoFrame) -> float:
        """A decoded frame's content time: always after the previous frame's.

        The presentation time is used unless it has gone backwards more often than
        the decode time (FFmpeg's best-effort rule). A time that has moved on from the
        previous one of its kind but lags the clock (after a switch between the two,
        or a frame timed below) keeps its own pace; a frame whose time is missing,
        repeated or going backwards is timed one frame after the previous one.
        """
        pts, dts = vf.pts, vf.dts
        prev_pts, prev_dts = self._last_pts, self._last_dts
        if dts is not None:
            if prev_dts is not None and dts <= prev_dts:
                self._dts_faults += 1
            self._last_dts = dts
        if pts is not None:
            if prev_pts is not None and pts <= prev_pts:
                self._pts_faults += 1
            self._last_pts = pts
        use: int | None
        if pts is not None and self._pts_faults <= self._dts_faults:
            use, prev = pts, prev_pts
        else:
            use, prev = dts, prev_dts  # dts is None while the decoder drains
            self._regular = False
        last = self._last_ms
        if use is None:
            ms = 0.0 if last is None else last + self._step_ms
            if pts is None:
                self.retimed_frames += 1
                self._regular = False
        elif last is None:
            ms = max(use / 1000, 0.0)
        else:
            ms = use / 1000
            if ms <= last:
                if prev is not None and use > prev:
                    ms = last + (use - prev) / 1000
                else:
                    ms = last + self._step_ms
                    self.retimed_frames += 1
                    self._regular = False
        self._last_ms = ms
        return ms

    def _frames(self, frames: list[VideoFrame]) -> Iterator[tuple[VideoFrame, float]]:
        limits = self.limits
        for vf in frames:
            self.frames_decoded += 1
            if self.frames_decoded > limits.max_decoded_frames:
                raise MediaTooLarge(
                    f"the video has more than {limits.max_decoded_frames} frames to decode",
                    details={"max_decoded_frames": limits.max_decoded_frames},
                )
            if vf.is_corrupt:
                self.damaged_frames += 1
            ms = self._frame_ms(vf)
            if self._landing is not None:
                self._landed(ms)
            if ms > limits.max_duration_s * 1000:
                raise MediaTooLarge(
                    f"the video runs past {limits.max_duration_s:.0f} s, the longest accepted",
                    details={"max_duration_s": limits.max_duration_s},
                )
            yield vf, ms

    def _decoded(self, keyframes_only: bool) -> Iterator[tuple[VideoFrame, float]]:
        """Decoded frames with their content time in ms, in presentation order.

        Every packet goes through the content clock; the decoder gets all of them
        (only keyframes with ``keyframes_only``) except those skipped on request: when
        ``_skip_to`` is set between frames, packets up to that keyframe are left
        undecoded and the decoder restarts there.
        """
        errors = [0]
        timeline = self._timeline()
        ordinal = -1
        try:
            for packet in self._container.demux(self._stream):
                if not packet.size:
                    continue
                ordinal += 1
                timeline.admit(packet)
                if self._skip_to is not None:
                    if ordinal < self._skip_to:
                        continue
                    self._skip_to = None
                    self._stream.codec_context.flush_buffers()
                    self.seeks += 1
                    self._landing = self._skip_ms
                    if not packet.is_keyframe:
                        self._regular = False  # the file changed under us: skip no more
                if keyframes_only and not packet.is_keyframe:
                    continue
                self._fed = ordinal
                yield from self._frames(self._decode_packet(packet, errors))
            yield from self._frames(self._decode_packet(None, errors))
            if self._landing is not None:  # skipped, and nothing decoded since
                self._landed(math.inf)
        except _StreamEnded as exc:
            self._not_analyzed(str(exc))
        except IndexError:
            return  # a stream that was not there at the start: reported by the scan
        except av.error.FFmpegError as exc:
            if self.frames_decoded == 0:
                raise CorruptMedia(
                    f"corrupt or truncated {self.info.format}: {exc.strerror or exc}"
                ) from exc
            self._not_analyzed(
                f"the video is damaged after {(self._last_ms or 0.0) / 1000:.1f} s "
                f"({exc.strerror or exc}); the rest of it was not analysed"
            )

    def _plan_skip(self, target_ms: float, tolerance: float, position_ms: float) -> None:
        """Skip to the last keyframe not after the next wanted time when it lies well ahead.

        Only while the timestamps are regular (see :class:`_Timeline`): then no frame
        of a skipped packet is presented at or after that keyframe, and the frame
        sampled is the keyframe or one after it, within ``tolerance`` of the frame that
        decoding everything would give.
        """
        if not self._regular or self._skip_to is not None:
            return
        gap_ms = self.sampling.seek_min_gap_s * 1000
        if target_ms - position_ms < max(gap_ms, 2 * self._step_ms):
            return
        keys = self._scan.keys_ms
        found = bisect.bisect_right(keys, target_ms + tolerance) - 1
        if found < 0 or self._scan.keys_at[found] <= self._fed:
            return
        if keys[found] - position_ms >= max(gap_ms, self._step_ms):
            self._skip_to = self._scan.keys_at[found]
            self._skip_ms = keys[found]

    def _landed(self, ms: float) -> None:
        """Check the first picture after a skip: it must be the keyframe skipped to.

        A packet marked as a keyframe that is not one decodes to nothing until the next
        real keyframe; what lies between would go unseen, so it is reported and
        nothing more is skipped.
        """
        expected, self._landing = self._landing, None
        if expected is None or ms <= expected + max(_LANDING_SLACK_MS, 2 * self._step_ms):
            return
        self._regular = False
        found = "nothing more" if math.isinf(ms) else f"the next picture at {ms / 1000:.1f} s"
        self._not_analyzed(
            f"the packet marked as a keyframe at {expected / 1000:.1f} s decoded to "
            f"{found}; what lies between was not analysed"
        )

    # ---- frame selection -------------------------------------------------
    def _interval_ms(self) -> float:
        interval = self.sampling.interval_s * 1000
        duration = self.duration_s
        if duration and duration * 1000 / interval > self.sampling.max_frames:
            widened = duration * 1000 / self.sampling.max_frames
            self.warnings.append(
                f"sampled every {widened / 1000:.2f} s instead of every "
                f"{self.sampling.interval_s:g} s to stay within max_frames "
                f"({self.sampling.max_frames})"
            )
            return widened
        return interval

    def _interval(self) -> Iterator[tuple[VideoFrame, float]]:
        interval = self._interval_ms()
        tolerance = min(interval / 2, self._step_ms / 2)
        target = 0.0
        for vf, ms in self._decoded(keyframes_only=False):
            if ms + tolerance < target:
                continue
            yield vf, ms
            target += (math.floor((ms + tolerance - target) / interval) + 1) * interval
            if (
                self._regular
                and self._scan.error is None
                and target - tolerance > self._scan.last_ms
            ):
                return  # no frame starts that late
            self._plan_skip(target, tolerance, ms)

    def _keyframes(self) -> Iterator[tuple[VideoFrame, float]]:
        min_gap = self.sampling.min_gap_s * 1000
        last = -math.inf
        for vf, ms in self._decoded(keyframes_only=True):
            if not vf.key_frame:
                continue  # a decoder that ignores skip_frame
            if ms - last >= min_gap - 0.5:
                last = ms
                yield vf, ms

    def _scene(self) -> Iterator[tuple[VideoFrame, float]]:
        threshold = self.sampling.scene_threshold
        min_gap = self.sampling.min_gap_s * 1000
        max_gap = self.sampling.scene_max_gap_s
        score = _SceneScore()
        last = -math.inf
        pending = False
        for vf, ms in self._decoded(keyframes_only=False):
            cut = score(_grey_thumbnail(vf)) >= threshold
            pending = pending or cut
            since = ms - last
            due = max_gap is not None and since >= max_gap * 1000 - 0.5
            if (pending and since >= min_gap - 0.5) or due:
                pending = False
                last = ms
                yield vf, ms

    # ---- conversion ------------------------------------------------------
    def _to_rgb(self, vf: VideoFrame) -> np.ndarray:
        _check_size(vf.width, vf.height, self.limits, "a video frame")
        turns = quarter_turns(vf)
        if turns:
            self.rotation = turns * 90
        sar = _fraction(self._stream.codec_context.sample_aspect_ratio)
        return to_rgb(vf, self.sampling.max_side, sar)

    def _run(self) -> Generator[Frame, None, None]:
        pick = {"interval": self._interval, "keyframes": self._keyframes, "scene": self._scene}
        limit = self.sampling.max_frames
        fps = self.info.fps
        try:
            for vf, ms in pick[self._mode]():
                if self.frames_sampled >= limit:
                    self._not_analyzed(
                        f"stopped at max_frames ({limit}) after {ms / 1000:.1f} s of "
                        f"{self.duration_s:.1f} s; the rest of the video was not analysed"
                    )
                    break
                stamp = round(ms)
                index = round(ms * fps / 1000) if fps else self.frames_sampled
                frame = Frame(rgb=self._to_rgb(vf), index=index, timestamp_ms=stamp)
                self.frames_sampled += 1
                yield frame
            else:
                if self.frames_sampled == 0:
                    raise CorruptMedia(f"the {self.info.format} has no decodable video frame")
                self.complete = True
            self._summarise()
        except BastionError:
            raise
        except MemoryError as exc:
            raise ImageTooLarge(
                "not enough memory to decode the video", code="video_too_large"
            ) from exc
        except (av.error.FFmpegError, ValueError) as exc:
            raise CorruptMedia(f"corrupt {self.info.format}: {exc}") from exc
        finally:
            self._container.close()

    def _summarise(self) -> None:
        if self.retimed_frames:
            self.warnings.append(
                f"{self.retimed_frames} decoded frame(s) had missing, repeated or out-of-order "
                "timestamps; each was timed one frame after the frame before it"
            )
        if self.decode_errors:
            self._not_analyzed(
                f"{self.decode_errors} packet(s) of the video could not be decoded; what they "
                "hold was not analysed"
            )
        if self.damaged_frames:
            self._not_analyzed(
                f"{self.damaged_frames} frame(s) were decoded from damaged data and may not "
                "show what the video holds"
            )


class _StreamEnded(Exception):
    """Decoding gave up part-way; what was decoded so far is kept."""


def sample_frames(
    source: VideoSource,
    sampling: VideoSampling | None = None,
    limits: VideoLimits | None = None,
) -> FrameSampler:
    """Sampled frames of a video, decoded one at a time, as RGB :class:`Frame` objects.

    ``source`` is a file path (preferred: nothing is read into memory) or the bytes of
    the file. The headers are read and checked here, so bad input fails at the call
    (see :func:`probe` for the errors); decoding errors later in the file end the
    iteration early with a warning in ``warnings``, or raise :class:`CorruptMedia`
    when nothing could be decoded. Memory use does not depend on the video's length.
    """
    return FrameSampler(source, sampling, limits)
