"""Judge a head against what Bastion decides today, on the same frozen held-out samples.

The held-out samples are the newest of a category (see :func:`~bastion.training.data.
time_split`); the head never saw them, nor did its threshold. For the head at its
threshold and for the baseline (the base models and policy's 0/1 decision per sample,
which the caller computes) the report gives precision, recall, F1 and the confusion
matrix; a paired bootstrap over the held-out samples (the same resample scores both)
gives confidence intervals on each F1 and on their difference; and the head's PR curve
on the held-out set, thinned to a few points, is kept for the picture.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score, precision_recall_curve

from bastion.training.config import TrainingConfig
from bastion.training.data import class_counts
from bastion.training.errors import TrainingInputError

__all__ = [
    "Confusion",
    "EvaluationReport",
    "Interval",
    "PrPoint",
    "Scores",
    "evaluate",
    "scores",
]

_CHUNK = 250  # bootstrap resamples scored at once (bounds memory to CHUNK × n)


class Confusion(BaseModel):
    """Counts of a 0/1 decision against the truth."""

    model_config = ConfigDict(extra="forbid")

    tp: int = Field(description="Positives decided positive.")
    fp: int = Field(description="Negatives decided positive.")
    fn: int = Field(description="Positives decided negative.")
    tn: int = Field(description="Negatives decided negative.")


class Scores(BaseModel):
    """Precision, recall and F1 of a 0/1 decision (0 where undefined: nothing decided
    positive, or no positives)."""

    model_config = ConfigDict(extra="forbid")

    precision: float = Field(description="Of the samples decided positive, the share that are.")
    recall: float = Field(description="Of the positive samples, the share decided positive.")
    f1: float = Field(description="Harmonic mean of precision and recall.")
    confusion: Confusion = Field(description="The counts these come from.")


class Interval(BaseModel):
    """A point estimate with its paired-bootstrap percentile confidence interval."""

    model_config = ConfigDict(extra="forbid")

    estimate: float = Field(description="The value on the held-out set itself.")
    low: float = Field(description="Lower end of the interval.")
    high: float = Field(description="Upper end of the interval.")
    confidence: float = Field(description="Level of the interval, e.g. 0.95.")
    resamples: int = Field(description="Bootstrap resamples it was computed from.")


class PrPoint(BaseModel):
    """One point of the head's precision-recall curve on the held-out set."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(description="Positive when the probability is ≥ this.")
    precision: float = Field(description="Precision at the threshold.")
    recall: float = Field(description="Recall at the threshold.")


class EvaluationReport(BaseModel):
    """A head and the baseline on the same frozen held-out samples (JSON for the
    registry, the API and the portal's report page)."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(description="The category the head decides.")
    baseline_name: str = Field(description="What the baseline is, e.g. the base policy.")
    held_out: dict[str, int] = Field(description="Held-out samples per class.")
    held_out_from: datetime | None = Field(
        None, description="The time the held-out samples start at (they are the newest)."
    )
    threshold: float = Field(description="The head's decision threshold.")
    head: Scores = Field(description="The head at its threshold.")
    baseline: Scores = Field(description="The baseline's decisions.")
    head_f1: Interval = Field(description="The head's F1 with its confidence interval.")
    baseline_f1: Interval = Field(description="The baseline's F1 with its interval.")
    f1_difference: Interval = Field(
        description="Head F1 minus baseline F1, paired over the same resamples."
    )
    head_better: bool = Field(
        description="The whole interval of the F1 difference lies above zero."
    )
    average_precision: float = Field(
        description="Area under the head's held-out precision-recall curve."
    )
    pr_curve: list[PrPoint] = Field(
        description="The head's held-out PR curve, thinned; by increasing threshold."
    )
    seed: int = Field(description="Seed of the bootstrap.")


def _f1(
    tp: npt.NDArray[np.int64], fp: npt.NDArray[np.int64], fn: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    denominator = 2 * tp + fp + fn
    out: npt.NDArray[np.float64] = np.divide(
        2.0 * tp, denominator, out=np.zeros(tp.shape, dtype=np.float64), where=denominator > 0
    )
    return out


def scores(y_true: npt.ArrayLike, predicted: npt.ArrayLike) -> Scores:
    """Precision, recall, F1 and confusion of 0/1 ``predicted`` against ``y_true``."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(predicted).astype(bool)
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    fn, tn = int((y & ~p).sum()), int((~y & ~p).sum())
    return Scores(
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        confusion=Confusion(tp=tp, fp=fp, fn=fn, tn=tn),
    )


