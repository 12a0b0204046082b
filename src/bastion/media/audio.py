"""Safe, bounded audio decoding with PyAV (FFmpeg): audio files and the sound of videos.

Audio is told from its leading bytes, the way images and videos are: RIFF/WAVE, MP3
(an ID3 tag or an MPEG audio frame sync), AAC in ADTS frames, MP4/M4A (an ``ftyp`` box
with an audio brand), Ogg (Vorbis, Opus, FLAC) and FLAC. FFmpeg is told to use the one
demuxer that matches, so playlists, concat scripts and other formats that open further
files or URLs are never reached. The containers of :mod:`bastion.media.video` are
opened the same way, for their sound: the first audio stream is decoded (cover art and
other streams are skipped), and a video without sound has no windows, not an error.

Decoding turns any layout and rate into mono float32 samples in [-1, 1] at 16 kHz
(:data:`SAMPLE_RATE`, what speech models read) through ``av.AudioResampler``. It is
bounded (:class:`AudioLimits`): the size of the input before it is opened; the duration
the container declares before any packet is decoded, and the samples actually decoded
while decoding (a header that lies cannot make it run on); the packets read and the
wall-clock time spent, checked between packets. What is too long or too large is
refused with 413 ``media_too_large``, as videos are; what is not audio with 415
``unsupported_media_type``; what cannot be read with 422 ``corrupt_media``.

Time is the content clock: the number of samples decoded from the first one, not the
timestamps of the container (which may be missing, reset or forged).
:func:`iter_audio_windows` yields :class:`~bastion.media.types.AudioWindow` s of
``window_s`` seconds (30 s by default: Whisper pads every chunk to 30 s) as they are
decoded, so memory holds one window whatever the length of the input;
:func:`decode_audio` returns the whole track (bounded by ``max_duration_s``).

Decoding blocks (FFmpeg, CPU work): callers on an event loop run these functions in a
thread (``asyncio.to_thread``). Every call opens its own container; nothing is shared.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import av.error
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Disposition
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import (
    CorruptMedia,
    EmptyInput,
    MediaError,
    MediaTooLarge,
    UnsupportedMediaType,
)
from bastion.media.image import Sniffed, sniff
from bastion.media.types import AudioWindow
from bastion.media.video import _demuxer as _video_demuxer
from bastion.media.video import is_video

__all__ = [
    "SAMPLE_RATE",
    "AudioInfo",
    "AudioLimits",
    "AudioSource",
    "DecodedAudio",
    "audio_windows",
    "decode_audio",
    "is_audio",
    "iter_audio_windows",
    "probe_audio",
    "sniff_audio",
]

AudioSource = str | os.PathLike[str] | bytes

SAMPLE_RATE = 16_000
"""Rate of every decoded sample, in Hz (what speech models read)."""

_SNIFF_BYTES = 8192
# Decode errors in a row after which the stream is given up.
_MAX_ERRORS_IN_A_ROW = 32
# Beyond these the stream header is not believed (FFmpeg decodes up to 768 kHz, 64 ch).
_MAX_RATE = 768_000
_MAX_CHANNELS = 64
# Samples held back at the end of the stream, to drop encoder padding (0.25 s).
_TAIL = SAMPLE_RATE // 4

# what the leading bytes say -> the one FFmpeg demuxer allowed for it
_AUDIO_DEMUXERS = {
    "WAV audio": "wav",
    "MP3 audio": "mp3",
    "MPEG audio": "mp3",
    "AAC audio": "aac",
    "FLAC audio": "flac",
    "MPEG-4 audio": "mov",
    "Ogg media": "ogg",
}


class AudioLimits(BaseModel):
    """Limits checked before and while decoding audio; they keep memory and time bounded."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(
        4 * 1024**3,
        ge=1,
        description="Largest accepted audio or video file, in bytes (checked before opening).",
    )
    max_duration_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="Longest accepted audio, in seconds: the duration the container declares "
        "is checked before decoding, the samples decoded while decoding (413 "
        "`media_too_large`). decode_audio holds this much audio in memory (16 kHz float32: "
        "230 MB an hour); iter_audio_windows holds one window.",
    )
    max_decode_s: float = Field(
        600.0,
        gt=0,
        description="Wall-clock budget for reading and decoding one input, checked between "
        "packets (413 `media_too_large`); bounds inputs with very many tiny packets.",
    )
    max_packets: int = Field(
        20_000_000,
        ge=1,
        description="Most packets (of all streams) read from one input (413 `media_too_large`).",
    )


