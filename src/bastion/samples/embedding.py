"""The embedding a sample keeps: which model made it, and computing it on media.

An :class:`EmbeddingModel` names the vectors of one model at one version
(``efficientnet-lite0@<weights digest>``); vectors of different models or versions never
mix in one training set. :class:`Embedder` computes the embedding of image bytes with
the analyzer the settings name (``samples.embedding_analyzer``; by default the first
image analyzer that makes embeddings, ``labels``: the L2-normalised 1280-d features of
EfficientNet-Lite0), through the engine's worker pool and that analyzer's batcher, as
moderation does. An animation's or a multi-page image's first frame is embedded. It
runs where the models are: the worker (collecting decisions) and the command line
(imports), never in an API request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from bastion.analyzers.base import Analyzer, ContentKind
from bastion.media.image import decode_image
from bastion.media.types import DecodedImage, MediaLimits
from bastion.pipeline.engine import Engine
from bastion.samples.errors import EmbeddingUnavailable, InvalidEmbeddingModel

Vector = npt.NDArray[np.float32]
_DTYPE = np.dtype("<f4")


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """The model (and version) whose vectors a sample carries."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> EmbeddingModel:
        """``<model>@<version>`` (as :meth:`__str__` writes it)."""
        name, sep, version = text.partition("@")
        if not sep or not name or not version or len(name) > 64 or len(version) > 64:
            raise InvalidEmbeddingModel(
                f"an embedding model is written <model>@<version>, not {text[:140]!r}"
            )
        return cls(name, version)


def to_bytes(vector: Vector) -> bytes:
    """A vector as little-endian float32 bytes (how it is stored)."""
    return np.ascontiguousarray(vector, dtype=_DTYPE).reshape(-1).tobytes()


def from_bytes(data: bytes, dim: int) -> Vector:
    """The stored bytes of a ``dim``-d vector as float32."""
    vector = np.frombuffer(data, dtype=_DTYPE)
    if vector.shape != (dim,):
        raise ValueError(f"a stored embedding has {vector.size} values, not {dim}")
    return vector.astype(np.float32)


def embedding_analyzer(engine: Engine, name: str | None) -> Analyzer[Any, Any]:
    """The analyzer ``name``, or the first image analyzer that makes embeddings (one
    whose configuration has not switched them off); ``embedding_unavailable`` when
    there is none."""
    if name is not None:
        found = engine.analyzers.get(name)
        if found is None or not _embeds(found):
            raise EmbeddingUnavailable(
                f"analyzer {name!r} (samples.embedding_analyzer) is not a configured "
                "image analyzer that makes embeddings"
            )
        return found
    for analyzer in engine.analyzers.values():
        if _embeds(analyzer):
            return analyzer
    raise EmbeddingUnavailable(
        "no configured image analyzer makes embeddings (the `labels` analyzer does)"
    )


def _embeds(analyzer: Analyzer[Any, Any]) -> bool:
    return (
        analyzer.consumes is ContentKind.IMAGE_FRAME
        and "embedding" in analyzer.emits
        and getattr(analyzer.config, "embedding", True) is not False
    )


class Embedder:
    """Decodes image bytes within the media limits and embeds their first frame."""

    def __init__(self, engine: Engine, analyzer: str | None = None) -> None:
        self.engine = engine
        self.analyzer = embedding_analyzer(engine, analyzer)
        self._loaded = False
        self._lock = asyncio.Lock()

    @property
    def limits(self) -> MediaLimits:
        return self.engine.settings.limits

    @property
    def model(self) -> EmbeddingModel:
        return EmbeddingModel(self.analyzer.model_name, self.analyzer.version)

    async def decode(self, data: bytes) -> DecodedImage:
        """``data`` decoded in the engine's worker pool, sniffed and bounded as every
        image is (:func:`bastion.media.image.decode_image`: its errors and codes)."""
        return await self.engine.run_in_pool(partial(decode_image, data, self.limits))

    async def embed(self, decoded: DecodedImage) -> Vector:
        """The embedding of ``decoded``'s first frame."""
        await self.load()
        analyzer = self.analyzer
        batcher = self.engine.batchers()[analyzer.name]
        prepared = await self.engine.run_in_pool(partial(analyzer.preprocess, decoded.frames[0]))
        out = await batcher.submit(prepared)
        if out.embedding is None:
            raise EmbeddingUnavailable(f"analyzer {analyzer.name!r} made no embedding")
        return np.asarray(out.embedding, dtype=np.float32).reshape(-1)

    async def load(self) -> None:
        """Load the analyzer's model (once); ``embedding_unavailable`` when it fails."""
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            name = self.analyzer.name
            errors = await self.engine.run_in_pool(partial(self.engine.load_all, [name]))
            if name in errors:
                raise EmbeddingUnavailable(f"analyzer {name!r} failed to load: {errors[name]}")
            self._loaded = True
