"""Training runs as jobs: create, list and read a tenant's runs; claim, heartbeat,
progress and finish them in the workers.

Every read and write a tenant asks for is scoped to it: another tenant's run is "not
found". A run is created ``queued`` once its request checks out: the category is a
taxonomy label, the filters make sense, the training settings (the defaults of
``training.defaults`` with the run's overrides) validate, the tenant has no other run of
the category on its way, and its samples that carry the embedding runs train on hold
enough positives and negatives (``too_few_samples``, 422, with the counts, otherwise).

Workers :meth:`~TrainingRuns.claim` runs with a conditional UPDATE (the run's status and
attempt count must still be the ones read), so two workers never take the same run. A
claim writes a heartbeat the worker renews; a ``running`` run whose heartbeat is older
than ``training.lease_s`` lost its worker and is claimed again, until it was claimed
``training.max_attempts`` times: then it is failed (``attempts_exhausted``), so accepted
work always ends in an outcome. Progress, heartbeats and outcomes are written only by
the claim holding the run (the token it claimed with): a worker that lost its run
hears so (False) and stops.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bastion.pipeline.engine import Engine
from bastion.policy import taxonomy
from bastion.samples.embedding import EmbeddingModel, embedding_analyzer
from bastion.samples.errors import UnknownCategory
from bastion.samples.service import SampleFilter
from bastion.samples.tables import SOURCES, Sample, SampleEmbedding
from bastion.store.pages import newest_first
from bastion.store.types import UtcDateTime, to_utc
from bastion.training.config import TrainingConfig, TrainingJobsConfig
from bastion.training.errors import TooFewSamples
from bastion.training.run_errors import (
    ATTEMPTS_EXHAUSTED_CODE,
    InvalidTrainingConfig,
    InvalidTrainingFilters,
    TooManyTrainingRuns,
    TrainingRunActive,
    TrainingRunNotFound,
)
from bastion.training.tables import (
    FAILED,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    TrainingRun,
)

__all__ = [
    "RunFilters",
    "RunOutcome",
    "RunPage",
    "TrainingRuns",
    "check_request",
    "finite",
    "kept_embedding_model",
    "training_config",
]

MAX_MESSAGE = 4000
"""Longest error message kept with a failed run."""
MAX_STAGES = 50
"""Most stages kept per attempt (a run has a handful)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def kept_embedding_model(engine: Engine, analyzer: str | None) -> EmbeddingModel:
    """The embedding samples keep (``samples.embedding_analyzer``): what runs train on;
    ``embedding_unavailable`` when no analyzer makes one."""
    found = embedding_analyzer(engine, analyzer)
    return EmbeddingModel(found.model_name, found.version)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (JSON has none) made None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def training_config(
    jobs: TrainingJobsConfig, overrides: Mapping[str, Any] | None
) -> TrainingConfig:
    """``jobs.defaults`` with ``overrides``; ``invalid_training_config`` when they do not
    validate (unknown fields, values out of range, settings that cannot work)."""
    merged = {**jobs.defaults.model_dump(), **dict(overrides or {})}
    try:
        return TrainingConfig.model_validate(merged)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "config", "message": e["msg"]}
            for e in exc.errors()[:20]
        ]
        raise InvalidTrainingConfig(
            "the training config does not validate: "
            + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            details={"errors": errors},
        ) from exc


def check_request(
    jobs: TrainingJobsConfig,
    category: str,
    filters: RunFilters,
    overrides: Mapping[str, Any] | None,
) -> TrainingConfig:
    """What a run's request must be before anything is looked up: a taxonomy label
    (``unknown_label``), filters that make sense, training settings that validate. The
    run's training settings."""
    if category not in taxonomy.CATEGORIES:
        raise UnknownCategory(f"not a taxonomy label: {category[:100]!r}")
    filters.check()
    return training_config(jobs, overrides)