class AudioInfo(BaseModel):
    """What the container and its first audio stream declare."""

    model_config = ConfigDict(extra="forbid")

    format: str = Field(description="What the leading bytes say, e.g. 'MP3 audio'.")
    container: str = Field(description="FFmpeg demuxer, e.g. 'mp3'.")
    byte_size: int = Field(description="Size of the input in bytes.")
    duration_s: float | None = Field(
        description="Declared duration of the audio stream (or of the container); None when "
        "unknown. Not trusted: decoding measures the real one."
    )
    has_audio: bool = Field(description="Whether there is an audio stream.")
    has_video: bool = Field(description="Whether there is a video stream (cover art aside).")
    codec: str | None = Field(description="Codec of the first audio stream, e.g. 'opus'.")
    sample_rate: int | None = Field(description="Declared rate of the first audio stream, Hz.")
    channels: int | None = Field(description="Declared channels of the first audio stream.")


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """A whole audio track: mono float32 samples in [-1, 1] at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int
    info: AudioInfo
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        """Length of the decoded audio in seconds."""
        return len(self.samples) / self.sample_rate

    def windows(self, window_s: float = 30.0) -> list[AudioWindow]:
        """The track cut into windows of ``window_s`` seconds (see :func:`audio_windows`)."""
        return audio_windows(self.samples, self.sample_rate, window_s)


def _aac_adts(head: bytes) -> bool:
    """An ADTS frame header: 12-bit sync, layer 0 (MP3 frames have layer 1-3)."""
    return len(head) >= 7 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


def sniff_audio(head: bytes) -> Sniffed:
    """What the leading bytes are, with AAC in ADTS frames told from MP3."""
    found = sniff(head[:_SNIFF_BYTES])
    if found.name == "MPEG audio" and _aac_adts(head):
        return Sniffed("audio", "AAC audio")
    return found


def is_audio(head: bytes) -> bool:
    """True when the leading bytes are an audio-only format this module decodes.

    MP4 files with a generic brand and Matroska/WebM files may hold audio alone but are
    told apart only by their streams: :func:`probe_audio` says (``has_video``).
    """
    found = sniff_audio(head)
    return found.kind == "audio" and not is_video(head) and found.name in _AUDIO_DEMUXERS


def _demuxer(found: Sniffed, head: bytes) -> str | None:
    if found.kind == "audio":
        return _AUDIO_DEMUXERS.get(found.name)
    if found.kind == "video":
        return _video_demuxer(found, head)
    return None


def _refuse(found: Sniffed) -> UnsupportedMediaType:
    if found.kind == "unknown":
        what = f"not a recognised audio format ({found.name})"
    else:
        article = "an" if found.name[:1].lower() in "aeiou" else "a"
        what = f"{article} {found.name}"
    return UnsupportedMediaType(
        f"unsupported media type: the input is {what}; send WAV, MP3, AAC/M4A, Ogg "
        "(Vorbis, Opus), FLAC audio or a video",
        details={"detected": found.name},
    )


def _read_head(source: AudioSource) -> tuple[bytes, int]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source[:_SNIFF_BYTES]), len(source)
    with open(source, "rb") as fh:
        return fh.read(_SNIFF_BYTES), os.fstat(fh.fileno()).st_size


def _av_open(source: AudioSource, demuxer: str, name: str) -> InputContainer:
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
            f"corrupt or truncated {name}: {exc.strerror or exc}", details={"detected": name}
        ) from exc


def _audio_stream(container: InputContainer) -> AudioStream | None:
    streams = container.streams.audio
    return streams[0] if streams else None


def _declared_s(container: InputContainer, stream: AudioStream | None) -> float | None:
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _info(
    container: InputContainer, stream: AudioStream | None, found: Sniffed, size: int
) -> AudioInfo:
    videos = [
        s
        for s in container.streams.video
        if not s.disposition & (Disposition.attached_pic | Disposition.still_image)
    ]
    ctx = stream.codec_context if stream is not None else None
    return AudioInfo(
        format=found.name,
        container=container.format.name,
        byte_size=size,
        duration_s=_declared_s(container, stream),
        has_audio=stream is not None,
        has_video=bool(videos),
        codec=ctx.codec.canonical_name if ctx is not None else None,
        sample_rate=(ctx.sample_rate or None) if ctx is not None else None,
        channels=(ctx.channels or None) if ctx is not None else None,
    )


def _too_long(duration_s: float, limits: AudioLimits, *, declared: bool) -> MediaTooLarge:
    said = "declares that it lasts" if declared else "lasts more than"
    return MediaTooLarge(
        f"the audio {said} {duration_s:.1f} s; at most {limits.max_duration_s:.0f} s are accepted",
        details={"duration_s": round(duration_s, 3), "max_duration_s": limits.max_duration_s},
    )


def _check(info: AudioInfo, limits: AudioLimits) -> None:
    if info.duration_s is not None and info.duration_s > limits.max_duration_s:
        raise _too_long(info.duration_s, limits, declared=True)
    if info.sample_rate is not None and info.sample_rate > _MAX_RATE:
        raise CorruptMedia(f"the audio stream declares an invalid rate of {info.sample_rate} Hz")
    if info.channels is not None and info.channels > _MAX_CHANNELS:
        raise CorruptMedia(f"the audio stream declares {info.channels} channels")


@dataclass
class _Opened:
    container: InputContainer
    stream: AudioStream | None
    info: AudioInfo


def _open(source: AudioSource, limits: AudioLimits) -> _Opened:
    """Sniff, check the size, open with the one matching demuxer and check the headers."""
    head, size = _read_head(source)
    if size == 0:
        raise EmptyInput("the input is empty (0 bytes)")
    if size > limits.max_bytes:
        raise MediaTooLarge(
            f"the input is {size} bytes; at most {limits.max_bytes} are accepted",
            details={"byte_size": size, "max_bytes": limits.max_bytes},
        )
    found = sniff_audio(head)
    demuxer = _demuxer(found, head)
    if demuxer is None:
        raise _refuse(found)
    container = _av_open(source, demuxer, found.name)
    try:
        stream = _audio_stream(container)
        info = _info(container, stream, found, size)
        _check(info, limits)
        if stream is None and found.kind == "audio":
            raise MediaError(
                f"the input ({found.name}) has no audio stream",
                code="no_audio_stream",
                details={"detected": found.name},
            )
    except BaseException:
        container.close()
        raise
    return _Opened(container, stream, info)


def probe_audio(source: AudioSource, limits: AudioLimits | None = None) -> AudioInfo:
    """Read the container and stream headers of audio (or of a video) without decoding.

    ``source`` is a file path (preferred for large files) or the bytes of the file.
    Raises :class:`EmptyInput`, :class:`MediaTooLarge` (bytes, declared duration),
    :class:`UnsupportedMediaType`, :class:`CorruptMedia`, or :class:`MediaError` with code
    ``no_audio_stream`` for an audio format without an audio stream; :class:`OSError`
    when a path cannot be read.
    """
    opened = _open(source, limits or AudioLimits())
    opened.container.close()
    return opened.info


class _Resampler:
    """``av.AudioResampler`` to mono float32 at SAMPLE_RATE, made anew (after flushing
    the one before) when the decoded frames change format, layout or rate half-way, as
    chained Ogg streams and joined MP3 files do."""

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    def resample(self, frame: AudioFrame | None) -> list[AudioFrame]:
        """The converted frames that ``frame`` completes; None flushes what is left."""
        if frame is None:
            return self._resampler.resample(None) if self._resampler is not None else []
        out: list[AudioFrame] = []
        kind = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is None or kind != self._input:
            if self._resampler is not None:
                out.extend(self._resampler.resample(None))
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self._input = kind
        out.extend(self._resampler.resample(frame))
        return out


class _Decoder:
    """Demuxes, decodes and resamples the first audio stream, within the limits."""

    def __init__(self, opened: _Opened, limits: AudioLimits) -> None:
        self.opened = opened
        self.limits = limits
        self.samples = 0
        self.warnings: list[str] = []
        self.max_samples = math.floor(limits.max_duration_s * SAMPLE_RATE)
        self._tail: deque[np.ndarray] = deque()
        self._held = 0

    def chunks(self) -> Iterator[np.ndarray]:
        """Mono float32 chunks at SAMPLE_RATE, in order, until the end of the stream."""
        stream = self.opened.stream
        if stream is None:
            return
        container = self.opened.container
        resampler = _Resampler()
        deadline = time.monotonic() + self.limits.max_decode_s
        packets = decoded = errors = bad = 0
        try:
            for packet in container.demux():
                packets += 1
                if packets > self.limits.max_packets:
                    raise MediaTooLarge(
                        f"the input has more than {self.limits.max_packets} packets",
                        details={"max_packets": self.limits.max_packets},
                    )
                if time.monotonic() > deadline:
                    raise MediaTooLarge(
                        f"decoding the audio took more than {self.limits.max_decode_s} s "
                        f"(stopped at {self.samples / SAMPLE_RATE:.1f} s)",
                        details={"max_decode_s": self.limits.max_decode_s},
                    )
                if packet.stream_index != stream.index:
                    continue
                try:
                    frames = stream.codec_context.decode(packet)
                except av.error.FFmpegError as exc:
                    errors += 1
                    bad += 1
                    if errors >= _MAX_ERRORS_IN_A_ROW:
                        self._give_up(exc, decoded)
                        break
                    continue
                errors = 0
                for frame in frames:
                    decoded += 1
                    yield from self._held_back(self._resampled(resampler, frame))
            # demux() ends with an empty packet per stream, which flushed the decoder
            yield from self._held_back(self._resampled(resampler, None))
        except av.error.FFmpegError as exc:
            self._give_up(exc, decoded)
        if bad and not decoded:
            name = self.opened.info.format
            raise CorruptMedia(
                f"corrupt {name}: none of its {bad} audio packets could be decoded",
                details={"detected": name},
            )
        yield self._trimmed_tail()
        if bad:
            self.warnings.append(f"{bad} damaged audio packets were skipped")
        declared = self.opened.info.duration_s
        if declared is not None and self.samples / SAMPLE_RATE < declared - 1.0:
            self.warnings.append(
                f"the audio ends at {self.samples / SAMPLE_RATE:.1f} s, before its declared "
                f"end at {declared:.1f} s (truncated?)"
            )

    def _held_back(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass the chunks on, holding back at least the last _TAIL samples for
        _trimmed_tail."""
        for chunk in chunks:
            self._tail.append(chunk)
            self._held += len(chunk)
            while self._held - len(self._tail[0]) >= _TAIL:
                first = self._tail.popleft()
                self._held -= len(first)
                yield first

    def _trimmed_tail(self) -> np.ndarray:
        """The held-back end, less the encoder padding when the stream declares where
        the audio ends and the decoded samples run past it by less than _TAIL samples
        (AAC pads its last frame with silence; not every container says to drop it)."""
        tail = np.concatenate(self._tail) if self._tail else np.zeros(0, dtype=np.float32)
        self._tail.clear()
        self._held = 0
        declared = self.opened.info.duration_s
        if declared is not None:
            excess = self.samples - round(declared * SAMPLE_RATE)
            if 0 < excess <= min(_TAIL, len(tail)):
                self.samples -= excess
                return tail[:-excess]
        return tail

    def _give_up(self, exc: av.error.FFmpegError, decoded: int) -> None:
        name = self.opened.info.format
        if decoded == 0:
            raise CorruptMedia(
                f"corrupt {name}: no audio could be decoded ({exc.strerror or exc})",
                details={"detected": name},
            ) from exc
        self.warnings.append(
            f"decoding stopped at {self.samples / SAMPLE_RATE:.1f} s: {exc.strerror or exc}"
        )

    def _resampled(self, resampler: _Resampler, frame: AudioFrame | None) -> Iterator[np.ndarray]:
        if frame is not None:
            frame.pts = None  # the content clock counts samples; timestamps may lie
        try:
            frames = resampler.resample(frame)
        except ValueError as exc:  # a layout or format FFmpeg cannot convert
            name = self.opened.info.format
            raise CorruptMedia(
                f"corrupt {name}: its audio cannot be converted ({exc})",
                details={"detected": name},
            ) from exc
        for out in frames:
            # a copy: the frame's own buffer is FFmpeg's, and may be larger
            chunk = np.array(out.to_ndarray().reshape(-1), dtype=np.float32)
            if self.samples + len(chunk) > self.max_samples:
                raise _too_long(
                    (self.samples + len(chunk)) / SAMPLE_RATE, self.limits, declared=False
                )
            self.samples += len(chunk)
            yield chunk


