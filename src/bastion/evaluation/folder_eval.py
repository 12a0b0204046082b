"""What Bastion decided against what a labelled folder says: the numbers of ``bastion eval``.

Pure computation: no files, no models. Each image that could be scored comes in as a
:class:`ScoredImage` (the labels of its labels file, the ground truth, and what the
policy's :class:`~bastion.results.ModerationResult` said), each file that could not as
a :class:`FailedFile` with the code of what went wrong; :func:`build_report` turns them
into a :class:`FolderReport`.

For every category found in the labels files or in the results (an L1 category covers
its L2 labels, as in :mod:`bastion.policy.taxonomy`: an image labelled ``Firearms`` is
a ``Weapons`` image too), an image counts as:

- *positive* when its labels file has the category;
- *decided* when a rule of the policy acted on a label of the category (one of the
  result's ``reasons``, review or block): what Bastion decides;
- *labelled* when the result carries a label of the category at any confidence the
  analyzers report, whether or not a rule acts on it: what the models see, for telling
  a threshold to lower from a category the models miss.

At the decision level an image with any label should be reviewed or blocked, and one
with none should be allowed. Precision, recall and F1 come with percentile intervals of
a paired bootstrap over the images (the same resamples score every category and the
decision); a resample on which a value is undefined (no image decided positive for
precision, no positive image for recall) is left out of that value's interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from bastion.evaluation.config import EvalConfig
from bastion.policy import taxonomy
from bastion.policy.model import Policy
from bastion.results import Decision, ModerationResult
from bastion.training.evaluate import Confusion, Interval, scores

__all__ = [
    "DECISIONS",
    "CategoryReport",
    "DecisionReport",
    "FailedFile",
    "FolderReport",
    "ImageReport",
    "Measure",
    "ScoredImage",
    "bootstrap_measures",
    "build_report",
    "categories_of",
]

DECISIONS: tuple[Decision, ...] = ("allow", "review", "block")
_CELLS = 4_000_000  # resamples × images weighed at once (bounds the bootstrap's memory)

Matrix = npt.NDArray[np.bool_]


def categories_of(names: Iterable[tuple[str, str | None]]) -> frozenset[str]:
    """The categories of labels given as (name, parent): each name and its L1 parent."""
    out: set[str] = set()
    for name, parent in names:
        out.add(name)
        if parent is not None:
            out.add(parent)
    return frozenset(out)


def _parent(name: str) -> str | None:
    category = taxonomy.CATEGORIES.get(name)
    return category.parent if category is not None else None


@dataclass(frozen=True, slots=True)
class ScoredImage:
    """One image of the folder: its labels file's labels and what the result said."""

    file: str
    """Its path inside the folder."""
    truth: tuple[str, ...]
    """The labels of its labels file (taxonomy names, L1 or L2); empty: a clean image."""
    decision: Decision
    decided: frozenset[str]
    """Categories a policy rule acted on (closed over L1 parents)."""
    labelled: frozenset[str]
    """Categories of every label of the result (closed over L1 parents)."""
    top_labels: dict[str, float]
    """Each label name of the result with its highest confidence."""
    analyzer_errors: tuple[str, ...] = ()
    """Analyzers that failed on the image (its decision is then never allow)."""

    @classmethod
    def from_result(cls, file: str, truth: Sequence[str], result: ModerationResult) -> ScoredImage:
        """The image ``file`` labelled ``truth`` and the policy's ``result`` for it."""
        parents = {lab.name: lab.parent for lab in result.labels}
        top: dict[str, float] = {}
        for lab in result.labels:
            top[lab.name] = max(top.get(lab.name, 0.0), lab.confidence)
        decided = categories_of(
            (r.label, parents.get(r.label, _parent(r.label)))
            for r in result.reasons
            if r.action != "allow"
        )
        errors = tuple(sorted({e.get("analyzer", "?") for e in result.errors}))
        return cls(
            file=file,
            truth=tuple(truth),
            decision=result.decision,
            decided=decided,
            labelled=categories_of((lab.name, lab.parent) for lab in result.labels),
            top_labels=dict(sorted(top.items(), key=lambda kv: -kv[1])),
            analyzer_errors=errors,
        )

    @property
    def truth_categories(self) -> frozenset[str]:
        """The categories of its labels file, closed over L1 parents."""
        return categories_of((name, _parent(name)) for name in self.truth)


@dataclass(frozen=True, slots=True)
class FailedFile:
    """A file of the folder that was not scored, and why (a stable code)."""

    file: str
    code: str
    message: str


class Measure(BaseModel):
    """Precision, recall and F1 of a yes/no decision against the truth, each with its
    bootstrap interval, and the counts they come from (0 where undefined)."""

    model_config = ConfigDict(extra="forbid")

    precision: Interval = Field(description="Of the images decided positive, the share that are.")
    recall: Interval = Field(description="Of the positive images, the share decided positive.")
    f1: Interval = Field(description="Harmonic mean of precision and recall.")
    confusion: Confusion = Field(description="The counts these come from.")


