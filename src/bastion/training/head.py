"""Train a head on frozen embeddings: a calibrated logistic regression and its threshold.

The head is a ``StandardScaler`` followed by a ``CalibratedClassifierCV`` around a
class-weighted ``LogisticRegression``. The scaler sits outside the calibrator on
purpose: skl2onnx exports a calibrator whose estimator is a pipeline with wrong
probabilities (the sigmoid is applied to probabilities instead of raw scores), while a
scaler followed by a calibrated bare classifier exports exactly (see
:mod:`bastion.training.onnx_export`).

Everything the head is judged on before the held-out evaluation comes from
cross-validation on the training part alone:

1. C is picked by stratified k-fold cross-validation of the scaled logistic regression
   (mean average precision, or log-loss); given groups (e.g. the picture each sample
   was made from), the folds keep each group whole;
2. out-of-fold *calibrated* probabilities (each fold's scaler, classifier and
   calibrator, fitted as the final ones are, never saw the sample it scores) give the
   out-of-fold metrics and the decision threshold (highest F1, or highest recall at a
   target precision);
3. the final scaler and calibrated classifier are fitted on the whole training part.

The threshold is placed halfway between the chosen out-of-fold score and the next lower
one, so that float32 inference (onnxruntime) and float64 (scikit-learn) decide alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from bastion.training.config import TrainingConfig
from bastion.training.data import Matrix, check_samples, require_counts, training_set_hash
from bastion.training.errors import TooFewSamples, TrainingInputError

__all__ = [
    "HeadSummary",
    "OutOfFoldMetrics",
    "ThresholdChoice",
    "TrainedHead",
    "choose_threshold",
    "train_head",
]

Probabilities = npt.NDArray[np.float64]


class ThresholdChoice(BaseModel):
    """The decision threshold and what it gives on the scores it was chosen on."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(description="A sample is positive when its probability is ≥ this.")
    precision: float = Field(description="Precision at the threshold.")
    recall: float = Field(description="Recall at the threshold.")
    f1: float = Field(description="F1 at the threshold.")
    target_met: bool = Field(
        description="The objective was reached (always true for `max_f1`; for "
        "`target_precision`, whether any threshold reached the target)."
    )


class OutOfFoldMetrics(BaseModel):
    """How the head did on its training part, each sample scored by a model (calibrator
    included) fitted without it."""

    model_config = ConfigDict(extra="forbid")

    average_precision: float = Field(description="Area under the out-of-fold PR curve.")
    roc_auc: float = Field(description="Area under the out-of-fold ROC curve.")
    log_loss: float = Field(description="Log-loss of the calibrated out-of-fold probabilities.")
    brier: float = Field(description="Brier score of the calibrated out-of-fold probabilities.")
    at_threshold: ThresholdChoice = Field(description="The threshold and its precision/recall.")
    c_scores: dict[str, float] = Field(
        description="Mean cross-validated score of each C tried (average precision: higher "
        "is better; log-loss: lower is better), keyed by C."
    )


class HeadSummary(BaseModel):
    """What a trained head is, as stored beside its model (parameters and metrics)."""

    model_config = ConfigDict(extra="forbid")

    c: float = Field(description="Inverse regularisation strength chosen.")
    calibration: str = Field(description="Calibration method: sigmoid or isotonic.")
    threshold: float = Field(description="Decision threshold on the positive probability.")
    feature_dim: int = Field(description="Length of the embeddings the head reads.")
    counts: dict[str, int] = Field(description="Training samples per class.")
    training_set_hash: str = Field(description="sha256 of the training embeddings and labels.")
    train_seconds: float = Field(description="Wall time of the whole training, in seconds.")
    groups: int | None = Field(
        None, description="Groups the folds kept whole (null: folds of single samples)."
    )
    out_of_fold: OutOfFoldMetrics = Field(description="Cross-validated metrics.")
    config: TrainingConfig = Field(description="The settings the head was trained with.")