@dataclass(frozen=True, slots=True)
class RunFilters:
    """Which of the tenant's samples a run trains on: one ``source``; labels given at or
    after ``since`` and before ``until``; only ``corrected`` ones. (The category is the
    run's: every chosen sample is a positive or a negative.)"""

    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    corrected_only: bool = False

    def check(self) -> None:
        """``invalid_training_filters`` for an unknown source or an empty period."""
        if self.source is not None and self.source not in SOURCES:
            raise InvalidTrainingFilters(f"source must be one of {list(SOURCES)}")
        since, until = self.since, self.until
        if since is not None and until is not None and to_utc(since) >= to_utc(until):
            raise InvalidTrainingFilters("since must be before until")

    def sample_filter(self, category: str | None = None) -> SampleFilter:
        """The samples' filter of these (optionally narrowed to ``category``)."""
        return SampleFilter(self.source, self.since, self.until, category, self.corrected_only)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "since": None if self.since is None else to_utc(self.since).isoformat(),
            "until": None if self.until is None else to_utc(self.until).isoformat(),
            "corrected_only": self.corrected_only,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RunFilters:
        d = data or {}

        def when(key: str) -> datetime | None:
            text = d.get(key)
            return None if text is None else to_utc(datetime.fromisoformat(str(text)))

        source = d.get("source")
        return cls(
            None if source is None else str(source),
            when("since"),
            when("until"),
            bool(d.get("corrected_only", False)),
        )


@dataclass(frozen=True, slots=True)
class RunPage:
    """Runs newest first; pass ``next_cursor`` for the next page."""

    runs: list[TrainingRun]
    next_cursor: str | None


@dataclass(frozen=True)
class RunOutcome:
    """What a succeeded run leaves: the registered version, the numbers and the report."""

    model_name: str
    model_version: int
    metrics: dict[str, float | None]
    report: dict[str, Any]
    held_out_ids: list[str]
    baseline_coverage: float


