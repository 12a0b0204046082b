"""How a head is trained and evaluated: one validated settings object per training run.

The run stores it beside the model (every field is a parameter of the run), so a head
can always be traced back to the exact settings that made it. :class:`TrainingJobsConfig`
(``Settings.training``) says how runs are run as jobs and holds the default run settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CSelection",
    "Calibration",
    "ThresholdObjective",
    "TrainingConfig",
    "TrainingJobsConfig",
]

Calibration = Literal["sigmoid", "isotonic"]
CSelection = Literal["average_precision", "log_loss"]
ThresholdObjective = Literal["max_f1", "target_precision"]


class TrainingConfig(BaseModel):
    """Settings of one training run: cross-validation, calibration, threshold, minimum
    counts, the time split and the evaluation's bootstrap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cv_folds: int = Field(
        5,
        ge=2,
        le=20,
        description="Folds of the stratified cross-validation used to pick C, to calibrate "
        "and to make the out-of-fold predictions the threshold is chosen on.",
    )
    c_grid: tuple[float, ...] = Field(
        (0.001, 0.01, 0.1, 1.0),
        min_length=1,
        max_length=12,
        description="Inverse regularisation strengths of the logistic regression tried; "
        "the best by cross-validation is kept.",
    )
    c_selection: CSelection = Field(
        "average_precision",
        description="What picks C: the mean cross-validated average precision (higher is "
        "better) or log-loss of the uncalibrated model (lower is better).",
    )
    class_weight: Literal["balanced"] | None = Field(
        "balanced",
        description="`balanced` weighs each class by the inverse of its frequency, so a rare "
        "positive class counts as much as the common one; null weighs samples equally.",
    )
    max_iter: int = Field(
        2000, ge=50, le=100_000, description="Iterations the logistic regression solver may use."
    )
    calibration: Calibration = Field(
        "sigmoid",
        description="How scores become probabilities: `sigmoid` (Platt scaling, right for "
        "small sets) or `isotonic` (needs `isotonic_min_samples`).",
    )
    isotonic_min_samples: int = Field(
        1000,
        ge=10,
        description="Training samples isotonic calibration needs; below this it overfits, "
        "and a run asking for it is refused.",
    )
    threshold_objective: ThresholdObjective = Field(
        "max_f1",
        description="How the decision threshold is chosen on the out-of-fold probabilities: "
        "the highest F1, or the highest recall at `target_precision` or above.",
    )
    target_precision: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Precision the threshold must reach (with `target_precision`); when no "
        "threshold reaches it, the most precise one is used and the head says so.",
    )
    min_positives: int = Field(
        10,
        ge=2,
        description="Positive samples the training part must have (at least twice cv_folds).",
    )
    min_negatives: int = Field(
        10,
        ge=2,
        description="Negative samples the training part must have (at least twice cv_folds).",
    )
    min_held_out_per_class: int = Field(
        2,
        ge=1,
        description="Samples of each class the held-out part must have to be evaluated on.",
    )
    held_out_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=0.9,
        description="Share of the samples, the newest by the time they were taken, kept "
        "out of training and used only for the evaluation.",
    )
    bootstrap_resamples: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="Paired bootstrap resamples of the held-out set for confidence intervals.",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Level of the bootstrap confidence intervals."
    )
    pr_curve_points: int = Field(
        101,
        ge=5,
        le=2000,
        description="Most points kept of the held-out precision-recall curve in the report.",
    )
    seed: int = Field(
        0,
        ge=0,
        description="Seed of the folds, the solver and the bootstrap: same seed, "
        "same samples, same head.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.threshold_objective == "target_precision" and self.target_precision is None:
            raise ValueError("threshold_objective 'target_precision' needs target_precision")
        if any(c <= 0 for c in self.c_grid):
            raise ValueError("every C in c_grid must be positive")
        least = 2 * self.cv_folds
        if self.min_positives < least or self.min_negatives < least:
            raise ValueError(
                f"min_positives and min_negatives must be at least 2 × cv_folds ({least}): "
                "each fold and each calibration fold needs samples of both classes"
            )
        return self


class TrainingJobsConfig(BaseModel):
    """How training runs are run as jobs: in a child process of a jobs-role worker, under
    a lease kept alive by a heartbeat, with a time limit, retried when a worker dies."""

    model_config = ConfigDict(extra="forbid")

    max_seconds: float = Field(
        3600.0,
        gt=0,
        le=7 * 86400,
        description="Longest a run may take in its child process; a run past it is stopped "
        "and failed (`training_timed_out`).",
    )
    lease_s: float = Field(
        60.0,
        ge=1.0,
        le=3600,
        description="How long a claimed run is its worker's without a heartbeat; a run whose "
        "heartbeat is older is taken again by another worker (its worker died).",
    )
    poll_s: float = Field(
        2.0, gt=0, le=3600, description="Seconds between two looks for queued runs."
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Times a run may be claimed; a run whose workers kept dying is failed "
        "(`attempts_exhausted`) rather than taken a further time.",
    )
    defaults: TrainingConfig = Field(
        default_factory=TrainingConfig,
        description="The training settings of every run; a run's own `config` overrides "
        "some of them.",
    )
    max_active_per_tenant: int = Field(
        4,
        ge=1,
        le=1000,
        description="Runs a tenant may have queued or running at once (one per category "
        "in any case); more are refused (`too_many_training_runs`).",
    )

    @property
    def heartbeat_s(self) -> float:
        """How often a running run's heartbeat is written: a third of the lease."""
        return self.lease_s / 3
