"""A learning curve: how the head's held-out F1 grows with the samples it is trained on.

Heads are trained on nested, class-stratified subsets of the training part (each size
contains the smaller ones) and scored on the same held-out samples as the baseline,
which answers the question a tenant asks before labelling more: would more samples
help?
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from bastion.training.config import TrainingConfig
from bastion.training.data import check_samples
from bastion.training.errors import TooFewSamples
from bastion.training.evaluate import scores
from bastion.training.head import train_head

__all__ = ["LearningCurve", "LearningPoint", "learning_curve", "nested_subsets"]


class LearningPoint(BaseModel):
    """The head trained on ``samples`` training samples, on the held-out set."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(description="Training samples the head was fitted on.")
    positives: int = Field(description="Of which positive.")
    precision: float = Field(description="Held-out precision at the head's threshold.")
    recall: float = Field(description="Held-out recall at the head's threshold.")
    f1: float = Field(description="Held-out F1 at the head's threshold.")
    train_seconds: float = Field(description="Wall time of training, in seconds.")


class LearningCurve(BaseModel):
    """Held-out F1 of heads trained on more and more samples, and of the baseline."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(description="The category the heads decide.")
    baseline_name: str = Field(description="What the baseline is.")
    baseline_f1: float = Field(description="The baseline's held-out F1 (it does not train).")
    points: list[LearningPoint] = Field(description="One per training size, increasing.")
    skipped: dict[int, str] = Field(
        default_factory=dict,
        description="Sizes not trained, with why (more than there are, too few of a class).",
    )


def nested_subsets(
    y: npt.ArrayLike, sizes: Sequence[int], seed: int
) -> dict[int, npt.NDArray[np.intp]]:
    """Indices of nested subsets of each size (at most ``len(y)``), each keeping the
    classes' proportions: one shuffled order per class, a prefix of each per size."""
    ys = np.asarray(y)
    rng = np.random.default_rng(seed)
    orders = {c: rng.permutation(np.flatnonzero(ys == c)) for c in (0, 1)}
    n = ys.shape[0]
    out: dict[int, npt.NDArray[np.intp]] = {}
    for size in sorted(set(sizes)):
        if size > n:
            continue
        positives = round(size * orders[1].shape[0] / n)
        negatives = size - positives
        picked = np.concatenate([orders[1][:positives], orders[0][:negatives]])
        out[size] = np.sort(picked).astype(np.intp)
    return out


def learning_curve(
    x_train: npt.ArrayLike,
    y_train: npt.ArrayLike,
    x_held: npt.ArrayLike,
    y_held: npt.ArrayLike,
    baseline_held: npt.ArrayLike,
    sizes: Sequence[int],
    *,
    category: str,
    config: TrainingConfig | None = None,
    baseline_name: str = "base policy",
    groups: npt.ArrayLike | None = None,
) -> LearningCurve:
    """Train a head per size on a nested stratified subset of the training part and
    score each on the held-out samples (scikit-learn's probabilities). ``groups`` are
    the training samples' groups, as :func:`~bastion.training.head.train_head` takes."""
    config = config or TrainingConfig()
    xs, ys = check_samples(x_train, y_train)
    xh, yh = check_samples(x_held, y_held)
    subsets = nested_subsets(ys, sizes, config.seed)
    skipped: dict[int, str] = {
        s: f"only {ys.shape[0]} training samples" for s in sizes if s not in subsets
    }
    points: list[LearningPoint] = []
    for size, idx in subsets.items():
        try:
            keys = None if groups is None else np.asarray(groups)[idx]
            head = train_head(xs[idx], ys[idx], config, groups=keys)
        except TooFewSamples as exc:
            skipped[size] = exc.message
            continue
        result = scores(yh, head.decide(xh))
        points.append(
            LearningPoint(
                samples=size,
                positives=int(ys[idx].sum()),
                precision=result.precision,
                recall=result.recall,
                f1=result.f1,
                train_seconds=head.summary.train_seconds,
            )
        )
    return LearningCurve(
        category=category,
        baseline_name=baseline_name,
        baseline_f1=scores(yh, np.asarray(baseline_held)).f1,
        points=points,
        skipped=dict(sorted(skipped.items())),
    )
