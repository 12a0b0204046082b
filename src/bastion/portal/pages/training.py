"""Training runs in the browser: the tenant's runs with their progress, a form to start
one, and a run's report with its pictures.

Any signed-in person may look; only admins start runs. The pages call what
``/v1/training/runs`` calls (:class:`bastion.training.runs.TrainingRuns`), every call
in a thread. A run is refused before it is queued when its request does not check out
(an unknown category, filters that make no sense, another run of the category on its
way, too few samples): the refusal is shown on the page with what was typed. While a
run is queued or running its row (and its page) asks for its progress every few
seconds (htmx polling); the row stops asking once the run is over, and the run's page
reloads itself to show the report. The report page draws the held-out evaluation with
:func:`bastion.training.charts.training_charts` as inline SVG, and offers the report's
JSON to signed-in people (the API's copy needs a key). Another tenant's runs are not
found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from bastion.api.services import Services, services
from bastion.errors import BastionError
from bastion.portal.editor import form_text
from bastion.portal.pages.models import blocking, formatters, people_names
from bastion.portal.pages.review_view import taxonomy_names
from bastion.portal.people import AdminPerson, Person, Viewer
from bastion.portal.templating import render
from bastion.registry.config import category_slug
from bastion.samples.tables import SOURCES
from bastion.training.charts import TrainingCharts, training_charts
from bastion.training.evaluate import EvaluationReport
from bastion.training.run_errors import InvalidTrainingFilters, TrainingReportNotReady
from bastion.training.runs import RunFilters, kept_embedding_model
from bastion.training.tables import FINISHED, SUCCEEDED, TrainingRun

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
RunId = Annotated[
    str, Path(pattern=r"^trn_[0-9a-f]{1,36}$", description="A training run's id (`trn_…`).")
]
RUNS_SHOWN = 50
POLL_S = 2
"""Seconds between two looks at a queued or running run's progress."""
FIELDS = ("category", "source", "since", "until", "corrected_only")


@dataclass(frozen=True)
class Report:
    """A succeeded run's report as its page shows it: the held-out evaluation (None when
    it cannot be read), its pictures, and the rest of the JSON."""

    evaluation: EvaluationReport | None
    charts: TrainingCharts | None
    data: dict[str, Any]

    @property
    def samples(self) -> dict[str, Any]:
        found = self.data.get("samples")
        return found if isinstance(found, dict) else {}

    @property
    def baseline(self) -> dict[str, Any]:
        found = self.data.get("baseline")
        return found if isinstance(found, dict) else {}


def report_of(run: TrainingRun) -> Report | None:
    """The run's report, or None before it succeeded."""
    if run.status != SUCCEEDED or run.report is None:
        return None
    data = dict(run.report)
    try:
        evaluation = EvaluationReport.model_validate(data.get("evaluation"))
    except ValidationError:
        return Report(None, None, data)
    return Report(evaluation, training_charts(evaluation), data)