@dataclass(frozen=True)
class TrainedHead:
    """A fitted head: the scaler, the calibrated classifier behind it, and how they were
    chosen. ``predict_proba`` is the reference the ONNX export is checked against."""

    scaler: StandardScaler
    calibrated: CalibratedClassifierCV
    summary: HeadSummary
    oof_probabilities: Probabilities
    """Out-of-fold calibrated probability of each training sample, in input order."""

    @property
    def threshold(self) -> float:
        return self.summary.threshold

    @property
    def feature_dim(self) -> int:
        return self.summary.feature_dim

    def predict_proba(self, x: npt.ArrayLike) -> Probabilities:
        """Probability of the positive class of each row of ``x`` (scikit-learn)."""
        xs = np.asarray(x, dtype=np.float32)
        proba = self.calibrated.predict_proba(self.scaler.transform(xs))
        out: Probabilities = np.asarray(proba[:, 1], dtype=np.float64)
        return out

    def decide(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """1 where the positive probability reaches the threshold, else 0."""
        return (self.predict_proba(x) >= self.threshold).astype(np.int64)


def _classifier(c: float, config: TrainingConfig) -> LogisticRegression:
    return LogisticRegression(
        C=c, class_weight=config.class_weight, max_iter=config.max_iter, random_state=config.seed
    )


Splits = list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]


def _splits(
    y: npt.NDArray[np.int64], groups: npt.NDArray[Any] | None, config: TrainingConfig
) -> Splits:
    """Stratified folds of ``y``; with ``groups``, folds that keep each group whole
    (near duplicates, variants of one picture) so no fold is scored on a copy of what it
    was fitted on. Refused when a fold's training part would lack a class."""
    index = np.zeros((y.shape[0], 1))
    if groups is None:
        folds = StratifiedKFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
        splits = [(tr, va) for tr, va in folds.split(index, y)]
    else:
        distinct = int(np.unique(groups).shape[0])
        if distinct < config.cv_folds:
            raise TooFewSamples(
                f"{distinct} groups of samples, cross-validation needs {config.cv_folds}",
                details={"part": "train", "groups": distinct, "need_groups": config.cv_folds},
            )
        grouped = StratifiedGroupKFold(
            n_splits=config.cv_folds, shuffle=True, random_state=config.seed
        )
        splits = [(tr, va) for tr, va in grouped.split(index, y, groups)]
    for train, _ in splits:
        positives = int(y[train].sum())
        if min(positives, train.shape[0] - positives) < config.cv_folds:
            raise TooFewSamples(
                "a cross-validation fold would train on too few samples of a class",
                details={
                    "part": "train",
                    "fold_positive": positives,
                    "fold_negative": int(train.shape[0]) - positives,
                    "need_per_class": config.cv_folds,
                },
            )
    return splits


def _calibrated(
    c: float,
    x: Matrix,
    y: npt.NDArray[np.int64],
    groups: npt.NDArray[Any] | None,
    config: TrainingConfig,
) -> CalibratedClassifierCV:
    """The calibrated classifier fitted on (already scaled) ``x``: one logistic
    regression and one calibrator per fold, averaged."""
    model = CalibratedClassifierCV(
        _classifier(c, config), method=config.calibration, cv=_splits(y, groups, config)
    )
    return model.fit(x, y)


def _choose_c(
    x: Matrix, y: npt.NDArray[np.int64], splits: Splits, config: TrainingConfig
) -> tuple[float, dict[str, float]]:
    """The C of the grid with the best mean cross-validated score (ties: the smaller C,
    the stronger regularisation)."""
    scoring = "average_precision" if config.c_selection == "average_precision" else "neg_log_loss"
    scores: dict[str, float] = {}
    best_c, best = 0.0, -np.inf
    for c in sorted(set(config.c_grid)):
        model = Pipeline([("scale", StandardScaler()), ("classify", _classifier(c, config))])
        mean = float(np.mean(cross_val_score(model, x, y, cv=splits, scoring=scoring)))
        scores[repr(c)] = mean if scoring == "average_precision" else -mean
        if mean > best:
            best_c, best = c, mean
    return best_c, scores


def _out_of_fold(
    c: float,
    x: Matrix,
    y: npt.NDArray[np.int64],
    groups: npt.NDArray[Any] | None,
    splits: Splits,
    config: TrainingConfig,
) -> Probabilities:
    """Each sample's calibrated probability from a head (scaler, classifier and
    calibrator) fitted, the same way as the final one, on the other folds."""
    oof = np.zeros(y.shape[0], dtype=np.float64)
    for train, held in splits:
        scaler = StandardScaler().fit(x[train])
        inner = None if groups is None else groups[train]
        model = _calibrated(c, scaler.transform(x[train]), y[train], inner, config)
        oof[held] = model.predict_proba(scaler.transform(x[held]))[:, 1]
    return oof


