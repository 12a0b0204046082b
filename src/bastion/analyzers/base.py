"""The Analyzer interface and its registry.

An analyzer is one small class: a ``kind`` (its registry name), a pydantic config
model, a version, the taxonomy labels it can emit, ``preprocess(frame)`` (runs in a
worker thread, once per frame) and ``analyze(batch)`` (runs once per gathered batch).
Subclasses register themselves by ``kind``; adding a model is adding one module.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from bastion.media.types import Frame
from bastion.results import AnalyzerOutput
from bastion.runtime.config import RuntimeConfig


class AnalyzerConfig(BaseModel):
    """Settings every analyzer has; subclasses add a ``type`` literal and their own fields."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Which analyzer implementation (its registry kind).")
    name: str | None = Field(
        None, description="Instance name used in policies and results; defaults to the type."
    )
    enabled: bool = Field(True, description="Load and offer this analyzer.")
    max_batch_size: int = Field(16, ge=1, le=1024, description="Most frames per model call.")
    max_wait_ms: float = Field(
        4.0, ge=0, le=1000, description="How long a batch waits for more frames before running."
    )


@dataclass(frozen=True, slots=True)
class RuntimeContext:
    """What analyzers may use from the runtime: session settings and a cache folder."""

    runtime: RuntimeConfig

    @property
    def cache_dir(self) -> Path:
        return self.runtime.cache_dir


class AnalyzerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: str
    model: str
    version: str
    categories: list[str]
    emits: list[str] = Field(
        description="Kinds of output: labels, tags, text, codes, faces, hashes, embedding."
    )
    consumes: str = Field(description="The input each model call gets, made from the frame.")
    provider: str | None = None
    description: str


C = TypeVar("C", bound=AnalyzerConfig)
P = TypeVar("P")

_REGISTRY: dict[str, type[Analyzer[Any, Any]]] = {}


class Analyzer(ABC, Generic[C, P]):
    """Base class for every analyzer. ``P`` is the preprocessed form of one frame."""

    kind: ClassVar[str]
    config_model: ClassVar[type[AnalyzerConfig]]
    description: ClassVar[str] = ""
    emits: ClassVar[tuple[str, ...]] = ("labels",)
    consumes: ClassVar[str] = "RGB frame"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind:
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
    def preprocess(self, frame: Frame) -> P:
        """Turn one decoded frame into this analyzer's input (runs in a worker thread)."""

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
            provider=self.provider,
            description=self.description or (self.__doc__ or "").strip().split("\n")[0],
        )


def registry() -> dict[str, type[Analyzer[Any, Any]]]:
    """Registered analyzer classes by kind (import ``bastion.analyzers`` first)."""
    return dict(_REGISTRY)


def file_version(path: Path, length: int = 12) -> str:
    """A model version from the weights' sha256 (first ``length`` hex digits)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