def _bootstrap_f1(
    y: npt.NDArray[np.bool_],
    head: npt.NDArray[np.bool_],
    baseline: npt.NDArray[np.bool_],
    resamples: int,
    seed: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """F1 of the head and of the baseline on each of the same bootstrap resamples."""
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    head_f1 = np.empty(resamples, dtype=np.float64)
    base_f1 = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        ys = y[idx]
        for decided, out in ((head[idx], head_f1), (baseline[idx], base_f1)):
            tp = (ys & decided).sum(axis=1)
            fp = (~ys & decided).sum(axis=1)
            fn = (ys & ~decided).sum(axis=1)
            out[start : start + size] = _f1(tp, fp, fn)
    return head_f1, base_f1


def _interval(estimate: float, samples: npt.NDArray[np.float64], confidence: float) -> Interval:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return Interval(
        estimate=estimate,
        low=float(low),
        high=float(high),
        confidence=confidence,
        resamples=int(samples.shape[0]),
    )


def _pr_curve(
    y: npt.NDArray[np.bool_], probabilities: npt.NDArray[np.float64], most: int
) -> list[PrPoint]:
    precision, recall, thresholds = precision_recall_curve(y, probabilities)
    m = len(thresholds)
    keep = np.unique(np.round(np.linspace(0, m - 1, min(most, m))).astype(np.intp))
    return [
        PrPoint(
            threshold=float(thresholds[i]), precision=float(precision[i]), recall=float(recall[i])
        )
        for i in keep
    ]


def evaluate(
    y_true: npt.ArrayLike,
    head_probabilities: npt.ArrayLike,
    baseline_predictions: npt.ArrayLike,
    *,
    threshold: float,
    category: str,
    config: TrainingConfig | None = None,
    baseline_name: str = "base policy",
    held_out_from: datetime | None = None,
) -> EvaluationReport:
    """Compare the head (its probabilities on the held-out samples, decided at
    ``threshold``) with the baseline's 0/1 decisions on the same samples."""
    config = config or TrainingConfig()
    y = np.asarray(y_true).astype(np.int64)
    probabilities = np.asarray(head_probabilities, dtype=np.float64).reshape(-1)
    baseline = np.asarray(baseline_predictions).reshape(-1)
    n = y.shape[0]
    if y.ndim != 1 or probabilities.shape[0] != n or baseline.shape[0] != n:
        raise TrainingInputError(
            "labels, head probabilities and baseline decisions must be one per sample",
            details={
                "labels": int(y.shape[0]),
                "head": int(probabilities.shape[0]),
                "baseline": int(baseline.shape[0]),
            },
        )
    if not set(np.unique(baseline).tolist()) <= {0, 1}:
        raise TrainingInputError("baseline decisions must be 0 or 1")
    counts = class_counts(y)
    if counts["positive"] == 0 or counts["negative"] == 0:
        raise TrainingInputError(
            "the held-out samples need both classes to be evaluated on", details=counts
        )
    truth = y.astype(bool)
    head_decided = probabilities >= threshold
    base_decided = baseline.astype(bool)
    head_scores = scores(truth, head_decided)
    base_scores = scores(truth, base_decided)
    head_boot, base_boot = _bootstrap_f1(
        truth, head_decided, base_decided, config.bootstrap_resamples, config.seed
    )
    difference = _interval(
        head_scores.f1 - base_scores.f1, head_boot - base_boot, config.confidence
    )
    return EvaluationReport(
        category=category,
        baseline_name=baseline_name,
        held_out=counts,
        held_out_from=held_out_from,
        threshold=threshold,
        head=head_scores,
        baseline=base_scores,
        head_f1=_interval(head_scores.f1, head_boot, config.confidence),
        baseline_f1=_interval(base_scores.f1, base_boot, config.confidence),
        f1_difference=difference,
        head_better=difference.low > 0,
        average_precision=float(average_precision_score(truth, probabilities)),
        pr_curve=_pr_curve(truth, probabilities, config.pr_curve_points),
        seed=config.seed,
    )