class CategoryReport(BaseModel):
    """One category: how often the folder has it, and how Bastion did on it."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(description="Taxonomy name (an L1 category covers its L2 labels).")
    level: int | None = Field(description="Taxonomy level: 1 or 2 (null: not a taxonomy name).")
    parent: str | None = Field(description="The L1 category above an L2 label.")
    support: int = Field(description="Images whose labels file has the category.")
    covered: bool = Field(
        description="A rule of the policy covers the category (or one of its L2 labels); "
        "when false nothing of it is ever decided, whatever the models see."
    )
    decided: Measure = Field(
        description="Positive when a policy rule acted (review or block) on a label of the "
        "category: what Bastion decides."
    )
    labelled: Measure = Field(
        description="Positive when the result has a label of the category at any "
        "confidence: what the models see, acted on or not."
    )


class DecisionReport(BaseModel):
    """The decision level: labelled images should be reviewed or blocked, clean ones
    allowed."""

    model_config = ConfigDict(extra="forbid")

    labelled: int = Field(description="Images whose labels file has at least one label.")
    clean: int = Field(description="Images whose labels file has no label.")
    counts: dict[str, dict[str, int]] = Field(
        description="Decisions (allow, review, block) of the labelled and of the clean images."
    )
    flagged: Measure = Field(description="Positive: a labelled image; decided positive: not allow.")


class ImageReport(BaseModel):
    """One scored image in the report."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="Path inside the folder.")
    labels: list[str] = Field(description="The labels of its labels file.")
    decision: Decision = Field(description="The policy's decision.")
    decided: list[str] = Field(description="Categories a policy rule acted on.")
    found: dict[str, float] = Field(description="The result's labels with their top confidence.")
    analyzer_errors: list[str] = Field(description="Analyzers that failed on the image.")


