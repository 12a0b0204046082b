"""Training runs over REST: ask for a tenant's head to be trained, follow the run, read
its report.

``POST /v1/training/runs`` (scope ``admin``) queues a run for a category over the
tenant's samples of some filters, with overrides of the training settings; it answers
202 with the run, or refuses before queueing: an unknown category (``unknown_label``),
filters or settings that do not validate, another run of the category on its way
(``training_run_active``), too few samples of a class (``too_few_samples``, with the
counts). The work runs in a worker's child process, never in this one
(:mod:`bastion.training.runner`). ``GET /v1/training/runs`` and
``GET /v1/training/runs/{id}`` (scope ``read``) show the runs with their status,
progress and stage, metrics and the registered version (the new ``challenger``);
``GET /v1/training/runs/{id}/report`` the JSON report of a succeeded run: the head and
the baseline (what Bastion decides today) on the frozen held-out samples, whose ids it
lists.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.auth import Admin, Reader
from bastion.api.params import IsoDatetime, json_body_doc, json_model
from bastion.api.services import Services, services
from bastion.samples.tables import SOURCES
from bastion.store.types import UtcTime
from bastion.training.run_errors import TrainingReportNotReady
from bastion.training.runs import RunFilters, kept_embedding_model
from bastion.training.tables import STATUSES, SUCCEEDED, TrainingRun

router = APIRouter(prefix="/v1", tags=["training"])
Svc = Annotated[Services, Depends(services)]
RunId = Annotated[str, Path(max_length=64, description="A training run's id (`trn_…`).")]
Source = Literal["moderator", "api", "import"]
Status = Literal["queued", "running", "succeeded", "failed"]


class TrainingFilters(BaseModel):
    """Which of the tenant's samples the run trains on (every one is a positive or a
    negative of the category)."""

    model_config = ConfigDict(extra="forbid")

    source: Source | None = Field(
        None, description=f"Only samples of one source: {', '.join(SOURCES)}."
    )
    since: IsoDatetime | None = Field(
        None, description="Only samples labelled at or after this time (ISO 8601)."
    )
    until: IsoDatetime | None = Field(
        None, description="Only samples labelled before this time (ISO 8601)."
    )
    corrected_only: bool = Field(
        False, description="Only samples whose labels or decision differ from the models'."
    )


class TrainingRunIn(BaseModel):
    """A training run to queue."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(
        min_length=1,
        max_length=100,
        description="The taxonomy label (L1 or L2) the head decides; an L1 label covers "
        "its L2 labels.",
    )
    filters: TrainingFilters = Field(
        default_factory=TrainingFilters, description="Which samples to train on."
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        max_length=50,
        description="Overrides of the training settings (`training.defaults`): "
        "`cv_folds`, `c_grid`, `calibration`, `threshold_objective`, `target_precision`, "
        "`held_out_fraction`, `min_positives`, `seed`, ...",
    )


class TrainingError(BaseModel):
    code: str = Field(description="Why the run failed (a stable code).")
    message: str = Field(description="The same in words.")


class RegisteredHead(BaseModel):
    model: str = Field(description="The registered model the head is a version of.")
    version: int = Field(description="The new version.")
    alias: str = Field(description="The alias pointing at it: `challenger` (in shadow).")


class TrainingStage(BaseModel):
    """A stage of a run, as it started."""

    stage: str = Field(description="The stage, in words.")
    progress: float = Field(description="How far the run was when it started, 0 to 1.")
    at: UtcTime = Field(description="When it started.")