def choose_threshold(
    y: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    config: TrainingConfig,
) -> ThresholdChoice:
    """The threshold the configuration's objective picks on these scores.

    ``max_f1``: the highest F1 (ties: the higher threshold). ``target_precision``: the
    highest recall with precision at or above the target (ties: the higher threshold);
    when no threshold reaches it, the highest precision, and ``target_met`` is false.
    The threshold returned lies halfway between the chosen score and the next lower one.
    """
    ys = np.asarray(y)
    ps = np.asarray(probabilities, dtype=np.float64)
    precision, recall, scores = precision_recall_curve(ys, ps)
    # precision/recall have one more entry (recall 0) than scores; drop it
    precision, recall = precision[: len(scores)], recall[: len(scores)]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    order = np.arange(len(scores))
    met = True
    if config.threshold_objective == "max_f1":
        key = np.lexsort((order, f1))  # by F1, then by threshold (scores ascend)
        pick = int(key[-1])
    else:
        target = float(config.target_precision or 0.0)
        ok = precision >= target
        if ok.any():
            candidates = order[ok]
            pick = int(candidates[np.lexsort((candidates, recall[ok]))[-1]])
        else:
            met = False
            pick = int(np.lexsort((order, recall, precision))[-1])
    below = ps[ps < scores[pick]]
    lower = float(below.max()) if below.size else 0.0
    threshold = (float(scores[pick]) + lower) / 2.0
    return ThresholdChoice(
        threshold=threshold,
        precision=float(precision[pick]),
        recall=float(recall[pick]),
        f1=float(f1[pick]),
        target_met=met,
    )


def train_head(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    config: TrainingConfig | None = None,
    *,
    groups: npt.ArrayLike | None = None,
) -> TrainedHead:
    """Fit a head on embeddings ``x`` (``n × d``) and 0/1 labels ``y`` (the training part;
    hold the evaluation samples out before calling this).

    ``groups`` (one key per sample, e.g. the picture a sample was made from, or a
    near-duplicate cluster) keeps each group within one fold: without it, copies of a
    picture on both sides of a fold make the out-of-fold scores, and so the threshold,
    look better than they will be on new pictures.

    Raises :class:`~bastion.training.errors.TooFewSamples` when a class has fewer samples
    than the configuration asks for, or isotonic calibration is asked for on too few.
    """
    config = config or TrainingConfig()
    started = time.perf_counter()
    xs, ys = check_samples(x, y)
    keys = None if groups is None else np.asarray(groups)
    if keys is not None and keys.shape != ys.shape:
        raise TrainingInputError(
            f"{ys.shape[0]} samples but groups of shape {list(keys.shape)}",
            details={"samples": int(ys.shape[0]), "groups_shape": list(keys.shape)},
        )
    counts = require_counts(
        ys, positives=config.min_positives, negatives=config.min_negatives, part="train"
    )
    if config.calibration == "isotonic" and ys.shape[0] < config.isotonic_min_samples:
        raise TooFewSamples(
            f"isotonic calibration needs {config.isotonic_min_samples} training samples, "
            f"there are {ys.shape[0]}; use sigmoid calibration",
            details={
                "part": "train",
                "calibration": "isotonic",
                "samples": int(ys.shape[0]),
                "need_samples": config.isotonic_min_samples,
                **counts,
            },
        )
    splits = _splits(ys, keys, config)
    c, c_scores = _choose_c(xs, ys, splits, config)
    oof = _out_of_fold(c, xs, ys, keys, splits, config)
    choice = choose_threshold(ys, oof, config)
    scaler = StandardScaler().fit(xs)
    calibrated = _calibrated(c, scaler.transform(xs), ys, keys, config)
    metrics = OutOfFoldMetrics(
        average_precision=float(average_precision_score(ys, oof)),
        roc_auc=float(roc_auc_score(ys, oof)),
        log_loss=float(log_loss(ys, oof, labels=[0, 1])),
        brier=float(brier_score_loss(ys, oof)),
        at_threshold=choice,
        c_scores=c_scores,
    )
    summary = HeadSummary(
        c=c,
        calibration=config.calibration,
        threshold=choice.threshold,
        feature_dim=int(xs.shape[1]),
        counts=counts,
        training_set_hash=training_set_hash(xs, ys),
        train_seconds=round(time.perf_counter() - started, 4),
        groups=None if keys is None else int(np.unique(keys).shape[0]),
        out_of_fold=metrics,
        config=config,
    )
    return TrainedHead(scaler=scaler, calibrated=calibrated, summary=summary, oof_probabilities=oof)
