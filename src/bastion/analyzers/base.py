"""The analyzer contract: what an analyzer reads, how it is fed, and the registry.

An analyzer is one class in one module of this package. It declares

- ``kind``: its registry name, which is also the ``type`` of its entries in the
  settings' ``analyzers`` list;
- ``config_model``: a pydantic model derived from :class:`AnalyzerConfig` with
  ``type: Literal["<kind>"]`` and the analyzer's own fields (the settings validate each
  entry against the model its ``type`` names);
- the :class:`ContentKind` it consumes, by deriving from the base class of that kind:
  :class:`FrameAnalyzer` (decoded image frames, :class:`~bastion.media.types.Frame`),
  :class:`AudioAnalyzer` (:class:`~bastion.media.types.AudioWindow`),
  :class:`TextAnalyzer` (one line of text another analyzer read,
  :class:`~bastion.media.types.TextInput`) or :class:`EmbeddingAnalyzer` (a vector
  another analyzer made of a frame, :class:`~bastion.media.types.EmbeddingInput`);
- ``input``: in words, what its model gets, made from that content (listed by
  ``GET /v1/analyzers``);
- a model name, a version and the taxonomy labels it can emit;
- ``preprocess(item)``, run in a worker thread once per input, and ``analyze(batch)``,
  run once per gathered batch and returning one output per input, in order.

Defining such a class registers it by ``kind``. Adding an analyzer is writing that one
module and importing it in the package's ``__init__``, which makes it one of the
analyzers the settings accept. Which inputs each content kind gets, and when, is the
engine's business (:mod:`bastion.pipeline.stages`); the analyzer only sees its items.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from bastion.media.digest import source_sha256
from bastion.media.types import AudioWindow, EmbeddingInput, Frame, TextInput
from bastion.models.shared import SharedModels
from bastion.results import AnalyzerOutput
from bastion.runtime.config import RuntimeConfig


class ContentKind(StrEnum):
    """What an analyzer reads: one item of this kind per ``preprocess`` call."""

    IMAGE_FRAME = "image_frame"
    """A decoded picture: a still image, a sampled frame of an animation or a video."""
    AUDIO_WINDOW = "audio_window"
    """A stretch of mono audio from the media."""
    TEXT = "text"
    """One line of text another analyzer read in a frame (OCR) or heard (speech)."""
    EMBEDDING = "embedding"
    """A feature vector another analyzer made of a frame."""


class AnalyzerConfig(BaseModel):
    """Settings every analyzer has; subclasses add a ``type`` literal and their own fields."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Which analyzer implementation (its registry kind).")
    name: str | None = Field(
        None, description="Instance name used in policies and results; defaults to the type."
    )
    enabled: bool = Field(True, description="Load and offer this analyzer.")
    max_batch_size: int = Field(
        16, ge=1, le=1024, description="Most inputs (frames, lines, ...) per model call."
    )
    max_wait_ms: float = Field(
        4.0, ge=0, le=1000, description="How long a batch waits for more inputs before running."
    )


@dataclass(frozen=True, slots=True)
class RuntimeContext:
    """What analyzers may use from the runtime: session settings, a cache folder and the
    models the engine's parts share."""

    runtime: RuntimeConfig
    shared: SharedModels = field(default_factory=SharedModels)
    """Models made once per engine for whoever needs them (the sentence encoder)."""

    @property
    def cache_dir(self) -> Path:
        return self.runtime.cache_dir