def audio_windows(
    samples: np.ndarray, sample_rate: int = SAMPLE_RATE, window_s: float = 30.0
) -> list[AudioWindow]:
    """Cut mono samples into consecutive windows of ``window_s`` seconds (the last one
    shorter), each with its start and end time; no samples, no windows."""
    size = _window_size(window_s, sample_rate)
    return [
        AudioWindow(
            samples=samples[at : at + size],
            sample_rate=sample_rate,
            start_s=at / sample_rate,
            end_s=min(at + size, len(samples)) / sample_rate,
        )
        for at in range(0, len(samples), size)
    ]


def _window_size(window_s: float, sample_rate: int) -> int:
    if not window_s > 0:
        raise ValueError("window_s must be positive")
    return max(1, round(window_s * sample_rate))


def iter_audio_windows(
    source: AudioSource,
    limits: AudioLimits | None = None,
    window_s: float = 30.0,
    *,
    warnings: list[str] | None = None,
) -> Iterator[AudioWindow]:
    """Decode the first audio stream of ``source`` (an audio file or a video, as a path
    or bytes) and yield windows of ``window_s`` seconds as they are decoded.

    Memory holds one window, whatever the length. A video without sound yields nothing.
    Blocks: run it in a thread. Raises what :func:`probe_audio` raises, before the first
    window; :class:`MediaTooLarge` while decoding past ``max_duration_s``,
    ``max_packets`` or ``max_decode_s``, and :class:`CorruptMedia` when nothing decodes.
    What was skipped or cut short is appended to ``warnings`` at the end, when given.
    """
    limits = limits or AudioLimits()
    size = _window_size(window_s, SAMPLE_RATE)
    opened = _open(source, limits)
    with opened.container:
        buffer = np.empty(size, dtype=np.float32)
        filled = start = 0
        decoder = _Decoder(opened, limits)
        for chunk in decoder.chunks():
            while len(chunk):
                take = min(size - filled, len(chunk))
                buffer[filled : filled + take] = chunk[:take]
                filled, chunk = filled + take, chunk[take:]
                if filled == size:
                    yield _window(buffer, start)
                    buffer = np.empty(size, dtype=np.float32)
                    filled, start = 0, start + size
        if warnings is not None:
            warnings.extend(decoder.warnings)
        if filled:
            yield _window(buffer[:filled].copy(), start)


def _window(samples: np.ndarray, start: int) -> AudioWindow:
    return AudioWindow(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=SAMPLE_RATE,
        start_s=start / SAMPLE_RATE,
        end_s=(start + len(samples)) / SAMPLE_RATE,
    )


def decode_audio(source: AudioSource, limits: AudioLimits | None = None) -> DecodedAudio:
    """Decode the first audio stream of ``source`` (an audio file or a video, as a path
    or bytes) to mono float32 at :data:`SAMPLE_RATE` Hz.

    Holds the whole track (at most ``max_duration_s`` of it), twice while joining the
    decoded pieces at the end; :func:`iter_audio_windows` holds one window. A video
    without sound gives no samples. Blocks: run it in a thread. Raises what
    :func:`iter_audio_windows` raises; its warnings say what was skipped or cut short.
    """
    limits = limits or AudioLimits()
    opened = _open(source, limits)
    with opened.container:
        decoder = _Decoder(opened, limits)
        chunks = list(decoder.chunks())
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return DecodedAudio(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=SAMPLE_RATE,
        info=opened.info,
        warnings=tuple(decoder.warnings),
    )
