"""Tenant heads made in a test: labelled samples along a known direction of the embedding
space stored as a tenant's real samples, heads trained on them in a moment, and versions
logged to the registry as a training run logs them (the report with the frozen held-out
ids and the baseline's scores).

A category's samples are vectors ``s·d + noise`` (positives, ``s`` from 0.3 to 1.2) or
plain noise (negatives), L2-normalised like the ``labels`` embeddings, for a direction
``d`` (a random one, or a real photo's embedding so a running app's results follow the
heads). The newest samples are held out, as the training's time split does. A head is
``sigmoid(k·(x·w − c))`` over the embedding: :func:`fit_head` takes ``w`` as the
difference of the class means of the training samples and places the cut ``c`` for the
recall (and false-positive rate) asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from onnx import TensorProto, helper

from bastion.registry.store import HeadVersion, ModelRegistry
from bastion.samples.embedding import EmbeddingModel
from bastion.samples.service import NewEmbedding, NewSample, SampleService

DIM = 1280
EMBEDDING = EmbeddingModel("efficientnet-lite0", "synthetic")
STEEPNESS = 60.0


def unit(v: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def random_direction(seed: int, dim: int = DIM) -> npt.NDArray[np.float32]:
    return unit(np.random.default_rng(seed).standard_normal(dim))


def direction_head(
    weights: npt.NDArray[np.float32],
    cut: float,
    category: str,
    *,
    embedding: EmbeddingModel = EMBEDDING,
    steepness: float = STEEPNESS,
    threshold: float = 0.5,
) -> bytes:
    """An ONNX head ``sigmoid(k·(x·w − cut))``: at threshold 0.5 it flags the vectors
    whose dot product with ``weights`` reaches ``cut``."""
    dim = int(weights.shape[0])
    w = (steepness * weights).astype(np.float32).reshape(dim, 1)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["embedding", "w"], ["z0"]),
            helper.make_node("Add", ["z0", "b"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["p"]),
            helper.make_node("Reshape", ["p", "shape"], ["probability"]),
        ],
        "head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, None)],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [dim, 1], w.ravel().tolist()),
            helper.make_tensor("b", TensorProto.FLOAT, [1], [-steepness * cut]),
            helper.make_tensor("shape", TensorProto.INT64, [1], [-1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(
        model,
        {
            "bastion.category": category,
            "bastion.threshold": str(threshold),
            "bastion.embedding_model": embedding.name,
            "bastion.embedding_version": embedding.version,
        },
    )
    return bytes(model.SerializeToString())


@dataclass
class Split:
    """A category's samples of a tenant: training part and frozen held-out part."""

    category: str
    train_x: npt.NDArray[np.float32]
    train_y: npt.NDArray[np.int64]
    held_out_ids: list[str]
    held_out_x: npt.NDArray[np.float32]
    held_out_y: npt.NDArray[np.int64]


def make_samples(
    service: SampleService,
    tenant: str,
    category: str,
    direction: npt.NDArray[np.float32],
    *,
    seed: int = 0,
    train: int = 60,
    held_out: int = 80,
    embedding: EmbeddingModel = EMBEDDING,
) -> Split:
    """Store ``train + held_out`` samples of ``category`` (half positive) as the
    tenant's samples with their embeddings; the held-out ones are the newest."""
    rng = np.random.default_rng(seed)
    n = train + held_out
    labels = np.tile([1, 0], n // 2 + 1)[:n].astype(np.int64)
    vectors = []
    for positive in labels:
        noise = rng.standard_normal(direction.shape[0]) / np.sqrt(direction.shape[0])
        strength = rng.uniform(0.3, 1.2) if positive else 0.0
        vectors.append(unit(strength * direction + noise))
    x = np.stack(vectors)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    ids = []
    for i, (vector, positive) in enumerate(zip(x, labels, strict=True)):
        row = service.add(
            NewSample(
                tenant_id=tenant,
                labels=[category] if positive else [],
                decision="block" if positive else "allow",
                source="import",
                taken_by="cli:test",
                taken_at=start + timedelta(hours=i),
                embeddings=[NewEmbedding(embedding, "labels", vector)],
            ),
            consent=False,
        )
        ids.append(row.id)
    return Split(category, x[:train], labels[:train], ids[train:], x[train:], labels[train:])


def fit_head(
    split: Split,
    *,
    recall: float = 1.0,
    false_positives: float = 0.0,
    embedding: EmbeddingModel = EMBEDDING,
) -> bytes:
    """A head trained on the split's training part: the class-mean direction, cut so it
    keeps about ``recall`` of the positives (1.0: between the classes) or, with
    ``false_positives``, so it flags that share of the negatives too."""
    pos, neg = split.train_x[split.train_y == 1], split.train_x[split.train_y == 0]
    w = unit(pos.mean(axis=0) - neg.mean(axis=0))
    # each sample scored by the direction of the others (out of fold, as training
    # chooses its threshold): a sample's own noise would lift its score
    pos_scores = np.array(
        [x @ unit(_mean_without(pos, i) - neg.mean(axis=0)) for i, x in enumerate(pos)]
    )
    neg_scores = np.array(
        [x @ unit(pos.mean(axis=0) - _mean_without(neg, i)) for i, x in enumerate(neg)]
    )
    if false_positives > 0:
        cut = float(np.quantile(neg_scores, 1.0 - false_positives))
    elif recall >= 1.0:
        cut = float(neg_scores.max() + pos_scores.min()) / 2
    else:
        cut = float(np.quantile(pos_scores, 1.0 - recall))
    return direction_head(w, cut, split.category, embedding=embedding)


def _mean_without(x: npt.NDArray[np.float32], i: int) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = ((x.sum(axis=0) - x[i]) / (len(x) - 1)).astype(np.float32)
    return out


def log_version(
    registry: ModelRegistry,
    tenant: str,
    split: Split,
    onnx: bytes,
    *,
    baseline_precision: float = 0.9,
    baseline_recall: float = 0.25,
    held_out_ids: list[str] | None = None,
    report: dict[str, Any] | None = None,
) -> HeadVersion:
    """Log ``onnx`` as a trained version of the tenant's head, with the report and the
    run metrics a training run records (held-out ids, the baseline's scores);
    ``report`` replaces the report (and the baseline metrics) altogether."""
    p, r = baseline_precision, baseline_recall
    baseline = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    metrics = {f"baseline_{k}": v for k, v in baseline.items()}
    if report is None:
        report = {
            "category": split.category,
            "held_out_ids": split.held_out_ids if held_out_ids is None else held_out_ids,
            "baseline": baseline,
        }
    else:
        metrics = {}
    return registry.log_head(tenant, split.category, onnx, {"trainer": "test"}, metrics, report)
