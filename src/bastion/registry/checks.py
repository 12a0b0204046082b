"""The checks a candidate head passes before it becomes a tenant's champion.

A candidate is judged on *its own* frozen held-out samples (the ids its training run
kept out, recorded in its report as ``held_out_ids``), with the labels those samples
have now: samples deleted since (or without the embedding the heads read) are left out
and counted. On them the candidate and the champion each decide at their own threshold;
the F1 of each, and the difference with a paired bootstrap interval over the same
resamples, are compared (:func:`bastion.training.evaluate.evaluate`). With no champion
yet, the candidate is compared with the baseline its report recorded: what Bastion
decided on those samples before (its F1 and recall, taken as fixed).

The candidate *beats* the head it would replace when the whole interval of the F1
difference lies above zero (``rule: interval``, the default: the training report's own
test) or when the difference itself is above zero (``rule: estimate``). It is refused
when it does not, when the evidence is missing (no held-out set, one class only, no
baseline), or, for a category the tenant marks high-severity (or whose L1 it marks),
when it recalls less than the head it replaces.

Everything here blocks (the samples' database, onnxruntime, the bootstrap): callers run
it in a thread. scikit-learn is imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from bastion.registry.config import PromotionConfig, Rule
from bastion.registry.heads import LoadedHead
from bastion.samples.embedding import EmbeddingModel
from bastion.samples.service import SampleService

HELD_OUT_IDS = "held_out_ids"
"""The key of a version's report that lists its frozen held-out sample ids."""


class Reason(BaseModel):
    """Why the checks refuse a candidate."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description="`not_better`, `recall_loss`, `no_held_out_set`, `held_out_one_class`, "
        "`no_embeddings`, `no_baseline` or `unreadable_head`."
    )
    message: str = Field(description="The reason, with its figures, for people.")


class HeldOut(BaseModel):
    """The candidate's frozen held-out samples as they were evaluated."""

    model_config = ConfigDict(extra="forbid")

    frozen: int = Field(description="Sample ids the candidate's training run held out.")
    evaluated: int = Field(description="Of those, the samples both heads were scored on.")
    left_out: int = Field(
        description="Held-out samples deleted since, or without the embedding a head reads."
    )
    positive: int = Field(description="Evaluated samples that have the category now.")
    negative: int = Field(description="Evaluated samples that do not.")
    embedding_model: str | None = Field(
        description="The embedding (`<model>@<version>`) the candidate was scored on."
    )


class Figures(BaseModel):
    """One side's decisions on the held-out samples."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="`v<n>` for a head, `baseline` for the recorded baseline.")
    version: int | None = Field(description="The head's version (null: the baseline).")
    threshold: float | None = Field(description="The head's threshold (null: the baseline).")
    precision: float = Field(description="Of the samples decided positive, the share that are.")
    recall: float = Field(description="Of the positive samples, the share decided positive.")
    f1: float = Field(description="Harmonic mean of precision and recall.")
    f1_low: float | None = Field(description="Lower end of the F1's bootstrap interval.")
    f1_high: float | None = Field(description="Upper end of the F1's bootstrap interval.")
    recorded: bool = Field(
        False,
        description="True: figures recorded when the candidate was trained (the baseline), "
        "not computed now on the samples left.",
    )


class Difference(BaseModel):
    """Candidate F1 minus the other side's F1, with its bootstrap interval."""

    model_config = ConfigDict(extra="forbid")

    estimate: float = Field(description="The difference on the held-out samples.")
    low: float = Field(description="Lower end of its interval.")
    high: float = Field(description="Upper end of its interval.")
    confidence: float = Field(description="Level of the interval, e.g. 0.95.")
    resamples: int = Field(description="Bootstrap resamples it was computed from.")


class PromotionChecks(BaseModel):
    """What the checks found: the figures of both sides, and whether (and why not) the
    candidate may be promoted."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(description="The taxonomy label the heads decide.")
    candidate_version: int = Field(description="The version to be promoted.")
    against: Literal["champion", "baseline"] = Field(
        description="What it was compared with: the champion, or (no champion yet) the "
        "baseline recorded in its report."
    )
    champion_version: int | None = Field(description="The champion's version, if any.")
    rule: Rule = Field(description="What beating means (see the promotion settings).")
    held_out: HeldOut | None = Field(description="The samples evaluated on (null: none).")
    candidate: Figures | None = Field(description="The candidate's figures.")
    reference: Figures | None = Field(description="The champion's or the baseline's figures.")
    f1_difference: Difference | None = Field(description="Candidate F1 minus the other's.")
    beats: bool = Field(description="The candidate beats the other side by the rule.")
    high_severity: bool = Field(
        description="The tenant marks the category (or its L1) high-severity."
    )
    recall_loss: bool = Field(description="The candidate's recall is lower than the other side's.")
    passed: bool = Field(description="No reason to refuse the promotion.")
    reasons: list[Reason] = Field(description="Why it is refused (empty when it passed).")

    def summary(self) -> str:
        """The figures on one line, for messages and the command line."""
        parts: list[str] = []
        c, r, d = self.candidate, self.reference, self.f1_difference
        if c is not None:
            parts.append(f"{c.name} F1 {c.f1:.3f} recall {c.recall:.3f}")
        if r is not None:
            parts.append(f"{r.name} F1 {r.f1:.3f} recall {r.recall:.3f}")
        if d is not None:
            pct = round(d.confidence * 100)
            parts.append(
                f"difference {d.estimate:+.3f} ({pct}% interval {d.low:+.3f}…{d.high:+.3f})"
            )
        if self.held_out is not None:
            h = self.held_out
            parts.append(f"on {h.evaluated} of {h.frozen} held-out samples ({h.left_out} left out)")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The baseline a candidate's report recorded (what Bastion decided before)."""

    f1: float
    recall: float
    precision: float | None