class FailedItem(BaseModel):
    """One file that was not scored."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="Path inside the folder.")
    code: str = Field(description="Stable code of what went wrong.")
    message: str = Field(description="What went wrong, for people.")


class FolderReport(BaseModel):
    """Everything ``bastion eval`` measured on a folder (its ``--json``)."""

    model_config = ConfigDict(extra="forbid")

    folder: str = Field(description="The folder measured.")
    policy: str = Field(description="Name of the policy applied.")
    policy_version: str = Field(description="Version (content hash) of the policy applied.")
    files: int = Field(description="Media files and orphan labels files found.")
    images: int = Field(description="Images scored.")
    failed: int = Field(description="Files not scored (each listed in `failures`).")
    failures_by_code: dict[str, int] = Field(description="Files not scored, by code.")
    analyzer_errors: int = Field(
        description="Scored images some analyzer failed on (never allowed: review)."
    )
    seconds: float = Field(description="Wall time of the whole measurement.")
    decision: DecisionReport = Field(description="The decision level.")
    categories: list[CategoryReport] = Field(
        description="Every category found in the labels files or the results, in taxonomy "
        "order (L1 then its L2 labels)."
    )
    images_detail: list[ImageReport] = Field(description="Every scored image, by path.")
    failures: list[FailedItem] = Field(description="Every file not scored, by path.")
    config: EvalConfig = Field(description="How the intervals were computed.")


def _interval(estimate: float, samples: npt.NDArray[np.float64], config: EvalConfig) -> Interval:
    defined = samples[~np.isnan(samples)]
    if defined.size == 0:
        low = high = estimate
    else:
        alpha = (1.0 - config.confidence) / 2.0
        low, high = (float(v) for v in np.quantile(defined, [alpha, 1.0 - alpha]))
    return Interval(
        estimate=estimate,
        low=low,
        high=high,
        confidence=config.confidence,
        resamples=int(defined.size),
    )


def _ratio(num: npt.NDArray[np.float64], den: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = np.divide(
        num, den, out=np.full(num.shape, np.nan), where=den > 0
    )
    return out


def bootstrap_measures(
    truth: npt.ArrayLike, predicted: npt.ArrayLike, config: EvalConfig | None = None
) -> list[Measure]:
    """A :class:`Measure` per column of ``truth`` and ``predicted`` (``n × k`` yes/no,
    one row per image), with intervals from one paired bootstrap over the rows."""
    config = config or EvalConfig()
    t = np.asarray(truth, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    if t.ndim == 1:
        t, p = t[:, None], p[:, None]
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"truth {t.shape} and predicted {p.shape} must both be n × k")
    n, k = t.shape
    if n == 0:
        return [_nothing(config) for _ in range(k)]
    cells = np.stack([t & p, ~t & p, t & ~p]).astype(np.float64)  # tp, fp, fn per image
    rng = np.random.default_rng(config.seed)
    boot = np.empty((3, config.resamples, k), dtype=np.float64)
    chunk = max(1, min(config.resamples, _CELLS // n))
    for start in range(0, config.resamples, chunk):
        size = min(chunk, config.resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        flat = (idx + np.arange(size)[:, None] * n).ravel()
        weights = np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)
        for c in range(3):
            boot[c, start : start + size] = weights @ cells[c]
    tp, fp, fn = boot
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    out = []
    for j in range(k):
        s = scores(t[:, j], p[:, j])
        out.append(
            Measure(
                precision=_interval(s.precision, precision[:, j], config),
                recall=_interval(s.recall, recall[:, j], config),
                f1=_interval(s.f1, f1[:, j], config),
                confusion=s.confusion,
            )
        )
    return out


def _nothing(config: EvalConfig) -> Measure:
    """The measure of no images: zeros, with intervals of no resamples."""
    empty = np.empty(0, dtype=np.float64)
    zero = _interval(0.0, empty, config)
    return Measure(
        precision=zero, recall=zero, f1=zero, confusion=Confusion(tp=0, fp=0, fn=0, tn=0)
    )


def _covered(policy: Policy, category: str) -> bool:
    names = [(category, _parent(category))]
    names += [(child, category) for child in taxonomy.children(category)]
    return any(rule.covers(name, parent) for rule in policy.rules for name, parent in names)


def _order(categories: Iterable[str]) -> list[str]:
    """Taxonomy order (each L1, then its L2 labels); names outside it last, sorted."""
    wanted = set(categories)
    known = [c for l1 in taxonomy.L1 for c in (l1, *taxonomy.children(l1)) if c in wanted]
    return known + sorted(wanted - set(known))


def build_report(
    scored: Sequence[ScoredImage],
    failed: Sequence[FailedFile],
    *,
    folder: str,
    policy: Policy,
    seconds: float,
    config: EvalConfig | None = None,
) -> FolderReport:
    """The report of a folder from its scored images and the files that failed (with no
    image scored, every measure is 0 and its interval empty)."""
    config = config or EvalConfig()
    images = sorted(scored, key=lambda s: s.file)
    failures = sorted(failed, key=lambda f: f.file)
    truths = [s.truth_categories for s in images]
    found: set[str] = set()
    for s, truth in zip(images, truths, strict=True):
        found |= truth | s.labelled | s.decided
    categories = _order(found)
    positive = np.array([bool(s.truth) for s in images], dtype=bool)
    flagged = np.array([s.decision != "allow" for s in images], dtype=bool)
    n, k = len(images), len(categories)
    t = np.array([[c in truth for c in categories] for truth in truths], dtype=bool)
    decided = np.array([[c in s.decided for c in categories] for s in images], dtype=bool)
    labelled = np.array([[c in s.labelled for c in categories] for s in images], dtype=bool)
    t, decided, labelled = (m.reshape(n, k) for m in (t, decided, labelled))
    measures = bootstrap_measures(
        np.column_stack([positive, t, t]), np.column_stack([flagged, decided, labelled]), config
    )
    tally = Counter((bool(pos), s.decision) for s, pos in zip(images, positive, strict=True))
    counts = {
        group: {d: tally[(want, d)] for d in DECISIONS}
        for group, want in (("labelled", True), ("clean", False))
    }
    category_reports = []
    for j, name in enumerate(categories):
        known = taxonomy.CATEGORIES.get(name)
        category_reports.append(
            CategoryReport(
                category=name,
                level=known.level if known is not None else None,
                parent=known.parent if known is not None else None,
                support=int(t[:, j].sum()),
                covered=_covered(policy, name),
                decided=measures[1 + j],
                labelled=measures[1 + k + j],
            )
        )
    return FolderReport(
        folder=folder,
        policy=policy.name,
        policy_version=policy.version,
        files=len(images) + len(failures),
        images=len(images),
        failed=len(failures),
        failures_by_code=dict(sorted(Counter(f.code for f in failures).items())),
        analyzer_errors=sum(1 for s in images if s.analyzer_errors),
        seconds=round(seconds, 3),
        decision=DecisionReport(
            labelled=int(positive.sum()),
            clean=int((~positive).sum()),
            counts=counts,
            flagged=measures[0],
        ),
        categories=category_reports,
        images_detail=[
            ImageReport(
                file=s.file,
                labels=list(s.truth),
                decision=s.decision,
                decided=_order(s.decided),
                found=s.top_labels,
                analyzer_errors=list(s.analyzer_errors),
            )
            for s in images
        ],
        failures=[FailedItem(file=f.file, code=f.code, message=f.message) for f in failures],
        config=config,
    )
