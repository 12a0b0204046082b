"""What a stream reader reports: its state, status changes, counters and the frames it hands out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from bastion.media.types import Frame

__all__ = ["LiveFrame", "ReaderStats", "StatusCallback", "StreamState", "StreamStatus"]


class StreamState(StrEnum):
    """Where a reader stands. ``offline``, ``error``, ``ended`` and ``stopped`` are final."""

    STARTING = "starting"  # first connection attempt under way
    LIVE = "live"  # frames are being decoded
    RECONNECTING = "reconnecting"  # the source dropped or could not be reached; retrying
    OFFLINE = "offline"  # gave up reconnecting (give_up_after_s / give_up_after_attempts)
    ERROR = "error"  # the source cannot be read (bad data, no video, codec...): no retry
    ENDED = "ended"  # a finite source (a file, a VOD playlist) was read to its end
    STOPPED = "stopped"  # closed by its owner

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({StreamState.OFFLINE, StreamState.ERROR, StreamState.ENDED, StreamState.STOPPED})


class StreamStatus(BaseModel):
    """One status change of a reader."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: StreamState = Field(description="The reader's state from now on.")
    at: float = Field(description="Wall-clock time of the change (Unix seconds).")
    attempt: int = Field(
        0,
        ge=0,
        description="reconnecting/offline: failed connection attempts in a row so far "
        "(1 for the first retry); 0 otherwise.",
    )
    code: str | None = Field(
        None,
        description="Stable code of the last failure: for reconnecting/offline a transient "
        "one (e.g. connection_refused, stream_not_found, timeout, source_ended); for error "
        "the reason (e.g. corrupt_media, no_video_stream, unsupported_codec).",
    )
    message: str | None = Field(None, description="The last failure, for people.")
    retry_in_s: float | None = Field(
        None, description="reconnecting: seconds until the next connection attempt."
    )
    reconnects: int = Field(0, ge=0, description="Reconnection attempts made so far.")


StatusCallback = Callable[[StreamStatus], None]
"""Called on the event loop's thread for every status change, in order; must not block."""


@dataclass(frozen=True, slots=True)
class ReaderStats:
    """Counters of a reader since it started (a snapshot)."""

    connections: int  # connections that opened
    reconnects: int  # connection attempts after the first
    packets: int  # packets demuxed (all streams)
    bytes_read: int  # bytes of those packets
    frames_decoded: int  # video frames out of the decoder
    frames_sampled: int  # decoded frames converted to RGB and queued (due by the sampler)
    frames_dropped: int  # queued frames dropped because the consumer was slow
    frames_similar: int  # sampled frames skipped as similar to the last analysed one
    frames_delivered: int  # frames handed to the consumer
    decode_errors: int  # packets the decoder refused
    keyframes_only: bool  # whether only keyframes are being decoded now
    keyframe_interval_s: float | None  # widest recent spacing of keyframes, when known
    width: int  # of the source's frames (0 before the first connection)
    height: int
    codec: str | None
    last_frame_at: float | None  # wall-clock time of the last decoded frame
    cpu_s: float  # CPU time of the reader's thread: network, demuxing, decoding, RGB, hashes


@dataclass(frozen=True, slots=True)
class LiveFrame:
    """A decoded frame of a live stream.

    ``frame`` is what analyzers take: RGB uint8, longest side at most the reader's
    ``max_side``, ``index`` counting decoded frames since the reader started and
    ``timestamp_ms`` the stream time in milliseconds.
    """

    frame: Frame
    stream_time_s: float  # time since the stream started, monotonic across reconnections
    pts_s: float | None  # presentation time as the source stamped it (restarts with it)
    received_at: float  # wall-clock time when it was decoded (Unix seconds)
    keyframe: bool
    connection: int  # 1 for the first connection, +1 for each one after
    fingerprint: str | None  # perceptual hash, when the sampler's similarity skip is on
    source_width: int
    source_height: int
    sha256: str | None = None
    """The sha256 of ``frame``'s pixels (:func:`~bastion.media.digest.frame_sha256`),
    computed on the reader's thread so that its consumer does not hash on the event
    loop; None when the reader did not compute it."""