@dataclass(frozen=True, slots=True)
class HeldOutData:
    """The held-out samples found, and each head's vectors of them (same rows)."""

    ids: list[str]
    y: npt.NDArray[np.int64]
    vectors: dict[EmbeddingModel, npt.NDArray[np.float32]]
    left_out: int


def baseline_of(metrics: Mapping[str, float], report: Mapping[str, Any] | None) -> Baseline | None:
    """The baseline's figures: the version's run metrics (``baseline_f1``,
    ``baseline_recall``), else the report's baseline scores (``baseline``, or the
    evaluation's ``evaluation.baseline``); None when none has them."""
    if "baseline_f1" in metrics and "baseline_recall" in metrics:
        return Baseline(
            float(metrics["baseline_f1"]),
            float(metrics["baseline_recall"]),
            float(metrics["baseline_precision"]) if "baseline_precision" in metrics else None,
        )
    evaluation = (report or {}).get("evaluation")
    for scores in (
        (report or {}).get("baseline"),
        evaluation.get("baseline") if isinstance(evaluation, Mapping) else None,
    ):
        if not isinstance(scores, Mapping):
            continue
        f1, recall = scores.get("f1"), scores.get("recall")
        precision = scores.get("precision")
        if _number(f1) and _number(recall):
            return Baseline(
                float(f1), float(recall), float(precision) if _number(precision) else None
            )
    return None


def held_out_ids(report: Mapping[str, Any] | None) -> list[str] | None:
    """The frozen held-out sample ids of a version's report (None: it has none)."""
    ids = (report or {}).get(HELD_OUT_IDS)
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return None
    return list(dict.fromkeys(ids))


def embedding_of(
    head: LoadedHead, available: Sequence[tuple[EmbeddingModel, int]]
) -> EmbeddingModel | None:
    """The embedding ``head`` reads among those the tenant's samples carry: the one its
    metadata names, or (name or version unknown) the most common that fits."""
    fitting = [
        (n, m)
        for m, n in available
        if head.embedding_model in (None, m.name) and head.embedding_version in (None, m.version)
    ]
    if not fitting:
        return None
    return max(fitting, key=lambda pair: pair[0])[1]


def load_held_out(
    samples: SampleService,
    tenant: str,
    category: str,
    ids: Sequence[str],
    models: Sequence[EmbeddingModel],
) -> HeldOutData:
    """The samples of ``ids`` that still exist and carry a vector of every model in
    ``models``, with their labels for ``category`` now (oldest first)."""
    wanted = set(ids)
    found: dict[EmbeddingModel, dict[str, npt.NDArray[np.float32]]] = {}
    labels: dict[str, int] = {}
    for model in dict.fromkeys(models):
        data = samples.dataset(tenant, category, model)
        rows = {sid: i for i, sid in enumerate(data.ids) if sid in wanted}
        found[model] = {sid: data.X[i] for sid, i in rows.items()}
        labels.update({sid: int(data.y[i]) for sid, i in rows.items()})
    keep = [sid for sid in ids if all(sid in found[m] for m in found)] if found else []
    dims = {m: (next(iter(v.values())).shape[0] if v else 0) for m, v in found.items()}
    return HeldOutData(
        ids=keep,
        y=np.array([labels[sid] for sid in keep], dtype=np.int64),
        vectors={
            m: (
                np.stack([found[m][sid] for sid in keep])
                if keep
                else np.zeros((0, dims[m]), dtype=np.float32)
            )
            for m in found
        },
        left_out=len(ids) - len(keep),
    )