class AnalyzerInfo(BaseModel):
    """One loaded analyzer as ``GET /v1/analyzers`` lists it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str
    model: str
    version: str
    categories: list[str]
    emits: list[str] = Field(
        description="Kinds of output: labels, tags, text, codes, faces, hashes, embedding."
    )
    consumes: ContentKind = Field(
        description="What the analyzer reads: image frames, audio windows, text lines "
        "read by another analyzer, or embeddings made by another analyzer."
    )
    input: str = Field(description="What each model call gets, made from that content.")
    provider: str | None = None
    description: str


C = TypeVar("C", bound=AnalyzerConfig)
P = TypeVar("P")

_REGISTRY: dict[str, type[Analyzer[Any, Any]]] = {}


class Analyzer(ABC, Generic[C, P]):
    """What every analyzer has. ``C`` is its config model, ``P`` the preprocessed form of
    one input.

    Analyzers derive from the base class of the content they read
    (:class:`FrameAnalyzer`, :class:`AudioAnalyzer`, :class:`TextAnalyzer`,
    :class:`EmbeddingAnalyzer`), which sets ``consumes`` and the type ``preprocess``
    takes; a class that sets ``kind`` without one is refused.
    """

    kind: ClassVar[str]
    config_model: ClassVar[type[AnalyzerConfig]]
    consumes: ClassVar[ContentKind]
    input: ClassVar[str]
    description: ClassVar[str] = ""
    emits: ClassVar[tuple[str, ...]] = ("labels",)
    embedding_dim: ClassVar[int | None] = None
    """Length of the embedding it makes (None: it makes none)."""
    parallel_batches: ClassVar[bool] = False
    """Whether ``analyze`` may run on several batches at once from different threads (its
    sessions and libraries are thread-safe and it keeps no per-call state on ``self``).
    Only such analyzers get more than one batch in flight (``runtime.batch_concurrency``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind:
            _check_declaration(cls, kind)
            if kind in _REGISTRY and _REGISTRY[kind] is not cls:
                raise TypeError(f"analyzer kind {kind!r} registered twice")
            _REGISTRY[kind] = cls

    def __init__(self, config: C, context: RuntimeContext) -> None:
        self.config = config
        self.context = context

    @property
    def name(self) -> str:
        return self.config.name or self.kind

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model this analyzer runs, e.g. ``open-nsfw``."""

    @property
    @abstractmethod
    def version(self) -> str:
        """Model version: a short hash of the weights or the package version."""

    def version_for(self, tenant: str | None) -> str:
        """The version of what this analyzer runs for ``tenant``'s items, which keys
        cached and stored results: :attr:`version`, unless the analyzer serves each tenant
        models of its own (``tenant_head``)."""
        return self.version

    @abstractmethod
    def categories(self) -> list[str]:
        """Taxonomy labels this analyzer can emit."""

    def load(self) -> None:
        """Load weights and create sessions; called once before the first batch."""

    @property
    def provider(self) -> str | None:
        """Execution provider in use, where the analyzer runs an ONNX session."""
        return None

    @abstractmethod
    def preprocess(self, item: Any) -> P:
        """Turn one item of the kind this analyzer consumes into its model's input (runs
        in a worker thread). The per-kind base classes give ``item`` its type."""

    @abstractmethod
    def analyze(self, batch: Sequence[P]) -> list[AnalyzerOutput]:
        """Analyse a batch; return one output per input, in order."""

    def info(self) -> AnalyzerInfo:
        return AnalyzerInfo(
            name=self.name,
            type=self.kind,
            model=self.model_name,
            version=self.version,
            categories=self.categories(),
            emits=list(self.emits),
            consumes=self.consumes,
            input=self.input,
            provider=self.provider,
            description=self.description or (self.__doc__ or "").strip().split("\n")[0],
        )


class FrameAnalyzer(Analyzer[C, P]):
    """An analyzer of decoded image frames."""

    consumes: ClassVar[ContentKind] = ContentKind.IMAGE_FRAME
    input: ClassVar[str] = "RGB frame"

    @abstractmethod
    def preprocess(self, frame: Frame) -> P:
        """Turn one decoded frame into this analyzer's model input."""


class AudioAnalyzer(Analyzer[C, P]):
    """An analyzer of audio windows."""

    consumes: ClassVar[ContentKind] = ContentKind.AUDIO_WINDOW
    input: ClassVar[str] = "mono float32 audio window"

    @abstractmethod
    def preprocess(self, window: AudioWindow) -> P:
        """Turn one audio window into this analyzer's model input."""


class TextAnalyzer(Analyzer[C, P]):
    """An analyzer of the text lines other analyzers read."""

    consumes: ClassVar[ContentKind] = ContentKind.TEXT
    input: ClassVar[str] = "one text line"

    @abstractmethod
    def preprocess(self, line: TextInput) -> P:
        """Turn one text line into this analyzer's model input."""


class EmbeddingAnalyzer(Analyzer[C, P]):
    """An analyzer of the embeddings other analyzers made (e.g. a head over ``labels``')."""

    consumes: ClassVar[ContentKind] = ContentKind.EMBEDDING
    input: ClassVar[str] = "one embedding vector"

    @abstractmethod
    def preprocess(self, embedding: EmbeddingInput) -> P:
        """Turn one embedding into this analyzer's model input."""


def _check_declaration(cls: type[Analyzer[Any, Any]], kind: str) -> None:
    """Refuse an analyzer class whose declaration the engine or the settings could not use."""
    if not isinstance(getattr(cls, "consumes", None), ContentKind):
        raise TypeError(
            f"analyzer {kind!r} must derive from FrameAnalyzer, AudioAnalyzer, TextAnalyzer "
            "or EmbeddingAnalyzer"
        )
    model = getattr(cls, "config_model", None)
    tag = None
    if isinstance(model, type) and issubclass(model, AnalyzerConfig):
        tag = model.model_fields["type"].annotation
    if get_origin(tag) is not Literal or get_args(tag) != (kind,):
        raise TypeError(
            f"analyzer {kind!r} needs a config_model with the field type: Literal[{kind!r}]"
        )


def registry() -> dict[str, type[Analyzer[Any, Any]]]:
    """Registered analyzer classes by kind (import ``bastion.analyzers`` first)."""
    return dict(_REGISTRY)


def file_version(path: Path, length: int = 12) -> str:
    """A model version from the weights' sha256 (first ``length`` hex digits)."""
    return source_sha256(path)[:length]
