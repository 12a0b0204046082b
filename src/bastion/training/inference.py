"""Run an exported head with onnxruntime alone: no scikit-learn at inference.

A head is one ONNX graph with a float input ``embedding`` ``[N, d]`` and an output
``probability`` ``[N]`` (the calibrated probability of the positive class), carrying
its category, decision threshold, the embedding model it reads and the fingerprint of
its training set as metadata. :func:`load_head` opens such bytes through Bastion's
session helper and checks them; :func:`head_cost` measures what a head adds per image.
This module imports neither scikit-learn nor skl2onnx, so analyzers can use it in a
process that has only onnxruntime.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.runtime.config import RuntimeConfig
from bastion.runtime.onnx import create_session
from bastion.training.errors import InvalidHead

__all__ = [
    "HEAD_FORMAT",
    "INPUT_NAME",
    "METADATA_PREFIX",
    "OUTPUT_NAME",
    "HeadCost",
    "HeadMetadata",
    "OnnxHead",
    "head_cost",
    "load_head",
]

INPUT_NAME = "embedding"
OUTPUT_NAME = "probability"
HEAD_FORMAT = "bastion-head/1"
METADATA_PREFIX = "bastion."


class HeadMetadata(BaseModel):
    """What an exported head says about itself (ONNX metadata props ``bastion.*``)."""

    model_config = ConfigDict(extra="forbid")

    format: str = Field(HEAD_FORMAT, description="Layout of the graph and of this metadata.")
    category: str = Field(description="The label the head decides, e.g. `Spam Contact`.")
    threshold: float = Field(
        ge=0.0, le=1.0, description="Positive when the probability is at or above this."
    )
    embedding_model: str = Field(description="Model whose embeddings the head reads.")
    embedding_version: str = Field(description="Version of that model (a weights hash).")
    feature_dim: int = Field(ge=1, description="Length of the embeddings the head reads.")
    training_set_hash: str = Field(description="sha256 of the training embeddings and labels.")
    calibration: str = Field(description="How scores became probabilities: sigmoid or isotonic.")
    c: float = Field(gt=0, description="Inverse regularisation strength of the classifier.")

    def props(self) -> dict[str, str]:
        """The metadata as ONNX ``metadata_props`` (strings, keys prefixed ``bastion.``)."""
        return {METADATA_PREFIX + k: str(v) for k, v in self.model_dump().items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> HeadMetadata:
        values = {
            k[len(METADATA_PREFIX) :]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)
        }
        return cls.model_validate(values)


def cpu_runtime() -> RuntimeConfig:
    """A head is a few dot products: one CPU thread serves it best (no GPU transfer, no
    thread wake-ups)."""
    return RuntimeConfig(providers=["cpu"], intra_op_threads=1)


class OnnxHead:
    """An exported head opened in onnxruntime."""

    def __init__(self, session: ort.InferenceSession, metadata: HeadMetadata) -> None:
        self.session = session
        self.metadata = metadata

    @property
    def threshold(self) -> float:
        return self.metadata.threshold

    def predict_proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """The positive probability of each row of ``x`` (``N × d`` embeddings)."""
        xs = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if xs.ndim == 1:
            xs = xs[None, :]
        if xs.ndim != 2 or xs.shape[1] != self.metadata.feature_dim:
            raise ValueError(
                f"head reads {self.metadata.feature_dim}-d embeddings, got shape {xs.shape}"
            )
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: xs})
        result: npt.NDArray[np.float32] = np.asarray(out, dtype=np.float32).reshape(-1)
        return result

    def decide(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """1 where the probability reaches the head's threshold, else 0."""
        return (self.predict_proba(x).astype(np.float64) >= self.threshold).astype(np.int64)


def load_head(data: bytes, runtime: RuntimeConfig | None = None) -> OnnxHead:
    """Open an exported head and check it is one: its metadata, its input and its output.

    Raises :class:`~bastion.training.errors.InvalidHead` for anything else."""
    try:
        session = create_session(data, runtime or cpu_runtime())
    except Exception as exc:  # onnxruntime raises its own exception types for bad bytes
        raise InvalidHead(f"not an ONNX model onnxruntime can run: {exc}") from exc
    props = dict(session.get_modelmeta().custom_metadata_map)
    try:
        metadata = HeadMetadata.from_props(props)
    except ValidationError as exc:
        raise InvalidHead(
            "ONNX model without a head's metadata", details={"errors": exc.errors()}
        ) from exc
    if metadata.format != HEAD_FORMAT:
        raise InvalidHead(f"unknown head format {metadata.format!r}, expected {HEAD_FORMAT!r}")
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    shape = inputs.get(INPUT_NAME)
    if len(inputs) != 1 or shape is None or shape[-1] != metadata.feature_dim:
        raise InvalidHead(
            f"a head has one input {INPUT_NAME!r} of [N, {metadata.feature_dim}]",
            details={"inputs": {k: [str(d) for d in v] for k, v in inputs.items()}},
        )
    if OUTPUT_NAME not in outputs:
        raise InvalidHead(
            f"a head has an output {OUTPUT_NAME!r}", details={"outputs": sorted(outputs)}
        )
    return OnnxHead(session, metadata)


class HeadCost(BaseModel):
    """What a head costs per image on top of the embedding, by batch size."""

    model_config = ConfigDict(extra="forbid")

    feature_dim: int = Field(description="Length of the embeddings scored.")
    provider: str = Field(description="onnxruntime execution provider used.")
    per_image_ms: dict[int, float] = Field(
        description="Median milliseconds per image, by the batch size the head was run at."
    )
    p95_per_image_ms: dict[int, float] = Field(
        description="95th percentile milliseconds per image, by batch size."
    )
    repeats: int = Field(description="Timed runs per batch size.")


def head_cost(
    head: OnnxHead,
    *,
    batch_sizes: Sequence[int] = (1, 16),
    repeats: int = 200,
    warmup: int = 20,
    seed: int = 0,
) -> HeadCost:
    """Time the head on random unit-length embeddings: median and p95 per image for each
    batch size (what the benchmark reports against the < 1 ms target)."""
    rng = np.random.default_rng(seed)
    dim = head.metadata.feature_dim
    median: dict[int, float] = {}
    p95: dict[int, float] = {}
    for size in batch_sizes:
        x = rng.standard_normal((size, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        feed: dict[str, Any] = {INPUT_NAME: x}
        for _ in range(warmup):
            head.session.run([OUTPUT_NAME], feed)
        times = np.empty(repeats, dtype=np.float64)
        for i in range(repeats):
            start = time.perf_counter()
            head.session.run([OUTPUT_NAME], feed)
            times[i] = time.perf_counter() - start
        median[size] = round(float(np.median(times)) * 1000.0 / size, 5)
        p95[size] = round(float(np.percentile(times, 95)) * 1000.0 / size, 5)
    return HeadCost(
        feature_dim=dim,
        provider=str(head.session.get_providers()[0]),
        per_image_ms=median,
        p95_per_image_ms=p95,
        repeats=repeats,
    )
