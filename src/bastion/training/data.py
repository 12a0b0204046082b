"""The samples a run trains and evaluates on: checks, the time split and a fingerprint.

Samples arrive as an ``n × d`` float32 matrix of embeddings, 0/1 labels and the time
each was taken. Training never sees the newest ``held_out_fraction`` of them: those are
frozen as the held-out set, the way the head will meet data after it is trained. The
fingerprint (a sha256 of the exact embeddings and labels) names the training set in the
exported model, so two heads can be told apart by what they learned from.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from bastion.training.config import TrainingConfig
from bastion.training.errors import TooFewSamples, TrainingInputError

__all__ = [
    "Labels",
    "Matrix",
    "TimeSplit",
    "check_samples",
    "class_counts",
    "require_counts",
    "time_split",
    "training_set_hash",
]

Matrix = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


def check_samples(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[Matrix, Labels]:
    """``x`` as a C-contiguous float32 ``n × d`` matrix and ``y`` as 0/1 int64, or a
    :class:`TrainingInputError` saying what is wrong with them."""
    xs = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    ys = np.asarray(y)
    if xs.ndim != 2 or xs.shape[1] == 0:
        raise TrainingInputError(
            f"embeddings must be an n × d matrix, got shape {list(xs.shape)}",
            details={"shape": list(xs.shape)},
        )
    if ys.ndim != 1 or ys.shape[0] != xs.shape[0]:
        raise TrainingInputError(
            f"{xs.shape[0]} embeddings but labels of shape {list(ys.shape)}",
            details={"embeddings": int(xs.shape[0]), "labels_shape": list(ys.shape)},
        )
    if not np.isfinite(xs).all():
        bad = int((~np.isfinite(xs)).any(axis=1).sum())
        raise TrainingInputError(
            f"{bad} embeddings hold NaN or infinite values", details={"non_finite_rows": bad}
        )
    values = set(np.unique(ys).tolist())
    if not values <= {0, 1}:
        raise TrainingInputError(
            "labels must be 0 (negative) or 1 (positive)",
            details={"values": sorted(str(v) for v in values)},
        )
    return xs, ys.astype(np.int64)


def class_counts(y: npt.ArrayLike) -> dict[str, int]:
    """``{"positive": n1, "negative": n0}`` of 0/1 labels."""
    ys = np.asarray(y)
    positives = int((ys == 1).sum())
    return {"positive": positives, "negative": int(ys.shape[0]) - positives}


def require_counts(
    y: npt.ArrayLike, *, positives: int, negatives: int, part: str
) -> dict[str, int]:
    """The class counts of ``y``, or :class:`TooFewSamples` when either is short."""
    counts = class_counts(y)
    if counts["positive"] < positives or counts["negative"] < negatives:
        raise TooFewSamples(
            f"too few samples in {part}: {counts['positive']} positive (need {positives}), "
            f"{counts['negative']} negative (need {negatives})",
            details={
                "part": part,
                "positive": counts["positive"],
                "negative": counts["negative"],
                "need_positive": positives,
                "need_negative": negatives,
            },
        )
    return counts


@dataclass(frozen=True)
class TimeSplit:
    """Indices of the training part and of the held-out part (the newest samples), and
    the time the held-out part starts at."""

    train: npt.NDArray[np.intp]
    held_out: npt.NDArray[np.intp]
    held_out_from: datetime | None


def time_split(taken_at: Sequence[datetime], y: npt.ArrayLike, config: TrainingConfig) -> TimeSplit:
    """Hold out the newest ``config.held_out_fraction`` of the samples (ties broken by
    position), checking that both parts have the samples of each class the
    configuration asks for."""
    ys = np.asarray(y)
    n = len(taken_at)
    if n != ys.shape[0]:
        raise TrainingInputError(
            f"{n} sample times for {ys.shape[0]} labels",
            details={"taken_at": n, "labels": int(ys.shape[0])},
        )
    require_counts(
        ys,
        positives=config.min_positives + config.min_held_out_per_class,
        negatives=config.min_negatives + config.min_held_out_per_class,
        part="all",
    )
    order = sorted(range(n), key=lambda i: (taken_at[i], i))
    n_held = min(n - 1, max(1, math.ceil(n * config.held_out_fraction)))
    train = np.array(sorted(order[: n - n_held]), dtype=np.intp)
    held = np.array(sorted(order[n - n_held :]), dtype=np.intp)
    require_counts(
        ys[train], positives=config.min_positives, negatives=config.min_negatives, part="train"
    )
    least = config.min_held_out_per_class
    require_counts(ys[held], positives=least, negatives=least, part="held_out")
    return TimeSplit(train=train, held_out=held, held_out_from=taken_at[order[n - n_held]])


def training_set_hash(x: npt.ArrayLike, y: npt.ArrayLike) -> str:
    """sha256 of the exact float32 embeddings (with their shape) and the 0/1 labels."""
    xs = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    ys = np.ascontiguousarray(np.asarray(y, dtype=np.int8))
    h = hashlib.sha256()
    h.update(f"{xs.shape[0]}x{xs.shape[1] if xs.ndim == 2 else 0};".encode())
    h.update(xs.astype("<f4", copy=False).tobytes())
    h.update(ys.tobytes())
    return h.hexdigest()
