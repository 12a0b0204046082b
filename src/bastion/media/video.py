"""Safe, streaming video probing and frame sampling with PyAV (FFmpeg).

The container format is sniffed from the leading bytes and FFmpeg is told to use that
one demuxer, the way images are opened with one Pillow plugin: playlists, concat
scripts and other formats that open further files or URLs are never reached. Sizes
are checked before any frame is decoded (bytes, then width × height and each side
from the stream header, then the declared duration), and again on every decoded
frame, since a stream may change resolution half-way; the decoder itself is also
given the pixel limit.

Frames are decoded one at a time and only the frames that are returned are turned
into RGB, so memory does not depend on the length of the video. Three ways to pick
frames (:class:`VideoSampling`):

``interval``
    The first frame at or after every N seconds. When the next wanted time lies
    beyond the next keyframe, the demuxer seeks to the keyframe before it (found in
    the container's index) and decodes forward from there; otherwise decoding
    simply continues, which is cheaper than seeking back to a keyframe already
    passed.
``keyframes``
    Only keyframe packets reach the decoder, which is also told to drop everything
    else (``skip_frame = NONKEY``). Cheapest, but the spacing is the encoder's GOP.
``scene``
    Every frame is decoded and compared with the previous one on a small grey
    thumbnail; a frame is kept where the picture changes abruptly (a cut), with a
    minimum gap between kept frames and, optionally, at least one every N seconds.

Returned frames are upright (the display matrix is applied), have square pixels
(the sample aspect ratio is applied) and their longest side is at most
``max_side``. ``Frame.timestamp_ms`` is the presentation time from the start of the
stream and ``Frame.index`` the frame number that time corresponds to at the stream's
frame rate.

Every function here opens its own container: nothing is shared between calls, so
different threads may sample different videos at the same time.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import Literal

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
from bastion.media.image import Sniffed, sniff
from bastion.media.types import Frame

__all__ = [
    "FrameSampler",
    "StreamInfo",
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
        description="Most frames decoded from one video (bounds the time a video with "
        "very many tiny frames can take).",
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
        description="interval mode: seek (to the keyframe before the next wanted time) "
        "instead of decoding forward when that keyframe is at least this far ahead.",
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


def _video_stream(container: InputContainer) -> VideoStream | None:
    for stream in container.streams.video:
        if stream.disposition & (Disposition.attached_pic | Disposition.still_image):
            continue  # cover art, not a video
        return stream
    return None


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


def _check(info: VideoInfo, limits: VideoLimits) -> None:
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
    if info.duration_s is not None and info.duration_s > limits.max_duration_s:
        raise MediaTooLarge(
            f"the video lasts {info.duration_s:.0f} s; at most {limits.max_duration_s:.0f} s "
            "are accepted",
            details={"duration_s": info.duration_s, "max_duration_s": limits.max_duration_s},
        )


@dataclass
class _Opened:
    container: InputContainer
    stream: VideoStream | None
    info: VideoInfo


def _open(source: VideoSource, limits: VideoLimits, *, check: bool = True) -> _Opened:
    """Sniff, open with the one matching demuxer and read the stream headers."""
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
    target: str | io.BytesIO = (
        io.BytesIO(bytes(source))
        if isinstance(source, bytes | bytearray | memoryview)
        else os.fspath(source)
    )
    try:
        container = av.open(
            target,
            mode="r",
            format=demuxer,
            container_options={"protocol_whitelist": "file"},
            metadata_errors="replace",
        )
    except av.error.FFmpegError as exc:
        raise CorruptMedia(
            f"corrupt or truncated {found.name}: {exc.strerror or exc}",
            details={"detected": found.name},
        ) from exc
    try:
        stream = _video_stream(container)
        info = _info(container, stream, found, size)
        if check:
            _check(info, limits)
    except BaseException:
        container.close()
        raise
    return _Opened(container, stream, info)


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


class FrameSampler(Iterator[Frame]):
    """The sampled frames of one video, decoded lazily; see :func:`sample_frames`.

    Besides iterating, it tells what it found: ``info`` (from the headers),
    ``warnings``, ``frames_decoded``, ``frames_sampled``, ``seeks``,
    ``decode_seconds`` (time spent decoding and converting), ``rotation`` and
    ``complete`` (the whole video was sampled, not cut short by ``max_frames``).
    Use it from one thread at a time; :meth:`close` (or the context manager)
    releases the decoder early.
    """

    def __init__(
        self,
        source: VideoSource,
        sampling: VideoSampling | None = None,
        limits: VideoLimits | None = None,
    ) -> None:
        self.sampling = sampling or VideoSampling()
        self.limits = limits or VideoLimits()
        opened = _open(source, self.limits)
        assert opened.stream is not None  # _check refuses files without one
        self.info = opened.info
        self.warnings: list[str] = []
        self.frames_decoded = 0
        self.frames_sampled = 0
        self.seeks = 0
        self.decode_seconds = 0.0
        self.rotation = 0
        self.complete = False
        self._container = opened.container
        self._stream = opened.stream
        self._time_base = self._stream.time_base or Fraction(1, 1000)
        self._start = self._stream.start_time or 0
        fps = self.info.fps
        self._frame_ms = 1000.0 / fps if fps else 40.0
        self._seek_to: int | None = None
        self._last_packet_ms = 0.0
        self._blind_seek = True
        self._eof = False
        self._closed = False
        self._iter = self._run()
        try:
            self._setup_decoder()
        except BaseException:
            self._container.close()
            raise

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

    # ---- decoding --------------------------------------------------------
    def _setup_decoder(self) -> None:
        ctx = self._stream.codec_context
        ctx.thread_count = self.sampling.threads
        ctx.options = {"max_pixels": str(self.limits.max_pixels)}
        if self.sampling.mode == "keyframes":
            ctx.skip_frame = "NONKEY"

    def _ms(self, raw: int) -> float:
        return float((raw - self._start) * self._time_base * 1000)

    def _raw(self, ms: float) -> int:
        return self._start + math.floor(Fraction(ms) / 1000 / self._time_base)

    def _decode_packet(self, packet: av.Packet[VideoStream], errors: list[int]) -> list[VideoFrame]:
        try:
            frames = self._stream.decode(packet)
        except av.error.FFmpegError as exc:
            errors[0] += 1
            if errors[0] >= _MAX_ERRORS_IN_A_ROW:
                if self.frames_decoded == 0:
                    raise CorruptMedia(
                        f"the video stream cannot be decoded: {exc.strerror or exc}"
                    ) from exc
                raise _StreamEnded(f"decoding stopped after repeated errors ({exc})") from exc
            return []
        if frames:
            errors[0] = 0
        return frames

    def _decoded(self, keyframes_only: bool) -> Iterator[tuple[VideoFrame, float]]:
        """Decoded frames with their time in ms; honours seek requests between frames."""
        errors = [0]
        last_ms = -self._frame_ms
        while True:
            self._seek_to = None
            try:
                for packet in self._container.demux(self._stream):
                    if packet.pts is not None:
                        self._last_packet_ms = max(self._last_packet_ms, self._ms(packet.pts))
                    if keyframes_only and packet.size and not packet.is_keyframe:
                        continue
                    for vf in self._decode_packet(packet, errors):
                        self.frames_decoded += 1
                        if self.frames_decoded > self.limits.max_decoded_frames:
                            raise MediaTooLarge(
                                f"the video has more than {self.limits.max_decoded_frames} "
                                "frames to decode",
                                details={"max_decoded_frames": self.limits.max_decoded_frames},
                            )
                        raw = vf.pts if vf.pts is not None else vf.dts
                        ms = self._ms(raw) if raw is not None else last_ms + self._frame_ms
                        last_ms = ms = max(ms, 0.0)
                        if ms > self.limits.max_duration_s * 1000:
                            raise MediaTooLarge(
                                f"the video runs past {self.limits.max_duration_s:.0f} s, the "
                                "longest accepted",
                                details={"max_duration_s": self.limits.max_duration_s},
                            )
                        yield vf, ms
                        if self._seek_to is not None:
                            break
                    if self._seek_to is not None:
                        break
            except _StreamEnded as exc:
                self.warnings.append(str(exc))
                return
            except av.error.FFmpegError as exc:
                if self.frames_decoded == 0:
                    raise CorruptMedia(
                        f"corrupt or truncated {self.info.format}: {exc.strerror or exc}"
                    ) from exc
                self.warnings.append(
                    f"the video is damaged after {last_ms / 1000:.1f} s ({exc.strerror or exc}); "
                    "analysed up to there"
                )
                return
            if self._seek_to is None:
                self._eof = True
                return
            self._seek(self._seek_to)

    def _seek(self, raw: int) -> None:
        try:
            self._container.seek(raw, stream=self._stream, backward=True)
        except av.error.FFmpegError:
            self._blind_seek = False  # decode forward from where we are
            return
        self._stream.codec_context.flush_buffers()
        self.seeks += 1

    def _want_seek(self, target_ms: float, current_ms: float) -> bool:
        """Seek when the keyframe before ``target_ms`` lies well ahead of the position."""
        gap_ms = self.sampling.seek_min_gap_s * 1000
        if target_ms - current_ms < max(gap_ms, 2 * self._frame_ms):
            return False
        entries = self._stream.index_entries
        if len(entries):
            found = entries.search_timestamp(self._raw(target_ms), backward=True)
            if found < 0:
                return False
            key_ms = self._ms(entries[found].timestamp)
            return key_ms - current_ms >= max(gap_ms, self._frame_ms)
        # No index (e.g. MPEG-TS): seek only across long gaps, and stop seeking if a
        # seek ever lands behind the position it started from.
        return self._blind_seek and target_ms - current_ms >= max(10_000.0, gap_ms)

    # ---- frame selection -------------------------------------------------
    def _interval_ms(self) -> float:
        interval = self.sampling.interval_s * 1000
        duration = self.info.duration_s
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
        tolerance = min(interval / 2, self._frame_ms / 2)
        duration = self.info.duration_s
        target = 0.0
        position = -math.inf
        for vf, ms in self._decoded(keyframes_only=False):
            if position > ms and self._blind_seek and not len(self._stream.index_entries):
                self._blind_seek = False  # a seek went backwards: no more blind seeks
            position = ms
            if ms + tolerance < target:
                continue
            yield vf, ms
            while target <= ms + tolerance:
                target += interval
            if duration is not None and target - tolerance > duration * 1000 - self._frame_ms:
                return  # no frame starts that late
            if self._want_seek(target, ms):
                self._seek_to = self._raw(target)

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
        width, height = vf.width, vf.height
        sar = _fraction(self._stream.codec_context.sample_aspect_ratio)
        if sar is not None and sar != 1:
            width = max(1, round(width * sar))
        scale = min(1.0, self.sampling.max_side / max(width, height))
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        if (width, height) == (vf.width, vf.height):
            rgb = vf.to_ndarray(format="rgb24")
        else:
            rgb = vf.to_ndarray(
                format="rgb24", width=width, height=height, interpolation="BILINEAR"
            )
        turns = round(vf.rotation / 90) % 4
        if turns:
            self.rotation = turns * 90
            rgb = np.rot90(rgb, turns)
        out = np.ascontiguousarray(rgb, dtype=np.uint8)
        out.setflags(write=False)
        return out

    def _run(self) -> Generator[Frame, None, None]:
        pick = {"interval": self._interval, "keyframes": self._keyframes, "scene": self._scene}
        limit = self.sampling.max_frames
        fps = self.info.fps
        try:
            for vf, ms in pick[self.sampling.mode]():
                if self.frames_sampled >= limit:
                    self.warnings.append(
                        f"stopped at max_frames ({limit}) after {ms / 1000:.1f} s; the rest "
                        "of the video was not analysed"
                    )
                    return
                stamp = round(ms)
                index = round(ms * fps / 1000) if fps else self.frames_sampled
                frame = Frame(rgb=self._to_rgb(vf), index=index, timestamp_ms=stamp)
                self.frames_sampled += 1
                yield frame
            if self.frames_sampled == 0:
                raise CorruptMedia(f"the {self.info.format} has no decodable video frame")
            self.complete = True
            self._check_complete()
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

    def _check_complete(self) -> None:
        duration = self.info.duration_s
        if duration is None or not self._eof:
            return
        end = self._last_packet_ms / 1000
        if end < duration - max(2.0, 0.05 * duration):
            self.warnings.append(
                f"the video data ends at {end:.1f} s but {duration:.1f} s are declared; "
                "the file looks truncated"
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
