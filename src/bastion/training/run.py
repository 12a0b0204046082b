"""One training run of a category, from samples to checked ONNX bytes and a report.

Split the samples by time (the newest are held out), train the head on the rest,
export it, open the export in onnxruntime and check it gives scikit-learn's
probabilities and decisions on every sample (a head that does not is refused, never
registered), then evaluate the *exported* head — what will run in production — and the
baseline on the held-out samples.

The baseline (what Bastion decides today) may be given for every sample, or as a
callable that is asked for the held-out samples only, once the split is known: running
the base policy on media is costly, and only the held-out decisions are scored. A
``progress`` callable hears each stage as it starts (:data:`STAGES`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from bastion.training.config import TrainingConfig
from bastion.training.data import TimeSplit, check_samples, time_split
from bastion.training.errors import ExportMismatch, TrainingInputError
from bastion.training.evaluate import EvaluationReport, evaluate
from bastion.training.head import TrainedHead, train_head
from bastion.training.inference import HeadMetadata, OnnxHead, load_head
from bastion.training.onnx_export import export_head

__all__ = [
    "BASELINE",
    "EVALUATION",
    "EXPORT",
    "PARITY_TOLERANCE",
    "STAGES",
    "TRAINING",
    "Baseline",
    "Parity",
    "TrainingResult",
    "check_parity",
    "train_and_evaluate",
]

BASELINE: Final = "baseline"
TRAINING: Final = "training"
EXPORT: Final = "export"
EVALUATION: Final = "evaluation"
STAGES: Final = (BASELINE, TRAINING, EXPORT, EVALUATION)
"""The stages of :func:`train_and_evaluate`, in order: the baseline of the held-out
samples, training with cross-validation, export and its parity check, evaluation."""

Baseline = npt.ArrayLike | Callable[[npt.NDArray[np.intp]], npt.ArrayLike]
"""The baseline's 0/1 decisions for every sample, or a callable giving them for the
sample indices it is handed (the held-out part, in that order)."""

PARITY_TOLERANCE = 1e-4
"""Largest difference allowed between onnxruntime's and scikit-learn's probabilities."""


class Parity(BaseModel):
    """How closely the exported head follows scikit-learn."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(description="Embeddings compared.")
    max_abs_difference: float = Field(description="Largest probability difference.")
    decisions_differing: int = Field(description="Samples decided differently at the threshold.")


@dataclass(frozen=True)
class TrainingResult:
    """A trained, exported and evaluated head."""

    head: TrainedHead
    onnx: bytes
    metadata: HeadMetadata
    split: TimeSplit
    parity: Parity
    report: EvaluationReport

    def params(self) -> dict[str, str]:
        """The run's parameters as strings: the configuration, the chosen C and
        threshold, the embedding model and the training set (for a tracking server)."""
        out = {k: str(v) for k, v in self.head.summary.config.model_dump().items()}
        meta = self.metadata
        out.update(
            chosen_c=str(meta.c),
            threshold=str(meta.threshold),
            category=meta.category,
            embedding_model=meta.embedding_model,
            embedding_version=meta.embedding_version,
            feature_dim=str(meta.feature_dim),
            training_set_hash=meta.training_set_hash,
        )
        return out

    def metrics(self) -> dict[str, float]:
        """The run's numbers, flat: held-out scores of the head and the baseline, the F1
        difference and its interval, out-of-fold scores, counts, time and parity."""
        r, s = self.report, self.head.summary
        oof = s.out_of_fold
        return {
            "held_out_precision": r.head.precision,
            "held_out_recall": r.head.recall,
            "held_out_f1": r.head.f1,
            "held_out_f1_low": r.head_f1.low,
            "held_out_f1_high": r.head_f1.high,
            "held_out_average_precision": r.average_precision,
            "baseline_precision": r.baseline.precision,
            "baseline_recall": r.baseline.recall,
            "baseline_f1": r.baseline.f1,
            "f1_difference": r.f1_difference.estimate,
            "f1_difference_low": r.f1_difference.low,
            "f1_difference_high": r.f1_difference.high,
            "oof_average_precision": oof.average_precision,
            "oof_roc_auc": oof.roc_auc,
            "oof_log_loss": oof.log_loss,
            "oof_brier": oof.brier,
            "oof_f1": oof.at_threshold.f1,
            "train_positive": float(s.counts["positive"]),
            "train_negative": float(s.counts["negative"]),
            "held_out_positive": float(r.held_out["positive"]),
            "held_out_negative": float(r.held_out["negative"]),
            "train_seconds": s.train_seconds,
            "onnx_max_abs_difference": self.parity.max_abs_difference,
        }


