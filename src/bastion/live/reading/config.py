"""Settings of the stream reader and of the frame sampler."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DHASH_BITS", "PDQ_BITS", "LiveSampling", "StreamReaderConfig"]

DHASH_BITS = 64
PDQ_BITS = 256


class StreamReaderConfig(BaseModel):
    """How a live source is opened, decoded, and reconnected when it drops."""

    model_config = ConfigDict(extra="forbid")

    open_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds one connection attempt may take to connect and read the stream "
        "headers before it counts as failed.",
    )
    read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds without data (or without video while other data flows) after "
        "which a connected source counts as dropped and is reconnected.",
    )
    analyze_duration_s: float = Field(
        1.0,
        gt=0,
        le=30,
        description="Stream time FFmpeg reads to find the streams' parameters when "
        "connecting; more is slower to start, less may miss a late stream.",
    )
    probe_bytes: int = Field(
        512 * 1024,
        ge=32,
        le=64 * 1024 * 1024,
        description="Bytes FFmpeg reads to recognise the format when connecting.",
    )
    backoff_min_s: float = Field(
        0.5, gt=0, le=3600, description="Nominal delay before the first reconnection attempt."
    )
    backoff_max_s: float = Field(
        30.0, gt=0, le=3600, description="Cap on the nominal delay between reconnection attempts."
    )
    backoff_jitter: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Each delay is drawn uniformly from [nominal × (1 − jitter), nominal], so "
        "readers that failed together do not retry in step (0: no jitter).",
    )
    give_up_after_s: float | None = Field(
        300.0,
        gt=0,
        description="Go offline (stop reconnecting) when the source has given no frame for "
        "this long, counted from the start or from its last frame (None: never).",
    )
    give_up_after_attempts: int | None = Field(
        None,
        ge=1,
        description="Go offline after this many failed reconnection attempts in a row "
        "(None: no limit; give_up_after_s still applies).",
    )
    decode: Literal["auto", "keyframes", "all"] = Field(
        "auto",
        description="auto: decode keyframes only while the sampling interval is at least "
        "keyframes_min_interval_s and the stream's keyframes are no further apart than "
        "the interval, every frame otherwise; keyframes: always keyframes only; all: "
        "always every frame.",
    )
    keyframes_min_interval_s: float = Field(
        2.0,
        gt=0,
        description="auto decoding: the least sampling interval at which only keyframes are "
        "decoded.",
    )
    max_source_side: int = Field(
        8192, ge=16, description="Streams whose frames have a longer side are refused."
    )
    max_source_pixels: int = Field(
        40_000_000, ge=256, description="Streams whose frames have more pixels are refused."
    )
    max_side: int = Field(
        1280,
        ge=16,
        le=8192,
        description="Frames handed out are scaled down so that their longest side is at most "
        "this (aspect ratio kept).",
    )
    queue_size: int = Field(
        2,
        ge=1,
        le=64,
        description="Frames waiting for a slow consumer; when full, the oldest is dropped "
        "(counted) so memory stays bounded and the freshest frame wins.",
    )
    max_decode_errors: int = Field(
        50,
        ge=1,
        description="Undecodable packets in a row after which the connection is dropped "
        "(or, when it never gave a frame, the stream is refused as corrupt).",
    )
    decoder_threads: int = Field(
        1, ge=0, le=64, description="Decoder threads per stream (0: FFmpeg picks)."
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTSP sources: carry the media over TCP (reliable) or UDP."
    )
    allow_files: bool = Field(
        False,
        description="Accept local file paths as sources (replays and tests). Never enable "
        "for sources that tenants choose.",
    )
    pace_files: bool = Field(
        True,
        description="Local files are read at real time (as if live); off: as fast as they decode.",
    )
    user_agent: str = Field(
        "Bastion-Live/1",
        min_length=1,
        max_length=256,
        pattern=r"^[\x20-\x7e]+$",
        description="User-Agent of HTTP(S) requests (HLS playlists and segments, HTTP-FLV).",
    )
    verify_tls: bool = Field(
        True,
        description="HTTPS sources (playlists, segments, keys): verify the server's certificate "
        "against the system's trusted CAs. Off only for trusted sources with self-signed "
        "certificates.",
    )
    max_playlist_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest HLS playlist read whole after a redirect (its relative URIs are "
        "made absolute against the URL that finally served it).",
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must be at least backoff_min_s")
        return self


class LiveSampling(BaseModel):
    """Which decoded frames of a live stream are analysed."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="Seconds of stream time between analysed frames; the first frame is "
        "taken at once.",
    )
    similarity_threshold: int | None = Field(
        None,
        ge=0,
        le=PDQ_BITS,
        description="Skip a sampled frame whose perceptual hash differs from the last "
        "analysed frame's by at most this many bits (None: no similarity skip).",
    )
    hash: Literal["dhash", "pdq"] = Field(
        "pdq",
        description="Perceptual hash compared: pdq (256 bits; thresholds around 16–30) sees "
        "a text banner or a QR code appear on a still picture; dhash (64 bits, about half "
        "the cost; thresholds around 4–8) only sees changes of the picture as a whole.",
    )

    @model_validator(mode="after")
    def _threshold_fits(self) -> Self:
        bits = DHASH_BITS if self.hash == "dhash" else PDQ_BITS
        if self.similarity_threshold is not None and self.similarity_threshold > bits:
            raise ValueError(f"similarity_threshold may be at most {bits} for {self.hash}")
        return self
