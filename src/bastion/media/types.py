"""What analyzers read: decoded frames (decoded once), and the other kinds of input.

:class:`Frame` is what the media layer decodes. :class:`AudioWindow`,
:class:`TextInput` and :class:`EmbeddingInput` are the inputs of the other content kinds
(:class:`bastion.analyzers.base.ContentKind`): audio from the media, and the text lines
and embeddings that analyzers of frames produce, each with the frame it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class MediaLimits(BaseModel):
    """Limits applied before and during decoding; they keep memory bounded."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="Largest accepted upload or download, in bytes."
    )
    max_pixels: int = Field(
        64_000_000, ge=1, description="Largest width × height accepted (decompression-bomb guard)."
    )
    max_side: int = Field(20_000, ge=1, description="Largest accepted width or height in pixels.")
    max_frames: int = Field(
        8, ge=1, description="Frames sampled from an animated GIF/WebP/APNG (evenly spread)."
    )
    max_total_frames: int = Field(
        10_000, ge=1, description="Animated images with more frames than this are refused."
    )
    max_animation_pixels: int = Field(
        100_000_000,
        ge=1,
        description="Most work, in pixels, to reach the sampled frames of an animation: "
        "frames walked × (canvas width × height + 10,000 for stepping to a frame). GIF, "
        "APNG, WebP and AVIF frames are drawn one over the other, so reaching the last "
        "frame costs every frame before it at full canvas size; multi-page TIFFs count "
        "their pages stepped over and the pixels of the pages decoded. Checked from the "
        "file's structure before any frame is decoded; more is refused with 413 "
        "`animation_too_large`.",
    )
    max_animation_decode_s: float = Field(
        10.0,
        gt=0,
        description="Wall-clock budget for walking the frames of one animation, checked "
        "between frames; a last resort behind max_animation_pixels (413 "
        "`animation_too_large`).",
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture: RGB, uint8, HxWx3, EXIF orientation applied."""

    rgb: np.ndarray
    index: int = 0
    timestamp_ms: int | None = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True, slots=True)
class AudioWindow:
    """A stretch of mono audio: float32 samples in [-1, 1] at ``sample_rate`` Hz, taken
    from ``start_s`` to ``end_s`` seconds into the media."""

    samples: np.ndarray
    sample_rate: int
    start_s: float
    end_s: float
    language: str | None = None
    """The spoken language (ISO 639-1) when the caller knows it; None: detect it."""
    languages: tuple[str, ...] | None = None
    """Languages detection is restricted to (the most probable of them is taken); None:
    any (or the analyzer's configured restriction)."""


@dataclass(frozen=True, slots=True)
class TextInput:
    """One line of text an analyzer read in a frame or heard in an audio window, and where."""

    text: str
    language: str | None
    """ISO 639-1 code (zh-Hans/zh-Hant with script) when the reader knew it."""
    analyzer: str
    """Name of the analyzer that read the line, e.g. ``ocr``."""
    frame_index: int
    """:attr:`Frame.index` of the frame the line was read in; for a line heard in audio,
    the position of its window among the item's audio windows."""
    line_index: int
    """Position of the line among those that analyzer read in that frame (or window)."""


@dataclass(frozen=True, slots=True)
class EmbeddingInput:
    """A feature vector an analyzer made of a frame, and which model made it."""

    vector: np.ndarray
    analyzer: str
    """Name of the analyzer that made it, e.g. ``labels``."""
    model: str
    """The model that made it; vectors of different models are not comparable."""
    version: str
    """That model's version."""
    frame_index: int
    """:attr:`Frame.index` of the frame it was made of."""
    tenant: str | None = None
    """The tenant whose item it was made of (None: a caller serving no tenant), for
    analyzers that run a tenant's own models on it."""


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An image (or sampled frames of an animation) with facts about its source."""

    frames: tuple[Frame, ...]
    format: str
    mode: str
    width: int
    height: int
    sha256: str
    byte_size: int
    total_frames: int = 1
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def animated(self) -> bool:
        return self.total_frames > 1