class TrainingRuns:
    """Training runs on the database of ``sessions``, under ``config``
    (``Settings.training``)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: TrainingJobsConfig,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.now = now

    # ---- settings ------------------------------------------------------------------
    def training_config(self, overrides: Mapping[str, Any] | None) -> TrainingConfig:
        """The defaults with ``overrides`` (see :func:`training_config`)."""
        return training_config(self.config, overrides)

    # ---- creating ------------------------------------------------------------------
    def create(
        self,
        tenant_id: str,
        category: str,
        *,
        embedding_model: EmbeddingModel,
        requested_by: str,
        filters: RunFilters | None = None,
        overrides: Mapping[str, Any] | None = None,
        claimed_by: str | None = None,
    ) -> TrainingRun:
        """A new run of ``tenant_id``'s head for ``category``, ``queued`` for a worker
        (or already ``running``, claimed by ``claimed_by``: a process that runs it
        itself). Refused, before anything is written, when the request does not check
        out (see the module notes)."""
        chosen = filters or RunFilters()
        config = check_request(self.config, category, chosen, overrides)
        dumped = config.model_dump(mode="json")
        kept = {k: dumped[k] for k in dict(overrides or {})}  # as validated, JSON-safe
        now = self.now()
        with self.sessions.begin() as s:
            active = list(
                s.scalars(
                    select(TrainingRun.category).where(
                        TrainingRun.tenant_id == tenant_id,
                        TrainingRun.status.in_((QUEUED, RUNNING)),
                    )
                )
            )
            if category in active:
                raise TrainingRunActive(
                    f"a training run for {category!r} is already queued or running"
                )
            if len(active) >= self.config.max_active_per_tenant:
                raise TooManyTrainingRuns(
                    f"{len(active)} training runs are already queued or running (at most "
                    f"{self.config.max_active_per_tenant}); wait for one to finish"
                )
            counts = _class_counts(s, tenant_id, category, chosen, embedding_model)
            _require(counts, config, category, embedding_model)
            run = TrainingRun(
                id="trn_" + uuid.uuid4().hex,
                tenant_id=tenant_id,
                category=category,
                status=QUEUED if claimed_by is None else RUNNING,
                progress=0.0,
                stage=QUEUED if claimed_by is None else "claimed",
                stages=[],
                filters=chosen.to_json(),
                config=kept,
                embedding_model=str(embedding_model),
                requested_by=requested_by[:120],
                created_at=now,
                started_at=None if claimed_by is None else now,
                heartbeat_at=None if claimed_by is None else now,
                claimed_by=claimed_by,
                attempts=0 if claimed_by is None else 1,
            )
            s.add(run)
            s.flush()
        return run

    # ---- reading -------------------------------------------------------------------
    def get(self, tenant_id: str, run_id: str) -> TrainingRun:
        """The tenant's run; ``training_run_not_found`` for another tenant's."""
        with self.sessions() as s:
            run = s.get(TrainingRun, run_id)
        if run is None or run.tenant_id != tenant_id:
            raise TrainingRunNotFound(f"training run {run_id!r} not found")
        return run

    def by_id(self, run_id: str) -> TrainingRun | None:
        """Any tenant's run (for the workers, which run every tenant's)."""
        with self.sessions() as s:
            return s.get(TrainingRun, run_id)

    def list_runs(
        self,
        tenant_id: str,
        *,
        category: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """The tenant's runs, newest first, of one category and one status when given."""
        if status is not None and status not in STATUSES:
            raise InvalidTrainingFilters(f"status must be one of {list(STATUSES)}")
        q = select(TrainingRun).where(TrainingRun.tenant_id == tenant_id)
        if category is not None:
            q = q.where(TrainingRun.category == category)
        if status is not None:
            q = q.where(TrainingRun.status == status)
        with self.sessions() as s:
            rows, next_cursor = newest_first(
                s, q, TrainingRun.created_at, TrainingRun.id, limit=limit, cursor=cursor
            )
        return RunPage(rows, next_cursor)

    # ---- the workers' side -----------------------------------------------------------
    def claim(self, worker: str) -> TrainingRun | None:
        """The oldest run a worker may take: queued, or running with a heartbeat older
        than the lease (its worker died). It is ``worker``'s now (``worker`` is the
        claim's token: unique per claim). A dead run claimed ``max_attempts`` times
        already is failed instead. None when there is nothing to take."""
        now = self.now()
        stale = now - timedelta(seconds=self.config.lease_s)
        takeable = or_(
            TrainingRun.status == QUEUED,
            and_(TrainingRun.status == RUNNING, TrainingRun.heartbeat_at < stale),
        )
        with self.sessions() as s:
            candidates = s.execute(
                select(TrainingRun.id, TrainingRun.status, TrainingRun.attempts)
                .where(takeable)
                .order_by(TrainingRun.created_at, TrainingRun.id)
                .limit(16)
            ).all()
        for run_id, status, attempts in candidates:
            if status == RUNNING and attempts >= self.config.max_attempts:
                self._exhaust(run_id, attempts, stale)
                continue
            again = status == RUNNING
            with self.sessions.begin() as s:
                done = s.execute(
                    update(TrainingRun)
                    .where(TrainingRun.id == run_id, TrainingRun.attempts == attempts, takeable)
                    .values(
                        status=RUNNING,
                        claimed_by=worker[:120],
                        attempts=attempts + 1,
                        heartbeat_at=now,
                        started_at=func.coalesce(
                            TrainingRun.started_at, literal(now, UtcDateTime())
                        ),
                        progress=0.0,
                        stage=f"claimed again (attempt {attempts + 1})" if again else "claimed",
                        stages=[],
                    )
                    .execution_options(synchronize_session=False)
                )
                if _count(done) != 1:
                    continue  # another worker was faster
            return self.by_id(run_id)
        return None

    def _exhaust(self, run_id: str, attempts: int, stale: datetime) -> None:
        self._finish(
            [
                TrainingRun.id == run_id,
                TrainingRun.status == RUNNING,
                TrainingRun.attempts == attempts,
                TrainingRun.heartbeat_at < stale,
            ],
            status=FAILED,
            stage=FAILED,
            error_code=ATTEMPTS_EXHAUSTED_CODE,
            error_message=f"the run was started {attempts} times and its worker stopped "
            "each time before it finished",
        )

    def heartbeat(self, run_id: str, worker: str) -> bool:
        """Keep ``worker``'s claim alive; False when the run is no longer its (taken by
        another worker after the lease, or finished)."""
        return self._mine(run_id, worker, heartbeat_at=self.now())

    def progress(
        self, run_id: str, worker: str, fraction: float, stage: str, *, started: bool = False
    ) -> bool:
        """Record how far the run is (``fraction`` 0–1, ``stage`` in words); a heartbeat
        too. ``started``: ``stage`` has just begun, and joins the run's list of stages.
        False when the run is no longer ``worker``'s."""
        now = self.now()
        values: dict[str, Any] = {
            "heartbeat_at": now,
            "progress": min(1.0, max(0.0, float(fraction))),
            "stage": stage[:200],
        }
        if not started:
            return self._mine(run_id, worker, **values)
        with self.sessions.begin() as s:
            row = s.execute(select(TrainingRun.stages).where(*_held_by(run_id, worker))).first()
            if row is None:
                return False
            entry = {
                "stage": values["stage"],
                "progress": values["progress"],
                "at": now.isoformat(),
            }
            values["stages"] = [*(row[0] or []), entry][-MAX_STAGES:]
            return _update_held(s, run_id, worker, values)

    def succeed(self, run_id: str, worker: str, outcome: RunOutcome) -> bool:
        """Record ``worker``'s run as succeeded with its outcome; False when it is no
        longer that worker's (nothing is written then)."""
        return self._finish(
            _held_by(run_id, worker),
            status=SUCCEEDED,
            stage=SUCCEEDED,
            progress=1.0,
            model_name=outcome.model_name,
            model_version=outcome.model_version,
            metrics=finite(outcome.metrics),
            report=finite(outcome.report),
            held_out_ids=list(outcome.held_out_ids),
            baseline_coverage=outcome.baseline_coverage,
        )

    def fail(self, run_id: str, code: str, message: str, *, worker: str | None = None) -> bool:
        """Record the run as failed with a stable ``code``: ``worker``'s run only when
        given, else whichever worker holds it (or none, while queued). False when it is
        finished already (or no longer ``worker``'s)."""
        where = (
            _held_by(run_id, worker)
            if worker is not None
            else [TrainingRun.id == run_id, TrainingRun.status.in_((QUEUED, RUNNING))]
        )
        return self._finish(
            where,
            status=FAILED,
            stage=FAILED,
            error_code=code[:64],
            error_message=message[:MAX_MESSAGE],
        )

    def release(self, run_id: str, worker: str) -> bool:
        """Put ``worker``'s run back in the queue, its claim not counted (the worker is
        stopping, not dying); False when it is no longer that worker's."""
        return self._mine(
            run_id,
            worker,
            status=QUEUED,
            claimed_by=None,
            heartbeat_at=None,
            attempts=TrainingRun.attempts - 1,
            progress=0.0,
            stage="queued again (its worker stopped)",
            stages=[],
        )

    def _mine(self, run_id: str, worker: str, **values: Any) -> bool:
        with self.sessions.begin() as s:
            return _update_held(s, run_id, worker, values)

    def _finish(self, where: Sequence[Any], **values: Any) -> bool:
        now = self.now()
        with self.sessions.begin() as s:
            done = s.execute(
                update(TrainingRun)
                .where(*where)
                .values(finished_at=now, heartbeat_at=now, **values)
                .execution_options(synchronize_session=False)
            )
            return _count(done) == 1