def compare(
    *,
    category: str,
    candidate: LoadedHead,
    champion: LoadedHead | None,
    baseline: Baseline | None,
    held_out: HeldOutData,
    frozen: int,
    candidate_model: EmbeddingModel,
    champion_model: EmbeddingModel | None,
    high_severity: bool,
    config: PromotionConfig,
) -> PromotionChecks:
    """The candidate against the champion (or, with no champion, the baseline) on the
    held-out samples found; see the module notes for when it passes."""
    from bastion.training.config import TrainingConfig
    from bastion.training.evaluate import evaluate

    y = held_out.y
    positives = int(y.sum())
    info = HeldOut(
        frozen=frozen,
        evaluated=int(y.shape[0]),
        left_out=held_out.left_out,
        positive=positives,
        negative=int(y.shape[0]) - positives,
        embedding_model=str(candidate_model),
    )
    checks = blank(
        category,
        candidate.ref.version,
        champion.ref.version if champion is not None else None,
        high_severity=high_severity,
        config=config,
    ).model_copy(update={"held_out": info})
    if info.positive == 0 or info.negative == 0:
        return refuse(
            checks,
            "held_out_one_class",
            f"the {info.evaluated} held-out samples left ({info.left_out} of {frozen} left "
            f"out) have {info.positive} positive and {info.negative} negative: both classes "
            "are needed to compare heads",
        )
    if champion is None and baseline is None:
        return refuse(
            checks,
            "no_baseline",
            "there is no champion, and the candidate's report records no baseline to beat",
        )
    settings = TrainingConfig(
        bootstrap_resamples=config.bootstrap_resamples,
        confidence=config.confidence,
        seed=config.seed,
    )
    probabilities = candidate.predict(held_out.vectors[candidate_model])
    if champion is not None:
        assert champion_model is not None
        other = champion.predict(held_out.vectors[champion_model]) >= champion.threshold
    else:
        other = np.zeros(y.shape[0], dtype=bool)
    report = evaluate(
        y,
        probabilities,
        other.astype(np.int64),
        threshold=candidate.threshold,
        category=category,
        config=settings,
        baseline_name=f"champion v{champion.ref.version}" if champion else "none",
    )
    cand = Figures(
        name=candidate.ref.label_version,
        version=candidate.ref.version,
        threshold=candidate.threshold,
        precision=report.head.precision,
        recall=report.head.recall,
        f1=report.head.f1,
        f1_low=report.head_f1.low,
        f1_high=report.head_f1.high,
    )
    if champion is not None:
        ref = Figures(
            name=champion.ref.label_version,
            version=champion.ref.version,
            threshold=champion.threshold,
            precision=report.baseline.precision,
            recall=report.baseline.recall,
            f1=report.baseline.f1,
            f1_low=report.baseline_f1.low,
            f1_high=report.baseline_f1.high,
        )
        d = report.f1_difference
        diff = Difference(
            estimate=d.estimate,
            low=d.low,
            high=d.high,
            confidence=d.confidence,
            resamples=d.resamples,
        )
    else:
        assert baseline is not None
        ref = Figures(
            name="baseline",
            version=None,
            threshold=None,
            precision=baseline.precision if baseline.precision is not None else 0.0,
            recall=baseline.recall,
            f1=baseline.f1,
            f1_low=None,
            f1_high=None,
            recorded=True,
        )
        diff = Difference(
            estimate=cand.f1 - baseline.f1,
            low=report.head_f1.low - baseline.f1,
            high=report.head_f1.high - baseline.f1,
            confidence=report.head_f1.confidence,
            resamples=report.head_f1.resamples,
        )
    beats = diff.low > 0 if config.rule == "interval" else diff.estimate > 0
    recall_loss = cand.recall < ref.recall
    checks = checks.model_copy(
        update={
            "candidate": cand,
            "reference": ref,
            "f1_difference": diff,
            "beats": beats,
            "recall_loss": recall_loss,
        }
    )
    if not beats:
        rule = (
            "the whole interval of the F1 difference must lie above zero"
            if config.rule == "interval"
            else "the F1 difference must be above zero"
        )
        checks = refuse(
            checks,
            "not_better",
            f"{cand.name} does not beat {ref.name} on its held-out samples ({rule}): "
            f"{checks.summary()}",
        )
    if high_severity and recall_loss:
        checks = refuse(
            checks,
            "recall_loss",
            f"{category} is high-severity and {cand.name} recalls less than {ref.name}: "
            f"{cand.recall:.3f} < {ref.recall:.3f}",
        )
    if not checks.reasons:
        checks = checks.model_copy(update={"passed": True})
    return checks


def blank(
    category: str,
    candidate_version: int,
    champion_version: int | None,
    *,
    high_severity: bool,
    config: PromotionConfig,
) -> PromotionChecks:
    """Checks with no figures yet (what is recorded when the comparison cannot run)."""
    return PromotionChecks(
        category=category,
        candidate_version=candidate_version,
        against="champion" if champion_version is not None else "baseline",
        champion_version=champion_version,
        rule=config.rule,
        held_out=None,
        candidate=None,
        reference=None,
        f1_difference=None,
        beats=False,
        high_severity=high_severity,
        recall_loss=False,
        passed=False,
        reasons=[],
    )


def refuse(checks: PromotionChecks, code: str, message: str) -> PromotionChecks:
    """``checks`` with one more reason to refuse."""
    return checks.model_copy(
        update={"passed": False, "reasons": [*checks.reasons, Reason(code=code, message=message)]}
    )


def _number(value: object) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))
    )