class TrainingRunOut(BaseModel):
    """One training run."""

    id: str = Field(description="The run's id (`trn_…`).")
    category: str = Field(description="The taxonomy label the head decides.")
    status: Status = Field(description=f"One of {', '.join(STATUSES)}.")
    progress: float = Field(description="How far the run is, 0 to 1.")
    stage: str = Field(description="What the run is doing now, in words.")
    stages: list[TrainingStage] = Field(
        description="The stages of its latest attempt as each started, in order (a run too "
        "quick to watch still shows its way)."
    )
    filters: dict[str, Any] = Field(description="Which samples it trains on.")
    config: dict[str, Any] = Field(description="The run's overrides of the training settings.")
    embedding_model: str = Field(description="`<model>@<version>` of the embeddings used.")
    requested_by: str = Field(description="`key:<id>`, `user:<id>` or `cli:<name>`.")
    created_at: UtcTime = Field(description="When the run was asked for.")
    started_at: UtcTime | None = Field(description="When a worker first took it.")
    finished_at: UtcTime | None = Field(description="When it succeeded or failed.")
    heartbeat_at: UtcTime | None = Field(description="Its worker's latest sign of life.")
    attempts: int = Field(description="Times a worker took it (more than 1: a worker died).")
    error: TrainingError | None = Field(description="Why it failed (failed runs).")
    registered: RegisteredHead | None = Field(
        description="The version registered (succeeded runs)."
    )
    metrics: dict[str, float | None] | None = Field(
        description="Held-out scores of the head and the baseline, the F1 difference and "
        "its interval, out-of-fold scores, counts (succeeded runs)."
    )
    baseline_coverage: float | None = Field(
        description="Share of held-out samples whose baseline decision was known."
    )
    report_url: str | None = Field(description="Where its JSON report is (succeeded runs).")

    @classmethod
    def of(cls, run: TrainingRun, request: Request) -> TrainingRunOut:
        error = None
        if run.error_code is not None:
            error = TrainingError(code=run.error_code, message=run.error_message or "")
        registered = None
        if run.model_name is not None and run.model_version is not None:
            registered = RegisteredHead(
                model=run.model_name, version=run.model_version, alias="challenger"
            )
        report_url = None
        if run.status == SUCCEEDED:
            report_url = str(request.url_for("training_run_report", run_id=run.id))
        return cls(
            id=run.id,
            category=run.category,
            status=run.status,
            progress=run.progress,
            stage=run.stage,
            stages=[TrainingStage.model_validate(x) for x in run.stages or []],
            filters=dict(run.filters or {}),
            config=dict(run.config or {}),
            embedding_model=run.embedding_model,
            requested_by=run.requested_by,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            heartbeat_at=run.heartbeat_at,
            attempts=run.attempts,
            error=error,
            registered=registered,
            metrics=None if run.metrics is None else dict(run.metrics),
            baseline_coverage=run.baseline_coverage,
            report_url=report_url,
        )


class TrainingRunList(BaseModel):
    runs: list[TrainingRunOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


@router.post(
    "/training/runs",
    response_model=TrainingRunOut,
    status_code=202,
    summary="Queue a training run of the tenant's head for a category",
    openapi_extra=json_body_doc(TrainingRunIn),
)
async def create_run(request: Request, who: Admin, svc: Svc) -> TrainingRunOut:
    body = await json_model(request, TrainingRunIn)
    filters = RunFilters(
        body.filters.source, body.filters.since, body.filters.until, body.filters.corrected_only
    )
    model = await run_in_threadpool(
        kept_embedding_model, svc.engine, svc.settings.samples.embedding_analyzer
    )
    run = await run_in_threadpool(
        lambda: svc.training_runs.create(
            who.tenant_id,
            body.category,
            embedding_model=model,
            requested_by=f"key:{who.key_id}",
            filters=filters,
            overrides=body.config,
        )
    )
    return TrainingRunOut.of(run, request)


@router.get(
    "/training/runs",
    response_model=TrainingRunList,
    summary="The tenant's training runs, newest first",
)
async def list_runs(
    request: Request,
    who: Reader,
    svc: Svc,
    category: Annotated[
        str | None, Query(max_length=100, description="Only runs of this category.")
    ] = None,
    status: Annotated[Status | None, Query(description="Only runs in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> TrainingRunList:
    page = await run_in_threadpool(
        lambda: svc.training_runs.list_runs(
            who.tenant_id, category=category, status=status, limit=limit, cursor=cursor
        )
    )
    return TrainingRunList(
        runs=[TrainingRunOut.of(r, request) for r in page.runs], next_cursor=page.next_cursor
    )


@router.get(
    "/training/runs/{run_id}",
    response_model=TrainingRunOut,
    summary="One training run: status, progress, metrics, registered version",
)
async def get_run(run_id: RunId, request: Request, who: Reader, svc: Svc) -> TrainingRunOut:
    run = await run_in_threadpool(svc.training_runs.get, who.tenant_id, run_id)
    return TrainingRunOut.of(run, request)


@router.get(
    "/training/runs/{run_id}/report",
    response_model=dict[str, Any],
    name="training_run_report",
    summary="A succeeded run's report: the head and the baseline on the held-out samples",
)
async def get_report(run_id: RunId, who: Reader, svc: Svc) -> dict[str, Any]:
    run = await run_in_threadpool(svc.training_runs.get, who.tenant_id, run_id)
    if run.status != SUCCEEDED or run.report is None:
        raise TrainingReportNotReady(f"training run {run_id} has no report: it is {run.status}")
    return dict(run.report)