def _when(text: str, name: str) -> datetime | None:
    """A time of the form (``datetime-local`` or a date; UTC), or None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidTrainingFilters(f"{name} is not a date and time: {text[:40]!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _filters(form: FormData) -> RunFilters:
    source = form_text(form, "source", 32).strip() or None
    if source is not None and source not in SOURCES:
        raise InvalidTrainingFilters(f"source must be one of {list(SOURCES)}")
    return RunFilters(
        source,
        _when(form_text(form, "since", 40), "since"),
        _when(form_text(form, "until", 40), "until"),
        form_text(form, "corrected_only", 8) in ("1", "on", "true"),
    )


def _context() -> dict[str, Any]:
    """What every training template formats with."""
    return {"poll_s": POLL_S, "finished": FINISHED, "model_link": model_link, **formatters()}


async def _list_page(
    request: Request,
    who: Person,
    svc: Services,
    *,
    error: BastionError | None = None,
    values: dict[str, str] | None = None,
    cursor: str | None = None,
) -> Response:
    page = await blocking(
        partial(svc.training_runs.list_runs, who.tenant_id, limit=RUNS_SHOWN, cursor=cursor)
    )
    context = {
        "runs": page.runs,
        "next_cursor": page.next_cursor,
        "names": await people_names(svc, who.tenant_id),
        "taxonomy": taxonomy_names(),
        "sources": SOURCES,
        "error": error,
        "values": values or {},
        **_context(),
    }
    return render(request, "training.html", context, status=error.status if error else 200)


def _shown_on_page(exc: BastionError) -> bool:
    return exc.status not in (401, 403, 404)


@router.get("/portal/training")
async def training_page(
    request: Request,
    who: Viewer,
    svc: Svc,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    return await _list_page(request, who, svc, cursor=cursor or None)


@router.post("/portal/training")
async def start_run(request: Request, who: AdminPerson, svc: Svc) -> Response:
    """Queue a run of the tenant's head for a category over the samples of the filters."""
    form = await request.form()
    values = {k: form_text(form, k, 100) for k in FIELDS}
    try:
        category = values["category"].strip()
        filters = _filters(form)
        model = await blocking(
            partial(kept_embedding_model, svc.engine, svc.settings.samples.embedding_analyzer)
        )
        run = await blocking(
            partial(
                svc.training_runs.create,
                who.tenant_id,
                category,
                embedding_model=model,
                requested_by=who.actor,
                filters=filters,
            )
        )
    except BastionError as exc:
        if not _shown_on_page(exc):
            raise
        return await _list_page(request, who, svc, error=exc, values=values)
    return RedirectResponse(f"/portal/training/{run.id}?done=queued", status_code=303)


@router.get("/portal/training/{run_id}")
async def run_page(request: Request, run_id: RunId, who: Viewer, svc: Svc) -> Response:
    run = await blocking(partial(svc.training_runs.get, who.tenant_id, run_id))
    context = {
        "run": run,
        "report": report_of(run),
        "names": await people_names(svc, who.tenant_id),
        "notice": "The run was queued: a worker will take it shortly."
        if request.query_params.get("done") == "queued"
        else None,
        **_context(),
    }
    return render(request, "training_run.html", context)


@router.get("/portal/training/{run_id}/row")
async def run_row(request: Request, run_id: RunId, who: Viewer, svc: Svc) -> Response:
    """A run's row of the list, as polling replaces it."""
    run = await blocking(partial(svc.training_runs.get, who.tenant_id, run_id))
    context = {"run": run, "names": await people_names(svc, who.tenant_id), **_context()}
    return render(request, "training_row.html", context)


@router.get("/portal/training/{run_id}/status")
async def run_status(request: Request, run_id: RunId, who: Viewer, svc: Svc) -> Response:
    """A run's status and progress, as its page polls them; once the run is over, a
    polling page is told to reload (to show the report or the error)."""
    run = await blocking(partial(svc.training_runs.get, who.tenant_id, run_id))
    response = render(request, "training_status.html", {"run": run, **_context()})
    if run.status in FINISHED and request.headers.get("hx-request"):
        response.headers["HX-Refresh"] = "true"
    return response


@router.get("/portal/training/{run_id}/report.json")
async def run_report(run_id: RunId, who: Viewer, svc: Svc) -> Response:
    """The report's JSON, as ``GET /v1/training/runs/{id}/report`` answers it."""
    run = await blocking(partial(svc.training_runs.get, who.tenant_id, run_id))
    if run.status != SUCCEEDED or run.report is None:
        raise TrainingReportNotReady(f"training run {run_id} has no report: it is {run.status}")
    return JSONResponse(
        dict(run.report),
        headers={"Content-Disposition": f'inline; filename="{run.id}-report.json"'},
    )


def model_link(run: TrainingRun) -> str:
    """The page of the category's head a run registered a version of."""
    return f"/portal/models/{category_slug(run.category)}#v{run.model_version}"
