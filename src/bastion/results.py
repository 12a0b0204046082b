"""Result types shared by analyzers, the policy layer, the API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

Decision = Literal["allow", "review", "block"]
UrlSource = Literal["codes", "text"]

RESULT_FORMAT = 2
"""Version of the :class:`ModerationResult` layout. Results are stored as JSON and reused
(:mod:`bastion.dedup`); this number is part of what they are stored under, so it goes up
whenever a stored result would no longer read back as a complete, correct result."""


class Unserialised(dict[Any, Any]):
    """What a result keeps aside for this process (embeddings for search): never
    serialised, and left out of comparisons, so results equal as JSON stay equal (and
    arrays are never compared element by element)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unserialised)

    def __ne__(self, other: object) -> bool:
        return not isinstance(other, Unserialised)

    __hash__ = None


class Box(BaseModel):
    """A rectangle in pixels of the analysed frame (after EXIF rotation)."""

    model_config = ConfigDict(extra="forbid")

    x: float
    y: float
    width: float
    height: float


class Label(BaseModel):
    """A moderation label from the taxonomy, with who produced it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Taxonomy label (L1 or L2 name).")
    confidence: float = Field(ge=0, le=100, description="Confidence 0–100.")
    parent: str | None = Field(None, description="The L1 label above an L2 label.")
    level: int = Field(description="Taxonomy level: 1 or 2.")
    analyzer: str
    model: str
    version: str
    box: Box | None = None
    frame: int | None = Field(None, description="Frame index for animated images.")
    source: str | None = Field(None, description="What the label is about, e.g. a raw class.")


class Tag(BaseModel):
    """A descriptive tag (ImageNet class, detector class) that is not a moderation label."""

    model_config = ConfigDict(extra="forbid")

    name: str
    confidence: float = Field(ge=0, le=100)
    analyzer: str
    version: str
    box: Box | None = None
    frame: int | None = None


class TextLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    confidence: float = Field(ge=0, le=100)
    language: str | None = Field(
        None, description="ISO 639-1 code, with script for zh-Hans/zh-Hant."
    )
    engine: str
    box: Box | None = None
    frame: int | None = None


class TranscriptWord(BaseModel):
    """One word heard, with its times in seconds from the start of the media."""

    model_config = ConfigDict(extra="forbid")

    start_s: float = Field(description="When the word starts, seconds into the media.")
    end_s: float = Field(description="When the word ends, seconds into the media.")
    text: str
    probability: float = Field(ge=0, le=1, description="How sure the recogniser was (0–1).")


class TranscriptSegment(BaseModel):
    """A stretch of speech transcribed as one piece of text (one text line of the result)."""

    model_config = ConfigDict(extra="forbid")

    start_s: float = Field(description="When the segment starts, seconds into the media.")
    end_s: float = Field(description="When the segment ends, seconds into the media.")
    text: str
    language: str | None = Field(
        None, description="ISO 639-1 code of the speech; None when it was not determined."
    )
    confidence: float = Field(
        ge=0, le=100, description="exp(mean token log-probability) × 100: closer to 100, surer."
    )
    analyzer: str = Field(description="The analyzer that transcribed it, e.g. `speech`.")
    words: list[TranscriptWord] = Field(default_factory=list)


class Code(BaseModel):
    """A decoded QR code or barcode."""

    model_config = ConfigDict(extra="forbid")

    format: str
    text: str
    urls: list[str] = Field(default_factory=list)
    box: Box | None = None
    frame: int | None = None


class UrlOrigin(BaseModel):
    """One place a URL of the result was found: a decoded code or an OCR text line."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The URL, normalised as in the result's `urls`.")
    source: UrlSource = Field(
        description="'codes': a decoded QR code or barcode; 'text': an OCR text line."
    )
    index: int = Field(
        ge=0,
        description="Position of that code in the result's `codes`, or of that line in its `text`.",
    )
    frame: int | None = Field(
        None, description="Frame index for animated images (that of the code or line)."
    )


class Face(BaseModel):
    model_config = ConfigDict(extra="forbid")

    box: Box
    frame: int | None = None


@dataclass(slots=True)
class AnalyzerOutput:
    """What one analyzer found in one frame."""

    labels: list[Label] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    text: list[TextLine] = field(default_factory=list)
    codes: list[Code] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    hashes: dict[str, Any] = field(default_factory=dict)
    embedding: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Reason(BaseModel):
    """Why a decision was taken: which policy rule fired on which label."""

    model_config = ConfigDict(extra="forbid")

    rule: str
    label: str
    confidence: float
    threshold: float
    action: Decision
    analyzer: str


class AnalyzerTiming(BaseModel):
    model_config = ConfigDict(extra="forbid")

    analyzer: str
    version: str
    ms: float


class MediaInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    mode: str
    width: int
    height: int
    bytes: int
    frames: int
    frames_analyzed: int
    warnings: list[str] = Field(default_factory=list)


class NearDuplicate(BaseModel):
    """The stored image whose result was reused for a near-duplicate request."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(description="sha256 of the stored image's bytes.")
    distance: int = Field(
        ge=0, le=256, description="Bits (of 256) in which the two images' PDQ hashes differ."
    )


class ModerationResult(BaseModel):
    """The whole answer for one image, or for one audio window (with its `transcript`)."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    reasons: list[Reason]
    labels: list[Label]
    tags: list[Tag]
    text: list[TextLine]
    codes: list[Code]
    urls: list[str]
    url_origins: list[UrlOrigin] = Field(
        default_factory=list,
        description="Where each URL of `urls` was found: one entry per code or text line "
        "carrying it, codes first, each in the order of `codes` and `text`.",
    )
    faces: list[Face]
    face_count: int
    hashes: dict[str, Any]
    media: MediaInfo
    policy: str
    policy_version: str
    timings: list[AnalyzerTiming]
    total_ms: float
    versions: dict[str, str]
    undetectable: list[str] = Field(
        default_factory=list,
        description="Categories the policy names that no analyzer that ran can detect.",
    )
    errors: list[dict[str, str]] = Field(default_factory=list)
    transcript: list[TranscriptSegment] = Field(
        default_factory=list,
        description="Speech heard in an audio window, one segment per text line an audio "
        "analyzer (`speech`) produced, in the order of those lines in `text`; empty for "
        "images.",
    )
    cached: bool = False
    near_duplicate_of: NearDuplicate | None = Field(
        None,
        description="Set when the result was reused from a near-duplicate image (cached is "
        "then true): the findings are that image's, media and hashes this one's.",
    )
    _embeddings: Unserialised = PrivateAttr(default_factory=Unserialised)
    """Image embeddings made while analysing (analyzer name → the first frame's vector):
    kept for search indexing, never serialised; empty for a result read back or cached."""

    def keep_embeddings(self, embeddings: dict[str, np.ndarray]) -> None:
        """Keep the image embeddings the analysis made (by analyzer name), for search."""
        self._embeddings = Unserialised(embeddings)

    @property
    def embeddings(self) -> dict[str, np.ndarray]:
        """The image embeddings made while analysing this image, by analyzer name (empty
        for a result from a cache or stored results)."""
        return dict(self._embeddings)

    @property
    def embedding(self) -> np.ndarray | None:
        """The first image embedding made while analysing this image (the ``labels``
        analyzer's with the default configuration), or None."""
        return next(iter(self._embeddings.values()), None)

    def embedding_of(self, analyzer: str | None) -> np.ndarray | None:
        """The embedding ``analyzer`` made (None: :attr:`embedding`), or None."""
        return self.embedding if analyzer is None else self._embeddings.get(analyzer)