def check_parity(head: TrainedHead, exported: OnnxHead, x: npt.ArrayLike) -> Parity:
    """Compare the export with scikit-learn on ``x``; :class:`ExportMismatch` when the
    probabilities differ by more than :data:`PARITY_TOLERANCE` or a decision differs."""
    xs = np.asarray(x, dtype=np.float32)
    reference = head.predict_proba(xs)
    got = exported.predict_proba(xs).astype(np.float64)
    parity = Parity(
        samples=int(xs.shape[0]),
        max_abs_difference=float(np.abs(reference - got).max()) if xs.shape[0] else 0.0,
        decisions_differing=int((head.decide(xs) != exported.decide(xs)).sum()),
    )
    if parity.max_abs_difference > PARITY_TOLERANCE or parity.decisions_differing:
        raise ExportMismatch(
            "the exported head does not match the trained one", details=parity.model_dump()
        )
    return parity


def train_and_evaluate(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    taken_at: Sequence[datetime],
    baseline: Baseline,
    *,
    category: str,
    embedding_model: str,
    embedding_version: str,
    config: TrainingConfig | None = None,
    baseline_name: str = "base policy",
    groups: npt.ArrayLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Train, export, check and evaluate a head for ``category``.

    ``x`` are the samples' embeddings (``n × d``), ``y`` their 0/1 labels, ``taken_at``
    when each was taken and ``baseline`` what Bastion decides today (0/1): for each
    sample, or a callable asked for the held-out samples only (see :data:`Baseline`);
    ``groups`` optionally names the picture (or near-duplicate cluster) of each, which
    cross-validation keeps whole (see :func:`~bastion.training.head.train_head`).
    ``progress`` is called with each of :data:`STAGES` as it starts.
    """
    config = config or TrainingConfig()
    step = progress or (lambda _stage: None)
    xs, ys = check_samples(x, y)
    if not callable(baseline):
        given = np.asarray(baseline).reshape(-1)
        if given.shape[0] != ys.shape[0]:
            raise TrainingInputError(
                f"{ys.shape[0]} samples but {given.shape[0]} baseline decisions",
                details={"samples": int(ys.shape[0]), "baseline": int(given.shape[0])},
            )
    split = time_split(taken_at, ys, config)
    step(BASELINE)
    if callable(baseline):
        held_base = np.asarray(baseline(split.held_out)).reshape(-1)
        if held_base.shape[0] != split.held_out.shape[0]:
            raise TrainingInputError(
                f"{split.held_out.shape[0]} held-out samples but {held_base.shape[0]} "
                "baseline decisions",
                details={
                    "held_out": int(split.held_out.shape[0]),
                    "baseline": int(held_base.shape[0]),
                },
            )
    else:
        held_base = given[split.held_out]
    step(TRAINING)
    keys = None if groups is None else np.asarray(groups)[split.train]
    head = train_head(xs[split.train], ys[split.train], config, groups=keys)
    step(EXPORT)
    onnx = export_head(
        head,
        category=category,
        embedding_model=embedding_model,
        embedding_version=embedding_version,
    )
    exported = load_head(onnx)
    parity = check_parity(head, exported, xs)
    step(EVALUATION)
    report = evaluate(
        ys[split.held_out],
        exported.predict_proba(xs[split.held_out]),
        held_base,
        threshold=head.threshold,
        category=category,
        config=config,
        baseline_name=baseline_name,
        held_out_from=split.held_out_from,
    )
    return TrainingResult(
        head=head,
        onnx=onnx,
        metadata=exported.metadata,
        split=split,
        parity=parity,
        report=report,
    )
