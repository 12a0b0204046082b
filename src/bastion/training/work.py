"""The work of one training run: from the tenant's samples to a registered challenger.

1. **Loading samples**: the arrays of the run's category over the tenant's samples of
   its filters that carry the embedding the run names (:meth:`SampleService.dataset`).
2. **Baseline**: what Bastion decides today, for the held-out samples of the time split
   :func:`~bastion.training.run.train_and_evaluate` makes (asked for once the split is
   known). Each sample's media is moderated again under the tenant's effective policy
   (its default policy and lists) with the base models only (no tenant's head:
   ``tenant=None``); the sample counts as positive when the result carries a label in
   the category (an L1 label covers its L2 labels). A sample whose media is gone (or is
   a video, or no longer decodes) falls back to the labels the models gave when it was
   decided (``model_labels``); one with neither counts as negative, and the report says
   how many there were (``baseline.coverage``).
3. **Training** (cross-validation), **export and check**, **evaluation**: the library's
   :func:`~bastion.training.run.train_and_evaluate`, in a thread.
4. **Registering**: the head is logged to the registry with its parameters, metrics,
   report (with the held-out sample ids and the baseline's coverage) and charts, and
   the ``challenger`` alias points at the new version: it runs in shadow, and promotion
   compares heads on the same held-out ids. The version is tagged with the run's id, so
   registering happens once per run: a run taken again after its worker died between
   registering and recording the outcome finds its version (before any other work, and
   again just before registering) and records that one, with the report and metrics
   logged with it, instead of registering a second.

Each stage reports its progress (a fraction of the whole, and the stage in words) to
the run's row through a :class:`Tracker`, which is also the run's heartbeat and stops
the work (:class:`~bastion.training.run_errors.TrainingRunLost`) when the run is no
longer this worker's. :func:`run_training` records the outcome: succeeded, or failed with
the error's stable code.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from bastion.config import Settings
from bastion.errors import BastionError, MediaError
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.policies import PolicyBook
from bastion.policy import taxonomy
from bastion.policy.model import Lists, Policy
from bastion.registry.errors import RegistryError
from bastion.registry.heads import CHAMPION
from bastion.registry.store import HeadVersion, ModelRegistry
from bastion.samples.embedding import EmbeddingModel
from bastion.samples.service import Dataset, SampleService
from bastion.samples.tables import IMAGE
from bastion.training import run as library
from bastion.training.evaluate import EvaluationReport
from bastion.training.run_errors import INTERNAL_CODE, TrainingRunLost
from bastion.training.runs import RunFilters, RunOutcome, TrainingRuns
from bastion.training.tables import TrainingRun

if TYPE_CHECKING:
    from bastion.process.components import Components

__all__ = [
    "CHALLENGER",
    "LOADING",
    "REGISTERING",
    "STAGE_NAMES",
    "BaselineCount",
    "Tracker",
    "WorkParts",
    "in_category",
    "run_training",
]

log = logging.getLogger(__name__)

LOADING: Final = "loading"
REGISTERING: Final = "registering"
CHALLENGER: Final = "challenger"
STAGE_NAMES: Final = {
    LOADING: "loading samples",
    library.BASELINE: "baseline",
    library.TRAINING: "training and cross-validation",
    library.EXPORT: "export and check",
    library.EVALUATION: "evaluation",
    REGISTERING: "registering",
}
"""Each stage in words, as the run shows it."""
_SPANS: Final = {
    LOADING: (0.0, 0.05),
    library.BASELINE: (0.05, 0.45),
    library.TRAINING: (0.45, 0.8),
    library.EXPORT: (0.8, 0.86),
    library.EVALUATION: (0.86, 0.9),
    REGISTERING: (0.9, 0.99),
}
"""The share of the whole each stage takes (roughly its share of the time)."""
BASELINE_CONCURRENCY = 4
"""Held-out samples moderated at once (the analyzers' batchers batch them)."""
WRITE_EVERY_S = 0.5
"""Least time between two progress writes within one stage."""

Listener = Callable[[str, float], None]
"""Hears the stage (in words) and the fraction done at every update."""


@dataclass(frozen=True)
class WorkParts:
    """What a run's work uses, out of a process's components."""

    settings: Settings
    runs: TrainingRuns
    samples: SampleService
    moderation: Moderation
    policies: PolicyBook
    registry: ModelRegistry

    @classmethod
    def of(cls, parts: Components) -> WorkParts:
        return cls(
            settings=parts.settings,
            runs=parts.training_runs,
            samples=parts.samples,
            moderation=parts.moderation,
            policies=parts.core.policies,
            registry=parts.heads.registry,
        )


class Tracker:
    """Writes a run's progress (and so its heartbeat) as a worker holding it; raises
    :class:`TrainingRunLost` once the run is no longer the worker's, or ``alive`` says
    the process that started the work is gone. Safe to call from any thread."""

    def __init__(
        self,
        runs: TrainingRuns,
        run_id: str,
        worker: str,
        *,
        listener: Listener | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.runs = runs
        self.run_id = run_id
        self.worker = worker
        self.listener = listener
        self.alive = alive
        self._lock = threading.Lock()
        self._stage = ""
        self._written = 0.0

    def stage(self, stage: str, done: float = 0.0, detail: str | None = None) -> None:
        """``done`` (0–1) of ``stage`` (one of :data:`STAGE_NAMES`) is done."""
        low, high = _SPANS[stage]
        fraction = low + (high - low) * min(1.0, max(0.0, done))
        words = STAGE_NAMES[stage] + (f" ({detail})" if detail else "")
        if self.alive is not None and not self.alive():
            raise TrainingRunLost("the worker that started this run is gone")
        with self._lock:
            now = time.monotonic()
            changed = stage != self._stage
            if not changed and now - self._written < WRITE_EVERY_S and done < 1.0:
                self._hear(words, fraction)
                return
            if changed:
                log.info("training run %s: %s", self.run_id, words)
            self._stage, self._written = stage, now
            if not self.runs.progress(self.run_id, self.worker, fraction, words, started=changed):
                raise TrainingRunLost(f"training run {self.run_id} is no longer this worker's")
            self._hear(words, fraction)

    def _hear(self, words: str, fraction: float) -> None:
        if self.listener is not None:
            self.listener(words, fraction)


def in_category(names: Sequence[str], category: str) -> bool:
    """Any of the label ``names`` is ``category`` or (an L1 category) one of its L2
    labels."""
    for name in names:
        found = taxonomy.CATEGORIES.get(name)
        if name == category or (found is not None and found.parent == category):
            return True
    return False


@dataclass
class BaselineCount:
    """Where the held-out samples' baseline decisions came from."""

    from_media: int = 0
    """Moderated again from the sample's media."""
    from_model_labels: int = 0
    """The labels the models gave when the sample was decided (media gone)."""
    unknown: int = 0
    """Neither: counted as negative."""

    @property
    def coverage(self) -> float:
        total = self.from_media + self.from_model_labels + self.unknown
        return (self.from_media + self.from_model_labels) / total if total else 0.0


class _Baseline:
    """The base policy's decisions of held-out samples, in the event loop."""

    def __init__(
        self,
        parts: WorkParts,
        run: TrainingRun,
        policy: Policy,
        lists: Lists,
        tracker: Tracker,
    ) -> None:
        self.parts = parts
        self.run = run
        self.policy = policy
        self.lists = lists
        self.tracker = tracker
        self.count = BaselineCount()

    async def decide(self, ids: Sequence[str]) -> npt.NDArray[np.int64]:
        gate = asyncio.Semaphore(BASELINE_CONCURRENCY)
        done = 0
        total = len(ids)

        async def one(sample_id: str) -> int:
            nonlocal done
            async with gate:
                decision = await self._one(sample_id)
            done += 1
            await asyncio.to_thread(
                self.tracker.stage, library.BASELINE, done / max(1, total), f"{done} of {total}"
            )
            return decision

        decisions = await asyncio.gather(*(one(i) for i in ids))
        return np.asarray(decisions, dtype=np.int64)

    async def _one(self, sample_id: str) -> int:
        samples = self.parts.samples
        sample = (await asyncio.to_thread(samples.get, self.run.tenant_id, sample_id)).sample
        data = None
        if sample.media_sha256 is not None and sample.media_kind == IMAGE:
            try:
                data = await asyncio.to_thread(samples.media.get, sample.media_sha256)
            except FileNotFoundError:
                data = None
        if data is not None:
            try:
                result = await self.parts.moderation.moderate_bytes(
                    data, self.policy, tenant=None, extra_lists=self.lists
                )
            except MediaError as exc:  # stored, but no longer decodes under today's limits
                log.info("baseline of sample %s from its labels: %s", sample_id, exc.code)
            else:
                self.count.from_media += 1
                return int(in_category([lab.name for lab in result.labels], self.run.category))
        if sample.model_labels is not None:
            self.count.from_model_labels += 1
            return int(in_category([str(n) for n in sample.model_labels], self.run.category))
        self.count.unknown += 1
        return 0


async def run_training(
    parts: WorkParts,
    run: TrainingRun,
    worker: str,
    *,
    listener: Listener | None = None,
    alive: Callable[[], bool] | None = None,
) -> TrainingRun:
    """Do the work of ``run`` (claimed by ``worker``) and record its outcome: succeeded,
    or failed with the error's code (``training_failed`` for an unexpected one). Gives
    the run as recorded. :class:`TrainingRunLost` propagates, nothing recorded: the run
    is another worker's now."""
    tracker = Tracker(parts.runs, run.id, worker, listener=listener, alive=alive)
    try:
        outcome = await _work(parts, run, tracker)
    except TrainingRunLost:
        raise
    except BastionError as exc:
        log.warning("training run %s failed: %s: %s", run.id, exc.code, exc.message)
        await asyncio.to_thread(parts.runs.fail, run.id, exc.code, exc.message, worker=worker)
    except Exception as exc:
        log.exception("training run %s failed", run.id)
        message = f"{type(exc).__name__}: {exc}"
        await asyncio.to_thread(parts.runs.fail, run.id, INTERNAL_CODE, message, worker=worker)
    else:
        if not await asyncio.to_thread(parts.runs.succeed, run.id, worker, outcome):
            raise TrainingRunLost(f"training run {run.id} is no longer this worker's")
    if listener is not None:
        listener("finished", 1.0)
    recorded = await asyncio.to_thread(parts.runs.by_id, run.id)
    assert recorded is not None
    return recorded


async def _work(parts: WorkParts, run: TrainingRun, tracker: Tracker) -> RunOutcome:
    await asyncio.to_thread(tracker.stage, LOADING)
    earlier = await _registered(parts, run)
    if earlier is not None:  # an earlier attempt registered it, then its worker died
        return await _reuse(parts, run, tracker, earlier)
    model = EmbeddingModel.parse(run.embedding_model)
    filters = RunFilters.from_json(run.filters)
    config = parts.runs.training_config(run.config)
    dataset: Dataset = await asyncio.to_thread(
        parts.samples.dataset, run.tenant_id, run.category, model, filters.sample_filter()
    )
    policy, lists = await asyncio.to_thread(parts.policies.resolve, run.tenant_id, None)
    await asyncio.to_thread(tracker.stage, LOADING, 1.0, f"{len(dataset.ids)} samples")
    baseline = _Baseline(parts, run, policy, lists, tracker)
    loop = asyncio.get_running_loop()
    held_out_ids: list[str] = []

    def decide(indices: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        held_out_ids.extend(dataset.ids[int(i)] for i in indices)
        future = asyncio.run_coroutine_threadsafe(baseline.decide(list(held_out_ids)), loop)
        return future.result()

    baseline_name = f"base policy {policy.name!r}"
    result = await asyncio.to_thread(
        library.train_and_evaluate,
        dataset.X,
        dataset.y,
        _datetimes(dataset.taken_at),
        decide,
        category=run.category,
        embedding_model=model.name,
        embedding_version=model.version,
        config=config,
        baseline_name=baseline_name,
        progress=tracker.stage,
    )
    await asyncio.to_thread(tracker.stage, REGISTERING)
    count = baseline.count
    positives = int(dataset.y.sum())
    report: dict[str, Any] = {
        "run_id": run.id,
        "tenant": run.tenant_id,
        "category": run.category,
        "embedding_model": str(model),
        "filters": filters.to_json(),
        "config": config.model_dump(mode="json"),
        "samples": {
            "total": len(dataset.ids),
            "positive": positives,
            "negative": len(dataset.ids) - positives,
            "without_embedding": dataset.missing,
            "train": int(result.split.train.shape[0]),
            "held_out": int(result.split.held_out.shape[0]),
        },
        "held_out_ids": held_out_ids,
        "baseline": {
            "name": baseline_name,
            "policy": policy.name,
            "policy_version": policy.version,
            "coverage": count.coverage,
            "from_media": count.from_media,
            "from_model_labels": count.from_model_labels,
            "unknown": count.unknown,
        },
        "evaluation": result.report.model_dump(mode="json"),
        "training": result.head.summary.model_dump(mode="json"),
        "parity": result.parity.model_dump(mode="json"),
    }
    metrics: dict[str, float] = {**result.metrics(), "baseline_coverage": count.coverage}
    params = {**result.params(), "training_run": run.id, "baseline_policy": policy.name}
    charts = await asyncio.to_thread(_charts, result.report)
    earlier = await _registered(parts, run)
    if earlier is not None:  # a worker that lost the run registered it meanwhile
        return await _reuse(parts, run, tracker, earlier)
    version = await asyncio.to_thread(
        parts.registry.log_head,
        run.tenant_id,
        run.category,
        result.onnx,
        params,
        metrics,
        report,
        charts,
        description=f"training run {run.id}",
        training_run=run.id,
    )
    await asyncio.to_thread(
        parts.registry.set_alias, run.tenant_id, run.category, CHALLENGER, version.version
    )
    await asyncio.to_thread(tracker.stage, REGISTERING, 1.0, f"version {version.version}")
    return _outcome(version, metrics, report, held_out_ids, count.coverage)


async def _registered(parts: WorkParts, run: TrainingRun) -> HeadVersion | None:
    """The version an earlier attempt of ``run`` registered, or None."""
    return await asyncio.to_thread(
        parts.registry.version_for_run, run.tenant_id, run.category, run.id
    )


async def _challenge(parts: WorkParts, run: TrainingRun, version: int) -> None:
    """Point the ``challenger`` alias at the version an earlier attempt registered (its
    worker may have died before it did), unless it is the champion already (promoted
    while the run was being taken again)."""
    registry = parts.registry
    champion = await asyncio.to_thread(
        registry.alias_version, run.tenant_id, run.category, CHAMPION
    )
    if champion != version:
        await asyncio.to_thread(
            registry.set_alias, run.tenant_id, run.category, CHALLENGER, version
        )


async def _reuse(
    parts: WorkParts, run: TrainingRun, tracker: Tracker, version: HeadVersion
) -> RunOutcome:
    """The outcome of ``run`` from the version an earlier attempt registered: the report
    and metrics logged with it (what promotion reads), nothing trained or logged again."""
    log.info(
        "training run %s: version %s was registered by an earlier attempt",
        run.id,
        version.version,
    )
    await asyncio.to_thread(tracker.stage, REGISTERING)
    report = await asyncio.to_thread(
        parts.registry.report, run.tenant_id, run.category, version.version
    )
    ids = (report or {}).get("held_out_ids")
    if report is None or not isinstance(ids, list):
        raise RegistryError(
            f"{version.name} version {version.version}, registered by training run {run.id}, "
            "has no report with its held-out samples"
        )
    baseline = report.get("baseline")
    coverage = baseline.get("coverage") if isinstance(baseline, dict) else None
    if not isinstance(coverage, int | float):
        coverage = version.metrics.get("baseline_coverage", 0.0)
    await _challenge(parts, run, version.version)
    await asyncio.to_thread(
        tracker.stage, REGISTERING, 1.0, f"version {version.version}, registered earlier"
    )
    return _outcome(version, dict(version.metrics), report, [str(i) for i in ids], float(coverage))


def _outcome(
    version: HeadVersion,
    metrics: dict[str, float],
    report: dict[str, Any],
    held_out_ids: list[str],
    baseline_coverage: float,
) -> RunOutcome:
    registered = {"model": version.name, "version": version.version, "alias": CHALLENGER}
    return RunOutcome(
        model_name=version.name,
        model_version=version.version,
        metrics=dict(metrics),
        report={**report, "registered": registered},
        held_out_ids=held_out_ids,
        baseline_coverage=baseline_coverage,
    )


def _datetimes(times: npt.NDArray[np.datetime64]) -> list[datetime]:
    """``datetime64[us]`` (UTC) values as aware datetimes."""
    return [t.astype("datetime64[us]").item().replace(tzinfo=UTC) for t in times]


def _charts(report: EvaluationReport) -> dict[str, bytes]:
    """The report's pictures (precision-recall curve, confusion matrices) as one HTML
    page of inline SVG, kept with the registered head."""
    from bastion.portal.templating import environment
    from bastion.training.charts import training_charts

    page = environment().from_string(
        '{% from "fragments/training_charts.html" import training_charts %}'
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>{{ title }}</title></head><body><h1>{{ title }}</h1>"
        "{{ training_charts(t) }}</body></html>"
    )
    title = f"Head for {report.category} against {report.baseline_name}"
    html = page.render(t=training_charts(report), title=title)
    return {"charts.html": html.encode("utf-8")}