def _held_by(run_id: str, worker: str) -> list[Any]:
    return [
        TrainingRun.id == run_id,
        TrainingRun.status == RUNNING,
        TrainingRun.claimed_by == worker[:120],
    ]


def _update_held(s: Session, run_id: str, worker: str, values: Mapping[str, Any]) -> bool:
    """Write ``values`` to the run if ``worker`` still holds it; whether it did."""
    done = s.execute(
        update(TrainingRun)
        .where(*_held_by(run_id, worker))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _count(done) == 1


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _class_counts(
    s: Session, tenant_id: str, category: str, filters: RunFilters, model: EmbeddingModel
) -> dict[str, int]:
    """Positives and negatives among the tenant's samples of ``filters`` that carry an
    embedding of ``model`` (what the run will train on)."""

    def count(chosen: SampleFilter) -> int:
        q = chosen.where(
            select(func.count())
            .select_from(Sample)
            .join(
                SampleEmbedding,
                and_(
                    SampleEmbedding.sample_id == Sample.id,
                    SampleEmbedding.tenant_id == Sample.tenant_id,
                    SampleEmbedding.model == model.name,
                    SampleEmbedding.version == model.version,
                ),
            )
            .where(Sample.tenant_id == tenant_id)
        )
        return int(s.scalar(q) or 0)

    total = count(filters.sample_filter())
    positive = count(filters.sample_filter(category))
    return {"positive": positive, "negative": total - positive}


def _require(
    counts: Mapping[str, int], config: TrainingConfig, category: str, model: EmbeddingModel
) -> None:
    """``too_few_samples`` unless there are enough of each class for the training part
    and the held-out part (as the run's time split will ask)."""
    need_positive = config.min_positives + config.min_held_out_per_class
    need_negative = config.min_negatives + config.min_held_out_per_class
    if counts["positive"] >= need_positive and counts["negative"] >= need_negative:
        return
    raise TooFewSamples(
        f"too few samples to train a head for {category!r}: {counts['positive']} positive "
        f"(need {need_positive}), {counts['negative']} negative (need {need_negative}) "
        f"among the samples with a {model.name} embedding; label more first",
        details={
            "part": "all",
            "positive": counts["positive"],
            "negative": counts["negative"],
            "need_positive": need_positive,
            "need_negative": need_negative,
            "embedding_model": str(model),
        },
    )
